#!/usr/bin/python
# Copyright: locus.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start or stop a detached daemon that is tracked by a PID file (role-internal module)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: lab_process
short_description: Start or stop a detached, PID-file tracked process on the controller
version_added: 0.1.0
description:
  - Used by the C(locus.infra.lab) role. Runs the lab's long-lived processes
    (one C(systemd-nspawn) per lab host, the apt proxy) without a service manager, because
    the lab machine has no systemd as PID 1.
  - C(started) is idempotent. A process counts as running only when the PID in O(pidfile) is
    alive, not a zombie, and its command line contains O(match) - so a stale PID file or a
    recycled PID never passes for a running host.
  - C(stopped) sends O(stop_signal), waits up to O(stop_timeout) seconds (wall clock) for the
    process to go, then sends C(SIGKILL). It never signals a process whose command line does
    not contain O(match).
author:
  - locus.infra developers (@locus-infra)
extends_documentation_fragment:
  - locus.infra.attributes
options:
  pidfile:
    description: Path of the PID file the module writes and reads.
    type: path
    required: true
  state:
    description:
      - Whether the process should be running.
      - C(query) changes nothing and only reports RV(running) and RV(pid).
    type: str
    choices: [started, stopped, query]
    default: started
  argv:
    description:
      - Command to run, as a list. Required for O(state=started).
      - The process gets its own session, C(/dev/null) as standard input and O(log) as
        standard output and error.
    type: list
    elements: str
  match:
    description: Text that must appear in C(/proc/PID/cmdline) of the tracked process.
    type: str
    required: true
  log:
    description: File that receives the process's output (appended). Required for O(state=started).
    type: path
  cgroup:
    description:
      - Run the process in a cgroup of its own, this path below the module's own cgroup, in
        the hierarchies C(systemd-nspawn) uses - C(name=systemd) and the unified (v2) one on a
        hybrid layout, the single one on a pure cgroup v2 layout. Removed again by C(stopped).
      - Needed for C(systemd-nspawn --keep-unit) without systemd on the machine - nspawn then
        builds the container's cgroup tree inside its own cgroup, and two containers started
        from the same cgroup would share (and tear down) each other's unit cgroups.
    type: str
  chdir:
    description: Working directory of the started process.
    type: path
    default: /
  settle:
    description:
      - Seconds to watch a freshly started process. If it exits within that time the task
        fails and shows the last lines of O(log).
    type: float
    default: 1.0
  stop_signal:
    description: Signal name sent first by O(state=stopped).
    type: str
    default: SIGTERM
  stop_timeout:
    description: Seconds to wait after O(stop_signal) before C(SIGKILL).
    type: float
    default: 60
attributes:
  check_mode:
    support: full
    details: Reports whether the process would be started or stopped; starts and signals nothing.
  diff_mode:
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
    details: Needs C(/proc) (Linux).
notes:
  - Runs on the host that holds the processes; the lab role delegates it to C(localhost).
  - While locus.infra is halted (C(locus halt)), O(state=started) and O(state=stopped) fail at once
    with the HALT tag and reason; O(state=query) keeps working. The store is found through
    E(LOCUS_STATE_URL) / E(LOCUS_STATE_DIR) on the controller.
"""

EXAMPLES = r"""
- name: Boot a lab host
  locus.infra.lab_process:
    pidfile: /var/lib/locus/lab/hosts/rtr1/pid
    log: /var/lib/locus/lab/hosts/rtr1/console.log
    match: /var/lib/locus/lab/hosts/rtr1/root
    argv: [systemd-nspawn, -D, /var/lib/locus/lab/hosts/rtr1/root, -b, --register=no, --keep-unit]

- name: Stop it (clean shutdown, SIGKILL after 60 s)
  locus.infra.lab_process:
    pidfile: /var/lib/locus/lab/hosts/rtr1/pid
    match: /var/lib/locus/lab/hosts/rtr1/root
    state: stopped
