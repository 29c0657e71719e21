#!/usr/bin/env python
"""Seed a NetBox with the locus.infra data model (pynetbox).

Two parts:

* The lab hosts, derived at seed time from the static lab inventory (``inventory/lab/``,
  read through ``ansible-inventory`` so host_vars/, group_vars/ and hosts.yml all count):
  each host becomes a virtual machine (a device if its role is ``proxmox-node``) at the site
  of its ``site_*`` group, with the role of its ``role_*`` group (or of its functional group,
  e.g. ``routers`` -> ``router``), the platform/cluster/status/tags of ``platform_*`` /
  ``cluster_*`` / ``status_*`` / ``tag_*`` groups, ``ansible_host`` as primary IP and all
  its other vars (merged as Ansible merges them) as local config context data. So the
  NetBox inventory equals the static one for these hosts, however the lab grows.
* A realistic model around it: sites dc1 and edge1, tenants, a Proxmox VE cluster with three
  node devices, VMs with roles router / k3s-server / k3s-agent / web / ollama, IPv4 and IPv6
  primary IPs, tags, custom fields and config contexts scoped by site, role and tag (none
  of which reach the lab hosts, whose vars come from the lab inventory only).

Idempotent: objects are looked up by slug/name and created only when missing.

    seed.py --url http://127.0.0.1:18000 --token <v1 token>   # or NETBOX_API / NETBOX_TOKEN
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pynetbox

REPO = Path(__file__).resolve().parents[2]
LAB_INVENTORY = REPO / "inventory" / "lab"

ROLE_GROUPS = {  # the data model's default (plugins/plugin_utils/netbox/_netbox_inventory.py)
    "router": "routers",
    "k3s-server": "k3s_servers",
    "k3s-agent": "k3s_agents",
    "web": "web",
    "ollama": "ollama",
    "proxmox-node": "proxmox_nodes",
}
DEVICE_ROLES = {"proxmox-node"}
MODEL_PREFIXES = ("site_", "role_", "tag_", "cluster_", "platform_", "status_")
ROLE_COLORS = {"router": "2196f3", "k3s-server": "4caf50", "k3s-agent": "8bc34a", "web": "ff9800",
               "ollama": "9c27b0", "proxmox-node": "607d8b"}

# Address plan: the lab's own prefixes plus the realistic sites'.
PREFIXES = {
    "lab": ["10.77.0.0/24", "fd77::/64"],
    "dc1": ["10.10.0.0/24", "2001:db8:10::/64"],
    "edge1": ["10.20.0.0/24", "2001:db8:20::/64"],
}


class SeedError(RuntimeError):
    pass


def is_model_group(name: str) -> bool:
    return name in ROLE_GROUPS.values() or name.startswith(MODEL_PREFIXES)


def unwrap(value):
    """ansible-core 2.19 --list JSON marks strings as {"__ansible_unsafe": ...}; strip that."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return unwrap(value["__ansible_unsafe"])
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def ansible_inventory_list(source: Path | str, env: dict | None = None) -> dict:
    """``ansible-inventory -i source --list`` as a plain dict (host vars merged as Ansible merges them)."""
    exe = Path(sys.executable).with_name("ansible-inventory")
    cmd = [str(exe) if exe.exists() else "ansible-inventory", "-i", str(source), "--list"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    if proc.returncode != 0:
        raise SeedError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return unwrap(json.loads(proc.stdout))


def group_members(listing: dict) -> dict[str, set[str]]:
    """Group -> every host in it, children included."""
    direct = {g: set(v.get("hosts", [])) for g, v in listing.items() if g != "_meta" and isinstance(v, dict)}
    children = {g: list(v.get("children", [])) for g, v in listing.items() if g != "_meta" and isinstance(v, dict)}

    def expand(g, seen=()):
        hosts = set(direct.get(g, set()))
        for c in children.get(g, []):
            if c not in seen:
                hosts |= expand(c, (*seen, g))
        return hosts

    return {g: expand(g) for g in direct}


def lab_hosts(lab_dir: Path = LAB_INVENTORY) -> list[dict]:
    """The lab hosts as NetBox should hold them, derived from the static inventory."""
    listing = ansible_inventory_list(lab_dir)
    members = group_members(listing)
    hostvars = listing["_meta"]["hostvars"]
    names = sorted(set(hostvars) | {h for g, hs in members.items() if g != "all" for h in hs})
    reverse_roles = {group: role for role, group in ROLE_GROUPS.items()}
    hosts = []
    for name in names:
        groups = sorted(g for g, hs in members.items() if name in hs and is_model_group(g))
        where = f"inventory/lab host {name!r}"

        def one(prefix, required=False, groups=groups, where=where):
            values = [g[len(prefix):] for g in groups if g.startswith(prefix)]
            if len(values) > 1:
                raise SeedError(f"{where} is in several {prefix}* groups {values}; NetBox holds one")
            if required and not values:
                raise SeedError(f"{where} is in no {prefix}* group; NetBox needs a {prefix.rstrip('_')}")
            return values[0] if values else None

        role = one("role_")
        functional = [g for g in groups if g in reverse_roles]
        if role is None and functional:
            role = reverse_roles[functional[0]]
        if role is not None:
            role = role.replace("_", "-")
            expected = {ROLE_GROUPS[role]} if role in ROLE_GROUPS else set()
            if set(functional) != expected:
                raise SeedError(f"{where}: role {role!r} means functional group(s) {sorted(expected)}, "
                                f"but the host is in {functional}")
        hv = dict(hostvars.get(name, {}))
        address = hv.pop("ansible_host", None)
        if address is None:
            raise SeedError(f"{where} has no ansible_host; NetBox needs its primary IP")
        try:
            ip = ipaddress.ip_address(str(address))
        except ValueError:
            raise SeedError(f"{where}: ansible_host {address!r} is not an IP address") from None
        hosts.append({
            "name": name,
            "site": one("site_", required=True),
            "role": role,
            "platform": one("platform_"),
            "cluster": one("cluster_"),
            "status": one("status_") or "active",
            "tags": [g[len("tag_"):] for g in groups if g.startswith("tag_")],
            "ip": ip,
            "context": hv,
        })
    return hosts


@dataclass
class HostSpec:
    """One VM or device as the seed creates it."""

    name: str
    site: str
    kind: str = "vm"  # or "device"
    role: str | None = None
    status: str = "active"
    platform: str | None = None
    tenant: str | None = None
    cluster: str | None = None
    node: str | None = None
    tags: list = field(default_factory=list)
    ips: list = field(default_factory=list)
    vcpus: int | None = None
    memory: int | None = None
    disk: int | None = None
    custom_fields: dict = field(default_factory=dict)
    context: dict | None = None


def lab_specs(lab_dir: Path = LAB_INVENTORY) -> list[HostSpec]:
    return [HostSpec(name=h["name"], site=h["site"], kind="device" if h["role"] in DEVICE_ROLES else "vm",
                     role=h["role"], status=h["status"], platform=h["platform"], cluster=h["cluster"],
                     tags=h["tags"], ips=[str(h["ip"])], context=h["context"])
            for h in lab_hosts(lab_dir)]


def realistic_specs() -> list[HostSpec]:
    """Sites dc1/edge1, a Proxmox cluster with three nodes and VMs of every role."""
    specs = [HostSpec(f"pve{i}", "dc1", kind="device", role="proxmox-node", cluster="pve-dc1", platform="proxmox-ve",
                      tags=["monitored"], ips=[f"10.10.0.{i}", f"2001:db8:10::{i}"],
                      context={"proxmox": {"api_port": 8006, "storage": "local-lvm"}}) for i in (1, 2, 3)]
    specs.append(HostSpec(
        "rtr-dc1", "dc1", role="router", cluster="pve-dc1", node="pve1", platform="debian-12", tenant="ops",
        tags=["monitored"], ips=["10.10.0.11", "2001:db8:10::11"], vcpus=1, memory=1024, disk=8192,
        custom_fields={"locus_vmid": 111},
        context={"bgp": {"router_id": "10.10.0.11", "local_as": 65010,
                         "prefixes": {"ipv4": ["203.0.113.0/24"], "ipv6": ["2001:db8:10::/48"]},
                         "neighbors": [{"name": "rtr_edge1_v4", "address": "10.20.0.11", "remote_as": 65020}]}}))
    specs.append(HostSpec(
        "rtr-edge1", "edge1", role="router", platform="debian-12", tenant="ops",
        ips=["10.20.0.11", "2001:db8:20::11"], vcpus=1, memory=1024, disk=8192,
        context={"bgp": {"router_id": "10.20.0.11", "local_as": 65020,
                         "prefixes": {"ipv4": ["198.18.0.0/24"], "ipv6": ["2001:db8:20::/48"]},
                         "neighbors": [{"name": "rtr_dc1_v4", "address": "10.10.0.11", "remote_as": 65010}]}}))
    for i in (1, 2, 3):
        specs.append(HostSpec(f"k3s-s{i}", "dc1", role="k3s-server", cluster="pve-dc1", node=f"pve{i}",
                              platform="debian-12", tenant="apps", tags=["monitored", "backup"],
                              ips=[f"10.10.0.{20 + i}", f"2001:db8:10::{20 + i}"], vcpus=2, memory=4096, disk=32768,
                              custom_fields={"locus_vmid": 120 + i}))
    for i in (1, 2):
        specs.append(HostSpec(f"k3s-a{i}", "dc1", role="k3s-agent", cluster="pve-dc1", node=f"pve{i}",
                              platform="debian-12", tenant="apps", tags=["monitored"],
                              ips=[f"10.10.0.{30 + i}", f"2001:db8:10::{30 + i}"], vcpus=4, memory=8192, disk=65536,
                              custom_fields={"locus_vmid": 130 + i}))
    specs.append(HostSpec("k3s-a3", "dc1", role="k3s-agent", status="planned", cluster="pve-dc1",
                          platform="debian-12", tenant="apps", ips=["10.10.0.33"], vcpus=4, memory=8192, disk=65536,
                          custom_fields={"locus_vmid": 133, "locus_template": "debian-13-cloud"}))
    specs.append(HostSpec(
        "web-dc1", "dc1", role="web", cluster="pve-dc1", node="pve2", platform="debian-12", tenant="apps",
        tags=["monitored", "backup"], ips=["10.10.0.41", "2001:db8:10::41"], vcpus=2, memory=2048, disk=20480,
        custom_fields={"locus_vmid": 141},
        context={"nginx_sites": [{"name": "www.example.com", "type": "proxy", "upstream": "http://10.10.0.31:30080",
                                  "tls": "acme"}]}))
    specs.append(HostSpec(
        "ollama-dc1", "dc1", role="ollama", cluster="pve-dc1", node="pve3", platform="debian-12", tenant="apps",
        tags=["gpu", "monitored"], ips=["10.10.0.51", "2001:db8:10::51"], vcpus=8, memory=32768, disk=204800,
        custom_fields={"locus_vmid": 151, "locus_cloud_init": {"packages": ["nvidia-driver"]}}))
    return specs


CONFIG_CONTEXTS = [
    # (name, weight, data, scope); scoped so that none reaches the lab hosts.
    ("dc1-provisioning", 1000, {
        "locus_vm": {
            "template": "debian-12-cloud",
            "cloud_init": {"user": "debian", "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlocus ops"],
                           "nameservers": ["10.10.0.1"], "searchdomain": "dc1.example"},
            "network": [{"bridge": "vmbr0", "gateway4": "10.10.0.1", "gateway6": "2001:db8:10::1"}],
        },
        "ntp_servers": ["10.10.0.1"],
    }, {"sites": ["dc1"]}),
    ("edge1-provisioning", 1000, {
        "locus_vm": {"template": "debian-12-cloud",
                     "network": [{"bridge": "vmbr1", "vlan": 20, "gateway4": "10.20.0.1"}]},
        "ntp_servers": ["10.20.0.1"],
    }, {"sites": ["edge1"]}),
    ("k3s-servers", 2000, {"k3s": {"role": "server", "version": "v1.31.4+k3s1", "cluster_init": True}},
     {"roles": ["k3s-server"], "sites": ["dc1"]}),
    ("k3s-agents", 2000, {"k3s": {"role": "agent", "version": "v1.31.4+k3s1"}},
     {"roles": ["k3s-agent"], "sites": ["dc1"]}),
    ("ollama", 2000, {"ollama": {"version": "0.6.3", "bind": "127.0.0.1:11434", "models": ["smollm2:135m"]}},
     {"roles": ["ollama"], "sites": ["dc1"]}),
    ("gpu", 3000, {"ollama_gpu": True}, {"tags": ["gpu"]}),
]


