# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""JSON-schema validation: the one adapter over the ``jsonschema`` package.

Private API of the collection (may change without notice). Controller-only: the agents'
structured output, handover payloads, the guard's AI reviews and the policy file are all
validated here, so the draft rules, error choice and error wording are the same everywhere.

``jsonschema`` is imported on first use, so importing this module never needs it.
"""

from __future__ import annotations


class SchemaUnavailable(Exception):
    """The ``jsonschema`` package is not installed."""


class Problem:
    """One validation error: ``path`` (keys and list indexes), ``message``, and the raw error."""

    def __init__(self, error):
        self.path = tuple(error.absolute_path)
        self.message = error.message
        self.error = error

    @property
    def json_path(self):
        """``$.source.ref_tag``, ``$.findings[0]`` (``$`` for the top level)."""
        out = "$"
        for p in self.path:
            out += f"[{p}]" if isinstance(p, int) else f".{p}"
        return out

    def __str__(self):
        return f"{self.json_path}: {self.message}"


def _jsonschema():
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover - a dependency of the collection
        raise SchemaUnavailable("the Python package jsonschema is missing (pip install jsonschema >= 4.18)") from exc
    return jsonschema


def _validator(schema):
    # The draft a schema declares in $schema; 2020-12 when it declares none.
    jsonschema = _jsonschema()
    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)(schema)


def schema_problem(schema):
    """None when ``schema`` is a valid JSON Schema (of its declared draft), else a :class:`Problem`."""
    jsonschema = _jsonschema()
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        return Problem(exc)
    return None


def problems(instance, schema):
    """Every :class:`Problem` of ``instance`` against ``schema``, in path order."""
    errors = _validator(schema).iter_errors(instance)
    return [Problem(e) for e in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])]


def first_problem(instance, schema):
    """None when ``instance`` is valid, else the most relevant :class:`Problem` (jsonschema's best match)."""
    error = _jsonschema().exceptions.best_match(_validator(schema).iter_errors(instance))
    return None if error is None else Problem(error)
