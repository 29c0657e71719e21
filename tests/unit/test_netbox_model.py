"""The NetBox -> inventory data model (plugins/plugin_utils/netbox/_netbox_inventory.py) on API-shaped objects."""

from __future__ import annotations

import copy
import gc
import weakref

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils.netbox._netbox import NetBoxClient, NetBoxError, authorization_header
from ansible_collections.locus.infra.plugins.plugin_utils.netbox._netbox_inventory import (
    NIC_DEFAULTS,
    TAGGED_OBJECTS_MAX_RATIO,
    VM_FIELDS,
    Builder,
    _tags_source,
    attach_tags,
    gc_for_inventory,
    group_name,
    query_params,
    valid_var_name,
)


def brief(kind, oid, name, slug=None):
    obj = {"id": oid, "url": f"http://nb/api/{kind}/{oid}/", "display": name, "name": name, "description": ""}
    if slug is not None:
        obj["slug"] = slug
    return obj


def ip(oid, address):
    return {"id": oid, "url": f"http://nb/api/ipam/ip-addresses/{oid}/", "display": address,
            "family": {"value": 6 if ":" in address else 4, "label": "IPv6" if ":" in address else "IPv4"},
            "address": address, "nat_inside": None, "nat_outside": [], "dns_name": "", "description": ""}


# As GET /api/virtualization/virtual-machines/?fields=... returns it (NetBox 4.7).
VM = {
    "id": 7, "name": "k3s-s1", "status": {"value": "active", "label": "Active"},
    "role": brief("dcim/device-roles", 2, "k3s-server", "k3s-server"),
    "site": brief("dcim/sites", 1, "DC 1", "dc-1"),
    "tenant": brief("tenancy/tenants", 3, "apps", "apps"),
    "platform": brief("dcim/platforms", 4, "debian-12", "debian-12"),
    "cluster": brief("virtualization/clusters", 5, "PVE DC1"),
    "device": brief("dcim/devices", 9, "pve1"),
    "primary_ip4": ip(11, "10.10.0.21/24"), "primary_ip6": ip(12, "2001:db8:10::21/64"),
    "vcpus": 2.5, "memory": 4096, "disk": 32769,
    "tags": [{"id": 1, "name": "Backup", "slug": "backup", "color": "9e9e9e"},
             {"id": 2, "name": "monitored", "slug": "monitored", "color": "9e9e9e"}],
    "custom_fields": {"locus_vmid": 121, "locus_template": None, "locus_cloud_init": {"packages": ["htop"]}},
    "config_context": {
        "k3s": {"role": "server"},
        "locus_vm": {"template": "debian-12-cloud", "vmid": 999, "vcpus": 8, "node": "pve9",
                     "cloud_init": {"user": "debian", "packages": ["vim"]},
                     "network": [{"bridge": "vmbr0", "gateway4": "10.10.0.1"}, {"name": "mgmt", "vlan": 99}]},
    },
}
DEVICE = {
    "id": 9, "name": "pve1", "status": {"value": "active", "label": "Active"},
    "role": brief("dcim/device-roles", 6, "proxmox-node", "proxmox-node"),
    "site": brief("dcim/sites", 1, "DC 1", "dc-1"), "tenant": None, "platform": None, "cluster": None,
    "primary_ip4": ip(13, "10.10.0.1/24"), "primary_ip6": None, "tags": [], "custom_fields": {},
    "config_context": {"proxmox": {"api_port": 8006}},
}


def build(devices=(), vms=(), **kw):
    return Builder(**kw).build(copy.deepcopy(list(devices)), copy.deepcopy(list(vms)))


