"""The k3s double on loopback: config files read as k3s reads them, tokens checked as k3s
checks them, HA joins one learner at a time, nodes, kubeconfig, snapshots and start counts."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from doubles import k3s_double as dbl

DOUBLE = Path(dbl.__file__)


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait(pred, timeout=30.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


class Node:
    """One double process (server or agent) with its own config, data dir and address."""

    def __init__(self, base, name, ip, mode, config, env=None):
        self.name, self.ip, self.mode = name, ip, mode
        self.dir = base / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data = self.dir / "data"
        self.kubeconfig = self.dir / "k3s.yaml"
        self.port = free_port(ip) if mode == "server" else None
        cfg = {"data-dir": str(self.data), "node-name": name, "node-ip": ip}
        if mode == "server":
            cfg.update({"bind-address": ip, "https-listen-port": self.port, "write-kubeconfig": str(self.kubeconfig)})
        cfg.update(config)
        self.config = self.dir / "config.yaml"
        self.config.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in cfg.items()))
        self.env = {**os.environ, "K3S_DOUBLE_LEARNER_SECONDS": "1", **(env or {})}
        self.log = self.dir / "log"
        self.proc = None

    @property
    def url(self):
        return f"https://{self.ip}:{self.port}"

    def start(self):
        self.proc = subprocess.Popen([sys.executable, str(DOUBLE), self.mode, "--config", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"), env=self.env)  # noqa: SIM115
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def ready(self):
        try:
            code, body = dbl.http(f"{self.url}/readyz", cafile=str(self.data / "server" / "tls" / "server-ca.crt"),
                                  timeout=2)
        except OSError:
            return False
        return code == 200 and body == b"ok"

    def token(self):
        return (self.data / "server" / "token").read_text().strip()

    def kubectl(self, *args):
        return subprocess.run([sys.executable, str(DOUBLE), "kubectl", "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, timeout=30, check=False)

    def starts(self):
        path = self.data / "double" / "events.log"
        if not path.exists():
            return []
        return [e for e in map(json.loads, path.read_text().splitlines()) if e["event"] == "start"]

    def logtext(self):
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def cluster(tmp_path):
    nodes = []

    def make(name, ip, mode="server", config=None, env=None):
        node = Node(tmp_path, name, ip, mode, config or {}, env)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


def token_file(tmp_path, text, name="token"):
    path = tmp_path / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def test_version_and_symlinked_names(tmp_path):
    out = subprocess.run([sys.executable, str(DOUBLE), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith(f"k3s version {dbl.VERSION} (")
    assert "go version go" in out.stdout
    release = dbl.build_release(str(tmp_path / "rel"), "v1.32.0+k3s1")
    link = tmp_path / "kubectl"
    link.symlink_to(Path(release) / "k3s")
    out = subprocess.run([str(Path(release) / "k3s"), "--version"], capture_output=True, text=True, check=True)
    assert "k3s version v1.32.0+k3s1" in out.stdout
    client = subprocess.run([str(link), "version", "--client"], capture_output=True, text=True, check=True)
    assert client.stdout.strip() == "Client Version: v1.32.0+k3s1"


def test_release_layout_and_checksums(tmp_path):
    import hashlib

    dest = Path(dbl.build_release(str(tmp_path / "v"), "v1.31.5+k3s1"))
    listed = dict(reversed(line.split("  ")) for line in (dest / "sha256sum-amd64.txt").read_text().splitlines())
    assert set(listed) == {"k3s", "k3s-airgap-images-amd64.tar.gz"}
    for name, digest in listed.items():
        assert hashlib.sha256((dest / name).read_bytes()).hexdigest() == digest


def test_config_files_as_k3s_reads_them(tmp_path, capsys):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("node-label:\n  - a=1\nnode-name: one\nbogus-key: 1\ndisable: [traefik]\n")
    dropins = tmp_path / "config.yaml.d"
    dropins.mkdir()
    (dropins / "10-x.yaml").write_text("node-name: two\nnode-label+:\n- b=2\n")
    (dropins / "20-y.yaml").write_text("node-name: three\n")
    (dropins / "30-ignored.txt").write_text("node-name: never\n")
    settings = dbl.load_config("server", ["--config", str(cfg), "--node-label", "c=3"], dbl.SERVER_FLAGS)
    assert settings["node-name"] == "three"
    assert settings["node-label"] == ["a=1", "b=2", "c=3"]
    assert settings["disable"] == ["traefik"]
    assert "bogus-key" not in settings
    assert "Unknown flag --bogus-key found in config.yaml, skipping" in capsys.readouterr().err
    with pytest.raises(dbl.Fatal, match="flag provided but not defined: -bogus"):
        dbl.load_config("server", ["--config", str(cfg), "--bogus", "1"], dbl.SERVER_FLAGS)
    # agent-only and server-only keys are judged by the command that reads them
    cfg.write_text("cluster-init: true\n")
    dbl.load_config("agent", ["--config", str(cfg)], dbl.AGENT_FLAGS)
    assert "Unknown flag --cluster-init found in config.yaml, skipping" in capsys.readouterr().err


def test_token_parsing_as_k3s():
    assert dbl.parse_token("secret", "server") == ("", "server", "secret")
    assert dbl.parse_token("K10" + "a" * 64 + "::server:pw", "node") == ("a" * 64, "server", "pw")
    with pytest.raises(dbl.Fatal, match="invalid token CA hash length"):
        dbl.parse_token("K10abc::server:pw", "server")
    with pytest.raises(dbl.Fatal, match="invalid token format"):
        dbl.parse_token("K10" + "a" * 64 + "::nopassword", "server")


def test_ha_cluster_joins_one_learner_at_a_time(cluster, tmp_path):
    s1 = cluster("s1", "127.0.0.2", config={"cluster-init": True,
                                            "token-file": token_file(tmp_path, "first-secret")}).start()
    wait(s1.ready, what="s1 /readyz")
    tok = stat.S_IMODE(os.stat(s1.data / "server" / "token").st_mode)
    assert tok == 0o600
    assert os.readlink(s1.data / "server" / "node-token") == "token"
    assert stat.S_IMODE(os.stat(s1.kubeconfig).st_mode) == 0o600
    full = s1.token()
    ca = (s1.data / "server" / "tls" / "server-ca.crt").read_bytes()
    assert full == f"K10{dbl.ca_hash(ca)}::server:first-secret"
    # the token never reaches the log
    assert "first-secret" not in s1.logtext()

    joiner_file = token_file(tmp_path, full, "full-token")
    # a learner that takes its time to catch up keeps the learner slot busy
    s2 = cluster("s2", "127.0.0.3", config={"server": s1.url, "token-file": joiner_file},
                 env={"K3S_DOUBLE_LEARNER_SECONDS": "6"}).start()
    wait(lambda: "as a learner" in s2.logtext(), what="s2 to become a learner")
    assert not s2.ready()
    s3 = cluster("s3", "127.0.0.4", config={"server": s1.url, "token-file": joiner_file}).start()
    assert s3.proc.wait(30) == 1
    assert 'level=fatal msg="ETCD join failed: etcdserver: too many learner members in cluster"' in s3.logtext()

    wait(s2.ready, what="s2 promoted and ready")
    s3 = cluster("s3b", "127.0.0.4", config={"server": s2.url, "token-file": joiner_file}).start()
    wait(s3.ready, what="s3 ready")

    # s3b joined through s2: s1 learns of it once the membership has reached it
    def nodes_on_s1():
        out = s1.kubectl("get", "nodes", "-o", "json")
        assert out.returncode == 0, out.stderr
        return {n["metadata"]["name"]: n for n in json.loads(out.stdout)["items"]}
    wait(lambda: set(nodes_on_s1()) == {"s1", "s2", "s3b"}, what="s3b visible on s1")
    nodes = nodes_on_s1()
    assert set(nodes) == {"s1", "s2", "s3b"}
    for node in nodes.values():
        assert node["status"]["conditions"][0] == {**node["status"]["conditions"][0], "type": "Ready", "status": "True"}
        assert node["metadata"]["labels"]["node-role.kubernetes.io/etcd"] == "true"
        assert "etcd.k3s.cattle.io/node-name" in node["metadata"]["annotations"]
        assert node["status"]["nodeInfo"]["kubeletVersion"] == dbl.VERSION

    # an agent with the server's full token registers; one with a wrong password waits
    agent = cluster("a1", "127.0.0.5", mode="agent",
                    config={"server": s3.url, "token-file": joiner_file}).start()
    wrong = cluster("a2", "127.0.0.6", mode="agent",
                    config={"server": s1.url, "token-file": token_file(tmp_path, "K10" + dbl.ca_hash(ca)
                                                                       + "::server:not-the-secret", "bad")}).start()
    wait(lambda: "a1" in s1.kubectl("get", "nodes").stdout, what="a1 visible on s1 (through s3)")
    wait(lambda: "Waiting to retrieve agent configuration; server is not ready" in wrong.logtext()
         and "401 Unauthorized" in wrong.logtext(), what="a2 refused")
    assert wrong.proc.poll() is None and agent.proc.poll() is None
    assert "a2" not in s1.kubectl("get", "nodes").stdout

    # quorum: one server down keeps the cluster ready, two down does not
    s3.stop()
    assert s1.ready()
    s2.stop()
    wait(lambda: not s1.ready(), what="s1 to lose quorum")
    code, body = dbl.http(f"{s1.url}/readyz", cafile=str(s1.data / "server" / "tls" / "server-ca.crt"))
    assert code == 500 and b"[-]etcd failed" in body

    # a restart counts one start; the stored token wins over a different one
    s2.start()
    wait(s1.ready, what="quorum back")
    assert [e["mode"] for e in s2.starts()] == ["server", "server"]
    assert len(s1.starts()) == 1


def test_wrong_tokens_refused_with_k3s_messages(cluster, tmp_path):
    s1 = cluster("s1", "127.0.0.7", config={"cluster-init": True,
                                            "token-file": token_file(tmp_path, "right")}).start()
    wait(s1.ready, what="s1 ready")
    bad_hash = cluster("x1", "127.0.0.8", config={"server": s1.url, "token": "K10" + "0" * 64 + "::server:right"}).start()
    assert bad_hash.proc.wait(30) == 1
    assert "token CA hash does not match the Cluster CA certificate hash: " + "0" * 64 + " != " in bad_hash.logtext()
    bad_pw = cluster("x2", "127.0.0.9", config={"server": s1.url, "token": "wrong"}).start()
    assert bad_pw.proc.wait(30) == 1
    assert f"{s1.url}/v1-k3s/server-bootstrap: 401 Unauthorized" in bad_pw.logtext()
    assert "wrong" not in bad_pw.logtext().replace("401 Unauthorized", "")

    s1.stop()
    s1.config.write_text(s1.config.read_text().replace(str(tmp_path / "token"), token_file(tmp_path, "other", "t2")))
    s1.start()
    assert s1.proc.wait(30) == 1
    assert "bootstrap data already found and encrypted with different token" in s1.logtext()


def test_snapshot_drain_and_anonymous_api(cluster, tmp_path):
    s1 = cluster("s1", "127.0.0.10", config={"cluster-init": True}).start()
    wait(s1.ready, what="s1 ready")
    code = dbl.http(f"{s1.url}/api/v1/nodes", cafile=str(s1.data / "server" / "tls" / "server-ca.crt"))[0]
    assert code == 401
    code, body = dbl.http(f"{s1.url}/version", cafile=str(s1.data / "server" / "tls" / "server-ca.crt"))
    assert code == 200 and json.loads(body)["gitVersion"] == dbl.VERSION
    snap = subprocess.run([sys.executable, str(DOUBLE), "etcd-snapshot", "save", "--config", str(s1.config),
                           "--name", "pre-upgrade"], capture_output=True, text=True, check=False)
    assert snap.returncode == 0, snap.stderr
    files = list((s1.data / "server" / "db" / "snapshots").iterdir())
    assert len(files) == 1 and files[0].name.startswith("pre-upgrade-s1-")
    assert "Snapshot pre-upgrade-s1-" in snap.stderr
    assert s1.kubectl("drain", "s1", "--ignore-daemonsets").returncode == 0
    node = json.loads(s1.kubectl("get", "nodes", "s1", "-o", "json").stdout)
    assert node["spec"]["unschedulable"] is True
    assert s1.kubectl("uncordon", "s1").returncode == 0
    assert "SchedulingDisabled" not in s1.kubectl("get", "nodes").stdout
    assert s1.kubectl("get", "nodes", "nope").returncode == 1
