# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.ops_notify (documentation in plugins/modules/ops_notify.py)."""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils import _run
from ansible_collections.locus.infra.plugins.plugin_utils._action import LocusAction, LocusActionError
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _policy
from ansible_collections.locus.infra.plugins.plugin_utils.ops import _ops_health, _ops_notify


class ActionModule(LocusAction):
    READ_ONLY = True  # the heartbeat must keep reporting during an emergency halt
    ARGUMENT_SPEC = {
        "hosts": {"type": "dict", "required": True},
        "sites": {"type": "list", "elements": "dict", "default": []},
        "name": {"type": "str", "default": "heartbeat"},
        "policy": {"type": "path"},
        "webhook_url": {"type": "str", "no_log": True},
        "webhook_token": {"type": "str", "no_log": True},
        "webhook_topic": {"type": "str", "default": "locus"},
        "webhook_timeout": {"type": "int", "default": 10},
        "fail_on_down": {"type": "bool", "default": True},
    }

    def run_locus(self, args, task_vars, store):
        try:
            policy = _policy.load_policy(args.get("policy"), task_vars)
            checks = _ops_health.checks(args["hosts"], args["sites"], policy)
        except _policy.PolicyError as exc:
            raise LocusActionError(str(exc)) from exc
        except _ops_health.OpsError as exc:
            raise LocusActionError(str(exc)) from exc
        summary = _ops_health.summary(checks)
        webhook = None
        if args.get("webhook_url"):
            webhook = {"url": args["webhook_url"], "token": args.get("webhook_token"), "topic": args["webhook_topic"],
                       "timeout": args["webhook_timeout"]}
        try:
            out = _ops_notify.heartbeat(store, args["name"], summary, checks, _run.run_id(), webhook, bool(self._task.check_mode))
        except _ops_notify.NotifyError as exc:
            raise LocusActionError(str(exc)) from exc
        out["checks"] = checks
        note = out["notification"]
        sent = " - webhook sent" if note.get("sent") else (f" - webhook FAILED: {note.get('error')}" if note.get("wanted") and webhook else "")
        out["msg"] = f"{args['name']} {out['ref_tag'] or '(check mode)'}: {summary['state'].upper()}" + (
            f" ({'; '.join(summary['down'][:10])})" if summary["down"] else f", {summary['counts']['checks']} checks") + sent
        if args["fail_on_down"] and summary["state"] == "down":
            msg = out.pop("msg")
            raise LocusActionError(msg, **out)
        return out
