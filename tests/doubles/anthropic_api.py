"""A test DOUBLE of the Anthropic Messages API (``POST /v1/messages``) -- not Anthropic.

A threaded HTTP server on loopback that the real ``anthropic`` SDK talks to through its
``base_url``. It is faithful where a client can tell the difference (shapes checked against
the SDK's own types in ``anthropic/types/message.py``, ``usage.py``, ``_exceptions.py`` and
``_base_client.py`` of the pinned SDK, and the public "Errors" and "Messages" API reference):

* authentication: the key (``x-api-key``, or ``Authorization: Bearer``, which the pinned SDK
  sends) must match, else HTTP 401 ``authentication_error``; the
  ``anthropic-version`` header is required (400 ``invalid_request_error``);
* request validation: ``model``, ``max_tokens`` (>= 1) and a non-empty ``messages`` list that
  starts with a ``user`` turn are required; ``temperature`` in [0, 1]; an unknown model is
  HTTP 404 ``not_found_error``; ``output_config.format`` must be ``{"type": "json_schema",
  "schema": {...}}`` -- all as HTTP 400 ``invalid_request_error`` otherwise;
* every response carries a ``request-id`` header (``req_...``), which the SDK exposes as
  ``message._request_id``; error bodies are ``{"type": "error", "error": {"type", "message"},
  "request_id"}``;
* success bodies are ``Message`` objects: ``id`` (``msg_...``), ``type: message``, ``role``,
  ``model``, ``content`` (text blocks), ``stop_reason`` (``end_turn`` / ``max_tokens``),
  ``stop_sequence``, ``usage`` with ``input_tokens``, ``output_tokens``,
  ``cache_creation_input_tokens``, ``cache_read_input_tokens``, ``service_tier``;
* structured outputs: with ``output_config.format`` the text block holds a JSON value that
  matches the schema (generated deterministically from it);
* scripted failures, one per request in order: 429 ``rate_limit_error`` with ``retry-after``
  (and the ``anthropic-ratelimit-*`` headers), 529 ``overloaded_error``, 500 ``api_error``,
  401, 400, or an invalid reply text -- to exercise the SDK's retry policy and ours.

Token counts are a deterministic word/punctuation count, not Claude's tokenizer: the double
is about shapes and behaviour, not about matching a bill.

Every request (headers lower-cased, JSON body, arrival time) is kept in ``requests`` and every
response (status, headers, body) in ``responses``, for assertions.
"""

from __future__ import annotations

import json
import re
import uuid

from doubles._loopback import LoopbackHTTPDouble

KNOWN_MODELS = (
    "claude-fable-5-2",
    "claude-opus-5-5",
    "claude-sonnet-5-5",
    "claude-haiku-5-5",
    "claude-opus-4-8",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text):
    return len(_TOKEN.findall(text or ""))


