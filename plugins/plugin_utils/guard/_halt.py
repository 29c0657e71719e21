# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The emergency halt check: is locus.infra halted? (read side of the guard's HALT records)

Private API of the collection (may change without notice).

Every plugin that changes something or spends tokens calls :func:`check_halt` first: the
action plugins (plugin_utils/_action.py) and the agents (plugin_utils/agents/_agent.py).
It needs only the store, so checking the halt does not load the guard's rules and policy;
:mod:`_guard` builds on it to set and clear the halt and to approve.

The state is derived from the last halt/resume HALT record, each checked as a sound link of
the hash chain, and cross-checked with the table ``locus_guard_halt``: an edited table or a
forged record is :class:`_store.Tampered` (fail closed: it neither clears nor sets a halt).
The SQL behind it is the store's (plugin_utils/store/_guard_state.py); ``db`` below is the
store or one of its write transactions.
"""

from __future__ import annotations

import json

from ansible_collections.locus.infra.plugins.plugin_utils import _redact
from ansible_collections.locus.infra.plugins.plugin_utils.store import _store


class Halted(Exception):
    """locus.infra is halted; ``state`` holds the HALT tag, reason and since."""

    def __init__(self, state):
        super().__init__(halt_message(state))
        self.state = state


def _sound(db, rec):
    problem = _store.chain_problem(db.query, rec)
    if problem:
        raise _store.Tampered(f"the guard refuses to go on: {problem}; run `locus audit verify`")
    return rec


def chained_record(db, tag):
    """The record of ``tag`` (None when there is none); :class:`_store.Tampered` outside the chain.

    ``db``: the store, or a write transaction of it (then the check and what follows are atomic).
    """
    rec = db.audit_record(tag)
    return _sound(db, rec) if rec is not None else None


def guard_records(db, action, batch=50, naming=None):
    """HALT or APPROVAL records, newest first, each checked as a link of the chain; with ``naming``
    only those whose data holds ``"ref":"<naming>"`` (the single-use check stays cheap however
    long the trail; a record edited to name another ref is caught by the table cross-check)."""
    before = None
    while True:
        rows = db.guard_records(action, ref=naming, before=before, limit=batch)
        for rec in rows:
            yield _sound(db, rec), record_data(rec["data"])
        if len(rows) < batch:
            return
        before = rows[-1]["position"]


def ts_of(rec):
    return rec["ts"][:19] + "Z"


_NOT_HALTED = {"halted": False, "tag": None, "reason": None, "since": None, "by": None, "epoch": 0}


def chain_halt_state(db):
    for rec, data in guard_records(db, "HALT"):
        if data.get("event") == "halt":
            return {"halted": True, "tag": rec["tag"], "reason": data.get("reason"), "since": ts_of(rec),
                    "by": data.get("user"), "epoch": int(data.get("epoch", 0))}
        if data.get("event") == "resume":
            halted = chained_record(db, str(data.get("halt")))
            hdata = record_data(halted["data"]) if halted else {}
            return {"halted": False, "tag": data.get("halt"), "reason": hdata.get("reason"),
                    "since": ts_of(halted) if halted else None, "by": hdata.get("user"), "epoch": int(data.get("epoch", 0))}
    return dict(_NOT_HALTED)


def table_problem(db, state):
    row = db.halt_row()
    if row is None:
        return "the row of locus_guard_halt was deleted"
    halted, tag, epoch = row
    if (halted, tag, epoch) != (state["halted"], state["tag"], state["epoch"]):
        return (f"locus_guard_halt says halted={int(halted)} tag={tag} epoch={epoch}, but the audit trail says "
                f"halted={int(state['halted'])} tag={state['tag']} epoch={state['epoch']}: the halt table was edited")
    return None


def halt_state(store, tx=None):
    """``{halted, tag, reason, since, by, epoch}``, derived from the trail's last HALT record.

    :class:`_store.Tampered` when that record is not a sound link of the chain or the halt table
    disagrees with it (fail closed: an edited table neither clears nor sets a halt).
    """
    db = tx if tx is not None else store
    state = chain_halt_state(db)
    problem = table_problem(db, state)
    if problem:
        raise _store.Tampered(f"the guard refuses to go on: {problem}; run `locus audit verify`")
    return state


def halt_message(state):
    """What every refused plugin says; printable whatever the HALT record holds (:func:`_redact.printable`)."""
    by, reason = _redact.printable(state["by"]), _redact.printable(state["reason"])
    return (
        f"locus.infra is HALTED by {state['tag']} since {state['since']} ({by}): {reason}. "
        f"Plugins that change anything or spend tokens refuse to run until a human resumes: "
        f"`locus approve {state['tag']}` then `locus resume --token …`."
    )


def check_halt(store):
    """Raise :class:`Halted` when the emergency halt is set."""
    state = halt_state(store)
    if state["halted"]:
        raise Halted(state)
    return state


def record_data(text):
    """The data of a record as a dict ({} when it is not a JSON object)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
