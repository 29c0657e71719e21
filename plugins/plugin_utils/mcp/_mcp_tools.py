# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tools of ``locus mcp``: what an AI assistant may ask, and how each call is audited.

Private API of the collection (may change without notice). Controller-only. No MCP SDK here:
:mod:`_mcp` carries these tools over the protocol; this module is plain Python on the store.

Read-only by design. Every tool reads the audit trail, the inventory, the guard or the reports;
``request_halt`` is the only one that changes state, and a halt is always the safe direction.
There is no tool that approves, resumes or applies, and no option adds one: :data:`TOOLS` is
the whole list. Every call - also a refused or failed one, also an unknown tool - becomes a
RESEARCH record naming the tool, the client (as it names itself), the transport and the
arguments with secrets masked; the record is written before the result is handed back, and a
result whose record cannot be written is withheld (fail closed). Arguments are checked against
each tool's JSON schema (unknown ones refused), and results are cut to :data:`MAX_RESULT_BYTES`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import time

from ansible_collections.locus.infra.plugins.plugin_utils import _jsonschema, _redact, _secrets
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _approval, _guard, _halt, _policy
from ansible_collections.locus.infra.plugins.plugin_utils.store import _audit, _refs, _store

MAX_ARGS_BYTES = 256 * 1024  # a described change with its diff fits; anything larger is refused unread
MAX_RESULT_BYTES = 200_000  # structured result of one call, as JSON
MAX_RECORD_BYTES = 32_000  # one audit record inside a list result; larger data is left out (audit_show tag=… has it)
MAX_RECORDED_ARGS = 16_000  # the arguments as recorded; beyond, only their size, keys and hash
SEARCH_SCAN = 2000  # records audit_search reads at most per call (newest first)
INVENTORY_TTL = 30  # seconds an inventory read is reused
INVENTORY_TIMEOUT = 120
VIA = "locus mcp"

_TAG = {"type": "string", "pattern": r"^LOCUS-[A-Z]+[0-9]{8}-[0-9]{3,}$", "maxLength": 40, "description": "a REF-tag"}
_TS = {"type": "string", "maxLength": 40, "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9:.]+)?(Z|[+-][0-9]{2}:?[0-9]{2})?$",
       "description": "ISO 8601 date or time (UTC unless it says otherwise), e.g. 2026-12-06 or 2026-12-06T14:00:00Z"}
_RECORD = {"type": "object", "required": ["position", "tag", "ts", "subject", "data"], "properties": {
    "position": {"type": "integer"}, "tag": {"type": "string"}, "ts": {"type": "string"}, "subject": {"type": "string"},
    "data": {}, "prev_hash": {"type": "string"}, "hash": {"type": "string"}}}
_REF = {"type": "string", "description": "the REF-tag (RESEARCH) of this call's own audit record"}
_HALT = {"type": "object", "properties": {
    "halted": {"type": "boolean"}, "tag": {"type": ["string", "null"]}, "reason": {"type": ["string", "null"]},
    "since": {"type": ["string", "null"]}, "by": {"type": ["string", "null"]}, "epoch": {"type": "integer"}}}
_FINDING = {"type": "object", "properties": {
    "rule": {"type": "string"}, "risk": {"type": "string"}, "source": {"type": "string"}, "message": {"type": "string"}, "evidence": {}}}

# what locus.infra.guard takes as operation, less changes_file (a path on the server)
_OPERATION = {"type": "object", "required": ["what"], "additionalProperties": False, "properties": {
    "what": {"type": "string", "minLength": 1, "maxLength": 500},
    "where": {"anyOf": [{"type": "string", "maxLength": 500}, {"type": "array", "maxItems": 100, "items": {"type": "string"}}]},
    "changes": {"type": "array", "maxItems": 500, "items": {"type": "object"}},
    "diff": {"type": "string"},
    "findings": {"type": "array", "maxItems": 200, "items": {"type": "object"}}}}


def _obj(properties, required=()):
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def _out(properties, required=()):
    return {"type": "object", "properties": {**properties, "ref_tag": _REF}, "required": [*required, "ref_tag"]}


