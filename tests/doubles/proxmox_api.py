"""A test DOUBLE of the Proxmox VE HTTP API (``/api2/json``) -- not Proxmox VE.

Stateful, threaded HTTPS server on loopback that answers like a PVE 8/9 cluster for the
endpoints locus.infra (and community.proxmox.proxmox_kvm, for the benchmark) use.  It is
*faithful* where a client can tell the difference:

* long operations (clone, create, start, shutdown, stop, reboot, destroy, resize) return a
  UPID at once and run as asynchronous tasks that take (configurable) wall-clock time,
  write a task log line by line and end with ``TASK OK`` / ``TASK WARNINGS: n`` /
  ``TASK ERROR: msg``; ``exitstatus`` is derived from that last line like
  ``PVE::Tools::upid_read_status`` does;
* a clone holds ``lock: clone`` on the new VM while it runs; a failed clone removes the
  half-made VM ("clone failed: ..."), like qemu-server does;
* config locks (``VM 101 is locked (backup)``) and config-file flocks (``can't lock file
  '/var/lock/qemu-server/lock-101.conf' - got timeout`` after waiting) as PVE raises them;
* parameter verification: HTTP 400 ``Parameter verification failed.`` with a
  per-parameter ``errors`` object; other failures: HTTP 500 with the message as reason
  phrase and in ``message`` (pve-http-server's JSON formatter);
* config values typed like the config parser returns them (integers and 0/1 booleans as
  JSON numbers, ``memory`` as a string since 8.1), ``sshkeys`` must be URL-encoded and are
  stored as sent, tags normalised with ``;``, new NICs get a ``BC:24:11`` MAC, clones get
  new MACs, description trailing whitespace is stripped (config-file round trip), sizes
  printed like ``PVE::JSONSchema::format_size``; config changes to a running VM that
  cannot be hot-plugged go to the pending section (``GET config`` returns pending values
  applied unless ``current=1``);
* ``cluster/nextid`` returns the next free id as a *string* and reserves nothing (so
  parallel callers race, as on a real cluster).

Endpoint shapes verified against the official schema and sources (read through the
``search`` tool, 2025): qemu-server ``src/PVE/API2/Qemu.pm`` (create_vm, vm_config,
update_vm/update_vm_async + ``$update_vm_api``, clone_vm incl. ``$load_and_check``,
resize_vm -- a worker returning a UPID since PVE 8, destroy_vm, vm_start/vm_stop/
vm_shutdown/vm_reboot, vmlist), pve-manager ``PVE/API2/Tasks.pm`` (read_task_status with
``exitstatus``, read_task_log ``[{n, t}]`` with ``start``/``limit``; pve-common
``dump_logfile``: ``limit=0`` reads to the end, default 50, "no content" line),
pve-http-server ``Formatter/Standard.pm`` (``{data, errors, message}``), proxmox-rs
``pve-api-types`` (generated client: paths and return types of version, nodes,
nodes/{node}/status, nodes/{node}/storage, nodes/{node}/qemu, qemu status/current,
cluster/resources, tasks status/log, start/stop/shutdown returning ``PveUpid``).

Backup jobs (``/cluster/backup``) and ``vzdump`` follow pve-manager ``PVE/API2/Backup.pm``
(index/create_job/read_job/update_job/delete_job: ``raise_param_exc({id => "No such job
'$id'"})``, ``exclude`` implies ``all``, an update giving ``vmid`` drops ``all``/``exclude``/
``pool``, ``delete`` of unknown options refused), ``PVE/VZDump.pm`` ``verify_vzdump_parameters``
(``option conflicts with option 'vmid'``, ``vmid: property is missing``), ``PVE/Jobs/VZDump.pm``
(a job run is ``PVE::API2::VZDump->vzdump`` with the job's settings), ``PVE/API2/VZDump.pm``
(one task per node, ``skip external VMs``, "silent exit if we run on wrong node"), pve-common
``PVE/CalendarEvent.pm`` (``invalid calendar event '...' - ...``) and the API viewer's schema for
``prune-backups`` (keep-* integers >= 1, ``keep-all`` alone), ``mode``/``compress`` enums and
``pve-vmid-list``; ``backup-info/not-backed-up`` (Backup.pm ``get_guests_not_in_backup``:
guests no job selects, templates left out) and ``storage/{storage}/content`` (pve-storage
``PVE/API2/Storage/Content.pm``: ``volid``, ``ctime``, ``format``, ``size``, ``vmid``,
``notes``, ``subtype``); PBS storages as pve-storage ``PVE/API2/Storage/Config.pm`` and
``PVE/Storage/PBSPlugin.pm`` handle them (``storage ID '...' already defined``, the password and
``encryption-key`` kept apart in /etc/pve/priv and never read back, ``autogen`` returning the
new key in ``config``). A vzdump task locks each VM (``backup``) while it is backed up and records
an archive per VM in ``backups`` (volid, vmid, ctime, notes from ``notes-template``).

Served endpoints::

    POST   /access/ticket                                 (user/password -> ticket + CSRF token)
    GET    /version
    GET    /nodes
    GET    /nodes/{node}/status
    GET    /nodes/{node}/storage
    GET    /nodes/{node}/qemu
    POST   /nodes/{node}/qemu                              (create, task qmcreate)
    GET    /nodes/{node}/qemu/{vmid}/config               (current=1 for without pending)
    PUT    /nodes/{node}/qemu/{vmid}/config               (synchronous)
    POST   /nodes/{node}/qemu/{vmid}/config               (task qmconfig)
    GET    /nodes/{node}/qemu/{vmid}/pending
    POST   /nodes/{node}/qemu/{vmid}/clone                (task qmclone, id = source vmid)
    PUT    /nodes/{node}/qemu/{vmid}/resize               (task resize)
    GET    /nodes/{node}/qemu/{vmid}/status/current
    POST   /nodes/{node}/qemu/{vmid}/status/{start,stop,shutdown,reboot}
    DELETE /nodes/{node}/qemu/{vmid}                      (task qmdestroy)
    POST   /nodes/{node}/qemu/{vmid}/migrate               (task qmigrate: target, online, with-local-disks)
    GET    /nodes/{node}/tasks/{upid}/status
    GET    /nodes/{node}/tasks/{upid}/log
    DELETE /nodes/{node}/tasks/{upid}
    GET    /cluster/resources                              (type=vm|node|storage|pool)
    GET    /cluster/nextid
    GET    /pools, POST /pools, GET /pools/{poolid}, PUT /pools/{poolid}
    GET    /storage
    GET    /cluster/backup, POST /cluster/backup
    GET    /cluster/backup/{id}, PUT /cluster/backup/{id}, DELETE /cluster/backup/{id}
    POST   /nodes/{node}/vzdump                            (task vzdump)
    GET    /cluster/backup-info/not-backed-up
    POST   /storage, GET|PUT|DELETE /storage/{storage}     (type pbs; password/encryption-key never returned)
    GET    /nodes/{node}/storage/{storage}/content         (content=backup: vzdump archives)

Test control happens in-process through methods of :class:`PveDouble` (``add_template``,
``fail_task``, ``warn_task``, ``hold_lock``, ``hold_flock``, ``fail_requests``,
``ignore_acpi``, ``set_node_online``) and observation through ``requests``,
``max_concurrent_tasks``, ``vm_config`` and friends.  ``python tests/doubles/proxmox_api.py``
runs it stand-alone on a loopback port and prints the connection settings.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import ipaddress
import json
import os
import random
import re
import ssl
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

DEFAULT_DURATIONS = {
    "qmclone": 1.5,
    "qmcreate": 0.8,
    "qmstart": 0.6,
    "qmstop": 0.3,
    "qmshutdown": 0.8,
    "qmreboot": 1.0,
    "qmdestroy": 0.5,
    "resize": 0.3,
    "qmconfig": 0.2,
    "vzdump": 1.0,
    "qmigrate": 0.8,
}

CPU_MODELS = {
    "486",
    "athlon",
    "Broadwell",
    "Broadwell-IBRS",
    "Broadwell-noTSX",
    "Cascadelake-Server",
    "Conroe",
    "core2duo",
    "coreduo",
    "EPYC",
    "EPYC-IBPB",
    "EPYC-Milan",
    "EPYC-Rome",
    "EPYC-Genoa",
    "Haswell",
    "Haswell-IBRS",
    "host",
    "Icelake-Server",
    "IvyBridge",
    "kvm32",
    "kvm64",
    "max",
    "Nehalem",
    "Opteron_G1",
    "Opteron_G2",
    "Opteron_G3",
    "Opteron_G4",
    "Opteron_G5",
    "Penryn",
    "pentium",
    "pentium2",
    "pentium3",
    "phenom",
    "qemu32",
    "qemu64",
    "SandyBridge",
    "Skylake-Client",
    "Skylake-Server",
    "Westmere",
    "x86-64-v2",
    "x86-64-v2-AES",
    "x86-64-v3",
    "x86-64-v4",
}
NIC_MODELS = {
    "e1000",
    "e1000e",
    "rtl8139",
    "virtio",
    "vmxnet3",
    "i82551",
    "i82557b",
    "i82559er",
    "ne2k_isa",
    "ne2k_pci",
    "pcnet",
}
DRIVE_RE = re.compile(r"^(ide[0-3]|sata[0-5]|scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|efidisk0|tpmstate0)$")
NET_RE = re.compile(r"^net([0-9]|[1-9][0-9]|[1-2][0-9][0-9]|3[01][0-9])$")
IPCONFIG_RE = re.compile(r"^ipconfig([0-9]|[1-9][0-9]|[1-2][0-9][0-9]|3[01][0-9])$")
UNUSED_RE = re.compile(r"^unused\d+$")
TAG_RE = re.compile(r"^[a-z0-9_][a-z0-9_\-+.]*$", re.IGNORECASE)
DNS_NAME_RE = re.compile(
    r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)(\.([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?))*$"
)
URLENCODED_RE = re.compile(r"^[-%a-zA-Z0-9_.!~*'()]*$")
SSH_KEY_TYPES = (
    "ssh-rsa",
    "ssh-dss",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
# Options that change the running VM at once (default hotplug "network,disk,usb", plus the
# ones that only change metadata); everything else goes to the pending section.
HOTPLUG_IMMEDIATE = re.compile(
    r"^(name|description|onboot|tags|protection|ciuser|cipassword|citype|ciupgrade|sshkeys|nameserver|searchdomain"
    r"|ipconfig\d+|net\d+|(ide|sata|scsi|virtio)\d+|startup|agent_fstrim_not_applicable)$"
)
INT_KEYS = {"cores", "sockets", "vcpus", "balloon", "shares", "cpuunits", "migrate_speed"}
BOOL_KEYS = {
    "onboot",
    "numa",
    "tablet",
    "kvm",
    "acpi",
    "template",
    "protection",
    "localtime",
    "freeze",
    "ciupgrade",
    "autostart",
    "reboot",
}
STRING_KEYS = {
    "name",
    "description",
    "memory",
    "cpu",
    "agent",
    "ostype",
    "scsihw",
    "boot",
    "bootdisk",
    "tags",
    "ciuser",
    "cipassword",
    "citype",
    "sshkeys",
    "nameserver",
    "searchdomain",
    "smbios1",
    "vmgenid",
    "meta",
    "bios",
    "machine",
    "vga",
    "serial0",
    "hotplug",
    "startup",
    "lock",
    "args",
    "hookscript",
    "cpulimit",
    "keyboard",
    "watchdog",
    "rng0",
    "efidisk0",
    "tpmstate0",
    "affinity",
}


# --------------------------------------------------------------------------- errors ---
class ApiError(Exception):
    def __init__(self, status, message, errors=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def param_error(errors):
    return ApiError(400, "Parameter verification failed.", errors)


def die(message):
    """Like ``die "msg\\n"`` inside an API handler: HTTP 500 with the message."""
    return ApiError(500, message)


class TaskFailure(Exception):
    pass


# ------------------------------------------------------------------- size / strings ---
def parse_size(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT])?", str(text))
    if not m:
        return None
    value = float(m.group(1))
    value *= {None: 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB}[m.group(2)]
    return int(value)


def format_size(size):
    """PVE::JSONSchema::format_size: the largest unit that divides exactly."""
    size = int(size)
    kb, rest = divmod(size, 1024)
    if rest:
        return str(size)
    mb, rest = divmod(kb, 1024)
    if rest:
        return f"{kb}K"
    gb, rest = divmod(mb, 1024)
    if rest:
        return f"{mb}M"
    tb, rest = divmod(gb, 1024)
    if rest:
        return f"{gb}G"
    return f"{tb}T"


def human(size):
    for unit, factor in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"


def split_list(text):
    return [item for item in re.split(r"[;,\s\0]+", text or "") if item]


def parse_bool(value):
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return 1
    if text in ("0", "false", "no", "off"):
        return 0
    return None


def random_mac(prefix="BC:24:11"):
    tail = ":".join(f"{random.randint(0, 255):02X}" for _i in range(3))
    return f"{prefix}:{tail}"


# ------------------------------------------------------------- property strings ---
class FormatError(Exception):
    """Collected sub-key errors of a property string, printed like PVE's check_format."""

    def __init__(self, errors):
        super().__init__("format error")
        self.errors = errors


