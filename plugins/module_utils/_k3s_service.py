# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Everything ``locus.infra.k3s_service`` decides: the unit's state, whether the node serves,
the (re)start and the wait on a wall clock.

Private API of the collection (may change without notice). Runs on the managed host (shipped
with ``locus.infra.k3s_service``); standard library and ``ansible.module_utils`` only.

Commands go through ``command(argv) -> (rc, stdout, stderr)`` (the module passes
``AnsibleModule.run_command``), the local API through ``opener`` (``open_url``), and the wait
takes ``sleep`` and ``clock`` - so tests drive it with recorded ``systemctl show`` output, the
k3s double and a fake clock.
"""

from __future__ import annotations

import json
import os
import time

from ansible.module_utils.urls import open_url

from ansible_collections.locus.infra.plugins.module_utils._k3s_model import node_status
from ansible_collections.locus.infra.plugins.module_utils._retry import wait_for

SHOW_PROPERTIES = "ActiveState,SubState,NRestarts,LoadState,InvocationID"


class ServiceError(Exception):
    """The module fails with this message and the result keys in ``extra``."""

    def __init__(self, msg, **extra):
        super().__init__(msg)
        self.extra = extra


def parse_show(text):
    """``systemctl show -p ...`` output (``Key=Value`` lines) as a dict; ``NRestarts`` as an int
    (0 when empty or absent)."""
    state = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    state["NRestarts"] = int(state.get("NRestarts") or 0)
    return state


def unit_state(command, name):
    rc, out, err = command(["systemctl", "show", "-p", SHOW_PROPERTIES, name])
    if rc != 0:
        raise ServiceError(f"systemctl show {name} failed: {err.strip()}")
    return parse_show(out)


def journal(command, name, lines):
    dummy, out, err = command(["journalctl", "-u", name, "--no-pager", "-o", "cat", "-n", str(lines)])
    return (out or err).rstrip().splitlines()


def readyz(p, opener=open_url):
    """``(ok, detail)`` of the local API's ``/readyz``, verified against the cluster CA."""
    ca = os.path.join(p["data_dir"], "server", "tls", "server-ca.crt")
    try:
        resp = opener(f"https://127.0.0.1:{p['api_port']}/readyz", ca_path=ca, timeout=5, validate_certs=True)
        body = resp.read().decode(errors="replace")
    except Exception as exc:  # noqa: BLE001 - any failure is "not ready yet", kept as the reason
        return False, exc.read().decode(errors="replace").strip() if hasattr(exc, "read") else str(exc)
    return body.strip() == "ok", body.strip()


def judge(command, p, unit, opener=open_url):
    """(ready, reason, nodes) right now."""
    if unit["ActiveState"] != "active":
        return False, f"unit {p['name']} is {unit['ActiveState']} ({unit.get('SubState', '')})", {}
    if p["role"] == "agent":
        return True, "", {}
    ok, detail = readyz(p, opener)
    if not ok:
        return False, f"/readyz: {detail}", {}
    rc, out, err = command([p["k3s"], "kubectl", "--kubeconfig", p["kubeconfig"], "get", "nodes", "-o", "json"])
    if rc != 0:
        return False, f"kubectl get nodes: {err.strip()}", {}
    try:
        nodes = node_status(json.loads(out))
    except ValueError:
        return False, "kubectl get nodes: not JSON", {}
    return judge_nodes(p, nodes)


