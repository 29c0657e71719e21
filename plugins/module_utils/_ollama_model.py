# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ollama models as desired state: compare with ``/api/tags``, pull, remove.

Private API of the collection (may change without notice), used by the
``locus.infra.ollama_model`` module. Runs wherever the module runs: on the Ollama host
itself (the API on loopback) or on the controller through the authenticated nginx front.

Transport: the ``ollama`` client where it is installed (the controller, an execution
environment); the standard library otherwise (an Ollama host has only Debian's python3).
Both read ``/api/pull`` as the NDJSON stream it is: Ollama reports a failure that happens
after the download started as an ``{"error": ...}`` line with HTTP 200, so a pull is only a
success when its stream ends with ``{"status": "success"}`` and the model is then listed.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request

from ansible.module_utils.urls import open_url

DEFAULT_HOST = "http://127.0.0.1:11434"
# docs/api.md "Model names": model:tag, an optional namespace, the tag defaults to latest.
_NAME = re.compile(r"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?(?:[a-zA-Z0-9][a-zA-Z0-9_.-]*/)?[a-zA-Z0-9][a-zA-Z0-9_.-]*(?::[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127})?$")


class OllamaModelError(Exception):
    """A request failed; the message names the model, the host and Ollama's own error."""

    def __init__(self, msg, status=None):
        super().__init__(msg)
        self.status = status


def normalise(name):
    """``name`` with the tag ``latest`` when it has none; ValueError for an invalid name."""
    if not isinstance(name, str) or not _NAME.match(name.strip()):
        raise ValueError(f"{name!r} is not an Ollama model name (model[:tag], optionally namespace/model[:tag])")
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


def base_url(host):
    host = (host or DEFAULT_HOST).strip().rstrip("/")
    if "://" not in host:
        host = "http://" + host
    return host


def _tls_context(validate_certs, ca_path):
    if not validate_certs:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_path)


