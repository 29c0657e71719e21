# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nginx configuration as one tree: compare, stage, test in place, promote, reload, probe, roll back.

Private API of the collection (may change without notice). Runs on the managed host
(shipped with ``locus.infra.nginx_tree`` and ``locus.infra.nginx_probe``); standard library only.
The desired files, their comparison with the live tree, the file writer and the lock are
:mod:`_config_tree`'s (bird_tree's too); the waits are :mod:`_retry`'s.

The tree is the main file (``nginx.conf``) plus one directory owned entirely by the caller
(``locus/``) below the configuration directory. Every include, certificate and password
file inside the tree is referenced by a path *relative to the configuration directory*;
nginx resolves those against the directory of the file given with ``-c``. A staged copy of
the tree is therefore a complete configuration by itself: ``nginx -t -c <stage>/nginx.conf``
tests exactly what will go live, includes and all - which ``validate: nginx -t -c %s`` on a
lone temporary file cannot do (its includes still point at the live files).

Applying a changed tree:

1. stage the whole new tree in a sibling directory and ``nginx -t`` it there;
2. move the live tree aside and the staged one into place (renames on one file system),
   ``nginx -t`` again in place;
3. reload (or start) nginx and wait for a new generation of worker processes - nginx
   answers a reload signal even when it then rejects the configuration, so the signal's
   exit status proves nothing;
4. probe the sites over HTTP(S);
5. any failure: put the previous tree back, reload it, and report the failure.

:func:`run` is the whole job of the ``locus.infra.nginx_tree`` module (options checked,
trees compared, check-mode test or transaction); the module file declares its options only.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile

from ansible_collections.locus.infra.plugins.module_utils._config_tree import (
    Entry,
    Lock,
    TreeError,
    desired,
    differences,
    group_id,
    parse_mode,
    read_live,
    relabel,
    sync_dir,
    tree_name,
    write_tree,
)
from ansible_collections.locus.infra.plugins.module_utils._retry import wait_for

# ------------------------------------------------------------------ password files ------------
_CRYPT_FIELD = re.compile(r"^\$(?P<id>[156])\$(?P<salt>(?:rounds=\d+\$)?[./0-9A-Za-z]{1,16})\$[./0-9A-Za-z]+$")


def openssl_passwd(password, salt, run=subprocess.run):
    """SHA-512 crypt(3) of ``password`` with ``salt`` (what nginx checks through glibc's crypt)."""
    proc = run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password.encode("utf-8"),
               stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise ValueError(f"openssl passwd failed: {proc.stderr.decode('utf-8', 'replace').strip()}")
    return proc.stdout.decode("ascii").strip()


def new_salt():
    alphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "".join(alphabet[b % 64] for b in os.urandom(16))


def htpasswd_content(users, existing_text, hasher=openssl_passwd):
    """The password file for ``users``; an existing line is kept while its password still
    matches (so the salt, the file and ``changed`` stay the same), otherwise a new salt."""
    existing = {}
    for line in (existing_text or "").splitlines():
        if ":" in line:
            name, field = line.split(":", 1)
            existing[name] = field
    lines = []
    for user in users:
        name = user["name"]
        if user.get("password_hash"):
            field = user["password_hash"]
        else:
            password = user.get("password") or ""
            old = existing.get(name, "")
            m = _CRYPT_FIELD.match(old)
            if m and m.group("id") == "6" and hasher(password, m.group("salt")) == old:
                field = old
            else:
                field = hasher(password, new_salt())
        lines.append(f"{name}:{field}\n")
    return "".join(lines)