def test_vm_host_vars_groups_and_locus_vm_precedence():
    result = build([DEVICE], [VM])
    assert result["warnings"] == []
    assert [h["name"] for h in result["hosts"]] == ["pve1", "k3s-s1"]
    vm = result["hosts"][1]
    hv = vm["vars"]
    assert hv["ansible_host"] == "10.10.0.21"
    assert (hv["primary_ip4"], hv["primary_ip6"]) == ("10.10.0.21", "2001:db8:10::21")
    assert (hv["site"], hv["role"], hv["tenant"], hv["platform"], hv["cluster"], hv["status"]) == (
        "dc-1", "k3s-server", "apps", "debian-12", "PVE DC1", "active")
    assert hv["netbox_tags"] == ["backup", "monitored"]
    assert hv["k3s"] == {"role": "server"} and "locus_vm" in hv and "config_context" not in hv
    assert vm["groups"] == ["k3s_servers", "site_dc_1", "role_k3s_server", "platform_debian_12", "cluster_pve_dc1",
                            "status_active", "tag_backup", "tag_monitored"]
    lv = hv["locus_vm"]
    # fields beat custom fields beat config context
    assert lv["vcpus"] == 3 and lv["memory"] == 4096 and lv["disk"] == 33  # 32769 MB -> 33 GiB (rounded up)
    assert lv["vmid"] == 121 and lv["node"] == "pve1" and lv["cluster"] == "PVE DC1"
    assert lv["template"] == "debian-12-cloud"  # custom field empty -> context
    assert lv["cloud_init"] == {"user": "debian", "packages": ["htop"]}  # custom field updates context
    assert lv["network"] == [
        dict(NIC_DEFAULTS, name="net0", gateway4="10.10.0.1", ipv4="10.10.0.21/24", ipv6="2001:db8:10::21/64"),
        dict(NIC_DEFAULTS, name="mgmt", vlan=99),
    ]
    device = result["hosts"][0]
    assert "locus_vm" not in device["vars"] and device["vars"]["proxmox"] == {"api_port": 8006}
    assert device["groups"] == ["proxmox_nodes", "site_dc_1", "role_proxmox_node", "status_active"]
    assert result["groups"] == ["k3s_agents", "k3s_servers", "ollama", "proxmox_nodes", "routers", "web"]


def test_without_context_locus_vm_has_every_key_and_one_nic():
    vm = dict(VM, config_context={}, custom_fields={}, vcpus=None, memory=None, disk=None, device=None,
              primary_ip6=None)
    lv = build(vms=[vm])["hosts"][0]["vars"]["locus_vm"]
    assert lv == {"name": "k3s-s1", "vmid": None, "vcpus": None, "memory": None, "disk": None,
                  "cluster": "PVE DC1", "node": None, "template": None, "cloud_init": {},
                  "network": [dict(NIC_DEFAULTS, name="net0", ipv4="10.10.0.21/24")]}


def test_ipv6_only_host_uses_the_ipv6_address():
    vm = dict(VM, primary_ip4=None)
    hv = build(vms=[vm])["hosts"][0]["vars"]
    assert hv["ansible_host"] == "2001:db8:10::21" and hv["primary_ip4"] is None


def test_duplicates_and_unnamed_objects_are_skipped_predictably():
    vm_dup_device = dict(VM, id=3, name="pve1")
    vm_a = dict(VM, id=20, name="web1")
    vm_b = dict(VM, id=8, name="web1")
    unnamed = dict(DEVICE, id=4, name=None)
    # page order must not matter: later ids come first here
    result = build([DEVICE, unnamed], [vm_a, vm_dup_device, vm_b])
    names = [(h["name"], h["vars"]["netbox_type"], h["vars"]["netbox_id"]) for h in result["hosts"]]
    assert names == [("pve1", "device", 9), ("web1", "virtual_machine", 8)]
    assert result["warnings"] == [
        "device None (id 4) has no name: skipped",
        "virtual machine 'pve1' (id 3): duplicate name, device 'pve1' (id 9) already uses it: skipped",
        "virtual machine 'web1' (id 20): duplicate name, virtual machine 'web1' (id 8) already uses it: skipped",
    ]


def test_bad_config_context_keys_are_dropped_with_a_warning():
    ctx = {"nginx-sites": [], "class": 1, "site": "x", "tags": [], "hostvars": {}, "ok": True,
           "locus_vm": ["not", "a", "dict"]}
    result = build(vms=[dict(VM, config_context=ctx)], reserved_names={"tags"})
    hv = result["hosts"][0]["vars"]
    assert hv["ok"] is True and hv["site"] == "dc-1"
    assert not {"nginx-sites", "class", "tags", "hostvars"} & set(hv)
    assert hv["locus_vm"]["template"] is None
    w = result["warnings"]
    assert "virtual machine 'k3s-s1' (id 7): config context key 'nginx-sites' is not a valid variable name: dropped" in w
    assert "virtual machine 'k3s-s1' (id 7): config context key 'class' is not a valid variable name: dropped" in w
    assert "virtual machine 'k3s-s1' (id 7): config context key 'site' is reserved by the inventory: dropped" in w
    assert "virtual machine 'k3s-s1' (id 7): config context key 'tags' is reserved by the inventory: dropped" in w
    assert "virtual machine 'k3s-s1' (id 7): config context locus_vm is a list, not a mapping: ignored" in w


