# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# This module is implemented as an action plugin and runs on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: ops_facts
short_description: Operations facts from the state store - audit activity, chain, agent spend, halts, approvals, health findings
version_added: 0.1.0
description:
  - Reads what the status report and the health review need from the state store - the audit trail's
    activity over the last O(days) days (runs, task outcomes per day, C(VALIDATE) results, halts and
    approvals), the whole hash chain verified, agent spend today against the policy's budgets, the
    emergency halt and the guard decisions still waiting for a human, and the last health review.
  - With O(hosts) (the results of M(locus.infra.ops_probe) per host) and O(sites) it also returns the
    deterministic health findings, each naming its rule, host and evidence - failed units, journal
    errors, BGP sessions down, sites not answering, certificates expiring, the chain not verifying,
    budgets nearly spent - and the host resources for the guard's threshold rules.
  - Read-only; keeps working while an emergency halt is in force.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.state_store
  - locus.infra.attributes
  - locus.infra.attributes.controller
options:
  days:
    description: How many UTC days (today included) the audit and spend figures cover (1..366).
    type: int
    default: 7
  verify_chain:
    description: Verify the whole audit chain (RV(chain)).
    type: bool
    default: true
  policy:
    description: The guard policy file (budgets, thresholds). Defaults to C(locus_policy), E(LOCUS_POLICY), the shipped policy.
    type: path
  hosts:
    description:
      - Per host name a mapping with C(probe) (the registered result of M(locus.infra.ops_probe), or the
        unreachable result), C(expect_units) (units its roles own) and C(expect_bgp) (session names that must
        be up). Findings are returned only when given.
    type: dict
  sites:
    description: Site probe results - C(host), C(name), C(status), C(expected), C(error), C(days_left), C(not_after).
    type: list
    elements: dict
    default: []
  cert_warn_days:
    description: A certificate expiring within this many days is a C(cert_expiring) finding.
    type: int
    default: 14
  budget_warn_percent:
    description: Spend at or past this share of a budget is a C(budget_nearly_spent) finding. Defaults to the policy's warning threshold.
    type: float
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: locus.infra.ops_probe
  - module: locus.infra.ops_report
"""

EXAMPLES = r"""
- name: Audit, spend and guard facts of the last 7 days
  locus.infra.ops_facts:
    days: 7
  register: facts

- name: Deterministic findings from the host probes
  locus.infra.ops_facts:
    hosts: "{{ probes }}"
    sites: "{{ site_answers }}"
  register: health
"""

RETURN = r"""
audit:
  description:
    - C(days), C(since), C(records), C(by_action), C(tasks_per_day) (C(day) and counts of C(ok), C(changed), C(failed),
      C(unreachable), C(skipped)), C(runs), C(failed_runs), C(validate) (checks passed/failed, guard decisions) and
      C(guard) (halts, resumes, approvals issued/used/refused).
  returned: always
  type: dict
chain:
  description: The chain verified - C(ok), C(count), C(last_tag) and, when it does not verify, C(problem).
  returned: always
  type: dict
spend:
  description: C(day), C(today_usd), C(daily_budget_usd), C(today_percent), C(agents) (per agent C(usd), C(budget_usd), C(used_percent), C(calls)), C(per_day).
  returned: always
  type: dict
guard:
  description: C(halt) (the emergency halt state) and C(waiting_approval) (decisions needing a human, not yet approved).
  returned: always
  type: dict
last_review:
  description: C(tag), C(ts) and C(epoch) of the last health review report, or null.
  returned: always
  type: dict
policy:
  description: The policy applied (source, sha256, thresholds).
  returned: always
  type: dict
findings:
  description: The deterministic findings, each C(rule), C(message) and C(evidence) (with C(host)).
  returned: when O(hosts) is given
  type: list
  elements: dict
  sample: [{rule: unit_failed, message: bird on rtr1 is inactive, evidence: {host: rtr1, unit: bird, active: inactive}}]
resources:
  description: Memory, disk and CPU usage per host, in the shape the guard's O(locus.infra.guard#module:resources) takes.
  returned: when O(hosts) is given
  type: dict
"""