def judge_nodes(p, nodes):
    """(ready, reason, nodes) of a server's view of the cluster (``_k3s_model.node_status``)."""
    wanted = list(p["expect_nodes"] or []) or ([p["node_name"]] if p["node_name"] else [])
    me = nodes.get(p["node_name"]) if p["node_name"] else None
    if p["node_name"] and (not me or not me["ready"]):
        return False, f"node {p['node_name']} is not Ready", nodes
    if p["node_name"] and not me["etcd_member"]:
        return False, f"node {p['node_name']} is not an etcd member yet", nodes
    missing = [n for n in wanted if n not in nodes or not nodes[n]["ready"]]
    if missing:
        return False, f"not Ready: {', '.join(missing)}", nodes
    members = etcd_members(nodes)
    if p["expect_etcd_members"] is not None and len(members) != p["expect_etcd_members"]:
        return False, f"{len(members)} Ready etcd members ({', '.join(members)}), expected {p['expect_etcd_members']}", nodes
    if p["expect_version"]:
        judged = [p["node_name"]] if p["node_name"] else wanted
        old = [f"{n} ({nodes[n]['version']})" for n in judged if nodes[n]["version"] != p["expect_version"]]
        if old:
            return False, f"not on {p['expect_version']}: {', '.join(old)}", nodes
    return True, "", nodes


def etcd_members(nodes):
    return sorted(n for n, s in nodes.items() if s["etcd_member"] and s["ready"])


def progress(p, unit, changed, baseline, before):
    """``(crashed, reason)`` when the unit itself settles the outcome now, else None (then the
    node is judged). A (re)start counts only once systemd ran a new invocation of the unit:
    until then the old process may still answer, ready or not."""
    name = p["name"]
    if unit["ActiveState"] == "failed" or unit.get("SubState") == "auto-restart" or unit["NRestarts"] > baseline:
        return True, f"unit {name} failed ({unit.get('SubState')}, {unit['NRestarts']} restarts)"
    if changed and unit.get("InvocationID", "") in ("", before):
        return False, f"unit {name} has not {'re' if p['state'] == 'restarted' else ''}started yet"
    return None


def run(p, check_mode, command, opener=open_url, sleep=time.sleep, clock=time.monotonic):
    """Everything the module does; returns its result or raises :class:`ServiceError`."""
    name = p["name"]
    unit = unit_state(command, name)
    if unit.get("LoadState") == "not-found" and not check_mode:
        raise ServiceError(f"unit {name} is not installed")
    changed = p["state"] == "restarted" or (p["state"] == "started" and unit["ActiveState"] != "active")
    result = {"changed": changed, "active": unit["ActiveState"], "ready": False, "reason": "", "nodes": {},
              "etcd_members": [], "restarts": unit["NRestarts"]}
    if check_mode and p["state"] != "query":
        result["reason"] = "check mode" if changed else ""
        result["ready"] = not changed and unit["ActiveState"] == "active"
        return result
    baseline, before = unit["NRestarts"], unit.get("InvocationID", "")
    if changed:
        verb = "restart" if p["state"] == "restarted" else "start"
        rc, dummy, err = command(["systemctl", verb, "--no-block", name])
        if rc != 0:
            raise ServiceError(f"systemctl {verb} {name} failed: {err.strip()}", **result)

    def observe():
        """(ready, crashed, reason) now; the result follows what was seen."""
        unit = unit_state(command, name)
        settled = progress(p, unit, changed, baseline, before)
        if settled:
            (crashed, reason), ready, nodes = settled, False, {}
        else:
            crashed = False
            ready, reason, nodes = judge(command, p, unit, opener)
        result.update(active=unit["ActiveState"], ready=ready, reason=reason, nodes=nodes, restarts=unit["NRestarts"],
                      etcd_members=etcd_members(nodes))
        return ready, crashed, reason

    # Stops at the first terminal state, ready or crashed; without ``wait`` it judges once.
    ready, crashed, reason = wait_for(observe, lambda now: now[0] or now[1], timeout=p["timeout"] if p["wait"] else 0,
                                      interval=0.5, factor=1.5, cap=2.0, sleep=sleep, clock=clock)[1]
    if not ready and (p["wait"] or changed):
        lines = journal(command, name, p["journal_lines"])
        why = "failed" if crashed else f"is not ready after {p['timeout']:g}s"
        raise ServiceError(f"{name} {why}: {reason}\n--- last {len(lines)} lines of the journal of {name} ---\n"
                           + "\n".join(lines), journal=lines, **result)
    return result
