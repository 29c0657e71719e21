"""proxmox_vm state=migrated and playbooks/proxmox_evacuate.yml against the PVE API double: live
and offline migration with task waiting, one VM at a time, only after a human's approval."""

from __future__ import annotations

import re

import yaml
from conftest import connection

from locus_testlib import REPO, run_locus, run_playbook


def test_migrated_moves_live_or_offline_and_is_idempotent(pve, run_module):
    pve.add_vm(301, "app1", node="pve1", status="running")
    pve.add_vm(302, "app2", node="pve1", status="stopped")
    check = run_module("proxmox_vm", check=True, name="app1", node="pve2", state="migrated")
    assert check["rc"] == 0, check["msg"]
    assert check["actions"] == ["migrate from pve1 to pve2 (online)"] and pve.vms[301].node == "pve1"
    live = run_module("proxmox_vm", name="app1", node="pve2", state="migrated")
    assert live["rc"] == 0, live["msg"]
    assert live["node"] == "pve2" and pve.vms[301].node == "pve2" and pve.vm_status(301) == "running"
    assert live["tasks"][0]["exitstatus"] == "OK" and "lock" not in pve.vm_config(301)
    offline = run_module("proxmox_vm", name="app2", node="pve2", state="migrated")
    assert offline["actions"] == ["migrate from pve1 to pve2 (offline)"] and pve.vms[302].node == "pve2"
    again = run_module("proxmox_vm", name="app1", node="pve2", state="migrated")
    assert again["changed"] is False and again["actions"] == []
    for spec, text in (({"name": "app1", "state": "migrated"}, "node: state=migrated needs the target node"),
                       ({"name": "app1", "node": "pve9", "state": "migrated"}, "node: pve9 is not a node of the cluster"),
                       ({"name": "ghost", "node": "pve1", "state": "migrated"}, "VM ghost does not exist")):
        bad = run_module("proxmox_vm", **spec)
        assert bad["rc"] != 0 and text in bad["msg"], bad["msg"]


def test_a_migration_that_fails_reports_the_task_log(pve, run_module):
    pve.add_vm(303, "app3", node="pve1", status="running")
    pve.fail_task("qmigrate", "migration aborted (duration 00:00:01): target node is not responding", vmid=303)
    failed = run_module("proxmox_vm", name="app3", node="pve2", state="migrated")
    assert failed["rc"] != 0 and "target node is not responding" in failed["msg"]
    assert pve.vms[303].node == "pve1" and "lock" not in pve.vm_config(303)


def test_evacuate_needs_approval_then_moves_one_at_a_time(pve, tmp_path):
    pve.durations["qmigrate"] = 0.4
    pve.add_vm(311, "web1", node="pve1", status="running")
    pve.add_vm(312, "web2", node="pve1", status="running")
    pve.add_vm(313, "batch", node="pve1", status="stopped")
    pve.add_vm(314, "db1", node="pve2", status="running")
    conn = connection(pve)
    token_id, secret = pve.token()
    extra = {"evacuate_node": "pve1", "proxmox_vm_api_host": conn["api_host"], "proxmox_vm_api_token_id": token_id,
             "proxmox_vm_api_token_secret": secret, "proxmox_vm_ca_path": conn["ca_path"]}
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(extra))
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state"), "LOCUS_APPROVAL_TOKEN": "", "LOCUS_POLICY": ""}
    playbook = REPO / "playbooks" / "proxmox_evacuate.yml"
    args = ["-e", f"@{tmp_path / 'vars.yml'}"]

    stopped = run_playbook(playbook, env=env, args=args, check=False)
    assert stopped.returncode != 0 and "needs_approval (risk high)" in stopped.stdout, stopped.stdout[-3000:]
    assert "vm_migrate" in stopped.stdout and "moves VM web1 to node pve2" in stopped.stdout
    assert {vm.node for vm in pve.vms.values() if vm.vmid > 300} == {"pve1", "pve2"}
    assert pve.request_count("POST", r"/migrate$") == 0
    tag = re.search(r"approve (LOCUS-VALIDATE\d{8}-\d{3,})", stopped.stdout).group(1)
    approved = run_locus("approve", tag, env=env)
    assert approved.returncode == 0, approved.stderr
    token = approved.stdout.strip().splitlines()[-1]

    moved = run_playbook(playbook, env={**env, "LOCUS_APPROVAL_TOKEN": token}, args=args, check=False)
    assert moved.returncode == 0, moved.stdout[-3000:] + moved.stderr[-2000:]
    assert all(pve.vms[v].node == "pve2" for v in (311, 312, 313)) and pve.vms[9000].node == "pve1"  # template stays
    assert pve.max_concurrent_tasks[("pve1", "qmigrate")] == 1 and pve.request_count("POST", r"/migrate$") == 3
    assert pve.vm_status(311) == "running" and pve.vm_status(313) == "stopped"

    again = run_playbook(playbook, env=env, args=args, check=False)
    assert again.returncode == 0 and "pve1 holds no VM (templates stay)" in again.stdout
