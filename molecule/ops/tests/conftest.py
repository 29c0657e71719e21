"""The lab tests of the operations playbooks: run by molecule/ops/verify.yml on the shared lab
(inventory/lab, up and configured by the scenario), never collected by `make unit`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "integration" / "lab")]

from locus_testlib import run_playbook  # noqa: E402

LAB_DIR = Path(os.environ.get("LOCUS_LAB_DIR", "/var/lib/locus/lab"))
ADDRESSES = {"rtr1": "10.77.0.11", "rtr2": "10.77.0.12", "web1": "10.77.0.21", "ollama1": "10.77.0.31"}


class Ops:
    """Runs the operations playbooks on the lab with a state store and report directory of their own."""

    def __init__(self, base):
        self.state, self.reports = base / "state", base / "reports"
        # molecule exports ANSIBLE_FORCE_COLOR: the tests read plain output.
        self.env = {"LOCUS_STATE_DIR": str(self.state), "LOCUS_REPORT_DIR": str(self.reports), "LOCUS_LAB_DIR": str(LAB_DIR),
                    "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}

    def playbook(self, name, *args, check=False, timeout=900):
        return run_playbook(REPO / "playbooks" / name, env=self.env, inventory=REPO / "inventory" / "lab", args=args, check=check,
                            timeout=timeout)

    def ssh(self, host, command, user="root"):
        proc = subprocess.run(
            ["ssh", "-F", "/dev/null", "-i", str(LAB_DIR / "ssh" / "id_ed25519"), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
             "-o", "ConnectTimeout=10", "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "LogLevel=ERROR",
             f"{user}@{ADDRESSES[host]}", command],
            capture_output=True, text=True, timeout=120, check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"ssh {host} {command!r} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
        return proc.stdout

    def module(self, host, module, args):
        """One module on one lab host (ad-hoc, over SSH like the playbooks); its result."""
        out = subprocess.run([str(REPO / ".venv" / "bin" / "ansible"), "-i", str(REPO / "inventory" / "lab"), host, "-o", "-m", module, "-a", args],
                             env={**os.environ, **self.env, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}, capture_output=True, text=True,
                             timeout=300, check=False, cwd=REPO)
        if out.returncode != 0:
            raise AssertionError(f"{module} on {host} failed ({out.returncode}): {out.stdout}{out.stderr}")
        return json.loads(out.stdout.split(" => ", 1)[1])

    def store(self):
        from ansible_collections.locus.infra.plugins.plugin_utils.store import _store

        return _store.open_store(state_dir=str(self.state))


@pytest.fixture(scope="session")
def ops(tmp_path_factory):
    return Ops(tmp_path_factory.mktemp("ops"))
