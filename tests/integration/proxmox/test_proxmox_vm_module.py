"""locus.infra.proxmox_vm against the stateful PVE API double: idempotence, check and diff
mode, task waiting, retries and error reporting."""

from __future__ import annotations

from urllib.parse import quote

from conftest import TEMPLATE, GiB, warning_texts

WRITES = r"^/(nodes|pools)"


def web_spec(ssh_keys, **extra):
    spec = {
        "name": "web1", "node": "pve1", "clone": {"source": TEMPLATE}, "storage": "local-lvm", "pool": "lab",
        "cores": 2, "memory": 2048,
        "disks": [{"size": 16, "options": {"discard": "on", "ssd": True}}],
        "nics": [{"bridge": "vmbr0", "vlan": 20}],
        "cloud_init": {"user": "debian", "ssh_keys": ssh_keys, "ipconfig": ["ip=10.20.0.21/24,gw=10.20.0.1"],
                       "nameserver": ["10.20.0.1"], "searchdomain": ["lab.example"]},
        "tags": ["web", "prod"], "onboot": True, "agent": True, "ref_tag": "LOCUS-DEPLOY20250908-001",
        "state": "started",
    }
    spec.update(extra)
    return spec


def writes(double):
    return [(m, p, s) for m, p, s in double.requests if m != "GET"]


def test_clone_from_template_then_second_run_unchanged(pve, run_module, ssh_keys):
    first = run_module("proxmox_vm", **web_spec(ssh_keys))
    assert first["rc"] == 0, first["msg"]
    assert first["changed"] and first["created"]
    vmid = first["vmid"]
    conf = pve.vm_config(vmid)
    assert conf["name"] == "web1" and conf["cores"] == "2" and conf["memory"] == "2048"
    assert conf["scsi0"].endswith("size=16G,ssd=1") and "discard=on" in conf["scsi0"]
    assert conf["net0"].startswith("virtio=BC:24:11:") and conf["net0"].endswith(",bridge=vmbr0,tag=20")
    assert conf["tags"] == "web;prod" and conf["onboot"] == "1" and conf["agent"] == "1"
    assert conf["ipconfig0"] == "ip=10.20.0.21/24,gw=10.20.0.1" and conf["ciuser"] == "debian"
    assert conf["description"].endswith("locus-ref: LOCUS-DEPLOY20250908-001")
    assert pve.vm_status(vmid) == "running" and pve.vm_pool(vmid) == "lab"
    assert first["macs"]["net0"] == conf["net0"].split(",")[0].split("=")[1]
    assert first["ip_address"] == "10.20.0.21"
    assert [t["exitstatus"] for t in first["tasks"]] == ["OK", "OK", "OK"]  # clone, resize, start

    pve.reset_counters()
    second = run_module("proxmox_vm", **web_spec(ssh_keys, ref_tag="LOCUS-DEPLOY20250909-007"))
    assert second["rc"] == 0, second["msg"]
    assert second["changed"] is False
    assert second["actions"] == [] and second["changes"] == {}
    assert writes(pve) == []
    assert second["api_requests"] == pve.request_count() == 2  # cluster/resources + config
    # a new REF-tag alone is no reason to change the VM: the description keeps the one that did
    assert second["ref_tag"] == "LOCUS-DEPLOY20250908-001"


def test_check_mode_on_create_predicts_and_changes_nothing(pve, run_module, ssh_keys):
    before = pve.vm_by_name("web1")
    check = run_module("proxmox_vm", check=True, diff=True, **web_spec(ssh_keys))
    assert check["rc"] == 0, check["msg"]
    assert check["changed"] and check["created"] and check["vmid_predicted"]
    assert writes(pve) == [] and pve.vm_by_name("web1") == before == []
    real = run_module("proxmox_vm", **web_spec(ssh_keys))
    assert real["vmid"] == check["vmid"]
    assert [a.split(" (")[0] for a in real["actions"]] == [a.split(" (")[0] for a in check["actions"]]
    assert set(real["changes"]) == set(check["changes"])
    for key in ("cores", "memory", "tags", "ipconfig0", "sshkeys", "scsi0.size", "pool", "status"):
        assert real["changes"][key] == check["changes"][key], key
    assert check["diff"]["after"]["sshkeys"] == sorted(ssh_keys)
    assert check["diff"]["after"]["scsi0.size"] == "16 GiB" and check["diff"]["before"]["scsi0.size"] == "4 GiB"


