"""The ``locus`` CLI under bad input: one line on standard error and exit 2, never a traceback.

Exit 1 means "verification failed" (and, for approve/resume, "refused"), so bad input must
never produce it. Each case of issue 19 §5 is a regression test run as a real process (with
raw bytes in argv where the case is non-UTF-8); a hypothesis property test then drives the
CLI in-process and as real processes with arbitrary text, bytes, data and options.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.locus.infra.plugins.plugin_utils import _cli
from ansible_collections.locus.infra.plugins.plugin_utils.store import _audit, _refs, _store
from locus_testlib import REPO, VENV_BIN, run_playbook

DEEP = "{\"a\":" + "[" * 60000 + "]" * 60000 + "}"


def _strict(text):
    """json.loads that fails on NaN/Infinity, as any strict JSON reader would."""

    def bad(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=bad)


def _locus(*args, env=None, stdin=None):
    """Run the real console script; args may be bytes (argv is bytes on Linux)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUS_")}
    full_env.update(env or {})
    return subprocess.run(
        [str(VENV_BIN / "locus"), *args], env=full_env, input=stdin, capture_output=True, check=False, timeout=120
    )


def _assert_usage_error(proc, *expected):
    err = proc.stderr.decode("utf-8")  # strict: the error line itself is valid UTF-8
    assert proc.returncode == 2, (proc.returncode, err, proc.stdout[:300])
    assert "Traceback" not in err and "internal error" not in err
    assert err.startswith("locus: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err
    return err


@pytest.fixture
def cli_env(tmp_path):
    return {"LOCUS_STATE_DIR": str(tmp_path / "state")}


def _trail(env):
    with _store.open_store(state_dir=env["LOCUS_STATE_DIR"]) as store:
        return store.head(), store.verify()["ok"]


# -- issue 19 §5, case by case (real processes) -------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([b"tag", b"TASK", b"\xff\xfe"], "subject is not valid UTF-8"),
        ([b"tag", b"TASK", b"a\xed\xa0\x80b"], "subject is not valid UTF-8"),  # a UTF-8-encoded lone surrogate
        ([b"tag", b"TASK", b"x", b"--data", b'{"a": "\xff"}'], "--data is not valid UTF-8"),
        (["tag", "TASK", "x", "--data", '{"a": "\\ud800"}'], "--data.a is not valid UTF-8"),
        (["tag", "TASK", "x", "--data", '{"k\\udcff": 1}'], "a key is not valid UTF-8"),
        (["tag", "TASK", "x", "--data", DEEP], "nested deeper than 64 levels"),
        (["tag", "TASK", "x", "--data", '{"a":' + "[" * 65 + "]" * 65 + "}"], "nested deeper than 64 levels"),
        (["tag", "TASK", "x", "--data", '{"a": NaN}'], "NaN is not valid JSON"),
        (["tag", "TASK", "x", "--data", '{"a": Infinity}'], "Infinity is not valid JSON"),
        (["tag", "TASK", "x", "--data", '{"a": -Infinity}'], "-Infinity is not valid JSON"),
        (["tag", "TASK", "x", "--data", '{"a": 1e309}'], "1e309 is out of range"),
        (["tag", "TASK", "x", "--data", '{"a": 1' + "0" * 5000 + "}"], "--data is not valid JSON"),
        (["tag", "TASK", "x", "--data", "[1]"], "--data must be a JSON object"),
        (["audit", "show", "--last", "-1"], "--last: -1 is out of range"),
        (["audit", "show", "--last", "9" * 30], "is out of range"),
        (["audit", "show", "--last", "x"], "is not a whole number"),
        (["audit", "show", "--tag", "nope"], "not a REF-tag"),
        (["audit", "show", "--job", "LOCUS-JOB%"], "not a REF-tag"),
        ([b"audit", b"show", b"--tag", b"\xff"], "not a REF-tag"),
        ([b"halt", b"--reason", b"\xff"], "--reason is not valid UTF-8"),
        ([b"approve", b"LOCUS-HALT\xff"], "ref is not valid UTF-8"),
        ([b"resume", b"--token", b"\xff"], "--token is not valid UTF-8"),
        ([b"\xff"], "invalid choice"),
        (["tag"], "the following arguments are required"),
        (["audit", "export", "-o", ""], "--output is empty"),
        (["approve", "LOCUS-HALT20260101-001", "--policy", ""], "--policy is empty"),
    ],
)
def test_bad_argument_is_one_line_and_exit_2(cli_env, args, expected):
    assert _locus("tag", "TASK", "before", env=cli_env).returncode == 0
    before = _trail(cli_env)
    _assert_usage_error(_locus(*args, env=cli_env), expected)
    assert _trail(cli_env) == before  # nothing was recorded, and the trail still verifies


