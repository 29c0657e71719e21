"""Approval tokens bound to the exact change: valid, wrong change, expired, forged, reused, void after a halt.

Runs on a real store (SQLite and PostgreSQL); every approval and refusal must be an APPROVAL record.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import stat
import time

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils.guard import _approval, _guard, _halt, _policy

KEY = b"an-approval-key-for-tests-0123456789"
JOB = "LOCUS-JOB20250101-001"
CTX = {"job": JOB, "user": "tester"}


def _op(listen="0.0.0.0:8080", where="web1"):
    return {"what": "expose the app", "where": where,
            "changes": [{"host": where, "task": "site", "action": "ansible.builtin.template",
                         "diff": {"before": "server {\n    listen 127.0.0.1:8080;\n}\n",
                                  "after": f"server {{\n    listen {listen};\n}}\n", "after_header": "/etc/nginx/sites-enabled/app"}}]}


@pytest.fixture
def policy():
    return _policy.load_policy(environ={})


def decide(store, policy, op, approval=None, context=None, **kw):
    return _guard.decide(store, policy, op, approval=approval, context=context or CTX, key_loader=lambda: KEY, **kw)


def approvals(store):
    return [(r["tag"], json.loads(r["data"])) for r in store.iter_records() if r["tag"].startswith("LOCUS-APPROVAL")]


def needing_approval(store, policy, op=None):
    first = decide(store, policy, op or _op())
    assert first["decision"] == "needs_approval"
    return first


def test_a_valid_token_approves_the_change_once(store, policy):
    first = needing_approval(store, policy)
    issued = _guard.approve(store, policy, first["ref_tag"], key=KEY, approver="alice")
    assert issued["token"].startswith("locus1.") and issued["kind"] == "change"
    second = decide(store, policy, _op(), approval={"token": issued["token"]})
    assert second["decision"] == "allow" and second["risk"] == "high"
    assert second["approval"]["approver"] == "alice" and second["approval"]["ref"] == first["ref_tag"]
    assert second["approval"]["consumed"] is True
    recs = approvals(store)
    assert [d["event"] for _t, d in recs] == ["issued", "accepted"]
    assert recs[1][1]["decision"] == second["ref_tag"] and recs[1][1]["method"] == "token"
    # the token itself never reaches the trail, only its fingerprint
    raw = "".join(r["data"] for r in store.iter_records())
    assert issued["token"] not in raw and _approval.fingerprint(issued["token"]) in raw
    assert store.verify()["ok"]


def test_a_token_for_another_change_is_refused(store, policy):
    first = needing_approval(store, policy)
    token = _guard.approve(store, policy, first["ref_tag"], key=KEY, approver="alice")["token"]
    other = decide(store, policy, _op(listen="[::]:8080"), approval={"token": token})
    assert other["decision"] == "needs_approval"
    assert "different change" in other["approval_refused"]["reason"]
    assert approvals(store)[-1][1]["event"] == "refused"
    # ... and the refusal did not use the token up: the right change still gets through
    assert decide(store, policy, _op(), approval={"token": token})["decision"] == "allow"


def test_an_expired_token_is_refused(store, policy):
    first = needing_approval(store, policy)
    long_ago = time.time() - 2 * policy.lifetime
    token = _guard.approve(store, policy, first["ref_tag"], key=KEY, approver="alice", now=long_ago)["token"]
    out = decide(store, policy, _op(), approval={"token": token})
    assert out["decision"] == "needs_approval" and "the token expired at" in out["approval_refused"]["reason"]
    assert approvals(store)[-1][1]["reason"].startswith("the token expired")


def _tamper(token, **changes):
    prefix, body, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload.update(changes)
    body = base64.urlsafe_b64encode(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{prefix}.{body}.{sig}"


def test_forged_tokens_are_refused(store, policy):
    first = needing_approval(store, policy)
    token = _guard.approve(store, policy, first["ref_tag"], key=KEY, approver="alice")["token"]
    other_key = _approval.issue(b"another-key-0123456789abcdef", first["ref_tag"], first["digest"], "alice", 0, 600,
                                record=store.get(first["ref_tag"])["hash"])
    forgeries = {
        "altered expiry": _tamper(token, exp=int(time.time()) + 10**6),
        "altered approver": _tamper(token, approver="mallory"),
        "other key": other_key,
        "garbage": "locus1.notbase64!.xx",
        "not a token": "hello",
    }
    for name, forged in forgeries.items():
        out = decide(store, policy, _op(), approval={"token": forged})
        assert out["decision"] == "needs_approval", name
        reason = out["approval_refused"]["reason"]
        assert ("signature does not match" in reason or "not an approval token" in reason
                or "malformed" in reason), (name, reason)
    assert "it names key" in decide(store, policy, _op(), approval={"token": other_key})["approval_refused"]["reason"]
    assert len([d for _t, d in approvals(store) if d["event"] == "refused"]) == len(forgeries) + 1


def test_a_token_cannot_be_used_twice(store, policy):
    first = needing_approval(store, policy)
    token = _guard.approve(store, policy, first["ref_tag"], key=KEY, approver="alice")["token"]
    assert decide(store, policy, _op(), approval={"token": token})["decision"] == "allow"
    again = decide(store, policy, _op(), approval={"token": token})
    assert again["decision"] == "needs_approval" and "already used" in again["approval_refused"]["reason"]
    # a second token for the same decision is no way around it either
    with pytest.raises(_guard.Refused, match="already used"):
        _guard.approve(store, policy, first["ref_tag"], key=KEY, approver="alice")


def test_a_token_issued_before_a_halt_is_void_after_it(store, policy):
    first = needing_approval(store, policy)
    token = _guard.approve(store, policy, first["ref_tag"], key=KEY, approver="alice")["token"]
    halt = _guard.halt(store, "incident", "ops", "test")
    while_halted = decide(store, policy, _op(), approval={"token": token})
    assert while_halted["decision"] == "deny"
    resume_token = _guard.approve(store, policy, halt["ref_tag"], key=KEY, approver="alice")["token"]
    _guard.resume(store, policy, KEY, resume_token, "alice", "test")
    after = decide(store, policy, _op(), approval={"token": token})
    assert after["decision"] == "needs_approval"
    assert "before the last emergency halt" in after["approval_refused"]["reason"]
    # an approval of the pre-halt decision cannot be obtained any more either
    with pytest.raises(_guard.Refused, match="before the last emergency halt"):
        _guard.approve(store, policy, first["ref_tag"], key=KEY, approver="alice")


def test_check_mode_does_not_use_the_token_up(store, policy):
    first = needing_approval(store, policy)
    token = _guard.approve(store, policy, first["ref_tag"], key=KEY, approver="alice")["token"]
    dry = decide(store, policy, _op(), approval={"token": token}, check_mode=True)
    assert dry["decision"] == "allow" and dry["approval"]["consumed"] is False
    assert decide(store, policy, _op(), approval={"token": token})["decision"] == "allow"


def test_approver_names_alone_are_refused_by_the_policy(tmp_path):
    """Login names are no identity (LOGNAME, SUDO_USER, awx_user_name are the caller's to set)."""
    path = tmp_path / "p.yml"
    path.write_text("version: 1\napproval:\n  approvers: [alice]\n")
    with pytest.raises(_policy.PolicyError, match=r"approval.approvers\[0\]: 'alice' is a bare name, which anyone can claim"):
        _policy.load_policy(str(path), environ={})


def test_what_cannot_be_approved(store, policy):
    harmless = decide(store, policy, {"what": "noop", "changes": []})
    with pytest.raises(_guard.Refused, match="only decisions that need approval"):
        _guard.approve(store, policy, harmless["ref_tag"], key=KEY, approver="alice")
    denied = decide(store, policy, _op(), resources={"pve1": {"cpu_ratio": 0.99}})
    with pytest.raises(_guard.Refused, match="denied this change"):
        _guard.approve(store, policy, denied["ref_tag"], key=KEY, approver="alice")
    tag = store.record("DEPLOY", "something")
    with pytest.raises(_guard.Refused, match="only guard decisions"):
        _guard.approve(store, policy, tag, key=KEY, approver="alice")
    with pytest.raises(_guard.Refused, match="no audit record"):
        _guard.approve(store, policy, "LOCUS-VALIDATE20000101-999", key=KEY, approver="alice")
    with pytest.raises(_guard.GuardError, match="not a REF-tag"):
        _guard.approve(store, policy, "LOCUS-NOPE-1", key=KEY, approver="alice")
    first = needing_approval(store, policy)
    _guard.halt(store, "incident", "ops", "test")
    with pytest.raises(_guard.Refused, match="is halted"):
        _guard.approve(store, policy, first["ref_tag"], key=KEY, approver="alice")
    assert store.verify()["ok"]


def test_prompt_approval_needs_the_ref_typed_in_the_same_run(store, policy):
    first = needing_approval(store, policy)
    wrong = decide(store, policy, _op(), approval={"ref": first["ref_tag"], "answer": "yes"})
    assert wrong["decision"] == "needs_approval" and "was not the decision's REF-tag" in wrong["approval_refused"]["reason"]
    before = len(approvals(store))
    empty = decide(store, policy, _op(), approval={"ref": first["ref_tag"], "answer": ""})
    assert empty["decision"] == "needs_approval" and "approval_refused" not in empty  # nothing typed: no attempt
    assert len(approvals(store)) == before
    other_run = decide(store, policy, _op(), approval={"ref": first["ref_tag"], "answer": first["ref_tag"]},
                       context={"job": "LOCUS-JOB20250101-999", "user": "alice"})
    assert "decided in another run" in other_run["approval_refused"]["reason"]
    ok = decide(store, policy, _op(), approval={"ref": first["ref_tag"], "answer": f" {first['ref_tag']} "})
    # the approver is the account running the play (from its uid), not a name anyone passed in
    assert ok["decision"] == "allow" and ok["approval"]["method"] == "prompt"
    assert ok["approval"]["approver"] == pwd.getpwuid(os.geteuid()).pw_name


def test_awx_workflow_approval_is_off_unless_the_policy_allows_it(store, policy, tmp_path):
    awx = {"job": JOB, "user": "bob", "awx": {"awx_workflow_job_id": 41, "awx_user_name": "bob"}}
    first = decide(store, policy, _op(), context=awx)
    out = decide(store, policy, _op(), approval={"ref": first["ref_tag"]}, context=awx)
    assert out["decision"] == "needs_approval" and "approval.awx_workflow: false" in out["approval_refused"]["reason"]
    path = tmp_path / "p.yml"
    path.write_text("version: 1\napproval:\n  awx_workflow: true\n")
    awx_policy = _policy.load_policy(str(path), environ={})
    first = decide(store, awx_policy, _op(), context=awx)
    other_wf = dict(awx, awx={"awx_workflow_job_id": 42})
    assert "outside this workflow" in decide(store, awx_policy, _op(), approval={"ref": first["ref_tag"]},
                                             context=other_wf)["approval_refused"]["reason"]
    ok = decide(store, awx_policy, _op(), approval={"ref": first["ref_tag"]}, context=awx)
    assert ok["decision"] == "allow" and ok["approval"]["method"] == "awx_workflow"


def test_resume_needs_a_valid_token_for_the_current_halt(store, policy):
    halt = _guard.halt(store, "incident", "ops", "test")
    assert _guard.halt(store, "again", "ops", "test")["changed"] is False
    with pytest.raises(_guard.Refused, match="signature does not match"):
        _guard.resume(store, policy, KEY, _tamper(_guard.approve(store, policy, halt["ref_tag"], key=KEY, approver="alice")["token"], approver="x"),
                      "ops", "test")
    assert _halt.halt_state(store)["halted"] is True
    first_token = _guard.approve(store, policy, halt["ref_tag"], key=KEY, approver="alice")["token"]
    out = _guard.resume(store, policy, KEY, first_token, "ops", "test")
    assert out["changed"] is True and _halt.halt_state(store)["halted"] is False
    # the old HALT's token does not resume a new halt
    halt2 = _guard.halt(store, "incident 2", "ops", "test")
    with pytest.raises(_guard.Refused, match=f"this token is for {halt['ref_tag']}, but the current halt is {halt2['ref_tag']}"):
        _guard.resume(store, policy, KEY, first_token, "ops", "test")
    # a change token does not resume
    _guard.resume(store, policy, KEY, _guard.approve(store, policy, halt2["ref_tag"], key=KEY, approver="alice")["token"], "ops", "test")
    change = needing_approval(store, policy)
    change_token = _guard.approve(store, policy, change["ref_tag"], key=KEY, approver="alice")["token"]
    _guard.halt(store, "incident 3", "ops", "test")
    with pytest.raises(_guard.Refused, match="approves the change"):
        _guard.resume(store, policy, KEY, change_token, "ops", "test")
    kinds = [json.loads(r["data"])["event"] for r in store.iter_records() if r["tag"].startswith("LOCUS-HALT")]
    assert kinds == ["halt", "resume", "halt", "resume", "halt"]
    assert store.verify()["ok"]


def test_the_key_file_is_created_private_and_reused(tmp_path):
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state")}
    with pytest.raises(_approval.ApprovalError, match="no approval key"):
        _approval.load_key(environ=env)
    key = _approval.load_key(create=True, environ=env)
    path = tmp_path / "state" / "approval.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(key) == 64
    assert _approval.load_key(environ=env) == key
    assert _approval.load_key(environ={"LOCUS_APPROVAL_KEY": "x" * 20}) == b"x" * 20
    with pytest.raises(_approval.ApprovalError, match="too short"):
        _approval.load_key(environ={"LOCUS_APPROVAL_KEY": "short"})
