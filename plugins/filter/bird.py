# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the locus.infra.bird2 role: its data model, checked and completed."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.locus.infra.plugins.module_utils import _bird_model


def _settings(settings, name):
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise AnsibleFilterError(f"{name}: settings must be a mapping, got {type(settings).__name__}")
    return settings


def bird2_problems(bgp, settings=None):
    """Every problem in the ``bgp`` data and the role's settings, as ``"<key>: <reason>"`` strings."""
    return _bird_model.problems(bgp, _settings(settings, "bird2_problems"))


def bird2_model(bgp, host="localhost", settings=None):
    """``bgp`` checked, with every default filled in (see the role's documentation)."""
    try:
        return _bird_model.normalise(bgp, _settings(settings, "bird2_model"))
    except _bird_model.ModelError as exc:
        raise AnsibleFilterError(
            f"locus.infra.bird2: {host}: {len(exc.problems)} problem(s) in the BGP data, nothing was changed: {exc}"
        ) from None


def bird2_sessions(model):
    """Names of the enabled sessions of a checked model (those the role waits for)."""
    return _bird_model.sessions(model)


class FilterModule:
    def filters(self):
        return {
            "bird2_problems": bird2_problems,
            "bird2_model": bird2_model,
            "bird2_sessions": bird2_sessions,
        }
