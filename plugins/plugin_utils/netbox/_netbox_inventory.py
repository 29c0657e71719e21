# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""NetBox objects -> locus.infra inventory data model (private API).

``read_objects`` reads what the inventory needs from NetBox (through ``_netbox.NetBoxClient``);
everything else is pure functions: NetBox JSON (as the REST API returns it) in, host records
out. The data model is documented in docs/netbox.md; this module is its single
implementation, used by the inventory plugin ``locus.infra.netbox`` (and by tests and bench
through it).

A host record is ``{"name": str, "vars": dict, "groups": [str, ...]}``; warnings are
plain strings naming the object (``virtual machine 'web1' (id 7)``) and what was done.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import keyword
import math
import re
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.locus.infra.plugins.plugin_utils.netbox._netbox import NetBoxError

VM_ENDPOINT = "virtualization/virtual-machines"
DEVICE_ENDPOINT = "dcim/devices"
TAGGED_OBJECTS_ENDPOINT = "extras/tagged-objects"
TAGS_ENDPOINT = "extras/tags"
# what read_objects() returns -> NetBox content type (as extras/tagged-objects names it)
CONTENT_TYPES = {"devices": "dcim.device", "virtual_machines": "virtualization.virtualmachine"}
TAGGED_OBJECT_FIELDS = ("id", "object_type", "object_id", "tag")
# Tags come from extras/tagged-objects when it holds at most this many assignments per object read:
# NetBox serialises an assignment there for ~1/4 of what ``tags`` costs inline per object (measured
# on NetBox 4.7), so the separate list pays off unless filters select a small part of NetBox.
TAGGED_OBJECTS_MAX_RATIO = 2

_COMMON_FIELDS = ("id", "name", "status", "role", "site", "tenant", "platform", "cluster", "primary_ip4",
                  "primary_ip6", "tags", "custom_fields", "config_context")
VM_FIELDS = _COMMON_FIELDS + ("device", "vcpus", "memory", "disk")
DEVICE_FIELDS = _COMMON_FIELDS

# Filter option -> NetBox query parameter (same name for both endpoints in NetBox 4.x).
FILTER_PARAMS = {"site": "site", "tag": "tag", "role": "role", "status": "status", "tenant": "tenant"}

DEFAULT_ROLE_GROUPS = {
    "router": "routers",
    "k3s-server": "k3s_servers",
    "k3s-agent": "k3s_agents",
    "web": "web",
    "ollama": "ollama",
    "proxmox-node": "proxmox_nodes",
}

# Host vars the plugin owns; a config context key with one of these names is dropped.
OWN_VARS = frozenset({"ansible_host", "primary_ip4", "primary_ip6", "netbox_id", "netbox_type", "site", "role",
                      "platform", "tenant", "cluster", "status", "netbox_tags", "custom_fields", "locus_vm"})
MAGIC_VARS = frozenset({"inventory_hostname", "inventory_hostname_short", "groups", "group_names", "hostvars",
                        "omit", "playbook_dir", "inventory_dir", "inventory_file", "play_hosts", "role_path",
                        "ansible_play_hosts", "environment", "vars"})

NIC_DEFAULTS = {"name": None, "bridge": "vmbr0", "vlan": None, "model": "virtio", "firewall": False,
                "ipv4": None, "gateway4": None, "ipv6": None, "gateway6": None}
LOCUS_VM_KEYS = ("name", "vmid", "vcpus", "memory", "disk", "cluster", "node", "template", "cloud_init", "network")

_NON_GROUP_CHARS = re.compile(r"[^A-Za-z0-9_]")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def group_name(prefix, value):
    """``site`` + ``dc-1`` -> ``site_dc_1`` (characters outside [A-Za-z0-9_] become ``_``, lower case)."""
    return _NON_GROUP_CHARS.sub("_", f"{prefix}_{value}").lower()


def valid_var_name(name):
    return (isinstance(name, str) and bool(_VAR_NAME.match(name)) and not keyword.iskeyword(name)
            and name not in ("True", "False", "None"))


