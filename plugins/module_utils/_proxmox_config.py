# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox VE config values: parsing, printing and *normalising* them for comparison.

Private API of the collection (may change without notice).

PVE hands config values back in other shapes than a client sends them: booleans as 0/1,
integers as numbers or strings, ``memory`` as ``2048`` or ``current=2048``, NIC strings
with a generated MAC in front (``virtio=BC:24:11:..,bridge=vmbr0``), drive sizes
re-printed (``32768M`` -> ``32G``), SSH keys URL-encoded in whatever way the last client
encoded them, tags re-joined with ``;`` and description trailing whitespace stripped.
Every comparison here goes through a normaliser so that an unchanged VM is reported
unchanged -- the false "changed" of community.proxmox.proxmox_kvm comes from comparing
raw strings (or from not comparing at all).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, unquote

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB

REF_MARKER = "locus-ref:"
REF_TAG_RE = re.compile(r"^LOCUS-[A-Z]+\d{8}-\d{3,}$")
TAG_RE = re.compile(r"^[a-z0-9_][a-z0-9_\-+.]*$", re.IGNORECASE)
MAC_RE = re.compile(r"^(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$")
NIC_MODELS = ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "i82551", "i82557b", "i82559er", "ne2k_isa",
              "ne2k_pci", "pcnet")
DISK_SLOT_RE = re.compile(r"^(ide[0-3]|sata[0-5]|scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5]))$")
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT])?(?:i?B)?\s*$", re.IGNORECASE)
SSH_KEY_TYPES = ("ssh-rsa", "ssh-dss", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                 "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")


class ConfigValueError(ValueError):
    """A value the user gave cannot be turned into a Proxmox config value."""


# ------------------------------------------------------------ property strings ---
def parse_property_string(text, default_key=None):
    """``a=1,b=2`` (or ``value,b=2`` with a default key) into an ordered dict of strings."""
    result = {}
    if text is None:
        return result
    for part in str(text).split(","):
        if part == "":
            continue
        if "=" in part:
            key, value = part.split("=", 1)
        elif default_key is not None:
            key, value = default_key, part
        else:
            key, value = part, ""
        result[key.strip()] = value.strip()
    return result


def print_property_string(data, first=None):
    """Print like PVE: the ``first`` key's bare value (if given) first, then sorted ``k=v``."""
    parts = []
    if first is not None and first in data:
        parts.append(str(data[first]))
    parts.extend(f"{key}={data[key]}" for key in sorted(data) if key != first and data[key] is not None)
    return ",".join(parts)


# ------------------------------------------------------------------- scalars ---
def pve_bool(value):
    """0/1, "0"/"1", true/false, yes/no, on/off -> bool; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigValueError(f"not a boolean: {value!r}")


def pve_int(value):
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigValueError(f"not an integer: {value!r}") from None


def parse_size(value, default_unit="G"):
    """A size as bytes: ints are taken in ``default_unit``; strings like ``32G``, ``512M``, ``1.5T``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigValueError(f"not a size: {value!r}")
    if isinstance(value, (int, float)):
        text = f"{value}{default_unit}"
    else:
        text = str(value)
    m = SIZE_RE.match(text)
    if not m:
        raise ConfigValueError(f"not a size: {value!r} (use e.g. 32, '32G', '512M' or '1T')")
    unit = (m.group(2) or ("" if isinstance(value, str) else default_unit)).upper()
    factor = {"": 1, "K": KIB, "M": MIB, "G": GIB, "T": TIB}[unit]
    return int(float(m.group(1)) * factor)