@pytest.mark.parametrize("command", ["head", "export"])
@pytest.mark.parametrize(("target", "reason"), [("missing/dir/out.json", "No such file or directory"), (".", "Is a directory")])
def test_output_into_a_missing_directory_or_onto_a_directory(cli_env, tmp_path, command, target, reason):
    proc = _locus("audit", command, "-o", str(tmp_path / target), env=cli_env)
    _assert_usage_error(proc, f"cannot write the {'head file' if command == 'head' else 'export'}", reason)


def _head(count, **over):
    return json.dumps({"count": count, "head_hash": "0" * 64, **over}).encode()


def _record(**over):
    fields = {"position": 1, "tag": "t", "ts": "", "subject": "", "data": "", "prev_hash": "", "hash": ""}
    return json.dumps({**fields, **over}).encode()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"count": 1e309, "head_hash": "' + b"0" * 64 + b'"}', "1e309 is out of range"),
        (_head(float("nan")), "NaN is not valid JSON"),
        (_head(-1), "count must be a whole number"),
        (_head(1.5), "count must be a whole number"),
        (_head(True), "count must be a whole number"),
        (_head(1, head_hash="xyz"), "head_hash must be 64 hex digits"),
        (_head(1, last_tag=5), "last_tag must be"),
        (b'{"count": 1}', "not an exported head"),
        (b"[1, 2]", "not an exported head"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"a":' + b"[" * 60000 + b"]" * 60000 + b"}", "nested deeper than 64 levels"),
        (b"", "not valid JSON"),
    ],
)
def test_malformed_head_file_is_exit_2(cli_env, tmp_path, content, expected):
    head = tmp_path / "head.json"
    head.write_bytes(content)
    _assert_usage_error(_locus("audit", "verify", "--head", str(head), env=cli_env), expected)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"garbage", "is not valid JSON"),
        (b"1", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (b'{"position": 1}', "missing data, hash, prev_hash, subject, tag, ts"),
        (_record(position="1"), "position must be a number"),
        (_record(tag=["t"]), "tag must be a string"),
        (_record(tag="\udcff"), "not valid UTF-8"),
        (_record(position=float("nan")), "NaN is not valid JSON"),
        (b"{\"a\":" + b"[" * 60000 + b"]" * 60000 + b"}", "nested deeper than 64 levels"),
        (b"\xff", "not UTF-8"),
    ],
)
def test_malformed_export_line_is_exit_2(cli_env, tmp_path, line, expected):
    for i in range(2):
        assert _locus("tag", "TASK", f"r{i}", env=cli_env).returncode == 0
    export = tmp_path / "trail.jsonl"
    assert _locus("audit", "export", "-o", str(export), env=cli_env).returncode == 0
    export.write_bytes(export.read_bytes() + line + b"\n")
    head = tmp_path / "head.json"
    assert _locus("audit", "head", "-o", str(head), env=cli_env).returncode == 0
    for extra in ([], ["--head", str(head)]):
        err = _assert_usage_error(_locus("audit", "verify", "--file", str(export), *extra, env=cli_env), expected)
        assert f"{export}:3" in err or "not UTF-8" in err


