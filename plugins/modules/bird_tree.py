#!/usr/bin/python
# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply a whole BIRD 2 configuration tree: stage, bird -p, configure check, configure timeout, sessions, confirm or undo."""

from __future__ import annotations

DOCUMENTATION = r"""
module: bird_tree
short_description: Apply a complete BIRD 2 configuration as one tree, with validation, session check and rollback
version_added: 0.2.0
description:
  - Owns the main file O(main_file) and every file below the directory O(tree) inside O(conf_dir).
    The desired tree is given in full (O(files), O(secret_files)); files in O(tree) that are not listed
    are removed. C(changed) comes from real differences (content, mode, group) between the desired and
    the live files, never from BIRD's replies (C(birdc configure) says C(Reconfigured) even when nothing changed).
  - Paths inside the configuration (C(include)) must be relative to O(conf_dir), so a staged copy of the
    tree is a complete configuration and is parsed exactly as it will run.
  - 'A changed tree is first staged in a directory of its own below O(stage_dir) and parsed there by
    C(bird -p -c) and by the running daemon (C(birdc configure check), as BIRD''s own user); a rejection
    fails the task before anything is written, naming the live file with line and column.'
  - 'Then the live tree is copied to O(rollback_dir), the new files are written, C(birdc configure check)
    runs in place and C(birdc configure timeout) loads them: BIRD returns to the previous configuration by
    itself after O(configure_timeout) seconds unless confirmed, also when the controller dies. The module
    waits up to O(confirm_wait) seconds for the BGP sessions (O(confirm_sessions)) and then
    C(birdc configure confirm) - or C(birdc configure undo), puts the previous files back, waits for the
    sessions that were up before and fails naming the stage (C(check), C(configure), C(sessions),
    C(confirm)) and the reason.'
  - A rollback copy left by a run that died before confirming is found by the next run, which loads the
    tree again (reported as a change, also in check mode) and rolls back to that copy if it fails.
  - Runs under an exclusive lock per host, so concurrent runs do not interleave.
  - While locus.infra is halted (C(locus halt)) the task fails before contacting the host.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.attributes
options:
  conf_dir:
    description: BIRD's configuration directory; the tree's relative paths start here.
    type: path
    default: /etc/bird
  main_file:
    description: The main configuration file, relative to O(conf_dir) (what the daemon loads).
    type: str
    default: bird.conf
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
  secret_files:
    description:
      - Files whose content is secret (the TCP-MD5 passwords). Never shown in diffs or results - a diff
        shows a digest instead.
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
    description: Octal mode of every file (directories get the same with search bits).
    type: raw
    default: "0640"
  group:
    description: Group of every file and directory (BIRD's daemon user reads them).
    type: str
    default: bird
  sessions:
    description: The BGP sessions (BIRD protocol names) of the new tree that should come up - its enabled neighbours.
    type: list
    elements: str
    default: []
  confirm_sessions:
    description:
      - Which sessions must be Established before the change is confirmed; otherwise it is undone.
      - C(established) - those of O(sessions) that were Established before the change (a change must not break
        what works; the others get the same time but do not block). C(all) - every one of O(sessions).
        C(none) - confirm as soon as BIRD has loaded the configuration.
    type: str
    choices: [established, all, none]
    default: established
  confirm_wait:
    description: Seconds to wait for the sessions after loading a change.
    type: float
    default: 60
  configure_timeout:
    description: BIRD's own undo timer (C(configure timeout)) in seconds; at least O(confirm_wait) + 30.
    type: int
    default: 180
  stage_dir:
    description: Parent of the staging directories (one per run, removed afterwards); tmpfs, readable by O(group).
    type: path
    default: /run/locus-bird2
  rollback_dir:
    description: Where the last confirmed tree is kept while a change is in flight. Default C(<conf_dir>/.locus-rollback).
    type: path
  bird_binary:
    description: The C(bird) executable (C(bird -p) parses a configuration).
    type: path
    default: /usr/sbin/bird
  birdc_binary:
    description: The C(birdc) executable.
    type: path
    default: /usr/sbin/birdc
  control_socket:
    description: BIRD's control socket; unset - C(birdc)'s default (C(/run/bird/bird.ctl) on Debian).
    type: path
  validate_in_check_mode:
    description:
      - In check mode, stage a changed tree and let C(bird -p) and the running BIRD parse it, so check mode also
        predicts a rejection. Turn off when BIRD is not installed yet (an earlier task that check mode skipped
        would install it).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Reports the differences and, with O(validate_in_check_mode), whether BIRD would accept the tree; loads nothing.
  diff_mode:
    support: full
    details: One diff per changed file, headed by its live path; secret files show a digest only.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
    details: Linux with BIRD 2 (C(bird), C(birdc)) and Python 3.8 or later; runs as root.
notes:
  - The role C(locus.infra.bird2) renders the tree from the host's C(bgp) data and calls this module.
  - Two real runs against the same host at the same time wait for each other (a lock); check-mode runs stage in
    directories of their own and may run side by side.
"""

