# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""BIRD 2 configuration as one tree: stage, validate, write, load with BIRD's undo timer, confirm or undo.

Private API of the collection (may change without notice). Runs on the managed host (shipped
with ``locus.infra.bird_tree``); standard library only. The desired files, their comparison,
the file writer and the lock are :mod:`_config_tree`'s (nginx_tree's too), the waits
:mod:`_retry`'s, the parser of ``birdc show protocols`` is ops_probe's.

The tree is the main file (``bird.conf``) plus one directory owned entirely by the caller
(``locus/``) below BIRD's configuration directory; the main file includes the rest by
relative path, so a staged copy is the whole configuration. Applying a changed tree:

1. stage it in a directory of its own (``/run/locus-bird2/stage-*``) and let ``bird -p -c``
   and the running daemon (``birdc configure check "<stage>/bird.conf"``, as BIRD's own user)
   parse it - a rejection names the live file with line and column, and nothing changed;
2. copy the live tree to the rollback directory (kept until the change is confirmed, so a run
   that dies leaves a trace the next run finds), write the new files in place;
3. ``birdc configure check`` in place, ``birdc configure timeout N`` (BIRD returns to the old
   configuration by itself after N s unless confirmed - also when the controller dies);
4. wait for the BGP sessions (see :func:`required_sessions`);
5. ``birdc configure confirm`` and drop the rollback copy - or ``birdc configure undo``, put
   the previous files back and wait for the sessions that were up before.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import tempfile
import time

from ansible_collections.locus.infra.plugins.module_utils._config_tree import (
    Entry,
    Lock,
    TreeError,
    desired,
    differences,
    group_id,
    make_dir,
    parse_mode,
    read_live,
    relabel,
    tree_name,
    write_tree,
)
from ansible_collections.locus.infra.plugins.module_utils._ops_probe import parse_bird_protocols
from ansible_collections.locus.infra.plugins.module_utils._retry import wait_for

# The API the module and the tests use (TreeError is _config_tree's, shared with nginx_tree).
__all__ = ["Bird", "Transaction", "TreeError", "established", "required_sessions", "run", "write_entries"]

_ERROR_LINE = re.compile(r"^[89][0-9]{3}[ -]|[Uu]nable")
_CODE = re.compile(r"^[0-9]{4}[ -]")


def _run(argv):
    """``argv`` -> (rc, stdout, stderr) as text; a missing program is rc 127."""
    try:
        proc = subprocess.run(argv, capture_output=True, check=False)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return 127, "", f"{argv[0]}: not found"
        raise
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def has_code(text, code):
    """Whether a ``birdc -v`` reply has a line with this reply code (``0018``, ``0022`` ...)."""
    return re.search(rf"^{code}[ -]", text, re.MULTILINE) is not None


class Bird:
    """The BIRD binaries: ``bird -p`` and ``birdc`` on one control socket."""

    def __init__(self, bird="/usr/sbin/bird", birdc="/usr/sbin/birdc", socket=None, run=_run):
        self.bird = bird
        self.birdc = birdc
        self.socket = socket
        self.run = run

    def parse(self, conf):
        """``bird -p -c conf`` -> (ok, messages)."""
        rc, out, err = self.run([self.bird, "-p", "-c", conf])
        lines = [re.sub(r"^bird: ", "", line) for line in (err + out).splitlines()
                 if line.strip() and "insecure memory" not in line]
        return rc == 0, "; ".join(lines)

    def command(self, *words, verbose=True):
        """``birdc [-s socket] [-v] words`` -> (rc, output)."""
        argv = [self.birdc] + (["-s", self.socket] if self.socket else []) + (["-v"] if verbose else []) + list(words)
        rc, out, err = self.run(argv)
        return rc, (out + err).strip()

    def check(self, conf=None):
        """``birdc configure check ["conf"]`` -> (ok, error lines)."""
        rc, out = self.command("configure", "check", *([f'"{conf}"'] if conf else []))
        ok = rc == 0 and has_code(out, "0020")
        return ok, "; ".join(_CODE.sub("", line) for line in out.splitlines() if _ERROR_LINE.search(line))

    def configure_timeout(self, seconds):
        """``birdc configure timeout N``: loads the live tree with BIRD's undo timer -> (ok, output)."""
        rc, out = self.command("configure", "timeout", str(int(seconds)))
        ok = rc == 0 and has_code(out, "0022") and not _ERROR_LINE.search(out.split("\n", 1)[-1])
        return ok, out

    def confirm(self):
        """``birdc configure confirm`` -> ``confirmed``, ``expired`` (nothing left to confirm) or ``failed``, and the output."""
        rc, out = self.command("configure", "confirm")
        if rc == 0 and has_code(out, "0018"):
            return "confirmed", out
        if has_code(out, "0019"):
            return "expired", out
        return "failed", out

    def undo(self):
        return self.command("configure", "undo")

    def configure(self):
        return self.command("configure")

    def protocols(self):
        """The BGP sessions of ``birdc show protocols`` (name, state, info ...); [] when BIRD does not answer."""
        rc, out = self.command("show", "protocols", verbose=False)
        return parse_bird_protocols(out) if rc == 0 else []


def established(protocols):
    return sorted(p["name"] for p in protocols if p["state"] == "up" and p["info"].startswith("Established"))


def required_sessions(mode, sessions, before):
    """Which sessions must be Established before a change is confirmed, and which are waited for.

    ``established``: those of ``sessions`` that were up ``before`` (a change must not break what
    works); the others get the same time but do not block. ``all``: every one of ``sessions``.
    ``none``: nothing is waited for.
    """
    if mode == "none":
        return [], []
    if mode == "all":
        return list(sessions), list(sessions)
    return [s for s in sessions if s in before], list(sessions)


DIR_MODE, DIR_GROUP = 0o750, "bird"  # BIRD's daemon user reads the tree, nobody else


def write_entries(base, entries, tree):
    """Write ``entries`` below ``base`` (a staging directory, or the live one: each file is replaced atomically)."""
    write_tree(base, entries, tree, DIR_MODE, DIR_GROUP)


def copy_tree(src, dst, main_file, tree):
    """Copy the main file and the tree directory of ``src`` into ``dst`` (those that exist), keeping modes and owners."""
    if os.path.lexists(os.path.join(src, main_file)):
        shutil.copy2(os.path.join(src, main_file), os.path.join(dst, main_file))
        _copy_owner(os.path.join(src, main_file), os.path.join(dst, main_file))
    if os.path.isdir(os.path.join(src, tree)):
        shutil.copytree(os.path.join(src, tree), os.path.join(dst, tree), symlinks=True, copy_function=_copy_with_owner)
        _copy_owner(os.path.join(src, tree), os.path.join(dst, tree))


def _copy_with_owner(src, dst):
    shutil.copy2(src, dst, follow_symlinks=False)
    _copy_owner(src, dst)


def _copy_owner(src, dst):
    st = os.lstat(src)
    os.lchown(dst, st.st_uid, st.st_gid)


class Transaction:
    """Stage and validate, write, load with BIRD's undo timer, wait for the sessions, confirm - or undo and restore."""

    def __init__(self, bird, conf_dir, main_file="bird.conf", tree="locus", stage_parent="/run/locus-bird2",
                 rollback_dir=None, sessions=(), confirm_sessions="established", confirm_wait=60, configure_timeout=180,
                 clock=time.monotonic, sleep=time.sleep):
        self.bird = bird
        self.conf_dir = conf_dir
        self.main_file = main_file
        self.tree = tree
        self.stage_parent = stage_parent
        self.rollback_dir = rollback_dir or os.path.join(conf_dir, ".locus-rollback")
        self.sessions = list(sessions)
        self.confirm_sessions = confirm_sessions
        self.confirm_wait = confirm_wait
        self.configure_timeout = configure_timeout
        self.clock = clock
        self.sleep = sleep
        self.log = []  # what happened, in order

    def pending(self):
        """Whether an earlier run wrote a tree and never confirmed it (its rollback copy is still there)."""
        return os.path.isdir(self.rollback_dir)

    # ---------------------------------------------------------------- validate in a staging copy
    def validate(self, entries, daemon=True):
        """Stage ``entries`` and let ``bird -p`` and (with ``daemon``) the running BIRD parse them.

        Raises TreeError (stage ``parse`` or ``check``) naming the live file, line and column.
        """
        make_dir(self.stage_parent, DIR_MODE, group_id(DIR_GROUP))
        stage = tempfile.mkdtemp(prefix="stage-", dir=self.stage_parent)
        try:
            make_dir(stage, DIR_MODE, group_id(DIR_GROUP))
            write_entries(stage, entries, self.tree)
            conf = os.path.join(stage, self.main_file)
            ok, out = self.bird.parse(conf)
            self.log.append(f"bird -p on the staged tree: {'ok' if ok else 'rejected'}")
            if not ok:
                out = relabel(out, stage, self.conf_dir)
                raise TreeError(f"BIRD rejects the new configuration (bird -p), nothing was changed: {out}", "parse",
                                parse_output=out)
            if daemon:
                ok, out = self.bird.check(conf)
                self.log.append(f"birdc configure check on the staged tree: {'ok' if ok else 'rejected'}")
                if not ok:
                    out = relabel(out, stage, self.conf_dir)
                    raise TreeError(f"BIRD rejects the new configuration (birdc configure check), nothing was changed: {out}",
                                    "check", parse_output=out)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    # ---------------------------------------------------------------- the files
    def snapshot(self):
        """The live tree (the last confirmed one) into the rollback directory, atomically."""
        new = self.rollback_dir + ".new"
        shutil.rmtree(new, ignore_errors=True)
        os.mkdir(new, 0o750)
        copy_tree(self.conf_dir, new, self.main_file, self.tree)
        os.rename(new, self.rollback_dir)
        self.log.append(f"kept the running tree in {self.rollback_dir}")

    def write(self, entries):
        """Write the desired tree in place; files in the tree that are not desired are removed."""
        write_entries(self.conf_dir, entries, self.tree)
        wanted = {os.path.normpath(e.path) for e in entries}
        for dirpath, _dirs, files in os.walk(os.path.join(self.conf_dir, self.tree)):
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), self.conf_dir)
                if rel not in wanted:
                    os.unlink(os.path.join(dirpath, name))
        self.log.append("wrote the new tree")

    def restore(self):
        """Put the rollback copy back (files that did not exist before go) and drop it."""
        live_main = os.path.join(self.conf_dir, self.main_file)
        live_tree = os.path.join(self.conf_dir, self.tree)
        if not os.path.isdir(self.rollback_dir):
            raise TreeError(f"no rollback copy in {self.rollback_dir}", "restore")
        shutil.rmtree(live_tree, ignore_errors=True)
        if os.path.lexists(os.path.join(self.rollback_dir, self.main_file)):
            os.replace(os.path.join(self.rollback_dir, self.main_file), live_main)
        elif os.path.lexists(live_main):
            os.unlink(live_main)
        if os.path.isdir(os.path.join(self.rollback_dir, self.tree)):
            os.rename(os.path.join(self.rollback_dir, self.tree), live_tree)
        shutil.rmtree(self.rollback_dir, ignore_errors=True)
        self.log.append(f"restored the previous files in {self.conf_dir}")

    # ---------------------------------------------------------------- the sessions
    def wait(self, sessions, timeout):
        """Poll until every session of ``sessions`` is Established or ``timeout`` seconds passed; returns the last protocols."""
        def all_up(protocols):
            up = established(protocols)
            return all(s in up for s in sessions)

        return wait_for(self.bird.protocols, all_up, timeout=max(timeout, 0), interval=0.5, cap=2.0, sleep=self.sleep,
                        clock=self.clock)[1]

    # ---------------------------------------------------------------- the transaction
    def apply(self, entries, changed, pending):
        """Load ``entries`` (``changed``: they differ from the live files; ``pending``: an earlier run
        left its change unconfirmed). Returns a result dict or raises TreeError after rolling back."""
        if changed:
            self.validate(entries)
        if not pending:
            try:
                self.snapshot()
            except OSError as exc:
                raise TreeError(f"cannot keep the running tree in {self.rollback_dir}, nothing was changed: {exc}", "apply") from exc
        state = {"armed": False, "expired": False, "before": []}
        try:
            self.write(entries)
            result = self._commit(state)
        except TreeError as exc:
            self._rollback(exc, state, pending)
            raise
        except Exception as exc:  # noqa: BLE001 - anything unexpected: the previous tree goes back all the same
            err = TreeError(f"unexpected error: {type(exc).__name__}: {exc}", "apply")
            self._rollback(err, state, pending)
            raise err from exc
        shutil.rmtree(self.rollback_dir, ignore_errors=True)
        result["log"] = self.log
        return result

    def _commit(self, state):
        ok, out = self.bird.check()
        self.log.append(f"birdc configure check in place: {'ok' if ok else 'rejected'}")
        if not ok:
            raise TreeError(f"BIRD rejects the configuration in place (birdc configure check): {out}", "check", parse_output=out)
        state["before"] = established(self.bird.protocols())
        required, wait_for = required_sessions(self.confirm_sessions, self.sessions, state["before"])
        ok, out = self.bird.configure_timeout(self.configure_timeout)
        if not ok:
            raise TreeError(f"birdc configure timeout {self.configure_timeout} failed: {_oneline(out)}", "configure")
        state["armed"] = True
        self.log.append(f"loaded with BIRD's undo timer of {self.configure_timeout} s")
        protocols = self.wait(wait_for, self.confirm_wait) if wait_for else []
        up = established(protocols)
        missing = [s for s in required if s not in up]
        if missing:
            detail = "; ".join(f"{p['name']} BGP {p['state']} {p['since']} {p['info']}".strip() for p in protocols if p["name"] in missing)
            raise TreeError(f"sessions not Established {self.confirm_wait:g} s after the change: {', '.join(sorted(missing))}"
                            f"{' (' + detail + ')' if detail else ''}", "sessions", sessions_before=state["before"],
                            sessions_up=up)
        status, out = self.bird.confirm()
        if status != "confirmed":
            state["armed"] = status != "expired"
            state["expired"] = status == "expired"
            raise TreeError(f"BIRD did not confirm ({_oneline(out)}) - its undo timer of {self.configure_timeout} s ran out first",
                            "confirm")
        self.log.append("confirmed")
        return {"sessions_before": state["before"], "sessions_up": up, "sessions_required": required,
                "sessions_not_up": [s for s in wait_for if s not in up]}

    def _rollback(self, exc, state, pending):
        """Undo in BIRD (when it loaded the change), put the previous files back, wait for the sessions."""
        if state["armed"]:
            rc, out = self.bird.undo()
            self.log.append(f"birdc configure undo: {'ok' if rc == 0 else _oneline(out)}")
        self.restore()
        if pending:
            # An earlier run's unconfirmed change may still be what BIRD's undo returns to: load the
            # restored (last confirmed) files so that disk and daemon agree.
            rc, out = self.bird.configure()
            self.log.append(f"birdc configure (the restored files): {'ok' if rc == 0 else _oneline(out)}")
        back = []
        if state["armed"] and state["before"]:
            wanted = [s for s in self.sessions if s in state["before"]]
            back = established(self.wait(wanted, self.confirm_wait)) if wanted else []
        what = ("undone - BIRD runs the previous configuration again" if state["armed"]
                else "undone by BIRD's own timer" if state["expired"] else "not loaded")
        exc.args = (f"the change was {what} and the previous files are back in {self.conf_dir} (at '{exc.stage}'): {exc}",)
        exc.extra.update(rollback={"restored": True, "undone": state["armed"], "timer_expired": state["expired"],
                                   "sessions_back": back}, log=self.log)


