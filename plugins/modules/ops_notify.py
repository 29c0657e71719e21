# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# This module is implemented as an action plugin and runs on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: ops_notify
short_description: Judge a heartbeat, record it as one NOTIFY REF-tag and notify a webhook when the state changes
version_added: 0.1.0
description:
  - Judges the host probes (M(locus.infra.ops_probe)) and site answers of a heartbeat run - reachable, systemd
    C(running), the role units active, BGP sessions established, K3s nodes ready, sites answering, memory and disk
    under the policy's thresholds (down at the halt threshold, a warning at the warning threshold) - and records
    the result as one C(NOTIFY) record.
  - With O(webhook_url), posts one JSON message when the state changed since the last delivered one - when it
    went down and when it recovered, never for a steady state. The body suits both ntfy's JSON publishing
    (C(topic), C(title), C(message), C(priority), C(tags)) and Slack incoming webhooks (C(text)). A failed delivery
    is retried by the next run.
  - The URL and token are secrets - give them from Ansible Vault. Only the URL's scheme, host and port are recorded.
  - Fails the task (after recording) when anything is down, unless O(fail_on_down=false).
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.state_store
  - locus.infra.attributes
  - locus.infra.attributes.controller
options:
  hosts:
    description:
      - Per host name a mapping with C(probe) (the registered M(locus.infra.ops_probe) result, or the unreachable
        result), C(expect_units) and C(expect_bgp).
    type: dict
    required: true
  sites:
    description: Site answers - C(host), C(name), C(status), C(expected), C(error).
    type: list
    elements: dict
    default: []
  name:
    description: The heartbeat's name; state changes are tracked per name (one per inventory or schedule).
    type: str
    default: heartbeat
  policy:
    description: The guard policy file (thresholds). Defaults to C(locus_policy), E(LOCUS_POLICY), the shipped policy.
    type: path
  webhook_url:
    description: Where to POST the message, e.g. C(https://ntfy.example.org/) or a Slack incoming webhook URL.
    type: str
  webhook_token:
    description: Sent as an C(Authorization) bearer token (ntfy access tokens).
    type: str
  webhook_topic:
    description: The ntfy topic.
    type: str
    default: locus
  webhook_timeout:
    description: Seconds the webhook may take.
    type: int
    default: 10
  fail_on_down:
    description: Fail the task when anything is down (the playbook then exits non-zero).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Judges, but records nothing and sends nothing.
  diff_mode:
    support: none
notes:
  - Reading the last state, sending and recording happen in one store transaction, so concurrent heartbeats send once.
  - Keeps working while an emergency halt is in force.
seealso:
  - module: locus.infra.ops_probe
"""

EXAMPLES = r"""
- name: Record the heartbeat, tell ntfy on a change
  locus.infra.ops_notify:
    hosts: "{{ ops_hosts }}"
    sites: "{{ ops_sites }}"
    webhook_url: "{{ vault_ops_webhook_url }}"
    webhook_token: "{{ vault_ops_webhook_token }}"
"""

RETURN = r"""
ref_tag:
  description: The run's C(NOTIFY) REF-tag (null in check mode).
  returned: always
  type: str
  sample: LOCUS-NOTIFY20261206-004
state:
  description: V(up) or V(down).
  returned: always
  type: str
previous:
  description: The state of the previous run of this heartbeat (null on the first).
  returned: always
  type: str
state_changed:
  description: Whether the state differs from the previous run's.
  returned: always
  type: bool
down:
  description: "What is down, as C(<host>: <check>)."
  returned: always
  type: list
  elements: str
warn:
  description: What is past the warning threshold.
  returned: always
  type: list
  elements: str
counts:
  description: C(checks), C(down), C(warn).
  returned: always
  type: dict
checks:
  description: Every check - C(check), C(host), C(state) (C(up), C(warn), C(down)), C(passed), C(detail).
  returned: always
  type: list
  elements: dict
notification:
  description: C(wanted) (the state changed since the last delivery), C(sent), C(status), C(error), C(endpoint) (scheme, host, port).
  returned: always
  type: dict
"""
