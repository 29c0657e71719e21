# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep secrets out of the audit trail and of anything we print.

Private API of the collection (may change without notice). Every secret pattern of the
collection lives here (the guard's plaintext_secret rule uses them too). Three nets:

* keys whose *name* says secret (``password``, ``clientSecret``, ``PGPASSWORD``, ``X-Api-Key``,
  ``pwd`` ...) have their value replaced whole (:func:`is_secret_key`);
* text that *looks* like a secret is masked wherever it appears: private keys, vendor API
  tokens, ``Authorization`` values, bearer tokens, passwords in URLs, ``key=value`` /
  ``"key": "value"`` / ``--key value`` assignments to a secret-named key (:func:`secret_spans`);
* values *known* to be secret in this process (vault-decrypted values, values of secret-named
  variables and arguments, ``no_log`` arguments) are masked literally wherever they appear
  (:func:`remember`; the controller's collector is plugin_utils/_secrets.py). Worker processes
  are forked from the controller, so they inherit what the controller has learnt. A known
  value is also masked in its encoded forms (URL, JSON, base64 at any offset, hex).

Text is also made storable: lone surrogates (non-UTF-8 bytes decoded with ``surrogateescape``)
become ``\\xNN`` escapes, and NUL ``\\x00`` where JSON does not escape it, deterministically
(:func:`clean_text`).
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
from urllib.parse import quote, unquote

MASK = "********"
MAX_STRING = 2048  # longer strings are cut: the audit trail is a trail, not a copy
MIN_LITERAL = 4  # shorter known values are not masked literally (they would mask every "1234")
_WINDOW = MAX_STRING * 4  # text beyond this is never recorded, so never scanned either

# -- key names -----------------------------------------------------------------------------------
# A key is split into lower-case words (camelCase, snake_case, kebab-case, dotted): secret when a
# word is one of _SECRET_WORDS, when the words run together contain one of _SECRET_JOINED, or when
# they end with one of _SECRET_ENDINGS (PGPASSWORD, requirepass, MYSQL_PWD, authToken).
_SECRET_WORDS = frozenset((
    "pass", "passwd", "password", "passwords", "passphrase", "pwd", "pw", "secret", "secrets", "token", "tokens",
    "apikey", "auth", "authorization", "cookie", "cookies", "credential", "credentials", "creds", "signature",
    "privkey", "psk", "otp", "jwt", "bearer", "sessionid", "hmac",
))
_SECRET_JOINED = (
    "password", "passwd", "passphrase", "secret", "apikey", "privatekey", "secretkey", "accesskey", "authkey",
    "hmackey", "signingkey", "encryptionkey", "masterkey", "presharedkey", "sharedkey", "accesstoken",
    "refreshtoken", "sessiontoken", "authtoken", "idtoken", "credential", "licensekey", "sessionid",
)
_SECRET_ENDINGS = ("pass", "pwd", "token", "tokens", "secret", "secrets")
_NOT_SECRET_JOINED = ("bypass", "compass", "passthrough", "tokenizer")
# nginx's proxy_pass, fastcgi_pass ... pass requests on, they hold no password.
_PASS_ON = frozenset(("proxy", "fastcgi", "uwsgi", "grpc", "scgi", "memcached", "by", "first", "second", "multi", "single"))
# Words after which a secret-named key holds metadata, not the secret (password_file, token_url).
_METADATA_WORDS = frozenset((
    "file", "files", "path", "dir", "directory", "length", "len", "policy", "name", "type", "url", "uri", "endpoint",
    "expiry", "expires", "expiration", "ttl", "age", "enabled", "required", "mode", "method", "format", "algorithm",
    "size", "prompt", "env", "var", "header", "field", "param", "kind", "source", "backend", "provider", "rotation",
    "timeout", "hint", "changed", "set", "ref", "tag",
))
# "max_tokens", "input_tokens": counts of LLM tokens, not secrets.
_COUNT_WORDS = frozenset(("max", "min", "count", "num", "input", "output", "total", "limit", "budget", "used", "cache",
                          "prompt", "completion", "estimate", "estimated", "per"))
_CAMEL_1 = re.compile(r"([a-z0-9])([A-Z])")
_CAMEL_2 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_NON_ALNUM = re.compile(r"[^A-Za-z0-9]+")


def _words(name):
    name = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", name))
    return [w for w in _NON_ALNUM.split(name.lower()) if w]


def is_secret_key(name):
    """True when ``name`` (a variable, argument, header, JSON or query key) names a secret."""
    if not isinstance(name, str) or not name:
        return False
    return _is_secret_key(name)


@functools.lru_cache(maxsize=8192)  # the same keys come back in every task result
def _is_secret_key(name):
    words = _words(name)
    if not words:
        return False
    if words[-1] in _METADATA_WORDS and len(words) > 1:
        return False
    if words[-1] == "pass" and len(words) > 1 and words[-2] in _PASS_ON:
        return False
    if words[-1] in ("tokens", "token") and _COUNT_WORDS.intersection(words[:-1]):
        return False
    if words[0] == "tokens" and len(words) > 1 and _COUNT_WORDS.intersection(words[1:]):
        return False
    if _SECRET_WORDS.intersection(words):
        return True
    joined = "".join(words)
    if any(n in joined for n in _NOT_SECRET_JOINED):
        return False
    return any(s in joined for s in _SECRET_JOINED) or joined.endswith(_SECRET_ENDINGS)


# -- text that looks like a secret ---------------------------------------------------------------
# Each pattern masks its group "v" when it has one, else the whole match.
_VALUE_PATTERNS = [(needles, re.compile(rx)) for needles, rx in (
    (("PRIVATE KEY",), r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|$)"),
    (("$ANSIBLE_VAULT",), r"\$ANSIBLE_VAULT;[^\s]*(?:\s+[0-9a-fA-F]+)*"),
    # user:password@ in URLs (also an empty user, and '@', '/' or spaces inside the password): the
    # password runs to the last '@' on the line that is followed by a host. "host:8080/x@y" is
    # masked too: a password can look like a port and a path, and masking too much is the safe side.
    (("://",), r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@?#\"']*:(?P<v>(?:(?!://)[^\r\n])*)"
               r"@(?=(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.%\-]*)(?::\d*)?(?:[/?#\s\"'<>,;)\]}]|$))"),
    (("://",), r"(?<=://)(?P<v>[A-Za-z0-9_\-]{20,})(?=@)"),  # a token as the URL's user
    (("sk-ant-",), r"\bsk-ant-[A-Za-z0-9_\-]{6,}"),  # Anthropic API keys
    (("_live_", "_test_"), r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{8,}"),  # Stripe
    (("sk-",), r"\bsk-[A-Za-z0-9_\-]{16,}"),  # OpenAI-style keys
    (("gh", "github_pat_"), r"\bgh[pousr]_[A-Za-z0-9]{16,}|\bgithub_pat_[A-Za-z0-9_]{20,}"),  # GitHub tokens
    (("glpat-",), r"\bglpat-[A-Za-z0-9_\-]{16,}"),  # GitLab tokens
    (("AKIA", "ASIA"), r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    (("AIza",), r"\bAIza[0-9A-Za-z_\-]{30,}"),  # Google API keys
    (("xox",), r"\bxox[abposr]-[A-Za-z0-9\-]{8,}"),  # Slack tokens
    (("nbt_",), r"\bnbt_[A-Za-z0-9]+\.[A-Za-z0-9]+"),  # NetBox v2 tokens
    (("K10",), r"\bK10[0-9a-f]{40,}::[^\s'\"]+"),  # K3s secure tokens
    (("eyJ",), r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),  # JWTs
    (("PVEAPIToken", "PVEAuthCookie"), r"\b(?:PVEAPIToken|PVEAuthCookie)=[^\s'\"]+"),  # Proxmox API token / ticket
    # the whole value of an Authorization header, whatever its scheme (Bearer, Token, Basic, ...)
    (("authorization",), r"(?i)\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?P<v>[^\"'\r\n,;}]+)"),
    (("bearer",), r"(?i)\bbearer\s+(?P<v>[A-Za-z0-9._~+/=\-:]+)"),
    (("Basic", "Digest", "Token", "Negotiate"), r"\b(?:Basic|Digest|Token|Negotiate)\s+(?P<v>[A-Za-z0-9+/._\-]{6,}={0,2})"),
)]
# Every secret-named key contains one of these (lower-cased): text without any has no assignment to look at.
_KEY_STEMS = ("pw", "pass", "secret", "token", "key", "auth", "cookie", "cred", "sig", "priv", "psk", "otp", "jwt", "bearer",
              "session", "hmac")

# key = value, key: value, "key": "value", key => value, --key=value (the key is checked by name).
# Matched as lookaheads from every word start, so that "ssh: password=x" finds "password=x"
# although "ssh: ..." is a candidate too.
_ASSIGN = re.compile(
    r"""(?<![A-Za-z0-9_.])(?=(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<sep>["']?[ \t]*(?:=>|[:=])[ \t]*)"""
    r"""(?P<value>"(?:[^"\\\r\n]|\\.)*"?|'(?:[^'\\\r\n]|\\.)*'?|\$\{[^}\s]*\}|\{\{.*?\}\}|[^\s,;&"'<>{}\[\]()]+))"""
)
# --password VALUE, -password VALUE on a command line.
_FLAG = re.compile(r"""(?<![\w\-])(?=--?(?P<key>[A-Za-z][A-Za-z0-9_\-]*)[ \t]+(?P<value>"[^"]*"|'[^']*'|[^\s-][^\s]*))""")
# key VALUE (config files: "requirepass foobared", "password hunter2"): only values that do not read
# like a word of prose, so "the password for bob" keeps its words.
_LOOSE = re.compile(r"""(?<![A-Za-z0-9_.\-])(?=(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)[ \t]+(?P<value>[^\s"'#;,=:][^\s"'#;,]*))""")
_PROSE = re.compile(r"^[a-z]{1,12}[.,:;!?]?$")
# <password>VALUE</password> in XML.
_XML = re.compile(r"<(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?:\s[^>]*)?>(?P<value>[^<]+)</(?P=key)>")


def _assignment_spans(text, loose):
    low = text.lower()
    if not any(stem in low for stem in _KEY_STEMS):
        return
    for m in _ASSIGN.finditer(text):
        if is_secret_key(m.group("key")) and m.group("value").strip("\"'"):
            yield m.start("value"), m.end("value"), m.group("key")
    for m in _XML.finditer(text):
        if is_secret_key(m.group("key")):
            yield m.start("value"), m.end("value"), m.group("key")
    for m in _FLAG.finditer(text):
        if is_secret_key(m.group("key")):
            yield m.start("value"), m.end("value"), m.group("key")
    for m in _LOOSE.finditer(text):
        value = m.group("value")
        if is_secret_key(m.group("key")) and (loose or not _PROSE.match(value)) and value != MASK:
            yield m.start("value"), m.end("value"), m.group("key")


def secret_spans(text, loose=False):
    """``[(start, end, key)]``: the parts of ``text`` that are secrets, sorted and merged.

    ``key`` is the secret-named key of an assignment, or None for a value that looks like a
    secret by itself. ``loose`` also treats any word after a secret-named key as its value
    (configuration files); otherwise words of prose are kept.
    """
    spans = []
    low = text.lower()  # needles in lower case also find the case-insensitive patterns
    for needles, pattern in _VALUE_PATTERNS:
        if not any(n in text or n in low for n in needles):
            continue
        for m in pattern.finditer(text):
            if "v" in pattern.groupindex and m.group("v") is not None:
                if m.group("v"):
                    spans.append((m.start("v"), m.end("v"), None))
            elif m.end() > m.start():
                spans.append((m.start(), m.end(), None))
    spans.extend(_assignment_spans(text, loose))
    return _merge(spans)


# Values that stand for a secret instead of holding one: a template, an environment or shell
# reference, a vault tag, a file path, a placeholder word or a mask of asterisks.
_REFERENCE = re.compile(r"^(\{\{|\{%|\$|!vault|<|%\(|\(|/|~|\.\.?/|null$|none$|true$|false$|yes$|no$|\*+$|changeme$)", re.IGNORECASE)
MIN_PLAINTEXT = 6  # shorter assigned values are placeholders ("x", "test"), not configured secrets


def is_reference(value):
    """True when an assigned ``value`` names a secret kept elsewhere (``{{ vault_pw }}``, ``${PW}``, a path)."""
    value = value.strip("\"'")
    return bool(_REFERENCE.match(value)) or value.endswith(("_file", ".key", ".pem"))


def plaintext_secret_spans(text):
    """The spans of :func:`secret_spans` (``loose``) that write a secret in plain text.

    Credential-shaped values always count; a value assigned to a secret-named key counts when it
    is a literal of at least ``MIN_PLAINTEXT`` characters (or already the mask), not a reference."""
    out = []
    for start, end, key in secret_spans(text, loose=True):
        value = text[start:end].strip("\"'")
        if key is None or value == MASK or (len(value) >= MIN_PLAINTEXT and not is_reference(value)):
            out.append((start, end, key))
    return out


def _merge(spans):
    spans = sorted(spans, key=lambda s: (s[0], s[1]))
    merged = []
    for start, end, key in spans:
        if merged and start <= merged[-1][1]:
            prev = merged[-1]
            merged[-1] = (prev[0], max(prev[1], end), prev[2] if prev[2] is not None else key)
        else:
            merged.append((start, end, key))
    return merged


_PIECE_SPLIT = re.compile(r"[/@:?#&=\s'\"]+")


_AUTH_SCHEME = re.compile(r"(?i)^(?:bearer|basic|digest|token|negotiate)\s+")


def _with_pieces(values):
    out = []
    for value in values:
        value = _AUTH_SCHEME.sub("", value)  # "Token abc": the credential is abc, not the word Token
        out.append(value)
        out.extend(p for p in _PIECE_SPLIT.split(value) if len(p) >= MIN_LITERAL)
    return out


def _literal_spans(text, literals):
    spans = []
    for s in literals:
        start = text.find(s)
        while start != -1:
            spans.append((start, start + len(s), None))
            start = text.find(s, start + len(s))
    return spans


def mask_spans(text, spans, keep_quotes=True):
    """``text`` with each ``(start, end, ...)`` span replaced by :data:`MASK` (quotes around a value kept)."""
    out, pos = [], 0
    for span in spans:
        start, end = span[0], span[1]
        chunk = text[start:end]
        if keep_quotes and len(chunk) >= 2 and chunk[0] in "\"'" and chunk[-1] == chunk[0]:
            start, end = start + 1, end - 1
        out.append(text[pos:start])
        out.append(MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


# -- text that can be stored ----------------------------------------------------------------------
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogate(m):
    code = ord(m.group(0))
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, decoded with surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def clean_text(text, nul=False):
    """``text`` (str or bytes) as a str that encodes to UTF-8, deterministically.

    ``nul``: also escape NUL (for plain columns such as a record's subject; inside JSON data
    NUL is escaped by the serialisation and recorded exactly).
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "surrogateescape")
    elif not isinstance(text, str):
        text = str(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _LONE_SURROGATE.sub(_escape_surrogate, text)
    if nul and "\x00" in text:
        text = text.replace("\x00", "\\x00")
    return text


def _json_escape(char):
    n = ord(char)
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000  # beyond the BMP: a surrogate pair, as JSON spells it
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


def printable(text):
    """``text`` safe on a terminal: control and format characters (ESC, BEL, CR, newlines, U+202E ...)
    as ``\\uXXXX``, JSON's own escapes (JSON text stays valid JSON with the same values). For text
    from outside that is shown to people: a halt's reason, who asked for it, what a record says."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _json_escape(c) for c in text)


# -- values known to be secret --------------------------------------------------------------------
_KNOWN = set()
_known_sorted = ()
# Never learnt as secrets: words that are not, and the audit records' own vocabulary.
_NOT_SECRETS = frozenset(("true", "false", "none", "null", "yes", "no", "on", "off", "changeme", "value_specified_in_no_log_parameter",
                          "changed", "failed", "skipped", "unreachable", "interrupted", "start", "end", "sqlite", "postgresql",
                          "localhost", "censored", "task", "play", "host", "status", "event", "user", "controller"))


MIN_ENCODED = 6  # shorter known values are not searched for in base64 or hex (too few characters to be sure)
_URLSAFE = str.maketrans("+/", "-_")


def _encoded(secret):
    """A secret's base64 and hex forms. Base64 inside a larger blob depends on the byte offset
    (mod 3): per offset, the characters made of the secret's bits alone (a character or two at
    each end also hold the neighbours' bits and stay visible; they give away at most 10 bits)."""
    raw = secret.encode("utf-8", "surrogateescape")
    if len(raw) < MIN_ENCODED:
        return set()
    out = {raw.hex(), raw.hex().upper()}
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw).decode("ascii")
        core = enc[-(-8 * k // 6):(8 * (k + len(raw))) // 6]
        out.update((core, core.translate(_URLSAFE)))
    whole = base64.b64encode(raw).decode("ascii").rstrip("=")  # standalone: its last character too
    out.update((whole, whole.translate(_URLSAFE)))
    return out


def _variants(secret):
    """The forms a secret takes when it is embedded: as is, URL-encoded, JSON-escaped, base64, hex."""
    out = {secret, quote(secret, safe=""), quote(secret, safe="/:")}
    out.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    out.add(json.dumps(secret)[1:-1])
    out.update(_encoded(secret))
    return {v for v in out if len(v) >= MIN_LITERAL}


def remember(*values):
    """Learn ``values`` (strings, or every string inside dicts and lists) as secrets of this process."""
    global _known_sorted
    added = False
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend(value)
        elif isinstance(value, (str, bytes)):
            text = clean_text(value)
            if len(text) < MIN_LITERAL or text.lower() in _NOT_SECRETS or MASK in text or not text.strip("*"):
                continue
            for variant in _variants(text):
                if variant not in _KNOWN:
                    _KNOWN.add(variant)
                    added = True
        elif value is not None and not isinstance(value, bool) and isinstance(value, (int, float)):
            stack.append(str(value))
    if added:
        _known_sorted = tuple(sorted(_KNOWN, key=len, reverse=True))


def known():
    """The secrets this process knows, longest first."""
    return _known_sorted


def forget_all():
    """Forget every known secret (a new run in the same process)."""
    global _known_sorted
    _KNOWN.clear()
    _known_sorted = ()


def _literals(secrets):
    if not secrets:
        return _known_sorted
    extra = []
    for s in secrets:
        if isinstance(s, (str, bytes)):
            s = clean_text(s)
            if len(s) >= MIN_LITERAL and s.strip("*"):
                extra.extend(_variants(s))
    return tuple(sorted(set(extra).union(_known_sorted), key=len, reverse=True))


def _replace_literals(text, literals):
    # Repeated until nothing is left: masking one secret can join the text around it into another.
    for _round in range(8):
        found = False
        for s in literals:
            if s in text:
                text = text.replace(s, MASK)
                found = True
        if not found:
            break
    return text


def scrub_literals(text, secrets=None, clean=True):
    """``text`` with every known secret (and ``secrets``) masked; cleaned (:func:`clean_text`) unless ``clean`` is false."""
    text = clean_text(text) if clean else (text if isinstance(text, str) else str(text))
    return _replace_literals(text, _literals(secrets) if secrets is not None else _known_sorted)


def scrub(value, secrets=None, clean=True, _depth=0):
    """A copy of ``value`` with known secrets masked in its strings; shape and keys kept.

    The state store runs every record through this (``clean=False``: it refuses, rather than
    alters, what is not valid UTF-8): whatever path a record takes, a value this process knows
    to be secret does not reach the trail. ``clean`` also makes every string storable.
    """
    if _depth > 100:
        return "[nested too deep, not recorded]" if clean else value
    if isinstance(value, dict):
        # Keys are the record's schema: cleaned, never masked (a known value equal to "task" must
        # not rename the field).
        return {(clean_text(k) if clean and isinstance(k, (str, bytes)) else k): scrub(v, secrets, clean, _depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets, clean, _depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub_literals(value, secrets, clean)  # other objects: what json would write with default=str


def _mask(text, literals, loose=False, learn=False):
    # Known values and patterns are both found in the text as it is, then masked in one pass: a
    # value masked first could hide the context a pattern needs, and the other way round.
    found = secret_spans(text, loose=loose)
    if learn and found:
        remember(*_with_pieces(text[start:end].strip("\"'") for start, end, _key in found))
    text = mask_spans(text, _merge(found + _literal_spans(text, literals)))
    return _replace_literals(text, literals)  # what the masks joined into a known value


def mask_text(text, secrets=()):
    """``text`` with every secret masked (known, literal ``secrets``, secret-looking), whole: not cut
    like :func:`redact_text`, for copies that must keep what is not secret (a cached LLM answer)."""
    return _mask(clean_text(text), _literals(secrets))


def mask_strings(value, secrets=(), _depth=0):
    """A copy of ``value`` with :func:`mask_text` applied to every string; keys, numbers and shape kept."""
    if _depth > 100:
        return "[nested too deep, not recorded]"
    if isinstance(value, dict):
        return {k: mask_strings(v, secrets, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_strings(v, secrets, _depth + 1) for v in value]
    if isinstance(value, (str, bytes)):
        return mask_text(value, secrets)
    return value


def redact_text(text, secrets=(), loose=False, learn=False):
    """Mask every secret in ``text`` (known, literal ``secrets``, secret-looking) and cut it to :data:`MAX_STRING`.

    ``learn``: what is found by look is also remembered (:func:`remember`, with the pieces a URL
    parser would cut it into), so that it is masked where it later appears without its context
    (a library's error message that echoes a password).
    """
    text = clean_text(text)
    full = len(text)
    text = _mask(text[:_WINDOW], _literals(secrets), loose, learn)
    if full > MAX_STRING:
        text = f"{text[:MAX_STRING]}… [{full - MAX_STRING} more characters not recorded]"
    return text


def redact(value, secrets=(), _depth=0, learn=False):
    """A copy of ``value`` safe to record. ``secrets`` are literal strings masked wherever found; ``learn``: see :func:`redact_text`."""
    if _depth > 20:
        return "[nested too deep, not recorded]"
    if isinstance(value, dict):
        return {
            clean_text(k): (MASK if is_secret_key(clean_text(k)) and v not in (None, "", [], {})
                            else redact(v, secrets, _depth + 1, learn))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v, secrets, _depth + 1, learn) for v in value]
    if isinstance(value, (str, bytes, bytearray)):
        return redact_text(value, secrets, learn=learn)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # NaN and Infinity are not JSON
    return redact(str(value), secrets, _depth + 1, learn)


# -- database URLs ----------------------------------------------------------------------------------
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_%[]:,")


def split_url(url):
    """``(scheme, user, password, rest, query_pairs)`` of a URL, parsed by hand for messages.

    The userinfo ends at the last '@' that is followed by a plausible host (the password may
    hold '@', '/', '?', '#' or spaces, which urlsplit misreads); ``password`` is None when the
    URL has none; ``rest`` is host, port and path; ``query_pairs`` the ``(key, value)`` pairs of
    the query (None when it has no '=').
    """
    scheme, sep, body = url.partition("://")
    if not sep:
        raise ValueError("not a URL")
    user = password = None
    at = _userinfo_end(body)
    if at is not None:
        userinfo, body = body[:at], body[at + 1:]
        user, colon, pw = userinfo.partition(":")
        user = unquote(user)
        password = pw if colon else None
    rest, qsep, query = body.partition("?")
    pairs = []
    if qsep:
        query = query.partition("#")[0]
        for pair in query.split("&"):
            key, eq, value = pair.partition("=")
            pairs.append((unquote(key), unquote(value) if eq else None))
    return scheme, user, password, rest, pairs


def _userinfo_end(body):
    for at in range(len(body) - 1, -1, -1):
        if body[at] != "@":
            continue
        host = body[at + 1:]
        for ch in "/?#":
            host = host.split(ch, 1)[0]
        if "@" not in host and all(c in _HOST_CHARS for c in host):  # an empty host: the socket default
            return at
    return None


def url_secrets(url):
    """The secret values inside a database URL or conninfo string (password, query password ...)."""
    if not url:
        return []
    url = clean_text(url)
    out = []
    if "://" in url:
        try:
            _scheme, _user, password, _rest, pairs = split_url(url)
        except ValueError:
            return [url]
        if password:
            out.extend({password, unquote(password)})
        out.extend(v for k, v in pairs if v and (is_secret_key(k) or k == "sslpassword"))
    else:
        out.extend(v for k, v in parse_conninfo(url) if v and (is_secret_key(k) or k == "sslpassword"))
    return out


def redact_url(url):
    """``url`` (a URL or a libpq conninfo string) with its password masked, for messages.

    Parsed, not pattern-matched (:func:`split_url`, :func:`parse_conninfo`): the password may
    hold '@', '/', spaces or sit in the query (``?password=``).
    """
    if not url:
        return ""
    url = clean_text(url)
    if "://" not in url:
        return " ".join(f"{k}={MASK}" if (is_secret_key(k) or k == "sslpassword") and v else
                        (f"{k}={_quote_conninfo(v)}" if v is not None else k) for k, v in parse_conninfo(url))
    try:
        scheme, user, password, rest, pairs = split_url(url)
    except ValueError:
        return MASK
    auth = ""
    if user is not None:
        auth = quote(user, safe="") + (f":{MASK}" if password is not None else "") + "@"
    query = "&".join(k if v is None else f"{quote(k, safe='')}={MASK if is_secret_key(k) or k == 'sslpassword' else quote(v, safe='')}"
                     for k, v in pairs)
    return f"{scheme}://{auth}{rest}" + (f"?{query}" if pairs else "")


def parse_conninfo(text):
    """``[(key, value)]`` of a libpq ``key=value`` conninfo string (single quotes and backslashes as libpq reads them)."""
    pairs, i, n = [], 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        start = i
        while i < n and text[i] != "=" and not text[i].isspace():
            i += 1
        key = text[start:i]
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "=":
            if key:
                pairs.append((key, None))
            continue
        i += 1
        while i < n and text[i].isspace():
            i += 1
        value = []
        if i < n and text[i] == "'":
            i += 1
            while i < n and text[i] != "'":
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
            i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
        pairs.append((key, "".join(value)))
    return pairs


def _quote_conninfo(value):
    if value and not any(c.isspace() or c in "'\\" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def scrub_fragments(text, secrets, min_len=3):
    """``text`` with every piece (``min_len`` characters or more) of each of ``secrets`` masked.

    For messages of libraries that echo part of what they failed to parse.
    """
    pieces = set()
    for s in secrets:
        if not s:
            continue
        if len(s) < min_len:
            pieces.add(s)
            continue
        for length in range(min_len, len(s) + 1):
            for start in range(len(s) - length + 1):
                pieces.add(s[start:start + length])
    for piece in sorted(pieces, key=len, reverse=True):
        if piece in text:
            text = text.replace(piece, MASK)
    return text
