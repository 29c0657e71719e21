"""Budgets and the ledger on both store engines: refusal before sending, books that add up."""

from __future__ import annotations

import multiprocessing

import pytest
from agentlib import REVIEW_SCHEMA, agent_records, ask, ledger

from ansible_collections.locus.infra.plugins.plugin_utils.agents import _agent, _budget
from ansible_collections.locus.infra.plugins.plugin_utils.store import _store

CLAUDE = {"backend": "anthropic", "lane": "enterprise", "model": "claude-sonnet-5-5", "schema": REVIEW_SCHEMA, "max_tokens": 200}


def test_the_ledger_adds_up(store, claude, claude_env):
    results = [ask(store, claude_env, role=role, task=f"Check item {i}.", **CLAUDE) for i, role in enumerate(["security", "security", "network"])]
    rows = ledger(store)
    assert [r["tag"] for r in rows] == [r["ref_tag"] for r in results]
    billed = [
        2 * r["body"]["usage"]["input_tokens"] + 10 * r["body"]["usage"]["output_tokens"] for r in claude.responses
    ]  # Sonnet 5.5 prices, micro-USD
    assert [r["cost"] for r in rows] == billed
    assert sum(r["cost"] for r in rows) == round(sum(r["cost_usd"] for r in results) * 1e6)
    assert _budget.spent(store)["micro_usd"] == sum(billed)
    assert _budget.spent(store, agent="security")["micro_usd"] == sum(billed[:2])
    assert _budget.spent(store)["calls"] == 3


def test_a_call_whose_estimate_passes_the_call_limit_is_refused_before_sending(store, claude, claude_env):
    # 200 output tokens alone may cost 2000 micro-USD on Sonnet 5.5: a 0.001 USD limit refuses it
    with pytest.raises(_agent.AgentError, match="budget stop: call_usd limit 0.001000 USD") as info:
        ask(store, claude_env, task="Expensive?", budget={"call_usd": 0.001}, **CLAUDE)
    assert info.value.kind == "budget" and info.value.result["budget"]["limit"] == "call_usd"
    assert claude.requests == []
    assert ledger(store) == []
    tag, data = agent_records(store)[-1]
    assert tag == info.value.result["ref_tag"] and data["outcome"] == "refused" and data["limit"] == "call_usd"


def test_the_daily_limit_counts_what_was_spent(store, claude, claude_env):
    first = ask(store, claude_env, task="First.", **CLAUDE)
    spent = round(first["cost_usd"] * 1e6)
    limit = (spent + 1) / 1e6  # room for 1 micro-USD more: the next estimate cannot fit
    with pytest.raises(_agent.AgentError, match="budget stop: agent_daily_usd") as info:
        ask(store, claude_env, task="Second.", budget={"agent_daily_usd": limit}, **CLAUDE)
    assert info.value.result["budget"]["used"] == spent
    assert len(claude.requests) == 1
    # another agent has its own per-agent budget: a devops call still goes through ...
    other = ask(store, claude_env, role="devops", task="Other agent.", **CLAUDE)
    total = spent + round(other["cost_usd"] * 1e6)
    # ... but all agents share the daily one
    with pytest.raises(_agent.AgentError, match="budget stop: daily_usd") as info:
        ask(store, claude_env, role="network", task="Third agent.", budget={"daily_usd": (total + 1) / 1e6}, **CLAUDE)
    assert info.value.result["budget"]["used"] == total
    assert len(claude.requests) == 2


def test_token_limits_stop_free_local_models_too(store, claude_env):
    with pytest.raises(_agent.AgentError, match="budget stop: daily_tokens limit 100 tokens") as info:
        ask(store, task="Local but long.", backend="embedded", budget={"daily_tokens": 100})
    assert info.value.kind == "budget"
    assert ledger(store) == []


def _reserve_one(args):
    url, state_dir, barrier = args
    barrier.wait()
    store = _store.open_store(url=url, state_dir=state_dir)
    try:
        _budget.reserve(
            store,
            agent="security",
            backend="anthropic",
            model="m",
            lane="enterprise",
            estimate_micro=1000,
            estimate_tokens=10,
            limits={"call_usd": None, "agent_daily_usd": 3000, "daily_usd": None, "daily_tokens": None, "agent_daily_tokens": None},
        )
        return True
    except _budget.BudgetError:
        return False
    finally:
        store.close()


def test_concurrent_reservations_never_pass_the_limit_together(store_env, store):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(6)
        with ctx.Pool(6) as pool:
            outcomes = pool.map(_reserve_one, [(store_env.get("LOCUS_STATE_URL"), store_env["LOCUS_STATE_DIR"], barrier)] * 6)
    assert sorted(outcomes) == [False, False, False, True, True, True]
    assert _budget.spent(store)["micro_usd"] == 3000
