# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The data model of locus.infra.k3s: check the settings of one host and plan its node.

Private API of the collection (may change without notice). Runs on the controller (the
``locus.infra.k3s_plan`` filter and its siblings); standard library only.

The settings are the role's ``k3s_*`` variables, overridden by the keys of the ``k3s``
mapping that the NetBox inventory brings from config contexts (``{"version": ...,
"role": "server"}``). Every problem is one line naming the host, the key and the reason;
all problems are reported at once, before anything on a host changes.

The plan says what the host is (server or agent, first server or joiner), where its
binary comes from and goes to, and the exact ``config.yaml`` and ``config.yaml.d`` content.
The token is never part of the plan: config files name the token *file* only.
"""

from __future__ import annotations

import re

# `k3s agent` flags (k3s-io/docs docs/cli/agent.md) and the additional `k3s server` flags
# (docs/cli/server.md): keys a config file may carry. k3s itself only warns about an
# unknown key and starts without it, so the role refuses one before it is written.
AGENT_KEYS = frozenset({
    "debug", "v", "vmodule", "log", "alsologtostderr", "token", "token-file", "server", "data-dir",
    "node-name", "with-node-id", "node-label", "node-taint", "image-credential-provider-bin-dir",
    "image-credential-provider-config", "selinux", "lb-server-port", "protect-kernel-defaults",
    "container-runtime-endpoint", "default-runtime", "image-service-endpoint", "pause-image", "snapshotter",
    "private-registry", "disable-default-registry-endpoint", "nonroot-devices", "node-ip", "bind-address",
    "node-external-ip", "node-internal-dns", "node-external-dns", "resolv-conf", "flannel-iface", "flannel-conf",
    "flannel-cni-conf", "kubelet-arg", "kube-proxy-arg", "enable-pprof", "rootless", "prefer-bundled-bin", "docker",
    "vpn-auth", "vpn-auth-file", "disable-apiserver-lb", "airgap-extra-registry",
})
SERVER_KEYS = (AGENT_KEYS - {"lb-server-port", "disable-apiserver-lb"}) | frozenset({
    "https-listen-port", "advertise-address", "advertise-port", "tls-san", "tls-san-security", "cluster-cidr",
    "service-cidr", "service-node-port-range", "cluster-dns", "cluster-domain", "flannel-backend",
    "flannel-ipv6-masq", "flannel-external-ip", "egress-selector-mode", "servicelb-namespace", "write-kubeconfig",
    "write-kubeconfig-mode", "write-kubeconfig-group", "helm-job-image", "agent-token", "agent-token-file",
    "cluster-init", "cluster-reset", "cluster-reset-restore-path", "kube-apiserver-arg", "etcd-arg",
    "kube-controller-manager-arg", "kube-scheduler-arg", "kube-cloud-controller-manager-arg", "datastore-endpoint",
    "datastore-cafile", "datastore-certfile", "datastore-keyfile", "etcd-expose-metrics", "etcd-disable-snapshots",
    "etcd-snapshot-name", "etcd-snapshot-schedule-cron", "etcd-snapshot-retention", "etcd-snapshot-dir",
    "etcd-snapshot-compress", "etcd-s3", "etcd-s3-endpoint", "etcd-s3-endpoint-ca", "etcd-s3-skip-ssl-verify",
    "etcd-s3-access-key", "etcd-s3-secret-key", "etcd-s3-bucket", "etcd-s3-region", "etcd-s3-folder",
    "etcd-s3-proxy", "etcd-s3-config-secret", "etcd-s3-insecure", "etcd-s3-timeout", "default-local-storage-path",
    "disable", "disable-scheduler", "disable-cloud-controller", "disable-kube-proxy", "disable-network-policy",
    "disable-helm-controller", "embedded-registry", "supervisor-metrics", "secrets-encryption",
    "secrets-encryption-provider", "disable-agent", "kine-tls", "system-default-registry",
})
# Keys the role sets itself (each with the variable that controls it), and keys it refuses.
MANAGED_KEYS = {
    "token": "k3s_token (kept in k3s_token_file)", "token-file": "k3s_token_file", "server": "k3s_api_endpoint",
    "cluster-init": "k3s_first_server", "node-name": "k3s_node_name", "data-dir": "k3s_data_dir",
    "write-kubeconfig-mode": "the role (always 0600)", "write-kubeconfig": "the role (k3s_config_dir/k3s.yaml)",
    "https-listen-port": "k3s_api_port", "node-ip": "k3s_node_ip",
}
REFUSED_KEYS = {
    "agent-token": "a token in a config file is readable by whoever reads the file; agents use the server token",
    "agent-token-file": "agents use the server token file",
    "cluster-reset": "a cluster reset is a recovery step, never a setting",
    "cluster-reset-restore-path": "a cluster reset is a recovery step, never a setting",
    "disable-agent": "agentless servers are unsupported by k3s",
    "datastore-endpoint": "the role builds embedded-etcd clusters",
    "etcd-s3-secret-key": "a secret in config.yaml (use etcd-s3-config-secret)",
    "vpn-auth": "a secret in config.yaml (use vpn-auth-file)",
}
SETTING_KEYS = {
    "version", "role", "arch", "release_url", "artefact_dir", "airgap_images", "airgap_images_name", "install_dir",
    "config", "server_config", "agent_config", "config_dropins", "first_server", "api_endpoint", "api_port",
    "allow_even_servers", "token_file", "config_dir", "data_dir", "node_name", "node_ip", "kubeconfig_dest",
    "kubeconfig_context", "wait_timeout", "journal_lines", "keep_versions", "cluster_init",
}
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "arm": "arm"}
VERSION = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+(-rc[0-9]+)?\+k3s[0-9]+$")
DROPIN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
SHA256_LINE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(\S+)$")
HOSTNAME = re.compile(r"^[A-Za-z0-9.:\[\]-]+$")
NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
AIRGAP_FORMATS = ("tar.zst", "tar.gz", "tar")


class ModelError(ValueError):
    """All problems of one host's settings, one per line."""

    def __init__(self, problems):
        super().__init__("\n".join(problems))
        self.problems = problems


