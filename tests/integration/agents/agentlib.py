"""Helpers of the agent tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json

from ansible_collections.locus.infra.plugins.plugin_utils.agents import _agent

REVIEW_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["risk", "findings", "score"],
    "properties": {
        "risk": {"enum": ["low", "medium", "high", "critical"]},
        "findings": {"type": "array", "items": {"type": "string", "maxLength": 200}, "minItems": 1, "maxItems": 3},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
    },
}
FACTS = {"site": "example.org", "tls_protocols": ["TLSv1.0", "TLSv1.2"], "hsts": False, "listen": "0.0.0.0:443"}


def ask(store, env=None, check_mode=False, **options):
    """One agent call; ``options`` as the module takes them."""
    options.setdefault("role", "security")
    return _agent.run_agent(options, store, check_mode=check_mode, job="pytest", env=env if env is not None else {})


def ledger(store):
    rows = store.query(
        "SELECT state, estimate_micro_usd, input_tokens, output_tokens, cost_micro_usd, tag FROM locus_agent_ledger ORDER BY ts"
    )
    return [dict(zip(("state", "estimate", "input", "output", "cost", "tag"), r, strict=True)) for r in rows]


def agent_records(store):
    return [(r["tag"], json.loads(r["data"])) for r in store.iter_records() if "-AGENT" in r["tag"]]
