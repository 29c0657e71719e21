# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.agent_verify (documentation in plugins/modules/agent_verify.py)."""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils import _run
from ansible_collections.locus.infra.plugins.plugin_utils._action import LocusAction, LocusActionError
from ansible_collections.locus.infra.plugins.plugin_utils.agents import _agent, _agent_multi


class ActionModule(LocusAction):
    ARGUMENT_SPEC = {
        "question": {"type": "str", "required": True},
        "answer": {"type": "raw", "required": True},
        "context": {"type": "raw"},
        "role": {"type": "str", "default": "orchestrator", "choices": list(_agent.ROLES)},
        "answer_ref_tag": {"type": "str"},
        **_agent.COMMON_SPEC,
    }

    def run_locus(self, args, task_vars, store):
        options = {k: v for k, v in args.items() if k in _agent.COMMON_SPEC or k == "role"}
        try:
            return _agent_multi.run_verify(
                args["question"],
                args["answer"],
                store,
                context=args.get("context"),
                options=options,
                answer_ref_tag=args.get("answer_ref_tag"),
                check_mode=bool(self._task.check_mode),
                job=_run.run_id(),
            )
        except _agent.AgentError as exc:
            raise LocusActionError(str(exc), **exc.result) from None
