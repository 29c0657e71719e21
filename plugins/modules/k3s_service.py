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

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.locus.infra.plugins.module_utils._k3s_model import node_status
from ansible_collections.locus.infra.plugins.module_utils._retry import wait_for


def unit_state(module, name):
    rc, out, err = module.run_command(["systemctl", "show", "-p", "ActiveState,SubState,NRestarts,LoadState,InvocationID", name])
    if rc != 0:
        module.fail_json(msg=f"systemctl show {name} failed: {err.strip()}")
    state = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    state["NRestarts"] = int(state.get("NRestarts") or 0)
    return state


def journal(module, name, lines):
    dummy, out, err = module.run_command(["journalctl", "-u", name, "--no-pager", "-o", "cat", "-n", str(lines)])
    return (out or err).rstrip().splitlines()


def judge(module, p, unit):
    """(ready, reason, nodes) right now."""
    if unit["ActiveState"] != "active":
        return False, f"unit {p['name']} is {unit['ActiveState']} ({unit.get('SubState', '')})", {}
    if p["role"] == "agent":
        return True, "", {}
    ca = os.path.join(p["data_dir"], "server", "tls", "server-ca.crt")
    try:
        resp = open_url(f"https://127.0.0.1:{p['api_port']}/readyz", ca_path=ca, timeout=5, validate_certs=True)
        body = resp.read().decode(errors="replace")
    except Exception as exc:  # noqa: BLE001 - any failure is "not ready yet", kept as the reason
        detail = exc.read().decode(errors="replace").strip() if hasattr(exc, "read") else str(exc)
        return False, f"/readyz: {detail}", {}
    if body.strip() != "ok":
        return False, f"/readyz: {body.strip()}", {}
    rc, out, err = module.run_command([p["k3s"], "kubectl", "--kubeconfig", p["kubeconfig"], "get", "nodes", "-o", "json"])
    if rc != 0:
        return False, f"kubectl get nodes: {err.strip()}", {}
    try:
        nodes = node_status(json.loads(out))
    except ValueError:
        return False, "kubectl get nodes: not JSON", {}
    wanted = list(p["expect_nodes"] or []) or ([p["node_name"]] if p["node_name"] else [])
    me = nodes.get(p["node_name"]) if p["node_name"] else None
    if p["node_name"] and (not me or not me["ready"]):
        return False, f"node {p['node_name']} is not Ready", nodes
    if p["node_name"] and not me["etcd_member"]:
        return False, f"node {p['node_name']} is not an etcd member yet", nodes
    missing = [n for n in wanted if n not in nodes or not nodes[n]["ready"]]
    if missing:
        return False, f"not Ready: {', '.join(missing)}", nodes
    members = sorted(n for n, s in nodes.items() if s["etcd_member"] and s["ready"])
    if p["expect_etcd_members"] is not None and len(members) != p["expect_etcd_members"]:
        return False, f"{len(members)} Ready etcd members ({', '.join(members)}), expected {p['expect_etcd_members']}", nodes
    if p["expect_version"]:
        judged = [p["node_name"]] if p["node_name"] else wanted
        old = [f"{n} ({nodes[n]['version']})" for n in judged if nodes[n]["version"] != p["expect_version"]]
        if old:
            return False, f"not on {p['expect_version']}: {', '.join(old)}", nodes
    return True, "", nodes


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
    p = module.params
    name = p["name"]
    unit = unit_state(module, name)
    if unit.get("LoadState") == "not-found" and not module.check_mode:
        module.fail_json(msg=f"unit {name} is not installed")
    changed = p["state"] == "restarted" or (p["state"] == "started" and unit["ActiveState"] != "active")
    result = {"changed": changed, "active": unit["ActiveState"], "ready": False, "reason": "", "nodes": {},
              "etcd_members": [], "restarts": unit["NRestarts"]}
    if module.check_mode and p["state"] != "query":
        result["reason"] = "check mode" if changed else ""
        result["ready"] = not changed and unit["ActiveState"] == "active"
        module.exit_json(**result)
    baseline = unit["NRestarts"]
    # A (re)start counts only once systemd ran a new invocation of the unit: until then the
    # old process may still answer, ready or not.
    before = unit.get("InvocationID", "")
    if changed:
        verb = "restart" if p["state"] == "restarted" else "start"
        rc, dummy, err = module.run_command(["systemctl", verb, "--no-block", name])
        if rc != 0:
            module.fail_json(msg=f"systemctl {verb} {name} failed: {err.strip()}", **result)

    def observe():
        """(ready, crashed, reason) now; the result follows what was seen."""
        unit = unit_state(module, name)
        crashed = unit["ActiveState"] == "failed" or unit.get("SubState") == "auto-restart" or unit["NRestarts"] > baseline
        if crashed:
            ready, reason, nodes = False, f"unit {name} failed ({unit.get('SubState')}, {unit['NRestarts']} restarts)", {}
        elif changed and unit.get("InvocationID", "") in ("", before):
            ready, reason, nodes = False, f"unit {name} has not {'re' if p['state'] == 'restarted' else ''}started yet", {}
        else:
            ready, reason, nodes = judge(module, p, unit)
        result.update(active=unit["ActiveState"], ready=ready, reason=reason, nodes=nodes, restarts=unit["NRestarts"],
                      etcd_members=sorted(n for n, s in nodes.items() if s["etcd_member"] and s["ready"]))
        return ready, crashed, reason

    # Stops at the first terminal state, ready or crashed; without ``wait`` it judges once.
    seen = wait_for(observe, lambda now: now[0] or now[1], timeout=p["timeout"] if p["wait"] else 0, interval=0.5,
                    factor=1.5, cap=2.0)[1]
    ready, crashed, reason = seen
    if not ready and (p["wait"] or changed):
        lines = journal(module, name, p["journal_lines"])
        why = "failed" if crashed else f"is not ready after {p['timeout']:g}s"
        module.fail_json(msg=f"{name} {why}: {reason}\n--- last {len(lines)} lines of the journal of {name} ---\n"
                         + "\n".join(lines), journal=lines, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