"""

RETURN = r"""
pid:
  description: PID of the running process (C(started)), or of the process that was stopped.
  returned: when a process was found or started
  type: int
  sample: 28487
was_running:
  description: Whether a matching process was running before the task.
  returned: always
  type: bool
running:
  description: Whether a matching process is running after the task.
  returned: always
  type: bool
"""

import os
import signal

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.locus.infra.plugins.module_utils._retry import wait_for


def _read_pid(path):
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid, match):
    """True when pid is a live (non-zombie) process whose command line contains match."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X") and match in cmdline


def _tail(path, lines=20):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().splitlines()[-lines:]
    except OSError:
        return []


CGROUP_ROOT = "/sys/fs/cgroup"


def _cgroup_dirs(relative):
    """Directories of cgroup ``relative`` (below this process's own) in the hierarchies nspawn uses."""
    own = {}
    with open("/proc/self/cgroup", encoding="ascii") as handle:
        for line in handle:
            hierarchy_id, controllers, path = line.rstrip("\n").split(":", 2)
            own[controllers if hierarchy_id != "0" else ""] = path
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):  # pure cgroup v2
        mounts = {"": CGROUP_ROOT}
    else:
        mounts = {"name=systemd": os.path.join(CGROUP_ROOT, "systemd"), "": os.path.join(CGROUP_ROOT, "unified")}
    return [os.path.join(mount + own[key].rstrip("/"), relative.strip("/")) for key, mount in mounts.items() if key in own and os.path.isdir(mount)]


# A process or cgroup ends within moments of its signal: check at a steady pace, not a growing one.
TICK = {"interval": 0.1, "factor": 1.0, "cap": 0.1}
SLOW_TICK = {"interval": 0.2, "factor": 1.0, "cap": 0.2}


def _kill_cgroup(relative):
    """SIGKILL every process left in cgroup ``relative`` (cgroup v2 ``cgroup.kill``), and wait for them."""
    for top in _cgroup_dirs(relative):
        kill_file = os.path.join(top, "cgroup.kill")
        if not os.path.exists(kill_file):
            continue
        with open(kill_file, "w", encoding="ascii") as handle:
            handle.write("1\n")
        wait_for(lambda top=top: _cgroup_empty(top), bool, timeout=10, **TICK)


def _cgroup_empty(top):
    with open(os.path.join(top, "cgroup.events"), encoding="ascii") as events:
        return "populated 0" in events.read()


def _remove_cgroup(relative):
    """Remove the (empty) cgroup tree ``relative`` and its empty parents; a cgroup in use stays."""
    for top in _cgroup_dirs(relative):
        for current, _subdirs, _files in os.walk(top, topdown=False):
            try:
                os.rmdir(current)
            except OSError:
                pass
        parent = top
        for _level in relative.strip("/").split("/")[1:]:
            parent = os.path.dirname(parent)
            try:
                os.rmdir(parent)
            except OSError:
                break


