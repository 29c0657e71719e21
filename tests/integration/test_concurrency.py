"""Allocation across many processes, and a writer killed with SIGKILL, on both engines."""

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

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
