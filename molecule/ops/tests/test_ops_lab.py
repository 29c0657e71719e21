"""heartbeat.yml, status_report.yml and health_review.yml on the lab: real hosts, real units
stopped and started, a real webhook receiver on loopback, the HTML report in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest
from browser import CHARTS_JS, Page
from labkit import recap
from webhook_receiver import Receiver

from locus_testlib import VENV_BIN

MANAGED = ("rtr1", "rtr2", "web1", "ollama1")


def _records(ops, prefix):
    with ops.store() as store:
        return [(r["tag"], json.loads(r["data"])) for r in store.iter_records() if r["tag"].startswith(prefix)]


def _nothing_changed_on_hosts(output):
    stats = recap(output)
    assert set(MANAGED) <= set(stats), output[-2000:]
    for host in MANAGED:
        assert stats[host]["changed"] == 0 and stats[host]["failed"] == 0 and stats[host]["unreachable"] == 0, (host, stats[host])


def _bgp_established(ops, host, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        out = ops.ssh(host, "birdc show protocols")
        states = re.findall(r"^\S+\s+BGP\s+\S+\s+\S+\s+\S+\s+(\S+)", out, re.M)
        if states and all(s == "Established" for s in states):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"BGP on {host} did not come back: {out}")
        time.sleep(2)


@pytest.fixture
def vault(tmp_path):
    """The webhook's URL and token in an Ansible Vault file, as users keep them."""
    receiver = Receiver()
    password = tmp_path / "vault-pass"
    password.write_text("lab-vault-password\n")
    secrets = tmp_path / "ops-vault.yml"
    secrets.write_text(f"ops_webhook_url: {receiver.url}\nops_webhook_token: ntfy-tok-9f8e7d\n")
    subprocess.run([str(VENV_BIN / "ansible-vault"), "encrypt", str(secrets), "--vault-password-file", str(password)], check=True,
                   capture_output=True)
    assert "s3cr3tpath" not in secrets.read_text()
    yield receiver, ["-e", f"@{secrets}", "--vault-password-file", str(password)]
    receiver.close()


def test_heartbeat_all_up_twice_changes_nothing(ops):
    for _run in range(2):
        out = ops.playbook("heartbeat.yml")
        assert out.returncode == 0, out.stdout[-3000:]
        _nothing_changed_on_hosts(out.stdout)
    notes = [d for _t, d in _records(ops, "LOCUS-NOTIFY") if d["heartbeat"] == "heartbeat"]
    assert [n["state"] for n in notes] == ["up", "up"] and notes[-1]["counts"]["down"] == 0
    # The checks the lab must have: every host's ssh, bird on the routers, nginx and the sites on web1, BGP.
    checks = int(re.search(r"heartbeat LOCUS-NOTIFY\S+: UP, (\d+) checks", out.stdout).group(1))
    assert checks >= 20


def test_heartbeat_down_and_recovered_notifies_once_each(ops, vault):
    receiver, secret_args = vault
    name = ["-e", "ops_heartbeat_name=lab-webhook"]
    first = ops.playbook("heartbeat.yml", *name, *secret_args)
    assert first.returncode == 0 and receiver.requests == []  # up from the start: nothing to say
    ops.ssh("web1", "systemctl stop nginx")
    try:
        down = ops.playbook("heartbeat.yml", *name, *secret_args)
        assert down.returncode == 2, down.stdout[-3000:]
        assert "web1: unit nginx active" in down.stdout and "DOWN" in down.stdout
        assert len(receiver.requests) == 1
        sent = receiver.requests[0]
        assert sent["headers"]["Authorization"] == "Bearer ntfy-tok-9f8e7d"
        assert "web1: unit nginx active" in sent["body"]["message"] and sent["body"]["text"].startswith("*locus lab-webhook: DOWN")
        again = ops.playbook("heartbeat.yml", *name, *secret_args)
        assert again.returncode == 2 and len(receiver.requests) == 1  # still down: no second message
    finally:
        ops.ssh("web1", "systemctl start nginx")
    back = ops.playbook("heartbeat.yml", *name, *secret_args)
    assert back.returncode == 0, back.stdout[-3000:]
    assert len(receiver.requests) == 2 and "recovered" in receiver.requests[1]["body"]["title"]
    notes = [d for _t, d in _records(ops, "LOCUS-NOTIFY") if d["heartbeat"] == "lab-webhook"]
    assert [n["state"] for n in notes] == ["up", "down", "down", "up"]  # one NOTIFY record per run
    assert [n["webhook"]["sent"] for n in notes] == [False, True, False, True]
    export = subprocess.run([str(VENV_BIN / "locus"), "audit", "export"], env={**os.environ, **ops.env}, capture_output=True, text=True,
                            check=True).stdout
    for text in (export, first.stdout, down.stdout, again.stdout, back.stdout):
        assert "s3cr3tpath" not in text and "ntfy-tok-9f8e7d" not in text  # vaulted secrets reach neither log nor trail


