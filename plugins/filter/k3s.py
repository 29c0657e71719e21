# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the locus.infra.k3s role: its data model, release checksums and kubeconfig."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.locus.infra.plugins.module_utils import _k3s_model


def _fail(exc, what):
    raise AnsibleFilterError(f"locus.infra.k3s: {len(exc.problems)} problem(s) in {what}:\n" + "\n".join(exc.problems))


def k3s_plan(settings, host="localhost", groups=None, addresses=None):
    """The checked plan of one host's K3s node (see the role's documentation)."""
    if not isinstance(settings, dict):
        raise AnsibleFilterError(f"k3s_plan: settings must be a mapping, got {type(settings).__name__}")
    try:
        return _k3s_model.plan(settings, host, dict(groups or {}), dict(addresses or {}))
    except _k3s_model.ModelError as exc:
        _fail(exc, "the K3s settings")


def k3s_sha256(listing, name, source="the sha256 list"):
    """The sha256 of a file (or ``{name: sha256}`` of a list of files) in a k3s release's ``sha256sum-<arch>.txt``."""
    try:
        if isinstance(name, (list, tuple)):
            return {n: _k3s_model.sha256_of(listing, n, source) for n in name}
        return _k3s_model.sha256_of(listing, name, source)
    except _k3s_model.ModelError as exc:
        _fail(exc, source)


def k3s_airgap_name(listing, arch, source="the sha256 list"):
    """The air-gap image archive a release lists for an architecture."""
    try:
        return _k3s_model.airgap_name(listing, arch, source)
    except _k3s_model.ModelError as exc:
        _fail(exc, source)


def k3s_kubeconfig(config, server, name="default"):
    """k3s's admin kubeconfig pointed at ``server`` with its entries named ``name``."""
    try:
        return _k3s_model.kubeconfig(config, server, name)
    except _k3s_model.ModelError as exc:
        _fail(exc, "the kubeconfig")


def k3s_nodes(node_list):
    """Readiness, version and etcd membership per node of a ``kubectl get nodes -o json`` answer."""
    return _k3s_model.node_status(node_list)


class FilterModule:
    def filters(self):
        return {
            "k3s_plan": k3s_plan,
            "k3s_sha256": k3s_sha256,
            "k3s_airgap_name": k3s_airgap_name,
            "k3s_kubeconfig": k3s_kubeconfig,
            "k3s_nodes": k3s_nodes,
        }
