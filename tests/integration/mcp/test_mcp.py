"""`locus mcp`: real MCP sessions with the official SDK's own client, over stdio and over HTTP.

The server is the `locus` console script of this checkout, started as a subprocess by the SDK's
stdio client (or on a loopback port for HTTP); the store is real (SQLite, and the throw-away
PostgreSQL 15 cluster of the suite), the guard, the inventory (ansible-inventory on a static
inventory) and the halt are the collection's own. Attacks: tools that would change state,
secrets planted in arguments and inventory variables, huge and non-UTF-8 input, forged reports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from locus_testlib import REPO, VENV_BIN, free_port, raw_store_bytes, run_locus, run_playbook

EXPECTED_TOOLS = {"audit_show", "audit_verify", "audit_search", "inventory_hosts", "inventory_host", "guard_status",
                  "guard_assess", "reports_list", "report_get", "request_halt"}
PLANTED = ("PlantedByName42", "PlantedInUrl77", "PlantedNested99", "VaultedPlanted123", "ghp_PLANTEDabcdefghijklmnop0123",
           "PlantedArgPw55", "PlantedBearerXYZ0123456789", "PlantedUnknownArg88", "PlantedReason66")
VAULT_PASSWORD = "vault-password-of-the-test"


def _env(store_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUS_")}
    env.update(store_env, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), PYTHONWARNINGS="ignore")
    return env


def _params(store_env, *args):
    return StdioServerParameters(command=str(VENV_BIN / "locus"), args=["mcp", *args], env=_env(store_env), cwd=str(REPO))


def session(server, calls, name="pytest-client", mode="auto"):
    """``(tools, [CallToolResult])``: one MCP session, the calls in order."""

    async def run():
        async with Client(server, client_info=types.Implementation(name=name, version="9.9"), mode=mode,
                          read_timeout_seconds=120) as client:
            listed = (await client.list_tools()).tools
            results = [await client.call_tool(tool, args) for tool, args in calls]
            return listed, results

    return anyio.run(run)


def _research(store):
    return [json.loads(r["data"]) | {"_tag": r["tag"], "_subject": r["subject"]}
            for r in store.iter_records() if r["tag"].startswith("LOCUS-RESEARCH")]


@pytest.fixture
def planted_inventory(tmp_path):
    """A static inventory whose variables hold secrets by name, by look, in a URL and vault-encrypted."""
    pw = tmp_path / "vault-pw"
    pw.write_text(VAULT_PASSWORD)
    vaulted = subprocess.run([VENV_BIN / "ansible-vault", "encrypt_string", "--vault-password-file", pw, "VaultedPlanted123",
                              "--name", "vaulted_thing"], capture_output=True, text=True, check=True).stdout
    inv = tmp_path / "inventory.yml"
    inv.write_text(
        "all:\n  children:\n    databases:\n      hosts:\n        db1:\n"
        "          ansible_host: 127.0.0.1\n"
        "          db_password: PlantedByName42\n"
        "          conn: \"host=db1 user=app password=PlantedByName42\"\n"
        "          dsn: postgresql://app:PlantedInUrl77@db1/app\n"
        "          nested: {api: {token: PlantedNested99}}\n"
        "          note: ghp_PLANTEDabcdefghijklmnop0123\n"
        "          site_name: lab\n"
        + "".join(f"          {line}\n" for line in vaulted.splitlines())
        + "    web:\n      hosts:\n        web1: {ansible_host: 127.0.0.2}\n")
    return inv


def _report(store, reports):
    """An ARTIFACT record and its Markdown file, as locus.infra.ops_report writes them."""
    with store.transaction() as tx:
        tag = tx.record("ARTIFACT", f"status report in {reports}", {"report": "status_report", "dest": str(reports),
                                                                    "formats": ["md"], "job": None})
        reports.mkdir(exist_ok=True)
        (reports / f"status_report-{tag}.md").write_text(f"# Status report {tag}\n\nall hosts up\n")
    return tag


def test_a_session_lists_the_tools_calls_each_one_and_every_call_is_audited(store_env, open_test_store, tmp_path, planted_inventory):
    from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard, _halt, _policy

    store = open_test_store()
    policy = _policy.load_policy()
    decision = _guard.decide(store, policy, {"what": "remove the old web VM", "where": "pve1", "changes": [
        {"host": "pve1", "action": "locus.infra.proxmox_vm", "args": {"name": "web-old", "state": "absent"}}]})
    assert decision["decision"] == "needs_approval"
    job = store.record("JOB", "ansible-playbook site.yml", {"event": "start"})
    store.record("TASK", "configure nginx @ web1", {"job": job, "host": "web1", "status": "failed", "task": "configure nginx"})
    store.record("TASK", "configure nginx @ web2", {"job": job, "host": "web2", "status": "ok", "task": "configure nginx"})
    reports = tmp_path / "reports"
    report = _report(store, reports)
    head = store.head()
    before = {r["tag"] for r in store.iter_records()}

    calls = [
        ("audit_show", {"last": 5}),
        ("audit_show", {"tag": decision["ref_tag"]}),
        ("audit_show", {"job": job}),
        ("audit_show", {"since": "2000-01-01", "until": "2999-01-01T00:00:00Z"}),
        ("audit_show", {"since": "2000-01-01T00:00:00+02:00", "last": 2}),
        ("audit_verify", {}),
        ("audit_verify", {"head": head}),
        ("audit_verify", {"head": {**head, "count": head["count"] + 50}}),
        ("audit_search", {"status": "failed", "host": "web1"}),
        ("audit_search", {"subject": "NGINX", "action": "TASK", "limit": 1}),
        ("inventory_hosts", {}),
        ("inventory_hosts", {"group": "databases"}),
        ("inventory_host", {"name": "db1"}),
        ("guard_status", {}),
        ("guard_assess", {"operation": {"what": "delete a VM", "changes": [
            {"host": "pve1", "action": "locus.infra.proxmox_vm", "args": {"name": "db1", "state": "absent", "password": "PlantedArgPw55"}}]}}),
        ("guard_assess", {"operation": {"what": "nothing much", "changes": []}}),
        ("reports_list", {}),
        ("report_get", {"tag": report}),
    ]
    listed, results = session(_params(store_env, "-i", str(planted_inventory), "--report-dir", str(reports)), calls)

    # the tools: exactly these, with schemas; only request_halt is not read-only; nothing approves
    assert {t.name for t in listed} == EXPECTED_TOOLS
    for tool in listed:
        assert tool.input_schema["type"] == "object" and tool.input_schema["additionalProperties"] is False
        assert tool.output_schema and "ref_tag" in tool.output_schema["required"]
        assert tool.annotations.read_only_hint is (tool.name != "request_halt"), tool.name
        assert not any(word in tool.name for word in ("approve", "resume", "apply"))

    out = [r.structured_content for r in results]
    assert not any(r.is_error for r in results), [o.get("error") for o in out]
    show_last, show_tag, show_job, show_window, show_window_last = out[:5]
    verify, verify_head, verify_long = out[5:8]
    assert [r["tag"] for r in show_last["records"]][-1] == report and show_last["count"] == 5
    assert show_tag["records"][0]["data"]["decision"] == "needs_approval"
    assert [r["tag"] for r in show_job["records"]][0] == job and show_job["count"] == 3
    assert show_window["count"] == len(before) + 3  # and the records of the three calls before it
    assert [r["tag"] for r in show_window_last["records"]] == [r["_tag"] for r in _research(store)[2:4]]
    assert verify["ok"] and verify_head["ok"] and verify["count"] == head["count"] + 5  # 5 calls recorded before it
    assert not verify_long["ok"] and verify_long["problem"]["kind"] == "truncated"
    search_failed, search_subject = out[8:10]
    assert [r["data"]["host"] for r in search_failed["records"]] == ["web1"]
    assert search_subject["count"] == 1 and search_subject["more"] and search_subject["records"][0]["subject"] == "configure nginx @ web2"
    hosts, db_hosts, db1 = out[10:13]
    assert {h["name"] for h in hosts["hosts"]} == {"db1", "web1"} and [h["name"] for h in db_hosts["hosts"]] == ["db1"]
    assert "databases" in db1["groups"] and db1["vars"]["ansible_host"] == "127.0.0.1" and db1["vars"]["site_name"] == "lab"
    assert db1["vars"]["db_password"] == "********" and db1["vars"]["vaulted_thing"] == "********"
    assert db1["vars"]["nested"]["api"]["token"] == "********"
    assert "PlantedInUrl77" not in db1["vars"]["dsn"] and db1["vars"]["dsn"].startswith("postgresql://app:")
    status, assess_vm, assess_nothing, listed_reports, got_report = out[13:]
    assert status["halt"]["halted"] is False and [p["tag"] for p in status["pending"]] == [decision["ref_tag"]]
    assert f"locus approve {decision['ref_tag']}" in status["pending"][0]["waits_for"]
    assert assess_vm["would_decide"] == "needs_approval" and assess_vm["risk"] == "critical"
    assert [f["rule"] for f in assess_vm["findings"]] == ["vm_delete"]
    assert assess_nothing["would_decide"] == "allow"
    assert [(r["tag"], r["readable"]) for r in listed_reports["reports"]] == [(report, True)]
    assert got_report["text"].startswith(f"# Status report {report}") and not got_report["truncated"]

    # every call is one RESEARCH record, with the client, the transport and the arguments; nothing else was written
    after = list(store.iter_records())
    new = [r for r in after if r["tag"] not in before]
    assert {r["tag"].split("2")[0] for r in new} == {"LOCUS-RESEARCH"}, [r["tag"] for r in new]
    research = _research(store)
    assert [r["mcp"]["tool"] for r in research] == [c[0] for c in calls]
    assert [o["ref_tag"] for o in out] == [r["_tag"] for r in research]
    assert all(r["mcp"]["client"] == {"name": "pytest-client", "version": "9.9"} and r["mcp"]["transport"] == "stdio"
               and r["mcp"]["lane"] == "private" and r["status"] == "ok" for r in research)
    assert research[1]["arguments"] == {"tag": decision["ref_tag"]}
    assert research[14]["arguments"]["operation"]["changes"][0]["args"]["password"] == "********"
    assert store.verify()["ok"] and _halt.halt_state(store)["halted"] is False
    raw = raw_store_bytes(store)
    for secret in PLANTED:
        assert secret.encode() not in raw, secret
        assert secret not in json.dumps(out), secret


def test_the_handshake_era_works_too(tmp_path):
    """Desktop assistants of 2025 open with the initialize handshake (mode legacy)."""
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state")}
    listed, results = session(_params(env), [("audit_verify", {})], name="Claude Desktop", mode="legacy")
    assert {t.name for t in listed} == EXPECTED_TOOLS
    assert results[0].structured_content["ok"] is True
    research = _research(_open(env))
    assert research[0]["mcp"]["client"]["name"] == "Claude Desktop"


def _open(env):
    from ansible_collections.locus.infra.plugins.plugin_utils.store import _store

    return _store.open_store(state_dir=env["LOCUS_STATE_DIR"])


def test_bad_arguments_are_refused_with_one_clear_line_and_recorded(tmp_path):
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state")}
    huge = "x" * (300 * 1024)
    calls = [
        ("audit_show", {"last": 5, "api_key": "PlantedUnknownArg88"}),
        ("audit_show", {"last": "five"}),
        ("audit_show", {"last": 0}),
        ("audit_show", {"tag": "LOCUS-TASK20260101-001", "last": 3}),
        ("audit_show", {"tag": "not-a-tag"}),
        ("inventory_host", {}),
        ("guard_assess", {"operation": {"what": "read a file", "changes_file": "/etc/shadow"}}),
        ("audit_search", {"subject": huge}),
        ("request_halt", {"reason": "   "}),
        ("report_get", {"tag": "LOCUS-TASK20260101-001"}),
        ("approve", {"ref": "LOCUS-VALIDATE20260101-001"}),
        ("resume", {"token": "locus1.x.y"}),
        ("apply", {}),
    ]
    _listed, results = session(_params(env), calls)
    errors = [r.structured_content["error"] for r in results]
    assert all(r.is_error for r in results)
    assert errors[0] == "audit_show: arguments: unknown argument(s) 'api_key' (known: job, last, since, tag, until)"
    assert errors[1] == "audit_show: argument last: 'five' is not of type 'integer'"
    assert errors[2] == "audit_show: argument last: 0 is less than the minimum of 1"
    assert errors[3] == "audit_show: give one of tag, job, or last/since/until (got tag, last)"
    assert errors[4].startswith("audit_show: argument tag: 'not-a-tag' does not match")
    assert errors[5] == "inventory_host: arguments: 'name' is a required property"
    assert errors[6].startswith("guard_assess: argument operation: unknown argument(s) 'changes_file'")
    assert errors[7] == f"audit_search: the arguments are {len(huge) + 14} bytes, more than the 262144 this server reads"
    assert errors[8] == "request_halt: reason is empty; say why"
    assert errors[9] == "report_get: tag: LOCUS-TASK20260101-001 is a TASK tag, not an ARTIFACT tag"
    for n in (10, 11, 12):
        assert errors[n].startswith(f"unknown tool '{calls[n][0]}'") and "no tool that approves, resumes or applies" in errors[n]
    assert all("\n" not in e for e in errors)
    store = _open(env)
    research = _research(store)
    assert len(research) == len(calls) and {r["status"] for r in research} == {"refused"}
    assert research[0]["arguments"] == {"api_key": "********", "last": 5}
    assert research[7]["arguments"]["omitted"] == "too large or too deep to record"
    assert [r["mcp"]["tool"] for r in research][10:] == ["approve", "resume", "apply"]
    assert store.verify()["ok"]
    assert not any(r["tag"].startswith(("LOCUS-HALT", "LOCUS-APPROVAL", "LOCUS-VALIDATE")) for r in store.iter_records())
    assert b"PlantedUnknownArg88" not in raw_store_bytes(store)


def _rpc(proc, message):
    proc.stdin.write((json.dumps(message) + "\n").encode())
    proc.stdin.flush()


def _replies(proc, last_id):
    """Every reply with an id, until the one with ``last_id``."""
    got = {}
    while last_id not in got:
        line = proc.stdout.readline()
        assert line, f"the server closed stdout: {proc.stderr.read().decode(errors='replace')[-2000:]}"
        msg = json.loads(line)
        if "id" in msg:
            got[msg["id"]] = msg
    return got


def test_non_utf8_and_raw_protocol_input(tmp_path):
    """Raw JSON-RPC over the server's stdin: bytes that are not UTF-8, lone surrogates, garbage lines."""
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen([VENV_BIN / "locus", "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(env), cwd=REPO)
    try:
        _rpc(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw\u202eclient\x1b[31m", "version": "1"}}})
        assert _replies(proc, 1)[1]["result"]["serverInfo"]["name"] == "locus.infra"
        _rpc(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        # a lone surrogate, as JSON spells it: the SDK's reader refuses the message before any tool
        proc.stdin.write(b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"audit_search","arguments":{"subject":"a\\udcffb"}}}\n')
        # raw bytes that are not UTF-8 inside a JSON string: read as replacement characters
        proc.stdin.write(b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"request_halt","arguments":{"reason":"bad \xff\xfe bytes"}}}\n')
        proc.stdin.write(b"\xff\xfe not json at all\n")
        _rpc(proc, {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "audit_verify", "arguments": {}}})
        replies = _replies(proc, 4)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 0 and 2 not in replies  # the session goes on after both bad lines
    halt = replies[3]["result"]
    assert not halt["isError"] and halt["structuredContent"]["halt"]["reason"] == "bad \ufffd\ufffd bytes"
    assert replies[4]["result"]["structuredContent"]["ok"] is True
    store = _open(env)
    assert store.verify()["ok"]
    research = _research(store)
    assert [r["mcp"]["tool"] for r in research] == ["request_halt", "audit_verify"]
    assert research[-1]["mcp"]["client"]["name"] == "raw\u202eclient\x1b[31m"  # kept exactly; printed escaped by the CLI
    shown = run_locus("--state-dir", env["LOCUS_STATE_DIR"], "audit", "show", "--last", "5")
    assert "\x1b" not in shown.stdout and "\u202e" not in shown.stdout


def test_text_that_is_not_utf8_reaching_a_tool_is_refused_and_recorded_escaped(tmp_path):
    """Should a lone surrogate get past a transport, the tool refuses it; the record holds it escaped."""
    from ansible_collections.locus.infra.plugins.plugin_utils.mcp import _mcp_tools

    store = _open({"LOCUS_STATE_DIR": str(tmp_path / "state")})
    result, is_error = _mcp_tools.Tools(store).call("audit_search", {"subject": "a\udcffb"}, {"name": "in-process"})
    assert is_error and result["error"].startswith("audit_search: arguments.subject is not valid UTF-8 text")
    result, is_error = _mcp_tools.Tools(store).call("request_halt", {"reason": "x" * 600, "api_token": "PlantedArgPw55"}, None)
    assert is_error and "unknown argument(s) 'api_token'" in result["error"]
    research = _research(store)
    assert research[0]["arguments"] == {"subject": "a\\xffb"} and research[0]["status"] == "refused"
    assert research[1]["mcp"]["client"]["name"] == "unnamed client" and research[1]["arguments"]["api_token"] == "********"
    assert store.verify()["ok"] and b"PlantedArgPw55" not in raw_store_bytes(store)


def test_a_halt_requested_through_mcp_stops_a_playbook(tmp_path):
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state")}
    reason = "BGP flapping, seen by the assistant; Authorization: Bearer PlantedBearerXYZ0123456789 PlantedReason66"
    _listed, results = session(_params(env), [("request_halt", {"reason": reason}), ("request_halt", {"reason": "again"}),
                                              ("guard_status", {})], name="Claude Code")
    first, again, status = (r.structured_content for r in results)
    assert first["changed"] is True and first["halt"]["halted"] and first["halt_tag"].startswith("LOCUS-HALT")
    assert again["changed"] is False and again["halt"]["tag"] == first["halt_tag"]
    assert status["halt"]["tag"] == first["halt_tag"] and "locus resume" in status["waits_for"]
    store = _open(env)
    halt = store.get(first["halt_tag"])
    data = json.loads(halt["data"])
    assert data["via"] == "locus mcp (stdio)" and data["user"].endswith("via MCP client Claude Code")
    assert data["mcp"]["client"]["name"] == "Claude Code"
    research = _research(store)
    assert research[0]["halt_tag"] == first["halt_tag"] and research[0]["mcp"]["tool"] == "request_halt"

    run = run_playbook(REPO / "tests" / "integration" / "playbooks" / "mcp_halted.yml", env=env, check=False)
    assert run.returncode != 0 and first["halt_tag"] in run.stdout and "not halted" not in run.stdout
    status = json.loads(run_locus("--state-dir", env["LOCUS_STATE_DIR"], "status").stdout)
    assert status["halted"] and status["tag"] == first["halt_tag"]
    raw = raw_store_bytes(store)
    assert b"PlantedBearerXYZ0123456789" not in raw and b"BGP flapping, seen by the assistant" in raw  # the token masked, the words kept


TERMINAL_ATTACK = "\x1b[2J\x1b]0;pwned\x07\x1b]52;c;cm0gLXJmIH4=\x07\u202e\r\x08"


def test_a_halt_requested_through_mcp_cannot_drive_the_operators_terminal(store_env, open_test_store):
    """An MCP client's halt reason and self-declared name reach every operator's ansible-playbook
    output (the halt message): escape sequences in them (clear screen, window title, OSC 52
    clipboard, right-to-left override, carriage return) appear escaped, never raw."""
    _listed, results = session(_params(store_env), [("request_halt", {"reason": f"routes leak{TERMINAL_ATTACK} now"})],
                               name=f"assistant{TERMINAL_ATTACK}")
    tag = results[0].structured_content["halt_tag"]
    run = run_playbook(REPO / "tests" / "integration" / "playbooks" / "mcp_halted.yml", env=store_env, check=False)
    assert run.returncode != 0 and tag in run.stdout and "not halted" not in run.stdout
    shown = run.stdout + run.stderr
    raw = sorted({c for c in TERMINAL_ATTACK if not c.isprintable() and c in shown})
    assert not raw, f"raw control characters reached the terminal: {raw!r}"
    assert "routes leak\\u001b[2J" in shown  # escaped as JSON spells it, inside the JSON of the result too
    data = json.loads(open_test_store().get(tag)["data"])
    assert data["reason"].startswith("routes leak\\u001b[2J\\u001b]0;pwned\\u0007")
    assert data["user"].endswith("via MCP client assistant\\u001b[2J\\u001b]0;pwned\\u0007\\u001b]52;c;cm0gLXJmIH4=\\u0007\\u202e\\u000d\\u0008")
    assert data["mcp"]["client"]["name"] == f"assistant{TERMINAL_ATTACK}"  # recorded exactly where it is data


def test_reports_outside_the_report_directories_are_not_read(tmp_path):
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state")}
    store = _open(env)
    reports, elsewhere = tmp_path / "reports", tmp_path / "elsewhere"
    elsewhere.mkdir()
    good = _report(store, reports)
    outside = _report(store, elsewhere)  # a genuine-looking record naming another directory
    # a symlink inside the report directory to a file outside it, under the name a forged record gives
    secret = tmp_path / "secret.txt"
    secret.write_text("PlantedByName42\n")
    forged = store.record("ARTIFACT", "forged", {"report": "status_report", "dest": str(reports)})
    (reports / f"status_report-{forged}.md").symlink_to(secret)
    escape = store.record("ARTIFACT", "forged", {"report": "../../secret", "dest": str(reports)})
    _listed, results = session(_params(env, "--report-dir", str(reports)), [
        ("reports_list", {}), ("report_get", {"tag": good}), ("report_get", {"tag": outside}),
        ("report_get", {"tag": forged}), ("report_get", {"tag": escape})])
    listed = results[0].structured_content["reports"]
    assert {r["tag"]: r["readable"] for r in listed} == {good: True, outside: False, forged: False, escape: False}
    assert not results[1].is_error
    for r in results[2:]:
        assert r.is_error and "is not a file inside the report directories" in r.structured_content["error"]
    assert b"PlantedByName42" not in json.dumps([r.structured_content for r in results]).encode()


def _start_http(env, *args, port=None):
    port = port or free_port()
    proc = subprocess.Popen([VENV_BIN / "locus", "mcp", "--http", f"127.0.0.1:{port}", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(env), cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"locus mcp --http exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc, f"http://127.0.0.1:{port}/mcp"
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("locus mcp --http did not listen within 60 s")


def test_http_needs_a_bearer_token_and_the_private_lane_only_loopback(tmp_path):
    env = {"LOCUS_STATE_DIR": str(tmp_path / "state")}
    for args, extra, message in (
        ([], {}, "--http needs a bearer token"),
        ([], {"LOCUS_MCP_TOKEN": "short"}, "the bearer token must be at least 32 printable characters"),
        (["--lane", "private"], {"LOCUS_MCP_TOKEN": "t" * 40}, "the private lane serves only stdio or a loopback address"),
    ):
        host = "0.0.0.0" if "--lane" in args else "127.0.0.1"
        proc = subprocess.run([VENV_BIN / "locus", "mcp", "--http", f"{host}:{free_port()}", *args], capture_output=True, text=True,
                              env=_env({**env, **extra}), timeout=60, check=False)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr

    token = "k" * 20 + "PlantedBearerXYZ0123456789"
    proc, url = _start_http({**env, "LOCUS_MCP_TOKEN": token})
    try:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "curl", "version": "1"}}}
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        for auth in (None, "Bearer wrong", f"Bearer {token[:-1]}", f"Basic {token}", f"Bearer {token}x"):
            got = httpx.post(url, json=init, headers={**headers, **({"Authorization": auth} if auth else {})}, timeout=10)
            assert got.status_code == 401 and got.headers["www-authenticate"].startswith("Bearer"), auth
        ok = httpx.post(url, json=init, headers={**headers, "Authorization": f"Bearer {token}"}, timeout=10)
        assert ok.status_code == 200, ok.text
        # DNS rebinding: a page on another site that reaches the loopback port names its own host
        rebound = httpx.post(url, json=init, headers={**headers, "Authorization": f"Bearer {token}", "Host": "evil.example"}, timeout=10)
        assert rebound.status_code == 421
        big = {**init, "params": {**init["params"], "padding": "x" * (2 * 1024 * 1024)}}
        too_big = httpx.post(url, json=big, headers={**headers, "Authorization": f"Bearer {token}"}, timeout=30)
        assert too_big.status_code == 413

        def authed():
            return streamable_http_client(url, http_client=create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}))

        listed, results = session(authed(), [("audit_verify", {}), ("request_halt", {"reason": "over HTTP"})], name="remote-assistant")
        assert {t.name for t in listed} == EXPECTED_TOOLS
        assert results[0].structured_content["ok"] and results[1].structured_content["halt"]["halted"]

        def unauthed():
            return streamable_http_client(url, http_client=create_mcp_http_client(headers={"Authorization": "Bearer nope"}))

        with pytest.raises(Exception):  # noqa: B017 - the SDK raises its own error for an unauthorised answer
            session(unauthed(), [("audit_verify", {})])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    store = _open(env)
    research = _research(store)
    assert [(r["mcp"]["tool"], r["mcp"]["transport"], r["mcp"]["client"]["name"]) for r in research] == [
        ("audit_verify", "http", "remote-assistant"), ("request_halt", "http", "remote-assistant")]
    assert all(r["mcp"]["peer"].startswith("127.0.0.1:") and r["mcp"]["listen"] == url.split("/")[2] for r in research)
    halt = json.loads(store.get(results[1].structured_content["halt_tag"])["data"])
    assert halt["via"] == "locus mcp (http)" and halt["mcp"]["client"]["peer"].startswith("127.0.0.1:")
    assert b"PlantedBearerXYZ0123456789" not in raw_store_bytes(store)
    assert store.verify()["ok"]


