"""playbooks/change_review.yml end to end: real ansible-playbook runs (nested check and apply runs),
the locus.infra.changes callback, the guard, and reviewers on the embedded model and the doubles.

Targets: playbooks/demo.yml (a harmless change: the demo's motd was edited by hand) and
tests/integration/guard/playbooks/exposure.yml (an nginx site on loopback, or on every address).
"""

from __future__ import annotations

import json
import os
import pty
import pwd
import re
import select
import termios
import time
from pathlib import Path

import pytest
from doubles.anthropic_api import AnthropicDouble
from doubles.ollama_api import OllamaDouble

from locus_testlib import REPO, VENV_BIN, run_locus, run_playbook

REVIEW = REPO / "playbooks" / "change_review.yml"
EXPOSURE = Path(__file__).parent / "playbooks" / "exposure.yml"
DEMO = REPO / "playbooks" / "demo.yml"
SITE = "nginx/sites-enabled/app.conf"


@pytest.fixture
def env(tmp_path):
    """A fresh SQLite store and target directories (the logic under test is engine-independent;
    the guard's store code runs on both engines in tests/unit)."""
    return {"LOCUS_STATE_DIR": str(tmp_path / "state"), "EXPOSURE_DIR": str(tmp_path / "exposure"),
            "LOCUS_DEMO_DIR": str(tmp_path / "demo"), "LOCUS_APPROVAL_TOKEN": ""}


def _vars(**extra):
    return ["-e", json.dumps(extra)]


def review(env, target, check=True, **extra):
    return run_playbook(REVIEW, env=env, args=_vars(review_playbook=str(target), **extra), check=check)


def records(env, prefix):
    from ansible_collections.locus.infra.plugins.plugin_utils.store import _store

    with _store.open_store(state_dir=env["LOCUS_STATE_DIR"]) as store:
        assert store.verify()["ok"]
        return [(r["tag"], json.loads(r["data"])) for r in store.iter_records() if r["tag"].startswith(prefix)]


def final_decision(env):
    return [(t, d) for t, d in records(env, "LOCUS-VALIDATE") if d.get("guard") == "decision"][-1]


PUBLIC = {"review_extra_vars": {"exposure_listen": "0.0.0.0:8080"}}


# -- without reviewers: the facts, the prompt and the AWX approval node ------------------------------------
def test_public_exposure_stops_and_a_token_applies_it(env, tmp_path):
    stopped = review(env, EXPOSURE, check=False, review_agents=[], **PUBLIC)
    assert stopped.returncode != 0
    assert "needs_approval (risk high)" in stopped.stdout and "public_bind: nginx listens on all addresses (0.0.0.0:8080)" in stopped.stdout
    assert not (tmp_path / "exposure" / "nginx").exists()  # the check run changed nothing, nothing was applied
    tag, data = final_decision(env)
    assert data["decision"] == "needs_approval" and re.search(rf"locus (--state-dir \S+ )?approve {tag}", stopped.stdout)

    approved = run_locus("approve", tag, env=env)
    assert approved.returncode == 0, approved.stderr
    token = approved.stdout.strip().splitlines()[-1]
    # the token approves only this change: a different listen address is refused ...
    other = review({**env, "LOCUS_APPROVAL_TOKEN": token}, EXPOSURE, check=False, review_agents=[],
                   review_extra_vars={"exposure_listen": "[::]:8080"})
    assert other.returncode != 0 and "approval refused: the token is for a different change" in other.stdout
    # ... and applies this one
    applied = review({**env, "LOCUS_APPROVAL_TOKEN": token}, EXPOSURE, review_agents=[], **PUBLIC)
    assert "allow (risk high)" in applied.stdout and f"approved by {pwd.getpwuid(os.geteuid()).pw_name} (token, {tag})" in applied.stdout
    assert "listen 0.0.0.0:8080;" in (tmp_path / "exposure" / SITE).read_text()
    deploy_tag, deploy = records(env, "LOCUS-DEPLOY")[-1]
    assert deploy["decision"] == final_decision(env)[0] and deploy["applied"] == 2 and deploy["predicted"] == 2
    assert deploy["apply_job"].startswith("LOCUS-JOB") and deploy_tag in applied.stdout
    events = [d["event"] for _t, d in records(env, "LOCUS-APPROVAL")]
    assert events == ["issued", "refused", "accepted"]


def _read(master, timeout):
    """What the terminal prints within ``timeout`` seconds (b"" at its end)."""
    ready, _w, _x = select.select([master], [], [], timeout)
    if not ready:
        return None
    try:
        return os.read(master, 4096)
    except OSError:
        return b""  # the child closed the terminal


def _type(master, text, out, start):
    """Type ``text`` + Enter once the prompt reads the terminal.

    Ansible's prompt switches the terminal out of canonical mode and then flushes pending
    input, so wait for that, type, and type again (bounded) until the prompt echoes it."""
    deadline = time.monotonic() + 60
    while termios.tcgetattr(master)[3] & termios.ICANON and time.monotonic() < deadline:
        time.sleep(0.05)
    for _attempt in range(10):
        os.write(master, text.encode())
        seen = time.monotonic() + 2
        while time.monotonic() < seen:
            chunk = _read(master, 0.2)
            if chunk:
                out.append(chunk)
            if text.encode() in b"".join(out)[start:]:
                os.write(master, b"\r")
                return
    pytest.fail(f"the prompt never echoed {text!r}")


