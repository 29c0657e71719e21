# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Human approvals bound to the exact change: signed, expiring, single-use tokens.

Private API of the collection (may change without notice).

A token names the REF-tag of the decision (or of the HALT) it approves, the digest of that
change, the hash of that record (so it holds only in the audit trail where it was issued: two
trails can hold the same REF-tag for the same change), the halt epoch at issue time, the
approver, issue and expiry times. Two kinds:

* ``locus2.<payload>.<signature>`` (policy ``approval.mode: ssh_keys``): the signature is an
  SSH signature (``ssh-keygen -Y sign``, namespace :data:`SSH_NAMESPACE`) by the approver's
  own key, which may live in ssh-agent. The guard verifies it with ``ssh-keygen -Y verify``
  against an allowed-signers list made from the policy's approvers: the approver is whoever
  holds a key the policy names; the state store and the HMAC key are not enough to mint one.
* ``locus1.<payload>.<signature>`` (``approval.mode: shared_key``): HMAC-SHA256 over the
  encoded payload with the approval key. Whoever can read the key can mint approvals; the
  approver recorded is the operating-system account that ran ``locus approve``.

Both parts are strict, canonical base64url (no padding, no other alphabet, no stray bits)
and the payload is canonical JSON, so one token has exactly one spelling (and one
fingerprint). The guard accepts a token only for the decision whose change has the same
digest, before expiry, issued since the last emergency halt, and once.

The approval key: ``LOCUS_APPROVAL_KEY`` (the key itself), else the file
``LOCUS_APPROVAL_KEY_FILE``, else ``approval.key`` in the state directory (created 0600
with 32 random bytes the first time an approval is issued). The key never reaches the
audit trail; records carry its id (first 12 hex digits of its SHA-256).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time

PREFIX = "locus1"
SSH_PREFIX = "locus2"
SSH_NAMESPACE = "locus-approval@locus.infra"
APPROVER_KEY_ENV = "LOCUS_APPROVER_KEY"
KEY_ENV = "LOCUS_APPROVAL_KEY"
KEY_FILE_ENV = "LOCUS_APPROVAL_KEY_FILE"
TOKEN_ENV = "LOCUS_APPROVAL_TOKEN"  # noqa: S105 - the name of the variable, not a token
KEY_FILE_NAME = "approval.key"
MIN_KEY_LENGTH = 16
CLOCK_SKEW = 300  # seconds a token's issue time may lie in the future
KINDS = ("change", "resume")
MAX_TOKEN = 16384  # characters; a token is well under 2,000 even with an RSA-4096 SSH signature


class ApprovalError(Exception):
    """The approval machinery cannot work (no key, bad key file): fix the set-up."""


class TokenRefused(Exception):
    """A token was refused; the message says why (forged, expired, other change …)."""

    def __init__(self, reason, payload=None):
        super().__init__(reason)
        self.reason = reason
        self.payload = payload or {}


class TokenMalformed(TokenRefused):
    """Not a well-formed token at all (bad input rather than a refused approval)."""


def os_user():
    """The operating-system account of this process, from its uid (not from LOGNAME, USER or SUDO_USER,
    which the caller sets). Recorded as who ran a command; it is not an approver identity."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text, what="payload"):
    """Strict, canonical base64url: no padding, only the URL-safe alphabet, no stray bits."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise TokenMalformed(f"malformed approval token: its {what} is not canonical base64url (no padding, A-Z a-z 0-9 - _)")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise TokenMalformed(f"malformed approval token: its {what} is not canonical base64url (stray bits)")
    return data


# ------------------------------------------------------------------ key ----------------------
def default_key_file(state_dir=None, environ=None):
    environ = os.environ if environ is None else environ
    if environ.get(KEY_FILE_ENV):
        return os.path.abspath(os.path.expanduser(environ[KEY_FILE_ENV]))
    base = state_dir or environ.get("LOCUS_STATE_DIR") or "~/.local/state/locus"
    return os.path.join(os.path.abspath(os.path.expanduser(base)), KEY_FILE_NAME)


