"""A test DOUBLE of AWX's REST API (/api/v2/) -- not AWX, which needs Kubernetes.

A threaded HTTP server on loopback for the ``awx.awx`` modules (24.6.1, their
``plugins/module_utils/controller_api.py``: token login, ``get_one`` lookups with ``name`` or
``or__id``/``or__name`` filters, ``count``/``results``/``next`` pages, POST/PATCH on the item's
``url``, association sub-lists, ``create_approval_template``, ``settings/all``). Field names,
defaults, status codes and validation messages follow AWX's sources (github:ansible/awx, read
through the ``fetch`` tool): ``awx/api/serializers.py`` (CredentialTypeSerializer,
CredentialSerializer, ProjectSerializer, InventorySerializer, InventorySourceSerializer.validate,
JobTemplateSerializer / JobOptionsSerializer.validate "Playbook not found for project.",
WorkflowJobTemplateNodeSerializer, WorkflowApprovalTemplateSerializer, "Cannot assign multiple
{} credentials."), ``awx/main/fields.py`` (CredentialTypeInjectorField: ``ANSIBLE_*`` and
``ENV_BLOCKLIST`` variables refused, templates rendered in a sandbox with StrictUndefined
against the defined inputs), ``awx/main/constants.py`` (ENV_BLOCKLIST), ``awx/main/conf.py``
(AWX_TASK_ENV in the ``jobs`` settings category), ``awx/api/urls/*.py`` (endpoints) and
``awx/main/models/projects.py`` (a project's ``playbook_files`` come from its SCM checkout).

Where AWX would clone a repository, the double "syncs" a project from a local directory
registered for its ``scm_url`` (``scm_sources``): the update succeeds with that tree's
playbooks and inventory files, or fails for an unknown URL. What the double does not model:
RBAC beyond one admin user, job launches, surveys, schedules, notifications, labels.
Every request is kept in ``requests``; the objects in ``objects[resource][id]``.
"""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import json
import os
import secrets
from urllib.parse import parse_qsl, urlsplit

import yaml
from doubles._loopback import LoopbackHTTPDouble

VERSION = "24.6.1"
ENCRYPTED = "$encrypted$"
ENV_BLOCKLIST = frozenset((
    "VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID", "INVENTORY_UPDATE_ID",
    "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES", "CALLBACK_QUEUE", "CALLBACK_CONNECTION",
    "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS", "AWX_HOST", "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH",
))
PAGE_SIZE = 25
INVENTORY_SOURCES = ("file", "constructed", "scm", "ec2", "gce", "azure_rm", "vmware", "satellite6", "openstack", "rhv",
                     "controller", "insights", "terraform", "openshift_virtualization")

