"""Audit callback overhead: a many-task, many-host playbook with no recorder, with
locus.infra.audit, and with ARA's callback (offline mode, SQLite), interleaved runs.

ARA and its Django server stack are installed into a separate virtualenv under
$LOCUS_CACHE_DIR (keyed by ARA's version) so the project's own .venv stays as locked; all
three variants run from that virtualenv, so they share one Python and one ansible-core.

Prints median wall times, overhead against no callback, and peak memory (max RSS of the
ansible-playbook process tree) of each; a second locus run at twice the tasks shows whether
memory stays flat. Last line: ``callback overhead: locus <x>% ara <y>%``.

    .venv/bin/python bench/callback.py [--tasks 200] [--hosts 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARA = "ara[server]==1.8.0"
CACHE = Path(os.environ.get("LOCUS_CACHE_DIR", "/var/cache/locus"))


def bench_venv():
    venv = CACHE / "bench-callback-venv-ara-1.8.0"
    python = venv / "bin" / "python"
    stamp = venv / ".locus-lock"
    lock = (REPO / "requirements.lock").read_text()
    if not python.exists() or not stamp.exists() or stamp.read_text() != lock:
        uv = REPO / ".venv" / "bin" / "uv"
        subprocess.run([str(uv), "venv", "-q", "--allow-existing", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(
            [str(uv), "pip", "install", "-q", "--native-tls", "--python", str(python), "-r", str(REPO / "requirements.lock"), ARA],
            check=True,
        )
        purelib = subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True)
        Path(purelib.strip(), "locus_collections.pth").write_text(str(REPO / ".venv" / "collections") + "\n")
        stamp.write_text(lock)
    return venv


def write_playbook(directory, tasks, hosts):
    inv = ["all:", "  vars:", "    ansible_connection: local", "    ansible_python_interpreter: " + sys.executable, "  hosts:"]
    inv += [f"    h{i:02d}:" for i in range(hosts)]
    (directory / "inventory.yml").write_text("\n".join(inv) + "\n")
    lines = ["- name: Callback benchmark", "  hosts: all", "  gather_facts: false", "  tasks:"]
    for i in range(tasks):
        kind = i % 4
        if kind == 0:
            lines += [f"    - name: Ping {i}", "      ansible.builtin.ping:"]
        elif kind == 1:
            lines += [f"    - name: Set a fact {i}", "      ansible.builtin.set_fact:", f"        fact_{i}: '{{{{ inventory_hostname }}}}-{i}'"]
        elif kind == 2:
            lines += [f"    - name: Debug {i}", "      ansible.builtin.debug:", f"        msg: 'task {i} on {{{{ inventory_hostname }}}}'"]
        else:
            lines += [f"    - name: Skipped {i}", "      ansible.builtin.debug:", "        msg: never", "      when: false"]
    path = directory / f"play-{tasks}.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_once(venv, variant, playbook, directory, env_base):
    env = dict(env_base)
    state = Path(tempfile.mkdtemp(dir=directory, prefix=f"{variant}-"))
    if variant == "locus":
        env.update(ANSIBLE_CALLBACKS_ENABLED="locus.infra.audit", LOCUS_STATE_DIR=str(state))
    elif variant == "ara":
        plugins = subprocess.check_output([str(venv / "bin" / "python"), "-m", "ara.setup.callback_plugins"], text=True).strip()
        env.update(ANSIBLE_CALLBACKS_ENABLED="ara_default", ANSIBLE_CALLBACK_PLUGINS=plugins, ARA_API_CLIENT="offline", ARA_BASE_DIR=str(state))
    cmd = [str(venv / "bin" / "python"), "-c", _MEASURE, str(venv / "bin" / "ansible-playbook"), "-i", str(directory / "inventory.yml"), str(playbook)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{variant} run failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    wall, rss = out.stdout.strip().splitlines()[-1].split()
    return float(wall), int(rss)


# Runs the playbook as a child and reports its wall time and the peak RSS of the tree (KiB).
_MEASURE = """
import resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - t
if p.returncode:
    sys.stderr.write(p.stderr); sys.exit(p.returncode)
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    a = parser.parse_args()
    venv = bench_venv()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "LOCUS_STATE"))}
    with tempfile.TemporaryDirectory(prefix="locus-bench-cb-") as d:
        directory = Path(d)
        # The same configuration for all three, with no callback enabled unless the variant adds it.
        (directory / "ansible.cfg").write_text(
            f"[defaults]\ncollections_path = {REPO / '.venv' / 'collections'}\nforks = 5\n"
            "host_key_checking = False\nretry_files_enabled = False\n"
        )
        env["ANSIBLE_CONFIG"] = str(directory / "ansible.cfg")
        playbook = write_playbook(directory, a.tasks, a.hosts)
        results = {v: [] for v in ("none", "locus", "ara")}
        for _round in range(a.repeat):
            for variant in results:  # interleaved, so drift hits all three alike
                results[variant].append(run_once(venv, variant, playbook, directory, env))
        double = run_once(venv, "locus", write_playbook(directory, a.tasks * 2, a.hosts), directory, env)
    med = {v: statistics.median(wall for wall, _rss in r) for v, r in results.items()}
    rss = {v: max(rss for _wall, rss in r) for v, r in results.items()}
    print(f"playbook: {a.tasks} tasks x {a.hosts} hosts ({a.tasks * a.hosts} results), {a.repeat} runs each, python {sysconfig.get_python_version()}")
    for v in results:
        walls = ", ".join(f"{wall:.2f}" for wall, _rss in results[v])
        over = (med[v] - med["none"]) / med["none"] * 100
        print(f"{v:<6} median {med[v]:7.2f} s  ({walls})  overhead {over:+6.1f}%  peak RSS {rss[v] / 1024:6.1f} MiB")
    print(f"locus at {a.tasks * 2} tasks: peak RSS {double[1] / 1024:.1f} MiB (vs {rss['locus'] / 1024:.1f} MiB at {a.tasks})")
    locus = (med["locus"] - med["none"]) / med["none"] * 100
    ara = (med["ara"] - med["none"]) / med["none"] * 100
    print(f"callback overhead: locus {locus:.1f}% ara {ara:.1f}%")


if __name__ == "__main__":
    main()
