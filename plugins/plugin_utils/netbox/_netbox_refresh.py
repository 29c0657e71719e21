# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Incremental NetBox inventory refresh from NetBox's change log (private API, controller only).

A build keeps a *snapshot*: the raw objects it read (devices and VMs as the REST API returned
them, tags attached) plus where NetBox's change log stood before it read them. The next build
asks the change log (``core/object-changes``) what changed since, re-reads only the VMs and
devices those changes touch, and rebuilds the inventory from the updated snapshot. Anything it
cannot attribute to single hosts, or any doubt about the change log itself, raises
:class:`FullBuild` with the reason, and the caller reads everything again. docs/netbox.md
("Incremental refresh") states the guarantees; the rules live here:

* The snapshot file is named by a hash of the URL, the token's identity (an HMAC of the token,
  never the token) and the options that shape what is read, lies in ``<state_dir>/netbox`` (0700)
  as a 0600 file, and carries an HMAC keyed by the token: a snapshot of another token, a
  tampered or truncated one does not verify and is never used.
* Change-log ids come from a PostgreSQL sequence, allocated when a change is written and visible
  when its transaction commits. The snapshot records the id up to which nothing can appear any
  more (``settled``: every id up to it was visible and applied, or was missing at a full build that
  started more than ``OVERLAP`` after it, by NetBox's clock - no transaction stays open that long)
  and which later ids it has applied (``seen``). The next build reads every change after
  ``settled``: an id missing there is a change still in flight, rolled back, or hidden from this
  token by a constrained permission - a full build. The high-water mark must still be there with
  the same time (else the log was pruned or another NetBox answers).
* After the changes are applied, the number of VMs and devices NetBox shows this token must equal
  the snapshot's (a permission change is not in the change log).
* A snapshot records when its full build started (``built``, NetBox's clock); once it is older than
  the maximum age, the next build is full again, so that changes that bypass the change log (SQL,
  ``.update()`` in scripts, a restore) are picked up after at most that long. Incremental builds
  keep ``built``: only a full build makes a snapshot younger.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import hmac
import json
import os
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from ansible_collections.locus.infra.plugins.plugin_utils.netbox._netbox import NetBoxError
from ansible_collections.locus.infra.plugins.plugin_utils.netbox._netbox_inventory import (
    DEVICE_ENDPOINT,
    DEVICE_FIELDS,
    VM_ENDPOINT,
    VM_FIELDS,
    query_params,
)

SNAPSHOT_FORMAT = 1
MAGIC = b"locus.infra.netbox snapshot"
CHANGES_ENDPOINT = "core/object-changes"
STATUS_ENDPOINT = "status"
CUSTOM_FIELDS_ENDPOINT = "extras/custom-fields"
CHANGE_FIELDS = "id,time,action,changed_object_type,changed_object_id"
# Longest a NetBox transaction may take between allocating a change id and committing it.
OVERLAP = timedelta(minutes=10)
# One page of changes (NetBox's default MAX_PAGE_SIZE); more since the last build: full build.
MAX_CHANGES = 1000
# A full build first reads this many of the newest changes; the MAX_CHANGES tail only when all of them are
# younger than OVERLAP (a busy log). Serialising 1000 changes costs NetBox ~2.5x what 100 do.
TAIL_CHANGES = 100
# Ids per request when re-reading changed objects (keeps the query string short).
ID_CHUNK = 100

KINDS = {"virtual_machines": (VM_ENDPOINT, VM_FIELDS, "virtualization.virtualmachine"),
         "devices": (DEVICE_ENDPOINT, DEVICE_FIELDS, "dcim.device")}
IP_TYPE = "ipam.ipaddress"
# Change-logged types no field the inventory reads depends on (unless an object custom field of
# devices or VMs refers to them, see custom_field_refs). Every type not named here and not handled
# above is "not local to one host": a full build.
IGNORED_TYPES = frozenset({
    "extras.journalentry", "dcim.interface", "virtualization.vminterface", "dcim.macaddress", "ipam.prefix",
    "ipam.iprange", "ipam.aggregate", "ipam.vlan", "ipam.vlangroup", "ipam.service", "dcim.cable",
    "dcim.consoleport", "dcim.consoleserverport", "dcim.powerport", "dcim.poweroutlet", "dcim.frontport",
    "dcim.rearport", "dcim.devicebay", "dcim.modulebay", "dcim.inventoryitem",
})


class FullBuild(Exception):
    """The snapshot cannot be brought up to date; ``str()`` says why (for ``-v``)."""


# ---------------------------------------------------------------------------------------------- files

def _auth_key(auth_header):
    """Per-token secret for the snapshot's HMAC; the token itself is never stored."""
    return hmac.new(auth_header.encode(), MAGIC, hashlib.sha256).digest()


class SnapshotStore:
    """The snapshot file of one (URL, token, options) in ``<state_dir>/netbox``."""

    def __init__(self, state_dir, url, auth_header, options):
        self.key = _auth_key(auth_header)
        identity = hmac.new(self.key, b"identity", hashlib.sha256).hexdigest()
        # as it reads back from JSON (tuples become lists), so that it compares equal after a round trip
        self.shape = json.loads(json.dumps({"format": SNAPSHOT_FORMAT, "url": url, "token": identity,
                                            "options": options}, sort_keys=True, default=str))
        name = hashlib.sha256(json.dumps(self.shape, sort_keys=True).encode()).hexdigest()[:40]
        self.dir = os.path.join(os.path.abspath(os.path.expanduser(state_dir)), "netbox")
        self.path = os.path.join(self.dir, f"snapshot-{name}.json")

    def load(self):
        """``(snapshot, None)`` or ``(None, why it cannot be used)``."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None, f"no snapshot yet ({self.path})"
        except OSError as exc:
            return None, f"snapshot {self.path} unreadable ({exc.strerror})"
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o077 or not stat.S_ISREG(st.st_mode):
                return None, f"snapshot {self.path} is not a private file of this user: ignored"
            blob = f.read()
        header, body = blob.partition(b"\n")[::2]
        parts = header.split(b" ")
        if len(parts) != 2 or parts[0] != b"locus-netbox-snapshot":
            return None, f"snapshot {self.path} is corrupt (no header): ignored"
        mac = hmac.new(self.key, body, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(mac, parts[1]):
            return None, (f"snapshot {self.path} does not verify (corrupt, or written with another token or "
                          "options): ignored")
        try:
            snapshot = json.loads(body)
        except ValueError:
            return None, f"snapshot {self.path} is corrupt (not JSON): ignored"
        if not isinstance(snapshot, dict) or snapshot.get("shape") != self.shape:
            return None, f"snapshot {self.path} was written for another NetBox, token or options: ignored"
        return snapshot, None

    def save(self, snapshot):
        """Write atomically (0600 file in a 0700 directory); an error is returned, not raised."""
        snapshot = dict(snapshot, shape=self.shape)
        body = json.dumps(snapshot, separators=(",", ":")).encode()
        mac = hmac.new(self.key, body, hashlib.sha256).hexdigest().encode()
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            st = os.lstat(self.dir)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
                return f"{self.dir} is not a private directory of this user: snapshot not written"
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".snapshot-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(b"locus-netbox-snapshot " + mac + b"\n" + body)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            return f"snapshot not written to {self.dir}: {exc.strerror or exc}"
        return None


# ---------------------------------------------------------------------------------------------- server clock

class ServerClock:
    """NetBox's clock, from the ``Date`` header of its change-log answers (no client clock is trusted)."""

    def __init__(self, session):
        self.date = None
        self._session = session
        session.hooks.setdefault("response", []).append(self._hook)

    def _hook(self, resp, *_args, **_kwargs):
        if f"/api/{CHANGES_ENDPOINT}/" in resp.url and resp.headers.get("Date"):
            with contextlib.suppress(TypeError, ValueError):
                self.date = email.utils.parsedate_to_datetime(resp.headers["Date"])

    def close(self):
        with contextlib.suppress(ValueError):
            self._session.hooks["response"].remove(self._hook)


def _time(value):
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


# ---------------------------------------------------------------------------------------------- probes

def anchor_probes(clock):
    """``{name: fn(client)}`` for read_objects' probe round of a full build: read before any object.

    ``clock`` is the ServerClock of the client's session (NetBox's time decides how long a tail to read).
    """
    return {"status": _status, "changes": lambda client: _change_tail(client, clock),
            "custom_fields": _custom_field_refs}


def _status(client):
    body = client.request("GET", STATUS_ENDPOINT)
    version = body.get("netbox-version") if isinstance(body, dict) else None
    if not version:
        raise NetBoxError(f"{STATUS_ENDPOINT}: no netbox-version in the answer", STATUS_ENDPOINT)
    return version


def _change_tail(client, clock):
    """``(count, changes)``: the newest changes, enough of them for anchor() (one older than OVERLAP if any)."""
    params = {"ordering": "-id", "limit": TAIL_CHANGES, "fields": CHANGE_FIELDS}
    count, tail = _changes(client.request("GET", CHANGES_ENDPOINT, params))
    now = clock.date or (tail[-1]["time"] if tail else None)
    if count > len(tail) and tail and tail[0]["time"] > now - OVERLAP:
        count, tail = _changes(client.request("GET", CHANGES_ENDPOINT, dict(params, limit=MAX_CHANGES)))
    return count, tail


def _changes(body):
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise NetBoxError(f"{CHANGES_ENDPOINT}: expected a paginated list", CHANGES_ENDPOINT)
    try:
        changes = [{"id": int(c["id"]), "time": _time(c["time"]), "type": str(c["changed_object_type"]),
                    "object": int(c["changed_object_id"]), "action": (c.get("action") or {}).get("value")}
                   for c in body["results"]]
        return body["count"], sorted(changes, key=lambda c: c["id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise NetBoxError(f"{CHANGES_ENDPOINT}: unexpected change record ({exc})", CHANGES_ENDPOINT) from None


def _custom_field_refs(client):
    """Object types referred to by object/multi-object custom fields of devices or VMs."""
    body = client.request("GET", CUSTOM_FIELDS_ENDPOINT, {"limit": 1000, "fields": "id,type,related_object_type,object_types"})
    if not isinstance(body, dict) or body.get("count", 0) > len(body.get("results") or []):
        raise NetBoxError(f"{CUSTOM_FIELDS_ENDPOINT}: more custom fields than one page", CUSTOM_FIELDS_ENDPOINT)
    ours = {ctype for _e, _f, ctype in KINDS.values()}
    refs = set()
    for cf in body["results"]:
        kind = cf.get("type")
        kind = kind.get("value") if isinstance(kind, dict) else kind
        if kind in ("object", "multiobject") and ours & set(cf.get("object_types") or []):
            refs.add(str(cf.get("related_object_type")))
    return sorted(refs)


def anchor(probe_results, clock_date):
    """Snapshot metadata from a full build's probes, or raise FullBuild saying why none can be kept.

    ``clock_date`` is NetBox's time of its change-log answer, read before any object; without a ``Date``
    header the newest change's time stands in (earlier, so the snapshot only looks older).
    """
    for name, value in probe_results.items():
        if isinstance(value, NetBoxError):
            raise FullBuild(f"no snapshot kept: {name} unreadable ({value})")
    count, tail = probe_results["changes"]
    if not tail:
        raise FullBuild(f"no snapshot kept: the change log ({CHANGES_ENDPOINT}) is empty for this token")
    head = tail[-1]
    now = clock_date or head["time"]
    # Ids missing from the log before OVERLAP ago (by NetBox's clock) can no longer be in flight: whatever
    # they were, this build read their result, or they never happened, or (pruned) are long applied.
    old = [c["id"] for c in tail if c["time"] <= now - OVERLAP]
    if old:
        settled = max(old)
    elif count == len(tail):  # the whole log is young: nothing before it
        settled = tail[0]["id"] - 1
    else:
        raise FullBuild(f"no snapshot kept: more than {len(tail)} changes in the last {OVERLAP.seconds // 60} minutes")
    return {"netbox_version": probe_results["status"], "custom_field_refs": probe_results["custom_fields"],
            "hwm": {"id": head["id"], "time": head["time"].isoformat()}, "built": now.isoformat(),
            "seen": [c["id"] for c in tail if c["id"] > settled], "settled": settled}


def _check_age(snapshot, now, max_age):
    """Raise FullBuild when the snapshot's full build is older than ``max_age`` (a timedelta; None: no limit)."""
    if max_age is None:
        return
    try:
        built = _time(snapshot["built"])
        if built.tzinfo is None:
            raise ValueError("no time zone")
    except (KeyError, TypeError, ValueError):
        raise FullBuild("the snapshot records no time of its full build (written by an older version)") from None
    if now is None:
        raise FullBuild("NetBox's answer carried no Date header: the snapshot's age is unknown")
    age = now - built
    if age < -OVERLAP:  # NetBox's clock went back (or another NetBox answers): do not trust the snapshot
        raise FullBuild(f"the snapshot's full build is dated {built.isoformat()}, after NetBox's time "
                        f"{now.isoformat()}")
    if age > max_age:
        raise FullBuild(f"the snapshot's full build is {_duration(age)} old, more than max_snapshot_age "
                        f"{int(max_age.total_seconds())} s")


def _duration(delta):
    minutes = int(delta.total_seconds()) // 60
    days, minutes = divmod(minutes, 24 * 60)
    return f"{days} d {minutes // 60} h {minutes % 60} min" if days else f"{minutes // 60} h {minutes % 60} min"


# ---------------------------------------------------------------------------------------------- incremental

def incremental(client, snapshot, filters, max_age=None):
    """Bring ``snapshot`` up to date: ``(objects, meta, note)`` or raise FullBuild.

    ``max_age`` (a timedelta, or None for no limit): an older snapshot (by NetBox's clock) is not used.

    ``objects`` is ``{"devices": [...], "virtual_machines": [...]}`` (the kinds the snapshot holds),
    ``meta`` the new change-log anchor, ``note`` the ``-v`` line.
    """
    hwm = snapshot["hwm"]
    hwm_time = _time(hwm["time"])
    kinds = [k for k in KINDS if k in snapshot["objects"]]
    clock = ServerClock(client.session)
    try:
        with ThreadPoolExecutor(max_workers=client.max_workers, thread_name_prefix="netbox") as pool:
            status = pool.submit(_status, client)
            window = pool.submit(client.request, "GET", CHANGES_ENDPOINT, {
                "id__gte": min(snapshot["settled"] + 1, hwm["id"]), "ordering": "id", "limit": MAX_CHANGES,
                "fields": CHANGE_FIELDS})
            counts = {k: pool.submit(client.count, KINDS[k][0], query_params(filters, ("id",))) for k in kinds}
            version = _result(status, "the NetBox version")
            count, changes = _changes(_result(window, "the change log"))
            counts = {k: _result(f, KINDS[k][0]) for k, f in counts.items()}
            _check_age(snapshot, clock.date, max_age)
            if version != snapshot["netbox_version"]:
                raise FullBuild(f"NetBox was {snapshot['netbox_version']}, is {version}")
            if count > len(changes):
                raise FullBuild(f"more than {len(changes)} changes since the last build")
            by_id = {c["id"]: c for c in changes}
            if hwm["id"] not in by_id or by_id[hwm["id"]]["time"] != hwm_time:
                raise FullBuild(f"the change log no longer holds change {hwm['id']} of the last build (pruned, "
                                "cleared, or another NetBox)")
            settled = snapshot["settled"]
            holes = [i for i in range(settled + 1, changes[-1]["id"]) if i not in by_id]
            if holes:
                raise FullBuild(f"change-log ids {_span(holes)} are not visible to this token (a change still "
                                "being written, rolled back, or hidden by a constrained permission)")
            seen = set(snapshot["seen"])
            new = [c for c in changes if c["id"] > settled and c["id"] not in seen]
            objects = {k: {o["id"]: o for o in snapshot["objects"][k]} for k in kinds}
            affected = _affected(new, objects, snapshot["custom_field_refs"])
            total = sum(len(v) for v in objects.values())
            n_affected = sum(len(v) for v in affected.values())
            if n_affected > max(ID_CHUNK, total // 2):
                raise FullBuild(f"{n_affected} of {total} objects changed")
            fetched = _refetch(client, pool, affected, filters)
    except NetBoxError as exc:
        raise FullBuild(f"incremental refresh failed: {exc}") from None
    finally:
        clock.close()
    removed = 0
    for kind, ids_ in affected.items():
        for oid in ids_:
            if oid in fetched[kind]:
                objects[kind][oid] = fetched[kind][oid]
            elif objects[kind].pop(oid, None) is not None:
                removed += 1
    for kind in kinds:
        if len(objects[kind]) != counts[kind]:
            raise FullBuild(f"NetBox shows this token {counts[kind]} {kind.replace('_', ' ')}, the updated snapshot "
                            f"holds {len(objects[kind])} (permissions or objects changed outside the change log)")
    head = changes[-1]
    meta = {"netbox_version": version, "custom_field_refs": snapshot["custom_field_refs"],
            "hwm": {"id": head["id"], "time": head["time"].isoformat()}, "built": snapshot.get("built"),
            # every id up to the head is visible and applied: none below it can still appear
            "seen": [], "settled": head["id"]}
    n_fetched = sum(len(v) for v in fetched.values())
    note = (f"refresh: incremental, {len(new)} changes since change {hwm['id']}, {n_fetched} objects fetched "
            f"({', '.join(f'{len(fetched[k])} {k}' for k in kinds)}), {removed} removed")
    return {k: sorted(v.values(), key=lambda o: o["id"]) for k, v in objects.items()}, meta, note


def _result(future, what):
    try:
        return future.result()
    except NetBoxError as exc:
        raise FullBuild(f"{what} unreadable: {exc}") from None


def _span(ids):
    return str(ids[0]) if len(ids) == 1 else f"{ids[0]}..{ids[-1]} ({len(ids)})"


def _affected(changes, objects, cf_refs):
    """``{kind: {ids to read again}}`` for the changes, or raise FullBuild for a change not local to hosts."""
    affected = {k: set() for k in objects}
    kind_of = {ctype: k for k, (_e, _f, ctype) in KINDS.items()}
    refs = set(cf_refs)
    for change in changes:
        ctype, oid = change["type"], change["object"]
        what = f"{ctype} {oid} ({change['action']}, change {change['id']})"
        if ctype in refs:
            raise FullBuild(f"{what}: an object custom field of devices or VMs refers to {ctype}")
        if ctype in kind_of:
            kind = kind_of[ctype]
            if kind in affected:
                affected[kind].add(oid)
            if kind == "devices" and "virtual_machines" in objects:
                # a VM shows the name of the device (Proxmox node) it is pinned to
                affected["virtual_machines"].update(
                    vid for vid, vm in objects["virtual_machines"].items() if _ref_id(vm.get("device")) == oid)
        elif ctype == IP_TYPE:
            # an address shows in primary_ip4/6 of its VM or device; deleting it nulls those unlogged
            for kind, objs in objects.items():
                affected[kind].update(i for i, o in objs.items()
                                      if oid in (_ref_id(o.get("primary_ip4")), _ref_id(o.get("primary_ip6"))))
        elif ctype not in IGNORED_TYPES:
            raise FullBuild(f"{what} is not local to one host")
    return affected


def _ref_id(value):
    return value.get("id") if isinstance(value, dict) else None


def _refetch(client, pool, affected, filters):
    """``{kind: {id: object}}`` of the affected ids that NetBox still shows with the filters."""
    jobs = []
    for kind, ids in affected.items():
        path, fields, _ctype = KINDS[kind]
        ordered = sorted(ids)
        chunk = min(ID_CHUNK, client.page_size)
        for start in range(0, len(ordered), chunk):
            params = dict(query_params(filters, fields), id=[str(i) for i in ordered[start:start + chunk]])
            jobs.append((kind, pool.submit(client.first_page, path, params)))
    fetched = {kind: {} for kind in affected}
    for kind, future in jobs:
        count, objs = future.result()
        if count > len(objs):
            raise NetBoxError(f"{KINDS[kind][0]}: {count} objects for {len(objs)} on the page", KINDS[kind][0])
        for obj in objs:
            fetched[kind][obj["id"]] = obj
    return fetched