# Each resource: the AWX ``type`` and the defaults of the fields its serializer returns.
COMMON = {"description": ""}
RESOURCES = {
    "organizations": ("organization", {"max_hosts": 0, "custom_virtualenv": None, "default_environment": None}),
    "credential_types": ("credential_type", {"kind": "cloud", "namespace": None, "managed": False, "inputs": {}, "injectors": {}}),
    "credentials": ("credential", {"organization": None, "credential_type": None, "managed": False, "inputs": {}, "kind": "",
                                   "cloud": False, "kubernetes": False}),
    "execution_environments": ("execution_environment", {"organization": None, "image": "", "managed": False,
                                                         "credential": None, "pull": ""}),
    "projects": ("project", {"local_path": "", "scm_type": "", "scm_url": "", "scm_branch": "", "scm_refspec": "",
                             "scm_clean": False, "scm_track_submodules": False, "scm_delete_on_update": False, "credential": None,
                             "timeout": 0, "scm_revision": "", "organization": None, "scm_update_on_launch": False,
                             "scm_update_cache_timeout": 0, "allow_override": False, "custom_virtualenv": None,
                             "default_environment": None, "signature_validation_credential": None, "status": "never updated",
                             "last_update_failed": False, "last_updated": None}),
    "project_updates": ("project_update", {"status": "pending", "failed": False, "scm_revision": "", "project": None}),
    "inventories": ("inventory", {"organization": None, "kind": "", "host_filter": None, "variables": "",
                                  "prevent_instance_group_fallback": False}),
    "inventory_sources": ("inventory_source", {"source": "", "source_path": "", "source_vars": "", "scm_branch": "",
                                               "credential": None, "enabled_var": "", "enabled_value": "", "host_filter": "",
                                               "overwrite": False, "overwrite_vars": False, "custom_virtualenv": None,
                                               "timeout": 0, "verbosity": 1, "limit": "", "inventory": None,
                                               "update_on_launch": False, "update_cache_timeout": 0, "source_project": None,
                                               "execution_environment": None, "status": "never updated"}),
    "job_templates": ("job_template", {
        "job_type": "run", "inventory": None, "project": None, "playbook": "", "scm_branch": "", "forks": 0, "limit": "",
        "verbosity": 0, "extra_vars": "", "job_tags": "", "force_handlers": False, "skip_tags": "", "start_at_task": "",
        "timeout": 0, "use_fact_cache": False, "organization": None, "execution_environment": None, "host_config_key": "",
        "ask_scm_branch_on_launch": False, "ask_diff_mode_on_launch": False, "ask_variables_on_launch": False,
        "ask_limit_on_launch": False, "ask_tags_on_launch": False, "ask_skip_tags_on_launch": False,
        "ask_job_type_on_launch": False, "ask_verbosity_on_launch": False, "ask_inventory_on_launch": False,
        "ask_credential_on_launch": False, "ask_execution_environment_on_launch": False, "ask_labels_on_launch": False,
        "ask_forks_on_launch": False, "ask_job_slice_count_on_launch": False, "ask_timeout_on_launch": False,
        "ask_instance_groups_on_launch": False, "survey_enabled": False, "become_enabled": False, "diff_mode": False,
        "allow_simultaneous": False, "custom_virtualenv": None, "job_slice_count": 1, "webhook_service": "",
        "webhook_credential": None, "prevent_instance_group_fallback": False, "status": "never updated"}),
    "workflow_job_templates": ("workflow_job_template", {
        "extra_vars": "", "organization": None, "survey_enabled": False, "allow_simultaneous": False,
        "ask_variables_on_launch": False, "inventory": None, "limit": None, "scm_branch": None, "ask_inventory_on_launch": False,
        "ask_scm_branch_on_launch": False, "ask_limit_on_launch": False, "webhook_service": "", "webhook_credential": None,
        "ask_labels_on_launch": False, "ask_skip_tags_on_launch": False, "ask_tags_on_launch": False, "skip_tags": None,
        "job_tags": None, "status": "never updated"}),
    "workflow_job_template_nodes": ("workflow_job_template_node", {
        "workflow_job_template": None, "unified_job_template": None, "identifier": "", "extra_data": {}, "inventory": None,
        "scm_branch": None, "job_type": None, "job_tags": None, "skip_tags": None, "limit": None, "diff_mode": None,
        "verbosity": None, "execution_environment": None, "forks": None, "job_slice_count": None, "timeout": None,
        "all_parents_must_converge": False}),
    "workflow_approval_templates": ("workflow_approval_template", {"timeout": 0}),
}
# (resource, field) -> the resource its id points at, for existence checks.
FOREIGN = {
    "organization": "organizations", "credential_type": "credential_types", "credential": "credentials", "project": "projects",
    "source_project": "projects", "inventory": "inventories", "execution_environment": "execution_environments",
    "default_environment": "execution_environments", "workflow_job_template": "workflow_job_templates",
    "webhook_credential": "credentials", "signature_validation_credential": "credentials",
}
# Names unique within these fields (AWX's unique_together).
UNIQUE = {
    "credential_types": ("name", "kind"), "credentials": ("organization", "name", "credential_type"),
    "projects": ("organization", "name"), "inventories": ("organization", "name"), "job_templates": ("organization", "name"),
    "workflow_job_templates": ("organization", "name"), "inventory_sources": ("inventory", "name"),
    "workflow_job_template_nodes": ("workflow_job_template", "identifier"), "organizations": ("name",),
    "execution_environments": ("name",),
}
ASSOCIATIONS = {
    ("job_templates", "credentials"): "credentials",
    ("workflow_job_template_nodes", "success_nodes"): "workflow_job_template_nodes",
    ("workflow_job_template_nodes", "failure_nodes"): "workflow_job_template_nodes",
    ("workflow_job_template_nodes", "always_nodes"): "workflow_job_template_nodes",
}
UNIFIED = ("projects", "inventory_sources", "job_templates", "workflow_job_templates", "workflow_approval_templates")


