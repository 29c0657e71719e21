"""Operations playbooks on the lab: wall time of heartbeat, status_report and health_review
against the 10 s target, with verify.yml (the older check of the same lab) as the peer.

Runs each playbook ``--repeat`` times (default 3) on inventory/lab with a state store and report
directory of its own and prints the median. health_review's first run may call the embedded
model; later runs of an unchanged lab are answered from the agents' cache - both are printed.
The lab must be up and configured (make demo, or molecule converge -s ops); the lab is shared,
so run it under the lab lock:

    flock /tmp/locus-lab.lock .venv/bin/python bench/ops.py [--repeat 3]

Each health_review run also prints how many agent answers came from the model and how many from the cache
(its AGENT records). Each run also prints its CPU time (user + system of ansible-playbook and its forks) and the load
average when it started: on a shared machine the wall time follows the load, the CPU time much
less. The slowest tasks of each playbook's median run come from ansible.posix.profile_tasks.

Last line: ``ops: heartbeat H s status_report S s health_review R s (target 10 s)``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET_S = 10.0


def _cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _slowest(stdout, n=4):
    """The ``n`` slowest tasks from profile_tasks' recap: ``[(seconds, name)]``."""
    rows = re.findall(r"^(.+?) -{3,} (\d+\.\d+)s$", stdout.split("TASKS RECAP", 1)[-1], re.M)
    return sorted(((float(s), name.strip()) for name, s in rows), reverse=True)[:n]


def _agent_records(env):
    """``(cached, model)``: the AGENT records in the bench's store so far - answers from the agents' cache, and model calls."""
    out = subprocess.run([str(BIN / "locus"), "audit", "export"], env=env, capture_output=True, text=True, check=True).stdout
    agents = [json.loads(r["data"]) for r in map(json.loads, out.splitlines()) if r["tag"].startswith("LOCUS-AGENT")]
    cached = sum(1 for d in agents if d.get("cached"))
    return cached, len(agents) - cached


def run(playbook, env):
    load = os.getloadavg()[0]
    agents_before = _agent_records(env)
    cpu, started = _cpu(), time.monotonic()
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(REPO / "inventory" / "lab"), str(REPO / "playbooks" / playbook)],
                          env=env, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"{playbook} failed ({proc.returncode}); is the lab up and configured?\n{proc.stdout[-3000:]}")
    agents = [after - before for before, after in zip(agents_before, _agent_records(env), strict=True)]
    return {"wall": elapsed, "cpu": _cpu() - cpu, "load": load, "slowest": _slowest(proc.stdout), "cached": agents[0], "model": agents[1]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="locus-bench-ops-") as tmp:
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "LOCUS_STATE_DIR": f"{tmp}/state", "LOCUS_REPORT_DIR": f"{tmp}/reports",
               "ANSIBLE_CALLBACKS_ENABLED": "locus.infra.audit,ansible.posix.profile_tasks", "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all"}
        runs = {name: [] for name in ("verify.yml", "heartbeat.yml", "status_report.yml", "health_review.yml")}
        for n in range(args.repeat):
            for name, done in runs.items():  # interleaved, so machine load falls on all alike
                done.append(run(name, env))
                r = done[-1]
                agents = f", agents: {r['model']} model call(s), {r['cached']} from the cache" if r["model"] or r["cached"] else ""
                print(f"run {n + 1}: {name:<18} {r['wall']:6.1f} s wall {r['cpu']:6.1f} s CPU (load {r['load']:.1f}){agents}", flush=True)
    med = {name: statistics.median(r["wall"] for r in done) for name, done in runs.items()}
    for name in ("heartbeat.yml", "status_report.yml", "health_review.yml"):
        cpu = statistics.median(r["cpu"] for r in runs[name])
        print(f"{name:<18} median {med[name]:5.1f} s = {med[name] / TARGET_S:4.2f}x the target, "
              f"{med[name] / med['verify.yml']:4.2f}x verify.yml ({med['verify.yml']:.1f} s); CPU {cpu:.1f} s")
        median_run = min(runs[name], key=lambda r: abs(r["wall"] - med[name]))
        print("    slowest tasks: " + "; ".join(f"{task} {s:.1f} s" for s, task in median_run["slowest"]))
    print(f"health_review first run (may call the model) {runs['health_review.yml'][0]['wall']:.1f} s, "
          f"later runs (cached reviews) {statistics.median([r['wall'] for r in runs['health_review.yml'][1:]] or [0]):.1f} s")
    print(f"ops: heartbeat {med['heartbeat.yml']:.1f} s status_report {med['status_report.yml']:.1f} s "
          f"health_review {med['health_review.yml']:.1f} s (target {TARGET_S:g} s)")


if __name__ == "__main__":
    main()
