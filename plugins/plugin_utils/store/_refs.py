# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""REF-tag format: ``LOCUS-{ACTION}{YYYYMMDD}-{SEQ}``.

Private API of the collection (may change without notice).
SEQ counts per action per UTC day, is zero-padded to three digits and simply grows past
999 (``1000``, ``1001`` …) so that tags never repeat.
"""

from __future__ import annotations

import datetime
import re

ACTIONS = (
    "TASK",
    "JOB",
    "ARTIFACT",
    "AGENT",
    "RESOURCE",
    "NOTIFY",
    "RESEARCH",
    "DEPLOY",
    "VALIDATE",
    "HANDOVER",
    "HALT",
    "APPROVAL",
)

TAG_RE = re.compile(r"^LOCUS-(?P<action>[A-Z]+)(?P<day>\d{8})-(?P<seq>\d{3,})$")


class RefTagError(ValueError):
    """An unknown action or a malformed REF-tag."""


def check_action(action):
    """Return ``action`` upper-cased, or raise :class:`RefTagError` naming the valid ones."""
    if not isinstance(action, str) or action.upper() not in ACTIONS:
        raise RefTagError(f"unknown REF-tag action {action!r}; valid actions: {', '.join(ACTIONS)}")
    return action.upper()


def utc_day(now=None):
    """The UTC day as ``YYYYMMDD`` (the date part of a tag)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.astimezone(datetime.timezone.utc).strftime("%Y%m%d")


def format_tag(action, day, seq):
    if seq < 1:
        raise RefTagError(f"sequence must be >= 1, got {seq}")
    return f"LOCUS-{check_action(action)}{day}-{seq:03d}"


def parse_tag(tag):
    """Split a tag into ``(action, day, seq)``; raise :class:`RefTagError` if malformed."""
    m = TAG_RE.match(tag or "")
    if not m or m.group("action") not in ACTIONS:
        raise RefTagError(f"not a REF-tag: {tag!r} (expected LOCUS-<ACTION><YYYYMMDD>-<SEQ>)")
    seq = m.group("seq")
    if len(seq) > 3 and seq.startswith("0"):
        raise RefTagError(f"not a REF-tag: {tag!r} (sequence over 999 is never zero-padded)")
    return m.group("action"), m.group("day"), int(seq)
