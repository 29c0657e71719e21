# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# This module is implemented as an action plugin and runs on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_info
short_description: Read records from the audit trail
version_added: 0.1.0
description:
  - Returns audit records by REF-tag, the last N records, or all records of one playbook run
    (its C(JOB) tag).
  - Without options, returns the records of the current run (needs the M(locus.infra.audit)
    callback, which exports the run's JOB tag).
  - Read-only; keeps working while an emergency halt is in force.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.state_store
  - locus.infra.attributes
  - locus.infra.attributes.controller
options:
  tag:
    description: Return the record with this REF-tag.
    type: str
  job:
    description: Return the records of the run with this C(JOB) tag (its start and end records and its task records).
    type: str
  last:
    description: Return the last N records.
    type: int
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: locus.infra.audit_verify
  - plugin: locus.infra.audit
    plugin_type: callback
"""

EXAMPLES = r"""
- name: Records of this run so far
  locus.infra.audit_info:
  register: run

- name: Print the run's REF-tags
  ansible.builtin.debug:
    var: run.tags

- name: One record
  locus.infra.audit_info:
    tag: LOCUS-DEPLOY20250908-001
"""

RETURN = r"""
records:
  description: The records in chain order, with their data parsed.
  returned: success
  type: list
  elements: dict
  contains:
    position:
      description: Position in the chain (1-based).
      type: int
    tag:
      description: The REF-tag.
      type: str
    ts:
      description: UTC timestamp of the record.
      type: str
    subject:
      description: What the record is about.
      type: str
    data:
      description: The recorded facts.
      type: dict
    prev_hash:
      description: Hash of the previous record.
      type: str
    hash:
      description: Hash of this record.
      type: str
tags:
  description: The REF-tags of RV(records).
  returned: success
  type: list
  elements: str
count:
  description: Number of records returned.
  returned: success
  type: int
"""
