# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the locus.infra.common role: its SSH algorithm policy."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.locus.infra.plugins.module_utils import _ssh_policy


def ssh_algorithms(supported_kex, post_quantum_only=True, host="localhost"):
    """The algorithms sshd offers under the policy, given ``ssh -Q kex`` of the host."""
    try:
        return _ssh_policy.policy(supported_kex, bool(post_quantum_only))
    except ValueError as exc:
        raise AnsibleFilterError(f"locus.infra.common: {host}: {exc}") from None


class FilterModule:
    def filters(self):
        return {"ssh_algorithms": ssh_algorithms}
