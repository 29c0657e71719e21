# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.agent_handover (documentation in plugins/modules/agent_handover.py)."""

from __future__ import annotations

import hashlib
import os

from ansible_collections.locus.infra.plugins.plugin_utils import _redact, _run
from ansible_collections.locus.infra.plugins.plugin_utils._action import LocusAction, LocusActionError
from ansible_collections.locus.infra.plugins.plugin_utils.agents import _handover


class ActionModule(LocusAction):
    ARGUMENT_SPEC = {
        "action": {"type": "str", "default": "create", "choices": ["create", "verify"]},
        "source": {"type": "str"},
        "target": {"type": "str"},
        "task": {"type": "str"},
        "context_refs": {"type": "list", "elements": "str", "default": []},
        "classification": {"type": "str", "default": "private", "choices": list(_handover.CLASSIFICATIONS)},
        "respond_within": {"type": "raw", "default": "4h"},
        "source_ref_tag": {"type": "str"},
        "envelope": {"type": "raw"},
        "expect_target": {"type": "str"},
        "hmac_key": {"type": "str", "no_log": True},
        "key_id": {"type": "str"},
    }
    REQUIRED_IF = (("action", "create", ("source", "target", "task")), ("action", "verify", ("envelope",)))

    def run_locus(self, args, task_vars, store):
        key = args.get("hmac_key") or os.environ.get(_handover.KEY_ENV)
        try:
            if args["action"] == "create":
                return self._create(args, key, store)
            return self._verify(args, key, store)
        except _handover.HandoverError as exc:
            raise LocusActionError(f"handover: {exc}") from None

    def _create(self, args, key, store):
        key_id = args.get("key_id") or _handover.default_keyid(key)
        seconds = _handover.parse_duration(args["respond_within"])
        job = _run.run_id()
        record = {
            "kind": "handover",
            "source": args["source"],
            "target": args["target"],
            "task": _redact.redact_text(args["task"]),
            "context_refs": args["context_refs"],
            "classification": args["classification"],
            "expected_response_s": seconds,
            "key_id": key_id,
            "check_mode": bool(self._task.check_mode),
            "job": job,
        }
        subject = f"handover {args['source']} -> {args['target']} ({args['classification']}): {args['task'][:80]}"
        with store.transaction() as tx:
            # The tag goes into the signed payload, so it is allocated first, in the same transaction.
            tag = tx.record("HANDOVER", subject, record)
            payload = _handover.build_payload(
                ref_tag=tag,
                source=args["source"],
                target=args["target"],
                task=args["task"],
                context_refs=args["context_refs"],
                classification=args["classification"],
                expected_response=seconds,
                source_ref_tag=args.get("source_ref_tag"),
                job=job,
            )
            envelope = _handover.sign(payload, key, key_id)
        return {"ref_tag": tag, "envelope": envelope, "payload": payload, "key_id": key_id}

    def _verify(self, args, key, store):
        keys = {args.get("key_id") or _handover.default_keyid(key): key}
        envelope = args["envelope"]
        digest = hashlib.sha256(str(envelope).encode()).hexdigest()
        try:
            payload = _handover.verify(envelope, keys)
            if args.get("expect_target") and payload["target"]["agent"] != args["expect_target"]:
                raise _handover.HandoverError(
                    f"payload.target.agent {payload['target']['agent']!r} is not {args['expect_target']!r}"
                )
        except _handover.HandoverError as exc:
            tag = store.record(
                "VALIDATE",
                "handover verification: rejected",
                {"kind": "handover_verify", "valid": False, "error": str(exc), "envelope_sha256": digest, "job": _run.run_id()},
            )
            raise LocusActionError(f"handover rejected: {exc}", valid=False, ref_tag=tag) from None
        tag = store.record(
            "VALIDATE",
            f"handover verification: {payload['ref_tag']} valid",
            {
                "kind": "handover_verify",
                "valid": True,
                "handover_ref_tag": payload["ref_tag"],
                "source": payload["source"]["agent"],
                "target": payload["target"]["agent"],
                "envelope_sha256": digest,
                "job": _run.run_id(),
            },
        )
        return {"valid": True, "payload": payload, "ref_tag": tag, "handover_ref_tag": payload["ref_tag"]}
