"""The state store on both engines: allocation, schema, append-only, errors."""

import json
import os
import sqlite3

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils.store import _refs, _store


def _seqs(tags):
    return [_refs.parse_tag(t)[2] for t in tags]


def test_tags_are_contiguous_per_action_and_records_chain(store):
    tags = [store.record("TASK", f"t{i}", {"i": i}) for i in range(5)]
    tags += store.record_many([("DEPLOY", "d1", {}), ("TASK", "t5", None), ("DEPLOY", "d2", {"x": [1, 2]})])
    task_tags = [t for t in tags if "-TASK" in t]
    deploy_tags = [t for t in tags if "-DEPLOY" in t]
    assert _seqs(task_tags) == [1, 2, 3, 4, 5, 6]
    assert _seqs(deploy_tags) == [1, 2]
    assert len(set(tags)) == len(tags)
    records = list(store.iter_records())
    assert [r["tag"] for r in records] == tags
    assert records[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(records, records[1:], strict=False))
    assert json.loads(records[-1]["data"]) == {"x": [1, 2]}
    assert store.verify()["ok"]
    assert store.head() == {"count": 8, "last_tag": tags[-1], "head_hash": records[-1]["hash"]}


def test_sequence_grows_past_999(store):
    day = _refs.utc_day()
    with store.transaction() as tx:
        tx.execute("INSERT INTO locus_ref_sequence (action, day, last_seq) VALUES ('NOTIFY', ?, 998)", (day,))
    # pretend 998 records exist: verification must then report the missing ones, allocation just goes on
    tags = [store.record("NOTIFY", "n", {}) for _i in range(3)]
    assert tags == [f"LOCUS-NOTIFY{day}-999", f"LOCUS-NOTIFY{day}-1000", f"LOCUS-NOTIFY{day}-1001"]
    result = store.verify()
    assert not result["ok"] and result["problem"]["kind"] == "sequence"


def test_reopening_applies_no_migration_twice(open_test_store):
    first = open_test_store()
    first.record("TASK", "x", {})
    assert first.schema_version() == _store.MIGRATIONS[-1][0]
    second = open_test_store()
    assert second.schema_version() == _store.MIGRATIONS[-1][0]
    rows = second.query("SELECT version FROM locus_schema ORDER BY version")
    assert [r[0] for r in rows] == [m[0] for m in _store.MIGRATIONS]
    assert second.verify()["count"] == 1


def test_a_newer_schema_is_refused(open_test_store):
    s = open_test_store()
    with s.transaction() as tx:
        tx.execute("INSERT INTO locus_schema (version, description, applied_at) VALUES (999, 'future', 'now')")
    with pytest.raises(_store.StoreError, match="schema version 999"):
        open_test_store()


def test_audit_table_is_append_only(store):
    store.record("TASK", "x", {})
    for sql in ("UPDATE locus_audit SET subject = 'y'", "DELETE FROM locus_audit"):
        with pytest.raises(_store.StoreError, match="append-only"), store.transaction() as tx:
            tx.execute(sql)
    assert store.verify()["ok"] and store.get(store.head()["last_tag"])["subject"] == "x"


def test_unknown_action_writes_nothing(store):
    store.record("TASK", "before", {})
    with pytest.raises(_refs.RefTagError, match="BOGUS"):
        store.record_many([("TASK", "ok", {}), ("BOGUS", "bad", {})])
    assert store.head()["count"] == 1


