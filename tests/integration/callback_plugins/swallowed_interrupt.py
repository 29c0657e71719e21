"""Test helper: an interrupt that Ansible swallows, made deterministic.

A SIGINT during ansible-playbook becomes a KeyboardInterrupt raised wherever the main thread
happens to be; in about one run in three that is a place that swallows it (a finaliser, a
``except BaseException``), and the run goes on (seen without the audit callback too). This
callback reproduces that at a known point: when the task named by
``LOCUS_TEST_INTERRUPT_AT`` starts, it sends the process a real SIGINT, so the installed
handlers run for real (the audit callback's, then Ansible's, which resets SIGINT and raises
KeyboardInterrupt), and swallows the KeyboardInterrupt. Nothing of locus.infra is replaced.
"""

from __future__ import annotations

import os
import signal

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: swallowed_interrupt
type: aggregate
short_description: test helper - a SIGINT whose KeyboardInterrupt is swallowed
description:
  - Sends SIGINT to ansible-playbook when the task named by E(LOCUS_TEST_INTERRUPT_AT) starts, and swallows the KeyboardInterrupt.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "swallowed_interrupt"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_task_start(self, task, is_conditional):
        if task.get_name() != os.environ.get("LOCUS_TEST_INTERRUPT_AT"):
            return
        try:
            os.kill(os.getpid(), signal.SIGINT)  # os.kill runs the Python-level handlers before it returns
        except KeyboardInterrupt:
            self._display.display("swallowed_interrupt: SIGINT delivered, KeyboardInterrupt swallowed")