# ------------------------------------------------------------------ testing -------------------
def nginx_test(nginx, conf_file, run=subprocess.run):
    """``nginx -t -c conf_file`` -> (ok, output)."""
    proc = run([nginx, "-t", "-c", conf_file], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    return proc.returncode == 0, proc.stdout.decode("utf-8", "replace").strip()


# ------------------------------------------------------------------ processes -----------------
def _children(pid):
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read().decode("utf-8", "replace")
            ppid = int(data[data.rindex(")") + 2:].split()[1])
            if ppid != pid:
                continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except (OSError, ValueError, IndexError):
            continue
        out[int(name)] = cmd
    return out


def workers(master):
    """PIDs of the master's current worker processes (not those shutting down)."""
    return {pid for pid, cmd in _children(master).items() if cmd.startswith("nginx: worker process") and "shutting down" not in cmd}


# Workers of a reload come within milliseconds; a slow host may need seconds.
WORKER_POLL = {"interval": 0.05, "factor": 1.5, "cap": 0.5}


class Service:
    """nginx under systemd: state, master PID, reload/start/restart with a proof of effect."""

    def __init__(self, module, name, error_log, timeout):
        self.module = module
        self.name = name
        self.error_log = error_log
        self.timeout = timeout

    def _systemctl(self, *args):
        rc, out, err = self.module.run_command(["systemctl", *args, self.name])
        return rc, (out or "").strip(), (err or "").strip()

    def active(self):
        return self._systemctl("is-active")[1] == "active"

    def master(self):
        rc, out, _err = self.module.run_command(["systemctl", "show", "--property=MainPID", "--value", self.name])
        try:
            return int(out.strip()) if rc == 0 else 0
        except ValueError:
            return 0

    def log_offset(self):
        try:
            return os.path.getsize(self.error_log)
        except OSError:
            return 0

    def log_since(self, offset, limit=20):
        try:
            with open(self.error_log, "rb") as f:
                f.seek(offset)
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []
        wanted = [line for line in lines if re.search(r"\[(emerg|alert|crit|error)\]", line)]
        return wanted[-limit:]

    def reload(self):
        """Reload and wait for new workers. Returns ``(ok, detail, log_lines)``."""
        master = self.master()
        before = workers(master) if master else set()
        offset = self.log_offset()
        rc, _out, err = self._systemctl("reload")
        if rc != 0:
            return False, f"systemctl reload {self.name} failed: {err}", self.log_since(offset)
        loaded, fresh = wait_for(lambda: workers(master) - before, bool, timeout=self.timeout, **WORKER_POLL)
        if loaded:
            return True, f"reloaded (master {master}, new workers {sorted(fresh)})", []
        return False, (f"nginx (unit {self.name}, master {master}) did not load the new configuration within "
                       f"{self.timeout:g} s (no new worker processes after the reload signal)"), self.log_since(offset)

    def start(self, verb="start"):
        offset = self.log_offset()
        rc, _out, err = self._systemctl(verb)
        if rc != 0 or not self.active():
            return False, f"systemctl {verb} {self.name} failed: {err or 'not active afterwards'}", self.log_since(offset)
        up, master = wait_for(self.master, lambda pid: pid and workers(pid), timeout=self.timeout, **WORKER_POLL)
        if up:
            return True, f"{verb}ed (master {master})", []
        return False, (f"nginx (unit {self.name}, master {master or 'none'}) has no worker processes "
                       f"{self.timeout:g} s after {verb}"), self.log_since(offset)


def bind_conflict(lines):
    """True when a reload failed only because the running master holds a conflicting socket
    (e.g. 0.0.0.0:80 while the new configuration wants 10.0.0.5:80): a restart fixes that."""
    return bool(lines) and all("Address already in use" in line or "still could not bind" in line for line in lines)


# ------------------------------------------------------------------ probing -------------------
def _not_after(der):
    """The certificate's notAfter as ``YYYY-MM-DDTHH:MM:SSZ`` (None without the cryptography package)."""
    try:
        from cryptography import x509
    except ImportError:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    # not_valid_after_utc exists from cryptography 42; Debian 12's targets have 38, whose
    # not_valid_after is the same instant as a naive UTC datetime.
    after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after
    return after.strftime("%Y-%m-%dT%H:%M:%SZ")


def probe(address, port, scheme="https", server_name=None, path="/", method="GET", headers=None, timeout=5.0,
          ca_pem=None, body_limit=4096):
    """One HTTP(S) request to ``address``:``port`` with ``server_name`` as SNI and Host.

    Never raises for network trouble: returns ``{status, reason, headers, body, certificate, error}``.
    Without ``ca_pem`` the certificate is read but not verified; with it, the chain and the
    name are verified against it.
    """
    result = {"address": address, "port": port, "scheme": scheme, "server_name": server_name, "path": path,
              "status": None, "reason": None, "headers": {}, "body": "", "certificate": None, "error": None}
    host = server_name or address
    sock = None
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
        if scheme == "https":
            if ca_pem:
                ctx = ssl.create_default_context(cadata=ca_pem)
            else:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=host)
            der = sock.getpeercert(binary_form=True)
            if der:
                result["certificate"] = {"sha256": hashlib.sha256(der).hexdigest(), "version": sock.version(), "not_after": _not_after(der)}
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.sock = sock
        hdrs = {"Host": host if port in (80, 443) else f"{host}:{port}", "User-Agent": "locus.infra-nginx-probe",
                "Connection": "close"}
        hdrs.update(headers or {})
        conn.request(method, path, headers=hdrs)
        resp = conn.getresponse()
        result["status"] = resp.status
        result["reason"] = resp.reason
        result["headers"] = {k.lower(): v for k, v in resp.getheaders()}
        result["body"] = resp.read(body_limit).decode("utf-8", "replace")
        conn.close()
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
    return result


