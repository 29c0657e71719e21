"""locus.infra.proxmox_backup_job against the stateful PVE API double: create/update/delete of
cluster backup jobs, normalisation (second run unchanged), check and diff mode, REF-tag in the
comment, state=run with vzdump tasks, and errors as PVE returns them."""

from __future__ import annotations

import pytest
from conftest import connection, warning_texts

JOB_WRITES = r"^/cluster/backup"


@pytest.fixture
def guests(pve):
    """Five VMs on two nodes, two of them in pool lab."""
    ids = {}
    for vmid, name, node in ((101, "web1", "pve1"), (102, "web2", "pve1"), (103, "db1", "pve2"),
                             (104, "scratch", "pve2"), (105, "mon1", "pve1")):
        ids[name] = pve.add_vm(vmid, name, node=node)
    pve.vms[101].pool = "lab"
    pve.vms[103].pool = "lab"
    return ids


def daily(**extra):
    spec = {"id": "daily", "schedule": "02:30", "storage": "local", "mode": "snapshot", "compress": "zstd",
            "retention": {"keep_daily": 7, "keep_weekly": 4}, "notes_template": "{{guestname}} ({{vmid}})",
            "vm_names": ["web1", "db1"], "ref_tag": "LOCUS-DEPLOY20261206-001"}
    spec.update(extra)
    return spec


def job_writes(double):
    return [(m, p, s) for m, p, s in double.requests if m != "GET" and p.startswith("/cluster/backup")]


def test_create_from_names_then_second_run_unchanged(pve, guests, run_module):
    first = run_module("proxmox_backup_job", **daily())
    assert first["rc"] == 0, first["msg"]
    assert first["changed"] and first["actions"] == ["create backup job daily"]
    stored = pve.backup_jobs["daily"]
    assert stored["vmid"] == "101,103" and stored["schedule"] == "02:30" and stored["compress"] == "zstd"
    assert stored["prune-backups"] == "keep-daily=7,keep-weekly=4"
    assert stored["notes-template"] == "{{guestname}} ({{vmid}})"
    assert stored["comment"] == "locus-ref: LOCUS-DEPLOY20261206-001"
    assert first["job"]["vmid"] == [101, 103] and first["ref_tag"] == "LOCUS-DEPLOY20261206-001"

    pve.reset_counters()
    # the same job said differently: VMIDs instead of names, in another order, compress 'zstd', a newer tag
    second = run_module("proxmox_backup_job", **daily(vm_names=None, vmids=[103, 101, 103], schedule=" 02:30 ",
                                                      ref_tag="LOCUS-DEPLOY20261207-004"))
    assert second["rc"] == 0, second["msg"]
    assert second["changed"] is False and second["actions"] == [] and second["changes"] == {}
    assert job_writes(pve) == [] and pve.request_count() == second["api_requests"] == 1
    assert second["ref_tag"] == "LOCUS-DEPLOY20261206-001"  # a new tag alone changes nothing


