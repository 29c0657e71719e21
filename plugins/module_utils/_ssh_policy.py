# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SSH algorithm policy of locus.infra.common, and what weakens it (for the guard).

Private API of the collection (may change without notice); standard library only.

The lists are those of ssh-audit's hardening guide for Debian 12 / OpenSSH 9.2 (ssh-audit 3.9,
``Hardened Debian 12 (version 3)``), with one difference: ssh-audit 3.9 warns about every key
exchange that is not a post-quantum hybrid ("does not provide protection against post-quantum
attacks"), so the default policy offers only those (``post_quantum_only``). Turned off, the
classic key exchanges of the guide (but group exchange, see KEX_CLASSIC) come after them:
ssh-audit then warns about each, but no failure remains.
"""

from __future__ import annotations

KEX_POST_QUANTUM = ("mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com")
# Without diffie-hellman-group-exchange-sha256 of the guide: asked for at most 2048 bits, OpenSSH answers
# with its built-in 2048-bit group whatever /etc/ssh/moduli holds, and ssh-audit's exchange test fails it.
KEX_CLASSIC = ("curve25519-sha256", "curve25519-sha256@libssh.org", "diffie-hellman-group16-sha512",
               "diffie-hellman-group18-sha512")
CIPHERS = ("chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes256-ctr", "aes192-ctr", "aes128-gcm@openssh.com",
           "aes128-ctr")
MACS = ("hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "umac-128-etm@openssh.com")
HOST_KEY_ALGORITHMS = ("ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256")
HOST_KEY_TYPES = ("ed25519", "rsa")
MIN_RSA_BITS = 3072
MIN_MODULI_BITS = 3072

# sshd_config keywords that take algorithm lists, and what the policy allows in each.
ALGORITHM_KEYWORDS = {
    "kexalgorithms": KEX_POST_QUANTUM,
    "ciphers": CIPHERS,
    "macs": MACS,
    "hostkeyalgorithms": HOST_KEY_ALGORITHMS,
}


def policy(supported_kex, post_quantum_only=True):
    """The algorithms sshd should offer, given the key exchanges its OpenSSH supports (``ssh -Q kex``).

    Raises ``ValueError`` when the post-quantum-only policy is asked for and the host's OpenSSH has no
    post-quantum key exchange (OpenSSH before 8.5).
    """
    if isinstance(supported_kex, str):
        supported_kex = supported_kex.split()
    supported = {str(k).strip() for k in supported_kex or [] if str(k).strip()}
    wanted = KEX_POST_QUANTUM if post_quantum_only else KEX_POST_QUANTUM + KEX_CLASSIC
    kex = [k for k in wanted if k in supported]
    if not any(k in KEX_POST_QUANTUM for k in kex) and post_quantum_only:
        raise ValueError("this OpenSSH offers no post-quantum key exchange (sntrup761x25519-sha512@openssh.com needs "
                         "OpenSSH 8.5 or later); set common_ssh_post_quantum_only: false to use the classic ones")
    if not kex:
        raise ValueError(f"this OpenSSH supports none of the key exchanges of the policy ({', '.join(wanted)})")
    return {"kex": kex, "ciphers": list(CIPHERS), "macs": list(MACS), "host_key_algorithms": list(HOST_KEY_ALGORITHMS)}


def weakening(keyword, value):
    """The parts of one sshd_config setting (``KexAlgorithms``, ``Ciphers``, ``MACs``,
    ``HostKeyAlgorithms``, ``HostKey``) that go beyond the policy; empty when it keeps to it.

    A list that starts with ``+`` or ``^`` adds to OpenSSH's defaults, which hold legacy algorithms.
    """
    key = keyword.lower()
    value = value.strip()
    if key == "hostkey":
        name = value.rsplit("/", 1)[-1]
        return [] if any(f"_{t}_key" in name for t in HOST_KEY_TYPES) else [value]
    allowed = ALGORITHM_KEYWORDS.get(key)
    if allowed is None or not value or value.startswith("-"):
        return []
    extra = [value[0] + " (adds OpenSSH's defaults)"] if value[0] in "+^" else []
    return extra + [a for a in value.lstrip("+^").split(",") if a and a not in allowed]
