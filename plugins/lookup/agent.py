# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: agent
short_description: Ask an AI agent from a template, once per run
version_added: 0.1.0
description:
  - Puts each term (a task) to an agent O(role) and returns its answer - the parsed,
    schema-valid value with O(schema), else the text - exactly like M(locus.infra.agent)
    (lanes, budget, cache, audit).
  - Ansible re-evaluates a lookup every time the variable holding it is templated. This lookup
    is memoised per run by a hash of its content (term and every option but the key), so
    templating it again in the same run neither calls a model nor writes another record.
  - In check mode (C(ansible_check_mode)) it never calls a model; without a cached answer it
    returns null.
  - Prefer M(locus.infra.agent) with C(register) when the answer is used in several tasks.
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.agent
  - locus.infra.state_store.plugin_options
options:
  _terms:
    description: The tasks to ask.
    required: true
    type: list
    elements: str
  role:
    description: The agent role.
    type: str
    default: orchestrator
    choices: [orchestrator, research, security, infrastructure, network, devops]
  context:
    description: Facts for the agent, passed as untrusted data.
    type: raw
  schema:
    description: JSON schema the answer must match.
    type: dict
"""

EXAMPLES = r"""
- name: A one-line summary in a message
  ansible.builtin.debug:
    msg: "{{ lookup('locus.infra.agent', 'Summarise the state in one sentence.', role='devops', context=facts) }}"

- name: Structured answer
  ansible.builtin.set_fact:
    risk: >-
      {{ lookup('locus.infra.agent', 'Rate the risk of this change.', role='security', context=diff,
                schema={'type': 'object', 'required': ['risk'], 'properties': {'risk': {'enum': ['low', 'high']}}}).risk }}
"""

RETURN = r"""
_raw:
  description: One answer per term (parsed JSON with O(schema), else text; null in check mode without a cached answer).
  type: list
  elements: raw
"""

import hashlib
import json

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

from ansible_collections.locus.infra.plugins.plugin_utils import _redact, _run
from ansible_collections.locus.infra.plugins.plugin_utils.agents import _agent
from ansible_collections.locus.infra.plugins.plugin_utils.store import _store

_OPTION_NAMES = ("role", "context", "schema", *_agent.COMMON_SPEC)


def memo_key(term, options):
    """Content hash of one lookup call: the term and every option except secrets."""
    content = {k: v for k, v in options.items() if k not in _agent.SECRET_OPTIONS}
    content["task"] = term
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        check_mode = bool(variables.get("ansible_check_mode"))
        options = {name: self.get_option(name) for name in _OPTION_NAMES}
        try:
            store = _store.open_store(url=self.get_option("state_url"), state_dir=self.get_option("state_dir"))
        except _store.StoreError as exc:
            raise AnsibleError(f"locus.infra.agent lookup: {exc}") from exc
        scope = f"agent:{_run.run_id()}:{'check' if check_mode else 'run'}"
        answers = []
        try:
            for term in terms:
                if not isinstance(term, str) or not term.strip():
                    raise AnsibleError(f"locus.infra.agent lookup: each term must be a non-empty task, got {term!r}")
                key = memo_key(term, options)
                kept = store.memo(scope, key)
                if kept is not None:
                    answers.append(json.loads(kept))
                    continue
                try:
                    result = _agent.run_agent({**options, "task": term}, store, check_mode=check_mode, job=_run.run_id())
                except _agent.AgentError as exc:
                    raise AnsibleError(f"locus.infra.agent lookup ({exc.kind}, {exc.result.get('ref_tag')}): {exc}") from None
                # Concurrent forks templating the same lookup agree on the first stored answer. It is
                # kept (and so answered) with any secret it echoes masked: the memo is in the store.
                value, _reused = store.memoised(
                    scope, key, lambda tx, r=result: json.dumps(_redact.mask_strings(r["output"], [options.get("api_key")])))
                answers.append(json.loads(value))
            return answers
        except _store.StoreError as exc:
            raise AnsibleError(f"locus.infra.agent lookup: {exc}") from exc
        finally:
            store.close()
