"""The guard's ``backup_reduced`` rule: deleting a Proxmox backup job or backing up fewer guests."""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard_rules as rules
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _policy

SETTINGS = _policy.load_policy().data["analysers"]


def analyse(*changes):
    return rules.analyse_changes(rules.normalise(list(changes)), SETTINGS)


def job_change(args, before=None, after=None):
    change = {"host": "localhost", "task": "backup job", "action": "locus.infra.proxmox_backup_job", "args": args}
    if before is not None:
        change["diff"] = {"before": before, "after": after}
    return change


def test_deleting_a_job_is_backup_reduced_with_high_default_risk():
    found = analyse(job_change({"id": "daily", "state": "absent"}))
    assert [f["rule"] for f in found] == ["backup_reduced"]
    assert found[0]["evidence"]["job"] == "daily" and found[0]["message"] == "deletes backup job daily"
    assert _policy.load_policy().data["risk"]["rules"]["backup_reduced"] == "high"


def test_dropping_guests_excluding_and_disabling_are_found_with_evidence():
    found = analyse(
        job_change({"id": "daily"}, {"vmid": [101, 102, 103]}, {"vmid": [101]}),
        job_change({"id": "weekly"}, {"exclude": None, "enabled": True}, {"exclude": [104], "enabled": False}),
        job_change({"id": "all"}, {"all": True, "vmid": None}, {"all": False, "vmid": [101]}),
    )
    messages = sorted(f["message"] for f in found)
    assert messages == [
        "backup job all: no longer backs up all guests",
        "backup job daily: drops VMIDs 102, 103",
        "backup job weekly: excludes VMIDs 104; disables the schedule",
    ]
    assert {f["rule"] for f in found} == {"backup_reduced"}


def test_growing_or_retuning_a_job_is_not_a_finding():
    found = analyse(
        job_change({"id": "daily"}, {"vmid": [101]}, {"vmid": [101, 102]}),
        job_change({"id": "daily"}, {"schedule": "02:30", "prune-backups": {"keep-daily": 7}},
                   {"schedule": "03:00", "prune-backups": {"keep-daily": 14}}),
        job_change({"id": "daily", "state": "present", "all": True}),
        {"host": "x", "action": "ansible.builtin.copy", "args": {"state": "absent", "id": "daily"}},
    )
    assert found == []


def test_migrating_a_vm_is_vm_migrate_with_the_target_node():
    found = analyse({"host": "localhost", "task": "Migrate web1", "action": "locus.infra.proxmox_vm",
                     "args": {"name": "web1", "node": "pve2", "state": "migrated"}})
    assert [(f["rule"], f["message"], f["evidence"]["node"]) for f in found] == [("vm_migrate", "moves VM web1 to node pve2", "pve2")]
    assert _policy.load_policy().data["risk"]["rules"]["vm_migrate"] == "high"
