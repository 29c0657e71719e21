# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that read the verdicts of ssh-audit and sslyze (playbooks/verify.yml, molecule)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.locus.infra.plugins.plugin_utils import _scanners


def ssh_audit_verdict(result):
    """The verdict of ``ssh-audit -j`` from its registered command result."""
    try:
        return _scanners.ssh_audit_verdict(result)
    except ValueError as exc:
        raise AnsibleFilterError(f"ssh_audit_verdict: {exc}") from None


def sslyze_verdict(result, profile="intermediate"):
    """The Mozilla-profile verdict of ``sslyze --mozilla_config=PROFILE`` from its registered command result."""
    try:
        return _scanners.sslyze_verdict(result, profile)
    except ValueError as exc:
        raise AnsibleFilterError(f"sslyze_verdict: {exc}") from None


class FilterModule:
    def filters(self):
        return {"ssh_audit_verdict": ssh_audit_verdict, "sslyze_verdict": sslyze_verdict}
