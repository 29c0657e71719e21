"""The ollama backend through the real client against the Ollama API double (real inference)."""

from __future__ import annotations

import socket

import jsonschema
import pytest
from agentlib import FACTS, REVIEW_SCHEMA, agent_records, ask, ledger

from ansible_collections.locus.infra.plugins.plugin_utils.agents import _agent


def _ollama(ollama, **over):
    return {"backend": "ollama", "host": ollama.host, "model": "smollm2:135m", "top_k": 5, "temperature": 0, **over}


def _chats(ollama):
    return [r for r in ollama.requests if r["path"] == "/api/chat"]


def test_chat_with_format_schema_and_usage_fields(sqlite_store, ollama):
    result = ask(sqlite_store, task="Review the TLS settings.", context=FACTS, schema=REVIEW_SCHEMA, max_tokens=120, **_ollama(ollama))
    jsonschema.validate(result["output"], REVIEW_SCHEMA)
    (chat,) = _chats(ollama)
    assert chat["body"]["format"] == REVIEW_SCHEMA and chat["body"]["stream"] is False
    assert chat["body"]["options"] == {"num_predict": 120, "temperature": 0.0, "top_k": 5}
    assert chat["body"]["messages"][0]["role"] == "system" and "security agent" in chat["body"]["messages"][0]["content"]
    # our request id travels as a header a proxy can log, and comes back in the result
    assert chat["headers"]["x-request-id"] == result["request_id"]
    reply = ollama.responses[-1]["body"]
    assert result["usage"]["input_tokens"] == reply["prompt_eval_count"] > 0
    assert result["usage"]["output_tokens"] == reply["eval_count"] > 0
    assert result["stop_reason"] == reply["done_reason"] == "stop"
    assert result["cost_usd"] == 0.0
    tag, data = agent_records(sqlite_store)[-1]
    assert tag == result["ref_tag"] and data["endpoint"]["host"] == ollama.host and data["input_tokens"] == reply["prompt_eval_count"]
    assert [(r["state"], r["input"], r["output"]) for r in ledger(sqlite_store)] == [("spent", reply["prompt_eval_count"], reply["eval_count"])]


def test_unknown_model_fails_fast_listing_the_servers_models(sqlite_store, ollama):
    with pytest.raises(_agent.AgentError, match=r"HTTP 404.*model 'llama9:70b' not found.*smollm2:135m") as info:
        ask(sqlite_store, task="Hello?", **_ollama(ollama, model="llama9:70b"))
    assert info.value.kind == "fatal"
    assert [r["path"] for r in ollama.requests] == ["/api/chat", "/api/tags"]


def test_server_busy_and_proxy_rate_limit_are_retried(sqlite_store, ollama):
    ollama.fail(503)
    ollama.fail(429, retry_after=1, html=True)
    result = ask(sqlite_store, task="Say ok.", max_tokens=8, retries=2, **_ollama(ollama))
    chats = _chats(ollama)
    assert [r["status"] for r in ollama.responses] == [503, 429, 200]
    assert len(chats) == 3 and result["attempts"] == 3
    # retry-after from the proxy was honoured (a lower bound, so never flaky)
    assert chats[2]["at"] - chats[1]["at"] >= 1.0
    # every attempt carried the same request id
    assert len({c["headers"]["x-request-id"] for c in chats}) == 1


def test_busy_beyond_the_retries_is_a_retryable_failure(sqlite_store, ollama):
    ollama.fail(503, times=2)
    with pytest.raises(_agent.AgentError, match="HTTP 503.*server busy") as info:
        ask(sqlite_store, task="Busy?", max_tokens=8, retries=1, **_ollama(ollama))
    assert info.value.kind == "retry" and info.value.result["retryable"] is True
    assert len(_chats(ollama)) == 2
    assert [r["state"] for r in ledger(sqlite_store)] == ["released"]


def test_connection_refused_is_retryable(sqlite_store):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    with pytest.raises(_agent.AgentError, match="cannot connect") as info:
        ask(sqlite_store, task="Anyone?", backend="ollama", host=f"http://127.0.0.1:{port}", retries=1)
    assert info.value.kind == "retry" and info.value.result["attempts"] == 2


