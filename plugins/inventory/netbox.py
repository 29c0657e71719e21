# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: netbox
short_description: NetBox virtual machines and devices as a fast, loud inventory
version_added: 0.1.0
description:
  - Reads virtual machines and devices from NetBox 4.x with their primary IPs, roles, tags, sites,
    clusters, tenants, platforms, custom fields and rendered config contexts, and maps them onto the
    locus.infra data model (groups C(routers), C(k3s_servers), C(k3s_agents), C(web), C(ollama),
    C(proxmox_nodes), C(site_*), C(role_*), C(tag_*), C(cluster_*), C(platform_*), C(status_*);
    host vars C(ansible_host), C(locus_vm), the config context keys, ...). The full data model is in
    the collection's docs/netbox.md.
  - Fast on large installs, unlike netbox.netbox.nb_inventory, it downloads no OpenAPI schema, asks only
    for the fields it needs, reads the tags of all objects from one list of tag assignments
    (C(extras/tagged-objects)) instead of letting NetBox serialise them per object, reads C(count) first
    and then fetches all pages of all endpoints in parallel on a bounded pool, and decodes with
    C(json.loads). At C(-v) it prints how tags were read and requests, objects, bytes and seconds per
    endpoint.
  - The token needs view permission on the virtual machines and devices it reads. Without permission
    to read tag assignments (HTTP 401/403 from C(extras/tagged-objects)) the tags are read inline with
    the objects, with the same result.
  - Loud, an unreachable NetBox, HTTP 401/403 on the device or virtual machine endpoint, a 5xx answer
    on any endpoint after O(retries), or objects that change while pages are read raise an error
    naming the URL, endpoint and status, never an empty or partial inventory. Set C(unparsed_is_failed = True) in the C([inventory])
    section of ansible.cfg (or E(ANSIBLE_INVENTORY_UNPARSED_FAILED=True)) so that Ansible stops
    instead of only warning and going on with localhost.
  - Incremental, a build keeps a snapshot of the objects it read (0600, in O(state_dir)/netbox, per URL, token
    and options) and the next build reads only what NetBox's change log (C(core/object-changes)) says changed
    since; anything not local to single hosts, and any doubt about the change log, makes it a full build. At
    C(-v) it says which happened, why, and how many objects were fetched. See O(refresh) and docs/netbox.md.
  - Malformed objects (no primary IP, duplicate names, invalid config context keys) produce a warning
    naming the object and a documented, predictable result.
  - The configuration file name must end in C(netbox.yml) or C(netbox.yaml).
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
  - locus.infra.netbox.plugin
options:
  plugin:
    description: Marks the file as a configuration of this plugin.
    type: str
    required: true
    choices: [locus.infra.netbox]
  virtual_machines:
    description: Read virtual machines (C(virtualization/virtual-machines)).
    type: bool
    default: true
  devices:
    description: Read devices (C(dcim/devices)), e.g. the Proxmox VE nodes.
    type: bool
    default: true
  filters:
    description:
      - Server-side filters applied to both endpoints. Each is a list; several values of one filter
        are OR-ed (except O(filters.tag), where NetBox selects objects carrying all the given tags),
        different filters are AND-ed (NetBox semantics).
    type: dict
    default: {}
    suboptions:
      site:
        description: Site slugs.
        type: list
        elements: str
      tag:
        description: Tag slugs.
        type: list
        elements: str
      role:
        description: Device/VM role slugs.
        type: list
        elements: str
      status:
        description: Status values (C(active), C(planned), C(staged), C(offline), ...).
        type: list
        elements: str
      tenant:
        description: Tenant slugs.
        type: list
        elements: str
  role_groups:
    description:
      - Role slug to functional group. These groups always exist, even when empty.
    type: dict
    default:
      router: routers
      k3s-server: k3s_servers
      k3s-agent: k3s_agents
      web: web
      ollama: ollama
      proxmox-node: proxmox_nodes
  flatten_config_context:
    description:
      - Make every top-level key of the rendered config context a host var (C(bgp), C(nginx_sites), ...).
        When false, the whole context is the single host var C(config_context).
    type: bool
    default: true
  max_workers:
    description: Upper bound of parallel HTTP requests.
    type: int
    default: 4
  page_size:
    description:
      - Largest page to ask for. Pages are made smaller to keep all O(max_workers) busy (never below 100
        objects); a page that NetBox cuts short at a C(MAX_PAGE_SIZE) below this value is continued.
    type: int
    default: 1000
  refresh:
    description:
      - V(incremental) brings the snapshot of the last build up to date from NetBox's change log, reading
        only the virtual machines and devices that changed, and falls back to a full build (saying why at
        C(-v)) when there is no usable snapshot or a change is not local to single hosts (config contexts,
        tags, sites, roles, clusters, platforms, tenants, custom field definitions, ...), NetBox's version
        changed, or the change log has a gap, was pruned or cannot be read by the token. The result is the
        same as that of a full build.
      - V(full) reads everything (and writes a new snapshot).
      - The token needs view permission on C(core/object-changes), C(status) and C(extras/custom-fields)
        for a snapshot to be kept; without it every build is a full build.
    type: str
    choices: [incremental, full]
    default: incremental
  max_snapshot_age:
    description:
      - Seconds after a snapshot's full build (by NetBox's clock) from which the next build with
        O(refresh=incremental) is a full build again, saying so at C(-v). Incremental builds do not make a
        snapshot younger. This bounds how long a change that bypasses NetBox's change log (SQL, bulk C(update)
        calls in scripts or C(nbshell), a database restore) stays invisible.
      - V(0) sets no maximum age.
    type: int
    default: 3600
  state_dir:
    description:
      - The locus state directory; snapshots go to its subdirectory C(netbox) (created 0700, files 0600,
        one per URL, token and the options that shape what is read; the token itself is never stored).
    type: path
    default: ~/.local/state/locus
    env:
      - name: LOCUS_STATE_DIR
    ini:
      - section: locus
        key: state_dir