def instance_of(schema, path="$"):
    """A deterministic JSON value valid against ``schema`` (the subset agents use)."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return instance_of(schema[key][0], path)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties", {})
        return {name: instance_of(props.get(name, {}), f"{path}.{name}") for name in props}
    if kind == "array":
        n = max(1, schema.get("minItems", 1))
        if "maxItems" in schema:
            n = min(n, schema["maxItems"])
        return [instance_of(schema.get("items", {}), f"{path}[{i}]") for i in range(n)]
    if kind == "string":
        text = f"double answer for {path}"
        if "maxLength" in schema:
            text = text[: schema["maxLength"]]
        return text.ljust(schema.get("minLength", 0), "x")
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return "double answer"


class AnthropicDouble(LoopbackHTTPDouble):
    """``with AnthropicDouble(api_key="sk-ant-test") as api: ...`` -- ``api.base_url`` for the SDK."""

    def __init__(self, api_key="sk-ant-double-key", models=KNOWN_MODELS):
        super().__init__()
        self.api_key = api_key
        self.models = set(models)
        self.responses = []
        self._script = []
        self._server = None

    # -- scripting -------------------------------------------------------------------------
    def fail(self, status, message=None, retry_after=None, times=1, error_type=None, details=None):
        """The next ``times`` requests fail with HTTP ``status`` (after authentication)."""
        for _n in range(times):
            self._script.append(
                {"status": status, "message": message, "retry_after": retry_after, "type": error_type, "details": details}
            )

    def reply(self, text, times=1):
        """The next ``times`` successful requests answer ``text`` verbatim (e.g. invalid JSON)."""
        for _n in range(times):
            self._script.append({"text": text})

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def base_url(self):
        return self.url

    # -- protocol ------------------------------------------------------------------------------
    def _send(self, handler, status, body, headers=None):
        with self._lock:
            self.responses.append({"status": status, "headers": dict(headers or {}), "body": body})
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _error(self, handler, status, message, request_id, headers=None, error_type=None, details=None):
        error = {"type": error_type or ERROR_TYPES.get(status, "api_error"), "message": message}
        if details:
            error["details"] = details
        body = {"type": "error", "error": error, "request_id": request_id}
        self._send(handler, status, body, {"request-id": request_id, **(headers or {})})

    def _handle(self, handler, raw):
        request_id = f"req_{uuid.uuid4().hex[:24]}"
        headers, body = self._record(handler, raw)
        path = handler.path.split("?", 1)[0]
        if handler.command != "POST" or path != "/v1/messages":
            return self._error(handler, 404, f"Not found: {handler.command} {path}", request_id)
        bearer = headers.get("authorization", "")
        key = headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else None)
        if key != self.api_key:
            return self._error(handler, 401, "invalid x-api-key", request_id)
        if not headers.get("anthropic-version"):
            return self._error(handler, 400, "anthropic-version: header is required", request_id)
        with self._lock:
            step = self._script.pop(0) if self._script else {}
        if "status" in step:
            extra = {}
            if step["retry_after"] is not None:
                extra["retry-after"] = str(step["retry_after"])
            if step["status"] == 429:
                extra.update(
                    {
                        "anthropic-ratelimit-requests-limit": "50",
                        "anthropic-ratelimit-requests-remaining": "0",
                        "anthropic-ratelimit-requests-reset": "1970-01-01T00:00:00Z",
                    }
                )
            message = step["message"] or {
                429: "Number of request tokens has exceeded your per-minute rate limit",
                529: "Overloaded",
                500: "Internal server error",
                401: "invalid x-api-key",
                400: "Invalid request",
            }.get(step["status"], "error")
            return self._error(handler, step["status"], message, request_id, extra, step["type"], step["details"])
        problem = self._validate(body)
        if problem:
            status, message = problem
            return self._error(handler, status, message, request_id)
        fmt = (body.get("output_config") or {}).get("format")
        text = step.get("text")
        if text is None:
            if fmt:
                text = json.dumps(instance_of(fmt["schema"]))
            else:
                text = "This answer comes from the Anthropic API test double."
        words = _TOKEN.findall(text)
        stop_reason = "end_turn"
        if len(words) > body["max_tokens"]:
            stop_reason = "max_tokens"
            text = " ".join(words[: body["max_tokens"]])
        prompt = body.get("system") if isinstance(body.get("system"), str) else json.dumps(body.get("system") or "")
        for message in body["messages"]:
            content = message["content"]
            prompt += content if isinstance(content, str) else json.dumps(content)
        message = {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": count_tokens(prompt),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": count_tokens(text),
                "service_tier": "standard",
            },
        }
        self._send(handler, 200, message, {"request-id": request_id})

    def _validate(self, body):
        if not isinstance(body, dict):
            return 400, "The request body is not valid JSON."
        for field in ("model", "max_tokens", "messages"):
            if field not in body:
                return 400, f"{field}: Field required"
        if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
            return 400, "max_tokens: Input should be greater than or equal to 1"
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            return 400, "messages: at least one message is required"
        if messages[0].get("role") != "user":
            return 400, "messages: first message must use the \"user\" role"
        if "temperature" in body and not (0 <= body["temperature"] <= 1):
            return 400, "temperature: range: 0..1"
        if body.get("stream"):
            return 400, "stream: streaming is not served by this test double"
        fmt = (body.get("output_config") or {}).get("format")
        if fmt is not None and (fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict)):
            return 400, "output_config.format: expected {type: json_schema, schema: {...}}"
        if body["model"] not in self.models:
            return 404, f"model: {body['model']}"
        return None