def test_check_mode_predicts_create_and_update_with_only_changed_keys(pve, guests, run_module):
    check = run_module("proxmox_backup_job", check=True, diff=True, **daily())
    assert check["rc"] == 0, check["msg"]
    assert check["changed"] and pve.backup_jobs == {} and job_writes(pve) == []
    real = run_module("proxmox_backup_job", **daily())
    assert real["changes"] == check["changes"] and real["job"] == check["job"]

    pve.reset_counters()
    update = daily(vm_names=["web1"], retention={"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 3})
    check = run_module("proxmox_backup_job", check=True, diff=True, **update)
    assert check["rc"] == 0, check["msg"]
    assert set(check["diff"]["before"]) == {"vmid", "prune-backups"}
    assert check["diff"]["before"]["vmid"] == [101, 103] and check["diff"]["after"]["vmid"] == [101]
    assert check["diff"]["after"]["prune-backups"] == {"keep-daily": 7, "keep-weekly": 4, "keep-monthly": 3}
    assert job_writes(pve) == [] and pve.backup_jobs["daily"]["vmid"] == "101,103"
    real = run_module("proxmox_backup_job", **update)
    assert real["changes"] == check["changes"] and real["job"] == check["job"]
    assert [(m, p) for m, p, _s in job_writes(pve)] == [("PUT", "/cluster/backup/daily")]
    assert pve.backup_jobs["daily"]["vmid"] == "101"
    assert pve.backup_jobs["daily"]["prune-backups"] == "keep-daily=7,keep-weekly=4,keep-monthly=3"
    # the REF-tag moved with the real change
    assert pve.backup_jobs["daily"]["comment"] == "locus-ref: LOCUS-DEPLOY20261206-001"
    again = run_module("proxmox_backup_job", **update, comment="nightly")
    assert again["changes"] == {"comment": {"before": "", "after": "nightly"}}
    assert pve.backup_jobs["daily"]["comment"] == "nightly locus-ref: LOCUS-DEPLOY20261206-001"


def test_selection_switches_and_removed_keys_are_deleted(pve, guests, run_module):
    assert run_module("proxmox_backup_job", **daily())["rc"] == 0
    to_all = run_module("proxmox_backup_job", id="daily", all=True, exclude_names=["scratch"], retention={},
                        notes_template="", enabled=False)
    assert to_all["rc"] == 0, to_all["msg"]
    job = pve.backup_jobs["daily"]
    assert "vmid" not in job and job["all"] == "1" and job["exclude"] == "104"
    assert "prune-backups" not in job and "notes-template" not in job and job["enabled"] == "0"
    assert to_all["job"]["all"] is True and to_all["job"]["enabled"] is False
    assert run_module("proxmox_backup_job", id="daily", all=True, exclude=[104], retention={},
                      enabled=False)["changed"] is False
    to_pool = run_module("proxmox_backup_job", id="daily", pool="lab")
    assert to_pool["rc"] == 0, to_pool["msg"]
    job = pve.backup_jobs["daily"]
    assert job["pool"] == "lab" and "all" not in job and "exclude" not in job
    assert to_pool["changes"]["exclude"] == {"before": [104], "after": None}


def test_absent_deletes_once_and_check_mode_keeps_it(pve, guests, run_module):
    assert run_module("proxmox_backup_job", **daily())["rc"] == 0
    check = run_module("proxmox_backup_job", check=True, id="daily", state="absent")
    assert check["changed"] and "daily" in pve.backup_jobs
    assert check["changes"]["vmid"] == {"before": [101, 103], "after": None}
    gone = run_module("proxmox_backup_job", id="daily", state="absent")
    assert gone["changed"] and "daily" not in pve.backup_jobs
    again = run_module("proxmox_backup_job", id="daily", state="absent")
    assert again["rc"] == 0 and again["changed"] is False


def test_run_backs_up_on_each_node_and_waits(pve, guests, run_module):
    pve.durations["vzdump"] = 0.6
    spec = daily(vm_names=["web1", "web2", "db1"], state="run")
    check = run_module("proxmox_backup_job", check=True, **spec)
    assert check["rc"] == 0, check["msg"]
    assert check["guests"] == [101, 102, 103] and pve.backups == [] and pve.backup_jobs == {}
    assert check["actions"][-1] == "run backup job daily now on pve1, pve2 (3 guests)"
    ran = run_module("proxmox_backup_job", **spec)
    assert ran["rc"] == 0, ran["msg"]
    assert sorted(t["what"] for t in ran["tasks"]) == ["vzdump on pve1", "vzdump on pve2"]
    assert all(t["exitstatus"] == "OK" and t["polls"] >= 1 for t in ran["tasks"])
    archives = sorted((b["vmid"], b["node"], b["storage"]) for b in pve.backups)
    assert archives == [(101, "pve1", "local"), (102, "pve1", "local"), (103, "pve2", "local")]
    assert {b["notes"] for b in pve.backups} == {"web1 (101)", "web2 (102)", "db1 (103)"}
    assert pve.request_count("POST", r"/vzdump$") == 2
    assert all(pve.vm_config(v).get("lock") is None for v in (101, 102, 103))


def test_run_on_a_storage_without_backup_content_fails_with_the_task_log(pve, guests, run_module):
    result = run_module("proxmox_backup_job", **daily(storage="local-lvm", state="run"))
    assert result["rc"] != 0
    assert "can't use storage 'local-lvm' for backups - wrong content type" in result["msg"]
    assert result["task"]["exitstatus"].startswith("can't use storage")
    assert pve.backups == []


def test_bad_input_is_refused_before_any_write(pve, guests, run_module):
    cases = [
        (daily(schedule="02:75"), "schedule: '02:75' is not a calendar event: 75 is out of range"),
        (daily(schedule="every night"), "schedule: 'every night' is not a calendar event"),
        (daily(vm_names=["web1", "ghost"]), "vm_names: no VM or container named ghost in the cluster"),
        (daily(vm_names=None, vmids=[]), "vmids: the list is empty"),
        (daily(pool="lab"), "vm_names and pool: choose one selection"),
        (daily(retention={"keep_all": True, "keep_last": 2}), "keep_all cannot be set together"),
        (daily(id="9lives"), "id: '9lives' is not a job ID"),
        (daily(ref_tag="nightly"), "ref_tag: 'nightly' is not a REF-tag"),
        ({"id": "new", "all": True, "storage": "local"}, "creating it needs a schedule"),
    ]
    for spec, expected in cases:
        result = run_module("proxmox_backup_job", **spec)
        assert result["rc"] != 0 and expected in result["msg"], (spec, result["msg"])
        assert result["msg"].startswith(f"proxmox_backup_job {spec['id']}: ")
    assert job_writes(pve) == [] and pve.backup_jobs == {}


def test_the_double_rejects_parameters_like_pve(pve, guests):
    """What a client that does not validate (or a newer PVE key) meets: PVE's 400 per-parameter errors."""
    from ansible_collections.locus.infra.plugins.module_utils._proxmox import ProxmoxClient, ProxmoxError

    client = ProxmoxClient({**connection(pve), "api_retries": 0})
    cases = [
        ({"id": "x1", "schedule": "25:00", "storage": "local", "all": 1}, "schedule", "invalid calendar event '25:00'"),
        ({"id": "x1", "schedule": "daily", "storage": "local", "vmid": "101", "all": 1}, "all",
         "option conflicts with option 'vmid'"),
        ({"id": "x1", "schedule": "daily", "storage": "local"}, "vmid", "property is missing"),
        ({"id": "x1", "schedule": "daily", "storage": "local", "all": 1, "prune-backups": "keep-daily=0"},
         "prune-backups", "prune-backups.keep-daily: value must have a minimum value of 1"),
        ({"id": "x1", "schedule": "daily", "storage": "local", "all": 1, "mode": "fast"}, "mode",
         "does not have a value in the enumeration 'snapshot, suspend, stop'"),
        ({"id": "x1", "schedule": "daily", "storage": "local", "vmid": "42"}, "vmid", "not look like a valid VM ID"),
    ]
    for params, key, text in cases:
        with pytest.raises(ProxmoxError) as err:
            client.request("POST", "cluster/backup", params)
        assert err.value.status == 400 and text in err.value.errors[key], (params, err.value.errors)
    with pytest.raises(ProxmoxError) as err:
        client.request("PUT", "cluster/backup/nope", {"enabled": 0})
    assert err.value.errors == {"id": "No such job 'nope'"}
    client.request("POST", "cluster/backup", {"id": "x1", "schedule": "sat 02:00", "storage": "local", "exclude": "104"})
    assert client.request("GET", "cluster/backup/x1")["all"] == 1  # exclude without pool implies all
    with pytest.raises(ProxmoxError) as err:
        client.request("POST", "cluster/backup", {"id": "x1", "schedule": "daily", "storage": "local", "all": 1})
    assert err.value.status == 500 and "Job 'x1' already exists" in err.value.msg


def test_missing_guest_is_a_warning_and_a_failed_backup(pve, guests, run_module):
    assert run_module("proxmox_backup_job", **daily())["rc"] == 0
    pve.vms.pop(103)
    result = run_module("proxmox_backup_job", id="daily", state="run")
    assert result["rc"] != 0 and "guests that do not exist: 103" in " ".join(warning_texts(result))


def test_the_guard_sees_a_check_mode_drop_as_backup_reduced(pve, guests, run_module):
    """The module's own check-mode diff is what the guard's change review gets."""
    from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard_rules, _policy

    assert run_module("proxmox_backup_job", **daily())["rc"] == 0
    args = daily(vm_names=["db1"])
    check = run_module("proxmox_backup_job", check=True, diff=True, **args)
    change = {"host": "localhost", "task": "jobs", "action": "locus.infra.proxmox_backup_job", "args": args,
              "diff": check["diff"]}
    found = _guard_rules.analyse_changes(_guard_rules.normalise([change]), _policy.load_policy().data["analysers"])
    assert [(f["rule"], f["message"]) for f in found] == [("backup_reduced", "backup job daily: drops VMIDs 101")]


def test_playbook_takes_the_selection_from_a_netbox_tag_group_and_honours_the_halt(pve, guests, tmp_path):
    """The documented example end to end: ansible-playbook, the action plugin (emergency halt), a
    static inventory shaped like the NetBox one (tag backup-daily -> group tag_backup_daily)."""
    import os
    import re
    import subprocess
    from pathlib import Path

    import yaml
    from conftest import ROOT

    inventory = {"all": {"hosts": {"web1": {}, "db1": {}, "scratch": {}},
                         "children": {"tag_backup_daily": {"hosts": {"web1": {}, "db1": {}}}}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    play = [{"name": "Backups from NetBox tags", "hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "Backup job daily", "locus.infra.proxmox_backup_job": {
            "id": "daily", "schedule": "02:30", "storage": "local", "compress": "zstd",
            "retention": {"keep_daily": 7}, "vm_names": "{{ groups['tag_backup_daily'] | default([]) }}"}}]}]
    (tmp_path / "site.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    conn = connection(pve)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROXMOX_", "ANSIBLE_", "LOCUS_"))}
    env.update({"PROXMOX_HOST": conn["api_host"], "PROXMOX_TOKEN_ID": conn["api_token_id"],
                "PROXMOX_TOKEN_SECRET": conn["api_token_secret"], "PROXMOX_CA_PATH": conn["ca_path"],
                "LOCUS_STATE_DIR": str(tmp_path / "state"), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")})
    bin_dir = Path(os.sys.executable).parent

    def run(*args):
        proc = subprocess.run([str(bin_dir / "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"),
                               str(tmp_path / "site.yml"), *args], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=300, check=False)
        recap = re.search(r"^localhost\s+: ok=(\d+)\s+changed=(\d+).*failed=(\d+)", proc.stdout, re.M)
        return proc, recap.groups() if recap else None

    proc, recap = run()
    assert proc.returncode == 0 and recap == ("1", "1", "0"), proc.stdout[-3000:] + proc.stderr[-2000:]
    assert pve.backup_jobs["daily"]["vmid"] == "101,103"
    proc, recap = run("--check", "--diff")
    assert proc.returncode == 0 and recap == ("1", "0", "0"), proc.stdout[-3000:]

    halt = subprocess.run([str(bin_dir / "locus"), "halt", "--reason", "maintenance"], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60, check=False)
    assert halt.returncode == 0, halt.stdout + halt.stderr
    inventory["all"]["children"]["tag_backup_daily"]["hosts"]["scratch"] = {}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    proc, _recap = run()
    assert proc.returncode != 0 and "halt" in proc.stdout.lower()
    assert pve.backup_jobs["daily"]["vmid"] == "101,103"  # nothing changed while halted