def test_check_mode_on_update_predicts_exact_changes_and_diff(pve, run_module, ssh_keys):
    assert run_module("proxmox_vm", **web_spec(ssh_keys))["rc"] == 0
    vmid = pve.vm_by_name("web1")[0]
    conf_before = pve.vm_config(vmid)
    pve.reset_counters()
    spec = web_spec(ssh_keys[:1], memory=4096, tags=["web", "prod", "edge"], ref_tag="LOCUS-DEPLOY20250909-002")
    check = run_module("proxmox_vm", check=True, diff=True, **spec)
    assert check["rc"] == 0 and check["changed"]
    assert writes(pve) == [] and pve.vm_config(vmid) == conf_before
    assert sorted(check["changes"]) == ["memory", "ref_tag", "sshkeys", "tags"]
    assert check["diff"]["before"]["memory"] == 2048 and check["diff"]["after"]["memory"] == 4096
    assert check["diff"]["before"]["sshkeys"] == sorted(ssh_keys)
    assert check["diff"]["after"]["sshkeys"] == ssh_keys[:1]
    assert check["diff"]["after"]["tags"] == ["web", "prod", "edge"]
    assert check["diff"]["before"]["ref_tag"] == "LOCUS-DEPLOY20250908-001"
    assert check["diff"]["after"]["ref_tag"] == "LOCUS-DEPLOY20250909-002"
    assert check["pending"] == ["memory"]  # the VM runs: memory waits for a restart
    real = run_module("proxmox_vm", **spec)
    assert real["changes"] == check["changes"]
    assert real["pending"] == ["memory"]
    assert any("apply at its next restart" in w for w in warning_texts(real))
    conf = pve.vm_config(vmid, current=True)
    assert conf["memory"] == "2048" and pve.vm_config(vmid)["memory"] == "4096"  # pending until restart
    assert conf["tags"] == "web;prod;edge"
    restarted = run_module("proxmox_vm", **dict(spec, state="restarted"))
    assert restarted["changed"] and restarted["actions"] == ["reboot"]
    assert pve.vm_config(vmid, current=True)["memory"] == "4096"


def test_check_mode_on_delete_predicts_and_changes_nothing(pve, run_module, ssh_keys):
    vmid = run_module("proxmox_vm", **web_spec(ssh_keys))["vmid"]
    pve.reset_counters()
    check = run_module("proxmox_vm", check=True, diff=True, name="web1", state="absent")
    assert check["rc"] == 0 and check["changed"] and check["actions"] == ["stop", "delete"]
    assert check["diff"]["after"]["state"] == "absent" and check["diff"]["before"]["state"] == "running"
    assert writes(pve) == [] and pve.vm_status(vmid) == "running"
    gone = run_module("proxmox_vm", name="web1", state="absent")
    assert gone["rc"] == 0 and gone["changed"] and pve.vm_by_name("web1") == []
    again = run_module("proxmox_vm", name="web1", state="absent")
    assert again["rc"] == 0 and again["changed"] is False


def test_no_false_change_from_pve_value_forms(pve, run_module, ssh_keys):
    """A VM configured by other clients (GUI, pvesh, proxmox_kvm) in equivalent forms."""
    keys = "\n".join(reversed(ssh_keys))  # other order, different escaping, no trailing newline
    stored_keys = quote(keys, safe="/+=")
    vmid = pve.add_vm(120, "db1", config={
        "memory": "current=4096", "cores": "2", "onboot": "1", "agent": "enabled=1,fstrim_cloned_disks=1",
        "tags": "Prod;db", "sshkeys": stored_keys, "ciuser": "debian", "cpu": "cputype=host,flags=+aes",
        "net0": "virtio=bc:24:11:01:02:03,bridge=vmbr0,firewall=0,tag=30",
        "ipconfig0": "gw=10.30.0.1,ip=10.30.0.5/24", "nameserver": "10.30.0.1 10.30.0.2",
        "ide2": "local-lvm:vm-120-cloudinit,media=cdrom", "description": "Database\n\nlocus-ref: LOCUS-DEPLOY20250101-001",
    }, disks={"scsi0": 32 * GiB}, status="running")
    spec = {"name": "db1", "node": "pve1", "memory": 4096, "cores": 2, "onboot": True, "agent": True,
            "tags": ["db", "prod"], "cpu_type": "host", "description": "Database\n",
            "nics": [{"bridge": "vmbr0", "vlan": 30}], "disks": [{"size": "32768M"}],
            "cloud_init": {"user": "debian", "ssh_keys": ssh_keys, "ipconfig": [{"ip": "10.30.0.5/24", "gw": "10.30.0.1"}],
                           "nameserver": ["10.30.0.1", "10.30.0.2"]},
            "ref_tag": "LOCUS-DEPLOY20250908-002", "state": "started"}
    pve.reset_counters()
    result = run_module("proxmox_vm", diff=True, **spec)
    assert result["rc"] == 0, result.get("msg")
    assert result["changed"] is False, result["changes"]
    assert result["diff"] == {"before": {}, "after": {}}
    assert writes(pve) == [] and result["vmid"] == vmid
    assert result["ref_tag"] == "LOCUS-DEPLOY20250101-001"


