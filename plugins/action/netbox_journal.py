# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for locus.infra.netbox_journal (documentation in plugins/modules/netbox_journal.py)."""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils import _redact, _run
from ansible_collections.locus.infra.plugins.plugin_utils._action import LocusAction, LocusActionError
from ansible_collections.locus.infra.plugins.plugin_utils.netbox._netbox import NetBoxError
from ansible_collections.locus.infra.plugins.plugin_utils.netbox._netbox_journal import (
    JOURNAL_ACTIONS,
    client_from_args,
    resolve_object,
    write_entry,
)


class ActionModule(LocusAction):
    ARGUMENT_SPEC = {
        "url": {"type": "str"},
        "token": {"type": "str", "no_log": True},
        "validate_certs": {"type": "bool"},
        "timeout": {"type": "float", "default": 30},
        "retries": {"type": "int", "default": 3},
        "comments": {"type": "str", "required": True},
        "kind": {"type": "str", "choices": ["info", "success", "warning", "danger"], "default": "info"},
        "object_type": {"type": "str"},
        "object_id": {"type": "int"},
        "object_name": {"type": "str"},
        "ref_action": {"type": "str", "choices": list(JOURNAL_ACTIONS), "default": "NOTIFY"},
    }
    MUTUALLY_EXCLUSIVE = (("object_id", "object_name"),)

    def run_locus(self, args, task_vars, store):
        try:
            client = client_from_args(args)
            obj = resolve_object(client, args, task_vars)
            entry = {"assigned_object_type": obj["type"], "assigned_object_id": obj["id"], "kind": args["kind"],
                     "comments": args["comments"]}
            result = {"changed": True, "object": obj}
            if self._task.check_mode:
                entry["comments"] = f"<REF-tag>: {args['comments']}"
                result.update(journal_entry=entry, msg=f"would add a journal entry to {obj['label']}")
            else:
                tag = store.record(args["ref_action"], f"NetBox journal entry on {obj['label']}", {
                    "netbox_url": client.url, "object_type": obj["type"], "object_id": obj["id"],
                    "object_name": obj["name"], "kind": args["kind"], "comments": _redact.redact(args["comments"]),
                    "job": _run.run_id()})
                try:
                    written = write_entry(client, obj, args["kind"], f"{tag}: {args['comments']}")
                except NetBoxError as exc:
                    raise LocusActionError(f"{tag} is recorded, but NetBox did not take the journal entry: {exc}",
                                           ref_tag=tag, object=obj) from None
                result.update(ref_tag=tag, journal_entry=written, msg=tag)
            if self._task.diff:
                result["diff"] = {"before": "", "after": f"{result['journal_entry']['comments']}\n",
                                  "after_header": f"NetBox journal of {obj['label']} ({args['kind']})"}
            return result
        except NetBoxError as exc:
            raise LocusActionError(str(exc)) from None