EXAMPLES = r"""
- name: Apply the BIRD tree, confirm once both sessions are up
  locus.infra.bird_tree:
    files:
      - path: bird.conf
        content: "{{ lookup('ansible.builtin.template', 'bird.conf.j2') }}"
      - path: locus/bgp.conf
        content: "{{ lookup('ansible.builtin.template', 'bgp.conf.j2') }}"
    secret_files:
      - path: locus/secrets.conf
        content: 'define locus_password_rtr2_v4 = "{{ vault_rtr2_password }}";'
    sessions: [rtr2_v4, rtr2_v6]
    confirm_sessions: all
    confirm_wait: 60
    configure_timeout: 180
"""

RETURN = r"""
changes:
  description: The files that differ (C(added), C(changed), C(removed)), by live path.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/etc/bird/bird.conf", "action": "changed", "what": ["content"]}]
pending:
  description: An earlier run left its change unconfirmed (its rollback copy was there); the tree is loaded again.
  returned: always
  type: bool
stage:
  description: Where a failure happened - C(validate), C(parse), C(check), C(configure), C(sessions), C(confirm) or C(apply).
  returned: failure
  type: str
parse_output:
  description: BIRD's messages about a rejected tree, with staged paths shown as the live paths (file:line:col).
  returned: when BIRD rejected the tree
  type: str
sessions_before:
  description: The BGP sessions that were Established before the change was loaded.
  returned: when the tree was loaded
  type: list
  elements: str
sessions_up:
  description: The BGP sessions Established when the change was confirmed (or given up).
  returned: when the tree was loaded
  type: list
  elements: str
sessions_not_up:
  description: Sessions of O(sessions) that were not Established yet when the change was confirmed (they did not block it).
  returned: success, when the tree was loaded
  type: list
  elements: str
rollback:
  description: What the rollback did - C(restored) (the previous files are back), C(undone) (C(configure undo)),
    C(timer_expired) (BIRD's own timer had undone it), C(sessions_back) (Established again afterwards).
  returned: when a loaded change was rolled back
  type: dict
log:
  description: The transaction's steps in order.
  returned: when the tree was loaded or validated
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.locus.infra.plugins.module_utils import _bird_tree as bt
from ansible_collections.locus.infra.plugins.module_utils._config_tree import run_module

ARGUMENT_SPEC = {
    "conf_dir": {"type": "path", "default": "/etc/bird"},
    "main_file": {"type": "str", "default": "bird.conf"},
    "tree": {"type": "str", "default": "locus"},
    "files": {"type": "list", "elements": "dict", "default": [], "options": {
        "path": {"type": "str", "required": True},
        "content": {"type": "str", "required": True},
    }},
    "secret_files": {"type": "list", "elements": "dict", "default": [], "no_log": False, "options": {
        "path": {"type": "str", "required": True},
        "content": {"type": "str", "required": True, "no_log": True},
    }},
    "mode": {"type": "raw", "default": "0640"},
    "group": {"type": "str", "default": "bird"},
    "sessions": {"type": "list", "elements": "str", "default": []},
    "confirm_sessions": {"type": "str", "choices": ["established", "all", "none"], "default": "established"},
    "confirm_wait": {"type": "float", "default": 60},
    "configure_timeout": {"type": "int", "default": 180},
    "stage_dir": {"type": "path", "default": "/run/locus-bird2"},
    "rollback_dir": {"type": "path"},
    "bird_binary": {"type": "path", "default": "/usr/sbin/bird"},
    "birdc_binary": {"type": "path", "default": "/usr/sbin/birdc"},
    "control_socket": {"type": "path"},
    "validate_in_check_mode": {"type": "bool", "default": True},
}


def main():
    run_module(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True), bt.run)


if __name__ == "__main__":
    main()
