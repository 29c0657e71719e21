#!/usr/bin/python
# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: proxmox_node_info
short_description: Proxmox VE nodes with CPU, memory, disk and storage usage as ratios
version_added: 0.1.0
description:
  - Returns every node of the cluster (or the ones asked for) with its usage as ratios between 0 and 1 --
    CPU, memory, root disk and each storage -- plus the highest of them, so that a guard can compare
    them with a threshold (the locus constitution halts above 0.95).
  - One API request (C(GET /cluster/resources)) gives all of it; O(include_status) adds one request
    per online node for load average, swap, I/O wait and versions.
  - Offline nodes are returned with C(online=false) and no ratios, never silently left out.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.attributes
  - locus.infra.attributes.controller
  - locus.infra.proxmox
options:
  nodes:
    description:
      - Only these nodes. A name that is not in the cluster is an error.
    type: list
    elements: str
  include_status:
    description:
      - Also read C(/nodes/{node}/status) of each online node (load, swap, I/O wait, versions).
    type: bool
    default: false
  threshold:
    description:
      - A ratio (for example V(0.95)). Each node gets C(over_threshold), the list of its measures at or
        above it, and RV(over_threshold) names the nodes with any.
    type: float
attributes:
  check_mode:
    support: full
    details: Only reads.
  diff_mode:
    support: none
seealso:
  - module: locus.infra.proxmox_vm
"""

EXAMPLES = r"""
- name: Node usage for the guard
  locus.infra.proxmox_node_info:
    threshold: 0.95
  delegate_to: localhost
  run_once: true
  register: pve

- name: Stop when a node is nearly full
  ansible.builtin.assert:
    that: pve.over_threshold | length == 0
    fail_msg: "over 95 %: {{ pve.over_threshold }}"
"""

RETURN = r"""
nodes:
  description: Per node name its usage facts.
  returned: success
  type: dict
  contains:
    online:
      description: Whether the node is online.
      type: bool
    cpu_ratio:
      description: CPU usage (0..1).
      type: float
    memory_ratio:
      description: Used / total memory.
      type: float
    disk_ratio:
      description: Used / total of the root file system.
      type: float
    storage:
      description: Per storage C(used), C(total), C(ratio), C(type), C(shared), C(content), C(status).
      type: dict
    max_ratio:
      description: The highest of the ratios above.
      type: float
    max_ratio_of:
      description: Which measure that is (C(cpu), C(memory), C(disk) or C(storage:<id>)).
      type: str
    over_threshold:
      description: The measures at or above O(threshold).
      type: list
      elements: str
    vms:
      description: Count of running and stopped VMs and templates on the node.
      type: dict
    guests:
      description: The VMs and templates on the node - C(vmid), C(name), C(status), C(template), C(maxmem) (what
        C(playbooks/proxmox_evacuate.yml) moves).
      type: list
      elements: dict
    loadavg:
      description: Load average over 1, 5 and 15 minutes (with O(include_status)).
      type: list
      elements: float
  sample:
    pve1:
      online: true
      cpu_ratio: 0.07
      memory_ratio: 0.31
      disk_ratio: 0.12
      storage: {"local-lvm": {"ratio": 0.41, "used": 352187318272, "total": 858993459200}}
      max_ratio: 0.41
      max_ratio_of: "storage:local-lvm"
over_threshold:
  description: Nodes with at least one measure at or above O(threshold).
  returned: when O(threshold) is given
  type: list
  elements: str
offline:
  description: Nodes that are not online.
  returned: success
  type: list
  elements: str
api_requests:
  description: Number of HTTP requests made to the Proxmox API.
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.locus.infra.plugins.module_utils import _proxmox


def main():
    spec = _proxmox.auth_argument_spec()
    spec.update(
        nodes={"type": "list", "elements": "str"},
        include_status={"type": "bool", "default": False},
        threshold={"type": "float"},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_together=[("api_token_id", "api_token_secret")])
    if _proxmox.PROXMOXER_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("proxmoxer"), exception=_proxmox.PROXMOXER_IMPORT_ERROR)
    threshold = module.params["threshold"]
    if threshold is not None and not 0 < threshold <= 1:
        module.fail_json(msg=f"threshold: {threshold} is not a ratio in (0, 1]")
    try:
        client = _proxmox.ProxmoxClient(module.params)
        nodes = _proxmox.node_facts(client, nodes=module.params["nodes"], include_status=module.params["include_status"],
                                    threshold=threshold)
    except _proxmox.ProxmoxError as exc:
        module.fail_json(msg=f"proxmox_node_info: {exc}", **exc.result())
    result = {"changed": False, "nodes": nodes, "offline": sorted(n for n, e in nodes.items() if not e["online"]),
              "api_requests": client.requests}
    if threshold is not None:
        result["over_threshold"] = sorted(n for n, e in nodes.items() if e.get("over_threshold"))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
