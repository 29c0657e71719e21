# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the operations playbooks."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.locus.infra.plugins.plugin_utils.ops import _ops_health, _ops_report


def ops_review_facts(findings, limit=25):
    """What the health review's agents read of the guard's findings (:func:`_ops_health.review_facts`)."""
    try:
        return _ops_health.review_facts(findings, int(limit))
    except _ops_health.OpsError as exc:
        raise AnsibleFilterError(str(exc)) from None


def embedded_advisory(backends):
    """The note that the embedded backend's verdict is advisory, when ``backends`` include it; else ``""``."""
    return _ops_report.embedded_advisory(backends)


class FilterModule:
    def filters(self):
        return {"ops_review_facts": ops_review_facts, "embedded_advisory": embedded_advisory}