def probe_until(spec, timeout):
    """Probe until the expected status comes back or ``timeout`` seconds have passed; the last result."""
    expected = spec.get("status") or [200]

    def once():
        res = probe(spec["address"], spec["port"], spec.get("scheme") or "https", spec.get("server_name"),
                    spec.get("path") or "/", timeout=min(5.0, max(timeout, 0.5)))
        res["name"] = spec.get("name") or spec.get("server_name") or spec["address"]
        res["expected"] = expected
        res["passed"] = res["status"] in expected
        res.pop("body", None)
        return res

    return wait_for(once, lambda res: res["passed"], timeout=timeout, interval=0.25, factor=1.5, cap=1.0)[1]


# ------------------------------------------------------------------ the transaction -----------
DIR_MODE = 0o755  # nginx's workers read the password files in the tree


class Transaction:
    """Stage, test, promote, reload, probe - and put the previous tree back on any failure."""

    def __init__(self, module, conf_dir, main_file, tree, nginx, service, probes, probe_timeout,
                 restart_on_bind_conflict=True):
        self.module = module
        self.conf_dir = conf_dir
        self.main_file = main_file
        self.tree = tree
        self.nginx = nginx
        self.service = service
        self.probes = probes
        self.probe_timeout = probe_timeout
        self.restart_on_bind_conflict = restart_on_bind_conflict
        self.stage = None
        self.backup = None
        self.log = []  # what happened, in order

    def _path(self, base, rel):
        return os.path.join(base, rel)

    def test_staged(self, entries):
        """Stage ``entries`` and ``nginx -t`` them there. Raises TreeError (stage ``test``)."""
        self.stage = tempfile.mkdtemp(prefix=".locus-stage-", dir=self.conf_dir)
        write_tree(self.stage, entries, self.tree, DIR_MODE)
        ok, out = nginx_test(self.nginx, self._path(self.stage, self.main_file), run=_run)
        self.log.append(f"nginx -t on the staged tree: {'ok' if ok else 'failed'}")
        if not ok:
            out = relabel(out, self.stage, self.conf_dir)
            self.cleanup()
            raise TreeError(f"nginx rejected the new configuration (tested as a whole tree, nothing changed): {out}",
                            "test", test_output=out)
        return out

    def promote(self):
        self.backup = tempfile.mkdtemp(prefix=".locus-previous-", dir=self.conf_dir)
        live_main = self._path(self.conf_dir, self.main_file)
        live_tree = self._path(self.conf_dir, self.tree)
        if os.path.exists(live_main):
            shutil.copy2(live_main, self._path(self.backup, self.main_file))
        if os.path.lexists(live_tree):
            os.rename(live_tree, self._path(self.backup, self.tree))
        os.rename(self._path(self.stage, self.tree), live_tree)
        os.replace(self._path(self.stage, self.main_file), live_main)
        sync_dir(self.conf_dir)  # the renames on disk before nginx is told to load them
        self.log.append("promoted the staged tree")

    def restore(self):
        live_main = self._path(self.conf_dir, self.main_file)
        live_tree = self._path(self.conf_dir, self.tree)
        failed = tempfile.mkdtemp(prefix=".locus-failed-", dir=self.conf_dir)
        if os.path.lexists(live_tree):
            os.rename(live_tree, self._path(failed, self.tree))
        if os.path.lexists(self._path(self.backup, self.tree)):
            os.rename(self._path(self.backup, self.tree), live_tree)
        if os.path.exists(self._path(self.backup, self.main_file)):
            os.replace(self._path(self.backup, self.main_file), live_main)
        elif os.path.exists(live_main):
            os.unlink(live_main)
        sync_dir(self.conf_dir)  # the old tree back on disk before nginx is told to load it again
        shutil.rmtree(failed, ignore_errors=True)
        self.log.append("restored the previous tree")

    def cleanup(self):
        for d in (self.stage, self.backup):
            if d and os.path.isdir(d):
                shutil.rmtree(d, ignore_errors=True)

    def apply(self, entries):
        """The whole transaction; returns a result dict or raises TreeError after rolling back."""
        was_running = self.service.active()
        self.test_staged(entries)
        self.promote()
        action = None
        try:
            ok, out = nginx_test(self.nginx, self._path(self.conf_dir, self.main_file), run=_run)
            self.log.append(f"nginx -t in place: {'ok' if ok else 'failed'}")
            if not ok:
                raise TreeError(f"nginx rejected the configuration in place: {out}", "test", test_output=out)
            if was_running:
                ok, detail, lines = self.service.reload()
                action = "reloaded"
                if not ok and self.restart_on_bind_conflict and bind_conflict(lines):
                    self.log.append(f"reload refused ({'; '.join(lines[-2:])}): restarting to rebind the listen sockets")
                    ok, detail, lines = self.service.start("restart")
                    action = "restarted"
            else:
                ok, detail, lines = self.service.start("start")
                action = "started"
            self.log.append(detail)
            if not ok:
                raise TreeError(f"{detail}{': ' + ' | '.join(lines) if lines else ''}", "reload", nginx_log=lines)
            results = [probe_until(p, self.probe_timeout) for p in self.probes]
            failed = [r for r in results if not r["passed"]]
            self.log.append(f"probes: {len(results) - len(failed)}/{len(results)} passed")
            if failed:
                raise TreeError("the new configuration is live but does not serve as expected: " + "; ".join(
                    f"{r['name']} {r['scheme']}://{r['address']}:{r['port']}{r['path']} gave "
                    f"{r['status'] if r['status'] is not None else r['error']} (expected {r['expected']})" for r in failed),
                    "probe", probes=results)
        except TreeError as exc:
            exc.extra["rollback"] = self.rollback(was_running, action)
            exc.extra["log"] = self.log
            self.cleanup()
            raise
        except Exception as exc:  # noqa: BLE001 - anything unexpected: the previous tree goes back all the same
            rollback = self.rollback(was_running, action)
            self.cleanup()
            raise TreeError(f"unexpected error while applying the tree: {type(exc).__name__}: {exc}", "apply",
                            rollback=rollback, log=self.log) from exc
        self.cleanup()
        return {"service_action": action, "probes": results, "log": self.log}

    def rollback(self, was_running, action):
        """Put the previous tree back and make nginx run it again, as far as possible."""
        self.restore()
        if not was_running:
            if self.service.active():
                self.service._systemctl("stop")
            return {"restored": True, "service": "left stopped, as it was"}
        if action is None:
            return {"restored": True, "service": "not touched"}
        ok, detail, lines = self.service.reload() if action == "reloaded" else self.service.start("restart")
        if not ok and not self.service.active():
            ok, detail, lines = self.service.start("start")
        self.log.append(f"after the rollback: {detail}")
        return {"restored": True, "service": detail, "service_ok": ok, "nginx_log": lines}


