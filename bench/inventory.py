#!/usr/bin/env python
"""Inventory build time: locus.infra.netbox vs netbox.netbox.nb_inventory on the same NetBox.

Seeds N virtual machines with realistic fields (sites, a Proxmox cluster per site with node
devices, roles, tenants, platforms, tags, IPv4 + IPv6 primary IPs, custom fields, config
contexts by site and role) into a real NetBox 4.7 (started here with tests/netbox/netboxctl.py
unless --url/--token name one), then builds the inventory the way ansible-playbook does (a
fresh Python process: plugin loader + InventoryManager on the source, no output of the host
vars) with

* locus.infra.netbox,
* netbox.netbox.nb_inventory as every AWX/execution-environment job and CI run meets it: a
  fresh container, so it fetches and decodes NetBox's OpenAPI document (14 MB) each time,
* netbox.netbox.nb_inventory with that document cached (a long-lived controller),

checks that all see the same host set, repeats (after one uncounted warm-up round, rotating
the order), and prints medians, the peak memory (VmHWM of the process), the client CPU and the
CPU NetBox spent meanwhile (its gunicorn workers and PostgreSQL: their processes' own CPU time when
the bench knows the instance, else the rest of the machine's busy time); measured on the 2-core development VM (NetBox on the same cores, config
contexts pre-rendered)::

    until the inventory is ready (what delays the first task, exit not counted): locus 3.47 s nb_inventory 13.57 s ratio 3.9x (schema cached 10.17 s)
    client CPU: locus 1.45 s nb_inventory 9.57 s (schema cached 6.71 s)
    NetBox CPU meanwhile (rest of the machine: its workers, PostgreSQL): locus 4.14 s nb_inventory 6.27 s (schema cached 5.53 s)
    nb_inventory with its schema cached (long-lived controller): 12.06 s ratio 3.5x
    peak memory: locus 100 MiB nb_inventory 199 MiB (schema cached 189 MiB)
    inventory: 2000 VMs locus 3.49 s nb_inventory 15.07 s ratio 4.3x

Then the warm cases of a long-lived controller: locus.infra.netbox brought up to date from its
snapshot and NetBox's change log (refresh: incremental) with nothing changed and after --changed
VMs were changed through the API before each run, against nb_inventory (cache off: it reads
everything each time, so its cold time is its warm time) and, for reference only, nb_inventory with
cache: true (which serves data up to cache_timeout old). The warm locus result is checked against a
full build (every host's vars and groups).

Usage: .venv/bin/python bench/inventory.py [--vms 2000] [--repeat 3] [--changed 20] [--url URL --token TOKEN]
                                          [--previous REV]  (cold output equal to that of git revision REV)
Caches are off for both plugins in the cold case. Never a timed assertion: it reports, it does not judge.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pynetbox
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "netbox"))

import netboxctl  # noqa: E402
import seed  # noqa: E402

ANSIBLE_INVENTORY = str(Path(sys.executable).with_name("ansible-inventory"))
SITES = ("dc1", "dc2", "dc3", "dc4")
ROLES = ("k3s-agent", "k3s-agent", "k3s-agent", "web", "web", "k3s-server", "router", "ollama")
PLATFORMS = ("debian-12", "debian-13", "ubuntu-24-04")
TENANTS = ("apps", "ops", "data", "lab")
TAGS = ("monitored", "backup", "gpu", "pci", "customer-a", "customer-b")


def bench_specs(n: int) -> tuple[list, dict, list]:
    """N VMs spread over four sites, each site a Proxmox cluster with four nodes."""
    specs, prefixes, contexts = [], {}, []
    for s, site in enumerate(SITES):
        prefixes[site] = [f"10.{100 + s}.0.0/16", f"2001:db8:{100 + s}::/64"]
        for k in range(1, 5):
            specs.append(seed.HostSpec(f"bench-{site}-pve{k}", site, kind="device", role="proxmox-node",
                                       cluster=f"bench-{site}", platform="proxmox-ve", tags=["monitored"],
                                       ips=[f"10.{100 + s}.255.{k}"]))
        contexts.append((f"bench-{site}", 1000, {
            "locus_vm": {"template": "debian-12-cloud",
                         "cloud_init": {"user": "debian", "nameservers": [f"10.{100 + s}.0.1"]},
                         "network": [{"bridge": "vmbr0", "gateway4": f"10.{100 + s}.0.1",
                                      "gateway6": f"2001:db8:{100 + s}::1"}]},
            "ntp_servers": [f"10.{100 + s}.0.1"]}, {"sites": [site]}))
    for role in sorted(set(ROLES)):
        contexts.append((f"bench-role-{role}", 2000, {"role_settings": {"role": role, "monitoring": True}},
                         {"roles": [role]}))
    for i in range(n):
        s = i % len(SITES)
        site = SITES[s]
        role = ROLES[i % len(ROLES)]
        specs.append(seed.HostSpec(
            f"bench-vm-{i:05d}", site, role=role, cluster=f"bench-{site}", node=f"bench-{site}-pve{1 + i % 4}",
            platform=PLATFORMS[i % len(PLATFORMS)], tenant=TENANTS[i % len(TENANTS)],
            status="planned" if i % 50 == 0 else "active",
            tags=[TAGS[i % len(TAGS)], TAGS[(i // 7) % len(TAGS)]] if i % 7 else [TAGS[i % len(TAGS)]],
            ips=[f"10.{100 + s}.{(i // 250) % 250}.{1 + i % 250}", f"2001:db8:{100 + s}::{i + 16:x}"],
            vcpus=1 + i % 8, memory=1024 * (1 + i % 16), disk=10240 * (1 + i % 10),
            custom_fields={"locus_vmid": 10000 + i},
            context={"app": {"index": i, "owner": TENANTS[i % len(TENANTS)]}} if i % 5 == 0 else None))
    return specs, prefixes, contexts


# What ansible-playbook does before the first play: build the inventory from the source. "ready"
# is the moment the inventory is there (CLOCK_MONOTONIC is system-wide, so the parent can compare).
BUILD = """
import json, sys, time
from ansible import constants as C
from ansible.plugins.loader import init_plugin_loader
from ansible.utils.display import Display
Display().verbosity = C.DEFAULT_VERBOSITY  # ANSIBLE_VERBOSITY, as the CLI would set it
init_plugin_loader()
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
inventory = InventoryManager(loader=DataLoader(), sources=[sys.argv[1]])
hosts = inventory.get_hosts()
ready = time.monotonic()
result = {"hosts": sorted(h.name for h in hosts), "vars": sum(len(h.vars) for h in hosts), "ready": ready}
if sys.argv[2:] == ["digest"]:  # verification runs only (never timed): every host's vars and groups
    import hashlib
    own = ("inventory_file", "inventory_dir")  # the config file's path differs between the compared runs
    blob = json.dumps({h.name: [{k: v for k, v in h.vars.items() if k not in own}, sorted(g.name for g in h.groups)]
                       for h in hosts}, sort_keys=True, default=str)
    result["digest"] = hashlib.sha256(blob.encode()).hexdigest()