def test_wellformed_but_wrong_export_still_fails_verification_with_exit_1(cli_env, tmp_path):
    # The other side of the line: input that parses is verified, and a failed check is exit 1.
    export = tmp_path / "trail.jsonl"
    export.write_text(json.dumps({"position": 1, "tag": "LOCUS-TASK20260101-001", "ts": "t", "subject": "s",
                                  "data": "{}", "prev_hash": "0" * 64, "hash": "f" * 64}) + "\n")
    proc = _locus("audit", "verify", "--file", str(export), env=cli_env)
    assert proc.returncode == 1 and b"FAILED (modified)" in proc.stdout and proc.stderr == b""


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--state-dir", "", "audit", "head"], {}, "the state directory is empty"),
        (["--state-dir", "  ", "audit", "head"], {}, "the state directory is empty"),
        (["audit", "head"], {"LOCUS_STATE_DIR": ""}, "LOCUS_STATE_DIR is set but empty"),
        (["tag", "TASK", "x"], {"LOCUS_STATE_DIR": ""}, "LOCUS_STATE_DIR is set but empty"),
        (["--state-url", "", "audit", "head"], {}, "the state URL is empty"),
        (["audit", "head"], {"LOCUS_STATE_URL": ""}, "LOCUS_STATE_URL is set but empty"),
        ([b"--state-dir", b"/tmp/\xff", b"status"], {}, "the state directory is not valid UTF-8"),
        ([b"--state-url", b"postgresql://u:pw@h/\xff", b"status"], {}, "--state-url is not valid UTF-8"),
        (["--state-url", "postgresql://u:pw@[::1/x", "status"], {}, "Invalid IPv6 URL"),
    ],
)
def test_empty_or_invalid_store_setting_is_refused(tmp_path, args, env, expected):
    # HOME points at an empty directory: a silent fall-back would create the default store there.
    home = tmp_path / "home"
    home.mkdir()
    err = _assert_usage_error(_locus(*args, env={"HOME": str(home), **env}), expected)
    assert "pw" not in err
    assert list(home.iterdir()) == []


