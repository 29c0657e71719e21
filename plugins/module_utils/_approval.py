# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Human approvals bound to the exact change: signed, expiring, single-use tokens.

Private API of the collection (may change without notice).

A token is ``locus1.<payload>.<signature>`` (base64url): the payload names the REF-tag of
the decision (or of the HALT) it approves, the digest of that change, the halt epoch at
issue time, the approver, issue and expiry times; the signature is HMAC-SHA256 over the
encoded payload with the approval key. The guard accepts a token only for the decision
whose change has the same digest, before expiry, signed with the same key, by an approver
the policy names, issued since the last emergency halt, and once.

The approval key: ``LOCUS_APPROVAL_KEY`` (the key itself), else the file
``LOCUS_APPROVAL_KEY_FILE``, else ``approval.key`` in the state directory (created 0600
with 32 random bytes the first time an approval is issued). The key never reaches the
audit trail; records carry its id (first 12 hex digits of its SHA-256).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import getpass
import hashlib
import hmac
import json
import os
import secrets
import time

PREFIX = "locus1"
KEY_ENV = "LOCUS_APPROVAL_KEY"
KEY_FILE_ENV = "LOCUS_APPROVAL_KEY_FILE"
TOKEN_ENV = "LOCUS_APPROVAL_TOKEN"  # noqa: S105 - the name of the variable, not a token
KEY_FILE_NAME = "approval.key"
MIN_KEY_LENGTH = 16
CLOCK_SKEW = 300  # seconds a token's issue time may lie in the future
KINDS = ("change", "resume")


class ApprovalError(Exception):
    """The approval machinery cannot work (no key, bad key file): fix the set-up."""


class TokenRefused(Exception):
    """A token was refused; the message says why (forged, expired, other change …)."""

    def __init__(self, reason, payload=None):
        super().__init__(reason)
        self.reason = reason
        self.payload = payload or {}


def current_user(variables=None):
    """Who is approving: the AWX user of the job, the sudo user, or the login name."""
    variables = variables or {}
    return str(variables.get("awx_user_name") or os.environ.get("SUDO_USER") or getpass.getuser())


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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
def _sign(key, body):
    return hmac.new(key, f"{PREFIX}.{body}".encode("ascii"), hashlib.sha256).digest()


def issue(key, ref, digest, approver, epoch, lifetime, kind="change", now=None):
    """A signed token approving ``ref`` (whose change has ``digest``) for ``lifetime`` seconds."""
    if kind not in KINDS:
        raise ValueError(f"token kind must be one of {', '.join(KINDS)}")
    now = int(time.time() if now is None else now)
    payload = {
        "v": 1,
        "kind": kind,
        "ref": ref,
        "digest": digest,
        "epoch": int(epoch),
        "approver": approver,
        "iat": now,
        "exp": now + int(lifetime),
        "kid": key_id(key),
        "nonce": secrets.token_hex(8),
    }
    body = _b64(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    return f"{PREFIX}.{body}.{_b64(_sign(key, body))}"


def decode(token):
    """The payload of ``token`` without checking its signature (for messages and lookups)."""
    parts = (token or "").strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise TokenRefused(f"not an approval token (expected {PREFIX}.<payload>.<signature>)")
    try:
        payload = json.loads(_unb64(parts[1]).decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise TokenRefused("malformed approval token: its payload is not readable") from exc
    if not isinstance(payload, dict):
        raise TokenRefused("malformed approval token: its payload is not an object")
    return payload


def verify(token, key, now=None):
    """The payload of a genuine, unexpired token; :class:`TokenRefused` otherwise."""
    payload = decode(token)
    _prefix, body, signature = token.strip().split(".")
    try:
        given = _unb64(signature)
    except (ValueError, binascii.Error) as exc:
        raise TokenRefused("malformed approval token: its signature is not base64url", payload) from exc
    if not hmac.compare_digest(given, _sign(key, body)):
        kid = payload.get("kid")
        hint = f" (it names key {kid}, this guard has key {key_id(key)})" if kid and kid != key_id(key) else ""
        raise TokenRefused(f"the token's signature does not match: forged, altered or signed with another key{hint}", payload)
    missing = [k for k in ("v", "kind", "ref", "digest", "epoch", "approver", "iat", "exp") if k not in payload]
    if missing or payload.get("v") != 1 or payload.get("kind") not in KINDS:
        raise TokenRefused(f"unsupported approval token (version {payload.get('v')!r}, missing {', '.join(missing) or 'nothing'})",
                           payload)
    now = int(time.time() if now is None else now)
    if now >= int(payload["exp"]):
        raise TokenRefused(f"the token expired at {iso(payload['exp'])} ({now - int(payload['exp'])} s ago)", payload)
    if int(payload["iat"]) > now + CLOCK_SKEW:
        raise TokenRefused(f"the token was issued in the future ({iso(payload['iat'])}); check the clocks", payload)
    return payload


def iso(epoch_seconds):
    return datetime.datetime.fromtimestamp(int(epoch_seconds), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fingerprint(token):
    """A short, non-secret id of a token for the audit trail (never the token itself)."""
    return hashlib.sha256((token or "").strip().encode("utf-8")).hexdigest()[:16]