# Peak RSS of this program alone: getrusage's ru_maxrss also counts the image before exec, the
# forked copy of the (bigger) bench process, so it would report the bench, not the plugin.
with open("/proc/self/status") as status:
    result["peak_kib"] = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps(result))
"""


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq) since boot."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    return sum(int(v) for v in fields[0:3] + fields[4:7]) / os.sysconf("SC_CLK_TCK")


def process_tree_cpu_seconds(roots: list[int]) -> float:
    """CPU seconds of the processes ``roots`` and all their descendants, with the children they reaped
    (PostgreSQL's backends exit with their connection and are reaped by the postmaster)."""
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            procs[int(entry)] = (int(fields[1]), sum(int(v) for v in fields[11:15]))  # ppid; utime stime cutime cstime
    children = {}
    for pid, (ppid, _ticks) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, list(roots)
    while stack:
        pid = stack.pop()
        if pid in procs:
            total += procs[pid][1]
            stack.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


# The NetBox instance's own processes (gunicorn and PostgreSQL), when the bench knows them: the machine's
# busy time minus the plugin's also counts whatever else runs (other users of a shared machine).
NETBOX_PIDS: list[int] = []


def netbox_pids(instance: dict) -> list[int]:
    pids = [instance["pids"]["gunicorn"]]
    with contextlib.suppress(OSError, ValueError, IndexError):
        inst = netboxctl.Instance(Path(instance["state_dir"]), instance["port"])
        pids.append(int((inst.pgdata / "postmaster.pid").read_text().split()[0]))
    return pids


def build_inventory(config_path: Path, env: dict, *extra: str) -> tuple[float, float, int, float, float, dict]:
    """Wall seconds until the process exited and until the inventory was ready, peak RSS (KiB), CPU
    seconds of the process, CPU seconds of NetBox meanwhile (NETBOX_PIDS, else the rest of the machine: NetBox's workers and
    PostgreSQL when nothing else runs) and the result of one inventory build in a fresh process."""
    t0 = time.monotonic()
    busy0 = process_tree_cpu_seconds(NETBOX_PIDS) if NETBOX_PIDS else busy_cpu_seconds()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-c", BUILD, str(config_path), *extra], stdout=out, stderr=err, env=env,
                                cwd=REPO)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        if NETBOX_PIDS:
            busy = process_tree_cpu_seconds(NETBOX_PIDS) - busy0 + (usage.ru_utime + usage.ru_stime)
        else:
            busy = busy_cpu_seconds() - busy0
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"bench: {config_path.name} failed:\n{err.read().decode(errors='replace')[-3000:]}")
        cpu = usage.ru_utime + usage.ru_stime
        lines = out.read().decode().strip().splitlines()
        data = json.loads(lines[-1])
        data["log"] = "\n".join(lines[:-1])  # -v lines, when ANSIBLE_VERBOSITY asks for them
        return wall, data["ready"] - t0, data["peak_kib"], cpu, max(0.0, busy - cpu), data


