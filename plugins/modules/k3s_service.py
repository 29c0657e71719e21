#!/usr/bin/python
# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start or restart a K3s unit and wait until the node really serves (or read its state)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: k3s_service
short_description: Start or restart a K3s node and wait until it is ready, or check a cluster's health
version_added: 0.1.0
description:
  - Starts (O(state=started), only when the unit is not running) or restarts (O(state=restarted)) the K3s unit
    without blocking on systemd, then waits on a wall clock until the node really works - for a server the local
    API's C(/readyz) (which fails while its etcd member is a learner or without quorum), its own node Ready and
    an etcd member (annotated C(etcd.k3s.cattle.io/node-name)); for an agent the unit's READY notification (k3s
    sends it once registered).
  - O(state=query) changes nothing and judges the cluster as this server sees it - with O(expect_nodes),
    O(expect_etcd_members) and O(expect_version) it is the quorum check before and after an upgrade step.
  - A failure stops at once (unit failed or restarting) or at O(timeout), and the message carries the last
    O(journal_lines) lines of the unit's journal.
  - Starting and restarting honour the emergency halt of locus.infra (an action plugin checks it on the controller);
    O(state=query) only reads and runs while halted.
  - The role C(locus.infra.k3s) uses it in its handlers (with C(throttle=1), so servers restart one at a time)
    and to join servers one at a time.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.attributes
options:
  name:
    description: The unit (C(k3s) or C(k3s-agent)).
    type: str
    required: true
  state:
    description: What to do.
    type: str
    choices: [started, restarted, query]
    default: started
  role:
    description: Whether the unit runs a server (checked through its local API) or an agent.
    type: str
    choices: [server, agent]
    default: server
  node_name:
    description: The node's name in the cluster (server - must be Ready and an etcd member).
    type: str
  api_port:
    description: The server's HTTPS port.
    type: int
    default: 6443
  data_dir:
    description: k3s's data directory (holds C(server/tls/server-ca.crt)).
    type: path
    default: /var/lib/rancher/k3s
  kubeconfig:
    description: The admin kubeconfig k3s writes.
    type: path
    default: /etc/rancher/k3s/k3s.yaml
  k3s:
    description: The k3s binary (runs C(k3s kubectl)).
    type: path
    default: /usr/local/bin/k3s
  expect_nodes:
    description: Nodes that must all be Ready (server only).
    type: list
    elements: str
    default: []
  expect_etcd_members:
    description: The exact number of etcd members expected (server only).
    type: int
  expect_version:
    description: The version O(node_name) must run (without O(node_name) - every node of O(expect_nodes)).
    type: str
  wait:
    description: Wait for the conditions (otherwise judge once).
    type: bool
    default: true
  timeout:
    description: Seconds to wait.
    type: float
    default: 300
  journal_lines:
    description: Lines of the unit's journal in a failure message.
    type: int
    default: 25
attributes:
  check_mode:
    support: full
    details: Reports whether the unit would be started or restarted (and waits for nothing); O(state=query) judges as usual.
  diff_mode:
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - Only the unit's state is changed here; the unit file, binary and configuration are the role's.
seealso:
  - module: ansible.builtin.systemd_service
"""

EXAMPLES = r"""
- name: Join this server (one at a time) and wait until its etcd member votes
  locus.infra.k3s_service:
    name: k3s
    node_name: "{{ inventory_hostname }}"
  throttle: 1

- name: Quorum check - every server Ready and an etcd member, all on the new version
  locus.infra.k3s_service:
    name: k3s
    state: query
    node_name: "{{ inventory_hostname }}"
    expect_nodes: "{{ groups['k3s_servers'] }}"
    expect_etcd_members: "{{ groups['k3s_servers'] | length }}"
    expect_version: v1.31.5+k3s1
    timeout: 120
"""

RETURN = r"""
active:
  description: The unit's C(ActiveState) at the end.
  returned: always
  type: str
  sample: active
ready:
  description: Whether every condition held.
  returned: always
  type: bool
reason:
  description: What was missing last (empty when ready).
  returned: always
  type: str
nodes:
  description: Per node - C(ready), C(version), C(server), C(etcd_member), C(unschedulable) (servers only).
  returned: always
  type: dict
etcd_members:
  description: Names of the nodes that are etcd members.
  returned: always
  type: list
  elements: str
restarts:
  description: systemd's C(NRestarts) of the unit (automatic restarts after a crash).
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.locus.infra.plugins.module_utils._k3s_service import ServiceError, run


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["started", "restarted", "query"], "default": "started"},
            "role": {"type": "str", "choices": ["server", "agent"], "default": "server"},
            "node_name": {"type": "str"},
            "api_port": {"type": "int", "default": 6443},
            "data_dir": {"type": "path", "default": "/var/lib/rancher/k3s"},
            "kubeconfig": {"type": "path", "default": "/etc/rancher/k3s/k3s.yaml"},
            "k3s": {"type": "path", "default": "/usr/local/bin/k3s"},
            "expect_nodes": {"type": "list", "elements": "str", "default": []},
            "expect_etcd_members": {"type": "int"},
            "expect_version": {"type": "str"},
            "wait": {"type": "bool", "default": True},
            "timeout": {"type": "float", "default": 300},
            "journal_lines": {"type": "int", "default": 25},
        },
        supports_check_mode=True,
    )
    try:
        result = run(module.params, module.check_mode, module.run_command)
    except ServiceError as exc:
        module.fail_json(msg=str(exc), **exc.extra)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