def test_bad_nic_address_and_no_primary_ip():
    ctx = {"locus_vm": {"network": [{"ipv4": "10.0.0.300/24", "speed": 10}]}}
    result = build(vms=[dict(VM, config_context=ctx, primary_ip4=None, primary_ip6=None)])
    hv = result["hosts"][0]["vars"]
    assert "ansible_host" not in hv
    assert hv["locus_vm"]["network"][0]["ipv4"] is None
    assert result["warnings"] == [
        "virtual machine 'k3s-s1' (id 7) has no primary IP: ansible_host not set",
        "virtual machine 'k3s-s1' (id 7): locus_vm.network[0] has unknown keys ['speed']: ignored",
        "virtual machine 'k3s-s1' (id 7): locus_vm.network[0].ipv4 '10.0.0.300/24' is not an address/prefix: "
        "set to null",
    ]


def test_unflattened_context_and_custom_role_groups():
    result = build(vms=[VM], flatten_config_context=False, role_groups={"k3s-server": "control_plane"})
    host = result["hosts"][0]
    assert host["vars"]["config_context"] == VM["config_context"] and "k3s" not in host["vars"]
    assert host["groups"][0] == "control_plane" and result["groups"] == ["control_plane"]


def test_group_names_and_var_names():
    assert group_name("cluster", "PVE Lab-1") == "cluster_pve_lab_1"
    assert group_name("tag", "café") == "tag_caf_"
    assert valid_var_name("bgp") and valid_var_name("_x1")
    assert not any(valid_var_name(n) for n in ("1x", "a-b", "for", "None", "", "ä"))


def test_query_params_repeat_filters_and_reject_unknown_ones():
    params = query_params({"site": ["dc1", "lab"], "status": [], "tag": ["gpu"]}, VM_FIELDS)
    assert params == {"fields": ",".join(VM_FIELDS), "site": ["dc1", "lab"], "tag": ["gpu"]}
    with pytest.raises(ValueError, match="filters: unknown filter 'region'"):
        query_params({"region": ["eu"]}, VM_FIELDS)


@pytest.mark.parametrize(("token", "header"), [
    ("0123456789abcdef0123456789abcdef01234567", "Token 0123456789abcdef0123456789abcdef01234567"),
    ("nbt_AbCdEf123456.s3cr3tv4lue", "Bearer nbt_AbCdEf123456.s3cr3tv4lue"),
    ("nbt_nodot", "Token nbt_nodot"),
    ("Bearer nbt_a.b", "Bearer nbt_a.b"),
    ("  Token abc  ", "Token abc"),
    ({"type": "Bearer", "value": "nbt_a.b"}, "Bearer nbt_a.b"),
])
def test_authorization_header(token, header):
    assert authorization_header(token) == header


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"url": "netbox.example.com", "token": "t"}, "is not an http(s) URL"),
    ({"url": "https://nb", "token": ""}, "no NetBox token"),
    ({"url": "https://nb", "token": {"type": "Basic", "value": "x"}}, "needs type (Token or Bearer)"),
    ({"url": "https://nb", "token": "t", "max_workers": 0}, "must be positive"),
])
def test_client_rejects_bad_settings(kwargs, message):
    with pytest.raises(NetBoxError, match=message.replace("(", r"\(").replace(")", r"\)")):
        NetBoxClient(**kwargs)


def test_client_normalises_url_and_sets_the_auth_header_once():
    client = NetBoxClient(url="https://nb.example.com/api/", token="nbt_k.v", max_workers=8)
    assert client.url == "https://nb.example.com"
    assert client.session.headers["Authorization"] == "Bearer nbt_k.v"
    assert client.session.get_adapter("https://nb.example.com")._pool_maxsize >= 8


def tagged(item_id, content_type, object_id, slug):
    """An item of GET /api/extras/tagged-objects/?fields=id,object_type,object_id,tag (NetBox 4.7)."""
    return {"id": item_id, "object_type": content_type, "object_id": object_id,
            "tag": {"id": item_id % 5, "url": f"http://nb/api/extras/tags/{item_id % 5}/", "display": slug,
                    "name": slug, "slug": slug, "color": "9e9e9e", "description": ""}}


