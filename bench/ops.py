"""Operations playbooks on the lab: wall time of heartbeat, status_report and health_review
against the 10 s target, with verify.yml (the older check of the same lab) as the peer.

Runs each playbook ``--repeat`` times (default 3) on inventory/lab with a state store and report
directory of its own and prints the median. health_review's first run may call the embedded
model; later runs of an unchanged lab are answered from the agents' cache - both are printed.
The lab must be up and configured (make demo, or molecule converge -s ops); the lab is shared,
so run it under the lab lock:

    flock /tmp/locus-lab.lock .venv/bin/python bench/ops.py [--repeat 3]

Last line: ``ops: heartbeat H s status_report S s health_review R s (target 10 s)``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET_S = 10.0


def run(playbook, env):
    started = time.monotonic()
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(REPO / "inventory" / "lab"), str(REPO / "playbooks" / playbook)],
                          env=env, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"{playbook} failed ({proc.returncode}); is the lab up and configured?\n{proc.stdout[-3000:]}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="locus-bench-ops-") as tmp:
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "LOCUS_STATE_DIR": f"{tmp}/state", "LOCUS_REPORT_DIR": f"{tmp}/reports"}
        times = {name: [] for name in ("verify.yml", "heartbeat.yml", "status_report.yml", "health_review.yml")}
        for n in range(args.repeat):
            for name, runs in times.items():  # interleaved, so machine load falls on all alike
                runs.append(run(name, env))
                print(f"run {n + 1}: {name:<18} {runs[-1]:6.1f} s", flush=True)
    med = {name: statistics.median(runs) for name, runs in times.items()}
    for name in ("heartbeat.yml", "status_report.yml", "health_review.yml"):
        print(f"{name:<18} median {med[name]:5.1f} s = {med[name] / TARGET_S:4.2f}x the target, "
              f"{med[name] / med['verify.yml']:4.2f}x verify.yml ({med['verify.yml']:.1f} s)")
    print(f"health_review first run (may call the model) {times['health_review.yml'][0]:.1f} s, "
          f"later runs (cached reviews) {statistics.median(times['health_review.yml'][1:] or [0]):.1f} s")
    print(f"ops: heartbeat {med['heartbeat.yml']:.1f} s status_report {med['status_report.yml']:.1f} s "
          f"health_review {med['health_review.yml']:.1f} s (target {TARGET_S:g} s)")


if __name__ == "__main__":
    main()