def test_existing_vm_change_keeps_mac_and_moves_ref_tag(pve, run_module, ssh_keys):
    vmid = run_module("proxmox_vm", **web_spec(ssh_keys))["vmid"]
    mac = pve.vm_config(vmid)["net0"].split(",")[0]
    result = run_module("proxmox_vm", **web_spec(ssh_keys, nics=[{"bridge": "vmbr1"}], ref_tag="LOCUS-DEPLOY20250910-003"))
    assert result["changed"] and sorted(result["changes"]) == ["net0", "ref_tag"]
    conf = pve.vm_config(vmid)
    assert conf["net0"] == f"{mac},bridge=vmbr1"  # same MAC, VLAN tag removed
    assert conf["description"].endswith("locus-ref: LOCUS-DEPLOY20250910-003")


def test_clone_failing_midway_reports_last_log_lines_quickly(pve, run_module, ssh_keys):
    progress = [f"transferred {i * 256} MiB of 4.0 GiB ({i * 6.25:.2f}%)" for i in range(1, 15)]
    pve.durations["qmclone"] = 3.0
    pve.fail_task("qmclone", "clone failed: storage migration failed: write error: No space left on device",
                  at=0.4, log=[*progress, "qemu-img: error while writing at byte 3758096384: No space left on device"])
    result = run_module("proxmox_vm", wait_timeout=300, **web_spec(ssh_keys))
    assert result["rc"] == 1 and result["failed"]
    task = result["task"]
    assert task["exitstatus"] == "clone failed: storage migration failed: write error: No space left on device"
    assert task["log_tail"][-1] == "TASK ERROR: " + task["exitstatus"]
    assert task["log_tail"][-2].startswith("qemu-img: error while writing")
    assert "create full clone of drive scsi0 (local-lvm:base-9000-disk-0)" not in task["log_tail"]  # the *last* lines
    assert task["timed_out"] is False and task["elapsed"] < 30  # stopped at the failure, not at the 300 s timeout
    assert "No space left on device" in result["msg"] and task["upid"] in result["msg"]
    assert pve.vm_by_name("web1") == []  # PVE removed the half-made VM
    assert result["actions"][0].startswith("clone debian-12-cloud")


def test_lock_contention_is_retried(pve, run_module, ssh_keys):
    vmid = run_module("proxmox_vm", **web_spec(ssh_keys))["vmid"]
    pve.hold_lock(vmid, "backup", hits=2)  # released after refusing two requests
    pve.reset_counters()
    result = run_module("proxmox_vm", **web_spec(ssh_keys, memory=3072))
    assert result["rc"] == 0, result.get("msg")
    assert result["changed"] and pve.vm_config(vmid)["memory"] == "3072"
    assert any("is locked (backup)" in r["error"] for r in result["retries"])
    puts = [s for m, p, s in pve.requests if m == "PUT" and p.endswith(f"/qemu/{vmid}/config")]
    assert puts == [500, 500, 200]


def test_config_flock_timeout_is_retried(pve, run_module, ssh_keys):
    vmid = run_module("proxmox_vm", **web_spec(ssh_keys))["vmid"]
    pve.hold_flock(vmid, hits=1)  # another worker holds the config file lock
    result = run_module("proxmox_vm", **web_spec(ssh_keys, cores=4))
    assert result["rc"] == 0, result.get("msg")
    assert any("can't lock file" in r["error"] for r in result["retries"])
    assert pve.vm_config(vmid)["cores"] == "4"


def test_start_task_failing_on_lock_is_started_again(pve, run_module, ssh_keys):
    vmid = run_module("proxmox_vm", **web_spec(ssh_keys, state="present"))["vmid"]
    assert pve.vm_status(vmid) == "stopped"
    pve.hold_lock(vmid, "backup", hits=1)
    result = run_module("proxmox_vm", **web_spec(ssh_keys, state="started"))
    assert result["rc"] == 0, result.get("msg")
    assert pve.vm_status(vmid) == "running"
    assert any("locked (backup)" in r["error"] for r in result["retries"])