def _scalar_ok(value):
    return isinstance(value, (str, int, float, bool)) and value is not None


def _check_config(where, config, allowed, problems, dropin=False):
    """Problems of one config mapping (``where`` names it in messages)."""
    if not isinstance(config, dict):
        problems.append(f"{where}: must be a mapping of k3s flags, got {type(config).__name__}")
        return {}
    out = {}
    for key, value in config.items():
        name = str(key)
        flag = name[:-1] if dropin and name.endswith("+") else name
        if flag in MANAGED_KEYS:
            problems.append(f"{where}: {flag}: set by the role - use {MANAGED_KEYS[flag]}")
            continue
        if flag in REFUSED_KEYS:
            problems.append(f"{where}: {flag}: refused - {REFUSED_KEYS[flag]}")
            continue
        if flag not in allowed:
            other = " (a server-only flag)" if flag in SERVER_KEYS else ""
            problems.append(f"{where}: {flag}: not a k3s {'server' if allowed is SERVER_KEYS else 'agent'} "
                            f"flag{other} - k3s would skip it with a warning")
            continue
        if isinstance(value, list):
            if not all(_scalar_ok(v) for v in value):
                problems.append(f"{where}: {flag}: a list may hold only strings, numbers and booleans")
                continue
        elif not _scalar_ok(value):
            problems.append(f"{where}: {flag}: must be a string, number, boolean or list, got {type(value).__name__}")
            continue
        out[name] = value
    return out


def _effective(settings, host, problems):
    """Role variables overridden by the ``k3s`` mapping (config context)."""
    merged = {k: v for k, v in settings.items() if k != "context"}
    context = settings.get("context")
    if context in (None, ""):
        return merged
    if not isinstance(context, dict):
        problems.append(f"{host}: k3s: must be a mapping (config context), got {type(context).__name__}")
        return merged
    for key, value in context.items():
        if key not in SETTING_KEYS:
            problems.append(f"{host}: k3s.{key}: unknown key (known: {', '.join(sorted(SETTING_KEYS))})")
            continue
        merged[key] = value
    return merged


