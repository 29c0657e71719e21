# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.guard (documentation in plugins/modules/guard.py)."""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils._action import LocusAction
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard_action


class ActionModule(LocusAction):
    # The guard is the halt machinery itself and only records decisions: it keeps working
    # while halted (and then denies every change).
    READ_ONLY = True
    ARGUMENT_SPEC = {
        "mode": {"type": "str", "default": "decide", "choices": ["decide", "halt_check", "status", "halt", "resume"]},
        # the guard checks the operation again (the CLI passes it too); the spec keeps the docs honest
        "operation": {"type": "dict", "options": {
            "what": {"type": "str", "required": True},
            "where": {"type": "raw"},
            "changes": {"type": "list", "elements": "dict"},
            "diff": {"type": "str"},
            "changes_file": {"type": "path"},
            "findings": {"type": "list", "elements": "dict"},
        }},
        "resources": {"type": "raw"},
        "review": {"type": "raw"},
        "policy": {"type": "path"},
        "approval_token": {"type": "str", "no_log": True},
        "approval_ref": {"type": "str"},
        "approval_prompt": {"type": "bool", "default": False},
        "approval_key": {"type": "str", "no_log": True},
        "reason": {"type": "str"},
        "enforce": {"type": "bool", "default": True},
        "review_context_chars": {"type": "int", "default": 6000},
        "accept_approval": {"type": "bool", "default": True},
    }
    REQUIRED_IF = (("mode", "decide", ("operation",)), ("mode", "halt", ("reason",)))

    def run_locus(self, args, task_vars, store):
        return _guard_action.run(args, task_vars, store, bool(self._task.check_mode))