def _oneline(text):
    return "; ".join(line.strip() for line in (text or "").splitlines()[1:] if line.strip()) or (text or "").strip()


# ------------------------------------------------------------------ the module's job -----------
LOCK_FILE = "/run/lock/locus-bird-tree.lock"
DEFAULT_SOCKET = "/run/bird/bird.ctl"


def run(module):
    """Everything ``locus.infra.bird_tree`` does: check the options, compare the desired tree with
    the live one, then validate it (check mode) or apply it in one transaction under the lock.

    Returns the module result; raises :class:`TreeError` whose ``extra`` is the result so far.
    """
    p = module.params
    tree = tree_name(p["tree"])
    entries = desired_entries(p, tree)
    bird = Bird(p["bird_binary"], p["birdc_binary"], p["control_socket"])
    transaction = Transaction(bird, p["conf_dir"], p["main_file"], tree, p["stage_dir"], p["rollback_dir"], p["sessions"],
                              p["confirm_sessions"], p["confirm_wait"], p["configure_timeout"])
    if module.check_mode:
        result, changed = _differences(module, tree, transaction, entries)
        if changed and p["validate_in_check_mode"]:
            # The daemon's own check only where a daemon answers (not before BIRD is installed).
            _fail_with(result, transaction.validate, entries, daemon=os.path.exists(p["control_socket"] or DEFAULT_SOCKET))
            result["log"] = transaction.log
        return result
    if not os.path.isdir(p["conf_dir"]):
        raise TreeError(f"{p['conf_dir']} does not exist (is BIRD installed?)", "validate")
    with Lock(LOCK_FILE):
        # Compared under the lock: another run may have changed the tree while this one waited.
        result, changed = _differences(module, tree, transaction, entries)
        if result["changed"]:
            result.update(_fail_with(result, transaction.apply, entries, changed, result["pending"]))
    return result


