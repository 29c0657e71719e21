"""Role inputs of the wrong type fail in the role's argument validation, naming the variable
(not inside a filter that happens to template it first)."""

from __future__ import annotations

import json

import pytest

from locus_testlib import run_playbook

PLAYBOOK = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: locus.infra.common
"""


@pytest.mark.parametrize(("value", "reason"), [
    ("bob", "is of type str and we were unable to convert to dict"),
    ({"name": "bob"}, "is of type dict and we were unable to convert to list"),
    ([{"name": "bob", "ssh_keys": ["ssh-ed25519 AAAA"]}, 3], "is of type int and we were unable to convert to dict"),
])
def test_common_admin_users_of_a_wrong_type_is_named(tmp_path, value, reason):
    playbook = tmp_path / "common.yml"
    playbook.write_text(PLAYBOOK)
    proc = run_playbook(playbook, env={"LOCUS_STATE_DIR": str(tmp_path / "state")}, check=False,
                        args=["--check", "-e", json.dumps({"common_admin_users": value})])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Validation of arguments failed" in out and "'common_admin_users'" in out and reason in out, out
    assert "combine" not in out
