# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: changes
type: aggregate
short_description: Collect the changes a (check + diff) run predicts, for the guard
version_added: 0.1.0
description:
  - Writes one JSON file with every change a playbook run made or, in check mode, predicts - per host
    and task the module, its arguments, the host's groups and the diff - for C(locus.infra.guard)
    (option C(operation.changes_file)) and C(playbooks/change_review.yml).
  - Also lists the tasks whose change cannot be predicted (skipped in check mode, C(no_log) results)
    and the tasks that failed, and whether the run completed; the guard raises findings for them.
  - Secrets never reach the file - argument keys that name a secret are masked, and so is every
    secret-looking value in arguments and diffs (private keys, API tokens, C(password = ...) lines);
    the guard reads the mask as evidence of a secret in plain text. The file is written with mode 0600,
    atomically, at the end of the run (also when the run is interrupted, then marked incomplete).
  - Enable it for one run with E(ANSIBLE_CALLBACKS_ENABLED) (keep C(locus.infra.audit) in the list) and
    point E(LOCUS_CHANGES_FILE) at the file to write; run with C(--check --diff) to predict.
author:
  - locus.infra developers (@locus-infra)
options:
  path:
    description:
      - The JSON file to write. Without it the callback does nothing.
    type: path
    env:
      - name: LOCUS_CHANGES_FILE
    ini:
      - section: locus
        key: changes_file
"""

import atexit
import json
import os
import tempfile

from ansible import context
from ansible.plugins.callback import CallbackBase

from ansible_collections.locus.infra.plugins.plugin_utils import _redact
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _guard_rules

_CHECK_MODE_SKIP = ("check mode", "check_mode")


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "locus.infra.changes"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._pid = os.getpid()
        self._changes = []
        self._playbook = None
        self._play = None
        self._written = False
        self._path = None

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._path = self.get_option("path")

    # -- run ----------------------------------------------------------------------------------
    def v2_playbook_on_start(self, playbook):
        if self._playbook is None and self._path:
            self._playbook = os.path.abspath(playbook._file_name)
            atexit.register(self._write, False)

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name()

    def v2_runner_on_ok(self, result):
        res = result._result
        items = res.get("results") if isinstance(res.get("results"), list) else None
        if items is None:
            if res.get("changed"):
                self._add(result, res, "changed")
            return
        for n, item in enumerate(items):
            if isinstance(item, dict) and item.get("changed"):
                self._add(result, item, "changed", index=n)
            elif isinstance(item, dict) and item.get("skipped") and _check_mode_skip(item):
                self._add(result, item, "unpredictable", index=n)

    def v2_runner_on_skipped(self, result):
        if _check_mode_skip(result._result):
            self._add(result, result._result, "unpredictable")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if not ignore_errors:
            self._add(result, result._result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._add(result, result._result, "failed")

    def v2_playbook_on_stats(self, stats):
        self._write(True, {h: stats.summarize(h) for h in sorted(stats.processed)})

    # -- records --------------------------------------------------------------------------------
    def _add(self, result, res, status, index=None):
        if not self._path:
            return
        task, host = result._task, result._host
        entry = {
            "host": host.get_name(),
            "groups": sorted(g.get_name() for g in host.get_groups() if g.get_name() != "all"),
            "play": self._play,
            "task": task.get_name(),
            "task_path": task.get_path() or "",
            "action": getattr(task, "resolved_action", None) or task.action,
            "status": status,
        }
        if index is not None:
            entry["item"] = index
        if task.no_log or "censored" in res:
            entry["censored"] = True
        else:
            # The task's templated arguments (stable across runs, unlike a module's invocation,
            # which names temporary files); a loop item adds its item.
            args = {k: v for k, v in (result._task_fields.get("args") or {}).items() if not str(k).startswith("_ansible_")}
            if index is not None and res.get("_ansible_item_label", res.get("item")) is not None:
                args["_item"] = res.get("_ansible_item_label", res.get("item"))
            entry["args"] = _safe(args)
            if res.get("diff"):
                entry["diff"] = _safe_diff(res["diff"])
            if status != "changed" and res.get("msg"):
                entry["msg"] = _guard_rules.mask_secrets(str(res["msg"]))[:1000]
        self._changes.append(entry)

    def _write(self, complete, stats=None):
        if self._written or not self._path or os.getpid() != self._pid:
            return
        self._written = True
        cli = dict(context.CLIARGS) if context.CLIARGS else {}
        doc = {
            "version": 1,
            "generator": "locus.infra.changes",
            "playbook": self._playbook,
            "job": os.environ.get("LOCUS_RUN_ID"),  # the run's JOB tag, exported by locus.infra.audit
            "check_mode": bool(cli.get("check")),
            "diff_mode": bool(cli.get("diff")),
            "complete": bool(complete),
            "changes": self._changes,
            "stats": stats or {},
        }
        directory = os.path.dirname(os.path.abspath(self._path))
        try:
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".changes-", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1, sort_keys=True, default=str)
                f.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self._path)
        except OSError as exc:
            self._display.error(f"locus.infra.changes: cannot write {self._path}: {exc}")


def _check_mode_skip(res):
    return bool(res.get("skipped")) and any(s in str(res.get("msg", "")).lower() for s in _CHECK_MODE_SKIP)


def _safe(value):
    """Arguments as recorded: secret keys masked by name, secret-looking values masked anywhere."""
    value = _redact.redact(value)
    if isinstance(value, dict):
        return {k: _safe_value(v) for k, v in value.items()}
    return _safe_value(value)


def _safe_value(value):
    if isinstance(value, str):
        return _guard_rules.mask_secrets(value)
    if isinstance(value, dict):
        return {k: _safe_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_safe_value(v) for v in value]
    return value


def _safe_diff(diff):
    entries = diff if isinstance(diff, list) else [diff]
    out = []
    for d in entries:
        if not isinstance(d, dict):
            continue
        clean = {}
        for key in ("before", "after", "before_header", "after_header", "prepared"):
            if key not in d:
                continue
            v = d[key]
            clean[key] = _guard_rules.mask_secrets(v) if isinstance(v, str) else _safe_value(_redact.redact(v))
        out.append(clean)
    return out
