#!/usr/bin/python
# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pull or remove an Ollama model (logic in module_utils/_ollama_model.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: ollama_model
short_description: Pull or remove a model on an Ollama server, idempotently
version_added: "0.1.0"
description:
  - Compares the model with the server's C(/api/tags) (a name without a tag means V(latest)) and
    pulls it with C(/api/pull) or removes it with C(DELETE /api/delete) only when needed.
  - A pull is read as the NDJSON stream it is. Ollama reports failures after the download started
    (for example C(digest mismatch)) as a line with an C(error) key while the HTTP status is 200;
    such a line fails the task, naming the model, the server, the last progress status and
    Ollama's error. A pull counts as done only when the stream ends with C(success) and the model
    is then listed.
  - Runs where the task runs - usually on the Ollama host against its loopback API, or delegated to
    the controller through the authenticated nginx front (O(token) or O(username)/O(password)).
  - Uses the C(ollama) Python client where it is installed, the Python standard library otherwise.
options:
  name:
    description: Model name, C(model[:tag]) or C(namespace/model[:tag]); the tag defaults to V(latest).
    type: str
    required: true
  state:
    description: V(present) pulls the model if it is not listed; V(absent) removes it if it is.
    type: str
    choices: [present, absent]
    default: present
  host:
    description:
      - URL of the Ollama API (C(http://) or C(https://)). Defaults to E(OLLAMA_HOST), then
        C(http://127.0.0.1:11434).
    type: str
  token:
    description:
      - Bearer token for an authenticating proxy in front of Ollama (the C(locus.infra.ollama)
        role's nginx). Defaults to E(LOCUS_OLLAMA_TOKEN). Never logged.
    type: str
  username:
    description: Basic-auth user for the proxy (instead of O(token)).
    type: str
  password:
    description: Basic-auth password. Never logged.
    type: str
  ca_path:
    description: CA certificate (PEM file) to trust for C(https://) - for a self-signed front, its certificate.
    type: path
  server_name:
    description:
      - For an O(host) that names an address (C(https://10.0.0.5)) - the name to present as SNI and
        C(Host) and to check the certificate for, like C(curl --resolve). The nginx front of the
        C(locus.infra.ollama) role answers only to the role's C(ollama_server_name).
      - Needs an C(https://) O(host).
    type: str
  validate_certs:
    description: Verify the server's TLS certificate.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each read; a pull may take much longer in total while it makes progress.
    type: float
    default: 60
extends_documentation_fragment:
  - locus.infra.attributes
attributes:
  check_mode:
    support: full
    details: Asks C(/api/tags) and reports what a pull or removal would change; pulls and removes nothing.
  diff_mode:
    support: full
    details: The model's state, digest and size before and after.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - Ollama has no authentication of its own; bind it to loopback and put a proxy in front (the
    C(locus.infra.ollama) role does).
seealso:
  - name: Ollama API
    description: The endpoints used (/api/tags, /api/pull, /api/delete).
    link: https://github.com/ollama/ollama/blob/main/docs/api.md
author:
  - locus.infra developers (@locus-infra)
"""

EXAMPLES = r"""
- name: Pull a model on the Ollama host (loopback API)
  locus.infra.ollama_model:
    name: llama3.2:3b

- name: Remove a model through the nginx front, from the controller
  locus.infra.ollama_model:
    name: qwen2.5:0.5b
    state: absent
    host: https://ollama.example.org
    token: "{{ vault_ollama_api_token }}"
    ca_path: files/ollama-front.pem
  delegate_to: localhost

- name: Pull through the front by its address, checking the certificate for its name
  locus.infra.ollama_model:
    name: smollm2:135m
    host: https://10.77.0.31
    server_name: ollama.lab.example
    token: "{{ vault_ollama_api_token }}"
    ca_path: files/ollama-front.pem
  delegate_to: localhost
"""

RETURN = r"""
model:
  description: The model name as compared, with its tag.
  returned: always
  type: str
  sample: smollm2:latest
state:
  description: The model's state after the task (in check mode, the predicted one).
  returned: always
  type: str
  sample: present
digest:
  description: The model's digest from C(/api/tags) (null when absent, or not pulled yet in check mode).
  returned: always
  type: str
  sample: cc270c307dd283b3a7960f067b873c68fecccdb5fc04f2d0705f1e6b0ca22bc1
size:
  description: The model's size in bytes from C(/api/tags) (null when absent).
  returned: always
  type: int
  sample: 98362624
pull:
  description: The distinct progress statuses of the pull stream, in order (empty when nothing was pulled).
  returned: always
  type: list
  elements: str
  sample: [pulling manifest, pulling b179c9523d0e, verifying sha256 digest, writing manifest, success]
host:
  description: The API URL that was asked.
  returned: always
  type: str
  sample: http://127.0.0.1:11434
"""

import os

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.locus.infra.plugins.module_utils import _ollama_model


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "host": {"type": "str", "fallback": (env_fallback, ["OLLAMA_HOST"])},
            "token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["LOCUS_OLLAMA_TOKEN"])},
            "username": {"type": "str"},
            "password": {"type": "str", "no_log": True},
            "ca_path": {"type": "path"},
            "server_name": {"type": "str"},
            "validate_certs": {"type": "bool", "default": True},
            "timeout": {"type": "float", "default": 60.0},
        },
        mutually_exclusive=[["token", "username"]],
        required_by={"password": "username"},
        supports_check_mode=True,
    )
    p = module.params
    if p["ca_path"] and not os.path.isfile(p["ca_path"]):
        module.fail_json(msg=f"ca_path: {p['ca_path']} is not a file")
    try:
        name = _ollama_model.normalise(p["name"])
    except ValueError as exc:
        module.fail_json(msg=f"name: {exc}")
    try:
        api = _ollama_model.connect(p["host"], token=p["token"], username=p["username"], password=p["password"],
                                    ca_path=p["ca_path"], validate_certs=p["validate_certs"], timeout=p["timeout"],
                                    server_name=p["server_name"])
        result = _ollama_model.ensure(api, name, p["state"], check_mode=module.check_mode)
    except _ollama_model.OllamaModelError as exc:
        module.fail_json(msg=str(exc), model=name, status=exc.status)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