@pytest.mark.parametrize(
    ("subject", "data", "message"),
    [
        ("s", {"a": float("nan")}, r"data\.a is nan, which JSON cannot represent"),
        ("s", {"a": [float("-inf")]}, r"data\.a\[0\] is -inf"),
        ("s", {"a": "\udcff"}, r"data\.a is not valid UTF-8"),
        ("s", {"\ud800": 1}, r"data: a key is not valid UTF-8"),
        ("s", {1: "a", "b": 2}, r"data has keys that JSON cannot hold"),
        ("\udcff\udcfe", {}, r"the subject is not valid UTF-8"),
        ("a\x00b", {}, r"the subject contains a NUL"),
    ],
)
def test_what_is_not_valid_utf8_json_is_refused_on_both_engines(store, subject, data, message):
    """The trail holds only valid UTF-8 JSON, whichever writer (CLI, module, lookup, callback) calls."""
    store.record("TASK", "before", {})
    with pytest.raises(_store.RecordError, match=rf"cannot record a TASK record: {message}"):
        store.record_many([("TASK", "ok", {}), ("TASK", subject, data)])
    with pytest.raises(_store.RecordError), store.transaction() as tx:  # the memoised path (lookup)
        tx.record("TASK", subject, data)
    assert store.head()["count"] == 1 and store.verify()["ok"]


def test_deep_data_is_refused_without_exhausting_the_stack(store):
    deep = leaf = {}
    for _level in range(100_000):
        leaf["x"] = {}
        leaf = leaf["x"]
    with pytest.raises(_store.RecordError, match="nested deeper than 64 levels"):
        store.record("TASK", "deep", deep)
    # Valid input is not over-refused: NUL and any code point inside JSON strings, number keys.
    store.record_many([("TASK", "ok", {"a": [[{"b": "\x00 and \u202e \U0001f600"}]]}), ("TASK", "keys", {1: "x", 2.5: "y"})])
    assert [json.loads(r["data"]) for r in store.iter_records()] == [
        {"a": [[{"b": "\x00 and \u202e \U0001f600"}]]}, {"1": "x", "2.5": "y"}]
    assert store.verify()["ok"]


def test_empty_store_settings_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the default store would land here
    monkeypatch.delenv("LOCUS_STATE_URL", raising=False)
    with pytest.raises(_store.StoreError, match="the state directory is empty"):
        _store.open_store(state_dir="")
    monkeypatch.setenv("LOCUS_STATE_DIR", "")
    with pytest.raises(_store.StoreError, match="LOCUS_STATE_DIR is set but empty"):
        _store.open_store()
    monkeypatch.setenv("LOCUS_STATE_URL", " ")
    with pytest.raises(_store.StoreError, match="LOCUS_STATE_URL is set but empty"):
        _store.open_store(state_dir=str(tmp_path / "explicit"))
    assert list(tmp_path.iterdir()) == []


def test_failed_transaction_allocates_nothing(store):
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.record("TASK", "lost", {})
        raise RuntimeError("boom")
    assert store.record("TASK", "kept", {}).endswith("-001")
    assert store.verify()["ok"]


def test_memoised_value_is_computed_once(store):
    calls = []

    def compute(tx):
        calls.append(1)
        return tx.record("TASK", "memo", {})

    first = store.memoised("scope", "key", compute)
    second = store.memoised("scope", "key", compute)
    assert first == (second[0], False) and second[1] is True and len(calls) == 1
    assert store.memo("scope", "key") == first[0]  # the lookup's read-only check
    assert store.memo("scope", "other") is None and store.memo("other", "key") is None


def test_agent_answers_are_kept_once_per_request_key(store):
    assert store.agent_answer("k1") is None
    with store.transaction() as tx:
        tx.keep_agent_answer("k1", "embedded", "m", '{"output": 1}', "LOCUS-AGENT20260101-001")
    with store.transaction() as tx:  # a concurrent call that finished second does not replace it
        tx.keep_agent_answer("k1", "embedded", "m", '{"output": 2}', "LOCUS-AGENT20260101-002")
    assert store.agent_answer("k1") == ('{"output": 1}', "LOCUS-AGENT20260101-001")
    assert store.agent_answer("k2") is None


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("mysql://u:p@h/db", "not a PostgreSQL URL"),
        ("postgresql://u:p@h:99999/db", "Port out of range"),
        ("postgresql://u:p@/db", "names no host"),
        ("postgresql://u:p@h:5432/", "names no database"),
        ("not a url", "not a PostgreSQL URL"),
    ],
)
def test_malformed_state_url(url, fragment, tmp_path):
    with pytest.raises(_store.StoreError) as err:
        _store.open_store(url=url, state_dir=str(tmp_path))
    assert fragment in str(err.value)
    assert ":p@" not in str(err.value)  # the password is never echoed
    assert not os.path.exists(tmp_path / "locus.db")


