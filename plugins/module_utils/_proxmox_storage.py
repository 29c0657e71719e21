# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Register a Proxmox Backup Server datastore as Proxmox VE storage (logic of locus.infra.proxmox_storage).

Private API of the collection (may change without notice).

Only ``type: pbs``. ``GET /storage/{id}`` never returns the password or the encryption key
(PVE keeps them in /etc/pve/priv/storage), so they cannot be compared: they are sent when the
storage is created and afterwards only with ``password_update``/``encryption_key_update: always``.
Everything else is compared after normalisation (fingerprint case and separators, node lists
as sets, ``disable`` as the inverse of ``enabled``) and only differing keys are sent.
"""

from __future__ import annotations

import json
import re

from ansible_collections.locus.infra.plugins.module_utils._proxmox import ProxmoxError

STORAGE_ID_RE = re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", re.IGNORECASE)  # pve-storage-id
FINGERPRINT_RE = re.compile(r"^([0-9a-f]{2}:){31}[0-9a-f]{2}$")
MASK = "********"


class StorageSpecError(Exception):
    """The module arguments describe an impossible storage. The message names the option."""


def normalise_fingerprint(value):
    text = str(value or "").strip().lower().replace("-", ":")
    if ":" not in text and len(text) == 64:
        text = ":".join(text[i:i + 2] for i in range(0, 64, 2))
    if not FINGERPRINT_RE.match(text):
        raise StorageSpecError("fingerprint: not a SHA-256 fingerprint (32 hex bytes, e.g. from "
                               "'proxmox-backup-manager cert info')")
    return text


def _nodes(value):
    if not value:
        return None
    items = value if isinstance(value, list) else re.split(r"[\s,;]+", str(value))
    return sorted({str(v).strip() for v in items if str(v).strip()})


def normalise(conf):
    return {
        "server": conf.get("server"),
        "datastore": conf.get("datastore"),
        "username": conf.get("username"),
        "fingerprint": normalise_fingerprint(conf["fingerprint"]) if conf.get("fingerprint") else None,
        "port": int(conf["port"]) if conf.get("port") not in (None, "") else 8007,
        "namespace": conf.get("namespace") or None,
        "nodes": _nodes(conf.get("nodes")),
        "enabled": str(conf.get("disable", "0")) not in ("1", "true"),
    }


def run(client, p, check_mode=False):
    sid, key = _check(p)
    want = {k: p.get(k) for k in ("server", "datastore", "username", "port", "namespace")}
    want["fingerprint"] = normalise_fingerprint(p["fingerprint"]) if p.get("fingerprint") else None
    want["nodes"] = _nodes(p.get("nodes"))
    want["enabled"] = p.get("enabled")
    current = None
    for item in client.request("GET", "storage") or []:
        if item.get("storage") == sid:
            current = client.request("GET", f"storage/{sid}")
            break
    result = {"changed": False, "storage": sid, "actions": [], "changes": {}}
    if current is not None and current.get("type") != "pbs":
        raise StorageSpecError(f"storage: {sid} exists with type {current.get('type')}, not pbs; this module only "
                               "manages Proxmox Backup Server storages")
    if p["state"] == "absent":
        if current is not None:
            result["actions"].append(f"remove storage {sid}")
            result["changes"] = {"storage": {"before": sid, "after": None}}
            if not check_mode:
                client.request("DELETE", f"storage/{sid}")
        result["changed"] = bool(result["actions"])
        return result
    send, delete = _differences(want, current, result["changes"])
    secrets = _secrets(p, key, current, result["changes"])
    if current is None:
        missing = [n for n in ("server", "datastore", "username", "fingerprint") if not want.get(n)]
        if p.get("password") is None:
            missing.append("password")
        if missing:
            raise StorageSpecError(f"{', '.join(missing)}: storage {sid} does not exist; registering it needs these")
        result["actions"].append(f"add pbs storage {sid} ({want['server']}:{want['datastore']})")
        if not check_mode:
            client.request("POST", "storage", {"storage": sid, "type": "pbs", "content": "backup", **send, **secrets})
    elif send or delete or secrets:
        result["actions"].append(f"update storage {sid}: {', '.join(sorted(set(send) | set(delete) | set(secrets)))}")
        if not check_mode:
            params = {**send, **secrets}
            if delete:
                params["delete"] = ",".join(delete)
            client.request("PUT", f"storage/{sid}", params)
    result["changed"] = bool(result["actions"])
    result["diff"] = {"before": {k: v["before"] for k, v in result["changes"].items()},
                      "after": {k: v["after"] for k, v in result["changes"].items()}}
    return result


def _check(p):
    """``(storage id, encryption key)`` once both are known to be well-formed."""
    sid = p["storage"]
    if not STORAGE_ID_RE.match(sid):
        raise StorageSpecError(f"storage: {sid!r} is not a storage ID (a letter, then letters, digits, '-', '_', '.')")
    key = p.get("encryption_key")
    if key and key != "autogen":
        try:
            parsed = json.loads(key)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or "data" not in parsed:
            raise StorageSpecError("encryption_key: not a PBS key file (JSON with 'data'; "
                                   "'proxmox-backup-client key create --kdf none') or 'autogen'")
    return sid, key


def _differences(want, current, changes):
    """``(parameters to send, parameters to delete)`` so the storage becomes ``want``; records ``changes``."""
    cur = normalise(current) if current is not None else {}
    send, delete = {}, []
    for name, value in want.items():
        if value is None:
            continue
        if current is not None and cur.get(name) == value:
            continue
        if current is None and name == "port" and value == 8007:
            continue
        if current is None and name == "enabled" and value:
            continue
        changes[name] = {"before": cur.get(name), "after": value}
        if name == "enabled":
            if value:
                delete.append("disable")
            else:
                send["disable"] = 1
        elif name == "nodes":
            send["nodes"] = ",".join(value)
        else:
            send[name] = value
    return send, delete


def _secrets(p, key, current, changes):
    """Password and encryption key: sent on create, or on every run with ``*_update: always``."""
    secrets = {}
    if p.get("password") is not None and (current is None or p["password_update"] == "always"):  # noqa: S105
        secrets["password"] = p["password"]
        changes["password"] = {"before": MASK if current is not None else None, "after": MASK}
    if key and (current is None or p["encryption_key_update"] == "always"):
        secrets["encryption-key"] = key
        changes["encryption_key"] = {"before": MASK if current is not None else None, "after": MASK}
    return secrets


def run_module(client, params, check_mode=False):
    try:
        result = run(client, params, check_mode=check_mode)
    except ProxmoxError as exc:
        exc.partial = {"changed": False}
        raise
    result["api_requests"] = client.requests
    return result, []