def load_key(key=None, key_file=None, state_dir=None, create=False, environ=None):
    """The approval key as bytes, from ``key``, ``$LOCUS_APPROVAL_KEY`` or the key file.

    With ``create`` a missing key file is made (0600, 32 random bytes as hex). Raises
    :class:`ApprovalError` naming the source when there is no usable key.
    """
    environ = os.environ if environ is None else environ
    if key is None and environ.get(KEY_ENV):
        key, source = environ[KEY_ENV], f"${KEY_ENV}"
    else:
        source = "the approval_key option"
    if key is not None:
        key = key.strip()
        if len(key) < MIN_KEY_LENGTH:
            raise ApprovalError(f"the approval key from {source} is too short (at least {MIN_KEY_LENGTH} characters)")
        return key.encode("utf-8")
    path = key_file or default_key_file(state_dir, environ)
    if create and not os.path.exists(path):
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_hex(32) + "\n")
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError as exc:
            raise ApprovalError(f"cannot create the approval key file {path}: {exc.strerror or exc}") from exc
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except FileNotFoundError as exc:
        raise ApprovalError(
            f"no approval key: set {KEY_ENV}, or {KEY_FILE_ENV}, or create {path} (`locus approve` creates it)"
        ) from exc
    except OSError as exc:
        raise ApprovalError(f"cannot read the approval key file {path}: {exc.strerror or exc}") from exc
    if len(text) < MIN_KEY_LENGTH:
        raise ApprovalError(f"the approval key file {path} holds too short a key (at least {MIN_KEY_LENGTH} characters)")
    return text.encode("utf-8")


def key_id(key):
    return hashlib.sha256(key).hexdigest()[:12]


# ------------------------------------------------------------------ tokens -------------------
_TAG = re.compile(r"LOCUS-[A-Z]+\d{8}-\d{3,}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no number


_FIELDS = {  # field: check of its value (every field is required)
    "v": lambda v: _int(v) and v == 1,
    "kind": lambda v: v in KINDS,
    "ref": lambda v: isinstance(v, str) and bool(_TAG.fullmatch(v)),
    "digest": lambda v: isinstance(v, str) and bool(_HEX64.fullmatch(v)),
    "record": lambda v: isinstance(v, str) and bool(_HEX64.fullmatch(v)),
    "epoch": lambda v: _int(v) and v >= 0,
    "approver": lambda v: isinstance(v, str) and 0 < len(v) <= 200 and v.isprintable(),
    "iat": lambda v: _int(v) and 0 <= v < 2**40,
    "exp": lambda v: _int(v) and 0 <= v < 2**40,
    "nonce": lambda v: isinstance(v, str) and bool(re.fullmatch(r"[0-9a-f]{16}", v)),
}
_HMAC_FIELDS = {"kid": lambda v: isinstance(v, str) and bool(re.fullmatch(r"[0-9a-f]{12}", v))}
_SSH_FIELDS = {"key": lambda v: isinstance(v, str) and v.startswith("SHA256:") and len(v) < 100}


def _canonical(payload):
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _sign(key, body):
    return hmac.new(key, f"{PREFIX}.{body}".encode("ascii"), hashlib.sha256).digest()


def _payload(ref, digest, approver, epoch, lifetime, kind, now, record):
    if kind not in KINDS:
        raise ValueError(f"token kind must be one of {', '.join(KINDS)}")
    if not isinstance(record, str) or not _HEX64.fullmatch(record):
        raise ValueError("record: the hash of the approved audit record (64 hex digits) is required")
    now = int(time.time() if now is None else now)
    return {"v": 1, "kind": kind, "ref": ref, "digest": digest, "record": record, "epoch": int(epoch), "approver": approver,
            "iat": now, "exp": now + int(lifetime), "nonce": secrets.token_hex(8)}


def issue(key, ref, digest, approver, epoch, lifetime, kind="change", now=None, record=None):
    """An HMAC token (shared-key mode) approving ``ref`` (whose change has ``digest`` and whose audit
    record has the hash ``record``) for ``lifetime`` seconds."""
    payload = dict(_payload(ref, digest, approver, epoch, lifetime, kind, now, record), kid=key_id(key))
    body = _b64(_canonical(payload))
    return f"{PREFIX}.{body}.{_b64(_sign(key, body))}"


def issue_signed(signer, ref, digest, epoch, lifetime, kind="change", now=None, record=None):
    """A token signed with the approver's SSH key (``signer``: :class:`SshSigner`)."""
    payload = dict(_payload(ref, digest, signer.name, epoch, lifetime, kind, now, record), key=signer.fingerprint)
    body = _b64(_canonical(payload))
    return f"{SSH_PREFIX}.{body}.{_b64(signer.sign(f'{SSH_PREFIX}.{body}'.encode('ascii')))}"


def decode(token):
    """The payload of ``token`` without checking its signature (for messages and lookups).

    Raises :class:`TokenMalformed` unless the token is exactly ``locus1|locus2.<payload>.<signature>``
    in canonical base64url with a canonical JSON object as payload.
    """
    token = (token or "").strip()
    if len(token) > MAX_TOKEN:
        raise TokenMalformed(f"not an approval token: it is {len(token)} characters long, an approval token is at most {MAX_TOKEN}")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] not in (PREFIX, SSH_PREFIX):
        raise TokenMalformed(f"not an approval token (expected {PREFIX}.<payload>.<signature> or {SSH_PREFIX}.…)")
    raw = _unb64(parts[1], "payload")
    _unb64(parts[2], "signature")
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenMalformed("malformed approval token: its payload is not readable") from exc
    if not isinstance(payload, dict):
        raise TokenMalformed("malformed approval token: its payload is not an object")
    if _canonical(payload) != raw:
        raise TokenMalformed("malformed approval token: its payload is not in canonical form")
    return payload


