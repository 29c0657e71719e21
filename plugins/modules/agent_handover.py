# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# This module is implemented as an action plugin and runs on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: agent_handover
short_description: Sign or verify a handover of work from one agent to another
version_added: 0.1.0
description:
  - O(action=create) allocates a HANDOVER REF-tag and returns a signed record of the handover -
    a DSSE envelope (C(payloadType), base64 C(payload), C(signatures) with C(keyid) and C(sig))
    signed with HMAC-SHA256 over the DSSE pre-authentication encoding of type and payload.
  - The payload holds the source and target agent, the task, references to the context (REF-tags,
    NetBox object ids ...), the data classification, the expected response time and the REF-tag.
    It is validated against a JSON schema when created and when verified.
  - O(action=verify) checks an envelope and returns its payload; any altered byte - in the type,
    the payload, the key id or the signature, or a non-canonical re-encoding - fails the task
    naming the part at fault. Every verification is a VALIDATE record in the audit trail.
  - The signing key comes from O(hmac_key) (keep it in a vault) or E(LOCUS_HANDOVER_KEY); it is never
    logged or recorded.
author:
  - locus.infra developers (@locus-infra)
requirements:
  - jsonschema >= 4.18 (on the controller)
extends_documentation_fragment:
  - locus.infra.state_store
  - locus.infra.attributes
  - locus.infra.attributes.controller
options:
  action:
    description: Create a signed handover, or verify one.
    type: str
    choices: [create, verify]
    default: create
  source:
    description: The agent handing over (a role or agent name). Required to create.
    type: str
  target:
    description: The agent taking over. Required to create.
    type: str
  task:
    description: What the target agent is asked to do. Required to create.
    type: str
  context_refs:
    description: References to the context the target needs (REF-tags, object ids), not the data itself.
    type: list
    elements: str
    default: []
  classification:
    description: Data classification (lane) of the handed-over work.
    type: str
    choices: [private, enterprise, personal]
    default: private
  respond_within:
    description:
      - Expected response time - seconds, or C(30m), C(4h), C(2d), or ISO 8601 like C(PT4H).
      - The payload records it in seconds and as an absolute C(respond_by) time (UTC).
    type: raw
    default: 4h
  source_ref_tag:
    description: The REF-tag of the source agent's call this handover follows from.
    type: str
  envelope:
    description: The envelope to verify (the registered RV(envelope), or its JSON text).
    type: raw
  expect_target:
    description: When verifying, also require the handover to be addressed to this agent.
    type: str
  hmac_key:
    description:
      - HMAC-SHA256 key, at least 16 bytes (use 32 random bytes). Defaults to E(LOCUS_HANDOVER_KEY).
    type: str
  key_id:
    description:
      - Key id written into (or required from) the signature. Defaults to a fingerprint of the key.
    type: str
attributes:
  check_mode:
    support: full
    details: Signing and verifying change nothing; the REF-tags are allocated in check mode too (the records say so).
  diff_mode:
    support: none
seealso:
  - module: locus.infra.agent
  - name: DSSE envelope specification
    description: The envelope format and its pre-authentication encoding.
    link: https://github.com/secure-systems-lab/dsse/blob/master/envelope.md
"""

EXAMPLES = r"""
- name: The security agent hands the fix to the devops agent
  locus.infra.agent_handover:
    source: security
    target: devops
    task: Disable TLS 1.0 on web1 and reload nginx.
    context_refs: ["{{ review.ref_tag }}"]
    classification: private
    respond_within: 2h
    source_ref_tag: "{{ review.ref_tag }}"
    hmac_key: "{{ vault_handover_key }}"
  register: handover

- name: The devops side checks it before acting
  locus.infra.agent_handover:
    action: verify
    envelope: "{{ handover.envelope }}"
    expect_target: devops
    hmac_key: "{{ vault_handover_key }}"
  register: received
"""

RETURN = r"""
ref_tag:
  description: The HANDOVER tag (create) or the VALIDATE tag of the verification (verify).
  returned: always
  type: str
envelope:
  description: The signed DSSE envelope.
  returned: action=create
  type: dict
  sample:
    payloadType: application/vnd.locus.handover+v1+json
    payload: eyJjbGFzc2lmaWNhdGlvbiI6InByaXZhdGUiLC4uLn0=
    signatures: [{keyid: "hmac-sha256:1c9d0e6a2b3f4a5b", sig: "q1m0..."}]
payload:
  description: The handover record (also the verified record on verify).
  returned: success
  type: dict
key_id:
  description: The key id the envelope was signed with.
  returned: action=create
  type: str
valid:
  description: Whether the envelope verified.
  returned: action=verify
  type: bool
handover_ref_tag:
  description: The HANDOVER tag inside the verified payload.
  returned: action=verify and valid
  type: str
"""