def query_params(filters, fields):
    """Query parameters for a list endpoint: the filters (lists -> repeated params) and ``fields``."""
    params = {"fields": ",".join(fields)}
    for option, values in (filters or {}).items():
        if option not in FILTER_PARAMS:
            raise ValueError(f"filters: unknown filter {option!r} (known: {', '.join(sorted(FILTER_PARAMS))})")
        if values:
            params[FILTER_PARAMS[option]] = [str(v) for v in values]
    return params


def read_objects(client, devices=True, virtual_machines=True, filters=None, probes=None):
    """Read the inventory's objects from NetBox: ``({"devices": [...], "virtual_machines": [...]}, notes, probed)``.

    One round of cheap probes, in parallel, decides how tags are read: the object counts of every
    endpoint, the number of tag assignments of devices and VMs and of all tag assignments in
    ``extras/tagged-objects``, and the per-tag totals of ``extras/tags``. Tags come from
    ``extras/tagged-objects`` (one list of all assignments, far cheaper for NetBox to serialise than
    ``tags`` on every object) when the token may read it, it is complete (its total equals the sum of
    the tags' ``tagged_items``, which NetBox counts regardless of the token's permissions) and it is
    not much bigger than what is read; otherwise inline with the objects. Either way every object
    carries ``tags`` as the API returns them. Then all pages of all lists are fetched on one pool of
    ``client.max_workers``. ``notes`` says which way tags were read (for ``-v``). An error of an object
    endpoint raises NetBoxError naming it; never a partial result. ``probes`` (``{name: fn(client)}``) run
    in the probe round and finish before the first object page is requested; ``probed`` maps each name to
    its result or the NetBoxError it raised.
    """
    endpoints = {}  # the costliest list first: its pages are queued first
    if virtual_machines:
        endpoints["virtual_machines"] = (VM_ENDPOINT, VM_FIELDS)
    if devices:
        endpoints["devices"] = (DEVICE_ENDPOINT, DEVICE_FIELDS)
    lists = {name: (path, query_params(filters, fields)) for name, (path, fields) in endpoints.items()}
    tagged = (TAGGED_OBJECTS_ENDPOINT, {"object_type": [CONTENT_TYPES[name] for name in endpoints]})
    with ThreadPoolExecutor(max_workers=client.max_workers, thread_name_prefix="netbox") as pool:
        totals = pool.submit(_tag_totals, client)
        extra = {name: pool.submit(_probe, fn, client) for name, fn in (probes or {}).items()}
        counts = client.counts({**lists, "tagged_objects": tagged, "all_tagged_objects": (TAGGED_OBJECTS_ENDPOINT, {})},
                               pool)
        for name in lists:
            if isinstance(counts[name], NetBoxError):
                raise counts[name]
        assignments, everything = counts.pop("tagged_objects"), counts.pop("all_tagged_objects")
        use_tagged, notes = _tags_source(assignments, sum(counts.values()), everything, totals.result())
        if use_tagged:
            lists = {name: (path, query_params(filters, [f for f in fields if f != "tags"]))
                     for name, (path, fields) in endpoints.items()}
            lists["tagged_objects"] = (tagged[0], dict(tagged[1], fields=",".join(TAGGED_OBJECT_FIELDS)))
            counts["tagged_objects"] = assignments
        probed = {name: future.result() for name, future in extra.items()}
        objects = client.list_all(lists, counts=counts, pool=pool)
    if use_tagged:
        attach_tags(objects, objects.pop("tagged_objects"))
    return objects, notes, probed


def _probe(fn, client):
    try:
        return fn(client)
    except NetBoxError as exc:
        return exc


def _tag_totals(client):
    """Sum of ``tagged_items`` over all tags (or the NetBoxError of extras/tags)."""
    try:
        count, tags = client.first_page(TAGS_ENDPOINT, {"fields": "id,tagged_items"})
        if count > len(tags):  # more tags than fit one page
            tags = client.list_all({"tags": (TAGS_ENDPOINT, {"fields": "id,tagged_items"})})["tags"]
        return sum(int(tag.get("tagged_items") or 0) for tag in tags)
    except NetBoxError as exc:
        return exc


