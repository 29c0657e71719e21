# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``locus`` command-line tool (console script of the project; controller only).

Private API of the collection (may change without notice).
Exit codes: 0 ok, 1 verification failed, 2 usage or environment error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ansible_collections.locus.infra.plugins.module_utils import _audit, _redact, _refs, _store
from ansible_collections.locus.infra.plugins.plugin_utils import _guard_cli

EXIT_OK, EXIT_VERIFY_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def _print(obj):
    print(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False))


def _load_head(path):
    try:
        with open(path, encoding="utf-8") as f:
            head = json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the exported head {path}: {exc}") from exc
    if not isinstance(head, dict) or "count" not in head or "head_hash" not in head:
        raise UsageError(f"{path} is not an exported head (it needs count and head_hash)")
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
    try:
        data = json.loads(args.data) if args.data else {}
    except ValueError as exc:
        raise UsageError(f"--data is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError("--data must be a JSON object")
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
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    rec = json.loads(line)
                    missing = {"position", "tag", "ts", "subject", "data", "prev_hash", "hash"} - set(rec)
                    if missing:
                        raise UsageError(f"{path}:{n}: not an exported record (missing {', '.join(sorted(missing))})")
                    records.append(rec)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the export {path}: {exc}") from exc
    return records


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
            print(json.dumps(_audit.public_record(rec), sort_keys=True, ensure_ascii=False))
        else:
            print(f"#{rec['position']:<6} {rec['tag']:<28} {rec['ts']}  {rec['subject']}")
            if args.tag:
                _print(_audit.public_record(rec))
    return EXIT_OK


def cmd_audit_head(args, store):
    head = store.head()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(head, f, indent=2, sort_keys=True)
            f.write("\n")
    _print(head)
    return EXIT_OK


def cmd_audit_export(args, store):
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        for rec in store.iter_records():
            out.write(json.dumps(rec, sort_keys=True, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return EXIT_OK


def build_parser():
    parser = argparse.ArgumentParser(
        prog="locus",
        description="locus.infra: REF-tags and the tamper-evident audit trail.",
        epilog="Exit codes: 0 ok, 1 verification failed, 2 usage or environment error.",
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
    g.add_argument("--tag", help="one record, in full")
    g.add_argument("--last", type=int, default=20, help="the last N records (default 20)")
    g.add_argument("--job", help="the records of one run (its JOB tag)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_audit_show)
    p = audit.add_parser("head", help="print the chain head as JSON (count, last tag, head hash)")
    p.add_argument("--output", "-o", help="also write it to this file")
    p.set_defaults(func=cmd_audit_head)
    p = audit.add_parser("export", help="export all records as JSONL")
    p.add_argument("--output", "-o", help="file to write (default: standard output)")
    p.set_defaults(func=cmd_audit_export)
    _guard_cli.add_commands(sub)  # approve, halt, resume, status
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    store = None
    try:
        store = _store.open_store(url=args.state_url, state_dir=args.state_dir)
        return args.func(args, store)
    except (UsageError, _store.StoreError, _refs.RefTagError) as exc:
        print(f"locus: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `locus audit export | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    finally:
        if store is not None:
            store.close()


if __name__ == "__main__":
    sys.exit(main())