def test_non_retryable_errors_fail_at_once_with_per_parameter_messages(pve, run_module, ssh_keys):
    vmid = run_module("proxmox_vm", **web_spec(ssh_keys))["vmid"]
    pve.reset_counters()
    result = run_module("proxmox_vm", **web_spec(ssh_keys, cpu_type="pentium9",
                                                 cloud_init={"ipconfig": [{"gw": "10.20.0.1"}]}))
    assert result["rc"] == 1
    assert set(result["api_errors"]) == {"cpu", "ipconfig0"}
    assert "cpu (cpu_type): invalid format - Built-in cputype 'pentium9' is not defined" in result["msg"]
    assert "ipconfig0 (cloud_init.ipconfig[0]):" in result["msg"]
    assert "gateway specified without specifying an IP address" in result["msg"]
    assert result["api_status"] == 400 and result["api_request"] == f"PUT /nodes/pve1/qemu/{vmid}/config"
    assert pve.request_count("PUT") == 1  # a 400 is not retried
    assert "retries" not in result


def test_shrinking_a_disk_is_refused_before_any_change(pve, run_module, ssh_keys):
    vmid = run_module("proxmox_vm", **web_spec(ssh_keys))["vmid"]
    pve.reset_counters()
    for check in (True, False):
        result = run_module("proxmox_vm", check=check, **web_spec(ssh_keys, memory=4096, disks=[{"size": 8}]))
        assert result["rc"] == 1 and result["changed"] is False
        assert "disk scsi0 of VM web1 is 16 GiB; requested 8 GiB: shrinking a disk is not supported (grow only)" \
            in result["msg"]
    assert writes(pve) == [] and pve.vm_config(vmid)["memory"] == "2048"


def test_shrinking_below_the_template_is_refused_before_cloning(pve, run_module, ssh_keys):
    result = run_module("proxmox_vm", **web_spec(ssh_keys, disks=[{"size": "2G"}]))
    assert result["rc"] == 1 and "shrinking a disk is not supported" in result["msg"]
    assert writes(pve) == [] and pve.vm_by_name("web1") == []


def test_task_warnings_are_success_with_warnings_returned(pve, run_module, ssh_keys):
    pve.warn_task("qmstart", ["cloud-init drive: unable to resolve 'lab.example' - using defaults"])
    result = run_module("proxmox_vm", **web_spec(ssh_keys))
    assert result["rc"] == 0 and result["changed"]
    start = [t for t in result["tasks"] if t["what"].startswith("start")][0]
    assert start["exitstatus"] == "WARNINGS: 1"
    assert start["warnings"] == ["WARN: cloud-init drive: unable to resolve 'lab.example' - using defaults"]
    assert any("unable to resolve 'lab.example'" in w for w in warning_texts(result))
    assert pve.vm_status(result["vmid"]) == "running"


def test_stop_with_unresponsive_guest(pve, run_module, ssh_keys):
    vmid = run_module("proxmox_vm", **web_spec(ssh_keys))["vmid"]
    pve.ignore_acpi(vmid)
    failed = run_module("proxmox_vm", name="web1", state="stopped", shutdown_timeout=5)
    assert failed["rc"] == 1 and failed["task"]["exitstatus"] == "VM quit/powerdown failed - got timeout"
    assert pve.vm_status(vmid) == "running"
    forced = run_module("proxmox_vm", name="web1", state="stopped", shutdown_timeout=5, force_stop=True)
    assert forced["rc"] == 0 and forced["changed"] and forced["status"] == "stopped"
    assert pve.vm_status(vmid) == "stopped"
    again = run_module("proxmox_vm", name="web1", state="stopped")
    assert again["changed"] is False


def test_create_without_template(pve, run_module, ssh_keys):
    spec = {"name": "bare1", "node": "pve2", "storage": "local-lvm", "cores": 1, "memory": 1024,
            "disks": [{"size": 8}, {"slot": "scsi1", "size": "20G", "options": {"iothread": True}}],
            "nics": [{"bridge": "vmbr0"}, {"bridge": "vmbr1", "vlan": 99, "mac": "02:00:00:aa:bb:cc"}],
            "cloud_init": {"user": "ops", "ssh_keys": ssh_keys, "ipconfig": ["ip=dhcp"]}, "state": "started"}
    result = run_module("proxmox_vm", **spec)
    assert result["rc"] == 0, result.get("msg")
    conf = pve.vm_config(result["vmid"])
    assert conf["scsi0"] == f"local-lvm:vm-{result['vmid']}-disk-0,size=8G"
    assert conf["scsi1"] == f"local-lvm:vm-{result['vmid']}-disk-1,iothread=1,size=20G"
    assert conf["ide2"] == f"local-lvm:vm-{result['vmid']}-cloudinit,media=cdrom"
    assert conf["net1"] == "virtio=02:00:00:AA:BB:CC,bridge=vmbr1,tag=99"
    assert result["macs"]["net0"].startswith("BC:24:11:") and result["ip_address"] is None
    assert run_module("proxmox_vm", **spec)["changed"] is False


