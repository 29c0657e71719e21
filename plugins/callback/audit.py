# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: audit
type: notification
short_description: REF-tag every task of every run into the tamper-evident audit trail
version_added: 0.1.0
description:
  - Gives the playbook run a C(JOB) REF-tag and every task result on every host (ok, changed,
    failed, skipped, unreachable) a C(TASK) REF-tag with one hash-chained audit record.
  - "A record holds: job tag, play, task, action, host, status, changed, duration, check and diff
    mode, user, the controller, and the AWX context (C(awx_job_id), C(awx_execution_node),
    C(awx_user_name) ...) when present."
  - Secrets never reach the trail. Results of C(no_log) tasks are recorded as censored without
    their arguments; argument keys that name a secret in any spelling (password, clientSecret,
    PGPASSWORD, pwd, X-Api-Key ...) and values that look like one (private keys, API tokens,
    Authorization values, passwords in URLs and conninfo strings, C(--token=) ...) are redacted.
  - Values Ansible knows to be secret in the run (vault-decrypted values, values of secret-named
    variables, arguments and facts, C(no_log) module options) are learnt and masked literally
    wherever they appear in anything recorded (task names, messages, arguments, C(ref_tag)
    subjects and data).
  - Text that is not UTF-8 (playbook or inventory path, C(--limit), extra vars in task names) is
    recorded with the bytes escaped as C(\xNN).
  - Records are written in one transaction per task across its hosts, with SIGINT and SIGTERM
    held back during the write, so the overhead stays small and a record is never half written.
  - A run stopped by SIGINT or SIGTERM (or ending without its final stats) is closed with a
    C(JOB) record whose status is C(interrupted); buffered task records are written first. When
    Ansible swallows the KeyboardInterrupt of a SIGINT and the run goes on, results keep being
    recorded and the C(JOB) is closed with the run's real outcome (its C(signals) list the signals).
  - Fail closed - any failure inside the callback (the store stops taking records, or any other
    error) stops the run with exit code 2 and a message saying why; Ansible would otherwise turn
    it into a warning and go on unaudited.
  - An emergency halt set while the run is under way (C(locus halt), an MCP client, another
    playbook) stops the run before its next task, whatever module that task uses; the running task
    finishes. The C(JOB) is closed with status C(halted) and the HALT tag, and the run exits 2. A
    run started while halted (a read-only report, the resume itself) and a halt the run sets itself
    (C(playbooks/emergency_halt.yml)) do not stop it.
  - Exports the run's JOB tag as E(LOCUS_RUN_ID) so lookups in worker processes can memoise
    per run.
  - Enable it with C(callbacks_enabled = locus.infra.audit) in C(ansible.cfg) (this collection's
    development C(ansible.cfg) does), or E(ANSIBLE_CALLBACKS_ENABLED).
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.state_store.plugin_options
options:
  fail_closed:
    description:
      - Stop the run when the audit trail cannot be kept - before its first task when the audit
        store cannot be opened, and at once when anything inside the callback fails later (an
        unaudited run is refused). With V(false), the run goes on with an error printed and
        without (further) records.
    type: bool
    default: true
    env:
      - name: LOCUS_AUDIT_FAIL_CLOSED
    ini:
      - section: locus
        key: audit_fail_closed
  batch_size:
    description:
      - Most task records held before they are written, for strategies (such as C(free)) where a task
        never clearly ends. Records are otherwise written when the next task starts.
    type: int
    default: 500
    env:
      - name: LOCUS_AUDIT_BATCH_SIZE
