# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the state store says about operations: audit activity, the chain, agent spend, the guard.

Private API of the collection (may change without notice). Controller-only; used by the
``locus.infra.ops_facts`` action behind the status report and the health review.
"""

from __future__ import annotations

import datetime

from ansible_collections.locus.infra.plugins.plugin_utils.agents import _budget
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _halt

TASK_OUTCOMES = ("ok", "changed", "failed", "unreachable", "skipped")
REVIEW_KIND = "health_review"


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _days(now, days):
    """The ``days`` UTC dates ending today, oldest first, as YYYY-MM-DD."""
    today = now.date()
    return [(today - datetime.timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


def audit_activity(store, days=7, now=None):
    """Runs, task outcomes per day, VALIDATE results, halts and approvals over the last ``days`` days."""
    now = now or _now()
    dates = _days(now, days)
    per_day = {d: dict.fromkeys(TASK_OUTCOMES, 0) for d in dates}
    runs = {"started": 0, "finished": 0, "failed": 0, "interrupted": 0}
    validate = {"passed": 0, "failed": 0, "allow": 0, "needs_approval": 0, "deny": 0}
    guard = {"halts": 0, "resumes": 0, "approvals_issued": 0, "approvals_used": 0, "approvals_refused": 0}
    actions, failed_runs = {}, []
    rows = store.audit_since(dates[0])
    for tag, ts, text in rows:
        action = tag.split("-")[1].rstrip("0123456789")
        actions[action] = actions.get(action, 0) + 1
        day = ts[:10]
        if action == "TASK":
            data = _halt.record_data(text)
            status = data.get("status")
            if status == "ok" and data.get("changed"):
                status = "changed"
            if day in per_day and status in per_day[day]:
                per_day[day][status] += 1
            continue
        data = _halt.record_data(text)
        if action == "JOB":
            if data.get("event") == "start":
                runs["started"] += 1
            elif data.get("event") == "end":
                runs["finished"] += 1
                if data.get("status") in ("failed", "interrupted"):
                    runs[data["status"]] += 1
                    failed_runs.append(data.get("job") or tag)
        elif action == "VALIDATE":
            if data.get("guard") == "decision" and data.get("decision") in validate:
                validate[data["decision"]] += 1
            elif isinstance(data.get("passed"), bool):
                validate["passed" if data["passed"] else "failed"] += 1
        elif action == "HALT":
            guard["halts" if data.get("event") == "halt" else "resumes"] += 1
        elif action == "APPROVAL":
            key = {"issued": "approvals_issued", "accepted": "approvals_used", "refused": "approvals_refused"}.get(data.get("event"))
            if key:
                guard[key] += 1
    return {
        "days": days, "since": dates[0], "records": len(rows), "by_action": dict(sorted(actions.items())),
        "tasks_per_day": [{"day": d, **per_day[d]} for d in dates], "runs": runs, "failed_runs": failed_runs[-10:],
        "validate": validate, "guard": guard,
    }


def chain(store):
    """The whole chain verified: ``{ok, count, last_tag, problem}``."""
    result = store.verify()
    out = {"ok": result["ok"], "count": result["count"], "last_tag": result["last_tag"]}
    if not result["ok"]:
        out["problem"] = dict(result["problem"])
    return out


def spend(store, policy, days=7, now=None):
    """Agent spend per day and per agent today against the policy's budgets (USD)."""
    now = now or _now()
    dates = _days(now, days)
    budgets = policy.data["budgets"]
    # The ledger keys days as YYYYMMDD (_budget.utc_day); reports show YYYY-MM-DD.
    ledger_day = {d.replace("-", ""): d for d in dates}
    rows = store.ledger_per_day(dates[0].replace("-", ""))
    per_day = dict.fromkeys(dates, 0)
    today, agents = dates[-1], {}
    for day, agent, micro, tokens, calls in rows:
        day = ledger_day.get(day, day)
        if day in per_day:
            per_day[day] += int(micro)
        if day == today:
            agents[agent] = {"agent": agent, "usd": _budget.micro_to_usd(int(micro)), "tokens": int(tokens), "calls": int(calls)}
    daily = float(budgets["daily_usd"])
    agent_daily = float(budgets["agent_daily_usd"])
    today_usd = _budget.micro_to_usd(per_day[today])
    for a in agents.values():
        a["budget_usd"] = agent_daily
        a["used_percent"] = round(100.0 * a["usd"] / agent_daily, 1) if agent_daily else None
    return {
        "day": today, "today_usd": today_usd, "daily_budget_usd": daily,
        "today_percent": round(100.0 * today_usd / daily, 1) if daily else None,
        "agent_daily_budget_usd": agent_daily, "agents": sorted(agents.values(), key=lambda a: a["agent"]),
        "per_day": [{"day": d, "usd": _budget.micro_to_usd(per_day[d])} for d in dates],
    }


def guard_state(store):
    """The emergency halt and the guard decisions still waiting for a human."""
    state = _halt.halt_state(store)
    used = store.approvals_used()
    waiting = []
    for rec in store.find(action="VALIDATE", fields={"decision": "needs_approval"}, limit=200):
        data = _halt.record_data(rec["data"])
        if data.get("guard") == "decision" and data.get("decision") == "needs_approval" and rec["tag"] not in used \
                and int(data.get("epoch", -1)) == state["epoch"]:
            waiting.append({"tag": rec["tag"], "ts": rec["ts"], "subject": rec["subject"], "risk": data.get("risk")})
    return {"halt": state, "waiting_approval": waiting[:20]}


def last_review(store, kind=REVIEW_KIND):
    """``{tag, ts, epoch}`` of the last report of ``kind`` (an ARTIFACT record), or None."""
    rows = store.find(action="ARTIFACT", fields={"report": kind}, limit=1)
    if not rows:
        return None
    tag, ts = rows[0]["tag"], rows[0]["ts"]
    when = datetime.datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return {"tag": tag, "ts": ts, "epoch": int(when.timestamp())}
