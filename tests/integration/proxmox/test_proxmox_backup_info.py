"""locus.infra.proxmox_backup_info against the PVE API double, and verify.yml's "vm backed up"
check: coverage from PVE's not-backed-up list, the newest backup per guest from storage content."""

from __future__ import annotations

import json
import re

import yaml
from conftest import connection

from ansible_collections.locus.infra.plugins.plugin_utils.store import _store
from locus_testlib import REPO, run_playbook


def seed(pve):
    for vmid, name, node in ((101, "web1", "pve1"), (102, "web2", "pve1"), (103, "db1", "pve2"), (104, "scratch", "pve2")):
        pve.add_vm(vmid, name, node=node)
    pve.add_storage("pve1", "pbs", "pbs", "backup", total=1 << 40, shared=True)
    pve.add_storage("pve2", "pbs", "pbs", "backup", total=1 << 40, shared=True)
    pve.backup_jobs["daily"] = {"id": "daily", "schedule": "02:30", "storage": "pbs", "vmid": "101,103", "enabled": "1"}
    pve.backup_jobs["off"] = {"id": "off", "schedule": "sun 01:00", "storage": "local", "vmid": "102", "enabled": "0"}
    pve.add_backup(101, storage="pbs", age_hours=50)
    pve.add_backup(101, storage="pbs", age_hours=3)  # the newest one counts
    pve.add_backup(103, storage="local", node="pve2", age_hours=30)
    pve.add_backup(102, storage="local", node="pve1", age_hours=1)


def test_jobs_coverage_and_last_backup_per_guest(pve, run_module):
    seed(pve)
    pve.reset_counters()
    info = run_module("proxmox_backup_info", max_age_hours=26, vms=["web1", "web2", "db1", "scratch", "ghost", "103"])
    assert info["rc"] == 0, info["msg"]
    assert info["not_backed_up"] == [104]  # PVE counts the disabled job's VM as covered
    by = {g["name"]: g for g in info["guests"]}
    assert by["web1"]["jobs"] == ["daily"] and by["web1"]["fresh"] and 2.9 < by["web1"]["age_hours"] < 3.1
    assert by["web1"]["volid"].startswith("pbs:backup/vzdump-qemu-101-")
    assert by["web2"]["covered"] and by["web2"]["jobs"] == [] and by["web2"]["fresh"]
    assert by["db1"]["fresh"] is False and 29.9 < by["db1"]["age_hours"] < 30.1
    assert by["scratch"]["covered"] is False and by["scratch"]["last_backup"] is None
    assert info["stale"] == ["db1", "scratch"] and info["uncovered"] == ["scratch"] and info["missing"] == ["ghost"]
    assert [j["id"] for j in info["jobs"]] == ["daily", "off"] and info["jobs"][0]["guests"] == [101, 103]
    # resources, jobs, not-backed-up, then local on each node and the shared pbs once
    assert info["api_requests"] == pve.request_count() == 6
    assert pve.request_count("GET", r"/storage/pbs/content") == 1
    assert [r for r in pve.requests if r[0] != "GET"] == []


