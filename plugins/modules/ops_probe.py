#!/usr/bin/python
# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a managed host's health in one round trip (heartbeat, status report, health review)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: ops_probe
short_description: Read a host's health in one round trip - systemd, units, disk, memory, CPU, BGP, journal, K3s, Ollama
version_added: 0.1.0
description:
  - Reads, in one module run, what the operations playbooks (C(heartbeat.yml), C(status_report.yml),
    C(health_review.yml)) need from a managed host - systemd's state and failed units, the state of
    the units the host's roles own, disk and memory usage, CPU busy share, and where asked the BGP
    sessions of BIRD, errors in the journal since a point in time, the K3s nodes and the Ollama models.
  - Changes nothing, ever. A part that cannot be read is reported in RV(errors) and left null; the
    module itself fails only on bad options.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.attributes
options:
  units:
    description:
      - systemd units whose state to read (C(ssh), C(bird), C(nginx), C(k3s), C(ollama) ...).
    type: list
    elements: str
    default: []
  mounts:
    description: Mount points whose usage to read.
    type: list
    elements: path
    default: [/]
  cpu_sample:
    description: Seconds between the two C(/proc/stat) readings for RV(cpu_percent); V(0) skips it.
    type: float
    default: 0.2
  bird:
    description: Read the BGP sessions with C(birdc show protocols all).
    type: bool
    default: false
  journal_since:
    description:
      - Count journal records of priority C(err) and worse since this UNIX time (UTC seconds); V(0) means
        since boot. Not read when unset.
    type: int
  journal_own_sessions:
    description:
      - With O(journal_since), leave out of the count what sshd logged inside the collector's own SSH sessions - those
        accepted for this login's user from this login's address (C(SSH_CONNECTION)); they are counted in
        RV(journal.own_session) instead. Every SSH login of the collector (and of the rest of the controller's automation
        as the same user) would otherwise add its own errors, such as pam_env's complaint that C(/etc/default/locale) is
        missing on a host without that file, and the findings would change between two runs of an unchanged host.
      - Only errors inside an authenticated session of that same user and address are left out; errors before
        authentication (scanners, port probes, failed logins) and sessions of any other user or address always count.
        Without C(SSH_CONNECTION) (not over SSH, or C(become) that resets the environment) nothing is left out.
    type: bool
    default: true
  k3s_command:
    description:
      - Read the K3s nodes with this command followed by C(get nodes -o json), e.g. V([k3s, kubectl]).
        Not read when empty.
    type: list
    elements: str
    default: []
  ollama_url:
    description: Read the models with C(GET <ollama_url>/api/tags), e.g. V(http://127.0.0.1:11434). Not read when unset.
    type: str
  timeout:
    description: Seconds each command and request may take.
    type: int
    default: 10
  network_facts:
    description:
      - Also return the host's address facts as setup names them (C(all_ipv4_addresses), C(all_ipv6_addresses),
        C(default_ipv4), C(default_ipv6); from C(ip -j addr show) and C(ip route get), read as setup reads them) in
        RV(ansible_facts), so a play needing only those saves the round trip of C(ansible.builtin.setup).
      - When C(ip) cannot give them, nothing is returned and RV(errors) says so.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Only reads; runs in check mode as usual.
  diff_mode:
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
    details: Linux with systemd.
seealso:
  - module: locus.infra.ops_report
  - module: locus.infra.ops_notify
"""

EXAMPLES = r"""
- name: Read the health of a router
  locus.infra.ops_probe:
    units: [ssh, bird]
    bird: true
    journal_since: 0
  register: probe

- name: Show what is not active
  ansible.builtin.debug:
    msg: "{{ probe.units | rejectattr('active', 'equalto', 'active') | list }}"
"""

RETURN = r"""
system_state:
  description: Output of C(systemctl is-system-running) (V(running), V(degraded), ...).
  returned: always
  type: str
  sample: running
