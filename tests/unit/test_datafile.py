"""The one strict YAML loader for data files (plugin_utils._datafile), and its two users:
the guard policy and the agents' price table."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils import _datafile
from ansible_collections.locus.infra.plugins.plugin_utils.agents import _budget
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _policy


def write(tmp_path, text, name="data.yml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def test_a_mapping_is_loaded_with_the_digest_of_its_bytes(tmp_path):
    raw = "as_of: '2026-01-01'\nbackends:\n  ollama: {'*': {input: 0, output: 0}}\n"
    data, digest = _datafile.load(write(tmp_path, raw), "price table")
    assert data == {"as_of": "2026-01-01", "backends": {"ollama": {"*": {"input": 0, "output": 0}}}}
    assert digest == hashlib.sha256(raw.encode()).hexdigest()


@pytest.mark.parametrize(
    ("text", "line", "key", "first"),
    [
        ("a: 1\nb: 2\na: 3\n", 3, "a", 1),  # top level
        ("x:\n  m:\n    input: 1\n    output: 2\n    input: 3\n", 5, "input", 3),  # nested
        ("- {k: 1, k: 2}\n", 1, "k", 1),  # flow mapping inside a list
        ("1: a\n1: b\n", 2, 1, 1),  # non-string keys too
    ],
)
def test_duplicate_keys_are_refused_naming_file_and_both_lines(tmp_path, text, line, key, first):
    path = write(tmp_path, text)
    with pytest.raises(_datafile.DataFileError) as err:
        _datafile.loads(Path(path).read_bytes(), f"policy {path}")
    msg = str(err.value)
    assert msg.startswith(f"policy {path} line {line} column ")
    assert f"duplicate key {key!r} (first at line {first})" in msg
    assert "\n" not in msg


def test_merge_keys_may_be_overridden(tmp_path):
    data, _digest = _datafile.load(write(tmp_path, "base: &b {input: 1, output: 2}\nm:\n  <<: *b\n  output: 5\n"), "price table")
    assert data["m"] == {"input": 1, "output": 5}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"a: [\n", r" line 2 column 1: invalid YAML: expected the node content"),
        (b"a: \xff\xfe\n", r": not UTF-8 text \(invalid start byte at byte 3\)"),
        (b"- 1\n- 2\n", ": the top level must be a mapping, got list"),
        (b"", ": the top level must be a mapping, got NoneType"),
        (b"a: !!python/object:os.system ls\n", " line 1 column 4: invalid YAML: could not determine a constructor"),  # safe only
    ],
)
def test_bad_files_give_one_line_naming_the_file(tmp_path, raw, reason):
    path = write(tmp_path, raw)
    with pytest.raises(_datafile.DataFileError, match=rf"^price table {path}{reason}") as err:
        _datafile.load(path, "price table")
    assert "\n" not in str(err.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(_datafile.DataFileError, match=r"^policy .*/nowhere\.yml: cannot read it: No such file"):
        _datafile.load(str(tmp_path / "nowhere.yml"), "policy")


def test_the_price_table_refuses_a_duplicate_model(tmp_path):
    path = write(tmp_path, "as_of: '2026-01-01'\nbackends:\n  anthropic:\n    m: {input: 1, output: 1}\n"
                           "    m: {input: 0, output: 0}\n", "prices.yml")
    with pytest.raises(_budget.BudgetError, match=rf"^price table {path} line 5 column 5: invalid YAML: duplicate key 'm' \(first at line 4\)"):
        _budget.load_prices(path)


def test_the_policy_refuses_a_duplicate_key(tmp_path):
    path = write(tmp_path, "version: 1\nresources:\n  halt_threshold_percent: 95\n  halt_threshold_percent: 100\n", "policy.yml")
    with pytest.raises(_policy.PolicyError, match=rf"^policy {path} line 4 column 3: invalid YAML: duplicate key 'halt_threshold_percent'"):
        _policy.load_policy(path, environ={})


def test_the_shipped_data_files_load_strictly():
    _datafile.load(_policy.DEFAULT_POLICY, "policy")
    _datafile.load(_budget.DEFAULT_PRICES, "price table")
