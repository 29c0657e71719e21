# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``locus`` command-line tool (console script of the project; controller only).

Private API of the collection (may change without notice).
Exit codes: 0 ok, 1 verification failed (or, for approve/resume, refused), 2 usage or
environment error. Bad input of any kind is exit 2 with one line on standard error: the
arguments are checked once after parsing (:func:`_check_args`), JSON input is read strictly
(:func:`_loads`), and :func:`main` maps every error to that line; exit 1 comes only from a
verification that ran and failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback

from ansible_collections.locus.infra.plugins.plugin_utils import _redact
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _approval, _guard, _guard_cli, _policy
from ansible_collections.locus.infra.plugins.plugin_utils.mcp import _mcp
from ansible_collections.locus.infra.plugins.plugin_utils.store import _audit, _refs, _store

EXIT_OK, EXIT_VERIFY_FAILED, EXIT_USAGE = 0, 1, 2
MAX_HEAD = 1 << 20  # characters of an exported head file (one is ~200)
MAX_EXPORT_LINE = 64 << 20  # characters of one record in an export (records are far smaller; a bigger line is not one)
MAX_LAST = 1_000_000_000  # --last: beyond any trail, and within a 64-bit SQL integer
# Arguments that name files: any bytes a file name may hold are fine (os.fsencode), every
# other argument must be UTF-8 text.
PATH_ARGS = ("state_dir", "head", "file", "output", "policy")
_HASH_RE = re.compile(r"[0-9a-f]{64}")
_EXPORT_FIELDS = {"position": int, "tag": str, "ts": str, "subject": str, "data": str, "prev_hash": str, "hash": str}


class UsageError(Exception):
    pass


# Errors that mean bad input or a broken environment: one line, exit 2.
_USAGE_ERRORS = (
    UsageError, _store.StoreError, _refs.RefTagError, _audit.NotRecordable,
    _policy.PolicyError, _approval.ApprovalError, _guard.GuardError,
)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors raised (one line, exit 2 in :func:`main`) rather than printed."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _count(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= n <= MAX_LAST:
        raise argparse.ArgumentTypeError(f"{n} is out of range (0 to {MAX_LAST})")
    return n


def _ref_tag(text):
    try:
        _refs.parse_tag(text)
    except _refs.RefTagError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _check_args(args):
    """Every string argument, once: file names must be encodable, all else valid UTF-8 text."""
    for name, value in sorted(vars(args).items()):
        if not isinstance(value, str):
            continue
        option = f"--{name.replace('_', '-')}" if name not in ("action", "subject", "ref") else name
        if name in PATH_ARGS:
            try:
                os.fsencode(value)
            except UnicodeEncodeError:
                raise UsageError(f"{option}: {value!r} cannot be a file name (lone surrogate)") from None
            if "\x00" in value:
                raise UsageError(f"{option}: a file name cannot contain a NUL character")
            if not value.strip() and name != "state_dir":  # the store says why for --state-dir
                raise UsageError(f"{option} is empty: name a file")
        else:
            try:
                _audit.check_text(value, option)
            except _audit.NotRecordable as exc:
                raise UsageError(str(exc)) from None