def _parse_kv(text, default_key=None):
    res = {}
    for part in str(text).split(","):
        if part == "":
            continue
        if "=" in part:
            key, value = part.split("=", 1)
        elif default_key:
            key, value = default_key, part
        else:
            raise FormatError({"": f"value without key, but schema does not define a default key: {part}"})
        if key in res:
            raise FormatError({key: "duplicate key in comma-separated list property"})
        res[key] = value
    return res


def _check_int(value, minimum=None, maximum=None):
    if not re.fullmatch(r"-?\d+", str(value)):
        return f"type check ('integer') failed - got '{value}'"
    ivalue = int(value)
    if minimum is not None and ivalue < minimum:
        return f"value must have a minimum value of {minimum}"
    if maximum is not None and ivalue > maximum:
        return f"value must have a maximum value of {maximum}"
    return None


def _check_bool(value):
    if parse_bool(value) is None:
        return f"type check ('boolean') failed - got '{value}'"
    return None


def _check_cidr(value, version):
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        iface = None
    if iface is None or iface.version != version or "/" not in value:
        kind = "ipv4" if version == 4 else "ipv6"
        return f"invalid format - value does not look like a valid {kind} network configuration"
    return None


def _check_ip(value, version):
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        addr = None
    if addr is None or addr.version != version:
        return f"invalid format - value does not look like a valid IPv{version} address"
    return None


def _format_errors(prefix, errors):
    lines = "".join(f"{prefix}.{key}: {msg}\n" if key else f"{prefix}: {msg}\n" for key, msg in errors.items())
    return "invalid format - format error\n" + lines


def parse_net(text):
    """Parse ``virtio=MAC,bridge=vmbr0,tag=10`` into a dict (model, macaddr, ...)."""
    raw = _parse_kv(text, default_key="model")
    net = {}
    errors = {}
    for key, value in raw.items():
        if key in NIC_MODELS:
            net["model"] = key
            if value:
                net["macaddr"] = value
        elif key == "model":
            if value not in NIC_MODELS:
                errors[key] = (
                    f"value '{value}' does not have a value in the enumeration '{', '.join(sorted(NIC_MODELS))}'"
                )
            net["model"] = value
        elif key == "macaddr":
            net[key] = value
        elif key == "bridge":
            if not re.fullmatch(r"[-_.\w\d]+", value):
                errors[key] = "value does not match the regex pattern"
            net[key] = value
        elif key == "tag":
            err = _check_int(value, 1, 4094)
            if err:
                errors[key] = err
            net[key] = value
        elif key == "mtu":
            err = _check_int(value, 1, 65520)
            if err:
                errors[key] = err
            net[key] = value
        elif key == "queues":
            err = _check_int(value, 0, 64)
            if err:
                errors[key] = err
            net[key] = value
        elif key in ("firewall", "link_down"):
            err = _check_bool(value)
            if err:
                errors[key] = err
            net[key] = str(parse_bool(value)) if not err else value
        elif key in ("rate", "trunks"):
            net[key] = value
        else:
            errors[key] = "property is not defined in schema and the schema does not allow additional properties"
    if "model" not in net:
        errors["model"] = "property is missing and it is not optional"
    mac = net.get("macaddr")
    if mac is not None and not re.fullmatch(r"(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}", mac):
        errors["macaddr"] = "invalid format - value does not look like a valid MAC address"
    elif mac is not None and int(mac.split(":")[0], 16) & 1:
        errors["macaddr"] = "invalid format - MAC address is a multicast address"
    if errors:
        raise FormatError(errors)
    return net


def print_net(net):
    head = f"{net['model']}={net['macaddr']}"
    rest = [f"{key}={net[key]}" for key in sorted(net) if key not in ("model", "macaddr")]
    return ",".join([head, *rest])


DRIVE_KEYS = {
    "media": ("enum", {"cdrom", "disk"}),
    "size": ("size", None),
    "cache": ("enum", {"none", "writethrough", "writeback", "unsafe", "directsync"}),
    "discard": ("enum", {"on", "ignore"}),
    "iothread": ("bool", None),
    "ssd": ("bool", None),
    "backup": ("bool", None),
    "replicate": ("bool", None),
    "format": ("enum", {"raw", "qcow2", "vmdk", "cloop", "cow", "qcow", "qed"}),
    "aio": ("enum", {"native", "threads", "io_uring"}),
    "serial": ("str", None),
    "wwn": ("str", None),
    "ro": ("bool", None),
    "shared": ("bool", None),
    "snapshot": ("bool", None),
    "import-from": ("str", None),
}


def parse_drive(slot, text):
    raw = _parse_kv(text, default_key="file")
    drive = {}
    errors = {}
    for key, value in raw.items():
        if key == "file":
            drive[key] = value
            continue
        kind = DRIVE_KEYS.get(key)
        if kind is None:
            errors[key] = "property is not defined in schema and the schema does not allow additional properties"
        elif kind[0] == "enum" and value not in kind[1]:
            errors[key] = f"value '{value}' does not have a value in the enumeration '{', '.join(sorted(kind[1]))}'"
        elif kind[0] == "bool" and _check_bool(value):
            errors[key] = _check_bool(value)
        elif kind[0] == "size" and parse_size(value) is None:
            errors[key] = "invalid format - unable to parse size"
        else:
            drive[key] = str(parse_bool(value)) if kind[0] == "bool" else value
    if "file" not in drive:
        errors["file"] = "property is missing and it is not optional"
    if errors:
        raise FormatError(errors)
    return drive


def print_drive(drive):
    rest = [f"{key}={drive[key]}" for key in sorted(drive) if key != "file"]
    return ",".join([drive["file"], *rest])


def parse_ipconfig(text):
    raw = _parse_kv(text)
    errors = {}
    for key, value in raw.items():
        if key == "ip":
            if value != "dhcp":
                err = _check_cidr(value, 4)
                if err:
                    errors[key] = err
        elif key == "ip6":
            if value not in ("dhcp", "auto"):
                err = _check_cidr(value, 6)
                if err:
                    errors[key] = err
        elif key == "gw":
            err = _check_ip(value, 4)
            if err:
                errors[key] = err
        elif key == "gw6":
            err = _check_ip(value, 6)
            if err:
                errors[key] = err
        else:
            errors[key] = "property is not defined in schema and the schema does not allow additional properties"
    if "gw" in raw and "ip" not in raw:
        errors["gw"] = "gateway specified without specifying an IP address"
    if errors:
        raise FormatError(errors)
    return raw


# ----------------------------------------------------------------- param checks ---
def check_config_param(key, value, vmid=None):
    """Verify one config option like PVE's JSON schema does; return the canonical text.

    Raises FormatError-compatible ApiError text through the caller (a str message)."""
    value = "" if value is None else str(value)
    if key in INT_KEYS:
        limits = {
            "cores": (1, 8192),
            "sockets": (1, 4),
            "vcpus": (1, 8192),
            "balloon": (0, None),
            "shares": (0, 50000),
            "cpuunits": (1, 262144),
            "migrate_speed": (0, None),
        }[key]
        err = _check_int(value, *limits)
        if err:
            raise ValueError(err)
        return str(int(value))
    if key in BOOL_KEYS:
        err = _check_bool(value)
        if err:
            raise ValueError(err)
        return str(parse_bool(value))
    if key == "memory":
        try:
            raw = _parse_kv(value, default_key="current")
        except FormatError as exc:
            raise ValueError(_format_errors(key, exc.errors)) from None
        bad = {
            k: "property is not defined in schema and the schema does not allow additional properties"
            for k in raw
            if k != "current"
        }
        if "current" not in raw:
            bad["current"] = "property is missing and it is not optional"
        elif _check_int(raw["current"], 16):
            bad["current"] = _check_int(raw["current"], 16)
        if bad:
            raise ValueError(_format_errors(key, bad))
        return value
    if key == "name":
        if not DNS_NAME_RE.match(value):
            raise ValueError("invalid format - value does not look like a valid DNS name")
        return value
    if key == "description":
        if len(value) > 8192:
            raise ValueError("value may only be 8192 characters long")
        return value
    if key == "tags":
        for tag in split_list(value):
            if not TAG_RE.match(tag):
                raise ValueError(f"invalid format - invalid characters in tag '{tag}'")
        return value
    if key == "sshkeys":
        if not URLENCODED_RE.match(value):
            raise ValueError(f"invalid urlencoded string: {value}")
        return value
    if key == "cpu":
        try:
            raw = _parse_kv(value, default_key="cputype")
        except FormatError as exc:
            raise ValueError(_format_errors(key, exc.errors)) from None
        cputype = raw.get("cputype", "kvm64")
        if not cputype.startswith("custom-") and cputype not in CPU_MODELS:
            raise ValueError(
                f"invalid format - Built-in cputype '{cputype}' is not defined (missing 'custom-' prefix?)"
            )
        return value
    if key == "agent":
        try:
            raw = _parse_kv(value, default_key="enabled")
        except FormatError as exc:
            raise ValueError(_format_errors(key, exc.errors)) from None
        bad = {}
        for sub, subval in raw.items():
            if sub in ("enabled", "fstrim_cloned_disks", "freeze-fs-on-backup", "freeze-fs"):
                if _check_bool(subval):
                    bad[sub] = _check_bool(subval)
            elif sub == "type":
                if subval not in ("virtio", "isa"):
                    bad[sub] = f"value '{subval}' does not have a value in the enumeration 'virtio, isa'"
            else:
                bad[sub] = "property is not defined in schema and the schema does not allow additional properties"
        if bad:
            raise ValueError(_format_errors(key, bad))
        return value
    if key == "nameserver":
        for item in split_list(value):
            try:
                ipaddress.ip_address(item)
            except ValueError:
                raise ValueError(f"invalid format - unable to parse address '{item}'") from None
        return value
    if key == "searchdomain":
        for item in split_list(value):
            if not DNS_NAME_RE.match(item):
                raise ValueError(f"invalid format - value '{item}' does not look like a valid DNS name")
        return value
    if key == "citype":
        if value not in ("configdrive2", "nocloud", "opennebula"):
            raise ValueError(
                f"value '{value}' does not have a value in the enumeration 'configdrive2, nocloud, opennebula'"
            )
        return value
    if key == "scsihw":
        allowed = {"lsi", "lsi53c810", "virtio-scsi-pci", "virtio-scsi-single", "megasas", "pvscsi"}
        if value not in allowed:
            raise ValueError(f"value '{value}' does not have a value in the enumeration '{', '.join(sorted(allowed))}'")
        return value
    if key == "ostype":
        allowed = {
            "other",
            "wxp",
            "w2k",
            "w2k3",
            "w2k8",
            "wvista",
            "win7",
            "win8",
            "win10",
            "win11",
            "l24",
            "l26",
            "solaris",
        }
        if value not in allowed:
            raise ValueError(f"value '{value}' does not have a value in the enumeration '{', '.join(sorted(allowed))}'")
        return value
    if NET_RE.match(key):
        try:
            return value if parse_net(value) else value
        except FormatError as exc:
            raise ValueError(_format_errors(key, exc.errors)) from None
    if IPCONFIG_RE.match(key):
        try:
            parse_ipconfig(value)
        except FormatError as exc:
            raise ValueError(_format_errors(key, exc.errors)) from None
        return value
    if DRIVE_RE.match(key) and key not in ("efidisk0", "tpmstate0"):
        try:
            parse_drive(key, value)
        except FormatError as exc:
            raise ValueError(_format_errors(key, exc.errors)) from None
        return value
    if key in STRING_KEYS:
        return value
    raise ValueError("property is not defined in schema and the schema does not allow additional properties")


# ------------------------------------------------------------ backup jobs ---
# Job properties of ``/cluster/backup`` (PVE::VZDump::Common confdesc + the job keys).
BACKUP_JOB_KEYS = {
    "id", "schedule", "enabled", "comment", "repeat-missed", "starttime", "dow", "node", "storage", "mode",
    "compress", "prune-backups", "notes-template", "vmid", "all", "exclude", "pool", "mailto", "mailnotification",
    "notification-mode", "bwlimit", "ionice", "lockwait", "stopwait", "remove", "protected", "zstd", "pigz",
    "tmpdir", "dumpdir", "script", "stdexcludes", "fleecing", "performance", "pbs-change-detection-mode",
    "exclude-path", "maxfiles",
}
BACKUP_BOOL_KEYS = {"enabled", "all", "repeat-missed", "remove", "protected", "stdexcludes"}
BACKUP_ENUMS = {
    "mode": ("snapshot", "suspend", "stop"),
    "compress": ("0", "1", "gzip", "lzo", "zstd"),
    "mailnotification": ("always", "failure"),
    "notification-mode": ("auto", "legacy-sendmail", "notification-system"),
}
PRUNE_KEYS = ("keep-all", "keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly")
CALENDAR_WORDS = {"minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually", "quarterly",
                  "semiannually", "semi-annually"}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _calendar_error(text):
    """None if ``text`` parses as a PVE calendar event (proxmox-time's grammar: [weekdays]
    [[YYYY-]MM-DD] [HH:MM[:SS]] or a named event), else the parser's complaint."""
    tokens = str(text).split()
    if not tokens:
        return "unable to parse calendar event - event is empty"
    if len(tokens) == 1 and tokens[0].lower() in CALENDAR_WORDS:
        return None

    def values(spec, top):
        for item in spec.split(","):
            base, _slash, step = item.partition("/")
            if step and not step.isdigit():
                return False
            for bound in base.split(".."):
                if bound != "*" and (not bound.isdigit() or int(bound) > top):
                    return False
        return True

    i = 0
    days = tokens[0].lower().replace("..", ",").split(",")
    if all(d in WEEKDAYS for d in days):
        i = 1
    if i < len(tokens) and "-" in tokens[i]:
        parts = tokens[i].split("-")
        tops = (9999, 12, 31)[-len(parts):] if len(parts) in (2, 3) else None
        if tops is None or not all(values(p, t) for p, t in zip(parts, tops, strict=True)):
            return "unable to parse calendar event - invalid date spec"
        i += 1
    if i < len(tokens):
        parts = tokens[i].split(":")
        tops = {1: (59,), 2: (23, 59), 3: (23, 59, 59)}.get(len(parts))
        if tops is None or not all(values(p, t) for p, t in zip(parts, tops, strict=True)):
            return "unable to parse calendar event - invalid time spec"
        i += 1
    if i < len(tokens):
        return "unable to parse calendar event - unexpected trailing data"
    return None