# name: (description, input schema, output schema, annotations); the handlers are Tools.<name>.
TOOLS = {
    "audit_show": (
        "Records of the tamper-evident audit trail: one by its REF-tag (tag), the records of one playbook run (job: its JOB "
        "tag), the last N (last, default 20), or a time window (since/until, UTC). Secrets were masked when recorded.",
        _obj({"tag": _TAG, "job": _TAG, "last": {"type": "integer", "minimum": 1, "maximum": 500},
              "since": _TS, "until": _TS}),
        _out({"records": {"type": "array", "items": _RECORD}, "count": {"type": "integer"},
              "omitted": {"type": "integer", "description": "records left out to keep the result bounded"}},
             ["records", "count", "omitted"]),
        {"readOnlyHint": True},
    ),
    "audit_verify": (
        "Verify the hash chain of the audit trail; with head (an exported chain head: count, last_tag, head_hash, as "
        "`locus audit head` writes it) also detect truncation and rewriting. Names the first modified, deleted, inserted or "
        "reordered record.",
        _obj({"head": {"type": "object", "required": ["count", "head_hash"], "additionalProperties": False, "properties": {
            "count": {"type": "integer", "minimum": 0}, "head_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "last_tag": {"type": ["string", "null"], "maxLength": 40}}}}),
        _out({"ok": {"type": "boolean"}, "count": {"type": "integer"}, "last_tag": {"type": ["string", "null"]},
              "head_hash": {"type": "string"}, "problem": {"type": ["object", "null"]}}, ["ok", "count"]),
        {"readOnlyHint": True},
    ),
    "audit_search": (
        "Search the audit trail, newest first: subject text (case-insensitive), a record's status (ok, changed, failed, "
        "skipped, unreachable ...), host, REF-tag action, time window; at most limit records (default 50, at most 200).",
        _obj({"subject": {"type": "string", "minLength": 1, "maxLength": 200}, "status": {"type": "string", "maxLength": 40},
              "host": {"type": "string", "maxLength": 255}, "action": {"type": "string", "enum": list(_refs.ACTIONS)},
              "since": _TS, "until": _TS, "limit": {"type": "integer", "minimum": 1, "maximum": 200}}),
        _out({"records": {"type": "array", "items": _RECORD}, "count": {"type": "integer"}, "more": {"type": "boolean"},
              "omitted": {"type": "integer"}}, ["records", "count", "more"]),
        {"readOnlyHint": True},
    ),
    "inventory_hosts": (
        "Hosts of the inventory the server was started with (the NetBox inventory plugin or the static lab inventory), "
        "with their groups and address; optionally only the hosts of one group.",
        _obj({"group": {"type": "string", "minLength": 1, "maxLength": 255},
              "limit": {"type": "integer", "minimum": 1, "maximum": 1000}}),
        _out({"hosts": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "groups": {"type": "array", "items": {"type": "string"}},
            "ansible_host": {"type": ["string", "null"]}}}}, "count": {"type": "integer"}, "omitted": {"type": "integer"},
            "groups": {"type": "array", "items": {"type": "string"}}}, ["hosts", "count"]),
        {"readOnlyHint": True},
    ),
    "inventory_host": (
        "One host of the inventory with its groups and variables (unrendered; secret-named and secret-looking values and "
        "vault-encrypted values masked as the audit trail masks them).",
        _obj({"name": {"type": "string", "minLength": 1, "maxLength": 255}}, ["name"]),
        _out({"name": {"type": "string"}, "groups": {"type": "array", "items": {"type": "string"}}, "vars": {"type": "object"},
              "omitted_vars": {"type": "array", "items": {"type": "string"}}}, ["name", "groups", "vars"]),
        {"readOnlyHint": True},
    ),
    "guard_status": (
        "The guard's state: the emergency halt (and what it waits for) and the recent guard decisions that wait for a "
        "human approval, with their risk, findings and what each waits for. Approvals are given by a human with "
        "`locus approve` or an AWX approval node, never through this server.",
        _obj({"limit": {"type": "integer", "minimum": 1, "maximum": 100}}),
        _out({"halt": _HALT, "waits_for": {"type": ["string", "null"]}, "pending": {"type": "array", "items": {"type": "object"}},
              "policy": {"type": "object"}}, ["halt", "pending"]),
        {"readOnlyHint": True},
    ),
    "guard_assess": (
        "Run the guard's deterministic analysers on a described change (what, where, planned changes as module calls "
        "and/or a unified diff, optional resource usage) and say what the policy would require. Nothing is approved or "
        "recorded as a decision; the only record is this call's.",
        _obj({"operation": _OPERATION,
              "resources": {"anyOf": [{"type": "array", "maxItems": 200, "items": {"type": "object"}}, {"type": "object"}]}},
             ["operation"]),
        _out({"risk": {"type": "string"}, "deterministic_risk": {"type": "string"}, "requirement": {"type": "string"},
              "would_decide": {"type": "string", "enum": list(_guard.DECISIONS)}, "reasons": {"type": "array"},
              "findings": {"type": "array", "items": _FINDING}, "halted": {"type": "boolean"}, "changes": {"type": "integer"}},
             ["risk", "requirement", "would_decide", "findings"]),
        {"readOnlyHint": True, "idempotentHint": True},
    ),
    "reports_list": (
        "The reports the collection wrote (ARTIFACT records: status report, health review, agent review), newest first.",
        _obj({"kind": {"type": "string", "maxLength": 60}, "limit": {"type": "integer", "minimum": 1, "maximum": 200}}),
        _out({"reports": {"type": "array", "items": {"type": "object", "properties": {
            "tag": {"type": "string"}, "ts": {"type": "string"}, "kind": {"type": "string"}, "subject": {"type": "string"},
            "path": {"type": ["string", "null"]}, "readable": {"type": "boolean"}}}}, "count": {"type": "integer"}},
            ["reports", "count"]),
        {"readOnlyHint": True},
    ),
    "report_get": (
        "The Markdown text of one report by its ARTIFACT REF-tag (from reports_list), from the report directories the "
        "server was started with.",
        _obj({"tag": _TAG}, ["tag"]),
        _out({"tag": {"type": "string"}, "kind": {"type": "string"}, "path": {"type": "string"}, "text": {"type": "string"},
              "bytes": {"type": "integer"}, "truncated": {"type": "boolean"}}, ["tag", "text", "truncated"]),
        {"readOnlyHint": True},
    ),
    "request_halt": (
        "Emergency halt: every locus.infra plugin that changes anything or spends tokens refuses to run until a human "
        "approves a resume (`locus approve <HALT tag>`, `locus resume`). The only tool that changes state; records who asked "
        "through which client. Halting while halted changes nothing.",
        _obj({"reason": {"type": "string", "minLength": 1, "maxLength": 500}}, ["reason"]),
        _out({"changed": {"type": "boolean"}, "halt": _HALT, "halt_tag": {"type": ["string", "null"]}, "msg": {"type": "string"}},
             ["changed", "halt", "msg"]),
        {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True},
    ),
}


class ToolError(Exception):
    """Bad input to a tool or a refusal: the message says what and where (one line, sent to the client)."""


def _json_size(value):
    return len(_audit.canonical_json(value).encode("utf-8", "surrogatepass"))


def _ts_arg(text, name):
    """An ISO 8601 argument as the store writes timestamps (UTC, microseconds, Z): comparable as text."""
    try:
        when = datetime.datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        raise ToolError(f"{name}: {text!r} is not an ISO 8601 date or time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_tag(tag, name, action=None):
    try:
        got, _day, _seq = _refs.parse_tag(tag)
    except _refs.RefTagError as exc:
        raise ToolError(f"{name}: {exc}") from None
    if action and got != action:
        raise ToolError(f"{name}: {tag} is a {got} tag, not an {action} tag" if action[0] in "AEIOU" else f"{name}: {tag} is a {got} tag, not a {action} tag")
    return tag


def _public(rec, bound=MAX_RECORD_BYTES):
    out = _audit.public_record(rec)
    size = _json_size(out)
    if size > bound:
        out["data"] = {"omitted": f"the data of this record is {size} bytes; audit_show with tag={rec['tag']} shows up to "
                                  f"{MAX_RESULT_BYTES} bytes of it", "bytes": size}
    return out


def _fit(items, budget=MAX_RESULT_BYTES - 4000):
    """The leading ``items`` whose JSON fits ``budget`` bytes, and how many were left out."""
    out, used = [], 0
    for item in items:
        used += _json_size(item) + 1
        if used > budget:
            break
        out.append(item)
    return out, len(items) - len(out)


def _inventory_failure(proc):
    """Why ansible-inventory failed, in one line: its error, and the first plugin's reason (Ansible
    tries every plugin; the first one, ``auto``, names the source's own plugin and its words)."""
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln.removeprefix("[ERROR]: ") for ln in lines if ln.startswith("[ERROR]")]
    reasons = [ln.split(" plugin: ", 1)[-1] for ln in lines if ln.startswith("[WARNING]: Failed to parse inventory with")]
    why = "; ".join(dict.fromkeys(errors[-1:] + reasons[:1])) or " ".join(lines[-3:]) or f"ansible-inventory exited {proc.returncode}"
    return _redact.redact_text(why)[:800]


def _unwrap(value, depth=0):
    """ansible-inventory's JSON without its ``{"__ansible_unsafe": text}`` markers (ansible-core 2.19:
    values from inventory plugins such as NetBox's). Vault markers stay, to be masked."""
    if depth > 60:
        return _redact.MASK
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return _unwrap(value["__ansible_unsafe"], depth + 1)
        return {k: _unwrap(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v, depth + 1) for v in value]
    return value


def _vaulted(value):
    return isinstance(value, dict) and set(value) == {"__ansible_vault"}


def mask_vars(variables):
    """Inventory variables masked as the audit callback masks what it records: values of secret-named
    variables learnt (:func:`_secrets.learn_vars`) and masked literally wherever they appear, then
    secret-named keys and secret-looking values (:func:`_redact.redact`). Vault-encrypted values
    (``{"__ansible_vault": ...}`` as ansible-inventory prints them) are masked whole, never decrypted."""

    def plain(value, depth=0):
        if _vaulted(value):
            return _redact.MASK
        if isinstance(value, dict) and depth < 40:
            return {k: plain(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list) and depth < 40:
            return [plain(v, depth + 1) for v in value]
        return value

    variables = plain(variables)
    _secrets.learn_vars(variables)
    return _redact.redact(_redact.scrub(variables), learn=True)


class Inventory:
    """The configured inventory sources, read with ``ansible-inventory --list`` (the same Python, the
    same ansible.cfg), failing loudly on any source that does not parse; reused for a few seconds."""

    def __init__(self, sources=(), ttl=INVENTORY_TTL):
        self.sources = list(sources)
        self.ttl = ttl
        self._cache = None

    def load(self):
        now = time.monotonic()
        if self._cache and now - self._cache[0] < self.ttl:
            return self._cache[1]
        cmd = [sys.executable, "-m", "ansible", "inventory", "--list"]
        for source in self.sources:
            cmd += ["-i", source]
        env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True", "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True",
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=INVENTORY_TIMEOUT, env=env,
                                  stdin=subprocess.DEVNULL, check=False, errors="backslashreplace")
        except subprocess.TimeoutExpired:
            raise ToolError(f"the inventory {self._named()} did not load within {INVENTORY_TIMEOUT} s") from None
        if proc.returncode != 0:
            raise ToolError(f"the inventory {self._named()} cannot be read: {_inventory_failure(proc)}")
        try:
            data = _unwrap(json.loads(proc.stdout))
        except ValueError as exc:
            raise ToolError(f"the inventory {self._named()}: ansible-inventory printed no JSON ({exc})") from None
        self._cache = (now, data)
        return data

    def _named(self):
        return ", ".join(self.sources) if self.sources else "(Ansible's configured default)"

    def hosts(self):
        """``{host: [groups]}`` and every group name."""
        data = self.load()
        membership, groups = {}, []

        def walk(group, seen):
            if group in seen:
                return
            seen.add(group)
            groups.append(group)
            node = data.get(group) or {}
            for host in node.get("hosts") or []:
                membership.setdefault(host, set()).add(group)
            for child in node.get("children") or []:
                walk(child, seen)

        walk("all", set())
        for host in (data.get("_meta") or {}).get("hostvars") or {}:
            membership.setdefault(host, set())
        # a host is in its groups' ancestors too: resolve from the child lists
        parents = {}
        for group in groups:
            for child in (data.get(group) or {}).get("children") or []:
                parents.setdefault(child, set()).add(group)
        for host, direct in membership.items():
            todo, full = list(direct), set(direct)
            while todo:
                for parent in parents.get(todo.pop(), ()):
                    if parent not in full:
                        full.add(parent)
                        todo.append(parent)
            membership[host] = sorted(full | {"all"})
        return membership, sorted(set(groups))

    def host_vars(self, name):
        return ((self.load().get("_meta") or {}).get("hostvars") or {}).get(name) or {}


class Tools:
    """The tools over one store. ``call`` is the only entry point: check, run, bound, record."""

    def __init__(self, store, *, policy=None, inventory=None, report_dirs=(), lane="private", transport="stdio", listen=None):
        self.store = store
        self.policy_path = policy
        self.inventory = inventory or Inventory()
        self.report_dirs = [os.path.realpath(d) for d in report_dirs]
        self.lane = lane
        self.transport = transport
        self.listen = listen  # HTTP: the address served

    # -- the one entry point ------------------------------------------------------------------------
    def call(self, name, arguments, client=None, peer=None):
        """``(structured result, is_error)`` for one tool call; its RESEARCH record is written before the answer leaves.
        ``client``: the MCP clientInfo (name, version); ``peer``: the HTTP client's address."""
        client = _client(client)
        where = {k: v for k, v in (("listen", self.listen), ("peer", peer)) if v}
        started = time.monotonic()
        status, error, result = "ok", None, None
        recorded_args = _recorded_arguments(arguments)
        try:
            arguments = self._checked(name, arguments)
            result = getattr(self, f"tool_{name}")(arguments, dict(client, **where))
            result, cut = _bounded(result)
        except ToolError as exc:
            status, error = "refused", str(exc)
        except _store.StoreError as exc:
            status, error = "error", _redact.redact_text(str(exc))
        except (_guard.GuardError, _policy.PolicyError) as exc:
            status, error = "refused", _redact.redact_text(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: still one line for the client and a record of the call
            status, error = "error", _redact.redact_text(f"internal error, please report it: {type(exc).__name__}: {exc}")
        if error and name in TOOLS and not error.startswith(f"{name}:"):
            error = f"{name}: {error}"
        data = {
            "mcp": {"tool": _redact.clean_text(str(name))[:100], "client": client, "transport": self.transport, "lane": self.lane},
            "arguments": recorded_args, "status": status, "via": VIA,
            "user": _os_user(), "ms": int((time.monotonic() - started) * 1000),
        }
        data["mcp"].update(where)
        if error:
            data["error"] = error[:1000]
        if result is not None:
            data["result"] = {"bytes": _json_size(result), "truncated": bool(cut)}
            if result.get("halt_tag"):
                data["halt_tag"] = result["halt_tag"]
        try:
            tag = self.store.record("RESEARCH", f"mcp {data['mcp']['tool']} by {client['name']}: {status}", data)
        except (_store.StoreError, _audit.NotRecordable) as exc:
            # Fail closed: no answer without its record.
            return {"error": f"the audit trail cannot be kept ({_redact.redact_text(str(exc))[:300]}): the result is withheld"}, True
        if error:
            return {"error": error, "ref_tag": tag}, True
        return {**result, "ref_tag": tag}, False

    def _checked(self, name, arguments):
        if name not in TOOLS:
            raise ToolError(f"unknown tool {_redact.clean_text(str(name))[:100]!r} (tools: {', '.join(TOOLS)}); this server "
                            "has no tool that approves, resumes or applies anything")
        arguments = {} if arguments is None else arguments
        if not isinstance(arguments, dict):
            raise ToolError(f"{name}: the arguments must be a JSON object")
        try:
            size = _json_size(arguments)
        except (ValueError, RecursionError):
            raise ToolError(f"{name}: the arguments cannot be read as JSON (nested too deep?)") from None
        if size > MAX_ARGS_BYTES:
            raise ToolError(f"{name}: the arguments are {size} bytes, more than the {MAX_ARGS_BYTES} this server reads")
        try:
            _audit.check_value(arguments, "arguments")
        except _audit.NotRecordable as exc:
            raise ToolError(f"{name}: {exc}") from None
        problem = _jsonschema.first_problem(arguments, TOOLS[name][1])
        if problem is not None:
            raise ToolError(f"{name}: {_schema_message(problem.error)}")
        return arguments

    # -- audit --------------------------------------------------------------------------------------
    def tool_audit_show(self, args, client):
        chosen = [k for k in ("tag", "job") if k in args]
        window = [k for k in ("last", "since", "until") if k in args]
        if len(chosen) > 1 or (chosen and window):
            raise ToolError(f"audit_show: give one of tag, job, or last/since/until (got {', '.join(chosen + window)})")
        if "tag" in args:
            rec = self.store.get(_check_tag(args["tag"], "tag"))
            if rec is None:
                raise ToolError(f"audit_show: no audit record with tag {args['tag']}")
            records = [_public(rec, MAX_RESULT_BYTES - 8000)]
        elif "job" in args:
            records = [_public(r) for r in self.store.job_records(_check_tag(args["job"], "job", "JOB"))]
        elif "since" in args or "until" in args:
            records = [_public(r) for r in self._window(args.get("since"), args.get("until"), args.get("last", 500))]
        else:
            records = [_public(r) for r in self.store.last(args.get("last", 20))]
        records, omitted = _fit(records)
        return {"records": records, "count": len(records), "omitted": omitted}

    def _window(self, since, until, limit):
        rows = self.store.find(since=since and _ts_arg(since, "since"), until=until and _ts_arg(until, "until"), limit=limit)
        return list(reversed(rows))  # the last ``limit`` of the window, in order

    def tool_audit_verify(self, args, client):
        result = self.store.verify(head=args.get("head"))
        return {"ok": result["ok"], "count": result["count"], "last_tag": result["last_tag"], "head_hash": result["head_hash"],
                "problem": dict(result["problem"]) if result.get("problem") else None}

    def tool_audit_search(self, args, client):
        limit = args.get("limit", 50)
        rows = self.store.find(action=args.get("action"), subject=args.get("subject"),
                               fields={k: args[k] for k in ("status", "host") if k in args},
                               since=args.get("since") and _ts_arg(args["since"], "since"),
                               until=args.get("until") and _ts_arg(args["until"], "until"), limit=SEARCH_SCAN)
        found = []
        for rec in rows:
            data = _audit.public_record(rec)["data"]
            # the store's prefilter also matches nested keys; the record's own status and host must match
            if all(isinstance(data, dict) and data.get(k) == args[k] for k in ("status", "host") if k in args):
                found.append(rec)
        more = len(found) > limit or len(rows) == SEARCH_SCAN
        records, omitted = _fit([_public(r) for r in found[:limit]])
        return {"records": records, "count": len(records), "more": more or bool(omitted), "omitted": omitted}

    # -- inventory ----------------------------------------------------------------------------------
    def tool_inventory_hosts(self, args, client):
        membership, groups = self.inventory.hosts()
        group = args.get("group")
        if group is not None and group not in groups:
            raise ToolError(f"inventory_hosts: no group {group!r} in the inventory (groups: {', '.join(groups[:50])})")
        names = sorted(h for h, g in membership.items() if group is None or group in g)
        limit = args.get("limit", 200)
        hosts = []
        for name in names[:limit]:
            address = self.inventory.host_vars(name).get("ansible_host")
            hosts.append({"name": name, "groups": membership[name],
                          "ansible_host": _redact.redact_text(str(address)) if address is not None else None})
        hosts, omitted = _fit(hosts)
        return {"hosts": hosts, "count": len(hosts), "omitted": omitted + max(0, len(names) - limit), "groups": groups}

    def tool_inventory_host(self, args, client):
        membership, _groups = self.inventory.hosts()
        name = args["name"]
        if name not in membership:
            raise ToolError(f"inventory_host: no host {name!r} in the inventory ({len(membership)} hosts; inventory_hosts lists them)")
        masked = mask_vars(self.inventory.host_vars(name))
        kept, omitted, used = {}, [], 0
        for key in sorted(masked):
            used += _json_size({key: masked[key]})
            if used > MAX_RESULT_BYTES - 8000:
                omitted.append(key)
            else:
                kept[key] = masked[key]
        return {"name": name, "groups": membership[name], "vars": kept, "omitted_vars": omitted}

    # -- guard --------------------------------------------------------------------------------------
    def _policy(self):
        return _policy.load_policy(self.policy_path)

    def tool_guard_status(self, args, client):
        policy = self._policy()
        state = _halt.halt_state(self.store)
        waits = None
        if state["halted"]:
            waits = (f"a human: `locus approve {state['tag']}` (prints a resume token), then `locus resume --token <token>`; "
                     "no MCP tool can resume")
        rows = self.store.find(action="VALIDATE", fields={_guard.RESERVED_KEY: "decision", "decision": "needs_approval"},
                               limit=args.get("limit", 20))
        used = _guard._used_records(self.store)
        pending = []
        for rec in rows:
            data = _audit.public_record(rec)["data"]
            if not isinstance(data, dict) or data.get(_guard.RESERVED_KEY) != "decision" or rec["tag"] in used:
                continue
            item = {"tag": rec["tag"], "ts": rec["ts"], "what": data.get("what"), "where": data.get("where"), "risk": data.get("risk"),
                    "findings": [{k: f.get(k) for k in ("rule", "risk", "message")} for f in (data.get("findings") or [])[:20]
                                 if isinstance(f, dict)]}
            if int(data.get("epoch", -1)) != state["epoch"]:
                item["waits_for"] = "nothing: made before the last emergency halt, it can no longer be approved; review the change again"
            elif state["halted"]:
                item["waits_for"] = f"the end of the emergency halt {state['tag']}, then a human approval (`locus approve {rec['tag']}`)"
            else:
                item["waits_for"] = (f"a human approval: `locus approve {rec['tag']}` (then the run again with the token), "
                                     "or the AWX workflow's approval node")
            issued = [d for _r, d in _halt.guard_records(self.store, "APPROVAL", naming=rec["tag"]) if d.get("event") == "issued"]
            if issued:
                item["approval_issued"] = {"approver": issued[0].get("approver"), "expires": issued[0].get("expires")}
            pending.append(item)
        pending, _omitted = _fit(pending, MAX_RESULT_BYTES // 2)
        return {"halt": state, "waits_for": waits, "pending": pending, "policy": policy.summary()}

    def tool_guard_assess(self, args, client):
        policy = self._policy()
        what, where, changes, extra, _meta = _guard.normalise_operation(args["operation"])
        ev = _guard.evaluate(policy, changes, args.get("resources"), (), extra)
        state = _halt.halt_state(self.store)
        requirement = policy.requirement(ev["risk"])
        reasons = []
        if state["halted"]:
            reasons.append(f"locus.infra is halted by {state['tag']}: {state['reason']}")
        exhausted = [f["message"] for f in ev["findings"] if f["rule"] == "resource_exhausted"]
        reasons.extend(exhausted)
        if state["halted"] or exhausted or requirement == "deny":
            would = "deny"
            if requirement == "deny":
                reasons.append(f"the policy denies risk {ev['risk']}")
        elif requirement == "human":
            would = "needs_approval"
            reasons.append(f"risk {ev['risk']} needs a human approval (policy risk.approval.{ev['risk']}); "
                           "the change must go through locus.infra.guard or change_review.yml to be approved")
        else:
            would = "allow"
            reasons.append(f"risk {ev['risk']} needs no approval")
        findings = [{k: f.get(k) for k in ("rule", "risk", "source", "message", "evidence")} for f in ev["findings"]]
        return {"risk": ev["risk"], "deterministic_risk": ev["deterministic_risk"], "requirement": requirement, "would_decide": would,
                "reasons": reasons, "findings": _redact.redact(findings), "halted": state["halted"], "changes": len(changes),
                "what": what, "where": where}

    # -- reports ------------------------------------------------------------------------------------
    def _reports(self, kind=None, limit=50, tag=None):
        if tag:
            rec = self.store.get(tag)  # a record outside the chain is refused (Tampered)
            rows = [rec] if rec is not None else []
        else:
            rows = self.store.find(action="ARTIFACT", limit=5000 if kind else limit)
        out = []
        for rec in rows:
            data = _audit.public_record(rec)["data"]
            data = data if isinstance(data, dict) else {}
            report_kind, path = _report_file(rec["tag"], data)
            if kind and report_kind != kind:
                continue
            out.append({"tag": rec["tag"], "ts": rec["ts"], "kind": report_kind, "subject": rec["subject"], "path": path,
                        "readable": bool(path) and self._allowed(path) is not None})
            if len(out) >= limit:
                break
        return out

    def _allowed(self, path):
        """The real path of ``path`` when it is a regular file inside a report directory, else None."""
        real = os.path.realpath(path)
        if not any(real.startswith(d.rstrip("/") + "/") for d in self.report_dirs):
            return None
        return real if os.path.isfile(real) else None

    def tool_reports_list(self, args, client):
        reports, _omitted = _fit(self._reports(args.get("kind"), args.get("limit", 50)))
        return {"reports": reports, "count": len(reports)}

    def tool_report_get(self, args, client):
        tag = _check_tag(args["tag"], "tag", "ARTIFACT")
        found = self._reports(tag=tag, limit=1)
        if not found:
            raise ToolError(f"report_get: no ARTIFACT record with tag {tag}")
        report = found[0]
        if not report["path"]:
            raise ToolError(f"report_get: the record {tag} names no report file")
        real = self._allowed(report["path"])
        if real is None:
            raise ToolError(f"report_get: {report['path']} is not a file inside the report directories this server reads "
                            f"({', '.join(self.report_dirs) or 'none'}; start it with --report-dir)")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                raw = f.read(MAX_RESULT_BYTES // 2 + 1)
        except OSError as exc:
            raise ToolError(f"report_get: cannot read {real}: {exc.strerror or exc}") from None
        truncated = len(raw) > MAX_RESULT_BYTES // 2
        text = raw[: MAX_RESULT_BYTES // 2].decode("utf-8", "replace")
        # reports are masked when written; masked again line by line (any secret pattern, any known value)
        text = "\n".join(_redact.redact_text(line) for line in text.split("\n"))
        return {"tag": tag, "kind": report["kind"], "path": real, "text": text, "bytes": len(raw), "truncated": truncated}

    # -- the one write ------------------------------------------------------------------------------
    def tool_request_halt(self, args, client):
        reason = " ".join(args["reason"].split())
        if not reason:
            raise ToolError("request_halt: reason is empty; say why")
        context = {"mcp": {"client": client, "transport": self.transport, "lane": self.lane}}
        out = _guard.halt(self.store, reason, f"{_os_user()} via MCP client {client['name']}", f"{VIA} ({self.transport})", context)
        return {"changed": out["changed"], "halt": out["halt"], "halt_tag": out.get("ref_tag"), "msg": out["msg"]}


def _report_file(tag, data):
    """``(kind, path)`` of the Markdown file an ARTIFACT record names: ``<dest>/<report>-<tag>.md``
    (locus.infra.ops_report) or ``<directory>/agent-review-<tag>.md`` (playbooks/demo_agents.yml)."""
    if isinstance(data.get("report"), str) and isinstance(data.get("dest"), str):
        return data["report"], os.path.join(data["dest"], f"{os.path.basename(data['report'])}-{tag}.md")
    if isinstance(data.get("directory"), str) and data.get("reviewed_job"):
        return "agent_review", os.path.join(data["directory"], f"agent-review-{tag}.md")
    return str(data.get("report") or "artifact"), None


def _schema_message(error):
    path = ".".join(str(p) for p in error.absolute_path)
    where = f"argument {path}" if path else "arguments"
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties") or {})
        extra = sorted(set(error.instance) - set(known))
        return f"{where}: unknown argument(s) {', '.join(map(repr, extra))[:300]} (known: {', '.join(known) or 'none'})"
    if error.validator == "required":
        return f"{where}: {error.message}"
    message = error.message if len(error.message) < 300 else error.message[:300] + "…"
    return f"{where}: {_redact.redact_text(message)}"


def _bounded(result):
    """``(result, cut)``: a result whose JSON is larger than :data:`MAX_RESULT_BYTES` cannot leave (the
    tools cut their lists before this; this is the last net)."""
    size = _json_size(result)
    if size <= MAX_RESULT_BYTES:
        return result, False
    raise ToolError(f"the result is {size} bytes, more than the {MAX_RESULT_BYTES} this server sends; ask for less")


def _recorded_arguments(arguments):
    """The arguments as the audit record keeps them: secrets masked (by name, by look, by known value;
    what is found is learnt), bounded; non-UTF-8 text escaped."""
    if arguments is None:
        return {}
    if not isinstance(arguments, dict):
        return {"not_an_object": _redact.redact_text(str(arguments))[:200]}
    try:
        size = len(json.dumps(arguments, default=str, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError):
        size = -1
    if size > MAX_ARGS_BYTES or size < 0:
        return {"omitted": "too large or too deep to record", "bytes": size, "keys": [_redact.clean_text(str(k))[:60] for k in list(arguments)[:20]]}
    _secrets.learn_args(arguments)
    masked = _redact.redact(arguments, learn=True)
    size = _json_size(masked)
    if size > MAX_RECORDED_ARGS:
        return {"omitted": f"{size} bytes (masked)", "sha256": hashlib.sha256(_audit.canonical_json(masked).encode()).hexdigest(),
                "keys": sorted(masked)[:50]}
    return masked


def _client(info):
    """The client as it names itself (MCP clientInfo): cleaned, masked, short. Self-declared, not proof."""
    info = info or {}
    name = _redact.redact_text(_redact.clean_text(str(info.get("name") or "unnamed client"), nul=True))[:100]
    version = _redact.redact_text(_redact.clean_text(str(info.get("version") or ""), nul=True))[:40]
    return {"name": name, "version": version}


def _os_user():
    return _approval.os_user()


_LOOPBACK = re.compile(r"^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$")


def is_loopback(host):
    return bool(_LOOPBACK.match(host or ""))
