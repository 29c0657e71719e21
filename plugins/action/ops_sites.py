# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.ops_sites (documentation in plugins/modules/ops_sites.py)."""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils._action import LocusAction, LocusActionError
from ansible_collections.locus.infra.plugins.plugin_utils.ops import _ops_sites


class ActionModule(LocusAction):
    READ_ONLY = True  # asks sites over the network and changes nothing; operators need it during a halt
    ARGUMENT_SPEC = {
        "sites": {"type": "list", "elements": "dict", "required": True},
        "host": {"type": "str"},
        "timeout": {"type": "float", "default": 5.0},
    }

    def run_locus(self, args, task_vars, store):
        if not 0 < args["timeout"] <= 300:
            raise LocusActionError(f"timeout must be above 0 and at most 300 seconds, got {args['timeout']:g}")
        host = args.get("host") or task_vars.get("inventory_hostname") or ""
        try:
            answers = _ops_sites.probe_all(args["sites"], host, timeout=args["timeout"])
        except _ops_sites.SitesError as exc:
            raise LocusActionError(str(exc)) from exc
        down = [a["name"] for a in answers if a["status"] not in a["expected"]]
        return {"sites": answers, "msg": f"{len(answers)} site(s) asked, {len(down)} not as expected" + (f": {', '.join(down)}" if down else "")}