def test_vmid_of_another_vm_is_never_taken_over(pve, run_module):
    pve.add_vm(150, "db1")
    result = run_module("proxmox_vm", name="web1", vmid=150, node="pve1", memory=1024)
    assert result["rc"] == 1
    assert "VMID 150 belongs to VM 'db1', not 'web1'" in result["msg"]
    assert pve.vm_config(150)["name"] == "db1"


def test_duplicate_names_need_a_vmid(pve, run_module):
    pve.add_vm(151, "dup")
    pve.add_vm(152, "dup", node="pve2")
    result = run_module("proxmox_vm", name="dup", memory=1024)
    assert result["rc"] == 1 and "2 VMs are named dup (VMIDs 151, 152); set vmid" in result["msg"]
    fixed = run_module("proxmox_vm", name="dup", vmid=152, memory=1024)
    assert fixed["rc"] == 0 and fixed["node"] == "pve2" and pve.vm_config(152)["memory"] == "1024"


def test_bad_input_names_the_option(pve, run_module, ssh_keys):
    cases = [
        ({"nics": [{"bridge": "vmbr0", "vlan": 5000}]}, "nics[0].vlan: 5000 is not a VLAN id (1..4094)"),
        ({"disks": [{"size": "lots"}]}, "disks[0].size: not a size: 'lots'"),
        ({"cloud_init": {"ssh_keys": ["not-a-key"]}}, "cloud_init.ssh_keys: not an SSH public key"),
        ({"tags": ["ok", "no spaces!"]}, "tags: invalid tag(s) 'no spaces!'"),
        ({"balloon": 4096}, "balloon: 4096 MiB must not exceed memory (2048 MiB)"),
        ({"extra_config": {"memory": 1}}, "extra_config.memory: this key is managed by a module option"),
        ({"ref_tag": "DEPLOY-1"}, "ref_tag: 'DEPLOY-1' is not a REF-tag"),
    ]
    for extra, message in cases:
        result = run_module("proxmox_vm", **web_spec(ssh_keys, **extra))
        assert result["rc"] == 1 and message in result["msg"], (extra, result["msg"])
    assert writes(pve) == []


def test_missing_template_lists_the_templates(pve, run_module, ssh_keys):
    result = run_module("proxmox_vm", **web_spec(ssh_keys, clone={"source": "ubuntu-24.04"}))
    assert result["rc"] == 1
    assert "clone.source: no template or VM 'ubuntu-24.04' in the cluster (templates: debian-12-cloud)" in result["msg"]


def test_linked_clone_by_vmid_on_other_node_storage_rules(pve, run_module):
    result = run_module("proxmox_vm", name="lc1", node="pve1", clone={"source": "9000", "full": False},
                        storage="local-lvm", state="present")
    assert result["rc"] == 0, result.get("msg")
    conf = pve.vm_config(result["vmid"])
    assert conf["scsi0"].startswith("local-lvm:base-9000-disk-0/vm-")  # linked to the base image
    other = run_module("proxmox_vm", name="lc2", node="pve2", clone={"source": "9000"}, state="present")
    assert other["rc"] == 1 and "can't clone VM to node 'pve2' (VM uses local storage)" in other["msg"]


def test_password_login_and_credential_errors(pve, run_module):
    ok = run_module("proxmox_vm", connect=False, api_host=pve.host, ca_path=pve.ca_file, api_user="root@pam",
                    api_password="double-password", name="pw1", node="pve1", clone={"source": TEMPLATE})
    assert ok["rc"] == 0 and ok["changed"], ok.get("msg")
    bad = run_module("proxmox_vm", connect=False, api_host=pve.host, ca_path=pve.ca_file,
                     api_token_id="root@pam!locus", api_token_secret="wrong-secret-value", name="pw1")
    assert bad["rc"] == 1 and "rejected token root@pam!locus (401" in bad["msg"]
    assert "wrong-secret-value" not in str(bad)
    tls = run_module("proxmox_vm", connect=False, api_host=pve.host, api_token_id="root@pam!locus",
                     api_token_secret=pve.token()[1], name="pw1")
    assert tls["rc"] == 1 and "TLS verification of Proxmox VE" in tls["msg"] and "ca_path" in tls["msg"]
    missing = run_module("proxmox_vm", connect=False, api_host=pve.host, name="pw1")
    assert missing["rc"] == 1 and "no credentials" in missing["msg"]
