# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# This module is implemented as an action plugin and runs on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: agent_consensus
short_description: Let a roster of agents vote on a question
version_added: 0.1.0
description:
  - Asks every agent of O(roster) to vote C(yes), C(no) or C(abstain) on O(question), with
    reasons, each vote an ordinary agent call (lanes, budget, cache and audit apply).
  - The decision passes iff C(yes * D >= len(roster) * N) for O(threshold) C(N/D) - integer
    arithmetic over the B(full) roster, so abstentions and failed members count against it.
  - Returns each vote with its reasons and REF-tag, the tally, and the dissent (the votes
    against the outcome). The decision itself is an AGENT record in the audit trail.
  - Never reports C(changed) and does not fail when members fail; check RV(passed).
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.agent
  - locus.infra.state_store
  - locus.infra.attributes
  - locus.infra.attributes.controller
options:
  question:
    description: The yes/no question to decide.
    type: str
    required: true
  roster:
    description:
      - The voting agents - role names, or mappings with C(role) and optionally C(name),
        C(backend), C(model), C(lane), C(host), C(base_url), C(max_tokens), C(temperature), C(top_k)
        overriding the shared options for that member.
    type: list
    elements: raw
    required: true
  context:
    description: Facts every member sees, as untrusted data.
    type: raw
  threshold:
    description: Fraction of the full roster that must vote yes, as C(N/D).
    type: str
    default: 2/3
attributes:
  check_mode:
    support: full
    details: Never calls a model; cached votes count, others are C(pending) and RV(passed) is null while they could decide it.
  diff_mode:
    support: none
seealso:
  - module: locus.infra.agent
  - module: locus.infra.agent_verify
"""

EXAMPLES = r"""
- name: Three specialists decide whether the change may go ahead
  locus.infra.agent_consensus:
    question: Is it safe to apply this nginx change during business hours?
    context: "{{ change_diff }}"
    roster:
      - security
      - devops
      - {role: infrastructure, name: capacity}
  register: vote

- name: Stop unless two thirds agreed
  ansible.builtin.assert:
    that: vote.passed
    fail_msg: "rejected ({{ vote.tally.yes }}/{{ vote.tally.roster }} yes): {{ vote.dissent | map(attribute='reasons') | list }}"
"""

RETURN = r"""
ref_tag:
  description: The AGENT tag of the decision record.
  returned: success
  type: str
decision:
  description: C(passed), C(rejected) or C(undecided) (check mode with pending votes).
  returned: success
  type: str
passed:
  description: Whether the threshold was reached (null when undecided).
  returned: success
  type: bool
tally:
  description: Counts of yes, no, abstain, failed and pending votes, the roster size and the yes votes needed.
  returned: success
  type: dict
  sample: {"yes": 2, "no": 1, "abstain": 0, "failed": 0, "pending": 0, "roster": 3, "needed": 2, "threshold": "2/3"}
votes:
  description: Each member's vote with C(agent), C(role), C(vote), C(reasons) and C(ref_tag).
  returned: success
  type: list
  elements: dict
dissent:
  description: The votes against the outcome (non-yes votes when passed, yes votes when rejected).
  returned: success
  type: list
  elements: dict
"""
