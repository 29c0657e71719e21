"""locus.infra.proxmox_node_info: usage ratios for the guard, from the PVE API double."""

from __future__ import annotations

import pytest
from conftest import GiB


def test_ratios_match_the_cluster_state(pve, run_module):
    pve.add_vm(400, "busy", config={"memory": "16384"}, status="running")
    pve.add_storage("pve1", "ceph", "rbd", "images", total=1000 * GiB, used=960 * GiB, shared=True)
    pve.add_storage("pve2", "ceph", "rbd", "images", total=1000 * GiB, used=960 * GiB, shared=True)
    result = run_module("proxmox_node_info", threshold=0.95)
    assert result["rc"] == 0 and result["changed"] is False
    nodes = result["nodes"]
    assert sorted(nodes) == ["pve1", "pve2"]
    pve1 = nodes["pve1"]
    assert pve1["memory_ratio"] == pytest.approx((6 + 16) / 64, abs=1e-4)  # node base + the running VM
    assert pve1["disk_ratio"] == pytest.approx(12 / 100, abs=1e-4)
    assert 0 < pve1["cpu_ratio"] < 1
    assert pve1["storage"]["ceph"]["ratio"] == 0.96 and pve1["storage"]["ceph"]["shared"] is True
    assert pve1["storage"]["local"]["ratio"] == 0.2
    assert pve1["max_ratio"] == 0.96 and pve1["max_ratio_of"] == "storage:ceph"
    assert pve1["over_threshold"] == ["storage:ceph"]
    assert pve1["vms"] == {"running": 1, "stopped": 0, "templates": 1}
    assert result["over_threshold"] == ["pve1", "pve2"]
    assert result["api_requests"] == 1


def test_offline_nodes_are_reported_not_dropped(pve, run_module):
    pve.set_node_online("pve2", False)
    result = run_module("proxmox_node_info", include_status=True)
    assert result["offline"] == ["pve2"]
    assert result["nodes"]["pve2"]["online"] is False and result["nodes"]["pve2"]["memory_ratio"] is None
    pve1 = result["nodes"]["pve1"]
    assert pve1["loadavg"] == [0.42, 0.37, 0.30] and pve1["swap_ratio"] == 0.0
    assert pve1["pveversion"].startswith(f"pve-manager/{pve.version}/")
    assert result["api_requests"] == 2  # resources + status of the one online node


def test_unknown_node_and_bad_threshold_are_errors(pve, run_module):
    missing = run_module("proxmox_node_info", nodes=["pve1", "pve9"])
    assert missing["rc"] == 1 and "node(s) pve9 not in the cluster (known: pve1, pve2)" in missing["msg"]
    bad = run_module("proxmox_node_info", threshold=95)
    assert bad["rc"] == 1 and "threshold: 95.0 is not a ratio in (0, 1]" in bad["msg"]