def _vmid_list_error(text):
    for item in split_list(text):
        if not item.isdigit() or not 100 <= int(item) <= 999999999:
            return "invalid format - value does not look like a valid VM ID"
    return None


def _prune_error(text):
    try:
        raw = _parse_kv(text)
    except FormatError as exc:
        return _format_errors("prune-backups", exc.errors).rstrip("\n")
    errors = {}
    for key, value in raw.items():
        if key not in PRUNE_KEYS:
            errors[key] = "property is not defined in schema and the schema does not allow additional properties"
        elif key == "keep-all":
            err = _check_bool(value)
            if err:
                errors[key] = err
        else:
            err = _check_int(value, 1)
            if err:
                errors[key] = err
    if errors:
        return _format_errors("prune-backups", errors).rstrip("\n")
    if parse_bool(raw.get("keep-all", "0")) == 1 and len(raw) > 1:
        return "keep-all cannot be set together with other options."
    return None


class _BackupJobs:
    """``/cluster/backup`` (pve-manager PVE/API2/Backup.pm on jobs.cfg) and ``POST /nodes/{node}/vzdump``
    (PVE/API2/VZDump.pm, PVE/VZDump.pm). Mixed into :class:`PveDouble`."""

    def _check_backup_params(self, p, creating):
        errors = {}
        for key, value in p.items():
            if key == "delete" and not creating:
                for name in split_list(value):
                    if name not in BACKUP_JOB_KEYS or name == "id":
                        errors["delete"] = f"unknown option '{name}'"
                continue
            if key not in BACKUP_JOB_KEYS:
                errors[key] = "property is not defined in schema and the schema does not allow additional properties"
                continue
            err = None
            if key == "id":
                if len(value) > 50:
                    err = "value may only be 50 characters long"
                elif not re.fullmatch(r"[a-z][a-z0-9_-]+", value, re.IGNORECASE):
                    err = f"invalid format - invalid configuration ID '{value}'"
            elif key == "schedule":
                cal = _calendar_error(value)
                err = f"invalid format - invalid calendar event '{value}' - {cal}" if cal else None
            elif key in BACKUP_BOOL_KEYS:
                err = _check_bool(value)
            elif key in BACKUP_ENUMS and value not in BACKUP_ENUMS[key]:
                err = f"value '{value}' does not have a value in the enumeration '{', '.join(BACKUP_ENUMS[key])}'"
            elif key in ("vmid", "exclude"):
                err = _vmid_list_error(value)
            elif key == "prune-backups":
                err = _prune_error(value)
            elif key == "storage" and not re.fullmatch(r"[a-z][a-z0-9\-_.]*[a-z0-9]", value, re.IGNORECASE):
                err = f"invalid format - storage ID '{value}' contains illegal characters"
            elif key == "notes-template" and len(value) > 1024:
                err = "value may only be 1024 characters long"
            elif key in ("comment",) and "\n" in value:
                err = "invalid format - value must not contain a newline"
            if err:
                errors[key] = err
        if errors:
            raise param_error({k: v if v.endswith("\n") else v + "\n" for k, v in errors.items()})

    @staticmethod
    def _verify_selection(job):
        """PVE::VZDump::verify_vzdump_parameters($param, 1)."""
        if parse_bool(job.get("all", "0")) == 1 and job.get("vmid"):
            raise param_error({"all": "option conflicts with option 'vmid'\n"})
        if job.get("exclude") and job.get("vmid"):
            raise param_error({"exclude": "option conflicts with option 'vmid'\n"})
        if job.get("pool") and job.get("vmid"):
            raise param_error({"pool": "option conflicts with option 'vmid'\n"})
        if job.get("exclude") and not job.get("pool"):
            job["all"] = "1"
        if not (parse_bool(job.get("all", "0")) == 1 or job.get("pool") or job.get("vmid")):
            raise param_error({"vmid": "property is missing\n"})

    def _job_out(self, job):
        out = {"type": "vzdump"}
        for key, value in job.items():
            out[key] = int(value) if key in BACKUP_BOOL_KEYS or key in ("bwlimit", "ionice", "lockwait") else value
        if parse_bool(job.get("enabled", "1")) == 1:
            out["next-run"] = int(time.time()) + 3600
        return out

    def h_backup_index(self, p, auth):
        return [self._job_out(job) for _jid, job in sorted(self.backup_jobs.items())]

    def h_backup_create(self, p, auth):
        self._check_backup_params(p, creating=True)
        if "schedule" not in p and "starttime" not in p:
            raise param_error({"schedule": "property is missing and it is not optional\n"})
        job = dict(p)
        jid = job.pop("id", None) or f"backup-{_uuid()[:13]}"
        if jid in self.backup_jobs:
            raise die(f"Job '{jid}' already exists")
        job.setdefault("enabled", "1")
        self._verify_selection(job)
        self.backup_jobs[jid] = {"id": jid, **job}
        return None

    def _backup_job(self, jid):
        if jid not in self.backup_jobs:
            raise param_error({"id": f"No such job '{jid}'\n"})
        return self.backup_jobs[jid]

    def h_backup_read(self, p, auth, jid):
        return self._job_out(self._backup_job(jid))

    def h_backup_update(self, p, auth, jid):
        job = dict(self._backup_job(jid))
        self._check_backup_params(p, creating=False)
        for key in split_list(p.get("delete", "")):
            job.pop(key, None)
        for key, value in p.items():
            if key not in ("delete", "digest", "id"):
                job[key] = value
        if job.get("exclude") and not job.get("pool"):
            job["all"] = "1"
        if "vmid" in p:
            for key in ("all", "exclude", "pool"):
                job.pop(key, None)
        elif parse_bool(p.get("all", "0")) == 1:
            job.pop("vmid", None)
            job.pop("pool", None)
        elif job.get("pool"):
            job.pop("vmid", None)
            job.pop("all", None)
        self._verify_selection(job)
        self.backup_jobs[jid] = job
        return None

    def h_backup_delete(self, p, auth, jid):
        self._backup_job(jid)
        del self.backup_jobs[jid]
        return None

    def h_vzdump(self, p, auth, node):
        """POST /nodes/{node}/vzdump: one task backing up the selected guests that live on this node."""
        self._node(node)
        params = {k: v for k, v in p.items() if k != "job-id"}
        self._check_backup_params({k: v for k, v in params.items() if k not in ("stdout", "quiet")}, creating=True)
        self._verify_selection(dict(params))
        if params.get("node") and params["node"] != node:
            return None  # "silent exit if we run on wrong node"
        if params.get("vmid"):
            wanted = [int(v) for v in split_list(params["vmid"])]
        else:
            excluded = {int(v) for v in split_list(params.get("exclude", ""))}
            wanted = [vm.vmid for vm in sorted(self.vms.values(), key=lambda v: v.vmid)
                      if vm.config.get("template") != "1" and vm.vmid not in excluded
                      and (not params.get("pool") or vm.pool == params["pool"])]
        local = [v for v in wanted if v in self.vms and self.vms[v].node == node]
        external = [v for v in wanted if v in self.vms and self.vms[v].node != node]
        missing = [v for v in wanted if v not in self.vms]
        storage = params.get("storage") or "local"
        tid = str(local[0]) if len(local) == 1 and not missing else ""
        task = self._new_task(node, "vzdump", tid, auth)
        duration = self.durations.get("vzdump", 1.0)
        guests = local + missing
        step = duration / (len(guests) + 1)
        mode = params.get("mode") or "snapshot"
        compress = {"0": None, "1": "lzo", "gzip": "gz", "lzo": "lzo", "zstd": "zst"}.get(params.get("compress", "0"))
        task.at(0, f"INFO: starting new backup job: vzdump {' '.join(map(str, wanted))} --storage {storage} --mode {mode}")
        if external:
            task.at(0, f"INFO: skip external VMs: {', '.join(map(str, external))}")
        st = self.storages.get((node, storage))

        def storage_check():
            if st is None:
                raise TaskFailure(f"storage '{storage}' does not exist")
            if "backup" not in st["content"].split(","):
                raise TaskFailure(f"can't use storage '{storage}' for backups - wrong content type")

        task.at(0, None, storage_check)
        failed = []
        for n, vmid in enumerate(guests):
            at = step * (n + 1)
            if vmid not in self.vms:
                task.at(at, f"ERROR: Backup of VM {vmid} failed - unable to find VM '{vmid}'")
                failed.append(vmid)
                continue
            vm = self.vms[vmid]
            task.at(at - step * 0.9, f"INFO: Starting Backup of VM {vmid} (qemu)", self._backup_lock(vm))
            task.at(at, f"INFO: Finished Backup of VM {vmid}", self._backup_done(node, storage, vm, params, compress))
        task.at(duration, "INFO: Backup job finished successfully" if not failed else
                "INFO: Backup job finished with errors")
        if failed:
            def fail(ids=tuple(failed)):
                raise TaskFailure(f"job errors: {len(ids)} backup(s) failed")
            task.at(duration, None, fail)
        return self._register(task)

    def add_backup(self, vmid, storage="local", node=None, age_hours=0.0, notes=""):
        """Plant a backup archive made ``age_hours`` ago (as an earlier vzdump would have left it)."""
        with self._lock:
            vm = self.vms[int(vmid)]
            ctime = int(time.time() - age_hours * 3600)
            stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.gmtime(ctime))
            self.backups.append({
                "volid": f"{storage}:backup/vzdump-qemu-{vm.vmid}-{stamp}.vma.zst", "vmid": vm.vmid,
                "node": node or vm.node, "storage": storage, "ctime": ctime, "format": "vma.zst", "size": 512 * MiB,
                "notes": notes, "subtype": "qemu",
            })

    def h_not_backed_up(self, p, auth):
        """GET /cluster/backup-info/not-backed-up: guests (not templates) no job selects, disabled jobs included."""
        covered = set()
        for job in self.backup_jobs.values():
            if job.get("vmid"):
                covered |= {int(v) for v in split_list(job["vmid"])}
                continue
            excluded = {int(v) for v in split_list(job.get("exclude", ""))}
            for vm in self.vms.values():
                if vm.vmid in excluded or (job.get("pool") and vm.pool != job["pool"]):
                    continue
                covered.add(vm.vmid)
        return [{"vmid": vm.vmid, "name": vm.config.get("name", f"VM {vm.vmid}"), "type": "qemu"}
                for vm in sorted(self.vms.values(), key=lambda v: v.vmid)
                if vm.config.get("template") != "1" and vm.vmid not in covered]

    def h_storage_content(self, p, auth, node, storage):
        """GET /nodes/{node}/storage/{storage}/content (backup volumes; ``content`` and ``vmid`` filters)."""
        self._node(node)
        st = self.storages.get((node, storage))
        if st is None:
            raise die(f"storage '{storage}' does not exist")
        content = p.get("content")
        if content not in (None, "backup"):
            raise ApiError(501, f"content type '{content}' is not served by the double (only backup)")
        if content == "backup" and "backup" not in st["content"].split(","):
            return []
        out = []
        for b in self.backups:
            if b["storage"] != storage or (not st["shared"] and b["node"] != node):
                continue
            if p.get("vmid") and int(p["vmid"]) != b["vmid"]:
                continue
            item = {"volid": b["volid"], "content": "backup", "ctime": b["ctime"], "format": b["format"],
                    "size": b["size"], "vmid": b["vmid"], "subtype": b["subtype"]}
            if b["notes"]:
                item["notes"] = b["notes"]
            out.append(item)
        return out

    # PBS storages (pve-storage PVE/API2/Storage/Config.pm, PVE/Storage/PBSPlugin.pm)
    PBS_KEYS = ("server", "datastore", "username", "password", "fingerprint", "encryption-key", "port", "namespace",
                "nodes", "disable", "content", "prune-backups", "master-pubkey")

    def _check_pbs_params(self, p, creating):
        errors = {}
        for key, value in p.items():
            if key in ("storage", "type", "delete", "digest"):
                continue
            if key not in self.PBS_KEYS:
                errors[key] = "property is not defined in schema and the schema does not allow additional properties"
            elif key == "fingerprint" and not re.fullmatch(r"([A-Fa-f0-9]{2}:){31}[A-Fa-f0-9]{2}", value):
                errors[key] = "invalid format - value does not look like a valid certificate fingerprint"
            elif key in ("port", "disable"):
                err = _check_int(value, 1, 65535) if key == "port" else _check_bool(value)
                if err:
                    errors[key] = err
            elif key == "content" and value != "backup":
                errors[key] = f"invalid format - storage does not support content type '{value}'"
        if creating:
            for key in ("server", "datastore", "username"):
                if not p.get(key):
                    errors[key] = "property is missing and it is not optional"
        if errors:
            raise param_error({k: f"{v}\n" for k, v in errors.items()})

    def h_storage_create(self, p, auth):
        sid, stype = p.get("storage", ""), p.get("type", "")
        if not re.fullmatch(r"[a-z][a-z0-9\-_.]*[a-z0-9]", sid, re.IGNORECASE):
            raise param_error({"storage": f"invalid format - storage ID '{sid}' contains illegal characters\n"})
        if stype != "pbs":
            raise ApiError(501, f"storage type '{stype}' is not served by the double (only pbs)")
        if any(s == sid for (_n, s) in self.storages):
            raise die(f"create storage failed: storage ID '{sid}' already defined")
        self._check_pbs_params(p, creating=True)
        conf = {k: v for k, v in p.items() if k in self.PBS_KEYS and k not in ("password", "encryption-key")}
        conf.setdefault("content", "backup")
        secrets = {k: p[k] for k in ("password", "encryption-key") if k in p}
        out = {"storage": sid, "type": "pbs"}
        if secrets.get("encryption-key") == "autogen":
            secrets["encryption-key"] = json.dumps({"kdf": None, "data": base64.b64encode(os.urandom(32)).decode()})
            out["config"] = {"encryption-key": json.loads(secrets["encryption-key"])}
        elif "encryption-key" in secrets:
            try:
                json.loads(secrets["encryption-key"])
            except ValueError:
                raise die("failed to parse encryption key") from None
        self.pbs_config[sid] = conf
        self.storage_secrets[sid] = secrets
        for node in split_list(conf.get("nodes", "")) or list(self.nodes):
            self.add_storage(node, sid, "pbs", "backup", total=2 * TiB, shared=True)
        return out

    def h_storage_read(self, p, auth, storage):
        if storage in self.pbs_config:
            return {"storage": storage, "type": "pbs", **self.pbs_config[storage], "digest": "0" * 40}
        for (_n, sid), st in self.storages.items():
            if sid == storage:
                return {"storage": sid, "type": st["type"], "content": st["content"], "digest": "0" * 40}
        raise die(f"storage '{storage}' does not exist")

    def h_storage_update(self, p, auth, storage):
        if storage not in self.pbs_config:
            self.h_storage_read(p, auth, storage)
            raise ApiError(501, f"updating storage '{storage}' is not served by the double (only pbs)")
        self._check_pbs_params(p, creating=False)
        conf = dict(self.pbs_config[storage])
        for key in split_list(p.get("delete", "")):
            if key not in self.PBS_KEYS:
                raise param_error({"delete": f"unknown option '{key}'\n"})
            conf.pop(key, None)
        for key, value in p.items():
            if key in ("password", "encryption-key"):
                self.storage_secrets[storage][key] = value
            elif key in self.PBS_KEYS:
                conf[key] = value
        self.pbs_config[storage] = conf
        return None

    def h_storage_delete(self, p, auth, storage):
        self.h_storage_read(p, auth, storage)
        for key in [k for k in self.storages if k[1] == storage]:
            del self.storages[key]
        self.pbs_config.pop(storage, None)
        self.storage_secrets.pop(storage, None)
        return None

    def _backup_lock(self, vm):
        def effect():
            if vm.lock:
                raise TaskFailure(f"VM {vm.vmid} is locked ({vm.lock})")
            vm.config["lock"] = "backup"
        return effect

    def _backup_done(self, node, storage, vm, params, compress):
        def effect():
            vm.config.pop("lock", None)
            stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.gmtime())
            ext = f"vma.{compress}" if compress else "vma"
            notes = (params.get("notes-template") or "").replace("{{guestname}}", vm.config.get("name", ""))
            notes = notes.replace("{{vmid}}", str(vm.vmid)).replace("{{node}}", node).replace("{{cluster}}", "double")
            self.backups.append({
                "volid": f"{storage}:backup/vzdump-qemu-{vm.vmid}-{stamp}.{ext}", "vmid": vm.vmid, "node": node,
                "storage": storage, "ctime": int(time.time()), "format": ext, "size": 512 * MiB, "notes": notes,
                "subtype": "qemu",
            })
        return effect


