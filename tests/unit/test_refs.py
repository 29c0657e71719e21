import datetime

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils.store import _refs


def test_format_pads_to_three_digits_and_grows_past_999():
    assert _refs.format_tag("TASK", "20250908", 1) == "LOCUS-TASK20250908-001"
    assert _refs.format_tag("TASK", "20250908", 999) == "LOCUS-TASK20250908-999"
    assert _refs.format_tag("TASK", "20250908", 1000) == "LOCUS-TASK20250908-1000"
    assert _refs.format_tag("task", "20250908", 12345) == "LOCUS-TASK20250908-12345"


@pytest.mark.parametrize("seq", [1, 42, 999, 1000, 1001, 123456])
def test_parse_is_the_inverse_of_format(seq):
    for action in _refs.ACTIONS:
        assert _refs.parse_tag(_refs.format_tag(action, "20261121", seq)) == (action, "20261121", seq)


@pytest.mark.parametrize(
    "tag",
    ["LOCUS-TASK20250908-01", "LOCUS-FOO20250908-001", "locus-task20250908-001", "LOCUS-TASK2025098-001",
     "LOCUS-TASK20250908-0001", "", None, "LOCUS-TASK20250908-001x"],
)
def test_parse_rejects_malformed(tag):
    with pytest.raises(_refs.RefTagError):
        _refs.parse_tag(tag)


def test_unknown_action_names_the_valid_ones():
    with pytest.raises(_refs.RefTagError) as err:
        _refs.check_action("DEPLOYY")
    assert "DEPLOYY" in str(err.value) and "VALIDATE" in str(err.value)


def test_sequence_must_be_positive():
    with pytest.raises(_refs.RefTagError):
        _refs.format_tag("TASK", "20250908", 0)


def test_day_is_utc():
    late_evening_west = datetime.datetime(2025, 9, 7, 23, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))
    assert _refs.utc_day(late_evening_west) == "20250908"
