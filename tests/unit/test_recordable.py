"""What the audit trail can hold: valid UTF-8 JSON, checked without recursion (_audit), and
redact()'s copy of non-JSON numbers."""

from __future__ import annotations

import json
import math

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils import _redact
from ansible_collections.locus.infra.plugins.plugin_utils.store import _audit


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": float("nan")}, r"data\.a is nan"),
        ({"a": {"b": [1, float("inf")]}}, r"data\.a\.b\[1\] is inf"),
        ({"a": "ok\udc80"}, r"data\.a is not valid UTF-8 text \(character 2: '\\udc80'\)"),
        ({"k\ud800": 1}, r"data: a key is not valid UTF-8"),
        ({"a": 1, 2: "b"}, r"keys that JSON cannot hold"),
        ({(1, 2): "tuple key"}, r"keys that JSON cannot hold"),
    ],
)
def test_check_value_names_the_place(value, message):
    with pytest.raises(_audit.NotRecordable, match=message):
        _audit.check_value(value)


def test_check_value_is_iterative_and_bounded():
    value = []
    for _level in range(200_000):  # far past the interpreter's recursion limit
        value = [value]
    with pytest.raises(_audit.NotRecordable, match="nested deeper than 64 levels"):
        _audit.check_value(value)
    ok = "leaf"
    for _level in range(_audit.MAX_DEPTH):
        ok = [ok]
    assert _audit.check_value(ok) is ok


def test_check_text_refuses_nul_only_outside_json():
    with pytest.raises(_audit.NotRecordable, match="the subject contains a NUL"):
        _audit.check_text("a\x00b", "the subject")
    assert _audit.check_value({"a\x00": "b\x00"}) == {"a\x00": "b\x00"}
    with pytest.raises(_audit.NotRecordable, match="must be a string"):
        _audit.check_text(b"bytes", "the subject")


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "1e309", "-1e400", "[1E999]"])
def test_strict_loads_refuses_what_json_does_not_have(text):
    with pytest.raises(ValueError, match="not valid JSON|out of range"):
        _audit.strict_loads(text)


def test_strict_loads_keeps_valid_json():
    text = '{"a": [1.5, -0.0, 1e308, 12345678901234567890], "b": "\\u00e9"}'
    assert _audit.strict_loads(text) == json.loads(text)


def test_public_record_keeps_invalid_stored_data_as_text():
    rec = {"position": 1, "data": '{"a":NaN}'}
    assert _audit.public_record(rec)["data"] == '{"a":NaN}'
    assert _audit.public_record({"position": 1, "data": '{"a":1}'})["data"] == {"a": 1}


def test_redact_records_nan_and_infinities_as_text():
    out = _redact.redact({"n": float("nan"), "i": [float("inf"), float("-inf")], "f": 1.5})
    assert out == {"n": "nan", "i": ["inf", "-inf"], "f": 1.5}
    assert _audit.check_value(out) is out and not any(isinstance(v, float) and not math.isfinite(v) for v in out["i"])
