# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guard: risk decisions, human approvals and the emergency halt.

Private API of the collection (may change without notice).

Facts first, model second: the deterministic analysers (:mod:`_guard_rules`) set a floor
on the risk; AI reviews may raise it, never lower it. The policy says what each risk level
needs (nothing, a human, or a refusal). Decisions are VALIDATE records, approvals and
refusals APPROVAL records, halts and resumes HALT records, all in the audit trail.

The emergency halt and the single use of approvals are derived from the hash-chained HALT
and APPROVAL records themselves: the last halt/resume HALT record says whether locus.infra
is halted (every plugin that changes something or spends tokens calls :func:`_halt.check_halt`
first), an ``accepted`` APPROVAL record says an approval was used. The tables
``locus_guard_halt`` and ``locus_guard_approval_used`` are kept as well and must agree with
the records: an edited table is :class:`_store.Tampered` (fail closed), and so is a guard
record that is not a sound link of the chain. Each halt increments the halt epoch; approvals
carry the epoch they were given in, so none given before a halt is honoured after it.

Only the guard writes guard records: decisions carry ``guard: decision`` and the change as
reviewed (masked), HALT and APPROVAL are guard-only actions; the generic REF-tag paths
refuse both (:func:`check_generic_record`).
"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import json
import os
import shlex
import time

from ansible_collections.locus.infra.plugins.plugin_utils import (
    _jsonschema,
    _redact,
)
from ansible_collections.locus.infra.plugins.plugin_utils.guard import (
    _approval,
    _guard_rules,
    _halt,
    _policy,
)
from ansible_collections.locus.infra.plugins.plugin_utils.store import (
    _audit,
    _refs,
    _store,
)

DECISIONS = ("allow", "needs_approval", "deny")
MAX_RECORDED_FINDINGS = 50
GUARD_ACTIONS = ("HALT", "APPROVAL")  # written only by the guard
RESERVED_KEY = "guard"  # marks the guard's own records; the generic REF-tag paths refuse it
MAX_DIFF_LINES = 400  # per file, in a decision's recorded change (the content hash binds the rest)
MAX_LINE = 1000
OPERATION_KEYS = {"what", "where", "changes", "diff", "changes_file", "findings"}


class GuardError(Exception):
    """Bad input to the guard: the message names what and where."""


