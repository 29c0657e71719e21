"""locus.infra.bird_tree's transaction (_bird_tree) against real BIRD 2 daemons.

Two BIRD daemons (Debian's bird2, installed by `make setup`) run in a network namespace of
their own (`unshare -n`: their kernel, their loopback, nothing of the host's) and peer over
BGP on 127.0.0.1 and 127.0.0.2. Router "a" is managed by the transaction with its own
configuration directory and control socket; router "b" is its peer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ansible_collections.locus.infra.plugins.module_utils import _bird_tree as bt
from ansible_collections.locus.infra.plugins.module_utils import _config_tree as ct

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # two BIRD daemons and a few BGP session cycles: about a minute

BIRD, BIRDC = shutil.which("bird") or "/usr/sbin/bird", shutil.which("birdc") or "/usr/sbin/birdc"

MAIN = """router id 127.0.0.1;
include "locus/secrets.conf";
include "locus/filters.conf";
protocol device locus_device { scan time 10; }
protocol static locus_origin4 {
  ipv4;
  route 192.0.2.0/24 unreachable;
}
include "locus/bgp.conf";
"""
BGP = """protocol bgp b {{
  description "{description}";
  local 127.0.0.1 as 65001;
  neighbor 127.0.0.2 as 65002;
  strict bind;
  multihop;
  connect retry time 2;
  error wait time 1, 3;
{password}  ipv4 {{ import all; export where proto = "locus_origin4"; }};
}}
"""
PEER = """router id 127.0.0.2;
protocol device { scan time 10; }
protocol static { ipv4; route 198.51.100.0/24 unreachable; }
protocol bgp a {
  local 127.0.0.2 as 65002;
  neighbor 127.0.0.1 as 65001;
  strict bind;
  multihop;
  connect retry time 2;
  error wait time 1, 3;
  ipv4 { import all; export all; };
}
"""


def tree(description="baseline", password=None, filters="# none\n"):
    """The desired tree of router a, as Entry objects (what the module builds from its arguments)."""
    secrets = f'define locus_password_b = "{password}";\n' if password else "# none\n"
    return [
        ct.Entry("bird.conf", MAIN, 0o640, group="bird"),
        ct.Entry("locus/bgp.conf", BGP.format(description=description, password="  password locus_password_b;\n" if password else ""),
                 0o640, group="bird"),
        ct.Entry("locus/filters.conf", filters, 0o640, group="bird"),
        ct.Entry("locus/secrets.conf", secrets, 0o640, group="bird", secret=True),
    ]


class Lab:
    def __init__(self, base):
        self.base = base
        self.conf = os.path.join(base, "a")
        self.sock = os.path.join(base, "a.ctl")
        self.stage = os.path.join(base, "stage")
        self.bird = bt.Bird(BIRD, BIRDC, self.sock)

    def transaction(self, **kw):
        opts = {"sessions": ["b"], "confirm_sessions": "established", "confirm_wait": 20, "configure_timeout": 60}
        opts.update(kw)
        return bt.Transaction(self.bird, self.conf, "bird.conf", "locus", self.stage, **opts)

    def live(self):
        return ct.read_live(self.conf, "bird.conf", "locus")

    def show(self, *words):
        return self.bird.command(*words, verbose=False)[1]

    def wait_established(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if bt.established(self.bird.protocols()) == ["b"]:
                return True
            time.sleep(0.3)
        return False

    def reset(self):
        """Router a back on the baseline tree, confirmed, session up; no leftovers."""
        shutil.rmtree(os.path.join(self.conf, ".locus-rollback"), ignore_errors=True)
        bt.write_entries(self.conf, tree(), "locus")
        rc, out = self.bird.configure()
        assert rc == 0, out
        self.bird.confirm()  # a timer a test left running
        assert self.wait_established(), self.show("show", "protocols", "all")


@pytest.fixture(scope="module")
def lab():
    base = tempfile.mkdtemp(prefix="locus-bird-")
    os.chmod(base, 0o755)  # noqa: S103 - BIRD's group reads the staged trees below it
    os.makedirs(os.path.join(base, "a"))
    lab = Lab(base)
    bt.write_entries(lab.conf, tree(), "locus")
    Path(base, "b.conf").write_text(PEER)
    start = (f"ip link set lo up && {BIRD} -c {lab.conf}/bird.conf -s {lab.sock} -P {base}/a.pid"
             f" && {BIRD} -c {base}/b.conf -s {base}/b.ctl -P {base}/b.pid")
    proc = subprocess.run(["unshare", "--net", "sh", "-ec", start], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    try:
        assert lab.wait_established(), lab.show("show", "protocols", "all")
        yield lab
    finally:
        for name in ("a.pid", "b.pid"):
            try:
                os.kill(int(Path(base, name).read_text()), 15)
            except (OSError, ValueError):
                pass
        shutil.rmtree(base, ignore_errors=True)


def test_a_tree_bird_cannot_parse_is_named_by_live_file_line_and_column_and_nothing_changes(lab):
    lab.reset()
    before, since = lab.live(), lab.show("show", "protocols", "b")
    bad = tree(filters="filter broken {\n  if net ~ [ 10.0.0.0/8+ then accept;\n  reject;\n}\n")
    t = lab.transaction()
    with pytest.raises(bt.TreeError) as exc:
        t.apply(bad, changed=True, pending=False)
    assert exc.value.stage == "parse"
    assert str(exc.value).startswith(f"BIRD rejects the new configuration (bird -p), nothing was changed: {lab.conf}/locus/filters.conf:2:")
    assert "syntax error" in str(exc.value) and lab.stage not in str(exc.value)
    assert lab.live() == before and lab.show("show", "protocols", "b") == since  # not even restarted
    assert os.listdir(lab.stage) == [] and not t.pending()


def test_a_change_is_loaded_waited_for_and_confirmed(lab):
    lab.reset()
    new = tree(description="changed by the transaction")
    changes, _diff = ct.compare(new, lab.live(), lab.conf)
    assert changes == [{"path": f"{lab.conf}/locus/bgp.conf", "action": "changed", "what": ["content"]}]
    t = lab.transaction(confirm_sessions="all")
    result = t.apply(new, changed=True, pending=False)
    assert result["sessions_before"] == ["b"] and result["sessions_up"] == ["b"] and result["sessions_not_up"] == []
    assert result["log"][-1] == "confirmed"
    assert ct.compare(new, lab.live(), lab.conf)[0] == []
    assert "changed by the transaction" in lab.show("show", "protocols", "all", "b")  # BIRD runs the new tree
    assert lab.bird.confirm()[0] == "expired"  # nothing left unconfirmed
    assert not t.pending() and os.listdir(lab.stage) == []


def test_sessions_that_do_not_come_up_undo_the_change_and_restore_the_files(lab):
    lab.reset()
    before = lab.live()
    t = lab.transaction(confirm_wait=4)
    with pytest.raises(bt.TreeError) as exc:
        t.apply(tree(password="one-sided-Zq8"), changed=True, pending=False)  # the peer has no password
    msg = str(exc.value)
    assert exc.value.stage == "sessions"
    assert msg.startswith(f"the change was undone - BIRD runs the previous configuration again and the previous files are back in "
                          f"{lab.conf} (at 'sessions'): sessions not Established 4 s after the change: b (b BGP ")
    assert "Zq8" not in msg
    assert lab.live() == before and not t.pending()
    assert exc.value.extra["rollback"]["undone"] and exc.value.extra["rollback"]["sessions_back"] == ["b"]


def test_a_change_an_earlier_run_left_unconfirmed_is_loaded_again(lab):
    lab.reset()
    new = tree(description="left by a run that died")
    dead = lab.transaction()
    dead.validate(new)
    dead.snapshot()
    dead.write(new)
    assert lab.bird.configure_timeout(60)[0]  # ... and the run died here
    t = lab.transaction()
    assert t.pending()
    result = t.apply(new, changed=False, pending=True)
    assert result["sessions_up"] == ["b"] and not t.pending()
    assert lab.bird.confirm()[0] == "expired"
    assert "left by a run that died" in lab.show("show", "protocols", "all", "b")


def test_birds_own_timer_undoes_a_change_that_was_not_confirmed_in_time(lab):
    lab.reset()
    before = lab.live()
    # BIRD undoes by itself after 1 s; the session (down under the new tree) comes back on the old one.
    t = lab.transaction(confirm_sessions="all", confirm_wait=30, configure_timeout=1)
    with pytest.raises(bt.TreeError) as exc:
        t.apply(tree(password="one-sided-Zq8"), changed=True, pending=False)
    assert exc.value.stage == "confirm"
    assert str(exc.value).startswith("the change was undone by BIRD's own timer and the previous files are back in ")
    assert "its undo timer of 1 s ran out first" in str(exc.value)
    assert lab.live() == before and not t.pending()
    assert not exc.value.extra["rollback"]["undone"] and exc.value.extra["rollback"]["timer_expired"]


def test_the_module_predicts_in_check_mode_applies_and_changes_nothing_the_second_time(lab, tmp_path):
    """locus.infra.bird_tree through ansible-playbook: check + diff, the real run, the rerun, and a rejection."""
    lab.reset()
    before = lab.live()
    files = [{"path": e.path, "content": e.content.decode()} for e in tree(description="by the module", password=None)]
    secrets = [{"path": "locus/secrets.conf", "content": 'define locus_password_b = "never-shown-Zq8";\n'}]
    args = {"conf_dir": lab.conf, "files": [f for f in files if f["path"] != "locus/secrets.conf"], "secret_files": secrets,
            "sessions": ["b"], "confirm_wait": 5, "configure_timeout": 40, "stage_dir": lab.stage, "control_socket": lab.sock,
            "bird_binary": BIRD, "birdc_binary": BIRDC}

    def play(check=False, **over):
        book = tmp_path / "play.yml"
        book.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False,
                                     "tasks": [{"locus.infra.bird_tree": {**args, **over}, "register": "r"},
                                               {"ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": str(tmp_path / "r.json")},
                                                "check_mode": False}]}]))
        env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "LOCUS_STATE_DIR": str(tmp_path / "state"),
               "ANSIBLE_PYTHON_INTERPRETER": sys.executable}
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-c", "local", "-i", "localhost,", str(book)]
        run = subprocess.run([*argv, *(["--check", "--diff"] if check else [])], capture_output=True, text=True, env=env, check=False)
        return run, (json.loads((tmp_path / "r.json").read_text()) if run.returncode == 0 else None)

    run, r = play(check=True)
    assert run.returncode == 0, run.stdout[-3000:]
    assert r["changed"] and {c["path"] for c in r["changes"]} == {f"{lab.conf}/locus/bgp.conf", f"{lab.conf}/locus/secrets.conf"}
    diffs = {d["after_header"]: d for d in r["diff"]}
    assert 'description "by the module";' in diffs[f"{lab.conf}/locus/bgp.conf"]["after"]
    assert diffs[f"{lab.conf}/locus/secrets.conf"]["after"].startswith("(secret content not shown, sha256 ")
    assert r["log"] == ["bird -p on the staged tree: ok", "birdc configure check on the staged tree: ok"]
    assert lab.live() == before and "Zq8" not in run.stdout

    run, r = play()
    assert run.returncode == 0 and r["changed"], run.stdout[-3000:]
    assert r["sessions_up"] == ["b"] and "Zq8" not in run.stdout
    run, r = play()
    assert run.returncode == 0 and not r["changed"] and r["changes"] == [], run.stdout[-3000:]

    run, _r = play(check=True, files=[*args["files"][:2], {"path": "locus/filters.conf", "content": "filter x {\n  reject\n}\n"}])
    assert run.returncode == 2
    assert f"BIRD rejects the new configuration (bird -p), nothing was changed: {lab.conf}/locus/filters.conf:3:1" in run.stdout
