#!/usr/bin/python
# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply a whole nginx configuration tree: stage, test in place, reload, probe, roll back."""

from __future__ import annotations

DOCUMENTATION = r"""
module: nginx_tree
short_description: Apply a complete nginx configuration as one tree, with test, probe and rollback
version_added: 0.1.0
description:
  - Owns the main file O(main_file) and every file below the directory O(tree) inside O(conf_dir).
    The desired tree is given in full (O(files), O(secret_files), O(htpasswd)); files in O(tree)
    that are not listed are removed. C(changed) comes from real differences (content, mode,
    group) between the desired and the live files, never from nginx's output.
  - Paths inside the configuration (includes, certificates, password files) must be relative to
    O(conf_dir); nginx resolves them against the directory of the file given with C(-c). So a
    staged copy is a complete configuration, and C(nginx -t) on it tests exactly what goes live,
    includes and all (a C(validate) on a single temporary file still includes the live files).
  - 'A changed tree is applied as a transaction: the new tree is staged next to the live one and
    tested there; the live tree is moved aside and the staged one into place and tested again in
    place; nginx is reloaded (started if it was stopped) and the module waits for a new generation
    of worker processes (C(systemctl reload) succeeds even when nginx then rejects the new
    configuration); then every O(probes) item is requested over HTTP(S). Any failure puts the
    previous tree back, makes nginx run it again, and fails the task naming the stage
    (C(test), C(reload), C(probe)) and nginx''s own messages. A broken configuration is never left live.'
  - A reload that fails only because the running nginx holds a conflicting listening socket
    (for example C(0.0.0.0:80) while the new tree listens on C(10.0.0.5:80), which Linux refuses
    to bind in the same process) is followed by a restart, see O(restart_on_bind_conflict).
  - Runs under an exclusive lock per host, so concurrent runs do not interleave.
  - While locus.infra is halted (C(locus halt)) the task fails before contacting the host.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.attributes
options:
  conf_dir:
    description: nginx's configuration directory; the tree's relative paths start here.
    type: path
    default: /etc/nginx
  main_file:
    description: The main configuration file, relative to O(conf_dir) (what the service loads).
    type: str
    default: nginx.conf
  tree:
    description: Directory below O(conf_dir) that this module owns completely.
    type: str
    default: locus
  files:
    description: Files of the tree (and the main file), with their content.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path relative to O(conf_dir) - O(main_file) or a path inside O(tree).
        type: str
        required: true
      content:
        description: The file's content.
        type: str
        required: true
      mode:
        description: Octal mode.
        type: raw
        default: "0644"
  secret_files:
    description:
      - Files whose content is secret (TLS private keys). Never shown in diffs or results - a
        diff shows a digest instead.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path relative to O(conf_dir), inside O(tree).
        type: str
        required: true
      content:
        description: The file's content.
        type: str
        required: true
      mode:
        description: Octal mode.
        type: raw
        default: "0600"
  htpasswd:
    description:
      - Password files for C(auth_basic), built on the host with SHA-512 C(crypt) (C(openssl passwd -6)),
        which nginx checks through the C library. An existing entry is kept while its password still
        matches, so a second run changes nothing.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Path relative to O(conf_dir), inside O(tree).
        type: str
        required: true
      mode:
        description: Octal mode (nginx's worker processes read the file).
        type: raw
        default: "0640"
      group:
        description: Group of the file (nginx's worker user).
        type: str
        default: www-data
      users:
        description: The users, each with C(name) and C(password) or C(password_hash) (a crypt string).
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: User name.
            type: str
            required: true
          password:
            description: Password in plain text (hashed on the host).
            type: str
          password_hash:
            description: A ready C(crypt) hash (for example C($6$...)), used as is.
            type: str
  probes:
    description:
      - Requests that must succeed after a reload. Each is sent to O(probes[].address) with
        O(probes[].server_name) as TLS SNI and C(Host) header; the certificate is not verified (the
        probe checks what is served, not trust).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Label used in messages.
        type: str
      address:
        description: IP address to connect to.
        type: str
        required: true
      port:
        description: TCP port.
        type: int
        required: true
      scheme:
        description: C(http) or C(https).
        type: str
        choices: [http, https]
        default: https
      server_name:
        description: Name sent as SNI and C(Host).
        type: str
      path:
        description: Request path.
        type: str
        default: /
      status:
        description: Acceptable status codes.
        type: list
        elements: int
        default: [200]
  nginx_binary:
    description: The nginx executable.
    type: path
    default: /usr/sbin/nginx
  service:
    description: systemd unit of nginx.
    type: str
    default: nginx
  error_log:
    description: nginx's error log (the tree's C(error_log)); its new lines explain a failed reload.
    type: path
    default: /var/log/nginx/error.log
  reload_timeout:
    description: Seconds to wait for new worker processes after a reload or start.
    type: float
    default: 10
  probe_timeout:
    description: Seconds each probe may keep retrying until it gets an expected status.
    type: float
    default: 10
  restart_on_bind_conflict:
    description:
      - Restart nginx when a reload was refused only because of listening sockets the running
        process holds (C(Address already in use)). The restart is also tested and rolled back.
    type: bool
    default: true
  test_in_check_mode:
    description:
      - In check mode, stage the changed tree in a private temporary directory and C(nginx -t) it,
        so check mode also predicts a rejection. Turn off when files the tree refers to are only
        created by earlier tasks that check mode skipped.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Reports the differences and, with O(test_in_check_mode), whether nginx would accept the tree; changes nothing.
  diff_mode:
    support: full
    details: One diff per changed file, headed by its live path; secret files show a digest only.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
    details: Linux with systemd and Python 3.8 or later; needs C(openssl) for O(htpasswd).
seealso:
  - module: locus.infra.nginx_probe
notes:
  - The role C(locus.infra.nginx) renders the tree from C(nginx_sites) and calls this module.
"""