"""

import atexit
import functools
import getpass
import os
import signal
import socket
import threading
import time

from ansible import context
from ansible.plugins.callback import CallbackBase

from ansible_collections.locus.infra.plugins.plugin_utils import _redact, _run, _secrets
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _halt
from ansible_collections.locus.infra.plugins.plugin_utils.store import _store

AWX_VARS = (
    "awx_job_id",
    "awx_job_template_id",
    "awx_job_template_name",
    "awx_workflow_job_id",
    "awx_workflow_job_name",
    "awx_execution_node",
    "awx_user_id",
    "awx_user_name",
    "awx_inventory_name",
    "awx_project_revision",
    "awx_job_launch_type",
)
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_UNAUDITED = 2  # the exit code of a run refused or stopped because it cannot be audited
EXIT_HALTED = 2  # the exit code of a run stopped by an emergency halt set while it was under way


class AuditStopped(SystemExit):
    """Stops the run: the audit trail cannot be kept.

    A SystemExit, because Ansible turns every Exception a callback raises into a warning and
    goes on (``_CALLBACK_DISPATCH_ERROR_BEHAVIOR``); a SystemExit passes through its callback
    dispatch, the strategy and the CLI, which stop the workers on the way out.
    """


class RunHalted(SystemExit):
    """Stops the run: an emergency halt was set while it was under way (a SystemExit, as above)."""


def _fail_closed(method):
    """Any failure inside a callback method stops the run (or, with fail_closed=false, is reported)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self._stopping is not None and threading.current_thread() is threading.main_thread():
            raise AuditStopped(EXIT_UNAUDITED)  # a failure seen outside the main thread
        try:
            return method(self, *args, **kwargs)
        except (AuditStopped, RunHalted, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - every failure must stop the run, whatever it is
            self._stop(method.__name__, exc)

    return wrapper


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "locus.infra.audit"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._pid = os.getpid()
        self._store = None
        self._job = None  # JOB tag while the run is open
        self._buffer = []
        self._written = 0
        self._play = None
        self._play_obj = None
        self._awx = {}
        self._starts = {}
        self._learnt_hosts = set()
        self._prev_handlers = {}
        self._signals = []  # signals received while the run went on
        self._stopping = None
        self._halt_epoch = None  # the halt epoch this run has seen (a new halt stops it)
        self._cli = {}
        self._user = getpass.getuser()
        self._controller = socket.gethostname()

    # -- run lifecycle ----------------------------------------------------------------------------
    @_fail_closed
    def v2_playbook_on_start(self, playbook):
        if self._job is not None:  # several playbooks in one run share the JOB
            return
        self._cli = dict(context.CLIARGS) if context.CLIARGS else {}
        playbook_path = playbook._file_name
        try:
            self._store = _store.open_store(url=self.get_option("state_url"), state_dir=self.get_option("state_dir"))
            self._job = self._store.record(
                "JOB",
                _redact.clean_text(f"ansible-playbook {_redact.redact_text(os.path.basename(playbook_path))}", nul=True),
                {
                    "event": "start",
                    "playbook": _redact.redact_text(os.path.abspath(playbook_path)),
                    "user": self._user,
                    "controller": self._controller,
                    "check_mode": bool(self._cli.get("check")),
                    "diff_mode": bool(self._cli.get("diff")),
                    "limit": _redact.redact(self._cli.get("subset")),
                    "tags": _redact.redact(list(self._cli.get("tags") or ())),
                    "inventory": [_redact.redact_text(i) for i in self._cli.get("inventory") or ()],
                    "store": self._store.engine,
                },
            )
        except _store.StoreError as exc:
            self._store = None
            msg = f"locus.infra.audit: the audit trail cannot be written: {exc}"
            if self.get_option("fail_closed"):
                self._display.error(msg + " - refusing to run unaudited (set LOCUS_AUDIT_FAIL_CLOSED=false to override)")
                raise AuditStopped(EXIT_UNAUDITED) from exc
            self._display.error(msg)
            return
        os.environ[_run.RUN_ID_ENV] = self._job
        row = self._store.halt_row()
        self._halt_epoch = row[2] if row else None
        atexit.register(self._at_exit)
        for signum in _SIGNALS:  # wrap ansible's own handlers (they stop the workers)
            self._prev_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    @_fail_closed
    def v2_playbook_on_play_start(self, play):
        self._flush()
        self._play = _redact.redact_text(play.get_name())
        self._play_obj = play
        self._learnt_hosts = set()
        vm = play.get_variable_manager()
        extra = vm.extra_vars if vm else {}
        self._awx = {k: extra[k] for k in AWX_VARS if k in extra}
        if vm is not None:
            _secrets.learn_vars(vm.get_vars(play=play))
            _secrets.learn_loader(vm._loader)
        if self._store is not None:
            warning = _store.ephemeral_warning(self._store, self._awx)
            if warning:
                self._display.warning(warning)

    @_fail_closed
    def v2_playbook_on_task_start(self, task, is_conditional):
        self._flush()
        self._stop_if_halted(task)

    @_fail_closed
    def v2_playbook_on_handler_task_start(self, task):
        self._flush()
        self._stop_if_halted(task)

    def _stop_if_halted(self, task):
        """Before a task (on the main thread, before any worker gets it): stop the run when an
        emergency halt was set since the run began, by someone else. One cheap read of the halt
        row per task; the HALT record itself is read (and checked as a link of the chain) only
        when that row moved."""
        if self._store is None or self._job is None:
            return
        row = self._store.halt_row()
        if row is not None and row[2] == self._halt_epoch:
            return
        state = _halt.halt_state(self._store)  # an edited halt table: Tampered, the run stops (fail closed)
        self._halt_epoch = state["epoch"]
        if not state["halted"]:
            return
        record = _halt.chained_record(self._store, state["tag"])
        if record is not None and _halt.record_data(record["data"]).get("job") == self._job:
            return  # this run set the halt itself (playbooks/emergency_halt.yml): it goes on to report it
        name = _redact.printable(_redact.redact_text(task.get_name()))
        self._display.error(f"locus.infra.audit: {_halt.halt_message(state)} The halt came while this run was under way: "
                            f"stopping before the task '{name}'.")
        self._close("halted", reason=f"emergency halt {state['tag']} set during the run; stopped before the task '{name}'")
        raise RunHalted(EXIT_HALTED)

    @_fail_closed
    def v2_runner_on_start(self, host, task):
        self._starts[(host.get_name(), task._uuid)] = time.monotonic()
        # Once per host and play, before the task's worker forks (it inherits what is learnt):
        # the secrets among the host's raw variables (vaulted values, secret-named variables).
        if self._play_obj is not None and host.get_name() not in self._learnt_hosts:
            self._learnt_hosts.add(host.get_name())
            vm = self._play_obj.get_variable_manager()
            if vm is not None:
                _secrets.learn_vars(vm.get_vars(play=self._play_obj, host=host, include_hostvars=False))
                _secrets.learn_loader(vm._loader)

    @_fail_closed
    def v2_runner_on_ok(self, result):
        self._add(result, "changed" if result._result.get("changed") else "ok")

    @_fail_closed
    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._add(result, "failed", ignore_errors=ignore_errors)

    @_fail_closed
    def v2_runner_on_skipped(self, result):
        self._add(result, "skipped")

    @_fail_closed
    def v2_runner_on_unreachable(self, result):
        self._add(result, "unreachable")

    @_fail_closed
    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        summary = {h: stats.summarize(h) for h in hosts}
        failed = any(s["failures"] or s["unreachable"] for s in summary.values())
        self._close("failed" if failed else "ok", stats=summary)

    # -- records --------------------------------------------------------------------------------
    def _add(self, result, status, ignore_errors=False):
        if self._job is None:
            return
        task, host = result._task, result._host.get_name()
        res = result._result
        raw_args = result._task_fields.get("args") or {}
        invocation_args = (res.get("invocation") or {}).get("module_args")
        # Learn first what this result shows to be secret, so that it is masked everywhere below.
        action = getattr(task, "resolved_action", None) or task.action
        _secrets.learn_args(raw_args, invocation_args if isinstance(invocation_args, dict) else {}, no_log=bool(task.no_log), action=action)
        _secrets.learn_result(res)
        started = self._starts.pop((host, task._uuid), None)
        censored = bool(task.no_log) or "censored" in res
        if not censored:
            # A module's own view of its arguments has its no_log options masked already; the raw
            # task arguments only get masked by name, by look and by known value. Redacted first:
            # what is found by look is learnt and masked in the task name and message too.
            args = invocation_args or raw_args
            args = _redact.redact({k: v for k, v in args.items() if not str(k).startswith("_ansible_")}, learn=True)
        data = {
            "job": self._job,
            "play": self._play,
            "task": _redact.redact_text(task.get_name()),
            "task_uuid": task._uuid,
            "action": _redact.redact_text(action),
            "host": _redact.redact_text(host),
            "status": status,
            "changed": bool(res.get("changed")),
            "duration_s": round(time.monotonic() - started, 3) if started is not None else None,
            "check_mode": bool(self._cli.get("check")) if task.check_mode is None else bool(task.check_mode),
            "diff_mode": bool(self._cli.get("diff")) if task.diff is None else bool(task.diff),
            "user": _redact.redact_text(self._awx.get("awx_user_name") or self._user),
            "controller": self._controller,
        }
        if self._awx:
            data["awx"] = _redact.redact(self._awx)
        if censored:
            data["censored"] = True
        else:
            data["args"] = args
            if status in ("failed", "unreachable") and res.get("msg"):
                data["msg"] = _redact.redact(str(res["msg"]))
        if ignore_errors:
            data["ignore_errors"] = True
        if "results" in res and isinstance(res["results"], list):
            data["items"] = len(res["results"])
        delegated = res.get("_ansible_delegated_vars", {}).get("ansible_host")
        if delegated:
            data["delegated_to"] = _redact.redact_text(str(delegated))
        self._buffer.append(("TASK", _redact.clean_text(f"{data['task']} @ {data['host']}", nul=True), data))
        if len(self._buffer) >= self.get_option("batch_size"):
            self._flush()

    def _flush(self):
        if not self._buffer or self._store is None or os.getpid() != self._pid:
            return
        # Hold SIGINT/SIGTERM back while writing: a record is written whole or not at all,
        # and the buffer is emptied exactly when its records are committed.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            self._store.record_many(self._buffer)
            self._written += len(self._buffer)
            self._buffer = []
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _close(self, status, reason=None, stats=None):
        if self._job is None or os.getpid() != self._pid:
            return
        # Signals held back from here: an interrupt cannot fall between the JOB being taken as
        # closed and its end record being written.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            self._flush()
            data = {"event": "end", "status": status, "task_records": self._written, "user": self._user}
            if reason:
                data["reason"] = reason
            if self._signals:
                data["signals"] = list(self._signals)
            if stats is not None:
                data["stats"] = stats
            if self._awx:
                data["awx"] = _redact.redact(self._awx)
            job = self._job
            end_tag = self._store.record("JOB", f"end of {job}", {**data, "job": job})
            self._job = None
            head = self._store.head()
            self._display.display(
                f"locus.infra.audit: {job} closed as {status} by {end_tag}: {self._written} task records, "
                f"chain head {head['head_hash'][:16]}"
            )
            self._store.close()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _stop(self, where, exc):
        """A failure inside the callback: close the JOB as failed if the store still takes it, then stop the run."""
        what = _redact.redact_text(f"{type(exc).__name__}: {exc}" if not isinstance(exc, _store.StoreError) else str(exc))
        msg = f"locus.infra.audit: the audit trail cannot be kept ({where}: {' '.join(what.split())})"
        if not self.get_option("fail_closed"):
            self._display.error(msg + " - going on unaudited (LOCUS_AUDIT_FAIL_CLOSED=false)")
            return
        self._display.error(msg + " - stopping the run: an unaudited run is refused (set LOCUS_AUDIT_FAIL_CLOSED=false to override)")
        if self._stopping is None:
            self._stopping = msg
            try:
                self._close("failed", reason=f"audit callback error in {where}")
            except Exception as close_exc:  # noqa: BLE001 - the store may be the thing that failed
                self._display.error(f"locus.infra.audit: the JOB cannot be closed either: {_redact.redact_text(str(close_exc))}")
            self._job = None
            if self._store is not None:
                self._store.close()
        if threading.current_thread() is threading.main_thread():
            raise AuditStopped(EXIT_UNAUDITED) from exc
        # Outside the main thread a SystemExit would only end that thread: the next callback
        # on the main thread stops the run (see _fail_closed).

    def _at_exit(self):
        """The run ended without its final stats (interrupted, or stopped by an error)."""
        reason = self._signals[-1] if self._signals else "the run ended without its final stats"
        try:
            self._close("interrupted", reason)
        except Exception as exc:  # noqa: BLE001 - at exit there is nothing left to stop
            self._display.error(f"locus.infra.audit: cannot close the run's JOB: {_redact.redact_text(str(exc))}")

    def _on_signal(self, signum, frame):
        name = signal.Signals(signum).name
        previous = self._prev_handlers.get(signum)
        if os.getpid() == self._pid:
            self._signals.append(name)
            # SIGINT becomes a KeyboardInterrupt, which Ansible sometimes swallows and goes on:
            # the JOB stays open until the run really ends (stats, or exit). Any other signal,
            # or no Python handler behind ours, ends the process now: close the JOB first.
            if signum != signal.SIGINT or not callable(previous):
                try:
                    self._close("interrupted", name)
                except Exception as exc:  # noqa: BLE001 - never raise out of a signal handler
                    self._display.error(f"locus.infra.audit: cannot close the run's JOB: {_redact.redact_text(str(exc))}")
        try:
            if callable(previous):
                previous(signum, frame)
            else:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
        finally:
            # Ansible's handler falls back to the default action for the next signal (which would
            # kill the process before the JOB is closed): stay in front of it.
            if os.getpid() == self._pid and signal.getsignal(signum) is signal.SIG_DFL:
                self._prev_handlers[signum] = signal.SIG_DFL
                signal.signal(signum, self._on_signal)
