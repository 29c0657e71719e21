# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.ops_report (documentation in plugins/modules/ops_report.py)."""

from __future__ import annotations

import os

from ansible_collections.locus.infra.plugins.plugin_utils import _run
from ansible_collections.locus.infra.plugins.plugin_utils._action import LocusAction, LocusActionError
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _policy
from ansible_collections.locus.infra.plugins.plugin_utils.ops import _ops_charts, _ops_health, _ops_report


class ActionModule(LocusAction):
    # Writes reports on the controller and records them; an operator needs them most during a halt.
    READ_ONLY = True
    ARGUMENT_SPEC = {
        "report": {"type": "str", "required": True, "choices": list(_ops_report.KINDS)},
        "data": {"type": "dict", "required": True},
        "dest": {"type": "path", "required": True},
        "policy": {"type": "path"},
        "cert_warn_days": {"type": "int", "default": 14},
    }

    def run_locus(self, args, task_vars, store):
        kind, dest = args["report"], args["dest"]
        try:
            policy = _policy.load_policy(args.get("policy"), task_vars)
        except _policy.PolicyError as exc:
            raise LocusActionError(str(exc)) from exc
        if os.path.exists(dest) and not os.path.isdir(dest):
            raise LocusActionError(f"dest {dest}: exists and is not a directory")

        def build(tag, backup_tags=None):
            if kind == "status_report":
                doc = _ops_report.status_document(args["data"], policy, tag, cert_warn_days=args["cert_warn_days"], backup_tags=backup_tags)
            else:
                doc = _ops_report.health_document(args["data"], policy, tag)
            base = os.path.join(dest, f"{kind}-{tag}")
            return doc, base + ".md", base + ".html"

        try:
            if self._task.check_mode:
                doc, md_path, html_path = build("LOCUS-ARTIFACT00000000-000")
                return {"changed": True, "state": doc["state"], "msg": f"would write the {kind} to {dest}"}
            os.makedirs(dest, mode=0o750, exist_ok=True)
            data = {"report": kind, "dest": dest, "formats": ["md", "html"], "job": _run.run_id(), "scope": args["data"].get("scope")}
            backups = args["data"].get("backups") if kind == "status_report" else None
            backup_checks = _ops_health.backup_checks(backups) if backups and backups.get("configured", True) else []
            with store.transaction() as tx:
                # Each VM's backup coverage is a VALIDATE record, as verify.yml writes it.
                backup_tags = {c["host"]: tx.record("VALIDATE", f"{c['check']} on {c['host']}: {'passed' if c['passed'] else 'FAILED'}", c)
                               for c in backup_checks}
                if backup_tags:
                    data["validate"] = sorted(backup_tags.values())
                tag = tx.record("ARTIFACT", f"{kind.replace('_', ' ')} in {dest}", data)
                doc, md_path, html_path = build(tag, backup_tags)
                # Files are written before the record commits: a failed write leaves neither.
                _ops_report.write_atomic(md_path, _ops_report.markdown(doc, os.path.basename(html_path)))
                _ops_report.write_atomic(html_path, _ops_report.html(doc))
        except (_ops_health.OpsError, _ops_charts.ChartError) as exc:
            raise LocusActionError(str(exc)) from exc
        except OSError as exc:
            raise LocusActionError(f"dest {dest}: cannot write the report: {exc.strerror or exc}") from exc
        charts = [b["name"] for s in doc["sections"] for b in s["blocks"] if b["type"] == "chart"]
        result = {"changed": True, "ref_tag": tag, "markdown": md_path, "html": html_path, "state": doc["state"], "charts": charts,
                  "msg": f"{kind} {tag}: {md_path} and {html_path}"}
        if backup_checks:
            result["backups"] = [dict(c, ref_tag=backup_tags[c["host"]]) for c in backup_checks]
        return result