def _run(argv, **kwargs):
    kwargs.pop("check", None)
    try:
        return subprocess.run(argv, check=False, **kwargs)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return subprocess.CompletedProcess(argv, 127, stdout=f"{argv[0]}: not found".encode(), stderr=b"")
        raise


# ------------------------------------------------------------------ the module's job -----------
LOCK_FILE = "/run/lock/locus-nginx-tree.lock"


def run(module):
    """Everything ``locus.infra.nginx_tree`` does: check the options, compare the desired tree
    with the live one, then test it (check mode) or apply it in one transaction under the lock.

    Returns the module result; raises :class:`TreeError` whose ``extra`` is the result so far.
    """
    p = module.params
    tree = tree_name(p["tree"])
    if not os.path.isdir(p["conf_dir"]) and not module.check_mode:
        raise TreeError(f"{p['conf_dir']} does not exist (is nginx installed?)", "validate")
    live = read_live(p["conf_dir"], p["main_file"], tree) if os.path.isdir(p["conf_dir"]) else {}
    entries = desired(_entries(p, live), p["main_file"], tree)
    result = differences(entries, live, p["conf_dir"], diff=module._diff)
    if not result["changed"]:
        return result
    if module.check_mode:
        return _check_mode_test(p, entries, tree, result)
    return _apply(module, entries, tree, result)