def _run_with_terminal(argv, env, answer_for, timeout=600):
    """Run ``argv`` on a pseudo-terminal; when the prompt shows, type ``answer_for(prompt_text)``."""
    pid, master = pty.fork()
    if pid == 0:  # child: the pty is its controlling terminal, as for a human at a shell
        os.execve(argv[0], argv, env)  # noqa: S606 - our own ansible-playbook, argv as a list
    out, answered, deadline = [], False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = _read(master, 1.0)
            if chunk == b"":
                break
            if chunk:
                out.append(chunk)
            text = b"".join(out)
            if not answered and text.rstrip().endswith(b":") and b"type its REF-tag" in text:
                _type(master, answer_for(text.decode(errors="replace")), out, len(text))
                answered = True
        else:
            os.kill(pid, 9)
            pytest.fail(f"the interactive run did not finish in {timeout} s:\n{b''.join(out).decode(errors='replace')[-3000:]}")
    finally:
        os.close(master)
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(out).decode(errors="replace")


def _interactive(env, answer_for):
    full_env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **env}
    argv = [str(VENV_BIN / "ansible-playbook"), str(REVIEW),
            *_vars(review_playbook=str(EXPOSURE), review_agents=[], **PUBLIC)]
    return _run_with_terminal(argv, full_env, answer_for)


def test_a_human_approves_at_the_prompt_by_typing_the_ref_tag(env, tmp_path):
    def the_tag(text):
        return re.search(r"type its REF-tag (LOCUS-VALIDATE\d{8}-\d{3,})", text).group(1)

    rc, out = _interactive(env, the_tag)
    assert rc == 0, out[-3000:]
    assert "approved by" in out and "(prompt, LOCUS-VALIDATE" in out
    assert "listen 0.0.0.0:8080;" in (tmp_path / "exposure" / SITE).read_text()
    accepted = [d for _t, d in records(env, "LOCUS-APPROVAL") if d["event"] == "accepted"]
    assert len(accepted) == 1 and accepted[0]["method"] == "prompt"


def test_anything_else_at_the_prompt_stops(env, tmp_path):
    rc, out = _interactive(env, lambda _text: "yes")
    assert rc != 0 and "was not the decision's REF-tag" in out
    assert not (tmp_path / "exposure" / "nginx").exists()
    assert [d["event"] for _t, d in records(env, "LOCUS-APPROVAL")] == ["refused"]


def test_awx_workflow_review_approval_node_apply(env, tmp_path):
    policy = tmp_path / "policy.yml"
    policy.write_text("version: 1\napproval:\n  awx_workflow: true\n")
    env = {**env, "LOCUS_POLICY": str(policy)}
    awx = {"awx_job_id": 11, "awx_workflow_job_id": 77, "awx_user_name": "alice"}
    reviewed = review(env, EXPOSURE, review_agents=[], review_apply=False, **awx, **PUBLIC)
    assert "reviewed only (review_apply=false)" in reviewed.stdout
    tag, data = final_decision(env)
    assert data["decision"] == "needs_approval" and data["awx"]["awx_workflow_job_id"] == 77
    assert not (tmp_path / "exposure" / "nginx").exists()
    # another workflow's apply node cannot use it
    stranger = review(env, EXPOSURE, check=False, review_agents=[], **{**awx, "awx_workflow_job_id": 78, "awx_job_id": 13},
                      locus_review_ref=tag, **PUBLIC)
    assert stranger.returncode != 0 and "was decided outside this workflow" in stranger.stdout
    # the apply node after the approval node: locus_review_ref arrives through set_stats
    applied = review(env, EXPOSURE, review_agents=[], **{**awx, "awx_job_id": 12}, locus_review_ref=tag, **PUBLIC)
    assert f"approved by awx-workflow-approval-node (awx_workflow, {tag})" in applied.stdout
    assert "listen 0.0.0.0:8080;" in (tmp_path / "exposure" / SITE).read_text()


def test_a_bad_policy_stops_the_review_naming_file_and_key(env, tmp_path):
    policy = tmp_path / "policy.yml"
    policy.write_text("version: 1\nrisk:\n  approval:\n    high: later\n")
    proc = review({**env, "LOCUS_POLICY": str(policy)}, EXPOSURE, check=False, review_agents=[])
    assert proc.returncode != 0
    assert f"policy {policy}: risk.approval.high: 'later' is not one of ['none', 'human', 'deny']" in proc.stdout
    assert not (tmp_path / "exposure" / "nginx").exists()
    assert records(env, "LOCUS-VALIDATE") == []  # nothing was decided on a bad policy


