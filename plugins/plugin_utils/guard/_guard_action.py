# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The logic of the locus.infra.guard action plugin: mode routing, the approval prompt, the summary.

Private API of the collection (may change without notice).
"""

from __future__ import annotations

import os

from ansible.errors import AnsiblePromptInterrupt, AnsiblePromptNoninteractive
from ansible.utils.display import Display

from ansible_collections.locus.infra.plugins.plugin_utils import _run
from ansible_collections.locus.infra.plugins.plugin_utils._action import LocusActionError
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _approval, _guard, _halt, _policy

AWX_VARS = ("awx_job_id", "awx_workflow_job_id", "awx_user_name", "awx_job_template_name", "awx_execution_node")
TOKEN_VAR = "locus_approval_token"  # noqa: S105 - a variable name
display = Display()


def run(args, task_vars, store, check_mode):
    """The guard task's result for ``args["mode"]``; raises LocusActionError to fail the task."""
    mode = args["mode"]
    context = _context(task_vars)
    try:
        if mode in ("halt_check", "status"):
            state = _halt.halt_state(store)
            out = {"halted": state["halted"], "halt": state}
            if mode == "halt_check" and state["halted"]:
                raise LocusActionError(_halt.halt_message(state), halted=True, halt=state, halt_ref_tag=state["tag"],
                                       halt_reason=state["reason"])
            out["msg"] = _halt.halt_message(state) if state["halted"] else "locus.infra is not halted"
            return out
        if mode == "halt":
            return _guard.halt(store, args["reason"], context["user"], "locus.infra.guard", _extra(context), check_mode)
        policy = _policy.load_policy(args.get("policy"), task_vars)
        if mode == "resume":
            token = _token(args, task_vars)
            if not token:
                raise LocusActionError("mode=resume needs approval_token (from `locus approve <HALT tag>`)")
            return _guard.resume(store, policy, _key(args), token, context["user"], "locus.infra.guard",
                                 _extra(context), check_mode)
        return _decide(args, task_vars, store, policy, context, check_mode)
    except _policy.PolicyError as exc:
        raise LocusActionError(str(exc)) from exc
    except (_guard.GuardError, _approval.ApprovalError) as exc:
        raise LocusActionError(str(exc)) from exc
    except _guard.Refused as exc:
        raise LocusActionError(exc.reason, approval_tag=exc.tag, halted=True) from exc


def _decide(args, task_vars, store, policy, context, check_mode):
    approval = None
    if args["accept_approval"]:
        approval = {"token": _token(args, task_vars), "ref": args.get("approval_ref")}

    def decide(approval):
        return _guard.decide(
            store, policy, args["operation"], resources=args.get("resources"), reviews=args.get("review"),
            approval=approval, context=_extra(context), check_mode=check_mode,
            key_loader=lambda: _key(args), context_chars=args["review_context_chars"],
        )

    result = decide(approval)
    prompt_note = None
    if args["approval_prompt"] and args["accept_approval"] and result["decision"] == "needs_approval" \
            and not result.get("approval_refused"):
        answer, prompt_note = _ask(result, policy, context)
        if answer:
            result = decide({"ref": result["ref_tag"], "answer": answer})
    result["msg"] = _summary(result) + (f"\n  {prompt_note}" if prompt_note else "")
    if args["enforce"] and result["decision"] != "allow":
        raise LocusActionError(result["msg"], **result)
    return result


def _ask(result, policy, context):
    """``(typed text, note)``: a human's answer at the controller's terminal, or why none was asked.

    The prompt runs in ansible-playbook's main process, which reads only an interactive,
    foreground terminal (else AnsiblePromptNoninteractive): no variable can answer it.
    """
    if context["awx"].get("awx_job_id"):
        return None, "no prompt under AWX: the workflow's approval node approves there"
    if policy.approval_mode == "ssh_keys":
        return None, "no prompt: the policy names approver keys; approve with `locus approve` and a signed token"
    if not policy.data["approval"]["prompt"]:
        return None, f"no prompt: the policy {policy.source} says approval.prompt: false"
    text = (f"{_summary(result)}\nTo approve this exact change, type its REF-tag {result['ref_tag']} "
            "(anything else stops):")
    try:
        answer = display.prompt_until(text, private=False, complete_input=(b"\r", b"\n"))
    except (AnsiblePromptNoninteractive, AnsiblePromptInterrupt):
        return None, "no interactive terminal: nothing approved at a prompt"
    if isinstance(answer, BaseException):  # relayed from the main process to this worker
        return None, "no interactive terminal: nothing approved at a prompt"
    answer = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer or "")
    return answer.strip(), None if answer.strip() else "nothing typed at the prompt: nothing approved"


# -- helpers ----------------------------------------------------------------------------------
def _token(args, task_vars):
    return args.get("approval_token") or task_vars.get(TOKEN_VAR) or os.environ.get(_approval.TOKEN_ENV) or None


def _key(args):
    return _approval.load_key(key=args.get("approval_key"), state_dir=args.get("state_dir"))


def _context(task_vars):
    awx = {k: task_vars[k] for k in AWX_VARS if task_vars.get(k) not in (None, "")}
    # The account running the play, from its uid; AWX's user name is recorded with the AWX context.
    return {"job": _run.run_id(), "user": _approval.os_user(), "awx": awx}


def _extra(context):
    out = {"job": context["job"], "user": context["user"]}
    if context["awx"]:
        out["awx"] = context["awx"]
    return out


def _summary(result):
    head = f"guard {result['ref_tag']}: {result['decision']} (risk {result['risk']}"
    if result.get("agent_risk"):
        head += f"; facts {result['deterministic_risk']}, AI {result['agent_risk']}"
    head += f") - {'; '.join(result['reasons'])}"
    lines = [head]
    for f in result["findings"][:10]:
        ev = f.get("evidence") or {}
        where = ", ".join(str(ev[k]) for k in ("host", "file", "line") if ev.get(k))
        lines.append(f"  [{f['risk']}] {f['rule']}: {f['message']}" + (f" ({where})" if where else ""))
    if len(result["findings"]) > 10:
        lines.append(f"  ... and {len(result['findings']) - 10} more findings")
    if result.get("approval_refused"):
        lines.append(f"  approval refused: {result['approval_refused']['reason']}")
    if result.get("approve_command"):
        lines.append(f"  to approve: {result['approve_command']}, then re-run with the token (approval_token, "
                     f"{TOKEN_VAR} or ${_approval.TOKEN_ENV})")
    return "\n".join(lines)