def plan(settings, host, groups, addresses=None):
    """The plan of ``host``'s K3s node, or ModelError with every problem.

    ``settings``: the role's variables without the ``k3s_`` prefix, plus ``context`` (the
    ``k3s`` mapping) and ``machine`` (``ansible_architecture`` when known); ``groups``:
    the inventory's groups (``k3s_servers``, ``k3s_agents``); ``addresses``: each server's
    address for the join URL (its ``ansible_host``).
    """
    problems = []
    s = _effective(settings, host, problems)
    servers = list(groups.get("k3s_servers") or [])
    agents = list(groups.get("k3s_agents") or [])
    version = s.get("version")
    if not isinstance(version, str) or not VERSION.match(version):
        problems.append(f"{host}: k3s_version: {version!r} is not a k3s release (e.g. v1.31.4+k3s1)")
    role = _node_role(s, host, servers, agents, problems)
    first = _first_server(s, host, servers, problems)
    machine = s.get("arch") or s.get("machine") or "x86_64"
    arch = ARCHES.get(str(machine))
    if not arch:
        problems.append(f"{host}: k3s_arch: {machine!r} is not a k3s architecture ({', '.join(sorted(set(ARCHES.values())))})")
        arch = "amd64"
    port, endpoint = _api(s, host, (addresses or {}).get(first) or first, problems)
    node_name = s.get("node_name") or host
    if not isinstance(node_name, str) or not NODE_NAME.match(node_name):
        problems.append(f"{host}: k3s_node_name: {node_name!r} is not a valid Kubernetes node name "
                        "(lower-case letters, digits, '-' and '.')")
    for key in ("token_file", "config_dir", "data_dir", "install_dir"):
        value = s.get(key)
        if not isinstance(value, str) or not value.startswith("/"):
            problems.append(f"{host}: k3s_{key}: {value!r} must be an absolute path")
    user, dropins = _configs(s, host, role, problems)
    _check_install(s, host, problems)
    if problems:
        raise ModelError(problems)

    url_host = f"[{endpoint}]" if ":" in endpoint and not endpoint.startswith("[") else endpoint
    join_url = f"https://{url_host}:{port}"
    images = s.get("airgap_images_name") or f"k3s-airgap-images-{arch}.tar.zst"
    return {
        "role": role,
        "unit": "k3s" if role == "server" else "k3s-agent",
        "first": host == first,
        "first_server": first,
        "servers": servers,
        "agents": agents,
        "join_url": join_url,
        "api_url": join_url,
        "version": version,
        "arch": arch,
        "binary": "k3s" if arch == "amd64" else f"k3s-{arch}",
        "checksums": f"sha256sum-{arch}.txt",
        "airgap_images": images if s.get("airgap_images") else "",
        "airgap_auto": bool(s.get("airgap_images")) and not s.get("airgap_images_name"),
        "install_path": f"{s['install_dir']}/k3s-{version}",
        "config": _node_config(s, role, host == first, node_name, port, endpoint, join_url, user),
        "dropins": dropins,
        "dropin_files": [f"{s['config_dir']}/config.yaml.d/{n}.yaml" for n in sorted(dropins)],
        "node_name": node_name,
        "api_port": port,
        "token_file": s["token_file"],
        "config_dir": s["config_dir"],
        "data_dir": s["data_dir"],
        "install_dir": s["install_dir"],
        "artefact_dir": s.get("artefact_dir") or "",
        "release_url": str(s.get("release_url") or "").rstrip("/"),
        "keep_versions": s.get("keep_versions", 2),
        "kubeconfig_dest": s.get("kubeconfig_dest") or "",
        "kubeconfig_context": s.get("kubeconfig_context") or "k3s",
        "wait_timeout": s.get("wait_timeout", 300),
        "journal_lines": s.get("journal_lines", 25),
    }


