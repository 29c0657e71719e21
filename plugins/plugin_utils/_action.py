# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Base class of the collection's controller-side action plugins.

Private API of the collection (may change without notice).
One place for: argument validation against the module file's spec, opening the state
store (task option, then environment), the loud warning for AWX + SQLite, the emergency
halt check, and turning store errors into a failed task that says what and where.

Emergency halt: every plugin that changes anything or spends tokens fails at once while
the halt is set (``locus halt``), with the HALT tag and reason. A plugin says it is exempt
by setting ``READ_ONLY = True`` (it only reads, or keeps the audit trail's books). Plain
modules that change things on the controller get the same check through a thin action
plugin deriving from :class:`HaltGuardedModule`.
"""

from __future__ import annotations

from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

from ansible_collections.locus.infra.plugins.plugin_utils import _redact, _secrets
from ansible_collections.locus.infra.plugins.plugin_utils.guard import _halt
from ansible_collections.locus.infra.plugins.plugin_utils.store import _store

display = Display()

STATE_STORE_SPEC = {
    "state_url": {"type": "str", "no_log": True},
    "state_dir": {"type": "path"},
}


class LocusActionError(Exception):
    """Fail the task with this message (and optional extra result keys)."""

    def __init__(self, msg, /, **result):
        # ``msg`` is positional-only: a result that carries its own ``msg`` key (e.g. the
        # guard's decision) can be passed whole; the message given here wins.
        super().__init__(msg)
        self.result = result


def halt_failure(store):
    """The failed-task result while the emergency halt is set, else None."""
    try:
        _halt.check_halt(store)
    except _halt.Halted as exc:
        state = exc.state
        return {"failed": True, "msg": str(exc), "halted": True, "halt_ref_tag": state["tag"], "halt_reason": state["reason"]}
    return None


class LocusAction(ActionBase):
    """Subclasses set ``ARGUMENT_SPEC`` and implement ``run_locus(args, task_vars, store)``.

    ``READ_ONLY``: False (the default) for plugins that change anything or spend tokens:
    they refuse to run while the emergency halt is set. True only for plugins that read or
    keep the books (REF-tags, audit verification, the guard's own decisions).
    """

    TRANSFERS_FILES = False
    _requires_connection = False
    READ_ONLY = False
    ARGUMENT_SPEC = {}
    MUTUALLY_EXCLUSIVE = ()
    REQUIRED_IF = ()

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        validation, args = self.validate_argument_spec(
            argument_spec={**self.ARGUMENT_SPEC, **STATE_STORE_SPEC},
            mutually_exclusive=list(self.MUTUALLY_EXCLUSIVE),
            required_if=list(self.REQUIRED_IF),
        )
        # Like a module's result: the arguments with every no_log value masked. The audit
        # callback records these rather than the raw task arguments.
        result["invocation"] = {"module_args": remove_values(args, validation._no_log_values)}
        # What this task knows to be secret (no_log options, secret-named arguments and variables,
        # vaulted values) is masked in every record the store writes for it (see _secrets).
        _redact.remember(*validation._no_log_values)
        _secrets.learn_args(args)
        _secrets.learn_vars(task_vars)
        store = None
        try:
            store = _store.open_store(url=args.get("state_url"), state_dir=args.get("state_dir"))
            warning = _store.ephemeral_warning(store, task_vars)
            if warning:
                display.warning(warning)
            halted = None if self.READ_ONLY else halt_failure(store)
            if halted:
                result.update(halted)
                return result
            result.update(self.run_locus(args, task_vars, store))
        except _store.StoreError as exc:
            result.update(failed=True, msg=str(exc))
        except LocusActionError as exc:
            result.update(exc.result)
            result.update(failed=True, msg=str(exc))
        finally:
            if store is not None:
                store.close()
        result.setdefault("changed", False)
        return result

    def run_locus(self, args, task_vars, store):
        """The plugin's own work on validated ``args`` and an open ``store``; every subclass defines it."""
        raise NotImplementedError


class HaltGuardedModule(ActionBase):
    """Runs the module of the same name after the emergency halt check (e.g. proxmox_vm).

    The store comes from the controller's environment (``LOCUS_STATE_URL`` /
    ``LOCUS_STATE_DIR``); a store that cannot be opened fails the task, since the halt
    cannot be ruled out.
    """

    _supports_check_mode = True
    _supports_async = True
    # Arguments whose values make a call read-only (e.g. ``{"state": {"query"}}``): such a call
    # runs while halted. Anything else is a change and is refused.
    READ_ONLY_ARGS = {}

    def _read_only_call(self):
        args = self._task.args or {}
        return any(key in args and args[key] in values for key, values in self.READ_ONLY_ARGS.items())

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        if self._read_only_call():
            return self._run_module(result, task_vars)
        store = None
        try:
            store = _store.open_store()
            halted = halt_failure(store)
        except _store.StoreError as exc:
            halted = {"failed": True, "msg": f"cannot check the emergency halt: {exc}"}
        finally:
            if store is not None:
                store.close()
        if halted:
            result.update(halted)
            result["changed"] = False
            return result
        return self._run_module(result, task_vars)

    def _run_module(self, result, task_vars):
        wrap_async = self._task.async_val and not self._connection.has_native_async
        result = merge_hash(result, self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