def _loads(text, what):
    """Strict JSON: no NaN/Infinity, numbers in range, valid UTF-8, nesting within _audit.MAX_DEPTH."""
    try:
        value = _audit.strict_loads(text)
    except RecursionError:
        raise UsageError(f"{what} is nested deeper than {_audit.MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None
    try:
        _audit.check_value(value, what)
    except _audit.NotRecordable as exc:
        raise UsageError(str(exc)) from None
    return value


def _open(path, mode, what):
    try:
        return open(path, mode, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot {'read' if mode == 'r' else 'write'} {what} {path}: {exc.strerror}") from None


def _stdout_json(obj, **kwargs):
    """JSON for standard output: UTF-8 as is; on a terminal of another encoding, \\u escapes
    (the encoder's own backslash escapes, such as \\xe9, would not be valid JSON)."""
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    return json.dumps(obj, sort_keys=True, ensure_ascii=encoding != "utf8", allow_nan=False, **kwargs)


def _print(obj):
    print(_stdout_json(obj, indent=2))


def _load_head(path):
    with _open(path, "r", "the exported head") as f:
        try:
            text = f.read(MAX_HEAD + 1)
            if len(text) > MAX_HEAD:
                raise UsageError(f"the exported head {path} is not an exported head: longer than {MAX_HEAD} characters "
                                 f"(a head is at most a few hundred)")
            head = _loads(text, f"the exported head {path}")
        except UnicodeDecodeError as exc:
            raise UsageError(f"cannot read the exported head {path}: not UTF-8 ({exc.reason})") from None
    if not isinstance(head, dict) or "count" not in head or "head_hash" not in head:
        raise UsageError(f"{path} is not an exported head (it needs count and head_hash)")
    count, digest, last = head["count"], head["head_hash"], head.get("last_tag")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise UsageError(f"{path}: count must be a whole number >= 0, not {json.dumps(count)[:40]}")
    if not isinstance(digest, str) or not _HASH_RE.fullmatch(digest):
        raise UsageError(f"{path}: head_hash must be 64 hex digits")
    if last is not None and not isinstance(last, str):
        raise UsageError(f"{path}: last_tag must be a REF-tag or null")
    return head


def _verify_report(result):
    if result["ok"]:
        print(f"OK: {result['count']} records verified, last {result['last_tag']}, head {result['head_hash']}")
        return EXIT_OK
    problem = result["problem"]
    print(f"FAILED ({problem['kind']}): {problem['message']}")
    print(f"verified before the problem: {result['count']} records, last good {result['last_tag']}")
    return EXIT_VERIFY_FAILED


def cmd_tag(args, store):
    data = _loads(args.data, "--data") if args.data else {}
    if not isinstance(data, dict):
        raise UsageError("--data must be a JSON object")
    try:
        _guard.check_generic_record(args.action, data)
    except _guard.GuardError as exc:
        raise UsageError(str(exc)) from exc
    print(store.record(args.action, args.subject, _redact.redact({**data, "via": "cli"})))
    return EXIT_OK


def cmd_audit_verify(args, store):
    head = _load_head(args.head) if args.head else None
    if args.file:
        records = _read_export(args.file)
        by_hash = {r["hash"]: r["position"] for r in records}
        return _verify_report(_audit.verify(records, head=head, find_hash=by_hash.get))
    return _verify_report(store.verify(head=head))


def _read_export(path):
    records = []
    with _open(path, "r", "the export") as f:
        try:
            for n, line in enumerate(iter(lambda: f.readline(MAX_EXPORT_LINE + 1), ""), 1):
                if len(line) > MAX_EXPORT_LINE:
                    raise UsageError(f"{path}:{n}: not an exported record: longer than {MAX_EXPORT_LINE} characters "
                                     "(at most)")
                if line.strip():
                    records.append(_export_record(_loads(line, f"{path}:{n}"), f"{path}:{n}"))
        except UnicodeDecodeError as exc:
            raise UsageError(f"cannot read the export {path}: not UTF-8 ({exc.reason})") from None
    return records


def _export_record(rec, where):
    if not isinstance(rec, dict):
        raise UsageError(f"{where}: not an exported record (not a JSON object)")
    missing = set(_EXPORT_FIELDS) - set(rec)
    if missing:
        raise UsageError(f"{where}: not an exported record (missing {', '.join(sorted(missing))})")
    for field, kind in _EXPORT_FIELDS.items():
        if isinstance(rec[field], bool) or not isinstance(rec[field], kind):
            raise UsageError(f"{where}: not an exported record ({field} must be a {'number' if kind is int else 'string'})")
    return rec


def _shown(text):
    """One line for a terminal (:func:`_redact.printable`): recorded text cannot move the cursor,
    clear the screen or reorder the line (ESC, CR, U+202E)."""
    return _redact.printable(text)


class _Terminal:
    """Standard output or error for every command (the guard's too): what is written shows
    control and format characters escaped (:func:`_shown`); its own newlines stay."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._stream.write("\n".join(_shown(line) for line in text.split("\n")))

    def __getattr__(self, name):
        return getattr(self._stream, name)


def cmd_audit_show(args, store):
    if args.tag:
        rec = store.get(args.tag)
        if rec is None:
            raise UsageError(f"no audit record with tag {args.tag}")
        records = [rec]
    elif args.job:
        records = store.job_records(args.job)
    else:
        records = store.last(args.last)
    for rec in records:
        if args.json:
            print(_stdout_json(_audit.public_record(rec)))
        else:
            print(f"#{rec['position']:<6} {rec['tag']:<28} {rec['ts']}  {_shown(rec['subject'])}")  # one line, whatever it holds
            if args.tag:
                _print(_audit.public_record(rec))
    return EXIT_OK


def cmd_audit_head(args, store):
    head = store.head()
    if args.output:
        with _open(args.output, "w", "the head file") as f:
            _write(f, json.dumps(head, indent=2, sort_keys=True) + "\n", args.output)
    _print(head)
    return EXIT_OK


def cmd_audit_export(args, store):
    if not args.output:
        for rec in store.iter_records():
            sys.stdout.write(_stdout_json(rec) + "\n")
    else:
        with _open(args.output, "w", "the export") as f:
            for rec in store.iter_records():
                _write(f, json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n", args.output)
    result = store.verify()  # an export of a tampered store says so
    if not result["ok"]:
        print(f"locus: the exported trail does not verify ({result['problem']['kind']}): {result['problem']['message']}",
              file=sys.stderr)
        return EXIT_VERIFY_FAILED
    return EXIT_OK


def _write(f, text, path):
    try:
        f.write(text)
    except OSError as exc:  # e.g. the disk is full
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def build_parser():
    parser = _Parser(
        prog="locus",
        description="locus.infra: REF-tags and the tamper-evident audit trail.",
        epilog="Exit codes: 0 ok, 1 verification failed (approve/resume: refused), 2 usage or environment error.",
    )
    parser.add_argument("--state-url", help="PostgreSQL store URL (default: $LOCUS_STATE_URL)")
    parser.add_argument("--state-dir", help="SQLite store directory (default: $LOCUS_STATE_DIR or ~/.local/state/locus)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("tag", help="allocate a REF-tag and record it")
    p.add_argument("action", type=str.upper, choices=_refs.ACTIONS, metavar="ACTION", help=", ".join(_refs.ACTIONS))
    p.add_argument("subject")
    p.add_argument("--data", help="JSON object recorded with the tag")
    p.set_defaults(func=cmd_tag)

    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="audit_command", required=True)
    p = audit.add_parser("verify", help="verify the hash chain (exit 1 when it does not verify)")
    p.add_argument("--head", help="an exported head file: also detect truncation and rewriting")
    p.add_argument("--file", help="verify an export (JSONL) instead of the store")
    p.set_defaults(func=cmd_audit_verify)
    p = audit.add_parser("show", help="show records")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--tag", type=_ref_tag, help="one record, in full")
    g.add_argument("--last", type=_count, default=20, help="the last N records (default 20)")
    g.add_argument("--job", type=_ref_tag, help="the records of one run (its JOB tag)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_audit_show)
    p = audit.add_parser("head", help="print the chain head as JSON (count, last tag, head hash)")
    p.add_argument("--output", "-o", help="also write it to this file")
    p.set_defaults(func=cmd_audit_head)
    p = audit.add_parser("export", help="export all records as JSONL")
    p.add_argument("--output", "-o", help="file to write (default: standard output)")
    p.set_defaults(func=cmd_audit_export)
    _guard_cli.add_commands(sub)  # approve, halt, resume, status
    _mcp.add_commands(sub)  # mcp (the MCP SDK is imported only when it runs)
    return parser


def _error(message):
    """The one line of a failed command on standard error; exit 2."""
    line = " ".join(str(message).split()).encode("utf-8", "backslashreplace").decode("utf-8")
    print(f"locus: error: {line}", file=sys.stderr)
    return EXIT_USAGE


def main(argv=None):
    # What is printed is valid UTF-8 (the store holds nothing else); on a terminal in another
    # encoding, text gets backslash escapes instead of a crash, and JSON \u escapes (_stdout_json).
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    streams = sys.stdout, sys.stderr
    if sys.stdout is not None:
        sys.stdout = _Terminal(sys.stdout)
    if sys.stderr is not None:
        sys.stderr = _Terminal(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = streams


def _main(argv):
    store = None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help
            return exc.code
        _check_args(args)
        if sys.stdout is None:  # started with standard output closed (>&-)
            raise UsageError("standard output is closed")
        if sys.stdin is None:  # started with standard input closed (<&-): reading it finds its end
            sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        store = _store.open_store(url=args.state_url, state_dir=args.state_dir)
        code = args.func(args, store)
        sys.stdout.flush()  # here, so that a full disk or a closed pipe is reported like any error
        return code
    except _USAGE_ERRORS as exc:
        return _error(exc)
    except BrokenPipeError:  # e.g. `locus audit export | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except UnicodeError as exc:  # e.g. a token on standard input that is not UTF-8
        return _error(f"input is not valid UTF-8 text ({getattr(exc, 'reason', exc)})")
    except OSError as exc:
        return _error(f"{exc.filename}: {exc.strerror or exc}" if exc.filename else f"cannot write the output: {exc.strerror or exc}")
    except KeyboardInterrupt:
        print("locus: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line and never exit 1, which means "verification failed"
        if os.environ.get("LOCUS_DEBUG"):
            traceback.print_exc()
        return _error(f"internal error, please report it (LOCUS_DEBUG=1 shows where): {type(exc).__name__}: {exc}")
    finally:
        if store is not None:
            store.close()


if __name__ == "__main__":
    sys.exit(main())
