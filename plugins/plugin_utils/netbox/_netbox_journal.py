# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""NetBox journal entries for locus.infra.netbox_journal (private API)."""

from __future__ import annotations

import os

from ansible_collections.locus.infra.plugins.plugin_utils.netbox._netbox import NetBoxClient, NetBoxError

JOURNAL_ACTIONS = ("TASK", "JOB", "ARTIFACT", "AGENT", "RESOURCE", "NOTIFY", "RESEARCH", "DEPLOY", "VALIDATE",
                   "HANDOVER", "HALT", "APPROVAL")

# accepted spelling -> (content type, endpoint, words)
OBJECT_TYPES = {
    "virtual_machine": ("virtualization.virtualmachine", "virtualization/virtual-machines", "virtual machine"),
    "virtualization.virtualmachine": ("virtualization.virtualmachine", "virtualization/virtual-machines",
                                      "virtual machine"),
    "device": ("dcim.device", "dcim/devices", "device"),
    "dcim.device": ("dcim.device", "dcim/devices", "device"),
}

_TRUE = ("1", "true", "yes", "on")


def client_from_args(args):
    """A NetBoxClient from task arguments, falling back to NETBOX_API/NETBOX_URL, NETBOX_TOKEN, NETBOX_VALIDATE_CERTS."""
    url = args.get("url") or os.environ.get("NETBOX_API") or os.environ.get("NETBOX_URL")
    if not url:
        raise NetBoxError("no NetBox URL: set url or NETBOX_API")
    validate = args.get("validate_certs")
    if validate is None:
        validate = os.environ.get("NETBOX_VALIDATE_CERTS", "true").strip().lower() in _TRUE
    return NetBoxClient(url=url, token=args.get("token") or os.environ.get("NETBOX_TOKEN"), validate_certs=validate,
                        timeout=args.get("timeout") or 30, retries=args.get("retries", 3), max_workers=1,
                        user_agent="locus.infra.netbox_journal")


def resolve_object(client, args, task_vars):
    """Return {type, id, name, label} of the object, checked to exist in NetBox."""
    kind = args.get("object_type") or task_vars.get("netbox_type")
    if not kind:
        raise NetBoxError("no NetBox object: give object_type with object_id or object_name, or run against a host "
                          "of the locus.infra.netbox inventory (host vars netbox_type/netbox_id)")
    if kind not in OBJECT_TYPES:
        raise NetBoxError(f"object_type {kind!r} is not one of virtual_machine, device")
    content_type, endpoint, words = OBJECT_TYPES[kind]
    if args.get("object_name"):
        body = client.request("GET", endpoint, {"name": args["object_name"], "fields": "id,name", "limit": 2})
        found = body.get("results", []) if isinstance(body, dict) else []
        if len(found) != 1:
            raise NetBoxError(f"{endpoint}: {len(found) if found else 'no'} {words}s named {args['object_name']!r} "
                              "(need exactly one; use object_id)", endpoint)
        obj = found[0]
    else:
        oid = args.get("object_id")
        if oid is None:
            oid = task_vars.get("netbox_id")
        if oid is None:
            raise NetBoxError("no object_id and no host var netbox_id for this host")
        try:
            obj = client.request("GET", f"{endpoint}/{int(oid)}", {"fields": "id,name"})
        except NetBoxError as exc:
            if exc.status == 404:
                raise NetBoxError(f"{endpoint}: no {words} with id {oid} in NetBox at {client.url}", endpoint,
                                  404) from None
            raise
    return {"type": content_type, "id": obj["id"], "name": obj.get("name"),
            "label": f"{words} {obj.get('name')!r} (id {obj['id']})"}


def write_entry(client, obj, kind, comments):
    body = client.request("POST", "extras/journal-entries", payload={
        "assigned_object_type": obj["type"], "assigned_object_id": obj["id"], "kind": kind, "comments": comments})
    value = body.get("kind")
    return {"id": body.get("id"), "url": body.get("url"), "kind": value.get("value") if isinstance(value, dict)
            else value, "comments": body.get("comments"), "created": body.get("created")}
