"""The embedded backend's grammar keeps the caller's property order (llama-cpp-python's own
JSON-schema-to-GBNF converter, no model needed)."""

from __future__ import annotations

import re

from ansible_collections.locus.infra.plugins.plugin_utils.agents import _llm


def schema(*names):
    return {"type": "object", "required": list(names),
            "properties": {n: ({"enum": ["low", "high"]} if n == "risk" else {"type": "string"}) for n in names}}


def root_order(grammar):
    root = next(line for line in grammar._grammar.splitlines() if line.startswith("root ::="))
    return re.findall(r"([a-z]+)-kv", root)


def test_properties_are_written_in_the_callers_order():
    backend = _llm.EmbeddedBackend(n_threads=1)
    assert root_order(backend._grammar(schema("risk", "reason", "actions"))) == ["risk", "reason", "actions"]
    # the same properties in another order: another grammar, not the cached one
    assert root_order(backend._grammar(schema("reason", "risk", "actions"))) == ["reason", "risk", "actions"]
    assert backend._grammar(schema("risk", "reason", "actions")) is backend._grammar(schema("risk", "reason", "actions"))
