# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which playbook run and which task the controller-side code is working for.

Private API of the collection (may change without notice).
Lookups run in forked worker processes and are re-run at every templating, so they need a
key that is the same for one task in one run and different elsewhere.
"""

from __future__ import annotations

import multiprocessing
import os

RUN_ID_ENV = "LOCUS_RUN_ID"


def _start_time(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def run_id():
    """The id of this ansible-playbook run.

    The audit callback exports ``LOCUS_RUN_ID`` (the run's JOB tag) before any worker forks;
    without it, the controller process id and its start time identify the run.
    """
    if os.environ.get(RUN_ID_ENV):
        return os.environ[RUN_ID_ENV]
    parent = multiprocessing.parent_process()
    pid = parent.pid if parent is not None else os.getpid()
    return f"pid-{pid}-{_start_time(pid)}"


def current_task_uuid():
    """The uuid of the task this worker process executes, or None on the controller's main process."""
    task = getattr(multiprocessing.current_process(), "_task", None)
    return getattr(task, "_uuid", None)
