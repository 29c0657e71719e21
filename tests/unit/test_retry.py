"""The one retry/wait policy (module_utils._retry), driven by a fake clock: no real waiting."""

from __future__ import annotations

import random

import pytest

from ansible_collections.locus.infra.plugins.module_utils._retry import DEFAULT_BACKOFF, Backoff, WaitTimeout, poll, retry, wait_for
from locus_testlib import FakeClock


class Transient(Exception):
    pass


class Fatal(Exception):
    pass


def flaky(failures, result="done", error=Transient):
    """A call that raises ``error`` ``failures`` times, then returns ``result``; counts calls."""
    calls = []

    def call():
        calls.append(1)
        if len(calls) <= failures:
            raise error(f"failure {len(calls)}")
        return result

    return call, calls


def test_retryable_errors_are_retried_until_success():
    clock = FakeClock()
    call, calls = flaky(3)
    seen = []
    out = retry(call, retries=5, retryable=lambda e: isinstance(e, Transient), sleep=clock.sleep, clock=clock,
                on_retry=lambda exc, attempt, delay: seen.append((str(exc), attempt, delay)))
    assert out == "done" and len(calls) == 4
    assert [s[:2] for s in seen] == [("failure 1", 1), ("failure 2", 2), ("failure 3", 3)]
    assert [s[2] for s in seen] == clock.sleeps  # each reported delay is the one slept


def test_other_errors_are_raised_at_once():
    clock = FakeClock()
    call, calls = flaky(3, error=Fatal)
    with pytest.raises(Fatal, match="failure 1"):
        retry(call, retries=5, retryable=lambda e: isinstance(e, Transient), sleep=clock.sleep, clock=clock)
    assert len(calls) == 1 and clock.sleeps == []


def test_retries_are_bounded_and_the_last_error_is_raised():
    clock = FakeClock()
    call, calls = flaky(100)
    with pytest.raises(Transient, match="failure 3"):
        retry(call, retries=2, retryable=lambda e: True, sleep=clock.sleep, clock=clock)
    assert len(calls) == 3 and len(clock.sleeps) == 2


@pytest.mark.parametrize("retries", [0, None, -1])
def test_no_retries_means_one_call(retries):
    clock = FakeClock()
    call, calls = flaky(1)
    with pytest.raises(Transient):
        retry(call, retries=retries, retryable=lambda e: True, sleep=clock.sleep, clock=clock)
    assert len(calls) == 1


def test_the_wall_clock_deadline_stops_retries_before_a_wait_would_pass_it():
    clock = FakeClock()
    call, calls = flaky(100)
    with pytest.raises(Transient):
        retry(call, retries=50, retryable=lambda e: True, deadline=10.0, sleep=clock.sleep, clock=clock,
              backoff=Backoff(1.0, 4.0, jitter=(1.0, 1.0)))
    assert clock.sleeps == [1.0, 2.0, 4.0]  # a further 4 s would end at 11 s > 10 s
    assert len(calls) == 4


def test_a_slow_call_counts_against_the_deadline():
    clock = FakeClock()
    calls = []

    def slow():
        calls.append(1)
        clock.now += 6.0  # the call itself takes 6 s of wall clock
        raise Transient("slow")

    with pytest.raises(Transient):
        retry(slow, retries=50, retryable=lambda e: True, deadline=10.0, sleep=clock.sleep, clock=clock,
              backoff=Backoff(1.0, 1.0, jitter=(1.0, 1.0)))
    assert len(calls) == 2  # 6 s + 1 s + 6 s = 13 s: no third call


def test_retry_after_hint_lengthens_the_wait_but_is_capped():
    clock = FakeClock()
    call, _calls = flaky(2, error=Transient)
    hints = iter([3.0, 500.0])
    retry(call, retries=5, retryable=lambda e: True, hint=lambda e: next(hints), max_hint=20.0,
          sleep=clock.sleep, clock=clock, backoff=Backoff(0.5, 8.0))
    assert clock.sleeps == [3.0, 20.0]


def test_a_hint_shorter_than_the_backoff_does_not_shorten_it():
    clock = FakeClock()
    call, _calls = flaky(1)
    retry(call, retries=5, retryable=lambda e: True, hint=lambda e: 0.0, sleep=clock.sleep, clock=clock,
          backoff=Backoff(2.0, 8.0, jitter=(1.0, 1.0)))
    assert clock.sleeps == [2.0]


