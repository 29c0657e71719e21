"""The policy file: the shipped default, partial overrides, and bad files named by file, key and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard_rules, _policy


def _key(seed):
    """A syntactically real ssh-ed25519 public key (type name + 32 bytes) for policy tests."""
    import base64

    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes([seed]) * 32
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


ALICE, BOB = _key(1), _key(2)
RSA_AS_ED25519 = "ssh-ed25519 AAAAB3NzaC1yc2EBAQEBAQEBAQ=="  # the blob holds an ssh-rsa key


def _write(tmp_path, text, name="policy.yml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_shipped_default_is_valid_and_says_what_the_mission_says():
    policy = _policy.load_policy(environ={})
    assert policy.source == _policy.DEFAULT_POLICY
    assert policy.halt_threshold == 95.0
    assert policy.consensus == (2, 3)
    assert policy.human_from == "high" and policy.requirement("medium") == "none"
    assert policy.lifetime == 3600
    assert policy.data["lanes"]["default"] == "private"


def test_every_rule_has_a_risk_in_the_default_and_in_the_schema():
    policy = _policy.load_policy(environ={})
    schema = json.loads(Path(_policy.POLICY_SCHEMA).read_text())
    assert set(policy.data["risk"]["rules"]) == set(_guard_rules.RULES)
    assert set(schema["properties"]["risk"]["properties"]["rules"]["properties"]) == set(_guard_rules.RULES)


def test_a_partial_policy_is_merged_over_the_default(tmp_path):
    path = _write(tmp_path, "version: 1\nrisk:\n  approval:\n    medium: human\napproval:\n  mode: ssh_keys\n"
                            f"  approvers: [{{name: alice, key: '{ALICE} alice@laptop'}}]\n  lifetime: 15m\n")
    policy = _policy.load_policy(path, environ={})
    assert policy.requirement("medium") == "human" and policy.requirement("high") == "human"
    assert policy.human_from == "medium"
    assert policy.approvers == ["alice"] and policy.approver_keys == [("alice", f"{ALICE} alice@laptop")]
    assert policy.approval_mode == "ssh_keys" and _policy.load_policy(environ={}).approver_keys is None
    assert policy.lifetime == 900
    assert policy.halt_threshold == 95.0  # kept from the default
    assert len(policy.sha256) == 64


def test_the_policy_comes_from_option_then_variable_then_environment(tmp_path):
    a = _write(tmp_path, "version: 1\n", "a.yml")
    b = _write(tmp_path, "version: 1\n", "b.yml")
    c = _write(tmp_path, "version: 1\n", "c.yml")
    env = {"LOCUS_POLICY": c}
    assert _policy.resolve_path(a, {"locus_policy": b}, env) == a
    assert _policy.resolve_path(None, {"locus_policy": b}, env) == b
    assert _policy.resolve_path(None, {}, env) == c
    assert _policy.resolve_path(None, {}, {}) == _policy.DEFAULT_POLICY


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("version: 1\ncolour: blue\n", "colour", "unknown key"),
        ("version: 2\n", "version", "1 was expected"),
        ("risk:\n  approval:\n    high: human\n", "version", "missing"),
        ("version: 1\nrisk:\n  approval:\n    high: sometimes\n", "risk.approval.high", "'sometimes' is not one of"),
        ("version: 1\nrisk:\n  rules:\n    vm_delet: high\n", "risk.rules.vm_delet", "unknown key"),
        ("version: 1\nrisk:\n  rules:\n    vm_delete: severe\n", "risk.rules.vm_delete", "'severe' is not one of"),
        ("version: 1\nresources:\n  halt_threshold_percent: 150\n", "resources.halt_threshold_percent", "maximum of 100"),
        ("version: 1\nresources:\n  warn_threshold_percent: 97\n", "resources.warn_threshold_percent", "above halt_threshold_percent"),
        ("version: 1\nconsensus:\n  threshold: '3/2'\n", "consensus.threshold", "more than the whole roster"),
        ("version: 1\nconsensus:\n  threshold: 0.66\n", "consensus.threshold", "is not of type 'string'"),
        ("version: 1\nlanes:\n  default: enterprise\n  allowed: [private]\n", "lanes.default", "not in lanes.allowed"),
        ("version: 1\nlanes:\n  review: public\n", "lanes.review", "is not one of"),
        ("version: 1\napproval:\n  lifetime: 2x\n", "approval.lifetime", "is neither"),
        ("version: 1\napproval:\n  lifetime: 30d\n", "approval.lifetime", "outside 1 second .. 7 days"),
        ("version: 1\napproval:\n  approvers: alice\n", "approval.approvers", "is not of type 'array'"),
        ("version: 1\napproval:\n  approvers: [alice]\n", "approval.approvers[0]", "a bare name, which anyone can claim"),
        (f"version: 1\napproval:\n  mode: ssh_keys\n  approvers: [{{name: a, key: '{ALICE}'}}, {{name: b, key: '{ALICE} x'}}]\n",
         "approval.approvers[1].key", "already listed for a"),
        (f"version: 1\napproval:\n  approvers: [{{name: alice, key: '{ALICE}'}}]\n", "approval.mode", "set approval.mode: ssh_keys"),
        ("version: 1\napproval:\n  mode: ssh_keys\n", "approval.approvers", "needs at least one approver"),
        (f"version: 1\napproval:\n  mode: ssh_keys\n  approvers: [{{name: alice, key: '{RSA_AS_ED25519}'}}]\n",
         "approval.approvers[0].key", "does not hold a ssh-ed25519 key"),
        (f"version: 1\napproval:\n  mode: ssh_keys\n  approvers: [{{name: 'al ice', key: '{BOB}'}}]\n",
         "approval.approvers[0].name", "does not match"),
        ("version: 1\napproval:\n  mode: keys\n", "approval.mode", "is not one of"),
        ("version: 1\nbudgets:\n  daily_usd: -1\n", "budgets.daily_usd", "minimum of 0"),
        ("version: 1\nanalysers:\n  k3s_server_groups: servers\n", "analysers.k3s_server_groups", "is not of type 'array'"),
    ],
)
def test_bad_policies_are_rejected_with_file_key_and_reason(tmp_path, text, key, reason):
    path = _write(tmp_path, text)
    with pytest.raises(_policy.PolicyError) as info:
        _policy.load_policy(path, environ={})
    msg = str(info.value)
    assert msg.startswith(f"policy {path}: {key}: "), msg
    assert reason in msg, msg


def test_yaml_errors_and_duplicate_keys_name_the_line(tmp_path):
    path = _write(tmp_path, "version: 1\nrisk: [\n")
    with pytest.raises(_policy.PolicyError, match=rf"policy {path} line 3 column 1: invalid YAML"):
        _policy.load_policy(path, environ={})
    path = _write(tmp_path, "version: 1\napproval:\n  prompt: true\napproval:\n  prompt: false\n")
    with pytest.raises(_policy.PolicyError, match=r"line 4 column 1: invalid YAML: duplicate key 'approval' \(first at line 2\)"):
        _policy.load_policy(path, environ={})


def test_not_a_mapping_and_missing_file(tmp_path):
    path = _write(tmp_path, "- version: 1\n")
    with pytest.raises(_policy.PolicyError, match=r"the top level must be a mapping"):
        _policy.load_policy(path, environ={})
    with pytest.raises(_policy.PolicyError, match=r"nowhere\.yml: cannot read it: No such file"):
        _policy.load_policy(str(tmp_path / "nowhere.yml"), environ={})


def test_several_problems_are_all_reported(tmp_path):
    path = _write(tmp_path, "version: 1\ncolour: blue\nrisk:\n  approval:\n    low: maybe\n")
    with pytest.raises(_policy.PolicyError) as info:
        _policy.load_policy(path, environ={})
    assert len(str(info.value).splitlines()) == 2
    assert "colour: unknown key" in str(info.value) and "risk.approval.low:" in str(info.value)


def test_the_default_policy_file_is_plain_yaml_the_schema_accepts():
    data = yaml.safe_load(Path(_policy.DEFAULT_POLICY).read_text())
    _policy.validate(data, "default")  # raises on any problem
    assert _policy.review_schema()["required"] == ["risk", "findings", "recommendation"]