class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__(status)
        self.status, self.body = status, body


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _could_be_playbook(path):
    """AWX's could_be_playbook(), simplified: a YAML list whose first item is a play."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and (
        "hosts" in data[0] or "import_playbook" in data[0] or "ansible.builtin.import_playbook" in data[0])


class AWXDouble(LoopbackHTTPDouble):
    """``with AWXDouble(scm_sources={url: dir}) as awx:`` -- ``awx.url``, ``awx.username``, ``awx.password``."""

    def __init__(self, scm_sources=None, username="admin", password="s3cret-admin"):  # noqa: S107 - the double's own login
        super().__init__()
        self.scm_sources = dict(scm_sources or {})
        self.username, self.password = username, password
        self.tokens = {}
        self.objects = {name: {} for name in RESOURCES}
        self.links = {key: {} for key in ASSOCIATIONS}
        self.settings = {"AWX_TASK_ENV": {}, "ALLOW_JINJA_IN_EXTRA_VARS": "template", "DEFAULT_EXECUTION_ENVIRONMENT": None}
        self._next_id = 1
        # A fresh AWX: the Default organization and the managed credential types jobs need.
        self._create("organizations", {"name": "Default"})
        ssh_fields = [{"id": "username", "label": "Username", "type": "string"},
                      {"id": "password", "label": "Password", "type": "string", "secret": True},
                      {"id": "ssh_key_data", "label": "SSH Private Key", "type": "string", "secret": True, "multiline": True},
                      {"id": "ssh_key_unlock", "label": "Private Key Passphrase", "type": "string", "secret": True}]
        for name, kind, namespace, fields in (("Machine", "ssh", "ssh", ssh_fields + [
                {"id": "become_method", "label": "Privilege Escalation Method", "type": "string"},
                {"id": "become_username", "label": "Privilege Escalation Username", "type": "string"},
                {"id": "become_password", "label": "Privilege Escalation Password", "type": "string", "secret": True}]),
                ("Source Control", "scm", "scm", ssh_fields)):
            ident = self._id()  # managed types come from AWX's migrations, not the API
            obj = {**copy.deepcopy(COMMON), **copy.deepcopy(RESOURCES["credential_types"][1]), "type": "credential_type", "id": ident,
                   "name": name, "kind": kind, "namespace": namespace, "managed": True, "inputs": {"fields": fields},
                   "created": _now(), "modified": _now()}
            self.objects["credential_types"][ident] = obj

    # -- plumbing -------------------------------------------------------------------------------
    def start(self):
        super().start()
        # The base serves GET/HEAD/POST; the awx.awx modules also PATCH and DELETE.
        handler = self._server.RequestHandlerClass

        def with_body(h):
            length = int(h.headers.get("content-length") or 0)
            self._handle(h, h.rfile.read(length) if length else b"")

        handler.do_PATCH = with_body
        handler.do_DELETE = with_body
        return self

    def _send(self, handler, status, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("X-API-Product-Name", "AWX")
        handler.send_header("X-API-Product-Version", VERSION)
        handler.end_headers()
        if data and handler.command != "HEAD":
            handler.wfile.write(data)

    def _handle(self, handler, raw):
        headers, body = self._record(handler, raw)
        split = urlsplit(handler.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        try:
            with self._lock:
                status, out = self._route(handler.command, split.path, query, body, headers)
        except ApiError as exc:
            status, out = exc.status, exc.body
        self._send(handler, status, out)

    def _auth(self, method, path, headers):
        """Basic auth (the login that creates a token, and the logout that deletes it) or a Bearer token."""
        auth = headers.get("authorization", "")
        if auth.startswith("Basic "):
            user, _sep, password = base64.b64decode(auth[6:]).decode().partition(":")
            if (user, password) != (self.username, self.password):
                raise ApiError(401, {"detail": "Invalid username/password."})
            return "login" if (path, method) == ("/api/v2/tokens/", "POST") else "basic"
        if auth.startswith("Bearer ") and auth[7:] in self.tokens.values():
            return "token"
        raise ApiError(401, {"detail": "Authentication credentials were not provided."})

    def _id(self):
        self._next_id += 1
        return self._next_id

    # -- routing --------------------------------------------------------------------------------
    def _route(self, method, path, query, body, headers):
        if not path.startswith("/api/v2/"):
            raise ApiError(404, {"detail": "Not found."})
        kind = self._auth(method, path, headers)
        parts = [p for p in path[len("/api/v2/"):].split("/") if p]
        if kind == "login":
            token_id = self._id()
            self.tokens[token_id] = secrets.token_urlsafe(24)
            return 201, {"id": token_id, "type": "o_auth2_access_token", "url": f"/api/v2/tokens/{token_id}/",
                         "token": self.tokens[token_id], "scope": (body or {}).get("scope", "write")}
        if parts[:1] == ["tokens"] and len(parts) == 2 and method == "DELETE":
            self.tokens.pop(int(parts[1]), None)
            return 204, None
        if parts == ["settings", "all"] or parts == ["settings", "jobs"]:
            return self._settings(method, body)
        if parts and parts[0] == "unified_job_templates" and method == "GET":
            items = [o for res in UNIFIED for o in self.objects[res].values()]
            return 200, self._page(path, query, items)
        if not parts or parts[0] not in RESOURCES:
            raise ApiError(404, {"detail": "Not found."})
        resource = parts[0]
        if len(parts) == 1:
            if method == "GET":
                return 200, self._page(path, query, list(self.objects[resource].values()))
            if method == "POST":
                return 201, self._view(resource, self._create(resource, body or {}), fresh=True)
            raise ApiError(405, {"detail": f'Method "{method}" not allowed.'})
        obj = self._get(resource, parts[1])
        if len(parts) == 2:
            if method == "GET":
                return 200, self._view(resource, obj)
            if method in ("PATCH", "PUT"):
                return 200, self._view(resource, self._update(resource, obj, body or {}), fresh=True)
            if method == "DELETE":
                del self.objects[resource][obj["id"]]
                return 204, None
        sub = parts[2]
        if (resource, sub) in ASSOCIATIONS:
            return self._association(method, path, query, resource, obj, sub, body or {})
        if resource == "workflow_job_template_nodes" and sub == "create_approval_template" and method == "POST":
            return 201, self._view("workflow_approval_templates", self._approval_template(obj, body or {}))
        if resource == "projects" and sub == "update" and method == "POST":
            update = self._sync(obj)
            return 202, dict(self._view("project_updates", update), project_update=update["id"])
        raise ApiError(404, {"detail": "Not found."})

    def _get(self, resource, ident):
        try:
            return self.objects[resource][int(ident)]
        except (ValueError, KeyError):
            raise ApiError(404, {"detail": "Not found."}) from None

    # -- lists and filters ----------------------------------------------------------------------
    def _page(self, path, query, items):
        query = dict(query)
        page = int(query.pop("page", 1))
        size = int(query.pop("page_size", PAGE_SIZE))
        ors = {k[4:]: v for k, v in query.items() if k.startswith("or__")}
        ands = {k: v for k, v in query.items() if not k.startswith("or__")}
        for field, value in ands.items():
            items = [o for o in items if self._matches(o, field, value)]
        if ors:
            items = [o for o in items if any(self._matches(o, f, v) for f, v in ors.items())]
        items.sort(key=lambda o: o["id"])
        start = (page - 1) * size
        results = items[start:start + size]
        nxt = f"{path}?page={page + 1}" if start + size < len(items) else None
        return {"count": len(items), "next": nxt, "previous": f"{path}?page={page - 1}" if page > 1 else None,
                "results": [self._view(self._resource_of(o), o) for o in results]}

    @staticmethod
    def _matches(obj, field, value):
        if field not in obj:
            raise ApiError(400, {"detail": f"{obj['type']} has no field named '{field}'"})
        actual = obj[field]
        return str(actual) == value or (actual is None and value in ("", "None")) or (isinstance(actual, bool) and str(actual).lower() == value.lower())

    def _resource_of(self, obj):
        return next(res for res, (type_, _defaults) in RESOURCES.items() if type_ == obj["type"])

    # -- objects --------------------------------------------------------------------------------
    def _create(self, resource, data):
        type_, defaults = RESOURCES[resource]
        obj = {**copy.deepcopy(COMMON), **copy.deepcopy(defaults), "type": type_}
        if resource == "workflow_job_template_nodes":
            obj["identifier"] = data.get("identifier") or secrets.token_hex(16)
        self._validate(resource, None, data)
        obj.update({k: copy.deepcopy(v) for k, v in data.items() if k != "type"})
        obj.update(id=self._id(), created=_now(), modified=_now())
        if resource == "credential_types":
            obj["managed"] = False
        if resource == "job_templates":  # read-only: the project's organization
            obj["organization"] = self.objects["projects"][int(obj["project"])]["organization"]
        self._check_unique(resource, obj)
        self.objects[resource][obj["id"]] = obj
        if resource == "projects":
            obj["local_path"] = f"_{obj['id']}__{obj['name'].lower().replace(' ', '_')}"
            if obj["scm_type"]:
                self._sync(obj)
        return obj

    def _update(self, resource, obj, data):
        if resource == "credential_types" and obj["managed"]:
            raise ApiError(403, {"detail": "Modifications not allowed for managed credential types"})
        self._validate(resource, obj, data)
        before = copy.deepcopy(obj)
        for key, value in data.items():
            if key == "type":
                continue
            if resource == "credentials" and key == "inputs":
                # $encrypted$ keeps the stored secret (AWX's CredentialSerializer behaviour)
                value = {k: (obj["inputs"].get(k) if v == ENCRYPTED else v) for k, v in value.items()}
            obj[key] = copy.deepcopy(value)
        if resource == "job_templates":
            obj["organization"] = self.objects["projects"][int(obj["project"])]["organization"]
        self._check_unique(resource, obj)
        obj["modified"] = _now()
        if resource == "projects" and obj["scm_type"] and any(
                before.get(k) != obj.get(k) for k in ("scm_url", "scm_branch", "scm_refspec", "scm_type")):
            self._sync(obj)
        return obj

    def _check_unique(self, resource, obj):
        keys = UNIQUE.get(resource)
        if not keys:
            return
        for other in self.objects[resource].values():
            if other["id"] != obj["id"] and all(other.get(k) == obj.get(k) for k in keys):
                fields = ", ".join(k.replace("_", " ").capitalize() if i == 0 else k.replace("_", " ") for i, k in enumerate(keys))
                raise ApiError(400, {"__all__": [f"{RESOURCES[resource][0].replace('_', ' ').capitalize()} with this {fields} already exists."]})

    def _view(self, resource, obj, fresh=False):
        """The serializer's representation; ``fresh``: the answer to the write that started a project update."""
        out = {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}
        out["url"] = f"/api/v2/{resource}/{obj['id']}/"
        related = {}
        for field, target in FOREIGN.items():
            if out.get(field):
                related[field] = f"/api/v2/{target}/{out[field]}/"
        for res, sub in ASSOCIATIONS:
            if res == resource:
                related[sub] = f"{out['url']}{sub}/"
        summary = {}
        if resource == "credentials":
            ctype = self.objects["credential_types"][obj["credential_type"]]
            secret = {f["id"] for f in ctype["inputs"].get("fields", []) if f.get("secret")}
            out["inputs"] = {k: (ENCRYPTED if k in secret and v not in ("", None) else v) for k, v in obj["inputs"].items()}
            out["kind"] = ctype.get("namespace")  # Credential.kind is its type's namespace (None for custom types)
            out["cloud"] = ctype["kind"] == "cloud"
        if resource == "workflow_job_template_nodes":
            for sub in ("success_nodes", "failure_nodes", "always_nodes"):
                out[sub] = sorted(self.links[(resource, sub)].get(obj["id"], []))
            if obj.get("unified_job_template"):
                target = next(res for res in UNIFIED if obj["unified_job_template"] in self.objects[res])
                related["unified_job_template"] = f"/api/v2/{target}/{obj['unified_job_template']}/"
            related["create_approval_template"] = f"{out['url']}create_approval_template/"
        if resource == "projects":
            related["update"] = f"{out['url']}update/"
            if fresh and obj.pop("_just_synced", False):
                update = self.objects["project_updates"][obj["_last_update"]]
                summary["current_update"] = {"id": update["id"], "name": obj["name"], "status": update["status"],
                                             "failed": update["failed"]}
        out["related"], out["summary_fields"] = related, summary
        return out

    # -- validation (the serializers' messages) -------------------------------------------------
    def _validate(self, resource, obj, data):
        merged = {**(obj or {}), **data}
        for field, target in FOREIGN.items():
            value = data.get(field)
            if value not in (None, "") and int(value) not in self.objects[target]:
                raise ApiError(400, {field: [f'Invalid pk "{value}" - object does not exist.']})
        if obj is None and resource not in ("workflow_job_template_nodes",) and not data.get("name"):
            raise ApiError(400, {"name": ["This field is required."]})
        if resource in ("projects", "inventories") and obj is None and not data.get("organization"):
            raise ApiError(400, {"organization": ["This field is required."]})
        if resource == "credential_types":
            self._validate_credential_type(obj, data)
        elif resource == "credentials":
            self._validate_credential(merged)
        elif resource == "inventory_sources":
            if obj is None and not data.get("inventory"):
                raise ApiError(400, {"inventory": ["This field is required."]})
            if merged.get("source") not in INVENTORY_SOURCES:
                raise ApiError(400, {"source": [f'"{merged.get("source")}" is not a valid choice.']})
            if merged["source"] == "scm" and not merged.get("source_project"):
                raise ApiError(400, {"source_project": ["Project required for scm type sources."]})
            if merged["source"] != "scm" and any(data.get(k) for k in ("source_project", "source_path")):
                raise ApiError(400, {"detail": "Cannot set source_project source_path if not SCM type."})
            if merged.get("credential"):
                ctype = self.objects["credential_types"][self.objects["credentials"][int(merged["credential"])]["credential_type"]]
                if ctype["kind"] not in ("cloud", "kubernetes"):
                    raise ApiError(400, {"credential": ["Credential kind must be 'cloud'."]})
        elif resource == "job_templates":
            self._validate_job_template(merged)
        elif resource == "workflow_job_template_nodes":
            ujt = merged.get("unified_job_template")
            if data.get("extra_data") and ujt in self.objects["job_templates"] and not self.objects["job_templates"][ujt][
                    "ask_variables_on_launch"]:
                raise ApiError(400, {"extra_data": [f"Variables {', '.join(sorted(data['extra_data']))} provided, but this "
                                                    "template cannot accept variables."]})
        for field in ("extra_vars", "variables", "source_vars"):
            if isinstance(data.get(field), str) and data[field].strip():
                try:
                    parsed = yaml.safe_load(data[field])
                except yaml.YAMLError:
                    parsed = None
                if not isinstance(parsed, dict):
                    raise ApiError(400, {field: ["Must be valid JSON or YAML."]})

    def _validate_credential_type(self, obj, data):
        if "kind" in data and data["kind"] not in ("cloud", "net"):
            raise ApiError(400, {"kind": [f"Must be 'cloud' or 'net', not {data['kind']}"]})
        inputs = data.get("inputs", (obj or {}).get("inputs", {}))
        ids = []
        for field in inputs.get("fields", []):
            if not isinstance(field, dict) or "id" not in field or "label" not in field:
                raise ApiError(400, {"inputs": ["'id' and 'label' are required for every input field"]})
            if field.get("ask_at_runtime"):
                raise ApiError(400, {"inputs": ["'ask_at_runtime' is not supported for custom credentials."]})
            if field["id"] in ids:
                raise ApiError(400, {"inputs": [f"field IDs must be unique ({field['id']})"]})
            if field.get("type", "string") not in ("string", "boolean"):
                raise ApiError(400, {"inputs": [f"{field['type']} is not one of ['string', 'boolean']"]})
            ids.append(field["id"])
        for req in inputs.get("required", []):
            if req not in ids:
                raise ApiError(400, {"inputs": [f"required field {req} is not defined"]})
        injectors = data.get("injectors", (obj or {}).get("injectors", {}))
        for type_, injector in injectors.items():
            if type_ not in ("env", "extra_vars", "file"):
                raise ApiError(400, {"injectors": [f"Additional properties are not allowed ('{type_}' was unexpected)"]})
            for key, tmpl in injector.items():
                if type_ == "env" and key.startswith("ANSIBLE_"):
                    raise ApiError(400, {"injectors": [f"Environment variable {key} may affect Ansible configuration so its use "
                                                       "is not allowed in credentials."]})
                if type_ == "env" and key in ENV_BLOCKLIST:
                    raise ApiError(400, {"injectors": [f"Environment variable {key} is not allowed to be used in credentials."]})
                self._render(type_, key, tmpl, ids)

    @staticmethod
    def _render(type_, key, tmpl, ids):
        from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, sandbox

        try:
            sandbox.ImmutableSandboxedEnvironment(undefined=StrictUndefined).from_string(str(tmpl)).render(
                dict.fromkeys(ids, "EXAMPLE"))
        except UndefinedError as exc:
            raise ApiError(400, {"injectors": [f"{key} uses an undefined field ({exc})"]}) from None
        except TemplateSyntaxError as exc:
            raise ApiError(400, {"injectors": [f"Syntax error rendering template for {key} inside of {type_} ({exc})"]}) from None

    def _validate_credential(self, cred):
        if not cred.get("credential_type"):
            raise ApiError(400, {"credential_type": ["This field is required."]})
        ctype = self.objects["credential_types"][int(cred["credential_type"])]
        fields = {f["id"]: f for f in ctype["inputs"].get("fields", [])}
        inputs = cred.get("inputs") or {}
        extra = sorted(set(inputs) - set(fields))
        if extra:
            raise ApiError(400, {"inputs": {extra[0]: [f"Additional properties are not allowed ('{extra[0]}' was unexpected)"]}})
        for req in ctype["inputs"].get("required", []):
            if inputs.get(req) in (None, ""):
                raise ApiError(400, {"inputs": {req: [f"required for {ctype['name']}"]}})
        for key, value in inputs.items():
            if fields[key].get("type", "string") == "string" and not isinstance(value, str):
                raise ApiError(400, {"inputs": {key: [f"{value!r} is not of type 'string'"]}})

    def _validate_job_template(self, jt):
        project = self.objects["projects"].get(jt.get("project") or -1)
        if project is None:
            raise ApiError(400, {"project": ["This field is required."]})
        if not jt.get("playbook"):
            raise ApiError(400, {"playbook": ["Must select playbook for project."]})
        if project["scm_type"] and not project["allow_override"] and jt["playbook"] not in project.get("_playbook_files", []):
            raise ApiError(400, {"playbook": ["Playbook not found for project."]})
        if not jt.get("inventory") and not jt.get("ask_inventory_on_launch"):
            raise ApiError(400, {"inventory": ["Job Template must provide 'inventory' or allow prompting for it."]})

    # -- projects: a sync from a local directory ------------------------------------------------
    def _sync(self, project):
        update = {**copy.deepcopy(RESOURCES["project_updates"][1]), "type": "project_update", "id": self._id(),
                  "name": project["name"], "project": project["id"], "created": _now(), "modified": _now()}
        source = self.scm_sources.get(project["scm_url"])
        if source is None or not os.path.isdir(source):
            update.update(status="failed", failed=True)
        else:
            playbooks, inventories = [], []
            for dirpath, dirnames, filenames in os.walk(source):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in ("roles", "collections"))
                for name in filenames:
                    rel = os.path.relpath(os.path.join(dirpath, name), source)
                    if name.endswith((".yml", ".yaml")):
                        if _could_be_playbook(os.path.join(dirpath, name)):
                            playbooks.append(rel)
                        elif rel.startswith("inventory"):
                            inventories.append(rel)
            digest = hashlib.sha1(json.dumps(sorted(playbooks)).encode()).hexdigest()  # noqa: S324 - a revision id
            project.update(_playbook_files=sorted(playbooks), _inventory_files=sorted(inventories), scm_revision=digest)
            update.update(status="successful", scm_revision=digest)
        project.update(status=update["status"], last_update_failed=update["failed"], last_updated=_now(),
                       _last_update=update["id"], _just_synced=True)
        self.objects["project_updates"][update["id"]] = update
        return update

    # -- associations, approval templates, settings ---------------------------------------------
    def _association(self, method, path, query, resource, obj, sub, body):
        target = ASSOCIATIONS[(resource, sub)]
        linked = self.links[(resource, sub)].setdefault(obj["id"], [])
        if method == "GET":
            return 200, self._page(path, query, [self.objects[target][i] for i in linked])
        if method != "POST":
            raise ApiError(405, {"detail": f'Method "{method}" not allowed.'})
        other = self._get(target, body.get("id"))
        if body.get("disassociate"):
            if other["id"] in linked:
                linked.remove(other["id"])
            return 204, None
        if other["id"] in linked:
            return 204, None
        if sub == "credentials":
            ctype = self.objects["credential_types"][other["credential_type"]]
            if ctype["kind"] in ("scm", "insights", "galaxy"):
                raise ApiError(400, {"msg": f"Cannot assign a Credential of kind `{ctype['kind']}`."})
            for cid in linked:
                if self.objects["credentials"][cid]["credential_type"] == other["credential_type"]:
                    raise ApiError(400, {"credentials": [f"Cannot assign multiple {ctype['name']} credentials."]})
        else:
            if other["workflow_job_template"] != obj["workflow_job_template"]:
                raise ApiError(400, {"Error": "Relationship not allowed."})
            if self._reaches(other["id"], obj["id"]):
                raise ApiError(400, {"Error": "Cycle detected."})
        linked.append(other["id"])
        return 204, None

    def _reaches(self, start, goal):
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node in seen:
                continue
            seen.add(node)
            for sub in ("success_nodes", "failure_nodes", "always_nodes"):
                todo += self.links[("workflow_job_template_nodes", sub)].get(node, [])
        return False

    def _approval_template(self, node, data):
        if not data.get("name"):
            raise ApiError(400, {"name": ["This field is required."]})
        approval = self._create("workflow_approval_templates", {k: v for k, v in data.items() if k in ("name", "description", "timeout")})
        node["unified_job_template"] = approval["id"]
        return approval

    def _settings(self, method, body):
        if method == "GET":
            return 200, copy.deepcopy(self.settings)
        if method in ("PATCH", "PUT"):
            unknown = sorted(set(body or {}) - set(self.settings))
            if unknown:
                raise ApiError(400, {unknown[0]: ["Unknown setting."]})
            env = (body or {}).get("AWX_TASK_ENV")
            if env is not None and (not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values())):
                raise ApiError(400, {"AWX_TASK_ENV": ["Expected a dictionary of string keys and values."]})
            self.settings.update(copy.deepcopy(body or {}))
            return 200, copy.deepcopy(self.settings)
        raise ApiError(405, {"detail": f'Method "{method}" not allowed.'})

    # -- for tests ------------------------------------------------------------------------------
    def find(self, resource, **fields):
        return [o for o in self.objects[resource].values() if all(o.get(k) == v for k, v in fields.items())]

    def linked(self, resource, sub, obj_id):
        return list(self.links[(resource, sub)].get(obj_id, []))
