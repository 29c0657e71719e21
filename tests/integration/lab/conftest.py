"""The lab tests' lab (see labkit.py): booted once per module, always stopped at the end."""

from __future__ import annotations

from pathlib import Path

import pytest
from labkit import HOSTS, Lab, write_inventory


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("lab")
    lab_dir, cache_dir = base / "run", base / "apt-cache"
    env = {"LOCUS_STATE_DIR": str(base / "state"), "LOCUS_LAB_DIR": str(lab_dir)}
    the_lab = Lab(inventory=write_inventory(base / "inventory", lab_dir, cache_dir, HOSTS), lab_dir=lab_dir, env=env)
    the_lab.ip_forward_before = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    try:
        up = the_lab.playbook("lab_up.yml")
        the_lab.up_output = up.stdout + up.stderr
        yield the_lab
    finally:
        the_lab.playbook("lab_down.yml", check=False)
