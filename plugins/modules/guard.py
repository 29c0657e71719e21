# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# This module is implemented as an action plugin and runs on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: guard
short_description: Decide whether a change may run - risk, policy, human approval, emergency halt
version_added: 0.1.0
description:
  - The guard of locus.infra. With O(mode=decide) it classifies an operation's risk, applies the
    policy file and any human approval, and returns V(allow), V(needs_approval) or V(deny) with the
    findings and a C(VALIDATE) REF-tag; the decision is recorded in the audit trail.
  - Facts first, model second. Deterministic analysers set a floor on the risk - deleting or stopping
    VMs, changing BGP filters or neighbours, C(export all) to a BGP neighbour, a service bound to
    C(0.0.0.0) or C([::]), nginx auth or TLS removed from a live site, changes to K3s servers, secrets
    in plain text in files others can read, resources past the thresholds, tasks whose change cannot
    be predicted. Each finding names its rule and its evidence.
  - AI reviews (O(review)) can raise the risk, never lower it. A review recommending V(reject) raises
    it to the policy's C(agent_reject) level.
  - The decision is V(deny) while locus.infra is halted, when a resource is at or past the policy's
    halt threshold, or when the policy denies the risk level. It is V(needs_approval) when the policy
    wants a human for the risk level, until an approval bound to this exact change is given -
    a signed token (O(approval_token)), the decision's REF-tag typed by a human at the controller's
    terminal (O(approval_prompt); never from a variable, never without an interactive terminal, never
    under AWX), or an AWX workflow approval node (O(approval_ref) in a workflow job, when the policy
    enables it). Approvals are single-use, expire, and are void
    after an emergency halt. Every approval and refusal is an C(APPROVAL) record.
  - With O(mode=halt_check) it only fails while locus.infra is halted (the first task of the roles
    that change hosts). O(mode=status) reports the halt. O(mode=halt) sets the emergency halt
    (a C(HALT) record); O(mode=resume) clears it with a token from C(locus approve <HALT tag>).
  - Never reports C(changed) for decisions; halting and resuming report C(changed) when they change
    the halt state.
author:
  - locus.infra developers (@locus-infra)
requirements:
  - jsonschema >= 4.18 (on the controller)
extends_documentation_fragment:
  - locus.infra.state_store
  - locus.infra.attributes
  - locus.infra.attributes.controller
