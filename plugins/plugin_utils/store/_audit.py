# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hash chain of the audit trail and its verification.

Private API of the collection (may change without notice).

Each record's hash covers its tag, timestamp, subject, data and the previous record's
hash, so editing, deleting, inserting or reordering records breaks the chain at a place
:func:`verify` names. The chain alone proves internal consistency; an exported head (count,
last tag, head hash) kept elsewhere also proves the trail was not truncated or rewritten.
"""

from __future__ import annotations

import hashlib
import json
import math

from ansible_collections.locus.infra.plugins.plugin_utils.store import _refs

GENESIS = "0" * 64
# Deepest nesting of a record's data: far beyond any real record (redact() cuts at 20 levels),
# and low enough that no JSON library, ours or a reader's, runs out of stack on it.
MAX_DEPTH = 64


class NotRecordable(ValueError):
    """A subject or data that the trail cannot hold as valid UTF-8 JSON: the message says where."""


def check_text(text, where, allow_nul=False):
    """Raise :class:`NotRecordable` unless ``text`` is a string that UTF-8 and SQL can hold.

    NUL is refused in a plain column (PostgreSQL's text cannot hold it); inside JSON it is
    escaped, so data strings may contain it (``allow_nul``).
    """
    if not isinstance(text, str):
        raise NotRecordable(f"{where} must be a string, not {type(text).__name__}")
    if not allow_nul and "\x00" in text:
        raise NotRecordable(f"{where} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A lone surrogate: what Python makes of non-UTF-8 bytes (os.fsdecode, sys.argv).
        raise NotRecordable(
            f"{where} is not valid UTF-8 text (character {exc.start}: {text[exc.start:exc.end]!r})"
        ) from None
    return text


def check_value(value, where="data"):
    """Raise :class:`NotRecordable` unless ``value`` serialises to valid, UTF-8 JSON.

    Refused: lone surrogates (non-UTF-8 input) in strings and keys, NaN and infinities (not
    JSON), non-string keys, nesting deeper than :data:`MAX_DEPTH`. Iterative, so arbitrarily
    deep input cannot exhaust the stack. Other objects are recorded as their ``str()``.
    """
    stack = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise NotRecordable(f"{where} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            if not all(isinstance(key, str) for key in item):
                # JSON turns number keys into strings; other keys, or a mix, cannot be sorted.
                if not all(isinstance(key, (int, float)) for key in item):
                    raise NotRecordable(f"{path} has keys that JSON cannot hold (only strings or only numbers)")
                item = {str(key): sub for key, sub in item.items()}
            for key, sub in item.items():
                check_text(key, f"{path}: a key", allow_nul=True)
                stack.append((sub, f"{path}.{_path_part(key)}", depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(item))
        elif isinstance(item, str):
            check_text(item, path, allow_nul=True)
        elif isinstance(item, float) and not math.isfinite(item):
            raise NotRecordable(f"{path} is {item!r}, which JSON cannot represent")
        elif item is not None and not isinstance(item, (bool, int, float)):
            check_text(str(item), path, allow_nul=True)
    return value


def _path_part(key):
    """A key as shown in an error message: short, and printable whatever it holds."""
    return key[:40].encode("utf-8", "backslashreplace").decode("utf-8")


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def strict_loads(text):
    """``json.loads`` that refuses NaN, Infinity and numbers out of float range (ValueError)."""

    def parse_float(literal):
        number = float(literal)
        if not math.isfinite(number):
            raise ValueError(f"the number {literal[:40]} is out of range")
        return number

    return json.loads(text, parse_constant=_reject_constant, parse_float=parse_float)


def canonical_json(data):
    """The one serialisation that is stored and hashed (sorted keys, no spaces, UTF-8)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(tag, ts, subject, data_json, prev_hash):
    body = canonical_json([tag, ts, subject, data_json, prev_hash])
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def row_dict(row):
    position, tag, ts, subject, data, prev_hash, digest = row
    return {
        "position": position,
        "tag": tag,
        "ts": ts,
        "subject": subject,
        "data": data,
        "prev_hash": prev_hash,
        "hash": digest,
    }


def public_record(rec):
    """A record as shown to users: data parsed, chain fields kept."""
    out = dict(rec)
    try:
        # Strict: data that is not valid JSON (NaN in a record of an older version) stays the
        # stored string, so what is printed from a record is always valid JSON.
        out["data"] = strict_loads(rec["data"])
    except (TypeError, ValueError, RecursionError):
        pass
    return out


class Problem(dict):
    """The first thing found wrong: ``kind``, ``position``, ``tag`` and a ``message``."""

    def __init__(self, kind, position, tag, message):
        super().__init__(kind=kind, position=position, tag=tag, message=message)


def verify(records, sequences=None, head=None, find_hash=None):
    """Walk ``records`` (dicts in position order) and return a result dict.

    ``ok`` is False at the first problem, which is described under ``problem`` with its
    kind (``modified``, ``deleted``, ``inserted``, ``reordered``, ``sequence``,
    ``truncated``, ``rewritten``; the store adds ``tables``), the position and the tag. ``sequences`` (the allocated
    ``{(action, day): last_seq}``) adds the check that every allocated tag has its record;
    ``head`` (an exported chain head) adds the truncation and rewrite checks;
    ``find_hash(hash) -> position`` lets a chain break be told apart (reorder, insertion,
    deletion).
    """
    prev, expected_pos, count, last_tag = None, 1, 0, None
    prev_hash = GENESIS
    head_count = _head_count(head)
    head_seen = None  # hash of the record at the exported head's position
    seen_seq = {}
    problem = None
    for rec in records:
        pos, tag = rec["position"], rec["tag"]
        if record_hash(tag, rec["ts"], rec["subject"], rec["data"], rec["prev_hash"]) != rec["hash"]:
            problem = Problem("modified", pos, tag, f"record #{pos} ({tag}) was modified: its content does not match its hash")
            break
        if pos < expected_pos:  # before #1 (position 0 or below): outside the chain
            problem = Problem("inserted", pos, tag, f"record #{pos} ({tag}) lies outside the chain (before #{expected_pos}): "
                              "it was inserted by hand")
            break
        if rec["prev_hash"] != prev_hash:
            problem = _chain_break(rec, prev, expected_pos, find_hash)
            break
        if pos != expected_pos:
            problem = Problem(
                "deleted", expected_pos, tag,
                f"record #{expected_pos} is missing (positions jump from {expected_pos - 1} to {pos}, at {tag})",
            )
            break
        try:
            action, day, seq = _refs.parse_tag(tag)
        except _refs.RefTagError as exc:
            problem = Problem("modified", pos, tag, f"record #{pos}: {exc}")
            break
        want = seen_seq.get((action, day), 0) + 1
        if seq != want:
            problem = Problem(
                "sequence", pos, tag, f"record #{pos} ({tag}) breaks the {action} sequence of {day}: expected seq {want}"
            )
            break
        seen_seq[(action, day)] = seq
        if pos == head_count:
            head_seen = rec["hash"]
        prev, prev_hash, expected_pos, count, last_tag = rec, rec["hash"], pos + 1, count + 1, tag

    if problem is None and sequences:
        for (action, day), last_seq in sorted(sequences.items()):
            have = seen_seq.get((action, day), 0)
            if last_seq != have:
                missing = _refs.format_tag(action, day, have + 1)
                problem = Problem(
                    "deleted", None, missing,
                    f"{missing} was allocated (the {action} sequence of {day} is at {last_seq}) but has no record in the trail",
                )
                break

    if problem is None and head is not None:
        problem = _check_head(head, head_count, count, head_seen)

    result = {"ok": problem is None, "count": count, "last_tag": last_tag, "head_hash": prev_hash}
    if problem is not None:
        result["problem"] = problem
    return result


def _chain_break(rec, prev, expected_pos, find_hash):
    pos, tag = rec["position"], rec["tag"]
    if rec["prev_hash"] == GENESIS:
        return Problem("reordered", pos, tag, f"record #{pos} ({tag}) was the first record of the chain")
    found = find_hash(rec["prev_hash"]) if find_hash else None
    if found is not None and prev is not None and found == pos - 2:
        return Problem(
            "inserted", prev["position"], prev["tag"],
            f"record #{prev['position']} ({prev['tag']}) was inserted: record #{pos} ({tag}) was written right after #{found}",
        )
    if found is not None:
        return Problem(
            "reordered", pos, tag, f"record #{pos} ({tag}) is out of order: it was written right after record #{found}"
        )
    return Problem(
        "deleted", expected_pos, tag,
        f"the record before #{pos} ({tag}) is missing: #{pos} was chained to a record no longer in the trail",
    )


def _head_count(head):
    if head is None:
        return None
    try:
        return int(head["count"])
    except (KeyError, TypeError, ValueError, OverflowError):
        return -1


def _check_head(head, head_count, count, head_seen):
    if head_count is None or head_count < 0 or not isinstance(head.get("head_hash"), str):
        return Problem("rewritten", None, None, "the exported head is malformed: it needs count and head_hash")
    if head_count == 0:
        return None
    if count < head_count:
        return Problem(
            "truncated", count + 1, head.get("last_tag"),
            f"the trail was truncated: the exported head has {head_count} records up to {head.get('last_tag')}, "
            f"the trail has {count}",
        )
    if head_seen != head["head_hash"]:
        return Problem(
            "rewritten", head_count, head.get("last_tag"),
            f"the trail was rewritten: record #{head_count} no longer matches the exported head "
            f"({head.get('last_tag')})",
        )
    return None
