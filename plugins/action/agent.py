# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.agent (documentation in plugins/modules/agent.py)."""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils import _run
from ansible_collections.locus.infra.plugins.plugin_utils._action import LocusAction, LocusActionError
from ansible_collections.locus.infra.plugins.plugin_utils.agents import _agent


class ActionModule(LocusAction):
    ARGUMENT_SPEC = {
        "role": {"type": "str", "required": True, "choices": list(_agent.ROLES)},
        "task": {"type": "str", "required": True},
        "context": {"type": "raw"},
        "schema": {"type": "dict"},
        **_agent.COMMON_SPEC,
    }

    def run_locus(self, args, task_vars, store):
        options = {k: v for k, v in args.items() if k in _agent.OPTIONS}
        try:
            return _agent.run_agent(options, store, check_mode=bool(self._task.check_mode), job=_run.run_id())
        except _agent.AgentError as exc:
            raise LocusActionError(str(exc), **exc.result) from None
