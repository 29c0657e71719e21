"""awx/configure.yml (AWX as code) against the AWX API double: objects, links, idempotence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from doubles.awx_api import AWXDouble

from locus_testlib import REPO

VENV_BIN = Path(sys.executable).parent
SCM_URL = "https://git.example.com/ops/locus-infra.git"
SECRETS = {
    "locus_awx_credentials": [
        {"name": "locus store", "type": "locus store",
         "inputs": {"state_url": "postgresql://locus:pg-secret-1@db.example.com:5432/locus", "approval_key": "k" * 32}},
        {"name": "locus NetBox", "type": "locus NetBox", "inputs": {"api": "https://netbox.example.com", "token": "nbt_abc.secret-2"}},
        {"name": "locus Anthropic", "type": "locus Anthropic", "inputs": {"api_key": "sk-ant-api03-secret-3"}},
        {"name": "locus Ollama", "type": "locus Ollama", "inputs": {"host": "https://ollama.example.com"}},
        {"name": "lab ssh", "type": "Machine", "inputs": {"username": "root", "ssh_key_data": "-----BEGIN OPENSSH PRIVATE KEY-----x"}},
    ]
}


class _VarsLoader(yaml.SafeLoader):
    """awx/vars.yml as Ansible reads it: ``!unsafe`` marks AWX's own templates."""


_VarsLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def awx_vars():
    return yaml.load((REPO / "awx" / "vars.yml").read_text(), Loader=_VarsLoader)  # noqa: S506 - a SafeLoader subclass


@pytest.fixture(scope="module")
def awx():
    with AWXDouble(scm_sources={SCM_URL: str(REPO)}) as double:
        yield double


