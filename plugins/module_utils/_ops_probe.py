# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parsers behind locus.infra.ops_probe: what a managed host says about its health.

Private API of the collection (may change without notice). Runs on the managed host (the
module ships it), so it keeps to the standard library. Every parser takes the text a tool
printed and returns plain data; none of them runs anything. :func:`probe` is the module's
whole job - what to read and what a failure to read means - reading through the functions
the module gives it.
"""

from __future__ import annotations

import json
import os
import re
import time

MESSAGE_CHARS = 200  # of a journal message kept as evidence


def parse_meminfo(text):
    """``{total_bytes, available_bytes, used_percent}`` from /proc/meminfo."""
    values = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+):\s+(\d+)(?:\s+kB)?", line)
        if m:
            values[m.group(1)] = int(m.group(2)) * 1024
    total = values.get("MemTotal")
    if not total:
        return None
    available = values.get("MemAvailable", values.get("MemFree", 0) + values.get("Cached", 0))
    return {"total_bytes": total, "available_bytes": available, "used_percent": round(100.0 * (total - available) / total, 1)}


def cpu_times(text):
    """``(busy, total)`` jiffies of the first ``cpu`` line of /proc/stat."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            fields = [int(x) for x in line.split()[1:]]
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
            total = sum(fields[:8])  # guest time is already inside user/nice
            return total - idle, total
    return None


def cpu_percent(before, after):
    """Busy share between two :func:`cpu_times` samples, in percent."""
    if not before or not after or after[1] <= before[1]:
        return None
    return round(100.0 * (after[0] - before[0]) / (after[1] - before[1]), 1)


def disk_usage(mount, statvfs):
    """``{mount, total_bytes, used_bytes, used_percent}`` like df(1) from an ``os.statvfs`` result."""
    total = statvfs.f_blocks * statvfs.f_frsize
    free_root = statvfs.f_bfree * statvfs.f_frsize
    avail = statvfs.f_bavail * statvfs.f_frsize
    used = total - free_root
    # df's Use%: used / (used + available to unprivileged users)
    pct = round(100.0 * used / (used + avail), 1) if used + avail else 0.0
    return {"mount": mount, "total_bytes": total, "used_bytes": used, "used_percent": pct}


