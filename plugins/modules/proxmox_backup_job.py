#!/usr/bin/python
# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: proxmox_backup_job
short_description: Proxmox VE cluster backup jobs as code - idempotent create, update, delete and run now
version_added: 0.2.0
description:
  - Makes one cluster backup job (C(/cluster/backup/{id}), Datacenter - Backup in the web UI) look like
    its description - schedule, storage, mode, compression, retention, notes template, enabled, and which
    guests it backs up (VMIDs, VM names resolved in the cluster, a pool, or all with exclusions) - or removes it.
  - Plans before it acts. Both sides are normalised (VMID lists as sets, C(prune-backups) property strings
    as keys, C(compress=1) as C(lzo), PVE's defaults C(mode=snapshot), C(enabled=1)), only the keys that
    differ are sent (C(PUT) with C(delete) for keys to drop), so a second run reports no change; check mode
    returns the same plan; diff mode shows only the job keys that change.
  - The selection can come from NetBox through the inventory - for example every host of the
    C(tag_backup_daily) group (hosts carrying the NetBox tag C(backup-daily)) as O(vm_names) - so NetBox
    stays the source of truth. See the examples.
  - O(state=run) starts the job's settings now on every node that holds a selected guest
    (C(POST /nodes/{node}/vzdump), what the web UI's "Run now" does) and waits for the tasks on a wall
    clock; a failed backup fails the module with the last lines of the task log.
  - The guard (C(locus.infra.guard)) treats deleting a job or dropping guests from one as high risk
    (rule C(backup_reduced)).
  - Honours the emergency halt (C(locus halt)) through its action plugin. Run it on the controller.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.attributes
  - locus.infra.attributes.controller
  - locus.infra.proxmox
  - locus.infra.proxmox.wait
options:
  id:
    description:
      - Job ID (a letter, then letters, digits, C(-) or C(_); at most 50 characters). Identifies the job.
    type: str
    required: true
  state:
    description:
      - V(present) - the job exists with the given settings (options not given are left as they are).
      - V(absent) - the job does not exist.
      - V(run) - like V(present), then run the job now and wait for its backups.
    type: str
    choices: [present, absent, run]
    default: present
  schedule:
    description:
      - When the job runs, a PVE calendar event (systemd-like) - V(daily), V(sat 02:30), V(mon..fri 21:00),
        V(*-*-01 03:00), V(*/30). Required to create a job.
    type: str
  storage:
    description:
      - Storage the backups go to (it must allow the content C(backup)). Required to create a job.
    type: str
  mode:
    description:
      - Backup mode; PVE's default is V(snapshot).
    type: str
    choices: [snapshot, suspend, stop]
  compress:
    description:
      - Compression; V(0) none (PVE's default), V(1) is the same as V(lzo).
    type: str
    choices: ['0', '1', gzip, lzo, zstd]
  retention:
    description:
      - Retention (C(prune-backups)) of this job's backups; keys left out keep nothing by that rule.
      - An empty dict removes the job's own retention (the storage's applies).
    type: dict
    suboptions:
      keep_all: {description: Keep all backups (cannot be combined with the others)., type: bool}
      keep_last: {description: Keep the last N backups., type: int}
      keep_hourly: {description: Keep backups of the last N hours (one per hour)., type: int}
      keep_daily: {description: Keep backups of the last N days (one per day)., type: int}
      keep_weekly: {description: Keep backups of the last N weeks (one per week)., type: int}
      keep_monthly: {description: Keep backups of the last N months (one per month)., type: int}
      keep_yearly: {description: Keep backups of the last N years (one per year)., type: int}
  notes_template:
    description:
      - Notes of each backup; PVE fills C({{guestname}}), C({{vmid}}), C({{node}}), C({{cluster}}). An empty
        string removes it. Inside a templated playbook value write C({{ '{{' }}vmid}}) (see the examples).
    type: str
  enabled:
    description:
      - Whether the schedule runs the job. PVE's default is V(true).
    type: bool
  comment:
    description:
      - "One line of text. The REF-tag (O(ref_tag)) is kept after it as C(locus-ref: <tag>); only the text is compared."
    type: str
  ref_tag:
    description:
      - REF-tag of the deployment (C(locus.infra.ref_tag)). Written into the comment when the job is created
        or something else changes, so it names the deployment that last changed the job; a new tag alone
        never makes a run changed.
    type: str
  vmids:
    description:
      - Back up these guests (VMIDs). Mutually exclusive with O(pool) and O(all); may be combined with O(vm_names).
      - An empty list is refused - use O(state=absent) to remove a job.
    type: list
    elements: int
  vm_names:
    description:
      - Back up the guests with these names (resolved to VMIDs in the cluster; an unknown or ambiguous name is an
        error). Takes inventory data directly, see the examples.
    type: list
    elements: str
  pool:
    description:
      - Back up every guest of this pool (members at run time).
    type: str
  all:
    description:
      - Back up every guest of the cluster (except O(exclude)).
    type: bool
  exclude:
    description:
      - VMIDs not to back up, with O(all) or O(pool).
    type: list
    elements: int
  exclude_names:
    description:
      - Guest names not to back up (resolved like O(vm_names)), with O(all) or O(pool).
    type: list
    elements: str
