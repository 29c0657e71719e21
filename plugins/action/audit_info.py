# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.audit_info (documentation in plugins/modules/audit_info.py)."""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils import _run
from ansible_collections.locus.infra.plugins.plugin_utils._action import LocusAction, LocusActionError
from ansible_collections.locus.infra.plugins.plugin_utils.store import _audit


class ActionModule(LocusAction):
    READ_ONLY = True  # reads the audit trail
    ARGUMENT_SPEC = {
        "tag": {"type": "str"},
        "job": {"type": "str"},
        "last": {"type": "int"},
    }
    MUTUALLY_EXCLUSIVE = (("tag", "job", "last"),)

    def run_locus(self, args, task_vars, store):
        if args.get("tag"):
            rec = store.get(args["tag"])
            if rec is None:
                raise LocusActionError(f"no audit record with tag {args['tag']}")
            records = [rec]
        elif args.get("last"):
            records = store.last(args["last"])
        else:
            job = args.get("job") or _run.run_id()
            records = store.job_records(job)
            if not records:
                raise LocusActionError(f"no audit records for job {job}")
        records = [_audit.public_record(r) for r in records]
        return {"records": records, "tags": [r["tag"] for r in records], "count": len(records)}
