# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# This module is implemented as an action plugin and runs on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: agent_verify
short_description: A second agent checks a first agent's answer
version_added: 0.1.0
description:
  - Gives a verifier agent (O(role)) the O(question), the O(context) and the O(answer) to check,
    and asks for an independent check of every claim against the facts.
  - Returns whether it agrees, with the issues it found. The check is an ordinary agent call
    (lanes, budget, cache and audit apply) and an AGENT REF-tag.
  - The verifier sees the answer only as untrusted data; it is not told which agent gave it.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.agent
  - locus.infra.state_store
  - locus.infra.attributes
  - locus.infra.attributes.controller
options:
  question:
    description: What the first agent was asked.
    type: str
    required: true
  answer:
    description: The first agent's answer (text or structured, e.g. a registered RV(locus.infra.agent#module:output)).
    type: raw
    required: true
  context:
    description: The facts the answer must be checked against.
    type: raw
  role:
    description: The verifier's role.
    type: str
    default: orchestrator
    choices: [orchestrator, research, security, infrastructure, network, devops]
  answer_ref_tag:
    description: The REF-tag of the answer being checked, kept in the result for the trail.
    type: str
attributes:
  check_mode:
    support: full
    details: Never calls a model; answers from the cache or returns RV(agree=null) with RV(would_call=true).
  diff_mode:
    support: none
seealso:
  - module: locus.infra.agent
  - module: locus.infra.agent_consensus
"""

EXAMPLES = r"""
- name: First opinion
  locus.infra.agent:
    role: network
    task: Are all BGP sessions established?
    context: "{{ bird_protocols }}"
    schema: {type: object, required: [established], properties: {established: {type: boolean}}}
  register: first

- name: Second opinion
  locus.infra.agent_verify:
    question: Are all BGP sessions established?
    answer: "{{ first.output }}"
    answer_ref_tag: "{{ first.ref_tag }}"
    context: "{{ bird_protocols }}"
    role: orchestrator
  register: check
"""

RETURN = r"""
agree:
  description: Whether the verifier agrees with the answer (null in check mode without a cached check).
  returned: success
  type: bool
verdict:
  description: C(agree) or C(disagree).
  returned: success
  type: str
issues:
  description: The problems the verifier found.
  returned: success
  type: list
  elements: str
ref_tag:
  description: The AGENT tag of the verification call.
  returned: success
  type: str
verifier:
  description: The verifier's role.
  returned: success
  type: str
cached:
  description: Whether the verdict came from the response cache.
  returned: success
  type: bool
would_call:
  description: Check mode without a cached verdict.
  returned: success
  type: bool
cost_usd:
  description: Cost of the verification call.
  returned: success
  type: float
answer_ref_tag:
  description: The O(answer_ref_tag) given.
  returned: success
  type: str
"""
