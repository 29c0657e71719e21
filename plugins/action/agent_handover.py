# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.agent_handover (documentation in plugins/modules/agent_handover.py)."""

from __future__ import annotations

import os

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
                return _handover.create_recorded(store, args, key, bool(self._task.check_mode))
            return _handover.verify_recorded(store, args, key)
        except _handover.Rejected as exc:
            raise LocusActionError(f"handover rejected: {exc}", valid=False, ref_tag=exc.ref_tag) from None
        except _handover.HandoverError as exc:
            raise LocusActionError(f"handover: {exc}") from None
