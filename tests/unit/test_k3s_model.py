"""locus.infra.k3s without a host: the settings model, release checksums, kubeconfig rewrite,
node status, and the role's templates rendered from a plan."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.errors import AnsibleFilterError
from doubles import k3s_double

from ansible_collections.locus.infra.plugins.filter import k3s as k3s_filter
from ansible_collections.locus.infra.plugins.module_utils import _k3s_model as model

ROLE = Path(__file__).resolve().parents[2] / "roles" / "k3s"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
GROUPS = {"k3s_servers": ["s1", "s2", "s3"], "k3s_agents": ["a1"]}
ADDRESSES = {"s1": "10.77.0.51", "s2": "10.77.0.52", "s3": "10.77.0.53"}


def settings(**over):
    base = {k[4:]: v for k, v in DEFAULTS.items() if k.startswith("k3s_")}
    base["airgap_images"] = False
    base["context"] = over.pop("context", {})
    base.update(over)
    return base


def problems(host="s1", groups=None, **over):
    with pytest.raises(model.ModelError) as exc:
        model.plan(settings(**over), host, GROUPS if groups is None else groups, ADDRESSES)
    return exc.value.problems


def test_first_server_joiners_and_agents():
    first = model.plan(settings(), "s1", GROUPS, ADDRESSES)
    assert first["role"] == "server" and first["first"] and first["unit"] == "k3s"
    assert first["config"]["cluster-init"] is True and "server" not in first["config"]
    assert first["config"]["token-file"] == "/etc/rancher/k3s/token"
    assert first["config"]["write-kubeconfig-mode"] == "0600"
    assert first["install_path"] == "/usr/local/bin/k3s-v1.31.4+k3s1"
    joiner = model.plan(settings(), "s2", GROUPS, ADDRESSES)
    assert joiner["config"]["server"] == "https://10.77.0.51:6443" and "cluster-init" not in joiner["config"]
    agent = model.plan(settings(agent_config={"node-label": ["tier=web"]}), "a1", GROUPS, ADDRESSES)
    assert agent["role"] == "agent" and agent["unit"] == "k3s-agent"
    assert agent["config"]["server"] == "https://10.77.0.51:6443"
    assert agent["config"]["node-label"] == ["tier=web"]
    assert not {"token", "agent-token", "write-kubeconfig-mode"} & set(agent["config"])
    dropped = model.plan(settings(config_dropins={"20-b": {}, "10-a": {"node-label+": ["x=y"]}}), "a1", GROUPS, ADDRESSES)
    assert dropped["dropin_files"] == ["/etc/rancher/k3s/config.yaml.d/10-a.yaml", "/etc/rancher/k3s/config.yaml.d/20-b.yaml"]


def test_context_overrides_variables_and_names_unknown_keys():
    plan = model.plan(settings(context={"version": "v1.32.1+k3s1", "api_endpoint": "k3s.lab", "cluster_init": True}),
                      "s2", GROUPS, ADDRESSES)
    assert plan["version"] == "v1.32.1+k3s1"
    assert plan["config"]["server"] == "https://k3s.lab:6443"
    assert plan["config"]["tls-san"] == ["k3s.lab"]
    assert problems(context={"verison": "x"}) == [
        f"s1: k3s.verison: unknown key (known: {', '.join(sorted(model.SETTING_KEYS))})"]


def test_every_problem_is_named_at_once():
    found = problems(version="1.31", server_config={"token": "x", "bogus": 1, "agent-token": "y", "disable": [{}]},
                     config_dropins={"Bad Name": {}, "ok": {"node-label+": ["a=b"], "lb-server-port": 1}})
    assert "s1: k3s_version: '1.31' is not a k3s release (e.g. v1.31.4+k3s1)" in found
    assert "s1: k3s_server_config: token: set by the role - use k3s_token (kept in k3s_token_file)" in found
    assert "s1: k3s_server_config: bogus: not a k3s server flag - k3s would skip it with a warning" in found
    assert any(p.startswith("s1: k3s_server_config: agent-token: refused") for p in found)
    assert "s1: k3s_server_config: disable: a list may hold only strings, numbers and booleans" in found
    assert "s1: k3s_config_dropins: 'Bad Name' is not a file name (a-z, 0-9, '_', '.', '-')" in found
    assert any("lb-server-port: not a k3s server flag" in p for p in found)
    assert not any("node-label+" in p for p in found)


def test_agent_refuses_server_only_flags():
    assert problems("a1", agent_config={"cluster-cidr": "10.42.0.0/16"}) == [
        "a1: k3s_agent_config: cluster-cidr: not a k3s agent flag (a server-only flag) - k3s would skip it with a warning"]


def test_even_servers_refused_unless_allowed():
    groups = {"k3s_servers": ["s1", "s2"], "k3s_agents": []}
    assert any("an even number adds no fault tolerance" in p for p in problems(groups=groups))
    assert model.plan(settings(allow_even_servers=True), "s1", groups, ADDRESSES)["first"]


def test_group_membership_problems():
    assert problems("x9") == ["x9: is in neither k3s_servers nor k3s_agents and sets no k3s_role"]
    both = {"k3s_servers": ["s1", "s2", "s3"], "k3s_agents": ["s1"]}
    assert "s1: is in both k3s_servers and k3s_agents" in problems(groups=both)
    assert "a1: no K3s server: the group k3s_servers is empty" in problems("a1", groups={"k3s_agents": ["a1"]})
    assert problems(first_server="s9") == ["s1: k3s_first_server: 's9' is not in k3s_servers"]


def test_release_checksums_and_airgap_names(tmp_path):
    release = Path(k3s_double.build_release(str(tmp_path / "v1.31.4+k3s1"), "v1.31.4+k3s1"))
    listing = (release / "sha256sum-amd64.txt").read_text()
    digests = k3s_filter.k3s_sha256(listing, ["k3s", "k3s-airgap-images-amd64.tar.gz"])
    assert set(digests) == {"k3s", "k3s-airgap-images-amd64.tar.gz"}
    assert k3s_filter.k3s_airgap_name(listing, "amd64") == "k3s-airgap-images-amd64.tar.gz"
    with pytest.raises(AnsibleFilterError, match="no sha256 for k3s-arm64"):
        k3s_filter.k3s_sha256(listing, "k3s-arm64", "/srv/sha256sum-amd64.txt")
    with pytest.raises(AnsibleFilterError, match=r"lists no k3s-airgap-images-arm64"):
        k3s_filter.k3s_airgap_name(listing, "arm64")
    # a listing where the name only appears as a suffix of another name does not match
    assert model.sha256_of("a" * 64 + "  k3s-arm64\n" + "b" * 64 + "  k3s\n", "k3s") == "b" * 64


def test_kubeconfig_rewrite_and_node_status():
    raw = {"apiVersion": "v1", "clusters": [{"cluster": {"certificate-authority-data": "Q0E=", "server": "https://127.0.0.1:6443"},
                                             "name": "default"}],
           "users": [{"name": "default", "user": {"client-certificate-data": "Yw==", "client-key-data": "aw=="}}],
           "contexts": [{"context": {"cluster": "default", "user": "default"}, "name": "default"}]}
    out = k3s_filter.k3s_kubeconfig(raw, "https://10.77.0.51:6443", "lab")
    assert out["clusters"] == [{"name": "lab", "cluster": {"certificate-authority-data": "Q0E=", "server": "https://10.77.0.51:6443"}}]
    assert out["current-context"] == "lab" and out["users"][0]["user"]["client-key-data"] == "aw=="
    with pytest.raises(AnsibleFilterError, match="must be an https:// URL"):
        k3s_filter.k3s_kubeconfig(raw, "http://x", "lab")
    nodes = {"items": [
        {"metadata": {"name": "s1", "labels": {"node-role.kubernetes.io/control-plane": "true"},
                      "annotations": {"etcd.k3s.cattle.io/node-name": "s1-abc"}},
         "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1"}}},
        {"metadata": {"name": "a1", "labels": {}}, "spec": {"unschedulable": True},
         "status": {"conditions": [{"type": "Ready", "status": "Unknown"}], "nodeInfo": {"kubeletVersion": "v1"}}},
    ]}
    assert k3s_filter.k3s_nodes(nodes) == {
        "s1": {"ready": True, "version": "v1", "server": True, "etcd_member": True, "unschedulable": False},
        "a1": {"ready": False, "version": "v1", "server": False, "etcd_member": False, "unschedulable": True}}


def test_config_template_is_read_back_by_the_double(tmp_path):
    """The rendered config.yaml, as the double (k3s's parser rules) reads it: same keys and values."""
    plan = model.plan(settings(server_config={"disable": ["traefik", "servicelb"], "node-label": ["a=b"]},
                               api_endpoint="10.77.0.50"), "s2", GROUPS, ADDRESSES)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)  # noqa: S701 - YAML and unit files
    env.filters["to_nice_yaml"] = lambda v, indent=2, sort_keys=True: yaml.safe_dump(v, indent=indent, sort_keys=sort_keys,
                                                                                     default_flow_style=False)
    text = env.from_string((ROLE / "templates" / "config.yaml.j2").read_text()).render(
        k3s_plan=plan, ansible_managed="managed")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    read = k3s_double.load_config("server", ["--config", str(path)], k3s_double.SERVER_FLAGS)
    assert read["write-kubeconfig-mode"] == "0600"
    assert read["disable"] == ["traefik", "servicelb"]
    assert read["server"] == "https://10.77.0.50:6443"
    assert read["tls-san"] == ["10.77.0.50"]
    unit = env.from_string((ROLE / "templates" / "k3s.service.j2").read_text()).render(k3s_plan=plan, ansible_managed="m")
    assert "ExecStart=/usr/local/bin/k3s server\n" in unit
    # nothing secret can come from the unit: no Environment=, no token flag on the command line
    assert "Environment" not in unit and "--token" not in unit