@pytest.mark.parametrize(
    ("over", "env", "message"),
    [
        ({"model": "gpt-oss:120b-cloud"}, {}, "Ollama's cloud"),
        ({}, {"OLLAMA_API_KEY": "ollama-cloud-key"}, "OLLAMA_API_KEY"),
        ({"host": "http://192.0.2.10:11434"}, {}, "neither loopback nor in private_hosts"),
    ],
)
def test_private_lane_refusals_send_nothing(sqlite_store, ollama, over, env, message):
    with pytest.raises(_agent.AgentError, match=message) as info:
        ask(sqlite_store, env, task="Private data.", context={"secret_plan": "x"}, **_ollama(ollama, lane="private", **over))
    assert info.value.kind == "lane"
    assert ollama.requests == []
    assert agent_records(sqlite_store)[-1][1]["reason"] == "lane"


@pytest.mark.parametrize("name", ["evil.localhost", "localhost.", socket.gethostname(), "127.1", "[::ffff:127.0.0.1]"])
def test_private_lane_takes_only_literal_loopback(sqlite_store, ollama, name):
    # Each names this machine, or would if a resolver said so (the host name resolves to
    # 127.0.0.1 through /etc/hosts here); none is a literal loopback address, so none passes
    # without private_hosts, and the double on 127.0.0.1 receives nothing.
    port = ollama.host.rsplit(":", 1)[1]
    with pytest.raises(_agent.AgentError, match="neither loopback nor in private_hosts") as info:
        ask(sqlite_store, task="Private data.", **_ollama(ollama, lane="private", host=f"http://{name}:{port}"))
    assert info.value.kind == "lane" and ollama.requests == []


def test_allow_listed_private_host_is_accepted(sqlite_store, ollama):
    # The double listens on 127.0.0.1; naming it through an allow-list entry exercises that path.
    result = ask(sqlite_store, task="Say ok.", max_tokens=8, private_hosts=["127.0.0.0/8"], **_ollama(ollama, lane="private"))
    assert result["lane"] == "private" and len(_chats(ollama)) == 1


def test_token_and_server_name_for_an_authenticating_front(sqlite_store, ollama):
    # Behind the ollama role's nginx: the token goes as a bearer header (not OLLAMA_API_KEY), the
    # server name as Host; neither the token nor the header reaches the audit trail.
    token = "front-token-0123456789abcdefXYZ"
    result = ask(sqlite_store, task="Say ok.", max_tokens=8, api_key=token, server_name="localhost",
                 private_hosts=["127.0.0.1"], **_ollama(ollama, lane="private"))
    (chat,) = _chats(ollama)
    port = ollama.host.rsplit(":", 1)[1]
    assert chat["headers"]["authorization"] == f"Bearer {token}" and chat["headers"]["host"] == f"localhost:{port}"
    tag, data = agent_records(sqlite_store)[-1]
    assert tag == result["ref_tag"] and data["endpoint"] == {"backend": "ollama", "host": ollama.host, "server_name": "localhost"}
    assert token not in str(sqlite_store.query("SELECT data FROM locus_audit"))


def test_ollama_on_loopback_refuses_a_foreign_host_header(sqlite_store, ollama):
    # What nginx's upstream_host is for: Ollama bound to loopback answers 403 to other names.
    with pytest.raises(_agent.AgentError, match="HTTP 403") as info:
        ask(sqlite_store, task="Say ok.", max_tokens=8, server_name="ollama.lab.example", **_ollama(ollama))
    assert info.value.kind == "fatal" and _chats(ollama)[0]["headers"]["host"].startswith("ollama.lab.example:")


def test_front_not_allow_listed_is_refused_before_any_connection(sqlite_store, ollama):
    # The lane looks at the address connected to, whatever name the front presents.
    with pytest.raises(_agent.AgentError, match="neither loopback nor in private_hosts") as info:
        ask(sqlite_store, task="Private data.", api_key="front-token-0123456789abcdef", server_name="localhost",
            private_hosts=["10.77.0.31"], **_ollama(ollama, lane="private", host="https://10.77.0.32"))
    assert info.value.kind == "lane" and ollama.requests == []
