# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.audit_verify (documentation in plugins/modules/audit_verify.py)."""

from __future__ import annotations

import json

from ansible_collections.locus.infra.plugins.plugin_utils._action import LocusAction, LocusActionError


class ActionModule(LocusAction):
    READ_ONLY = True  # reads the audit trail
    ARGUMENT_SPEC = {
        "head": {"type": "raw"},
        "fail_on_problem": {"type": "bool", "default": True},
    }

    def run_locus(self, args, task_vars, store):
        head = args.get("head")
        if isinstance(head, str):
            try:
                with open(head, encoding="utf-8") as f:
                    head = json.load(f)
            except (OSError, ValueError) as exc:
                raise LocusActionError(f"cannot read the exported head {args['head']}: {exc}") from exc
        elif head is not None and not isinstance(head, dict):
            raise LocusActionError("head must be a path to an exported head file or a dict with count and head_hash")
        result = store.verify(head=head)
        out = {"ok": result["ok"], "count": result["count"], "last_tag": result["last_tag"], "head_hash": result["head_hash"]}
        if result["ok"]:
            out["msg"] = f"audit trail verified: {result['count']} records, last {result['last_tag']}"
        else:
            out["problem"] = dict(result["problem"])
            out["msg"] = f"audit trail verification FAILED: {result['problem']['message']}"
            out["failed"] = args["fail_on_problem"]
        return out
