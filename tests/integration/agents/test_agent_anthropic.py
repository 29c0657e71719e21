"""The anthropic backend through the real SDK against the Messages API double, on both store engines."""

from __future__ import annotations

import json

import pytest
from agentlib import FACTS, REVIEW_SCHEMA, agent_records, ask, ledger

from ansible_collections.locus.infra.plugins.plugin_utils.agents import _agent

CLAUDE = {"backend": "anthropic", "lane": "enterprise", "model": "claude-sonnet-5-5"}


def test_usage_cost_request_id_and_audit_record(store, claude, claude_env):
    result = ask(store, claude_env, task="Review the TLS settings.", context=FACTS, schema=REVIEW_SCHEMA, **CLAUDE)
    sent = claude.responses[-1]
    usage = sent["body"]["usage"]
    assert result["usage"]["input_tokens"] == usage["input_tokens"] > 0
    assert result["usage"]["output_tokens"] == usage["output_tokens"] > 0
    # Sonnet 5.5: $2 / $10 per million tokens -> micro-USD = 2 * in + 10 * out
    assert result["cost_usd"] == pytest.approx((2 * usage["input_tokens"] + 10 * usage["output_tokens"]) / 1e6)
    assert result["request_id"] == sent["headers"]["request-id"]
    assert result["stop_reason"] == "end_turn"
    assert result["output"] == json.loads(sent["body"]["content"][0]["text"])
    # what was sent: structured outputs with the schema, the role's system prompt, the key as credential
    body = claude.requests[-1]["body"]
    assert body["output_config"]["format"]["type"] == "json_schema"
    assert "security agent" in body["system"]
    assert "temperature" not in body  # newer models reject non-default sampling parameters
    tag, data = agent_records(store)[-1]
    assert tag == result["ref_tag"]
    assert (data["role"], data["backend"], data["model"], data["lane"]) == ("security", "anthropic", "claude-sonnet-5-5", "enterprise")
    assert (data["input_tokens"], data["output_tokens"]) == (usage["input_tokens"], usage["output_tokens"])
    assert data["cost_usd"] == result["cost_usd"] and data["latency_s"] > 0 and data["request_id"] == result["request_id"]
    trail = json.dumps(list(store.iter_records()))
    assert claude.api_key not in trail
    rows = ledger(store)
    assert [(r["state"], r["cost"], r["tag"]) for r in rows] == [("spent", round(result["cost_usd"] * 1e6), result["ref_tag"])]


def test_429_is_retried_after_retry_after(store, claude, claude_env):
    claude.fail(429, retry_after=1)
    result = ask(store, claude_env, task="Retry me.", schema=REVIEW_SCHEMA, **CLAUDE)
    assert [r["status"] for r in claude.responses] == [429, 200]
    assert [r["headers"]["x-stainless-retry-count"] for r in claude.requests] == ["0", "1"]
    assert (result["replies"], result["attempts"]) == (1, 2)
    # the SDK waited at least what retry-after asked (a lower bound: never flaky)
    assert claude.requests[1]["at"] - claude.requests[0]["at"] >= 1.0
    assert result["output"]["risk"] in ("low", "medium", "high", "critical")


def test_529_overload_exhausts_the_configured_retries_as_retryable(store, claude, claude_env):
    claude.fail(529, retry_after=0, times=3)
    with pytest.raises(_agent.AgentError) as info:
        ask(store, claude_env, task="Overloaded?", retries=2, **CLAUDE)
    assert info.value.kind == "retry" and info.value.result["retryable"] is True
    assert info.value.result["status"] == 529
    assert [r["status"] for r in claude.responses] == [529, 529, 529]
    # nothing was spent: the reservation is released, and the failure is on record
    assert [r["state"] for r in ledger(store)] == ["released"]
    tag, data = agent_records(store)[-1]
    assert tag == info.value.result["ref_tag"] and data["outcome"] == "failed" and data["reason"] == "retry"


def test_401_fails_fast_without_retrying(store, claude, claude_env):
    env = {**claude_env, "ANTHROPIC_API_KEY": "sk-ant-api03-wrong-key-0000000000"}
    with pytest.raises(_agent.AgentError, match="HTTP 401") as info:
        ask(store, env, task="Who am I?", **CLAUDE)
    assert info.value.kind == "fatal" and info.value.result["retryable"] is False
    assert len(claude.requests) == 1
    assert "wrong-key" not in json.dumps(list(store.iter_records()))


