"""locus.infra.netbox_journal against the session's real NetBox, with a real state store.

One ansible-playbook run (check mode, a write on the inventory host, a write on a device found
by name, a missing object), then everything is read back with pynetbox and from the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.locus.infra.plugins.plugin_utils.store._store import open_store

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
COMMENT = "site www.example.com deployed"


@pytest.fixture(scope="module")
def journal_run(netbox, tmp_path_factory):
    api = netbox.api()
    vm = api.virtualization.virtual_machines.get(name="web-dc1")
    pve2 = api.dcim.devices.get(name="pve2")
    before = {e.id for e in api.extras.journal_entries.all()}
    tmp = tmp_path_factory.mktemp("journal")
    (tmp / "inv.netbox.yml").write_text(yaml.safe_dump({"plugin": "locus.infra.netbox"}))
    out = tmp / "results.json"
    tasks = [
        {"name": "predict", "locus.infra.netbox_journal": {"comments": COMMENT, "kind": "success"},
         "check_mode": True, "diff": True, "register": "predicted"},
        {"name": "write on the inventory host", "register": "written",
         "locus.infra.netbox_journal": {"comments": COMMENT, "kind": "success", "ref_action": "DEPLOY"}},
        {"name": "write on a device found by name", "register": "device",
         "locus.infra.netbox_journal": {"object_type": "device", "object_name": "pve2", "comments": "firmware 2.1"}},
        {"name": "no such object", "register": "missing", "ignore_errors": True,
         "locus.infra.netbox_journal": {"object_type": "virtual_machine", "object_id": 999999, "comments": "x"}},
        {"name": "keep the results", "check_mode": False, "diff": False, "ansible.builtin.copy": {
            "dest": str(out),
            "content": "{{ {'predicted': predicted, 'written': written, 'device': device, 'missing': missing} "
                       "| to_json }}"}},
    ]
    playbook = [{"name": "journal", "hosts": "web-dc1", "gather_facts": False, "connection": "local",
                 "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}, "tasks": tasks}]
    (tmp / "play.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
    env = {**os.environ, "NETBOX_API": netbox.url, "NETBOX_TOKEN": netbox.token_v2,
           "LOCUS_STATE_DIR": str(tmp / "state"), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    env.pop("LOCUS_STATE_URL", None)
    proc = subprocess.run([PLAYBOOK, "-i", str(tmp / "inv.netbox.yml"), str(tmp / "play.yml")], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entries = [e for e in api.extras.journal_entries.all() if e.id not in before]
    return {"results": json.loads(out.read_text()), "stdout": proc.stdout, "vm": vm, "pve2": pve2,
            "entries": entries, "state": tmp / "state"}


def test_check_mode_predicts_and_writes_nothing(journal_run):
    predicted = journal_run["results"]["predicted"]
    vm = journal_run["vm"]
    assert predicted["changed"] is True and "ref_tag" not in predicted
    assert predicted["object"] == {"type": "virtualization.virtualmachine", "id": vm.id, "name": "web-dc1",
                                   "label": f"virtual machine 'web-dc1' (id {vm.id})"}
    assert f"<REF-tag>: {COMMENT}" in journal_run["stdout"]  # the diff
    # two entries were written in the whole run: the VM's and the device's
    assert len(journal_run["entries"]) == 2


def test_entry_on_the_inventory_host_carries_a_recorded_ref_tag(journal_run):
    written = journal_run["results"]["written"]
    vm = journal_run["vm"]
    tag = written["ref_tag"]
    assert written["changed"] is True and tag.startswith("LOCUS-DEPLOY")
    on_vm = [e for e in journal_run["entries"] if e.assigned_object_type == "virtualization.virtualmachine"
             and e.assigned_object_id == vm.id]
    assert [(e.comments, e.kind.value) for e in on_vm] == [(f"{tag}: {COMMENT}", "success")]
    assert written["journal_entry"]["id"] == on_vm[0].id
    store = open_store(state_dir=str(journal_run["state"]))
    try:
        record = store.get(tag)
    finally:
        store.close()
    assert record is not None
    assert record["subject"] == f"NetBox journal entry on virtual machine 'web-dc1' (id {vm.id})"
    data = record["data"] if isinstance(record["data"], dict) else json.loads(record["data"])
    assert data["object_id"] == vm.id and data["comments"] == COMMENT


def test_entry_on_a_device_found_by_name(journal_run):
    device = journal_run["results"]["device"]
    pve2 = journal_run["pve2"]
    on_device = [e for e in journal_run["entries"] if e.assigned_object_type == "dcim.device"]
    assert [(e.assigned_object_id, e.comments) for e in on_device] == [(pve2.id, f"{device['ref_tag']}: firmware 2.1")]


def test_missing_object_fails_before_a_tag_is_allocated(journal_run):
    missing = journal_run["results"]["missing"]
    assert missing["failed"] is True and "ref_tag" not in missing
    assert "virtualization/virtual-machines: no virtual machine with id 999999 in NetBox at" in missing["msg"]