"""

EXAMPLES = r"""
# inventory/netbox.yml - url and token from NETBOX_API / NETBOX_TOKEN; only what is live at
# two sites, plus tenant groups and a composed var; cached for 5 minutes.
plugin: locus.infra.netbox
url: https://netbox.example.com
validate_certs: true
devices: false
filters:
  site: [dc1, lab]
  status: [active]
keyed_groups:
  - key: tenant
    prefix: tenant
compose:
  ansible_user: "'debian' if platform == 'debian-12' else 'root'"
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/locus/inventory
cache_timeout: 300
"""

import hashlib
import json
import time
from datetime import timedelta

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.vars.reserved import get_reserved_names

from ansible_collections.locus.infra.plugins.plugin_utils.netbox._netbox import NetBoxClient, NetBoxError, authorization_header
from ansible_collections.locus.infra.plugins.plugin_utils.netbox._netbox_inventory import (
    DEVICE_FIELDS,
    VM_FIELDS,
    Builder,
    gc_for_inventory,
    read_objects,
)
from ansible_collections.locus.infra.plugins.plugin_utils.netbox._netbox_refresh import (
    FullBuild,
    ServerClock,
    SnapshotStore,
    anchor,
    anchor_probes,
    incremental,
)

CACHE_FORMAT = 1


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "locus.infra.netbox"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("netbox.yml", "netbox.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        t0 = time.monotonic()
        with gc_for_inventory():
            self._load(path, cache)
        self.display.v(f"locus.infra.netbox: inventory built in {time.monotonic() - t0:.2f} s")

    def _load(self, path, cache):
        # Not in parse(): Ansible keeps the frame of parse() alive in a reference cycle (the
        # exception of its JSON-before-YAML attempt in _read_config_data), and with it its locals;
        # this frame and the host records go when it returns.
        fingerprint = self._fingerprint()
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache")
        data = None
        if use_cache and cache:
            try:
                cached = self._cache[cache_key]
            except KeyError:
                cached = None
            if isinstance(cached, dict) and cached.get("fingerprint") == fingerprint:
                data = cached["data"]
                self.display.v(f"locus.infra.netbox: {len(data['hosts'])} hosts from the inventory cache")
        if data is None:
            data = self._fetch()
            if use_cache:
                self._cache[cache_key] = {"fingerprint": fingerprint, "data": data}
        self._populate(data)

    def _fingerprint(self):
        """Options that shape the result; a cache entry written with other options is not used."""
        keys = ("url", "virtual_machines", "devices", "filters", "role_groups", "flatten_config_context")
        blob = json.dumps({k: self.get_option(k) for k in keys}, sort_keys=True, default=str)
        return f"{CACHE_FORMAT}:" + hashlib.sha256(blob.encode()).hexdigest()

    def _fetch(self):
        try:
            client = NetBoxClient(
                url=self.get_option("url"),
                token=self.get_option("token"),
                validate_certs=self.get_option("validate_certs"),
                timeout=self.get_option("timeout"),
                retries=self.get_option("retries"),
                max_workers=self.get_option("max_workers"),
                page_size=self.get_option("page_size"),
                user_agent="locus.infra.netbox inventory",
            )
            filters = {k: v for k, v in (self.get_option("filters") or {}).items() if v}
            if not (self.get_option("devices") or self.get_option("virtual_machines")):
                raise AnsibleParserError("locus.infra.netbox: both devices and virtual_machines are false: "
                                         "nothing to read")
            try:
                objects = self._read(client, filters)
            finally:
                for line in client.stats_lines():
                    self.display.v(f"locus.infra.netbox: {line}")
        except NetBoxError as exc:
            raise AnsibleParserError(f"locus.infra.netbox: {exc}") from None
        except ValueError as exc:
            raise AnsibleParserError(f"locus.infra.netbox: {exc}") from None
        builder = Builder(role_groups=self.get_option("role_groups"),
                          flatten_config_context=self.get_option("flatten_config_context"),
                          reserved_names=get_reserved_names())
        return builder.build(objects.get("devices"), objects.get("virtual_machines"))

    def _read(self, client, filters):
        """The raw objects: brought up to date from the snapshot when possible, else read in full."""
        shape = {"virtual_machines": self.get_option("virtual_machines"), "devices": self.get_option("devices"),
                 "filters": {k: sorted(map(str, v)) for k, v in filters.items()},
                 "fields": {"virtual_machines": VM_FIELDS, "devices": DEVICE_FIELDS}}
        store = SnapshotStore(self.get_option("state_dir"), client.url, authorization_header(client.token), shape)
        max_age = self.get_option("max_snapshot_age")
        try:
            if max_age is None or max_age < 0:
                raise OverflowError
            max_age = timedelta(seconds=max_age) if max_age else None
        except OverflowError:
            raise ValueError(f"max_snapshot_age must be a number of seconds >= 0 (0: no maximum), not {max_age}") from None
        if self.get_option("refresh") == "incremental":
            snapshot, reason = store.load()
            if snapshot is not None:
                try:
                    objects, meta, note = incremental(client, snapshot, filters, max_age=max_age)
                except FullBuild as exc:
                    reason = str(exc)
                else:
                    self.display.v(f"locus.infra.netbox: {note}")
                    if any(snapshot.get(key) != value for key, value in meta.items()):  # else nothing new to keep
                        self._save(store, {**meta, "objects": objects})
                    return objects
        else:
            reason = "refresh: full requested"
        clock = ServerClock(client.session)
        try:
            objects, notes, probed = read_objects(client, devices=self.get_option("devices"),
                                                  virtual_machines=self.get_option("virtual_machines"),
                                                  filters=filters, probes=anchor_probes(clock))
        finally:
            clock.close()
        self.display.v(f"locus.infra.netbox: {notes}")
        self.display.v(f"locus.infra.netbox: refresh: full ({reason}), "
                       f"{sum(len(v) for v in objects.values())} objects fetched")
        try:
            meta = anchor(probed, clock.date)
        except FullBuild as exc:
            self.display.v(f"locus.infra.netbox: {exc}")
        else:
            self._save(store, {**meta, "objects": objects})
        return objects

    def _save(self, store, snapshot):
        error = store.save(snapshot)
        if error:
            self.display.v(f"locus.infra.netbox: {error}")

    def _populate(self, data):
        for warning in data["warnings"]:
            self.display.warning(f"locus.infra.netbox: {warning}")
        inventory = self.inventory
        for group in data["groups"]:
            inventory.add_group(group)
        strict = self.get_option("strict")
        compose = self.get_option("compose")
        composed_groups = self.get_option("groups")
        keyed_groups = self.get_option("keyed_groups")
        for host in data["hosts"]:
            name = inventory.add_host(host["name"])
            hostvars = host["vars"]
            for key, value in hostvars.items():
                inventory.set_variable(name, key, value)
            for group in host["groups"]:
                inventory.add_child(inventory.add_group(group), name)
            if compose or composed_groups or keyed_groups:
                merged = inventory.get_host(name).get_vars()
                self._set_composite_vars(compose, merged, name, strict=strict)
                self._add_host_to_composed_groups(composed_groups, merged, name, strict=strict)
                self._add_host_to_keyed_groups(keyed_groups, merged, name, strict=strict)
