# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One agent call under control: lanes, budgets, cache, schema, audit.

Private API of the collection (may change without notice), used by the ``agent*`` action
plugins and the ``agent`` lookup, and meant to be called from other controller-side plugins
(for example the guard's risk review)::

    from ansible_collections.locus.infra.plugins.module_utils import _agent, _store

    with _store.open_store() as store:
        result = _agent.run_agent({"role": "security", "task": "...", "context": facts,
                                   "schema": RISK_SCHEMA}, store, job=run_id)
    result["output"]   # schema-valid JSON; result["ref_tag"] is the AGENT REF-tag

:func:`run_agent` raises :class:`AgentError` (``kind``: ``input``, ``lane``, ``budget``,
``schema``, ``retry``, ``fatal``, ``config``, ``halt``) with ``result`` holding what is known (the
REF-tag of the refusal or failure record included).

Order of checks, none of which depends on anything a model or the context says:
options -> lane (before any client exists, so a refused call sends nothing) -> cache ->
check mode (never calls) -> price and budget reservation -> call -> schema (one repair) ->
ledger, cache and audit record in one transaction.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import time
from urllib.parse import urlsplit

from ansible_collections.locus.infra.plugins.plugin_utils import _jsonschema, _redact
from ansible_collections.locus.infra.plugins.plugin_utils.agents import _agent_prompts, _budget, _llm
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _halt

LANES = ("private", "enterprise", "personal")
ROLES = _agent_prompts.ROLES
DEFAULTS = {
    "backend": "embedded",
    "lane": "private",
    "max_tokens": 512,
    "timeout": 60.0,
    "retries": 2,
    "cache": True,
}
ENV = {
    "backend": "LOCUS_AGENT_BACKEND",
    "model": "LOCUS_AGENT_MODEL",
    "lane": "LOCUS_AGENT_LANE",
    "private_hosts": "LOCUS_PRIVATE_HOSTS",
    "prices": "LOCUS_AGENT_PRICES",
}
OPTIONS = (
    "role",
    "task",
    "context",
    "schema",
    "backend",
    "model",
    "lane",
    "max_tokens",
    "temperature",
    "top_k",
    "timeout",
    "retries",
    "cache",
    "api_key",
    "base_url",
    "host",
    "server_name",
    "ca_path",
    "private_hosts",
    "budget",
    "prices",
)
SECRET_OPTIONS = ("api_key",)

# Argument spec of the options every agent plugin shares (documented in the doc fragment
# locus.infra.agent); defaults are applied by :func:`normalise`, where env fallbacks live.
COMMON_SPEC = {
    "backend": {"type": "str", "choices": list(_llm.BACKENDS)},
    "model": {"type": "str"},
    "lane": {"type": "str", "choices": list(LANES)},
    "private_hosts": {"type": "list", "elements": "str"},
    "max_tokens": {"type": "int", "default": DEFAULTS["max_tokens"]},
    "temperature": {"type": "float"},
    "top_k": {"type": "int"},
    "timeout": {"type": "float", "default": DEFAULTS["timeout"]},
    "retries": {"type": "int", "default": DEFAULTS["retries"]},
    "cache": {"type": "bool", "default": DEFAULTS["cache"]},
    "api_key": {"type": "str", "no_log": True},
    "base_url": {"type": "str"},
    "host": {"type": "str"},
    "server_name": {"type": "str"},
    "ca_path": {"type": "path"},
    "budget": {"type": "dict"},
    "prices": {"type": "path"},
}


class AgentError(Exception):
    """The call was refused or failed; ``kind`` sorts it, ``result`` carries the details."""

    def __init__(self, kind, msg, **result):
        super().__init__(msg)
        self.kind = kind
        self.result = {"error_kind": kind, "retryable": kind == "retry", **result}


# -- options --------------------------------------------------------------------------------------


def _number(options, name, kind, minimum=None, maximum=None):
    value = options.get(name)
    if value is None:
        return None
    try:
        value = kind(value)
    except (TypeError, ValueError):
        raise AgentError("input", f"option {name}: {options[name]!r} is not a {kind.__name__}") from None
    if isinstance(value, bool) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise AgentError("input", f"option {name}: {value!r} is out of range [{minimum}, {maximum}]")
    return value


def check_schema(schema, where="schema"):
    """Raise AgentError unless ``schema`` is a valid JSON Schema (any draft jsonschema knows)."""
    if schema is None:
        return None
    if not isinstance(schema, dict):
        raise AgentError("input", f"option {where}: expected a JSON schema (a mapping), got {type(schema).__name__}")
    problem = _jsonschema.schema_problem(schema)
    if problem is not None:
        raise AgentError("input", f"option {where} is not a valid JSON schema at {problem.json_path}: {problem.message}")
    return schema


def normalise(options, env=None):
    """Validated options with defaults filled in; errors name the option."""
    env = os.environ if env is None else env
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise AgentError("input", f"unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(OPTIONS)}")
    opts = dict(options)
    role = opts.get("role")
    if role not in _agent_prompts.ROLES:
        raise AgentError("input", f"option role: {role!r} is not one of {', '.join(_agent_prompts.ROLES)}")
    task = opts.get("task")
    if not isinstance(task, str) or not task.strip():
        raise AgentError("input", "option task: a non-empty string is required")
    for name in ("backend", "lane"):
        opts[name] = opts.get(name) or env.get(ENV[name]) or DEFAULTS[name]
    if opts["backend"] not in _llm.BACKENDS:
        raise AgentError("input", f"option backend: {opts['backend']!r} is not one of {', '.join(_llm.BACKENDS)}")
    if opts["lane"] not in LANES:
        raise AgentError("input", f"option lane: {opts['lane']!r} is not one of {', '.join(LANES)}")
    opts["model"] = opts.get("model") or env.get(ENV["model"]) or _llm.DEFAULT_MODELS[opts["backend"]]
    opts["max_tokens"] = _number(opts, "max_tokens", int, 1, 200_000) or DEFAULTS["max_tokens"]
    opts["temperature"] = _number(opts, "temperature", float, 0.0, 2.0)
    opts["top_k"] = _number(opts, "top_k", int, 1, 1000)
    opts["timeout"] = _number(opts, "timeout", float, 0.1, 3600.0) or DEFAULTS["timeout"]
    retries = _number(opts, "retries", int, 0, 10)
    opts["retries"] = DEFAULTS["retries"] if retries is None else retries
    opts["cache"] = DEFAULTS["cache"] if opts.get("cache") is None else bool(opts["cache"])
    hosts = opts.get("private_hosts")
    if hosts is None:
        hosts = [h for h in env.get(ENV["private_hosts"], "").split(",") if h.strip()]
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    opts["private_hosts"] = [str(h).strip() for h in hosts if str(h).strip()]
    opts["prices"] = opts.get("prices") or env.get(ENV["prices"])
    check_schema(opts.get("schema"))
    try:
        json.dumps(opts.get("context"), default=str)
    except (TypeError, ValueError) as exc:
        raise AgentError("input", f"option context cannot be serialised as JSON: {exc}") from None
    return opts


def check_halt(store):
    """Raise AgentError(kind='halt') while the emergency halt is set: no agent spends tokens then."""
    try:
        _halt.check_halt(store)
    except _halt.Halted as exc:
        raise AgentError("halt", str(exc), halted=True, halt_ref_tag=exc.state.get("tag")) from None


# -- lanes ----------------------------------------------------------------------------------------


def _host_of(url):
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    return (parts.hostname or "").lower()


def _is_local(host):
    """Loopback by its literal form only: never by a name's look, never by resolving it.

    A name (``evil.localhost``, ``ollama.internal``) is resolved again by the client when it
    connects, by resolvers an attacker may steer (DNS, a rebinding answer), so a check that
    resolved it could pass on 127.0.0.1 and the request still leave the machine. ``localhost``
    itself is the one name kept: RFC 6761 reserves it and /etc/hosts (root's) pins it; names
    under ``.localhost`` go to DNS on a default glibc system. Anything else that is private
    belongs in ``private_hosts``, where the operator vouches for it.
    """
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    # 0.0.0.0 / :: as a *destination* means this machine (OLLAMA_HOST=0.0.0.0 is common).
    return addr.is_loopback or addr.is_unspecified


def _allowed(host, allow):
    for entry in allow:
        entry = entry.lower()
        if host == entry:
            return True
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def check_lane(lane, backend, model, endpoint, private_hosts=(), env=None):
    """Raise AgentError(kind='lane') unless ``lane`` may send data to this backend and model.

    Pure: looks only at options and the environment, never at the network.
    """
    env = os.environ if env is None else env
    if lane not in LANES:
        raise AgentError("lane", f"lane {lane!r} is not one of {', '.join(LANES)}")
    if lane != "private" or backend == "embedded":
        return
    if backend == "anthropic":
        raise AgentError(
            "lane",
            "lane private: backend anthropic would send the data to Anthropic's cloud; use backend embedded, "
            "or ollama on loopback or an allow-listed host, or a lane that allows Claude (enterprise, personal)",
        )
    if backend == "ollama":
        host_url = endpoint.get("host", "")
        host = _host_of(host_url)
        if env.get("OLLAMA_API_KEY"):
            raise AgentError(
                "lane",
                "lane private: OLLAMA_API_KEY is set, so the ollama client would send a cloud credential "
                "with the request; unset it for private work",
            )
        if model.endswith("-cloud") or model.endswith(":cloud"):
            raise AgentError("lane", f"lane private: Ollama model {model!r} runs in Ollama's cloud")
        if _is_local(host) or _allowed(host, private_hosts):
            return
        raise AgentError(
            "lane",
            f"lane private: Ollama host {host!r} is neither loopback nor in private_hosts "
            f"({', '.join(private_hosts) or 'empty'}; set it or LOCUS_PRIVATE_HOSTS)",
        )
    raise AgentError("lane", f"lane {lane}: unknown backend {backend!r}")


# -- cache ----------------------------------------------------------------------------------------


def _canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _sha(value):
    return hashlib.sha256((value if isinstance(value, str) else _canonical(value)).encode()).hexdigest()


def model_identity(backend, model):
    """What identifies the weights: for embedded models the shipping package and its version."""
    if backend != "embedded":
        return model
    spec = _llm.EMBEDDED_MODELS.get(model)
    if spec:
        from importlib import metadata

        try:
            return f"{model}@{spec[0]}=={metadata.version(spec[0])}"
        except metadata.PackageNotFoundError:
            return model
    try:
        return f"{model}@{os.path.getsize(os.path.expanduser(model))}"
    except OSError:
        return model


def cache_key(opts, endpoint, system, prompt):
    """Hash of everything that decides the answer: backend, endpoint, model, prompts, schema, parameters."""
    return _sha(
        {
            "v": _agent_prompts.PROMPT_VERSION,
            "backend": opts["backend"],
            "endpoint": {k: v for k, v in endpoint.items() if k != "backend"},
            "model": model_identity(opts["backend"], opts["model"]),
            "system": system,
            "prompt": prompt,
            "schema": opts.get("schema"),
            "max_tokens": opts["max_tokens"],
            "temperature": opts["temperature"],
            "top_k": opts["top_k"],
        }
    )


def cache_get(store, key):
    hit = store.agent_answer(key)
    return None if hit is None else (json.loads(hit[0]), hit[1])


# -- output ---------------------------------------------------------------------------------------


def validate_output(text, schema):
    """``(value, None)`` when ``text`` is JSON valid against ``schema``, else ``(None, problem)``."""
    try:
        value = _llm.parse_json(text)
    except ValueError as exc:
        return None, f"$: not JSON ({exc})"
    problem = _jsonschema.first_problem(value, schema)
    if problem is not None:
        return None, str(problem)
    return value, None


# -- the call ---------------------------------------------------------------------------------------


def _result(opts, **kw):
    base = {
        "changed": False,
        "role": opts.get("role"),
        "lane": opts.get("lane"),
        "backend": opts.get("backend"),
        "model": opts.get("model"),
        "cached": False,
        "would_call": False,
        "output": None,
        "text": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
        "cost_usd": 0.0,
        "latency_s": 0.0,
    }
    base.update(kw)
    return base


class _Recorder:
    """Audit records of agent calls: one AGENT REF-tag each, never a secret."""

    def __init__(self, store, opts, endpoint, job, check_mode, secrets):
        self.store = store
        self.opts = opts
        self.secrets = [s for s in secrets if s]
        task = _redact.redact(opts["task"], self.secrets)
        self.subject = (
            f"{opts['role']} agent via {opts['backend']}/{opts['model']} (lane {opts['lane']}): "
            f"{task[:100]}{'…' if len(task) > 100 else ''}"
        )
        self.base = {
            "kind": "agent_call",
            "role": opts["role"],
            "backend": opts["backend"],
            "model": opts["model"],
            "lane": opts["lane"],
            "endpoint": _redact.redact(endpoint, self.secrets),
            "task": task,
            "task_sha256": _sha(opts["task"]),
            "context_sha256": _sha(opts.get("context")),
            "schema_sha256": _sha(opts.get("schema")) if opts.get("schema") is not None else None,
            "check_mode": bool(check_mode),
        }
        if job:
            self.base["job"] = job

    def data(self, **fields):
        # Structured fields are ours (names, numbers, hashes); free text is redacted. (Redacting
        # the whole mapping would mask every *_tokens count as if it were a token.)
        data = {**self.base, **fields}
        for name in ("error", "violation"):
            if isinstance(data.get(name), str):
                data[name] = _redact.redact_text(_redact.redact(data[name], self.secrets))
        return data

    def record(self, tx=None, **fields):
        data = self.data(**fields)
        if tx is not None:
            return tx.record("AGENT", self.subject, data)
        return self.store.record("AGENT", self.subject, data)


def run_agent(options, store, *, check_mode=False, job=None, env=None, backend_factory=None):
    """Run one agent call under lanes, budget, cache and audit; return the result dict.

    ``options``: see :data:`OPTIONS` (``role`` and ``task`` required). ``store``: an open
    locus state store. ``job``: the run id to put in the audit record. Raises
    :class:`AgentError`. The steps are those of the module docstring, one method of
    :class:`_Call` each.
    """
    env = os.environ if env is None else env
    opts = normalise(options, env)
    check_halt(store)
    call = _Call(opts, store, env, job, check_mode, backend_factory)
    call.check_lane()
    hit = call.from_cache() if opts["cache"] else None
    if hit is not None:
        return hit
    call.price()
    if check_mode:
        return call.would_call()
    call.reserve_first()
    call.complete()
    return call.record()


class _Call:
    """The state of one agent call while :func:`run_agent` takes it through its steps."""

    def __init__(self, opts, store, env, job, check_mode, backend_factory):
        self.opts = opts
        self.store = store
        self.env = env
        self.backend = (backend_factory or _llm.make_backend)(
            opts["backend"], api_key=opts.get("api_key"), base_url=opts.get("base_url"), host=opts.get("host"),
            env=env, **{k: opts[k] for k in ("server_name", "ca_path") if opts.get(k)},
        )
        self.endpoint = self.backend.endpoint()
        secrets = [opts.get("api_key"), env.get("ANTHROPIC_API_KEY"), env.get("LOCUS_OLLAMA_TOKEN")]
        self.rec = _Recorder(store, opts, self.endpoint, job, check_mode, secrets)
        self.system = self.prompt = self.key = None
        self.price_entry = self.limits = None
        self.est_tokens_in = self.est_micro = None
        self.reservations = []
        self.responses = []
        self.output = None
        self.problem = None   # why the last reply does not match the schema
        self.failure = None   # AgentError the call ended with, recorded before it is raised

    def fail(self, outcome, kind, exc):
        """Record the refusal or failure (nothing was spent yet), then raise it."""
        tag = self.rec.record(outcome=outcome, reason=kind, error=str(exc))
        raise AgentError(kind, str(exc), **_result(self.opts, ref_tag=tag)) from None

    # 1. lane: before any client is built or any byte is sent
    def check_lane(self):
        opts = self.opts
        try:
            check_lane(opts["lane"], opts["backend"], opts["model"], self.endpoint, opts["private_hosts"], self.env)
        except AgentError as exc:
            self.fail("refused", "lane", exc)
        self.system, self.prompt = _agent_prompts.build(opts["role"], opts["task"], opts.get("context"),
                                                        opts.get("schema"))
        self.key = cache_key(opts, self.endpoint, self.system, self.prompt)

    # 2. cache (also in check mode: a cached answer is known without calling)
    def from_cache(self):
        start = time.monotonic()
        hit = cache_get(self.store, self.key)
        if hit is None:
            return None
        response, source_tag = hit
        latency = time.monotonic() - start
        tag = self.rec.record(outcome="ok", cached=True, cached_from=source_tag, cache_key=self.key[:16],
                              input_tokens=0, output_tokens=0, cost_usd=0.0, latency_s=round(latency, 6))
        return _result(self.opts, ref_tag=tag, cached=True, cached_from=source_tag, output=response["output"],
                       text=response["text"], model=response.get("model") or self.opts["model"],
                       stop_reason=response.get("stop_reason"), request_id=response.get("request_id"),
                       latency_s=latency, original_usage=response.get("usage"))

    # 3. price and estimate (an unknown price is refused, also in check mode)
    def price(self):
        opts = self.opts
        try:
            self.price_entry = _budget.load_prices(opts.get("prices")).lookup(opts["backend"], opts["model"])
            self.limits = _budget.limits_from(opts.get("budget") or {}, self.env)
        except _budget.BudgetError as exc:
            self.fail("refused", "budget", exc)
        self.est_tokens_in = _budget.estimate_tokens(self.system, self.prompt)
        self.est_micro = self.price_entry.cost_micro(self.est_tokens_in, opts["max_tokens"])

    # 4. check mode: never call, but fail as a real run would when the backend cannot load
    def would_call(self):
        opts = self.opts
        try:
            self.backend.preflight(opts["model"])
        except _llm.LLMError as exc:
            self.fail("failed", exc.kind, exc)
        est_usd = _budget.micro_to_usd(self.est_micro)
        est_tokens = self.est_tokens_in + opts["max_tokens"]
        tag = self.rec.record(outcome="would_call", cached=False, estimate_usd=est_usd, estimate_tokens=est_tokens)
        return _result(opts, ref_tag=tag, would_call=True, estimate_usd=est_usd, estimate_tokens=est_tokens,
                       msg="check mode: no cached answer; a real run would call the model")

    # 5. budget reservation, then the call (and one repair attempt)
    def reserve(self, tokens_in):
        """Reserve budget for one reply to a prompt of ``tokens_in``; the BudgetError, or None."""
        opts = self.opts
        micro = self.price_entry.cost_micro(tokens_in, opts["max_tokens"])
        try:
            self.reservations.append(
                _budget.reserve(self.store, agent=opts["role"], backend=opts["backend"], model=opts["model"],
                                lane=opts["lane"], estimate_micro=micro, estimate_tokens=tokens_in + opts["max_tokens"],
                                limits=self.limits)
            )
        except _budget.BudgetError as exc:
            return exc
        return None

    def reserve_first(self):
        budget_error = self.reserve(self.est_tokens_in)
        if budget_error is not None:
            tag = self.rec.record(outcome="refused", reason="budget", error=str(budget_error), **budget_error.details)
            raise AgentError("budget", str(budget_error),
                             **_result(self.opts, ref_tag=tag, budget=budget_error.details))

    def complete(self):
        """The call, and one repair when the reply does not match the schema; sets ``failure``."""
        opts = self.opts
        request = _llm.LLMRequest(system=self.system, prompt=self.prompt, model=opts["model"], schema=opts.get("schema"),
                                  max_tokens=opts["max_tokens"], temperature=opts["temperature"], top_k=opts["top_k"],
                                  timeout=opts["timeout"], retries=opts["retries"])
        try:
            self.responses.append(self.backend.complete(request))
            text = self.responses[-1].text
            if opts.get("schema") is None:
                self.output = text
                return
            self.output, self.problem = validate_output(text, opts["schema"])
            if self.problem is not None:
                self._repair(request, text)
        except _llm.LLMError as exc:
            self.failure = AgentError(exc.kind, str(exc))
            self.failure.result.update(
                {k: v for k, v in exc.as_dict().items() if k in ("status", "request_id", "retry_after", "attempts")}
            )

    def _repair(self, request, text):
        opts = self.opts
        repair_prompt = _agent_prompts.repair(self.prompt, text, self.problem)
        budget_error = self.reserve(_budget.estimate_tokens(self.system, repair_prompt))
        if budget_error is not None:
            self.failure = AgentError("budget", f"{budget_error} (for the repair of an invalid reply: {self.problem})")
            return
        request.prompt = repair_prompt
        self.responses.append(self.backend.complete(request))
        self.output, self.problem = validate_output(self.responses[-1].text, opts["schema"])
        if self.problem is not None:
            cut = ""
            if self.responses[-1].stop_reason in ("length", "max_tokens"):
                cut = f" (the reply was cut off at max_tokens={opts['max_tokens']}: raise it)"
            self.failure = AgentError(
                "schema",
                f"the {opts['role']} agent's reply does not match the schema after one repair "
                f"attempt: {self.problem}{cut}",
            )

    # 6. ledger, cache and audit record together
    def record(self):
        """Settle the budget, cache the answer and write the audit record in one transaction;
        return the result, or raise the call's failure with it."""
        opts, responses, failure = self.opts, self.responses, self.failure
        usage = {
            "input_tokens": sum(r.input_tokens for r in responses),
            "output_tokens": sum(r.output_tokens for r in responses),
            "cache_creation_input_tokens": sum(r.cache_creation_input_tokens for r in responses),
            "cache_read_input_tokens": sum(r.cache_read_input_tokens for r in responses),
        }
        costs = [
            self.price_entry.cost_micro(r.input_tokens, r.output_tokens, r.cache_creation_input_tokens,
                                        r.cache_read_input_tokens)
            for r in responses
        ]
        latency = sum(r.latency_s for r in responses)
        last = responses[-1] if responses else None
        fields = {
            "cached": False,
            "replies": len(responses),
            "attempts": sum(r.attempts for r in responses),
            "input_tokens": usage["input_tokens"],
            "output_tokens": usage["output_tokens"],
            "cost_usd": _budget.micro_to_usd(sum(costs)),
            "latency_s": round(latency, 6),
            "request_id": last.request_id if last else failure.result.get("request_id"),
            "stop_reason": last.stop_reason if last else None,
            "served_model": last.model if last else None,
            "price_table_as_of": _budget.load_prices(opts.get("prices")).as_of,
        }
        if failure is not None:
            fields.update(outcome="failed", reason=failure.kind, error=str(failure))
        else:
            fields.update(outcome="ok", cache_key=self.key[:16])
        with self.store.transaction() as tx:
            tag = self.rec.record(tx, **fields)
            self._settle(tx, tag, costs)
            if failure is None and opts["cache"]:
                self._cache(tx, tag, usage, latency)
        result = _result(
            opts,
            ref_tag=tag,
            output=self.output,
            text=last.text if last else None,
            usage=usage,
            cost_usd=_budget.micro_to_usd(sum(costs)),
            latency_s=latency,
            model=last.model if last else opts["model"],
            stop_reason=last.stop_reason if last else None,
            request_id=fields["request_id"],
            replies=len(responses),
            attempts=fields["attempts"],
        )
        if failure is not None:
            result.update(failure.result)
            if self.problem is not None:
                result["violation"] = self.problem
            raise AgentError(failure.kind, str(failure), **result)
        return result

    def _settle(self, tx, tag, costs):
        """Each reservation becomes the reply's real cost, or is released when no reply came."""
        for i, reservation in enumerate(self.reservations):
            if i < len(self.responses):
                r = self.responses[i]
                _budget.settle(tx, reservation, input_tokens=r.input_tokens, output_tokens=r.output_tokens,
                               cost_micro=costs[i], tag=tag)
            else:
                _budget.release(tx, reservation, tag)

    def _cache(self, tx, tag, usage, latency):
        # The cache is part of the store: an answer that echoes a secret (from the prompt, the
        # run's vault, the API key) is kept masked, and a cache hit answers with it masked.
        last = self.responses[-1]
        secrets = self.rec.secrets
        response = {
            "output": _redact.mask_strings(self.output, secrets),
            "text": _redact.mask_text(last.text, secrets) if isinstance(last.text, str) else last.text,
            "model": last.model,
            "usage": usage,
            "stop_reason": last.stop_reason,
            "request_id": last.request_id,
            "latency_s": latency,
        }
        tx.keep_agent_answer(self.key, self.opts["backend"], self.opts["model"], _canonical(response), tag)