def test_tags_from_tagged_objects_give_the_same_hosts_as_inline_tags():
    inline = build([DEVICE], [VM])
    # the same objects read without ``tags``, plus their assignments; device 9 and VM 9 must not mix
    device, vm, vm9 = (copy.deepcopy(o) for o in (DEVICE, VM, dict(VM, id=9, name="web9", tags=[])))
    for obj in (device, vm, vm9):
        del obj["tags"]
    objects = {"devices": [device], "virtual_machines": [vm, vm9]}
    attach_tags(objects, [tagged(1, "virtualization.virtualmachine", 7, "monitored"),
                          tagged(2, "virtualization.virtualmachine", 7, "backup"),
                          tagged(3, "dcim.device", 42, "elsewhere")])
    assert [t["slug"] for t in vm["tags"]] == ["monitored", "backup"]
    assert device["tags"] == [] and vm9["tags"] == []
    split = Builder().build(objects["devices"], objects["virtual_machines"][:1])
    assert split == inline


@pytest.mark.parametrize("status", [400, 401, 403, 404])
@pytest.mark.parametrize("which", ["assignments", "everything", "totals"])
def test_tag_lists_unreadable_means_tags_inline(status, which):
    probes = {"assignments": 30, "everything": 40, "totals": 40}
    endpoint = "extras/tags" if which == "totals" else "extras/tagged-objects"
    probes[which] = NetBoxError("denied", endpoint, status)
    use, note = _tags_source(probes["assignments"], 20, probes["everything"], probes["totals"])
    why = "the token may not read it" if status in (401, 403) else "not on this NetBox"
    assert not use and note == f"tags read inline: {endpoint} answered HTTP {status} ({why})"


def test_tag_lists_other_errors_fail_incomplete_or_big_lists_mean_inline():
    error = NetBoxError("NetBox failed on extras/tags with HTTP 500", "extras/tags", 500)
    with pytest.raises(NetBoxError, match="HTTP 500"):
        _tags_source(30, 20, 40, error)
    # the token sees fewer assignments than the tags count: a constrained permission
    assert _tags_source(30, 20, 39, 40) == (
        False, "tags read inline: extras/tagged-objects shows 39 of 40 tag assignments (an object permission "
        "with constraints?)")
    assert _tags_source(TAGGED_OBJECTS_MAX_RATIO * 10, 10, 99, 99) == (
        True, f"tags read from extras/tagged-objects ({TAGGED_OBJECTS_MAX_RATIO * 10} assignments)")
    assert _tags_source(TAGGED_OBJECTS_MAX_RATIO * 10 + 1, 10, 99, 99) == (
        False, f"tags read inline: extras/tagged-objects holds {TAGGED_OBJECTS_MAX_RATIO * 10 + 1} assignments "
        "for 10 objects read")


@pytest.fixture
def gc_state():
    """Restore the collector (enabled, nothing frozen, the module's flag) whatever a test did."""
    from ansible_collections.locus.infra.plugins.plugin_utils.netbox import _netbox_inventory

    was = gc.isenabled()
    yield
    gc.unfreeze()
    _netbox_inventory._FROZEN_BY_US = False
    (gc.enable if was else gc.disable)()


class Cyclic:
    def __init__(self):
        self.me = self


@pytest.mark.parametrize("enabled_before", [True, False])
def test_gc_for_inventory_restores_the_collector_and_freezes_nothing_on_failure(gc_state, enabled_before):
    (gc.enable if enabled_before else gc.disable)()
    gc.unfreeze()
    with pytest.raises(RuntimeError), gc_for_inventory():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled() is enabled_before
    assert gc.get_freeze_count() == 0


def test_gc_for_inventory_freezes_the_result_and_collects_it_when_built_again(gc_state):
    gc.enable()
    gc.unfreeze()
    with gc_for_inventory():
        first = Cyclic()  # an inventory is full of cycles (hosts <-> groups)
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
    gone = weakref.ref(first)
    del first
    gc.collect()
    assert gone() is not None, "a frozen object is never collected"
    # meta: refresh_inventory - the old inventory is garbage now and must not stay frozen for ever
    with gc_for_inventory():
        assert gone() is None
        assert not gc.isenabled()
    assert gc.get_freeze_count() > 0
