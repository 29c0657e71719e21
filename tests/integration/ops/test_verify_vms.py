"""verify.yml's "vm running" check against the Proxmox VE API double: hosts that carry locus_vm
must have a running VM; a stopped or missing VM fails the check, and asking changes nothing."""

from __future__ import annotations

import json

import yaml
from doubles.proxmox_api import PveDouble

from ansible_collections.locus.infra.plugins.plugin_utils.store import _store
from locus_testlib import REPO, run_playbook


def test_vm_running_is_checked_and_recorded(tmp_path):
    with PveDouble(durations={"qmstart": 0.1}) as pve:
        pve.add_vm(201, "vm-run", status="running")
        pve.add_vm(202, "vm-stop", status="stopped")
        token_id, secret = pve.token()
        hosts = {name: {"locus_vm": {"name": name, "node": "pve1"}} for name in ("vm-run", "vm-stop", "vm-gone")}
        inventory = {"all": {"vars": {"ansible_host": "127.0.0.1", "ansible_port": 1, "proxmox_vm_api_host": pve.host,
                                      "proxmox_vm_api_token_id": token_id, "proxmox_vm_api_token_secret": secret,
                                      "proxmox_vm_ca_path": pve.ca_file}, "hosts": hosts}}
        (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
        env = {"LOCUS_STATE_DIR": str(tmp_path / "state")}
        out = run_playbook(REPO / "playbooks" / "verify.yml", env=env, inventory=tmp_path / "inventory.yml", check=False)
        assert out.returncode == 2  # the VMs' hosts are not reachable over SSH here, and two VMs are not running
        with _store.open_store(state_dir=str(tmp_path / "state")) as store:
            checks = [json.loads(r["data"]) for r in store.iter_records() if r["tag"].startswith("LOCUS-VALIDATE")]
        vms = {c["host"]: c for c in checks if c["check"] == "vm running"}
        assert vms["vm-run"]["passed"] is True and vms["vm-run"]["detail"]["vmid"] == 201
        assert vms["vm-stop"]["passed"] is False and vms["vm-stop"]["detail"]["would"] == ["start"]
        assert vms["vm-gone"]["passed"] is False
        assert pve.vms[202].status == "stopped" and 203 not in pve.vms  # asked in check mode: nothing changed
