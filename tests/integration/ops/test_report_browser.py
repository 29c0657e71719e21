"""Report pages in headless Chromium (Debian's chromium, driven over the DevTools pipe): the status
report and the health review render their charts with no console error and no request, and the
check itself catches console errors, exceptions and failed loads (a page built to fail)."""

from __future__ import annotations

import json
import os
import re
import subprocess

from browser import CHARTS_JS, Page
from ops_data import store_facts

from ansible_collections.locus.infra.plugins.plugin_utils.guard import _policy
from ansible_collections.locus.infra.plugins.plugin_utils.ops import _ops_report
from locus_testlib import REPO, VENV_BIN

HOSTS = {
    "rtr1": {"roles": ["routers"], "probe": {"system_state": "running", "failed_units": [], "units": [{"name": "bird", "active": "active"}],
                                             "memory": {"used_percent": 41.0}, "disks": [{"mount": "/", "used_percent": 97.0}], "cpu_percent": 12.5,
                                             "bgp": [{"name": "rtr2_v4", "state": "up", "bgp_state": "Established", "neighbor": "10.77.0.12",
                                                      "neighbor_as": 65002, "channels": [{"family": "ipv4", "imported": 1, "exported": 1}]}]}},
    "web1": {"roles": ["web"], "probe": {"unreachable": True, "msg": "<img src=x onerror=alert(1)>"}},
}
FACTS = store_facts(halt_reason="<b>BGP</b> flapping", spent=0.42)


def _page(tmp_path, name, text, **kw):
    path = tmp_path / name
    path.write_text(text)
    return Page(path.as_uri(), **kw)


def test_the_check_catches_console_errors_exceptions_and_failed_loads(tmp_path):
    page = _page(tmp_path, "bad.html", "<!doctype html><title>bad</title><img src='missing.png'>"
                                       "<script>console.error('boom-marker'); undefined_function();</script>")
    text = "\n".join(page.errors)
    assert "console.error: boom-marker" in text and "undefined_function" in text and "ERR_FILE_NOT_FOUND" in text


def test_status_report_and_health_review_render_their_charts_cleanly(tmp_path):
    policy = _policy.load_policy(environ={})
    data = {"scope": "lab", "hosts": HOSTS, "facts": FACTS, "proxmox": {"pve1": {"cpu_ratio": 0.2, "memory_ratio": 0.5, "disk_ratio": 0.3}},
            "sites": [{"host": "web1", "name": "www.lab.example", "status": 200, "not_after": "2027-12-06T00:00:00Z"},
                      {"host": "web1", "name": "old.lab.example", "status": 200, "not_after": "2026-12-10T00:00:00Z"}],
            "backups": {"vms": {"web1": "web1", "db1": "db1"}, "max_age_hours": 26, "info": {"by_name": {
                "web1": {"vmid": 101, "covered": True, "jobs": ["daily"], "age_hours": 3.5, "last_backup_iso": "2026-12-06T02:30:00Z"},
                "db1": {"vmid": 102, "covered": True, "jobs": ["daily"], "age_hours": 49.0, "last_backup_iso": "2026-12-04T09:00:00Z"}}}}}
    doc = _ops_report.status_document(data, policy, "LOCUS-ARTIFACT20261206-001")
    page = _page(tmp_path, "status.html", _ops_report.html(doc), expression=CHARTS_JS, screenshot=tmp_path / "status.png")
    assert page.errors == []  # no console error, no exception, no request that failed (the page makes none)
    charts = {name: (svgs, shapes) for name, svgs, shapes in json.loads(page.value)}
    assert set(charts) == {"usage", "certificates", "backups", "audit", "spend"}
    assert all(svgs == 1 and shapes > 5 for svgs, shapes in charts.values())  # each an SVG with drawn bars
    assert (tmp_path / "status.png").stat().st_size > 20_000
    hostile = Page((tmp_path / "status.html").as_uri(), expression="document.querySelectorAll('img, b').length")
    assert hostile.value == 0  # text from hosts and the halt reason stays text

    review = {"scope": "lab", "backend": "embedded", "findings": [{"rule": "bgp_down", "risk": "high", "message": "BGP x down",
                                                                  "evidence": {"host": "rtr1"}}],
              "decision": {"ref_tag": "LOCUS-VALIDATE20261206-001", "decision": "needs_approval", "risk": "high", "reasons": ["x"]},
              "reviews": [], "facts": {"guard": FACTS["guard"]}}
    doc = _ops_report.health_document(review, policy, "LOCUS-ARTIFACT20261206-002")
    page = _page(tmp_path, "review.html", _ops_report.html(doc), expression="document.body.innerText")
    assert page.errors == [] and "advisory only" in page.value and "needs_approval" in page.value


def test_the_playbooks_are_callable_by_fqcn():
    # From another directory, by collection name - how cron, a systemd timer or AWX call them.
    out = subprocess.run([str(VENV_BIN / "ansible-playbook"), "--syntax-check", "-i", str(REPO / "inventory" / "lab"), "locus.infra.heartbeat",
                          "locus.infra.status_report", "locus.infra.health_review"], cwd="/", capture_output=True, text=True,
                         env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(re.findall(r"locus/infra/playbooks/(\w+)\.yml", out.stdout)) == ["health_review", "heartbeat", "status_report"]