@pytest.mark.parametrize("command", [["audit", "export"], ["audit", "show"], ["audit", "head"], ["status"], ["tag", "TASK", "x"]])
def test_closed_or_full_standard_output_is_exit_2(cli_env, command):
    assert _locus("tag", "TASK", "something to print", env=cli_env).returncode == 0
    closed = subprocess.run([str(VENV_BIN / "locus"), *command], env={**os.environ, **cli_env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, check=False, pass_fds=(), close_fds=True,
                            preexec_fn=lambda: os.close(1))
    _assert_usage_error(subprocess.CompletedProcess(closed.args, closed.returncode, b"", closed.stderr), "standard output is closed")
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([str(VENV_BIN / "locus"), *command], env={**os.environ, **cli_env}, stdout=full,
                              stderr=subprocess.PIPE, check=False)
    _assert_usage_error(subprocess.CompletedProcess(proc.args, proc.returncode, b"", proc.stderr), "No space left on device")


def test_token_from_a_closed_standard_input_is_exit_2(cli_env):
    proc = subprocess.run([str(VENV_BIN / "locus"), "resume", "--token", "-"], env={**os.environ, **cli_env},
                          capture_output=True, check=False, preexec_fn=lambda: os.close(0))
    _assert_usage_error(subprocess.CompletedProcess(proc.args, proc.returncode, b"", proc.stderr), "--token is empty")


def test_export_into_a_closed_pipe_is_quiet(cli_env):
    with _store.open_store(state_dir=cli_env["LOCUS_STATE_DIR"]) as store:
        store.record_many([("TASK", f"r{i}", {"pad": "x" * 200}) for i in range(3000)])  # ~1.5 MB: more than a pipe holds
    # `locus audit export | head -c 100`: the reader takes 100 bytes and goes away.
    with subprocess.Popen([str(VENV_BIN / "locus"), "audit", "export"], env={**os.environ, **cli_env},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert len(proc.stdout.read(100)) == 100
        proc.stdout.close()
        err = proc.stderr.read()
    assert proc.returncode == 0 and err == b""


def test_show_json_is_valid_json_even_for_a_record_holding_nan(cli_env):
    """A record written before the check (NaN in data) is shown with its data as the stored string."""
    with _store.open_store(state_dir=cli_env["LOCUS_STATE_DIR"]) as store, store.transaction() as tx:
        # What an older version stored for --data '{"a": NaN}': bypass the check, keep the chain valid.
        tag = _refs.format_tag("TASK", "20260101", 1)
        tx.execute("INSERT INTO locus_ref_sequence (action, day, last_seq) VALUES ('TASK', '20260101', 1)")
        data = '{"a":NaN}'
        tx.execute(
            "INSERT INTO locus_audit (position, tag, ts, subject, data, prev_hash, hash) VALUES (1, ?, 't', 's', ?, ?, ?)",
            (tag, data, _audit.GENESIS, _audit.record_hash(tag, "t", "s", data, _audit.GENESIS)),
        )
    proc = _locus("audit", "show", "--json", env=cli_env)
    assert proc.returncode == 0
    shown = _strict(proc.stdout.decode("utf-8"))
    assert shown["data"] == data and shown["tag"] == tag


def test_unicode_and_nul_in_data_are_recorded_exactly(cli_env):
    """Valid input is not over-refused: any UTF-8 text, escapes and NUL inside JSON strings."""
    data = {"emoji": "\U0001f600", "nul": "a\x00b", "rtl": "\u202e", "deep": [[[["ok"]]]], "n": -0.0, "big": 10**30}
    proc = _locus("tag", "TASK", "\u00e9t\u00e9 \U0001f680", "--data", json.dumps(data), env=cli_env)
    assert proc.returncode == 0, proc.stderr
    shown = _strict(_locus("audit", "show", "--json", "--last", "1", env=cli_env).stdout.decode("utf-8"))
    assert shown["subject"] == "\u00e9t\u00e9 \U0001f680"
    assert {k: shown["data"][k] for k in data} == data


def test_show_escapes_terminal_controls_in_subjects(cli_env):
    subject = "rotate logs\x1b[2K\rdelete vm 101\u202e\x9b31m\u2028\nsecond line \U000e0041"
    assert _locus("tag", "TASK", subject, env=cli_env).returncode == 0
    raw = ("\x1b", "\r", "\u202e", "\x9b", "\u2028", "\U000e0041")
    out = _locus("audit", "show", env=cli_env).stdout.decode("utf-8")
    assert out.count("\n") == 1 and not any(c in out for c in raw)
    assert "rotate logs\\u001b[2K\\u000ddelete vm 101\\u202e\\u009b31m\\u2028\\u000asecond line \\udb40\\udc41" in out
    tag = out.split()[1]
    for command in (["audit", "show", "--json"], ["audit", "export"], ["audit", "show", "--tag", tag]):
        text = _locus(*command, env=cli_env).stdout.decode("utf-8")
        assert not any(c in text for c in raw), command
        if "--json" in command or "export" in command:
            assert _strict(text)["subject"] == subject  # the escapes are JSON's: the value is exact
        else:
            assert _strict(text.split("\n", 1)[1])["subject"] == subject  # the record in full, after its line
    halted = _locus("halt", "--reason", subject, env=cli_env)  # the guard's commands print through the same filter
    assert halted.returncode == 0 and not any(c in halted.stdout.decode("utf-8") for c in raw)


@pytest.mark.parametrize("encoding", ["latin-1", "ascii"])
def test_json_output_stays_valid_on_a_terminal_that_is_not_utf8(cli_env, encoding):
    subject = "\u00e9t\u00e9 \U0001f680 \u20ac"
    assert _locus("tag", "TASK", subject, env=cli_env).returncode == 0
    env = {**cli_env, "PYTHONIOENCODING": encoding}
    for command in (["audit", "show", "--json"], ["audit", "export"], ["audit", "show", "--json", "--tag", "LOCUS-TASK20260101-001"]):
        proc = _locus(*command, env=env)
        if "--tag" in command:  # no such record: the error line is exit 2, also in this encoding
            _assert_usage_error(proc, "no audit record with tag")
            continue
        assert proc.returncode == 0 and proc.stdout.isascii()
        assert _strict(proc.stdout.decode("ascii"))["subject"] == subject
    text = _locus("audit", "show", env=env)
    assert text.returncode == 0 and text.stderr == b""


def test_non_utf8_token_on_stdin_is_exit_2(cli_env):
    assert _locus("halt", "--reason", "drill", env=cli_env).returncode == 0
    proc = _locus("resume", "--token", "-", env={**cli_env, "LOCUS_APPROVAL_KEY": "k" * 32}, stdin=b"\xff\xfe\n")
    assert proc.returncode in (1, 2) and b"Traceback" not in proc.stderr and proc.stderr.count(b"\n") == 1


# -- the property: whatever the input, exit 0/2 (1 only from a check), one line, valid JSON -------

# Text as it reaches main(): any code point, lone surrogates included (what non-UTF-8 argv
# bytes become), and bytes decoded the way Python decodes argv.
ANY_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.binary(max_size=40).map(os.fsdecode),
    st.sampled_from(["", " ", "-", "--", "-1", "0", "1e309", "NaN", "LOCUS-TASK20260101-001", "LOCUS-JOB20260101-999",
                     "/", ".", "/dev/null", "/nonexistent/x", "\x00", "\ud800", "\udcff"]),
)
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                      st.text(st.characters(exclude_categories=()), max_size=20))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(st.characters(exclude_categories=()), max_size=8), inner, max_size=4)),
    max_leaves=20)
