"""The guard attacked the way a careless or hostile user would (issue 19 §1, §2), on both engines.

Forged decisions (``locus tag``, a raw append by someone holding the store), identities taken
from the environment, HMAC tokens where the policy names approver keys, SSH signatures by the
wrong key, padded and malformed tokens, edited halt and single-use tables, a record slipped in
before the chain. Real store, real ``locus`` CLI, real ``ssh-keygen``/``ssh-agent``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pwd
import signal
import subprocess

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils.guard import _approval, _guard, _halt, _policy
from ansible_collections.locus.infra.plugins.plugin_utils.store import _audit, _refs, _store
from locus_testlib import REPO, VENV_BIN, attack_store, run_locus

KEY = "an-approval-key-for-attack-tests-0123"
ME = pwd.getpwuid(os.geteuid()).pw_name
JOB = "LOCUS-JOB20250101-001"


def _op(listen="0.0.0.0:8080"):
    return {"what": "expose the app", "where": "web1",
            "changes": [{"host": "web1", "task": "site", "action": "ansible.builtin.template",
                         "args": {"dest": "/etc/nginx/sites-enabled/app", "api_password": "hunter2-not-recorded"},
                         "diff": {"before": "server {\n    listen 127.0.0.1:8080;\n}\n",
                                  "after": f"server {{\n    listen {listen};\n}}\n",
                                  "after_header": "/etc/nginx/sites-enabled/app"}}]}


VM_DELETE = {"what": "remove the database VM", "where": "pve1",
             "changes": [{"host": "pve1", "task": "drop db", "action": "locus.infra.proxmox_vm",
                          "args": {"name": "db1", "state": "absent"}}]}


@pytest.fixture
def env(store_env):
    return {**store_env, "LOCUS_APPROVAL_KEY": KEY, "LOCUS_APPROVAL_TOKEN": "", "LOCUS_POLICY": ""}


def decide(store, policy, op, approval=None, **kw):
    return _guard.decide(store, policy, op, approval=approval, context={"job": JOB, "user": "tester"},
                         key_loader=KEY.encode, **kw)


def _token(out):
    return out.stdout.strip().splitlines()[-1]


_attack = attack_store


# -- §1 forged decisions ----------------------------------------------------------------------------
def test_the_generic_tag_paths_cannot_write_guard_records(env, open_test_store):
    policy = _policy.load_policy(environ={})
    store = open_test_store()
    real = decide(store, policy, VM_DELETE)
    forged = {"guard": "decision", "decision": "needs_approval", "risk": "low", "digest": real["digest"], "epoch": 0,
              "what": "rotate nginx logs", "where": "web1", "findings": []}
    out = run_locus("tag", "VALIDATE", "guard: needs_approval (risk low) rotate nginx logs", "--data", json.dumps(forged), env=env)
    assert out.returncode == 2 and "reserved for the guard" in out.stderr
    for action in ("HALT", "APPROVAL", "halt"):
        out = run_locus("tag", action, "resume", "--data", '{"event": "resume"}', env=env)
        assert out.returncode == 2 and "written only by the guard" in out.stderr, action
    with pytest.raises(_guard.GuardError, match="reserved"):
        _guard.check_generic_record("DEPLOY", {"guard": "decision"})
    assert [r["tag"] for r in store.iter_records()] == [real["ref_tag"]]  # nothing was written


def test_a_decision_appended_by_a_store_holder_is_not_approved(env, open_test_store):
    """Someone who can write the store appends a well-chained VALIDATE record that says
    "rotate nginx logs, risk low" but carries the digest of a critical VM delete."""
    policy = _policy.load_policy(environ={})
    store = open_test_store()
    real = decide(store, policy, VM_DELETE)
    assert real["decision"] == "needs_approval" and real["risk"] == "critical"
    harmless = _guard.change_view("rotate nginx logs", "web1", [])
    lie = {"guard": "decision", "decision": "needs_approval", "risk": "low", "digest": real["digest"], "epoch": 0,
           "what": "rotate nginx logs", "where": "web1", "findings": [], "change": harmless}
    tag = store.record("VALIDATE", "guard: needs_approval (risk low) rotate nginx logs", lie)
    out = run_locus("approve", tag, env=env)
    assert out.returncode == 1 and "digest does not match the change it records" in out.stderr
    assert "locus1." not in out.stdout
    # consistent lie: the view says "rotate logs" and the digest is the view's own. The approver
    # sees "rotate nginx logs" - and the token approves exactly that, not the VM delete.
    consistent = dict(lie, digest=_guard.view_digest(harmless))
    tag2 = store.record("VALIDATE", "guard: needs_approval (risk low) rotate nginx logs", consistent)
    approved = run_locus("approve", tag2, env=env)
    assert approved.returncode == 0 and "approving " + tag2 + ": rotate nginx logs @ web1" in approved.stdout
    used = decide(store, policy, VM_DELETE, approval={"token": _token(approved)})
    assert used["decision"] == "needs_approval" and "different change" in used["approval_refused"]["reason"]


def test_approve_shows_the_recorded_change_with_secrets_masked(env, open_test_store):
    policy = _policy.load_policy(environ={})
    first = decide(open_test_store(), policy, _op())
    out = run_locus("approve", first["ref_tag"], env=env)
    assert out.returncode == 0, out.stderr
    assert "web1: site [ansible.builtin.template] changed" in out.stdout
    assert "-    listen 127.0.0.1:8080;" in out.stdout and "+    listen 0.0.0.0:8080;" in out.stdout
    assert '"dest": "/etc/nginx/sites-enabled/app"' in out.stdout
    assert "hunter2" not in out.stdout and "hunter2" not in "".join(r["data"] for r in open_test_store().iter_records())
    # the masked argument is still bound: another password is another change
    other = _op()
    other["changes"][0]["args"]["api_password"] = "something-else"  # noqa: S105 - test data
    assert _guard.change_digest(*_guard.normalise_operation(other)[:3]) != first["digest"]


# -- §1 no variable stands in for a human; the default enforce fails with the decision ------------------
def _play(env, playbook, *extra):
    """ansible-playbook with no terminal at all (standard input from /dev/null, as in CI)."""
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), str(playbook), *extra], stdin=subprocess.DEVNULL,
                          env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **env},
                          capture_output=True, text=True, cwd=REPO, timeout=600, check=False)


PROBE = REPO / "tests" / "integration" / "guard" / "playbooks" / "approval_probe.yml"


def test_variables_cannot_answer_the_prompt_and_enforce_shows_the_decision(env, open_test_store):
    out = _play(env, PROBE)
    result = json.loads(next(line for line in out.stdout.splitlines() if '"RESULT ' in line)
                        .split("RESULT ", 1)[1].rstrip('"').encode().decode("unicode_escape"))
    enforced = result["enforced"]  # the default enforce: true
    assert enforced["failed"] is True and enforced["decision"] == "needs_approval"
    assert "multiple values" not in enforced["msg"]
    assert enforced["msg"].startswith(f"guard {enforced['ref_tag']}: needs_approval (risk high)")
    assert "[high] public_bind" in enforced["msg"] and f"to approve: {enforced['approve_command']}" in enforced["msg"]
    assert enforced["approve_command"].startswith("locus ") and f" approve {enforced['ref_tag']}" in enforced["approve_command"]
    # approval_answer is no option any more: a variable cannot say what a human typed
    answered = result["answered"]
    assert answered["failed"] is True and "approval_answer" in answered["msg"] and "Unsupported parameters" in answered["msg"]
    prompted = result["prompted"]  # approval_prompt without a terminal: nothing approved
    assert prompted["decision"] == "needs_approval" and "no interactive terminal: nothing approved" in prompted["msg"]
    awx = result["awx"]  # under AWX the approval node is the only way
    assert awx["decision"] == "needs_approval" and "no prompt under AWX" in awx["msg"]
    accepted = [r for r in open_test_store().iter_records()
                if r["tag"].startswith("LOCUS-APPROVAL") and json.loads(r["data"])["event"] == "accepted"]
    assert accepted == []


def test_change_review_takes_no_answer_from_variables(env, tmp_path):
    review = REPO / "playbooks" / "change_review.yml"
    target = REPO / "tests" / "integration" / "guard" / "playbooks" / "exposure.yml"
    args = {"review_playbook": str(target), "review_agents": [], "review_extra_vars": {"exposure_listen": "0.0.0.0:8080"},
            "review_answer": {"user_input": "LOCUS-VALIDATE20250101-001"}, "approval_answer": "yes", "review_prompt": True}
    out = _play({**env, "EXPOSURE_DIR": str(tmp_path / "exposure")}, review, "-e", json.dumps(args))
    assert out.returncode != 0 and "needs_approval (risk high)" in out.stdout
    assert "no interactive terminal: nothing approved" in out.stdout
    assert not (tmp_path / "exposure" / "nginx").exists()


# -- §1 identity from the environment -----------------------------------------------------------------
def test_the_environment_does_not_name_the_approver(env, open_test_store):
    policy = _policy.load_policy(environ={})
    first = decide(open_test_store(), policy, _op())
    spoof = {**env, "LOGNAME": "alice", "USER": "alice", "SUDO_USER": "alice"}
    out = run_locus("approve", first["ref_tag"], env=spoof)
    assert out.returncode == 0 and f"approved by {ME} until" in out.stdout
    issued = [json.loads(r["data"]) for r in open_test_store().iter_records() if r["tag"].startswith("LOCUS-APPROVAL")]
    assert issued[-1]["approver"] == ME and issued[-1]["mode"] == "shared_key"
    ok = decide(open_test_store(), policy, _op(), approval={"token": _token(out)})
    assert ok["decision"] == "allow" and ok["approval"]["approver"] == ME


def _keypair(tmp_path, name):
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@test", "-f", str(path)], check=True)
    return path, path.with_suffix(".pub").read_text().strip()


@pytest.fixture
def keys(tmp_path, env):
    """alice is the policy's approver; bob has a key of his own; the policy names alice's key."""
    keydir = tmp_path / "keys"
    keydir.mkdir()
    alice, alice_pub = _keypair(keydir, "alice")
    bob, _bob_pub = _keypair(keydir, "bob")
    policy_file = tmp_path / "policy.yml"
    policy_file.write_text(f"version: 1\napproval:\n  mode: ssh_keys\n  approvers:\n    - name: alice\n      key: '{alice_pub}'\n")
    return {"alice": alice, "bob": bob, "policy": _policy.load_policy(str(policy_file), environ={}),
            "env": {**env, "LOCUS_POLICY": str(policy_file)}}


def test_ssh_key_approvals_only_by_the_keys_the_policy_names(keys, open_test_store):
    policy, env = keys["policy"], keys["env"]
    store = open_test_store()
    first = decide(store, policy, _op())
    # no key, the wrong key, a name from the environment: nothing
    assert run_locus("approve", first["ref_tag"], env={**env, "SSH_AUTH_SOCK": ""}).returncode == 2
    bob = run_locus("approve", first["ref_tag"], "--key", str(keys["bob"]), env={**env, "LOGNAME": "alice"})
    assert bob.returncode == 2 and "is not an approver's key in the policy" in bob.stderr
    # holding the store and the HMAC key is not enough: an HMAC token is refused
    record = store.get(first["ref_tag"])["hash"]
    minted = _approval.issue(KEY.encode(), first["ref_tag"], first["digest"], "alice", 0, 600, record=record)
    out = decide(store, policy, _op(), approval={"token": minted})
    assert out["decision"] == "needs_approval" and "must be signed with an approver's SSH key" in out["approval_refused"]["reason"]
    # bob signs a token that claims to be alice's
    bob_signer = _approval.SshSigner(str(keys["bob"]), [("alice", keys["bob"].with_suffix(".pub").read_text())])
    forged = _approval.issue_signed(bob_signer, first["ref_tag"], first["digest"], 0, 600, record=record)
    out = decide(store, policy, _op(), approval={"token": forged})
    assert "SSH signature does not verify for approver 'alice'" in out["approval_refused"]["reason"]
    # alice, with her private key file
    approved = run_locus("approve", first["ref_tag"], "--key", str(keys["alice"]), env=env)
    assert approved.returncode == 0, approved.stderr
    token = _token(approved)
    assert token.startswith("locus2.") and "approved by alice until" in approved.stdout
    # a re-signed payload naming someone else, or another signature bolted on, does not verify
    prefix, body, sig = token.split(".")
    payload = _approval.decode(token)
    mallory = base64.urlsafe_b64encode(json.dumps(dict(payload, approver="mallory"), sort_keys=True,
                                                  separators=(",", ":")).encode()).rstrip(b"=").decode()
    out = decide(store, policy, _op(), approval={"token": f"{prefix}.{mallory}.{sig}"})
    assert "does not verify" in out["approval_refused"]["reason"]
    ok = decide(store, policy, _op(), approval={"token": token})
    assert ok["decision"] == "allow" and ok["approval"]["approver"] == "alice"
    assert decide(store, policy, _op(), approval={"token": token})["approval_refused"]["reason"].startswith("the approval of")
    assert store.verify()["ok"]


def test_an_agent_held_key_signs_and_resumes_a_halt(keys, open_test_store, tmp_path):
    env = keys["env"]
    agent = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True).stdout
    sock = agent.split("SSH_AUTH_SOCK=", 1)[1].split(";", 1)[0]
    pid = int(agent.split("SSH_AGENT_PID=", 1)[1].split(";", 1)[0])
    try:
        scratch = tmp_path / "tmp"  # where `locus approve` writes the agent key's public half for ssh-keygen
        scratch.mkdir()
        agent_env = {**env, "SSH_AUTH_SOCK": sock, "TMPDIR": str(scratch)}
        subprocess.run(["ssh-add", "-q", str(keys["alice"])], env={**os.environ, "SSH_AUTH_SOCK": sock}, check=True)
        public_only = tmp_path / "alice-public.pub"  # the private half is only in the agent
        public_only.write_text(keys["alice"].with_suffix(".pub").read_text())
        halted = run_locus("halt", "--reason", "agent test", env=agent_env)
        halt_tag = halted.stdout.strip().splitlines()[-1]
        by_file = run_locus("approve", halt_tag, "--key", str(public_only), env=agent_env)
        assert by_file.returncode == 0, by_file.stderr
        by_agent = run_locus("approve", halt_tag, env=agent_env)  # no --key: the one approver key in the agent
        assert by_agent.returncode == 0 and "approved by alice" in by_agent.stdout, by_agent.stderr
        resumed = run_locus("resume", "--token", _token(by_file), env=agent_env)
        assert resumed.returncode == 0 and "by alice" in resumed.stdout, resumed.stderr
        assert _halt.halt_state(open_test_store())["halted"] is False
    finally:
        os.kill(pid, signal.SIGTERM)
    assert list(scratch.iterdir()) == []  # removed again


# -- §1 strict tokens -----------------------------------------------------------------------------------
def _hmac_token(payload, key=KEY):
    key = key.encode()
    body = base64.urlsafe_b64encode(payload if isinstance(payload, bytes) else json.dumps(payload).encode()).rstrip(b"=").decode()
    sig = hmac.new(key, f"locus1.{body}".encode(), hashlib.sha256).digest()
    return f"locus1.{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def test_non_canonical_tokens_are_refused(env, open_test_store):
    policy = _policy.load_policy(environ={})
    store = open_test_store()
    first = decide(store, policy, _op())
    token = _guard.approve(store, policy, first["ref_tag"], key=KEY.encode(), approver=ME)["token"]
    prefix, body, sig = token.split(".")
    variants = {
        "padded signature": f"{token}=",
        "padded payload": f"{prefix}.{body}{'=' * (-len(body) % 4) or '=='}.{sig}",
        "standard alphabet": f"{prefix}.{body}.{sig.replace('-', '+').replace('_', '/')}" if ("-" in sig or "_" in sig) else f"{token}==",
        "stray bits": f"{prefix}.{body}.{sig[:-1]}{chr(ord(sig[-1]) + 1) if sig[-1] not in 'z9_-' else 'B'}",
        "spaced json": _hmac_token(json.dumps(_approval.decode(token)).encode()),
    }
    for name, forged in variants.items():
        with pytest.raises(_approval.TokenMalformed):
            _approval.verify(forged, KEY.encode())
        out = decide(store, policy, _op(), approval={"token": forged})
        assert out["decision"] == "needs_approval" and "malformed approval token" in out["approval_refused"]["reason"], name
    assert decide(store, policy, _op(), approval={"token": token})["decision"] == "allow"  # the one spelling


def test_malformed_fields_in_a_signed_token_exit_2_from_resume(env, open_test_store):
    halted = run_locus("halt", "--reason", "malformed tokens", env=env)
    halt_tag = halted.stdout.strip().splitlines()[-1]
    good = _approval.decode(_token(run_locus("approve", halt_tag, env=env)))
    for change in ({"exp": "soon"}, {"epoch": "0"}, {"iat": True}, {"ref": ["x"]}, {"digest": None}, {"v": 2},
                   {"approver": ""}, {"exp": 10**30}, {"extra": 1}):
        payload = dict(good, **change)
        out = run_locus("resume", "--token", _hmac_token(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()),
                        env=env)
        assert out.returncode == 2 and out.stderr.startswith("locus: error: malformed approval token"), (change, out.stderr)
        assert "Traceback" not in out.stderr
    missing = {k: v for k, v in good.items() if k != "exp"}
    out = run_locus("resume", "--token", _hmac_token(json.dumps(missing, sort_keys=True, separators=(",", ":")).encode()), env=env)
    assert out.returncode == 2 and "missing exp" in out.stderr
    assert run_locus("resume", "--token", _token(run_locus("approve", halt_tag, env=env)) + "=", env=env).returncode == 2
    assert _halt.halt_state(open_test_store())["halted"] is True
    assert open_test_store().verify()["ok"]


# -- §2 the halt and single use are the trail's ----------------------------------------------------------------
def test_clearing_the_halt_in_its_table_is_refused(env, open_test_store):
    halt_tag = run_locus("halt", "--reason", "disk failing", env=env).stdout.strip().splitlines()[-1]
    store = open_test_store()
    _attack(store, ("UPDATE locus_guard_halt SET halted = 0 WHERE id = 1", ()))
    with pytest.raises(_store.Tampered, match="the halt table was edited"):
        _halt.check_halt(store)
    status = run_locus("status", env=env)
    assert status.returncode == 2 and "the halt table was edited" in status.stderr
    verified = run_locus("audit", "verify", env=env)
    assert verified.returncode == 1 and "FAILED (tables)" in verified.stdout
    # wind the epoch back as well, or point the row at an older record: still the trail's word
    _attack(store, ("UPDATE locus_guard_halt SET halted = 0, tag = NULL, epoch = 0 WHERE id = 1", ()))
    with pytest.raises(_store.Tampered):
        _halt.halt_state(store)
    # putting the row back as the trail says makes the store usable again (still halted)
    _attack(store, ("UPDATE locus_guard_halt SET halted = 1, tag = ?, epoch = 1 WHERE id = 1", (halt_tag,)))
    assert _halt.halt_state(store)["halted"] is True and store.verify()["ok"] is True


def test_deleting_a_used_approval_does_not_make_it_usable_again(env, open_test_store):
    policy = _policy.load_policy(environ={})
    store = open_test_store()
    first = decide(store, policy, _op())
    token = _guard.approve(store, policy, first["ref_tag"], key=KEY.encode(), approver=ME)["token"]
    assert decide(store, policy, _op(), approval={"token": token})["decision"] == "allow"
    _attack(store, ("DELETE FROM locus_guard_approval_used", ()))
    with pytest.raises(_store.Tampered, match="row in locus_guard_approval_used was deleted"):
        decide(store, policy, _op(), approval={"token": token})
    assert "was deleted" in store.verify()["problem"]["message"]
    out = run_locus("approve", first["ref_tag"], env=env)
    assert out.returncode == 2 and "was deleted" in out.stderr


def test_a_record_before_the_chain_is_tampering_everywhere(env, open_test_store, tmp_path):
    store = open_test_store()
    decide(store, _policy.load_policy(environ={}), _op())
    # a self-consistent decision slipped in at position 0, before the first chained record
    view = _guard.change_view("rotate nginx logs", "web1", [])
    data = _audit.canonical_json({"guard": "decision", "decision": "needs_approval", "digest": _guard.view_digest(view),
                                  "epoch": 0, "what": "rotate nginx logs", "where": "web1", "change": view})
    tag = _refs.format_tag("VALIDATE", _refs.utc_day(), 999)
    ts = "2025-01-01T00:00:00.000000Z"
    digest = _audit.record_hash(tag, ts, "forged", data, _audit.GENESIS)
    _attack(store, ("INSERT INTO locus_audit (position, tag, ts, subject, data, prev_hash, hash) VALUES (0, ?, ?, 'forged', ?, ?, ?)",
                    (tag, ts, data, _audit.GENESIS, digest)))
    problem = store.verify()["problem"]
    assert (problem["kind"], problem["position"], problem["tag"]) == ("inserted", 0, tag)
    head = tmp_path / "head.json"
    head.write_text(json.dumps(store.head()))
    for argv in (["audit", "verify"], ["audit", "verify", "--head", str(head)]):
        out = run_locus(*argv, env=env)
        assert out.returncode == 1 and "lies outside the chain" in out.stdout, argv
    export = tmp_path / "trail.jsonl"
    out = run_locus("audit", "export", "-o", str(export), env=env)
    assert out.returncode == 1 and "lies outside the chain" in out.stderr
    assert run_locus("audit", "verify", "--file", str(export), env=env).returncode == 1
    shown = run_locus("audit", "show", "--tag", tag, env=env)
    assert shown.returncode == 2 and "outside the hash chain" in shown.stderr
    approved = run_locus("approve", tag, env=env)
    assert approved.returncode == 2 and "outside the hash chain" in approved.stderr and "locus1." not in approved.stdout


def test_a_token_is_not_replayed_in_another_store(env, engine, open_test_store, tmp_path, request):
    """Two audit trails, one approval key (a lab and a production controller; AWX and a laptop):
    the same change decided in both gets the same REF-tag and digest. A token approved (and used)
    in one must not approve the change in the other: it names the approved record's own hash."""
    store = open_test_store()
    other_env = ({"LOCUS_STATE_URL": request.getfixturevalue("pg_cluster").create_database()} if engine == "postgresql"
                 else {"LOCUS_STATE_DIR": str(tmp_path / "other-state")})
    other = _store.open_store(url=other_env.get("LOCUS_STATE_URL"), state_dir=other_env.get("LOCUS_STATE_DIR"))
    try:
        policy = _policy.load_policy()
        first = decide(store, policy, VM_DELETE)
        twin = decide(other, policy, VM_DELETE)
        assert (first["ref_tag"], first["digest"]) == (twin["ref_tag"], twin["digest"])  # indistinguishable but for the store
        approved = run_locus("approve", first["ref_tag"], env=env)
        assert approved.returncode == 0, approved.stderr
        token = _token(approved)
        assert decide(store, policy, VM_DELETE, approval={"token": token})["decision"] == "allow"
        replay = decide(other, policy, VM_DELETE, approval={"token": token})
        assert replay["decision"] == "needs_approval", "a token approved in one audit trail approved a change in another"
        assert "another audit trail" in replay["approval_refused"]["reason"]
        assert other.verify()["ok"]
    finally:
        other.close()


