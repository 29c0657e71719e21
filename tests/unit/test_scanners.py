"""The scanners' verdicts (plugin_utils/_scanners.py) on real scanner output: sslyze 6.3, installed
from PyPI in the test environment, against `openssl s_server` on loopback - once set up exactly as
Mozilla's intermediate profile says, once with OpenSSL's defaults (CBC suites, X448 and secp521r1),
and once with a certificate that lives too long. ssh-audit's verdict is checked against the lab
hosts in molecule/common."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.locus.infra.plugins.filter import scanners
from ansible_collections.locus.infra.plugins.module_utils import _nginx_model
from ansible_collections.locus.infra.plugins.plugin_utils import _scanners

pytestmark = pytest.mark.slow
NAME = "www.scan.example"


def _cert(tmp_path, days):
    key, cert = tmp_path / f"key{days}.pem", tmp_path / f"cert{days}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-sha256",
                    "-days", str(days), "-subj", f"/CN={NAME}", "-addext", f"subjectAltName=DNS:{NAME}",
                    "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return key, cert


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scan(tmp_path, days, *server_args, profile="intermediate"):
    key, cert = _cert(tmp_path, days)
    port = _free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert), "-key", str(key),
                               "-www", "-quiet", *server_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        proc = subprocess.run([sys.executable, "-m", "sslyze", "--quiet", f"--mozilla_config={profile}", "--certinfo_ca_file",
                               str(cert), f"{NAME}:{port}{{127.0.0.1}}"], capture_output=True, text=True, timeout=120, check=False)
    finally:
        server.terminate()
        server.wait(10)
    return scanners.sslyze_verdict({"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}, profile)


def mozilla_intermediate():
    p = _nginx_model.TLS_PROFILES["intermediate"]
    return ["-no_ssl3", "-no_tls1", "-no_tls1_1", "-cipher", ":".join(p["ciphers"]), "-groups", "X25519:P-256:P-384"]


@pytest.fixture(autouse=True)
def _needs_openssl():
    assert shutil.which("openssl"), "the openssl command (Debian package openssl) is needed"


def test_the_profile_of_the_nginx_model_is_what_sslyze_calls_compliant(tmp_path):
    verdict = scan(tmp_path, 365, *mozilla_intermediate())
    assert verdict == {"passed": True, "profile": "intermediate", "server": verdict["server"], "compliant": True, "issues": {},
                       "error": None}


def test_openssl_defaults_are_not_compliant_and_sslyze_says_why(tmp_path):
    verdict = scan(tmp_path, 365)
    assert not verdict["passed"] and verdict["compliant"] is False
    assert set(verdict["issues"]) == {"ciphers", "tls_curves"}
    assert "CBC" in verdict["issues"]["ciphers"] and "X448" in verdict["issues"]["tls_curves"]


def test_a_certificate_of_825_days_is_not_compliant_and_modern_wants_90(tmp_path):
    verdict = scan(tmp_path, 825, *mozilla_intermediate())
    assert not verdict["passed"] and set(verdict["issues"]) == {"maximum_certificate_lifespan"}
    modern = scan(tmp_path, 365, "-tls1_3", "-groups", "X25519:P-256:P-384", profile="modern")
    assert not modern["passed"] and set(modern["issues"]) == {"maximum_certificate_lifespan"}
    assert scan(tmp_path, 90, "-tls1_3", "-groups", "X25519:P-256:P-384", profile="modern")["passed"]


def test_no_answer_is_an_error_not_a_pass():
    port = _free_port()
    proc = subprocess.run([sys.executable, "-m", "sslyze", "--quiet", "--mozilla_config=intermediate", f"{NAME}:{port}{{127.0.0.1}}"],
                          capture_output=True, text=True, timeout=60, check=False)
    verdict = _scanners.sslyze_verdict({"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}, "intermediate")
    assert not verdict["passed"] and verdict["error"]


def test_bad_input_is_named():
    with pytest.raises(AnsibleFilterError, match=r"sslyze_verdict: the scanner result has no exit code \(rc\)"):
        scanners.sslyze_verdict({"stdout": "x"})
    with pytest.raises(AnsibleFilterError, match="ssh_audit_verdict: expected the registered result"):
        scanners.ssh_audit_verdict("text")
    verdict = _scanners.ssh_audit_verdict({"rc": 1, "stdout": "", "stderr": "(EXC) ConnectionRefusedError"})
    assert not verdict["passed"] and verdict["exit"] == "connection error" and "ConnectionRefused" in verdict["error"]
    assert _scanners.ssh_audit_verdict({"rc": 0, "stdout": b"\xff\xfe".decode("latin-1")})["passed"] is False


# ssh-audit 3.9.0 -j against Debian 12's sshd (openssh-server 1:9.2p1-2+deb12u10) on loopback in a private
# network namespace: with Debian's defaults, with the role's drop-in, and with post_quantum_only off.
RECORDED = Path(__file__).parent / "scanner_output"


def audit(name, rc):
    return _scanners.ssh_audit_verdict({"rc": rc, "stdout": (RECORDED / f"ssh-audit-openssh92-{name}.json").read_text()})


def test_ssh_audit_before_the_policy_debian_defaults_fail():
    verdict = audit("debian", 3)
    assert not verdict["passed"] and verdict["exit"] == "failure" and verdict["software"] == "OpenSSH_9.2p1"
    assert sorted(c["algorithm"] for c in verdict["critical"]) == [
        "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521", "ecdsa-sha2-nistp256", "hmac-sha1", "hmac-sha1-etm@openssh.com"]
    warned = {w["algorithm"] for w in verdict["warnings"]}
    assert {"hmac-sha2-256", "hmac-sha2-512", "umac-64-etm@openssh.com", "diffie-hellman-group14-sha256", "curve25519-sha256"} <= warned


def test_ssh_audit_on_the_policy_has_nothing_to_say():
    verdict = audit("policy", 0)
    assert verdict["passed"] and verdict["critical"] == [] and verdict["warnings"] == [] and verdict["error"] is None
    assert verdict["algorithms"]["kex"] == ["sntrup761x25519-sha512@openssh.com", "kex-strict-s-v00@openssh.com"]
    assert verdict["algorithms"]["key"] == ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"]
    assert not audit("policy", 2)["passed"]  # the exit code counts too


def test_ssh_audit_without_post_quantum_only_warns_but_fails_nothing():
    verdict = audit("classic", 2)
    assert not verdict["passed"] and verdict["exit"] == "warning" and verdict["critical"] == []
    assert [w["algorithm"] for w in verdict["warnings"]] == [
        "curve25519-sha256", "curve25519-sha256@libssh.org", "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512"]
    assert all(w["notes"] == ["does not provide protection against post-quantum attacks"] for w in verdict["warnings"])