# --------------------------------------------------------------------- model ---
class Task:
    def __init__(self, double, node, ttype, tid, user, on_error=None):
        self.double = double
        self.node = node
        self.type = ttype
        self.id = str(tid)
        self.user = user
        self.pid = random.randint(1000, 4_000_000)
        self.pstart = random.randint(10_000_000, 900_000_000)
        self.starttime = int(time.time())
        self.started = time.monotonic()
        self.upid = f"UPID:{node}:{self.pid:08X}:{self.pstart:08X}:{self.starttime:08X}:{ttype}:{self.id}:{user}:"
        self.steps = []  # (due monotonic, log line or None, effect or None)
        self.log = []
        self.exitstatus = None
        self.warnings = 0
        self.on_error = on_error
        self.on_done = []

    @property
    def running(self):
        return self.exitstatus is None

    def at(self, offset, line=None, effect=None):
        self.steps.append((self.started + offset, line, effect))
        self.steps.sort(key=lambda step: step[0])  # stable: equal times keep their order
        return self

    def finish(self, error=None):
        if error is not None:
            self.log.append(f"TASK ERROR: {error}")
            self.exitstatus = str(error)
            if self.on_error:
                self.on_error()
        elif self.warnings:
            self.log.append(f"TASK WARNINGS: {self.warnings}")
            self.exitstatus = f"WARNINGS: {self.warnings}"
        else:
            self.log.append("TASK OK")
            self.exitstatus = "OK"
        for hook in self.on_done:
            hook(self)

    def advance(self, now):
        while self.running and self.steps and self.steps[0][0] <= now:
            _due, line, effect = self.steps.pop(0)
            if line is not None:
                if line.startswith("WARN: "):
                    self.warnings += 1
                self.log.append(line)
            if effect is not None:
                try:
                    effect()
                except TaskFailure as exc:
                    self.steps.clear()
                    self.finish(error=str(exc))
                    return
            if not self.steps:
                self.finish()


class VM:
    def __init__(self, vmid, node, config, status="stopped"):
        self.vmid = int(vmid)
        self.node = node
        self.config = dict(config)
        self.pending = {}
        self.pending_delete = set()
        self.status = status
        self.pool = None
        self.uptime_since = None
        self.acpi_ignored = False
        self.flock_until = 0.0
        self.flock_owner = None
        self.flock_hits = None
        self.lock_hits = None

    @property
    def lock(self):
        return self.config.get("lock")

    def merged(self):
        conf = dict(self.config)
        conf.update(self.pending)
        for key in self.pending_delete:
            conf.pop(key, None)
        return conf


