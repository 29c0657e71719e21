"""The built tarball, installed elsewhere and used as collection users use it (see conftest.py)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import tarfile

import pytest
import yaml
from conftest import TARBALL_NAME, VERSION, clean_env, run

from locus_testlib import REPO, VENV_BIN

# The nspawn lab is development tooling of the checkout (galaxy.yml's manifest leaves it out, docs/lab.md).
LAB = ("roles/lab/", "plugins/modules/lab_process.py", "plugins/action/lab_process.py", "playbooks/lab_", "playbooks/demo_lab.yml")
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if p.is_dir() and f"roles/{p.name}/" not in LAB)


def tar_files(path):
    with tarfile.open(path) as tar:
        return {m.name for m in tar.getmembers() if not m.isdir()}


def git_files(root=REPO):
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root, check=True,
                         capture_output=True, text=True).stdout
    return set(out.splitlines())


def test_the_tarball_holds_the_collection_and_nothing_of_the_development_tree(tarball):
    files = tar_files(tarball) - {"MANIFEST.json", "FILES.json"}
    stray = files - git_files()
    assert not stray, f"the tarball ships files that are not part of the source tree: {sorted(stray)[:20]}"
    tops = {f.split("/", 1)[0] for f in files}
    assert not tops & {"tests", "molecule", "bench", ".venv", "collections", "build", ".ci", "Makefile", "pyproject.toml",
                       "requirements.lock", "galaxy.yml"}, tops
    for required in ("LICENSE", "README.md", "CHANGELOG.rst", "requirements.txt", "bindep.txt", "execution-environment.yml",
                     "meta/runtime.yml", "meta/execution-environment.yml", "meta/ee-requirements.txt", "meta/ee-bindep.txt",
                     "docs/docsite/links.yml", "data/guard/policy.yml", "playbooks/install_cli.yml", "playbooks/files/locus_launcher.py",
                     "requirements-embedded.txt", "requirements-mcp.txt", "changelogs/changelog.yaml", "awx/configure.yml", "awx/vars.yml", "docs/awx.md"):
        assert required in files, f"{required} is missing from the tarball"
    for role in ROLES:  # Galaxy's importer refuses a collection whose roles have no README
        assert f"roles/{role}/README.md" in files, f"role {role} has no README.md"
        assert f"roles/{role}/meta/argument_specs.yml" in files


def test_the_lab_stays_in_the_checkout_and_nothing_shipped_needs_it(tarball):
    files = tar_files(tarball)
    lab = sorted(f for f in git_files() if f.startswith(LAB))
    assert "roles/lab/tasks/main.yml" in lab and "plugins/modules/lab_process.py" in lab, lab  # the prefixes still name the lab
    assert not set(lab) & files, sorted(set(lab) & files)
    with tarfile.open(tarball) as tar:  # a shipped playbook, role or plugin that used the lab would fail for users
        for m in tar.getmembers():
            if m.isfile() and m.name.startswith(("playbooks/", "roles/", "plugins/", "meta/")):
                text = tar.extractfile(m).read().decode("utf-8", errors="replace")
                for needle in ("lab_process", "locus.infra.lab\n", "role: lab\n", "lab_up.yml", "lab_down.yml", "lab_app.yml",
                               "lab_ollama.yml", "demo_lab.yml"):
                    assert needle not in text, f"{m.name} ships a use of the development lab ({needle.strip()})"


def test_by_products_in_the_checkout_never_reach_the_tarball(tmp_path):
    """A copy of the tree with what tests, builds and tools leave behind: the allow-list keeps it all out."""
    tree = tmp_path / "tree"
    for name in git_files():
        src = REPO / name
        if src.is_file() and not src.is_symlink():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / name)
    planted = {
        "collections/ansible_collections/locus/infra": "../../..",  # pytest-ansible's symlink, the failure
        ".venv/bin/python": None, ".ruff_cache/0.1/x": None, ".pytest_cache/v/x": None, ".hypothesis/examples/x": None,
        "build/lib/x.py": None, "locus_infra.egg-info/PKG-INFO": None, "plugins/modules/__pycache__/agent.cpython-311.pyc": None,
        "tests/output/junit.xml": None, ".locus-state/locus.db": None, f"locus-infra-{VERSION}.tar.gz": None,
        "roles/nginx/tasks/main.yml.orig": None, "roles/nginx/tasks/.main.yml.swp": None,
    }
    for rel, link in planted.items():
        p = tree / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if link:
            p.symlink_to(link)
        else:
            p.write_text("by-product\n")
    run([VENV_BIN / "ansible-galaxy", "collection", "build", "--output-path", tmp_path / "out"], cwd=tree)
    files = tar_files(tmp_path / "out" / TARBALL_NAME)
    planted_tops = {rel.split("/", 1)[0] for rel in planted if "/" in rel and not rel.startswith(("plugins/", "roles/"))}
    leaked = {f for f in files if f.split("/", 1)[0] in planted_tops or f in planted}
    leaked |= {f for f in files if f.endswith((".pyc", ".orig", ".swp", ".tar.gz"))}
    assert not leaked, sorted(leaked)
    assert "plugins/modules/agent.py" in files and "roles/nginx/tasks/main.yml" in files


def test_galaxy_metadata_is_real_and_depends_only_on_what_runs(tarball):
    with tarfile.open(tarball) as tar:
        info = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
    assert info["license"] == ["GPL-3.0-or-later"]
    for key in ("repository", "documentation", "homepage", "issues"):
        assert not info.get(key) or "example" not in info[key], f"{key}: placeholder URL {info[key]}"
    used = set()
    for path in [*REPO.glob("roles/**/*.yml"), *REPO.glob("roles/**/*.j2"), *REPO.glob("playbooks/**/*.yml")]:
        text = path.read_text()
        used |= {c for c in ("ansible.posix", "ansible.utils", "community.general", "community.proxmox", "netbox.netbox",
                             "community.crypto", "kubernetes.core") if f"{c}." in text}
    assert set(info["dependencies"]) == used, f"galaxy.yml dependencies {sorted(info['dependencies'])} != used {sorted(used)}"
    assert (REPO / "LICENSE").read_text().startswith("                    GNU GENERAL PUBLIC LICENSE\n                       Version 3")


def test_ansible_doc_lists_every_plugin_of_the_installed_collection(user):
    proc = user("ansible-doc", "-l", "locus.infra", "--json")
    listed = set(json.loads(proc.stdout))
    modules = {f"locus.infra.{p.stem}" for p in (REPO / "plugins" / "modules").glob("*.py") if f"plugins/modules/{p.name}" not in LAB}
    assert modules <= listed, sorted(modules - listed)
    for kind, pattern in (("callback", "*.py"), ("lookup", "*.py"), ("inventory", "*.py"), ("filter", "*.yml")):
        names = {f"locus.infra.{p.stem}" for p in (REPO / "plugins" / kind).glob(pattern) if p.stem != "__init__"}
        got = set(json.loads(user("ansible-doc", "-t", kind, "-l", "locus.infra", "--json").stdout))
        assert names <= got, (kind, sorted(names - got))
    doc = json.loads(user("ansible-doc", "--json", "locus.infra.agent").stdout)["locus.infra.agent"]["doc"]
    assert doc["collection"] == "locus.infra" and any("jsonschema" in r for r in doc["requirements"])


@pytest.fixture(scope="session")
def launcher(user):
    proc = user("ansible-playbook", "locus.infra.install_cli", "-e", f"locus_cli_dir={user.bin}")
    assert "changed=1" in proc.stdout or "changed=2" in proc.stdout, proc.stdout
    again = user("ansible-playbook", "locus.infra.install_cli", "-e", f"locus_cli_dir={user.bin}")
    assert "changed=0" in again.stdout, again.stdout  # idempotent
    path = user.bin / "locus"
    assert path.read_text().startswith(f"#!{user.venv / 'bin' / 'python'}\n")
    return path


def test_a_play_with_ref_tag_the_audit_callback_and_the_guard_then_locus_approves_and_verifies(user, launcher, tmp_path):
    """The whole user path: a REF-tag, every task audited, a guard decision, `approve_command`
    pasted into a shell as it is, the approved re-run, then `locus audit verify`."""
    state, result = tmp_path / "state", tmp_path / "result.json"
    policy = tmp_path / "my policy.yml"  # a space: the pasted command must quote it
    policy.write_text("version: 1\napproval:\n  lifetime: 30m\n")
    play = REPO / "tests" / "ship" / "playbooks" / "installed.yml"
    env = {"ANSIBLE_CALLBACKS_ENABLED": "locus.infra.audit", "LOCUS_STATE_DIR": str(state)}
    extra = ["-e", json.dumps({"policy_file": str(policy), "result_file": str(result)})]
    user("ansible-playbook", play, *extra, **env)
    first = json.loads(result.read_text())
    assert first["tag"].startswith("LOCUS-VALIDATE") and first["decision"] == "needs_approval"
    cmd = first["approve_command"]
    assert cmd.startswith("locus --state-dir ") and f"approve {first['decision_tag']}" in cmd and "--policy" in cmd

    # pasted as it is, in a shell with the launcher on PATH and no LOCUS_* variables
    approved = user("bash", "-c", cmd)
    token = approved.stdout.strip().splitlines()[-1]
    assert token.startswith("locus1."), approved.stdout
    user("ansible-playbook", play, *extra, "-e", f"approval_token={token}", **env)
    second = json.loads(result.read_text())
    assert second["decision"] == "allow" and second["approval"]["method"] == "token", second

    verify = user(str(launcher), "--state-dir", str(state), "audit", "verify")
    assert verify.stdout.startswith("OK: ") and verify.returncode == 0
    shown = user(str(launcher), "--state-dir", str(state), "audit", "show", "--last", "200", "--json").stdout.splitlines()
    records = [json.loads(line) for line in shown]
    tasks = {r["data"].get("task") for r in records if r["tag"].startswith("LOCUS-TASK")}
    assert {"Allocate a REF-tag", "Ask the guard about a service bound to every address"} <= tasks, "the audit callback did not record them"

    # the launcher reads that very store: a record changed behind its back is caught
    db = sqlite3.connect(state / "locus.db")
    db.execute("DROP TRIGGER locus_audit_no_update")
    db.execute("UPDATE locus_audit SET subject = 'forged' WHERE position = 2")
    db.commit()
    db.close()
    failed = user(str(launcher), "--state-dir", str(state), "audit", "verify", check=False)
    assert failed.returncode == 1 and "FAILED" in failed.stdout


def test_the_launcher_uses_a_postgresql_store_through_psycopg(user, launcher, pg_cluster):
    url = pg_cluster.create_database()
    tag = user(str(launcher), "tag", "TASK", "from the installed collection", LOCUS_STATE_URL=url).stdout.strip()
    assert tag.startswith("LOCUS-TASK")
    verify = user(str(launcher), "audit", "verify", LOCUS_STATE_URL=url)
    assert f"last {tag}" in verify.stdout


def test_the_launcher_exits_2_with_one_clear_line_when_it_cannot_run(user, launcher, tmp_path):
    empty = tmp_path / "empty"
    (empty / "ansible_collections").mkdir(parents=True)
    proc = user(str(launcher), "audit", "verify", check=False, ANSIBLE_COLLECTIONS_PATH=str(empty))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "locus.infra is not installed in Ansible's collection search path" in proc.stderr and str(empty) in proc.stderr
    # a Python without Ansible (the system one, or a launcher copied elsewhere)
    bare = tmp_path / "bare"
    run([VENV_BIN / "uv", "venv", "-q", bare])
    proc = user(str(bare / "bin" / "python"), str(launcher), "audit", "verify", check=False)
    assert proc.returncode == 2 and "Ansible (ansible-core) cannot be imported" in proc.stderr


def test_locus_mcp_from_the_installed_collection_after_installing_its_extra(user, launcher, tmp_path):
    """Without the optional SDK: one line naming the file to install. With requirements-mcp.txt of the
    installed collection: a real MCP session (the SDK's client of this checkout) with the launcher."""
    import anyio
    import mcp_types
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    state = tmp_path / "state"
    missing = user(str(launcher), "--state-dir", str(state), "mcp", check=False)
    assert missing.returncode == 2 and "requirements-mcp.txt" in missing.stderr, missing.stderr
    extra = user.collections / "ansible_collections" / "locus" / "infra" / "requirements-mcp.txt"
    run([VENV_BIN / "uv", "pip", "install", "-q", "--native-tls", "--python", user.venv / "bin" / "python", "-r", extra], env=clean_env())

    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    web1: {ansible_host: 127.0.0.1, admin_password: PlantedShip31}\n")
    env = clean_env(HOME=str(user.home), PATH=f"{user.bin}:{user.venv / 'bin'}:/usr/bin:/bin", ANSIBLE_COLLECTIONS_PATH=str(user.collections))

    async def talk():
        server = StdioServerParameters(command=str(launcher), args=["--state-dir", str(state), "mcp", "-i", str(inventory)],
                                       env=env, cwd=str(user.work))
        async with Client(server, client_info=mcp_types.Implementation(name="ship-test", version="1")) as client:
            return [(await client.call_tool(name, args)).structured_content
                    for name, args in (("inventory_host", {"name": "web1"}), ("audit_verify", {}))]

    host, verify = anyio.run(talk)
    assert host["vars"] == {"ansible_host": "127.0.0.1", "admin_password": "********"}
    assert verify["ok"] and verify["count"] == 1 and verify["last_tag"] == host["ref_tag"]
    shown = user(str(launcher), "--state-dir", str(state), "audit", "show", "--tag", host["ref_tag"]).stdout
    assert '"ship-test"' in shown and "PlantedShip31" not in shown


def test_changelog_is_generated_from_the_fragments_and_regenerable(tmp_path):
    """CHANGELOG.rst matches changelogs/changelog.yaml, fragments lint, and a new fragment is picked up by `make changelog`."""
    tree = tmp_path / "ansible_collections" / "locus" / "infra"  # antsibull-changelog asks ansible-doc for the plugins
    env = clean_env(HOME=str(tmp_path), PATH=f"{VENV_BIN}:/usr/bin:/bin", ANSIBLE_COLLECTIONS_PATH=str(tmp_path),
                    ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false")
    for name in git_files():
        src = REPO / name
        if src.is_file() and (name.startswith(("changelogs/", "plugins/", "roles/")) or name in ("galaxy.yml", "CHANGELOG.rst")):
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / name)
    cl = VENV_BIN / "antsibull-changelog"
    run([cl, "lint"], cwd=tree, env=env)
    committed = (tree / "CHANGELOG.rst").read_text()
    assert f"v{VERSION}\n" in committed
    run([cl, "generate"], cwd=tree, env=env)
    assert (tree / "CHANGELOG.rst").read_text() == committed, "CHANGELOG.rst is not what changelogs/changelog.yaml renders"
    (tree / "changelogs" / "fragments" / "zz-later.yml").write_text("---\nminor_changes:\n  - A change that arrived after the first render.\n")
    run([cl, "lint"], cwd=tree, env=env)
    run([cl, "release"], cwd=tree, env=env)  # what `make changelog` runs
    assert "A change that arrived after the first render." in (tree / "CHANGELOG.rst").read_text()
    released = yaml.safe_load((tree / "changelogs" / "changelog.yaml").read_text())["releases"][VERSION]
    assert "zz-later.yml" in released["fragments"]