class _NamedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the URL's address, speaks TLS to ``server_name`` (SNI and the certificate's name)."""

    def __init__(self, *args, **kwargs):
        self.server_name = kwargs.pop("server_name")
        super().__init__(*args, **kwargs)

    def connect(self):
        http.client.HTTPConnection.connect(self)  # pylint: disable=bad-super-call  # the TCP part only
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.server_name)


class _NamedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, context, server_name):
        super().__init__(context=context)
        self.server_name = server_name

    def https_open(self, req):
        return self.do_open(_NamedHTTPSConnection, req, context=self._context, server_name=self.server_name)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a 3xx becomes an HTTPError, as open_url(follow_redirects="none") does


class UrllibTransport:
    """The three calls this module needs, with Ansible's ``open_url`` (the standard library underneath).

    With ``server_name`` (an https:// URL naming an address, like curl's ``--resolve``) the
    request goes to that address with ``server_name`` as SNI, ``Host`` and the name the
    certificate is checked for - open_url cannot do that, so urllib's opener is used directly.
    """

    def __init__(self, host, headers, validate_certs, ca_path, timeout, server_name=None):
        self.host = host
        self.headers = headers
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self.server_name = server_name

    def _open(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json", **self.headers}
        try:
            if self.server_name:
                port = urllib.parse.urlsplit(self.host).port
                headers["Host"] = self.server_name + (f":{port}" if port else "")
                opener = urllib.request.build_opener(
                    _NamedHTTPSHandler(_tls_context(self.validate_certs, self.ca_path), self.server_name), _NoRedirect)
                # connect() lets only https:// through with server_name
                req = urllib.request.Request(self.host + path, data=data, method=method, headers=headers)  # noqa: S310
                return opener.open(req, timeout=self.timeout)
            return open_url(self.host + path, data=data, method=method, headers=headers, timeout=self.timeout,
                            validate_certs=self.validate_certs, ca_path=self.ca_path, follow_redirects="none")
        except urllib.error.HTTPError as exc:
            raise OllamaModelError(_http_error(exc.code, exc.read()), exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OllamaModelError(f"cannot reach {self.host}: {reason}") from None

    def tags(self):
        with self._open("GET", "/api/tags") as r:
            return json.load(r).get("models") or []

    def pull(self, name):
        with self._open("POST", "/api/pull", {"model": name, "stream": True}) as r:
            for line in r:
                if line.strip():
                    yield json.loads(line)

    def delete(self, name):
        with self._open("DELETE", "/api/delete", {"model": name}):
            pass


class ClientTransport:
    """The same calls through the ``ollama`` client (it raises on an ``error`` line itself)."""

    def __init__(self, ollama, client, host):
        self.ollama = ollama
        self.client = client
        self.host = host

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except self.ollama.ResponseError as exc:
            status = exc.status_code if exc.status_code and exc.status_code > 0 else None
            if status is None:  # an error line inside a 200 stream
                raise OllamaModelError(exc.error) from None
            raise OllamaModelError(_http_error(status, exc.error.encode()), status) from None
        except ConnectionError as exc:
            # the client replaces httpx's reason (refused, a TLS certificate check) with one generic sentence
            raise OllamaModelError(f"cannot reach {self.host}: {exc.__context__ or exc}") from None

    def tags(self):
        return [{**m.model_dump(), "name": m.model} for m in self._call(self.client.list).models]

    def pull(self, name):
        def steps():
            for part in self.client.pull(name, stream=True):
                yield {k: v for k, v in part.model_dump().items() if v is not None}

        gen = steps()
        while True:
            try:
                step = self._call(next, gen)
            except StopIteration:
                return
            yield step

    def delete(self, name):
        self._call(self.client.delete, name)


def _http_error(status, body):
    try:
        detail = json.loads(body).get("error") or ""
    except (ValueError, AttributeError):
        detail = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        detail = re.sub(r"<[^>]+>", " ", detail)
    detail = " ".join(detail.split())[:200]
    hint = {401: " (credentials missing or wrong)", 403: " (forbidden: for Ollama on loopback, check the Host header)"}.get(status, "")
    return f"HTTP {status}{hint}: {detail or 'no detail'}"


def connect(host=None, token=None, username=None, password=None, ca_path=None, validate_certs=True, timeout=30.0, use_client=None,
            server_name=None):
    """A transport to ``host`` with bearer ``token`` or basic auth; the ``ollama`` client if importable.

    ``server_name``: connect to the address in ``host`` but present this name as SNI and ``Host``
    and check the certificate for it (https:// only).
    """
    host = base_url(host)
    if not host.startswith(("http://", "https://")):
        raise OllamaModelError(f"host {host!r}: only http:// and https:// are supported")
    if server_name and not host.startswith("https://"):
        raise OllamaModelError(f"server_name {server_name!r} needs an https:// host, not {host!r}")
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif username:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode()
    if use_client is not False:
        try:
            import httpx
            import ollama
        except ImportError:
            if use_client:
                raise
        else:
            verify = validate_certs
            if validate_certs and ca_path:
                verify = ssl.create_default_context(cafile=ca_path)
            hooks = {}
            if server_name:
                def named(req):
                    req.extensions["sni_hostname"] = server_name
                    req.headers["Host"] = server_name + (f":{req.url.port}" if req.url.port else "")
                hooks = {"event_hooks": {"request": [named]}}
            client = ollama.Client(host=host, headers=headers, timeout=httpx.Timeout(timeout), verify=verify, **hooks)
            return ClientTransport(ollama, client, host)
    return UrllibTransport(host, headers, validate_certs, ca_path, timeout, server_name)


def _find(models, name):
    """The entry of ``/api/tags`` for ``name`` (already normalised), comparing normalised names."""
    for m in models:
        for listed in (m.get("model"), m.get("name")):
            try:
                if listed and normalise(listed) == name:
                    return m
            except ValueError:
                continue
    return None


def _state(model):
    if model is None:
        return {"state": "absent"}
    return {"state": "present", "digest": model.get("digest"), "size": model.get("size")}


def ensure(api, name, state="present", check_mode=False):
    """Bring model ``name`` to ``state`` on ``api``; the result dict of the module."""
    if state not in ("present", "absent"):
        raise ValueError(f"state {state!r} is not present or absent")
    name = normalise(name)
    where = f"model {name} on {api.host}"
    try:
        before = _find(api.tags(), name)
    except OllamaModelError as exc:
        raise OllamaModelError(f"{where}: listing the models (/api/tags) failed: {exc}", exc.status) from None
    wanted_present = state == "present"
    result = {"model": name, "host": api.host, "changed": (before is not None) != wanted_present,
              "diff": {"before": _state(before), "after": {"state": state}}, "pull": []}
    if not result["changed"] or check_mode:
        # unchanged, or check mode's prediction (the digest of a model not pulled yet is unknown)
        kept = before if wanted_present else None
        result.update(state=state, digest=(kept or {}).get("digest"), size=(kept or {}).get("size"))
        result["diff"]["after"] = _state(kept) if not result["changed"] else {"state": state}
        return result
    if wanted_present:
        last = None
        try:
            for step in api.pull(name):
                if "error" in step:
                    raise OllamaModelError(step["error"])
                last = step.get("status")
                if not result["pull"] or result["pull"][-1] != last:
                    result["pull"].append(last)
        except OllamaModelError as exc:
            after = f" after '{last}'" if last else ""
            raise OllamaModelError(f"{where}: pull failed{after}: {exc}", exc.status) from None
        if last != "success":
            raise OllamaModelError(f"{where}: the pull stream ended without success (last status: {last or 'none'})")
        after_model = _find(api.tags(), name)
        if after_model is None:
            raise OllamaModelError(f"{where}: the pull reported success but the model is not listed by /api/tags")
    else:
        try:
            api.delete(name)
        except OllamaModelError as exc:
            if exc.status != 404:  # gone meanwhile is what we wanted
                raise OllamaModelError(f"{where}: removing (DELETE /api/delete) failed: {exc}", exc.status) from None
        after_model = _find(api.tags(), name)
        if after_model is not None:
            raise OllamaModelError(f"{where}: still listed by /api/tags after DELETE /api/delete")
    result.update(_state(after_model))
    result["digest"] = (after_model or {}).get("digest")
    result["size"] = (after_model or {}).get("size")
    result["diff"]["after"] = _state(after_model)
    return result