attributes:
  check_mode:
    support: full
    details: Predicts the exact requests; with O(state=run) also the nodes and guests it would back up.
  diff_mode:
    support: full
    details: The job keys that change, normalised (VMID lists, retention keys).
seealso:
  - module: locus.infra.proxmox_vm
  - module: locus.infra.guard
notes:
  - Keys of the job this module has no option for (C(mailto), C(bwlimit), C(node), ...) are left as they are.
"""

EXAMPLES = r"""
- name: Nightly backup of every VM NetBox tags backup-daily
  locus.infra.proxmox_backup_job:
    id: daily
    schedule: "02:30"
    storage: pbs-main
    mode: snapshot
    compress: zstd
    retention: {keep_daily: 7, keep_weekly: 4, keep_monthly: 6}
    notes_template: "{{ '{{' }}guestname}} ({{ '{{' }}vmid}})"
    vm_names: "{{ groups['tag_backup_daily'] | default([]) }}"   # NetBox VM names = inventory hostnames
    ref_tag: "{{ deploy_ref }}"
  delegate_to: localhost
  run_once: true

- name: Weekly backup of everything but the scratch VMs
  locus.infra.proxmox_backup_job:
    id: weekly-all
    schedule: "sun 01:00"
    storage: local
    all: true
    exclude: [190, 191]
    retention: {keep_last: 3}
  delegate_to: localhost
  run_once: true

- name: Back up now (same settings), wait for the tasks
  locus.infra.proxmox_backup_job:
    id: daily
    state: run
    wait_timeout: 3600
  delegate_to: localhost
  run_once: true

- name: Remove a job (the guard asks a human first)
  locus.infra.proxmox_backup_job:
    id: old-nightly
    state: absent
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
id:
  description: The job ID.
  returned: always
  type: str
  sample: daily
job:
  description: The job after the run (predicted in check mode), normalised.
  returned: when the job exists (or would)
  type: dict
  sample: {"schedule": "02:30", "storage": "pbs-main", "mode": "snapshot", "compress": "zstd",
           "prune-backups": {"keep-daily": 7, "keep-weekly": 4}, "enabled": true, "vmid": [101, 102],
           "all": false, "exclude": null, "pool": null, "notes-template": "{{guestname}}", "comment": ""}
actions:
  description: What was done (or would be in check mode).
  returned: always
  type: list
  elements: str
  sample: ["update backup job daily: vmid"]
changes:
  description: Per changed job key its normalised C(before) and C(after).
  returned: always
  type: dict
  sample: {"vmid": {"before": [101], "after": [101, 102]}}
guests:
  description: VMIDs the run backs up (or would).
  returned: with O(state=run)
  type: list
  elements: int
tasks:
  description: The vzdump tasks that ran, with UPID, exit status, warnings, seconds and polls.
  returned: always
  type: list
  elements: dict
ref_tag:
  description: REF-tag the job's comment carries now.
  returned: when the job exists
  type: str
api_requests:
  description: Number of HTTP requests made to the Proxmox API.
  returned: success
  type: int
api_errors:
  description: Per-parameter errors of a rejected request.
  returned: failure, when Proxmox rejected parameters
  type: dict
task:
  description: The failed task with its exit status and the last lines of its log.
  returned: failure of a task
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.locus.infra.plugins.module_utils import _proxmox, _proxmox_backup


def argument_spec():
    spec = _proxmox.auth_argument_spec()
    spec.update(_proxmox.wait_argument_spec())
    keep = {"type": "int"}
    spec.update(
        id={"type": "str", "required": True},
        state={"type": "str", "default": "present", "choices": ["present", "absent", "run"]},
        schedule={"type": "str"},
        storage={"type": "str"},
        mode={"type": "str", "choices": ["snapshot", "suspend", "stop"]},
        compress={"type": "str", "choices": ["0", "1", "gzip", "lzo", "zstd"]},
        retention={"type": "dict", "options": {
            "keep_all": {"type": "bool"}, "keep_last": keep, "keep_hourly": keep, "keep_daily": keep,
            "keep_weekly": keep, "keep_monthly": keep, "keep_yearly": keep}},
        notes_template={"type": "str"},
        enabled={"type": "bool"},
        comment={"type": "str"},
        ref_tag={"type": "str"},
        vmids={"type": "list", "elements": "int"},
        vm_names={"type": "list", "elements": "str"},
        pool={"type": "str"},
        all={"type": "bool"},
        exclude={"type": "list", "elements": "int"},
        exclude_names={"type": "list", "elements": "str"},
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_together=[("api_token_id", "api_token_secret")])
    jid = module.params["id"]
    _proxmox.exit_module(module, f"proxmox_backup_job {jid}",
                         lambda client: _proxmox_backup.run(client, module.params, check_mode=module.check_mode),
                         spec_errors=_proxmox_backup.BackupSpecError, id=jid)


if __name__ == "__main__":
    main()
