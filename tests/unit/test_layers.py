"""The folders say where code runs (docs/architecture.md): checked on the source, by import graph."""

from __future__ import annotations

import ast
import re

from locus_testlib import REPO

PLUGINS = REPO / "plugins"
OURS = "ansible_collections.locus.infra.plugins."
# Imports inside a function, each for a reason: Store.verify asks the guard whether its tables agree
# with the trail, and the guard is built on the store (a module-level import would be a cycle); the
# `locus` CLI loads the MCP tools (and through them Ansible's vault code, which creates ~/.ansible)
# only when `locus mcp` runs.
FUNCTION_LEVEL_ALLOWED = {("plugin_utils/store/_store.py", "plugin_utils.guard._guard"), ("plugin_utils/mcp/_mcp.py", "plugin_utils.mcp._mcp_tools")}


# SQL in a string literal (f-string parts included): the statements and the engines' own commands.
SQL = re.compile(r"\b(?:SELECT\b[\s\S]*?\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(?:TABLE|(?:UNIQUE\s+)?INDEX|"
                 r"TRIGGER|FUNCTION)|DROP\s+(?:TABLE|INDEX)|ALTER\s+TABLE|PRAGMA|BEGIN\s+IMMEDIATE)\b", re.IGNORECASE)
STORE = "plugin_utils/store/"


def _imports(path):
    """(module below plugins., inside a function?) for every import of this collection in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inner = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner |= {id(n) for n in ast.walk(fn)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; use {OURS}...")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(OURS):
            base = node.module[len(OURS):]
            for alias in node.names:
                name = f"{base}.{alias.name}"
                is_module = (PLUGINS / (name.replace(".", "/") + ".py")).is_file()
                found.append((name if is_module else base, id(node) in inner))
        elif isinstance(node, ast.Import):
            found += [(a.name[len(OURS):], id(node) in inner) for a in node.names if a.name.startswith(OURS)]
    return found


def _closure(starts):
    """The modules loaded with ``starts`` (module-level imports)."""
    seen, todo = set(), list(starts)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = PLUGINS / (mod.replace(".", "/") + ".py")
        if path.is_file():
            todo += [m for m, inner in _imports(path) if not inner]
    return seen


def _target_modules():
    return sorted(p for p in (PLUGINS / "modules").glob("*.py") if "AnsibleModule(" in p.read_text(encoding="utf-8"))


def test_target_modules_and_module_utils_import_no_controller_code():
    """What Ansible ships to a host (a module and the module_utils it imports) must not need plugin_utils."""
    sources = _target_modules() + sorted((PLUGINS / "module_utils").rglob("*.py"))
    assert len(sources) > 15
    for path in sources:
        bad = [m for m, _inner in _imports(path) if not m.startswith("module_utils.")]
        assert not bad, f"{path.relative_to(REPO)} runs on targets but imports {bad}"


def test_module_utils_holds_only_what_target_modules_or_filters_use():
    """Controller-only code (used only by action/callback/lookup/inventory plugins) belongs in plugin_utils."""
    users = [*_target_modules(), *sorted((PLUGINS / "filter").glob("*.py"))]
    reached = _closure(m for p in users for m, _inner in _imports(p))  # (no function-level imports there, see below)
    for path in sorted((PLUGINS / "module_utils").rglob("*.py")):
        mod = "module_utils." + path.relative_to(PLUGINS / "module_utils").with_suffix("").as_posix().replace("/", ".")
        assert mod in reached, f"{path.relative_to(REPO)} is used by no target module or filter: move it to plugin_utils/"


def test_documentation_shells_have_an_action_plugin_and_no_code():
    shells = sorted(set((PLUGINS / "modules").glob("*.py")) - set(_target_modules()))
    assert "agent.py" in {p.name for p in shells} and "guard.py" in {p.name for p in shells}
    for path in shells:
        assert (PLUGINS / "action" / path.name).is_file(), f"{path.relative_to(REPO)} documents an action plugin that does not exist"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        code = [n for n in tree.body if not isinstance(n, (ast.Assign, ast.Expr, ast.ImportFrom))]
        assert not code and not _imports(path), f"{path.relative_to(REPO)} is a documentation shell and holds code"


def test_no_function_level_imports_of_the_collection():
    """Imports at module level (the halt check included): dependencies visible at the top, cycles impossible to hide."""
    found = set()
    for path in sorted(PLUGINS.rglob("*.py")):
        rel = path.relative_to(PLUGINS).as_posix()
        found |= {(rel, m) for m, inner in _imports(path) if inner}
    assert found == FUNCTION_LEVEL_ALLOWED


def test_the_halt_check_is_imported_by_the_agents_the_action_plugins_and_the_guard():
    halt = "plugin_utils.guard._halt"
    for rel in ("plugin_utils/agents/_agent.py", "plugin_utils/_action.py", "plugin_utils/guard/_guard.py"):
        assert (halt, False) in _imports(PLUGINS / rel), rel
    # and it needs only the store (whose writers wait for each other with _retry.poll): checking the
    # halt does not load the guard's rules, policy or the agents
    assert _closure([halt]) - {halt} <= {"plugin_utils.store._store", "plugin_utils.store._audit", "plugin_utils.store._refs",
                                         "plugin_utils.store._guard_state", "plugin_utils._redact", "module_utils._retry"}


def _sql_literals(path):
    """``(line, statement start)`` of every string literal in ``path`` that holds SQL."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):  # f"SELECT {columns} FROM ...": the constant parts, joined
            text = "?".join(v.value for v in node.values if isinstance(v, ast.Constant))
        else:
            continue
        match = SQL.search(text)
        if match:
            found.append((node.lineno, match.group(0)[:40]))
    return found


def test_only_the_store_writes_sql():
    """Every SQL statement is a named method of plugin_utils/store/ (issue 17): the guard, agents, ops and
    lookups call those methods, so the schema, both engines' dialects and the transactions live in one place."""
    in_store, outside = 0, []
    for path in sorted(PLUGINS.rglob("*.py")):
        rel = path.relative_to(PLUGINS).as_posix()
        found = _sql_literals(path)
        if rel.startswith(STORE):
            in_store += len(found)
        else:
            outside += [f"{rel}:{line}: {sql!r}" for line, sql in found]
            drivers = [m for m, _inner in _imports_any(path) if m.split(".")[0] in ("sqlite3", "psycopg", "psycopg2")]
            assert not drivers, f"{rel} imports the database driver {drivers}: only plugin_utils/store/ talks to the database"
    assert in_store > 40  # the scanner sees the store's own SQL (migrations, records, ledger, guard tables)
    assert not outside, "SQL outside plugin_utils/store/ (make it a named store method):\n" + "\n".join(outside)


def _imports_any(path):
    """(module, line) of every import in ``path``, of any package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, node.lineno))
    return found
