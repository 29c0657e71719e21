# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan and apply the state of one Proxmox VE VM (logic of locus.infra.proxmox_vm).

Private API of the collection (may change without notice).

Two parts, so that what is decided can be read apart from how it is done:

- ``VmPlanner`` (pure, no API calls) decides *what to do* from the validated spec
  (``_Spec``) and what the API returned: the VM meant (``find``), the clone source, the
  exact actions -- clone/create, the config keys that differ, disk grows, pool moves,
  power changes, migrate, delete -- with the changes shown in diff mode and the warnings.
- ``VmExecutor`` *does it*: it reads what exists (one ``GET /cluster/resources`` and one
  ``GET .../config`` for an existing VM), hands that to the planner and, unless in check
  mode, makes the API calls and waits for the Proxmox tasks inside the node's slot.  After
  a clone it reads the config once more and asks the planner again (new MACs and disk
  names are only known then).

Check mode returns the plan; diff mode shows the keys that change.
"""

from __future__ import annotations

import operator
import re

from ansible_collections.locus.infra.plugins.module_utils import _proxmox_config as cfg
from ansible_collections.locus.infra.plugins.module_utils._proxmox import (
    ProxmoxError,
    node_slot,
)
from ansible_collections.locus.infra.plugins.module_utils._retry import Backoff, retry

DEFAULT_CREATE_CONFIG = {"ostype": "l26", "scsihw": "virtio-scsi-single"}
# What PVE uses when a key is not in the config (qemu-server defaults).
PVE_DEFAULTS = {"cores": 1, "sockets": 1, "memory": 512}
MANAGED_KEYS_RE = re.compile(
    r"^(name|cores|sockets|vcpus|cpu|memory|balloon|onboot|agent|tags|description|net\d+|ipconfig\d+|ciuser|"
    r"cipassword|sshkeys|nameserver|searchdomain|citype|ciupgrade|(ide|sata|scsi|virtio)\d+)$"
)
ALREADY_EXISTS_RE = re.compile(r"(config file already exists|already exists on node|VM \d+ already exists)")
VMID_BACKOFF = Backoff(0.05, 0.4, jitter=(0.125, 1.0))  # short: the next free VMID is asked for at once
# Options a running VM takes at once; PVE parks the others in the pending section.
HOTPLUG_RE = re.compile(
    r"^(name|description|onboot|tags|protection|ciuser|cipassword|citype|ciupgrade|sshkeys|nameserver|"
    r"searchdomain|ipconfig\d+|net\d+|(ide|sata|scsi|virtio)\d+)$"
)


class VmSpecError(Exception):
    """The module arguments describe an impossible VM. The message names the option."""


class _Spec:
    """The module arguments turned into normalised desired values (validated once)."""

    def __init__(self, p):
        self.p = p
        self.name = p["name"]
        self._check_numbers(p)
        self.tags = None
        if p.get("tags") is not None:
            try:
                self.tags = cfg.check_tags(cfg.normalise_tags(p["tags"]))
            except cfg.ConfigValueError as exc:
                raise VmSpecError(f"tags: {exc}") from None
        ref = p.get("ref_tag")
        if ref and not cfg.REF_TAG_RE.match(ref):
            raise VmSpecError(f"ref_tag: {ref!r} is not a REF-tag (LOCUS-<ACTION><YYYYMMDD>-<SEQ>)")
        self.ref_tag = ref
        self.nics = _spec_nics(p.get("nics") or [])
        self.disks = _spec_disks(p.get("disks") or [])
        self.cloud_init = None
        if p.get("cloud_init") is not None:
            self._set_cloud_init(p["cloud_init"], {disk["slot"] for disk in self.disks})
        extra = p.get("extra_config") or {}
        for key in extra:
            if MANAGED_KEYS_RE.match(key):
                raise VmSpecError(f"extra_config.{key}: this key is managed by a module option; use that option")
        self.extra = {k: _scalar(v) for k, v in extra.items()}

    def _check_numbers(self, p):
        if not re.match(r"^(?=.{1,63}$)[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$",
                        self.name):
            raise VmSpecError(f"name: {self.name!r} is not a valid DNS name (letters, digits, '-', '.')")
        self.vmid = p.get("vmid")
        if self.vmid is not None and not 100 <= self.vmid <= 999999999:
            raise VmSpecError(f"vmid: {self.vmid} is outside 100..999999999")
        self.memory = p.get("memory")
        if self.memory is not None and self.memory < 16:
            raise VmSpecError(f"memory: {self.memory} MiB is below the minimum of 16 MiB")
        self.balloon = p.get("balloon")
        if self.balloon is not None and self.memory is not None and self.balloon > self.memory:
            raise VmSpecError(f"balloon: {self.balloon} MiB must not exceed memory ({self.memory} MiB)")
        for opt, low in (("cores", 1), ("sockets", 1), ("vcpus", 1)):
            if p.get(opt) is not None and p[opt] < low:
                raise VmSpecError(f"{opt}: {p[opt]} is below {low}")

    def _set_cloud_init(self, ci, slots):
        self.cloud_init = dict(ci)
        try:
            keys = cfg.normalise_ssh_keys(ci.get("ssh_keys")) if ci.get("ssh_keys") is not None else None
            self.ssh_keys = cfg.check_ssh_keys(keys) if keys is not None else None
        except cfg.ConfigValueError as exc:
            raise VmSpecError(f"cloud_init.ssh_keys: {exc}") from None
        self.ipconfig = []
        for i, item in enumerate(ci.get("ipconfig") or []):
            try:
                self.ipconfig.append(cfg.normalise_ipconfig(item) if item else None)
            except cfg.ConfigValueError as exc:
                raise VmSpecError(f"cloud_init.ipconfig[{i}]: {exc}") from None
        slot = ci.get("drive_slot") or "ide2"
        if not cfg.DISK_SLOT_RE.match(slot):
            raise VmSpecError(f"cloud_init.drive_slot: {slot!r} is not a drive slot")
        if slot in slots:
            raise VmSpecError(f"cloud_init.drive_slot: {slot} is also used by disks")
        self.ci_slot = slot

    # names of PVE parameters -> module options, for per-parameter API errors
    def option_names(self):
        names = {"name": "name", "cores": "cores", "sockets": "sockets", "vcpus": "vcpus", "cpu": "cpu_type",
                 "memory": "memory", "balloon": "balloon", "onboot": "onboot", "agent": "agent", "tags": "tags",
                 "description": "description", "ciuser": "cloud_init.user", "cipassword": "cloud_init.password",
                 "sshkeys": "cloud_init.ssh_keys", "nameserver": "cloud_init.nameserver",
                 "searchdomain": "cloud_init.searchdomain", "ciupgrade": "cloud_init.upgrade", "pool": "pool",
                 "storage": "storage", "newid": "vmid", "vmid": "vmid", "citype": "cloud_init.type"}
        for i in range(len(self.nics)):
            names[f"net{i}"] = f"nics[{i}]"
        for disk in self.disks:
            names[disk["slot"]] = f"disks[{disk['index']}]"
        if self.cloud_init is not None:
            for i in range(len(self.ipconfig)):
                names[f"ipconfig{i}"] = f"cloud_init.ipconfig[{i}]"
            names[self.ci_slot] = "cloud_init.drive_slot"
        for key in self.extra:
            names[key] = f"extra_config.{key}"
        return names


def _spec_nics(nics):
    out = []
    for i, nic in enumerate(nics):
        if nic.get("vlan") is not None and not 1 <= nic["vlan"] <= 4094:
            raise VmSpecError(f"nics[{i}].vlan: {nic['vlan']} is not a VLAN id (1..4094)")
        if nic.get("mtu") is not None and not 1 <= nic["mtu"] <= 65520:
            raise VmSpecError(f"nics[{i}].mtu: {nic['mtu']} is outside 1..65520")
        try:
            out.append(cfg.desired_net(nic))
        except cfg.ConfigValueError as exc:
            raise VmSpecError(f"nics[{i}]: {exc}") from None
    return out


def _spec_disks(disks):
    out = []
    slots = set()
    for i, disk in enumerate(disks):
        slot = disk.get("slot") or f"scsi{i}"
        if not cfg.DISK_SLOT_RE.match(slot):
            raise VmSpecError(f"disks[{i}].slot: {slot!r} is not a disk slot (scsi0-30, virtio0-15, sata0-5, ide0-3)")
        if slot in slots:
            raise VmSpecError(f"disks[{i}].slot: {slot} is used twice")
        slots.add(slot)
        try:
            size = cfg.parse_size(disk["size"], default_unit="G")
        except cfg.ConfigValueError as exc:
            raise VmSpecError(f"disks[{i}].size: {exc}") from None
        if size < cfg.GIB // 1024:
            raise VmSpecError(f"disks[{i}].size: {disk['size']!r} is too small")
        options = {k: cfg.drive_option_value(k, v) for k, v in (disk.get("options") or {}).items()}
        if "size" in options or "file" in options:
            raise VmSpecError(f"disks[{i}].options: set size with disks[{i}].size; the volume is not an option")
        out.append({"slot": slot, "size": size, "storage": disk.get("storage"), "options": options, "index": i})
    return out


def _applied(conf, updates):
    """The config after a PUT of ``updates`` (for the MACs, address and REF-tag we report)."""
    out = dict(conf)
    out.update(updates)
    return out


def _scalar(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _same_scalar(current, desired):
    if current is None:
        return desired is None
    cur, des = str(current).strip(), str(desired).strip()
    if cur == des:
        return True
    try:
        return int(cur) == int(des)
    except ValueError:
        return False


class Steps:
    """What a create or an update changes, in the order the executor carries it out."""

    def __init__(self, updates=None, resizes=None, pool_move=None, power=None, pending=None):
        self.updates = updates or {}      # config keys to PUT (or to POST with a create)
        self.resizes = resizes or []      # (slot, new bytes, old bytes), grow only
        self.pool_move = pool_move        # (old pool or None, new pool)
        self.power = power                # start | shutdown | reboot | None
        self.pending = pending or []      # updated keys a running VM only takes at its next restart


class VmPlanner:
    """What to do (pure): from the spec and what the API returned, the actions, the config
    keys to send, disk grows, pool moves and power changes.  It records the changes shown
    in diff mode and the warnings, and never calls the API."""

    def __init__(self, spec, params):
        self.spec = spec
        self.p = params
        self.actions = []
        self.changes = {}
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)

    def change(self, key, before, after):
        self.changes[key] = {"before": before, "after": after}

    # ----------------------------------------------------- what is there ---
    def find(self, resources):
        """The VM this spec names among ``GET /cluster/resources``, or None."""
        vms = [r for r in resources if r.get("type") == "qemu"]
        spec = self.spec
        if spec.vmid is not None:
            match = [r for r in vms if int(r["vmid"]) == spec.vmid]
            if match:
                vm = match[0]
                if vm.get("template"):
                    raise VmSpecError(f"vmid: {spec.vmid} is a template ({vm.get('name')}), not VM {spec.name}")
                if vm.get("name") not in (None, spec.name) and not str(vm.get("name", "")).startswith("VM "):
                    raise VmSpecError(f"vmid: VMID {spec.vmid} belongs to VM {vm.get('name')!r}, not {spec.name!r} "
                                      "(refusing to take over another VM: fix vmid or name)")
                return vm
            other = [r for r in vms if r.get("name") == spec.name and not r.get("template")]
            if other:
                raise VmSpecError(f"vmid: VM {spec.name} exists as VMID {other[0]['vmid']}, not {spec.vmid}")
            return None
        match = [r for r in vms if r.get("name") == spec.name and not r.get("template")]
        if len(match) > 1:
            ids = ", ".join(str(r["vmid"]) for r in match)
            raise VmSpecError(f"name: {len(match)} VMs are named {spec.name} (VMIDs {ids}); set vmid to pick one")
        return match[0] if match else None

    def source(self, resources, node=None):
        """The template (or VM) to clone from, or None when the VM is created empty."""
        source = str(self.p["clone"]["source"]) if self.p.get("clone") else None
        if source is None:
            return None
        vms = [r for r in resources if r.get("type") == "qemu"]
        if source.isdigit():
            match = [r for r in vms if int(r["vmid"]) == int(source)]
        else:
            match = [r for r in vms if r.get("name") == source and r.get("template")]
            if not match:
                match = [r for r in vms if r.get("name") == source]
        if not match:
            templates = sorted(str(r.get("name")) for r in vms if r.get("template"))
            raise VmSpecError(f"clone.source: no template or VM {source!r} in the cluster (templates: "
                              f"{', '.join(templates) or 'none'})")
        if len(match) > 1:
            # the same template on every node (local storage): take the one on the target node
            local = [r for r in match if r.get("node") == node]
            if len(local) == 1:
                return local[0]
            raise VmSpecError(f"clone.source: {len(match)} templates are named {source!r} (VMIDs "
                              f"{', '.join(str(r['vmid']) for r in match)}) and "
                              f"{'none' if not local else 'several'} on node {node}; give the VMID")
        return match[0]

    # ------------------------------------------------------ whole states ---
    def absent(self, vm, conf):
        """Stop (when running) and delete; returns whether a stop comes first."""
        running = vm.get("status") == "running"
        self.change("state", vm.get("status"), "absent")
        for key in sorted(k for k in conf if k != "digest"):
            if MANAGED_KEYS_RE.match(key):
                self.changes.setdefault(key, {"before": conf[key], "after": None})
        if running:
            self.actions.append("stop")
        self.actions.append("delete")
        return running

    def migration_target(self, vm):
        """The node to migrate to; checked before the cluster's nodes are read."""
        if not self.p.get("node"):
            raise VmSpecError("node: state=migrated needs the target node")
        if vm is None:
            raise VmSpecError(f"name: VM {self.spec.name} does not exist; state=migrated moves an existing VM")
        return self.p["node"]

    def migrate(self, vm, target, nodes):
        """Whether the VM moves (online when it runs, with its local disks); nothing else changes."""
        if target not in nodes:
            raise VmSpecError(f"node: {target} is not a node of the cluster (nodes: {', '.join(sorted(nodes))})")
        if vm["node"] == target:
            return False
        online = vm.get("status") == "running"
        self.actions.append(f"migrate from {vm['node']} to {target} ({'online' if online else 'offline'})")
        self.change("node", vm["node"], target)
        return True

    def create_node(self):
        node = self.p.get("node")
        if not node:
            raise VmSpecError(f"node: VM {self.spec.name} does not exist; node is required to create it")
        return node

    def create(self, vmid, source, source_conf):
        """Clone ``source`` (its config ``source_conf``) or create an empty VM as ``vmid``."""
        if source is not None:
            base = self.predicted_clone_config(source_conf, vmid)
            full = self.p["clone"].get("full", True)
            self.actions.append(f"clone {source.get('name') or source['vmid']} ({source['vmid']}) -> {vmid} "
                                f"({'full' if full else 'linked'})")
        else:
            base = {}
            self.actions.append(f"create {vmid}")
        self.change("vmid", None, vmid)
        updates, resizes = self.plan_config(base, creating=True)
        if self.p.get("pool"):
            self.change("pool", None, self.p["pool"])
        steps = Steps(updates, resizes, power=self.power_action("stopped"))
        if steps.power:
            self.change("status", None, "running")
        # a clone is configured after it exists; a new VM gets its config with the create
        self.actions.extend(self.describe(Steps(updates if source is not None else {}, resizes, power=steps.power)))
        return steps

    def made(self, vmid, cloned):
        """The VMID the clone or create really took (another run may have taken the first one)."""
        self.actions[0] = re.sub(r"-> \d+", f"-> {vmid}", self.actions[0]) if cloned else f"create {vmid}"
        self.changes["vmid"] = {"before": None, "after": vmid}

    def after_clone(self, conf, power):
        """Plan again on the real clone: new MACs and volume names are known now."""
        keep = {k: v for k, v in self.changes.items() if k in ("vmid", "pool", "status")}
        self.changes = {}
        updates, resizes = self.plan_config(conf, creating=True)
        self.changes.update(keep)
        steps = Steps(updates, resizes, power=power)
        self.actions = self.actions[:1] + self.describe(steps)
        return steps

    def update(self, vm, conf):
        """Bring an existing VM (``vm`` from cluster/resources, its ``conf``) to the spec."""
        spec, p = self.spec, self.p
        vmid, status = int(vm["vmid"]), vm.get("status")
        if conf.get("lock"):
            self.warn(f"VM {spec.name} ({vmid}) is locked ({conf['lock']}); changes wait for the lock (retried)")
        updates, resizes = self.plan_config(conf)
        pool_move = None
        if p.get("pool") and vm.get("pool") != p["pool"]:
            pool_move = (vm.get("pool"), p["pool"])
            self.change("pool", vm.get("pool"), p["pool"])
        power = self.power_action(status)
        if power:
            self.change("status", status, "stopped" if power == "shutdown" else "running")
        pending = sorted(k for k in updates if status == "running" and not HOTPLUG_RE.match(k))
        steps = Steps(updates, resizes, pool_move, power, pending)
        self.actions.extend(self.describe(steps))
        return steps

    def power_action(self, status):
        state = self.p["state"]
        if state == "started" and status != "running":
            return "start"
        if state == "stopped" and status == "running":
            return "shutdown"
        if state == "restarted":
            return "reboot" if status == "running" else "start"
        return None

    @staticmethod
    def describe(steps):
        actions = []
        if steps.updates:
            actions.append("update config: " + ", ".join(sorted(steps.updates)))
        for slot, new, old in steps.resizes:
            actions.append(f"resize {slot} {cfg.human_size(old)} -> {cfg.human_size(new)}")
        if steps.pool_move:
            actions.append(f"move to pool {steps.pool_move[1]}")
        if steps.power:
            actions.append(steps.power)
        return actions

    # ---------------------------------------------------- config keys ---
    def plan_config(self, current, creating=False):
        """Config keys to send so that ``current`` becomes what the spec says.

        Returns (updates, resizes); records changes for diff/changes output."""
        updates = {}
        resizes = []
        self._plan_scalars(current, creating, updates)
        self._plan_nics(current, updates)
        self._plan_disks(current, creating, updates, resizes)
        if self.spec.cloud_init is not None:
            self._plan_cloud_init(current, creating, updates)
        for key, value in self.spec.extra.items():
            self._scalar(updates, key, value, current.get(key), send=value, equal=_same_scalar)
        self._plan_description(current, updates, resizes)
        return updates, resizes

    def _scalar(self, updates, key, desired, current_value, send, equal=operator.eq):
        if desired is None:
            return
        if not equal(current_value, desired):
            updates[key] = send
            self.change(key, current_value, desired)

    def _plan_scalars(self, current, creating, updates):
        spec, p = self.spec, self.p
        self._scalar(updates, "name", spec.name, current.get("name"), spec.name)
        for key in ("cores", "sockets", "vcpus", "balloon"):
            value = p.get(key)
            cur = cfg.pve_int(current.get(key))
            if cur is None and not creating:
                cur = PVE_DEFAULTS.get(key)
            self._scalar(updates, key, value, cur, str(value) if value is not None else None)
        if spec.memory is not None:
            cur = cfg.memory_mib(current.get("memory"))
            if cur is None and not creating:
                cur = PVE_DEFAULTS["memory"]
            self._scalar(updates, "memory", spec.memory, cur, str(spec.memory))
        if p.get("cpu_type"):
            self._scalar(updates, "cpu", p["cpu_type"], cfg.cpu_type(current.get("cpu")),
                         cfg.set_cpu_type(current.get("cpu"), p["cpu_type"]))
        if p.get("onboot") is not None:
            cur = cfg.pve_bool(current.get("onboot")) if current.get("onboot") is not None else False
            self._scalar(updates, "onboot", p["onboot"], cur, "1" if p["onboot"] else "0")
        if p.get("agent") is not None:
            cur = cfg.agent_enabled(current.get("agent")) if current.get("agent") is not None else False
            self._scalar(updates, "agent", p["agent"], cur, cfg.set_agent_enabled(current.get("agent"), p["agent"]))
        if spec.tags is not None:
            cur = cfg.normalise_tags(current.get("tags"))
            if not cfg.tags_equal(cur, spec.tags):
                updates["tags"] = ";".join(spec.tags)
                self.change("tags", cur, spec.tags)

    def _plan_nics(self, current, updates):
        # keep the MAC PVE generated unless one is given
        for i, desired in enumerate(self.spec.nics):
            key = f"net{i}"
            cur_raw = current.get(key)
            cur = cfg.parse_net(cur_raw) if cur_raw else None
            merged = cfg.merge_net(cur, desired)
            if cur is None or not cfg.net_equal(cur, merged):
                updates[key] = cfg.print_net(merged)
                self.change(key, cur_raw, cfg.print_net(merged) if merged.get("macaddr") else
                            cfg.print_net(merged) + " (MAC generated by Proxmox)")

    def _plan_disks(self, current, creating, updates, resizes):
        # grow only
        spec = self.spec
        for disk in spec.disks:
            slot = disk["slot"]
            cur_raw = current.get(slot)
            label = f"disks[{disk['index']}] ({slot})"
            if cur_raw is None:
                storage = disk["storage"] or self.p.get("storage")
                if not storage:
                    raise VmSpecError(f"{label}: a new disk needs a storage (disks[{disk['index']}].storage or storage)")
                gib = disk["size"] / cfg.GIB
                new = {"file": f"{storage}:{gib:g}", **disk["options"]}
                updates[slot] = cfg.print_drive(new)
                self.change(slot, None, f"{storage}: new {cfg.human_size(disk['size'])} disk")
                continue
            if cfg.drive_is_cdrom(cur_raw):
                raise VmSpecError(f"{label}: slot {slot} of VM {spec.name} holds a CD-ROM/cloud-init drive ({cur_raw})")
            size = cfg.drive_size(cur_raw)
            if disk["size"] < size:
                raise VmSpecError(
                    f"{label}: disk {slot} of VM {spec.name} is {cfg.human_size(size)}; requested "
                    f"{cfg.human_size(disk['size'])}: shrinking a disk is not supported (grow only) -- nothing was changed")
            if disk["size"] > size:
                resizes.append((slot, disk["size"], size))
                self.change(f"{slot}.size", cfg.human_size(size), cfg.human_size(disk["size"]))
            cur_drive = cfg.parse_drive(cur_raw)
            if disk["storage"] and cur_drive.get("file", "").split(":")[0] != disk["storage"] and not creating:
                self.warn(f"{label}: disk {slot} is on storage {cur_drive['file'].split(':')[0]}, not "
                          f"{disk['storage']}; moving disks is not done by this module")
            opts = {k: v for k, v in disk["options"].items() if cfg.drive_option_value(k, cur_drive.get(k, "")) != v}
            if opts:
                merged = dict(cur_drive)
                merged.update(disk["options"])
                updates[slot] = cfg.print_drive(merged)
                shown = dict(merged, size=cfg.format_size(max(disk["size"], size)))
                self.change(slot, cur_raw, cfg.print_drive(shown))

    def _plan_cloud_init(self, current, creating, updates):
        spec = self.spec
        ci = spec.cloud_init
        if ci.get("user") is not None:
            self._scalar(updates, "ciuser", ci["user"], current.get("ciuser"), ci["user"])
        if ci.get("password") is not None and (creating or ci.get("password_update") == "always"):
            updates["cipassword"] = ci["password"]
            self.change("cipassword", "********" if current.get("cipassword") else None, "********")
        if spec.ssh_keys is not None:
            cur = cfg.normalise_ssh_keys(current.get("sshkeys"))
            if cur != spec.ssh_keys:
                updates["sshkeys"] = cfg.encode_ssh_keys(spec.ssh_keys)
                self.change("sshkeys", cur or None, spec.ssh_keys)
        for i, desired in enumerate(spec.ipconfig):
            if desired is None:
                continue
            key = f"ipconfig{i}"
            cur = cfg.normalise_ipconfig(current.get(key)) if current.get(key) else None
            if cur != desired:
                updates[key] = cfg.print_ipconfig(desired)
                self.change(key, current.get(key), cfg.print_ipconfig(desired))
        for key in ("nameserver", "searchdomain"):
            if ci.get(key) is not None:
                desired = cfg.split_list(ci[key])
                cur = cfg.split_list(current.get(key))
                if cur != desired:
                    updates[key] = " ".join(desired)
                    self.change(key, " ".join(cur) or None, " ".join(desired))
        if ci.get("type") is not None:
            self._scalar(updates, "citype", ci["type"], current.get("citype"), ci["type"])
        if ci.get("upgrade") is not None:
            cur = cfg.pve_bool(current.get("ciupgrade")) if current.get("ciupgrade") is not None else None
            self._scalar(updates, "ciupgrade", ci["upgrade"], cur, "1" if ci["upgrade"] else "0")
        has_drive = any(cfg.DISK_SLOT_RE.match(k) and cfg.drive_is_cloudinit(v) for k, v in current.items())
        if not has_drive:
            slot = spec.ci_slot
            if current.get(slot):
                raise VmSpecError(f"cloud_init.drive_slot: {slot} of VM {spec.name} is in use ({current[slot]}); "
                                  "pick a free slot for the cloud-init drive")
            storage = ci.get("storage") or self.p.get("storage") or _first_disk_storage(current)
            if not storage:
                raise VmSpecError("cloud_init: the VM has no cloud-init drive and no storage is known for one "
                                  "(set cloud_init.storage or storage)")
            updates[slot] = f"{storage}:cloudinit"
            self.change(slot, None, f"{storage}:cloudinit (cloud-init drive)")

    def _plan_description(self, current, updates, resizes):
        # the text is compared; the REF-tag line moves only with a real change
        spec = self.spec
        text, cur_tag = cfg.split_ref(current.get("description"))
        desired_text = self.p.get("description")
        want_text = text if desired_text is None else desired_text.rstrip()
        if desired_text is not None and want_text != text:
            self.change("description", text or None, want_text)
        text_changed = desired_text is not None and want_text != text
        new_ref = bool((updates or resizes) and spec.ref_tag and spec.ref_tag != cur_tag)
        if text_changed or new_ref:
            new_tag = spec.ref_tag or cur_tag
            new = cfg.join_ref(want_text, new_tag)
            if new != (current.get("description") or "").rstrip():
                updates["description"] = new
                if spec.ref_tag and spec.ref_tag != cur_tag:
                    self.change("ref_tag", cur_tag, spec.ref_tag)

    def predicted_clone_config(self, source_conf, vmid):
        """What PVE's clone produces (qemu-server clone_vm): same config, new MACs, name set,
        template flag and lock gone, full clones on ``storage``."""
        conf = {}
        storage = self.p.get("storage") if self.p["clone"].get("full", True) else None
        for key, value in source_conf.items():
            if key in ("template", "lock", "digest", "parent", "snaptime", "vmstate") or key.startswith("unused"):
                continue
            if re.match(r"^net\d+$", key):
                net = cfg.parse_net(value)
                net.pop("macaddr", None)
                conf[key] = cfg.print_net(net)
            elif cfg.DISK_SLOT_RE.match(key) and not cfg.drive_is_cdrom(value):
                drive = cfg.parse_drive(value)
                sid = storage or drive["file"].split(":")[0]
                drive["file"] = f"{sid}:vm-{vmid}-disk-{key}"
                conf[key] = cfg.print_drive(drive)
            else:
                conf[key] = value
        conf["name"] = self.spec.name
        return conf


