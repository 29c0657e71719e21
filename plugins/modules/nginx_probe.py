#!/usr/bin/python
# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Request a site from a given address with its name as SNI and Host (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: nginx_probe
short_description: Request a web site from one address with the site's name as TLS SNI and Host header
version_added: 0.1.0
description:
  - Connects to O(address) and O(port), sends O(server_name) as TLS SNI and C(Host) header and
    requests O(path) - the way a client that resolved the name to that address would, without
    DNS or C(/etc/hosts).
  - Returns the status, the response headers, the start of the body and the server
    certificate's SHA-256 digest. Network trouble is a result (RV(error)), not a failure, so a
    playbook can judge and record it; the task fails only on bad arguments, or when
    O(expect_status) is given and not met.
  - With O(ca_pem) the certificate chain and the name are verified against it (give a
    self-signed site certificate to pin it); without it the certificate is read but not verified.
  - Read-only; delegate it to C(localhost) to see a site as the network sees it.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.attributes
options:
  address:
    description: IP address (or name) to connect to.
    type: str
    required: true
  port:
    description: TCP port. Default 443 for C(https), 80 for C(http).
    type: int
  scheme:
    description: Protocol.
    type: str
    choices: [http, https]
    default: https
  server_name:
    description: Name sent as SNI and C(Host). Default O(address).
    type: str
  path:
    description: Request path (with query).
    type: str
    default: /
  method:
    description: HTTP method.
    type: str
    default: GET
  headers:
    description: Extra request headers (for example C(Authorization)).
    type: dict
    default: {}
  ca_pem:
    description: PEM certificate(s) to verify the server against (chain and name).
    type: str
  timeout:
    description: Seconds for the connection and each read.
    type: float
    default: 5
  expect_status:
    description: Fail unless the status is one of these (default - never fail on the answer).
    type: list
    elements: int
attributes:
  check_mode:
    support: full
    details: Read-only; runs in check mode as well.
  diff_mode:
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
seealso:
  - module: locus.infra.nginx_tree
notes:
  - C(playbooks/verify.yml) uses it to check every site of the role C(locus.infra.nginx).
"""

EXAMPLES = r"""
- name: Ask web1 for www.example.org as a client on the network would
  locus.infra.nginx_probe:
    address: 192.0.2.10
    server_name: www.example.org
    ca_pem: "{{ lookup('ansible.builtin.file', 'www.example.org.crt') }}"
  delegate_to: localhost
  register: www

- name: It is up, with HSTS
  ansible.builtin.assert:
    that:
      - www.status == 200
      - "'strict-transport-security' in www.headers"
"""

RETURN = r"""
status:
  description: HTTP status code (null when no answer came).
  returned: always
  type: int
  sample: 200
reason:
  description: HTTP reason phrase.
  returned: always
  type: str
headers:
  description: Response headers, names in lower case.
  returned: always
  type: dict
  sample: {"strict-transport-security": "max-age=31536000; includeSubDomains"}
body:
  description: The first 4096 bytes of the body, as text.
  returned: always
  type: str
certificate:
  description: C(sha256) of the server certificate (DER), the TLS C(version) and C(not_after) (UTC, C(YYYY-MM-DDTHH:MM:SSZ)); null for C(http).
  returned: always
  type: dict
error:
  description: Why no answer came (connection refused, TLS handshake rejected, timeout ...), else null.
  returned: always
  type: str
  sample: "SSLError: [SSL: TLSV1_UNRECOGNIZED_NAME] tlsv1 unrecognized name"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.locus.infra.plugins.module_utils import _nginx_tree as nt


def main():
    module = AnsibleModule(
        argument_spec={
            "address": {"type": "str", "required": True},
            "port": {"type": "int"},
            "scheme": {"type": "str", "choices": ["http", "https"], "default": "https"},
            "server_name": {"type": "str"},
            "path": {"type": "str", "default": "/"},
            "method": {"type": "str", "default": "GET"},
            "headers": {"type": "dict", "default": {}},
            "ca_pem": {"type": "str"},
            "timeout": {"type": "float", "default": 5},
            "expect_status": {"type": "list", "elements": "int"},
        },
        supports_check_mode=True,
    )
    p = module.params
    port = p["port"] or (443 if p["scheme"] == "https" else 80)
    result = nt.probe(p["address"].strip("[]"), port, p["scheme"], p["server_name"], p["path"], p["method"],
                      p["headers"], p["timeout"], p["ca_pem"])
    result["changed"] = False
    if p["expect_status"] and result["status"] not in p["expect_status"]:
        module.fail_json(msg=f"{p['scheme']}://{p['server_name'] or p['address']}{p['path']} via {p['address']}:{port} gave "
                             f"{result['status'] if result['status'] is not None else result['error']}, expected {p['expect_status']}",
                         **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
