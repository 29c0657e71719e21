# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# This module is implemented as an action plugin and runs on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: ops_report
short_description: Write an ARTIFACT-tagged operations report as Markdown and a self-contained HTML page with charts
version_added: 0.1.0
description:
  - Renders the status report or the health review from collected facts and writes it twice into O(dest) -
    C(<report>-<ARTIFACT tag>.md) and C(<report>-<ARTIFACT tag>.html). The HTML page inlines its CSS and its
    static SVG charts (drawn with pygal) and fetches nothing, so it opens offline.
  - Status report charts - node CPU, memory and disk against the policy's halt line, audit activity per day by
    outcome, agent spend against budget, certificate days left.
  - Status report backup coverage - every VM the inventory describes (C(data.backups.vms)) must be covered by an enabled
    backup job and have a backup younger than C(data.backups.max_age_hours); each VM's result is a C(VALIDATE) record
    (C(vm backed up on <host>), as C(playbooks/verify.yml) writes it), shown in a table with its tag and a chart of the
    backup ages against the limit.
  - The report's C(ARTIFACT) REF-tag is allocated in the same transaction that writes the files - a report
    that could not be written leaves no tag, and no tag lacks its report.
  - Text that came from hosts, sites or models is escaped in the HTML page.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.state_store
  - locus.infra.attributes
  - locus.infra.attributes.controller
options:
  report:
    description: Which report.
    type: str
    required: true
    choices: [status_report, health_review]
  data:
    description:
      - The facts. Both reports take C(scope), C(hosts) (as for M(locus.infra.ops_facts), plus C(roles) per host),
        C(sites) and C(facts) (the result of M(locus.infra.ops_facts)); the status report also C(proxmox) (the
        C(nodes) of M(locus.infra.proxmox_node_info), or null when not configured) and C(backups) - C(vms) (inventory host to
        VM name, the hosts that carry C(locus_vm)), C(max_age_hours), C(info) (the M(locus.infra.proxmox_backup_info)
        result), C(error) (why it could not be read) and C(configured) (false when no Proxmox VE API is set); the health review also
        C(findings), C(decision) (the guard's result), C(reviews) (registered M(locus.infra.agent) results),
        C(cross_check) (a M(locus.infra.agent_verify) result), C(backend) and C(since).
    type: dict
    required: true
  dest:
    description: Directory for the report files (created with mode 0750 if missing).
    type: path
    required: true
  policy:
    description: The guard policy file (thresholds drawn in the charts). Defaults to C(locus_policy), E(LOCUS_POLICY), the shipped policy.
    type: path
  cert_warn_days:
    description: The warning line of the certificate chart, in days.
    type: int
    default: 14
attributes:
  check_mode:
    support: full
    details: Renders the report but writes nothing and allocates no tag (neither the ARTIFACT nor the backup VALIDATE tags).
  diff_mode:
    support: none
notes:
  - Keeps working while an emergency halt is in force - reports are what an operator needs then.
  - On the embedded backend, the health review says plainly that the 135M model's verdict is advisory.
seealso:
  - module: locus.infra.ops_facts
  - module: locus.infra.ops_probe
"""

EXAMPLES = r"""
- name: Write the status report
  locus.infra.ops_report:
    report: status_report
    dest: /var/lib/locus/reports
    data:
      scope: all
      hosts: "{{ ops_hosts }}"
      sites: "{{ ops_sites }}"
      facts: "{{ ops_store_facts }}"
      proxmox: null
  register: report

- name: Where it is
  ansible.builtin.debug:
    msg: "{{ report.ref_tag }}: {{ report.html }}"
"""

RETURN = r"""
ref_tag:
  description: The report's C(ARTIFACT) REF-tag.
  returned: success, not in check mode
  type: str
  sample: LOCUS-ARTIFACT20261206-003
markdown:
  description: Path of the Markdown report.
  returned: success, not in check mode
  type: str
html:
  description: Path of the HTML report.
  returned: success, not in check mode
  type: str
state:
  description: The report's headline - V(up) or V(down) for the status report, the guard's decision for the health review.
  returned: success
  type: str
charts:
  description: Names of the charts in the HTML page (C(usage), C(certificates), C(backups), C(audit), C(spend)).
  returned: success, not in check mode
  type: list
  elements: str
backups:
  description: The C(vm backed up) checks of the status report, each C(check), C(host), C(passed), C(detail) and its VALIDATE C(ref_tag).
  returned: status report with C(data.backups), not in check mode
  type: list
  elements: dict
  sample: [{"check": "vm backed up", "host": "web1", "passed": true, "ref_tag": "LOCUS-VALIDATE20261206-004",
            "detail": {"vm": "web1", "vmid": 101, "jobs": ["daily"], "covered": true, "last_backup": "2026-12-06T02:31:07Z",
                       "age_hours": 5.2, "max_age_hours": 26.0, "error": ""}}]
"""