# 401/403: the token may not read it; 400/404: a NetBox without this endpoint or filter. Inline tags
# give the same result, only slower. Any other error fails like an error of any endpoint.
_TAGS_INLINE_STATUS = {401: "the token may not read it", 403: "the token may not read it",
                       400: "not on this NetBox", 404: "not on this NetBox"}


def _tags_source(assignments, objects, everything, totals):
    """(read tags from extras/tagged-objects?, note) from the probes.

    ``assignments``: count of tag assignments of the object types read; ``objects``: number of
    objects read; ``everything``: count of all tag assignments the token sees; ``totals``: sum of the
    tags' ``tagged_items``. Counts may be the NetBoxError of their endpoint instead.
    """
    for endpoint, value in ((TAGGED_OBJECTS_ENDPOINT, assignments), (TAGGED_OBJECTS_ENDPOINT, everything),
                            (TAGS_ENDPOINT, totals)):
        if isinstance(value, NetBoxError):
            if value.status not in _TAGS_INLINE_STATUS:
                raise value
            return False, (f"tags read inline: {endpoint} answered HTTP {value.status} "
                           f"({_TAGS_INLINE_STATUS[value.status]})")
    if everything != totals:
        return False, (f"tags read inline: {TAGGED_OBJECTS_ENDPOINT} shows {everything} of {totals} tag "
                       "assignments (an object permission with constraints?)")
    if assignments > TAGGED_OBJECTS_MAX_RATIO * objects:
        return False, (f"tags read inline: {TAGGED_OBJECTS_ENDPOINT} holds {assignments} assignments for "
                       f"{objects} objects read")
    return True, f"tags read from {TAGGED_OBJECTS_ENDPOINT} ({assignments} assignments)"


def attach_tags(objects, assignments):
    """Give every object of ``objects`` (name -> list) its ``tags`` from extras/tagged-objects items."""
    by_object = {}
    for item in assignments:
        by_object.setdefault((item.get("object_type"), item.get("object_id")), []).append(item.get("tag"))
    for name, objs in objects.items():
        content_type = CONTENT_TYPES[name]
        for obj in objs:
            obj["tags"] = by_object.get((content_type, obj.get("id")), [])


_FROZEN_BY_US = False


@contextlib.contextmanager
def gc_for_inventory():
    """Pause Python's cyclic garbage collector while the inventory is built, then freeze the result.

    Building it allocates about a million objects (JSON, host vars, Ansible's tagged copies of
    them) that all stay alive, and every few hundred allocations would trigger a collection,
    the bigger ones walking the whole, growing heap again and again (measured: 0.15 s of CPU,
    a quarter of decoding and building 2000 VMs). Reference counting still frees what becomes
    garbage; the previous state of the collector is restored afterwards.

    After a successful build everything is moved to the permanent generation (``gc.freeze()``,
    what the Python docs recommend before forking): the inventory lives as long as the process,
    and otherwise every full collection of the run - and the several at interpreter exit, 0.3 s
    for 2000 VMs - walks all of it again, and collections in Ansible's forked workers copy the
    pages they touch. When the inventory is built again in the same process (``meta:
    refresh_inventory``) the previous one is unfrozen and collected first, so it is not kept.
    """
    global _FROZEN_BY_US  # pylint: disable=global-statement
    enabled = gc.isenabled()
    if _FROZEN_BY_US:
        gc.unfreeze()
        gc.collect()
        _FROZEN_BY_US = False
    gc.disable()
    try:
        yield
        gc.freeze()
        _FROZEN_BY_US = True
    finally:
        if enabled:
            gc.enable()


def _nested(obj, key, attr):
    value = obj.get(key)
    if isinstance(value, dict):
        return value.get(attr)
    return None


def _address(ip):
    """'10.0.0.1/24' -> '10.0.0.1'; None stays None."""
    if isinstance(ip, dict) and ip.get("address"):
        return str(ip["address"]).split("/", 1)[0]
    return None


