"""Benchmark: provision 20 VMs from one spec with locus.infra.proxmox_vm and with
community.proxmox.proxmox_kvm (+ proxmox_disk for the disk size), against the same Proxmox
VE API double with the same task durations; then run both again (nothing to do).

Prints API requests per VM and wall time for the first run, and how many task results each
tool reports as changed on the second (no-op) run:

    proxmox: locus <r> req/VM <t> s, proxmox_kvm <r2> req/VM <t2> s, rerun changed locus <c> kvm <c2>

Then one backup job covering the same number of VMs, set with locus.infra.proxmox_backup_job (one
task, the VM names from the inventory) and with community.proxmox.proxmox_backup_schedule (which can
only add one VM at a time to an existing job: a loop), both starting from the same job with one VM;
run again, and once more in check mode:

    backup: rerun changed locus <c> proxmox_backup_schedule <c2>

Usage: .venv/bin/python bench/proxmox.py [--vms 20] [--forks 10] [--part all|vm|backup]
Runs on loopback only; needs ansible-playbook from the checkout's .venv (make setup).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from doubles.proxmox_api import GiB, PveDouble  # noqa: E402

TEMPLATE = "debian-12-cloud"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@bench"


def inventory(count):
    return {"all": {"vars": {"ansible_host": "127.0.0.1", "ansible_port": 1}, "hosts": {
        f"bvm{i:02d}": {"vmid": 700 + i, "ip": f"10.20.0.{100 + i}"} for i in range(1, count + 1)}}}


def locus_play():
    return [{"name": "locus.infra.proxmox_vm", "hosts": "all", "gather_facts": False, "tasks": [{
        "name": "VM", "delegate_to": "localhost",
        "locus.infra.proxmox_vm": {
            "name": "{{ inventory_hostname }}", "vmid": "{{ vmid }}", "node": "pve1", "clone": {"source": TEMPLATE},
            "storage": "local-lvm", "cores": 2, "memory": 2048, "disks": [{"size": 16}],
            "nics": [{"bridge": "vmbr0", "vlan": 20}],
            "cloud_init": {"user": "debian", "ssh_keys": [KEY], "ipconfig": ["ip={{ ip }}/24,gw=10.20.0.1"],
                           "nameserver": ["10.20.0.1"], "searchdomain": ["lab.example"]},
            "onboot": True, "agent": True, "tags": ["bench"], "state": "started", "wait_timeout": 300,
        }}]}]


def kvm_play(double):
    token_id, secret = double.token()
    user, token = token_id.split("!")
    auth = {"api_host": "127.0.0.1", "api_port": double.port, "api_user": user, "api_token_id": token,
            "api_token_secret": secret, "validate_certs": False}
    return [{"name": "community.proxmox.proxmox_kvm", "hosts": "all", "gather_facts": False, "tasks": [
        {"name": "clone", "delegate_to": "localhost", "community.proxmox.proxmox_kvm": {
            **auth, "node": "pve1", "clone": TEMPLATE, "name": "{{ inventory_hostname }}", "newid": "{{ vmid }}",
            "full": True, "storage": "local-lvm", "timeout": 300}},
        {"name": "configure", "delegate_to": "localhost", "community.proxmox.proxmox_kvm": {
            **auth, "node": "pve1", "vmid": "{{ vmid }}", "name": "{{ inventory_hostname }}", "update": True,
            "update_unsafe": True, "cores": 2, "memory": 2048, "net": {"net0": "virtio,bridge=vmbr0,tag=20"},
            "ciuser": "debian", "sshkeys": KEY, "ipconfig": {"ipconfig0": "ip={{ ip }}/24,gw=10.20.0.1"},
            "nameservers": ["10.20.0.1"], "searchdomains": ["lab.example"], "onboot": True, "agent": "1",
            "tags": ["bench"], "timeout": 300}},
        {"name": "disk", "delegate_to": "localhost", "community.proxmox.proxmox_disk": {
            **auth, "vmid": "{{ vmid }}", "disk": "scsi0", "size": "16G", "state": "resized", "timeout": 300}},
        {"name": "start", "delegate_to": "localhost", "community.proxmox.proxmox_kvm": {
            **auth, "vmid": "{{ vmid }}", "state": "started", "timeout": 300}},
    ]}]


def run_playbook(workdir, name, play, env, forks, recap=r"bvm\d+", extra=()):
    path = workdir / f"{name}.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    start = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(workdir / "hosts.yml"),
                           "-f", str(forks), str(path), *extra], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=1800, check=False)
    took = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"{name} failed (rc {proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}")
    changed = sum(int(c) for c in re.findall(rf"^{recap}\s+: ok=\d+\s+changed=(\d+)", proc.stdout, re.M))
    return took, changed


def measure(tool, count, forks, workdir):
    double = PveDouble()  # default task durations: clone 1.5 s, start 0.6 s, resize 0.3 s
    double.add_template(9000, TEMPLATE, disks={"scsi0": 4 * GiB})
    with double:
        token_id, secret = double.token()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PROXMOX_", "ANSIBLE_"))}
        env.update({"PROXMOX_HOST": double.host, "PROXMOX_TOKEN_ID": token_id, "PROXMOX_TOKEN_SECRET": secret,
                    "PROXMOX_CA_PATH": double.ca_file, "LOCUS_STATE_DIR": str(workdir / f"state-{tool}"),
                    "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                    "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp"),
                    "ANSIBLE_PYTHON_INTERPRETER": sys.executable})
        play = locus_play() if tool == "locus" else kvm_play(double)
        took = run_playbook(workdir, tool, play, env, forks)[0]
        requests = double.request_count()
        for i in range(1, count + 1):
            vmid = 700 + i
            conf = double.vm_config(vmid)
            ok = (conf and double.vm_status(vmid) == "running" and conf.get("memory") == "2048"
                  and conf.get("scsi0", "").endswith("size=16G") and ",tag=20" in conf.get("net0", ""))
            if not ok:
                sys.exit(f"{tool}: VM {vmid} is not as specified: {conf}")
        macs = {i: double.vm_config(700 + i)["net0"].split(",")[0] for i in range(1, count + 1)}
        double.reset_counters()
        took2, changed2 = run_playbook(workdir, tool, play, env, forks)
        requests2 = double.request_count()
        writes2 = double.request_count(method="PUT") + double.request_count(method="POST")
        mac_churn = sum(1 for i in range(1, count + 1) if double.vm_config(700 + i)["net0"].split(",")[0] != macs[i])
    return {"requests": requests, "time": took, "changed2": changed2, "time2": took2, "requests2": requests2,
            "writes2": writes2, "mac_churn": mac_churn}


def backup_play(tool, double, count):
    names = [f"bvm{i:02d}" for i in range(1, count + 1)]
    if tool == "locus":
        return [{"name": "locus.infra.proxmox_backup_job", "hosts": "localhost", "gather_facts": False, "tasks": [{
            "name": "job", "locus.infra.proxmox_backup_job": {
                "id": "bench", "schedule": "daily", "storage": "local", "vm_names": names}}]}]
    token_id, secret = double.token()
    user, token = token_id.split("!")
    auth = {"api_host": "127.0.0.1", "api_port": double.port, "api_user": user, "api_token_id": token,
            "api_token_secret": secret, "validate_certs": False}
    return [{"name": "community.proxmox.proxmox_backup_schedule", "hosts": "localhost", "gather_facts": False,
             "tasks": [{"name": "job", "loop": names, "community.proxmox.proxmox_backup_schedule": {
                 **auth, "vm_name": "{{ item }}", "backup_id": "bench", "state": "present"}}]}]


def measure_backup(tool, count, workdir):
    double = PveDouble()
    for i in range(1, count + 1):
        double.add_vm(800 + i, f"bvm{i:02d}")
    double.backup_jobs["bench"] = {"id": "bench", "schedule": "daily", "storage": "local", "vmid": "801", "enabled": "1"}
    with double:
        token_id, secret = double.token()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PROXMOX_", "ANSIBLE_"))}
        env.update({"PROXMOX_HOST": double.host, "PROXMOX_TOKEN_ID": token_id, "PROXMOX_TOKEN_SECRET": secret,
                    "PROXMOX_CA_PATH": double.ca_file, "LOCUS_STATE_DIR": str(workdir / f"state-backup-{tool}"),
                    "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp"), "ANSIBLE_PYTHON_INTERPRETER": sys.executable})
        play = backup_play(tool, double, count)
        took = run_playbook(workdir, f"backup-{tool}", play, env, 1, recap="localhost")[0]
        requests = double.request_count()
        wanted = ",".join(str(800 + i) for i in range(1, count + 1))
        if double.backup_jobs["bench"].get("vmid") != wanted:
            sys.exit(f"{tool}: backup job is not as specified: {double.backup_jobs['bench']}")
        double.reset_counters()
        took2, changed2 = run_playbook(workdir, f"backup-{tool}", play, env, 1, recap="localhost")
        requests2 = double.request_count()
        # check mode with one VM to add: does the tool write anyway?
        double.backup_jobs["bench"]["vmid"] = ",".join(str(800 + i) for i in range(1, count))
        double.reset_counters()
        run_playbook(workdir, f"backup-{tool}", play, env, 1, recap="localhost", extra=["--check"])
        check_writes = double.request_count(method="PUT") + double.request_count(method="POST")
    return {"requests": requests, "time": took, "changed2": changed2, "requests2": requests2, "time2": took2,
            "check_writes": check_writes}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--vms", type=int, default=20)
    parser.add_argument("--forks", type=int, default=10)
    parser.add_argument("--part", choices=("all", "vm", "backup"), default="all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="locus-bench-proxmox-") as tmp:
        workdir = Path(tmp)
        (workdir / "hosts.yml").write_text(yaml.safe_dump(inventory(args.vms)))
        if args.part in ("all", "vm"):
            results = {tool: measure(tool, args.vms, args.forks, workdir) for tool in ("locus", "kvm")}
        if args.part in ("all", "backup"):
            backup = {tool: measure_backup(tool, args.vms, workdir) for tool in ("locus", "schedule")}
    if args.part in ("all", "vm"):
        report_vms(results, args)
    if args.part in ("all", "backup"):
        loc, sch = backup["locus"], backup["schedule"]
        print(f"backup job covering {args.vms} VMs (from one VM), same PVE API double for both")
        for name, r in (("locus.infra.proxmox_backup_job", loc), ("community.proxmox.proxmox_backup_schedule", sch)):
            print(f"  {name:42s} first run {r['requests']:4d} requests {r['time']:6.1f} s | no-op rerun {r['requests2']:4d} "
                  f"requests {r['time2']:6.1f} s, {r['changed2']} changed | check mode: {r['check_writes']} writes")
        print(f"  ratios schedule/locus: requests {sch['requests'] / loc['requests']:.2f}x, wall time {sch['time'] / loc['time']:.2f}x, "
              f"rerun requests {sch['requests2'] / loc['requests2']:.2f}x")
        print(f"backup: rerun changed locus {loc['changed2']} proxmox_backup_schedule {sch['changed2']}")


def report_vms(results, args):
    loc, kvm = results["locus"], results["kvm"]
    n = args.vms
    print(f"{n} VMs, forks {args.forks}, same PVE API double and task durations for both")
    for name, r in (("locus.infra.proxmox_vm", loc), ("community.proxmox.proxmox_kvm", kvm)):
        print(f"  {name:30s} first run {r['requests']:5d} requests {r['time']:7.1f} s | "
              f"no-op rerun {r['requests2']:4d} requests ({r['writes2']} writes) {r['time2']:6.1f} s, "
              f"{r['changed2']} changed, {r['mac_churn']} NIC MACs replaced")
    print(f"  ratios kvm/locus: requests {kvm['requests'] / loc['requests']:.2f}x, wall time "
          f"{kvm['time'] / loc['time']:.2f}x, rerun wall time {kvm['time2'] / loc['time2']:.2f}x")
    print(f"proxmox: locus {loc['requests'] / n:.1f} req/VM {loc['time']:.1f} s, "
          f"proxmox_kvm {kvm['requests'] / n:.1f} req/VM {kvm['time']:.1f} s, "
          f"rerun changed locus {loc['changed2']} kvm {kvm['changed2']}")


if __name__ == "__main__":
    main()
