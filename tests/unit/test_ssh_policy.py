"""locus.infra.common's SSH algorithm policy without a host: what sshd is asked to offer, what
weakens it (the guard's crypto_weakened rule), and the rendered drop-in as the guard reads it."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.locus.infra.plugins.filter import ssh as ssh_filter
from ansible_collections.locus.infra.plugins.module_utils import _ssh_policy as policy
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard_rules as rules
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _policy

ROLE = Path(__file__).resolve().parents[2] / "roles" / "common"
# `ssh -Q kex` of Debian 12's OpenSSH 9.2p1 (1:9.2p1-2+deb12u6, as on the lab hosts: it knows OpenSSH 9.9's name
# sntrup761x25519-sha512 besides sntrup761x25519-sha512@openssh.com)
DEBIAN12_KEX = """diffie-hellman-group1-sha1
diffie-hellman-group14-sha1
diffie-hellman-group14-sha256
diffie-hellman-group16-sha512
diffie-hellman-group18-sha512
diffie-hellman-group-exchange-sha1
diffie-hellman-group-exchange-sha256
ecdh-sha2-nistp256
ecdh-sha2-nistp384
ecdh-sha2-nistp521
curve25519-sha256
curve25519-sha256@libssh.org
sntrup761x25519-sha512
sntrup761x25519-sha512@openssh.com
"""


def test_post_quantum_only_on_openssh_9_2_is_sntrup761_under_its_two_names():
    algos = policy.policy(DEBIAN12_KEX)
    assert algos["kex"] == ["sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com"]
    assert policy.policy(DEBIAN12_KEX.replace("sntrup761x25519-sha512\n", ""))["kex"] == ["sntrup761x25519-sha512@openssh.com"]
    assert algos["ciphers"] == ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes256-ctr", "aes192-ctr",
                                "aes128-gcm@openssh.com", "aes128-ctr"]
    assert algos["macs"] == ["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "umac-128-etm@openssh.com"]
    assert algos["host_key_algorithms"] == ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"]


def test_newer_openssh_gets_mlkem_first_and_the_classic_list_comes_after_the_hybrids():
    assert policy.policy(["mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com",
                          "curve25519-sha256"])["kex"] == ["mlkem768x25519-sha256", "sntrup761x25519-sha512",
                                                           "sntrup761x25519-sha512@openssh.com"]
    classic = policy.policy(DEBIAN12_KEX, post_quantum_only=False)["kex"]
    assert classic == ["sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com", "curve25519-sha256", "curve25519-sha256@libssh.org",
                       "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512"]
    assert not any("sha1" in k or "nistp" in k for k in classic)


def test_an_openssh_without_post_quantum_kex_is_refused_by_name():
    old = "curve25519-sha256\ndiffie-hellman-group16-sha512\n"  # OpenSSH 8.4
    with pytest.raises(AnsibleFilterError, match=r"locus.infra.common: rtr9: this OpenSSH offers no post-quantum key exchange "
                                                 r".*common_ssh_post_quantum_only: false"):
        ssh_filter.ssh_algorithms(old, True, "rtr9")
    assert ssh_filter.ssh_algorithms(old, False, "rtr9")["kex"] == ["curve25519-sha256", "diffie-hellman-group16-sha512"]
    with pytest.raises(AnsibleFilterError, match="supports none of the key exchanges"):
        ssh_filter.ssh_algorithms("diffie-hellman-group1-sha1", False, "rtr9")


@pytest.mark.parametrize("keyword, value, weak", [
    ("KexAlgorithms", "sntrup761x25519-sha512@openssh.com", []),
    ("KexAlgorithms", "sntrup761x25519-sha512@openssh.com,curve25519-sha256", ["curve25519-sha256"]),
    ("KexAlgorithms", "+diffie-hellman-group14-sha1", ["+ (adds OpenSSH's defaults)", "diffie-hellman-group14-sha1"]),
    ("KexAlgorithms", "-ecdh-sha2-nistp256", []),
    ("Ciphers", "aes128-cbc,aes256-gcm@openssh.com", ["aes128-cbc"]),
    ("MACs", "hmac-sha2-256,hmac-sha2-256-etm@openssh.com", ["hmac-sha2-256"]),
    ("macs", "umac-64-etm@openssh.com", ["umac-64-etm@openssh.com"]),
    ("HostKeyAlgorithms", "ssh-ed25519,ecdsa-sha2-nistp256", ["ecdsa-sha2-nistp256"]),
    ("HostKeyAlgorithms", "^ssh-rsa", ["^ (adds OpenSSH's defaults)", "ssh-rsa"]),
    ("HostKey", "/etc/ssh/ssh_host_ecdsa_key", ["/etc/ssh/ssh_host_ecdsa_key"]),
    ("HostKey", "/etc/ssh/ssh_host_rsa_key", []),
    ("MaxAuthTries", "6", []),
])
def test_what_weakens_the_policy(keyword, value, weak):
    assert policy.weakening(keyword, value) == weak


def render(**overrides):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLE / "templates")), trim_blocks=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - sshd config, not HTML
    env.filters["bool"] = bool
    values = {"common_ssh_permit_root_login": "prohibit-password", "common_ssh_max_auth_tries": 3, "common_ssh_login_grace_time": 30,
              "common_ssh_client_alive_interval": 300, "common_ssh_client_alive_count_max": 2, "common_ssh_allow_users": ["root"],
              "common_ssh_extra_options": {}, "common_ssh_post_quantum_only": True,
              "common_ssh_host_keys": ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_rsa_key"],
              "common_ssh_algorithms": policy.policy(DEBIAN12_KEX)}
    values.update(overrides)
    return env.get_template("sshd_hardening.conf.j2").render(**values)


def findings(before, after, path="/etc/ssh/sshd_config.d/00-locus-hardening.conf"):
    change = rules.normalise([{"host": "rtr1", "task": "Write the SSH hardening drop-in", "action": "ansible.builtin.template",
                               "diff": {"before": before, "after": after, "before_header": path}}])
    return [f for f in rules.analyse_changes(change, _policy.load_policy().data["analysers"]) if f["rule"] == "crypto_weakened"]


def test_the_drop_in_names_every_algorithm_and_only_ed25519_and_rsa_host_keys():
    text = render()
    assert "KexAlgorithms sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com\n" in text
    assert "MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com\n" in text
    assert "HostKeyAlgorithms ssh-ed25519,rsa-sha2-512,rsa-sha2-256\n" in text
    assert "HostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/ssh_host_rsa_key\n" in text
    assert findings("", text) == []  # the policy itself weakens nothing


def test_turning_post_quantum_only_off_is_a_medium_finding_with_evidence():
    before = render()
    after = render(common_ssh_post_quantum_only=False, common_ssh_algorithms=policy.policy(DEBIAN12_KEX, False))
    (found,) = findings(before, after)
    assert found["message"].startswith("SSH beyond the algorithm policy: KexAlgorithms allows curve25519-sha256, ")
    assert found["evidence"]["host"] == "rtr1" and found["evidence"]["file"].endswith("00-locus-hardening.conf")
    assert found["evidence"]["line"].startswith("+")
    assert "KexAlgorithms sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,curve25519" in found["evidence"]["line"]
    assert _policy.load_policy().data["risk"]["rules"]["crypto_weakened"] == "medium"


def test_legacy_algorithms_through_extra_options_are_found_too():
    after = render(common_ssh_extra_options={"PubkeyAcceptedAlgorithms": "+ssh-rsa"}) + "Ciphers +aes128-cbc\n"
    (found,) = findings(render(), after)
    assert "Ciphers allows + (adds OpenSSH's defaults), aes128-cbc" in found["message"]
    assert findings(render(), render(common_ssh_max_auth_tries=4)) == []  # other settings are not crypto


def test_the_role_documents_every_default():
    import yaml

    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(defaults) == set(spec), set(defaults) ^ set(spec)


def test_the_moduli_pattern_drops_exactly_the_moduli_under_3072_bits():
    import re

    import yaml

    pattern = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["common_ssh_small_modulus"]
    moduli = ("# Time Type Tests Tries Size Generator Modulus\n"
              "20230315000000 2 6 100 2047 2 C0FFEE\n20230315000000 2 6 100 3071 2 D1CE\n"
              "20230315000000 2 6 100 3070 5 BEEF\n20230315000000 2 6 100 8191 2 FACE\n20230315000000 2 6 100 999 2 AB\n")
    kept = re.sub(pattern, "", moduli)
    assert [line.split()[4] for line in kept.splitlines()[1:]] == ["3071", "8191"]
    assert re.sub(pattern, "", kept) == kept  # a second run changes nothing
