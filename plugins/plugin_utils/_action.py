# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Base class of the collection's controller-side action plugins.

Private API of the collection (may change without notice).
One place for: argument validation against the module file's spec, opening the state
store (task option, then environment), the loud warning for AWX + SQLite, and turning
store errors into a failed task that says what and where.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.locus.infra.plugins.module_utils import _store

display = Display()

STATE_STORE_SPEC = {
    "state_url": {"type": "str", "no_log": True},
    "state_dir": {"type": "path"},
}


class LocusActionError(Exception):
    """Fail the task with this message (and optional extra result keys)."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.result = result


class LocusAction(ActionBase):
    """Subclasses set ``ARGUMENT_SPEC`` and implement ``run_locus(args, task_vars, store)``."""

    TRANSFERS_FILES = False
    _requires_connection = False
    ARGUMENT_SPEC = {}
    MUTUALLY_EXCLUSIVE = ()
    REQUIRED_IF = ()

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(
            argument_spec={**self.ARGUMENT_SPEC, **STATE_STORE_SPEC},
            mutually_exclusive=list(self.MUTUALLY_EXCLUSIVE),
            required_if=list(self.REQUIRED_IF),
        )
        store = None
        try:
            store = _store.open_store(url=args.get("state_url"), state_dir=args.get("state_dir"))
            warning = _store.ephemeral_warning(store, task_vars)
            if warning:
                display.warning(warning)
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
        raise NotImplementedError
