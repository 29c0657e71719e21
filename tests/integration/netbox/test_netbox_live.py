"""locus.infra.netbox against a real NetBox 4.7 (seeded by tests/netbox/seed.py)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import netboxctl  # tests/netbox, put on sys.path by conftest.py
import pytest
import seed
import yaml

REPO = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden" / "netbox_inventory.json"
FUNCTIONAL = set(seed.ROLE_GROUPS.values())
TAGS_SPLIT = re.compile(r"locus\.infra\.netbox: tags read from extras/tagged-objects \((\d+) assignments\)")
TAGS_INLINE = re.compile(r"locus\.infra\.netbox: tags read inline: (extras/tagged-objects|extras/tags) (answered HTTP "
                         r"(\d+)|holds (\d+) assignments for (\d+) objects read|shows (\d+) of (\d+) tag assignments)")


def tags_path(run):
    """How the run read tags: ("split", assignments) or ("inline", reason), from its -v output."""
    out = run.stdout + run.stderr
    split, inline = TAGS_SPLIT.findall(out), TAGS_INLINE.findall(out)
    assert len(split) + len(inline) == 1, out
    if split:
        return "split", int(split[0])
    return "inline", inline[0]


def normalise(run, exclude_hosts):
    """--list output without the lab hosts (their data belongs to inventory/lab) and without ids."""
    exclude = set(exclude_hosts)
    hostvars = {h: {k: v for k, v in hv.items() if k != "netbox_id"}
                for h, hv in sorted(run.hostvars.items()) if h not in exclude}
    groups = {}
    for group, hosts in sorted(run.groups().items()):
        kept = [h for h in hosts if h not in exclude]
        if group in ("all", "ungrouped"):
            continue
        if kept or group in FUNCTIONAL:
            groups[group] = kept
    return {"hostvars": hostvars, "groups": groups}


def test_list_matches_golden_file(netbox, default_inventory):
    got = normalise(default_inventory, netbox.lab_hosts)
    if os.environ.get("LOCUS_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert got == json.loads(GOLDEN.read_text())


def test_ids_types_and_per_endpoint_statistics_at_v(netbox, default_inventory):
    api = netbox.api()
    for host, hv in default_inventory.hostvars.items():
        endpoint = api.dcim.devices if hv["netbox_type"] == "device" else api.virtualization.virtual_machines
        assert endpoint.get(hv["netbox_id"]).name == host
    # -v prints requests, objects and seconds per endpoint
    vms = len([h for h in default_inventory.hostvars.values() if h["netbox_type"] == "virtual_machine"])
    devices = len(default_inventory.hostvars) - vms
    assert re.search(rf"virtualization/virtual-machines: \d+ requests \(0 retries\), {vms} objects, .* s wall",
                     default_inventory.stdout + default_inventory.stderr)
    assert re.search(rf"dcim/devices: \d+ requests \(0 retries\), {devices} objects",
                     default_inventory.stdout + default_inventory.stderr)
    # The admin token may read tag assignments: tags come from one list of them, not from every object.
    path, assignments = tags_path(default_inventory)
    tagged = sum(len(hv["netbox_tags"]) for hv in default_inventory.hostvars.values())
    assert path == "split" and assignments >= tagged > 0
    assert re.search(rf"extras/tagged-objects: \d+ requests \(0 retries\), {assignments} objects",
                     default_inventory.stdout + default_inventory.stderr)


def test_v2_bearer_token_gives_the_same_inventory(netbox, inventories, default_inventory):
    assert netbox.token_v2.startswith("nbt_")
    result = inventories["v2"]
    assert result.rc == 0, result.stderr
    assert result.data == default_inventory.data


@pytest.mark.parametrize(("name", "keep"), [
    ("site+status", lambda hv: hv["site"] in ("dc1", "edge1") and hv["status"] == "active"),
    ("role+tenant, VMs only",
     lambda hv: hv["netbox_type"] == "virtual_machine" and hv["role"] in ("router", "web") and hv["tenant"] == "ops"),
    ("tag, devices only", lambda hv: hv["netbox_type"] == "device" and "monitored" in hv["netbox_tags"]),
])
def test_filters_select_on_the_server(inventories, default_inventory, name, keep):
    expected = {h for h, hv in default_inventory.hostvars.items() if keep(hv)}
    assert expected, "the seed must give each filter something to find"
    assert expected != set(default_inventory.hostvars)
    result = inventories[f"filter {name}"]
    assert result.rc == 0, result.stderr
    assert set(result.hostvars) == expected
    for host in expected:
        assert result.hostvars[host] == default_inventory.hostvars[host]


def test_filters_read_tags_both_ways_with_the_same_result(inventories):
    """A filter that selects a small part of NetBox reads tags inline, a broad one from extras/tagged-objects;
    test_filters_select_on_the_server proves both equal the unfiltered inventory."""
    paths = {name: tags_path(run) for name, run in inventories.items() if name.startswith("filter ")}
    assert {path for path, _detail in paths.values()} == {"split", "inline"}, paths
    for path, detail in paths.values():
        if path == "inline":
            _endpoint, _reason, _status, assignments, objects, _shown, _total = detail
            assert int(assignments) > 2 * int(objects)


def test_keyed_groups_compose_and_groups(inventories, default_inventory):
    result = inventories["constructed"]
    assert result.rc == 0, result.stderr
    groups = result.groups()
    base = default_inventory.hostvars
    for tenant in {hv["tenant"] for hv in base.values() if hv["tenant"]}:
        assert groups[f"tenant_{tenant}"] == sorted(h for h, hv in base.items() if hv["tenant"] == tenant)
    templates = {hv["locus_vm"]["template"] for hv in base.values() if "locus_vm" in hv and hv["locus_vm"]["template"]}
    assert len(templates) >= 2
    for template in templates:
        assert groups[f"template_{template.replace('-', '_')}"] == sorted(
            h for h, hv in base.items() if "locus_vm" in hv and hv["locus_vm"]["template"] == template)
    big = sorted(h for h, hv in base.items() if "locus_vm" in hv and (hv["locus_vm"]["memory"] or 0) >= 8192)
    assert big and groups["big_vms"] == big
    for hv in result.hostvars.values():
        assert hv["ansible_port"] == (2222 if "gpu" in hv["netbox_tags"] else 22)
        memory = hv.get("locus_vm", {}).get("memory")
        assert hv["ram_gib"] == (memory // 1024 if memory else 0)


def test_inventory_cache_is_used_on_the_second_run(netbox, run_inventory, tmp_path):
    config = {"cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(tmp_path / "cache"),
              "cache_timeout": 600}
    first = run_inventory(config, "-v", name="cached")
    assert first.rc == 0, first.stderr
    assert "from the inventory cache" not in first.stdout + first.stderr
    assert list((tmp_path / "cache").iterdir()), "the first run writes the cache"
    # A wrong token cannot be the source of the second result: it comes from the cache.
    second = run_inventory(config, "-v", token="0" * 40, name="cached")
    assert second.rc == 0, second.stderr
    assert "hosts from the inventory cache" in second.stdout + second.stderr
    assert second.data == first.data
    # --flush-cache goes to NetBox again, and the wrong token fails there.
    third = run_inventory(config, "--flush-cache", token="0" * 40, name="cached")
    assert third.rc != 0
    assert "HTTP 403" in third.stderr
    # Changed options are not answered from a cache written with other options.
    narrowed = run_inventory({**config, "devices": False}, token=netbox.token_v1, name="cached")
    assert narrowed.rc == 0, narrowed.stderr
    assert {hv["netbox_type"] for hv in narrowed.hostvars.values()} == {"virtual_machine"}


def test_wrong_token_fails_naming_endpoint_and_status(inventories):
    result = inventories["wrong token"]
    assert result.rc != 0
    assert result.data is None and "_meta" not in result.stdout
    assert re.search(r"NetBox at http://127\.0\.0\.1:\d+ denied access to (dcim/devices|virtualization/virtual-"
                     r"machines) \(HTTP 403: Invalid v1 token\)", result.stderr), result.stderr


def test_without_unparsed_is_failed_ansible_only_warns_but_names_the_endpoint(inventories):
    """Why ansible.cfg sets [inventory] unparsed_is_failed: Ansible's default goes on without hosts."""
    result = inventories["wrong token, unparsed_is_failed off"]
    assert result.rc == 0
    assert result.hostvars == {}
    assert "denied access to" in result.stderr and "HTTP 403" in result.stderr


