"""ops_probe's network_facts (what lets the operations playbooks skip setup on web hosts) say what
ansible.builtin.setup says about this machine's addresses, and parse the documented `ip` output."""

from __future__ import annotations

import json
import os
import subprocess

from ansible_collections.locus.infra.plugins.module_utils import _ops_probe as op
from locus_testlib import REPO, VENV_BIN

IP_ADDR = json.dumps([
    {"ifindex": 1, "ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8},
                                                 {"family": "inet6", "local": "::1", "prefixlen": 128}]},
    {"ifindex": 2, "ifname": "host0", "addr_info": [{"family": "inet", "local": "10.77.0.21", "prefixlen": 24},
                                                    {"family": "inet", "local": "10.77.0.99", "prefixlen": 24, "secondary": True},
                                                    {"family": "inet6", "local": "fd77::21", "prefixlen": 64},
                                                    {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]},
    {"ifindex": 3, "ifname": "dummy0", "addr_info": []},
])


def test_parsers_read_ip_as_setup_does():
    assert op.parse_ip_addr(IP_ADDR) == (["10.77.0.21", "10.77.0.99"], ["fd77::21", "fe80::1"])
    assert op.parse_route_get("8.8.8.8 via 10.77.0.1 dev host0 src 10.77.0.21 uid 0 \n    cache \n", "8.8.8.8") == {
        "interface": "host0", "address": "10.77.0.21", "gateway": "10.77.0.1"}
    assert op.parse_route_get("RTNETLINK answers: Network is unreachable", "8.8.8.8") == {}
    assert op.parse_route_get("", "8.8.8.8") == {}


def test_the_module_and_setup_agree_on_this_machine(tmp_path):
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "LOCUS_STATE_DIR": str(tmp_path / "state")}

    def adhoc(module, args):
        out = subprocess.run([str(VENV_BIN / "ansible"), "localhost", "-o", "-m", module, "-a", args], env=env, capture_output=True,
                             text=True, check=False, cwd=REPO)
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout.split(" => ", 1)[1])["ansible_facts"]

    ours = adhoc("locus.infra.ops_probe", "network_facts=true cpu_sample=0")
    setup = adhoc("ansible.builtin.setup", "gather_subset=!all,!min,network")
    # setup walks /sys/class/net in directory order: the same addresses, in no particular order
    assert sorted(ours["all_ipv4_addresses"]) == sorted(setup["ansible_all_ipv4_addresses"]) != []
    assert sorted(ours["all_ipv6_addresses"]) == sorted(setup["ansible_all_ipv6_addresses"])
    for family in ("default_ipv4", "default_ipv6"):
        assert ours[family] == {k: v for k, v in setup[f"ansible_{family}"].items() if k in ("interface", "address", "gateway")}, family
