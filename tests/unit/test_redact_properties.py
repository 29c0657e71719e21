"""Property tests of the audit trail's string handling (hypothesis): whatever text or bytes a
run produces (lone surrogates from non-UTF-8 bytes, NUL, any nesting of keys and values), the
redaction never crashes, always yields storable UTF-8, never lets a known secret through, and the
real SQLite store records every entry (none dropped, the chain verifies)."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.locus.infra.plugins.plugin_utils import _redact
from ansible_collections.locus.infra.plugins.plugin_utils.store import _store

# Text as Ansible hands it over: any code point, lone surrogates included (surrogateescape).
TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=200)
ANY_STR = st.one_of(TEXT, st.binary(max_size=100))
SCALAR = st.one_of(ANY_STR, st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False, allow_infinity=False))
VALUE = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(ANY_STR, inner, max_size=4)),
                     max_leaves=20)
SECRET = TEXT.filter(lambda s: len(_redact.clean_text(s)) >= _redact.MIN_LITERAL
                     and _redact.clean_text(s).lower() not in _redact._NOT_SECRETS
                     and _redact.MASK not in _redact.clean_text(s) and _redact.clean_text(s).strip("*"))


def _storable(text, column=False):
    assert isinstance(text, str) and not (column and "\x00" in text)
    text.encode("utf-8")  # raises on a lone surrogate


def _walk_strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_strings(v)
    elif isinstance(value, str):
        yield value


@given(ANY_STR)
def test_clean_text_is_storable_and_deterministic(text):
    cleaned = _redact.clean_text(text)
    _storable(cleaned)
    _storable(_redact.clean_text(text, nul=True), column=True)
    assert _redact.clean_text(text) == cleaned
    assert _redact.clean_text(cleaned) == cleaned  # already clean text is left alone


@given(VALUE)
def test_redact_and_scrub_never_crash_and_yield_storable_text(value):
    for out in (_redact.redact(value), _redact.scrub(value)):
        for text in _walk_strings(out):
            _storable(text)
        json.dumps(out, ensure_ascii=False).encode("utf-8")


@given(SECRET, TEXT, TEXT)
def test_a_known_secret_never_survives(secret, before, after):
    text = before + secret + after
    assert _redact.clean_text(secret) not in _redact.redact_text(text, secrets=[secret])
    assert _redact.clean_text(secret) not in _redact.scrub_literals(text, secrets=[secret])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(ANY_STR, VALUE), min_size=1, max_size=5))
def test_the_store_records_every_entry(tmp_path, entries):
    with _store.open_store(state_dir=str(tmp_path / "state")) as store:
        before = store.head()["count"]
        # As the audit callback records: subjects made storable, data redacted.
        tags = store.record_many([("TASK", _redact.clean_text(_redact.redact_text(subject), nul=True), {"v": _redact.redact(value)})
                                  for subject, value in entries])
        assert len(tags) == len(entries)
        records = store.records(after=before)
        assert len(records) == len(entries)
        for rec in records:
            _storable(rec["subject"], column=True)
            json.loads(rec["data"])
        assert store.verify()["ok"]


# A password of any printable characters ('@', '/', '?', '#', spaces, quotes ...).
PASSWORD = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40).filter(
    lambda p: "://" not in p)


@given(PASSWORD)
def test_a_url_password_is_masked_whole_in_text_and_in_messages(password):
    url = f"postgresql://locus:{password}@db.example:5432/app"
    assert _redact.redact_text(f"connect to {url} now") == f"connect to postgresql://locus:{_redact.MASK}@db.example:5432/app now"
    assert _redact.redact_url(url) == f"postgresql://locus:{_redact.MASK}@db.example:5432/app"
    assert password in _redact.url_secrets(url)