class Seeder:
    """Creates what is missing, in bulk: one list and at most one bulk POST per endpoint and step."""

    def __init__(self, nb: pynetbox.api, chunk: int = 250):
        self.nb = nb
        self.chunk = chunk
        self.prefix_table = PREFIXES
        self.records: dict = {}  # key -> pynetbox record of the last ensure_many

    def ensure_many(self, endpoint, key: str, wanted: dict, filter_key: str | None = None) -> dict:
        """``wanted``: key value -> create payload. Returns key value -> id for all of them."""
        if not wanted:
            return {}
        found = {}
        self.records = {}
        names = list(wanted)
        for i in range(0, len(names), 100):
            for rec in endpoint.filter(**{filter_key or key: names[i:i + 100]}, limit=1000):
                found[str(getattr(rec, key))] = rec.id
                self.records[str(getattr(rec, key))] = rec
        missing = [dict(payload, **{key: k}) for k, payload in wanted.items() if k not in found]
        for i in range(0, len(missing), self.chunk):
            created = endpoint.create(missing[i:i + self.chunk])
            for rec in created:
                found[str(getattr(rec, key))] = rec.id
                self.records[str(getattr(rec, key))] = rec
        return found

    def slugs(self, endpoint, values, **extra) -> dict:
        return self.ensure_many(endpoint, "slug", {v: {"name": v, **extra} for v in sorted({v for v in values if v})})

    def prefix_length(self, ip) -> int:
        for prefixes in self.prefix_table.values():
            for p in prefixes:
                net = ipaddress.ip_network(p)
                if ip in net:
                    return net.prefixlen
        return ip.max_prefixlen

    def apply(self, specs: list[HostSpec], contexts=None, prefixes=None) -> None:
        contexts = CONFIG_CONTEXTS if contexts is None else contexts
        prefixes = PREFIXES if prefixes is None else prefixes
        nb = self.nb
        self.prefix_table = prefixes
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise SeedError(f"duplicate host names in the seed: {sorted({n for n in names if names.count(n) > 1})}")
        sites = self.slugs(nb.dcim.sites, [s.site for s in specs] + list(prefixes), status="active")
        roles = self.ensure_many(nb.dcim.device_roles, "slug", {
            r: {"name": r, "vm_role": True, "color": ROLE_COLORS.get(r, "9e9e9e")}
            for r in sorted({s.role for s in specs} | {r for ctx in contexts for r in ctx[3].get("roles", [])}) if r})
        platforms = self.slugs(nb.dcim.platforms, [s.platform for s in specs])
        tenants = self.slugs(nb.tenancy.tenants, [s.tenant for s in specs])
        tags = self.slugs(nb.extras.tags, [t for s in specs for t in s.tags] +
                          [t for ctx in contexts for t in ctx[3].get("tags", [])])
        vm = ["virtualization.virtualmachine"]
        self.ensure_many(nb.extras.custom_fields, "name", {
            "locus_vmid": {"type": "integer", "object_types": vm, "label": "Proxmox VMID"},
            "locus_template": {"type": "text", "object_types": vm, "label": "Proxmox template"},
            "locus_cloud_init": {"type": "json", "object_types": vm, "label": "cloud-init settings"},
        })
        self.ensure_many(nb.ipam.prefixes, "prefix", {
            p: {"scope_type": "dcim.site", "scope_id": sites[site], "status": "active"}
            for site, ps in prefixes.items() for p in ps})
        clusters = {}
        if any(s.cluster for s in specs):
            ctype = self.slugs(nb.virtualization.cluster_types, ["proxmox"])["proxmox"]
            cluster_site = {}
            for s in specs:
                cluster_site.setdefault(s.cluster, s.site)
            clusters = self.ensure_many(nb.virtualization.clusters, "name", {
                c: {"type": ctype, "status": "active", "scope_type": "dcim.site", "scope_id": sites[site]}
                for c, site in cluster_site.items() if c})

        def common(s):
            data = {"site": sites[s.site], "status": s.status, "tags": [tags[t] for t in s.tags]}
            for key, ids, value in (("role", roles, s.role), ("platform", platforms, s.platform),
                                    ("tenant", tenants, s.tenant), ("cluster", clusters, s.cluster)):
                if value:
                    data[key] = ids[value]
            if s.context is not None:
                data["local_context_data"] = s.context
            return data

        devices = [s for s in specs if s.kind == "device"]
        vms = [s for s in specs if s.kind == "vm"]
        device_ids = {}
        if devices:
            maker = self.slugs(nb.dcim.manufacturers, ["supermicro"])["supermicro"]
            dtype = self.ensure_many(nb.dcim.device_types, "slug", {
                "sys-5019d": {"model": "SYS-5019D", "manufacturer": maker}})["sys-5019d"]
            device_ids = self.ensure_many(nb.dcim.devices, "name", {
                s.name: dict(common(s), device_type=dtype) for s in devices})
            device_records = self.records
        vm_ids = self.ensure_many(nb.virtualization.virtual_machines, "name", {
            s.name: dict(common(s), custom_fields=s.custom_fields,
                         **{k: v for k, v in (("vcpus", s.vcpus), ("memory", s.memory), ("disk", s.disk),
                                              ("device", device_ids.get(s.node) if s.node else None))
                            if v is not None})
            for s in vms})
        vm_records = self.records
        if devices:
            self._addresses(devices, device_ids, device_records, nb.dcim.interfaces, "device", "dcim.interface",
                            nb.dcim.devices)
        self._addresses(vms, vm_ids, vm_records, nb.virtualization.interfaces, "virtual_machine",
                        "virtualization.vminterface", nb.virtualization.virtual_machines)
        scope_ids = {"sites": sites, "roles": roles, "tags": None}
        self.ensure_many(nb.extras.config_contexts, "name", {
            name: {"weight": weight, "data": data,
                   **{k: (v if scope_ids[k] is None else [scope_ids[k][x] for x in v]) for k, v in scope.items()}}
            for name, weight, data, scope in contexts})

    def _addresses(self, specs, obj_ids, records, iface_endpoint, parent_key, obj_type, obj_endpoint):
        specs = [s for s in specs if s.ips]
        if not specs:
            return
        # One interface "eth0" per object; the lookup key is "<object id>/eth0".
        existing = {}
        ids = [obj_ids[s.name] for s in specs]
        for i in range(0, len(ids), 100):
            for rec in iface_endpoint.filter(**{f"{parent_key}_id": ids[i:i + 100]}, name="eth0", limit=1000):
                existing[getattr(rec, parent_key).id] = rec.id
        missing = [{parent_key: oid, "name": "eth0", **({"type": "1000base-t"} if parent_key == "device" else {})}
                   for oid in ids if oid not in existing]
        for i in range(0, len(missing), self.chunk):
            for rec in iface_endpoint.create(missing[i:i + self.chunk]):
                existing[getattr(rec, parent_key).id] = rec.id
        wanted = {}
        owner = {}
        for s in specs:
            for ip in s.ips:
                ip = ipaddress.ip_address(ip)
                cidr = f"{ip}/{self.prefix_length(ip)}"
                wanted[cidr] = {"status": "active", "assigned_object_type": obj_type,
                                "assigned_object_id": existing[obj_ids[s.name]]}
                owner[cidr] = (s.name, f"primary_ip{ip.version}")
        addr_ids = self.ensure_many(self.nb.ipam.ip_addresses, "address", wanted)
        patches = {}
        for cidr, (name, field_name) in owner.items():
            current = getattr(records[name], field_name, None)
            if current is not None and current.id == addr_ids[cidr]:
                continue  # already the primary address
            oid = obj_ids[name]
            patches.setdefault(oid, {"id": oid})[field_name] = addr_ids[cidr]
        patch_list = list(patches.values())
        for i in range(0, len(patch_list), self.chunk):
            obj_endpoint.update(patch_list[i:i + self.chunk])

    def all(self, lab_dir: Path = LAB_INVENTORY) -> list[str]:
        lab = lab_specs(lab_dir)
        self.apply(realistic_specs() + lab)
        return [s.name for s in lab]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("NETBOX_API"))
    p.add_argument("--token", default=os.environ.get("NETBOX_TOKEN"))
    p.add_argument("--lab", type=Path, default=LAB_INVENTORY, help="static lab inventory directory")
    args = p.parse_args(argv)
    if not args.url or not args.token:
        p.error("--url/--token (or NETBOX_API/NETBOX_TOKEN) are required")
    try:
        names = Seeder(pynetbox.api(args.url, token=args.token)).all(args.lab)
    except (SeedError, pynetbox.RequestError) as exc:
        print(f"seed: error: {exc}", file=sys.stderr)
        return 1
    print(f"seeded the realistic model and lab hosts {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