def test_without_the_sdk_locus_mcp_says_what_to_install(tmp_path):
    """The extra is optional: a Python without the mcp package gets one line naming requirements-mcp.txt."""
    shadow = tmp_path / "shadow"
    (shadow / "mcp").mkdir(parents=True)
    (shadow / "mcp" / "__init__.py").write_text("raise ImportError('No module named mcp (shadowed by the test)')\n")
    env = _env({"LOCUS_STATE_DIR": str(tmp_path / "state")})
    env["PYTHONPATH"] = str(shadow)
    proc = subprocess.run([VENV_BIN / "locus", "mcp"], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                          timeout=60, check=False)
    assert proc.returncode == 2 and "requirements-mcp.txt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert Path(REPO / "requirements-mcp.txt").is_file()


def test_requirements_mcp_admits_the_pinned_sdk():
    import tomllib

    from packaging.requirements import Requirement

    pins = [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["mcp"]]
    lines = [line.split("#")[0].strip() for line in (REPO / "requirements-mcp.txt").read_text().splitlines()]
    ranges = [Requirement(line) for line in lines if line]
    assert [r.name for r in ranges] == [p.name for p in pins] == ["mcp"]
    pinned = next(iter(pins[0].specifier)).version
    assert ranges[0].specifier.contains(pinned), (str(ranges[0].specifier), pinned)