options:
  mode:
    description:
      - V(decide) evaluates O(operation).
      - V(halt_check) fails while locus.infra is halted, and does nothing else.
      - V(status) returns the halt state without failing.
      - V(halt) sets the emergency halt with O(reason).
      - V(resume) clears it with O(approval_token) (approving the current HALT tag).
    type: str
    default: decide
    choices: [decide, halt_check, status, halt, resume]
  operation:
    description:
      - The operation to judge. Required with O(mode=decide).
      - The change itself is one or more of O(operation.changes), O(operation.diff) and
        O(operation.changes_file); the approval is bound to a digest over all of it (and O(operation.what),
        O(operation.where)).
    type: dict
    suboptions:
      what:
        description: What the operation does, in words (recorded, and part of the digest).
        type: str
        required: true
      where:
        description: Where it runs (hosts, inventory, site). Defaults to C(localhost).
        type: raw
      changes:
        description:
          - The planned changes, each a mapping like a task result -
            C(host), C(task), C(action) (module name), C(args), C(groups) (the host's groups),
            C(diff) (Ansible's diff - a mapping or list of mappings with C(before)/C(after) or C(prepared)),
            or C(file)/C(path) with C(before)/C(after) text, and C(status) (C(changed), C(unpredictable), C(failed)).
        type: list
        elements: dict
      diff:
        description: A unified diff (C(git diff), C(diff -u)) of the change.
        type: str
      changes_file:
        description:
          - The JSON file written by the C(locus.infra.changes) callback during a check + diff run of the
            playbook that would apply the change (see C(playbooks/change_review.yml)).
        type: path
      findings:
        description:
          - Findings judged outside the guard on facts read from the hosts - the health review's (C(playbooks/health_review.yml))
            C(host_unreachable), C(unit_failed), C(bgp_down), C(cert_expiring), C(audit_chain_broken) ... Each is a mapping with
            C(rule) (a rule of the policy), C(message) and C(evidence). They set the risk floor like the analysers' findings, and
            an approval is bound to them (they are part of the digest).
        type: list
        elements: dict
  resources:
    description:
      - Resource facts, e.g. the RV(locus.infra.proxmox_node_info#module:nodes) of C(locus.infra.proxmox_node_info) -
        a mapping of name to facts whose keys end in C(_ratio) (0..1) or C(_percent) (0..100), or that hold
        C(used)/C(total) (also under C(storage)). A list of such mappings with C(node) or C(name) works too.
      - At or past C(resources.halt_threshold_percent) of the policy (default 95) the decision is V(deny).
    type: raw
  review:
    description:
      - AI reviews of the change - each the review itself (C(risk), C(findings), C(recommendation), see
        C(data/guard/review.schema.json)) or the registered result of C(locus.infra.agent) (its C(output)
        is used, with C(role) and C(ref_tag)). A failed review is reported as unavailable and changes nothing.
    type: raw
  policy:
    description:
      - The policy file. Defaults to the variable C(locus_policy), then E(LOCUS_POLICY), then the
        collection's C(data/guard/policy.yml).
      - A bad policy fails the task naming the file, the key and the reason.
    type: path
  approval_token:
    description:
      - A token from C(locus approve <REF-tag>). Defaults to the variable C(locus_approval_token), then
        E(LOCUS_APPROVAL_TOKEN).
      - With O(mode=decide) it approves the change whose decision it names, if the change is unchanged;
        with O(mode=resume) the current emergency halt.
    type: str
  approval_ref:
    description:
      - In an AWX workflow job, the REF-tag of the review node's decision that the workflow's approval
        node approved (policy C(approval.awx_workflow)).
    type: str
  approval_prompt:
    description:
      - When the decision needs approval, ask at the controller's terminal; typing the decision's REF-tag
        approves this exact change (a second C(VALIDATE) record names the first one).
      - Only an interactive, foreground terminal of C(ansible-playbook) answers (Ansible's own prompt);
        without one nothing is approved. Never under AWX (C(awx_job_id) set), never when the policy
        names approver keys (C(approval.mode=ssh_keys)) or says C(approval.prompt=false).
    type: bool
    default: false
  approval_key:
    description:
      - The HMAC key approval tokens are signed with (policy C(approval.mode=shared_key); with
        C(ssh_keys) tokens are verified against the approvers' SSH keys instead).
        Defaults to E(LOCUS_APPROVAL_KEY), then the file
        E(LOCUS_APPROVAL_KEY_FILE), then C(approval.key) in the state directory.
    type: str
  reason:
    description: Why locus.infra is halted. Required with O(mode=halt).
    type: str
  enforce:
    description:
      - With O(mode=decide), fail the task unless the decision is V(allow), so that nothing after it runs
        by accident. Set V(false) to branch on RV(decision) instead.
    type: bool
    default: true
  accept_approval:
    description:
      - With V(false) no approval is looked at (not even E(LOCUS_APPROVAL_TOKEN)), so none is used up - for a
        facts-only pass before the AI review.
    type: bool
    default: true
  review_context_chars:
    description:
      - At most this many characters of RV(review_context) (the change as text for AI reviewers).
    type: int
    default: 6000
attributes:
  check_mode:
    support: full
    details:
      - Decisions are made and recorded in check mode too; an accepted approval is not used up.
      - V(halt) and V(resume) report what they would do.
  diff_mode:
    support: none
notes:
  - While halted, every locus.infra plugin that changes anything or spends tokens fails at once with the
    HALT tag and reason; read-only ones (this module, C(ref_tag), C(audit_verify), C(audit_info)) keep working.
  - Roles that change hosts start with a C(mode=halt_check) task; see docs/guard.md.
seealso:
  - module: locus.infra.ref_tag
  - plugin: locus.infra.changes
    plugin_type: callback
"""

EXAMPLES = r"""
- name: Judge a planned change
  locus.infra.guard:
    operation:
      what: remove the old web VM
      where: pve1
      changes:
        - host: pve1
          action: locus.infra.proxmox_vm
          args: {name: web-old, state: absent}
    resources: "{{ nodes.nodes }}"
    enforce: false
  register: verdict

- name: Show the verdict
  ansible.builtin.debug:
    msg: "{{ verdict.decision }} ({{ verdict.risk }}): {{ verdict.findings | map(attribute='message') | list }}"

- name: Judge a unified diff, with the security agent's review, and stop unless allowed
  locus.infra.guard:
    operation:
      what: nginx site update
      where: web1
      diff: "{{ lookup('ansible.builtin.pipe', 'git diff HEAD~1 -- nginx/') }}"
    review: "{{ security_review }}"
    approval_token: "{{ lookup('ansible.builtin.env', 'LOCUS_APPROVAL_TOKEN') }}"

- name: First task of a role that changes hosts
  locus.infra.guard:
    mode: halt_check
  tags: [always]

- name: Emergency halt
  locus.infra.guard:
    mode: halt
    reason: BGP flapping after the last change

- name: Resume (token from `locus approve <HALT tag>`)
  locus.infra.guard:
    mode: resume
    approval_token: "{{ resume_token }}"
"""

RETURN = r"""
decision:
  description: V(allow), V(needs_approval) or V(deny).
  returned: mode=decide
  type: str
  sample: needs_approval
risk:
  description: The risk decided on - the higher of RV(deterministic_risk) and RV(agent_risk).
  returned: mode=decide
  type: str
  sample: high
deterministic_risk:
  description: The highest risk of the deterministic findings (V(low) when there are none).
  returned: mode=decide
  type: str
agent_risk:
  description: The highest risk the AI reviews gave (V(null) without reviews).
  returned: mode=decide
  type: str
findings:
  description: Every finding, deterministic and from the reviews.
  returned: mode=decide
  type: list
  elements: dict
  contains:
    rule:
      description: The rule, e.g. C(public_bind), or C(agent:security) for a reviewer's finding.
      type: str
    risk:
      description: Its risk level.
      type: str
    source:
      description: C(deterministic) or C(agent:<role>).
      type: str
    message:
      description: What was found.
      type: str
    evidence:
      description: Where - host, task, file, the changed line (secrets masked), resource and percentage.
      type: dict
  sample:
    - rule: public_bind
      risk: high
      source: deterministic
      message: nginx listens on all addresses (0.0.0.0:8080)
      evidence: {host: web1, task: Write the site, file: /etc/nginx/sites-enabled/app, line: "+3: listen 0.0.0.0:8080;"}
reasons:
  description: Why the decision is what it is.
  returned: mode=decide
  type: list
  elements: str
ref_tag:
  description: The C(VALIDATE) REF-tag of the decision (V(mode=decide)), or the C(HALT) tag (V(mode=halt), V(mode=resume)).
  returned: when a record was written
  type: str
  sample: LOCUS-VALIDATE20250908-004
digest:
  description: SHA-256 of the change as judged; approvals are bound to it.
  returned: mode=decide
  type: str
changes:
  description: How many changes were judged.
  returned: mode=decide
  type: int
approve_command:
  description: The command a human runs to approve this decision.
  returned: decision is needs_approval
  type: str
  sample: locus approve LOCUS-VALIDATE20250908-004
approval:
  description: The approval that was accepted - method (C(token), C(prompt), C(awx_workflow)), the decision it approved, approver, APPROVAL tag.
  returned: an approval was accepted
  type: dict
approval_refused:
  description: The approval that was refused and why (recorded as an C(APPROVAL) record).
  returned: an approval was refused
  type: dict
reviews:
  description: The AI reviews as used (role, status, risk, recommendation, findings, REF-tag).
  returned: mode=decide
  type: list
  elements: dict
review_context:
  description:
    - The change as compact text for AI reviewers - per task and host the module, small arguments and unified
      diffs, secrets masked, cut at O(review_context_chars). Give it to C(locus.infra.agent) as context.
  returned: mode=decide
  type: str
review_lane:
  description: The lane the policy wants AI reviews of changes to use (C(lanes.review)).
  returned: mode=decide
  type: str
  sample: private
review_budget:
  description: The policy's AI spend ceilings (C(budgets)), in the form of C(locus.infra.agent)'s O(locus.infra.agent#module:budget).
  returned: mode=decide
  type: dict
  sample: {daily_usd: 5.0, agent_daily_usd: 1.0}
halted:
  description: Whether locus.infra is halted (after this task).
  returned: always
  type: bool
halt:
  description: The halt state - tag, reason, since, by, epoch.
  returned: modes halt_check, status, halt, resume, and decide while halted
  type: dict
policy:
  description: The policy applied - source file and its SHA-256.
  returned: mode=decide
  type: dict
"""
