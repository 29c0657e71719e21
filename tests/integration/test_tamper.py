"""Tampering with the audit trail is detected and named, on both engines.

Each test plays an attacker with write access to the database: the append-only triggers
are dropped first (they only stop honest mistakes), then records are edited, deleted,
inserted, reordered, truncated or the whole chain rewritten.
"""

import json

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils.store import _audit, _refs
from locus_testlib import attack_store, run_locus

_attack = attack_store


def _fill(store, n=6):
    return [store.record("TASK", f"task {i}", {"i": i}) for i in range(1, n + 1)]


def _row(store, position):
    return store.records(after=position - 1, limit=1)[0]


def test_untouched_trail_verifies(store):
    tags = _fill(store)
    result = store.verify(head=store.head())
    assert result == {"ok": True, "count": 6, "last_tag": tags[-1], "head_hash": store.head()["head_hash"]}


def test_edit_is_named(store):
    tags = _fill(store)
    _attack(store, ("UPDATE locus_audit SET data = ? WHERE position = 3", ('{"i":333}',)))
    problem = store.verify()["problem"]
    assert (problem["kind"], problem["position"], problem["tag"]) == ("modified", 3, tags[2])


def test_deletion_is_named(store):
    tags = _fill(store)
    _attack(store, ("DELETE FROM locus_audit WHERE position = 3", ()))
    problem = store.verify()["problem"]
    assert (problem["kind"], problem["position"]) == ("deleted", 3)
    assert problem["tag"] == tags[3]  # the record found where #3 should be chained


def test_deletion_with_renumbering_is_named(store):
    _fill(store)
    _attack(
        store,
        ("DELETE FROM locus_audit WHERE position = 3", ()),
        ("UPDATE locus_audit SET position = position - 1 WHERE position > 3", ()),
    )
    problem = store.verify()["problem"]
    assert (problem["kind"], problem["position"]) == ("deleted", 3)


def test_insertion_is_named(store):
    _fill(store)
    two = _row(store, 2)
    forged_tag = _refs.format_tag("HALT", _refs.utc_day(), 1)
    forged_data = _audit.canonical_json({"forged": True})
    forged_hash = _audit.record_hash(forged_tag, two["ts"], "forged", forged_data, two["hash"])
    rows = store.records(after=2)
    statements = [("DELETE FROM locus_audit WHERE position > 2", ())]
    statements.append((
        "INSERT INTO locus_audit (position, tag, ts, subject, data, prev_hash, hash) VALUES (3, ?, ?, 'forged', ?, ?, ?)",
        (forged_tag, two["ts"], forged_data, two["hash"], forged_hash),
    ))
    for r in rows:
        statements.append((
            "INSERT INTO locus_audit (position, tag, ts, subject, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (r["position"] + 1, r["tag"], r["ts"], r["subject"], r["data"], r["prev_hash"], r["hash"]),
        ))
    _attack(store, *statements)
    problem = store.verify()["problem"]
    assert (problem["kind"], problem["position"], problem["tag"]) == ("inserted", 3, forged_tag)


def test_reordering_is_named(store):
    tags = _fill(store)
    three, four = _row(store, 3), _row(store, 4)
    cols = ("tag", "ts", "subject", "data", "prev_hash", "hash")
    _attack(
        store,
        ("DELETE FROM locus_audit WHERE position IN (3, 4)", ()),
        ("INSERT INTO locus_audit (position, tag, ts, subject, data, prev_hash, hash) VALUES (3, ?, ?, ?, ?, ?, ?)",
         tuple(four[c] for c in cols)),
        ("INSERT INTO locus_audit (position, tag, ts, subject, data, prev_hash, hash) VALUES (4, ?, ?, ?, ?, ?, ?)",
         tuple(three[c] for c in cols)),
    )
    problem = store.verify()["problem"]
    assert (problem["kind"], problem["position"], problem["tag"]) == ("reordered", 3, tags[3])


def test_deleting_the_tail_is_caught_by_the_sequences(store):
    tags = _fill(store)
    _attack(store, ("DELETE FROM locus_audit WHERE position > 4", ()))
    problem = store.verify()["problem"]
    assert (problem["kind"], problem["tag"]) == ("deleted", tags[4])


def test_truncation_is_caught_by_the_exported_head(store):
    _fill(store)
    head = store.head()
    day = _refs.utc_day()
    # a careful attacker also winds the sequence back: only the exported head can tell
    _attack(
        store,
        ("DELETE FROM locus_audit WHERE position > 4", ()),
        ("UPDATE locus_ref_sequence SET last_seq = 4 WHERE action = 'TASK' AND day = ?", (day,)),
    )
    assert store.verify()["ok"]
    problem = store.verify(head=head)["problem"]
    assert (problem["kind"], problem["position"], problem["tag"]) == ("truncated", 5, head["last_tag"])


def test_consistent_rewrite_is_caught_by_the_exported_head(store):
    _fill(store)
    head = store.head()
    rows = list(store.iter_records())
    rows[1]["data"] = _audit.canonical_json({"i": 2, "rewritten": True})
    prev = _audit.GENESIS
    statements = [("DELETE FROM locus_audit", ())]
    for r in rows:
        r["prev_hash"] = prev
        r["hash"] = prev = _audit.record_hash(r["tag"], r["ts"], r["subject"], r["data"], prev)
        statements.append((
            "INSERT INTO locus_audit (position, tag, ts, subject, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (r["position"], r["tag"], r["ts"], r["subject"], r["data"], r["prev_hash"], r["hash"]),
        ))
    _attack(store, *statements)
    assert store.verify()["ok"]  # internally consistent
    problem = store.verify(head=head)["problem"]
    assert (problem["kind"], problem["position"]) == ("rewritten", 6)


def test_head_of_a_grown_trail_still_verifies(store):
    _fill(store, 3)
    head = store.head()
    _fill(store, 2)
    assert store.verify(head=head)["ok"]


@pytest.mark.parametrize("head", [{}, {"count": "x", "head_hash": "y"}, {"count": 1}, {"count": float("inf"), "head_hash": "y"}])
def test_malformed_head_is_reported(store, head):
    _fill(store, 2)
    assert store.verify(head=head)["problem"]["message"].startswith("the exported head is malformed")


def test_cli_verify_exit_codes_and_messages(store, store_env, tmp_path):
    tags = _fill(store)
    head_file = tmp_path / "head.json"
    ok = run_locus("audit", "head", "-o", str(head_file), env=store_env)
    assert ok.returncode == 0 and json.loads(head_file.read_text())["last_tag"] == tags[-1]
    assert run_locus("audit", "verify", "--head", str(head_file), env=store_env).returncode == 0
    export = tmp_path / "trail.jsonl"
    assert run_locus("audit", "export", "-o", str(export), env=store_env).returncode == 0
    assert run_locus("audit", "verify", "--file", str(export), "--head", str(head_file), env=store_env).returncode == 0

    _attack(store, ("UPDATE locus_audit SET subject = 'edited' WHERE position = 2", ()))
    bad = run_locus("audit", "verify", env=store_env)
    assert bad.returncode == 1
    assert f"record #2 ({tags[1]}) was modified" in bad.stdout

    lines = export.read_text().splitlines()
    del lines[1]
    export.write_text("\n".join(lines) + "\n")
    offline = run_locus("audit", "verify", "--file", str(export), env=store_env)
    assert offline.returncode == 1 and "FAILED (deleted)" in offline.stdout

    missing = run_locus("audit", "verify", "--head", str(tmp_path / "nope.json"), env=store_env)
    assert missing.returncode == 2 and "cannot read the exported head" in missing.stderr