def _entries(params, live):
    """``(where, Entry)`` of the options ``files``, ``secret_files`` and ``htpasswd`` (a password
    file keeps its hashes while the passwords did not change)."""
    for n, f in enumerate(params["files"]):
        yield f"files[{n}]", Entry(f["path"], f["content"], parse_mode(f["mode"], 0o644))
    for n, f in enumerate(params["secret_files"]):
        yield f"secret_files[{n}]", Entry(f["path"], f["content"], parse_mode(f["mode"], 0o600), secret=True)
    for n, h in enumerate(params["htpasswd"]):
        for u in h["users"]:
            if not u.get("password") and not u.get("password_hash"):
                raise TreeError(f"htpasswd[{n}] user {u['name']!r}: give password or password_hash", "validate")
            if ":" in u["name"]:
                raise TreeError(f"htpasswd[{n}] user {u['name']!r}: a user name cannot contain ':'", "validate")
        old = live.get(os.path.normpath(h["path"]), (b"",))[0].decode("utf-8", "replace")
        content = htpasswd_content(h["users"], old)
        group_id(h["group"])
        yield f"htpasswd[{n}]", Entry(h["path"], content, parse_mode(h["mode"], 0o640), group=h["group"], secret=True)


def _check_mode_test(params, entries, tree, result):
    """Check mode: ``nginx -t`` the new tree in a throw-away directory (when nginx is installed)."""
    if not params["test_in_check_mode"] or not os.path.exists(params["nginx_binary"]):
        return result
    base = tempfile.mkdtemp(prefix="locus-nginx-check-")
    try:
        write_tree(base, entries, tree, DIR_MODE)
        ok, out = nginx_test(params["nginx_binary"], os.path.join(base, params["main_file"]))
        out = relabel(out, base, params["conf_dir"])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result["test_output"] = out
    if not ok:
        raise TreeError(f"nginx would reject the new configuration: {out}", "test", **result)
    return result


def _apply(module, entries, tree, result):
    p = module.params
    service = Service(module, p["service"], p["error_log"], p["reload_timeout"])
    transaction = Transaction(module, p["conf_dir"], p["main_file"], tree, p["nginx_binary"], service,
                              p["probes"], p["probe_timeout"], p["restart_on_bind_conflict"])
    try:
        with Lock(LOCK_FILE):
            # Another run may have changed the tree while this one waited: compare again.
            result.pop("diff", None)
            result.update(differences(entries, read_live(p["conf_dir"], p["main_file"], tree), p["conf_dir"],
                                      diff=module._diff))
            if not result["changed"]:
                return result
            result.update(transaction.apply(entries))
    except TreeError as exc:
        result.update(exc.extra)
        result["changed"] = False  # nothing applied: untouched, or rolled back to the previous tree
        where = "rolled back to the previous tree" if "rollback" in exc.extra else "the live tree was not touched"
        raise TreeError(f"{exc} ({where})", exc.stage, **result) from None
    return result