def test_unreachable_postgresql_names_the_server_not_the_password(pg_cluster):
    from locus_testlib import free_port

    url = f"postgresql://locus:topsecret@127.0.0.1:{free_port()}/locus"
    with pytest.raises(_store.StoreError) as err:
        _store.PostgresStore(url, connect_timeout=3)
    msg = str(err.value)
    assert "cannot connect to the PostgreSQL store" in msg and "127.0.0.1" in msg
    assert "topsecret" not in msg


def test_unwritable_state_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(_store.StoreError, match="cannot create the state directory .*LOCUS_STATE_DIR"):
        _store.open_store(state_dir=str(blocker / "state"))
    assert blocker.read_text() == "not a directory"


def test_sqlite_is_wal_and_full_sync(tmp_path):
    s = _store.open_store(state_dir=str(tmp_path))
    try:
        assert s.query("PRAGMA journal_mode")[0][0] == "wal"
        assert s.query("PRAGMA synchronous")[0][0] == 2  # FULL
        assert oct(os.stat(s.path).st_mode & 0o777) == "0o600"
    finally:
        s.close()
    conn = sqlite3.connect(tmp_path / "locus.db")
    assert conn.execute("SELECT COUNT(*) FROM locus_audit").fetchone()[0] == 0
    conn.close()


def test_env_selects_the_engine(tmp_path, monkeypatch, pg_cluster):
    monkeypatch.setenv("LOCUS_STATE_DIR", str(tmp_path / "envdir"))
    monkeypatch.delenv("LOCUS_STATE_URL", raising=False)
    with _store.open_store() as s:
        assert s.engine == "sqlite" and s.path == str(tmp_path / "envdir" / "locus.db")
    monkeypatch.setenv("LOCUS_STATE_URL", pg_cluster.create_database())
    with _store.open_store() as s:
        assert s.engine == "postgresql"


def test_awx_with_sqlite_warns_and_postgresql_does_not(tmp_path, pg_cluster):
    with _store.open_store(state_dir=str(tmp_path)) as s:
        assert "die with the container" in _store.ephemeral_warning(s, {"awx_job_id": 42})
        assert _store.ephemeral_warning(s, {}) is None
    with _store.open_store(url=pg_cluster.create_database()) as s:
        assert _store.ephemeral_warning(s, {"awx_job_id": 42}) is None


def test_find_takes_every_value_literally_on_both_engines(store):
    """Store.find (audit_search of `locus mcp`): %, _ and backslashes are literals, subjects match
    case-insensitively, data fields by their canonical JSON, newest first."""
    a = store.record("TASK", r"copy 100%_done C:\temp", {"host": "web_1", "status": "failed"})
    b = store.record("TASK", "copy 100 done", {"host": "webX1", "status": "failed"})
    c = store.record("VALIDATE", "COPY 100%_DONE c:\\TEMP", {"host": "web_1", "status": "ok"})
    assert [r["tag"] for r in store.find(subject=r"100%_done c:\temp")] == [c, a]
    assert [r["tag"] for r in store.find(subject="100%")] == [c, a]
    assert [r["tag"] for r in store.find(fields={"host": "web_1"})] == [c, a]
    assert [r["tag"] for r in store.find(fields={"host": "web_1", "status": "failed"})] == [a]
    assert [r["tag"] for r in store.find(action="TASK", limit=1)] == [b]
    ts = store.get(b)["ts"]
    assert [r["tag"] for r in store.find(since=ts, until=ts)] == [b]