def _node_role(s, host, servers, agents, problems):
    """server or agent, from k3s_role or the host's group; a server by role joins ``servers``."""
    role = s.get("role") or ""
    if role not in ("", "server", "agent"):
        problems.append(f"{host}: k3s_role: {role!r} must be server or agent")
    in_servers, in_agents = host in servers, host in agents
    if in_servers and in_agents:
        problems.append(f"{host}: is in both k3s_servers and k3s_agents")
    if not role:
        role = "server" if in_servers else "agent" if in_agents else ""
        if not role:
            problems.append(f"{host}: is in neither k3s_servers nor k3s_agents and sets no k3s_role")
    elif (role == "server" and in_agents) or (role == "agent" and in_servers):
        problems.append(f"{host}: k3s_role {role} contradicts its group ({'k3s_agents' if in_agents else 'k3s_servers'})")
    if role == "server" and host not in servers:
        servers.append(host)
    return role


def _first_server(s, host, servers, problems):
    """The server that initialises the cluster (an odd number of servers keeps etcd's quorum useful)."""
    if not servers:
        problems.append(f"{host}: no K3s server: the group k3s_servers is empty")
    elif len(servers) % 2 == 0 and not s.get("allow_even_servers"):
        problems.append(f"{host}: k3s_servers has {len(servers)} servers - an even number adds no fault tolerance to "
                        f"etcd's quorum (set k3s_allow_even_servers: true to accept it)")
    first = s.get("first_server") or (servers[0] if servers else "")
    if servers and first not in servers:
        problems.append(f"{host}: k3s_first_server: {first!r} is not in k3s_servers")
    return first


def _api(s, host, first_address, problems):
    """``(port, endpoint)`` of the API servers join and clients use."""
    port = s.get("api_port", 6443)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        problems.append(f"{host}: k3s_api_port: {port!r} is not a TCP port")
        port = 6443
    endpoint = s.get("api_endpoint") or first_address
    if not isinstance(endpoint, str) or not HOSTNAME.match(endpoint):
        problems.append(f"{host}: k3s_api_endpoint: {endpoint!r} is not a host name or address")
        endpoint = str(endpoint)
    return port, endpoint


def _configs(s, host, role, problems):
    """The user's flags (k3s_config and k3s_server_config/k3s_agent_config) and the drop-in files."""
    allowed = SERVER_KEYS if role != "agent" else AGENT_KEYS
    user = _check_config(f"{host}: k3s_config", s.get("config") or {}, allowed, problems)
    own = "server_config" if role != "agent" else "agent_config"
    user.update(_check_config(f"{host}: k3s_{own}", s.get(own) or {}, allowed, problems))
    dropins = {}
    raw_dropins = s.get("config_dropins") or {}
    if not isinstance(raw_dropins, dict):
        problems.append(f"{host}: k3s_config_dropins: must be a mapping of name to k3s flags")
        raw_dropins = {}
    for name, content in raw_dropins.items():
        if not DROPIN.match(str(name)):
            problems.append(f"{host}: k3s_config_dropins: {name!r} is not a file name (a-z, 0-9, '_', '.', '-')")
            continue
        dropins[str(name)] = _check_config(f"{host}: k3s_config_dropins.{name}", content, allowed, problems,
                                           dropin=True)
    return user, dropins


def _check_install(s, host, problems):
    """Where the release comes from, how many versions stay, the kubeconfig copy, the waits."""
    artefact_dir = s.get("artefact_dir") or ""
    if artefact_dir and not str(artefact_dir).startswith("/"):
        problems.append(f"{host}: k3s_artefact_dir: {artefact_dir!r} must be an absolute path on the controller")
    release_url = s.get("release_url") or ""
    if not artefact_dir and not str(release_url).startswith(("https://", "http://")):
        problems.append(f"{host}: k3s_release_url: {release_url!r} must be an http(s) URL (or set k3s_artefact_dir)")
    keep = s.get("keep_versions", 2)
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        problems.append(f"{host}: k3s_keep_versions: {keep!r} must be 1 or more")
    dest = s.get("kubeconfig_dest") or ""
    if dest and not str(dest).startswith("/"):
        problems.append(f"{host}: k3s_kubeconfig_dest: {dest!r} must be an absolute path on the controller")
    for key in ("wait_timeout", "journal_lines"):
        value = s.get(key, 1)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            problems.append(f"{host}: k3s_{key}: {value!r} must be a positive number")