class PveDouble(_BackupJobs):
    """The stateful API double.  ``start()`` returns the base URL; use as a context manager."""

    def __init__(
        self,
        nodes=("pve1", "pve2"),
        durations=None,
        tokens=None,
        users=None,
        mac_prefix="BC:24:11",
        port=0,
        flock_timeout=10.0,
        version="8.4.1",
    ):
        self._lock = threading.RLock()
        self.durations = dict(DEFAULT_DURATIONS)
        self.durations.update(durations or {})
        self.tokens = dict(tokens or {"root@pam!locus": "5f0c2c0e-6a55-4c5b-9a4c-2f6c5e0c7a11"})
        self.users = dict(users or {"root@pam": "double-password"})
        self.mac_prefix = mac_prefix
        self.flock_timeout = flock_timeout
        self.version = version
        self.port = port
        self.nodes = {
            name: {
                "online": True,
                "maxcpu": 16,
                "maxmem": 64 * GiB,
                "maxdisk": 100 * GiB,
                "rootfs_used": 12 * GiB,
                "cpu": 0.05 + 0.01 * i,
                "mem_base": 6 * GiB,
            }
            for i, name in enumerate(nodes)
        }
        self.storages = {}
        for name in nodes:
            self.add_storage(name, "local", "dir", "iso,vztmpl,backup,snippets", total=100 * GiB, used=20 * GiB)
            self.add_storage(name, "local-lvm", "lvmthin", "images,rootdir", total=800 * GiB, used=0)
        self.pools = {}
        self.vms = {}
        self.volumes = {}  # volid -> size
        self.tasks = {}
        self.tickets = {}
        self.backup_jobs = {}  # id -> job keys as stored (strings)
        self.backups = []  # backup archives written by vzdump tasks
        self.pbs_config = {}  # PBS storages added through POST /storage (secrets apart, as PVE keeps them)
        self.storage_secrets = {}
        self.requests = []  # (method, path, status)
        self._failures = []  # injected request failures
        self._task_faults = []  # injected task failures / warnings
        self._running_by_node = {}
        self.max_concurrent_tasks = {}  # (node, type) -> max seen at once
        self.next_id_lower = 100
        self._server = None
        self._thread = None
        self._certdir = None
        self.ca_file = None

    # ------------------------------------------------------------ lifecycle ---
    def start(self):
        self._certdir = tempfile.mkdtemp(prefix="pve-double-")
        cert, key, self.ca_file = _make_certs(self._certdir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        double = self

        class Handler(_Handler):
            pve = double

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def base_url(self):
        return f"https://127.0.0.1:{self.port}/api2/json"

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def token(self, token_id="root@pam!locus"):  # noqa: S107 - a token *name*, not a secret
        return token_id, self.tokens[token_id]

    # ------------------------------------------------------------- fixtures ---
    def add_storage(self, node, storage, stype, content, total, used=0, shared=False):
        self.storages[(node, storage)] = {
            "type": stype,
            "content": content,
            "total": total,
            "used": used,
            "shared": shared,
            "active": True,
            "enabled": True,
        }

    def add_pool(self, poolid, comment=""):
        with self._lock:
            self.pools[poolid] = {"comment": comment}

    def add_template(self, vmid, name, node="pve1", disks=None, config=None, storage="local-lvm"):
        """A cloud-init ready VM template like people build from a Debian cloud image."""
        disks = disks or {"scsi0": 4 * GiB}
        conf = {
            "name": name,
            "template": "1",
            "memory": "1024",
            "cores": "1",
            "sockets": "1",
            "ostype": "l26",
            "scsihw": "virtio-scsi-single",
            "agent": "1",
            "boot": "order=scsi0",
            "net0": f"virtio={random_mac(self.mac_prefix)},bridge=vmbr0",
            "ide2": f"{storage}:vm-{vmid}-cloudinit,media=cdrom",
            "serial0": "socket",
            "vga": "serial0",
            "smbios1": f"uuid={_uuid()}",
            "vmgenid": _uuid(),
            "meta": f"creation-qemu=9.0.2,ctime={int(time.time())}",
        }
        for i, (slot, size) in enumerate(sorted(disks.items())):
            volid = f"{storage}:base-{vmid}-disk-{i}"
            self.volumes[volid] = size
            conf[slot] = f"{volid},iothread=1,size={format_size(size)}"
        conf.update(config or {})
        with self._lock:
            self.vms[int(vmid)] = VM(vmid, node, conf)
        return int(vmid)

    def add_vm(self, vmid, name, node="pve1", config=None, status="stopped", disks=None, storage="local-lvm"):
        conf = {
            "name": name,
            "memory": "2048",
            "cores": "2",
            "sockets": "1",
            "ostype": "l26",
            "net0": f"virtio={random_mac(self.mac_prefix)},bridge=vmbr0",
            "smbios1": f"uuid={_uuid()}",
        }
        for i, (slot, size) in enumerate(sorted((disks or {"scsi0": 8 * GiB}).items())):
            volid = f"{storage}:vm-{vmid}-disk-{i}"
            self.volumes[volid] = size
            conf[slot] = f"{volid},size={format_size(size)}"
        conf.update(config or {})
        with self._lock:
            vm = VM(vmid, node, conf, status=status)
            if status == "running":
                vm.uptime_since = time.monotonic()
            self.vms[int(vmid)] = vm
        return int(vmid)

    # -------------------------------------------------------- fault injection ---
    def fail_task(self, ttype, message, at=0.5, vmid=None, count=1, log=None):
        """The next ``count`` tasks of ``ttype`` fail after ``at`` of their duration with ``message``."""
        with self._lock:
            self._task_faults.append(
                {"type": ttype, "vmid": vmid, "count": count, "error": message, "at": at, "log": list(log or [])}
            )

    def warn_task(self, ttype, warnings, vmid=None, count=1):
        """The next ``count`` tasks of ``ttype`` log ``WARN:`` lines and end with TASK WARNINGS."""
        with self._lock:
            self._task_faults.append({"type": ttype, "vmid": vmid, "count": count, "warnings": list(warnings)})

    def hold_lock(self, vmid, lock="backup", seconds=None, hits=None):
        """Set a config lock (as a running backup would).

        It clears after ``seconds`` (a ``vzdump`` task holds it) or -- deterministic for
        tests -- after ``hits`` operations were refused because of it."""
        with self._lock:
            vm = self.vms[int(vmid)]
            vm.config["lock"] = lock
            vm.lock_hits = hits
            if seconds is not None:
                task = Task(self, vm.node, "vzdump", vmid, "root@pam")
                task.at(0, f"INFO: starting new backup job: vzdump {vmid}")
                task.at(seconds, "INFO: Backup job finished successfully", lambda: vm.config.pop("lock", None))
                self._register(task)

    def hold_flock(self, vmid, seconds=None, hits=None):
        """Hold the config file flock (another API worker busy with the VM), for ``seconds``
        or until ``hits`` operations gave up waiting for it."""
        with self._lock:
            vm = self.vms[int(vmid)]
            vm.flock_until = time.monotonic() + (seconds if seconds is not None else 10**9)
            vm.flock_owner = "external"
            vm.flock_hits = hits

    def fail_requests(self, method, path_regex, status, message, count=1):
        """The next ``count`` matching requests fail with HTTP ``status`` and ``message``."""
        with self._lock:
            self._failures.append(
                {"method": method, "re": re.compile(path_regex), "status": status, "message": message, "count": count}
            )

    def ignore_acpi(self, vmid, ignored=True):
        with self._lock:
            self.vms[int(vmid)].acpi_ignored = ignored

    def set_node_online(self, node, online=True):
        with self._lock:
            self.nodes[node]["online"] = online

    # ------------------------------------------------------------ observation ---
    def reset_counters(self):
        with self._lock:
            self.requests.clear()
            self.max_concurrent_tasks.clear()

    def request_count(self, method=None, path_regex=None):
        with self._lock:
            return sum(
                1
                for m, p, _s in self.requests
                if (method is None or m == method) and (path_regex is None or re.search(path_regex, p))
            )

    def vm_config(self, vmid, current=False):
        with self._lock:
            self._advance()
            vm = self.vms.get(int(vmid))
            if vm is None:
                return None
            return dict(vm.config if current else vm.merged())

    def vm_status(self, vmid):
        with self._lock:
            self._advance()
            return self.vms[int(vmid)].status

    def vm_by_name(self, name):
        with self._lock:
            self._advance()
            return [vm.vmid for vm in self.vms.values() if vm.config.get("name") == name]

    def vm_pool(self, vmid):
        with self._lock:
            return self.vms[int(vmid)].pool

    def wait_idle(self, timeout=30.0):
        """Block until no task is running (for test teardown and assertions)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                self._advance()
                if not any(t.running for t in self.tasks.values()):
                    return True
            time.sleep(0.02)
        return False

    # ---------------------------------------------------------------- engine ---
    def _advance(self):
        now = time.monotonic()
        for task in sorted((t for t in self.tasks.values() if t.running), key=lambda t: t.started):
            task.advance(now)
        for vm in self.vms.values():
            if vm.flock_owner == "external" and vm.flock_until <= now:
                vm.flock_owner = None

    def _register(self, task):
        self.tasks[task.upid] = task
        key = (task.node, task.type)
        running = [t for t in self.tasks.values() if t.running and (t.node, t.type) == key]
        self.max_concurrent_tasks[key] = max(self.max_concurrent_tasks.get(key, 0), len(running))
        if not task.steps:
            task.finish()
        return task.upid

    def _new_task(self, node, ttype, tid, user, on_error=None):
        task = Task(self, node, ttype, tid, user, on_error=on_error)
        return task

    def _fault_for(self, ttype, vmid):
        for fault in self._task_faults:
            if (
                fault["type"] == ttype
                and fault["count"] > 0
                and (fault["vmid"] is None or int(fault["vmid"]) == int(vmid))
            ):
                fault["count"] -= 1
                return fault
        return None

    def _plan(self, task, lines, effect_done, vmid, duration=None, effect_start=None):
        """Spread ``lines`` over the task's duration; run ``effect_done`` at the end.

        Injected faults make the task die part-way (after the lines logged until then)
        or log warnings before it ends."""
        duration = self.durations.get(task.type, 0.5) if duration is None else duration
        fault = self._fault_for(task.type, vmid)
        if effect_start:
            effect_start()
        n = max(len(lines), 1)
        fail_at = None
        if fault and "error" in fault:
            fail_at = fault["at"] * duration
        for i, line in enumerate(lines):
            offset = duration * i / n
            if fail_at is not None and offset >= fail_at:
                break
            task.at(offset, line)
        if fail_at is not None:
            for extra in fault["log"]:
                task.at(fail_at, extra)

            def boom(msg=fault["error"]):
                raise TaskFailure(msg)

            task.at(fail_at, None, boom)
            return
        for warning in (fault or {}).get("warnings", []):
            task.at(duration * 0.9, f"WARN: {warning}")
        task.at(duration, None, effect_done)

    # --------------------------------------------------------------- helpers ---
    def _node(self, node):
        if node not in self.nodes:
            raise die(
                f"hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
            )
        if not self.nodes[node]["online"]:
            raise ApiError(595, f"Connection refused ({node})")
        return self.nodes[node]

    def _vm(self, node, vmid):
        vm = self.vms.get(int(vmid))
        if vm is None or vm.node != node:
            raise die(f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist")
        return vm

    def _check_lock(self, vm):
        if vm.lock:
            raise die(self._refuse_locked(vm))

    def _refuse_locked(self, vm):
        """The check_lock message; counts the refusal for ``hold_lock(hits=...)``."""
        message = f"VM {vm.vmid} is locked ({vm.lock})"
        if vm.lock_hits is not None:
            vm.lock_hits -= 1
            if vm.lock_hits <= 0:
                vm.config.pop("lock", None)
                vm.lock_hits = None
        return message

    def _refuse_flock(self, vm):
        message = f"can't lock file '/var/lock/qemu-server/lock-{vm.vmid}.conf' - got timeout"
        if vm.flock_owner == "external" and vm.flock_hits is not None:
            vm.flock_hits -= 1
            if vm.flock_hits <= 0:
                vm.flock_owner = None
                vm.flock_hits = None
        return message

    def _lock_config(self, vm, owner):
        """PVE::QemuConfig->lock_config: wait for the flock up to flock_timeout seconds."""
        deadline = time.monotonic() + self.flock_timeout
        while True:
            self._advance()
            if vm.flock_owner is None or (vm.flock_owner == "external" and vm.flock_until <= time.monotonic()):
                vm.flock_owner = owner
                return
            if time.monotonic() >= deadline:
                raise die(self._refuse_flock(vm))
            self._lock.release()
            try:
                time.sleep(0.02)
            finally:
                self._lock.acquire()

    def _unlock_config(self, vm, owner):
        if vm.flock_owner == owner:
            vm.flock_owner = None

    def _digest(self, conf):
        text = "".join(f"{k}: {conf[k]}\n" for k in sorted(conf))
        return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - PVE uses SHA1 digests

    def _typed(self, conf):
        out = {}
        for key, value in conf.items():
            is_int = key in INT_KEYS and re.fullmatch(r"-?\d+", str(value))
            if is_int or (key in BOOL_KEYS and re.fullmatch(r"[01]", str(value))):
                out[key] = int(value)
            else:
                out[key] = value
        return out

    def _alloc_volume(self, node, storage, vmid, size, name=None):
        st = self.storages.get((node, storage))
        if st is None:
            raise die(f"storage '{storage}' does not exist")
        if "images" not in st["content"]:
            raise die(f"storage '{storage}' does not support vm images")
        if name is None:
            n = 0
            while f"{storage}:vm-{vmid}-disk-{n}" in self.volumes:
                n += 1
            name = f"vm-{vmid}-disk-{n}"
        volid = f"{storage}:{name}"
        self.volumes[volid] = size
        st["used"] += size
        return volid

    def _free_volume(self, volid):
        size = self.volumes.pop(volid, None)
        if size is None:
            return
        storage = volid.split(":", 1)[0]
        for (_node, sid), st in self.storages.items():
            if sid == storage:
                st["used"] = max(0, st["used"] - size)
                break

    def _vm_volumes(self, conf):
        vols = []
        for key, value in conf.items():
            if (DRIVE_RE.match(key) or UNUSED_RE.match(key)) and ":" in value.split(",")[0]:
                vols.append(value.split(",")[0])
        return vols

    def _verify_config_params(self, params, allow=()):
        errors = {}
        out = {}
        for key, value in params.items():
            if key in allow:
                continue
            try:
                out[key] = check_config_param(key, value)
            except ValueError as exc:
                errors[key] = str(exc) if str(exc).endswith("\n") else f"{exc}\n"
        if errors:
            raise param_error(errors)
        return out

    def _resolve_drive(self, node, vm_id, key, value, default_storage=None, existing=None):
        """Turn ``STORAGE:SIZE`` / ``STORAGE:cloudinit`` into an allocated drive string."""
        drive = parse_drive(key, value)
        file = drive["file"]
        m = re.fullmatch(r"(?:([^/:\s]+):)?(\d+(?:\.\d+)?)", file)
        if m and drive.get("media") != "cdrom":
            storage = m.group(1) or default_storage
            if not storage:
                raise die("no storage ID specified (and no default storage)")
            size = int(float(m.group(2)) * GiB)
            drive["file"] = self._alloc_volume(node, storage, vm_id, size)
            drive["size"] = format_size(size)
            drive.pop("format", None)
            return print_drive(drive)
        m = re.fullmatch(r"(?:([^/:\s]+):)?cloudinit", file)
        if m:
            storage = m.group(1) or default_storage
            drive["file"] = self._alloc_volume(node, storage, vm_id, 4 * MiB, name=f"vm-{vm_id}-cloudinit")
            drive["media"] = "cdrom"
            return print_drive(drive)
        if file in ("none", "cdrom") or drive.get("media") == "cdrom":
            return print_drive(drive)
        if existing and existing.split(",")[0] == file:
            old = parse_drive(key, existing)
            drive.setdefault("size", old.get("size"))
            if drive["size"] is None:
                drive.pop("size")
            return print_drive(drive)
        if file not in self.volumes:
            raise die(f"volume '{file}' does not exist")
        drive["size"] = format_size(self.volumes[file])
        return print_drive(drive)

    def _add_macs(self, params):
        for key, value in list(params.items()):
            if NET_RE.match(key):
                net = parse_net(value)
                net.setdefault("macaddr", random_mac(self.mac_prefix))
                params[key] = print_net(net)

    def _validate_sshkeys(self, params):
        if "sshkeys" in params:
            keys = urllib.parse.unquote(params["sshkeys"])
            for line in keys.split("\n"):
                if not line.strip():
                    continue
                parts = line.split()
                ok = len(parts) >= 2 and parts[0] in SSH_KEY_TYPES
                if ok:
                    try:
                        blob = base64.b64decode(parts[1], validate=True)
                        ok = blob[4 : 4 + len(parts[0])] == parts[0].encode()
                    except (ValueError, base64.binascii.Error):
                        ok = False
                if not ok:
                    raise die("SSH public key validation error")

    def _normalise_tags(self, value):
        seen = set()
        out = []
        for tag in split_list(value):
            if tag.lower() in seen:
                continue
            seen.add(tag.lower())
            out.append(tag)
        return ";".join(out)

    # ------------------------------------------------------------- endpoints ---
    def h_ticket(self, p, auth):
        user, password = p.get("username"), p.get("password")
        if not user or self.users.get(user) != password:
            raise ApiError(401, "authentication failure")
        ticket = f"PVE:{user}:{os.urandom(8).hex().upper()}::{base64.b64encode(os.urandom(24)).decode()}"
        csrf = f"{int(time.time()):08X}:{base64.b64encode(os.urandom(18)).decode()}"
        self.tickets[ticket] = (user, csrf)
        return {
            "username": user,
            "ticket": ticket,
            "CSRFPreventionToken": csrf,
            "cap": {"vms": {"VM.Allocate": 1}, "nodes": {"Sys.Audit": 1}},
        }

    def h_version(self, p, auth):
        return {"version": self.version, "release": ".".join(self.version.split(".")[:2]), "repoid": "ec5affc9e41f1d79"}

    def h_nodes(self, p, auth):
        out = []
        for name, node in self.nodes.items():
            entry = {
                "node": name,
                "id": f"node/{name}",
                "type": "node",
                "level": "",
                "status": "online" if node["online"] else "offline",
                "ssl_fingerprint": "AA:" * 31 + "AA",
            }
            if node["online"]:
                entry.update(self._node_usage(name))
            out.append(entry)
        return out

    def _node_usage(self, name):
        node = self.nodes[name]
        running = [vm for vm in self.vms.values() if vm.node == name and vm.status == "running"]
        mem = node["mem_base"] + sum(_mib(vm.merged().get("memory", "512")) * MiB for vm in running)
        return {
            "cpu": round(min(1.0, node["cpu"] + 0.02 * len(running)), 4),
            "maxcpu": node["maxcpu"],
            "mem": mem,
            "maxmem": node["maxmem"],
            "disk": node["rootfs_used"],
            "maxdisk": node["maxdisk"],
            "uptime": 864000,
        }

    def h_node_status(self, p, auth, node):
        self._node(node)
        u = self._node_usage(node)
        n = self.nodes[node]
        return {
            "cpu": u["cpu"],
            "wait": 0.001,
            "idle": 0,
            "cpuinfo": {
                "cpus": n["maxcpu"],
                "cores": n["maxcpu"] // 2,
                "sockets": 1,
                "model": "AMD EPYC 7302P 16-Core Processor",
                "mhz": "3000.000",
                "hvm": "1",
                "user_hz": 100,
            },
            "memory": {
                "total": u["maxmem"],
                "used": u["mem"],
                "free": u["maxmem"] - u["mem"],
                "available": u["maxmem"] - u["mem"],
            },
            "swap": {"total": 8 * GiB, "used": 0, "free": 8 * GiB},
            "rootfs": {
                "total": u["maxdisk"],
                "used": u["disk"],
                "free": u["maxdisk"] - u["disk"],
                "avail": u["maxdisk"] - u["disk"],
            },
            "loadavg": ["0.42", "0.37", "0.30"],
            "uptime": u["uptime"],
            "kversion": "Linux 6.8.12-4-pve #1 SMP PREEMPT_DYNAMIC",
            "pveversion": f"pve-manager/{self.version}/ec5affc9e41f1d79",
            "ksm": {"shared": 0},
            "boot-info": {"mode": "efi", "secureboot": 0},
        }

    def h_node_storage(self, p, auth, node):
        self._node(node)
        out = []
        for (n, sid), st in sorted(self.storages.items()):
            if n != node:
                continue
            if p.get("content") and not set(split_list(p["content"])) & set(st["content"].split(",")):
                continue
            if p.get("storage") and p["storage"] != sid:
                continue
            out.append(
                {
                    "storage": sid,
                    "type": st["type"],
                    "content": st["content"],
                    "active": 1,
                    "enabled": 1,
                    "shared": int(st["shared"]),
                    "total": st["total"],
                    "used": st["used"],
                    "avail": st["total"] - st["used"],
                    "used_fraction": st["used"] / st["total"],
                }
            )
        return out

    def h_storage(self, p, auth):
        seen = {}
        for (_n, sid), st in self.storages.items():
            seen[sid] = {"storage": sid, "type": st["type"], "content": st["content"], "digest": "0" * 40}
            if st["shared"]:
                seen[sid]["shared"] = 1
        return list(seen.values())

    def _vm_entry(self, vm):
        conf = vm.merged()
        entry = {
            "vmid": vm.vmid,
            "name": conf.get("name", f"VM {vm.vmid}"),
            "status": vm.status,
            "maxmem": _mib(conf.get("memory", "512")) * MiB,
            "cpus": int(conf.get("cores", 1)) * int(conf.get("sockets", 1)),
            "maxdisk": sum(
                parse_size(parse_drive(k, v).get("size", "0")) or 0
                for k, v in conf.items()
                if DRIVE_RE.match(k) and "media=cdrom" not in v
            ),
            "mem": 0,
            "cpu": 0,
            "disk": 0,
            "netin": 0,
            "netout": 0,
            "diskread": 0,
            "diskwrite": 0,
            "uptime": int(time.monotonic() - vm.uptime_since) if vm.uptime_since else 0,
        }
        if vm.status == "running":
            entry["pid"] = 10000 + vm.vmid
            entry["mem"] = entry["maxmem"] // 3
        if conf.get("template") == "1":
            entry["template"] = 1
        if conf.get("tags"):
            entry["tags"] = conf["tags"]
        if vm.lock:
            entry["lock"] = vm.lock
        return entry

    def h_qemu_list(self, p, auth, node):
        self._node(node)
        return [self._vm_entry(vm) for vm in self.vms.values() if vm.node == node]

    def h_resources(self, p, auth):
        rtype = p.get("type")
        if rtype is not None and rtype not in ("vm", "storage", "node", "sdn", "pool"):
            raise param_error(
                {"type": f"value '{rtype}' does not have a value in the enumeration 'vm, storage, node, sdn'\n"}
            )
        out = []
        if rtype in (None, "vm"):
            for vm in sorted(self.vms.values(), key=lambda v: v.vmid):
                entry = self._vm_entry(vm)
                entry.update({"id": f"qemu/{vm.vmid}", "type": "qemu", "node": vm.node, "maxcpu": entry.pop("cpus")})
                entry.pop("pid", None)
                entry["template"] = entry.get("template", 0)
                if vm.pool:
                    entry["pool"] = vm.pool
                out.append(entry)
        if rtype in (None, "node"):
            for name, node in self.nodes.items():
                entry = {
                    "id": f"node/{name}",
                    "type": "node",
                    "node": name,
                    "level": "",
                    "cgroup-mode": 2,
                    "status": "online" if node["online"] else "offline",
                }
                if node["online"]:
                    entry.update(self._node_usage(name))
                out.append(entry)
        if rtype in (None, "storage"):
            for (name, sid), st in sorted(self.storages.items()):
                if not self.nodes[name]["online"]:
                    out.append(
                        {
                            "id": f"storage/{name}/{sid}",
                            "type": "storage",
                            "storage": sid,
                            "node": name,
                            "status": "unknown",
                        }
                    )
                    continue
                out.append(
                    {
                        "id": f"storage/{name}/{sid}",
                        "type": "storage",
                        "storage": sid,
                        "node": name,
                        "status": "available",
                        "disk": st["used"],
                        "maxdisk": st["total"],
                        "content": st["content"],
                        "plugintype": st["type"],
                        "shared": int(st["shared"]),
                    }
                )
        if rtype in (None, "pool"):
            for poolid in sorted(self.pools):
                out.append({"id": f"/pool/{poolid}", "type": "pool", "pool": poolid})
        return out

    def h_nextid(self, p, auth):
        if "vmid" in p:
            err = _check_int(p["vmid"], 100, 999999999)
            if err:
                raise param_error({"vmid": err + "\n"})
            if int(p["vmid"]) in self.vms:
                raise param_error({"vmid": f"VM {p['vmid']} already exists\n"})
            return str(int(p["vmid"]))
        vmid = self.next_id_lower
        while vmid in self.vms:
            vmid += 1
        return str(vmid)

    def h_pools(self, p, auth):
        return [
            {"poolid": pid, "comment": pool["comment"]} if pool["comment"] else {"poolid": pid}
            for pid, pool in sorted(self.pools.items())
        ]

    def h_pool_create(self, p, auth):
        poolid = p.get("poolid")
        if not poolid:
            raise param_error({"poolid": "property is missing and it is not optional\n"})
        if poolid in self.pools:
            raise die(f"create pool failed: pool '{poolid}' already exists")
        self.pools[poolid] = {"comment": p.get("comment", "")}
        return None

    def h_pool_get(self, p, auth, poolid):
        if poolid not in self.pools:
            raise die(f"pool '{poolid}' does not exist")
        members = [
            {"id": f"qemu/{vm.vmid}", "vmid": vm.vmid, "node": vm.node, "type": "qemu", "name": vm.config.get("name")}
            for vm in self.vms.values()
            if vm.pool == poolid
        ]
        return {
            "members": members,
            **({"comment": self.pools[poolid]["comment"]} if self.pools[poolid]["comment"] else {}),
        }

    def h_pool_update(self, p, auth, poolid):
        if poolid not in self.pools:
            raise die(f"pool '{poolid}' does not exist")
        delete = parse_bool(p.get("delete", "0")) == 1
        allow_move = parse_bool(p.get("allow-move", "0")) == 1
        for vmid in split_list(p.get("vms", "")):
            vm = self.vms.get(int(vmid))
            if vm is None:
                raise die(f"no such VMID '{vmid}'")
            if delete:
                if vm.pool == poolid:
                    vm.pool = None
            else:
                if vm.pool and vm.pool != poolid and not allow_move:
                    raise die(f"VM {vmid} belongs already to pool '{vm.pool}'")
                vm.pool = poolid
        if "comment" in p:
            self.pools[poolid]["comment"] = p["comment"]
        return None

    def h_config_get(self, p, auth, node, vmid):
        self._node(node)
        vm = self._vm(node, vmid)
        conf = dict(vm.config) if parse_bool(p.get("current", "0")) == 1 else vm.merged()
        conf["digest"] = self._digest(vm.config)
        if "cipassword" in conf:
            conf["cipassword"] = "**********"
        return self._typed(conf)

    def h_pending(self, p, auth, node, vmid):
        self._node(node)
        vm = self._vm(node, vmid)
        out = []
        for key in sorted(set(vm.config) | set(vm.pending) | vm.pending_delete):
            item = {"key": key}
            if key in vm.config:
                item["value"] = vm.config[key]
            if key in vm.pending:
                item["pending"] = vm.pending[key]
            if key in vm.pending_delete:
                item["delete"] = 1
            out.append(item)
        return self._typed_pending(out)

    def _typed_pending(self, items):
        for item in items:
            for field in ("value", "pending"):
                if field in item and (item["key"] in INT_KEYS or item["key"] in BOOL_KEYS):
                    with contextlib.suppress(ValueError):
                        item[field] = int(item[field])
        return items

    def _update_config(self, node, vm, p, user, wait=True):
        params = {
            k: v
            for k, v in p.items()
            if k not in ("digest", "delete", "revert", "skiplock", "background_delay", "force")
        }
        deletes = split_list(p.get("delete", ""))
        if not params and not deletes and not p.get("revert"):
            raise die("no options specified")
        for opt in deletes:
            if opt in params:
                raise param_error({"delete": f"you can't use '-{opt}' and -delete {opt}' at the same time\n"})
        params = self._verify_config_params(params)
        self._validate_sshkeys(params)
        for key, value in list(params.items()):
            if NET_RE.match(key):
                net = parse_net(value)
                if "macaddr" not in net:
                    net["macaddr"] = random_mac(self.mac_prefix)
                params[key] = print_net(net)
        owner = object()
        if wait:
            self._lock_config(vm, owner)
        elif vm.flock_owner is not None and not (vm.flock_owner == "external" and vm.flock_until <= time.monotonic()):
            raise die(self._refuse_flock(vm))
        else:
            vm.flock_owner = owner
        try:
            if p.get("digest") and p["digest"] != self._digest(vm.config):
                raise die("checksum mismatch (file change by other user?)")
            if parse_bool(p.get("skiplock", "0")) != 1:
                self._check_lock(vm)
            merged = vm.merged()
            memory = params.get("memory", merged.get("memory"))
            balloon = params.get("balloon", merged.get("balloon"))
            if ("memory" in params or "balloon" in params) and balloon and memory and int(balloon) > _mib(memory):
                raise die("balloon value too large (must be smaller than assigned memory)")
            running = vm.status == "running"
            for key, value in params.items():
                if DRIVE_RE.match(key):
                    value = self._resolve_drive(node, vm.vmid, key, value, existing=merged.get(key))
                if key == "tags":
                    value = self._normalise_tags(value)
                if key == "description":
                    value = value.rstrip()
                if running and not HOTPLUG_IMMEDIATE.match(key):
                    vm.pending[key] = value
                    vm.pending_delete.discard(key)
                else:
                    vm.config[key] = value
                    vm.pending.pop(key, None)
            for key in deletes:
                if key not in merged:
                    continue
                if running and not HOTPLUG_IMMEDIATE.match(key):
                    vm.pending_delete.add(key)
                else:
                    old = vm.config.pop(key, None)
                    vm.pending.pop(key, None)
                    if old and DRIVE_RE.match(key) and "media=cdrom" not in old:
                        n = 0
                        while f"unused{n}" in vm.config:
                            n += 1
                        vm.config[f"unused{n}"] = old.split(",")[0]
        finally:
            self._unlock_config(vm, owner)

    def h_config_put(self, p, auth, node, vmid):
        self._node(node)
        vm = self._vm(node, vmid)
        self._update_config(node, vm, p, auth)
        return None

    def h_config_post(self, p, auth, node, vmid):
        self._node(node)
        vm = self._vm(node, vmid)
        # early parameter checks happen before the worker is forked
        self._verify_config_params(
            {
                k: v
                for k, v in p.items()
                if k not in ("digest", "delete", "revert", "skiplock", "background_delay", "force")
            }
        )
        task = self._new_task(node, "qmconfig", vmid, auth)
        holder = {}

        def apply():
            try:
                self._update_config(node, vm, p, auth, wait=False)
            except ApiError as exc:
                holder["err"] = exc
                raise TaskFailure(exc.message if not exc.errors else f"{exc.message} {exc.errors}") from None

        self._plan(task, [f"update VM {vmid}: " + " ".join(f"-{k} {v}" for k, v in sorted(p.items()))], apply, vmid)
        return self._register(task)

    def h_create(self, p, auth, node):
        self._node(node)
        if "vmid" not in p:
            raise param_error({"vmid": "property is missing and it is not optional\n"})
        err = _check_int(p["vmid"], 100, 999999999)
        if err:
            raise param_error({"vmid": err + "\n"})
        vmid = int(p["vmid"])
        storage = p.get("storage")
        pool = p.get("pool")
        start = parse_bool(p.get("start", "0")) == 1
        params = {
            k: v
            for k, v in p.items()
            if k not in ("vmid", "storage", "pool", "start", "unique", "force", "archive", "bwlimit")
        }
        params = self._verify_config_params(params)
        self._validate_sshkeys(params)
        if pool is not None and pool not in self.pools:
            raise die(f"pool '{pool}' does not exist")
        if vmid in self.vms:
            raise die(f"unable to create VM {vmid} - VM {vmid} already exists on node '{self.vms[vmid].node}'")
        self._add_macs(params)
        vm = VM(vmid, node, {"lock": "create"})
        self.vms[vmid] = vm
        task = self._new_task(node, "qmcreate", vmid, auth)

        def failed():
            for volid in self._vm_volumes(vm.config):
                self._free_volume(volid)
            self.vms.pop(vmid, None)

        task.on_error = failed
        lines = []

        def finish():
            conf = {}
            try:
                for key, value in params.items():
                    if DRIVE_RE.match(key):
                        conf[key] = self._resolve_drive(node, vmid, key, value, default_storage=storage)
                        lines.append(f'  Logical volume "{conf[key].split(",")[0].split(":")[-1]}" created.')
                    elif key == "tags":
                        conf[key] = self._normalise_tags(value)
                    elif key == "description":
                        conf[key] = value.rstrip()
                    else:
                        conf[key] = value
            except ApiError as exc:
                raise TaskFailure(f"unable to create VM {vmid} - {exc.message}") from None
            if "boot" not in conf:
                order = [k for k in sorted(conf) if DRIVE_RE.match(k) or NET_RE.match(k)]
                conf["boot"] = "order=" + ";".join(order)
            conf.setdefault("smbios1", f"uuid={_uuid()}")
            conf.setdefault("vmgenid", _uuid())
            conf["meta"] = f"creation-qemu=9.0.2,ctime={int(time.time())}"
            vm.config = conf
            vm.pool = pool
            if start:
                vm.status = "running"
                vm.uptime_since = time.monotonic()

        self._plan(
            task,
            [f"create VM {vmid}: " + " ".join(f"-{k} {v}" for k, v in sorted(params.items()) if k != "cipassword")],
            finish,
            vmid,
        )
        return self._register(task)

    def h_clone(self, p, auth, node, vmid):
        self._node(node)
        if "newid" not in p:
            raise param_error({"newid": "property is missing and it is not optional\n"})
        errors = {}
        if _check_int(p["newid"], 100, 999999999):
            errors["newid"] = _check_int(p["newid"], 100, 999999999) + "\n"
        if "name" in p and not DNS_NAME_RE.match(p["name"]):
            errors["name"] = "invalid format - value does not look like a valid DNS name\n"
        if "full" in p and _check_bool(p["full"]):
            errors["full"] = _check_bool(p["full"]) + "\n"
        if "format" in p and p["format"] not in ("raw", "qcow2", "vmdk"):
            errors["format"] = f"value '{p['format']}' does not have a value in the enumeration 'raw, qcow2, vmdk'\n"
        for key in p:
            if key not in (
                "newid",
                "name",
                "description",
                "pool",
                "snapname",
                "storage",
                "format",
                "full",
                "target",
                "bwlimit",
            ):
                errors[key] = "property is not defined in schema and the schema does not allow additional properties\n"
        if errors:
            raise param_error(errors)
        src = self._vm(node, vmid)
        newid = int(p["newid"])
        pool = p.get("pool")
        storage = p.get("storage")
        target = p.get("target") or node
        # $load_and_check, run before forking the worker
        if pool is not None and pool not in self.pools:
            raise die(f"pool '{pool}' does not exist")
        if target not in self.nodes:
            raise die(f"no such cluster node '{target}'")
        if storage and (target, storage) not in self.storages:
            raise die(f"storage '{storage}' does not exist")
        self._check_lock(src)
        is_template = src.config.get("template") == "1"
        full = parse_bool(p["full"]) == 1 if "full" in p else not is_template
        if storage is not None and not full:
            raise die("parameter 'storage' not allowed for linked clones")
        if not full and not is_template:
            raise die("Linked clone feature is not supported for drive 'scsi0'")
        if target != node and not all(
            self.storages.get((target, v.split(":")[0]), {}).get("shared") for v in self._vm_volumes(src.config)
        ):
            raise die(f"can't clone VM to node '{target}' (VM uses local storage)")
        if newid in self.vms:
            raise die(f"unable to create VM {newid}: config file already exists")
        # the worker writes the temporary config at once: "# qmclone temporary file / lock: clone"
        new = VM(newid, target, {"lock": "clone"})
        self.vms[newid] = new
        task = self._new_task(node, "qmclone", vmid, auth)
        newvols = []

        def failed():
            for volid in newvols:
                self._free_volume(volid)
            if self.vms.get(newid) is new:
                del self.vms[newid]

        task.on_error = failed
        source = dict(src.config)
        drives = {k: v for k, v in source.items() if DRIVE_RE.match(k) and "media=cdrom" not in v}
        lines = []
        for slot in sorted(drives):
            d = parse_drive(slot, drives[slot])
            size = parse_size(d.get("size", "0")) or 0
            if full:
                lines.append(f"create full clone of drive {slot} ({d['file']})")
                lines.append(f'  Logical volume "vm-{newid}-disk-{sorted(drives).index(slot)}" created.')
                for pct in (0, 25, 50, 75, 100):
                    lines.append(f"transferred {human(size * pct // 100)} of {human(size)} ({pct:.2f}%)")
            else:
                lines.append(f"create linked clone of drive {slot} ({d['file']})")
                lines.append(f'  Logical volume "vm-{newid}-disk-0" created.')

        def finish():
            conf = {}
            for key, value in source.items():
                if key in (
                    "template",
                    "lock",
                    "snapshots",
                    "parent",
                    "snaptime",
                    "vmstate",
                    "snapstate",
                ) or UNUSED_RE.match(key):
                    continue
                if NET_RE.match(key):
                    net = parse_net(value)
                    net["macaddr"] = random_mac(self.mac_prefix)
                    conf[key] = print_net(net)
                elif DRIVE_RE.match(key):
                    d = parse_drive(key, value)
                    if d.get("media") == "cdrom" and "cloudinit" not in d["file"]:
                        conf[key] = value
                        continue
                    sid = storage or d["file"].split(":")[0]
                    size = parse_size(d.get("size", "0")) or 0
                    if "cloudinit" in d["file"]:
                        vol = self._alloc_volume(target, sid, newid, 4 * MiB, name=f"vm-{newid}-cloudinit")
                    elif full:
                        vol = self._alloc_volume(target, sid, newid, size)
                    else:
                        base = d["file"].split(":", 1)[1]
                        vol = self._alloc_volume(
                            target, sid, newid, size, name=f"{base}/vm-{newid}-disk-{len(newvols)}"
                        )
                    newvols.append(vol)
                    d["file"] = vol
                    conf[key] = print_drive(d)
                else:
                    conf[key] = value
            conf["smbios1"] = f"uuid={_uuid()}"
            if "vmgenid" in conf:
                conf["vmgenid"] = _uuid()
            conf["name"] = p.get("name") or f"Copy-of-VM-{source.get('name', vmid)}"
            if p.get("description"):
                conf["description"] = p["description"].rstrip()
            new.config = conf
            new.pool = pool

        self._plan(task, lines, finish, vmid)
        return self._register(task)

    def h_resize(self, p, auth, node, vmid):
        self._node(node)
        errors = {}
        disk, size = p.get("disk"), p.get("size")
        if disk is None:
            errors["disk"] = "property is missing and it is not optional\n"
        elif not DRIVE_RE.match(disk):
            errors["disk"] = f"value '{disk}' does not have a value in the enumeration 'ide0, ..., virtio15'\n"
        if size is None:
            errors["size"] = "property is missing and it is not optional\n"
        elif not re.fullmatch(r"\+?\d+(\.\d+)?[KMGT]?", size):
            errors["size"] = "value does not match the regex pattern\n"
        if errors:
            raise param_error(errors)
        vm = self._vm(node, vmid)
        task = self._new_task(node, "resize", vmid, auth)
        owner = object()

        def work():
            if vm.flock_owner not in (None, owner) and not (
                vm.flock_owner == "external" and vm.flock_until <= time.monotonic()
            ):
                raise TaskFailure(self._refuse_flock(vm))
            if p.get("digest") and p["digest"] != self._digest(vm.config):
                raise TaskFailure("checksum mismatch (file change by other user?)")
            if vm.lock and parse_bool(p.get("skiplock", "0")) != 1:
                raise TaskFailure(self._refuse_locked(vm))
            if disk not in vm.config:
                raise TaskFailure(f"disk '{disk}' does not exist")
            d = parse_drive(disk, vm.config[disk])
            if d.get("media") == "cdrom":
                raise TaskFailure("you can't resize a cdrom")
            current = self.volumes.get(d["file"], parse_size(d.get("size", "0")) or 0)
            m = re.fullmatch(r"(\+)?(\d+(?:\.\d+)?)([KMGT])?", size)
            new = int(float(m.group(2)) * {None: 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB}[m.group(3)])
            if m.group(1):
                new += current
            if new < current:
                raise TaskFailure("shrinking disks is not supported")
            if new == current:
                return
            self.volumes[d["file"]] = new
            d["size"] = format_size(new)
            vm.config[disk] = print_drive(d)

        self._plan(
            task,
            [f"  Size of logical volume pve/{disk} changed.", f"  Logical volume pve/{disk} successfully resized."],
            work,
            vmid,
        )
        return self._register(task)

    def h_status_current(self, p, auth, node, vmid):
        self._node(node)
        vm = self._vm(node, vmid)
        conf = vm.merged()
        res = {
            "vmid": vm.vmid,
            "name": conf.get("name"),
            "status": vm.status,
            "qmpstatus": vm.status,
            "cpus": int(conf.get("cores", 1)) * int(conf.get("sockets", 1)),
            "maxmem": _mib(conf.get("memory", "512")) * MiB,
            "maxdisk": self._vm_entry(vm)["maxdisk"],
            "uptime": self._vm_entry(vm)["uptime"],
            "ha": {"managed": 0},
            "cpu": 0,
            "mem": 0,
            "disk": 0,
            "netin": 0,
            "netout": 0,
            "diskread": 0,
            "diskwrite": 0,
        }
        if parse_bool(str(conf.get("agent", "0")).split(",", maxsplit=1)[0].replace("enabled=", "")) == 1:
            res["agent"] = 1
        if vm.status == "running":
            res["pid"] = 10000 + vm.vmid
            res["running-machine"] = "pc-i440fx-9.0+pve0"
            res["running-qemu"] = "9.0.2"
        if vm.lock:
            res["lock"] = vm.lock
        if conf.get("template") == "1":
            res["template"] = 1
        if conf.get("tags"):
            res["tags"] = conf["tags"]
        return res

    def _power_task(self, node, vm, ttype, user, lines, effect, check=None):
        task = self._new_task(node, ttype, vm.vmid, user)
        owner = object()

        def begin():
            if vm.flock_owner not in (None, owner) and not (
                vm.flock_owner == "external" and vm.flock_until <= time.monotonic()
            ):
                raise TaskFailure(self._refuse_flock(vm))
            vm.flock_owner = owner
            if check:
                check()

        def end():
            try:
                effect()
            finally:
                self._unlock_config(vm, owner)

        def release(*_):
            self._unlock_config(vm, owner)

        task.on_done.append(release)
        task.at(0, None, begin)
        self._plan(task, lines, end, vm.vmid)
        return self._register(task)

    def h_start(self, p, auth, node, vmid):
        self._node(node)
        vm = self._vm(node, vmid)

        def check():
            if vm.config.get("template") == "1":
                raise TaskFailure("you can't start a vm if it's a template")
            if vm.lock:
                raise TaskFailure(self._refuse_locked(vm))
            if vm.status == "running":
                raise TaskFailure(f"VM {vm.vmid} already running")

        def effect():
            # a cold start applies pending changes
            vm.config.update(vm.pending)
            for key in vm.pending_delete:
                vm.config.pop(key, None)
            vm.pending.clear()
            vm.pending_delete.clear()
            vm.status = "running"
            vm.uptime_since = time.monotonic()

        return self._power_task(node, vm, "qmstart", auth, [f"generating cloud-init ISO for VM {vmid}"], effect, check)

    def h_stop(self, p, auth, node, vmid):
        self._node(node)
        vm = self._vm(node, vmid)

        def check():
            if vm.lock and parse_bool(p.get("skiplock", "0")) != 1:
                raise TaskFailure(self._refuse_locked(vm))

        def effect():
            vm.status = "stopped"
            vm.uptime_since = None

        return self._power_task(node, vm, "qmstop", auth, [], effect, check)

    def h_shutdown(self, p, auth, node, vmid):
        self._node(node)
        vm = self._vm(node, vmid)
        timeout = float(p.get("timeout", 180))
        force = parse_bool(p.get("forceStop", "0")) == 1

        def check():
            if vm.lock and parse_bool(p.get("skiplock", "0")) != 1:
                raise TaskFailure(self._refuse_locked(vm))

        def effect():
            vm.status = "stopped"
            vm.uptime_since = None

        if vm.acpi_ignored and vm.status == "running":
            task = self._new_task(node, "qmshutdown", vm.vmid, auth)
            wait = min(timeout, self.durations["qmshutdown"] * 3)
            task.at(0, None, check)
            if force:
                task.at(wait, "VM quit/powerdown failed - terminating now with SIGTERM")
                task.at(wait + 0.1, None, effect)
            else:

                def fail():
                    raise TaskFailure("VM quit/powerdown failed - got timeout")

                task.at(wait, None, fail)
            return self._register(task)
        return self._power_task(node, vm, "qmshutdown", auth, [], effect, check)

    def h_reboot(self, p, auth, node, vmid):
        self._node(node)
        vm = self._vm(node, vmid)
        if vm.status != "running":
            raise die(f"VM {vmid} not running")

        def check():
            if vm.lock:
                raise TaskFailure(self._refuse_locked(vm))

        def effect():
            vm.config.update(vm.pending)
            for key in vm.pending_delete:
                vm.config.pop(key, None)
            vm.pending.clear()
            vm.pending_delete.clear()
            vm.uptime_since = time.monotonic()

        return self._power_task(node, vm, "qmreboot", auth, ["requesting reboot of VM"], effect, check)

    def h_migrate(self, p, auth, node, vmid):
        """POST .../migrate (qemu-server API2/Qemu.pm migrate_vm, QemuMigrate.pm): task qmigrate; the VM
        belongs to the target node when it ends."""
        self._node(node)
        vm = self._vm(node, vmid)
        target = p.get("target")
        if not target:
            raise param_error({"target": "property is missing and it is not optional\n"})
        for key in ("online", "with-local-disks", "force"):
            if key in p and _check_bool(p[key]):
                raise param_error({key: _check_bool(p[key]) + "\n"})
        if target == node:
            raise param_error({"target": "target is local node.\n"})
        if target not in self.nodes:
            raise die(f"no such cluster node '{target}'")
        if not self.nodes[target]["online"]:
            raise die(f"target node '{target}' not online")
        online = parse_bool(p.get("online", "0")) == 1
        if vm.status == "running" and not online:
            raise die("can't migrate running VM without --online")
        local = [v for v in self._vm_volumes(vm.config)
                 if not any(st["shared"] for (_n, sid), st in self.storages.items() if sid == v.split(":", 1)[0])]
        if online and vm.status == "running" and local and parse_bool(p.get("with-local-disks", "0")) != 1:
            raise die("can't live migrate attached local disks without with-local-disks option")
        self._check_lock(vm)

        def check():
            vm.config["lock"] = "migrate"

        def effect():
            vm.config.pop("lock", None)
            vm.node = target

        lines = [f"starting migration of VM {vm.vmid} to node '{target}'"]
        lines += [f"drive mirror of local disk '{v}'" for v in local] if online else []
        lines += [f"migration finished successfully (duration 00:00:0{len(local) + 1})"]
        task = self._new_task(node, "qmigrate", vm.vmid, auth)
        task.at(0, None, check)
        task.on_error = lambda: vm.config.pop("lock", None)
        self._plan(task, lines, effect, vm.vmid)
        return self._register(task)

    def h_destroy(self, p, auth, node, vmid):
        self._node(node)
        vm = self._vm(node, vmid)
        if vm.config.get("protection") == "1":
            raise die(f"can't remove VM {vmid} - protection mode enabled")
        if vm.status == "running":
            raise die(f"VM {vmid} is running - destroy failed")

        def check():
            if vm.lock and parse_bool(p.get("skiplock", "0")) != 1:
                raise TaskFailure(self._refuse_locked(vm))

        def effect():
            for volid in self._vm_volumes(vm.config):
                self._free_volume(volid)
            self.vms.pop(vm.vmid, None)

        lines = [f'  Logical volume "{v.split(":", 1)[1]}" successfully removed.' for v in self._vm_volumes(vm.config)]
        return self._power_task(node, vm, "qmdestroy", auth, lines, effect, check)

    def _task(self, node, upid):
        task = self.tasks.get(upid)
        if task is None or task.node != node:
            if not upid.startswith("UPID:"):
                raise param_error({"upid": "unable to parse worker upid\n"})
            raise param_error({"upid": "no such task\n"})
        return task

    def h_task_status(self, p, auth, node, upid):
        self._node(node)
        task = self._task(node, upid)
        user, _bang, tokenid = task.user.partition("!")
        res = {
            "upid": task.upid,
            "node": task.node,
            "pid": task.pid,
            "pstart": task.pstart,
            "starttime": task.starttime,
            "type": task.type,
            "id": task.id,
            "user": user,
            "status": "running" if task.running else "stopped",
        }
        if tokenid:
            res["tokenid"] = tokenid
        if not task.running:
            res["exitstatus"] = task.exitstatus
        return res

    def h_task_log(self, p, auth, node, upid):
        self._node(node)
        task = self._task(node, upid)
        start = int(p.get("start", 0) or 0)
        limit = int(p.get("limit", 50)) if p.get("limit") not in (None, "") else 50
        until_end = limit == 0
        out = []
        count = 0
        for line in task.log:
            count += 1
            if count <= start:
                continue
            if not until_end:
                if limit <= 0:
                    continue
                limit -= 1
            out.append({"n": count, "t": line})
        if not count:
            out.append({"n": 1, "t": "no content"})
        return out

    def h_task_stop(self, p, auth, node, upid):
        self._node(node)
        task = self._task(node, upid)
        if task.running:
            task.steps.clear()
            task.finish(error="interrupted by signal")
        return None


def _mib(memory):
    text = str(memory)
    m = re.search(r"(?:current=)?(\d+)", text)
    return int(m.group(1)) if m else 0


def _uuid():
    import uuid

    return str(uuid.uuid4())


# --------------------------------------------------------------------- HTTP ---
ROUTES = [
    ("POST", r"/access/ticket", "h_ticket"),
    ("GET", r"/version", "h_version"),
    ("GET", r"/nodes", "h_nodes"),
    ("GET", r"/nodes/(?P<node>[^/]+)/status", "h_node_status"),
    ("GET", r"/nodes/(?P<node>[^/]+)/storage", "h_node_storage"),
    ("GET", r"/nodes/(?P<node>[^/]+)/qemu", "h_qemu_list"),
    ("POST", r"/nodes/(?P<node>[^/]+)/qemu", "h_create"),
    ("GET", r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)/config", "h_config_get"),
    ("PUT", r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)/config", "h_config_put"),
    ("POST", r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)/config", "h_config_post"),
    ("GET", r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)/pending", "h_pending"),
    ("POST", r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)/clone", "h_clone"),
    ("PUT", r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)/resize", "h_resize"),
    ("GET", r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)/status/current", "h_status_current"),
    ("POST", r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)/status/start", "h_start"),
    ("POST", r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)/status/stop", "h_stop"),
    ("POST", r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)/status/shutdown", "h_shutdown"),
    ("POST", r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)/status/reboot", "h_reboot"),
    ("DELETE", r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)", "h_destroy"),
    ("POST", r"/nodes/(?P<node>[^/]+)/qemu/(?P<vmid>\d+)/migrate", "h_migrate"),
    ("GET", r"/nodes/(?P<node>[^/]+)/tasks/(?P<upid>[^/]+)/status", "h_task_status"),
    ("GET", r"/nodes/(?P<node>[^/]+)/tasks/(?P<upid>[^/]+)/log", "h_task_log"),
    ("DELETE", r"/nodes/(?P<node>[^/]+)/tasks/(?P<upid>[^/]+)", "h_task_stop"),
    ("GET", r"/cluster/resources", "h_resources"),
    ("GET", r"/cluster/nextid", "h_nextid"),
    ("GET", r"/pools", "h_pools"),
    ("POST", r"/pools", "h_pool_create"),
    ("GET", r"/pools/(?P<poolid>[^/]+)", "h_pool_get"),
    ("PUT", r"/pools/(?P<poolid>[^/]+)", "h_pool_update"),
    ("GET", r"/storage", "h_storage"),
    ("GET", r"/cluster/backup", "h_backup_index"),
    ("POST", r"/cluster/backup", "h_backup_create"),
    ("GET", r"/cluster/backup/(?P<jid>[^/]+)", "h_backup_read"),
    ("PUT", r"/cluster/backup/(?P<jid>[^/]+)", "h_backup_update"),
    ("DELETE", r"/cluster/backup/(?P<jid>[^/]+)", "h_backup_delete"),
    ("POST", r"/nodes/(?P<node>[^/]+)/vzdump", "h_vzdump"),
    ("GET", r"/cluster/backup-info/not-backed-up", "h_not_backed_up"),
    ("POST", r"/storage", "h_storage_create"),
    ("GET", r"/storage/(?P<storage>[^/]+)", "h_storage_read"),
    ("PUT", r"/storage/(?P<storage>[^/]+)", "h_storage_update"),
    ("DELETE", r"/storage/(?P<storage>[^/]+)", "h_storage_delete"),
    ("GET", r"/nodes/(?P<node>[^/]+)/storage/(?P<storage>[^/]+)/content", "h_storage_content"),
]
COMPILED = [(m, re.compile(f"^{pat}/?$"), name) for m, pat, name in ROUTES]
KNOWN_PATHS = [re.compile(f"^{pat}/?$") for _m, pat, _n in ROUTES]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pve-api-daemon/3.0"
    pve = None

    def log_message(self, fmt, *args):  # quiet
        return

    def _send(self, status, payload, reason=None):
        body = json.dumps(payload).encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=0")
        self.end_headers()
        self.wfile.write(body)

    def _params(self, query):
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            raw = self.rfile.read(length).decode()
            ctype = self.headers.get("Content-Type", "")
            if "application/json" in ctype:
                data = json.loads(raw or "{}")
                params.update(
                    {
                        k: (
                            json.dumps(v)
                            if isinstance(v, (dict, list))
                            else ("1" if v is True else "0" if v is False else str(v))
                        )
                        for k, v in data.items()
                    }
                )
            else:
                params.update({k: v[-1] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()})
        return params

    def _auth(self, method, path):
        pve = self.pve
        header = self.headers.get("Authorization", "")
        m = re.fullmatch(r"PVEAPIToken=(\S+?)=(\S+)", header)
        if m:
            token_id, secret = m.group(1), m.group(2)
            if pve.tokens.get(token_id) == secret:
                return token_id
            raise ApiError(401, "authentication failure")
        cookie = self.headers.get("Cookie", "")
        m = re.search(r"PVEAuthCookie=([^;]+)", cookie)
        if m:
            ticket = urllib.parse.unquote(m.group(1))
            entry = pve.tickets.get(ticket)
            if entry is None:
                raise ApiError(401, "authentication failure")
            user, csrf = entry
            if method != "GET" and self.headers.get("CSRFPreventionToken") != csrf:
                raise ApiError(401, "Permission denied - invalid csrf token")
            return user
        if path == "/access/ticket" and method == "POST":
            return None
        raise ApiError(401, "No ticket")

    def _dispatch(self, method):
        pve = self.pve
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        status = 200
        try:
            if not path.startswith("/api2/json/"):
                raise ApiError(501, "Unsupported format")
            path = path[len("/api2/json") :]
            params = self._params(url.query)
            with pve._lock:
                for failure in pve._failures:
                    if failure["count"] > 0 and failure["method"] == method and failure["re"].search(path):
                        failure["count"] -= 1
                        raise ApiError(failure["status"], failure["message"])
                user = self._auth(method, path)
                for m, rx, name in COMPILED:
                    match = rx.match(path)
                    if match and m == method:
                        pve._advance()
                        data = getattr(pve, name)(params, user, **match.groupdict())
                        break
                else:
                    raise ApiError(501, f"Method '{method} {path}' not implemented")
            self._send(200, {"data": data})
        except (ApiError, FormatError, Exception) as exc:
            if isinstance(exc, FormatError):
                exc = param_error({k or "value": f"{v}\n" for k, v in exc.errors.items()})
            elif not isinstance(exc, ApiError):
                exc = ApiError(500, f"internal error in the PVE double: {exc!r}")
            status = exc.status
            payload = {"data": None, "message": exc.message if exc.message.endswith("\n") else exc.message + "\n"}
            if exc.errors:
                payload["errors"] = exc.errors
            self._send(status, payload, reason=exc.message.replace("\n", " ").strip())
        finally:
            with pve._lock:
                pve.requests.append((method, path, status))

    def do_GET(self):  # noqa: N802
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self):  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self):  # noqa: N802
        self._dispatch("DELETE")


def _make_certs(directory):
    """A throw-away CA and a server certificate for 127.0.0.1/localhost (like pve-ssl.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Proxmox Virtual Environment (double) CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {name: os.path.join(directory, name) for name in ("pve-ssl.pem", "pve-ssl.key", "pve-root-ca.pem")}
    with open(paths["pve-ssl.pem"], "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths["pve-ssl.key"], "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    with open(paths["pve-root-ca.pem"], "wb") as fh:
        fh.write(ca.public_bytes(serialization.Encoding.PEM))
    return paths["pve-ssl.pem"], paths["pve-ssl.key"], paths["pve-root-ca.pem"]


def main():
    import argparse

    parser = argparse.ArgumentParser(description="Run the Proxmox VE API double on loopback (tests only).")
    parser.add_argument("--port", type=int, default=18200)
    parser.add_argument("--template", default="debian-12-cloud", help="name of the seeded template (VMID 9000)")
    args = parser.parse_args()
    double = PveDouble(port=args.port)
    double.add_template(9000, args.template)
    double.add_pool("lab")
    double.start()
    token_id, secret = double.token()
    print(
        f"PROXMOX_HOST=127.0.0.1:{double.port}\nPROXMOX_TOKEN_ID={token_id}\nPROXMOX_TOKEN_SECRET={secret}\n"
        f"PROXMOX_CA_PATH={double.ca_file}",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        double.stop()


if __name__ == "__main__":
    main()
