# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.ops_facts (documentation in plugins/modules/ops_facts.py)."""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils._action import LocusAction, LocusActionError
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _policy
from ansible_collections.locus.infra.plugins.plugin_utils.ops import _ops_facts, _ops_health


class ActionModule(LocusAction):
    READ_ONLY = True  # reads the store; operations must see the state during an emergency halt too
    ARGUMENT_SPEC = {
        "days": {"type": "int", "default": 7},
        "verify_chain": {"type": "bool", "default": True},
        "policy": {"type": "path"},
        "hosts": {"type": "dict"},
        "sites": {"type": "list", "elements": "dict", "default": []},
        "cert_warn_days": {"type": "int", "default": 14},
        "budget_warn_percent": {"type": "float"},
    }

    def run_locus(self, args, task_vars, store):
        if not 1 <= args["days"] <= 366:
            raise LocusActionError(f"days must be 1..366, got {args['days']}")
        try:
            policy = _policy.load_policy(args.get("policy"), task_vars)
        except _policy.PolicyError as exc:
            raise LocusActionError(str(exc)) from exc
        out = {
            "audit": _ops_facts.audit_activity(store, args["days"]),
            "chain": _ops_facts.chain(store) if args["verify_chain"] else None,
            "spend": _ops_facts.spend(store, policy, args["days"]),
            "guard": _ops_facts.guard_state(store),
            "last_review": _ops_facts.last_review(store),
            "policy": {**policy.summary(), "halt_threshold_percent": policy.halt_threshold, "warn_threshold_percent": policy.warn_threshold},
        }
        if args.get("hosts") is not None:
            warn = args["budget_warn_percent"] if args.get("budget_warn_percent") is not None else policy.warn_threshold
            try:
                out["findings"] = _ops_health.findings(args["hosts"], args["sites"], out, args["cert_warn_days"], warn)
                out["resources"] = _ops_health.host_resources(args["hosts"])
            except _ops_health.OpsError as exc:
                raise LocusActionError(str(exc)) from exc
        return out
