"""The audit trail cannot be skipped: a real ansible-playbook run with the audit callback
attacked the way a careless or hostile user would (issue 19 §3), on both engines where cheap.

* any failure inside the callback stops the run (fail closed), with a clear message;
* non-UTF-8 bytes in the playbook path, inventory path, --limit and extra vars are recorded;
* after a SIGINT that Ansible swallows, results keep being recorded and the JOB is closed
  with the run's real outcome;
* the PostgreSQL URL's password never shows in the callback's or the CLI's error lines.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from locus_testlib import REPO, VENV_BIN, records_data, run_locus, run_playbook

HERE = Path(__file__).parent
PLAYBOOKS = HERE / "playbooks"
INVENTORY = PLAYBOOKS / "inventory_callback.yml"

BREAKER = '''
import os, sqlite3
url = os.environ.get("LOCUS_STATE_URL")
if url:
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION locus_test_broken() RETURNS trigger AS $$ "
                     "BEGIN RAISE EXCEPTION 'the audit disk is on fire'; END $$ LANGUAGE plpgsql")
        conn.execute("CREATE TRIGGER locus_test_broken BEFORE INSERT ON locus_audit "
                     "FOR EACH ROW EXECUTE FUNCTION locus_test_broken()")
else:
    conn = sqlite3.connect(os.path.join(os.environ["LOCUS_STATE_DIR"], "locus.db"))
    conn.execute("CREATE TRIGGER locus_test_broken BEFORE INSERT ON locus_audit "
                 "BEGIN SELECT RAISE(ABORT, 'the audit disk is on fire'); END")
    conn.commit()
'''


def test_a_failure_inside_the_callback_stops_the_run(store_env, open_test_store, tmp_path):
    breaker = tmp_path / "breaker.py"
    breaker.write_text(BREAKER)
    markers = tmp_path / "ran"
    markers.mkdir()
    proc = run_playbook(
        PLAYBOOKS / "audit_breaks.yml", env=store_env, inventory=INVENTORY, check=False,
        args=["-e", f"breaker={breaker}", "-e", f"marker_dir={markers}"],
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "the audit trail cannot be kept" in out and "the audit disk is on fire" in out
    assert "stopping the run" in out
    assert list(markers.iterdir()) == []  # the task after the failure never ran on any host
    recs = records_data(open_test_store())
    # What was written before the store broke is intact; the rest was refused, not half written.
    assert [d["task"] for t, d in recs if t.startswith("LOCUS-TASK")] == ["Before the store breaks"] * 2
    assert open_test_store().verify()["ok"]


def test_callback_failures_go_on_only_when_fail_closed_is_off(tmp_path):
    breaker = tmp_path / "breaker.py"
    breaker.write_text(BREAKER)
    markers = tmp_path / "ran"
    markers.mkdir()
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state"), "LOCUS_AUDIT_FAIL_CLOSED": "false"}
    proc = run_playbook(
        PLAYBOOKS / "audit_breaks.yml", env=env, inventory=INVENTORY, check=False,
        args=["-e", f"breaker={breaker}", "-e", f"marker_dir={markers}"],
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "going on unaudited" in proc.stdout + proc.stderr
    assert sorted(p.name for p in markers.iterdir()) == ["h1", "h2"]


def _non_utf8(tmp_path):
    """A playbook and an inventory under non-UTF-8 names, and a non-UTF-8 extra var used in task names."""
    base = os.fsencode(tmp_path)
    play_dir = base + b"/plays-\xff"
    os.mkdir(play_dir)
    playbook = play_dir + b"/site-\xfe.yml"
    with open(playbook, "wb") as f:
        f.write(
            b"- name: Play\n  hosts: h1,h2\n  gather_facts: false\n  tasks:\n"
            b"    - name: \"First {{ suffix }}\"\n      ansible.builtin.ping:\n"
            b"    - name: \"Second {{ suffix }}\"\n      ansible.builtin.debug:\n        msg: \"{{ suffix }}\"\n"
        )
    inventory = base + b"/inv-\xfd.yml"
    shutil.copyfile(INVENTORY, inventory)
    return playbook, inventory


def test_non_utf8_input_is_recorded_not_dropped(store_env, open_test_store, tmp_path):
    playbook, inventory = _non_utf8(tmp_path)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **store_env}
    cmd = [os.fsencode(VENV_BIN / "ansible-playbook"), playbook, b"-i", inventory, b"--limit", b"h1,h2,x\xfc",
           b"-e", b"suffix=caf\xe9-\xff"]
    proc = subprocess.run(cmd, env=env, capture_output=True, cwd=REPO, timeout=300, check=False)
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert proc.returncode == 0, out[-3000:]
    assert "Callback dispatch" not in out  # Ansible's warning for a callback that raised
    store = open_test_store()
    recs = records_data(store)
    jobs = [d for t, d in recs if t.startswith("LOCUS-JOB")]
    tasks = [d for t, d in recs if t.startswith("LOCUS-TASK")]
    assert [j["event"] for j in jobs] == ["start", "end"] and jobs[1]["status"] == "ok"
    # Bytes that are not UTF-8 are kept as \xNN escapes, the same way every time.
    assert jobs[0]["playbook"].endswith("/plays-\\xff/site-\\xfe.yml")
    assert jobs[0]["inventory"][0].endswith("/inv-\\xfd.yml")
    assert jobs[0]["limit"] == "h1,h2,x\\xfc"
    assert sorted((d["task"], d["host"]) for d in tasks) == [
        ("First caf\\xe9-\\xff", "h1"), ("First caf\\xe9-\\xff", "h2"),
        ("Second caf\\xe9-\\xff", "h1"), ("Second caf\\xe9-\\xff", "h2"),
    ]
    assert jobs[1]["task_records"] == 4
    assert store.verify()["ok"]


def test_a_swallowed_interrupt_keeps_the_run_recorded(store_env, open_test_store):
    env = {
        **store_env,
        "ANSIBLE_CALLBACK_PLUGINS": str(HERE / "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "locus.infra.audit,swallowed_interrupt",
        "LOCUS_TEST_INTERRUPT_AT": "Interrupted here",
    }
    proc = run_playbook(PLAYBOOKS / "interrupt_swallowed.yml", env=env, inventory=INVENTORY, check=False)
    assert "KeyboardInterrupt swallowed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, proc.stdout[-3000:]
    recs = records_data(open_test_store())
    tasks = [d for t, d in recs if t.startswith("LOCUS-TASK")]
    # Every result after the interrupt is recorded, on every host.
    assert sorted((d["task"], d["host"]) for d in tasks) == sorted(
        (t, h) for t in ("Before the interrupt", "Interrupted here", "After the interrupt") for h in ("h1", "h2")
    )
    jobs = [d for t, d in recs if t.startswith("LOCUS-JOB")]
    assert [j["event"] for j in jobs] == ["start", "end"]
    # Closed once, with the real outcome; the signal is on record.
    assert jobs[1]["status"] == "ok" and jobs[1]["signals"] == ["SIGINT"] and jobs[1]["task_records"] == 6
    assert "closed as ok" in proc.stdout
    assert open_test_store().verify()["ok"]


@pytest.mark.parametrize("url, pieces", [
    ("postgresql://u:p@ss/w rd@127.0.0.1:1/x", ["p@ss", "ss/w", "w rd"]),
    ("postgresql://u@127.0.0.1:1/x?password=QueryPw-77&sslmode=disable", ["QueryPw-77", "QueryPw"]),
    ("postgresql://:EmptyUserPw@127.0.0.1:1/x", ["EmptyUserPw"]),
    ("postgresql://u:pa?ss#w0rd@127.0.0.1:1/x", ["pa?ss", "ss#w0rd", "w0rd"]),
    ("postgresql://u:Sl/ash-pw@127.0.0.1:notaport/x", ["Sl/ash", "ash-pw"]),
])
def test_the_pg_password_never_shows_in_error_lines(url, pieces, tmp_path):
    proc = run_playbook(PLAYBOOKS / "sleeper.yml", env={"LOCUS_STATE_URL": url}, inventory=INVENTORY, check=False)
    cli = run_locus("audit", "verify", env={"LOCUS_STATE_URL": url, "LOCUS_STATE_DIR": str(tmp_path)})
    assert proc.returncode == 2 and cli.returncode != 0
    assert "refusing to run unaudited" in proc.stderr
    for output in (proc.stdout + proc.stderr, cli.stdout + cli.stderr):
        assert "127.0.0.1" in output or "LOCUS_STATE_URL" in output  # the line still says where
        for piece in pieces:
            assert piece not in output, output
