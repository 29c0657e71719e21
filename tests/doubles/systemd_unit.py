"""A test DOUBLE of one systemd unit as ``systemctl`` and ``journalctl`` report it -- not systemd.

The unit tests of ``module_utils/_k3s_service`` run on the controller, whose PID 1 is not
systemd (docs/lab.md), so ``systemctl`` cannot answer there; the lab hosts' real systemd is
exercised by molecule/k3s. This double answers the three commands the module runs, as a
script of states over a (fake) clock:

* ``systemctl show -p ActiveState,SubState,NRestarts,LoadState,InvocationID UNIT``: one
  ``Key=Value`` line per property, in the order systemd prints them (the service type's
  properties - ``NRestarts`` - before the unit's: ``LoadState``, ``ActiveState``,
  ``SubState``, then ``InvocationID``), an empty value printed as ``Key=`` because the
  property was named with ``-p``; exit status 0 also for a unit that is not found
  (``LoadState=not-found``). Recorded from systemd 252 (Debian 12, the lab hosts) with
  ``systemctl show -p ...`` on units that ran, crashed under ``Restart=always``, waited for
  ``READY=1``, failed and did not exist (``RECORDED`` below; a unit that ran and was stopped
  and reset is reported as not found too).
* ``systemctl start|restart --no-block UNIT``: queues the job and returns at once (exit 0).
* ``journalctl -u UNIT --no-pager -o cat -n N``: the last N message lines, no metadata.

Sources: systemd's systemctl(1) (``show``, ``-p``, ``--no-block``), journalctl(1) (``-o cat``,
``-n``), org.freedesktop.systemd1(5) (``ActiveState``: active, reloading, inactive, failed,
activating, deactivating; service ``SubState`` values such as ``start``, ``running``,
``auto-restart``, ``failed``; ``NRestarts``: automatic restarts of the service;
``InvocationID``: 128-bit ID of the unit's current invocation, empty while it has none) and
systemd.service(5) (``Type=notify``: active once the service sent ``READY=1``).
"""

from __future__ import annotations

# ``systemctl show -p ActiveState,SubState,NRestarts,LoadState,InvocationID`` on systemd 252.
RECORDED = {
    "running": "NRestarts=0\nLoadState=loaded\nActiveState=active\nSubState=running\n"
               "InvocationID=7187cd3ca9e145ebaca3e5da23267e3e\n",
    # Restart=always, RestartSec=2, ExecStart=/bin/false: right after the first exit, then after
    # the first automatic restart (a new invocation each time).
    "crashing": "NRestarts=0\nLoadState=loaded\nActiveState=activating\nSubState=auto-restart\n"
                "InvocationID=890e5892027843a994d8b1e7b2c52687\n",
    "crashed": "NRestarts=1\nLoadState=loaded\nActiveState=activating\nSubState=auto-restart\n"
               "InvocationID=3dfbe517b8784eb38aa7138e5f068d67\n",
    # Type=notify before READY=1.
    "activating": "NRestarts=0\nLoadState=loaded\nActiveState=activating\nSubState=start\n"
                  "InvocationID=629b81541f9e43e69ff5e675f89d1742\n",
    "failed": "NRestarts=0\nLoadState=loaded\nActiveState=failed\nSubState=failed\n"
              "InvocationID=6f8724ea41da42b78a7c399a16b0fcff\n",
    "not-found": "NRestarts=0\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nInvocationID=\n",
}
ORDER = ("NRestarts", "LoadState", "ActiveState", "SubState", "InvocationID")


def show_text(**props):
    """``systemctl show -p`` output for these properties (in systemd's order; absent ones empty)."""
    return "".join(f"{key}={props.get(key, '')}\n" for key in ORDER)


class UnitDouble:
    """One unit scripted over ``clock``: ``timeline`` is ``[(seconds, properties), ...]``; from
    ``seconds`` after the first ``start``/``restart`` job (before it: the first entry)
    ``systemctl show`` reports ``properties``. ``calls`` keeps every command run."""

    def __init__(self, name, clock, timeline, journal=(), show_rc=0):
        self.name = name
        self.clock = clock
        self.timeline = timeline
        self.journal = list(journal)
        self.show_rc = show_rc
        self.started_at = None
        self.calls = []

    def state(self):
        if self.started_at is None:
            return self.timeline[0][1]
        elapsed = self.clock() - self.started_at
        return [props for at, props in self.timeline if at <= elapsed][-1]

    def __call__(self, argv):
        """``AnsibleModule.run_command``'s shape: ``(rc, stdout, stderr)``."""
        self.calls.append(list(argv))
        if argv[:3] == ["systemctl", "show", "-p"] and argv[-1] == self.name:
            if self.show_rc:
                return self.show_rc, "", "Failed to connect to bus: No such file or directory\n"
            return 0, show_text(**self.state()), ""
        if argv[0] == "systemctl" and argv[1] in ("start", "restart") and argv[2:] == ["--no-block", self.name]:
            self.started_at = self.clock()
            return 0, "", ""
        if argv[:3] == ["journalctl", "-u", self.name]:
            lines = int(argv[argv.index("-n") + 1])
            return 0, "".join(line + "\n" for line in self.journal[-lines:]), ""
        return 127, "", f"the systemd double does not implement: {' '.join(argv)}\n"