EXAMPLES = r"""
- name: Apply the nginx tree
  locus.infra.nginx_tree:
    files:
      - path: nginx.conf
        content: "{{ lookup('ansible.builtin.template', 'nginx.conf.j2') }}"
      - path: locus/sites/www.example.org.conf
        content: "{{ lookup('ansible.builtin.template', 'site.conf.j2') }}"
    secret_files:
      - path: locus/tls/www.example.org.key
        content: "{{ vault_www_key }}"
    htpasswd:
      - path: locus/auth/admin.example.org.htpasswd
        users:
          - name: alice
            password: "{{ vault_alice_password }}"
    probes:
      - address: 192.0.2.10
        port: 443
        server_name: www.example.org
        status: [200]
"""

RETURN = r"""
changes:
  description: The files that differ (C(added), C(changed), C(removed)), by live path.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/etc/nginx/locus/sites/app.conf", "action": "changed", "what": ["content"]}]
service_action:
  description: What was done to nginx - C(reloaded), C(restarted) or C(started).
  returned: when the tree changed (not in check mode)
  type: str
probes:
  description: The probe results (status, headers, certificate digest, error, passed).
  returned: when the tree changed (not in check mode), or a probe failed
  type: list
  elements: dict
stage:
  description: Where a failure happened - C(validate), C(test), C(reload), C(probe) or C(apply).
  returned: failure
  type: str
test_output:
  description: nginx's output of C(nginx -t), with staged paths shown as the live paths.
  returned: when nginx rejected the tree
  type: str
rollback:
  description: What the rollback did (the previous tree restored, how nginx runs it again).
  returned: when the live tree had been replaced and was rolled back
  type: dict
log:
  description: The transaction's steps in order.
  returned: when the tree changed (not in check mode)
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.locus.infra.plugins.module_utils import _nginx_tree as nt
from ansible_collections.locus.infra.plugins.module_utils._config_tree import run_module

_LIST = {"type": "list", "elements": "dict", "default": []}
ARGUMENT_SPEC = {
    "conf_dir": {"type": "path", "default": "/etc/nginx"},
    "main_file": {"type": "str", "default": "nginx.conf"},
    "tree": {"type": "str", "default": "locus"},
    "files": {**_LIST, "options": {
        "path": {"type": "str", "required": True},
        "content": {"type": "str", "required": True},
        "mode": {"type": "raw", "default": "0644"},
    }},
    "secret_files": {**_LIST, "no_log": False, "options": {
        "path": {"type": "str", "required": True},
        "content": {"type": "str", "required": True, "no_log": True},
        "mode": {"type": "raw", "default": "0600"},
    }},
    "htpasswd": {**_LIST, "no_log": False, "options": {
        "path": {"type": "str", "required": True},
        "mode": {"type": "raw", "default": "0640"},
        "group": {"type": "str", "default": "www-data"},
        "users": {"type": "list", "elements": "dict", "required": True, "options": {
            "name": {"type": "str", "required": True},
            "password": {"type": "str", "no_log": True},
            "password_hash": {"type": "str", "no_log": False},
        }},
    }},
    "probes": {**_LIST, "options": {
        "name": {"type": "str"},
        "address": {"type": "str", "required": True},
        "port": {"type": "int", "required": True},
        "scheme": {"type": "str", "choices": ["http", "https"], "default": "https"},
        "server_name": {"type": "str"},
        "path": {"type": "str", "default": "/"},
        "status": {"type": "list", "elements": "int", "default": [200]},
    }},
    "nginx_binary": {"type": "path", "default": "/usr/sbin/nginx"},
    "service": {"type": "str", "default": "nginx"},
    "error_log": {"type": "path", "default": "/var/log/nginx/error.log"},
    "reload_timeout": {"type": "float", "default": 10},
    "probe_timeout": {"type": "float", "default": 10},
    "restart_on_bind_conflict": {"type": "bool", "default": True},
    "test_in_check_mode": {"type": "bool", "default": True},
}


def main():
    run_module(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True), nt.run)


if __name__ == "__main__":
    main()