def test_token_without_permission_on_one_endpoint_fails(netbox, run_inventory, default_inventory):
    api = netbox.api()
    user = api.users.users.create(username="vm-viewer", password="A-long-test-password-4711")
    perm = api.users.permissions.create(name="view virtual machines only", actions=["view"], users=[user.id],
                                        object_types=["virtualization.virtualmachine"])
    token = api.users.tokens.create(user=user.id, version=1, write_enabled=False).token
    try:
        denied = run_inventory({}, token=token)
        assert denied.rc != 0
        assert "denied access to dcim/devices (HTTP 403" in denied.stderr, denied.stderr
        assert "_meta" not in denied.stdout
        # The same token reads the endpoint it may read: the failure above is about dcim/devices only.
        # It may not read tag assignments either, so tags come inline - with the same result.
        vms_only = run_inventory({"devices": False}, "-v", token=token)
        assert vms_only.rc == 0, vms_only.stderr
        assert tags_path(vms_only)[1][:3] == ("extras/tagged-objects", "answered HTTP 403", "403")
        vms = {h: hv for h, hv in default_inventory.hostvars.items() if hv["netbox_type"] == "virtual_machine"}
        assert vms and vms_only.hostvars == vms
    finally:
        perm.delete()
        user.delete()


def test_constrained_view_of_tag_assignments_is_detected_and_tags_come_inline(
        netbox, run_inventory, default_inventory):
    """A token that sees only some tag assignments must not lose tags: the totals of extras/tags give it away."""
    api = netbox.api()
    slug = sorted({t for hv in default_inventory.hostvars.values() for t in hv["netbox_tags"]})[0]
    user = api.users.users.create(username="some-tags-viewer", password="A-long-test-password-4711")
    perms = []
    try:
        perms.append(api.users.permissions.create(
            name="view inventory objects and tags", actions=["view"], users=[user.id],
            object_types=["virtualization.virtualmachine", "dcim.device", "extras.tag"]))
        perms.append(api.users.permissions.create(
            name=f"view the assignments of tag {slug} only", actions=["view"], users=[user.id],
            object_types=["extras.taggeditem"], constraints={"tag__slug": slug}))
        token = api.users.tokens.create(user=user.id, version=1, write_enabled=False).token
        result = run_inventory({}, "-v", token=token)
        assert result.rc == 0, result.stderr
        path, detail = tags_path(result)
        assert path == "inline" and detail[0] == "extras/tagged-objects", detail
        shown, total = int(detail[5]), int(detail[6])
        assert 0 < shown < total
        assert result.data == default_inventory.data
    finally:
        for perm in perms:
            perm.delete()
        user.delete()


