# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan and apply one Proxmox VE cluster backup job (logic of locus.infra.proxmox_backup_job).

Private API of the collection (may change without notice).

A job lives in ``/cluster/backup/{id}``. The manager reads it (one GET of the job list, one of
``/cluster/resources`` when VM names are resolved or a run is asked for), normalises both
sides -- VMID lists as sorted sets, ``prune-backups`` property strings as dicts, booleans,
``compress: 1`` as ``lzo``, the REF-tag in the comment apart from the text -- and sends only
the keys that differ (``PUT`` with ``delete`` for keys to drop), so a second run is a no-op.
``state: run`` starts the job's settings now on every node that holds a selected guest
(``POST /nodes/{node}/vzdump``, like the web UI's "Run now") and waits for the tasks.
"""

from __future__ import annotations

import re
import time

from ansible_collections.locus.infra.plugins.module_utils._proxmox import ProxmoxError

JOB_ID_RE = re.compile(r"^[a-z][a-z0-9_-]+$", re.IGNORECASE)  # pve-configid
REF_TAG_RE = re.compile(r"^LOCUS-[A-Z]+\d{8}-\d{3,}$")
COMMENT_REF_RE = re.compile(r"(?:^|\s+)locus-ref: (LOCUS-[A-Z]+\d{8}-\d{3,})\s*$")
RETENTION_KEYS = ("keep-all", "keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly")
COMPRESS = {"0": "0", "1": "lzo", "lzo": "lzo", "gzip": "gzip", "zstd": "zstd"}
SELECTION_KEYS = ("vmid", "all", "exclude", "pool")
# Job keys that describe the job, not a vzdump run (the web UI drops them for "Run now").
NOT_VZDUMP_KEYS = {"id", "type", "schedule", "enabled", "comment", "next-run", "repeat-missed", "starttime", "dow",
                   "digest"}
CAL_NAMES = {"minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually", "quarterly", "semiannually",
             "semi-annually"}
_DOW = r"(mon|tue|wed|thu|fri|sat|sun)"
CAL_DOW_RE = re.compile(rf"^{_DOW}(\.\.{_DOW})?(,{_DOW}(\.\.{_DOW})?)*$", re.IGNORECASE)
_PART = r"(\*|\d+(\.\.\d+)?)(/\d+)?"
CAL_LIST_RE = re.compile(rf"^{_PART}(,{_PART})*$")


class BackupSpecError(Exception):
    """The module arguments describe an impossible job. The message names the option."""


# ------------------------------------------------------------------ values ---
def check_calendar_event(text):
    """A PVE calendar event (systemd-like, ``man 7 systemd.time`` subset PVE accepts):
    ``daily``, ``sat 02:30``, ``mon..fri 21:00``, ``*-*-01 03:00``, ``*/15``, ``02:00,14:00``.
    Returns the event with single spaces; raises ValueError naming the bad part."""
    parts = str(text or "").split()
    if not parts:
        raise ValueError("the schedule is empty")
    if len(parts) == 1 and parts[0].lower() in CAL_NAMES:
        return parts[0]
    rest = list(parts)
    if CAL_DOW_RE.match(rest[0]):
        rest.pop(0)
    if rest and "-" in rest[0]:
        date = rest.pop(0).split("-")
        if len(date) not in (2, 3) or not all(CAL_LIST_RE.match(p) for p in date):
            raise ValueError(f"'{'-'.join(date)}' is not a date ([YYYY-]MM-DD, '*' for any)")
    if rest:
        spec = rest.pop(0).split(":")
        if len(spec) > 3 or not all(CAL_LIST_RE.match(p) for p in spec):
            raise ValueError(f"'{':'.join(spec)}' is not a time ([HH:]MM[:SS], '*', ranges a..b, steps /n)")
        limits = (59,) if len(spec) == 1 else (23, 59, 59)
        for index, value in enumerate(spec):
            limit = limits[index]
            for number in re.findall(r"(?<![/\d])\d+", value):
                if int(number) > limit:
                    raise ValueError(f"{number} is out of range in '{':'.join(spec)}' (at most {limit})")
    if rest:
        raise ValueError(f"unexpected '{' '.join(rest)}' (weekday, date and time, in that order)")
    return " ".join(parts)


def vmid_list(value, where="vmids"):
    """``"101,102 103"``, ``[101, "102"]`` -> ``[101, 102, 103]`` (sorted, no duplicates)."""
    if value is None:
        return None
    items = value if isinstance(value, list) else re.split(r"[\s,;]+", str(value).strip())
    out = set()
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        if not text.isdigit() or not 100 <= int(text) <= 999999999:
            raise BackupSpecError(f"{where}: {item!r} is not a VMID (100..999999999)")
        out.add(int(text))
    return sorted(out)


def parse_retention(value):
    """``prune-backups`` as PVE stores it (``keep-daily=7,keep-last=3``) or returns it -> dict."""
    if value in (None, ""):
        return {}
    if isinstance(value, dict):
        items = value.items()
    else:
        items = []
        for part in str(value).split(","):
            if part:
                key, _sep, val = part.partition("=")
                items.append((key.strip(), val.strip()))
    out = {}
    for key, val in items:
        key = str(key).replace("_", "-")
        if key not in RETENTION_KEYS:
            raise BackupSpecError(f"retention: unknown key {key!r} (known: {', '.join(RETENTION_KEYS)})")
        try:
            number = int(val) if not isinstance(val, bool) else int(val)
        except (TypeError, ValueError):
            raise BackupSpecError(f"retention.{key}: {val!r} is not an integer") from None
        if key == "keep-all":
            if number:
                out[key] = 1
            continue
        if number < 1:
            raise BackupSpecError(f"retention.{key}: {number} is below 1 (leave the key out to keep none by it)")
        out[key] = number
    if out.get("keep-all") and len(out) > 1:
        raise BackupSpecError("retention: keep_all cannot be set together with other keep options")
    return out


def print_retention(value):
    return ",".join(f"{key}={value[key]}" for key in RETENTION_KEYS if key in value)


def split_ref(comment):
    """``"nightly locus-ref: LOCUS-DEPLOY20250908-004"`` -> (``"nightly"``, the tag)."""
    text = (comment or "").strip()
    m = COMMENT_REF_RE.search(text)
    if not m:
        return text, None
    return text[: m.start()].strip(), m.group(1)


def join_ref(text, tag):
    text = (text or "").strip()
    if not tag:
        return text
    return f"{text} locus-ref: {tag}" if text else f"locus-ref: {tag}"


def _bool(value, default=True):
    if value is None or value == "":
        return default
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def normalise_job(job):
    """A job as GET /cluster/backup returns it -> the managed keys, normalised."""
    out = {
        "schedule": " ".join(str(job["schedule"]).split()) if job.get("schedule") else None,
        "storage": job.get("storage"),
        "mode": job.get("mode") or "snapshot",  # vzdump's default
        "compress": COMPRESS.get(str(job["compress"]), str(job["compress"])) if job.get("compress") is not None else "0",
        "prune-backups": parse_retention(job.get("prune-backups")),
        "notes-template": job.get("notes-template") or "",
        "enabled": _bool(job.get("enabled")),
        "vmid": vmid_list(job.get("vmid"), "vmid") if job.get("vmid") else None,
        "all": _bool(job.get("all"), default=False),
        "exclude": vmid_list(job.get("exclude"), "exclude") if job.get("exclude") else None,
        "pool": job.get("pool") or None,
    }
    text, tag = split_ref(job.get("comment"))
    out["comment"] = text
    out["ref_tag"] = tag
    # PVE sets all=1 when exclude is given without a pool
    if out["exclude"] and not out["pool"]:
        out["all"] = True
    return out


def selected_guests(job, resources):
    """The guests a job selects now: ``{vmid: node}`` (templates are not backed up; a listed
    VMID the cluster lacks maps to None)."""
    norm = normalise_job(job)
    guests = {int(r["vmid"]): r for r in resources if r.get("type") in ("qemu", "lxc")}
    if norm["vmid"]:
        return {vmid: guests[vmid]["node"] if vmid in guests else None for vmid in norm["vmid"]}
    exclude = set(norm["exclude"] or [])
    out = {}
    for vmid, res in guests.items():
        if res.get("template") or vmid in exclude:
            continue
        if norm["pool"] and res.get("pool") != norm["pool"]:
            continue
        out[vmid] = res.get("node")
    return out


class BackupJobManager:
    def __init__(self, client, params, check_mode=False):
        self.client = client
        self.p = params
        self.check_mode = check_mode
        self.changes = {}
        self.actions = []
        self.tasks = []
        self.warnings = []
        self.timeout = params.get("wait_timeout") or 600
        self._resources = None
        self.job_id = params["id"]
        if not JOB_ID_RE.match(self.job_id) or len(self.job_id) > 50:
            raise BackupSpecError(f"id: {self.job_id!r} is not a job ID (a letter, then letters, digits, '-' or '_'; "
                                  "2..50 characters)")
        ref = params.get("ref_tag")
        if ref and not REF_TAG_RE.match(ref):
            raise BackupSpecError(f"ref_tag: {ref!r} is not a REF-tag (LOCUS-<ACTION><YYYYMMDD>-<SEQ>)")

    # ------------------------------------------------------------- reading ---
    def resources(self):
        if self._resources is None:
            self._resources = self.client.resources("vm")
        return self._resources

    def find_job(self):
        for job in self.client.request("GET", "cluster/backup") or []:
            if job.get("id") == self.job_id:
                return job
        return None

    def _resolve_names(self, names, where):
        guests = [r for r in self.resources() if r.get("type") in ("qemu", "lxc") and not r.get("template")]
        out, missing = [], []
        for name in names:
            match = [int(r["vmid"]) for r in guests if r.get("name") == name]
            if not match:
                missing.append(name)
            elif len(match) > 1:
                raise BackupSpecError(f"{where}: {len(match)} guests are named {name} (VMIDs "
                                      f"{', '.join(map(str, sorted(match)))}); give VMIDs instead")
            else:
                out.extend(match)
        if missing:
            raise BackupSpecError(f"{where}: no VM or container named {', '.join(missing)} in the cluster")
        return out

    # ------------------------------------------------------------ desired ---
    def desired(self):
        """The module arguments as normalised job keys; None = not managed by this task."""
        p = self.p
        want = {}
        if p.get("schedule") is not None:
            try:
                want["schedule"] = check_calendar_event(p["schedule"])
            except ValueError as exc:
                raise BackupSpecError(f"schedule: {p['schedule']!r} is not a calendar event: {exc}") from None
        for key, option in (("storage", "storage"), ("mode", "mode")):
            if p.get(option) is not None:
                want[key] = p[option]
        if p.get("compress") is not None:
            want["compress"] = COMPRESS[str(p["compress"])]
        if p.get("retention") is not None:
            want["prune-backups"] = parse_retention({k: v for k, v in p["retention"].items() if v not in (None, False)})
        if p.get("notes_template") is not None:
            if len(p["notes_template"]) > 1024:
                raise BackupSpecError("notes_template: longer than 1024 characters")
            want["notes-template"] = p["notes_template"].replace("\n", "\\n")
        if p.get("enabled") is not None:
            want["enabled"] = bool(p["enabled"])
        if p.get("comment") is not None:
            if "\n" in p["comment"]:
                raise BackupSpecError("comment: must be one line")
            want["comment"] = p["comment"].strip()
        selection = [name for name in ("vmids", "vm_names", "pool", "all") if p.get(name) not in (None, False)]
        if "vmids" in selection and "vm_names" in selection:
            selection.remove("vm_names")
        if len(selection) > 1:
            raise BackupSpecError(f"{' and '.join(selection)}: choose one selection (vmids/vm_names, pool or all)")
        exclude = vmid_list(p.get("exclude"), "exclude") if p.get("exclude") is not None else None
        if p.get("exclude_names"):
            exclude = sorted(set(exclude or []) | set(self._resolve_names(p["exclude_names"], "exclude_names")))
        if exclude and selection and selection[0] not in ("all", "pool"):
            raise BackupSpecError("exclude: only with all or pool (a VMID list names what it backs up)")
        if selection:
            kind = selection[0]
            if kind in ("vmids", "vm_names"):
                ids = set(vmid_list(p.get("vmids"), "vmids") or [])
                if p.get("vm_names"):
                    ids |= set(self._resolve_names(p["vm_names"], "vm_names"))
                if not ids:
                    raise BackupSpecError(f"{kind}: the list is empty - a job must back up something "
                                          "(use state: absent to remove the job)")
                want.update(vmid=sorted(ids), all=False, exclude=None, pool=None)
            elif kind == "pool":
                want.update(vmid=None, all=False, pool=p["pool"], exclude=exclude or None)
            else:
                want.update(vmid=None, all=True, pool=None, exclude=exclude or None)
        elif exclude is not None:
            raise BackupSpecError("exclude: give it together with all or pool")
        return want

    # ------------------------------------------------------------ planning ---
    def plan(self, current, want):
        """(params to send, keys to delete); records ``changes`` (normalised before/after)."""
        send, delete = {}, []
        cur = normalise_job(current) if current is not None else {}
        for key, value in want.items():
            if key == "comment":
                continue
            if key == "enabled":  # PVE's default is enabled; 0 must be sent, never deleted
                if (current is None and not value) or (current is not None and cur["enabled"] != value):
                    self.changes[key] = {"before": cur.get("enabled"), "after": value}
                    send[key] = int(value)
                continue
            before = cur.get(key)
            if current is None and value in (None, False):
                continue
            if before == value or (key == "prune-backups" and before == value == {}):
                continue
            if key == "all" and not value and not before:
                continue
            self.changes[key] = {"before": before if current is not None else None, "after": value}
            if value in (None, False, "", {}):
                if current is not None and key in current:
                    delete.append(key)
                continue
            if key in ("vmid", "exclude"):
                send[key] = ",".join(str(v) for v in value)
            elif key == "prune-backups":
                send[key] = print_retention(value)
            elif key == "all":
                send[key] = 1
            else:
                send[key] = value
        # comment: the text is compared; the REF-tag moves only with a real change (or a new job)
        text, tag = cur.get("comment", ""), cur.get("ref_tag")
        want_text = want.get("comment", text)
        ref = self.p.get("ref_tag")
        new_tag = ref if ref and (send or delete or current is None or want_text != text) else tag
        if want_text != text:
            self.changes["comment"] = {"before": text if current is not None else None, "after": want_text}
        if new_tag != tag:
            self.changes["ref_tag"] = {"before": tag, "after": new_tag}
        comment = join_ref(want_text, new_tag)
        if comment != (current or {}).get("comment", "").strip() and (comment or current is not None):
            if comment:
                send["comment"] = comment
            elif "comment" in (current or {}):
                delete.append("comment")
        return send, sorted(set(delete))

    # ---------------------------------------------------------------- run ---
    def run(self):
        p, client = self.p, self.client
        state = p["state"]
        current = self.find_job()
        result = {"changed": False, "id": self.job_id}
        if state == "absent":
            if current is not None:
                before = normalise_job(current)
                self.changes = {k: {"before": v, "after": None} for k, v in before.items() if v not in (None, "", {})}
                self.actions.append(f"delete backup job {self.job_id}")
                if not self.check_mode:
                    client.request("DELETE", f"cluster/backup/{self.job_id}")
            return self._finish(result, None)
        want = self.desired()
        if current is None:
            if "vmid" not in want:
                raise BackupSpecError(f"id: backup job {self.job_id} does not exist; creating it needs a selection "
                                      "(vmids, vm_names, pool or all)")
            if not want.get("schedule"):
                raise BackupSpecError(f"schedule: backup job {self.job_id} does not exist; creating it needs a schedule")
            if not want.get("storage"):
                raise BackupSpecError(f"storage: backup job {self.job_id} does not exist; creating it needs a storage")
        send, delete = self.plan(current, want)
        if current is None:
            self.actions.append(f"create backup job {self.job_id}")
            if not self.check_mode:
                client.request("POST", "cluster/backup", {"id": self.job_id, **send})
        elif send or delete:
            self.actions.append(f"update backup job {self.job_id}: {', '.join(sorted(set(send) | set(delete)))}")
            if not self.check_mode:
                params = dict(send)
                if delete:
                    params["delete"] = ",".join(delete)
                client.request("PUT", f"cluster/backup/{self.job_id}", params)
        if self.check_mode:
            job = self._predicted(current, send, delete)
        elif current is None or send or delete:
            job = client.request("GET", f"cluster/backup/{self.job_id}")
        else:
            job = current
        if state == "run":
            self._run_now(job)
        return self._finish(result, job)

    def _predicted(self, current, send, delete):
        """The job after the planned request (check mode), the way PVE's update_job merges it."""
        job = dict(current) if current is not None else {"id": self.job_id, "type": "vzdump", "enabled": 1}
        for key in delete:
            job.pop(key, None)
        job.update(send)
        if "vmid" in send:
            for key in ("all", "exclude", "pool"):
                job.pop(key, None)
        elif send.get("all"):
            job.pop("vmid", None)
            job.pop("pool", None)
        elif "pool" in send:
            job.pop("vmid", None)
            job.pop("all", None)
        return job

    def _run_now(self, job):
        selected = selected_guests(job, self.resources())
        missing = sorted(v for v, node in selected.items() if node is None)
        if missing:
            self.warnings.append(f"backup job {self.job_id} names guests that do not exist: "
                                 f"{', '.join(map(str, missing))} (vzdump reports them as failed)")
        nodes = sorted({node for node in selected.values() if node})
        if job.get("node"):
            nodes = [n for n in nodes if n == job["node"]]
        if not nodes:
            raise BackupSpecError(f"state: run - backup job {self.job_id} selects no guest in the cluster")
        params = {k: v for k, v in job.items() if k not in NOT_VZDUMP_KEYS and v not in (None, "")}
        if isinstance(params.get("prune-backups"), dict):
            params["prune-backups"] = print_retention(parse_retention(params["prune-backups"]))
        self.actions.append(f"run backup job {self.job_id} now on {', '.join(nodes)} ({len(selected)} guests)")
        self.result_guests = sorted(selected)
        if self.check_mode:
            return
        started = []
        for node in nodes:
            started.append((node, self.client.request("POST", f"nodes/{node}/vzdump", params)))
        errors = []
        for node, upid in started:
            try:
                res = self.client.wait_task(upid, self.timeout, what=f"backup job {self.job_id} on {node}")
            except ProxmoxError as exc:
                errors.append(exc)
                continue
            self.tasks.append({"what": f"vzdump on {node}", **res.as_dict()})
            for line in res.warnings:
                self.warnings.append(f"backup on {node}: {line}")
        if errors:
            raise errors[0]

    def _finish(self, result, job):
        result["changed"] = bool(self.actions)
        result["actions"] = self.actions
        result["changes"] = self.changes
        result["tasks"] = self.tasks
        if job is not None:
            norm = normalise_job(job)
            result["job"] = {k: v for k, v in norm.items() if k != "ref_tag"}
            result["ref_tag"] = norm["ref_tag"]
        if getattr(self, "result_guests", None) is not None:
            result["guests"] = self.result_guests
        result["diff"] = {"before": {k: v["before"] for k, v in self.changes.items()},
                          "after": {k: v["after"] for k, v in self.changes.items()}}
        return result


def run(client, params, check_mode=False):
    """Entry point for the module: ``(result, warnings)``; raises BackupSpecError/ProxmoxError
    (with ``partial``: the actions planned and tasks that ran)."""
    manager = BackupJobManager(client, params, check_mode=check_mode)
    try:
        result = manager.run()
    except ProxmoxError as exc:
        exc.partial = {"actions": manager.actions, "tasks": manager.tasks, "warnings": manager.warnings,
                       "changed": bool(manager.actions) and not check_mode}
        raise
    result["api_requests"] = client.requests
    if client.retried:
        result["retries"] = client.retried
    return result, manager.warnings


# ------------------------------------------------------------------- info ---
def backup_info(client, vms=None, max_age_hours=None, now=None):
    """Jobs, the guests no job covers (PVE's ``/cluster/backup-info/not-backed-up``), and per guest
    the enabled jobs that select it and its newest backup on any storage with ``backup`` content.

    Requests: cluster/resources, cluster/backup, not-backed-up, and one content listing per backup
    storage (a shared storage once)."""
    now = time.time() if now is None else now
    resources = client.resources()
    jobs = client.request("GET", "cluster/backup") or []
    not_backed_up = client.request("GET", "cluster/backup-info/not-backed-up") or []
    uncovered = {int(item["vmid"]) for item in not_backed_up}
    guests = {int(r["vmid"]): r for r in resources if r.get("type") in ("qemu", "lxc") and not r.get("template")}
    job_out, covering = [], {}
    for job in jobs:
        norm = normalise_job(job)
        selected = selected_guests(job, resources)
        job_out.append({"id": job.get("id"), **{k: v for k, v in norm.items() if k != "ref_tag"},
                        "ref_tag": norm["ref_tag"], "guests": sorted(selected)})
        if norm["enabled"]:
            for vmid in selected:
                covering.setdefault(vmid, []).append(job.get("id"))
    newest, seen_shared = {}, set()
    for res in resources:
        if res.get("type") != "storage" or res.get("status") != "available":
            continue
        if "backup" not in str(res.get("content") or "").split(","):
            continue
        if res.get("shared"):
            if res["storage"] in seen_shared:
                continue
            seen_shared.add(res["storage"])
        path = f"nodes/{res['node']}/storage/{res['storage']}/content"
        for item in client.request("GET", path, {"content": "backup"}) or []:
            if item.get("vmid") is None or item.get("ctime") is None:
                continue
            vmid = int(item["vmid"])
            if vmid not in newest or int(item["ctime"]) > newest[vmid]["ctime"]:
                newest[vmid] = {"ctime": int(item["ctime"]), "volid": item.get("volid"), "storage": res["storage"]}
    out, by_name = [], {}
    for vmid in sorted(guests):
        res = guests[vmid]
        last = newest.get(vmid)
        entry = {"vmid": vmid, "name": res.get("name"), "node": res.get("node"), "type": res.get("type"),
                 "covered": vmid not in uncovered, "jobs": sorted(covering.get(vmid, [])),
                 "last_backup": last["ctime"] if last else None,
                 "last_backup_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last["ctime"])) if last else None,
                 "age_hours": round((now - last["ctime"]) / 3600.0, 2) if last else None,
                 "volid": last["volid"] if last else None}
        if max_age_hours is not None:
            entry["fresh"] = bool(last) and entry["age_hours"] < max_age_hours
        out.append(entry)
        by_name.setdefault(res.get("name"), []).append(entry)
    result = {"jobs": job_out, "not_backed_up": sorted(uncovered), "guests": out,
              "by_name": {name: items[0] for name, items in by_name.items() if name and len(items) == 1}}
    if vms:
        wanted, missing = [], []
        for ident in vms:
            text = str(ident)
            match = [e for e in out if (text.isdigit() and e["vmid"] == int(text)) or e["name"] == text]
            if not match:
                missing.append(text)
            wanted.extend(e for e in match if e not in wanted)
        result["guests"] = wanted
        result["missing"] = missing
    if max_age_hours is not None:
        result["stale"] = sorted(e["name"] or str(e["vmid"]) for e in result["guests"] if not e["fresh"])
    result["uncovered"] = sorted(e["name"] or str(e["vmid"]) for e in result["guests"] if not e["covered"])
    return result