def parse_unit_show(text):
    """``{unit: {id, load, active, sub}}`` from ``systemctl show -p Id,LoadState,ActiveState,SubState u1 u2``.

    systemctl prints one block per unit, in the order asked, separated by blank lines.
    """
    blocks, cur = [], {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if cur:
                blocks.append(cur)
                cur = {}
            continue
        key, _sep, value = line.partition("=")
        cur[key] = value
    return [{"id": b.get("Id", ""), "load": b.get("LoadState", ""), "active": b.get("ActiveState", ""), "sub": b.get("SubState", "")}
            for b in blocks]


def parse_failed_units(text):
    """Unit names from ``systemctl --failed --plain --no-legend``."""
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _json_records(text):
    for line in (text or "").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            yield rec


def _message(rec):
    msg = rec.get("MESSAGE")
    if isinstance(msg, list):  # journald sends non-UTF-8 messages as byte arrays
        msg = bytes(b for b in msg if isinstance(b, int) and 0 <= b < 256).decode("utf-8", "replace")
    return str(msg or "")


def _realtime(rec):
    value = str(rec.get("__REALTIME_TIMESTAMP") or "")
    return int(value) if value.isdigit() else None


def _sshd_key(rec):
    """``(boot id, PID)`` of a record sshd logged, else None: a PID names one process only within one boot."""
    if rec.get("SYSLOG_IDENTIFIER") != "sshd" or not str(rec.get("_PID") or "").isdigit():
        return None
    return str(rec.get("_BOOT_ID") or ""), int(rec["_PID"])


def sshd_error_pids(text):
    """The sshd PIDs (sorted) among the error records of ``journalctl -o json``: whose sessions to look up."""
    return sorted({key[1] for key in map(_sshd_key, _json_records(text)) if key})


# OpenSSH's per-connection process (the privileged monitor) logs the whole session under one PID, e.g.
#   Accepted publickey for root from 10.77.0.1 port 32792 ssh2: ED25519 SHA256:...
#   pam_env(sshd:session): Unable to open env file: /etc/default/locale: No such file or directory   <- err
#   Disconnected from user root 10.77.0.1 port 32792 / pam_unix(sshd:session): session closed for user root
_ACCEPTED = re.compile(r"^Accepted \S+ for (\S+) from (\S+) port \d+")
_SESSION_END = re.compile(r"^(?:Disconnected from user |pam_unix\(sshd:session\): session closed for user )")


def ssh_sessions(text):
    """Authenticated SSH sessions from sshd's records (``journalctl -o json SYSLOG_IDENTIFIER=sshd``).

    ``{(boot id, PID): [(start, end or None, user, address)]}`` in journal microseconds; a session runs from
    its ``Accepted ... for USER from ADDRESS`` to the first end line of the same process (open while none).
    """
    sessions = {}
    for rec in sorted(_json_records(text), key=lambda r: _realtime(r) or 0):
        key, ts = _sshd_key(rec), _realtime(rec)
        if key is None or ts is None:
            continue
        msg = _message(rec)
        m = _ACCEPTED.match(msg)
        if m:
            sessions.setdefault(key, []).append([ts, None, m.group(1), m.group(2)])
        elif _SESSION_END.match(msg) and sessions.get(key) and sessions[key][-1][1] is None:
            sessions[key][-1][1] = ts
    return {key: [tuple(s) for s in spans] for key, spans in sessions.items()}


def in_own_session(rec, sessions, own):
    """Whether sshd logged ``rec`` inside a session accepted for ``own`` = ``(user, address)``."""
    key, ts = _sshd_key(rec), _realtime(rec)
    if not own or key is None or ts is None:
        return False
    return any((user, address) == tuple(own) and start <= ts and (end is None or ts <= end)
               for start, end, user, address in sessions.get(key) or [])


def parse_journal(text, limit_units=20, sessions=None, own=None):
    """Error records from ``journalctl -o json``: ``{count, units: [{unit, count, last}], own_session}``.

    Only counts and the last message (cut to MESSAGE_CHARS) per unit are kept: the facts an
    operator or a reviewer needs, not the raw log. With ``own`` (the collector's ``(user, address)``)
    and ``sessions`` (:func:`ssh_sessions`), what sshd logged inside the collector's own SSH sessions
    is left out of the count and only counted in ``own_session``: each of its logins would otherwise add
    an error (e.g. pam_env's missing /etc/default/locale) and change the findings between two runs.
    Pre-authentication errors and sessions of another user or address always count.
    """
    units, count, own_count = {}, 0, 0
    for rec in _json_records(text):
        if in_own_session(rec, sessions or {}, own):
            own_count += 1
            continue
        count += 1
        unit = rec.get("_SYSTEMD_UNIT") or rec.get("SYSLOG_IDENTIFIER") or rec.get("_COMM") or "unknown"
        entry = units.setdefault(str(unit), {"unit": str(unit), "count": 0, "last": ""})
        entry["count"] += 1
        entry["last"] = " ".join(_message(rec).split())[:MESSAGE_CHARS]
    ranked = sorted(units.values(), key=lambda u: (-u["count"], u["unit"]))
    return {"count": count, "units": ranked[:limit_units], "own_session": own_count}


def own_login(environ, user):
    """``(user, client address)`` of the SSH login this module runs in (``SSH_CONNECTION``), or None."""
    fields = str(environ.get("SSH_CONNECTION") or "").split()
    return (user, fields[0]) if len(fields) == 4 and user else None


_ROUTES = re.compile(r"Routes:\s+(\d+) imported,(?:\s+(\d+) filtered,)?\s+(\d+) exported")


def parse_bird_protocols(text):
    """BGP sessions from ``birdc show protocols all``.

    ``[{name, state, bgp_state, neighbor, neighbor_as, since, info, channels: [{family, state, imported, exported}]}]``.
    """
    sessions, cur, channel = [], None, None
    for line in text.splitlines():
        if not line.strip() or line.startswith(("BIRD ", "Name ")) or re.match(r"^\d{4} ", line):
            continue
        if not line[0].isspace():
            fields = line.split()
            cur = None
            if len(fields) >= 4 and fields[1] == "BGP":
                cur = {"name": fields[0], "state": fields[3], "bgp_state": None, "neighbor": None, "neighbor_as": None,
                       "since": " ".join(fields[4:5]), "info": " ".join(fields[5:]), "channels": []}
                sessions.append(cur)
            channel = None
            continue
        if cur is None:
            continue
        stripped = line.strip()
        key, _sep, value = stripped.partition(":")
        value = value.strip()
        if key == "BGP state":
            cur["bgp_state"] = value
        elif key == "Neighbor address":
            cur["neighbor"] = value
        elif key == "Neighbor AS":
            cur["neighbor_as"] = int(value) if value.isdigit() else value
        elif stripped.startswith("Channel "):
            channel = {"family": stripped.split()[1], "state": None, "imported": 0, "exported": 0}
            cur["channels"].append(channel)
        elif channel is not None and key == "State":
            channel["state"] = value
        elif channel is not None and key == "Routes":
            m = _ROUTES.search(stripped)
            if m:
                channel["imported"], channel["exported"] = int(m.group(1)), int(m.group(3))
    return sessions


def parse_k3s_nodes(text):
    """``[{name, ready, roles, version}]`` from ``kubectl get nodes -o json`` (a v1 NodeList)."""
    doc = json.loads(text)
    out = []
    for item in doc.get("items") or []:
        meta, status = item.get("metadata") or {}, item.get("status") or {}
        ready = [c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"]
        roles = sorted(k.split("/", 1)[1] for k in (meta.get("labels") or {}) if k.startswith("node-role.kubernetes.io/"))
        out.append({"name": meta.get("name"), "ready": ready[:1] == ["True"], "roles": roles,
                    "version": (status.get("nodeInfo") or {}).get("kubeletVersion")})
    return out


def parse_ollama_tags(text):
    """``[{name, size_bytes, parameter_size, quantization, modified_at}]`` from Ollama's ``GET /api/tags``."""
    doc = json.loads(text)
    out = []
    for m in doc.get("models") or []:
        details = m.get("details") or {}
        out.append({"name": m.get("name") or m.get("model"), "size_bytes": m.get("size"),
                    "parameter_size": details.get("parameter_size"), "quantization": details.get("quantization_level"),
                    "modified_at": m.get("modified_at")})
    return out


# Where setup asks the kernel for the default route (ansible.module_utils.facts.network.linux).
ROUTE_PROBES = {"v4": "8.8.8.8", "v6": "2404:6800:400a:800::1012"}


def parse_ip_addr(text):
    """``(all_ipv4_addresses, all_ipv6_addresses)`` from ``ip -j addr show`` as setup fills them.

    Every address of every interface, without ``127.*`` and ``::1`` (setup's rule).
    """
    v4, v6 = [], []
    for link in json.loads(text or "[]"):
        for a in link.get("addr_info") or []:
            local = a.get("local")
            if a.get("family") == "inet" and local and not local.startswith("127."):
                v4.append(local)
            elif a.get("family") == "inet6" and local and local != "::1":
                v6.append(local)
    return v4, v6


def parse_route_get(text, target):
    """``{interface, address, gateway}`` from ``ip route get <target>``'s first line, read as setup reads it."""
    words = (text or "").strip().splitlines()[0].split() if (text or "").strip() else []
    out = {}
    if words and words[0] == target:
        for i in range(len(words) - 1):
            if words[i] == "dev":
                out["interface"] = words[i + 1]
            elif words[i] == "src":
                out["address"] = words[i + 1]
            elif words[i] == "via" and words[i + 1] != target:
                out["gateway"] = words[i + 1]
    return out


# ------------------------------------------------------------------ the module's job -----------
def probe(params, run_command, read, fetch, login, statvfs=os.statvfs, sleep=time.sleep, clock=time.monotonic):
    """The result of ``locus.infra.ops_probe`` for its options ``params``.

    ``run_command(argv)`` -> ``(rc, out, err)`` (C locale, no pager); ``read(path)`` -> text;
    ``fetch(url, timeout)`` -> the body of a GET; ``login()`` -> this SSH login's ``(user,
    address)`` or None (see :func:`own_login`). A part that cannot be read is null and named in
    ``errors``; nothing raises for it.
    """
    errors = []
    before = cpu_times(read("/proc/stat")) if params["cpu_sample"] > 0 else None
    started = clock()

    def run(argv, what):
        rc, out, err = run_command(argv)
        if rc != 0 and what:
            errors.append(f"{what}: {' '.join(argv)} exited {rc}: {(err or out).strip()[:200]}")
        return rc, out

    result = {"changed": False, **_systemd(params["units"], run), **_resources(params["mounts"], read, statvfs, errors),
              **_services(params, run, fetch, login, errors)}
    if before:
        sleep(max(0.0, params["cpu_sample"] - (clock() - started)))  # the reads above count as sample time
        result["cpu_percent"] = cpu_percent(before, cpu_times(read("/proc/stat")))
    else:
        result["cpu_percent"] = None
    if params["network_facts"]:
        facts = network_facts(run)
        if facts is None:
            errors.append("network facts: ip -j addr show could not be read (setup gathers them instead)")
        else:
            result["ansible_facts"] = facts
    result["errors"] = errors
    return result


def _systemd(names, run):
    """``system_state``, ``failed_units`` and the state of each unit of ``names``."""
    result = {"system_state": run(["systemctl", "is-system-running"], None)[1].strip() or "unknown"}
    result["failed_units"] = parse_failed_units(run(["systemctl", "--failed", "--plain", "--no-legend"], "failed units")[1])
    result["units"] = []
    if names:
        shown = parse_unit_show(run(["systemctl", "show", "-p", "Id,LoadState,ActiveState,SubState", "--", *names], "units")[1])
        for name, state in zip(names, shown + [{}] * len(names), strict=False):
            result["units"].append({"name": name, "id": state.get("id", ""), "load": state.get("load", "unknown"),
                                    "active": state.get("active", "unknown"), "sub": state.get("sub", "")})
    return result


def _resources(mounts, read, statvfs, errors):
    """``memory`` and ``disks`` (one entry per readable mount point of ``mounts``)."""
    result = {}
    try:
        result["memory"] = parse_meminfo(read("/proc/meminfo"))
    except OSError as exc:
        result["memory"] = None
        errors.append(f"memory: {exc}")
    result["disks"] = []
    for mount in mounts:
        try:
            result["disks"].append(disk_usage(mount, statvfs(mount)))
        except OSError as exc:
            errors.append(f"disk {mount}: {exc.strerror or exc}")
    return result


def _services(params, run, fetch, login, errors):
    """``bgp``, ``journal``, ``k3s_nodes`` and ``ollama_models``: each null unless its option asks for it."""
    result = {"bgp": None, "journal": None, "k3s_nodes": None, "ollama_models": None}
    if params["bird"]:
        rc, out = run(["birdc", "show", "protocols", "all"], "BGP")
        result["bgp"] = parse_bird_protocols(out) if rc == 0 else None
    if params["journal_since"] is not None:
        since = ["-b"] if params["journal_since"] <= 0 else [f"--since=@{params['journal_since']}"]
        rc, out = run(["journalctl", "--no-pager", "-q", "-o", "json", "-p", "err", "-n", "1000", *since], "journal")
        result["journal"] = journal(run, out, login() if params["journal_own_sessions"] else None) if rc == 0 else None
    if params["k3s_command"]:
        rc, out = run([*params["k3s_command"], "get", "nodes", "-o", "json", f"--request-timeout={params['timeout']}s"],
                      "K3s nodes")
        if rc == 0:
            try:
                result["k3s_nodes"] = parse_k3s_nodes(out)
            except (ValueError, AttributeError) as exc:
                errors.append(f"K3s nodes: not a NodeList: {exc}")
    if params["ollama_url"]:
        url = params["ollama_url"].rstrip("/") + "/api/tags"
        try:
            result["ollama_models"] = parse_ollama_tags(fetch(url, params["timeout"]))
        except Exception as exc:  # noqa: BLE001 - any failure to read the API is a reported error, not a crash
            errors.append(f"Ollama models: GET {url}: {type(exc).__name__}: {exc}")
    return result


def journal(run, errors_json, own):
    """The error records counted, without those sshd logged inside the collector's own SSH
    sessions (``own``: see :func:`own_login`; None counts them all)."""
    pids = sshd_error_pids(errors_json) if own else []
    sessions = {}
    if pids:
        # Every boot (a PID names a process per boot) and no time window: a session may have begun long before.
        rc, out = run(["journalctl", "--no-pager", "-q", "-o", "json", "-n", "5000", "SYSLOG_IDENTIFIER=sshd",
                       *[f"_PID={pid}" for pid in pids[:200]]], "journal")
        sessions = ssh_sessions(out) if rc == 0 else {}
    return parse_journal(errors_json, sessions=sessions, own=own)


def network_facts(run):
    """setup's address facts from ``ip``: all_ipv4_addresses, all_ipv6_addresses, default_ipv4, default_ipv6."""
    rc, out = run(["ip", "-j", "addr", "show"], None)
    try:
        v4, v6 = parse_ip_addr(out) if rc == 0 else (None, None)
    except (ValueError, AttributeError):
        v4 = None
    if v4 is None:
        return None
    defaults = {}
    for family, target in ROUTE_PROBES.items():
        rc, out = run(["ip", f"-{family[1]}", "route", "get", target], None)
        defaults[family] = parse_route_get(out, target) if rc == 0 else {}
    return {"all_ipv4_addresses": v4, "all_ipv6_addresses": v6, "default_ipv4": defaults["v4"], "default_ipv6": defaults["v6"]}
