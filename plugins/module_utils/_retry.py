# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retrying and waiting: the one policy every locus.infra client uses.

Private API of the collection (may change without notice). Pure standard library, so it
runs on targets (Proxmox modules) as well as on the controller (NetBox, LLM backends).

* :func:`retry` calls a function again only for errors the caller names retryable, at
  most ``retries`` times, with jittered exponential backoff (or longer when the server
  says ``retry-after``), and never past a wall-clock deadline.
* :func:`poll` waits on a wall clock (``time.monotonic``) for a check to report a result,
  with a growing interval, and stops at the first result; :func:`wait_for` is the same for
  waits that report what they saw last when the time runs out.

Both take ``sleep``, ``clock`` and ``rand`` as parameters, so tests drive them with a fake
clock instead of waiting.
"""

from __future__ import annotations

import random
import time


class Backoff:
    """Jittered, capped exponential backoff: retry ``n`` (0-based) waits a uniform share
    ``jitter`` of ``min(cap, base * factor ** n)`` seconds. The jitter spreads clients that
    failed together (many forks against one API) instead of retrying in lockstep."""

    def __init__(self, base=0.5, cap=8.0, factor=2.0, jitter=(0.5, 1.0)):
        if base <= 0 or cap < base or factor < 1 or not 0 <= jitter[0] <= jitter[1]:
            raise ValueError(f"invalid backoff: base={base} cap={cap} factor={factor} jitter={jitter}")
        self.base = base
        self.cap = cap
        self.factor = factor
        self.jitter = jitter

    def top(self, attempt):
        """The un-jittered delay of retry ``attempt`` (0-based)."""
        return min(self.cap, self.base * self.factor ** min(attempt, 64))

    def delay(self, attempt, rand=random.random):
        low, high = self.jitter
        return self.top(attempt) * (low + (high - low) * rand())


DEFAULT_BACKOFF = Backoff()


def retry(call, *, retries, retryable, backoff=DEFAULT_BACKOFF, deadline=None, hint=None, max_hint=60.0,
          on_retry=None, sleep=time.sleep, clock=time.monotonic, rand=random.random):
    """Return ``call()``, calling it again after a retryable exception.

    ``retryable(exc)`` decides which exceptions are worth another try; anything else is
    raised at once, and the last error is raised once ``retries`` retries are spent or the
    next wait would pass ``deadline`` seconds after the first call. ``hint(exc)`` may give
    the server's ``retry-after`` in seconds: the wait is then at least that (capped at
    ``max_hint``). ``on_retry(exc, attempt, delay)`` is told about each retry (1-based
    ``attempt``) before the wait, e.g. to count or report it.
    """
    retries = max(0, int(retries or 0))
    start = clock()
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if attempt >= retries or not retryable(exc):
                raise
            delay = backoff.delay(attempt, rand)
            wanted = hint(exc) if hint is not None else None
            if wanted is not None and wanted >= 0:
                delay = max(delay, min(float(wanted), max_hint))
            if deadline is not None and clock() - start + delay > deadline:
                raise
            attempt += 1
            if on_retry is not None:
                on_retry(exc, attempt, delay)
            sleep(delay)


class WaitTimeout(Exception):
    """:func:`poll` saw no result within its timeout."""

    def __init__(self, timeout, elapsed, polls):
        super().__init__(f"no result within {timeout:g} s ({polls} checks)")
        self.timeout = timeout
        self.elapsed = elapsed
        self.polls = polls


def poll(check, *, timeout, interval=0.25, factor=1.5, cap=5.0, wait_first=False, jitter=(1.0, 1.0), sleep=time.sleep,
         clock=time.monotonic, rand=random.random):
    """Call ``check()`` until it returns something other than None and return that.

    The first wait is ``interval`` seconds, each next one ``factor`` times longer up to
    ``cap``, and no wait reaches past ``timeout`` seconds from the start: then
    :class:`WaitTimeout` is raised (after one last check at the deadline). Exceptions from
    ``check`` propagate, so a check stops the wait at a failed terminal state by raising.
    ``wait_first`` waits one interval before the first check (a task just started is never
    already done). ``jitter`` scales each wait by a uniform factor in that range (many processes
    polling one lock then do not wake in lockstep).
    """
    start = clock()
    deadline = start + timeout
    polls = 0
    waited = wait_first
    if wait_first:
        sleep(min(interval, timeout))
    while True:
        value = check()
        polls += 1
        if value is not None:
            return value
        now = clock()
        if now >= deadline:
            raise WaitTimeout(timeout, now - start, polls)
        if waited:
            interval = min(interval * factor, cap)
        low, high = jitter
        sleep(min(interval * (low + (high - low) * rand()), deadline - now))
        waited = True


def wait_for(observe, done, *, timeout, **kwargs):
    """Call ``observe()`` until ``done(value)`` holds for the value it returned, waiting as
    :func:`poll` does (whose keyword arguments it takes) at most ``timeout`` seconds.

    Returns ``(True, value)``, or ``(False, the last value)`` once the time is up: for waits
    whose caller reports what it saw last (a probe's status, the sessions that did come up).
    A ``done`` that also holds for a failed terminal state stops the wait there.
    """
    last = []

    def check():
        last[:] = [observe()]
        return last if done(last[0]) else None

    try:
        return True, poll(check, timeout=timeout, **kwargs)[0]
    except WaitTimeout:
        return False, last[0]