def _node_config(s, role, first_host, node_name, port, endpoint, join_url, user):
    """The content of config.yaml: the role's own keys, then the user's flags."""
    config = {"node-name": node_name, "token-file": s["token_file"]}
    if s["data_dir"] != "/var/lib/rancher/k3s":
        config["data-dir"] = s["data_dir"]
    if s.get("node_ip"):
        config["node-ip"] = s["node_ip"]
    if role == "server":
        if port != 6443:
            config["https-listen-port"] = port
        config["write-kubeconfig"] = f"{s['config_dir']}/k3s.yaml"
        config["write-kubeconfig-mode"] = "0600"
        if first_host:
            config["cluster-init"] = True
        else:
            config["server"] = join_url
        sans = [endpoint] if s.get("api_endpoint") else []
        extra = user.pop("tls-san", [])
        extra = extra if isinstance(extra, list) else [extra]
        if sans or extra:
            config["tls-san"] = sans + [x for x in extra if x not in sans]
    else:
        config["server"] = join_url
    config.update(user)
    return config


def sha256_of(listing, name, source="the sha256 list"):
    """The sha256 of ``name`` in a ``sha256sum`` listing (k3s's ``sha256sum-<arch>.txt``)."""
    if not isinstance(listing, str):
        raise ModelError([f"{source}: not text"])
    for line in listing.splitlines():
        m = SHA256_LINE.match(line.strip())
        if m and m.group(2) in (name, f"./{name}"):
            return m.group(1).lower()
    raise ModelError([f"{source}: no sha256 for {name}"])


def airgap_name(listing, arch, source="the sha256 list"):
    """The air-gap image archive a release lists for ``arch`` (zst, then gz, then plain tar)."""
    names = {m.group(2) for m in (SHA256_LINE.match(x.strip()) for x in listing.splitlines()) if m}
    for fmt in AIRGAP_FORMATS:
        if f"k3s-airgap-images-{arch}.{fmt}" in names:
            return f"k3s-airgap-images-{arch}.{fmt}"
    raise ModelError([f"{source}: lists no k3s-airgap-images-{arch}.{{{','.join(AIRGAP_FORMATS)}}}"])


def kubeconfig(config, server, name):
    """k3s's admin kubeconfig with the API address and the cluster/context/user names replaced."""
    if not isinstance(config, dict) or not config.get("clusters") or not config.get("users"):
        raise ModelError(["the kubeconfig has no clusters or users"])
    if not str(server).startswith("https://"):
        raise ModelError([f"kubeconfig server {server!r} must be an https:// URL"])
    cluster = dict(config["clusters"][0].get("cluster") or {})
    cluster["server"] = server
    user = dict(config["users"][0].get("user") or {})
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
    }


def node_status(node_list):
    """``{name: {ready, version, etcd_member, server, unschedulable}}`` of a Kubernetes NodeList.

    A node is an etcd member when k3s's etcd controller annotated it
    (``etcd.k3s.cattle.io/node-name``), which it does once the member is in the cluster.
    """
    items = node_list.get("items", []) if isinstance(node_list, dict) else []
    out = {}
    for item in items:
        meta, status = item.get("metadata") or {}, item.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        labels = meta.get("labels") or {}
        out[meta.get("name", "")] = {
            "ready": ready,
            "version": (status.get("nodeInfo") or {}).get("kubeletVersion", ""),
            "server": labels.get("node-role.kubernetes.io/control-plane") == "true",
            "etcd_member": "etcd.k3s.cattle.io/node-name" in (meta.get("annotations") or {}),
            "unschedulable": bool((item.get("spec") or {}).get("unschedulable")),
        }
    return out
