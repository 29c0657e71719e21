"""A test DOUBLE of the k3s binary -- not K3s: no kubelet, no containers, no real etcd.

No k3s binary, kube-apiserver or container runtime can run on the lab hosts (nspawn
containers on a machine without Kubernetes; see docs/k3s.md), so the lab installs this
program in place of ``k3s``, packaged like a k3s release (``build-release``): the binary
``k3s`` (``k3s-arm64`` ...), ``k3s-airgap-images-<arch>.tar.gz`` and ``sha256sum-<arch>.txt``.
Standard library only (it runs on Debian's python3); certificates come from ``openssl``.

It implements what the role ``locus.infra.k3s`` and its tests touch, following these
k3s sources and docs (read through the ``search`` tool):

* k3s-io/docs ``docs/cli/server.md``, ``docs/cli/agent.md`` (flags, defaults: data dir
  ``/var/lib/rancher/k3s``, ``--https-listen-port`` 6443, ``--write-kubeconfig`` default
  ``/etc/rancher/k3s/k3s.yaml`` written 0600 unless ``--write-kubeconfig-mode``),
  ``docs/cli/token.md`` (secure ``K10<CA hash>::<user>:<password>`` and short tokens;
  ``server/token`` and ``server/node-token``), ``docs/cli/etcd-snapshot.md``
  (``etcd-snapshot save``, ``--name`` default ``on-demand``, files in
  ``${data-dir}/server/db/snapshots`` named ``<name>-<node>-<unix time>``),
  ``docs/installation/configuration.md`` (``config.yaml`` then ``config.yaml.d/*.yaml``
  in lexical order; a later file overrides a key, ``key+:`` appends to a list; command
  line flags override the files).
* k3s-io/k3s ``pkg/configfilearg/parser.go`` (unknown keys: ``Unknown flag --X found in
  config.yaml, skipping`` - a warning, k3s starts anyway), ``pkg/clientaccess/token.go``
  (token parsing, the CA hash = sha256 of the PEM CA bundle as stored on disk, ``GET
  /cacerts`` without verification, ``token CA hash does not match the Cluster CA
  certificate hash: X != Y``, HTTP errors as ``<url>: <status>``), the systemd unit that
  ``install.sh`` writes (``Type=notify``: READY=1 once serving), etcd's
  ``membership: too many learner members in cluster`` (one learner at a time; k3s#4335,
  #7000) and the ``etcd.k3s.cattle.io/node-name`` node annotation of etcd members.

Behaviour:

* ``k3s --version``; ``kubectl``/``crictl``/``ctr`` through symlinks (argv[0]) or
  ``k3s kubectl``: ``get nodes [-o json|wide]``, ``cordon``, ``uncordon``, ``drain``.
* ``k3s server``: reads the config as k3s does; token from ``token``/``token-file`` or
  generated; ``cluster-init`` makes a new cluster CA (``server/tls/server-ca.crt``) and a
  one-member etcd; ``server: URL`` joins: ``/cacerts`` + the token's CA hash, basic auth
  ``server:<password>`` (a wrong password: ``<url>: 401 Unauthorized``), then an etcd
  learner that is promoted after catching up (``K3S_DOUBLE_LEARNER_SECONDS``, default 2);
  a second join while a learner exists is refused with etcd's message and the joining
  server exits (as k3s does: fatal). HTTPS (default 6443) with the cluster CA: ``/cacerts``,
  ``/ping``, ``/readyz`` (``[-]etcd failed`` while a learner or without quorum),
  ``/livez``, ``/version``, ``/api/v1/nodes`` (client certificate of the admin kubeconfig
  only). Writes ``server/token`` (0600) and ``node-token``, and the admin kubeconfig.
  Servers share membership and node status with their peers (pull every second), so
  every server answers for the whole cluster while a quorum of servers is up.
* ``k3s agent``: needs ``server`` and a token; registers its node with the server it
  names (failing over to the other servers it learns), heartbeats every 2 s, READY=1 once
  registered; a wrong token keeps it waiting like k3s (``Waiting to retrieve agent
  configuration; server is not ready``).
* ``k3s etcd-snapshot save``: asks the local server and writes the snapshot file.
* Every ``server``/``agent`` start, snapshot and cordon is appended as a JSON line to
  ``${data-dir}/double/events.log`` (``starts`` counts them: "no restart without cause").

A node is Ready while its heartbeat is younger than 40 s (the kubelet's default grace
period). The token is never logged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "v1.31.4+k3s1"
GO_VERSION = "go1.22.9"
DEFAULT_DATA_DIR = "/var/lib/rancher/k3s"
DEFAULT_CONFIG = "/etc/rancher/k3s/config.yaml"
DEFAULT_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
NODE_GRACE = 40.0
PEER_FRESH = 5.0

# Flags of `k3s server` / `k3s agent` (docs/cli/server.md, docs/cli/agent.md): a key in the
# config files that is not one of these is skipped with k3s's warning.
AGENT_FLAGS = {
    "config", "debug", "v", "vmodule", "log", "alsologtostderr", "token", "token-file", "server", "data-dir",
    "node-name", "with-node-id", "node-label", "node-taint", "image-credential-provider-bin-dir",
    "image-credential-provider-config", "selinux", "lb-server-port", "protect-kernel-defaults",
    "container-runtime-endpoint", "default-runtime", "image-service-endpoint", "pause-image", "snapshotter",
    "private-registry", "disable-default-registry-endpoint", "nonroot-devices", "node-ip", "bind-address",
    "node-external-ip", "node-internal-dns", "node-external-dns", "resolv-conf", "flannel-iface", "flannel-conf",
    "flannel-cni-conf", "kubelet-arg", "kube-proxy-arg", "enable-pprof", "rootless", "prefer-bundled-bin", "docker",
    "vpn-auth", "vpn-auth-file", "disable-apiserver-lb", "airgap-extra-registry",
}
SERVER_FLAGS = AGENT_FLAGS - {"lb-server-port", "disable-apiserver-lb"} | {
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
}
SNAPSHOT_FLAGS = {"config", "debug", "log", "data-dir", "node-name", "name", "dir", "etcd-snapshot-dir",
                  "etcd-snapshot-compress", "compress", "token", "token-file", "server", "etcd-s3"}
LIST_FLAGS = {"node-label", "node-taint", "tls-san", "kubelet-arg", "kube-proxy-arg", "kube-apiserver-arg", "etcd-arg",
              "kube-controller-manager-arg", "kube-scheduler-arg", "kube-cloud-controller-manager-arg", "disable",
              "node-ip", "node-external-ip", "cluster-cidr", "service-cidr"}
BOOL_FLAGS = {"debug", "alsologtostderr", "with-node-id", "selinux", "protect-kernel-defaults", "nonroot-devices",
              "enable-pprof", "rootless", "prefer-bundled-bin", "docker", "disable-apiserver-lb",
              "disable-default-registry-endpoint", "tls-san-security", "flannel-ipv6-masq", "flannel-external-ip",
              "cluster-init", "cluster-reset", "etcd-expose-metrics", "etcd-disable-snapshots", "etcd-snapshot-compress",
              "etcd-s3", "etcd-s3-skip-ssl-verify", "etcd-s3-insecure", "disable-scheduler", "disable-cloud-controller",
              "disable-kube-proxy", "disable-network-policy", "disable-helm-controller", "embedded-registry",
              "supervisor-metrics", "secrets-encryption", "disable-agent", "compress"}
SHORT = {"c": "config", "t": "token", "s": "server", "d": "data-dir", "o": "write-kubeconfig", "i": "node-ip", "l": "log"}


class Fatal(Exception):
    """A k3s fatal error: logged as ``level=fatal`` and exit status 1."""


# --------------------------------------------------------------------------- logging
def log(level, msg):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stderr.write(f'time="{stamp}" level={level} msg="{msg}"\n')
    sys.stderr.flush()


# --------------------------------------------------------------------------- YAML subset
def _scalar(text):
    t = text.strip()
    if not t:
        return None
    if t[0] in "'\"":
        q = t[0]
        end = t.rfind(q)
        body = t[1:end] if end > 0 else t[1:]
        return body.replace("''", "'") if q == "'" else bytes(body, "utf-8").decode("unicode_escape")
    if " #" in t:
        t = t.split(" #", 1)[0].rstrip()
    if t.startswith("[") and t.endswith("]"):
        inner = t[1:-1].strip()
        return [_scalar(x) for x in inner.split(",")] if inner else []
    if t == "{}":
        return {}
    low = t.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("null", "~"):
        return None
    try:
        return int(t, 10)
    except ValueError:
        return t


def parse_yaml(text):
    """Block maps, block lists, flow lists and scalars: what config files and kubeconfigs use."""
    lines = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#") or stripped in ("---", "..."):
            continue
        lines.append((len(raw) - len(raw.lstrip(" ")), raw.strip()))
    value, pos = _parse_block(lines, 0, lines[0][0] if lines else 0)
    if pos != len(lines):
        raise ValueError(f"yaml: line {pos + 1}: did not find expected key")
    return {} if value is None else value


def _split_key(item):
    if item.startswith(("'", '"')):
        q = item[0]
        end = item.index(q, 1)
        key, rest = item[1:end], item[end + 1:].lstrip()
        if not rest.startswith(":"):
            raise ValueError(f"yaml: mapping values are not allowed here: {item}")
        return key, rest[1:]
    if ":" not in item or (": " not in item and not item.endswith(":")):
        raise ValueError(f"yaml: could not find expected ':' in {item!r}")
    key, rest = item.split(":", 1) if item.endswith(":") and ": " not in item else item.split(": ", 1)
    return key.strip(), rest


def _parse_block(lines, pos, indent):
    if pos >= len(lines):
        return None, pos
    if lines[pos][1].startswith("- ") or lines[pos][1] == "-":
        out = []
        while pos < len(lines) and lines[pos][0] == indent and (lines[pos][1].startswith("- ") or lines[pos][1] == "-"):
            item = lines[pos][1][2:].strip()
            if not item:
                value, pos = _parse_block(lines, pos + 1, lines[pos + 1][0] if pos + 1 < len(lines) else indent)
                out.append(value)
            elif not item.startswith(("'", '"', "[")) and (": " in item or item.endswith(":")):
                # a mapping that starts on the dash line: re-read it at the item's indent
                inner = indent + 2
                lines[pos] = (inner, item)
                value, pos = _parse_block(lines, pos, inner)
                out.append(value)
            else:
                out.append(_scalar(item))
                pos += 1
        return out, pos
    out = {}
    while pos < len(lines) and lines[pos][0] == indent:
        key, rest = _split_key(lines[pos][1])
        pos += 1
        if rest.strip():
            out[key] = _scalar(rest)
        elif pos < len(lines) and (lines[pos][0] > indent or (lines[pos][0] == indent and lines[pos][1].startswith("-"))):
            out[key], pos = _parse_block(lines, pos, lines[pos][0])
        else:
            out[key] = None
    return out, pos


# --------------------------------------------------------------------------- config
def _parse_cli(args):
    """``--key value``/``--key=value``/``-k value`` -> list of (key, value); bools take no value."""
    out = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            raise Fatal(f"Incorrect Usage: unexpected argument {arg!r}")
        name = arg.lstrip("-")
        value = None
        if "=" in name:
            name, value = name.split("=", 1)
        name = SHORT.get(name, name)
        if value is None:
            if name in BOOL_FLAGS:
                value = True
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise Fatal(f"flag needs an argument: -{name}")
        out.append((name, value))
        i += 1
    return out


def load_config(command, args, valid):
    """The effective settings of ``k3s <command>``: config file, its drop-ins, then the command line."""
    cli = _parse_cli(args)
    config_file = os.environ.get("K3S_CONFIG_FILE") or next((v for k, v in cli if k == "config"), None)
    explicit = config_file is not None
    config_file = config_file or DEFAULT_CONFIG
    files = []
    if os.path.exists(config_file):
        files.append(config_file)
    elif explicit:
        raise Fatal(f"open {config_file}: no such file or directory")
    dropins = config_file + ".d"
    if os.path.isdir(dropins):
        files += [os.path.join(dropins, n) for n in sorted(os.listdir(dropins)) if n.endswith((".yaml", ".yml"))]
    settings = {}
    for path in files:
        with open(path, encoding="utf-8") as fh:
            try:
                data = parse_yaml(fh.read())
            except ValueError as exc:
                raise Fatal(f"failed to parse {path}: {exc}") from None
        if not isinstance(data, dict):
            raise Fatal(f"failed to parse {path}: yaml: unmarshal errors: cannot unmarshal into map")
        for key, value in data.items():
            key = str(key)
            append = key.endswith("+")
            name = key.rstrip("+")
            if name not in valid:
                log("warning", f"Unknown flag --{name} found in config.yaml, skipping\\n")
                continue
            if append and name in settings:
                old = settings[name] if isinstance(settings[name], list) else [settings[name]]
                settings[name] = old + (value if isinstance(value, list) else [value])
            else:
                settings[name] = value
    for key, value in cli:
        if key == "config":
            continue
        if key not in valid:
            raise Fatal(f"flag provided but not defined: -{key}")
        if key in LIST_FLAGS:
            prior = settings.get(key) if key in dict(cli) and isinstance(settings.get(key), list) else []
            settings[key] = (prior or []) + [value]
        else:
            settings[key] = value
    for key in LIST_FLAGS:
        if key in settings and not isinstance(settings[key], list):
            settings[key] = [x for x in str(settings[key]).split(",") if x]
    return settings


def read_token(settings, key="token", file_key="token-file"):
    if settings.get(file_key):
        try:
            with open(settings[file_key], encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise Fatal(f"failed to read token file: {exc}") from None
    value = settings.get(key) or os.environ.get("K3S_" + key.upper().replace("-", "_"))
    return str(value).strip() if value else ""


def parse_token(token, user):
    """(ca_hash, user, password) as pkg/clientaccess/token.go parses a token."""
    if not token:
        raise Fatal("token must not be empty")
    if not token.startswith("K10"):
        token = "K10:::" + token
    rest = token[3:]
    ca_hash, _sep, creds = rest.partition("::")
    if ca_hash and len(ca_hash) != 64:
        raise Fatal("invalid token CA hash length")
    name, sep, password = creds.partition(":")
    if not sep or not password:
        raise Fatal("invalid token format")
    return ca_hash, (name or user), password


def events_path(data_dir):
    return os.path.join(data_dir, "double", "events.log")


def record_event(data_dir, **event):
    os.makedirs(os.path.join(data_dir, "double"), mode=0o700, exist_ok=True)
    event.setdefault("at", time.time())
    event.setdefault("version", VERSION)
    with open(events_path(data_dir), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event, sort_keys=True) + "\n")


def sd_notify(message):
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return
    if target.startswith("@"):
        target = "\0" + target[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(target)
        sock.sendall(message.encode())


def local_address(towards="10.255.255.255"):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((towards, 9))
            return sock.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def write_private(path, data, mode=0o600):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
    with os.fdopen(fd, "wb") as fh:
        fh.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- certificates
def _openssl(*args):
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise Fatal(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def make_ca(tls, name):
    key, crt = os.path.join(tls, f"{name}.key"), os.path.join(tls, f"{name}.crt")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
             "-out", crt, "-days", "3650", "-subj", f"/CN=k3s-{name}@{int(time.time())}")
    os.chmod(key, 0o600)


def make_leaf(tls, name, ca, subject, sans=(), client=False):
    key, crt, csr = (os.path.join(tls, f"{name}.{ext}") for ext in ("key", "crt", "csr"))
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
             "-out", csr, "-subj", subject)
    ext = os.path.join(tls, f"{name}.ext")
    with open(ext, "w", encoding="utf-8") as fh:
        fh.write("[v3]\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n")
        fh.write(f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}\n")
        if sans:
            fh.write("subjectAltName=" + ",".join(sans) + "\n")
    _openssl("x509", "-req", "-in", csr, "-CA", os.path.join(tls, f"{ca}.crt"), "-CAkey", os.path.join(tls, f"{ca}.key"),
             "-CAcreateserial", "-out", crt, "-days", "365", "-extfile", ext, "-extensions", "v3")
    os.chmod(key, 0o600)
    for leftover in (csr, ext):
        os.unlink(leftover)


def ca_hash(pem_bytes):
    return hashlib.sha256(pem_bytes).hexdigest()


# --------------------------------------------------------------------------- HTTP helpers
def http(url, method="GET", body=None, auth=None, cafile=None, cert=None, timeout=5.0):
    """(status, bytes) of one request; cafile None = no verification (like k3s's /cacerts fetch)."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()  # noqa: S323
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(*cert)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - https URLs of the cluster only
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:  # noqa: S310 - https only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def status_text(code):
    return {401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 Not Found", 500: "500 Internal Server Error",
            503: "503 Service Unavailable"}.get(code, str(code))


# --------------------------------------------------------------------------- the server
class Cluster:
    """One server's view of the cluster: etcd members and node records, merged with its peers."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.RLock()
        self.members = {}
        self.nodes = {}
        self.contact = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            self.members, self.nodes = data.get("members", {}), data.get("nodes", {})

    def save(self):
        with self.lock:
            write_private(self.path, json.dumps({"members": self.members, "nodes": self.nodes}, sort_keys=True))

    def snapshot(self):
        with self.lock:
            return {"members": json.loads(json.dumps(self.members)), "nodes": json.loads(json.dumps(self.nodes))}

    def merge(self, other):
        changed = False
        with self.lock:
            for kind in ("members", "nodes"):
                mine = getattr(self, kind)
                for name, rec in other.get(kind, {}).items():
                    if name not in mine or rec.get("updated", 0) > mine[name].get("updated", 0):
                        mine[name] = rec
                        changed = True
        if changed:
            self.save()

    def update(self, kind, name, **fields):
        with self.lock:
            rec = dict(getattr(self, kind).get(name, {}))
            rec.update(fields, updated=time.time())
            getattr(self, kind)[name] = rec
        self.save()
        return rec

    def voters(self):
        with self.lock:
            return {n: m for n, m in self.members.items() if not m.get("learner")}

    def learners(self):
        with self.lock:
            return {n: m for n, m in self.members.items() if m.get("learner")}


class Server:
    def __init__(self, settings):
        self.settings = settings
        self.data_dir = settings.get("data-dir") or DEFAULT_DATA_DIR
        self.sdir = os.path.join(self.data_dir, "server")
        self.tls = os.path.join(self.sdir, "tls")
        self.port = int(settings.get("https-listen-port") or 6443)
        self.bind = settings.get("bind-address") or "0.0.0.0"  # noqa: S104 - k3s's default
        node_ips = settings.get("node-ip") or []
        join = settings.get("server")
        self.node_ip = node_ips[0] if node_ips else local_address(
            (join or "").split("//")[-1].split(":")[0] or "10.255.255.255")
        self.node_name = str(settings.get("node-name") or socket.gethostname())
        self.advertise = settings.get("advertise-address") or self.node_ip
        self.url = f"https://{self.advertise}:{self.port}"
        self.cluster = Cluster(os.path.join(self.sdir, "db", "double-etcd.json"))
        self.password = None
        self.agent_password = None
        self.ready_event = threading.Event()
        self.stopping = threading.Event()

    # ---- start-up
    def prepare(self):
        os.makedirs(self.tls, mode=0o700, exist_ok=True)
        token = read_token(self.settings)
        agent_token = read_token(self.settings, "agent-token", "agent-token-file")
        stored = os.path.join(self.sdir, "token")
        have_db = os.path.exists(self.cluster.path)
        join = self.settings.get("server")
        if self.settings.get("datastore-endpoint"):
            raise Fatal("the k3s double implements embedded etcd only, not datastore-endpoint")
        if have_db:
            with open(stored, encoding="utf-8") as fh:
                stored_pw = parse_token(fh.read().strip(), "server")[2]
            if token:
                password = parse_token(token, "server")[2]
                if password != stored_pw:
                    raise Fatal("starting kubernetes: preparing server: bootstrap data already found and encrypted "
                                "with different token")
            self.password = stored_pw
            log("info", f"Starting k3s {VERSION} (double): existing etcd member {self.node_name}")
        elif join:
            if not token:
                raise Fatal("--token is required when joining a cluster (--server)")
            self.password = self._join(join, token)
        else:
            if token:
                self.password = parse_token(token, "server")[2]
            else:
                self.password = secrets.token_hex(16)
            make_ca(self.tls, "server-ca")
            make_ca(self.tls, "client-ca")
            if not self.settings.get("cluster-init"):
                log("info", "Database: the k3s double models embedded etcd; cluster-init assumed")
            self.cluster.update("members", self.node_name, peer=self.url, learner=False)
            log("info", f"Starting k3s {VERSION} (double): initialised a new etcd cluster")
        with open(os.path.join(self.tls, "server-ca.crt"), "rb") as fh:
            self.ca_pem = fh.read()
        full = f"K10{ca_hash(self.ca_pem)}::server:{self.password}\n"
        write_private(stored, full)
        node_token = os.path.join(self.sdir, "node-token")
        if not os.path.islink(node_token):
            if os.path.exists(node_token):
                os.unlink(node_token)
            os.symlink("token", node_token)
        self.agent_password = parse_token(agent_token, "node")[2] if agent_token else self.password
        if agent_token:
            write_private(os.path.join(self.sdir, "agent-token"),
                          f"K10{ca_hash(self.ca_pem)}::node:{self.agent_password}\n")
        sans = ["IP:127.0.0.1", f"IP:{self.node_ip}", "DNS:localhost", "DNS:kubernetes", f"DNS:{self.node_name}"]
        for san in self.settings.get("tls-san") or []:
            sans.append(("IP:" if all(c in "0123456789.:abcdef" for c in san.lower()) and any(c.isdigit() for c in san)
                         else "DNS:") + san)
        make_leaf(self.tls, "serving-kube-apiserver", "server-ca", "/CN=kube-apiserver", sorted(set(sans)))
        if not os.path.exists(os.path.join(self.tls, "client-admin.crt")):
            make_leaf(self.tls, "client-admin", "client-ca", "/O=system:masters/CN=system:admin", client=True)
        self._write_kubeconfig()
        self._import_images()

    def _join(self, url, token):
        want_hash, password = parse_token(token, "server")[::2]
        code, cacerts = http(f"{url}/cacerts")
        if code != 200:
            raise Fatal(f"failed to get CA certs: {url}/cacerts: {status_text(code)}")
        if want_hash and ca_hash(cacerts) != want_hash:
            raise Fatal(f"failed to validate token: token CA hash does not match the Cluster CA certificate hash: "
                        f"{want_hash} != {ca_hash(cacerts)}")
        if not want_hash:
            log("warning", "Cluster CA certificate is not trusted by the host CA bundle, but the token does not include "
                           "a CA hash. Use the full token from the server's node-token file to enable Cluster CA "
                           "validation.")
        cafile = os.path.join(self.tls, "server-ca.crt")
        write_private(cafile, cacerts, 0o644)
        code, body = http(f"{url}/v1-k3s/server-bootstrap", auth=("server", password), cafile=cafile)
        if code != 200:
            raise Fatal(f"starting kubernetes: preparing server: failed to get bootstrap data: "
                        f"{url}/v1-k3s/server-bootstrap: {status_text(code)}")
        boot = json.loads(body)
        for name, pem in boot["files"].items():
            write_private(os.path.join(self.tls, name), pem, 0o600 if name.endswith(".key") else 0o644)
        code, body = http(f"{url}/v1-k3s/x-double/member-add", "POST", {"name": self.node_name, "peer": self.url},
                          auth=("server", password), cafile=cafile)
        if code != 200:
            raise Fatal(f"ETCD join failed: {body.decode(errors='replace').strip()}")
        self.cluster.merge(json.loads(body))
        log("info", f"Starting k3s {VERSION} (double): joined the etcd cluster at {url} as a learner")
        return password

    def _write_kubeconfig(self):
        path = self.settings.get("write-kubeconfig") or DEFAULT_KUBECONFIG
        mode = int(str(self.settings.get("write-kubeconfig-mode") or "0600"), 8)

        def b64(name):
            with open(os.path.join(self.tls, name), "rb") as fh:
                return base64.b64encode(fh.read()).decode()

        host = "127.0.0.1" if self.bind in ("0.0.0.0", "::") else self.bind  # noqa: S104
        text = (
            "apiVersion: v1\nclusters:\n- cluster:\n"
            f"    certificate-authority-data: {b64('server-ca.crt')}\n"
            f"    server: https://{host}:{self.port}\n  name: default\n"
            "contexts:\n- context:\n    cluster: default\n    user: default\n  name: default\n"
            "current-context: default\nkind: Config\npreferences: {}\nusers:\n- name: default\n  user:\n"
            f"    client-certificate-data: {b64('client-admin.crt')}\n"
            f"    client-key-data: {b64('client-admin.key')}\n"
        )
        write_private(path, text, mode)

    def _import_images(self):
        images = os.path.join(self.data_dir, "agent", "images")
        if os.path.isdir(images):
            for name in sorted(os.listdir(images)):
                log("info", f"Imported images from {os.path.join(images, name)}")

    # ---- running
    def quorum(self):
        voters = self.cluster.voters()
        if self.node_name not in voters:
            return False, "etcd member is a learner or not a member"
        now = time.time()
        alive = 1 + sum(1 for n in voters if n != self.node_name and now - self.cluster.contact.get(n, 0) < PEER_FRESH)
        need = len(voters) // 2 + 1
        return alive >= need, f"{alive} of {len(voters)} etcd members reachable, quorum {need}"

    def heartbeat(self, name, role, address, version):
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "k3s"}
        if role == "server":
            labels.update({"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true",
                           "node-role.kubernetes.io/etcd": "true"})
        prior = self.cluster.nodes.get(name, {})
        self.cluster.update("nodes", name, role=role, address=address, version=version, labels=labels,
                            seen=time.time(), unschedulable=prior.get("unschedulable", False),
                            created=prior.get("created", time.time()))

    def node_json(self, name, rec):
        ready = time.time() - rec.get("seen", 0) < NODE_GRACE
        member = self.cluster.members.get(name)
        annotations = {}
        if member and not member.get("learner"):
            annotations = {"etcd.k3s.cattle.io/node-name": f"{name}-{hashlib.sha256(name.encode()).hexdigest()[:8]}",
                           "etcd.k3s.cattle.io/node-address": rec.get("address", "")}
        taints = [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}] if rec.get("unschedulable") else []
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": rec.get("labels", {}), "annotations": annotations,
                         "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rec.get("created", 0)))},
            "spec": {"unschedulable": True, "taints": taints} if rec.get("unschedulable") else {},
            "status": {
                "conditions": [{"type": "Ready", "status": "True" if ready else "Unknown",
                                "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                                "message": "kubelet is posting ready status" if ready
                                else "Kubelet stopped posting node status."}],
                "addresses": [{"type": "InternalIP", "address": rec.get("address", "")},
                              {"type": "Hostname", "address": name}],
                "nodeInfo": {"kubeletVersion": rec.get("version", ""), "kubeProxyVersion": rec.get("version", ""),
                             "containerRuntimeVersion": "containerd://1.7.23-k3s2", "operatingSystem": "linux"},
            },
        }

    def peer_loop(self):
        cafile = os.path.join(self.tls, "server-ca.crt")
        promoted_asked = False
        joined_at = time.monotonic()
        learner_wait = float(os.environ.get("K3S_DOUBLE_LEARNER_SECONDS", "2"))
        while not self.stopping.is_set():
            self.heartbeat(self.node_name, "server", self.node_ip, VERSION)
            for name, member in list(self.cluster.members.items()):
                if name == self.node_name:
                    continue
                try:
                    code, body = http(f"{member['peer']}/v1-k3s/x-double/state", auth=("server", self.password),
                                      cafile=cafile, timeout=2)
                except OSError:
                    continue
                if code == 200:
                    self.cluster.contact[name] = time.time()
                    self.cluster.merge(json.loads(body))
            me = self.cluster.members.get(self.node_name, {})
            if me.get("learner") and not promoted_asked and time.monotonic() - joined_at >= learner_wait:
                # caught up: ask a voter to promote this learner
                for member in self.cluster.voters().values():
                    try:
                        code, body = http(f"{member['peer']}/v1-k3s/x-double/promote", "POST", {"name": self.node_name},
                                          auth=("server", self.password), cafile=cafile, timeout=2)
                    except OSError:
                        continue
                    if code == 200:
                        self.cluster.merge(json.loads(body))
                        promoted_asked = True
                        log("info", f"Promoted etcd learner {self.node_name} to voting member")
                        break
            ok = self.quorum()[0]
            if ok and not self.ready_event.is_set():
                self.ready_event.set()
                log("info", "k3s is up and running")
            self.stopping.wait(1.0)

    def serve(self):
        server = self
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(self.tls, "serving-kube-apiserver.crt"),
                            os.path.join(self.tls, "serving-kube-apiserver.key"))
        ctx.load_verify_locations(os.path.join(self.tls, "client-ca.crt"))
        ctx.verify_mode = ssl.CERT_OPTIONAL

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):
                pass

            def do_GET(self):
                server.handle(self, None)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                server.handle(self, self.rfile.read(length) if length else b"")

            do_PATCH = do_POST

        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        httpd_cls = type("DoubleHTTPS", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        httpd = httpd_cls((self.bind, self.port), Handler)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd

    def _reply(self, h, code, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else (json.dumps(body) if not isinstance(body, str) else body).encode()
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _basic(self, h, users):
        header = h.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _sep, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        want = {"server": self.password, "node": self.agent_password}
        return user in users and secrets.compare_digest(password, want[user] or "")

    def _admin(self, h):
        cert = h.connection.getpeercert() if hasattr(h.connection, "getpeercert") else None
        if not cert:
            return False
        subject = {k: v for rdn in cert.get("subject", ()) for k, v in rdn}
        return subject.get("organizationName") == "system:masters"

    def handle(self, h, raw):
        path = h.path.split("?")[0]
        if path == "/cacerts":
            return self._reply(h, 200, self.ca_pem, "text/plain")
        if path == "/ping":
            return self._reply(h, 200, "pong", "text/plain")
        if path in ("/readyz", "/livez", "/healthz"):
            ok, why = self.quorum()
            if path == "/livez" or ok:
                return self._reply(h, 200, "ok", "text/plain")
            return self._reply(h, 500, f"[+]ping ok\n[-]etcd failed: {why}\n{path[1:]} check failed\n", "text/plain")
        if path == "/version":
            major, minor = VERSION.lstrip("v").split(".")[:2]
            return self._reply(h, 200, {"major": major, "minor": minor, "gitVersion": VERSION, "goVersion": GO_VERSION,
                                        "platform": "linux/amd64"})
        if path.startswith("/v1-k3s/"):
            return self.handle_supervisor(h, path, raw)
        if path.startswith("/api/"):
            if not self._admin(h):
                return self._reply(h, 401, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                            "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
            return self.handle_api(h, path, raw)
        return self._reply(h, 404, {"kind": "Status", "status": "Failure", "message": "the server could not find the "
                                    "requested resource", "reason": "NotFound", "code": 404})

    def handle_api(self, h, path, raw):
        ok = self.quorum()[0]
        if not ok:
            return self._reply(h, 503, {"kind": "Status", "status": "Failure", "code": 503,
                                        "message": "etcdserver: request timed out"})
        parts = path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "nodes"]:
            with self.cluster.lock:
                nodes = {n: dict(r) for n, r in self.cluster.nodes.items()}
            if len(parts) == 3:
                return self._reply(h, 200, {"apiVersion": "v1", "kind": "NodeList", "metadata": {},
                                            "items": [self.node_json(n, r) for n, r in sorted(nodes.items())]})
            name = parts[3]
            if name not in nodes:
                return self._reply(h, 404, {"kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound",
                                            "message": f'nodes "{name}" not found'})
            if h.command == "PATCH":
                patch = json.loads(raw or b"{}")
                unschedulable = bool(patch.get("spec", {}).get("unschedulable"))
                rec = self.cluster.update("nodes", name, unschedulable=unschedulable)
                record_event(self.data_dir, event="cordon" if unschedulable else "uncordon", node=name)
                return self._reply(h, 200, self.node_json(name, rec))
            return self._reply(h, 200, self.node_json(name, nodes[name]))
        return self._reply(h, 404, {"kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound"})

    def handle_supervisor(self, h, path, raw):
        body = json.loads(raw) if raw else {}
        if path == "/v1-k3s/x-double/node-status":
            if not self._basic(h, ("node", "server")):
                return self._reply(h, 401, "Unauthorized", "text/plain")
            self.heartbeat(body["name"], body.get("role", "agent"), body.get("address", ""), body.get("version", ""))
            return self._reply(h, 200, {"servers": [m["peer"] for m in self.cluster.voters().values()]})
        if not self._basic(h, ("server",)):
            return self._reply(h, 401, "Unauthorized", "text/plain")
        if path == "/v1-k3s/server-bootstrap":
            files = {}
            for name in ("server-ca.crt", "server-ca.key", "client-ca.crt", "client-ca.key"):
                with open(os.path.join(self.tls, name), encoding="utf-8") as fh:
                    files[name] = fh.read()
            return self._reply(h, 200, {"files": files})
        if path == "/v1-k3s/x-double/state":
            return self._reply(h, 200, self.cluster.snapshot())
        if path == "/v1-k3s/x-double/member-add":
            ok, why = self.quorum()
            if not ok:
                return self._reply(h, 503, f"etcdserver: unhealthy cluster ({why})", "text/plain")
            with self.cluster.lock:
                others = [n for n in self.cluster.learners() if n != body["name"]]
                if others:
                    return self._reply(h, 500, "etcdserver: too many learner members in cluster", "text/plain")
                self.cluster.update("members", body["name"], peer=body["peer"], learner=True)
            log("info", f"Adding member {body['name']}={body['peer']} to etcd cluster as a learner")
            return self._reply(h, 200, self.cluster.snapshot())
        if path == "/v1-k3s/x-double/promote":
            if body.get("name") not in self.cluster.members:
                return self._reply(h, 404, "etcdserver: member not found", "text/plain")
            self.cluster.update("members", body["name"], learner=False)
            return self._reply(h, 200, self.cluster.snapshot())
        return self._reply(h, 404, "404 page not found", "text/plain")

    def run(self):
        self.prepare()
        record_event(self.data_dir, event="start", mode="server", pid=os.getpid(), node=self.node_name)
        self.serve()
        threading.Thread(target=self.peer_loop, daemon=True).start()
        # READY=1 once this server serves and its etcd member is in the cluster (as a learner
        # at least): systemd's start of a Type=notify unit returns then, like k3s.
        sd_notify("READY=1")
        log("info", f"Running kube-apiserver (double) on {self.bind}:{self.port}")
        while True:
            time.sleep(3600)


# --------------------------------------------------------------------------- the agent
def run_agent(settings):
    data_dir = settings.get("data-dir") or DEFAULT_DATA_DIR
    url = settings.get("server")
    if not url:
        raise Fatal("--server is required")
    token = read_token(settings)
    if not token:
        raise Fatal("--token is required")
    want_hash, password = parse_token(token, "node")[::2]
    name = str(settings.get("node-name") or socket.gethostname())
    node_ips = settings.get("node-ip") or []
    address = node_ips[0] if node_ips else local_address(url.split("//")[-1].split(":")[0])
    record_event(data_dir, event="start", mode="agent", pid=os.getpid(), node=name)
    images = os.path.join(data_dir, "agent", "images")
    if os.path.isdir(images):
        for image in sorted(os.listdir(images)):
            log("info", f"Imported images from {os.path.join(images, image)}")
    cafile = os.path.join(data_dir, "agent", "server-ca.crt")
    servers = [url.rstrip("/")]
    notified = False
    while True:
        for server in list(servers):
            try:
                code, cacerts = http(f"{server}/cacerts", timeout=3)
                if code != 200:
                    raise OSError(f"{server}/cacerts: {status_text(code)}")
                if want_hash and ca_hash(cacerts) != want_hash:
                    log("error", f"failed to validate token: token CA hash does not match the Cluster CA certificate "
                                 f"hash: {want_hash} != {ca_hash(cacerts)}")
                    continue
                write_private(cafile, cacerts, 0o644)
                code, body = http(f"{server}/v1-k3s/x-double/node-status", "POST",
                                  {"name": name, "role": "agent", "address": address, "version": VERSION},
                                  auth=("node", password), cafile=cafile, timeout=3)
                if code != 200:
                    log("info", f"Waiting to retrieve agent configuration; server is not ready: "
                                f"{server}/v1-k3s/x-double/node-status: {status_text(code)}")
                    continue
                learned = json.loads(body).get("servers") or []
                servers = [server] + [s for s in learned if s != server]
                if not notified:
                    sd_notify("READY=1")
                    log("info", f"k3s agent is up and running: registered node {name} with {server}")
                    notified = True
                break
            except OSError as exc:
                log("info", f"Waiting to retrieve agent configuration; server is not ready: {exc}")
        time.sleep(2)


# --------------------------------------------------------------------------- kubectl
def _kubeconfig(path):
    with open(path, encoding="utf-8") as fh:
        cfg = parse_yaml(fh.read())
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    tmp = tempfile.mkdtemp(prefix="k3s-double-kubectl-")
    files = {}
    for key, name in (("certificate-authority-data", "ca.crt"), ("client-certificate-data", "client.crt"),
                      ("client-key-data", "client.key")):
        files[name] = os.path.join(tmp, name)
        write_private(files[name], base64.b64decode(cluster.get(key) or user.get(key)))
    return cluster["server"], files, tmp


def kubectl(args):
    kubeconfig = os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    rest = []
    output = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--kubeconfig":
            kubeconfig, i = args[i + 1], i + 2
            continue
        if a.startswith("--kubeconfig="):
            kubeconfig = a.split("=", 1)[1]
        elif a == "-o":
            output, i = args[i + 1], i + 2
            continue
        elif a.startswith(("-o=", "--output=")):
            output = a.split("=", 1)[1]
        elif a.startswith("-o") and len(a) > 2:
            output = a[2:]
        elif a.startswith("-"):
            pass  # --ignore-daemonsets, --delete-emptydir-data, --timeout=...: nothing runs in the double
        else:
            rest.append(a)
        i += 1
    if rest[:1] == ["version"] and "--client" in args:
        print(f"Client Version: {VERSION}")
        return 0
    try:
        server, files, tmp = _kubeconfig(kubeconfig)
    except (OSError, KeyError, IndexError, ValueError) as exc:
        sys.stderr.write(f"error: error loading config file \"{kubeconfig}\": {exc}\n")
        return 1
    cert = (files["client.crt"], files["client.key"])
    try:
        if rest[:2] in (["get", "nodes"], ["get", "node"], ["get", "no"]):
            path = "/api/v1/nodes" + (f"/{rest[2]}" if len(rest) > 2 else "")
            code, body = http(server + path, cafile=files["ca.crt"], cert=cert)
            if code != 200:
                msg = json.loads(body).get("message", "") if body.startswith(b"{") else body.decode()
                sys.stderr.write(f"Error from server: {msg}\n")
                return 1
            data = json.loads(body)
            if output == "json":
                print(json.dumps(data, indent=4))
                return 0
            items = data["items"] if data.get("kind") == "NodeList" else [data]
            print(f"{'NAME':<20}{'STATUS':<28}{'ROLES':<30}{'VERSION'}")
            for item in items:
                ready = item["status"]["conditions"][0]["status"] == "True"
                cordoned = ",SchedulingDisabled" if item["spec"].get("unschedulable") else ""
                status = ("Ready" if ready else "NotReady") + cordoned
                roles = ",".join(sorted(k.split("/", 1)[1] for k in item["metadata"]["labels"]
                                        if k.startswith("node-role.kubernetes.io/"))) or "<none>"
                print(f"{item['metadata']['name']:<20}{status:<28}{roles:<30}{item['status']['nodeInfo']['kubeletVersion']}")
            return 0
        if rest[:1] in (["cordon"], ["uncordon"], ["drain"]) and len(rest) == 2:
            want = rest[0] != "uncordon"
            code, body = http(f"{server}/api/v1/nodes/{rest[1]}", "PATCH", {"spec": {"unschedulable": want}},
                              cafile=files["ca.crt"], cert=cert)
            if code != 200:
                sys.stderr.write(f"Error from server (NotFound): nodes \"{rest[1]}\" not found\n")
                return 1
            print(f"node/{rest[1]} {'cordoned' if want else 'uncordoned'}")
            if rest[0] == "drain":
                print(f"node/{rest[1]} drained")
            return 0
    except OSError as exc:
        sys.stderr.write(f"The connection to the server {server.split('//')[-1]} was refused - did you specify the "
                         f"right host or port? ({exc})\n")
        return 1
    finally:
        for path in files.values():
            os.unlink(path)
        os.rmdir(tmp)
    sys.stderr.write(f"error: the k3s double's kubectl does not implement: {' '.join(rest)}\n")
    return 1


# --------------------------------------------------------------------------- etcd-snapshot
def etcd_snapshot(args):
    if not args or args[0] != "save":
        raise Fatal("the k3s double implements `etcd-snapshot save` only")
    settings = load_config("etcd-snapshot", args[1:], SNAPSHOT_FLAGS | SERVER_FLAGS)
    data_dir = settings.get("data-dir") or DEFAULT_DATA_DIR
    sdir = os.path.join(data_dir, "server")
    try:
        with open(os.path.join(sdir, "token"), encoding="utf-8") as fh:
            password = parse_token(fh.read().strip(), "server")[2]
    except OSError:
        raise Fatal(f"etcd database not found in {sdir}/db/etcd") from None
    port = int(settings.get("https-listen-port") or 6443)
    bind = settings.get("bind-address") or "127.0.0.1"
    host = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind  # noqa: S104
    try:
        code, body = http(f"https://{host}:{port}/v1-k3s/x-double/state", auth=("server", password),
                          cafile=os.path.join(sdir, "tls", "server-ca.crt"))
    except OSError as exc:
        raise Fatal(f"failed to save snapshot: etcd is not running: {exc}") from None
    if code != 200:
        raise Fatal(f"failed to save snapshot: {status_text(code)}")
    node = str(settings.get("node-name") or socket.gethostname())
    name = f"{settings.get('name') or 'on-demand'}-{node}-{int(time.time())}"
    directory = settings.get("dir") or settings.get("etcd-snapshot-dir") or os.path.join(sdir, "db", "snapshots")
    path = os.path.join(directory, name)
    write_private(path, body)
    record_event(data_dir, event="snapshot", name=name, path=path)
    log("info", f"Snapshot {name} saved.")
    return 0


# --------------------------------------------------------------------------- release packaging
def build_release(dest, version, arch="amd64"):
    """Write a k3s-release-shaped directory for ``version``: binary, air-gap images, sha256 list."""
    with open(os.path.abspath(__file__), encoding="utf-8") as fh:
        source = fh.read()
    marker = f'VERSION = "{VERSION}"'
    if marker not in source:
        raise SystemExit("build-release: cannot find the VERSION line")
    os.makedirs(dest, exist_ok=True)
    binary = "k3s" if arch == "amd64" else f"k3s-{arch}"
    with open(os.path.join(dest, binary), "w", encoding="utf-8") as fh:
        # an executable like the real binary: the release file starts with its interpreter
        fh.write("#!/usr/bin/env python3\n" + source.replace(marker, f'VERSION = "{version}"', 1))
    os.chmod(os.path.join(dest, binary), 0o755)  # noqa: S103 - a release's binary is executable by all
    import io
    import tarfile
    images = f"k3s-airgap-images-{arch}.tar.gz"
    manifest = json.dumps([{"RepoTags": [f"docker.io/rancher/mirrored-pause:3.6-double-{version}"]}]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size, info.mtime = len(manifest), 0
        tar.addfile(info, io.BytesIO(manifest))
    with open(os.path.join(dest, images), "wb") as fh:
        fh.write(buf.getvalue())
    lines = []
    for name in (binary, images):
        with open(os.path.join(dest, name), "rb") as fh:
            lines.append(f"{hashlib.sha256(fh.read()).hexdigest()}  {name}")
    with open(os.path.join(dest, f"sha256sum-{arch}.txt"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return dest


def main(argv):
    prog = os.path.basename(argv[0])
    args = argv[1:]
    if prog in ("kubectl", "crictl", "ctr"):
        args = [prog] + args
    try:
        if not args or args[0] in ("-v", "--version", "version"):
            print(f"k3s version {VERSION} ({hashlib.sha256(VERSION.encode()).hexdigest()[:8]})\ngo version {GO_VERSION}")
            return 0
        command, rest = args[0], args[1:]
        if command == "kubectl":
            return kubectl(rest)
        if command in ("crictl", "ctr"):
            if "--version" in rest or "-v" in rest or "version" in rest:
                print(f"{command} version v1.31.0-k3s2 (k3s double)")
                return 0
            sys.stderr.write(f"{command}: the k3s double runs no containers\n")
            return 1
        if command == "server":
            Server(load_config("server", rest, SERVER_FLAGS)).run()
        elif command == "agent":
            run_agent(load_config("agent", rest, AGENT_FLAGS))
        elif command == "etcd-snapshot":
            return etcd_snapshot(rest)
        elif command == "build-release":
            if len(rest) < 2:
                raise SystemExit("usage: k3s_double.py build-release DEST VERSION [ARCH]")
            print(build_release(*rest[:3]))
            return 0
        else:
            sys.stderr.write(f"No help topic for '{command}'\n")
            return 3
    except Fatal as exc:
        log("fatal", str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
