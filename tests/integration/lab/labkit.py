"""Helpers of the lab tests: a lab of its own, two real Debian hosts booted with systemd-nspawn.

It runs beside (never instead of) the lab of inventory/lab that molecule and the demo use:
its own bridge and networks (locus-t<N>, 10.78.<N>.0/24, fd78:<N>::/64 with N picked per test
session, so test sessions on one machine do not meet), run-time directory and apt proxy
cache, the same inventory group_vars for the connection, and the machine-wide cached base
image. Booted once per module; always stopped at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from locus_testlib import REPO, run_playbook

N = os.getpid() % 250 + 1
BRIDGE = f"locus-t{N}"
OTHER_BRIDGE = f"locus-u{N}"
NET4, GW4, NET6, GW6 = f"10.78.{N}.0/24", f"10.78.{N}.1", f"fd78:{N}::/64", f"fd78:{N}::1"
HOSTS = {"labtest1": (f"10.78.{N}.11", f"fd78:{N}::11"), "labtest2": (f"10.78.{N}.12", f"fd78:{N}::12")}
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def recap(output):
    """{host: {"ok": n, "changed": n, "unreachable": n, "failed": n}} from a PLAY RECAP."""
    return {m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]), "failed": int(m[5])} for m in RECAP.finditer(output)}


def write_inventory(directory, lab_dir, cache_dir, hosts, bridge=BRIDGE, net=f"{GW4}/24", net6=f"{GW6}/64"):
    """An inventory laid out like inventory/lab, with the real connection settings."""
    directory = Path(directory)
    (directory / "group_vars").mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(
        yaml.safe_dump(
            {"all": {"children": {"lab": {"hosts": {name: {"ansible_host": v4, **({"lab_ipv6": v6} if v6 else {})} for name, (v4, v6) in hosts.items()}}}}}
        )
    )
    (directory / "group_vars" / "all.yml").write_text(
        yaml.safe_dump(
            {
                "lab_dir": str(lab_dir),
                "lab_bridge": bridge,
                "lab_bridge_ipv4": net,
                "lab_bridge_ipv6": net6,
                "lab_apt_cache_dir": str(cache_dir),
            }
        )
    )
    shutil.copy(REPO / "inventory" / "lab" / "group_vars" / "lab.yml", directory / "group_vars" / "lab.yml")
    return directory


@dataclass
class Lab:
    inventory: Path
    lab_dir: Path
    env: dict
    up_output: str = ""
    ip_forward_before: str = ""
    hosts: dict = field(default_factory=lambda: dict(HOSTS))

    def playbook(self, name, check=True, inventory=None, env=None):
        return run_playbook(REPO / "playbooks" / name, env={**self.env, **(env or {})}, inventory=inventory or self.inventory, check=check,
                            timeout=900)

    def ssh(self, host, command, user="root", check=True):
        proc = subprocess.run(
            [
                "ssh", "-F", "/dev/null", "-i", str(self.lab_dir / "ssh" / "id_ed25519"),
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "LogLevel=ERROR",
                f"{user}@{self.hosts[host][0]}", command,
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"ssh {host} {command!r} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
        return proc

    def pid(self, host):
        return int((self.lab_dir / "hosts" / host / "pid").read_text())


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return []