def test_the_role_and_the_double_know_the_same_flags():
    assert k3s_double.SERVER_FLAGS - {"config"} == model.SERVER_KEYS
    assert k3s_double.AGENT_FLAGS - {"config"} == model.AGENT_KEYS


def test_the_guard_treats_the_roles_server_changes_as_k3s_server_changes():
    from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard_rules as rules
    from ansible_collections.locus.infra.plugins.plugin_utils.guard import _policy

    settings = _policy.load_policy().data["analysers"]

    def rules_of(*changes):
        return sorted({f["rule"] for f in rules.analyse_changes(rules.normalise(list(changes), None), settings)})

    # the role's handler on a server outside the k3s_servers group (k3s_role: server)
    assert rules_of({"host": "x1", "task": "Restart k3s", "action": "locus.infra.k3s_service",
                     "args": {"name": "k3s", "state": "restarted"}, "groups": []}) == ["k3s_server"]
    # its config.yaml and the k3s symlink, wherever they change
    assert rules_of({"host": "x1", "task": "config", "action": "ansible.builtin.template",
                     "args": {"dest": "/etc/rancher/k3s/config.yaml", "mode": "0600"}, "groups": [],
                     "diff": {"before_header": "/etc/rancher/k3s/config.yaml", "after_header": "/etc/rancher/k3s/config.yaml",
                              "before": "", "after": "node-name: x1\n"}}) == ["k3s_server"]
    # an agent's restart is not a server change
    assert rules_of({"host": "a1", "task": "Restart k3s", "action": "locus.infra.k3s_service",
                     "args": {"name": "k3s-agent", "state": "restarted"}, "groups": ["k3s_agents"]}) == []
