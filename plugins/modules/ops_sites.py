# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# This module is implemented as an action plugin and runs on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: ops_sites
short_description: Ask many web sites at once from the controller - status and certificate expiry
version_added: 0.2.0
description:
  - Makes one HTTP(S) request per site from the controller, with the site's name as SNI and C(Host) (the request
    M(locus.infra.nginx_probe) makes), all sites in parallel threads in one task - a host with many sites costs one
    task, not one module process per site. Used by C(playbooks/ops_collect.yml) for the heartbeat, the status report
    and the health review.
  - The certificate is read, not verified (its expiry is what the reports need). Network trouble is an answer
    (the C(error) of its entry in RV(sites)), never a failed task; the task fails only on bad options.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.state_store
  - locus.infra.attributes
  - locus.infra.attributes.controller
options:
  sites:
    description:
      - The sites to ask, each with C(name), C(address), C(port), and optionally C(scheme) (V(https) by default, or
        V(http)), C(server_name) (SNI and Host; default C(name)), C(path) (default V(/)) and C(expected) (the
        statuses that count as answering; default V([200])).
    type: list
    elements: dict
    required: true
  host:
    description: The inventory host the sites belong to, copied into each answer. Default the task's host.
    type: str
  timeout:
    description: Seconds each request may take (connect, TLS, answer).
    type: float
    default: 5
attributes:
  check_mode:
    support: full
    details: Only asks; runs in check mode as usual.
  diff_mode:
    support: none
notes:
  - Runs while an emergency halt is in force - it only reads.
seealso:
  - module: locus.infra.nginx_probe
  - module: locus.infra.ops_notify
"""

EXAMPLES = r"""
- name: Ask the host's sites
  locus.infra.ops_sites:
    sites:
      - {name: www.example.org, address: 192.0.2.10, port: 443}
      - {name: app.example.org, address: 192.0.2.10, port: 443, path: /healthz, expected: [200, 204]}
      - {name: plain.example.org, address: 192.0.2.10, port: 80, scheme: http}
  register: answers

- name: Those not answering as expected
  ansible.builtin.debug:
    msg: "{{ answers.sites | rejectattr('status', 'in', [200, 204]) | map(attribute='name') | list }}"
"""

RETURN = r"""
sites:
  description: One answer per site, in the order given - C(host), C(name), C(status) (null when there was no HTTP
    answer), C(expected), C(error), C(tls), C(not_after) (the certificate's expiry, ISO 8601, over TLS).
  returned: success
  type: list
  elements: dict
  sample: [{"host": "web1", "name": "www.lab.example", "status": 200, "expected": [200], "error": null, "tls": true,
            "not_after": "2027-12-06T10:00:00Z"}]
"""
