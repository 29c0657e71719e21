#!/usr/bin/env python
"""Bring a real NetBox up on this machine for tests and benchmarks, and tear it down.

NetBox 4.7 needs Python >= 3.12; the host is Debian 12 (Python 3.11). So:

* NetBox lives in a Debian trixie chroot (debootstrap minbase, Python 3.13, a venv with the
  pinned ``requirements-<version>.txt`` beside this file), cached machine-wide under
  ``$LOCUS_CACHE_DIR/netbox-<version>-chroot`` and built once per machine.
* PostgreSQL 15 and Redis 7 run on the host (Debian packages) as private throw-away
  instances in the state directory, bound to 127.0.0.1 only.
* The database is restored from ``dumps/netbox-<version>.sql.gz`` (pg_dump SQL, taken once right after
  migrating an empty database, no users): ~1 s instead of ~220 s of migrations. When the
  dump for the version is missing, ``up`` migrates and writes it — commit that file.
* gunicorn runs inside the chroot in a private mount namespace (``unshare -m``): the
  instance directory is bind-mounted at ``/srv/netbox`` (``NETBOX_ROOT``) and the mounts
  vanish with the processes, so several instances can share one cached chroot.

Commands (run as root)::

    netboxctl.py up [--port 18000|auto] [--state-dir DIR] [--workers 1] [--threads 4]
    netboxctl.py down [--state-dir DIR | --port N]
    netboxctl.py status [--port N]
    netboxctl.py build          # only make sure the cached chroot exists
    netboxctl.py dump           # regenerate dumps/netbox-<version>.sql.gz from scratch
    netboxctl.py lock           # recompile requirements-<version>.txt inside the chroot

``up`` prints a JSON document (also written to ``<state-dir>/env.json``) with the URL, the
admin's v1 and v2 tokens and the ports; ``--shell`` prints ``export NETBOX_API=...`` lines.
Ports: web = base, PostgreSQL = base + 1, Redis = base + 2 (default base 18000; ``auto``
takes the first free base of 18000, 18010, ... 18090).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

NETBOX_VERSION = "4.7.3"
HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / f"requirements-{NETBOX_VERSION}.txt"
DUMP = HERE / "dumps" / f"netbox-{NETBOX_VERSION}.sql.gz"
# psycopg[c] (NetBox's pin) compiles a C extension (~1 m 50 s); the binary wheel is the same API.
OVERRIDES = "psycopg[binary,pool]==3.3.6\n"
DEBIAN_SUITE = "trixie"
DEBIAN_MIRROR = os.environ.get("LOCUS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
PG_BIN = Path(os.environ.get("LOCUS_PG_BIN", "/usr/lib/postgresql/15/bin"))
PORT_BASES = range(18000, 18100, 10)
CHROOT_VENV = "/opt/netbox/venv"
CHROOT_INSTANCE = "/srv/netbox"
HOST_CA = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
START_TIMEOUT = 180.0


class NetBoxCtlError(RuntimeError):
    """A bring-up or tear-down step failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"netboxctl: {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("LOCUS_CACHE_DIR") or "/var/cache/locus")


def chroot_dir() -> Path:
    return cache_dir() / f"netbox-{NETBOX_VERSION}-chroot"


