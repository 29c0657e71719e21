# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox VE API client for locus.infra modules (proxmoxer underneath).

Private API of the collection (may change without notice).

What it adds over calling proxmoxer directly -- and over community.proxmox:

* errors that say what and where: method, path, HTTP status, PVE's message and the
  per-parameter ``errors`` object of a 400 (``memory: value must have a minimum ...``);
* retries with jittered exponential backoff **only** for retryable failures: lock
  contention (``VM 101 is locked (backup)``, ``can't lock file ... got timeout``),
  gateway/proxy errors (502/503/504, 595/596/599) and connection failures -- never for a
  request that may have been carried out unless it is idempotent (GET/PUT/DELETE);
* task waiting on a wall clock (``time.monotonic``) with a growing poll interval that
  stops at the first terminal state; a failed task raises with its exit status and the
  *last* lines of its log; ``WARNINGS: n`` exits succeed and return the warning lines;
* a count of the API requests made (reported by the modules, used by the benchmark);
* a per-node concurrency slot (flock based) so that many forks do not clone onto one
  node at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import traceback

from ansible.module_utils.basic import env_fallback

from ansible_collections.locus.infra.plugins.module_utils._retry import Backoff, WaitTimeout, poll, retry

PROXMOXER_IMPORT_ERROR = None
try:
    from proxmoxer import ProxmoxAPI
    from proxmoxer.core import AuthenticationError, ResourceException
except ImportError:  # pragma: no cover - reported through missing_required_lib
    ProxmoxAPI = None
    PROXMOXER_IMPORT_ERROR = traceback.format_exc()

REQUESTS_IMPORT_ERROR = None
try:
    import requests
except ImportError:  # pragma: no cover
    requests = None
    REQUESTS_IMPORT_ERROR = traceback.format_exc()

try:
    import fcntl
except ImportError:  # pragma: no cover - not on the controllers we support
    fcntl = None

LOCK_ERROR_RE = re.compile(
    r"(is locked \(|can't lock file|got timeout|cfs-lock .*timeout|trying to acquire (cfs )?lock|"
    r"unable to get lock|lock request timeout|resource temporarily unavailable)",
    re.IGNORECASE,
)
# Proxy and gateway errors. 595 ("Errors during connection establishment") is emitted by
# pveproxy when it cannot reach the node it proxies to: the request was not carried out.
GATEWAY_STATUSES = (502, 503, 504, 596, 599)
NOT_SENT_STATUSES = (595,)

POLL_INITIAL = 0.25
POLL_FACTOR = 1.5
POLL_MAX = 5.0
BACKOFF_BASE = 0.5
BACKOFF_MAX = 8.0
BACKOFF = Backoff(BACKOFF_BASE, BACKOFF_MAX)
LOG_TAIL_LINES = 12


def auth_argument_spec():
    """Connection options shared by the locus.infra Proxmox modules (doc fragment locus.infra.proxmox)."""
    return {
        "api_host": {"type": "str", "required": True, "fallback": (env_fallback, ["PROXMOX_HOST"])},
        "api_port": {"type": "int", "fallback": (env_fallback, ["PROXMOX_PORT"])},
        "api_user": {"type": "str", "fallback": (env_fallback, ["PROXMOX_USER"])},
        "api_password": {"type": "str", "no_log": True, "fallback": (env_fallback, ["PROXMOX_PASSWORD"])},
        "api_token_id": {"type": "str", "no_log": False, "fallback": (env_fallback, ["PROXMOX_TOKEN_ID"])},
        "api_token_secret": {"type": "str", "no_log": True, "fallback": (env_fallback, ["PROXMOX_TOKEN_SECRET"])},
        "validate_certs": {"type": "bool", "default": True, "fallback": (env_fallback, ["PROXMOX_VALIDATE_CERTS"])},
        "ca_path": {"type": "path", "fallback": (env_fallback, ["PROXMOX_CA_PATH"])},
        "api_timeout": {"type": "int", "default": 30},
        "api_retries": {"type": "int", "default": 5},
    }


def wait_argument_spec():
    """Task waiting options (doc fragment locus.infra.proxmox.wait)."""
    return {
        "wait_timeout": {"type": "int", "default": 600},
    }


class ProxmoxError(Exception):
    """An API call failed. ``str()`` is the message for the user; ``result()`` extra keys."""

    def __init__(self, msg, method=None, path=None, status=None, reason=None, errors=None, retryable=False):
        super().__init__(msg)
        self.msg = msg
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.errors = errors or {}
        self.retryable = retryable

    def result(self):
        out = {}
        if self.method:
            out["api_request"] = f"{self.method} {self.path}"
        if self.status is not None:
            out["api_status"] = self.status
        if self.errors:
            out["api_errors"] = self.errors
        return out


class TaskError(ProxmoxError):
    """A PVE task ended in error (or did not end in time)."""

    def __init__(self, msg, upid, exitstatus=None, log_tail=None, elapsed=None, timed_out=False):
        super().__init__(msg)
        self.upid = upid
        self.exitstatus = exitstatus
        self.log_tail = log_tail or []
        self.elapsed = elapsed
        self.timed_out = timed_out

    def result(self):
        out = {"task": {"upid": self.upid, "exitstatus": self.exitstatus, "log_tail": self.log_tail,
                        "elapsed": round(self.elapsed or 0.0, 2), "timed_out": self.timed_out}}
        return out


class TaskResult:
    def __init__(self, upid, exitstatus, warnings, elapsed, polls):
        self.upid = upid
        self.exitstatus = exitstatus
        self.warnings = warnings
        self.elapsed = elapsed
        self.polls = polls

    def as_dict(self):
        return {"upid": self.upid, "exitstatus": self.exitstatus, "warnings": self.warnings,
                "elapsed": round(self.elapsed, 2), "polls": self.polls}


def upid_node(upid):
    parts = str(upid).split(":")
    if len(parts) < 3 or parts[0] != "UPID":
        raise ProxmoxError(f"not a Proxmox task id (UPID): {upid!r}")
    return parts[1]


def is_lock_error(message):
    return bool(message) and bool(LOCK_ERROR_RE.search(message))


def _clean(message):
    return " ".join(str(message or "").split())


def format_param_errors(errors, names=None):
    """``{"memory": "value must ..."}`` -> ``memory (memory): value must ...; ...``."""
    names = names or {}
    parts = []
    for key in sorted(errors):
        label = f"{key} ({names[key]})" if key in names and names[key] != key else key
        parts.append(f"{label}: {_clean(errors[key])}")
    return "; ".join(parts)


class ProxmoxClient:
    """A connection to one Proxmox VE cluster."""

    def __init__(self, params, sleep=time.sleep, clock=time.monotonic):
        if ProxmoxAPI is None:
            raise ProxmoxError("the Python library proxmoxer is required (pip install proxmoxer)")
        if requests is None:
            raise ProxmoxError("the Python library requests is required (pip install requests)")
        self.sleep = sleep
        self.clock = clock
        self.requests = 0
        self.retried = []
        self.retries = max(0, int(params.get("api_retries") or 0))
        self.backoff = BACKOFF
        host = params["api_host"]
        self.endpoint = host
        kwargs = {"timeout": params.get("api_timeout") or 30}
        if params.get("api_port"):
            kwargs["port"] = params["api_port"]
        verify = bool(params.get("validate_certs", True))
        if verify and params.get("ca_path"):
            verify = params["ca_path"]
        kwargs["verify_ssl"] = verify
        token_id = params.get("api_token_id")
        user = params.get("api_user")
        if token_id:
            if "!" in token_id:
                token_user, token_name = token_id.split("!", 1)
                if user and user != token_user:
                    raise ProxmoxError(f"api_token_id {token_id!r} belongs to {token_user!r}, not api_user {user!r}")
                user = token_user
            else:
                token_name = token_id
                if not user:
                    raise ProxmoxError("api_token_id without 'user@realm!' needs api_user (or PROXMOX_USER)")
            if not params.get("api_token_secret"):
                raise ProxmoxError("api_token_id is set but api_token_secret (PROXMOX_TOKEN_SECRET) is not")
            kwargs.update(user=user, token_name=token_name, token_value=params["api_token_secret"])
            self.identity = f"token {user}!{token_name}"
        elif params.get("api_password"):
            if not user:
                raise ProxmoxError("api_password needs api_user (or PROXMOX_USER)")
            kwargs.update(user=user, password=params["api_password"])
            self.identity = f"user {user}"
            self.requests += 1  # proxmoxer logs in (POST /access/ticket) right away
        else:
            raise ProxmoxError("no credentials: set api_token_id + api_token_secret (PROXMOX_TOKEN_ID/"
                               "PROXMOX_TOKEN_SECRET) or api_user + api_password")
        try:
            self.api = ProxmoxAPI(host, **kwargs)
        except AuthenticationError as exc:
            raise ProxmoxError(f"Proxmox VE at {host} refused the login of {self.identity}: {_clean(exc)}") from None
        except Exception as exc:  # requests errors: DNS, TLS, refused
            raise self._transport_error("POST", "access/ticket", exc) from None

    # ------------------------------------------------------------- requests ---
    def _transport_error(self, method, path, exc):
        text = _clean(exc)
        if requests is not None and isinstance(exc, requests.exceptions.SSLError):
            return ProxmoxError(
                f"TLS verification of Proxmox VE at {self.endpoint} failed ({text}); point ca_path (PROXMOX_CA_PATH) "
                "at the cluster CA (/etc/pve/pve-root-ca.pem) or, for a lab only, set validate_certs: false",
                method=method, path=path)
        not_sent = (
            (requests is not None and isinstance(exc, requests.exceptions.ConnectTimeout))
            or "NewConnectionError" in repr(exc)
            or "Connection refused" in text
        )
        timeout = requests is not None and isinstance(exc, requests.exceptions.Timeout)
        kind = "connection failed" if not_sent else ("timed out" if timeout else "connection error")
        err = ProxmoxError(f"{method} {path} at Proxmox VE {self.endpoint}: {kind}: {text}", method=method, path=path,
                           retryable=True)
        err.not_sent = not_sent
        return err

    def _api_error(self, method, path, exc, names=None):
        status = exc.status_code
        reason = _clean(exc.content)
        errors = exc.errors if isinstance(exc.errors, dict) and "errors" not in exc.errors else {}
        errors = {k: _clean(v) for k, v in errors.items()}
        if status == 401:
            msg = (f"Proxmox VE at {self.endpoint} rejected {self.identity} ({status} {reason}); check the "
                   "credentials (api_token_id/api_token_secret or api_user/api_password)")
        elif status == 403:
            msg = f"{method} /{path}: permission denied for {self.identity} ({reason})"
        elif status == 400 and errors:
            msg = f"{method} /{path}: Proxmox VE rejected parameters: {format_param_errors(errors, names)}"
        else:
            msg = f"{method} /{path}: {status} {reason or exc.status_message}"
        return ProxmoxError(msg, method=method, path="/" + path, status=status, reason=reason, errors=errors)

    def _retryable(self, method, err):
        if err.status is None:
            return getattr(err, "not_sent", False) or method in ("GET", "PUT", "DELETE")
        if err.status == 500:
            return is_lock_error(err.reason)
        if err.status in NOT_SENT_STATUSES:
            return True
        if err.status in GATEWAY_STATUSES:
            return method in ("GET", "PUT", "DELETE")
        return False

    def _retry(self, call, what, retries, retryable, reason):
        def note(err, _attempt, delay):
            self.retried.append({"request": what, "error": reason(err), "delay": round(delay, 2)})

        return retry(call, retries=retries, retryable=retryable, backoff=self.backoff, on_retry=note,
                     sleep=self.sleep, clock=self.clock)

    def request(self, method, path, params=None, names=None, retries=None):
        """One API call with retries for retryable failures. Returns PVE's ``data``."""
        params = {k: (int(v) if isinstance(v, bool) else v) for k, v in (params or {}).items() if v is not None}
        path = path.strip("/")
        if method not in ("GET", "POST", "PUT", "DELETE"):
            raise ProxmoxError(f"unsupported method {method}")

        def once():
            self.requests += 1
            call = getattr(self.api(path), method.lower())
            try:
                return call(**params)
            except ResourceException as exc:
                raise self._api_error(method, path, exc, names) from None
            except Exception as exc:  # transport errors from requests
                raise self._transport_error(method, "/" + path, exc) from None

        return self._retry(once, f"{method} /{path}", self.retries if retries is None else retries,
                           lambda err: isinstance(err, ProxmoxError) and self._retryable(method, err),
                           lambda err: str(err.reason or err.msg))

    def get(self, path, **params):
        return self.request("GET", path, params)

    # ---------------------------------------------------------------- tasks ---
    def task_log_tail(self, upid, lines=LOG_TAIL_LINES):
        """The last ``lines`` lines of a task log (``limit=0`` reads to the end on PVE >= 6.2)."""
        node = upid_node(upid)
        path = f"nodes/{node}/tasks/{upid}/log"
        entries = self.request("GET", path, {"start": 0, "limit": 0}) or []
        # Older PVE treat limit=0 as the default 50: page on until a short page.
        pages = 0
        while len(entries) and len(entries) % 50 == 0 and pages < 50:
            more = self.request("GET", path, {"start": len(entries), "limit": 500}) or []
            more = [e for e in more if e.get("n", 0) > entries[-1].get("n", 0)]
            if not more:
                break
            entries.extend(more)
            pages += 1
        text = [e.get("t", "") for e in entries if e.get("t") != "no content"]
        return text[-lines:]

    def wait_task(self, upid, timeout, what="task"):
        """Wait for a task on a wall clock; return a TaskResult or raise TaskError."""
        node = upid_node(upid)
        start = self.clock()
        polls = []

        def finished():
            status = self.request("GET", f"nodes/{node}/tasks/{upid}/status")
            polls.append(status)
            if status.get("status") == "running":
                return None
            exitstatus = str(status.get("exitstatus") or "")
            elapsed = self.clock() - start
            if exitstatus == "OK":
                return TaskResult(upid, exitstatus, [], elapsed, len(polls))
            if exitstatus.startswith("WARNINGS"):
                tail = self.task_log_tail(upid, lines=200)
                warnings = [line for line in tail if line.startswith("WARN")]
                return TaskResult(upid, exitstatus, warnings or [exitstatus], elapsed, len(polls))
            tail = self.task_log_tail(upid)
            raise TaskError(
                f"{what} failed: {exitstatus or 'unknown exit status'} (task {upid}); last log lines: " + " | ".join(tail),
                upid, exitstatus=exitstatus, log_tail=tail, elapsed=elapsed)

        try:
            # a task is never done the moment it was started: wait before the first poll
            return poll(finished, timeout=timeout, interval=POLL_INITIAL, factor=POLL_FACTOR, cap=POLL_MAX,
                        wait_first=True, sleep=self.sleep, clock=self.clock)
        except WaitTimeout as exc:
            tail = self.task_log_tail(upid)
            raise TaskError(
                f"{what} did not finish within {timeout}s (task {upid} still running); last log lines: " + " | ".join(tail),
                upid, exitstatus=None, log_tail=tail, elapsed=exc.elapsed, timed_out=True) from None

    def run_task(self, method, path, params=None, timeout=600, what="task", names=None, lock_retries=None):
        """Start a task and wait for it.

        A task that dies on lock contention before doing anything (``VM 101 is locked``,
        ``can't lock file``) is started again after a backoff -- start/stop/resize/destroy
        check the lock inside the worker, so the request itself succeeds."""

        def once():
            upid = self.request(method, path, params, names=names)
            return self.wait_task(upid, timeout, what) if upid else None

        return self._retry(once, f"{method} /{path}", self.retries if lock_retries is None else lock_retries,
                           lambda err: (isinstance(err, TaskError) and not err.timed_out
                                        and is_lock_error(err.exitstatus)),
                           lambda err: err.exitstatus)

    # -------------------------------------------------------------- cluster ---
    def resources(self, rtype=None):
        return self.request("GET", "cluster/resources", {"type": rtype} if rtype else None) or []

    def nextid(self):
        return int(self.request("GET", "cluster/nextid"))


# ------------------------------------------------------------ module main ---
def exit_module(module, label, work, spec_errors=(), **ident):
    """Run ``work(client) -> (result, warnings)`` for a Proxmox module and exit it.

    Missing libraries, ``spec_errors`` (bad arguments) and API/task errors fail the module with
    ``label: message``; an API error also returns what was planned and the tasks that already ran."""
    from ansible.module_utils.basic import missing_required_lib

    if PROXMOXER_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("proxmoxer"), exception=PROXMOXER_IMPORT_ERROR)
    if REQUESTS_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("requests"), exception=REQUESTS_IMPORT_ERROR)
    try:
        client = ProxmoxClient(module.params)
        result, warnings = work(client)
    except spec_errors as exc:
        module.fail_json(msg=f"{label}: {exc}", changed=False, **ident)
    except ProxmoxError as exc:
        partial = getattr(exc, "partial", {})
        for warning in partial.get("warnings", []):
            module.warn(warning)
        module.fail_json(msg=f"{label}: {exc}", changed=partial.get("changed", False),
                         actions=partial.get("actions", []), tasks=partial.get("tasks", []), **ident, **exc.result())
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


