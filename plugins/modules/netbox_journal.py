# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# This module is implemented as an action plugin and runs on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: netbox_journal
short_description: Write a REF-tagged journal entry onto a NetBox virtual machine or device
version_added: 0.1.0
description:
  - Allocates a REF-tag (action O(ref_action)) with an audit record in the locus state store, then
    adds a NetBox journal entry to the object whose text starts with the REF-tag, so that a change made by a
    playbook can be traced from NetBox to the audit trail and back.
  - By default the object is the current inventory host as M(locus.infra.netbox) inventory describes
    it (its host vars C(netbox_type) and C(netbox_id)); or name it with O(object_type) and
    O(object_id) or O(object_name).
  - Journal entries are events; every run that is not in check mode adds one and reports C(changed).
    Run it when the change it records happened (C(when) C(result is changed)).
  - If NetBox refuses the entry after the REF-tag was recorded, the task fails and names the tag, so
    the audit trail shows the attempt.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.netbox
  - locus.infra.state_store
  - locus.infra.attributes
  - locus.infra.attributes.controller
options:
  comments:
    description: The journal text (Markdown). Secret-looking values are redacted in the audit record, not in NetBox.
    type: str
    required: true
  kind:
    description: Journal entry kind.
    type: str
    choices: [info, success, warning, danger]
    default: info
  object_type:
    description:
      - C(virtual_machine) or C(device) (or the NetBox content types C(virtualization.virtualmachine),
        C(dcim.device)). Defaults to the host var C(netbox_type).
    type: str
  object_id:
    description: NetBox id of the object. Defaults to the host var C(netbox_id) unless O(object_name) is given.
    type: int
  object_name:
    description: Find the object by name instead of id (must match exactly one).
    type: str
  ref_action:
    description: Action of the REF-tag that is allocated for the entry.
    type: str
    choices: [TASK, JOB, ARTIFACT, AGENT, RESOURCE, NOTIFY, RESEARCH, DEPLOY, VALIDATE, HANDOVER, HALT, APPROVAL]
    default: NOTIFY
attributes:
  check_mode:
    support: full
    details: Checks that the object exists and reports the entry it would write; no tag is allocated, nothing is written.
  diff_mode:
    support: full
    details: The diff shows the journal entry that is (or would be) added.
seealso:
  - module: locus.infra.ref_tag
  - plugin: locus.infra.netbox
    plugin_type: inventory
"""

EXAMPLES = r"""
- name: Provision the VM
  locus.infra.proxmox_vm:
    vm: "{{ locus_vm }}"
  register: provisioned

- name: Leave a trace in NetBox (the host comes from the locus.infra.netbox inventory)
  locus.infra.netbox_journal:
    comments: "Provisioned on {{ locus_vm.node }} from {{ locus_vm.template }}"
    kind: success
    ref_action: DEPLOY
  when: provisioned is changed

- name: Journal on another object, found by name
  locus.infra.netbox_journal:
    url: https://netbox.example.com
    object_type: device
    object_name: pve1
    comments: Firmware updated
  delegate_to: localhost
"""

RETURN = r"""
ref_tag:
  description: The REF-tag allocated for the entry (not in check mode).
  returned: changed and not check mode
  type: str
  sample: LOCUS-NOTIFY20260908-004
journal_entry:
  description: The journal entry as NetBox returned it (in check mode, the entry that would be written).
  returned: always
  type: dict
  sample: {id: 17, kind: info, comments: "LOCUS-NOTIFY20260908-004: Provisioned", created: "2026-09-08T10:00:00Z"}
object:
  description: The object the entry is (or would be) attached to.
  returned: always
  type: dict
  sample: {type: virtualization.virtualmachine, id: 12, name: web1}
"""
