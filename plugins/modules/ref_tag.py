# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# This module is implemented as an action plugin and runs on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: ref_tag
short_description: Allocate a REF-tag and record it in the audit trail
version_added: 0.1.0
description:
  - Allocates the next REF-tag C(LOCUS-{ACTION}{YYYYMMDD}-{SEQ}) for O(action) and appends a
    hash-chained audit record carrying O(subject) and O(data), in one transaction.
  - SEQ counts per action per UTC day, is at least three digits and grows past 999; it never
    repeats and never skips, also with many forks and several playbooks at once.
  - Secret-looking keys and values in O(data) are redacted before they are recorded.
  - Never reports C(changed); the audit trail is bookkeeping, not a change to a managed host.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.state_store
  - locus.infra.attributes
  - locus.infra.attributes.controller
options:
  action:
    description:
      - The kind of action the tag is for.
      - One of C(TASK), C(JOB), C(ARTIFACT), C(AGENT), C(RESOURCE), C(NOTIFY), C(RESEARCH), C(DEPLOY),
        C(VALIDATE), C(HANDOVER) (case-insensitive).
      - C(HALT) and C(APPROVAL) records are written only by the guard (C(locus halt), C(locus approve),
        C(locus resume), M(locus.infra.guard)); this module refuses them.
    type: str
    required: true
  subject:
    description:
      - What the tag is about, in words. Defaults to the task name and the inventory host.
    type: str
  data:
    description:
      - Facts to keep in the audit record with the tag.
      - The key C(guard) is reserved for the guard's own records and refused.
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    details: The tag is allocated and recorded in check mode too (the record says so), because the trail records check runs.
  diff_mode:
    support: none
seealso:
  - plugin: locus.infra.ref_tag
    plugin_type: lookup
  - module: locus.infra.audit_verify
  - plugin: locus.infra.audit
    plugin_type: callback
"""

EXAMPLES = r"""
- name: Tag the validation of a BGP session
  locus.infra.ref_tag:
    action: VALIDATE
    subject: "BGP rtr1 <-> rtr2"
    data:
      state: Established
  register: check

- name: Show it
  ansible.builtin.debug:
    msg: "recorded as {{ check.ref_tag }}"
"""

RETURN = r"""
ref_tag:
  description: The allocated REF-tag.
  returned: success
  type: str
  sample: LOCUS-VALIDATE20250908-001
subject:
  description: The subject recorded with the tag.
  returned: success
  type: str
  sample: "BGP rtr1 <-> rtr2"
"""
