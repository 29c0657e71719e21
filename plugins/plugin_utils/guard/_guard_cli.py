# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guard's commands of the ``locus`` CLI: approve, halt, resume, status.

Private API of the collection (may change without notice).
Exit codes as for the rest of the CLI: 0 ok, 1 refused (the refusal is an APPROVAL record),
2 usage or environment error.
"""

from __future__ import annotations

import json
import os
import sys

from ansible_collections.locus.infra.plugins.plugin_utils.guard import _approval, _guard, _halt, _policy

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
VIA = "locus CLI"


def _err(msg):
    print(f"locus: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _policy_of(args):
    return _policy.load_policy(args.policy)


def _signer(args, policy):
    """The approver's SSH signer (policy mode ssh_keys): --key, $LOCUS_APPROVER_KEY, or the one approver key in ssh-agent."""
    key_file = args.key or os.environ.get(_approval.APPROVER_KEY_ENV)
    if key_file:
        return _approval.SshSigner(key_file, policy.approver_keys)
    signer = _approval.agent_signer(policy.approver_keys)
    if signer is None:
        raise _approval.ApprovalError(
            "the policy names approver keys (approval.mode: ssh_keys): give yours with --key FILE (a private key, or a "
            f"public key whose private half ssh-agent holds) or ${_approval.APPROVER_KEY_ENV}, or load it into ssh-agent")
    return signer


def cmd_approve(args, store):
    signer = None
    try:
        policy = _policy_of(args)
        lifetime = _policy.parse_lifetime(args.lifetime) if args.lifetime else None
        if policy.approval_mode == "ssh_keys":
            signer = _signer(args, policy)
            out = _guard.approve(store, policy, args.ref, signer=signer, via=VIA, lifetime=lifetime)
        else:
            key = _approval.load_key(state_dir=args.state_dir, create=True)
            out = _guard.approve(store, policy, args.ref, key=key, approver=_approval.os_user(), via=VIA, lifetime=lifetime)
    except _guard.Refused as exc:
        print(f"locus: refused: {exc.reason} (recorded as {exc.tag})", file=sys.stderr)
        return EXIT_REFUSED
    except ValueError as exc:
        return _err(f"--lifetime: {exc}")
    except (_policy.PolicyError, _approval.ApprovalError, _guard.GuardError) as exc:
        return _err(str(exc))
    finally:
        if signer is not None and signer.temporary:
            os.unlink(signer.key_file)
    decision = out.get("decision") or {}
    if out["kind"] == "resume":
        print(f"approving the resume from the emergency halt {out['ref']}")
    else:
        _show_change(out["ref"], decision, out.get("change") or {})
    print(f"approved by {out['approver']} until {out['expires']}, recorded as {out['approval_tag']}; "
          "the token (single use) is on the next line")
    print(out["token"])
    return EXIT_OK


def _show_change(ref, decision, change):
    """What the approver approves, from the change the decision records (its digest is checked)."""
    print(f"approving {ref}: {change.get('what')} @ {change.get('where')}")
    print(f"  decision {decision.get('decision')}, risk {decision.get('risk')} "
          f"(facts {decision.get('deterministic_risk')}, AI {decision.get('agent_risk') or '-'}), "
          f"{len(change.get('changes') or [])} change(s), digest {str(decision.get('digest'))[:16]}")
    for f in decision.get("findings") or []:
        ev = f.get("evidence") or {}
        where = ", ".join(str(ev[k]) for k in ("host", "file", "line") if ev.get(k))
        print(f"  [{f.get('risk')}] {f.get('rule')}: {f.get('message')}" + (f" ({where})" if where else ""))
    print("  the change (secrets masked):")
    for c in change.get("changes") or []:
        print(f"  - {c.get('host')}: {c.get('task') or '(planned change)'} [{c.get('action') or '?'}] {c.get('status')}")
        if c.get("args"):
            print(f"      args: {json.dumps(c['args'], sort_keys=True, ensure_ascii=False)[:2000]}")
        for f in c.get("files") or []:
            for line in f.get("diff") or []:
                print(f"      {line}")


def cmd_halt(args, store):
    try:
        out = _guard.halt(store, args.reason, _approval.os_user(), VIA)
    except _guard.GuardError as exc:
        return _err(str(exc))
    print(out["msg"])
    print(out["halt"]["tag"])
    return EXIT_OK


def cmd_resume(args, store):
    # From stdin at most one token's length (and a little): a huge stream is refused unread.
    token = sys.stdin.readline(_approval.MAX_TOKEN + 2).strip() if args.token == "-" else args.token  # noqa: S105 - "-" = stdin
    if not token:
        return _err("--token is empty")
    try:
        policy = _policy_of(args)
        key = _approval.load_key(state_dir=args.state_dir) if policy.approval_mode == "shared_key" else None
        out = _guard.resume(store, policy, key, token, _approval.os_user(), VIA)
    except _guard.Refused as exc:
        print(f"locus: refused: {exc.reason} (recorded as {exc.tag})", file=sys.stderr)
        return EXIT_REFUSED
    except (_policy.PolicyError, _approval.ApprovalError, _guard.GuardError) as exc:
        return _err(str(exc))
    print(out["msg"])
    return EXIT_OK


def cmd_status(args, store):
    state = _halt.halt_state(store)
    print(json.dumps(state, indent=2, sort_keys=True))
    return EXIT_OK


def add_commands(sub):
    """Register the guard's subcommands on the ``locus`` parser's subparsers."""
    p = sub.add_parser("approve", help="approve a guard decision or a halt: prints a single-use token on its last line")
    p.add_argument("ref", metavar="REF-TAG", help="a VALIDATE decision that needs approval, or the current HALT tag")
    p.add_argument("--policy", help="policy file (default: $LOCUS_POLICY, then the shipped default)")
    p.add_argument("--lifetime", help="shorter validity than the policy's approval.lifetime (e.g. 10m)")
    p.add_argument("--key", help="policy mode ssh_keys: your SSH key (private key file, or the .pub of a key in ssh-agent; "
                                 f"default ${_approval.APPROVER_KEY_ENV}, then the one approver key ssh-agent holds)")
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("halt", help="emergency halt: every plugin that changes anything or spends tokens refuses to run")
    p.add_argument("--reason", required=True, help="why (recorded with the HALT tag)")
    p.set_defaults(func=cmd_halt)

    p = sub.add_parser("resume", help="clear the emergency halt with a token from `locus approve <HALT tag>`")
    p.add_argument("--token", required=True, help="the approval token, or - to read it from standard input")
    p.add_argument("--policy", help="policy file (default: $LOCUS_POLICY, then the shipped default)")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="print the emergency halt state as JSON")
    p.set_defaults(func=cmd_status)