def run(cmd, *, check=True, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("text", True)
    proc = subprocess.run(cmd, check=False, **kw)
    if check and proc.returncode != 0:
        out = proc.stdout or ""
        out = (out.decode(errors="replace") if isinstance(out, bytes) else out).strip().splitlines()[-25:]
        raise NetBoxCtlError(f"{' '.join(map(str, cmd[:6]))} exited {proc.returncode}:\n" + "\n".join(out))
    return proc


@contextlib.contextmanager
def flock(path: Path, *, blocking: bool, what: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise NetBoxCtlError(f"{what} is already in progress (lock {path} is held by another process)") from None
        yield
    finally:
        os.close(fd)


def requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes() + OVERRIDES.encode()).hexdigest()


# --------------------------------------------------------------------------- chroot


def _chroot_env(extra: dict | None = None) -> list[str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "SSL_CERT_FILE": "/etc/ssl/certs/host-ca.crt",
        "PIP_CERT": "/etc/ssl/certs/host-ca.crt",
        "UV_NATIVE_TLS": "1",
        "UV_CACHE_DIR": "/var/cache/uv",
    }
    env.update(extra or {})
    return ["env", "-i", *(f"{k}={v}" for k, v in env.items())]


def _install_venv(root: Path) -> None:
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(uv).exists():
        raise NetBoxCtlError("uv not found on the host (make setup installs it into .venv/bin)")
    shutil.copy2(uv, root / "usr/local/bin/uv")
    (root / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
    shutil.copy2(HOST_CA, root / "etc/ssl/certs/host-ca.crt")
    (root / "tmp/requirements.txt").write_bytes(REQUIREMENTS.read_bytes())
    env = _chroot_env()
    run(["chroot", str(root), *env, "uv", "venv", "-q", "--clear", CHROOT_VENV, "--python", "/usr/bin/python3"])
    run(["chroot", str(root), *env, "uv", "pip", "sync", "-q", "--python", f"{CHROOT_VENV}/bin/python",
         "/tmp/requirements.txt"])
    shutil.rmtree(root / "var/cache/uv", ignore_errors=True)
    (root / CHROOT_INSTANCE.lstrip("/")).mkdir(parents=True, exist_ok=True)


def ensure_chroot() -> Path:
    """Return the cached chroot, building it (under a machine-wide lock) when missing or stale."""
    final = chroot_dir()
    stamp = final / ".locus-ready"
    digest = requirements_digest()
    if stamp.exists() and stamp.read_text().strip() == digest:
        (final / CHROOT_INSTANCE.lstrip("/")).mkdir(parents=True, exist_ok=True)
        return final
    with flock(cache_dir() / f"netbox-{NETBOX_VERSION}-chroot.lock", blocking=True, what="chroot build"):
        if stamp.exists() and stamp.read_text().strip() == digest:
            return final
        t0 = time.monotonic()
        if (final / "usr/bin/python3").exists():
            log(f"requirements changed: reinstalling the NetBox venv in {final}")
            _install_venv(final)
        else:
            partial = final.with_name(final.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            log(f"debootstrap {DEBIAN_SUITE} into {partial} (once per machine)")
            run(["debootstrap", "--variant=minbase", "--include=python3", DEBIAN_SUITE, str(partial), DEBIAN_MIRROR])
            shutil.rmtree(partial / "var/cache/apt/archives", ignore_errors=True)
            (partial / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
            log("installing NetBox into the chroot venv")
            _install_venv(partial)
            shutil.rmtree(final, ignore_errors=True)
            partial.rename(final)
        stamp.write_text(digest + "\n")
        log(f"chroot ready in {time.monotonic() - t0:.1f} s: {final}")
    return final


def lock_requirements() -> None:
    """Recompile requirements-<version>.txt for the chroot's Python (run after a version bump)."""
    root = ensure_chroot()
    (root / "tmp/req.in").write_text(f"netbox=={NETBOX_VERSION}\n")
    (root / "tmp/overrides.txt").write_text(OVERRIDES)
    run(["chroot", str(root), *_chroot_env(), "uv", "pip", "compile", "-q", "--python", f"{CHROOT_VENV}/bin/python",
         "--override", "/tmp/overrides.txt", "--generate-hashes", "--no-header", "/tmp/req.in", "-o", "/tmp/req.txt"])
    header = (f"# NetBox {NETBOX_VERSION} for the test chroot (Python 3.13). Regenerate with\n"
              f"#   tests/netbox/netboxctl.py lock\n# psycopg[c] is overridden by {OVERRIDES.strip()}.\n")
    REQUIREMENTS.write_text(header + (root / "tmp/req.txt").read_text())


# --------------------------------------------------------------------------- instance


@dataclass
class Instance:
    state: Path
    port: int

    @property
    def pg_port(self) -> int:
        return self.port + 1

    @property
    def redis_port(self) -> int:
        return self.port + 2

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env_file(self) -> Path:
        return self.state / "env.json"

    @property
    def lock_file(self) -> Path:
        return lock_path(self.port)

    @property
    def pgdata(self) -> Path:
        return self.state / "pg" / "data"

    @property
    def pgsock(self) -> Path:
        return self.state / "pg" / "sock"

    def read_env(self) -> dict | None:
        try:
            return json.loads(self.env_file.read_text())
        except (OSError, ValueError):
            return None


def lock_path(port: int) -> Path:
    """One lock per port base, wherever the state lives: two starts on one port never overlap."""
    return Path(tempfile.gettempdir()) / f"locus-netbox-{port}.lock"


def default_state_dir(port: int) -> Path:
    return Path(os.environ.get("LOCUS_NETBOX_STATE_DIR") or f"/tmp/locus-netbox-{port}")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(requested: str) -> int:
    if requested != "auto":
        return int(requested)
    for base in PORT_BASES:
        if _lock_is_free(base) and all(port_free(base + i) for i in range(3)):
            return base
    raise NetBoxCtlError("no free port triple among 18000..18092 on 127.0.0.1")


def _lock_is_free(base: int) -> bool:
    path = lock_path(base)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _psql(inst: Instance, sql: str, db: str = "postgres") -> None:
    run([str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(inst.pgsock), "-p", str(inst.pg_port),
         "-U", "postgres", "-d", db, "-c", sql])


def start_postgres(inst: Instance, db_password: str) -> None:
    pg_root = inst.state / "pg"
    pg_root.mkdir(mode=0o700)
    inst.pgsock.mkdir(mode=0o700)
    shutil.chown(pg_root, "postgres", "postgres")
    shutil.chown(inst.pgsock, "postgres", "postgres")
    run([str(PG_BIN / "initdb"), "-D", str(inst.pgdata), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
         "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"], user="postgres", group="postgres")
    opts = (f"-p {inst.pg_port} -k {inst.pgsock} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60 -c shared_buffers=128MB")
    run([str(PG_BIN / "pg_ctl"), "-D", str(inst.pgdata), "-l", str(pg_root / "postgres.log"), "-o", opts, "-w",
         "-t", "60", "start"], user="postgres", group="postgres")
    _psql(inst, f"CREATE ROLE netbox LOGIN PASSWORD '{db_password}'")
    _psql(inst, "CREATE DATABASE netbox OWNER netbox")


def start_redis(inst: Instance, password: str) -> int:
    rdir = inst.state / "redis"
    rdir.mkdir()
    conf = rdir / "redis.conf"
    conf.write_text(
        f"port {inst.redis_port}\nbind 127.0.0.1\nprotected-mode yes\nsave \"\"\nappendonly no\n"
        f"dir {rdir}\nrequirepass {password}\ndaemonize no\nlogfile {rdir / 'redis.log'}\n")
    conf.chmod(0o600)
    proc = subprocess.Popen(["redis-server", str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NetBoxCtlError(f"redis-server exited {proc.returncode}; see {rdir / 'redis.log'}")
        if not port_free(inst.redis_port):
            return proc.pid
        time.sleep(0.05)
    raise NetBoxCtlError(f"redis-server did not listen on 127.0.0.1:{inst.redis_port} within 20 s")


def write_configuration(inst: Instance, secrets_: dict) -> None:
    conf = inst.state / "instance" / "conf"
    conf.mkdir(parents=True)
    for sub in ("media", "reports", "scripts", "static"):
        (inst.state / "instance" / sub).mkdir()
    redis = {"HOST": "127.0.0.1", "PORT": inst.redis_port, "PASSWORD": secrets_["redis_password"], "SSL": False}
    text = f"""# Generated by tests/netbox/netboxctl.py for a throw-away test instance.
ALLOWED_HOSTS = ['127.0.0.1', 'localhost']
DATABASES = {{'default': {{
    'ENGINE': 'django.db.backends.postgresql', 'NAME': 'netbox', 'USER': 'netbox',
    'PASSWORD': {secrets_['db_password']!r}, 'HOST': '127.0.0.1', 'PORT': {inst.pg_port}, 'CONN_MAX_AGE': 300,
}}}}
REDIS = {{
    'tasks': {dict(redis, DATABASE=0)!r},
    'caching': {dict(redis, DATABASE=1)!r},
}}
SECRET_KEY = {secrets_['secret_key']!r}
API_TOKEN_PEPPERS = {{1: {secrets_['pepper']!r}}}
# No outbound calls from a test instance.
CENSUS_REPORTING_ENABLED = False
ISOLATED_DEPLOYMENT = True
RELEASE_CHECK_URL = None
PLUGINS = []
METRICS_ENABLED = False
DEBUG = False
TIME_ZONE = 'UTC'
MAX_PAGE_SIZE = 1000
PAGINATE_COUNT = 50
"""
    path = conf / "configuration.py"
    path.write_text(text)
    path.chmod(0o600)


def chroot_argv(root: Path, inst: Instance, argv: list[str], env: dict | None = None) -> list[str]:
    """argv that runs `argv` inside the chroot, in a private mount namespace with the instance bound in."""
    script = ('set -e; mount --bind "$1" "$2/srv/netbox"; mount -t proc proc "$2/proc"; '
              'r="$2"; shift 2; exec chroot "$r" "$@"')
    full_env = {"NETBOX_ROOT": CHROOT_INSTANCE, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
            str(inst.state / "instance"), str(root), *_chroot_env(full_env), *argv]


def netbox_cli(root: Path, inst: Instance, *args: str, timeout: float = 600) -> str:
    return run(chroot_argv(root, inst, [f"{CHROOT_VENV}/bin/netbox", *args]), timeout=timeout).stdout


BOOTSTRAP = r"""
import json
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
executor = MigrationExecutor(connection)
pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
if pending:
    call_command('migrate', interactive=False, verbosity=0)
from users.models import Token, User
admin = User.objects.create_superuser('admin', 'admin@example.invalid', PASSWORD)
v1 = Token(user=admin, version=1, description='locus tests (v1)')
v1.save()
v2 = Token(user=admin, version=2, description='locus tests (v2)')
v2.save()
print('LOCUS-BOOTSTRAP ' + json.dumps({
    'pending_migrations': len(pending), 'token_v1': v1.token, 'token_v2': 'nbt_' + v2.key + '.' + v2.token,
}))
"""


def _restore_or_migrate(root: Path, inst: Instance) -> str:
    if DUMP.exists():
        sql = gzip.decompress(DUMP.read_bytes())
        run([str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(inst.pgsock), "-p", str(inst.pg_port),
             "-U", "netbox", "-d", "netbox", "-o", "/dev/null"], input=sql, text=False)
        return "restored"
    log(f"no dump for NetBox {NETBOX_VERSION}: migrating an empty database (~4 min), then writing {DUMP}")
    netbox_cli(root, inst, "migrate", "--no-input", "-v", "0", timeout=1800)
    DUMP.parent.mkdir(exist_ok=True)
    tmp = DUMP.with_suffix(".tmp")
    sql = run([str(PG_BIN / "pg_dump"), "-h", str(inst.pgsock), "-p", str(inst.pg_port), "-U", "postgres",
               "--no-owner", "--no-privileges", "netbox"], stderr=subprocess.PIPE, text=False).stdout
    tmp.write_bytes(gzip.compress(sql, compresslevel=9, mtime=0))
    tmp.rename(DUMP)
    log(f"wrote {DUMP} ({DUMP.stat().st_size} bytes): commit it")
    return "migrated"


def start_gunicorn(root: Path, inst: Instance, workers: int, threads: int) -> int:
    log_path = inst.state / "gunicorn.log"
    argv = [f"{CHROOT_VENV}/bin/gunicorn", "--bind", f"127.0.0.1:{inst.port}", "--workers", str(workers),
            "--threads", str(threads), "--worker-class", "gthread" if threads > 1 else "sync",
            "--timeout", "300", "--graceful-timeout", "5", "--no-control-socket", "--max-requests", "0",
            "--error-logfile", "-", "netbox.wsgi"]
    with open(log_path, "ab") as fh:
        proc = subprocess.Popen(chroot_argv(root, inst, argv), stdin=subprocess.DEVNULL, stdout=fh, stderr=fh,
                                start_new_session=True, cwd="/")
    return proc.pid


def wait_ready(inst: Instance, pid: int, token: str) -> float:
    t0 = time.monotonic()
    req = urllib.request.Request(f"{inst.url}/api/status/", headers={"Authorization": f"Token {token}",  # noqa: S310
                                                                     "Accept": "application/json"})
    last = ""
    while time.monotonic() - t0 < START_TIMEOUT:
        if not pid_alive(pid):
            tail = (inst.state / "gunicorn.log").read_text(errors="replace").splitlines()[-30:]
            raise NetBoxCtlError("gunicorn exited during start-up:\n" + "\n".join(tail))
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback URL built above
                body = json.loads(resp.read())
                if body.get("netbox-version", "").startswith(NETBOX_VERSION.rsplit(".", 1)[0]):
                    return time.monotonic() - t0
                last = f"unexpected status body {body!r}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.25)
    raise NetBoxCtlError(f"NetBox did not answer {inst.url}/api/status/ within {START_TIMEOUT:.0f} s: {last}")


def up(port: str = "18000", state_dir: Path | None = None, workers: int = 1, threads: int = 4,
       reuse: bool = False) -> dict:
    if os.geteuid() != 0:
        raise NetBoxCtlError("netboxctl needs root (debootstrap, chroot, unshare, postgres user)")
    t_start = time.monotonic()
    base = pick_port(port)
    inst = Instance(Path(state_dir) if state_dir else default_state_dir(base), base)
    with flock(inst.lock_file, blocking=False, what=f"a start or stop of the NetBox instance in {inst.state}"):
        env = inst.read_env()
        if env and pid_alive(env.get("pids", {}).get("gunicorn")):
            if reuse:
                return env
            raise NetBoxCtlError(f"NetBox is already running from {inst.state} at {env['url']} "
                                 f"(gunicorn pid {env['pids']['gunicorn']}); run `netboxctl.py down` first")
        if inst.state.exists():
            log(f"removing stale state {inst.state}")
            _stop(inst, env or {})
            shutil.rmtree(inst.state)
        busy = [p for p in (inst.port, inst.pg_port, inst.redis_port) if not port_free(p)]
        if busy:
            raise NetBoxCtlError(f"port(s) {busy} on 127.0.0.1 are in use; pick another base with --port")
        t_chroot = time.monotonic()
        root = ensure_chroot()
        t_chroot = time.monotonic() - t_chroot
        inst.state.mkdir(parents=True)
        inst.state.chmod(0o755)
        sec = {"db_password": secrets.token_hex(16), "redis_password": secrets.token_hex(16),
               "secret_key": secrets.token_urlsafe(48), "pepper": secrets.token_urlsafe(48),
               "admin_password": secrets.token_urlsafe(18)}
        env = {"url": inst.url, "port": inst.port, "pg_port": inst.pg_port, "redis_port": inst.redis_port,
               "state_dir": str(inst.state), "netbox_version": NETBOX_VERSION, "chroot": str(root), "pids": {}}
        try:
            start_postgres(inst, sec["db_password"])
            env["pids"]["redis"] = start_redis(inst, sec["redis_password"])
            _save_env(inst, env)
            write_configuration(inst, sec)
            t_db = time.monotonic()
            env["database"] = _restore_or_migrate(root, inst)
            # Django boots in the gunicorn worker while the bootstrap process boots beside it.
            env["pids"]["gunicorn"] = start_gunicorn(root, inst, workers, threads)
            _save_env(inst, env)
            out = run(chroot_argv(root, inst, [f"{CHROOT_VENV}/bin/netbox", "shell", "-c",
                                               f"PASSWORD = {sec['admin_password']!r}\n{BOOTSTRAP}"]),
                      timeout=1800).stdout
            boot = next((json.loads(line.split(" ", 1)[1]) for line in out.splitlines()
                         if line.startswith("LOCUS-BOOTSTRAP ")), None)
            if boot is None:
                raise NetBoxCtlError("NetBox bootstrap printed no result:\n" + out[-3000:])
            t_db = time.monotonic() - t_db
            env.update(token_v1=boot["token_v1"], token_v2=boot["token_v2"], admin_user="admin",
                       admin_password=sec["admin_password"])
            _save_env(inst, env)
            t_ready = wait_ready(inst, env["pids"]["gunicorn"], env["token_v1"])
        except BaseException:
            _stop(inst, env)
            raise
        env["timings"] = {"total_s": round(time.monotonic() - t_start, 2), "chroot_s": round(t_chroot, 2),
                          "database_s": round(t_db, 2), "gunicorn_ready_s": round(t_ready, 2)}
        _save_env(inst, env)
        log(f"NetBox {NETBOX_VERSION} up at {inst.url} in {env['timings']['total_s']} s ({env['timings']})")
        return env


def _save_env(inst: Instance, env: dict) -> None:
    tmp = inst.env_file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(env, fh, indent=2)
    tmp.rename(inst.env_file)


def _kill_group(pid: int | None, timeout: float, sig: int = signal.SIGTERM) -> None:
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _stop(inst: Instance, env: dict) -> None:
    pids = env.get("pids", {})
    # gunicorn: INT = quick shutdown; it still lingers ~5 s on gthread workers, so KILL after 1 s.
    _kill_group(pids.get("gunicorn"), 1, signal.SIGINT)
    _kill_group(pids.get("redis"), 10)
    if (inst.pgdata / "postmaster.pid").exists():
        run([str(PG_BIN / "pg_ctl"), "-D", str(inst.pgdata), "-m", "immediate", "-w", "-t", "30", "stop"],
            user="postgres", group="postgres", check=False)


def stop_component(env: dict, component: str) -> None:
    """Stop one part of a running instance (tests of failure modes): ``gunicorn`` or ``postgres``."""
    inst = Instance(Path(env["state_dir"]), env["port"])
    if component == "gunicorn":
        _kill_group(env["pids"].get("gunicorn"), 1, signal.SIGINT)
    elif component == "postgres":
        run([str(PG_BIN / "pg_ctl"), "-D", str(inst.pgdata), "-m", "fast", "-w", "-t", "30", "stop"],
            user="postgres", group="postgres")
    else:
        raise NetBoxCtlError(f"unknown component {component!r}")


def restart_web(env: dict, workers: int, threads: int) -> dict:
    """Restart only gunicorn (other worker settings), keeping the database; returns the updated env."""
    inst = Instance(Path(env["state_dir"]), env["port"])
    with flock(inst.lock_file, blocking=False, what=f"a start or stop of the NetBox instance in {inst.state}"):
        _kill_group(env["pids"].get("gunicorn"), 1, signal.SIGINT)
        deadline = time.monotonic() + 10
        while not port_free(inst.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        env["pids"]["gunicorn"] = start_gunicorn(Path(env["chroot"]), inst, workers, threads)
        _save_env(inst, env)
        wait_ready(inst, env["pids"]["gunicorn"], env["token_v1"])
    return env


def down(port: int | None = None, state_dir: Path | None = None, keep: bool = False) -> None:
    inst = Instance(Path(state_dir) if state_dir else default_state_dir(port or 18000), port or 18000)
    env = inst.read_env() or {}
    inst.port = env.get("port", inst.port)
    with flock(inst.lock_file, blocking=True, what="stop"):
        env = inst.read_env() or {}
        _stop(inst, env)
        if not keep and inst.state.exists():
            shutil.rmtree(inst.state)


def regenerate_dump() -> None:
    with contextlib.suppress(FileNotFoundError):
        DUMP.unlink()
    env = up(port="auto")
    down(state_dir=Path(env["state_dir"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pu = sub.add_parser("up", help="start a NetBox instance")
    pu.add_argument("--port", default="18000", help="base port (web; +1 PostgreSQL, +2 Redis) or 'auto'")
    pu.add_argument("--state-dir", type=Path)
    pu.add_argument("--workers", type=int, default=1)
    pu.add_argument("--threads", type=int, default=4)
    pu.add_argument("--reuse", action="store_true", help="return the running instance instead of failing")
    pu.add_argument("--shell", action="store_true", help="print export lines instead of JSON")
    for name in ("down", "status"):
        sp = sub.add_parser(name)
        sp.add_argument("--port", type=int, default=18000)
        sp.add_argument("--state-dir", type=Path)
        if name == "down":
            sp.add_argument("--keep", action="store_true", help="keep the state directory (logs)")
    pr = sub.add_parser("restart-web", help="restart gunicorn only, e.g. with more workers")
    pr.add_argument("--port", type=int, default=18000)
    pr.add_argument("--state-dir", type=Path)
    pr.add_argument("--workers", type=int, default=1)
    pr.add_argument("--threads", type=int, default=4)
    sub.add_parser("build", help="make sure the cached chroot exists")
    sub.add_parser("dump", help=f"regenerate {DUMP.relative_to(HERE.parent.parent)}")
    sub.add_parser("lock", help=f"recompile {REQUIREMENTS.name}")
    args = p.parse_args(argv)
    try:
        if args.cmd == "up":
            env = up(args.port, args.state_dir, args.workers, args.threads, args.reuse)
            if args.shell:
                print(f"export NETBOX_API={env['url']}\nexport NETBOX_TOKEN={env['token_v1']}\n"
                      f"export NETBOX_TOKEN_V2={env['token_v2']}\nexport LOCUS_NETBOX_STATE_DIR={env['state_dir']}")
            else:
                print(json.dumps(env, indent=2))
        elif args.cmd == "down":
            down(args.port, args.state_dir, args.keep)
        elif args.cmd == "status":
            inst = Instance(args.state_dir or default_state_dir(args.port), args.port)
            env = inst.read_env()
            alive = bool(env) and pid_alive(env["pids"].get("gunicorn"))
            print(json.dumps({"running": alive, "url": env and env["url"], "state_dir": str(inst.state)}))
            return 0 if alive else 3
        elif args.cmd == "restart-web":
            inst = Instance(args.state_dir or default_state_dir(args.port), args.port)
            env = inst.read_env()
            if not env:
                raise NetBoxCtlError(f"no instance in {inst.state}")
            restart_web(env, args.workers, args.threads)
        elif args.cmd == "build":
            print(ensure_chroot())
        elif args.cmd == "dump":
            regenerate_dump()
        elif args.cmd == "lock":
            lock_requirements()
    except (NetBoxCtlError, OSError, subprocess.SubprocessError) as exc:
        print(f"netboxctl: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