def render_config_contexts(env: dict) -> float:
    """Run the NetBox instance's RQ worker once (burst): it pre-renders every config context.

    A production NetBox 4.7 runs ``netbox rqworker`` beside the web workers; its
    RenderConfigContextJob fills the per-object config context cache, so API reads do not render
    contexts on demand. tests/netbox/netboxctl.py starts no worker, so without this every read
    of ``config_context`` renders it (JSONB aggregation + deep merge per object), for both plugins.
    """
    t0 = time.monotonic()
    inst = netboxctl.Instance(Path(env["state_dir"]), env["port"])
    netboxctl.netbox_cli(Path(env["chroot"]), inst, "rqworker", "--burst", timeout=900)
    return time.monotonic() - t0


def change_vms(api, names: list[str], value: int) -> None:
    """One bulk PATCH through NetBox's API (logged in its change log, like any edit): new memory sizes."""
    vms = list(api.virtualization.virtual_machines.filter(name=names))
    if len(vms) != len(names):
        raise SystemExit(f"bench: found {len(vms)} of {len(names)} VMs to change")
    api.virtualization.virtual_machines.update([{"id": vm.id, "memory": value + i} for i, vm in enumerate(vms)])


def warm_cases(args, env: dict, tmp: Path, peer: Path, peer_tmp: Path, cold_hosts: set) -> dict:
    """The inventory built again on a long-lived controller: locus from its snapshot (nothing changed, and
    after ``args.changed`` VMs changed through the API), nb_inventory with ``cache: true``. Medians of
    ``args.repeat`` runs after one uncounted priming run; the locus result is checked against a full build."""
    state = tmp / "locus-state"
    ours = tmp / "warm.netbox.yml"
    ours.write_text(yaml.safe_dump({"plugin": "locus.infra.netbox", "url": args.url, "state_dir": str(state)}))
    cached_peer = tmp / "cached-peer.netbox.yml"
    cached_peer.write_text(yaml.safe_dump({**yaml.safe_load(peer.read_text()), "cache": True,
                                           "cache_plugin": "ansible.builtin.jsonfile",
                                           "cache_connection": str(tmp / "nb-cache"), "cache_timeout": 86400}))
    locus_env = {**env, "ANSIBLE_VERBOSITY": "1"}
    peer_env = {k: v for k, v in env.items() if k != "ANSIBLE_INVENTORY_CACHE"}
    peer_env["ANSIBLE_LOCAL_TEMP"] = str(peer_tmp)
    api = pynetbox.api(args.url, token=args.token)
    names = [f"bench-vm-{i:05d}" for i in range(0, args.vms, max(1, args.vms // max(1, args.changed)))][:args.changed]
    runs = {"locus 0 changed": [], f"locus {args.changed} changed": [], "nb_inventory cached": []}
    cpu = {name: [] for name in runs}
    for _attempt in range(2):  # priming: a full build writes the snapshot
        log = build_inventory(ours, locus_env)[5]["log"]
        why = [line for line in log.splitlines() if "no snapshot kept" in line]
        if not why:
            break
        # e.g. the seed's thousands of changes are younger than 10 minutes (docs/netbox.md): wait until not
        print(f"bench: {why[0].strip()}; trying again in 10 minutes")
        time.sleep(610)
    build_inventory(cached_peer, peer_env)  # priming: fills nb_inventory's cache
    for r in range(args.repeat + 1):
        for changed in (0, args.changed):
            if changed:
                change_vms(api, names, 4096 + 100 * r)
            wall, _ready, _rss, _cpu, other, data = build_inventory(ours, locus_env)
            mode = "incremental" if "refresh: incremental" in data["log"] else "FULL"
            print(f"bench: warm {'warm-up' if r == 0 else f'run {r}/{args.repeat}'} locus {changed} changed: "
                  f"{wall:.2f} s, {other:.2f} s CPU of NetBox, {mode}, {len(data['hosts'])} hosts")
            if mode != "incremental" or set(data["hosts"]) != cold_hosts:
                raise SystemExit(f"bench: the warm locus build was not incremental or saw other hosts:\n{data['log']}")
            if r:
                runs[f"locus {changed} changed"].append(wall)
                cpu[f"locus {changed} changed"].append(other)
        wall, _ready, _rss, _cpu, other, data = build_inventory(cached_peer, peer_env)
        print(f"bench: warm {'warm-up' if r == 0 else f'run {r}/{args.repeat}'} nb_inventory cache: true: {wall:.2f} s")
        if r:
            runs["nb_inventory cached"].append(wall)
            cpu["nb_inventory cached"].append(other)
    # the incremental result equals a full build of the same NetBox state (vars and groups of every host)
    inc = build_inventory(ours, locus_env, "digest")[5]
    full = tmp / "full.netbox.yml"
    full.write_text(yaml.safe_dump({"plugin": "locus.infra.netbox", "url": args.url, "refresh": "full",
                                    "state_dir": str(tmp / "full-state")}))
    if inc["digest"] != build_inventory(full, env, "digest")[5]["digest"]:
        raise SystemExit("bench: the incremental inventory differs from a full build")
    print("bench: warm locus inventory equals a full build (vars and groups of every host)")
    result = {name: statistics.median(v) for name, v in runs.items()}
    result.update({f"{name} cpu": statistics.median(v) for name, v in cpu.items()})
    return result


def same_as_previous(rev: str, config: Path, env: dict, tmp: Path) -> None:
    """The cold inventory of this checkout equals that of the collection at git revision ``rev`` (every
    host's vars and groups, the same NetBox data): a speed change must not change the output."""
    prev = tmp / "previous" / "ansible_collections" / "locus" / "infra"
    prev.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(prev)], input=archive, check=True)
    theirs = build_inventory(config, {**env, "ANSIBLE_COLLECTIONS_PATH": str(tmp / "previous")}, "digest")[5]
    ours = build_inventory(config, env, "digest")[5]
    if theirs["digest"] != ours["digest"]:
        raise SystemExit(f"bench: the cold inventory differs from that of {rev}")
    print(f"bench: cold locus inventory equals that of {rev} (vars and groups of every host)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vms", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--changed", type=int, default=20, help="VMs changed before each warm run of the second case")
    p.add_argument("--url", default=os.environ.get("NETBOX_API"))
    p.add_argument("--token", default=os.environ.get("NETBOX_TOKEN"))
    p.add_argument("--netbox-workers", type=int, default=4, help="gunicorn (sync) workers of the NetBox started here")
    p.add_argument("--state-dir", type=Path,
                   help="netboxctl state directory of the NetBox given with --url (to run its RQ worker once)")
    p.add_argument("--previous", metavar="REV",
                   help="also check that the cold inventory equals that of the collection at this git revision")
    p.add_argument("--no-render-contexts", action="store_true",
                   help="leave config contexts unrendered (a NetBox without its RQ worker)")
    args = p.parse_args(argv)

    started = None
    if not (args.url and args.token):
        t0 = time.monotonic()
        # Sync workers: with gthread workers one process takes most connections and the GIL
        # serialises the parallel page requests.
        started = netboxctl.up(port="auto", workers=args.netbox_workers, threads=1)
        args.url, args.token = started["url"], started["token_v1"]
        print(f"bench: NetBox {netboxctl.NETBOX_VERSION} up in {time.monotonic() - t0:.1f} s at {args.url}")
    try:
        specs, prefixes, contexts = bench_specs(args.vms)
        t0 = time.monotonic()
        seed.Seeder(pynetbox.api(args.url, token=args.token), chunk=250).apply(specs, contexts, prefixes)
        print(f"bench: seeded {args.vms} VMs (+{sum(s.kind == 'device' for s in specs)} nodes) "
              f"in {time.monotonic() - t0:.1f} s")
        instance = started or (json.loads((args.state_dir / "env.json").read_text()) if args.state_dir else None)
        if instance is not None:
            NETBOX_PIDS[:] = netbox_pids(instance)
            print(f"bench: NetBox CPU is that of its processes (gunicorn, PostgreSQL: pids {NETBOX_PIDS})")
        else:
            print("bench: NetBox CPU is the rest of the machine's busy time (other users of the machine count too)")
        if args.no_render_contexts:
            print("bench: config contexts not pre-rendered (--no-render-contexts): NetBox renders them on every read")
        elif instance is None:
            print("bench: config contexts not pre-rendered (no --state-dir for the RQ worker): NetBox renders them on "
                  "every read")
        else:
            print(f"bench: config contexts pre-rendered by the NetBox RQ worker in {render_config_contexts(instance):.1f} s")
        with tempfile.TemporaryDirectory() as tmp:
            ours = Path(tmp) / "locus.netbox.yml"
            # a cold build each time: without refresh: full the runs after the first would be incremental from
            # the snapshot the first one wrote (once the seed's changes are older than 10 minutes)
            ours.write_text(yaml.safe_dump({"plugin": "locus.infra.netbox", "url": args.url, "refresh": "full",
                                            "state_dir": str(Path(tmp) / "cold-state")}))
            peer = Path(tmp) / "peer.netbox.yml"
            peer.write_text(yaml.safe_dump({
                "plugin": "netbox.netbox.nb_inventory", "api_endpoint": args.url, "validate_certs": False,
                "config_context": True, "flatten_config_context": True, "interfaces": False, "services": False,
                "virtual_disks": False, "group_by": ["sites", "tenants", "platforms", "device_roles", "tags",
                                                     "cluster", "status"]}))
            # Byte-compiled modules, as any pip-installed controller has them (PYTHONDONTWRITEBYTECODE
            # and an uncompiled venv would charge each run for compiling requests, pynetbox, ...);
            # the cache lives in the bench's temporary directory and is filled by the warm-up round.
            env = {**os.environ, "NETBOX_API": args.url, "NETBOX_TOKEN": args.token,
                   "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_INVENTORY_CACHE": "False",
                   "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            # nb_inventory keeps the OpenAPI document (14 MB for NetBox 4.7) in the parent of
            # ANSIBLE_LOCAL_TEMP. "nb_inventory" starts without it, as every AWX/EE job and CI run
            # does (a fresh container); "nb_inventory (schema cached)" keeps it between runs, as a
            # long-lived controller does.
            if args.previous:
                same_as_previous(args.previous, ours, env, Path(tmp))
            warm_tmp = Path(tmp) / "nb-warm" / "tmp"
            runs = {"locus": (ours, None), "nb_inventory": (peer, "fresh"), "nb_inventory (schema cached)": (peer, warm_tmp)}
            times = {name: [] for name in runs}
            readies = {name: [] for name in runs}
            cpus = {name: [] for name in runs}
            server = {name: [] for name in runs}
            rss = dict.fromkeys(runs, 0)
            # Round 0 warms everything up (NetBox's config context cache and its schema cache, the
            # page cache) and is not counted; then the order rotates.
            for r in range(args.repeat + 1):
                hosts = {}
                names = list(runs)
                names = names[r % len(names):] + names[:r % len(names)]
                for name in names:
                    path, local_tmp = runs[name]
                    run_env = dict(env)
                    if local_tmp == "fresh":
                        run_env["ANSIBLE_LOCAL_TEMP"] = tempfile.mkdtemp(dir=tmp, prefix="nb-fresh-") + "/tmp"
                    elif local_tmp is not None:
                        run_env["ANSIBLE_LOCAL_TEMP"] = str(local_tmp)
                    wall, ready, maxrss, cpu, other, data = build_inventory(path, run_env)
                    hosts[name] = set(data["hosts"])
                    label = "warm-up" if r == 0 else f"run {r}/{args.repeat}"
                    print(f"bench: {label} {name}: {wall:.2f} s ({ready:.2f} s until ready), {cpu:.2f} s CPU, "
                          f"{other:.2f} s CPU of NetBox, {maxrss / 1024:.0f} MiB, {len(hosts[name])} hosts, {data['vars']} host vars")
                    if r:
                        times[name].append(wall)
                        readies[name].append(ready)
                        cpus[name].append(cpu)
                        server[name].append(other)
                        rss[name] = max(rss[name], maxrss)
                for name in names:
                    if hosts[name] != hosts["locus"]:
                        only_a = sorted(hosts["locus"] - hosts[name])[:5]
                        only_b = sorted(hosts[name] - hosts["locus"])[:5]
                        raise SystemExit(f"bench: host sets differ: only locus {only_a}, only {name} {only_b}")
                bench_hosts = {h for h in hosts["locus"] if h.startswith("bench-vm-")}
                if len(bench_hosts) < args.vms:
                    raise SystemExit(f"bench: only {len(bench_hosts)} of {args.vms} bench VMs in the inventory")
            warm = warm_cases(args, env, Path(tmp), peer, warm_tmp, hosts["locus"])
        med = {name: statistics.median(v) for name, v in times.items()}
        ready = {name: statistics.median(v) for name, v in readies.items()}
        cpu = {name: statistics.median(v) for name, v in cpus.items()}
        srv = {name: statistics.median(v) for name, v in server.items()}
        a, b, c = med["locus"], med["nb_inventory"], med["nb_inventory (schema cached)"]
        print(f"until the inventory is ready (what delays the first task, exit not counted): locus "
              f"{ready['locus']:.2f} s nb_inventory {ready['nb_inventory']:.2f} s ratio "
              f"{ready['nb_inventory'] / ready['locus']:.1f}x (schema cached {ready['nb_inventory (schema cached)']:.2f} s)")
        print(f"client CPU: locus {cpu['locus']:.2f} s nb_inventory {cpu['nb_inventory']:.2f} s "
              f"(schema cached {cpu['nb_inventory (schema cached)']:.2f} s)")
        print(f"NetBox CPU meanwhile (its workers, PostgreSQL): locus {srv['locus']:.2f} s "
              f"nb_inventory {srv['nb_inventory']:.2f} s (schema cached {srv['nb_inventory (schema cached)']:.2f} s)")
        print(f"nb_inventory with its schema cached (long-lived controller): {c:.2f} s ratio {c / a:.1f}x")
        print(f"peak memory: locus {rss['locus'] / 1024:.0f} MiB nb_inventory {rss['nb_inventory'] / 1024:.0f} MiB "
              f"(schema cached {rss['nb_inventory (schema cached)'] / 1024:.0f} MiB)")
        print(f"inventory: {args.vms} VMs locus {a:.2f} s nb_inventory {b:.2f} s ratio {b / a:.1f}x")
        for changed in (0, args.changed):
            w = warm[f"locus {changed} changed"]
            print(f"inventory warm: {args.vms} VMs {changed} changed locus {w:.2f} s nb_inventory {c:.2f} s (cache off) "
                  f"ratio {c / w:.1f}x (fresh container: {b:.2f} s, ratio {b / w:.1f}x)")
        print(f"NetBox CPU warm (its workers, PostgreSQL): locus {warm['locus 0 changed cpu']:.2f} s unchanged, "
              f"{warm[f'locus {args.changed} changed cpu']:.2f} s {args.changed} changed; nb_inventory (cache off) "
              f"{srv['nb_inventory (schema cached)']:.2f} s, with cache: true {warm['nb_inventory cached cpu']:.2f} s")
        print(f"nb_inventory with cache: true (serves what NetBox said up to cache_timeout ago, not a peer for "
              f"freshness): {warm['nb_inventory cached']:.2f} s")
    finally:
        if started:
            netboxctl.down(state_dir=Path(started["state_dir"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