DATA = st.one_of(
    JSON_VALUE.map(lambda v: json.dumps(v, ensure_ascii=False)),
    JSON_VALUE.map(lambda v: json.dumps({"v": v})),
    st.integers(0, 60_000).map(lambda n: '{"a":' + "[" * n + "]" * n + "}"),
    ANY_TEXT,
)
VALID_ACTION = st.sampled_from(["TASK", "task", "JOB", "VALIDATE", "HALT"])
# Mostly valid, to get past argparse to the subject and the data.
ACTION = st.integers(0, 3).flatmap(lambda n: ANY_TEXT if n == 0 else VALID_ACTION)
# File names: relative (the fuzz runs in its own directory, as root: it must not write elsewhere),
# plus a few absolute ones that cannot be written.
RELATIVE = ANY_TEXT.map(lambda p: p.lstrip("/~") or "x")
PATH = st.one_of(st.sampled_from(["missing/x", "sub", "head.json", "trail.jsonl", "", "/", "/nonexistent/x", "sub/missing/x"]), RELATIVE)


@st.composite
def argvs(draw):
    """An argv: one of the CLI's commands, its arguments drawn from arbitrary input."""
    kind = draw(st.sampled_from(["tag", "show", "verify", "head", "export", "status", "halt", "approve", "resume", "raw"]))
    if kind == "tag":
        argv = ["tag", draw(ACTION), draw(ANY_TEXT)]
        if draw(st.booleans()):
            argv += ["--data", draw(DATA)]
    elif kind == "show":
        argv = ["audit", "show"] + draw(st.sampled_from([[], ["--json"]]))
        option = st.tuples(st.sampled_from(["--last", "--tag", "--job"]), st.one_of(ANY_TEXT, st.integers().map(str)))
        argv += draw(st.one_of(st.just([]), option.map(list)))
    elif kind == "verify":
        pairs = st.lists(st.tuples(st.sampled_from(["--head", "--file"]), PATH), max_size=2)
        argv = ["audit", "verify"] + draw(pairs.map(lambda ps: [a for p in ps for a in p]))
    elif kind in ("head", "export"):
        argv = ["audit", kind] + draw(st.one_of(st.just([]), PATH.map(lambda p: ["-o", p])))
    elif kind == "status":
        argv = ["status"]
    elif kind == "halt":
        argv = ["halt", "--reason", draw(ANY_TEXT)]
    elif kind == "approve":
        argv = ["approve", draw(ANY_TEXT)] + draw(st.one_of(st.just([]), ANY_TEXT.map(lambda t: ["--lifetime", t])))
    elif kind == "resume":
        argv = ["resume", "--token", draw(ANY_TEXT)]
    else:
        argv = draw(st.lists(ANY_TEXT, max_size=5))
    if draw(st.integers(0, 9)) == 0:  # now and then, a global option of its own
        argv = [draw(st.sampled_from(["--state-dir", "--state-url"])), draw(st.one_of(RELATIVE, st.just(""))), *argv]
    return kind, argv


# Commands whose whole standard output is JSON, and those printing one JSON value per line.
JSON_OUTPUT = {"head", "status"}
JSONL_OUTPUT = {"export"}
EXIT_1_ALLOWED = {"verify", "approve", "resume"}  # a failed check / a refusal (an APPROVAL record)


