# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# This module is implemented as an action plugin and runs on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_verify
short_description: Verify the hash-chained audit trail
version_added: 0.1.0
description:
  - Walks the whole audit trail and checks every record's hash, its link to the previous
    record, the positions and the per-action REF-tag sequences.
  - Reports the first tampered (modified), deleted, inserted or reordered record by its tag
    and position.
  - With O(head), also checks against a chain head exported earlier (C(locus audit head)), which
    detects truncation and a rewritten trail.
  - Read-only; keeps working while an emergency halt is in force.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.state_store
  - locus.infra.attributes
  - locus.infra.attributes.controller
options:
  head:
    description:
      - An exported chain head, as a path to the JSON file C(locus audit head) wrote, or as a
        dict with C(count) and C(head_hash) (and optionally C(last_tag)).
    type: raw
  fail_on_problem:
    description:
      - Fail the task when verification finds a problem. With V(false) the result carries
        RV(ok) and RV(problem) for the play to act on.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: locus.infra.ref_tag
"""

EXAMPLES = r"""
- name: Verify the audit trail
  locus.infra.audit_verify:

- name: Verify against the head kept on another machine
  locus.infra.audit_verify:
    head: /backup/locus-head.json
    fail_on_problem: false
  register: audit

- name: Alert when it does not verify
  ansible.builtin.debug:
    msg: "{{ audit.problem.message }}"
  when: not audit.ok
"""

RETURN = r"""
ok:
  description: Whether the trail verified.
  returned: always
  type: bool
count:
  description: Number of records walked before the first problem (all of them when RV(ok)).
  returned: always
  type: int
  sample: 1234
last_tag:
  description: REF-tag of the last good record.
  returned: always
  type: str
  sample: LOCUS-TASK20250908-114
head_hash:
  description: Hash of the last good record (the chain head when RV(ok)).
  returned: always
  type: str
problem:
  description: The first problem found.
  returned: when not RV(ok)
  type: dict
  contains:
    kind:
      description: One of C(modified), C(deleted), C(inserted), C(reordered), C(sequence), C(truncated), C(rewritten).
      type: str
    position:
      description: Position of the record in the chain (1-based), if known.
      type: int
    tag:
      description: REF-tag of the record concerned.
      type: str
    message:
      description: What is wrong, in words.
      type: str
"""