def _first_disk_storage(conf):
    for key in sorted(conf):
        value = conf[key]
        if cfg.DISK_SLOT_RE.match(key) and not cfg.drive_is_cdrom(value) and ":" in cfg.parse_drive(value)["file"]:
            return cfg.parse_drive(value)["file"].split(":")[0]
    return None


class VmExecutor:
    """Carries out what the planner decides: reads the cluster, makes the API calls and
    waits for the Proxmox tasks, one node slot at a time. Check mode stops after planning."""

    def __init__(self, client, params, check_mode=False, diff_mode=False):
        self.client = client
        self.p = params
        self.check_mode = check_mode
        self.diff_mode = diff_mode
        self.spec = _Spec(params)
        self.names = self.spec.option_names()
        self.plan = VmPlanner(self.spec, params)
        self.tasks = []
        self.timeout = params.get("wait_timeout") or 600
        self.result = {"changed": False, "name": self.spec.name, "created": False}

    # what the module reports, also when an API error stops the run half-way
    @property
    def actions(self):
        return self.plan.actions

    @property
    def warnings(self):
        return self.plan.warnings

    def run(self):
        resources = self.client.resources("vm")
        vm = self.plan.find(resources)
        if self.p["state"] == "absent":
            return self._absent(vm)
        if self.p["state"] == "migrated":
            return self._migrate(vm)
        if vm is None:
            return self._create(resources)
        return self._update(vm)

    def run_task(self, method, path, params=None, what="task", timeout=None):
        res = self.client.run_task(method, path, params, timeout=timeout or self.timeout, what=what, names=self.names)
        if res is not None:
            self.tasks.append({"what": what, **res.as_dict()})
            for line in res.warnings:
                self.plan.warn(f"{what}: {line}")
        return res

    def _config(self, node, vmid):
        return self.client.request("GET", f"nodes/{node}/qemu/{vmid}/config")

    def _slot(self, node):
        key = f"{self.p['api_host']}-{node}"
        limit = self.p.get("node_concurrency") or 0
        return node_slot(key, limit, timeout=max(self.timeout, 60) * 4)

    # ------------------------------------------------------------- states ---
    def _absent(self, vm):
        if vm is None:
            return self._finish(None, None, "absent")
        vmid, node = int(vm["vmid"]), vm["node"]
        conf = self._config(node, vmid)
        stop = self.plan.absent(vm, conf)
        if self.check_mode:
            return self._finish(vmid, node, vm.get("status"), conf)
        with self._slot(node):
            if stop:
                self.run_task("POST", f"nodes/{node}/qemu/{vmid}/status/stop", {}, what=f"stop of VM {vmid}")
            params = {"destroy-unreferenced-disks": 1}
            if self.p.get("purge"):
                params["purge"] = 1
            self.run_task("DELETE", f"nodes/{node}/qemu/{vmid}", params, what=f"delete of VM {vmid}")
        return self._finish(vmid, node, "absent", conf)

    def _migrate(self, vm):
        target = self.plan.migration_target(vm)
        vmid, node, status = int(vm["vmid"]), vm["node"], vm.get("status")
        nodes = {r.get("node") for r in client_nodes(self.client)}
        if not self.plan.migrate(vm, target, nodes) or self.check_mode:
            return self._finish(vmid, node, status)
        params = {"target": target, "with-local-disks": 1}
        if status == "running":
            params["online"] = 1
        with self._slot(target):
            self.run_task("POST", f"nodes/{node}/qemu/{vmid}/migrate", params,
                          what=f"migration of VM {vmid} ({self.spec.name}) to {target}")
        return self._finish(vmid, target, status)

    def _create(self, resources):
        client, spec = self.client, self.spec
        node = self.plan.create_node()
        nodes = {r.get("node") for r in resources if r.get("node")}
        source = self.plan.source(resources, node)
        auto_vmid = spec.vmid is None
        vmid = spec.vmid if not auto_vmid else client.nextid()
        source_conf = self._config(source["node"], source["vmid"]) if source is not None else None
        self.result["created"] = True
        steps = self.plan.create(vmid, source, source_conf)
        if self.check_mode:
            self.result["vmid_predicted"] = auto_vmid
            if nodes and node not in nodes and source is None:
                self.plan.warn(f"node {node} is not part of the cluster (nodes: {', '.join(sorted(nodes))})")
            return self._finish(vmid, node, "absent", None)

        with self._slot(node):
            tries = []

            def make():
                nonlocal vmid
                if tries:  # another run took that VMID in the meantime: ask for the next free one
                    vmid = client.nextid()
                tries.append(vmid)
                if source is not None:
                    self._clone(source, vmid, node)
                else:
                    self._create_new(vmid, node, steps.updates)

            retry(make, retries=5 if auto_vmid else 0, backoff=VMID_BACKOFF,
                  retryable=lambda exc: (isinstance(exc, ProxmoxError)
                                         and ALREADY_EXISTS_RE.search(str(exc.reason or exc.msg)) is not None))
            conf = self._config(node, vmid)
            if source is not None:
                steps = self.plan.after_clone(conf, steps.power)
                conf = self._apply_config(node, vmid, conf, steps)
            status = "stopped"
            if steps.power:
                self.run_task("POST", f"nodes/{node}/qemu/{vmid}/status/start", {}, what=f"start of VM {vmid}")
                status = "running"
        self.result["vmid_predicted"] = False
        return self._finish(vmid, node, status, conf)

    def _clone(self, source, vmid, node):
        p = self.p
        full = p["clone"].get("full", True)
        params = {"newid": vmid, "name": self.spec.name, "full": 1 if full else 0}
        if full and p.get("storage"):
            params["storage"] = p["storage"]
        if p.get("pool"):
            params["pool"] = p["pool"]
        if source["node"] != node:
            params["target"] = node
        self.run_task("POST", f"nodes/{source['node']}/qemu/{source['vmid']}/clone", params,
                      what=f"clone of {source.get('name') or source['vmid']} to VM {vmid} ({self.spec.name})")
        self.plan.made(vmid, cloned=True)

    def _create_new(self, vmid, node, updates):
        params = dict(DEFAULT_CREATE_CONFIG)
        params.update(updates)
        params["vmid"] = vmid
        if self.p.get("pool"):
            params["pool"] = self.p["pool"]
        if self.p.get("storage"):
            params["storage"] = self.p["storage"]
        self.run_task("POST", f"nodes/{node}/qemu", params, what=f"create of VM {vmid} ({self.spec.name})")
        self.plan.made(vmid, cloned=False)

    def _apply_config(self, node, vmid, conf, steps):
        """PUT the config keys, then grow the disks; returns the config as it is now."""
        if steps.updates:
            self.client.request("PUT", f"nodes/{node}/qemu/{vmid}/config", steps.updates, names=self.names)
        for slot, new, _old in steps.resizes:
            self.run_task("PUT", f"nodes/{node}/qemu/{vmid}/resize", {"disk": slot, "size": cfg.format_size(new)},
                          what=f"resize of {slot} of VM {vmid}")
        return _applied(conf, steps.updates)

    def _update(self, vm):
        spec, p = self.spec, self.p
        vmid, node, status = int(vm["vmid"]), vm["node"], vm.get("status")
        if p.get("node") and p["node"] != node:
            self.plan.warn(f"VM {spec.name} ({vmid}) runs on node {node}, not {p['node']}; it was managed where it is "
                           "(state: migrated moves it)")
        conf = self._config(node, vmid)
        steps = self.plan.update(vm, conf)
        if self.check_mode:
            if steps.pending and steps.power not in ("reboot",):
                self.result["pending"] = steps.pending
                self.plan.warn(f"VM {spec.name} is running: {', '.join(steps.pending)} would apply at its next restart")
            return self._finish(vmid, node, status, conf)
        if not self.plan.actions:
            return self._finish(vmid, node, status, conf)
        with self._slot(node):
            conf = self._apply_config(node, vmid, conf, steps)
            if steps.pool_move:
                self._move_pool(vmid, *steps.pool_move)
            status = self._power(node, vmid, status, steps.power)
            if steps.pending and steps.power != "reboot" and status == "running":
                self._report_pending(node, vmid)
        return self._finish(vmid, node, status, conf)

    def _move_pool(self, vmid, old, new):
        if old:
            self.client.request("PUT", f"pools/{old}", {"vms": str(vmid), "delete": 1})
        self.client.request("PUT", f"pools/{new}", {"vms": str(vmid)})

    def _power(self, node, vmid, status, power):
        """Start, reboot or shut down; returns the status afterwards."""
        if power == "start":
            self.run_task("POST", f"nodes/{node}/qemu/{vmid}/status/start", {}, what=f"start of VM {vmid}")
            return "running"
        if power == "reboot":
            self.run_task("POST", f"nodes/{node}/qemu/{vmid}/status/reboot", {}, what=f"reboot of VM {vmid}")
        elif power == "shutdown":
            timeout = self.p.get("shutdown_timeout") or 120
            params = {"timeout": timeout}
            if self.p.get("force_stop"):
                params["forceStop"] = 1
            self.run_task("POST", f"nodes/{node}/qemu/{vmid}/status/shutdown", params,
                          what=f"shutdown of VM {vmid}", timeout=self.timeout + timeout)
            return "stopped"
        return status

    def _report_pending(self, node, vmid):
        still = [item["key"] for item in self.client.request("GET", f"nodes/{node}/qemu/{vmid}/pending")
                 if "pending" in item or item.get("delete")]
        if still:
            self.result["pending"] = sorted(still)
            self.plan.warn(f"VM {self.spec.name} is running: {', '.join(sorted(still))} apply at its next restart "
                           "(state: restarted applies them now)")

    # ------------------------------------------------------------ result ---
    def _finish(self, vmid, node, status, conf=None):
        res = self.result
        res.update(vmid=vmid, node=node, status=status, actions=self.plan.actions, changes=self.plan.changes,
                   tasks=self.tasks)
        res["changed"] = bool(self.plan.actions)
        if conf is not None:
            macs = {}
            for key, value in conf.items():
                if re.match(r"^net\d+$", key):
                    mac = cfg.parse_net(value).get("macaddr")
                    if mac:
                        macs[key] = mac
            res["macs"] = macs
            addr = cfg.ipconfig_address(conf.get("ipconfig0")) if conf.get("ipconfig0") else None
            res["ip_address"] = addr
            res["ref_tag"] = cfg.split_ref(conf.get("description"))[1]
        if self.diff_mode:
            res["diff"] = self._diff()
        return res

    def _diff(self):
        before, after = {}, {}
        for key, change in self.plan.changes.items():
            before[key] = cfg.display_value(key, change["before"])
            after[key] = cfg.display_value(key, change["after"])
        return {"before": before, "after": after}