def _check_outcome(kind, argv, code, out, err):
    assert code in ((0, 1, 2) if kind in EXIT_1_ALLOWED else (0, 2)), (argv, code, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    assert (out + err).replace("\n", "").isprintable(), (argv, out, err)  # nothing that drives a terminal
    if code == 2:
        assert err.startswith("locus: error: ") and err.count("\n") == 1, (argv, err)
    if code == 0 and kind in JSON_OUTPUT and "-o" not in argv:
        _strict(out)
    if code == 0 and (kind in JSONL_OUTPUT or (kind == "show" and "--json" in argv)) and "-o" not in argv:
        # JSON Lines end at "\n" only: str.splitlines() would also cut at U+2028 or U+0085,
        # which JSON keeps unescaped inside strings.
        for line in out.split("\n")[:-1]:
            _strict(line)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    (base / "sub").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for name in ("LOCUS_STATE_URL", "LOCUS_STATE_DIR", "LOCUS_POLICY", "LOCUS_APPROVAL_KEY", "LOCUS_APPROVAL_KEY_FILE"):
            mp.delenv(name, raising=False)
        mp.chdir(base)  # relative file names in argv land here
        mp.setenv("HOME", str(base / "home"))  # and "~" too
        mp.setenv("LOCUS_STATE_DIR", str(base / "state"))
        # A few records and files to work on: a head, an export, one of them tampered later.
        assert _cli.main(["tag", "TASK", "seed", "--data", '{"k": 1}']) == 0
        assert _cli.main(["audit", "head", "-o", "head.json"]) == 0
        assert _cli.main(["audit", "export", "-o", "trail.jsonl"]) == 0
        yield base


def _run_main(argv):
    out, err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with redirect_stdout(out), redirect_stderr(err):
        code = _cli.main(argv)
    out.flush()
    err.flush()
    # Strict decoding: what the CLI printed is valid UTF-8.
    return code, out.buffer.getvalue().decode("utf-8"), err.buffer.getvalue().decode("utf-8")


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=argvs())
def test_property_in_process(fuzz_dir, case):
    kind, argv = case
    code, out, err = _run_main(argv)
    _check_outcome(kind, argv, code, out, err)


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=argvs())
def test_property_real_process(fuzz_dir, case):
    kind, argv = case
    if any("\x00" in a for a in argv):  # a real argv cannot hold NUL (in-process covers it)
        argv = [a.replace("\x00", "") for a in argv]
    proc = subprocess.run([str(VENV_BIN / "locus"), *(os.fsencode(a) if _encodable(a) else a.encode("utf-8", "surrogatepass")
                                                      for a in argv)],
                          cwd=fuzz_dir, capture_output=True, check=False, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "LOCUS_STATE_URL"})
    _check_outcome(kind, argv, proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8"))


def _encodable(text):
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


def test_the_store_still_verifies_after_the_fuzzing(fuzz_dir):
    with _store.open_store(state_dir=str(fuzz_dir / "state")) as store:
        assert store.verify()["ok"]
        for rec in store.iter_records():
            _strict(rec["data"])
            rec["subject"].encode("utf-8")


# -- the same checks where the ref_tag module and lookup take subject and data ------------------


def test_ref_tag_module_and_lookup_refuse_what_the_trail_cannot_hold(tmp_path):
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state")}
    proc = run_playbook(REPO / "tests/integration/playbooks/ref_tag_bad_input.yml", env=env,
                        args=["-e", "bad_subject=" + os.fsdecode(b"caf\xe9")])
    line = next(line for line in proc.stdout.splitlines() if '"RESULT ' in line)
    result = json.loads(line.split("RESULT ", 1)[1].rstrip('"').replace('\\"', '"'))
    assert result["nan"] == "data.x is nan, which JSON cannot represent"
    assert result["deep"] == "data is nested deeper than 64 levels"
    assert result["module"].startswith("subject is not valid UTF-8 text")
    assert "ref_tag lookup: cannot record a TASK record: the subject is not valid UTF-8 text" in result["lookup"]
    with _store.open_store(state_dir=env["LOCUS_STATE_DIR"]) as store:
        records = list(store.iter_records())
        assert store.verify()["ok"]
    assert result["fine"] in [r["tag"] for r in records]
    assert not [r for r in records if r["subject"] in ("nan", "deep") or r["subject"].startswith("caf")]
    for rec in records:
        _strict(rec["data"])
