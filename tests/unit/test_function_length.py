"""No production function longer than MAX_LINES lines unless a comment says why (issue 17).

Every ``.py`` file under ``plugins/`` is parsed with :mod:`ast`; every function and method
(nested ones too) is measured from its ``def`` line to its last line, docstring, comments
and blank lines included. Classes are not measured: their methods are.

A longer function passes only when the line just above its ``def`` (above its decorators,
if any) is a comment of this form, giving the reason::

    # long: <why this function is better read in one piece>
    def render(...):

The reason must not be empty, and a ``# long:`` marker on a function that is not long
fails too (so markers do not outlive the reason they gave).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAX_LINES = 80
MARKER = "# long:"


def _functions(source):
    """``(name, first line, length, reason)`` of every function in ``source``; reason is None
    without a marker, '' with an empty one."""
    lines = source.splitlines()
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        top = min([node.lineno] + [d.lineno for d in node.decorator_list])
        above = lines[top - 2].strip() if top >= 2 else ""
        reason = above[len(MARKER):].strip() if above.startswith(MARKER) else None
        out.append((node.name, node.lineno, node.end_lineno - node.lineno + 1, reason))
    return out


def _problems(source, where):
    problems = []
    for name, line, length, reason in _functions(source):
        if length > MAX_LINES and not reason:
            what = "an empty '# long:' reason" if reason == "" else "no '# long: <reason>' comment above it"
            problems.append(f"{where}:{line}: {name} is {length} lines (> {MAX_LINES}) with {what}: "
                            "split it along its steps, or say why it reads better in one piece")
        elif length <= MAX_LINES and reason is not None:
            problems.append(f"{where}:{line}: {name} is {length} lines but carries a '# long:' marker: remove it")
    return problems


def _production_files():
    return sorted(p for p in (ROOT / "plugins").rglob("*.py") if "__pycache__" not in p.parts)


def test_production_functions_are_short_or_say_why():
    files = _production_files()
    assert len(files) > 50, f"found only {len(files)} files under {ROOT / 'plugins'}"
    problems = []
    for path in files:
        problems += _problems(path.read_text(encoding="utf-8"), path.relative_to(ROOT))
    assert not problems, "\n".join(problems)


def _function(length, above=None, decorated=False):
    body = [f"    x{i} = {i}" for i in range(length - 2)]
    head = (["@staticmethod"] if decorated else []) + ["def f():", '    """doc."""']
    return "\n".join(([above] if above is not None else []) + head + body) + "\n"


@pytest.mark.parametrize(("source", "expected"), [
    (_function(MAX_LINES), []),
    (_function(MAX_LINES + 1), ["f is 81 lines (> 80) with no '# long: <reason>' comment"]),
    (_function(MAX_LINES + 1, "# long: one table, read top to bottom"), []),
    (_function(MAX_LINES + 1, "# long: one table", decorated=True), []),
    (_function(MAX_LINES + 1, "# long:"), ["f is 81 lines (> 80) with an empty '# long:' reason"]),
    (_function(MAX_LINES + 1, "# a comment that gives no marker"), ["f is 81 lines (> 80) with no"]),
    (_function(MAX_LINES, "# long: not any more"), ["f is 80 lines but carries a '# long:' marker"]),
])
def test_the_rule_itself(source, expected):
    problems = _problems(source, "x.py")
    assert len(problems) == len(expected), problems
    for problem, text in zip(problems, expected, strict=True):
        assert text in problem
