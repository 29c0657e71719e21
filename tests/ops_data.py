"""Store facts as locus.infra.ops_facts returns them, for the report tests (unit and Chromium)."""

from __future__ import annotations


def store_facts(halt_reason=None, spent=0.0):
    """Two days of audit activity, a verified chain, one agent's spend; halted when ``halt_reason`` is given."""
    halt = {"halted": bool(halt_reason), "tag": "LOCUS-HALT20261206-001" if halt_reason else None, "reason": halt_reason,
            "since": "2026-12-06T10:00:00Z" if halt_reason else None, "by": "ops" if halt_reason else None, "epoch": 1 if halt_reason else 0}
    return {
        "audit": {"days": 2, "since": "2026-12-05", "records": 9, "by_action": {"TASK": 9},
                  "tasks_per_day": [{"day": "2026-12-05", "ok": 4, "changed": 1, "failed": 0, "unreachable": 0, "skipped": 1},
                                    {"day": "2026-12-06", "ok": 1, "changed": 0, "failed": 1, "unreachable": 1, "skipped": 0}],
                  "runs": {"started": 2, "finished": 2, "failed": 1, "interrupted": 0}, "failed_runs": [],
                  "validate": {"passed": 3, "failed": 1, "allow": 1, "needs_approval": 0, "deny": 0},
                  "guard": {"halts": 0, "resumes": 0, "approvals_issued": 0, "approvals_used": 0, "approvals_refused": 0}},
        "chain": {"ok": True, "count": 9, "last_tag": "LOCUS-TASK20261206-004"},
        "spend": {"day": "2026-12-06", "today_usd": spent, "daily_budget_usd": 5.0, "today_percent": round(100 * spent / 5.0, 1),
                  "agent_daily_budget_usd": 1.0,
                  "agents": [{"agent": "security", "usd": spent, "budget_usd": 1.0, "used_percent": round(100 * spent, 1), "calls": 3}],
                  "per_day": []},
        "guard": {"halt": halt, "waiting_approval": []},
    }