def test_malformed_objects_warn_and_give_a_predictable_result(netbox, run_inventory):
    api = netbox.api()
    site = api.dcim.sites.get(slug="edge1")
    ctype = api.virtualization.cluster_types.get(slug="proxmox")
    original = api.virtualization.virtual_machines.get(name="rtr-dc1")
    device = api.dcim.devices.get(name="pve1")
    created = []
    try:
        cluster = api.virtualization.clusters.create(name="pve-edge1", type=ctype.id, scope_type="dcim.site",
                                                     scope_id=site.id)
        created.append(cluster)
        created.append(api.virtualization.virtual_machines.create(name="noip-vm", site=site.id, status="planned"))
        created.append(api.virtualization.virtual_machines.create(name="pve1", site=site.id))
        created.append(api.virtualization.virtual_machines.create(name="rtr-dc1", cluster=cluster.id))
        unnamed = api.dcim.devices.create(device_type=device.device_type.id, role=device.role.id, site=site.id)
        created.append(unnamed)
        badctx = api.virtualization.virtual_machines.create(
            name="badctx-vm", site=site.id,
            local_context_data={"bad-key": 1, "tags": ["x"], "site": "evil", "ok_key": {"a": 1},
                                "locus_vm": {"network": "eth0", "vcpus": 3, "colour": "red"}})
        created.append(badctx)
        result = run_inventory({})
        assert result.rc == 0, result.stderr
        hv = result.hostvars
        err = " ".join(result.stderr.split())
        # no primary IP: present, without ansible_host
        assert "noip-vm" in hv and "ansible_host" not in hv["noip-vm"]
        assert f"virtual machine 'noip-vm' (id {created[1].id}) has no primary IP: ansible_host not set" in err
        # duplicate names: devices before VMs, lower id first; the others are skipped
        assert hv["pve1"]["netbox_type"] == "device" and hv["pve1"]["netbox_id"] == device.id
        assert f"virtual machine 'pve1' (id {created[2].id}): duplicate name, device 'pve1' (id {device.id})" in err
        assert hv["rtr-dc1"]["netbox_id"] == original.id
        assert f"virtual machine 'rtr-dc1' (id {created[3].id}): duplicate name" in err
        assert f"device None (id {unnamed.id}) has no name: skipped" in err
        # bad config context: bad keys dropped, reserved keys dropped, the rest kept
        b = hv["badctx-vm"]
        assert b["ok_key"] == {"a": 1} and "bad-key" not in b and b["site"] == "edge1"
        assert b["netbox_tags"] == [] and "tags" not in b
        assert "config context key 'bad-key' is not a valid variable name: dropped" in err
        assert "config context key 'site' is reserved by the inventory: dropped" in err
        assert "config context key 'tags' is reserved by the inventory: dropped" in err
        assert b["locus_vm"]["vcpus"] == 3
        assert b["locus_vm"]["network"] == [{
            "name": "net0", "bridge": "vmbr0", "vlan": None, "model": "virtio", "firewall": False, "ipv4": None,
            "gateway4": None, "ipv6": None, "gateway6": None}]
        assert "locus_vm.network is not a non-empty list of mappings: default net0 used" in err
        assert "config context locus_vm has unknown keys ['colour']: ignored" in err
    finally:
        for obj in reversed(created):
            obj.delete()