def test_400_bad_request_fails_fast(store, claude, claude_env):
    with pytest.raises(_agent.AgentError, match="HTTP 400.*temperature") as info:
        ask(store, claude_env, task="Too hot.", temperature=1.5, **CLAUDE)
    assert info.value.kind == "fatal" and len(claude.requests) == 1


def test_invalid_reply_gets_one_repair_attempt(store, claude, claude_env):
    claude.reply('{"risk": "severe", "findings": ["x"], "score": 3}')
    result = ask(store, claude_env, task="Repair me.", schema=REVIEW_SCHEMA, **CLAUDE)
    assert result["replies"] == 2 and result["attempts"] == 2 and result["output"]["risk"] in ("low", "medium", "high", "critical")
    repair = claude.requests[1]["body"]["messages"][0]["content"]
    assert "$.risk" in repair and "severe" in repair
    first, second = (r["body"]["usage"] for r in claude.responses)
    assert result["usage"]["input_tokens"] == first["input_tokens"] + second["input_tokens"]
    assert [r["tag"] for r in ledger(store)] == [result["ref_tag"], result["ref_tag"]]


def test_twice_invalid_fails_naming_the_path_and_still_books_the_spend(store, claude, claude_env):
    claude.reply('{"risk": "low", "findings": [], "score": 11}', times=2)
    with pytest.raises(_agent.AgentError, match=r"\$\.(findings|score)") as info:
        ask(store, claude_env, task="Still wrong.", schema=REVIEW_SCHEMA, **CLAUDE)
    assert info.value.kind == "schema"
    spent = sum(r["cost"] for r in ledger(store))
    assert spent > 0 and spent == round(info.value.result["cost_usd"] * 1e6)
    assert store.query("SELECT COUNT(*) FROM locus_agent_cache")[0][0] == 0  # nothing invalid is cached


def test_private_lane_refuses_claude_before_any_request(store, claude, claude_env):
    with pytest.raises(_agent.AgentError, match="lane private") as info:
        ask(store, claude_env, task="Secret stuff.", context={"db_password": "hunter2"}, backend="anthropic", lane="private")
    assert info.value.kind == "lane"
    assert claude.requests == []
    tag, data = agent_records(store)[-1]
    assert tag == info.value.result["ref_tag"] and data["outcome"] == "refused" and data["reason"] == "lane"
    assert ledger(store) == []
    assert "hunter2" not in json.dumps(list(store.iter_records()))


def test_default_lane_is_private(store, claude, claude_env):
    with pytest.raises(_agent.AgentError, match="lane private"):
        ask(store, claude_env, task="No lane given.", backend="anthropic")
    assert claude.requests == []


def test_unknown_model_price_is_refused_before_sending(store, claude, claude_env):
    with pytest.raises(_agent.AgentError, match="no price for anthropic model 'claude-next-1'") as info:
        ask(store, claude_env, task="New model.", backend="anthropic", lane="enterprise", model="claude-next-1")
    assert info.value.kind == "budget" and claude.requests == []


def test_no_agent_spends_tokens_while_halted(store, claude, claude_env):
    from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard

    halt = _guard.halt(store, "runaway agents", "pytest", "test")
    with pytest.raises(_agent.AgentError, match="runaway agents") as info:
        ask(store, claude_env, task="Anything.", **CLAUDE)
    assert info.value.kind == "halt" and info.value.result["halt_ref_tag"] == halt["halt"]["tag"]
    assert claude.requests == [] and ledger(store) == []


def test_organisation_spend_cap_is_not_reported_as_retryable(store, claude, claude_env):
    claude.fail(429, message="You have reached your specified API usage limits.", details={"error_code": "enforced_spend_limit_reached"})
    with pytest.raises(_agent.AgentError, match="spend limit is reached") as info:
        ask(store, claude_env, task="Capped.", retries=0, **CLAUDE)
    assert info.value.kind == "fatal" and info.value.result["retryable"] is False
