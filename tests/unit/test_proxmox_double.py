"""The PVE API double speaks the wire format PVE does (raw HTTP, no client library):
what the modules' normalisation and error handling are tested against must be right."""

from __future__ import annotations

import time

import pytest
import requests
from doubles.proxmox_api import GiB, PveDouble, format_size


@pytest.fixture
def api():
    double = PveDouble(durations={"qmclone": 0.3, "qmstart": 0.1})
    double.add_template(9000, "tpl")
    with double:
        token_id, secret = double.token()
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides session.verify
        session.verify = double.ca_file
        session.headers["Authorization"] = f"PVEAPIToken={token_id}={secret}"
        session.base = double.base_url
        session.double = double
        yield session


def test_errors_have_pve_shapes(api):
    r = api.put(f"{api.base}/nodes/pve1/qemu/9000/config", data={"memory": "8", "bogus": "1"})
    assert r.status_code == 400 and r.reason == "Parameter verification failed."
    body = r.json()
    assert body["data"] is None and body["message"] == "Parameter verification failed.\n"
    assert body["errors"]["bogus"].startswith("property is not defined in schema")
    assert "minimum value of 16" in body["errors"]["memory"]
    r = api.post(f"{api.base}/nodes/pve1/qemu/9000/status/start")  # a template: the *task* fails
    upid = r.json()["data"]
    time.sleep(0.3)
    status = api.get(f"{api.base}/nodes/pve1/tasks/{upid}/status").json()["data"]
    assert status["status"] == "stopped" and status["exitstatus"] == "you can't start a vm if it's a template"
    r = api.get(f"{api.base}/nodes/pve1/qemu/777/config")
    assert r.status_code == 500 and r.reason == "Configuration file 'nodes/pve1/qemu-server/777.conf' does not exist"
    r = requests.get(f"{api.base}/version", verify=api.double.ca_file, timeout=10)
    assert r.status_code == 401


def test_nextid_is_a_string_and_typed_config(api):
    assert api.get(f"{api.base}/cluster/nextid").json()["data"] == "100"
    conf = api.get(f"{api.base}/nodes/pve1/qemu/9000/config").json()["data"]
    assert conf["cores"] == 1 and conf["template"] == 1 and conf["memory"] == "1024"
    assert len(conf["digest"]) == 40


def test_task_log_paging_like_pve(api):
    upid = api.post(f"{api.base}/nodes/pve1/qemu/9000/clone", data={"newid": 101, "name": "c1", "full": 1}).json()["data"]
    assert upid.startswith("UPID:pve1:") and ":qmclone:9000:root@pam!locus:" in upid
    assert api.get(f"{api.base}/nodes/pve1/qemu/101/config").json()["data"]["lock"] == "clone"
    time.sleep(0.4)
    whole = api.get(f"{api.base}/nodes/pve1/tasks/{upid}/log", params={"limit": 0}).json()["data"]
    assert whole[-1] == {"n": len(whole), "t": "TASK OK"}
    page = api.get(f"{api.base}/nodes/pve1/tasks/{upid}/log", params={"start": 2, "limit": 2}).json()["data"]
    assert [e["n"] for e in page] == [3, 4]
    assert len(api.get(f"{api.base}/nodes/pve1/tasks/{upid}/log").json()["data"]) == min(50, len(whole))


def test_running_vm_changes_go_pending_and_sizes_print_like_pve(api):
    api.double.add_vm(120, "r1", status="running", disks={"scsi0": 32 * GiB})
    assert api.put(f"{api.base}/nodes/pve1/qemu/120/config", data={"cores": "4", "tags": "b,A;a"}).status_code == 200
    current = api.get(f"{api.base}/nodes/pve1/qemu/120/config", params={"current": 1}).json()["data"]
    merged = api.get(f"{api.base}/nodes/pve1/qemu/120/config").json()["data"]
    assert current["cores"] == 2 and merged["cores"] == 4 and merged["tags"] == "b;A"
    pending = {i["key"]: i for i in api.get(f"{api.base}/nodes/pve1/qemu/120/pending").json()["data"]}
    assert pending["cores"] == {"key": "cores", "value": 2, "pending": 4}
    assert merged["scsi0"].endswith("size=32G")
    assert [format_size(s) for s in (32 * GiB, 32 * GiB + 1024**2, 4 * 1024**2, 1000)] == ["32G", "32769M", "4M", "1000"]
