"""A real ansible-playbook run with the locus.infra.audit callback, on both engines."""

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils.store import _store
from locus_testlib import REPO, VENV_BIN, raw_store_bytes, records_data, run_playbook

HERE = Path(__file__).parent / "playbooks"
INVENTORY = HERE / "inventory_callback.yml"
SECRETS = ("Pl4nted-S3cret-Value-0xC0FFEE", "sk-ant-api03-PLANTEDKEYPLANTEDKEY0123", "PLANTEDKEYPLANTEDKEY")
RESULT_LINE = re.compile(r"^(?:ok|changed|failed|skipping|fatal): \[(\w+)\]")


def _printed_results(stdout):
    """(task, host) pairs the default callback printed (loop items fold into their task)."""
    pairs, task = set(), None
    for line in stdout.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK ["):line.rindex("]")]
        elif (m := RESULT_LINE.match(line)) and task:
            pairs.add((task, m.group(1)))
    return pairs


def test_every_task_result_on_every_host_is_recorded_without_secrets(store_env, open_test_store, tmp_path):
    proc = run_playbook(HERE / "callback.yml", env=store_env, inventory=INVENTORY, check=False, args=["-e", f"out_dir={tmp_path}"])
    assert proc.returncode == 4, proc.stdout[-3000:]  # dead1 is unreachable
    results = _printed_results(proc.stdout)
    store = open_test_store()
    recs = records_data(store)
    jobs = [d for t, d in recs if t.startswith("LOCUS-JOB")]
    tasks = [d for t, d in recs if t.startswith("LOCUS-TASK")]
    deploys = [d for t, d in recs if t.startswith("LOCUS-DEPLOY")]

    assert len(tasks) == 10 * 3 + 1  # 3 local hosts x 10 tasks, dead1 once (then it is unreachable)
    assert {(d["task"], d["host"]) for d in tasks} == results
    assert [j["event"] for j in jobs] == ["start", "end"]
    assert jobs[1]["status"] == "failed" and jobs[1]["task_records"] == len(tasks)
    assert len(deploys) == 3 and all(d["job"] == tasks[0]["job"] for d in deploys)
    assert store.verify()["ok"]

    status = Counter((d["host"], d["status"]) for d in tasks)
    assert status[("dead1", "unreachable")] == 1
    assert status[("h2", "skipped")] == 2  # the debug and the fail task
    assert status[("h3", "failed")] == 1
    assert status[("h1", "changed")] == 2  # the command and the copy
    failed = next(d for d in tasks if d["status"] == "failed")
    assert failed["ignore_errors"] is True and failed["msg"] == "h3 fails on purpose"
    for d in tasks:
        assert {"job", "play", "task", "action", "host", "duration_s", "check_mode", "user"} <= set(d)
        assert d["check_mode"] is False
    looped = next(d for d in tasks if d["task"] == "Loop over items")
    assert looped["items"] == 3
    hidden = [d for d in tasks if d["task"] == "A no_log task holding a secret"]
    assert hidden and all(d["censored"] is True and "args" not in d for d in hidden)
    pw = next(d for d in tasks if d["task"] == "A secret in a module argument")
    assert pw["args"] == {"service_password": "********"}
    content = next(d for d in tasks if d["task"] == "A no_log module option whose name does not look secret")
    assert content["status"] == "changed" and content["args"]["dest"].endswith(f"{content['host']}.conf")
    assert content["args"].get("content") in (None, "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER")  # masked by the module's spec

    raw = raw_store_bytes(store)
    for secret in SECRETS:
        assert secret.encode() not in raw, f"{secret} reached the store"


def test_check_mode_is_recorded(store_env, open_test_store):
    run_playbook(HERE / "sleeper.yml", env=store_env, inventory=INVENTORY, args=["--check", "--tags", "never"])
    start = next(d for t, d in records_data(open_test_store()) if t.startswith("LOCUS-JOB"))
    assert start["check_mode"] is True and start["tags"] == ["never"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_run_is_closed_as_interrupted(signum, store_env, open_test_store):
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), **store_env}
    proc = subprocess.Popen(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY), str(HERE / "sleeper.yml")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )
    try:
        for line in proc.stdout:  # the quick task's results are written when the long task starts
            if "TASK [Long task that is interrupted]" in line:
                break
        time.sleep(1)  # let the workers start the sleep
        proc.send_signal(signum)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    recs = records_data(open_test_store())
    tasks = [d for t, d in recs if t.startswith("LOCUS-TASK")]
    assert sorted(d["host"] for d in tasks if d["task"] == "Quick task before the interruption") == ["h1", "h2"]
    end = [d for t, d in recs if t.startswith("LOCUS-JOB")][-1]
    assert end["event"] == "end" and end["status"] == "interrupted" and end["reason"] == signum.name
    assert "closed as interrupted" in out
    assert open_test_store().verify()["ok"]


def test_lookup_allocates_once_per_task_host_and_term(store_env, open_test_store):
    proc = run_playbook(HERE / "lookup.yml", env=store_env, inventory=INVENTORY)
    lines = re.findall(r"TAGS (h\d) (LOCUS-\S+\d) (LOCUS-\S+\d) (LOCUS-[\w,-]+\d) (LOCUS-\S+\d)", proc.stdout)
    assert len(lines) == 2
    seen = set()
    for _host, first, first_again, looped, second in lines:
        assert first == first_again  # one task: one tag however often templated
        assert "," not in looped  # every item of the loop task got the same tag
        assert len({first, looped, second}) == 3  # each task its own
        seen |= {first, looped, second}
    assert len(seen) == 6  # h1 and h2 get their own tags
    deploys = [t for t, _data in records_data(open_test_store()) if t.startswith("LOCUS-DEPLOY")]
    assert sorted(deploys) == sorted(seen)


def test_awx_job_with_sqlite_warns_loudly_and_records_awx_context(tmp_path):
    env = {"LOCUS_STATE_DIR": str(tmp_path)}
    proc = run_playbook(
        HERE / "sleeper.yml", env=env, inventory=INVENTORY,
        args=["--tags", "never", "-e", json.dumps({"awx_job_id": 4242, "awx_execution_node": "ee-1", "awx_user_name": "alice"})],
    )
    assert "records die with the container" in proc.stdout + proc.stderr
    with _store.open_store(state_dir=str(tmp_path)) as s:
        end = [d for t, d in records_data(s) if t.startswith("LOCUS-JOB")][-1]
    assert end["awx"] == {"awx_job_id": 4242, "awx_execution_node": "ee-1", "awx_user_name": "alice"}


def test_unusable_store_refuses_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_playbook(
        HERE / "sleeper.yml", env={"LOCUS_STATE_DIR": str(blocker / "state")}, inventory=INVENTORY, check=False
    )
    assert proc.returncode == 2
    assert "refusing to run unaudited" in proc.stderr and "cannot create the state directory" in proc.stderr
    assert "TASK [Quick task" not in proc.stdout

    bad_url = run_playbook(
        HERE / "sleeper.yml", env={"LOCUS_STATE_URL": "postgresql://u:pw@127.0.0.1:1/x"}, inventory=INVENTORY,
        check=False,
    )
    assert bad_url.returncode == 2 and "cannot connect to the PostgreSQL store" in bad_url.stderr
    assert ":pw@" not in bad_url.stderr + bad_url.stdout
