#!/usr/bin/python
# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: proxmox_storage
short_description: Register a Proxmox Backup Server datastore as Proxmox VE storage (type pbs only)
version_added: 0.2.0
description:
  - Makes the cluster storage O(storage) a Proxmox Backup Server datastore (C(/storage), type C(pbs)) with the
    given server, datastore, user, certificate fingerprint, port, namespace and nodes - or removes it.
  - Explicitly limited to type C(pbs); an existing storage of another type is refused, never changed.
  - Idempotent - compared after normalisation (fingerprint case and separators, node sets, C(disable) as
    O(enabled)); only differing keys are sent. Check mode predicts; diff mode shows the changed keys.
  - The password and the encryption key (from Ansible Vault) are never logged or returned (C(no_log)); Proxmox
    never returns them either, so they are sent when the storage is created and later only with
    O(password_update=always) / O(encryption_key_update=always).
  - Honours the emergency halt (C(locus halt)) through its action plugin. Run it on the controller.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.attributes
  - locus.infra.attributes.controller
  - locus.infra.proxmox
options:
  storage:
    description: Storage ID on the cluster.
    type: str
    required: true
  state:
    description: V(present) registers or updates it, V(absent) removes it (the backups on the PBS stay).
    type: str
    choices: [present, absent]
    default: present
  type:
    description: Storage type; only V(pbs).
    type: str
    choices: [pbs]
    default: pbs
  server:
    description: PBS host name or address. Required to register.
    type: str
  datastore:
    description: PBS datastore name. Required to register.
    type: str
  username:
    description: PBS user, C(user@realm) or an API token C(user@realm!token). Required to register.
    type: str
  password:
    description: Password or API token secret of O(username). Never logged. Required to register.
    type: str
  password_update:
    description: V(on_create) sends O(password) only when registering; V(always) on every run (reported as changed).
    type: str
    choices: [on_create, always]
    default: on_create
  fingerprint:
    description: SHA-256 fingerprint of the PBS certificate (C(proxmox-backup-manager cert info)). Required to register.
    type: str
  encryption_key:
    description:
      - Client-side encryption key - the content of a PBS key file (JSON), e.g. from Ansible Vault, or V(autogen).
        Never logged. Keep a copy - backups cannot be restored without it.
    type: str
  encryption_key_update:
    description: V(on_create) sends O(encryption_key) only when registering; V(always) on every run.
    type: str
    choices: [on_create, always]
    default: on_create
  port:
    description: PBS API port (PVE's default 8007).
    type: int
  namespace:
    description: PBS namespace inside the datastore.
    type: str
  nodes:
    description: Only these cluster nodes use the storage (default all).
    type: list
    elements: str
  enabled:
    description: Whether the storage is enabled.
    type: bool
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Secrets are shown as C(********).
seealso:
  - module: locus.infra.proxmox_backup_job
"""

EXAMPLES = r"""
- name: PBS datastore as backup storage
  locus.infra.proxmox_storage:
    storage: pbs-main
    server: pbs.example.com
    datastore: main
    username: backup@pbs!pve
    password: "{{ vault_pbs_token_secret }}"
    fingerprint: "{{ pbs_fingerprint }}"
    encryption_key: "{{ vault_pbs_encryption_key }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
storage:
  description: The storage ID.
  returned: always
  type: str
actions:
  description: What was done (or would be in check mode).
  returned: always
  type: list
  elements: str
changes:
  description: Per changed key C(before) and C(after); secrets as C(********).
  returned: always
  type: dict
api_requests:
  description: Number of HTTP requests made to the Proxmox API.
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.locus.infra.plugins.module_utils import _proxmox, _proxmox_storage


def main():
    spec = _proxmox.auth_argument_spec()
    spec.update(
        storage={"type": "str", "required": True},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
        type={"type": "str", "default": "pbs", "choices": ["pbs"]},
        server={"type": "str"},
        datastore={"type": "str"},
        username={"type": "str"},
        password={"type": "str", "no_log": True},
        password_update={"type": "str", "default": "on_create", "choices": ["on_create", "always"]},
        fingerprint={"type": "str"},
        encryption_key={"type": "str", "no_log": True},
        encryption_key_update={"type": "str", "default": "on_create", "choices": ["on_create", "always"]},
        port={"type": "int"},
        namespace={"type": "str"},
        nodes={"type": "list", "elements": "str"},
        enabled={"type": "bool"},
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_together=[("api_token_id", "api_token_secret")])
    sid = module.params["storage"]
    _proxmox.exit_module(module, f"proxmox_storage {sid}",
                         lambda client: _proxmox_storage.run_module(client, module.params, check_mode=module.check_mode),
                         spec_errors=_proxmox_storage.StorageSpecError, storage=sid)


if __name__ == "__main__":
    main()
