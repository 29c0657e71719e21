"""Emergency halt end to end: the locus CLI, real ansible-playbook runs, the Proxmox API double.

While halted, changing plugins fail at once with the HALT tag and reason (and the Proxmox
double receives no request); read-only ones keep working; resuming needs a token that
`locus approve <HALT tag>` prints.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

from doubles.proxmox_api import PveDouble

from locus_testlib import REPO, VENV_BIN, run_locus, run_playbook

HERE = Path(__file__).parent / "playbooks"


def _result(stdout):
    line = next(line for line in stdout.splitlines() if '"RESULT ' in line)
    return json.loads(line.split("RESULT ", 1)[1].rstrip('"').encode().decode("unicode_escape"))


def _env(store_env, pve):
    token_id, secret = pve.token()
    return {**store_env, "PROXMOX_HOST": pve.host, "PROXMOX_TOKEN_ID": token_id, "PROXMOX_TOKEN_SECRET": secret,
            "PROXMOX_CA_PATH": pve.ca_file}


def _events(store, prefix):
    return [json.loads(r["data"]).get("event") for r in store.iter_records() if r["tag"].startswith(prefix)]


def test_halt_stops_changes_keeps_reads_and_resume_needs_the_token(store_env, open_test_store, tmp_path):
    with PveDouble(durations={"qmshutdown": 0.2, "qmstop": 0.1}) as pve:
        pve.add_vm(100, "probe-vm", status="running")
        env = _env(store_env, pve)

        halted = run_locus("halt", "--reason", "probe incident: storage failing", env=env)
        assert halted.returncode == 0, halted.stderr
        halt_tag = halted.stdout.strip().splitlines()[-1]
        assert halt_tag.startswith("LOCUS-HALT")

        probe = ["-e", json.dumps({"probe_dir": str(tmp_path)})]
        first = _result(run_playbook(HERE / "halt_probe.yml", env=env, args=probe).stdout)
        # read-only plugins keep working
        assert first["tag"].startswith("LOCUS-VALIDATE") and first["verify"] is True and first["info"] == 2
        assert first["guard"] == "deny" and first["guard_reasons"][0].startswith(f"locus.infra is halted by {halt_tag}")
        # changing plugins fail at once with the HALT tag and reason
        for name in ("journal", "vm", "agent", "halt_check", "lab"):
            res = first[name]
            assert res["failed"] is True, name
            assert f"HALTED by {halt_tag}" in res["msg"] and "probe incident: storage failing" in res["msg"], name
            assert res["halt_ref_tag"] == halt_tag and res["halted"] is True, name
        assert pve.requests == []  # the Proxmox API never heard of it
        assert not (tmp_path / "lab.pid").exists() and not (tmp_path / "lab.log").exists()  # no process started
        assert first["lab_query"].get("failed") is not True and first["lab_query"]["running"] is False
        assert pve.vm_status(100) == "running"

        # resume needs the token
        assert run_locus("resume", env=env).returncode == 2
        no_key = run_locus("resume", "--token", "locus1.e30.AAAA", env=env)
        assert no_key.returncode == 2 and "no approval key" in no_key.stderr
        approved = run_locus("approve", halt_tag, env=env)  # creates the key on first use
        assert approved.returncode == 0, approved.stderr
        token = approved.stdout.strip().splitlines()[-1]
        bogus = run_locus("resume", "--token", "locus1.e30.AAAA", env=env)
        assert bogus.returncode == 1 and "refused" in bogus.stderr
        assert json.loads(run_locus("status", env=env).stdout)["halted"] is True
        assert token.startswith("locus1.") and " " not in token
        resumed = run_locus("resume", "--token", token, env=env)
        assert resumed.returncode == 0 and f"resumed from {halt_tag}" in resumed.stdout
        assert run_locus("resume", "--token", token, env=env).stdout.startswith("locus.infra is not halted")

        second = _result(run_playbook(HERE / "halt_probe.yml", env=env,
                                      args=["-e", json.dumps({"probe_dir": str(tmp_path), "probe_lab_check": True})]).stdout)
        assert second["guard"] == "allow"
        assert second["vm"].get("failed") is not True and second["vm"]["changed"] is True, second["vm"]
        assert pve.vm_status(100) == "stopped"
        assert second["halt_check"].get("failed") is not True
        assert second["lab"].get("failed") is not True and second["lab"]["changed"] is True, second["lab"]  # would start
        assert second["agent"].get("failed") is not True and second["agent"]["would_call"] is True, second["agent"]
        assert "HALTED" not in second["journal"].get("msg", "")  # it now fails on the unreachable NetBox instead

    store = open_test_store()
    assert _events(store, "LOCUS-HALT") == ["halt", "resume"]
    assert _events(store, "LOCUS-APPROVAL") == ["issued", "refused", "accepted"]
    agent_calls = [r for r in store.iter_records() if r["tag"].startswith("LOCUS-AGENT")]
    assert len(agent_calls) == 1 and json.loads(agent_calls[0]["data"])["check_mode"] is True  # none while halted
    raw = "".join(r["data"] for r in store.iter_records())
    assert token not in raw and "probe-token-not-used" not in raw
    assert store.verify()["ok"]


def test_emergency_halt_playbook_halts_and_resumes(store_env, open_test_store):
    playbook = REPO / "playbooks" / "emergency_halt.yml"
    out = run_playbook(playbook, env=store_env, args=["-e", '{"halt_reason": "routes leaking"}'])
    assert "HALTED by LOCUS-HALT" in out.stdout and "routes leaking" in out.stdout
    tag = json.loads(run_locus("status", env=store_env).stdout)["tag"]
    token = run_locus("approve", tag, env=store_env).stdout.strip().splitlines()[-1]
    refused = run_playbook(playbook, env={**store_env, "LOCUS_APPROVAL_TOKEN": token[:-4] + "AAAA"},
                           args=["-e", "halt_resume=true"], check=False)
    assert refused.returncode != 0 and "resume token refused: the token's signature does not match" in refused.stdout
    done = run_playbook(playbook, env={**store_env, "LOCUS_APPROVAL_TOKEN": token}, args=["-e", "halt_resume=true"])
    assert "locus.infra is not halted" in done.stdout
    both = run_playbook(playbook, env=store_env, args=["-e", '{"halt_reason": "x", "halt_resume": true}'], check=False)
    assert both.returncode != 0 and "not both" in both.stdout
    assert _events(open_test_store(), "LOCUS-HALT") == ["halt", "resume"]


def test_a_halt_set_during_a_run_stops_its_next_tasks(store_env, open_test_store, tmp_path):
    """The race of an operator's halt against a running apply: the audit callback looks at the
    halt before every task and stops the run at the first task after a halt it did not set itself
    (plain modules included; the running task finishes). The JOB is closed as halted."""
    args = ["-e", json.dumps({"probe_dir": str(tmp_path), "locus_bin": str(VENV_BIN / "locus")})]
    run = run_playbook(HERE / "halt_mid_run.yml", env=store_env, args=args, check=False)
    assert run.returncode != 0
    assert not (tmp_path / "applied-after-halt").exists(), "a task ran after the halt"
    store = open_test_store()
    halt = next(r for r in store.iter_records() if r["tag"].startswith("LOCUS-HALT"))
    assert f"HALTED by {halt['tag']}" in run.stdout + run.stderr and "A plain module that changes" in run.stdout + run.stderr
    jobs = [json.loads(r["data"]) for r in store.iter_records() if r["tag"].startswith("LOCUS-JOB")]
    assert jobs[-1]["event"] == "end" and jobs[-1]["status"] == "halted" and halt["tag"] in jobs[-1]["reason"]
    tasks = [json.loads(r["data"])["task"] for r in store.iter_records() if r["tag"].startswith("LOCUS-TASK")]
    assert tasks == ["Stop here while locus.infra is halted", "An operator halts locus.infra from another terminal"]
    assert store.verify()["ok"]


def test_every_action_plugin_goes_through_the_halt_check():
    """No plugin escapes the check: each derives from LocusAction or HaltGuardedModule, and only
    the bookkeeping/reading ones say READ_ONLY."""
    from ansible_collections.locus.infra.plugins import action
    from ansible_collections.locus.infra.plugins.plugin_utils._action import HaltGuardedModule, LocusAction

    assert LocusAction.READ_ONLY is False
    read_only = set()
    for mod in pkgutil.iter_modules(action.__path__):
        cls = importlib.import_module(f"{action.__name__}.{mod.name}").ActionModule
        assert issubclass(cls, (LocusAction, HaltGuardedModule)), f"{mod.name} bypasses the emergency halt check"
        if issubclass(cls, LocusAction) and cls.READ_ONLY:
            read_only.add(mod.name)
    assert {"ref_tag", "audit_verify", "audit_info", "guard"} <= read_only
    assert not read_only & {"netbox_journal", "agent", "agent_handover", "agent_consensus", "proxmox_vm"}


# Modules without an action plugin run on a target and must only read; everything else that a
# playbook can call goes through an action plugin checked above.
READ_ONLY_MODULES = {"nginx_probe", "ops_probe", "proxmox_node_info", "proxmox_backup_info"}


def test_every_module_that_changes_anything_goes_through_the_halt_check():
    from ansible_collections.locus.infra.plugins import action, modules
    from ansible_collections.locus.infra.plugins.action.lab_process import ActionModule as LabProcess
    from ansible_collections.locus.infra.plugins.plugin_utils._action import HaltGuardedModule

    with_action = {m.name for m in pkgutil.iter_modules(action.__path__)}
    names = {m.name for m in pkgutil.iter_modules(modules.__path__)}
    unguarded = names - with_action - READ_ONLY_MODULES
    assert not unguarded, f"modules that may change things without the emergency halt check: {sorted(unguarded)}"
    assert names.issuperset(READ_ONLY_MODULES)  # the exemptions name real modules
    for name in READ_ONLY_MODULES:  # and those only read: no state to change, check mode fully supported
        doc = importlib.import_module(f"{modules.__name__}.{name}").DOCUMENTATION
        assert "state:" not in doc and "support: full" in doc, name
    assert issubclass(LabProcess, HaltGuardedModule) and dict(LabProcess.READ_ONLY_ARGS) == {"state": {"query"}}


def test_ansible_doc_works_for_the_guard_plugins():
    import subprocess

    from locus_testlib import VENV_BIN

    for kind, name, expect in (("module", "guard", "approval_token"), ("callback", "changes", "LOCUS_CHANGES_FILE"),
                               ("module", "proxmox_vm", "OPTIONS")):
        proc = subprocess.run([str(VENV_BIN / "ansible-doc"), "-t", kind, f"locus.infra.{name}"],
                              capture_output=True, text=True, cwd=REPO, check=False)
        assert proc.returncode == 0, proc.stderr
        assert f"locus.infra.{name}" in proc.stdout and expect in proc.stdout
