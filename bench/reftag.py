"""REF-tag allocation throughput: locus.infra's store against a flock'd file counter.

The peer is the seed design's shell counter made safe: one file per action and day,
``flock``, read, increment, write, ``fsync``. It only hands out numbers; locus also appends a
hash-chained audit record in the same transaction. Both are durable (fsync per tag).

Prints tags/s in 1 process and across N processes for both, duplicates counted, and ends with
``reftag: <N> tags/s x16, <ratio>x peer, 0 duplicates``.

    .venv/bin/python bench/reftag.py [--tags 500] [--procs 16] [--state-url postgresql://…]
"""

from __future__ import annotations

import argparse
import fcntl
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / ".venv" / "collections"))

from ansible_collections.locus.infra.plugins.plugin_utils.store import _refs, _store  # noqa: E402


def locus_worker(args):
    n, state_dir, url = args
    store = _store.open_store(url=url, state_dir=state_dir)
    try:
        return [store.record("TASK", "bench", {"i": i}) for i in range(n)]
    finally:
        store.close()


def flock_worker(args):
    n, directory, _url = args
    tags = []
    day = _refs.utc_day()
    path = os.path.join(directory, f"TASK-{day}.seq")
    for _i in range(n):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 32)
            seq = int(raw or b"0") + 1
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, str(seq).encode())
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock
        tags.append(_refs.format_tag("TASK", day, seq))
    return tags


def run(worker, procs, per_proc, directory, url=None):
    if worker is locus_worker:  # schema creation is not part of allocation
        _store.open_store(url=url, state_dir=directory).close()
    start = time.perf_counter()
    if procs == 1:
        results = [worker((per_proc, directory, url))]
    else:
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            results = pool.map(worker, [(per_proc, directory, url)] * procs)
    elapsed = time.perf_counter() - start
    tags = [t for r in results for t in r]
    return len(tags) / elapsed, len(tags) - len(set(tags)), len(tags)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=500, help="tags per process (default 500)")
    parser.add_argument("--procs", type=int, default=16, help="concurrent processes (default 16)")
    parser.add_argument("--state-url", help="benchmark PostgreSQL at this URL instead of SQLite (a scratch database)")
    a = parser.parse_args()

    rows = []
    for name, worker in (("locus", locus_worker), ("flock peer", flock_worker)):
        for procs in (1, a.procs):
            with tempfile.TemporaryDirectory(prefix="locus-bench-") as d:
                url = a.state_url if worker is locus_worker else None
                rate, dups, total = run(worker, procs, a.tags, d, url)
            rows.append((name, procs, rate, dups, total))
            engine = ("postgresql" if a.state_url else "sqlite") if worker is locus_worker else "file"
            print(f"{name:<11} {engine:<10} x{procs:<3} {total:>6} tags {rate:>9.1f} tags/s  duplicates {dups}")
    locus_many = next(r for r in rows if r[0] == "locus" and r[1] == a.procs)
    peer_many = next(r for r in rows if r[0] == "flock peer" and r[1] == a.procs)
    dups = sum(r[3] for r in rows if r[0] == "locus")
    print(f"reftag: {locus_many[2]:.0f} tags/s x{a.procs}, {locus_many[2] / peer_many[2]:.2f}x peer, {dups} duplicates")


if __name__ == "__main__":
    main()
