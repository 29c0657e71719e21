"""`locus mcp`: what an audited tool call costs an assistant, against the CLI it would otherwise run.

Peers measured in the same run, on the same SQLite store (pre-filled with records):
* ``audit_show`` (last 20) through one open MCP stdio session (the SDK's own client): schema
  check, the query, the RESEARCH record of the call (a write transaction), the JSON-RPC round trip;
* the same question as a ``locus audit show --last 20 --json`` process, what an assistant without
  MCP runs through a shell tool (no record of the read at all);
* ``audit_verify`` through MCP against ``locus audit verify``.

    .venv/bin/python bench/mcp_server.py [--calls 50] [--records 2000]

Last line: ``mcp: audit_show <x> ms per call (cli <y> ms, ratio <r>), audit_verify <v> ms (cli <w> ms)``.
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

import anyio
import mcp_types
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from ansible_collections.locus.infra.plugins.plugin_utils.store import _store

LOCUS = str(Path(sys.executable).parent / "locus")


def mcp_calls(env, name, args, calls):
    async def run():
        params = StdioServerParameters(command=LOCUS, args=["mcp"], env=env)
        async with Client(params, client_info=mcp_types.Implementation(name="bench", version="1")) as client:
            await client.call_tool(name, args)  # warm: imports, first query
            times = []
            for _call in range(calls):
                start = time.perf_counter()
                result = await client.call_tool(name, args)
                times.append(time.perf_counter() - start)
                assert not result.is_error, result.structured_content
            return times

    return anyio.run(run)


def cli_calls(env, argv, calls):
    times = []
    for _call in range(calls):
        start = time.perf_counter()
        subprocess.run([LOCUS, *argv], env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="locus-bench-mcp-") as tmp:
        env = {**os.environ, "LOCUS_STATE_DIR": tmp}
        env.pop("LOCUS_STATE_URL", None)
        with _store.open_store(state_dir=tmp) as store:
            store.record_many([("TASK", f"task {n} @ web{n % 7}", {"host": f"web{n % 7}", "status": "ok"}) for n in range(args.records)])
        show = statistics.median(mcp_calls(env, "audit_show", {"last": 20}, args.calls)) * 1000
        show_cli = statistics.median(cli_calls(env, ["audit", "show", "--last", "20", "--json"], max(5, args.calls // 5))) * 1000
        verify = statistics.median(mcp_calls(env, "audit_verify", {}, max(5, args.calls // 5))) * 1000
        verify_cli = statistics.median(cli_calls(env, ["audit", "verify"], max(5, args.calls // 5))) * 1000
        with _store.open_store(state_dir=tmp) as store:
            recorded = sum(1 for r in store.iter_records() if r["tag"].startswith("LOCUS-RESEARCH"))
    print(f"records in the trail before the run: {args.records}; RESEARCH records written by the MCP calls: {recorded}")
    print(f"mcp: audit_show {show:.1f} ms per call (cli {show_cli:.1f} ms, ratio {show_cli / show:.1f}), "
          f"audit_verify {verify:.1f} ms (cli {verify_cli:.1f} ms)")


if __name__ == "__main__":
    main()