class Refused(Exception):
    """An approval was refused (and recorded as such under ``tag``)."""

    def __init__(self, reason, tag=None):
        super().__init__(reason)
        self.reason = reason
        self.tag = tag


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _ts(now=None):
    return (now or _now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def level_index(level):
    return _policy.LEVELS.index(level)


def max_level(*levels):
    known = [lvl for lvl in levels if lvl]
    return max(known, key=level_index) if known else _policy.LEVELS[0]


# ------------------------------------------------------------------ guard records -------------
def check_generic_record(action, data):
    """Refuse, for the generic REF-tag paths (``locus tag``, ``locus.infra.ref_tag``), what only the
    guard may write: HALT and APPROVAL records and the ``guard`` key that marks its decisions."""
    if str(action).upper() in GUARD_ACTIONS:
        raise GuardError(f"{str(action).upper()} records are written only by the guard "
                         "(locus halt / approve / resume, locus.infra.guard)")
    if isinstance(data, dict) and RESERVED_KEY in data:
        raise GuardError(f"the data key {RESERVED_KEY!r} is reserved for the guard's own records")


def _used_records(db, ref=None):
    """``{ref: (approval tag, used at)}`` of the ``accepted`` APPROVAL records (of ``ref`` only, if given);
    ``db``: the store or a write transaction of it."""
    used = {}
    for rec, data in _halt.guard_records(db, "APPROVAL", naming=ref):
        if data.get("event") == "accepted" and data.get("ref") and (ref is None or data["ref"] == ref):
            used.setdefault(data["ref"], (rec["tag"], _halt.ts_of(rec)))
    return used


def tables_problem(store):
    """Why the guard's tables disagree with the HALT/APPROVAL records, or None (for ``verify``)."""
    try:
        state = _halt.chain_halt_state(store)
        problem = _halt.table_problem(store, state)
        if problem:
            return problem
        chain = _used_records(store)
    except _store.Tampered as exc:
        return str(exc)
    table = store.approvals_used()
    for ref, (tag, _used_at) in sorted(chain.items()):
        if ref not in table:
            return f"the approval of {ref} was used ({tag}) but its row in locus_guard_approval_used was deleted"
    for ref in sorted(set(table) - set(chain)):
        return f"locus_guard_approval_used marks {ref} as used, but the audit trail has no accepted approval of it"
    return None


def halt(store, reason, user, via, context=None, check_mode=False):
    """Set the emergency halt (a HALT record). Halting while halted changes nothing.

    The reason and who asked come from outside (an MCP client's words and self-declared name) and
    are shown on every operator's terminal while halted: control and format characters are kept
    escaped (:func:`_redact.printable`), so they cannot clear a screen or reorder a line."""
    reason = _redact.printable(_redact.redact_text(" ".join(str(reason or "").split())))
    user = _redact.printable(user)
    if not reason:
        raise GuardError("an emergency halt needs a reason")
    with store.transaction() as tx:
        state = _halt.halt_state(store, tx)
        if state["halted"]:
            return {"changed": False, "halted": True, "halt": state,
                    "msg": f"already halted by {state['tag']} since {state['since']}: {state['reason']}"}
        if check_mode:
            return {"changed": True, "halted": False, "halt": state, "msg": f"would halt locus.infra: {reason}"}
        epoch = state["epoch"] + 1
        since = _ts()
        tag = tx.record("HALT", f"emergency halt: {reason}", {
            **(context or {}), "event": "halt", "reason": reason, "user": user, "via": via, "epoch": epoch,
        })
        tx.set_halt(tag, reason, since, user, epoch)
        state = _halt.halt_state(store, tx)
    return {"changed": True, "halted": True, "halt": state, "ref_tag": tag, "msg": f"HALTED by {tag}: {reason}"}


def resume(store, policy, key, token, user, via, context=None, check_mode=False, now=None):
    """Clear the halt with a valid resume token. Raises :class:`Refused` (recorded) otherwise."""
    state = _halt.halt_state(store)
    if not state["halted"]:
        return {"changed": False, "halted": False, "halt": state, "msg": "locus.infra is not halted; nothing to resume"}
    fp = _approval.fingerprint(token)
    payload, reason = None, None
    try:
        payload = _approval.verify(token, key, now=now, approvers=policy.approver_keys)
    except _approval.TokenMalformed as exc:
        raise GuardError(exc.reason) from exc  # bad input, not an approval attempt: nothing recorded
    except _approval.TokenRefused as exc:
        reason, payload = exc.reason, exc.payload
    with store.transaction() as tx:
        state = _halt.halt_state(store, tx)
        if not state["halted"]:
            return {"changed": False, "halted": False, "halt": state, "msg": "locus.infra is not halted; nothing to resume"}
        if reason is None:
            reason = _resume_problem(tx, policy, payload, state)
        if reason is None:
            reason = _used_problem(tx, payload["ref"])
        base = {**(context or {}), "ref": payload.get("ref") if payload else None,
                "approver": payload.get("approver") if payload else None, "fingerprint": fp, "kind": "resume", "via": via,
                "user": user}
        if reason is not None:
            if check_mode:
                return {"changed": False, "failed": True, "halted": True, "halt": state, "msg": f"resume token refused: {reason}"}
            refusal = tx.record("APPROVAL", f"resume of {state['tag']} refused", {"event": "refused", "reason": reason, **base})
        elif check_mode:
            return {"changed": True, "halted": True, "halt": state, "msg": f"would resume from {state['tag']}"}
        else:
            approval_tag = tx.record("APPROVAL", f"resume of {state['tag']} approved by {payload['approver']}",
                                     {"event": "accepted", "halt": state["tag"], **base})
            tx.mark_approval_used(payload["ref"], _ts(), approval_tag, "resume")
            resume_tag = tx.record("HALT", f"resume from {state['tag']}", {
                **(context or {}), "event": "resume", "halt": state["tag"], "approval": approval_tag,
                "approver": payload["approver"], "user": user, "via": via, "epoch": state["epoch"],
            })
            tx.clear_halt()
    if reason is not None:
        raise Refused(f"resume token refused: {reason}", refusal)
    state = dict(state, halted=False)
    return {"changed": True, "halted": False, "halt": state, "ref_tag": resume_tag, "approval_tag": approval_tag,
            "msg": f"resumed from {state['tag']} by {resume_tag} (approval {approval_tag} by {payload['approver']})"}


def _resume_problem(tx, policy, payload, state):
    if payload.get("kind") != "resume":
        return f"this token approves the change {payload.get('ref')}, not a resume"
    if payload.get("ref") != state["tag"]:
        return f"this token is for {payload.get('ref')}, but the current halt is {state['tag']}"
    digest = _record_hash(tx, state["tag"])
    if payload.get("digest") != digest or payload.get("record") != digest:
        return f"this token does not match the halt record {state['tag']}"
    if int(payload.get("epoch", -1)) != state["epoch"]:
        return "this token was issued for an earlier halt"
    return None


def _record_hash(tx, tag):
    rec = _halt.chained_record(tx, tag)
    return rec["hash"] if rec else None


def _used_problem(tx, ref):
    """Why ``ref``'s approval cannot be used (again), from the trail; the table must agree."""
    chain = _used_records(tx, ref).get(ref)
    row = tx.approval_used(ref)
    if chain and not row:
        raise _store.Tampered(f"the guard refuses to go on: the approval of {ref} was used ({chain[0]}) but its row in "
                              "locus_guard_approval_used was deleted: the table was edited; run `locus audit verify`")
    if row and not chain:
        raise _store.Tampered(f"the guard refuses to go on: locus_guard_approval_used marks {ref} as used, but the audit "
                              "trail has no accepted approval of it; run `locus audit verify`")
    if chain:
        return f"the approval of {ref} was already used at {chain[1]} ({chain[0]}); review again for a new approval"
    return None


# ------------------------------------------------------------------ approve (issue) ----------
def approve(store, policy, ref, key=None, signer=None, approver=None, via="cli", lifetime=None, context=None, now=None):
    """Issue a token approving the decision or HALT ``ref``; record it. :class:`Refused` otherwise.

    Policy mode ``ssh_keys``: ``signer`` (:class:`_approval.SshSigner`) signs and names the
    approver. Mode ``shared_key``: ``key`` (the HMAC key) signs, ``approver`` is recorded.
    The decision must be genuine: a guard decision inside the chain whose recorded change
    hashes to its digest. The result's ``change`` is that recorded change, to show the human.
    """
    try:
        action, _day, _seq = _refs.parse_tag(ref)
    except _refs.RefTagError as exc:
        raise GuardError(str(exc)) from exc
    if policy.approval_mode == "ssh_keys":
        if signer is None:
            raise GuardError("the policy names approver keys (approval.mode: ssh_keys): approve with your key "
                             f"(--key FILE, ${_approval.APPROVER_KEY_ENV}, or a key in ssh-agent)")
        approver = signer.name
    elif key is None:
        raise GuardError("no approval key to sign the token with")
    base = {**(context or {}), "ref": ref, "approver": approver, "via": via, "user": _approval.os_user()}
    problem, info = None, {}
    with store.transaction() as tx:
        state = _halt.halt_state(store, tx)
        rec = _halt.chained_record(tx, ref)
        if rec is None:
            problem = f"no audit record with tag {ref}"
        elif action == "HALT":
            info = {"kind": "resume", "digest": rec["hash"], "subject": f"resume from the emergency halt {ref}"}
            if not state["halted"]:
                problem = "locus.infra is not halted; there is nothing to resume"
            elif state["tag"] != ref:
                problem = f"{ref} is not the current halt (that is {state['tag']})"
        elif action == "VALIDATE":
            data = _halt.record_data(rec["data"])
            info = {"kind": "change", "digest": data.get("digest"), "subject": data.get("what"), "data": data}
            problem = _genuine_problem(data) or _approvable_problem(data, state)
        else:
            problem = f"{ref} is a {action} record; only guard decisions (VALIDATE) and halts (HALT) are approved"
        if problem is None:
            problem = _used_problem(tx, ref)
        if problem is not None:
            tag = tx.record("APPROVAL", f"approval of {ref} refused", {**base, "event": "refused", "reason": problem})
        else:
            seconds = min(policy.lifetime, lifetime or policy.lifetime)
            if signer is not None and policy.approval_mode == "ssh_keys":
                token = _approval.issue_signed(signer, ref, info["digest"], state["epoch"], seconds, kind=info["kind"], now=now,
                                               record=rec["hash"])
            else:
                token = _approval.issue(key, ref, info["digest"], approver, state["epoch"], seconds, kind=info["kind"], now=now,
                                        record=rec["hash"])
            payload = _approval.decode(token)
            signed_by = {"key_id": payload["kid"]} if "kid" in payload else {"approver_key": payload["key"]}
            tag = tx.record("APPROVAL", f"approval of {ref} issued to {approver}", {
                **base, "event": "issued", "kind": info["kind"], "digest": info["digest"],
                "expires": _approval.iso(payload["exp"]), "lifetime_s": seconds, "epoch": state["epoch"],
                "fingerprint": _approval.fingerprint(token), "mode": policy.approval_mode, **signed_by,
            })
    if problem is not None:
        raise Refused(problem, tag)
    data = info.get("data") or {}
    return {"token": token, "approval_tag": tag, "ref": ref, "kind": info["kind"], "expires": _approval.iso(payload["exp"]),
            "approver": approver, "subject": info.get("subject"), "decision": info.get("data"), "change": data.get("change")}


def _genuine_problem(data):
    """Why a VALIDATE record is not a decision the guard made for the change it records, or None."""
    if data.get(RESERVED_KEY) != "decision":
        return "this VALIDATE record is not a guard decision"
    change = data.get("change")
    if not isinstance(change, dict) or not isinstance(change.get("changes"), list):
        return "this decision records no change to show (made by an older guard, or forged); review the change again"
    if view_digest(change) != data.get("digest"):
        return ("this decision's digest does not match the change it records: it was not made by the guard "
                "(forged); review the change again")
    return None


def _approvable_problem(data, state):
    if state["halted"]:
        return f"locus.infra is halted by {state['tag']}; approve the halt to resume first, then review again"
    if data.get("decision") == "deny":
        return f"the guard denied this change ({'; '.join(data.get('reasons') or [])}); it cannot be approved"
    if data.get("decision") != "needs_approval":
        return f"this decision is {data.get('decision')!r}; only decisions that need approval are approved"
    if int(data.get("epoch", -1)) != state["epoch"]:
        return "this decision was made before the last emergency halt; review the change again"
    return None


# ------------------------------------------------------------------ operation ----------------
def load_changes_file(path):
    """The changes callback's file: ``(changes, complete, meta)``."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise GuardError(f"operation.changes_file {path}: cannot read it: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise GuardError(f"operation.changes_file {path}: not JSON: {exc}") from exc
    except RecursionError:
        raise GuardError(f"operation.changes_file {path}: nested deeper than {_audit.MAX_DEPTH} levels "
                         "(not a locus.infra.changes file)") from None
    if _too_deep(doc):
        raise GuardError(f"operation.changes_file {path}: nested deeper than {_audit.MAX_DEPTH} levels "
                         "(not a locus.infra.changes file)")
    if not isinstance(doc, dict) or not isinstance(doc.get("changes"), list):
        raise GuardError(f"operation.changes_file {path}: not a locus.infra.changes file (no changes list)")
    meta = {k: doc.get(k) for k in ("playbook", "job", "check_mode", "diff_mode", "complete", "stats")}
    return doc["changes"], bool(doc.get("complete", False)), meta


def _too_deep(value, limit=_audit.MAX_DEPTH):
    """Whether ``value`` nests deeper than ``limit`` (iterative: any depth is measured safely)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def normalise_operation(operation, default_host="localhost"):
    """``(what, where, changes, extra_findings, meta)`` from the guard's ``operation`` option."""
    if not isinstance(operation, dict):
        raise GuardError(f"operation must be a mapping (what, where, changes/diff/changes_file), got {type(operation).__name__}")
    unknown = sorted(set(operation) - OPERATION_KEYS)
    if unknown:
        raise GuardError(f"operation: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(OPERATION_KEYS))})")
    # Text from anywhere (an LLM, a careless user): NUL and bytes that were not UTF-8 become
    # escapes, so the decision can be recorded (the record's subject names both).
    what = _redact.clean_text(str(operation.get("what") or ""), nul=True).strip()
    if not what:
        raise GuardError("operation.what is required: say what the change does")
    where = operation.get("where")
    where = ", ".join(str(w) for w in where) if isinstance(where, list) else str(where or default_host)
    where = _redact.clean_text(where, nul=True)
    changes = operation.get("changes") or []
    if not isinstance(changes, list):
        raise GuardError(f"operation.changes must be a list of planned changes, got {type(changes).__name__}")
    diff = operation.get("diff")
    if diff is not None and not isinstance(diff, str):
        raise GuardError("operation.diff must be a unified diff as text")
    extra, meta = [], {}
    if operation.get("changes_file"):
        file_changes, complete, meta = load_changes_file(operation["changes_file"])
        changes = list(changes) + file_changes
        if not complete:
            extra.append({"rule": "check_failed", "message": "the check run did not complete; the prediction is partial",
                          "evidence": {"changes_file": str(operation["changes_file"])}})
    if operation.get("findings"):
        meta["findings"] = _given_findings(operation["findings"])
        extra.extend(meta["findings"])
    try:
        norm = _guard_rules.normalise(changes, diff, default_host=where)
    except ValueError as exc:
        raise GuardError(f"operation.{exc}") from exc
    return what, where, norm, extra, meta


def _given_findings(findings):
    """Findings judged outside the guard (the health review's), checked: ``[{rule, message, evidence}]``."""
    if not isinstance(findings, list):
        raise GuardError(f"operation.findings must be a list of findings (rule, message, evidence), got {type(findings).__name__}")
    out = []
    for n, f in enumerate(findings):
        if not isinstance(f, dict):
            raise GuardError(f"operation.findings[{n}] must be a mapping (rule, message, evidence), got {type(f).__name__}")
        if f.get("rule") not in _guard_rules.RULES:
            raise GuardError(f"operation.findings[{n}].rule: unknown rule {f.get('rule')!r} (known: {', '.join(_guard_rules.RULES)})")
        evidence = f.get("evidence") or {}
        if not isinstance(evidence, dict):
            raise GuardError(f"operation.findings[{n}].evidence must be a mapping")
        out.append({"rule": f["rule"], "message": _redact.redact_text(str(f.get("message") or _guard_rules.RULES[f["rule"]]))[:300],
                    "evidence": _redact.redact(evidence)})
    return out


def _masked(line):
    line = _redact.redact_text(_guard_rules.mask_secrets(line))
    return line if len(line) <= MAX_LINE else f"{line[:MAX_LINE]}… [{len(line) - MAX_LINE} more characters]"


def _sha256(value):
    return hashlib.sha256(_audit.canonical_json(value).encode("utf-8")).hexdigest()


def change_view(what, where, changes, findings=None):
    """The change as the approver sees it and as the decision records it: what, where, and per
    change the host, task, module, masked arguments and masked unified diffs (cut at
    :data:`MAX_DIFF_LINES` lines per file). ``content_sha256`` of each change binds what masking
    and cutting hide (secret values, long diffs): the exact arguments and file contents.
    ``findings`` given with the operation (already checked and masked) are part of it too."""
    items = []
    for c in changes:
        raw = {"host": c["host"], "task": c["task"], "task_path": c["task_path"], "action": c["action"], "args": c["args"],
               "status": c["status"], "files": [{"path": f["path"], "before": f["before"], "after": f["after"]} for f in c["files"]]}
        files = []
        for f in c["files"]:
            lines = list(difflib.unified_diff((f["before"] or "").splitlines(), (f["after"] or "").splitlines(),
                                              f"a {f['path']}", f"b {f['path']}", n=2, lineterm=""))
            shown = [_masked(ln) for ln in lines[:MAX_DIFF_LINES]]
            if len(lines) > MAX_DIFF_LINES:
                shown.append(f"... [{len(lines) - MAX_DIFF_LINES} more diff lines not shown]")
            files.append({"path": _masked(f["path"]), "diff": shown})
        items.append({"host": _masked(c["host"]), "task": _masked(c["task"]), "task_path": _masked(c["task_path"]),
                      "action": _masked(c["action"]), "args": _redact.redact(c["args"]), "status": c["status"],
                      "files": files, "content_sha256": _sha256(raw)})
    items.sort(key=lambda i: (i["task_path"], i["task"], i["host"], i["content_sha256"]))
    doc = {"what": _masked(what), "where": _masked(where), "changes": items}
    if findings:
        doc["findings"] = findings
    # A JSON round trip: the view is exactly what the record stores and reads back.
    return json.loads(_audit.canonical_json(doc))


def view_digest(view):
    """SHA-256 of a change view: what the token binds, recomputable from the decision record."""
    return _sha256(view)


def change_digest(what, where, changes, findings=None):
    """SHA-256 over the change as reviewed (see :func:`change_view`)."""
    return view_digest(change_view(what, where, changes, findings))


def normalise_reviews(reviews):
    """AI reviews (the review itself, or a registered locus.infra.agent result) validated."""
    if reviews is None:
        return []
    if isinstance(reviews, dict):
        reviews = [reviews]
    if not isinstance(reviews, list):
        raise GuardError("review must be a review mapping or a list of them")
    schema = _policy.review_schema()
    out = []
    for n, r in enumerate(reviews):
        where = f"review[{n}]"
        if not isinstance(r, dict):
            raise GuardError(f"{where} must be a mapping (risk, findings, recommendation), got {type(r).__name__}")
        role = r.get("role") or r.get("agent") or (r.get("item") if isinstance(r.get("item"), str) else None)
        meta = {"role": role or f"reviewer {n + 1}", "ref_tag": r.get("ref_tag")}
        task_result = any(k in r for k in ("changed", "failed", "skipped", "invocation", "ansible_loop_var"))
        if r.get("failed") or r.get("skipped") or (task_result and not isinstance(r.get("output"), dict)):
            out.append({**meta, "status": "unavailable", "msg": _redact.redact_text(str(r.get("msg") or "the review failed"))[:300]})
            continue
        body = r.get("output") if isinstance(r.get("output"), dict) else r
        body = {k: body[k] for k in ("risk", "findings", "recommendation") if k in body}
        errors = _jsonschema.problems(body, schema)
        if errors:
            path = ".".join(str(p) for p in errors[0].path)
            raise GuardError(f"{where}{'.' + path if path else ''}: {errors[0].message}")
        out.append({**meta, "status": "ok", **body})
    return out


def evaluate(policy, changes, resources=None, reviews=(), extra_findings=()):
    """Findings and risks (no side effects): the deterministic floor, then the AI reviews."""
    try:
        raw = list(extra_findings) + _guard_rules.analyse_changes(changes, policy.data["analysers"])
        raw += _guard_rules.analyse_resources(resources, policy.halt_threshold, policy.warn_threshold)
    except ValueError as exc:
        raise GuardError(str(exc)) from exc
    findings = [{**f, "risk": policy.rule_risk(f["rule"]), "source": "deterministic"} for f in raw]
    det_risk = max_level(*(f["risk"] for f in findings))
    agent_findings, agent_levels = [], []
    for r in reviews:
        if r["status"] != "ok":
            continue
        agent_levels.append(r["risk"])
        for text in r.get("findings") or []:
            agent_findings.append({"rule": f"agent:{r['role']}", "risk": r["risk"], "source": f"agent:{r['role']}",
                                   "message": _redact.redact_text(str(text))[:300], "evidence": {"ref_tag": r.get("ref_tag")}})
        if r.get("recommendation") == "reject":
            level = policy.rule_risk("agent_reject")
            agent_levels.append(level)
            agent_findings.append({"rule": "agent_reject", "risk": level, "source": f"agent:{r['role']}",
                                   "message": f"{r['role']} recommends rejecting the change",
                                   "evidence": {"ref_tag": r.get("ref_tag")}})
    agent_risk = max_level(*agent_levels) if agent_levels else None
    risk = max_level(det_risk, agent_risk)  # an agent can raise the risk, never lower it
    return {"findings": findings + agent_findings, "deterministic_risk": det_risk, "agent_risk": agent_risk, "risk": risk}


# ------------------------------------------------------------------ decide -------------------
def decide(store, policy, operation, resources=None, reviews=None, approval=None, context=None, check_mode=False,
           key_loader=None, now=None, context_chars=6000):
    """Evaluate ``operation``, apply the policy and any approval, record the decision.

    ``approval``: ``{token}`` (signed token), ``{ref, answer, approver}`` (typed at a prompt in
    this run) or ``{ref, awx_workflow_job_id}`` (AWX workflow approval node). ``context``:
    job, user, check mode, AWX variables. ``key_loader()`` returns the approval key.

    Steps: normalise and evaluate (:class:`_Decision`), verify a signed token outside the
    transaction, then in one transaction: the verdict, the VALIDATE record and the APPROVAL
    record of an approval used or refused.
    """
    d = _Decision(policy, operation, resources, reviews, context, check_mode)
    approval = {k: v for k, v in (approval or {}).items() if v is not None and (k == "answer" or v != "")}
    now = int(time.time() if now is None else now)
    token = d.verify_token(approval, key_loader, now)
    with store.transaction() as tx:
        d.state = _halt.halt_state(store, tx)
        d.judge(tx, approval, token, now)
        d.record(tx)
    return d.result(store, context_chars)


class _Decision:
    """One guard decision while :func:`decide` takes it through its steps."""

    def __init__(self, policy, operation, resources, reviews, context, check_mode):
        self.policy = policy
        self.check_mode = check_mode
        self.context = dict(context or {})
        self.what, self.where, self.changes, extra, self.meta = normalise_operation(operation)
        self.reviews = normalise_reviews(reviews)
        self.ev = evaluate(policy, self.changes, resources, self.reviews, extra)
        self.view = change_view(self.what, self.where, self.changes, self.meta.get("findings"))
        self.digest = view_digest(self.view)
        self.requirement = policy.requirement(self.ev["risk"])
        self.state = None
        self.decision = None
        self.reasons = []
        self.accepted = self.refused = None
        self.ref_tag = self.approval_tag = None

    def verify_token(self, approval, key_loader, now):
        """``(payload, problem)`` of a signed token, checked only when a human must approve."""
        if not (approval.get("token") and self.requirement == "human"):
            return None, None
        try:
            ssh = self.policy.approver_keys
            return _approval.verify(approval["token"], None if ssh is not None else key_loader(), now=now,
                                    approvers=ssh), None
        except _approval.TokenRefused as exc:
            return exc.payload, exc.reason
        except _approval.ApprovalError as exc:
            return None, str(exc)

    def judge(self, tx, approval, token, now):
        """The verdict: halt and exhausted resources deny first, then the policy's requirement."""
        risk, reasons = self.ev["risk"], self.reasons
        if self.state["halted"]:
            self.decision = "deny"
            reasons.append(f"locus.infra is halted by {self.state['tag']}: {self.state['reason']}")
        exhausted = [f for f in self.ev["findings"] if f["rule"] == "resource_exhausted"]
        if exhausted:
            self.decision = "deny"
            reasons.extend(f["message"] for f in exhausted)
        if self.decision is None and self.requirement == "deny":
            self.decision = "deny"
            reasons.append(f"the policy denies risk {risk}")
        if self.decision is None and self.requirement == "human":
            self.decision = "needs_approval"
            reasons.append(f"risk {risk} needs a human approval (policy risk.approval.{risk})")
            if approval:
                self.accepted, self.refused = _check_approval(tx, self.policy, approval, *token, self.digest,
                                                              self.state, self.context, now)
                if self.accepted:
                    self.decision = "allow"
                    reasons.append(f"approved by {self.accepted['approver']} ({self.accepted['method']}, "
                                   f"{self.accepted['ref']})")
        if self.decision is None:
            self.decision = "allow"
            reasons.append(f"risk {risk} needs no approval")

    def record(self, tx):
        """The VALIDATE record, and the APPROVAL record of an approval used (consumed) or refused."""
        ev, decision, accepted, refused = self.ev, self.decision, self.accepted, self.refused
        record = {
            RESERVED_KEY: "decision", "decision": decision, "risk": ev["risk"], "deterministic_risk": ev["deterministic_risk"],
            "agent_risk": ev["agent_risk"], "digest": self.digest, "epoch": self.state["epoch"], "what": self.what,
            "where": self.where, "reasons": self.reasons, "changes": len(self.changes),
            "findings_count": len(ev["findings"]),
            "findings": [_brief(f) for f in ev["findings"][:MAX_RECORDED_FINDINGS]],
            "reviews": [{k: r.get(k) for k in ("role", "status", "risk", "recommendation", "ref_tag")} for r in self.reviews],
            "policy": self.policy.summary(), "check_mode": bool(self.check_mode), **self.context,
        }
        if self.meta.get("playbook"):
            record["playbook"] = self.meta["playbook"]
        if accepted:
            record["approval"] = {k: accepted[k] for k in ("method", "ref", "approver")}
        # The change view is masked already and must stay byte for byte what the digest covers.
        record = dict(_redact.redact(record), change=self.view)
        self.ref_tag = ref_tag = tx.record("VALIDATE", f"guard: {decision} (risk {ev['risk']}) {self.what} @ {self.where}",
                                           record)
        if accepted and not self.check_mode:
            self.approval_tag = tx.record("APPROVAL", f"approval of {accepted['ref']} used by {ref_tag}", _redact.redact({
                **self.context, **accepted, "event": "accepted", "decision": ref_tag, "digest": self.digest}))
            tx.mark_approval_used(accepted["ref"], _ts(), self.approval_tag, accepted["method"])
        elif refused and not self.check_mode:
            self.approval_tag = tx.record("APPROVAL", f"approval for {ref_tag} refused", _redact.redact({
                **self.context, **refused, "event": "refused", "decision": ref_tag, "digest": self.digest}))

    def result(self, store, context_chars):
        ev, policy, state = self.ev, self.policy, self.state
        result = {
            "decision": self.decision, "risk": ev["risk"], "deterministic_risk": ev["deterministic_risk"],
            "agent_risk": ev["agent_risk"], "findings": ev["findings"], "reasons": self.reasons, "ref_tag": self.ref_tag,
            "digest": self.digest, "changes": len(self.changes), "halted": state["halted"], "reviews": self.reviews,
            "policy": policy.summary(), "requirement": self.requirement,
            "review_lane": policy.data["lanes"]["review"], "review_budget": dict(policy.data["budgets"]),
            "review_context": _guard_rules.summarise(self.changes, context_chars),
        }
        if state["halted"]:
            result["halt"] = state
        if self.decision == "needs_approval":
            result["approve_command"] = approve_command(store, self.ref_tag, policy)
        if self.accepted:
            result["approval"] = dict(self.accepted, approval_tag=self.approval_tag, consumed=not self.check_mode)
        if self.refused:
            result["approval_refused"] = dict(self.refused, approval_tag=self.approval_tag)
        return result


def approve_command(store, ref_tag, policy):
    """``locus approve`` as a human pastes it: this run's SQLite store and policy file made explicit.

    A PostgreSQL URL holds a password, so it is never printed: the approver's shell needs
    ``LOCUS_STATE_URL`` (docs/guard.md).
    """
    parts = ["locus"]
    if store.engine == "sqlite":
        parts += ["--state-dir", shlex.quote(os.path.dirname(store.path))]
    parts += ["approve", ref_tag]
    if policy.source != _policy.DEFAULT_POLICY:
        parts += ["--policy", shlex.quote(os.path.abspath(policy.source))]
    return " ".join(parts)


def _brief(finding):
    return {k: finding.get(k) for k in ("rule", "risk", "source", "message", "evidence")}


def _check_approval(tx, policy, approval, token_payload, token_problem, digest, state, context, now):
    """``(accepted, refused)``: exactly one is a dict describing the approval's fate."""
    if approval.get("token"):
        method = "token"
        ref = (token_payload or {}).get("ref")
        approver = (token_payload or {}).get("approver")
        info = {"method": method, "ref": ref, "approver": approver, "fingerprint": _approval.fingerprint(approval["token"])}
        problem = token_problem or _token_problem(tx, policy, token_payload, digest, state)
    elif approval.get("ref") and "answer" in approval:
        # Only the guard's action plugin sets ``answer``: what a human typed at the controller's
        # terminal (Display.prompt_until); no task argument or variable reaches it.
        if not str(approval["answer"]).strip():
            return None, None  # nothing typed (or no terminal): no approval was attempted
        method, ref = "prompt", approval["ref"]
        info = {"method": method, "ref": ref, "approver": _approval.os_user()}
        problem = _prompt_problem(tx, policy, approval, digest, state, context, now)
    elif approval.get("ref"):
        method, ref = "awx_workflow", approval["ref"]
        info = {"method": method, "ref": ref, "approver": "awx-workflow-approval-node",
                "awx_workflow_job_id": context.get("awx", {}).get("awx_workflow_job_id")}
        problem = _awx_problem(tx, policy, approval, digest, state, context, now)
    else:
        return None, None
    if problem is None and info["ref"]:
        problem = _used_problem(tx, info["ref"])
    if problem:
        return None, dict(info, reason=problem)
    return info, None


def _decision_record(tx, ref):
    rec = _halt.chained_record(tx, ref)
    if rec is None:
        return None, None
    return _halt.record_data(rec["data"]), rec["ts"]


def _bound_problem(tx, ref, digest, state):
    """Common checks: ``ref`` is a decision that needed approval, for this change, since the last halt."""
    data, ts = _decision_record(tx, ref)
    if data is None:
        return f"no audit record with tag {ref}", None, None
    if data.get(RESERVED_KEY) != "decision":
        return f"{ref} is not a guard decision", None, None
    if data.get("digest") != digest:
        return f"the approval is for a different change ({ref} has digest {str(data.get('digest'))[:12]}…, this change {digest[:12]}…)", data, ts
    if int(data.get("epoch", -1)) != state["epoch"]:
        return f"the approval predates the emergency halt (epoch {data.get('epoch')}, now {state['epoch']}); approvals are void after a halt", data, ts
    return None, data, ts


def _token_problem(tx, policy, payload, digest, state):
    if payload.get("kind") != "change":
        return "this token approves a resume, not a change"
    if payload.get("digest") != digest:
        return f"the token is for a different change (token digest {str(payload.get('digest'))[:12]}…, this change {digest[:12]}…)"
    if int(payload.get("epoch", -1)) != state["epoch"]:
        return "the token was issued before the last emergency halt; approvals are void after a halt"
    problem, _data, _ts_ = _bound_problem(tx, payload.get("ref"), digest, state)
    if problem is None and payload.get("record") != _record_hash(tx, payload.get("ref")):
        problem = (f"the token approves {payload.get('ref')} of another audit trail (that record's hash differs from "
                   "this store's): a token holds only in the store where it was issued")
    return problem


def _age(ts, now):
    try:
        then = datetime.datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None
    return now - int(then.timestamp())


def _prompt_problem(tx, policy, approval, digest, state, context, now):
    if not policy.data["approval"]["prompt"]:
        return f"the policy {policy.source} does not allow approval at a prompt (approval.prompt: false)"
    if policy.approval_mode == "ssh_keys":
        return "the policy names approver keys (approval.mode: ssh_keys): approve with a signed token, not at a prompt"
    if (context.get("awx") or {}).get("awx_job_id"):
        return "no prompt approvals under AWX: the workflow's approval node is the only way there"
    ref, answer = approval["ref"], str(approval.get("answer") or "").strip()
    if answer != ref:
        return f"the answer at the prompt was not the decision's REF-tag {ref} (nothing approved)"
    problem, data, ts = _bound_problem(tx, ref, digest, state)
    if problem:
        return problem
    if context.get("job") and data.get("job") != context.get("job"):
        return f"{ref} was decided in another run ({data.get('job')}); a prompt approves only its own run's decision"
    age = _age(ts, now)
    if age is None or age > policy.lifetime:
        return f"{ref} is older than the approval lifetime ({policy.lifetime} s)"
    return None


def _awx_problem(tx, policy, approval, digest, state, context, now):
    if not policy.data["approval"]["awx_workflow"]:
        return f"the policy {policy.source} does not accept AWX workflow approvals (approval.awx_workflow: false)"
    wf = str((context.get("awx") or {}).get("awx_workflow_job_id") or "")
    if not wf:
        return "no awx_workflow_job_id: an AWX approval node approves only jobs of its own workflow"
    problem, data, ts = _bound_problem(tx, approval["ref"], digest, state)
    if problem:
        return problem
    if str((data.get("awx") or {}).get("awx_workflow_job_id") or "") != wf:
        return f"{approval['ref']} was decided outside this workflow (workflow job {wf})"
    age = _age(ts, now)
    if age is None or age > policy.lifetime:
        return f"{approval['ref']} is older than the approval lifetime ({policy.lifetime} s)"
    return None
