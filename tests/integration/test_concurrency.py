"""Allocation across many processes, a writer killed with SIGKILL, and one approval raced by many
processes, on both engines."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard, _policy
from ansible_collections.locus.infra.plugins.plugin_utils.store import _refs

WORKER = """
import sys
from ansible_collections.locus.infra.plugins.plugin_utils.store._store import open_store
n, label = int(sys.argv[1]), sys.argv[2]
store = open_store()
print("ready", flush=True)
for i in range(n):
    print(store.record("TASK" if i % 3 else "DEPLOY", f"{label} {i}", {"worker": label, "i": i}), flush=True)
store.close()
"""


def _spawn(n, label, env):
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(n), label],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_sixteen_processes_five_hundred_tags_each(store_env, open_test_store):
    open_test_store().close()  # create the schema once, like a first playbook run would
    procs = [_spawn(500, f"w{i}", store_env) for i in range(16)]
    outputs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _out, err in outputs if err][:1]
    tags = [line for out, _err in outputs for line in out.split() if line.startswith("LOCUS-")]
    assert len(tags) == 16 * 500
    assert len(set(tags)) == len(tags), "duplicate REF-tags"
    by_action = defaultdict(list)
    for tag in tags:
        action, day, seq = _refs.parse_tag(tag)
        by_action[(action, day)].append(seq)
    for seqs in by_action.values():  # contiguous: 1..n with no gap
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
    store = open_test_store()
    result = store.verify()
    assert result["ok"] and result["count"] == 16 * 500


def test_writer_killed_mid_run_loses_nothing_committed(store_env, open_test_store):
    open_test_store().close()
    proc = _spawn(100000, "victim", store_env)
    assert proc.stdout.readline().strip() == "ready"
    printed = []
    deadline = time.monotonic() + 120
    while len(printed) < 200 and time.monotonic() < deadline:
        printed.append(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    rest = proc.communicate(timeout=60)[0]
    printed += [line for line in rest.split() if line.startswith("LOCUS-")]
    assert len(printed) >= 200

    store = open_test_store()
    result = store.verify()
    assert result["ok"], result.get("problem")
    recorded = {r["tag"] for r in store.iter_records()}
    assert set(printed) <= recorded  # every tag handed out has its record
    last_task = max(_refs.parse_tag(t)[2] for t in recorded if "-TASK" in t)
    new = store.record("TASK", "after the kill", {})
    assert _refs.parse_tag(new)[2] == last_task + 1 and new not in recorded
    assert store.verify()["ok"]


APPROVAL_KEY = b"an-approval-key-for-the-race-0123456789"
# A change the default policy rates high risk (a service opened to every address): it needs a human.
RACED_CHANGE = {"what": "expose the app", "where": "web1",
                "changes": [{"host": "web1", "task": "site", "action": "ansible.builtin.template",
                             "diff": {"before": "server {\n    listen 127.0.0.1:8080;\n}\n",
                                      "after": "server {\n    listen 0.0.0.0:8080;\n}\n",
                                      "after_header": "/etc/nginx/sites-enabled/app"}}]}
RACER = """
import json, sys
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard, _policy
from ansible_collections.locus.infra.plugins.plugin_utils.store._store import open_store
store, policy = open_store(), _policy.load_policy(environ={})
change, token, key = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
print("ready", flush=True)
sys.stdin.readline()  # all racers start together
out = _guard.decide(store, policy, change, approval={"token": token}, context={"user": "racer"}, key_loader=lambda: key)
print(json.dumps([out["decision"], (out.get("approval_refused") or {}).get("reason")]), flush=True)
store.close()
"""


def test_one_approval_raced_by_eight_processes_is_used_once(store_env, open_test_store):
    """The single-use check and the write that uses the approval share one write transaction: of eight
    runs presenting the same token at once, exactly one is allowed, the others are told it was used."""
    store = open_test_store()
    policy = _policy.load_policy(environ={})
    first = _guard.decide(store, policy, RACED_CHANGE, context={"user": "tester"}, key_loader=lambda: APPROVAL_KEY)
    assert first["decision"] == "needs_approval"
    token = _guard.approve(store, policy, first["ref_tag"], key=APPROVAL_KEY, approver="alice")["token"]
    procs = [subprocess.Popen([sys.executable, "-c", RACER, json.dumps(RACED_CHANGE), token, APPROVAL_KEY.decode()],
                              env={**os.environ, **store_env}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _i in range(8)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _out, err in outputs if err][:1]
    results = [json.loads(out) for out, _err in outputs]
    assert sorted(decision for decision, _reason in results) == ["allow"] + ["needs_approval"] * 7
    assert all("already used" in reason for decision, reason in results if decision != "allow"), results
    events = [json.loads(r["data"])["event"] for r in store.iter_records() if r["tag"].startswith("LOCUS-APPROVAL")]
    assert events.count("accepted") == 1 and events.count("refused") == 7
    assert store.approvals_used() == {first["ref_tag"]}
    assert store.verify()["ok"]