def controller_env(awx):
    env = dict(os.environ, CONTROLLER_HOST=awx.url, CONTROLLER_USERNAME=awx.username, CONTROLLER_PASSWORD=awx.password,
               CONTROLLER_VERIFY_SSL="false", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    return env


def configure(awx, tmp_path):
    secrets = tmp_path / "secrets.yml"
    secrets.write_text(yaml.safe_dump(SECRETS))
    proc = subprocess.run(
        [VENV_BIN / "ansible-playbook", REPO / "awx" / "configure.yml", "-e", f"locus_awx_scm_url={SCM_URL}", "-e", f"@{secrets}"],
        env=controller_env(awx) | {"LOCUS_STATE_DIR": str(tmp_path / "state")}, capture_output=True, text=True, timeout=900, check=False)
    return proc


def recap(stdout):
    line = next(line for line in stdout.splitlines() if line.startswith("localhost"))
    return {k: int(v) for k, v in (part.split("=") for part in line.split()[2:])}


@pytest.fixture(scope="module")
def configured(awx, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("awx")
    first = configure(awx, tmp)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    second = configure(awx, tmp)
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
    return first, second


def one(awx, resource, **fields):
    found = awx.find(resource, **fields)
    assert len(found) == 1, (resource, fields, found)
    return found[0]


def test_a_second_run_changes_nothing(configured):
    first, second = configured
    assert recap(first.stdout)["changed"] >= 10  # every task (a loop counts once)
    assert "Failed to release token" not in first.stdout + first.stderr  # the module logged out cleanly
    assert recap(second.stdout)["changed"] == 0, second.stdout[-4000:]


def test_credential_types_inject_the_environment_the_plugins_read(awx, configured):
    want = {"locus Anthropic": {"ANTHROPIC_API_KEY"}, "locus Ollama": {"OLLAMA_HOST", "OLLAMA_API_KEY"},
            "locus NetBox": {"NETBOX_API", "NETBOX_TOKEN"},
            "locus Proxmox": {"PROXMOX_HOST", "PROXMOX_TOKEN_ID", "PROXMOX_TOKEN_SECRET"},
            "locus store": {"LOCUS_STATE_URL", "LOCUS_APPROVAL_KEY"}}
    for name, env in want.items():
        ctype = one(awx, "credential_types", name=name)
        assert ctype["kind"] == "cloud" and set(ctype["injectors"]["env"]) == env
        fields = {f["id"]: f for f in ctype["inputs"]["fields"]}
        for var, tmpl in ctype["injectors"]["env"].items():
            assert tmpl.startswith("{{ ") and tmpl.split()[1] in fields, (var, tmpl)  # AWX's template, not rendered by Ansible
    store = {f["id"]: f for f in one(awx, "credential_types", name="locus store")["inputs"]["fields"]}
    assert store["state_url"]["secret"] is True and store["approval_key"]["secret"] is True
    # the env variables the plugins read are the ones documented for them
    for var in ("NETBOX_API", "NETBOX_TOKEN", "PROXMOX_TOKEN_SECRET", "LOCUS_STATE_URL", "ANTHROPIC_API_KEY", "OLLAMA_HOST"):
        assert any(var in p.read_text() for p in (REPO / "plugins").rglob("*.py")), var


def test_secrets_reach_awx_but_not_the_output(awx, configured):
    first, second = configured
    store = one(awx, "credentials", name="locus store")
    assert store["inputs"]["state_url"].startswith("postgresql://locus:pg-secret-1@")  # stored as given
    for secret in ("pg-secret-1", "nbt_abc.secret-2", "sk-ant-api03-secret-3", "OPENSSH PRIVATE KEY"):
        assert secret not in first.stdout + first.stderr + second.stdout + second.stderr, secret


def test_the_audit_callback_is_enabled_for_every_job(awx, configured):
    assert awx.settings["AWX_TASK_ENV"]["ANSIBLE_CALLBACKS_ENABLED"] == "locus.infra.audit"


def test_project_inventory_source_and_job_templates(awx, configured):
    org = one(awx, "organizations", name="Default")["id"]
    project = one(awx, "projects", name="locus.infra")
    assert project["scm_url"] == SCM_URL and project["status"] == "successful" and project["organization"] == org
    inventory = one(awx, "inventories", name="NetBox")
    source = one(awx, "inventory_sources", inventory=inventory["id"])
    assert source["source"] == "scm" and source["source_project"] == project["id"] and source["source_path"] == "inventory/netbox.yml"
    assert source["credential"] == one(awx, "credentials", name="locus NetBox")["id"] and source["update_on_launch"] is True
    data = awx_vars()
    job_creds = {c["id"] for c in awx.objects["credentials"].values()}
    for spec in data["locus_awx_job_templates"]:
        assert (REPO / spec["playbook"]).is_file(), spec  # the default data names only playbooks that exist
        jt = one(awx, "job_templates", name=spec["name"])
        assert jt["playbook"] == spec["playbook"] and jt["inventory"] == inventory["id"] and jt["project"] == project["id"]
        assert set(awx.linked("job_templates", "credentials", jt["id"])) == job_creds
        if "extra_vars" in spec:
            assert json.loads(jt["extra_vars"]) == spec["extra_vars"]
    review = json.loads(one(awx, "job_templates", name="locus change review")["extra_vars"])
    assert review["review_apply"] is False and (REPO / review["locus_policy"]).is_file()
    assert yaml.safe_load((REPO / review["locus_policy"]).read_text())["approval"]["awx_workflow"] is True


def test_the_workflow_is_review_approval_apply_verify(awx, configured):
    wf = one(awx, "workflow_job_templates", name="locus change (review, approve, apply, verify)")
    nodes = {n["identifier"]: n for n in awx.find("workflow_job_template_nodes", workflow_job_template=wf["id"])}
    assert set(nodes) == {"review", "approval", "apply", "verify"}
    jt = {n: one(awx, "job_templates", name=f"locus change {n}")["id"] for n in ("review", "apply")}
    assert nodes["review"]["unified_job_template"] == jt["review"] and nodes["apply"]["unified_job_template"] == jt["apply"]
    assert nodes["verify"]["unified_job_template"] == one(awx, "job_templates", name="locus verify")["id"]
    approval = awx.objects["workflow_approval_templates"][nodes["approval"]["unified_job_template"]]
    assert approval["timeout"] == 86400 and "locus_review_ref" in approval["description"]

    def successors(name):
        return [awx.objects["workflow_job_template_nodes"][i]["identifier"]
                for i in awx.linked("workflow_job_template_nodes", "success_nodes", nodes[name]["id"])]

    assert successors("review") == ["approval"] and successors("approval") == ["apply"] and successors("apply") == ["verify"]
    assert successors("verify") == []
    # the guard's decision reaches the approval node and the apply job through set_stats artifacts
    review_play = (REPO / "playbooks" / "change_review.yml").read_text()
    assert "set_stats" in review_play and "locus_review_ref" in review_play and "locus_review_decision" in review_play


def _module(awx, module, args, *flags):
    return subprocess.run([VENV_BIN / "ansible", "localhost", "-m", module, "-a", json.dumps(args), *flags], env=controller_env(awx),
                          capture_output=True, text=True, timeout=300, check=False)


def test_awx_refuses_what_the_data_must_not_contain(awx, configured):
    """The double answers as AWX does: why the audit env goes through AWX_TASK_ENV, and why
    the default job templates name only playbooks the project has."""
    proc = _module(awx, "awx.awx.credential_type", {"name": "callback env", "kind": "cloud", "inputs": {"fields": []},
                                                    "injectors": {"env": {"ANSIBLE_CALLBACKS_ENABLED": "locus.infra.audit"}}})
    assert proc.returncode != 0 and "may affect Ansible configuration so its use is not allowed in credentials" in proc.stdout
    proc = _module(awx, "awx.awx.job_template", {"name": "locus missing", "project": "locus.infra", "inventory": "NetBox",
                                                 "playbook": "playbooks/no_such_playbook.yml", "organization": "Default"})
    assert proc.returncode != 0 and "Playbook not found for project." in proc.stdout
    assert not awx.find("job_templates", name="locus missing")


def test_check_mode_predicts_a_change_without_making_it(awx, configured):
    before = one(awx, "job_templates", name="locus verify")["description"]
    args = {"name": "locus verify", "project": "locus.infra", "inventory": "NetBox", "playbook": "playbooks/verify.yml",
            "organization": "Default", "description": "changed in check mode only"}
    proc = _module(awx, "awx.awx.job_template", args, "--check")
    assert proc.returncode == 0 and '"changed": true' in proc.stdout, proc.stdout
    assert one(awx, "job_templates", name="locus verify")["description"] == before


def _lint(path, cwd):
    return subprocess.run([VENV_BIN / "ansible-lint", "--profile", "production", "--offline", "--strict", "--enable-list", "args", "--nocolor",
                           str(path)], cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def test_ansible_lint_checks_the_awx_module_arguments(tmp_path):
    """ansible-lint's args rule (opt-in, hence --enable-list) validates every awx.awx call against the module's spec."""
    proc = _lint("awx/", REPO)
    assert proc.returncode == 0 and "0 failure(s), 0 warning(s)" in proc.stdout + proc.stderr, proc.stdout[-3000:] + proc.stderr[-2000:]
    # the rule is really on: the same playbook with one unknown option fails
    bad = tmp_path / "awx"
    bad.mkdir()
    for name in ("configure.yml", "vars.yml"):
        (bad / name).write_text((REPO / "awx" / name).read_text())
    text = (bad / "configure.yml").read_text().replace("        overwrite: true\n", "        overwrite: true\n        overwrite_everything: true\n")
    (bad / "configure.yml").write_text(text)
    proc = _lint(bad / "configure.yml", tmp_path)
    assert proc.returncode != 0 and "overwrite_everything" in proc.stdout + proc.stderr, proc.stdout[-3000:]
