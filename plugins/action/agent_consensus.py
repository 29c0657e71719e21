# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.agent_consensus (documentation in plugins/modules/agent_consensus.py)."""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils import _run
from ansible_collections.locus.infra.plugins.plugin_utils._action import LocusAction, LocusActionError
from ansible_collections.locus.infra.plugins.plugin_utils.agents import _agent, _agent_multi


class ActionModule(LocusAction):
    ARGUMENT_SPEC = {
        "question": {"type": "str", "required": True},
        "roster": {"type": "list", "elements": "raw", "required": True},
        "context": {"type": "raw"},
        "threshold": {"type": "str", "default": "2/3"},
        **_agent.COMMON_SPEC,
    }

    def run_locus(self, args, task_vars, store):
        common = {k: v for k, v in args.items() if k in _agent.COMMON_SPEC}
        try:
            return _agent_multi.run_consensus(
                args["question"],
                args["roster"],
                store,
                context=args.get("context"),
                common=common,
                threshold=args["threshold"],
                check_mode=bool(self._task.check_mode),
                job=_run.run_id(),
            )
        except _agent.AgentError as exc:
            raise LocusActionError(str(exc), **exc.result) from None
