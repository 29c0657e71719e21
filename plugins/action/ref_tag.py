# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.ref_tag (documentation in plugins/modules/ref_tag.py)."""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils import _redact, _run
from ansible_collections.locus.infra.plugins.plugin_utils._action import LocusAction
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard
from ansible_collections.locus.infra.plugins.plugin_utils.store import _audit, _refs


class ActionModule(LocusAction):
    READ_ONLY = True  # bookkeeping: a REF-tag and its record are allowed while halted
    ARGUMENT_SPEC = {
        "action": {"type": "str", "required": True},
        "subject": {"type": "str"},
        "data": {"type": "dict", "default": {}},
    }

    def run_locus(self, args, task_vars, store):
        try:
            action = _refs.check_action(args["action"])
            _guard.check_generic_record(action, args["data"])
        except (_refs.RefTagError, _guard.GuardError) as exc:
            return {"failed": True, "msg": str(exc)}
        subject = args.get("subject") or f"{self._task.get_name()} on {task_vars.get('inventory_hostname', 'localhost')}"
        try:  # what the trail cannot hold as UTF-8 JSON is refused, not altered by redaction
            _audit.check_text(subject, "subject")
            _audit.check_value(args["data"], "data")
        except _audit.NotRecordable as exc:
            return {"failed": True, "msg": str(exc)}
        subject = _redact.redact_text(subject)
        data = _redact.redact(args["data"])
        data.setdefault("check_mode", bool(self._task.check_mode))
        data.setdefault("job", _run.run_id())
        tag = store.record(action, subject, data)
        return {"ref_tag": tag, "subject": subject, "msg": tag}