def _spawn(argv, log, chdir, cgroup=None):
    """Run argv detached: own session, stdin /dev/null, output appended to log. Return its PID.

    The module exits long before the process does, so it is forked here rather than run
    through run_command (which waits). A failed exec is reported back through a pipe that
    the successful exec closes.
    """
    cgroup_dirs = _cgroup_dirs(cgroup) if cgroup else []
    for directory in cgroup_dirs:
        os.makedirs(directory, exist_ok=True)
    read_end, write_end = os.pipe()  # close-on-exec: a successful exec closes write_end
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(read_end)
            for directory in cgroup_dirs:
                with open(os.path.join(directory, "cgroup.procs"), "w", encoding="ascii") as procs:
                    procs.write("0\n")  # moves this process, and so what it execs
            os.setsid()
            os.chdir(chdir)
            stdin = os.open(os.devnull, os.O_RDONLY)
            out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.dup2(stdin, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.execvp(argv[0], argv)  # noqa: S606 - argv from the task, never through a shell
        except OSError as exc:
            os.write(write_end, str(exc).encode("utf-8", "replace"))
        finally:
            os._exit(127)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as errors:
        error = errors.read()
    if error:
        os.waitpid(pid, 0)
        raise OSError(error.decode("utf-8", "replace"))
    return pid


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def start(module, pid):
    params = module.params
    if _alive(pid, params["match"]):
        return {"changed": False, "pid": pid, "was_running": True, "running": True}
    for name in ("argv", "log"):
        if not params[name]:
            module.fail_json(msg=f"lab_process: '{name}' is required with state=started (pidfile {params['pidfile']})")
    if module.check_mode:
        return {"changed": True, "was_running": False, "running": False}
    os.makedirs(os.path.dirname(params["pidfile"]) or ".", exist_ok=True)
    os.makedirs(os.path.dirname(params["log"]) or ".", exist_ok=True)
    try:
        child = _spawn(params["argv"], params["log"], params["chdir"], params["cgroup"])
    except OSError as exc:
        module.fail_json(msg=f"lab_process: cannot run {params['argv'][0]}: {exc}")
    tmp = f"{params['pidfile']}.tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(f"{child}\n")
    os.replace(tmp, params["pidfile"])
    exited = []  # a child that dies within `settle` seconds did not start

    def died():
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            exited.append(status)
        return done

    if wait_for(died, bool, timeout=params["settle"], **TICK)[0]:
        _remove(params["pidfile"])
        module.fail_json(
            msg=f"lab_process: {params['argv'][0]} exited with status {os.waitstatus_to_exitcode(exited[0])} right after start (log {params['log']})",
            log_tail=_tail(params["log"]),
        )
    return {"changed": True, "pid": child, "was_running": False, "running": True}


def stop(module, pid):
    params = module.params
    if not _alive(pid, params["match"]):
        if not module.check_mode:
            if pid is not None:
                _remove(params["pidfile"])
            if params["cgroup"]:
                _remove_cgroup(params["cgroup"])
        return {"changed": False, "was_running": False, "running": False}
    if module.check_mode:
        return {"changed": True, "pid": pid, "was_running": True, "running": True}
    try:
        sig = signal.Signals[params["stop_signal"]]
    except KeyError:
        module.fail_json(msg=f"lab_process: unknown stop_signal {params['stop_signal']!r}")
    os.kill(pid, sig)
    killed = False
    if not wait_for(lambda: not _alive(pid, params["match"]), bool, timeout=params["stop_timeout"], **SLOW_TICK)[0]:
        os.kill(pid, signal.SIGKILL)
        killed = True
        if not wait_for(lambda: not _alive(pid, params["match"]), bool, timeout=10, **TICK)[0]:
            module.fail_json(msg=f"lab_process: PID {pid} ({params['pidfile']}) survived SIGKILL")
    if params["cgroup"]:
        if killed:  # whatever the killed process left behind in its cgroup goes too
            _kill_cgroup(params["cgroup"])
        _remove_cgroup(params["cgroup"])
    _remove(params["pidfile"])
    return {"changed": True, "pid": pid, "was_running": True, "running": False, "killed": killed}


def main():
    module = AnsibleModule(
        argument_spec={
            "pidfile": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["started", "stopped", "query"], "default": "started"},
            "argv": {"type": "list", "elements": "str"},
            "match": {"type": "str", "required": True},
            "log": {"type": "path"},
            "cgroup": {"type": "str"},
            "chdir": {"type": "path", "default": "/"},
            "settle": {"type": "float", "default": 1.0},
            "stop_signal": {"type": "str", "default": "SIGTERM"},
            "stop_timeout": {"type": "float", "default": 60},
        },
        supports_check_mode=True,
    )
    pid = _read_pid(module.params["pidfile"])
    if module.params["state"] == "query":
        running = _alive(pid, module.params["match"])
        result = {"changed": False, "was_running": running, "running": running}
        if running:
            result["pid"] = pid
    elif module.params["state"] == "started":
        result = start(module, pid)
    else:
        result = stop(module, pid)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