def test_nul_bytes_and_stray_surrogates_in_a_change_are_recorded_escaped(env, open_test_store):
    """``what``/``where`` with NUL, a byte that was not UTF-8 and escape sequences (as an LLM's or a
    careless user's text can hold): the decision is made and recorded, the text escaped, and the
    approver is shown it escaped."""
    store = open_test_store()
    policy = _policy.load_policy()
    op = dict(VM_DELETE, what="remove\x00 the db\udcff VM\x1b[2J", where="pve1\x00")
    out = decide(store, policy, op)
    assert out["decision"] == "needs_approval"
    rec = store.get(out["ref_tag"])
    assert "remove\\x00 the db\\xff VM" in rec["subject"] and "\x00" not in rec["subject"]
    shown = run_locus("approve", out["ref_tag"], env=env)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x00" not in shown.stdout
    assert store.verify()["ok"]


@pytest.mark.parametrize("depth", [500, 50000])
def test_a_deeply_nested_changes_file_is_one_clear_error(env, open_test_store, tmp_path, depth):
    """A changes file made by hand (not by locus.infra.changes) nested far deeper than any task's
    arguments: a GuardError naming the file, never a RecursionError out of the guard."""
    path = tmp_path / "changes.json"
    args = '{"a":' * depth + "1" + "}" * depth
    path.write_text('{"complete": true, "changes": [{"host": "web1", "task": "t", "action": "ansible.builtin.copy", '
                    f'"args": {args}}}]}}')
    with pytest.raises(_guard.GuardError, match=f"operation.changes_file {path}: .*nested deeper than"):
        decide(open_test_store(), _policy.load_policy(), {"what": "deep", "changes_file": str(path)})
