"""Fixtures for the Proxmox tests: the PVE API double (tests/doubles) and module runners.

The modules run as real module processes (``python <module>.py <args.json>``, the way
Ansible's module test harness runs them), the role through ``ansible-playbook``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[2]
ROOT = TESTS.parent

from doubles.proxmox_api import GiB, PveDouble  # noqa: E402

# Task durations for tests: long enough to be asynchronous (several status polls), short
# enough for CI. The benchmark uses the double's defaults.
FAST = {"qmclone": 0.6, "qmcreate": 0.3, "qmstart": 0.2, "qmstop": 0.1, "qmshutdown": 0.2, "qmreboot": 0.3,
        "qmdestroy": 0.15, "resize": 0.1, "qmconfig": 0.1}
TEMPLATE = "debian-12-cloud"


@pytest.fixture
def pve():
    double = PveDouble(durations=FAST, flock_timeout=0.5)
    double.add_template(9000, TEMPLATE, disks={"scsi0": 4 * GiB})
    double.add_pool("lab")
    with double:
        yield double


def ssh_public_key(comment):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    text = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{text} {comment}"


@pytest.fixture(scope="session")
def ssh_keys():
    return [ssh_public_key("alice@laptop"), ssh_public_key("bob@workstation")]


def connection(double):
    token_id, secret = double.token()
    return {"api_host": double.host, "api_token_id": token_id, "api_token_secret": secret, "ca_path": double.ca_file}


class ModuleRunner:
    """Run a locus.infra module as its own process with JSON arguments; return its result."""

    def __init__(self, double, tmp_path):
        self.double = double
        self.tmp_path = tmp_path
        self.count = 0

    def __call__(self, module, check=False, diff=False, connect=True, **args):
        self.count += 1
        payload = dict(connection(self.double)) if connect else {}
        payload.update(args)
        payload.update({"_ansible_check_mode": check, "_ansible_diff": diff})
        path = self.tmp_path / f"args-{self.count}.json"
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROXMOX_")}
        proc = subprocess.run([sys.executable, str(ROOT / "plugins" / "modules" / f"{module}.py"), str(path)],
                              capture_output=True, text=True, env=env, timeout=300, check=False)
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            pytest.fail(f"{module} printed no JSON (rc {proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
        result["rc"] = proc.returncode
        return result


def warning_texts(result):
    """Warnings of a module result (ansible-core 2.19 returns them as WarningSummary objects)."""
    return [w["event"]["msg"] if isinstance(w, dict) else str(w) for w in result.get("warnings", [])]


@pytest.fixture
def run_module(pve, tmp_path):
    return ModuleRunner(pve, tmp_path)
