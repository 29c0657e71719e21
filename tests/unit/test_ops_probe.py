"""ops_probe's decisions (_ops_probe.probe): what it runs for which option, and what a part that cannot be
read becomes. The tools answer with their documented output; files and disks are this machine's own."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.locus.infra.plugins.module_utils import _ops_probe as op

OPTIONS = {"units": [], "mounts": ["/"], "cpu_sample": 0.0, "bird": False, "journal_since": None,
           "journal_own_sessions": True, "k3s_command": [], "ollama_url": None, "timeout": 10, "network_facts": False}
IP_ADDR = json.dumps([{"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1"}]},
                      {"ifname": "host0", "addr_info": [{"family": "inet", "local": "10.77.0.21"}, {"family": "inet6", "local": "fd77::21"}]}])
NODES = json.dumps({"kind": "NodeList", "items": [{"metadata": {"name": "k1", "labels": {"node-role.kubernetes.io/control-plane": "true"}},
                                                   "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                                              "nodeInfo": {"kubeletVersion": "v1.30.4+k3s1"}}}]})


class Host:
    """Answers each command from ``answers`` (first word(s) -> (rc, out, err)), records what ran."""

    def __init__(self, answers):
        self.answers = answers
        self.ran = []

    def run(self, argv):
        self.ran.append(argv)
        for prefix, answer in self.answers.items():
            if tuple(argv[:len(prefix)]) == prefix:
                return answer
        return 1, "", f"{argv[0]}: not found"


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def test_only_what_the_options_ask_for_is_read():
    host = Host({("systemctl", "is-system-running"): (0, "running\n", ""), ("systemctl", "--failed"): (0, "", "")})
    result = op.probe(OPTIONS, host.run, read, fetch=None, login=None)
    assert [argv[:2] for argv in host.ran] == [["systemctl", "is-system-running"], ["systemctl", "--failed"]]
    assert result["system_state"] == "running" and result["failed_units"] == [] and result["units"] == []
    assert result["bgp"] is result["journal"] is result["k3s_nodes"] is result["ollama_models"] is result["cpu_percent"] is None
    assert result["memory"]["total_bytes"] > 0 and result["disks"][0]["mount"] == "/" and result["errors"] == []
    assert "ansible_facts" not in result and result["changed"] is False


def test_every_option_reads_its_part_and_the_cpu_sample_counts_the_reads():
    host = Host({("systemctl", "is-system-running"): (1, "degraded\n", ""),
                 ("systemctl", "--failed"): (0, "bird.service loaded failed failed BIRD\n", ""),
                 ("systemctl", "show"): (0, "Id=ssh.service\nLoadState=loaded\nActiveState=active\nSubState=running\n", ""),
                 ("birdc",): (0, "BIRD 2.0.12 ready.\n", ""), ("journalctl",): (0, "", ""),
                 ("k3s", "kubectl"): (0, NODES, ""), ("ip", "-j"): (0, IP_ADDR, ""),
                 ("ip", "-4"): (0, "8.8.8.8 via 10.77.0.1 dev host0 src 10.77.0.21 uid 0\n", ""), ("ip", "-6"): (1, "", "unreachable")})
    slept, now, reads = [], [100.0], []

    def recording_read(path):
        reads.append(path)
        return read(path)

    def clock():
        now[0] += 0.05  # each look at the clock: 50 ms of reading
        return now[0]

    options = {**OPTIONS, "units": ["ssh", "nginx"], "cpu_sample": 0.2, "bird": True, "journal_since": 1700000000,
               "journal_own_sessions": False, "k3s_command": ["k3s", "kubectl"], "ollama_url": "http://127.0.0.1:11434/",
               "network_facts": True}
    result = op.probe(options, host.run, recording_read, fetch=lambda url, timeout: json.dumps({"models": [{"name": f"{url} {timeout}"}]}),
                      login=None, sleep=slept.append, clock=clock)
    assert result["system_state"] == "degraded" and result["failed_units"] == ["bird.service"]
    assert result["units"] == [{"name": "ssh", "id": "ssh.service", "load": "loaded", "active": "active", "sub": "running"},
                               {"name": "nginx", "id": "", "load": "unknown", "active": "unknown", "sub": ""}]
    assert result["bgp"] == [] and result["journal"]["count"] == 0
    assert ["journalctl", "--no-pager", "-q", "-o", "json", "-p", "err", "-n", "1000", "--since=@1700000000"] in host.ran
    assert result["k3s_nodes"] == [{"name": "k1", "ready": True, "roles": ["control-plane"], "version": "v1.30.4+k3s1"}]
    assert ["k3s", "kubectl", "get", "nodes", "-o", "json", "--request-timeout=10s"] in host.ran
    assert result["ollama_models"][0]["name"] == "http://127.0.0.1:11434/api/tags 10"
    assert slept == [pytest.approx(0.2 - 0.05)]  # the sample minus the one clock step the reads took
    assert reads == ["/proc/stat", "/proc/meminfo", "/proc/stat"] and "cpu_percent" in result
    assert result["ansible_facts"] == {"all_ipv4_addresses": ["10.77.0.21"], "all_ipv6_addresses": ["fd77::21"],
                                       "default_ipv4": {"interface": "host0", "address": "10.77.0.21", "gateway": "10.77.0.1"},
                                       "default_ipv6": {}}
    assert result["errors"] == []


def test_a_part_that_cannot_be_read_is_null_and_named_in_errors():
    host = Host({("systemctl", "is-system-running"): (0, "", ""), ("k3s",): (0, "not json", ""), ("journalctl",): (0, "", "")})

    def fetch(url, timeout):
        raise ConnectionRefusedError(111, "Connection refused")

    def statvfs(mount):
        return os.statvfs(mount) if mount == "/" else os.statvfs("/no/such/mount")

    options = {**OPTIONS, "mounts": ["/", "/no/such/mount"], "bird": True, "journal_since": 0, "k3s_command": ["k3s"],
               "ollama_url": "http://127.0.0.1:1", "network_facts": True}
    logins = []
    result = op.probe(options, host.run, read, fetch=fetch, login=lambda: logins.append(1), statvfs=statvfs)
    assert result["system_state"] == "unknown" and [d["mount"] for d in result["disks"]] == ["/"]
    assert result["bgp"] is None and result["k3s_nodes"] is None and result["ollama_models"] is None
    assert "ansible_facts" not in result and logins == [1]  # journal_own_sessions defaults to true: asked who this login is
    assert ["journalctl", "--no-pager", "-q", "-o", "json", "-p", "err", "-n", "1000", "-b"] in host.ran
    assert result["errors"] == [
        "failed units: systemctl --failed --plain --no-legend exited 1: systemctl: not found",
        "disk /no/such/mount: No such file or directory",
        "BGP: birdc show protocols all exited 1: birdc: not found",
        "K3s nodes: not a NodeList: Expecting value: line 1 column 1 (char 0)",
        "Ollama models: GET http://127.0.0.1:1/api/tags: ConnectionRefusedError: [Errno 111] Connection refused",
        "network facts: ip -j addr show could not be read (setup gathers them instead)"]


def test_a_missing_meminfo_is_a_null_memory_and_an_error():
    def read_without_meminfo(path):
        if path == "/proc/meminfo":
            raise FileNotFoundError(2, "No such file or directory", path)
        return read(path)

    host = Host({})
    result = op.probe(OPTIONS, host.run, read_without_meminfo, fetch=None, login=None)
    assert result["memory"] is None
    assert "memory: [Errno 2] No such file or directory: '/proc/meminfo'" in result["errors"]
