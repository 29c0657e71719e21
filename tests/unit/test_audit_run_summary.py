"""The demo's run summary (filter locus.infra.audit_run_summary) and the agent report built on it."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.locus.infra.plugins.filter.audit import audit_run_summary
from ansible_collections.locus.infra.plugins.filter.ops import embedded_advisory

TEMPLATE = Path(__file__).resolve().parents[2] / "playbooks" / "templates" / "demo_agents_report.md.j2"


def task(n, status, changed=False, **extra):
    data = {"job": "J1", "task": f"task {n % 4}", "status": status, "changed": changed, **extra}
    return {"tag": f"LOCUS-TASK20261206-{n:03d}", "data": data}


def records():
    out = [{"tag": "LOCUS-JOB20261206-001", "data": {"job": "J1", "event": "start"}}]
    out += [task(n, "ok") for n in range(1, 6)]
    out += [task(n, "changed", changed=True) for n in range(6, 9)]
    out += [task(9, "skipped"), task(10, "failed", censored=True), task(11, "ok", check_mode=True)]
    out += [{"tag": f"LOCUS-VALIDATE20261206-{n:03d}", "data": {"job": "J1"}} for n in range(1, 31)]
    out += [{"tag": "LOCUS-TASK20261206-099", "data": {"job": "OTHER", "status": "changed", "changed": True}}]
    out += [{"tag": "LOCUS-ARTIFACT20261206-007", "data": {"job": "J1"}}, {"tag": "LOCUS-JOB20261206-002", "data": {"job": "J1"}}]
    return out


def test_the_summary_counts_each_status_once_and_ranges_the_other_tags():
    facts = audit_run_summary(records(), "J1")
    assert facts["results"] == 11
    assert facts["by_status"] == {"changed": 3, "failed": 1, "ok": 6, "skipped": 1}
    assert facts["changed_count"] == 3 and facts["censored_results"] == 1 and facts["check_mode"] is True
    assert facts["changed_tasks"] == ["task 2", "task 3", "task 0"] and facts["failed_tasks"] == ["task 2"]
    assert facts["other_tags"] == [
        {"action": "JOB", "count": 2, "first": "LOCUS-JOB20261206-001", "last": "LOCUS-JOB20261206-002"},
        {"action": "VALIDATE", "count": 30, "first": "LOCUS-VALIDATE20261206-001", "last": "LOCUS-VALIDATE20261206-030"},
        {"action": "ARTIFACT", "count": 1, "first": "LOCUS-ARTIFACT20261206-007", "last": "LOCUS-ARTIFACT20261206-007"},
    ]


def test_another_job_has_nothing():
    facts = audit_run_summary(records(), "J9")
    assert facts["results"] == 0 and facts["by_status"] == {} and facts["other_tags"] == []


@pytest.mark.parametrize(("records", "message"), [
    ("x", "expected the list of audit records, got str"),
    ([{"tag": "LOCUS-TASK20261206-001"}], "record 0 is not an audit record"),
    ([{"tag": "not-a-tag", "data": {"job": "J1"}}], r"record 0 has no REF-tag \('not-a-tag'\)"),
])
def test_bad_input_is_named(records, message):
    with pytest.raises(AnsibleFilterError, match=message):
        audit_run_summary(records, "J1")


def render(backend):
    review = {"ref_tag": "LOCUS-AGENT20261206-001", "backend": backend, "model": "m", "lane": "private", "cost_usd": 0.0,
              "cached": False, "output": {"risk": "low", "summary": "fine", "findings": []}}
    # trim_blocks as ansible.builtin.template renders it
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True)  # noqa: S701 - Markdown, not HTML
    env.filters["locus.infra.embedded_advisory"] = embedded_advisory
    return env.from_string(TEMPLATE.read_text()).render(
        demo_review_job="J1", demo_artifact={"ref_tag": "LOCUS-ARTIFACT20261206-008"}, demo_security=review,
        demo_devops=review, demo_check={"ref_tag": "LOCUS-AGENT20261206-003", "cost_usd": 0.0, "verifier": "devops",
                                        "agree": True, "issues": []},
        demo_run_facts=audit_run_summary(records(), "J1"))


def test_the_report_states_each_count_once_and_the_tag_ranges():
    text = render("ollama")
    facts_line = next(line for line in text.splitlines() if line.startswith("  ("))
    assert facts_line == "  (3 changed, 1 failed, 6 ok, 1 skipped, 1 censored)"
    assert ("- Other REF-tags of the run: 2 JOB (LOCUS-JOB20261206-001 .. LOCUS-JOB20261206-002), "
            "30 VALIDATE (LOCUS-VALIDATE20261206-001 .. LOCUS-VALIDATE20261206-030), "
            "1 ARTIFACT (LOCUS-ARTIFACT20261206-007)") in text
    assert "\n\n## Security review" in text  # a heading after a blank line
    assert "Advisory only" not in text


def test_a_report_on_the_embedded_backend_says_its_verdict_is_advisory():
    text = render("embedded")
    assert "**Advisory only.**" in text and "the deterministic findings - the guard's analysers" in text
    assert "USD\n\n> **Advisory only.**" in text and "(docs/agents.md).\n\n## Facts reviewed" in text
    assert "11 times of 12" in text


def test_the_change_review_says_the_embedded_verdict_is_advisory_as_the_demo_report_does():
    """playbooks/change_review.yml's own expression and condition, rendered on both kinds of answers."""
    play = yaml.safe_load((TEMPLATE.parents[1] / "change_review.yml").read_text())
    task = next(t for b in play[0]["tasks"] for t in b.get("block", []) if t["name"] == "Say that the embedded backend's verdict is advisory")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - plain text
    env.filters["locus.infra.embedded_advisory"] = embedded_advisory
    demo_note = render("embedded").split("> **Advisory only.** ", 1)[1].split("\n", 1)[0]
    for backends, expected in ((["ollama", "embedded"], demo_note), (["ollama", "anthropic"], ""), ([], "")):
        answers = {"results": [{"backend": b} for b in backends] + [{"failed": True, "msg": "unavailable"}]}
        note = env.from_string(task["vars"]["review_advisory"]).render(review_answers=answers)
        assert note == expected
        assert env.compile_expression(task["when"])(review_advisory=note) is bool(expected)
    assert task["ansible.builtin.debug"]["msg"].startswith("Advisory only. ")