def format_size(size):
    """Like PVE::JSONSchema::format_size (the largest unit that divides exactly)."""
    size = int(size)
    for unit, factor in (("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)):
        if size % factor == 0 and size >= factor:
            return f"{size // factor}{unit}"
    return str(size)


def human_size(size):
    for unit, factor in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= factor:
            value = size / factor
            return f"{value:g} {unit}" if value == int(value) else f"{value:.2f} {unit}"
    return f"{size} B"


def memory_mib(value):
    """``2048`` / ``"2048"`` / ``"current=2048"`` -> 2048."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    props = parse_property_string(value, default_key="current")
    return pve_int(props.get("current"))


def cpu_type(value):
    if value is None:
        return None
    return parse_property_string(value, default_key="cputype").get("cputype")


def set_cpu_type(current, cputype):
    props = parse_property_string(current, default_key="cputype") if current else {}
    props["cputype"] = cputype
    return print_property_string(props, first="cputype")


def agent_enabled(value):
    if value is None:
        return None
    props = parse_property_string(value, default_key="enabled")
    return pve_bool(props.get("enabled", "0"))


def set_agent_enabled(current, enabled):
    props = parse_property_string(current, default_key="enabled") if current else {}
    props["enabled"] = "1" if enabled else "0"
    if len(props) == 1:
        return props["enabled"]
    return print_property_string(props, first="enabled")


# ---------------------------------------------------------------------- tags ---
def split_list(text):
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        items = []
        for item in text:
            items.extend(split_list(item))
        return items
    return [item for item in re.split(r"[;,\s]+", str(text)) if item]


def normalise_tags(value):
    """Tags as PVE keeps them: unique (case-insensitive), in the given order.

    A string is split like PVE splits it (``;``, ``,``, blanks); list items are taken whole."""
    items = [str(v).strip() for v in value] if isinstance(value, (list, tuple)) else split_list(value)
    seen = set()
    out = []
    for tag in items:
        if not tag:
            continue
        if tag.lower() not in seen:
            seen.add(tag.lower())
            out.append(tag)
    return out


def check_tags(tags):
    bad = [tag for tag in tags if not TAG_RE.match(tag)]
    if bad:
        raise ConfigValueError(f"invalid tag(s) {', '.join(map(repr, bad))}: use letters, digits, '_', '-', '+', '.'"
                               " and start with a letter, digit or '_'")
    return tags


def tags_equal(current, desired):
    return {t.lower() for t in normalise_tags(current)} == {t.lower() for t in normalise_tags(desired)}


# ------------------------------------------------------------------ ssh keys ---
def normalise_ssh_keys(value):
    """SSH keys as a sorted list of ``type base64 [comment]`` lines, however they were encoded.

    Accepts a list, a newline-separated string, or the URL-encoded string PVE returns
    (``%20``, ``%2B``, ``%3D``, ``%40`` in any mix -- clients differ in what they escape)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        text = "\n".join(str(v) for v in value)
    else:
        text = str(value)
    if re.search(r"%[0-9A-Fa-f]{2}", text) and " " not in text:
        text = unquote(text)
    keys = set()
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            keys.add(line)
    return sorted(keys)


def check_ssh_keys(keys):
    for key in keys:
        parts = key.split()
        if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
            raise ConfigValueError(f"not an SSH public key: {key[:40]!r}... (expected '<type> <base64> [comment]')")
    return keys


def encode_ssh_keys(keys):
    """The encoding PVE's own GUI and API docs use: every byte but unreserved ones escaped."""
    return quote("\n".join(keys) + "\n", safe="")


# ----------------------------------------------------------------- ipconfig ---
def normalise_ipconfig(value):
    """``ip=10.0.0.5/24,gw=10.0.0.1`` (or a dict) -> canonical dict of strings."""
    if value is None:
        return None
    props = dict(value) if isinstance(value, dict) else parse_property_string(value)
    out = {}
    for key, item in props.items():
        if item is None or item == "":
            continue
        item = str(item).strip()
        if key in ("ip", "ip6") and item not in ("dhcp", "auto"):
            try:
                if "/" not in item:
                    raise ValueError(item)
                item = str(ipaddress.ip_interface(item))
            except ValueError:
                raise ConfigValueError(f"{key}={item!r} is not an address with prefix length (e.g. 10.0.0.5/24)") from None
        elif key in ("gw", "gw6"):
            try:
                item = str(ipaddress.ip_address(item))
            except ValueError:
                raise ConfigValueError(f"{key}={item!r} is not an IP address") from None
        elif key not in ("ip", "ip6"):
            raise ConfigValueError(f"unknown ipconfig key {key!r} (use ip, gw, ip6, gw6)")
        out[key] = item
    return out


def print_ipconfig(props):
    order = [k for k in ("ip", "gw", "ip6", "gw6") if k in props]
    return ",".join(f"{k}={props[k]}" for k in order)


def ipconfig_address(value):
    """The bare IPv4 (or else IPv6) address of an ipconfig, for SSH waits; None for DHCP."""
    props = normalise_ipconfig(value) or {}
    for key in ("ip", "ip6"):
        item = props.get(key)
        if item and item not in ("dhcp", "auto"):
            return str(ipaddress.ip_interface(item).ip)
    return None


# ---------------------------------------------------------------------- NICs ---
def parse_net(value):
    """``virtio=MAC,bridge=vmbr0,tag=10`` or ``model=virtio,macaddr=..`` -> dict with model/macaddr."""
    props = parse_property_string(value, default_key="model")
    net = {}
    for key, item in props.items():
        if key in NIC_MODELS:
            net["model"] = key
            if item:
                net["macaddr"] = item.upper()
        elif key == "macaddr":
            net["macaddr"] = item.upper()
        else:
            net[key] = item
    return net


def print_net(net):
    head = f"{net['model']}={net['macaddr']}" if net.get("macaddr") else net["model"]
    rest = [f"{key}={net[key]}" for key in sorted(net) if key not in ("model", "macaddr") and net[key] is not None]
    return ",".join([head, *rest])


def desired_net(spec):
    """Module NIC spec (bridge, vlan, model, mac, firewall, mtu, rate, link_down) -> net dict."""
    net = {"model": spec.get("model") or "virtio", "bridge": spec["bridge"]}
    if spec.get("mac"):
        if not MAC_RE.match(spec["mac"]):
            raise ConfigValueError(f"mac {spec['mac']!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
        if int(spec["mac"].split(":")[0], 16) & 1:
            raise ConfigValueError(f"mac {spec['mac']!r} is a multicast address")
        net["macaddr"] = spec["mac"].upper()
    if spec.get("vlan") is not None:
        net["tag"] = str(int(spec["vlan"]))
    if spec.get("firewall") is not None:
        net["firewall"] = "1" if spec["firewall"] else "0"
    if spec.get("link_down") is not None:
        net["link_down"] = "1" if spec["link_down"] else "0"
    if spec.get("mtu") is not None:
        net["mtu"] = str(int(spec["mtu"]))
    if spec.get("rate") is not None:
        net["rate"] = f"{float(spec['rate']):g}"
    if spec.get("queues") is not None:
        net["queues"] = str(int(spec["queues"]))
    return net


def merge_net(current, desired):
    """Desired NIC applied over the current one: keeps the MAC and every key not managed.

    ``vlan: null`` in the spec means "no VLAN tag" (an existing ``tag`` is removed);
    firewall/mtu/rate/queues/link_down are only managed when given."""
    merged = dict(current) if current else {}
    if merged.get("model") != desired["model"]:
        merged["model"] = desired["model"]
    for key in ("bridge", "macaddr", "firewall", "link_down", "mtu", "rate", "queues"):
        if key in desired:
            if key in ("firewall", "link_down") and desired[key] == "0" and key not in merged:
                continue  # off is the default: do not write firewall=0 into a NIC that never had it
            merged[key] = desired[key]
    if "tag" in desired:
        merged["tag"] = desired["tag"]
    else:
        merged.pop("tag", None)
    return merged


def net_equal(current, desired_merged):
    return normalise_net_for_compare(current) == normalise_net_for_compare(desired_merged)


def normalise_net_for_compare(net):
    out = {}
    for key, value in (net or {}).items():
        if key in ("firewall", "link_down"):
            out[key] = pve_bool(value)
        elif key in ("tag", "mtu", "queues"):
            out[key] = pve_int(value)
        elif key == "rate":
            out[key] = float(value)
        elif key == "macaddr":
            out[key] = str(value).upper()
        else:
            out[key] = value
    if out.get("firewall") is False:
        out.pop("firewall")
    if out.get("link_down") is False:
        out.pop("link_down")
    return out


# -------------------------------------------------------------------- drives ---
def parse_drive(value):
    return parse_property_string(value, default_key="file")


def print_drive(drive):
    return print_property_string(drive, first="file")


def drive_size(value):
    size = parse_drive(value).get("size")
    return parse_size(size, default_unit="") if size else 0


def drive_is_cdrom(value):
    return parse_drive(value).get("media") == "cdrom"


def drive_is_cloudinit(value):
    file = parse_drive(value).get("file", "")
    return bool(re.search(r"(^|:|/)(vm-\d+-)?cloudinit(\.\w+)?$", file))


def drive_option_value(key, value):
    if key in ("iothread", "ssd", "backup", "replicate", "ro", "shared", "snapshot"):
        return "1" if pve_bool(value) else "0"
    return str(value)


# --------------------------------------------------------------- description ---
def split_ref(description):
    """(text, ref_tag) of a description that may carry a ``locus-ref: LOCUS-...`` last line."""
    text = (description or "").rstrip()
    lines = text.split("\n")
    if lines and lines[-1].startswith(REF_MARKER):
        tag = lines[-1][len(REF_MARKER):].strip()
        return "\n".join(lines[:-1]).rstrip(), tag
    return text, None


def join_ref(text, tag):
    text = (text or "").rstrip()
    if not tag:
        return text
    return f"{text}\n\n{REF_MARKER} {tag}" if text else f"{REF_MARKER} {tag}"


# ------------------------------------------------------------------- display ---
def display_value(key, value):
    """A config value as a human reads it in a diff (decoded SSH keys, hidden password)."""
    if value is None:
        return None
    if key == "cipassword":
        return "********"
    if key == "sshkeys":
        return normalise_ssh_keys(value)
    if key in ("onboot", "template", "protection", "numa"):
        return pve_bool(value)
    return value
