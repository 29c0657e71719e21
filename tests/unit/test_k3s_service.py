"""What locus.infra.k3s_service decides (module_utils._k3s_service): the unit's state from
``systemctl show``, whether a node serves (judged against the k3s double's API and kubectl), and
the (re)start and wait on a fake clock (no real waiting) with the systemd double's units."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from doubles import k3s_double as dbl
from doubles.systemd_unit import RECORDED, UnitDouble

from ansible_collections.locus.infra.plugins.module_utils import _k3s_service as svc
from locus_testlib import FakeClock, free_port

DOUBLE = Path(dbl.__file__)


def params(**over):
    p = {"name": "k3s-agent", "state": "started", "role": "agent", "node_name": None, "api_port": 6443,
         "data_dir": "/var/lib/rancher/k3s", "kubeconfig": "/etc/rancher/k3s/k3s.yaml", "k3s": "/usr/local/bin/k3s",
         "expect_nodes": [], "expect_etcd_members": None, "expect_version": None, "wait": True, "timeout": 30.0,
         "journal_lines": 25}
    p.update(over)
    return p


RUNNING = svc.parse_show(RECORDED["running"])
# An installed unit that is stopped (a unit file that exists: loaded, inactive).
STOPPED = dict(svc.parse_show(RECORDED["not-found"]), LoadState="loaded")
NEW = dict(RUNNING, InvocationID="0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a")


# ------------------------------------------------------------------ systemctl show -----------
def test_unit_state_from_recorded_systemctl_show():
    assert svc.parse_show(RECORDED["running"]) == {"NRestarts": 0, "LoadState": "loaded", "ActiveState": "active",
                                                   "SubState": "running",
                                                   "InvocationID": "7187cd3ca9e145ebaca3e5da23267e3e"}
    crashed = svc.parse_show(RECORDED["crashed"])
    assert (crashed["ActiveState"], crashed["SubState"], crashed["NRestarts"]) == ("activating", "auto-restart", 1)
    assert svc.parse_show(RECORDED["activating"])["SubState"] == "start"
    assert svc.parse_show(RECORDED["not-found"])["LoadState"] == "not-found"
    assert svc.parse_show(RECORDED["not-found"])["InvocationID"] == ""


def test_unit_state_tolerates_missing_and_empty_restart_counts():
    assert svc.parse_show("LoadState=loaded\nActiveState=active\nSubState=running\n")["NRestarts"] == 0
    assert svc.parse_show("NRestarts=\nActiveState=inactive\n")["NRestarts"] == 0
    assert svc.parse_show("Description=k3s = lightweight\n")["Description"] == "k3s = lightweight"  # split at the first =


def test_a_failing_systemctl_show_is_named():
    unit = UnitDouble("k3s", FakeClock(1000.0), [(0, {})], show_rc=1)
    with pytest.raises(svc.ServiceError, match="^systemctl show k3s failed: Failed to connect to bus"):
        svc.unit_state(unit, "k3s")


# ------------------------------------------------------------------ what progress() settles ---
@pytest.mark.parametrize(("state", "changed", "expected"), [
    ("crashed", False, (True, "unit k3s failed (auto-restart, 1 restarts)")),
    ("crashing", True, (True, "unit k3s failed (auto-restart, 0 restarts)")),  # before systemd counted it
    ("failed", True, (True, "unit k3s failed (failed, 0 restarts)")),
    ("running", True, (False, "unit k3s has not restarted yet")),  # the old invocation still answers
    ("running", False, None),  # nothing was started: judge the node
    ("activating", True, None),  # a new invocation: judge it (not active yet)
])
def test_progress_settles_crashes_and_old_invocations(state, changed, expected):
    unit = svc.parse_show(RECORDED[state])
    assert svc.progress(params(name="k3s", state="restarted"), unit, changed, 0,
                        RUNNING["InvocationID"]) == expected


def test_a_restart_count_above_the_baseline_is_a_crash_even_when_active_again():
    unit = dict(NEW, NRestarts=1)
    assert svc.progress(params(), unit, True, 0, RUNNING["InvocationID"]) == (True, "unit k3s-agent failed (running, 1 restarts)")
    assert svc.progress(params(), unit, True, 1, RUNNING["InvocationID"]) is None


# ------------------------------------------------------------------ judge ---------------------
def test_judge_a_unit_that_is_not_active_and_an_agent_that_is():
    activating = svc.parse_show(RECORDED["activating"])
    assert svc.judge(None, params(), activating) == (False, "unit k3s-agent is activating (start)", {})
    assert svc.judge(None, params(), RUNNING) == (True, "", {})  # an agent: active means READY=1 was sent


def node(ready=True, member=True, version="v1.31.4+k3s1"):
    return {"ready": ready, "etcd_member": member, "version": version, "server": member, "unschedulable": False}


@pytest.mark.parametrize(("over", "nodes", "reason"), [
    ({"node_name": "s1"}, {"s1": node(ready=False)}, "node s1 is not Ready"),
    ({"node_name": "s1"}, {}, "node s1 is not Ready"),
    ({"node_name": "s2"}, {"s2": node(member=False)}, "node s2 is not an etcd member yet"),
    ({"expect_nodes": ["s1", "s2", "a1"]}, {"s1": node(), "s2": node(ready=False)}, "not Ready: s2, a1"),
    ({"expect_etcd_members": 3}, {"s1": node(), "s2": node(), "s3": node(ready=False)},
     "2 Ready etcd members (s1, s2), expected 3"),
    ({"node_name": "s1", "expect_version": "v1.31.5+k3s1"}, {"s1": node(), "s2": node()},
     "not on v1.31.5+k3s1: s1 (v1.31.4+k3s1)"),
    ({"expect_nodes": ["s1", "s2"], "expect_version": "v1.31.5+k3s1"},
     {"s1": node(version="v1.31.5+k3s1"), "s2": node()}, "not on v1.31.5+k3s1: s2 (v1.31.4+k3s1)"),
    ({"node_name": "s1", "expect_nodes": ["s1", "s2"], "expect_etcd_members": 2, "expect_version": "v1.31.4+k3s1"},
     {"s1": node(), "s2": node(), "a1": node(member=False)}, ""),
])
def test_judge_nodes_says_what_is_missing_first(over, nodes, reason):
    ready, why, seen = svc.judge_nodes(params(role="server", **over), nodes)
    assert (ready, why) == (reason == "", reason) and seen == nodes


def run_command(argv):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return out.returncode, out.stdout, out.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One k3s double server (cluster-init) on loopback, its release binary as ``k3s``."""
    base = tmp_path_factory.mktemp("k3s")
    release = dbl.build_release(str(base / "release"), dbl.VERSION)
    port = free_port()
    data = base / "data"
    config = base / "config.yaml"
    config.write_text(f'data-dir: "{data}"\nnode-name: "s1"\nnode-ip: "127.0.0.1"\nbind-address: "127.0.0.1"\n'
                      f'https-listen-port: {port}\nwrite-kubeconfig: "{base / "k3s.yaml"}"\ncluster-init: true\n')
    with open(base / "log", "ab") as log:
        proc = subprocess.Popen([sys.executable, str(DOUBLE), "server", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=log)
    p = params(name="k3s", role="server", node_name="s1", api_port=port, data_dir=str(data),
               kubeconfig=str(base / "k3s.yaml"), k3s=str(Path(release) / "k3s"))
    try:
        end = time.monotonic() + 30
        while svc.judge(run_command, p, RUNNING)[1] != "" and time.monotonic() < end:
            time.sleep(0.3)
        yield p
    finally:
        proc.terminate()
        proc.wait(10)


def test_judge_a_server_through_its_api_and_kubectl(server):
    ready, reason, nodes = svc.judge(run_command, server, RUNNING)
    assert (ready, reason) == (True, "") and nodes["s1"]["ready"] and nodes["s1"]["etcd_member"]
    assert nodes["s1"]["version"] == dbl.VERSION
    ready, reason, _nodes = svc.judge(run_command, dict(server, expect_version="v1.31.5+k3s1"), RUNNING)
    assert (ready, reason) == (False, f"not on v1.31.5+k3s1: s1 ({dbl.VERSION})")
    ready, reason, _nodes = svc.judge(run_command, dict(server, expect_etcd_members=3), RUNNING)
    assert (ready, reason) == (False, "1 Ready etcd members (s1), expected 3")


def test_judge_a_server_whose_api_or_kubectl_fails(server, tmp_path):
    down = dict(server, api_port=free_port())
    ready, reason, nodes = svc.judge(run_command, down, RUNNING)
    assert not ready and reason.startswith("/readyz: ") and "refused" in reason and nodes == {}
    no_kubeconfig = dict(server, kubeconfig=str(tmp_path / "missing.yaml"))
    ready, reason, _nodes = svc.judge(run_command, no_kubeconfig, RUNNING)
    assert not ready and reason.startswith("kubectl get nodes: ")
    not_json = tmp_path / "k3s"
    not_json.write_text("#!/bin/sh\necho 'NAME STATUS ROLES'\n")
    not_json.chmod(0o755)
    assert svc.judge(run_command, dict(server, k3s=str(not_json)), RUNNING) == (False, "kubectl get nodes: not JSON", {})


# ------------------------------------------------------------------ run: start, wait, fail ----
def run(p, unit, clock, check_mode=False):
    return svc.run(p, check_mode, unit, sleep=clock.sleep, clock=clock)


def test_an_agent_that_becomes_ready_after_activating():
    clock = FakeClock(1000.0)
    stopped = STOPPED
    unit = UnitDouble("k3s-agent", clock, [(0, stopped), (0, svc.parse_show(RECORDED["activating"])), (4, NEW)])
    result = run(params(), unit, clock)
    assert result == {"changed": True, "active": "active", "ready": True, "reason": "", "nodes": {},
                      "etcd_members": [], "restarts": 0}
    assert ["systemctl", "start", "--no-block", "k3s-agent"] in unit.calls
    assert 4 <= clock.now - 1000 < 6  # stopped at the first check after it became ready


def test_a_started_unit_that_is_active_is_left_alone():
    clock = FakeClock(1000.0)
    unit = UnitDouble("k3s-agent", clock, [(0, RUNNING)])
    result = run(params(), unit, clock)
    assert result["changed"] is False and result["ready"] is True
    assert [c for c in unit.calls if c[1] in ("start", "restart")] == [] and clock.sleeps == []


def test_a_crash_loop_fails_at_once_with_the_journal():
    clock = FakeClock(1000.0)
    journal = [f"level=info msg=\"line {i}\"" for i in range(30)] + ["level=fatal msg=\"token is invalid\""]
    unit = UnitDouble("k3s-agent", clock, [(0, RUNNING), (1, svc.parse_show(RECORDED["crashed"]))], journal=journal)
    with pytest.raises(svc.ServiceError) as err:
        run(params(state="restarted", journal_lines=5), unit, clock)
    msg = str(err.value)
    assert msg.startswith("k3s-agent failed: unit k3s-agent failed (auto-restart, 1 restarts)\n"
                          "--- last 5 lines of the journal of k3s-agent ---\n")
    assert msg.endswith('level=fatal msg="token is invalid"') and err.value.extra["journal"] == journal[-5:]
    assert err.value.extra["restarts"] == 1 and err.value.extra["ready"] is False
    assert clock.now - 1000 < 3  # no wait for the timeout


def test_a_unit_still_activating_times_out_with_what_was_seen_last():
    clock = FakeClock(1000.0)
    activating = svc.parse_show(RECORDED["activating"])
    unit = UnitDouble("k3s-agent", clock, [(0, STOPPED), (0, activating)],
                      journal=["Waiting to retrieve agent configuration; server is not ready"])
    with pytest.raises(svc.ServiceError) as err:
        run(params(timeout=10.0), unit, clock)
    assert str(err.value) == ("k3s-agent is not ready after 10s: unit k3s-agent is activating (start)\n"
                              "--- last 1 lines of the journal of k3s-agent ---\n"
                              "Waiting to retrieve agent configuration; server is not ready")
    assert clock.now - 1000 == pytest.approx(10.0)  # waited exactly to the deadline
    assert err.value.extra["active"] == "activating" and err.value.extra["changed"] is True


def test_a_restart_waits_for_a_new_invocation():
    clock = FakeClock(1000.0)
    unit = UnitDouble("k3s-agent", clock, [(0, RUNNING), (3, NEW)])  # the old process answers for 3 s
    result = run(params(state="restarted"), unit, clock)
    assert result["ready"] is True and 3 <= clock.now - 1000 < 5
    with pytest.raises(svc.ServiceError, match="^k3s-agent is not ready after 2s: unit k3s-agent has not restarted yet"):
        run(params(state="restarted", timeout=2.0), UnitDouble("k3s-agent", clock, [(0, RUNNING)]), clock)


def test_query_without_wait_judges_once_and_does_not_fail():
    clock = FakeClock(1000.0)
    unit = UnitDouble("k3s-agent", clock, [(0, svc.parse_show(RECORDED["activating"]))])
    result = run(params(state="query", wait=False), unit, clock)
    assert (result["changed"], result["ready"], result["reason"]) == (False, False, "unit k3s-agent is activating (start)")
    assert clock.sleeps == [] and len(unit.calls) == 2  # the state before and one observation


def test_check_mode_predicts_and_a_missing_unit_is_named():
    clock = FakeClock(1000.0)
    stopped = UnitDouble("k3s-agent", clock, [(0, STOPPED)])
    assert run(params(), stopped, clock, check_mode=True) == {
        "changed": True, "active": "inactive", "ready": False, "reason": "check mode", "nodes": {}, "etcd_members": [],
        "restarts": 0}
    assert [c[1] for c in stopped.calls] == ["show"]
    missing = UnitDouble("k3s-agent", clock, [(0, svc.parse_show(RECORDED["not-found"]))])
    with pytest.raises(svc.ServiceError, match="^unit k3s-agent is not installed$"):
        run(params(), missing, clock)


def test_a_start_without_wait_still_fails_when_the_unit_is_not_ready():
    clock = FakeClock(1000.0)
    unit = UnitDouble("k3s-agent", clock, [(0, STOPPED),
                                           (0, svc.parse_show(RECORDED["activating"]))])
    with pytest.raises(svc.ServiceError, match="^k3s-agent is not ready after 30s: unit k3s-agent is activating"):
        run(params(wait=False), unit, clock)
    assert clock.sleeps == []


def test_check_mode_on_a_missing_unit_predicts_a_start_instead_of_failing():
    clock = FakeClock(1000.0)
    missing = UnitDouble("k3s-agent", clock, [(0, svc.parse_show(RECORDED["not-found"]))])
    result = run(params(), missing, clock, check_mode=True)
    assert (result["changed"], result["reason"], result["active"]) == (True, "check mode", "inactive")