def _cidr(ip):
    if isinstance(ip, dict) and ip.get("address"):
        return str(ip["address"])
    return None


def _int_or_none(value, scale=1):
    if value is None or value == "":
        return None
    try:
        return int(math.ceil(float(value) / scale))
    except (TypeError, ValueError):
        return None


def describe(kind, obj):
    label = "virtual machine" if kind == "virtual_machine" else "device"
    return f"{label} {obj.get('name')!r} (id {obj.get('id')})"


class Builder:
    """Turns fetched objects into host records; collects warnings."""

    def __init__(self, role_groups=None, flatten_config_context=True, reserved_names=()):
        self.role_groups = dict(DEFAULT_ROLE_GROUPS if role_groups is None else role_groups)
        self.flatten = flatten_config_context
        # Names Ansible reserves for play keywords (``tags``, ``name``, ``port`` ...) plus ours.
        self.reserved = OWN_VARS | MAGIC_VARS | frozenset(reserved_names)
        self.warnings = []

    def build(self, devices, virtual_machines):
        """Return ``{"hosts": [...], "groups": [...], "warnings": [...]}``.

        Devices come before virtual machines, each by ascending id; a later object whose name
        is already taken is skipped with a warning, so the result does not depend on page order.
        """
        hosts = []
        seen = {}
        for kind, objs in (("device", devices or []), ("virtual_machine", virtual_machines or [])):
            for obj in sorted(objs, key=lambda o: o.get("id") or 0):
                name = obj.get("name")
                if not name:
                    self.warnings.append(f"{describe(kind, obj)} has no name: skipped")
                    continue
                if name in seen:
                    self.warnings.append(f"{describe(kind, obj)}: duplicate name, {seen[name]} already uses it: "
                                         "skipped")
                    continue
                seen[name] = describe(kind, obj)
                hosts.append(self.host(kind, obj))
        groups = sorted(set(self.role_groups.values()))
        return {"hosts": hosts, "groups": groups, "warnings": list(self.warnings)}

    def host(self, kind, obj):
        what = describe(kind, obj)
        ip4, ip6 = obj.get("primary_ip4"), obj.get("primary_ip6")
        tags = sorted({t.get("slug") for t in obj.get("tags") or [] if isinstance(t, dict) and t.get("slug")})
        status = obj.get("status")
        status = status.get("value") if isinstance(status, dict) else status
        hostvars = {
            "netbox_id": obj.get("id"),
            "netbox_type": kind,
            "primary_ip4": _address(ip4),
            "primary_ip6": _address(ip6),
            "site": _nested(obj, "site", "slug"),
            "role": _nested(obj, "role", "slug"),
            "platform": _nested(obj, "platform", "slug"),
            "tenant": _nested(obj, "tenant", "slug"),
            "cluster": _nested(obj, "cluster", "name"),
            "status": status,
            "netbox_tags": tags,
            "custom_fields": dict(obj.get("custom_fields") or {}),
        }
        address = hostvars["primary_ip4"] or hostvars["primary_ip6"]
        if address:
            hostvars["ansible_host"] = address
        else:
            self.warnings.append(f"{what} has no primary IP: ansible_host not set")

        context = obj.get("config_context")
        if context is None:
            context = {}
        if not isinstance(context, dict):
            self.warnings.append(f"{what}: config context is a {type(context).__name__}, not a mapping: ignored")
            context = {}
        ctx_vm = context.get("locus_vm")
        if self.flatten:
            for key, value in context.items():
                if key == "locus_vm":
                    continue
                if not valid_var_name(key):
                    self.warnings.append(f"{what}: config context key {key!r} is not a valid variable name: dropped")
                elif key in self.reserved:
                    self.warnings.append(f"{what}: config context key {key!r} is reserved by the inventory: dropped")
                else:
                    hostvars[key] = value
        else:
            hostvars["config_context"] = context
        if kind == "virtual_machine":
            hostvars["locus_vm"] = self.locus_vm(obj, ctx_vm, what)

        groups = []
        role = hostvars["role"]
        if role and role in self.role_groups:
            groups.append(self.role_groups[role])
        for prefix in ("site", "role", "platform", "cluster", "status"):
            if hostvars[prefix]:
                groups.append(group_name(prefix, hostvars[prefix]))
        groups.extend(group_name("tag", t) for t in tags)
        return {"name": obj["name"], "vars": hostvars, "groups": groups}

    def locus_vm(self, obj, ctx_vm, what):
        if ctx_vm is None:
            ctx_vm = {}
        if not isinstance(ctx_vm, dict):
            self.warnings.append(f"{what}: config context locus_vm is a {type(ctx_vm).__name__}, not a mapping: "
                                 "ignored")
            ctx_vm = {}
        unknown = sorted(set(ctx_vm) - set(LOCUS_VM_KEYS))
        if unknown:
            self.warnings.append(f"{what}: config context locus_vm has unknown keys {unknown}: ignored")
        cf = obj.get("custom_fields") or {}

        def first(*values):
            return next((v for v in values if v is not None), None)

        cloud_init = {}
        for source, label in ((ctx_vm.get("cloud_init"), "config context locus_vm.cloud_init"),
                              (cf.get("locus_cloud_init"), "custom field locus_cloud_init")):
            if source is None:
                continue
            if isinstance(source, dict):
                cloud_init.update(source)
            else:
                self.warnings.append(f"{what}: {label} is a {type(source).__name__}, not a mapping: ignored")
        return {
            "name": obj.get("name"),
            "vmid": first(_int_or_none(cf.get("locus_vmid")), _int_or_none(ctx_vm.get("vmid"))),
            "vcpus": first(_int_or_none(obj.get("vcpus")), _int_or_none(ctx_vm.get("vcpus"))),
            "memory": first(_int_or_none(obj.get("memory")), _int_or_none(ctx_vm.get("memory"))),
            "disk": first(_int_or_none(obj.get("disk"), 1024), _int_or_none(ctx_vm.get("disk"))),
            "cluster": first(_nested(obj, "cluster", "name"), ctx_vm.get("cluster")),
            "node": first(_nested(obj, "device", "name"), ctx_vm.get("node")),
            "template": first(cf.get("locus_template") or None, ctx_vm.get("template")),
            "cloud_init": cloud_init,
            "network": self._network(obj, ctx_vm.get("network"), what),
        }

    def _network(self, obj, ctx_network, what):
        nics = []
        if ctx_network is not None:
            if isinstance(ctx_network, list) and all(isinstance(n, dict) for n in ctx_network) and ctx_network:
                nics = [dict(n) for n in ctx_network]
            else:
                self.warnings.append(f"{what}: config context locus_vm.network is not a non-empty list of "
                                     "mappings: default net0 used")
        if not nics:
            nics = [{}]
        result = []
        for index, nic in enumerate(nics):
            unknown = sorted(set(nic) - set(NIC_DEFAULTS))
            if unknown:
                self.warnings.append(f"{what}: locus_vm.network[{index}] has unknown keys {unknown}: ignored")
            merged = {k: nic.get(k, default) for k, default in NIC_DEFAULTS.items()}
            merged["name"] = merged["name"] or f"net{index}"
            result.append(merged)
        # Addresses from the config context are checked; the primary IPs come from NetBox's IPAM.
        for index, nic in enumerate(result):
            for key in ("ipv4", "ipv6"):
                if nic[key] is not None:
                    try:
                        ipaddress.ip_interface(nic[key])
                    except ValueError:
                        self.warnings.append(f"{what}: locus_vm.network[{index}].{key} {nic[key]!r} is not an "
                                             "address/prefix: set to null")
                        nic[key] = None
        primary4, primary6 = _cidr(obj.get("primary_ip4")), _cidr(obj.get("primary_ip6"))
        if primary4:
            result[0]["ipv4"] = primary4
        if primary6:
            result[0]["ipv6"] = primary6
        return result
