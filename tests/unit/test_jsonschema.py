"""The one JSON-schema adapter (plugin_utils._jsonschema): drafts, error choice, paths."""

from __future__ import annotations

from ansible_collections.locus.infra.plugins.plugin_utils import _jsonschema

SCHEMA = {
    "type": "object",
    "required": ["risk", "findings"],
    "additionalProperties": False,
    "properties": {
        "risk": {"enum": ["low", "high"]},
        "findings": {"type": "array", "items": {"type": "string"}},
    },
}


def test_valid_instances_have_no_problem():
    assert _jsonschema.first_problem({"risk": "low", "findings": []}, SCHEMA) is None
    assert _jsonschema.problems({"risk": "low", "findings": ["x"]}, SCHEMA) == []


def test_problems_name_the_path_in_json_path_form():
    problem = _jsonschema.first_problem({"risk": "low", "findings": ["ok", 3]}, SCHEMA)
    assert problem.path == ("findings", 1)
    assert problem.json_path == "$.findings[1]"
    assert str(problem) == "$.findings[1]: 3 is not of type 'string'"


def test_problems_are_all_listed_in_path_order():
    found = _jsonschema.problems({"risk": "medium", "findings": [1], "extra": True}, SCHEMA)
    assert [p.json_path for p in found] == ["$", "$.findings[0]", "$.risk"]
    assert "'extra' was unexpected" in found[0].message
    assert found[2].error.validator == "enum"  # the raw error stays reachable for custom wording


def test_a_top_level_problem_has_the_root_path():
    problem = _jsonschema.first_problem("not an object", SCHEMA)
    assert problem.path == () and problem.json_path == "$"


def test_the_schema_declared_draft_is_used():
    # draft-04 exclusiveMaximum is a boolean; under 2020-12 that would be an invalid schema
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "maximum": 5, "exclusiveMaximum": True}
    assert _jsonschema.schema_problem(draft4) is None
    assert _jsonschema.first_problem(5, draft4) is not None and _jsonschema.first_problem(4, draft4) is None


def test_without_a_declared_draft_2020_12_applies():
    schema = {"prefixItems": [{"type": "integer"}], "items": False}
    assert _jsonschema.first_problem([1], schema) is None
    assert _jsonschema.first_problem([1, 2], schema) is not None


def test_invalid_schemas_are_reported_with_their_path():
    problem = _jsonschema.schema_problem({"type": "object", "properties": {"risk": {"type": "colour"}}})
    assert problem is not None and problem.json_path == "$.properties.risk.type"
    assert "'colour' is not valid" in problem.message