def _fail_with(result, step, *args, **kwargs):
    """Run a step; its TreeError carries the result so far (nothing applied: untouched, or rolled back)."""
    try:
        return step(*args, **kwargs)
    except TreeError as exc:
        result.update(exc.extra)
        result["changed"] = False
        exc.extra = result
        raise


def desired_entries(params, tree):
    """The desired tree from the options ``files`` and ``secret_files`` (all with O(mode) and O(group)).
    Raises TreeError (stage ``validate``)."""
    out = desired(_entries(params), params["main_file"], tree)
    if params["configure_timeout"] < params["confirm_wait"] + 30:
        raise TreeError(f"configure_timeout ({params['configure_timeout']} s) must be at least confirm_wait + 30 "
                        f"({params['confirm_wait'] + 30:g} s), or BIRD's timer undoes the change before it can be confirmed",
                        "validate")
    return out


def _entries(params):
    """``(where, Entry)`` of the options ``files`` and ``secret_files``."""
    mode = parse_mode(params["mode"], 0o640)
    group_id(params["group"])
    for kind in ("files", "secret_files"):
        for n, f in enumerate(params[kind]):
            yield f"{kind}[{n}]", Entry(f["path"], f["content"], mode, group=params["group"], secret=kind == "secret_files")


def _differences(module, tree, transaction, entries):
    """``(result, changed)``: the file differences (and diff) against the live tree, whether the files
    differ, and whether an earlier run's change is pending (then the result is a change too)."""
    p = module.params
    live = read_live(p["conf_dir"], p["main_file"], tree) if os.path.isdir(p["conf_dir"]) else {}
    result = differences(entries, live, p["conf_dir"], diff=module._diff)
    changed = result["changed"]
    result["pending"] = transaction.pending()
    result["changed"] = changed or result["pending"]
    return result, changed
