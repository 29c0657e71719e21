"""Shared fixtures: the state store on both engines (SQLite and a throw-away PostgreSQL 15)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from locus_testlib import PostgresCluster  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster():
    # Not under pytest's tmp dir: that is private to root, and the cluster runs as postgres.
    base = tempfile.mkdtemp(prefix="locus-pg-")
    os.chmod(base, 0o755)  # noqa: S103 - the postgres user must reach its data dir
    cluster = PostgresCluster(base)
    try:
        cluster.start()
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"cannot start the throw-away PostgreSQL cluster: {exc.stderr or exc.stdout}")
    yield cluster
    cluster.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request):
    return request.param


@pytest.fixture
def store_env(engine, tmp_path, request):
    """Environment selecting a fresh, empty store of ``engine``."""
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state")}
    if engine == "postgresql":
        env["LOCUS_STATE_URL"] = request.getfixturevalue("pg_cluster").create_database()
    return env


@pytest.fixture
def open_test_store(store_env):
    """``open_test_store()`` opens the test's store (any number of times)."""
    from ansible_collections.locus.infra.plugins.plugin_utils.store import _store

    opened = []

    def _open():
        s = _store.open_store(url=store_env.get("LOCUS_STATE_URL"), state_dir=store_env["LOCUS_STATE_DIR"])
        opened.append(s)
        return s

    yield _open
    for s in opened:
        s.close()


@pytest.fixture
def store(open_test_store):
    return open_test_store()
