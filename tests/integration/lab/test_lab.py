"""The lab's life cycle on real systemd-nspawn hosts: up, reachable, idempotent, down.

The tests run in file order on one lab (conftest.py); the last one takes it down.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from labkit import BRIDGE, GW4, GW6, HOSTS, NET4, OTHER_BRIDGE, cmdline, recap, write_inventory

pytestmark = pytest.mark.slow


def ip_json(*args):
    proc = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None


def iptables(*args):
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, check=False)


def test_hosts_boot_under_nspawn_without_machined(lab):
    for host in HOSTS:
        argv = cmdline(lab.pid(host))
        assert argv and Path(argv[0].decode()).name == "systemd-nspawn", f"{host}: PID file names {argv}"
        args = {a.decode() for a in argv}
        assert {"--boot", "--register=no", "--keep-unit", f"--network-bridge={BRIDGE}", f"--machine={host}"} <= args


def cgroup_paths(pid):
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return {line.split(":", 2)[1] or "unified": line.split(":", 2)[2] for line in lines}


def test_each_container_has_a_cgroup_tree_of_its_own(lab):
    # Without systemd on the machine, nspawn --keep-unit builds the container's cgroups inside
    # its own; containers started from one cgroup would tear down each other's units.
    seen = set()
    for host in HOSTS:
        nspawn = cgroup_paths(lab.pid(host))
        wanted = f"/locus-lab/{BRIDGE}/{host}/supervisor"
        assert nspawn["name=systemd"].endswith(wanted) and nspawn["unified"].endswith(wanted), nspawn
        init = cgroup_paths(int(Path(f"/proc/{lab.pid(host)}/task/{lab.pid(host)}/children").read_text().split()[0]))
        assert init["name=systemd"].endswith(f"/locus-lab/{BRIDGE}/{host}/payload/init.scope"), init
        seen.add(init["name=systemd"])
    assert len(seen) == len(HOSTS)


def test_hosts_run_systemd_with_their_identity_and_addresses(lab):
    machine_ids = set()
    for host, (v4, v6) in HOSTS.items():
        out = lab.ssh(host, "systemctl is-system-running; hostname; cat /etc/machine-id; ip -j addr show dev host0")
        state, name, machine_id, addrs = out.stdout.split("\n", 3)
        assert state == "running", f"{host}: {out.stdout}"
        assert name == host
        machine_ids.add(machine_id)
        local = {a["local"] for a in json.loads(addrs)[0]["addr_info"]}
        assert {v4, v6} <= local, f"{host}: {local}"
    assert len(machine_ids) == len(HOSTS)


def test_each_host_has_its_own_ssh_host_key(lab):
    keys = {lab.ssh(host, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1] for host in HOSTS}
    assert len(keys) == len(HOSTS)


def test_hosts_reach_each_other_over_ipv4_and_ipv6(lab):
    v4, v6 = HOSTS["labtest2"]
    out = lab.ssh("labtest1", f"ping -c1 -W2 {v4} && ping -c1 -W2 {v6} && getent hosts labtest2")
    assert v4 in out.stdout


def test_bridge_carries_the_gateway_addresses(lab):
    (bridge,) = ip_json("addr", "show", "dev", BRIDGE)
    assert {GW4, GW6} <= {a["local"] for a in bridge["addr_info"]}
    assert "UP" in bridge["flags"]
    ports = ip_json("link", "show", "master", BRIDGE)
    assert {p["ifname"] for p in ports} == {f"vb-{host}" for host in HOSTS}


def test_hosts_install_packages_through_the_lab_apt_proxy(lab):
    out = lab.ssh("labtest1", "apt-config dump Acquire::http::Proxy; apt-get -q update 2>&1; echo rc=$?")
    assert f'"http://{GW4}:3142"' in out.stdout
    assert "rc=0" in out.stdout and "Err:" not in out.stdout, out.stdout
    log = (lab.lab_dir / "apt-cacher-ng" / "apt-cacher.log").read_text()
    assert f"|{HOSTS['labtest1'][0]}|" in log and "InRelease" in log


def test_nat_forwards_only_dns_and_mirror_traffic(lab):
    chain = iptables("-S", f"LAB-{BRIDGE}").stdout.splitlines()
    rules = [r for r in chain if r.startswith("-A ")]
    assert rules[-1] == f"-A LAB-{BRIDGE} -j REJECT --reject-with icmp-admin-prohibited"
    accepted = [r for r in rules[:-1] if "RELATED,ESTABLISHED" not in r]
    assert accepted and all(("--dport 53" in r) or ("--dports 80,443" in r) for r in accepted), accepted
    assert f"-A POSTROUTING -s {NET4} ! -o {BRIDGE} -m comment --comment locus-lab -j MASQUERADE" in (
        iptables("-t", "nat", "-S", "POSTROUTING").stdout.splitlines()
    )
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    out = lab.ssh("labtest2", "apt-get -q -o Acquire::http::Proxy=DIRECT update 2>&1; echo rc=$?")
    assert "rc=0" in out.stdout and "Err:" not in out.stdout, out.stdout


def test_second_up_changes_nothing_and_leaves_running_hosts_alone(lab):
    pids = {host: lab.pid(host) for host in HOSTS}
    lab.ssh("labtest1", "echo kept > /root/marker")
    stats = recap(lab.playbook("lab_up.yml").stdout)
    assert set(stats) == set(HOSTS)
    assert all(s["changed"] == 0 and s["failed"] == 0 for s in stats.values()), stats
    assert {host: lab.pid(host) for host in HOSTS} == pids
    assert lab.ssh("labtest1", "cat /root/marker").stdout.strip() == "kept"


def test_address_outside_the_lab_network_is_refused(lab, tmp_path):
    inventory = write_inventory(tmp_path / "inv", lab.lab_dir, tmp_path / "cache", {"stray": ("10.99.0.5", None), **HOSTS})
    proc = lab.playbook("lab_up.yml", check=False, inventory=inventory)
    assert proc.returncode != 0
    assert "inventory host 'stray'" in proc.stdout and "ansible_host=10.99.0.5" in proc.stdout
    assert NET4 in proc.stdout
    assert not (lab.lab_dir / "hosts" / "stray").exists()


def test_shared_addresses_are_refused(lab, tmp_path):
    inventory = write_inventory(tmp_path / "inv", lab.lab_dir, tmp_path / "cache", {**HOSTS, "twin": HOSTS["labtest2"]})
    proc = lab.playbook("lab_up.yml", check=False, inventory=inventory)
    assert proc.returncode != 0
    v4, v6 = HOSTS["labtest2"]
    assert f"{v4} is used by labtest2 and twin" in proc.stdout
    assert f"{v6} is used by labtest2 and twin" in proc.stdout
    assert not (lab.lab_dir / "hosts" / "twin").exists()


def test_a_lab_that_is_up_is_not_moved_to_another_network(lab, tmp_path):
    inventory = write_inventory(tmp_path / "inv", lab.lab_dir, tmp_path / "cache", HOSTS, bridge=OTHER_BRIDGE)
    proc = lab.playbook("lab_up.yml", check=False, inventory=inventory)
    assert proc.returncode != 0
    assert f"the lab is up on {BRIDGE}" in proc.stdout and "run playbooks/lab_down.yml first" in proc.stdout
    assert ip_json("link", "show", "dev", OTHER_BRIDGE) is None


def test_down_stops_everything_and_is_safe_to_repeat(lab, tmp_path):
    pids = [lab.pid(host) for host in HOSTS]
    roots = [str(lab.lab_dir / "hosts" / host / "root") for host in HOSTS]
    # A HOME other than root's (a CI user, HOME=/tmp/x): the parallel shutdown's async jobs and their
    # async_status must still meet (they once did not: the job wrote to $HOME, async_status read ~root).
    home = tmp_path / "home"
    home.mkdir()
    down = lab.playbook("lab_down.yml", env={"HOME": str(home)})
    assert not (home / ".ansible_async").exists()
    assert not (lab.lab_dir / "async").exists()  # the job files are removed once the hosts are down
    for output in (lab.up_output, down.stdout + down.stderr):  # e.g. ansible.posix.mount's, on ansible-core 2.19
        assert "DEPRECATION" not in output, output
    for pid in pids:
        assert not cmdline(pid), f"PID {pid} still runs"
    assert ip_json("link", "show", "dev", BRIDGE) is None
    assert iptables("-S", f"LAB-{BRIDGE}").returncode != 0
    assert f"-s {NET4} " not in iptables("-t", "nat", "-S", "POSTROUTING").stdout
    assert f"LAB-{BRIDGE}" not in iptables("-S", "FORWARD").stdout
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == lab.ip_forward_before
    mounts = Path("/proc/mounts").read_text()
    assert not any(root in mounts for root in roots)
    assert not list((lab.lab_dir / "hosts").iterdir())
    assert not (lab.lab_dir / "apt-cacher-ng" / "pid").exists()
    for hierarchy in ("systemd", "unified"):
        assert not list(Path("/sys/fs/cgroup", hierarchy).glob(f"**/locus-lab/{BRIDGE}")), hierarchy
    again = recap(lab.playbook("lab_down.yml").stdout)
    assert again["localhost"]["changed"] == 0