failed_units:
  description: Units systemd lists as failed.
  returned: always
  type: list
  elements: str
units:
  description: The state of each unit of O(units), in order.
  returned: always
  type: list
  elements: dict
  sample: [{name: bird, id: bird.service, load: loaded, active: active, sub: running}]
memory:
  description: C(total_bytes), C(available_bytes), C(used_percent) from C(/proc/meminfo).
  returned: always
  type: dict
disks:
  description: C(mount), C(total_bytes), C(used_bytes), C(used_percent) of each of O(mounts) (like C(df)).
  returned: always
  type: list
  elements: dict
cpu_percent:
  description: Busy share of all CPUs over O(cpu_sample) seconds.
  returned: always
  type: float
ansible_facts:
  description: With O(network_facts), the address facts as setup returns them (only C(interface), C(address) and
    C(gateway) in C(default_ipv4) and C(default_ipv6)).
  returned: when O(network_facts) is true and C(ip) answered
  type: dict
  sample: {"all_ipv4_addresses": ["10.77.0.21"], "all_ipv6_addresses": ["fd77::21", "fe80::1c2f:aff:fe3b:1d2e"],
           "default_ipv4": {"interface": "host0", "address": "10.77.0.21", "gateway": "10.77.0.1"}, "default_ipv6": {}}
bgp:
  description:
    - The BGP sessions (C(name), C(state), C(bgp_state), C(neighbor), C(neighbor_as), C(since), C(info), and
      C(channels) with C(family), C(state), C(imported), C(exported)); null unless O(bird).
  returned: always
  type: list
  elements: dict
journal:
  description:
    - C(count) of error records since O(journal_since) and C(units) (C(unit), C(count), C(last) message, cut to 200 characters),
      null unless O(journal_since).
  returned: always
  type: dict
  sample: {"count": 1, "units": [{"unit": "ssh.service", "count": 1, "last": "error: kex_exchange_identification: Connection closed by remote host"}],
           "own_session": 2}
  contains:
    count:
      description: Error records counted.
      type: int
    units:
      description: The units with the most of them (at most 20), most first.
      type: list
      elements: dict
    own_session:
      description: Error records left out by O(journal_own_sessions) (logged by sshd inside the collector's own sessions).
      type: int
k3s_nodes:
  description: C(name), C(ready), C(roles), C(version) of each K3s node; null unless O(k3s_command).
  returned: always
  type: list
  elements: dict
ollama_models:
  description: C(name), C(size_bytes), C(parameter_size), C(quantization), C(modified_at) of each model; null unless O(ollama_url).
  returned: always
  type: list
  elements: dict
errors:
  description: What could not be read, and why.
  returned: always
  type: list
  elements: str
"""

import os
import pwd

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.locus.infra.plugins.module_utils import _ops_probe as op


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


ARGUMENT_SPEC = {
    "units": {"type": "list", "elements": "str", "default": []},
    "mounts": {"type": "list", "elements": "path", "default": ["/"]},
    "cpu_sample": {"type": "float", "default": 0.2},
    "bird": {"type": "bool", "default": False},
    "journal_since": {"type": "int"},
    "journal_own_sessions": {"type": "bool", "default": True},
    "k3s_command": {"type": "list", "elements": "str", "default": []},
    "ollama_url": {"type": "str"},
    "timeout": {"type": "int", "default": 10},
    "network_facts": {"type": "bool", "default": False},
}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)

    def run(argv):
        return module.run_command(argv, environ_update={"LC_ALL": "C", "SYSTEMD_PAGER": ""})

    def fetch(url, timeout):
        return open_url(url, timeout=timeout, use_proxy=False).read()

    def login():
        return op.own_login(os.environ, os.environ.get("SUDO_USER") or pwd.getpwuid(os.getuid()).pw_name)

    module.exit_json(**op.probe(module.params, run, _read, fetch, login))


if __name__ == "__main__":
    main()
