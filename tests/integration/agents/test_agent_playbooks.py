"""The agent plugins in real ansible-playbook runs: module, lookup, handover, consensus, verify.

One playbook, three runs on one store: the first asks the embedded model, the second (same
questions) and a check-mode run spend no tokens at all.
"""

from __future__ import annotations

import json
from pathlib import Path

from agentlib import ledger

from ansible_collections.locus.infra.plugins.plugin_utils.store import _store
from locus_testlib import run_playbook

PLAYBOOK = Path(__file__).parent / "playbooks" / "agents_flow.yml"
KEY = "test-handover-key-0123456789abcdef"


def _result(proc):
    line = next(line for line in proc.stdout.splitlines() if '"RESULT ' in line)
    return json.loads(json.loads("{" + line.strip().rstrip(",") + "}")["msg"][len("RESULT ") :])


def test_agents_flow_then_a_repeat_and_a_check_run_spend_nothing(tmp_path):
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state"), "TEST_HANDOVER_KEY": KEY}
    first = _result(run_playbook(PLAYBOOK, env=env))
    store = _store.open_store(state_dir=env["LOCUS_STATE_DIR"])
    try:
        spent_rows = ledger(store)
        records = list(store.iter_records())
    finally:
        store.close()

    review, again = first["review"], first["again"]
    assert review["changed"] is False and review["cached"] is False and review["usage"]["output_tokens"] > 0
    assert review["output"]["risk"] in ("low", "medium", "high", "critical")
    assert again["cached"] is True and again["cached_from"] == review["ref_tag"] and again["usage"]["output_tokens"] == 0
    # the lookup was templated three times and asked once
    assert first["lookups"][0] == first["lookups"][1] == first["lookups"][2] and isinstance(first["lookups"][0], str)
    lookup_calls = [r for r in records if "-AGENT" in r["tag"] and json.loads(r["data"]).get("role") == "devops"
                    and "five words" in json.loads(r["data"]).get("task", "")]
    assert len(lookup_calls) == 1
    # handover: signed, verified, and a tampered copy rejected
    assert first["handover"]["ref_tag"].startswith("LOCUS-HANDOVER")
    assert first["received"]["valid"] is True and first["received"]["payload"]["source"]["ref_tag"] == review["ref_tag"]
    assert first["tampered"]["valid"] is False and first["tampered"]["msg"].startswith("handover rejected: envelope.")
    assert KEY not in json.dumps([dict(r) for r in records])
    # consensus over the full roster and a verification, each vote an audited agent call
    vote = first["vote"]
    assert vote["tally"]["roster"] == 3 and len(vote["votes"]) == 3
    assert vote["passed"] is (vote["tally"]["yes"] >= 2)
    assert all(v["ref_tag"].startswith("LOCUS-AGENT") for v in vote["votes"])
    assert first["check"]["verdict"] in ("agree", "disagree") and first["check"]["answer_ref_tag"] == review["ref_tag"]
    calls = len(spent_rows)
    assert calls == 6  # review, lookup, three votes, verification

    second = _result(run_playbook(PLAYBOOK, env=env))
    checked = _result(run_playbook(PLAYBOOK, env=env, args=["--check"]))
    store = _store.open_store(state_dir=env["LOCUS_STATE_DIR"])
    try:
        assert ledger(store) == spent_rows  # 0 tokens spent by the repeat and by check mode
    finally:
        store.close()
    for run in (second, checked):
        assert run["review"]["cached"] is True and run["review"]["output"] == review["output"]
        assert run["lookups"][0] == first["lookups"][0]
        assert [v["vote"] for v in run["vote"]["votes"]] == [v["vote"] for v in vote["votes"]]
        assert run["check"]["verdict"] == first["check"]["verdict"]