def test_backoff_is_jittered_exponential_and_capped():
    rng = random.Random(7)
    for attempt in range(10):
        delays = [DEFAULT_BACKOFF.delay(attempt, rng.random) for _i in range(200)]
        top = min(8.0, 0.5 * 2 ** attempt)
        assert DEFAULT_BACKOFF.top(attempt) == top
        assert all(top / 2 <= d <= top for d in delays)
        assert len({round(d, 9) for d in delays}) > 100  # jittered, not a fixed schedule


def test_backoff_survives_huge_attempt_numbers():
    assert Backoff(0.5, 8.0).top(10_000) == 8.0


@pytest.mark.parametrize("kwargs", [{"base": 0}, {"base": 2, "cap": 1}, {"factor": 0.5}, {"jitter": (0.9, 0.1)}])
def test_invalid_backoff_is_refused(kwargs):
    with pytest.raises(ValueError, match="invalid backoff"):
        Backoff(**kwargs)


def test_poll_returns_the_first_result_and_grows_its_interval_up_to_the_cap():
    clock = FakeClock()
    answers = iter([None] * 8 + ["ready"])
    out = poll(lambda: next(answers), timeout=60, interval=1.0, factor=2.0, cap=4.0, sleep=clock.sleep, clock=clock)
    assert out == "ready"
    assert clock.sleeps == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]


def test_poll_times_out_on_the_wall_clock_after_a_last_check_at_the_deadline():
    clock = FakeClock()
    checks = []

    def check():
        checks.append(clock.now)
        return None

    with pytest.raises(WaitTimeout) as err:
        poll(check, timeout=10, interval=1.0, factor=2.0, cap=4.0, wait_first=True, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [1.0, 2.0, 4.0, 3.0]  # the last wait is cut at the deadline
    assert checks[-1] == 110.0 and err.value.elapsed == 10.0 and err.value.polls == len(checks) == 4
    assert "no result within 10 s (4 checks)" in str(err.value)


def test_poll_stops_when_the_check_raises():
    clock = FakeClock()
    answers = iter([None, None])

    def check():
        value = next(answers, "fail")
        if value == "fail":
            raise Fatal("task failed")
        return value

    with pytest.raises(Fatal, match="task failed"):
        poll(check, timeout=600, sleep=clock.sleep, clock=clock)
    assert len(clock.sleeps) == 2


def test_poll_jitter_spreads_the_waits_within_its_range():
    clock = FakeClock()
    rng = random.Random(3)
    answers = iter([None] * 200 + ["free"])
    poll(lambda: next(answers), timeout=10_000, interval=0.2, factor=1.0, cap=0.2, jitter=(0.5, 1.5),
         sleep=clock.sleep, clock=clock, rand=rng.random)
    assert len(clock.sleeps) == 200 and all(0.1 <= s <= 0.3 for s in clock.sleeps)
    assert len({round(s, 9) for s in clock.sleeps}) > 150  # not one fixed interval


def test_wait_for_returns_the_first_value_that_is_done():
    clock = FakeClock()
    seen = iter([{"status": 502}, {"status": 502}, {"status": 200}, {"status": 200}])
    done, value = wait_for(lambda: next(seen), lambda r: r["status"] == 200, timeout=30, interval=1.0, factor=2.0,
                           cap=4.0, sleep=clock.sleep, clock=clock)
    assert done and value == {"status": 200} and clock.sleeps == [1.0, 2.0]


def test_wait_for_reports_the_last_value_seen_when_the_time_is_up():
    clock = FakeClock()
    count = iter(range(100))
    done, value = wait_for(lambda: next(count), lambda n: n > 50, timeout=5, interval=1.0, factor=1.0, cap=1.0,
                           sleep=clock.sleep, clock=clock)
    assert not done and value == 5 and clock.now == 105.0  # checks at 0..5 s, the last one at the deadline


def test_wait_for_without_time_looks_once_and_handles_none_values():
    clock = FakeClock()
    assert wait_for(lambda: None, lambda v: v is None, timeout=0, sleep=clock.sleep, clock=clock) == (True, None)
    assert wait_for(lambda: None, lambda v: v is not None, timeout=0, sleep=clock.sleep, clock=clock) == (False, None)
    assert clock.sleeps == []


def test_wait_for_stops_at_a_failed_terminal_state():
    clock = FakeClock()
    states = iter(["activating", "activating", "failed", "active"])
    done, state = wait_for(lambda: next(states), lambda s: s in ("active", "failed"), timeout=300, interval=1.0,
                           sleep=clock.sleep, clock=clock)
    assert done and state == "failed" and len(clock.sleeps) == 2
