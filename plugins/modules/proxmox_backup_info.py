#!/usr/bin/python
# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: proxmox_backup_info
short_description: Proxmox VE backup coverage - jobs, guests no job covers, last backup per guest
version_added: 0.2.0
description:
  - Returns the cluster's backup jobs with the guests each selects now, the guests no job covers
    (PVE's own C(/cluster/backup-info/not-backed-up)), and per guest the enabled jobs that back it up and
    its newest backup on any storage with C(backup) content (C(/nodes/{node}/storage/{storage}/content)),
    with its age in hours.
  - With O(max_age_hours) each guest gets C(fresh) and RV(stale) names the guests whose newest backup is
    older (or missing) - the check C(playbooks/verify.yml) records as VALIDATE REF-tags.
  - Only reads. Requests - C(cluster/resources), C(cluster/backup), C(not-backed-up), and one content listing
    per backup storage (a shared storage once).
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.attributes
  - locus.infra.attributes.controller
  - locus.infra.proxmox
options:
  vms:
    description:
      - Only these guests (names or VMIDs) in RV(guests); names the cluster lacks are returned in RV(missing).
    type: list
    elements: str
  max_age_hours:
    description:
      - A backup older than this many hours is stale.
    type: float
attributes:
  check_mode:
    support: full
    details: Only reads.
  diff_mode:
    support: none
seealso:
  - module: locus.infra.proxmox_backup_job
"""

EXAMPLES = r"""
- name: Backup coverage of the VMs NetBox describes
  locus.infra.proxmox_backup_info:
    vms: "{{ groups['all'] | map('extract', hostvars) | selectattr('locus_vm', 'defined') | map(attribute='locus_vm.name') | list }}"
    max_age_hours: 26
  delegate_to: localhost
  run_once: true
  register: backups

- name: Every VM is covered and fresh
  ansible.builtin.assert:
    that: backups.uncovered + backups.stale + backups.missing | length == 0
"""

RETURN = r"""
jobs:
  description: The backup jobs, normalised (as locus.infra.proxmox_backup_job returns C(job)), with C(id) and C(guests) (VMIDs selected now).
  returned: success
  type: list
  elements: dict
not_backed_up:
  description: VMIDs of the guests no job selects (PVE's view, disabled jobs included).
  returned: success
  type: list
  elements: int
guests:
  description: Per guest C(vmid), C(name), C(node), C(covered), C(jobs) (enabled jobs selecting it), C(last_backup) (epoch),
    C(last_backup_iso), C(age_hours), C(volid), and C(fresh) with O(max_age_hours).
  returned: success
  type: list
  elements: dict
  sample: [{"vmid": 101, "name": "web1", "node": "pve1", "covered": true, "jobs": ["daily"], "last_backup": 1765000000,
            "last_backup_iso": "2025-12-06T05:46:40Z", "age_hours": 3.2, "volid": "local:backup/vzdump-qemu-101-2025_12_06-05_46_40.vma.zst",
            "fresh": true}]
by_name:
  description: The same entries by guest name (names that are unique in the cluster).
  returned: success
  type: dict
uncovered:
  description: Names (or VMIDs) of the returned guests no job covers.
  returned: success
  type: list
  elements: str
stale:
  description: Names (or VMIDs) of the returned guests without a backup younger than O(max_age_hours).
  returned: when O(max_age_hours) is given
  type: list
  elements: str
missing:
  description: Names or VMIDs of O(vms) the cluster does not have.
  returned: when O(vms) is given
  type: list
  elements: str
api_requests:
  description: Number of HTTP requests made to the Proxmox API.
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.locus.infra.plugins.module_utils import _proxmox, _proxmox_backup


def main():
    spec = _proxmox.auth_argument_spec()
    spec.update(vms={"type": "list", "elements": "str"}, max_age_hours={"type": "float"})
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_together=[("api_token_id", "api_token_secret")])
    max_age = module.params["max_age_hours"]
    if max_age is not None and max_age <= 0:
        module.fail_json(msg=f"max_age_hours: {max_age} must be above 0")

    def work(client):
        result = _proxmox_backup.backup_info(client, vms=module.params["vms"], max_age_hours=max_age)
        result.update(changed=False, api_requests=client.requests)
        return result, []

    _proxmox.exit_module(module, "proxmox_backup_info", work)


if __name__ == "__main__":
    main()
