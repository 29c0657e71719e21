# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over audit records (locus.infra.audit_info's ``records``)."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

_TAG = re.compile(r"^LOCUS-([A-Z]+)\d{8}-\d+$")
MAX_TASKS = 15  # task names listed per kind: a summary small enough for a small model's context


def audit_run_summary(records, job):
    """The facts of one playbook run (``job``) from its audit records: counts, tasks and tag ranges."""
    if not isinstance(records, list):
        raise AnsibleFilterError(f"audit_run_summary: expected the list of audit records, got {type(records).__name__}")
    tasks, others = [], {}
    for n, record in enumerate(records):
        if not isinstance(record, dict) or not isinstance(record.get("data"), dict):
            raise AnsibleFilterError(f"audit_run_summary: record {n} is not an audit record (tag, data)")
        if record["data"].get("job") != job:
            continue
        match = _TAG.match(str(record.get("tag", "")))
        if not match:
            raise AnsibleFilterError(f"audit_run_summary: record {n} has no REF-tag ({record.get('tag')!r})")
        if match.group(1) == "TASK":
            tasks.append(record["data"])
            continue
        # other tags per action, in the order the run made them: first, last and how many
        seen = others.setdefault(match.group(1), {"action": match.group(1), "count": 0, "first": record["tag"]})
        seen["count"] += 1
        seen["last"] = record["tag"]
    by_status = {}
    for task in tasks:
        status = str(task.get("status", "unknown"))
        by_status[status] = by_status.get(status, 0) + 1

    def names(selected):
        return list(dict.fromkeys(str(t.get("task")) for t in selected))[:MAX_TASKS]

    return {
        "job": job,
        "results": len(tasks),
        "by_status": dict(sorted(by_status.items())),
        "changed_count": sum(1 for t in tasks if t.get("changed")),
        "changed_tasks": names(t for t in tasks if t.get("changed")),
        "failed_tasks": names(t for t in tasks if t.get("status") == "failed"),
        "censored_results": sum(1 for t in tasks if t.get("censored")),
        "check_mode": any(t.get("check_mode") for t in tasks),
        "other_tags": list(others.values()),
    }


class FilterModule:
    def filters(self):
        return {"audit_run_summary": audit_run_summary}
