"""The Proxmox client against the PVE API double: task waiting, log tails, retries, throttle."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import connection

from ansible_collections.locus.infra.plugins.module_utils import _proxmox, _retry


class FakeClock:
    """A clock whose sleep() advances it at once: lets a test wait "30 s" in no time."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(round(seconds, 4))
        self.now += seconds


def client_for(double, **extra):
    params = {**connection(double), "api_timeout": 10, "api_retries": 3, **extra}
    return _proxmox.ProxmoxClient(params)


def test_wait_polls_with_growing_interval_up_to_the_cap_and_times_out_on_the_wall_clock(pve):
    pve.durations["qmclone"] = 3600  # never finishes during the test
    clock = FakeClock()
    client = _proxmox.ProxmoxClient({**connection(pve), "api_retries": 0}, sleep=clock.sleep, clock=clock)
    upid = client.request("POST", "nodes/pve1/qemu/9000/clone", {"newid": 200, "name": "slow"})
    with pytest.raises(_proxmox.TaskError) as err:
        client.wait_task(upid, timeout=30, what="clone")
    exc = err.value
    assert exc.timed_out and exc.exitstatus is None
    assert "did not finish within 30s" in str(exc) and upid in str(exc)
    assert exc.log_tail and exc.log_tail[0].startswith("create linked clone of drive scsi0")  # template: linked by default
    waits = clock.sleeps
    assert waits[:4] == [0.25, 0.375, 0.5625, 0.8438]
    assert max(waits) == 5.0 and waits.count(5.0) >= 2  # capped
    assert all(b >= a for a, b in zip(waits[:-2], waits[1:-1], strict=True))  # grows (the last is cut at the deadline)
    assert round(sum(waits), 6) == 30.0  # waited exactly the wall-clock timeout
    assert pve.request_count("GET", r"/status$") == len(waits)  # one status poll per wait


def test_wait_stops_at_the_first_terminal_state_with_the_last_log_lines(pve):
    pve.durations["qmclone"] = 5.0
    pve.fail_task("qmclone", "clone failed: qemu-img: Could not open 'base-9000-disk-0': Input/output error",
                  at=0.1, log=[f"read error at sector {i}" for i in range(120)])
    client = client_for(pve)
    start = time.monotonic()
    with pytest.raises(_proxmox.TaskError) as err:
        client.run_task("POST", "nodes/pve1/qemu/9000/clone", {"newid": 201, "name": "broken"}, timeout=300,
                        what="clone")
    took = time.monotonic() - start
    exc = err.value
    assert not exc.timed_out and took < 5.0  # the task died at 0.5 s; we did not wait for 5 s or 300 s
    assert exc.exitstatus == "clone failed: qemu-img: Could not open 'base-9000-disk-0': Input/output error"
    assert exc.log_tail[-1] == "TASK ERROR: " + exc.exitstatus
    assert exc.log_tail[-2] == "read error at sector 119" and len(exc.log_tail) == _proxmox.LOG_TAIL_LINES
    assert "read error at sector 0" not in exc.log_tail
    assert pve.vm_config(201) is None


def test_warnings_exit_is_success_and_returns_the_warning_lines(pve):
    pve.add_vm(300, "w1")
    pve.warn_task("qmstart", ["unable to apply cloud-init network config", "guest agent not running"])
    result = client_for(pve).run_task("POST", "nodes/pve1/qemu/300/status/start", {}, timeout=60, what="start")
    assert result.exitstatus == "WARNINGS: 2"
    assert result.warnings == ["WARN: unable to apply cloud-init network config", "WARN: guest agent not running"]
    assert pve.vm_status(300) == "running"


@pytest.mark.parametrize(
    ("method", "status", "message", "retried"),
    [
        ("GET", 503, "Service Unavailable", True),
        ("GET", 500, "VM 101 is locked (snapshot)", True),
        ("GET", 500, "storage 'ceph' is not online", False),
        ("POST", 503, "Service Unavailable", False),  # may have been carried out: not retried
        ("POST", 595, "Connection refused", True),  # never reached the node: safe to retry
        ("POST", 500, "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout", True),
        ("PUT", 502, "Bad Gateway", True),
        ("GET", 401, "authentication failure", False),
    ],
)
def test_only_retryable_failures_are_retried(pve, method, status, message, retried):
    client = client_for(pve)
    client.backoff = _retry.Backoff(0.01, 0.01)  # keep the test fast; the backoff is tested in test_retry.py
    path = {"GET": "cluster/resources", "POST": "nodes/pve1/qemu/9000/clone", "PUT": "pools/lab"}[method]
    params = {"POST": {"newid": 202, "name": "r1"}, "PUT": {"comment": "lab pool"}}.get(method)
    pve.fail_requests(method, "^/" + path, status, message, count=2)
    if retried:
        client.request(method, path, params)
        assert len(client.retried) == 2 and message in client.retried[0]["error"]
        assert pve.request_count(method, "^/" + path) == 3
    else:
        with pytest.raises(_proxmox.ProxmoxError) as err:
            client.request(method, path, params)
        assert err.value.status == status and message in str(err.value)
        assert pve.request_count(method, "^/" + path) == 1 and client.retried == []


