# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep secrets out of the audit trail and of anything we print.

Private API of the collection (may change without notice).
Two nets: keys whose *name* says secret (password, token, api_key …) have their value
replaced whole; string values that *look* like a secret (private keys, API tokens,
credentials in URLs …) are masked wherever they appear.
"""

from __future__ import annotations

import math
import re

MASK = "********"
MAX_STRING = 2048  # longer strings are cut: the audit trail is a trail, not a copy

_SECRET_KEY = re.compile(
    r"(^|[_\-.])(pass|password|passwd|passphrase|secret|secrets|token|tokens|api_?key|apikey|private_?key|"
    r"credentials?|auth|authorization|cookie|signature|client_secret|access_key|secret_key|vault_password|"
    r"become_pass|hmac_key|approval_token|x_api_key)([_\-.]|$)",
    re.IGNORECASE,
)
_SECRET_VALUES = [
    re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", re.DOTALL),
    re.compile(r"\$ANSIBLE_VAULT;[^\s]*(\s+[0-9a-f]+)*"),
    re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{8,}"),  # Anthropic API keys
    re.compile(r"\bsk-[A-Za-z0-9_\-]{20,}"),  # OpenAI-style keys
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),  # GitHub tokens
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"\bnbt_[A-Za-z0-9]+\.[A-Za-z0-9]+"),  # NetBox v2 tokens
    re.compile(r"PVEAPIToken=[^\s'\"]+"),  # Proxmox API token header value
    re.compile(r"\b(Bearer|Token|Basic)\s+[A-Za-z0-9._~+/=\-]{12,}", re.IGNORECASE),
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),  # user:password@ in URLs
    re.compile(r"\bK10[0-9a-f]{40,}::[^\s]+"),  # K3s secure tokens
    re.compile(r"\b(xox[abpr]-[A-Za-z0-9\-]{10,})"),  # Slack tokens
]


def is_secret_key(name):
    return isinstance(name, str) and bool(_SECRET_KEY.search(name))


def redact_text(text):
    """Mask every secret-looking run inside ``text`` and cut it to :data:`MAX_STRING`."""
    for pattern in _SECRET_VALUES:
        text = pattern.sub(MASK, text)
    if len(text) > MAX_STRING:
        text = f"{text[:MAX_STRING]}… [{len(text) - MAX_STRING} more characters not recorded]"
    return text


def redact(value, secrets=(), _depth=0):
    """A copy of ``value`` safe to record. ``secrets`` are literal strings masked wherever found."""
    if _depth > 20:
        return "[nested too deep, not recorded]"
    if isinstance(value, dict):
        return {
            str(k): (MASK if is_secret_key(k) and v not in (None, "", [], {}) else redact(v, secrets, _depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set)):
        return [redact(v, secrets, _depth + 1) for v in value]
    if isinstance(value, str):
        for s in secrets:
            if s and len(s) >= 4:
                value = value.replace(s, MASK)
        return redact_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and infinities are not JSON: the trail holds them as text
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value), secrets, _depth + 1)
