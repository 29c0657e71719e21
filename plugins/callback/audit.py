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
    their arguments; argument keys that name a secret (password, token, api_key ...) and values
    that look like one (private keys, API tokens, credentials in URLs ...) are redacted.
  - Records are written in one transaction per task across its hosts, with SIGINT and SIGTERM
    held back during the write, so the overhead stays small and a record is never half written.
  - A run stopped by SIGINT or SIGTERM (or ending without its final stats) is closed with a
    C(JOB) record whose status is C(interrupted); buffered task records are written first.
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
      - Stop the run before its first task when the audit store cannot be opened (an unaudited run
        is refused). With V(false), the run goes on with an error printed and no records.
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
import getpass
import os
import signal
import socket
import time

from ansible import context
from ansible.plugins.callback import CallbackBase

from ansible_collections.locus.infra.plugins.module_utils import _redact, _store
from ansible_collections.locus.infra.plugins.plugin_utils import _run

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
        self._awx = {}
        self._starts = {}
        self._prev_handlers = {}
        self._cli = {}
        self._user = getpass.getuser()
        self._controller = socket.gethostname()

    # -- run lifecycle ----------------------------------------------------------------------------
    def v2_playbook_on_start(self, playbook):
        if self._job is not None:  # several playbooks in one run share the JOB
            return
        self._cli = dict(context.CLIARGS) if context.CLIARGS else {}
        try:
            self._store = _store.open_store(url=self.get_option("state_url"), state_dir=self.get_option("state_dir"))
            self._job = self._store.record(
                "JOB",
                f"ansible-playbook {os.path.basename(playbook._file_name)}",
                {
                    "event": "start",
                    "playbook": os.path.abspath(playbook._file_name),
                    "user": self._user,
                    "controller": self._controller,
                    "check_mode": bool(self._cli.get("check")),
                    "diff_mode": bool(self._cli.get("diff")),
                    "limit": self._cli.get("subset"),
                    "tags": list(self._cli.get("tags") or ()),
                    "inventory": [str(i) for i in self._cli.get("inventory") or ()],
                    "store": self._store.engine,
                },
            )
        except _store.StoreError as exc:
            self._store = None
            msg = f"locus.infra.audit: the audit trail cannot be written: {exc}"
            if self.get_option("fail_closed"):
                self._display.error(msg + " - refusing to run unaudited (set LOCUS_AUDIT_FAIL_CLOSED=false to override)")
                raise SystemExit(2) from exc
            self._display.error(msg)
            return
        os.environ[_run.RUN_ID_ENV] = self._job
        atexit.register(self._close, "interrupted", "the run ended without its final stats")
        for signum in _SIGNALS:  # wrap ansible's own handlers (they stop the workers)
            self._prev_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def v2_playbook_on_play_start(self, play):
        self._flush()
        self._play = play.get_name()
        extra = play.get_variable_manager().extra_vars if play.get_variable_manager() else {}
        self._awx = {k: extra[k] for k in AWX_VARS if k in extra}
        if self._store is not None:
            warning = _store.ephemeral_warning(self._store, self._awx)
            if warning:
                self._display.warning(warning)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._flush()

    def v2_playbook_on_handler_task_start(self, task):
        self._flush()

    def v2_runner_on_start(self, host, task):
        self._starts[(host.get_name(), task._uuid)] = time.monotonic()

    def v2_runner_on_ok(self, result):
        self._add(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._add(result, "failed", ignore_errors=ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._add(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._add(result, "unreachable")

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
        started = self._starts.pop((host, task._uuid), None)
        censored = bool(task.no_log) or "censored" in res
        data = {
            "job": self._job,
            "play": self._play,
            "task": task.get_name(),
            "task_uuid": task._uuid,
            "action": getattr(task, "resolved_action", None) or task.action,
            "host": host,
            "status": status,
            "changed": bool(res.get("changed")),
            "duration_s": round(time.monotonic() - started, 3) if started is not None else None,
            "check_mode": bool(self._cli.get("check")) if task.check_mode is None else bool(task.check_mode),
            "diff_mode": bool(self._cli.get("diff")) if task.diff is None else bool(task.diff),
            "user": self._awx.get("awx_user_name") or self._user,
            "controller": self._controller,
        }
        if self._awx:
            data["awx"] = self._awx
        if censored:
            data["censored"] = True
        else:
            # A module's own view of its arguments has its no_log options masked already;
            # the raw task arguments only get masked by name and by look.
            args = (res.get("invocation") or {}).get("module_args") or result._task_fields.get("args") or {}
            data["args"] = _redact.redact({k: v for k, v in args.items() if not k.startswith("_ansible_")})
            if status in ("failed", "unreachable") and res.get("msg"):
                data["msg"] = _redact.redact(str(res["msg"]))
        if ignore_errors:
            data["ignore_errors"] = True
        if "results" in res and isinstance(res["results"], list):
            data["items"] = len(res["results"])
        delegated = res.get("_ansible_delegated_vars", {}).get("ansible_host")
        if delegated:
            data["delegated_to"] = delegated
        self._buffer.append(("TASK", f"{data['task']} @ {host}", data))
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
        except _store.StoreError as exc:
            self._display.error(f"locus.infra.audit: {len(self._buffer)} task records could not be written: {exc}")
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _close(self, status, reason=None, stats=None):
        if self._job is None or os.getpid() != self._pid:
            return
        self._flush()
        data = {"event": "end", "status": status, "task_records": self._written, "user": self._user}
        if reason:
            data["reason"] = reason
        if stats is not None:
            data["stats"] = stats
        if self._awx:
            data["awx"] = self._awx
        job, self._job = self._job, None
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            end_tag = self._store.record("JOB", f"end of {job}", {**data, "job": job})
            head = self._store.head()
            self._display.display(
                f"locus.infra.audit: {job} closed as {status} by {end_tag}: {self._written} task records, "
                f"chain head {head['head_hash'][:16]}"
            )
        except _store.StoreError as exc:
            self._display.error(f"locus.infra.audit: cannot close {job}: {exc}")
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            self._store.close()

    def _on_signal(self, signum, frame):
        if os.getpid() == self._pid:
            self._close("interrupted", signal.Signals(signum).name)
        previous = self._prev_handlers.get(signum)
        if callable(previous):
            previous(signum, frame)
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