def client_nodes(client):
    """The cluster's online nodes (``GET /cluster/resources?type=node``)."""
    return [r for r in client.resources("node") if r.get("type") == "node" and r.get("status") == "online"]


RECORD_INFO_KEYS = {"name", "cluster", "full_clone"}
RECORD_SCALARS = {"vmid": "vmid", "node": "node", "memory": "memory", "balloon": "balloon", "storage": "storage",
                  "pool": "pool", "onboot": "onboot", "agent": "agent", "description": "description",
                  "cpu_type": "cpu_type", "cpu": "cpu_type", "sockets": "sockets", "cores": "cores", "tags": "tags"}
RECORD_KINDS = {"vmid": int, "memory": int, "balloon": int, "sockets": int, "cores": int, "onboot": bool, "agent": bool}
NIC_KEYS = ("bridge", "vlan", "model", "firewall", "mac", "mtu", "rate", "queues", "link_down")
RECORD_CLOUD_INIT = {"user": "user", "password": "password", "ssh_keys": "ssh_keys", "nameserver": "nameserver",
                     "nameservers": "nameserver", "searchdomain": "searchdomain", "searchdomains": "searchdomain",
                     "ipconfig": "ipconfig", "upgrade": "upgrade", "type": "type", "storage": "storage",
                     "drive_slot": "drive_slot"}