def test_seeded_netbox_equals_the_static_lab_inventory(netbox, default_inventory):
    """For the lab hosts, inventory/lab and NetBox give the same groups and vars."""
    static = seed.ansible_inventory_list(REPO / "inventory" / "lab")
    static_groups = seed.group_members(static)
    lab = sorted(static["_meta"]["hostvars"])
    assert lab and lab == sorted(netbox.lab_hosts)
    nb_groups = default_inventory.groups()
    compared_vars = 0
    for host in lab:
        want = static["_meta"]["hostvars"][host]
        got = default_inventory.hostvars[host]
        assert {k: got.get(k, "<missing>") for k in want} == want, host
        compared_vars += len(want)
    assert compared_vars > len(lab), "the lab hosts carry vars besides ansible_host"
    model_groups = [g for g in static_groups if seed.is_model_group(g)]
    assert any(g.startswith("site_") for g in model_groups)
    for group in model_groups:
        assert sorted(static_groups[group] & set(lab)) == sorted(set(nb_groups.get(group, [])) & set(lab)), group
    # and no data-model group of NetBox holds a lab host the static inventory does not put there
    for group, hosts in nb_groups.items():
        if group in static_groups and seed.is_model_group(group):
            assert set(hosts) & set(lab) <= static_groups[group], group


