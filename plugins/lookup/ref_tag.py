# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: ref_tag
short_description: A REF-tag for this task, allocated once per run
version_added: 0.1.0
description:
  - Returns a REF-tag C(LOCUS-{ACTION}{YYYYMMDD}-{SEQ}) for each term (an action name) and
    records it in the audit trail.
  - Ansible re-evaluates a lookup every time the variable holding it is templated. This lookup
    allocates B(once per run, task, host, term and subject) and returns the same tag on every
    later evaluation, so a tag is never spent by templating alone.
  - Outside a task (for example in play vars templated by the controller) the memo key has no
    task part, so the tag is shared by the whole run for that host, term and subject.
  - To keep a tag across tasks, use the M(locus.infra.ref_tag) module with C(register).
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.state_store.plugin_options
options:
  _terms:
    description: Actions to allocate tags for (C(TASK), C(DEPLOY), C(VALIDATE) …; not C(HALT) or C(APPROVAL), which only the guard writes).
    required: true
    type: list
    elements: str
  subject:
    description: What the tag is about. Defaults to the inventory host name.
    type: str
"""

EXAMPLES = r"""
- name: Deploy with a tag in the commit message
  ansible.builtin.copy:
    dest: /etc/motd
    content: "managed by locus ({{ lookup('locus.infra.ref_tag', 'DEPLOY', subject='motd') }})\n"
"""

RETURN = r"""
_raw:
  description: One REF-tag per term.
  type: list
  elements: str
"""

import json

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

from ansible_collections.locus.infra.plugins.plugin_utils import _run
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard
from ansible_collections.locus.infra.plugins.plugin_utils.store import _refs, _store


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        host = variables.get("inventory_hostname", "localhost")
        subject = self.get_option("subject") or host
        task = _run.current_task_uuid()
        try:
            actions = [_refs.check_action(term) for term in terms]
            for action in actions:
                _guard.check_generic_record(action, {})
            store = _store.open_store(url=self.get_option("state_url"), state_dir=self.get_option("state_dir"))
        except (_refs.RefTagError, _store.StoreError, _guard.GuardError) as exc:
            raise AnsibleError(f"locus.infra.ref_tag lookup: {exc}") from exc
        try:
            tags = []
            for action in actions:
                key = json.dumps([task, host, action, subject])
                data = {"via": "lookup", "host": host, "task_uuid": task, "job": _run.run_id()}
                tag, _reused = store.memoised(
                    f"ref_tag:{_run.run_id()}", key, lambda tx, a=action, d=data: tx.record(a, subject, d)
                )
                tags.append(tag)
            return tags
        except _store.StoreError as exc:
            raise AnsibleError(f"locus.infra.ref_tag lookup: {exc}") from exc
        finally:
            store.close()