def _check_fields(payload, prefix):
    fields = dict(_FIELDS, **(_HMAC_FIELDS if prefix == PREFIX else _SSH_FIELDS))
    missing = sorted(set(fields) - set(payload))
    if missing:
        raise TokenMalformed(f"malformed approval token: missing {', '.join(missing)}", payload)
    unknown = sorted(set(payload) - set(fields))
    if unknown:
        raise TokenMalformed(f"malformed approval token: unknown field(s) {', '.join(unknown)}", payload)
    bad = sorted(k for k, check in fields.items() if not check(payload[k]))
    if bad:
        raise TokenMalformed(f"malformed approval token: bad value of {', '.join(bad)}", payload)
    if payload["exp"] <= payload["iat"]:
        raise TokenMalformed("malformed approval token: it expires before it was issued", payload)


def verify(token, key=None, now=None, approvers=None):
    """The payload of a genuine, unexpired token; :class:`TokenRefused` otherwise.

    ``approvers`` (``[(name, public key line)]``, policy mode ssh_keys): only SSH-signed tokens
    by one of these keys count. Otherwise the token must carry an HMAC by ``key``.
    """
    payload = decode(token)
    prefix, body, signature = token.strip().split(".")
    given = _unb64(signature, "signature")
    if approvers is not None:
        if prefix != SSH_PREFIX:
            raise TokenRefused("the policy names approver keys (approval.mode: ssh_keys): a token must be signed "
                               "with an approver's SSH key (`locus approve REF --key ...`), an HMAC token is not enough",
                               payload)
        _check_fields(payload, prefix)
        problem = ssh_verify(f"{prefix}.{body}".encode("ascii"), given, payload["approver"], approvers)
        if problem:
            raise TokenRefused(f"the token's SSH signature does not verify for approver {payload['approver']!r}: {problem}",
                               payload)
    else:
        if prefix != PREFIX:
            raise TokenRefused("this token is signed with an SSH key, but the policy names no approver keys "
                               "(approval.mode: shared_key)", payload)
        if key is None:
            raise ApprovalError(f"no approval key: set {KEY_ENV} or {KEY_FILE_ENV}")
        if not hmac.compare_digest(given, _sign(key, body)):
            kid = payload.get("kid")
            named = _HMAC_FIELDS["kid"](kid) and kid != key_id(key)  # a forged kid is not echoed (it could be anything)
            hint = f" (it names key {kid}, this guard has key {key_id(key)})" if named else ""
            raise TokenRefused(f"the token's signature does not match: forged, altered or signed with another key{hint}", payload)
        _check_fields(payload, prefix)
    now = int(time.time() if now is None else now)
    if now >= payload["exp"]:
        raise TokenRefused(f"the token expired at {iso(payload['exp'])} ({now - payload['exp']} s ago)", payload)
    if payload["iat"] > now + CLOCK_SKEW:
        raise TokenRefused(f"the token was issued in the future ({iso(payload['iat'])}); check the clocks", payload)
    return payload


# ------------------------------------------------------------------ SSH signatures -----------
_SSH_KEY = re.compile(r"(?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com|"
                      r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,2}")


def parse_public_key(text):
    """``(type, base64 blob)`` of an OpenSSH public key line; ValueError when it is not one."""
    m = _SSH_KEY.match(str(text or "").strip())
    if not m:
        raise ValueError("not an OpenSSH public key (type and base64 key, e.g. ssh-ed25519 AAAA...)")
    kind, blob = m.group(0).split(" ")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("its key part is not base64") from exc
    name_len = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if raw[4:4 + name_len] != kind.encode("ascii"):
        raise ValueError(f"its key part does not hold a {kind} key")
    return kind, blob


def fingerprint_of(public_key):
    """``SHA256:…`` as ``ssh-keygen -l`` prints it."""
    _kind, blob = parse_public_key(public_key)
    return "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(blob)).digest()).decode("ascii").rstrip("=")


def _ssh_keygen():
    path = shutil.which("ssh-keygen")
    if not path:
        raise ApprovalError("ssh-keygen (package openssh-client) is needed for approvals signed with SSH keys")
    return path


def _armor(sig):
    text = base64.b64encode(sig).decode("ascii")
    lines = [text[i:i + 70] for i in range(0, len(text), 70)]
    return "-----BEGIN SSH SIGNATURE-----\n" + "\n".join(lines) + "\n-----END SSH SIGNATURE-----\n"


