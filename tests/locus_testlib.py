"""Test helpers shared by the suites: a throw-away PostgreSQL cluster, real ansible-playbook
and locus CLI runners, a fake clock for waits.

:class:`PostgresCluster` starts a throw-away PostgreSQL 15 cluster (initdb + pg_ctl from
Debian's postgresql-15) in a temp dir on a free loopback port, once per test session.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PG_BIN = Path(os.environ.get("LOCUS_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeClock:
    """A clock whose sleep() advances it at once: waits (``_retry``'s ``sleep`` and ``clock``
    parameters) take no real time. ``sleeps`` lists every wait."""

    def __init__(self, now=100.0):
        self.now = now
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


class PostgresCluster:
    """A private PostgreSQL cluster owned by the ``postgres`` system user when run as root."""

    def __init__(self, base):
        self.base = Path(base)
        self.data = self.base / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *cmd, check=True):
        if os.geteuid() == 0:
            cmd = ("runuser", "-u", self.user, "--", *cmd)
        return subprocess.run(cmd, check=check, capture_output=True, text=True, cwd="/")

    def start(self):
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, self.user)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "locus", "--no-sync", "-E", "UTF8")
        opts = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.base} -c max_connections=100"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.base / "log"), "-w", "start")

    def stop(self):
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def url(self, dbname="postgres", password=None):
        auth = f"locus:{password}" if password else "locus"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self):
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def run_playbook(playbook, env=None, args=(), inventory=None, check=True, timeout=600):
    """Run a real ansible-playbook with this checkout's ansible.cfg; return the CompletedProcess."""
    full_env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **(env or {})}
    cmd = [str(VENV_BIN / "ansible-playbook"), str(playbook), *args]
    if inventory:
        cmd += ["-i", str(inventory)]
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"ansible-playbook failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def run_locus(*args, env=None, check=False):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(VENV_BIN / "locus"), *args], env=full_env, capture_output=True, text=True, check=check)


def records_data(store):
    return [(r["tag"], json.loads(r["data"])) for r in store.iter_records()]


def attack_store(store, *statements):
    """Run ``(sql, params)`` statements as an attacker with write access to the database: the
    append-only triggers are dropped first (they only stop honest mistakes)."""
    with store.transaction() as tx:
        if store.engine == "sqlite":
            tx.execute("DROP TRIGGER IF EXISTS locus_audit_no_update")
            tx.execute("DROP TRIGGER IF EXISTS locus_audit_no_delete")
        else:
            tx.execute("DROP TRIGGER IF EXISTS locus_audit_no_change ON locus_audit")
        for sql, params in statements:
            tx.execute(sql, params)


def raw_store_bytes(store):
    """Everything the store holds, as bytes: the SQLite files themselves, or every PostgreSQL row."""
    if store.engine == "sqlite":
        return b"".join(p.read_bytes() for p in Path(store.state_dir).iterdir() if p.is_file())
    rows = store.query("SELECT tag, ts, subject, data, prev_hash, hash FROM locus_audit")
    rows += store.query("SELECT scope, key, value, created FROM locus_memo")
    return json.dumps(rows).encode()