def test_verify_records_backup_coverage_as_validate(pve, tmp_path):
    seed(pve)
    token_id, secret = pve.token()
    conn = connection(pve)
    hosts = {name: {"locus_vm": {"name": name, "node": "pve1"}} for name in ("web1", "web2", "db1", "scratch")}
    inventory = {"all": {"vars": {"ansible_host": "127.0.0.1", "ansible_port": 1, "proxmox_vm_api_host": conn["api_host"],
                                  "proxmox_vm_api_token_id": token_id, "proxmox_vm_api_token_secret": secret,
                                  "proxmox_vm_ca_path": conn["ca_path"]}, "hosts": hosts}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state")}
    out = run_playbook(REPO / "playbooks" / "verify.yml", env=env, inventory=tmp_path / "inventory.yml", check=False)
    assert out.returncode == 2, out.stdout[-3000:]
    with _store.open_store(state_dir=str(tmp_path / "state")) as store:
        checks = [json.loads(r["data"]) for r in store.iter_records() if r["tag"].startswith("LOCUS-VALIDATE")]
    backups = {c["host"]: c for c in checks if c["check"] == "vm backed up"}
    assert backups["web1"]["passed"] is True and backups["web1"]["detail"]["jobs"] == ["daily"]
    assert backups["db1"]["passed"] is False and backups["db1"]["detail"]["age_hours"] > 26
    assert backups["scratch"]["passed"] is False and backups["scratch"]["detail"]["covered"] is False
    # PVE counts web2 as covered (by a disabled job) and it has a fresh manual backup: no job will make the next one.
    assert backups["web2"]["passed"] is False and backups["web2"]["detail"]["covered"] is True and backups["web2"]["detail"]["jobs"] == []


def test_verify_without_proxmox_skips_the_backup_check_with_a_message(tmp_path):
    inventory = {"all": {"vars": {"ansible_host": "127.0.0.1", "ansible_port": 1},
                         "hosts": {"web1": {"locus_vm": {"name": "web1"}}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state"), "PROXMOX_HOST": ""}
    out = run_playbook(REPO / "playbooks" / "verify.yml", env=env, inventory=tmp_path / "inventory.yml", check=False)
    assert "backup coverage not checked - no Proxmox VE API configured" in out.stdout
    with _store.open_store(state_dir=str(tmp_path / "state")) as store:
        checks = [json.loads(r["data"]) for r in store.iter_records() if r["tag"].startswith("LOCUS-VALIDATE")]
    assert [c for c in checks if c["check"] == "vm backed up"] == []


def test_status_report_records_and_shows_backup_coverage(pve, tmp_path):
    """status_report.yml: each VM the inventory describes is a "vm backed up" VALIDATE record, and the
    report lists them with their tags and charts the backup ages against the limit."""
    seed(pve)
    token_id, secret = pve.token()
    conn = connection(pve)
    hosts = {name: {"locus_vm": {"name": name, "node": "pve1"}} for name in ("web1", "web2", "db1", "scratch", "ghost")}
    hosts["plain"] = {}  # no locus_vm: not a VM NetBox describes, not checked
    inventory = {"all": {"vars": {"ansible_host": "127.0.0.1", "ansible_port": 1, "proxmox_vm_api_host": conn["api_host"],
                                  "proxmox_vm_api_token_id": token_id, "proxmox_vm_api_token_secret": secret,
                                  "proxmox_vm_ca_path": conn["ca_path"]}, "hosts": hosts}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state"), "LOCUS_REPORT_DIR": str(tmp_path / "reports"), "PROXMOX_HOST": ""}
    out = run_playbook(REPO / "playbooks" / "status_report.yml", env=env, inventory=tmp_path / "inventory.yml", check=False)
    tag = re.search(r"status_report (LOCUS-ARTIFACT\d{8}-\d{3,}): ", out.stdout)
    assert tag, out.stdout[-3000:]
    with _store.open_store(state_dir=str(tmp_path / "state")) as store:
        records = {r["tag"]: json.loads(r["data"]) for r in store.iter_records()}
    checks = {d["host"]: (t, d) for t, d in records.items() if t.startswith("LOCUS-VALIDATE") and d.get("check") == "vm backed up"}
    assert set(checks) == {"web1", "web2", "db1", "scratch", "ghost"}
    assert checks["web1"][1]["passed"] is True and checks["web1"][1]["detail"]["jobs"] == ["daily"]
    assert checks["db1"][1]["passed"] is False and checks["db1"][1]["detail"]["error"].startswith("newest backup 30")
    assert checks["scratch"][1]["detail"]["error"] == "no backup job covers it"
    assert checks["web2"][1]["passed"] is False and checks["web2"][1]["detail"]["error"] == "only disabled backup jobs select it"
    assert checks["ghost"][1]["detail"]["error"] == "no VM ghost in the cluster"
    assert records[tag.group(1)]["validate"] == sorted(check[0] for check in checks.values())
    md = (tmp_path / "reports" / f"status_report-{tag.group(1)}.md").read_text()
    assert "1 of 5 VM(s) covered by an enabled backup job with a backup younger than 26 h: FAILED: db1" in md
    assert re.search(rf"\| web1 \| web1 \(101\) \| daily \| 20\d\d-[-\dT:]+Z \| 3(\.\d+)? \| passed \| {checks['web1'][0]} \|", md)
    assert f"| ghost | ghost (-) | - | - | - | FAILED | {checks['ghost'][0]} |" in md
    page = (tmp_path / "reports" / f"status_report-{tag.group(1)}.html").read_text()
    assert 'data-chart="backups"' in page and "Age of the newest backup" in page
    assert [r for r in pve.requests if r[0] != "GET"] == []  # the report only reads


def test_status_report_without_proxmox_says_backups_were_not_checked(tmp_path):
    inventory = {"all": {"vars": {"ansible_host": "127.0.0.1", "ansible_port": 1}, "hosts": {"web1": {"locus_vm": {"name": "web1"}}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state"), "LOCUS_REPORT_DIR": str(tmp_path / "reports"), "PROXMOX_HOST": ""}
    out = run_playbook(REPO / "playbooks" / "status_report.yml", env=env, inventory=tmp_path / "inventory.yml", check=False)
    tag = re.search(r"status_report (LOCUS-ARTIFACT\d{8}-\d{3,}): ", out.stdout)
    assert tag, out.stdout[-3000:]
    md = (tmp_path / "reports" / f"status_report-{tag.group(1)}.md").read_text()
    assert "Not checked for 1 VM(s): no Proxmox VE API configured" in md
    with _store.open_store(state_dir=str(tmp_path / "state")) as store:
        assert not [r for r in store.iter_records() if r["tag"].startswith("LOCUS-VALIDATE")]
