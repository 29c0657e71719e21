"""Consensus arithmetic: yes * D >= roster * N over the full roster, in integers."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils.agents import _agent, _agent_multi

# Yes votes needed for 2/3 of rosters of 1..7, worked out by hand: ceil(2n/3).
NEEDED_TWO_THIRDS = {1: 1, 2: 2, 3: 2, 4: 3, 5: 4, 6: 4, 7: 5}


@pytest.mark.parametrize("size", range(1, 8))
def test_every_vote_split_of_rosters_1_to_7(size):
    seen_pass = seen_fail = False
    for votes in itertools.product(("yes", "no", "abstain", "failed"), repeat=size):
        result = _agent_multi.tally(list(votes), size)
        yes = votes.count("yes")
        # an independent formulation: exact rational comparison
        assert result["passed"] is (Fraction(yes, size) >= Fraction(2, 3)), votes
        assert result["passed"] is (yes >= NEEDED_TWO_THIRDS[size]), votes
        assert result["needed"] == NEEDED_TWO_THIRDS[size]
        assert result["yes"] + result["no"] + result["abstain"] + result["failed"] == size
        seen_pass |= result["passed"]
        seen_fail |= not result["passed"]
    assert seen_pass and seen_fail


def test_abstentions_and_missing_members_count_against():
    # 2 of 3 yes passes; the same 2 yes with one abstention of 4 do not
    assert _agent_multi.tally(["yes", "yes", "no"], 3)["passed"] is True
    assert _agent_multi.tally(["yes", "yes", "abstain", "abstain"], 4)["passed"] is False
    # a member that never answered (not in the votes list) is a failure, not ignored
    partial = _agent_multi.tally(["yes", "yes"], 4)
    assert partial["failed"] == 2 and partial["passed"] is False


def test_float_trap_case_is_exact():
    # 0.6666666666666666 * 3 == 2.0 only by luck in floats; 6 of 9 must pass, 5 of 9 must not
    assert _agent_multi.tally(["yes"] * 6 + ["no"] * 3, 9)["passed"] is True
    assert _agent_multi.tally(["yes"] * 5 + ["no"] * 4, 9)["passed"] is False


def test_pending_votes_leave_the_decision_open_only_while_they_could_decide_it():
    assert _agent_multi.tally(["yes", "pending", "no"], 3)["passed"] is None
    assert _agent_multi.tally(["no", "no", "pending"], 3)["passed"] is False
    assert _agent_multi.tally(["yes", "yes", "pending"], 3)["passed"] is True


@pytest.mark.parametrize(
    ("threshold", "size", "yes", "passed"),
    [("1/2", 4, 2, True), ("1/2", 5, 2, False), ("3/4", 4, 3, True), ("3/4", 4, 2, False), ("1/1", 3, 3, True), ("1/1", 3, 2, False)],
)
def test_other_thresholds(threshold, size, yes, passed):
    num, den = _agent_multi.parse_threshold(threshold)
    assert _agent_multi.tally(["yes"] * yes + ["no"] * (size - yes), size, (num, den))["passed"] is passed


@pytest.mark.parametrize("bad", ["0/3", "4/3", "2/0", "two thirds", "", "1.5/2"])
def test_bad_thresholds_are_refused_naming_the_option(bad):
    with pytest.raises(_agent.AgentError, match="threshold"):
        _agent_multi.parse_threshold(bad)


def test_roster_errors_name_the_member():
    with pytest.raises(_agent.AgentError, match=r"roster\[1\].*unknown key"):
        _agent_multi._member({"role": "security", "colour": "red"}, {}, 1)
    with pytest.raises(_agent.AgentError, match=r"roster\[0\]"):
        _agent_multi._member({"backend": "embedded"}, {}, 0)
    name, options = _agent_multi._member({"role": "network", "backend": "ollama"}, {"backend": "embedded", "lane": "private"}, 2)
    assert name == "network#3" and options == {"role": "network", "backend": "ollama", "lane": "private"}
