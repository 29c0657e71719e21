"""ansible-doc for every plugin and role found in the tree, and action plugins' ARGUMENT_SPEC
against their module file's DOCUMENTATION (the options users read are the options checked)."""

from __future__ import annotations

import importlib
import json
import subprocess

import pytest

from ansible_collections.locus.infra.plugins.plugin_utils._action import STATE_STORE_SPEC, LocusAction
from locus_testlib import REPO, VENV_BIN

PREFIX = "ansible_collections.locus.infra.plugins"
# ansible-doc plugin type -> the folder under plugins/ that holds them
PLUGIN_DIRS = {"module": "modules", "lookup": "lookup", "callback": "callback", "inventory": "inventory"}


def _names(folder):
    return sorted(p.stem for p in (REPO / "plugins" / folder).glob("*.py") if p.stem != "__init__")


def _filters():
    names = []
    for stem in _names("filter"):
        names.extend(importlib.import_module(f"{PREFIX}.filter.{stem}").FilterModule().filters())
    return sorted(names)


def in_tree():
    """``{ansible-doc type: [names]}`` for everything the collection ships, read from the tree."""
    found = {kind: _names(folder) for kind, folder in PLUGIN_DIRS.items()}
    found["filter"] = _filters()
    found["role"] = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())
    return found


_DOCS = {}


def docs(kind):
    """ansible-doc --json for every plugin of ``kind`` in the tree (one run per kind)."""
    if kind not in _DOCS:
        names = [f"locus.infra.{n}" for n in in_tree()[kind]]
        proc = subprocess.run([str(VENV_BIN / "ansible-doc"), "-t", kind, "--json", *names],
                              capture_output=True, text=True, cwd=REPO, check=False)
        assert proc.returncode == 0, proc.stderr
        _DOCS[kind] = (json.loads(proc.stdout), proc.stderr)
    return _DOCS[kind]


def test_the_tree_is_enumerated():
    found = in_tree()
    # a floor, so that an enumeration that silently finds nothing fails
    assert len(found["module"]) >= 20 and {"ref_tag", "agent", "proxmox_vm", "nginx_tree"} <= set(found["module"])
    assert {"audit", "changes"} <= set(found["callback"]) and {"agent", "ref_tag"} <= set(found["lookup"])
    assert "netbox" in found["inventory"] and "nginx_sites" in found["filter"]
    assert set(found["role"]) == {p.name for p in (REPO / "roles").iterdir() if p.is_dir()}  # every role has a spec


@pytest.mark.parametrize("kind", [*PLUGIN_DIRS, "filter", "role"])
def test_ansible_doc_works_for_every_plugin(kind):
    out, stderr = docs(kind)
    assert "WARNING" not in stderr and "ERROR" not in stderr, stderr
    for name in in_tree()[kind]:
        fqcn = f"locus.infra.{name}"
        assert fqcn in out, f"ansible-doc -t {kind} {fqcn}: no documentation"
        if kind == "role":
            main = out[fqcn]["entry_points"]["main"]
            assert main.get("short_description") and main.get("options"), fqcn
            continue
        doc = out[fqcn]["doc"]
        assert doc.get("short_description") and doc.get("description"), fqcn
        assert doc.get("options") or kind in ("filter", "callback"), f"{fqcn}: no options documented"
        if kind in ("module", "lookup", "filter"):
            assert out[fqcn].get("examples"), f"{fqcn}: no EXAMPLES"
            assert out[fqcn].get("return") is not None, f"{fqcn}: no RETURN"


def _action_plugins():
    """``{name: ActionModule}`` for the action plugins that validate their own ARGUMENT_SPEC."""
    out = {}
    for stem in _names("action"):
        cls = importlib.import_module(f"{PREFIX}.action.{stem}").ActionModule
        if issubclass(cls, LocusAction):
            out[stem] = cls
    return out


_COMPARED = ("type", "required", "default", "choices", "elements", "aliases")
_IMPLIED = {"type": "str", "required": False, "default": None, "choices": None, "elements": None, "aliases": None}


def _drift(spec, documented, where):
    """Differences between an argument spec and documented options, one line each."""
    problems = []
    for name in sorted(set(spec) - set(documented)):
        problems.append(f"{where}{name}: in ARGUMENT_SPEC but not documented")
    for name in sorted(set(documented) - set(spec)):
        problems.append(f"{where}{name}: documented but not in ARGUMENT_SPEC")
    for name in sorted(set(spec) & set(documented)):
        s, d = spec[name], documented[name]
        for key in _COMPARED:
            sv, dv = s.get(key, _IMPLIED[key]), d.get(key, _IMPLIED[key])
            if key in ("choices", "aliases") and sv is not None and dv is not None:
                sv, dv = sorted(map(str, sv)), sorted(map(str, dv))
            if sv != dv and not (key == "default" and sv in (None, [], {}) and dv in (None, [], {}) and sv == dv):
                problems.append(f"{where}{name}.{key}: ARGUMENT_SPEC says {sv!r}, the documentation {dv!r}")
        if s.get("options") or d.get("suboptions"):
            problems.extend(_drift(s.get("options") or {}, d.get("suboptions") or {}, f"{where}{name}."))
    return problems


def test_every_action_plugin_with_its_own_spec_is_checked():
    actions = _action_plugins()
    assert len(actions) >= 12 and {"agent", "ref_tag", "guard", "ops_report"} <= set(actions)
    assert set(actions) <= set(in_tree()["module"])  # each one has a module file with its documentation


@pytest.mark.parametrize("name", sorted(_action_plugins()))
def test_action_argument_spec_matches_the_module_documentation(name):
    out, _stderr = docs("module")
    documented = out[f"locus.infra.{name}"]["doc"]["options"]
    spec = {**_action_plugins()[name].ARGUMENT_SPEC, **STATE_STORE_SPEC}
    assert _drift(spec, documented, f"{name}: ") == []