def test_ops_reads_on_both_engines(store):
    """The reads behind the status report and the heartbeat (ops_facts, ops_notify): records since a
    timestamp, the ledger per day and agent, used approvals, and find inside a write transaction."""
    first = store.record("TASK", "one", {"status": "ok"})
    since = store.get(first)["ts"]
    second = store.record("NOTIFY", "beat", {"heartbeat": "a_b", "state": "down"})
    store.record("NOTIFY", "beat", {"heartbeat": "aXb", "state": "up"})  # `_` is no wildcard
    assert [r[0] for r in store.audit_since(since)][:2] == [first, second]
    assert store.audit_since("9999") == []
    with store.transaction() as tx:
        assert [r["tag"] for r in tx.find(action="NOTIFY", fields={"heartbeat": "a_b"}, limit=1)] == [second]
        for rid, day, agent in (("r1", "20260101", "x"), ("r2", "20260102", "x"), ("r3", "20260102", "y"), ("r4", "20260102", "y")):
            tx.ledger_reserve(rid, day, "t", agent=agent, backend="embedded", model="m", lane="l", estimate_micro=100, estimate_tokens=5)
        tx.ledger_settle("r2", input_tokens=3, output_tokens=4, cost_micro=70, tag=first)
        tx.ledger_release("r4")
        tx.execute("INSERT INTO locus_guard_approval_used (ref, used_at, approval_tag, method) VALUES (?, ?, ?, ?)",
                   (first, "t", "LOCUS-APPROVAL20260101-001", "token"))
    rows = [tuple(int(v) if i > 1 else v for i, v in enumerate(r)) for r in store.ledger_per_day("20260102")]
    assert rows == [("20260102", "x", 70, 7, 1), ("20260102", "y", 100, 0, 1)]
    assert store.approvals_used() == {first}


def test_guard_reads_and_writes_on_both_engines(store):
    """The store methods behind the halt and single-use approvals (store/_guard_state.py), on the store
    and inside a write transaction: pages of HALT/APPROVAL records, the halt row, the approvals used."""
    other = store.record("TASK", "not a guard record", {"ref": "LOCUS-VALIDATE20260101-001"})
    approvals = [store.record("APPROVAL", f"approval {i}", {"event": "issued", "ref": f"LOCUS-VALIDATE20260101-00{i % 2 + 1}"})
                 for i in range(5)]
    assert store.audit_record(approvals[0])["subject"] == "approval 0" and store.audit_record("LOCUS-X20260101-001") is None
    page = store.guard_records("APPROVAL", limit=2)
    assert [r["tag"] for r in page] == approvals[:2:-1]  # newest first
    rest = store.guard_records("APPROVAL", before=page[-1]["position"], limit=10)
    assert [r["tag"] for r in rest] == approvals[2::-1]
    assert [r["tag"] for r in store.guard_records("APPROVAL", ref="LOCUS-VALIDATE20260101-001")] == approvals[::-2]
    assert store.guard_records("HALT") == [] and other not in [r["tag"] for r in store.guard_records("APPROVAL", limit=99)]
    assert store.halt_row() == (False, None, 0)
    with store.transaction() as tx:
        halt = tx.record("HALT", "halt", {"event": "halt"})
        tx.set_halt(halt, "why", "t", "ops", 1)
        assert tx.halt_row() == (True, halt, 1) and [r["tag"] for r in tx.guard_records("HALT")] == [halt]
        assert tx.approval_used("LOCUS-VALIDATE20260101-001") is None
        tx.mark_approval_used("LOCUS-VALIDATE20260101-001", "t1", approvals[4], "token")
        assert tx.approval_used("LOCUS-VALIDATE20260101-001") == ("t1", approvals[4])
        tx.clear_halt()
    assert store.halt_row() == (False, halt, 1) and store.approvals_used() == {"LOCUS-VALIDATE20260101-001"}
    # a second use of the same approval fails the whole transaction, even without the guard's check
    with pytest.raises(_store.StoreError), store.transaction() as tx:
        tx.set_halt(halt, "again", "t", "ops", 2)
        tx.mark_approval_used("LOCUS-VALIDATE20260101-001", "t2", approvals[3], "token")
    assert store.halt_row() == (False, halt, 1) and store.approval_used("LOCUS-VALIDATE20260101-001") == ("t1", approvals[4])