def test_a_second_start_is_refused(netbox, tmp_path):
    """The start guard: same instance, same port from elsewhere, and a start already in progress."""
    state = Path(netbox.env["state_dir"])
    port = str(netbox.env["port"])
    with pytest.raises(netboxctl.NetBoxCtlError, match=rf"already running from {re.escape(str(state))}"):
        netboxctl.up(port=port, state_dir=state)
    assert netboxctl.up(port=port, state_dir=state, reuse=True)["url"] == netbox.url
    with pytest.raises(netboxctl.NetBoxCtlError, match=r"port\(s\) \[\d+, \d+, \d+\] on 127\.0\.0\.1 are in use"):
        netboxctl.up(port=port, state_dir=tmp_path / "other")
    assert not (tmp_path / "other").exists()
    with netboxctl.flock(netboxctl.lock_path(18090), blocking=False, what="test"), pytest.raises(
            netboxctl.NetBoxCtlError, match="already in progress"):
        netboxctl.up(port="18090", state_dir=tmp_path / "third")
    # and "auto" never picks a base that is in use
    assert netboxctl.pick_port("auto") != netbox.env["port"]


@pytest.mark.netbox_stops(order=0)
def test_pages_cut_short_by_max_page_size_are_read_on(netbox, run_inventory, default_inventory):
    """NetBox caps ``limit`` at MAX_PAGE_SIZE without saying so; the plugin reads on from where a page ended."""
    conf = Path(netbox.env["state_dir"]) / "instance" / "conf" / "configuration.py"
    original = conf.read_text()
    assert "\nMAX_PAGE_SIZE = 1000\n" in original
    config = yaml.safe_load((REPO / "inventory" / "netbox.yml").read_text())
    config.pop("plugin")
    try:
        conf.write_text(original.replace("\nMAX_PAGE_SIZE = 1000\n", "\nMAX_PAGE_SIZE = 3\n"))
        netboxctl.restart_web(netbox.env, workers=1, threads=4)
        capped = run_inventory(config, "-v")
    finally:
        conf.write_text(original)
        netboxctl.restart_web(netbox.env, workers=1, threads=4)
    assert capped.rc == 0, capped.stderr
    assert capped.data == default_inventory.data
    out = capped.stdout + capped.stderr
    for endpoint, objects in (("virtualization/virtual-machines", sum(
            hv["netbox_type"] == "virtual_machine" for hv in capped.hostvars.values())), ("dcim/devices", None)):
        requests, got = map(int, re.search(rf"{endpoint}: (\d+) requests \(0 retries\), (\d+) objects", out).groups())
        assert objects is None or got == objects
        assert requests >= 1 + -(-got // 3), (endpoint, requests, got)  # the count probe + pages of at most 3


@pytest.mark.netbox_stops(order=1)
def test_server_errors_fail_after_retries(netbox, run_inventory):
    """PostgreSQL down: NetBox answers 500; the plugin retries, then fails naming endpoint and status."""
    netboxctl.stop_component(netbox.env, "postgres")
    result = run_inventory({"retries": 1}, "-v")
    assert result.rc != 0
    assert re.search(r"failed on (dcim/devices|virtualization/virtual-machines) with HTTP 500 after 2 attempt\(s\)",
                     result.stderr), result.stderr


@pytest.mark.netbox_stops(order=2)
def test_stopped_netbox_fails_naming_the_url(netbox, run_inventory):
    netboxctl.stop_component(netbox.env, "gunicorn")
    result = run_inventory({"retries": 1, "timeout": 5})
    assert result.rc != 0
    assert "_meta" not in result.stdout
    assert re.search(rf"cannot reach NetBox at {re.escape(netbox.url)} \((dcim/devices|virtualization/virtual-"
                     r"machines)\) after 2 attempt\(s\): ConnectionError", result.stderr), result.stderr
