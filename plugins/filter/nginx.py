# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the locus.infra.nginx role: its data model, checked and completed."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.locus.infra.plugins.module_utils import _nginx_model


def _settings(settings):
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise AnsibleFilterError(f"nginx_sites: settings must be a mapping, got {type(settings).__name__}")
    return settings


def nginx_sites(sites, host="localhost", settings=None):
    """``nginx_sites`` checked, with every default filled in (see the role's documentation)."""
    settings = dict(_settings(settings))
    try:
        settings["zones"] = _nginx_model.normalise_zones(settings.get("zones") or [], host)
        return _nginx_model.normalise(sites, host, settings)
    except _nginx_model.ModelError as exc:
        raise AnsibleFilterError(
            f"locus.infra.nginx: {len(exc.problems)} problem(s) in the site data:\n" + "\n".join(exc.problems)
        ) from None


def nginx_listeners(sites):
    """The (address, port, ssl) sockets of normalised sites, for the default servers."""
    return _nginx_model.listeners(sites)


def nginx_probes(sites):
    """The probes of normalised sites, as locus.infra.nginx_tree takes them."""
    return _nginx_model.probes(sites)


def nginx_needs_dhparam(sites):
    """Whether a present site's TLS profile uses DHE suites (the tree then ships the ffdhe2048 group)."""
    return _nginx_model.needs_dhparam(sites)


def nginx_rate_limit_zones(zones, host="localhost"):
    """``nginx_rate_limit_zones`` checked, with defaults filled in."""
    try:
        return _nginx_model.normalise_zones(zones or [], host)
    except _nginx_model.ModelError as exc:
        raise AnsibleFilterError("locus.infra.nginx: " + "\n".join(exc.problems)) from None


class FilterModule:
    def filters(self):
        return {
            "nginx_sites": nginx_sites,
            "nginx_listeners": nginx_listeners,
            "nginx_probes": nginx_probes,
            "nginx_rate_limit_zones": nginx_rate_limit_zones,
            "nginx_needs_dhparam": nginx_needs_dhparam,
        }
