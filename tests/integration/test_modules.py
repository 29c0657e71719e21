"""ref_tag, audit_info and audit_verify used from a real playbook."""

import json
import re
from pathlib import Path

from locus_testlib import records_data, run_playbook

HERE = Path(__file__).parent / "playbooks"


def _json_after(marker, stdout):
    line = next(line for line in stdout.splitlines() if f'"{marker} ' in line)
    return json.loads(line.split(f"{marker} ", 1)[1].rstrip('"').encode().decode("unicode_escape"))


def test_modules_in_a_playbook(store_env, open_test_store):
    proc = run_playbook(HERE / "modules.yml", env=store_env)
    result = _json_after("RESULT", proc.stdout)
    assert re.fullmatch(r"LOCUS-VALIDATE\d{8}-001", result["tag"])
    assert result["data"]["api_key"] == "********" and result["data"]["result"] == "fine"
    assert result["ok"] is True and result["count"] >= 3
    failures = _json_after("FAILURES", proc.stdout)
    assert "unknown REF-tag action 'DEPLOYY'" in failures["action"]
    assert "colour" in failures["option"] and "Unsupported parameters" in failures["option"]
    tags = [t for t, _data in records_data(open_test_store())]
    assert len([t for t in tags if "-VALIDATE" in t]) == 1  # the failing calls allocated nothing


def test_audit_verify_task_fails_on_a_tampered_trail(store_env, open_test_store, tmp_path):
    run_playbook(HERE / "modules.yml", env=store_env)
    store = open_test_store()
    with store.transaction() as tx:
        if store.engine == "sqlite":
            tx.execute("DROP TRIGGER locus_audit_no_update")
        else:
            tx.execute("DROP TRIGGER locus_audit_no_change ON locus_audit")
        tx.execute("UPDATE locus_audit SET subject = 'tampered' WHERE position = 2")
    playbook = tmp_path / "verify.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - name: Verify\n      locus.infra.audit_verify:\n"
    )
    proc = run_playbook(playbook, env=store_env, check=False)
    assert proc.returncode == 2
    assert "audit trail verification FAILED: record #2" in proc.stdout