# ------------------------------------------------------------ node throttle ---
@contextlib.contextmanager
def node_slot(key, limit, timeout, sleep=time.sleep, clock=time.monotonic, directory=None):
    """Hold one of ``limit`` slots for ``key`` (e.g. host+node) across processes.

    flock(2) on ``<tmp>/locus-proxmox-slots/<key>.<i>.lock``; the kernel releases a slot
    when its holder exits, so a killed fork cannot leak it. ``limit`` 0 = no limit."""
    if not limit or fcntl is None:
        yield None
        return
    directory = directory or os.path.join(tempfile.gettempdir(), f"locus-proxmox-slots-{os.getuid()}")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)

    def free_slot():
        for index in range(limit):
            handle = open(os.path.join(directory, f"{safe}.{index}.lock"), "a+")  # noqa: SIM115 - held across yield
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            return index, handle
        return None

    try:
        index, handle = poll(free_slot, timeout=timeout, interval=0.2, factor=1.0, cap=0.2, jitter=(0.5, 1.5),
                             sleep=sleep, clock=clock)
    except WaitTimeout:
        raise ProxmoxError(f"no free slot for {key} within {timeout}s ({limit} operations at a time)") from None
    try:
        yield index
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


# ------------------------------------------------------------------ nodes ---
def _ratio(used, total):
    if not total:
        return None
    return round(float(used or 0) / float(total), 4)