# -- with reviewers on the embedded model (real inference) ------------------------------------------------
def test_embedded_reviewers_cannot_lower_the_facts(env, tmp_path):
    stopped = review(env, EXPOSURE, check=False, **PUBLIC)
    assert stopped.returncode != 0
    tag, data = final_decision(env)
    roles = [r["role"] for r in data["reviews"]]
    assert roles == ["security", "infrastructure"] and all(r["status"] == "ok" for r in data["reviews"]), data["reviews"]
    assert all(r["ref_tag"].startswith("LOCUS-AGENT") for r in data["reviews"])
    assert data["deterministic_risk"] == "high"
    levels = ["low", "medium", "high", "critical"]
    assert data["risk"] == max([data["deterministic_risk"]] + [r["risk"] for r in data["reviews"]], key=levels.index)
    assert data["decision"] == "needs_approval" and not (tmp_path / "exposure" / "nginx").exists()
    agents = records(env, "LOCUS-AGENT")
    assert len(agents) == 2 and {d["role"] for _t, d in agents} == {"security", "infrastructure"}
    # approved, the same review is answered from the agents' cache and the change applies
    token = run_locus("approve", tag, env=env).stdout.strip().splitlines()[-1]
    applied = review({**env, "LOCUS_APPROVAL_TOKEN": token}, EXPOSURE, **PUBLIC)
    assert "listen 0.0.0.0:8080;" in (tmp_path / "exposure" / SITE).read_text(), applied.stdout[-2000:]


# -- with reviewers on Claude (the Anthropic API double) and Ollama (its double, real inference) ------------
@pytest.fixture(scope="module")
def claude():
    with AnthropicDouble(api_key="sk-ant-api03-guard-test-key-0000000") as api:
        yield api


@pytest.fixture(scope="module")
def ollama():
    with OllamaDouble() as api:
        yield api


def _messages(api):
    return [r for r in api.requests if r["path"].endswith("/v1/messages")]


def test_reviews_by_claude_lane_harmless_change_and_a_low_answer_on_a_high_change(env, tmp_path, claude):
    claude.requests.clear()
    env = {**env, "ANTHROPIC_API_KEY": claude.api_key, "ANTHROPIC_BASE_URL": claude.base_url}
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "motd").write_text("edited by hand\n")

    # the default policy reviews in the private lane: Claude is refused before any request
    review(env, DEMO, review_backend="anthropic")
    _tag, data = final_decision(env)
    assert [r["status"] for r in data["reviews"]] == ["unavailable", "unavailable"]
    assert _messages(claude) == []
    assert data["decision"] == "allow"  # the facts stand: a harmless change

    # a policy that sends change reviews to the enterprise lane: Claude reviews, the harmless change is applied
    policy = tmp_path / "policy.yml"
    policy.write_text("version: 1\nlanes:\n  review: enterprise\n")
    env = {**env, "LOCUS_POLICY": str(policy)}
    (demo / "motd").write_text("edited again\n")
    applied = review(env, DEMO, review_backend="anthropic")
    _tag, data = final_decision(env)
    assert [(r["role"], r["status"], r["risk"], r["recommendation"]) for r in data["reviews"]] == [
        ("security", "ok", "low", "apply"), ("infrastructure", "ok", "low", "apply")]
    assert data["decision"] == "allow" and "is managed by locus.infra" in (demo / "motd").read_text()
    assert "allow (risk low; facts low, AI low)" in applied.stdout
    sent = _messages(claude)
    assert len(sent) == 2 and all(r["body"]["output_config"]["format"]["type"] == "json_schema" for r in sent)
    assert "edited again" in json.dumps(sent[0]["body"])  # the reviewers saw the diff
    raw = json.dumps(records(env, "LOCUS-"))
    assert claude.api_key not in raw

    # Claude answers "low" on a public exposure: the facts' "high" stands, the change stops
    stopped = review(env, EXPOSURE, check=False, review_backend="anthropic", **PUBLIC)
    _tag, data = final_decision(env)
    assert data["deterministic_risk"] == "high" and data["agent_risk"] == "low" and data["risk"] == "high"
    assert data["decision"] == "needs_approval" and stopped.returncode != 0
    assert not (tmp_path / "exposure" / "nginx").exists()


def test_reviews_by_ollama(env, tmp_path, ollama):
    ollama.requests.clear()
    env = {**env, "OLLAMA_HOST": ollama.host}
    stopped = review(env, EXPOSURE, check=False, review_backend="ollama", review_model="smollm2:135m",
                     review_temperature=0, review_top_k=5, **PUBLIC)
    _tag, data = final_decision(env)
    assert [(r["role"], r["status"]) for r in data["reviews"]] == [("security", "ok"), ("infrastructure", "ok")], data["reviews"]
    levels = ["low", "medium", "high", "critical"]
    assert data["risk"] == max(["high"] + [r["risk"] for r in data["reviews"]], key=levels.index)
    assert data["decision"] == "needs_approval" and stopped.returncode != 0
    chats = [r for r in ollama.requests if r["path"] == "/api/chat"]
    assert len(chats) == 2 and all(isinstance(r["body"]["format"], dict) for r in chats)
