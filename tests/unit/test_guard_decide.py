"""Guard decisions on a real store (SQLite and PostgreSQL): facts first, model second, halt, resources."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard, _policy

KEY = b"k" * 32
PUBLIC_NGINX = {
    "what": "expose the app", "where": "web1",
    "changes": [{"host": "web1", "task": "site", "action": "ansible.builtin.template", "args": {"dest": "/etc/nginx/sites-enabled/app"},
                 "diff": {"before": "server {\n    listen 127.0.0.1:8080;\n}\n", "after": "server {\n    listen 0.0.0.0:8080;\n}\n",
                          "after_header": "/etc/nginx/sites-enabled/app"}}],
}
HARMLESS = {"what": "motd", "where": "web1",
            "changes": [{"host": "web1", "task": "motd", "action": "ansible.builtin.copy", "args": {"dest": "/etc/motd"},
                         "diff": {"before": "old\n", "after": "new\n", "after_header": "/etc/motd"}}]}


@pytest.fixture
def policy():
    return _policy.load_policy(environ={})


def decide(store, policy, operation, **kw):
    kw.setdefault("context", {"job": "LOCUS-JOB20250101-001", "user": "tester"})
    return _guard.decide(store, policy, operation, key_loader=lambda: KEY, **kw)


def _record(store, tag):
    return json.loads(store.get(tag)["data"])


def test_a_harmless_change_is_allowed_and_recorded(store, policy):
    out = decide(store, policy, HARMLESS)
    assert out["decision"] == "allow" and out["risk"] == "low" and out["findings"] == []
    rec = _record(store, out["ref_tag"])
    assert out["ref_tag"].startswith("LOCUS-VALIDATE")
    assert rec["decision"] == "allow" and rec["digest"] == out["digest"] and rec["guard"] == "decision"
    assert rec["job"] == "LOCUS-JOB20250101-001" and rec["policy"]["source"] == policy.source
    assert store.verify()["ok"]


def test_public_exposure_needs_approval_with_findings(store, policy):
    out = decide(store, policy, PUBLIC_NGINX)
    assert out["decision"] == "needs_approval" and out["risk"] == "high"
    assert [f["rule"] for f in out["findings"]] == ["public_bind"]
    store_option = f"--state-dir {os.path.dirname(store.path)} " if store.engine == "sqlite" else ""
    assert out["approve_command"] == f"locus {store_option}approve {out['ref_tag']}"
    assert _record(store, out["ref_tag"])["findings"][0]["evidence"]["line"] == "+2: listen 0.0.0.0:8080;"


def test_an_agent_answering_low_cannot_lower_a_deterministic_high(store, policy):
    review = {"role": "security", "ref_tag": "LOCUS-AGENT20250101-001",
              "output": {"risk": "low", "findings": ["looks fine"], "recommendation": "apply"}}
    out = decide(store, policy, PUBLIC_NGINX, reviews=[review, {"risk": "low", "findings": [], "recommendation": "apply"}])
    assert out["deterministic_risk"] == "high" and out["agent_risk"] == "low"
    assert out["risk"] == "high" and out["decision"] == "needs_approval"
    expected = {"role": "security", "status": "ok", "risk": "low", "recommendation": "apply", "ref_tag": "LOCUS-AGENT20250101-001"}
    assert _record(store, out["ref_tag"])["reviews"][0] == expected


def test_an_agent_can_raise_the_risk(store, policy):
    out = decide(store, policy, HARMLESS, reviews=[{"risk": "critical", "findings": ["motd leaks"], "recommendation": "approve"}])
    assert out["deterministic_risk"] == "low" and out["risk"] == "critical" and out["decision"] == "needs_approval"
    assert any(f["source"] == "agent:reviewer 1" and f["message"] == "motd leaks" for f in out["findings"])


def test_an_agent_recommending_reject_raises_to_the_policy_level(store, policy):
    out = decide(store, policy, HARMLESS, reviews=[{"risk": "low", "findings": [], "recommendation": "reject", "role": "infrastructure"}])
    assert out["risk"] == "high" and out["decision"] == "needs_approval"
    assert any(f["rule"] == "agent_reject" for f in out["findings"])


def test_a_failed_review_changes_nothing_but_is_reported(store, policy):
    out = decide(store, policy, HARMLESS, reviews=[{"failed": True, "msg": "budget exhausted", "role": "security"}])
    assert out["decision"] == "allow" and out["agent_risk"] is None
    assert out["reviews"][0]["status"] == "unavailable" and "budget" in out["reviews"][0]["msg"]


def test_a_malformed_review_is_rejected_with_its_path(store, policy):
    with pytest.raises(_guard.GuardError, match=r"review\[0\]\.risk: 'catastrophic' is not one of"):
        decide(store, policy, HARMLESS, reviews=[{"risk": "catastrophic", "findings": [], "recommendation": "apply"}])
    with pytest.raises(_guard.GuardError, match=r"review\[0\]: 'recommendation' is a required property"):
        decide(store, policy, HARMLESS, reviews=[{"risk": "low", "findings": []}])


def test_resources_past_the_threshold_deny(store, policy):
    out = decide(store, policy, HARMLESS, resources={"pve1": {"memory_ratio": 0.96, "cpu_ratio": 0.2}})
    assert out["decision"] == "deny" and out["risk"] == "critical"
    assert "pve1 memory at 96.0% (halt threshold 95%)" in out["reasons"]


def test_halted_denies_everything(store, policy):
    halted = _guard.halt(store, "storage failing", "ops", "test")
    out = decide(store, policy, HARMLESS)
    assert out["decision"] == "deny" and out["halted"] is True and out["halt"]["tag"] == halted["ref_tag"]
    assert out["reasons"][0].startswith(f"locus.infra is halted by {halted['ref_tag']}: storage failing")


def test_a_policy_can_deny_a_level(store, tmp_path):
    path = tmp_path / "p.yml"
    path.write_text("version: 1\nrisk:\n  approval:\n    high: deny\n")
    out = decide(store, _policy.load_policy(str(path), environ={}), PUBLIC_NGINX)
    assert out["decision"] == "deny" and "the policy denies risk high" in out["reasons"]


def test_the_digest_binds_the_exact_change(policy):
    def digest(op):
        what, where, changes, _extra, _meta = _guard.normalise_operation(op)
        return _guard.change_digest(what, where, changes)

    assert digest(HARMLESS) == digest(json.loads(json.dumps(HARMLESS)))
    other = json.loads(json.dumps(HARMLESS))
    other["changes"][0]["diff"]["after"] = "newer\n"
    assert digest(other) != digest(HARMLESS)
    elsewhere = dict(HARMLESS, where="web2")
    assert digest(elsewhere) != digest(HARMLESS)


def test_bad_operations_name_the_key(store, policy):
    with pytest.raises(_guard.GuardError, match=r"operation\.what is required"):
        decide(store, policy, {"where": "x"})
    with pytest.raises(_guard.GuardError, match=r"operation: unknown key\(s\) chnages"):
        decide(store, policy, {"what": "x", "chnages": []})
    with pytest.raises(_guard.GuardError, match=r"operation\.changes\[0\]: unknown key\(s\) colour"):
        decide(store, policy, {"what": "x", "changes": [{"colour": 1}]})
    with pytest.raises(_guard.GuardError, match=r"operation\.changes_file .*nope\.json: cannot read it"):
        decide(store, policy, {"what": "x", "changes_file": "/nonexistent/nope.json"})
    assert store.head()["count"] == 0  # nothing recorded for bad input


def test_an_incomplete_check_run_is_a_finding(store, policy, tmp_path):
    path = tmp_path / "changes.json"
    path.write_text(json.dumps({"version": 1, "complete": False, "changes": HARMLESS["changes"]}))
    out = decide(store, policy, {"what": "motd", "where": "web1", "changes_file": str(path)})
    assert out["decision"] == "needs_approval" and "check_failed" in [f["rule"] for f in out["findings"]]