def node_facts(client, nodes=None, include_status=False, threshold=None):
    """Nodes with CPU, memory, root-disk and storage usage as ratios (0..1).

    One ``GET /cluster/resources`` gives all of it; ``include_status`` adds one
    ``GET /nodes/{node}/status`` per online node for load, swap and versions."""
    resources = client.resources()
    result = {}
    for res in resources:
        if res.get("type") != "node":
            continue
        name = res.get("node")
        if nodes and name not in nodes:
            continue
        online = res.get("status") == "online"
        entry = {
            "node": name, "status": res.get("status"), "online": online,
            "cpu_ratio": round(float(res["cpu"]), 4) if online and res.get("cpu") is not None else None,
            "cpus": res.get("maxcpu"),
            "memory_used": res.get("mem"), "memory_total": res.get("maxmem"),
            "memory_ratio": _ratio(res.get("mem"), res.get("maxmem")) if online else None,
            "disk_used": res.get("disk"), "disk_total": res.get("maxdisk"),
            "disk_ratio": _ratio(res.get("disk"), res.get("maxdisk")) if online else None,
            "uptime": res.get("uptime"),
            "storage": {},
            "vms": {"running": 0, "stopped": 0, "templates": 0},
            "guests": [],
        }
        result[name] = entry
    for res in resources:
        node = result.get(res.get("node"))
        if node is None:
            continue
        if res.get("type") == "storage":
            node["storage"][res["storage"]] = {
                "status": res.get("status"), "type": res.get("plugintype"), "shared": bool(res.get("shared")),
                "content": sorted((res.get("content") or "").split(",")) if res.get("content") else [],
                "used": res.get("disk"), "total": res.get("maxdisk"),
                "ratio": _ratio(res.get("disk"), res.get("maxdisk")),
            }
        elif res.get("type") == "qemu":
            node["guests"].append({"vmid": int(res["vmid"]), "name": res.get("name"), "status": res.get("status"),
                                   "template": bool(res.get("template")), "maxmem": res.get("maxmem")})
            if res.get("template"):
                node["vms"]["templates"] += 1
            elif res.get("status") == "running":
                node["vms"]["running"] += 1
            else:
                node["vms"]["stopped"] += 1
    known = sorted(r.get("node") for r in resources if r.get("type") == "node")
    missing = sorted(set(nodes or []) - set(known))
    if missing:
        raise ProxmoxError(f"node(s) {', '.join(missing)} not in the cluster (known: {', '.join(known)})")
    for name, entry in result.items():
        if include_status and entry["online"]:
            status = client.request("GET", f"nodes/{name}/status")
            swap = status.get("swap") or {}
            entry.update({
                "loadavg": [float(x) for x in status.get("loadavg") or []],
                "swap_ratio": _ratio(swap.get("used"), swap.get("total")),
                "iowait": status.get("wait"),
                "pveversion": status.get("pveversion"),
                "kernel": status.get("kversion"),
                "cpu_model": (status.get("cpuinfo") or {}).get("model"),
            })
        ratios = {"cpu": entry["cpu_ratio"], "memory": entry["memory_ratio"], "disk": entry["disk_ratio"]}
        for sid, st in entry["storage"].items():
            ratios[f"storage:{sid}"] = st["ratio"]
        known = {k: v for k, v in ratios.items() if v is not None}
        if known:
            worst = max(known, key=lambda k: known[k])
            entry["max_ratio"] = known[worst]
            entry["max_ratio_of"] = worst
        else:
            entry["max_ratio"] = None
            entry["max_ratio_of"] = None
        if threshold is not None:
            entry["over_threshold"] = sorted(k for k, v in known.items() if v >= threshold)
    return result