def test_retries_give_up_after_api_retries_with_the_last_error(pve):
    client = client_for(pve, api_retries=2)
    client.backoff = _retry.Backoff(0.01, 0.01)
    pve.fail_requests("GET", "^/cluster/resources", 503, "Service Unavailable", count=10)
    with pytest.raises(_proxmox.ProxmoxError, match="503 Service Unavailable"):
        client.resources()
    assert pve.request_count("GET", "^/cluster/resources") == 3


def test_parameter_errors_keep_the_per_parameter_object(pve):
    pve.add_vm(301, "p1")
    client = client_for(pve)
    with pytest.raises(_proxmox.ProxmoxError) as err:
        client.request("PUT", "nodes/pve1/qemu/301/config", {"memory": 8, "net0": "virtio,bridge=vmbr0,tag=5000"},
                       names={"net0": "nics[0]"})
    exc = err.value
    assert exc.status == 400 and set(exc.errors) == {"memory", "net0"}
    assert "net0 (nics[0]): invalid format - format error net0.tag: value must have a maximum value of 4094" in str(exc)
    assert "memory: invalid format - format error memory.current: value must have a minimum value of 16" in str(exc)
    assert exc.result()["api_request"] == "PUT /nodes/pve1/qemu/301/config"


def test_log_tail_reads_past_the_default_page(pve):
    pve.add_vm(302, "l1")
    pve.durations["qmstart"] = 0.2
    pve.fail_task("qmstart", "start failed: QEMU exited with code 1", at=0.5,
                  log=[f"kvm: warning: line {i}" for i in range(75)])
    client = client_for(pve)
    with pytest.raises(_proxmox.TaskError) as err:
        client.run_task("POST", "nodes/pve1/qemu/302/status/start", {}, timeout=60, what="start")
    assert err.value.log_tail[-2:] == ["kvm: warning: line 74", "TASK ERROR: start failed: QEMU exited with code 1"]


def test_node_slot_limits_concurrent_holders(tmp_path):
    acquired = []
    release = threading.Event()

    def holder():
        with _proxmox.node_slot("pve.example-pve1", 2, timeout=5, directory=str(tmp_path)) as index:
            acquired.append(index)
            release.wait(5)

    threads = [threading.Thread(target=holder) for _i in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while len(acquired) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(acquired) == [0, 1]
    with pytest.raises(_proxmox.ProxmoxError, match=r"no free slot for pve.example-pve1 within 0.3s \(2 operations"), \
            _proxmox.node_slot("pve.example-pve1", 2, timeout=0.3, directory=str(tmp_path)):
        pass
    with _proxmox.node_slot("pve.example-pve2", 2, timeout=0.3, directory=str(tmp_path)) as other:
        assert other == 0  # another node has its own slots
    release.set()
    for thread in threads:
        thread.join()
    with _proxmox.node_slot("pve.example-pve1", 2, timeout=0.3, directory=str(tmp_path)) as index:
        assert index == 0


def test_token_id_forms(pve):
    token_id, secret = pve.token()
    user, name = token_id.split("!")
    short = _proxmox.ProxmoxClient({"api_host": pve.host, "ca_path": pve.ca_file, "api_user": user,
                                    "api_token_id": name, "api_token_secret": secret})
    assert short.request("GET", "version")["version"] == pve.version
    with pytest.raises(_proxmox.ProxmoxError, match="belongs to 'root@pam', not api_user 'ops@pve'"):
        _proxmox.ProxmoxClient({"api_host": pve.host, "api_user": "ops@pve", "api_token_id": token_id,
                                "api_token_secret": secret})
    with pytest.raises(_proxmox.ProxmoxError, match="api_token_secret"):
        _proxmox.ProxmoxClient({"api_host": pve.host, "api_token_id": token_id})
