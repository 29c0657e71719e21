"""A real NetBox 4.7 for the whole test session, seeded once (tests/netbox/)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pynetbox
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]

import netboxctl  # noqa: E402
import seed  # noqa: E402

ANSIBLE_INVENTORY = str(Path(sys.executable).with_name("ansible-inventory"))
STOPS_NETBOX = "netbox_stops"


def pytest_configure(config):
    config.addinivalue_line("markers", f"{STOPS_NETBOX}: stops the session's NetBox; runs after every other test")


def pytest_collection_modifyitems(session, config, items):
    """Tests that stop NetBox run last, so nothing has to start it again."""
    def last(item):
        marker = item.get_closest_marker(STOPS_NETBOX)
        return (0, 0) if marker is None else (1, marker.kwargs.get("order", 0))

    items.sort(key=last)


@dataclass
class NetBox:
    url: str
    token_v1: str
    token_v2: str
    env: dict
    lab_hosts: list

    def api(self, token=None):
        return pynetbox.api(self.url, token=token or self.token_v1)


@pytest.fixture(scope="session")
def netbox():
    base = Path(tempfile.mkdtemp(prefix="locus-netbox-test-"))
    base.chmod(0o755)
    state = base / "netbox"
    try:
        env = netboxctl.up(port="auto", state_dir=state, workers=1, threads=4)
    except netboxctl.NetBoxCtlError as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"cannot bring NetBox up: {exc}")
    try:
        nb = NetBox(env["url"], env["token_v1"], env["token_v2"], env, [])
        nb.lab_hosts = seed.Seeder(nb.api()).all()
        yield nb
    finally:
        netboxctl.down(state_dir=state)
        leftovers = [f"{name} pid {pid}" for name, pid in env["pids"].items() if netboxctl.pid_alive(pid)]
        leftovers += [f"port {p}" for p in (env["port"], env["pg_port"], env["redis_port"]) if not netboxctl.port_free(p)]
        leftovers += [str(state)] if state.exists() else []
        shutil.rmtree(base, ignore_errors=True)
        if leftovers:
            pytest.fail(f"netboxctl down left {leftovers} behind")


def unwrap(value):
    return seed.unwrap(value)


@dataclass
class InventoryRun:
    rc: int
    stdout: str
    stderr: str
    data: dict | None

    @property
    def hostvars(self):
        return self.data["_meta"]["hostvars"]

    def groups(self):
        """Group -> sorted hosts (children expanded)."""
        return {g: sorted(hs) for g, hs in seed.group_members(self.data).items()}


@pytest.fixture(scope="session")
def run_inventory(netbox, tmp_path_factory):
    """run_inventory(config, *args, token=..., env=...) -> InventoryRun of ``ansible-inventory --list``.

    Each run gets a state directory of its own (so no snapshot of another run is used) unless the
    config names ``state_dir`` or ``env`` sets ``LOCUS_STATE_DIR``."""
    workdir = tmp_path_factory.mktemp("inventories")
    counter = iter(range(10_000))

    def run(config=None, *args, token=None, env=None, name=None):
        path = workdir / f"{name or f'run{next(counter)}'}.netbox.yml"
        path.write_text(yaml.safe_dump({"plugin": "locus.infra.netbox", **(config or {})}))
        full_env = {**os.environ, "NETBOX_API": netbox.url, "NETBOX_TOKEN": token or netbox.token_v1,
                    "LOCUS_STATE_DIR": tempfile.mkdtemp(dir=workdir, prefix="state-"),
                    "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_FORCE_COLOR": "0"}
        # ansible.cfg sets [inventory] unparsed_is_failed; tests see what a user of this checkout sees.
        full_env.pop("ANSIBLE_INVENTORY_UNPARSED_FAILED", None)
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        proc = subprocess.run([ANSIBLE_INVENTORY, "-i", str(path), "--list", *args], capture_output=True, text=True,
                              env=full_env, cwd=REPO, timeout=300, check=False)
        data = None
        if proc.returncode == 0:
            # at -v Ansible prints its own lines (and ours) to stdout before the JSON document
            start = 0 if proc.stdout.startswith("{") else proc.stdout.index("\n{") + 1
            data = unwrap(json.loads(proc.stdout[start:]))
        return InventoryRun(proc.returncode, proc.stdout, proc.stderr, data)

    return run


# Read-only ansible-inventory runs, started together (they only read the seeded NetBox).
WRONG_TOKEN = "0123456789" * 4
FILTERS = {
    "site+status": {"filters": {"site": ["dc1", "edge1"], "status": ["active"]}},
    "role+tenant, VMs only": {"devices": False, "filters": {"role": ["router", "web"], "tenant": ["ops"]}},
    "tag, devices only": {"virtual_machines": False, "filters": {"tag": ["monitored"]}},
}
CONSTRUCTED = {
    "keyed_groups": [{"key": "tenant", "prefix": "tenant"}, {"key": "locus_vm.template", "prefix": "template"}],
    "compose": {"ansible_port": "2222 if 'gpu' in netbox_tags else 22",
                "ram_gib": "(locus_vm.memory // 1024) if locus_vm is defined and locus_vm.memory else 0"},
    "groups": {"big_vms": "locus_vm is defined and locus_vm.memory is not none and locus_vm.memory >= 8192"},
}


@pytest.fixture(scope="session")
def inventories(netbox, run_inventory):
    """name -> InventoryRun of the read-only runs, built concurrently once per session."""
    config = yaml.safe_load((REPO / "inventory" / "netbox.yml").read_text())
    config.pop("plugin")
    jobs = {
        "default": ((config, "-v"), {"name": "default"}),
        "v2": (({},), {"token": netbox.token_v2}),
        "constructed": ((CONSTRUCTED,), {}),
        "wrong token": (({},), {"token": WRONG_TOKEN}),
        "wrong token, unparsed_is_failed off": (
            ({},), {"token": WRONG_TOKEN, "env": {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "False"}}),
        **{f"filter {k}": ((v, "-v"), {}) for k, v in FILTERS.items()},
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run_inventory, *args, **kwargs) for name, (args, kwargs) in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.fixture(scope="session")
def default_inventory(inventories):
    """The inventory of inventory/netbox.yml's settings (no filters)."""
    result = inventories["default"]
    assert result.rc == 0, result.stderr
    return result