def _coerce(where, value, kind):
    try:
        if kind is int:
            return int(value)
        if kind is bool:
            return cfg.pve_bool(value)
    except (TypeError, ValueError):
        raise VmSpecError(f"{where}: {value!r} is not {'an integer' if kind is int else 'a boolean'}") from None
    return value


def apply_locus_vm(params):
    """Fill module options from ``locus_vm``, the NetBox data-model record (docs/netbox.md).

    Options given explicitly win over the record; keys that are null in the record are
    ignored. Returns warnings for record keys this module does not use."""
    record = params.get("locus_vm")
    if not record:
        return []
    if not isinstance(record, dict):
        raise VmSpecError(f"locus_vm: expected a dict (the NetBox locus_vm record), got {type(record).__name__}")
    if record.get("name") not in (None, params["name"]):
        raise VmSpecError(f"locus_vm.name: {record['name']!r} differs from name {params['name']!r}")
    for key, option in RECORD_SCALARS.items():
        if record.get(key) is not None and params.get(option) is None:
            params[option] = _coerce(f"locus_vm.{key}", record[key], RECORD_KINDS.get(option))
    if record.get("vcpus") is not None and params.get("cores") is None:
        sockets = params.get("sockets") or 1
        params["cores"] = max(1, -(-_coerce("locus_vm.vcpus", record["vcpus"], int) // sockets))
    if record.get("template") is not None and params.get("clone") is None:
        full = record.get("full_clone")
        params["clone"] = {"source": str(record["template"]), "full": True if full is None else bool(full)}
    disk = record.get("disk", record.get("disks"))
    if disk is not None and params.get("disks") is None:
        items = disk if isinstance(disk, list) else [disk]
        params["disks"] = [dict(d) if isinstance(d, dict) else {"size": d} for d in items]
        for d in params["disks"]:
            d.setdefault("slot", None)
            d.setdefault("storage", None)
            d.setdefault("options", None)
    network = record.get("network") or []
    if network and params.get("nics") is None:
        params["nics"] = _record_nics(network)
    warnings = _record_cloud_init(params, record.get("cloud_init") or {}, _record_ipconfig(network))
    used = set(RECORD_SCALARS) | RECORD_INFO_KEYS | {"vcpus", "template", "disk", "disks", "network", "cloud_init"}
    for key in sorted(set(record) - used):
        warnings.append(f"locus_vm.{key} is not used by proxmox_vm")
    return warnings


def _record_nics(network):
    nics = []
    for i, nic in enumerate(network):
        if not isinstance(nic, dict):
            raise VmSpecError(f"locus_vm.network[{i}]: expected a dict, got {nic!r}")
        item = {key: nic.get(key) for key in NIC_KEYS}
        for key, kind in (("vlan", int), ("mtu", int), ("queues", int), ("firewall", bool), ("link_down", bool)):
            if item[key] is not None:
                item[key] = _coerce(f"locus_vm.network[{i}].{key}", item[key], kind)
        item["mac"] = item["mac"] or nic.get("mac_address")
        item["bridge"] = item["bridge"] or "vmbr0"
        item["model"] = item["model"] or "virtio"
        nics.append(item)
    return nics


def _record_ipconfig(network):
    """cloud-init ipconfig per NIC from its addresses (DHCP on the first NIC when it has none)."""
    derived = []
    for i, nic in enumerate(network):
        ips = {"ip": nic.get("ipv4"), "gw": nic.get("gateway4"), "ip6": nic.get("ipv6"), "gw6": nic.get("gateway6")}
        ips = {k: v for k, v in ips.items() if v}
        if not ips.get("ip") and not ips.get("ip6"):
            ips = {"ip": "dhcp"} if i == 0 else None
        derived.append(ips)
    while derived and derived[-1] is None:
        derived.pop()
    return derived


def _record_cloud_init(params, ci_record, derived_ipconfig):
    """Fill ``cloud_init`` from the record; returns warnings for the keys it does not use."""
    warnings = []
    if not ci_record and not any(derived_ipconfig):
        return warnings
    ci = dict(params.get("cloud_init") or {})
    for key, value in ci_record.items():
        if key not in RECORD_CLOUD_INIT:
            warnings.append(f"locus_vm.cloud_init.{key} is not used by proxmox_vm")
            continue
        option = RECORD_CLOUD_INIT[key]
        if value is None or ci.get(option) is not None:
            continue
        if option in ("nameserver", "searchdomain", "ssh_keys") and isinstance(value, str):
            value = value.split() if option != "ssh_keys" else [line for line in value.splitlines() if line]
        ci[option] = value
    if ci.get("ipconfig") is None and any(derived_ipconfig):
        ci["ipconfig"] = derived_ipconfig
    ci.setdefault("password_update", "on_create")
    ci.setdefault("drive_slot", "ide2")
    params["cloud_init"] = ci
    return warnings


def run(client, params, check_mode=False, diff_mode=False):
    """Entry point for the module: ``(result, warnings)``; raises VmSpecError/ProxmoxError.

    A raised error carries ``partial`` (actions planned, tasks that ran) so the module can
    tell the user what already happened."""
    params = dict(params)
    record_warnings = apply_locus_vm(params)
    executor = VmExecutor(client, params, check_mode=check_mode, diff_mode=diff_mode)
    executor.warnings.extend(record_warnings)
    try:
        result = executor.run()
    except ProxmoxError as exc:
        exc.partial = {"actions": executor.actions, "tasks": executor.tasks, "changed": bool(executor.tasks),
                       "warnings": executor.warnings}
        raise
    result["api_requests"] = client.requests
    if client.retried:
        result["retries"] = client.retried
    return result, executor.warnings