def test_status_report_files_tag_and_page(ops, tmp_path):
    out = ops.playbook("status_report.yml")
    assert out.returncode == 0, out.stdout[-3000:]
    _nothing_changed_on_hosts(out.stdout)
    tag = re.search(r"status_report (LOCUS-ARTIFACT\d{8}-\d{3,}): ", out.stdout).group(1)
    (record,) = [d for t, d in _records(ops, "LOCUS-ARTIFACT") if t == tag]
    assert record["report"] == "status_report" and record["dest"] == str(ops.reports)
    md = (ops.reports / f"status_report-{tag}.md").read_text()
    html = ops.reports / f"status_report-{tag}.html"
    assert tag in md and "state **up**" in md
    assert re.search(r"\| rtr1 \| rtr2_v4 \| 10\.77\.0\.12 \| 65002 \| Established \| ipv4 1 in / 1 out \|", md)
    assert re.search(r"\| web1 \| www\.lab\.example \| 200 \| 20\d\d-\d\d-\d\dT", md)  # the certificate's expiry
    assert "chain: verified" in md
    assert re.search(r"\| ollama1 \| smollm2:135m \| ", md)  # read on the host from Ollama's loopback API
    assert re.search(r"\| ollama1 \| lab, ollama \| running \| ssh:active, ollama:active \|", md)
    shot = tmp_path / "status_report.png"
    page = Page(html.as_uri(), expression=CHARTS_JS, screenshot=shot)
    assert page.errors == []
    charts = {name: (svgs, shapes) for name, svgs, shapes in json.loads(page.value)}
    assert set(charts) == {"usage", "certificates", "audit", "spend"} and all(v[0] == 1 and v[1] > 5 for v in charts.values())
    if os.environ.get("LOCUS_OPS_SCREENSHOT"):  # how docs/ops-status-report.png is refreshed
        shutil.copy(shot, os.environ["LOCUS_OPS_SCREENSHOT"])


def test_health_review_with_a_unit_down_waits_for_a_human(ops):
    ops.ssh("rtr2", "systemctl stop bird")
    try:
        out = ops.playbook("health_review.yml")
    finally:
        ops.ssh("rtr2", "systemctl start bird")
    assert out.returncode == 0, out.stdout[-3000:]
    _nothing_changed_on_hosts(out.stdout)
    decision_tag = re.search(r"guard (LOCUS-VALIDATE\d{8}-\d{3,}): needs_approval", out.stdout).group(1)
    decision = dict(_records(ops, "LOCUS-VALIDATE"))[decision_tag]
    rules = {(f["rule"], f["evidence"].get("host")) for f in decision["findings"] if f["source"] == "deterministic"}
    assert ("unit_failed", "rtr2") in rules and ("bgp_down", "rtr1") in rules
    assert decision["deterministic_risk"] == "high" and decision["risk"] in ("high", "critical")  # agents never lower it
    tag = re.search(r"health_review (LOCUS-ARTIFACT\d{8}-\d{3,}): ", out.stdout).group(1)
    md = (ops.reports / f"health_review-{tag}.md").read_text()
    assert md.index("## Deterministic findings") < md.index("## Agent reviews")
    assert re.search(rf"`locus (--state-dir \S+ )?approve {decision_tag}( --policy \S+)?`", md), md  # as a human pastes it
    assert "verdict is advisory only" in md, md
    assert re.search(r"\| high \| unit_failed \| rtr2 \| bird on rtr2 is (inactive|failed)", md)
    page = Page((ops.reports / f"health_review-{tag}.html").as_uri(), expression="document.body.innerText")
    assert page.errors == [] and "needs_approval" in page.value
    waiting = subprocess.run([str(VENV_BIN / "locus"), "audit", "show", "--tag", decision_tag, "--json"], env={**os.environ, **ops.env},
                             capture_output=True, text=True, check=True).stdout
    assert "needs_approval" in waiting
    _bgp_established(ops, "rtr1")
    _bgp_established(ops, "rtr2")


def _probe_journal(ops, host, since, own_sessions=True):
    """ops_probe's journal part on one host, run as the collector runs it (over SSH as root)."""
    return ops.module(host, "locus.infra.ops_probe", f"journal_since={since} journal_own_sessions={own_sessions} cpu_sample=0")["journal"]


def test_journal_errors_leave_out_the_collectors_own_ssh_sessions_only(ops):
    # Every SSH login as root from the controller logs "pam_env(sshd:session): Unable to open env file:
    # /etc/default/locale" at err on these hosts: the collector's own logins must not move the count.
    since = int(time.time())
    time.sleep(1.1)
    ops.ssh("rtr1", "true")  # a login of the collector's user from the controller's address
    first = _probe_journal(ops, "rtr1", since)
    assert first["own_session"] >= 1, first
    raw = ops.ssh("rtr1", f"journalctl -q -o cat -p err --since=@{since} SYSLOG_IDENTIFIER=sshd")
    assert "Unable to open env file: /etc/default/locale" in raw, raw  # what is left out exists
    ops.ssh("rtr1", "true")
    ops.ssh("rtr1", "true")
    again = _probe_journal(ops, "rtr1", since)
    assert again["count"] == first["count"] and again["own_session"] >= first["own_session"] + 2, (first, again)

    # Foreign SSH errors still count: a port probe from web1 (pre-authentication, another address) and a
    # session of another user (locus, the lab's administrator) from the controller's own address.
    ops.ssh("web1", "timeout 5 bash -c 'exec 3<>/dev/tcp/10.77.0.11/22; sleep 1'")
    ops.ssh("rtr1", "true", user="locus")
    foreign = _probe_journal(ops, "rtr1", since)
    assert foreign["count"] == first["count"] + 2, (first, foreign)
    assert next(u for u in foreign["units"] if u["unit"] == "ssh.service")["count"] >= 2, foreign
    # Asked to count everything, the probe counts the own sessions' errors too.
    everything = _probe_journal(ops, "rtr1", since, own_sessions=False)
    assert everything["own_session"] == 0 and everything["count"] >= foreign["count"] + foreign["own_session"], (foreign, everything)