def _unarmor(text):
    lines = [ln.strip() for ln in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != "-----BEGIN SSH SIGNATURE-----" or lines[-1] != "-----END SSH SIGNATURE-----":
        raise ApprovalError("ssh-keygen -Y sign printed no SSH signature")
    return base64.b64decode("".join(lines[1:-1]))


def ssh_verify(message, signature, principal, approvers):
    """None when ``signature`` is ``principal``'s signature of ``message``, else why not."""
    with tempfile.TemporaryDirectory(prefix="locus-approval-") as tmp:
        allowed = os.path.join(tmp, "allowed_signers")
        with open(allowed, "w", encoding="ascii") as f:
            for name, key in approvers:
                kind, blob = parse_public_key(key)
                f.write(f'{name} namespaces="{SSH_NAMESPACE}" {kind} {blob}\n')
        sig = os.path.join(tmp, "token.sig")
        with open(sig, "w", encoding="ascii") as f:
            f.write(_armor(signature))
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [_ssh_keygen(), "-Y", "verify", "-f", allowed, "-I", principal, "-n", SSH_NAMESPACE, "-s", sig],
            input=message, capture_output=True, timeout=30, check=False,
        )
    if proc.returncode == 0:
        return None
    why = " ".join(proc.stderr.decode("utf-8", "replace").split()) or f"ssh-keygen exit {proc.returncode}"
    return why[:300]


class SshSigner:
    """Signs with one approver's SSH key: a private key file, or a public key whose private half
    ssh-agent holds (``ssh-keygen -Y sign -f``). ``name`` is the approver the policy lists with it."""

    def __init__(self, key_file, approvers, temporary=False):
        self.key_file = os.path.abspath(os.path.expanduser(key_file))
        self.temporary = temporary  # a public key file written for ssh-agent signing; the caller removes it
        public = self._public_key()
        mine = parse_public_key(public)
        names = sorted({n for n, k in approvers if parse_public_key(k) == mine})
        if not names:
            raise ApprovalError(f"the key {self.key_file} ({fingerprint_of(public)}) is not an approver's key "
                                "in the policy (approval.approvers)")
        if len(names) > 1:
            raise ApprovalError(f"the key {self.key_file} is listed for several approvers ({', '.join(names)})")
        self.name, self.public_key, self.fingerprint = names[0], public, fingerprint_of(public)

    def _public_key(self):
        for path in ([self.key_file] if self.key_file.endswith(".pub") else [self.key_file + ".pub"]):
            try:
                with open(path, encoding="utf-8") as f:
                    return f.read().strip()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ApprovalError(f"cannot read {path}: {exc.strerror or exc}") from exc
        proc = subprocess.run([_ssh_keygen(), "-y", "-f", self.key_file], capture_output=True, text=True,  # noqa: S603
                              stdin=subprocess.DEVNULL, timeout=60, check=False)
        if proc.returncode != 0:
            raise ApprovalError(f"cannot read the SSH key {self.key_file}: {' '.join(proc.stderr.split())[:200]}")
        return proc.stdout.strip()

    def sign(self, message):
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [_ssh_keygen(), "-Y", "sign", "-f", self.key_file, "-n", SSH_NAMESPACE, "-q"],
            input=message, capture_output=True, timeout=120, check=False,
        )
        if proc.returncode != 0:
            why = " ".join(proc.stderr.decode("utf-8", "replace").split())[:300]
            raise ApprovalError(f"ssh-keygen -Y sign with {self.key_file} failed: {why}")
        return _unarmor(proc.stdout.decode("ascii", "replace"))


def agent_signer(approvers):
    """An :class:`SshSigner` for the one approver key that ssh-agent holds, or None."""
    if not os.environ.get("SSH_AUTH_SOCK") or not shutil.which("ssh-add"):
        return None
    proc = subprocess.run(["ssh-add", "-L"], capture_output=True, text=True, timeout=30, check=False)  # noqa: S603,S607
    listed = {parse_public_key(k) for _n, k in approvers}
    held = []
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        try:
            if parse_public_key(line) in listed:
                held.append(line.strip())
        except ValueError:
            continue
    if len(held) != 1:
        if len(held) > 1:
            raise ApprovalError("ssh-agent holds several approver keys; choose one with --key")
        return None
    fd, path = tempfile.mkstemp(prefix="locus-approver-", suffix=".pub")
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(held[0] + "\n")
    return SshSigner(path, approvers, temporary=True)


def iso(epoch_seconds):
    return datetime.datetime.fromtimestamp(int(epoch_seconds), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fingerprint(token):
    """A short, non-secret id of a token for the audit trail (never the token itself)."""
    return hashlib.sha256((token or "").strip().encode("utf-8")).hexdigest()[:16]
