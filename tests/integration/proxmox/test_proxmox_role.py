"""Role locus.infra.proxmox_vm through ansible-playbook against the PVE API double:
10 VMs in parallel (forks), throttled per node, idempotent, check mode reports intent."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TEMPLATE, connection

HOSTS = [f"vm{i:02d}" for i in range(1, 11)]


def locus_vm(i, ssh_keys, memory=1024):
    record = {
        "name": f"vm{i:02d}", "vmid": 500 + i if i % 2 else None, "vcpus": 2, "memory": memory, "disk": 8,
        "cluster": "pve-lab", "node": "pve1" if i <= 5 else "pve2", "template": TEMPLATE,
        "cloud_init": {"user": "debian", "ssh_keys": ssh_keys, "nameservers": ["10.20.0.1"],
                       "searchdomain": "lab.example"},
        "network": [{"name": "net0", "bridge": "vmbr0", "vlan": 20, "model": "virtio", "firewall": False,
                     "ipv4": f"10.20.0.{100 + i}/24", "gateway4": "10.20.0.1", "ipv6": None, "gateway6": None}],
    }
    return record


@pytest.fixture
def lab(pve, tmp_path, ssh_keys):
    pve.durations.update({"qmclone": 1.0})
    pve.add_template(9001, TEMPLATE, node="pve2")  # the same template on each node (local storage)
    inventory = {"all": {"vars": {"ansible_host": "127.0.0.1", "ansible_port": 1}, "hosts": {
        host: {"locus_vm": locus_vm(i, ssh_keys), "netbox_tags": ["lab", "web"]} for i, host in enumerate(HOSTS, 1)}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    out = tmp_path / "facts"
    out.mkdir()
    playbook = [{
        "name": "Provision the lab VMs", "hosts": "all", "gather_facts": False,
        "vars": {"proxmox_vm_wait_ssh": False, "proxmox_vm_per_node": 2, "proxmox_vm_wait_timeout": 300},
        "roles": [{"role": "locus.infra.proxmox_vm"}],
        "post_tasks": [{"name": "Keep the host facts", "delegate_to": "localhost",
                        "ansible.builtin.copy": {"dest": f"{out}/{{{{ inventory_hostname }}}}.json", "mode": "0600",
                                                 "content": "{{ {'vmid': proxmox_vm_vmid, 'node': proxmox_vm_node, "
                                                            "'macs': proxmox_vm_macs, 'ref': proxmox_vm_deployed_ref} | to_json }}"},
                        "when": "not ansible_check_mode"}],
    }]
    (tmp_path / "site.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROXMOX_", "ANSIBLE_"))}
    conn = connection(pve)
    env.update({
        "PROXMOX_HOST": conn["api_host"], "PROXMOX_TOKEN_ID": conn["api_token_id"],
        "PROXMOX_TOKEN_SECRET": conn["api_token_secret"], "PROXMOX_CA_PATH": conn["ca_path"],
        "LOCUS_STATE_DIR": str(tmp_path / "state"), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_FORKS": "10", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"), "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-tmp"),
    })

    def play(*args):
        proc = subprocess.run(
            [str(Path(os.sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"),
             str(tmp_path / "site.yml"), *args],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False)
        recap = dict(re.findall(r"^(vm\d\d)\s+: (ok=.*)$", proc.stdout, re.M))
        return proc, {h: dict(re.findall(r"(\w+)=(\d+)", line)) for h, line in recap.items()}

    play.inventory = tmp_path / "inventory.yml"
    play.out = out
    return play


def test_ten_vms_in_parallel_idempotent_and_check_mode(pve, lab, ssh_keys):
    proc, recap = lab()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert sorted(recap) == HOSTS
    facts = {h: json.loads((lab.out / f"{h}.json").read_text()) for h in HOSTS}
    vmids = [int(facts[h]["vmid"]) for h in HOSTS]
    assert len(set(vmids)) == 10  # allocated VMIDs never collide, even when racing for cluster/nextid
    for i, host in enumerate(HOSTS, 1):
        vmid = int(facts[host]["vmid"])
        assert pve.vm_by_name(host) == [vmid]
        if i % 2:
            assert vmid == 500 + i
        conf = pve.vm_config(vmid)
        assert pve.vm_status(vmid) == "running"
        assert facts[host]["node"] == ("pve1" if i <= 5 else "pve2")
        assert conf["cores"] == "2" and conf["memory"] == "1024" and conf["scsi0"].endswith(",size=8G")
        assert conf["ipconfig0"] == f"ip=10.20.0.{100 + i}/24,gw=10.20.0.1"
        assert conf["net0"].endswith(",bridge=vmbr0,tag=20") and conf["tags"] == "lab;web"
        assert conf["onboot"] == "1" and conf["ciuser"] == "debian" and conf["searchdomain"] == "lab.example"
        assert facts[host]["macs"]["net0"] in conf["net0"]
        assert re.fullmatch(r"LOCUS-DEPLOY\d{8}-\d{3,}", facts[host]["ref"])
        assert conf["description"].endswith(f"locus-ref: {facts[host]['ref']}")
    assert len({facts[h]["ref"] for h in HOSTS}) == 10  # one DEPLOY tag per VM
    # throttled per node: never more than 2 clones at once on a node
    assert pve.max_concurrent_tasks[("pve1", "qmclone")] <= 2
    assert pve.max_concurrent_tasks[("pve2", "qmclone")] <= 2

    pve.reset_counters()
    proc, recap = lab()
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert all(recap[h]["changed"] == "0" and recap[h]["failed"] == "0" for h in HOSTS), recap
    assert [r for r in pve.requests if r[0] != "GET"] == []

    # check mode with a changed record: reports intent per host, changes nothing
    inventory = yaml.safe_load(lab.inventory.read_text())
    inventory["all"]["hosts"]["vm03"]["locus_vm"]["memory"] = 2048
    lab.inventory.write_text(yaml.safe_dump(inventory))
    proc, recap = lab("--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert recap["vm03"]["changed"] == "1" and all(recap[h]["changed"] == "0" for h in HOSTS if h != "vm03")
    assert re.search(r'^-\s+"memory": 1024,?$', proc.stdout, re.M) and re.search(r'^\+\s+"memory": 2048,?$', proc.stdout, re.M)
    assert pve.vm_config(503)["memory"] == "1024"
    assert [r for r in pve.requests if r[0] != "GET"] == []
