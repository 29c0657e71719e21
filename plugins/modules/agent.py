# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# This module is implemented as an action plugin and runs on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: agent
short_description: Ask an AI agent, under lanes, budgets, cache and audit
version_added: 0.1.0
description:
  - Puts O(task) to an agent O(role) (each role has its own system prompt kept in the
    collection), with O(context) passed as delimited, untrusted data, and returns the answer -
    parsed and valid against O(schema) when one is given.
  - Checks, in this order and independently of anything the context says - the O(lane)
    (refused before any network traffic), the response cache, check mode (never calls a
    model), the price and the budget (a call whose estimate would pass a limit is refused
    before it is sent), then calls the model.
  - An answer that does not match O(schema) gets one repair attempt, then the task fails
    naming the violated path.
  - Errors are sorted in RV(error_kind) - V(retry) (429, 529, 5xx, connection, timeout, after
    the backend's own retries honouring C(retry-after)), V(fatal) (authentication, bad
    request), V(budget), V(lane), V(schema), V(config), V(input), V(halt) (the emergency halt is set).
  - Never reports C(changed). Every call leaves an AGENT REF-tag in the audit trail.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.agent
  - locus.infra.state_store
  - locus.infra.attributes
  - locus.infra.attributes.controller
options:
  role:
    description: The agent role; picks the system prompt.
    type: str
    required: true
    choices: [orchestrator, research, security, infrastructure, network, devops]
  task:
    description: What the agent is asked to do.
    type: str
    required: true
  context:
    description:
      - Facts for the agent (any JSON-serialisable value). Passed as untrusted data between
        markers the model is told never to take instructions from; it cannot change lane,
        budget, backend or schema, which are decided before any prompt exists.
    type: raw
  schema:
    description:
      - JSON schema the answer must match; RV(output) is then the parsed, validated value.
      - Without it RV(output) is the answer text.
    type: dict
attributes:
  check_mode:
    support: full
    details: Never calls a model. Returns the cached answer when there is one, otherwise RV(would_call=true) with the estimate.
  diff_mode:
    support: none
seealso:
  - plugin: locus.infra.agent
    plugin_type: lookup
  - module: locus.infra.agent_consensus
  - module: locus.infra.agent_verify
  - module: locus.infra.agent_handover
"""

EXAMPLES = r"""
- name: Security review of the nginx facts, offline on the embedded model
  locus.infra.agent:
    role: security
    task: Review these nginx settings for risk.
    context: "{{ nginx_facts }}"
    schema:
      type: object
      required: [risk, findings]
      properties:
        risk: {enum: [low, medium, high, critical]}
        findings: {type: array, items: {type: string}, maxItems: 5}
  register: review

- name: Ask Claude (needs a lane that allows it)
  locus.infra.agent:
    role: network
    task: Why might the BGP session rtr1 <-> rtr2 flap?
    context: "{{ bird_status }}"
    backend: anthropic
    lane: enterprise
    budget:
      call_usd: 0.05
  register: answer

- name: Retry only what is worth retrying
  locus.infra.agent:
    role: devops
    task: Summarise the failed tasks.
    context: "{{ failures }}"
    backend: ollama
    host: http://127.0.0.1:11434
  register: summary
  until: summary is succeeded or not summary.retryable
  retries: 3
  delay: 10
"""

RETURN = r"""
output:
  description: The answer - parsed and schema-valid with O(schema), else the text. None in check mode without a cached answer.
  returned: success
  type: raw
text:
  description: The raw answer text.
  returned: success
  type: str
usage:
  description: Tokens spent by this call (0 for a cached answer), summed over a repair attempt.
  returned: always
  type: dict
  sample: {input_tokens: 312, output_tokens: 58, cache_creation_input_tokens: 0, cache_read_input_tokens: 0}
cost_usd:
  description: Cost of this call from the dated price table (0 for cached answers and local models).
  returned: always
  type: float
ref_tag:
  description: The AGENT REF-tag of this call's audit record (also for refusals and failures).
  returned: always
  type: str
  sample: LOCUS-AGENT20261121-004
cached:
  description: Whether the answer came from the response cache.
  returned: always
  type: bool
cached_from:
  description: The REF-tag of the call that produced a cached answer.
  returned: when cached
  type: str
would_call:
  description: Check mode without a cached answer - a real run would call the model.
  returned: always
  type: bool
backend:
  description: The backend used.
  returned: always
  type: str
model:
  description: The model that answered (as the service names it).
  returned: always
  type: str
lane:
  description: The lane the call ran in.
  returned: always
  type: str
latency_s:
  description: Seconds the answer took (the cache lookup for a cached answer).
  returned: always
  type: float
stop_reason:
  description: Why the model stopped (C(end_turn), C(max_tokens), C(stop), C(length) ...).
  returned: when a model answered
  type: str
request_id:
  description: The service's request id (Anthropic C(request-id); the C(X-Request-ID) sent to Ollama).
  returned: when a model answered
  type: str
replies:
  description: Model replies this call took - 2 when the first reply was repaired.
  returned: when a model answered
  type: int
attempts:
  description: HTTP attempts over all replies, retries included.
  returned: when a model answered
  type: int
estimate_usd:
  description: In check mode without a cached answer, the worst-case cost a real run would reserve.
  returned: when would_call
  type: float
error_kind:
  description: On failure, what kind - retry, fatal, budget, lane, schema, config, input, halt.
  returned: failure
  type: str
retryable:
  description: On failure, whether trying again later may help.
  returned: failure
  type: bool
violation:
  description: On a schema failure, the JSON path and the rule the answer broke.
  returned: failure
  type: str
  sample: "$.risk: 'severe' is not one of ['low', 'medium', 'high', 'critical']"
"""
