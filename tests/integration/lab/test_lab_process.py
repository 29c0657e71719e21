"""locus.infra.lab_process run as a real module process against real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from locus_testlib import REPO

MODULE = REPO / "plugins" / "modules" / "lab_process.py"


def run_module(tmp_path, check_mode=False, **args):
    args_file = tmp_path / f"args-{uuid.uuid4().hex}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}))
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, timeout=120, check=False)
    return json.loads(proc.stdout)


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.fixture
def sleeper(tmp_path):
    """Arguments for a long sleeping Python process with a unique command line."""
    token = f"lab-process-test-{uuid.uuid4().hex}"
    args = {
        "pidfile": str(tmp_path / "run" / "sleeper.pid"),
        "log": str(tmp_path / "run" / "sleeper.log"),
        "match": token,
        "argv": [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(300)", token],
        "settle": 0.3,
    }
    yield args
    pid_file = Path(args["pidfile"])
    if pid_file.exists():
        run_module(tmp_path, pidfile=args["pidfile"], match=token, state="stopped", stop_timeout=5)


def test_start_is_idempotent_and_stop_ends_the_process(tmp_path, sleeper):
    first = run_module(tmp_path, **sleeper)
    assert first["changed"] and first["running"] and not first["was_running"]
    pid = first["pid"]
    assert alive(pid)
    assert Path(sleeper["pidfile"]).read_text().strip() == str(pid)
    assert os.getsid(pid) == pid  # its own session: survives the playbook that started it

    again = run_module(tmp_path, **sleeper)
    assert not again["changed"] and again["pid"] == pid

    query = run_module(tmp_path, pidfile=sleeper["pidfile"], match=sleeper["match"], state="query")
    assert query == {**query, "changed": False, "running": True, "pid": pid}

    stopped = run_module(tmp_path, pidfile=sleeper["pidfile"], match=sleeper["match"], state="stopped")
    assert stopped["changed"] and stopped["pid"] == pid and not stopped["killed"]
    assert not alive(pid)
    assert not Path(sleeper["pidfile"]).exists()
    assert "up" in Path(sleeper["log"]).read_text()

    again = run_module(tmp_path, pidfile=sleeper["pidfile"], match=sleeper["match"], state="stopped")
    assert not again["changed"] and not again["was_running"]


def test_a_recycled_pid_is_neither_running_nor_signalled(tmp_path, sleeper):
    pid_file = Path(sleeper["pidfile"])
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{os.getpid()}\n")  # alive, but not the process the file was written for
    query = run_module(tmp_path, pidfile=sleeper["pidfile"], match=sleeper["match"], state="query")
    assert not query["running"]
    stopped = run_module(tmp_path, pidfile=sleeper["pidfile"], match=sleeper["match"], state="stopped")
    assert not stopped["changed"] and not stopped["was_running"]
    assert not pid_file.exists()
    started = run_module(tmp_path, **sleeper)
    assert started["changed"] and started["pid"] != os.getpid()


def test_a_process_that_dies_at_once_fails_with_its_log(tmp_path):
    result = run_module(
        tmp_path,
        pidfile=str(tmp_path / "boom.pid"),
        log=str(tmp_path / "boom.log"),
        match="boom-test",
        argv=[sys.executable, "-c", "import sys; print('no bridge here'); sys.exit(3)", "boom-test"],
        settle=2,
    )
    assert result["failed"]
    assert "exited with status 3" in result["msg"] and str(tmp_path / "boom.log") in result["msg"]
    assert result["log_tail"] == ["no bridge here"]
    assert not (tmp_path / "boom.pid").exists()


def test_a_missing_program_is_reported(tmp_path):
    result = run_module(
        tmp_path,
        pidfile=str(tmp_path / "x.pid"),
        log=str(tmp_path / "x.log"),
        match="x",
        argv=["/nonexistent/systemd-nspawn", "-b"],
    )
    assert result["failed"] and "cannot run /nonexistent/systemd-nspawn" in result["msg"]
    assert not (tmp_path / "x.pid").exists()


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path, sleeper):
    sleeper["argv"] = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(300)",
        sleeper["match"],
    ]
    pid = run_module(tmp_path, **sleeper)["pid"]
    stopped = run_module(tmp_path, pidfile=sleeper["pidfile"], match=sleeper["match"], state="stopped", stop_timeout=1)
    assert stopped["changed"] and stopped["killed"]
    assert not alive(pid)


def test_check_mode_starts_nothing(tmp_path, sleeper):
    result = run_module(tmp_path, check_mode=True, **sleeper)
    assert result["changed"] and not result["running"]
    assert not Path(sleeper["pidfile"]).exists()


def test_start_without_argv_names_what_is_missing(tmp_path):
    result = run_module(tmp_path, pidfile=str(tmp_path / "y.pid"), match="y", log=str(tmp_path / "y.log"))
    assert result["failed"] and "'argv' is required with state=started" in result["msg"]
