"""Agent calls: cache-hit latency vs a real call, embedded tokens/s with and without a schema.

Peers measured in the same run:
* a cache hit (full ``run_agent``: options, lane, cache lookup, AGENT audit record) against a
  real call of the same request on the embedded model (cache off);
* schema-constrained decoding against unconstrained decoding, same prompt, the top_k sweep
  behind ``_llm.EMBEDDED_TOP_K``, and OpenMP's default busy waiting (a child process) against
  the passive waiting ``_llm.import_llama_cpp`` sets;
* tokens spent by a repeated run of the same requests (must be 0).

Generation speed = generated tokens / (wall time - prompt evaluation time), so the grammar's
cost (it runs in sampling, outside llama.cpp's eval timer) is included.

    .venv/bin/python bench/agent.py [--repeat 3]

Last line: ``agent: cache hit <x> ms, embedded <y> tok/s schema``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from ansible_collections.locus.infra.plugins.plugin_utils.agents import _agent, _llm
from ansible_collections.locus.infra.plugins.plugin_utils.store import _store

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["risk", "findings", "score"],
    "properties": {
        "risk": {"enum": ["low", "medium", "high", "critical"]},
        "findings": {"type": "array", "items": {"type": "string", "maxLength": 120}, "minItems": 1, "maxItems": 3},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
    },
}
FACTS = {"site": "example.org", "tls_protocols": ["TLSv1.0", "TLSv1.2"], "hsts": False, "listen": "0.0.0.0:443"}


def generation_rate(backend, request):
    """(tokens/s of generation, output tokens) for one embedded call."""
    llama_cpp = _llm.import_llama_cpp()
    path = _llm.resolve_embedded_model(request.model)
    llm = backend._load(path)
    llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
    start = time.perf_counter()
    response = backend.complete(request)
    wall = time.perf_counter() - start
    perf = llama_cpp.llama_perf_context(llm._ctx.ctx)
    gen_s = wall - perf.t_p_eval_ms / 1000.0
    return response.output_tokens / gen_s, response.output_tokens


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3, help="measurements per figure (median is reported)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    state = tempfile.mkdtemp(prefix="locus-bench-agent-")
    if not args.child:
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; store {state}", flush=True)

    backend = _llm.EmbeddedBackend()
    system, prompt = _agent._agent_prompts.build("security", "Review these TLS settings for risk.", FACTS, SCHEMA)
    base = {"system": system, "prompt": prompt, "model": _llm.DEFAULT_MODELS["embedded"], "max_tokens": 96, "temperature": 0.0}
    generation_rate(backend, _llm.LLMRequest(**{**base, "max_tokens": 4}))  # load and warm up
    print(f"OpenMP wait policy: {os.environ.get('OMP_WAIT_POLICY')}", flush=True)

    rates = {}
    for label, schema, temperature, top_k in (
        ("no schema, greedy", None, 0.0, None),
        ("schema, greedy", SCHEMA, 0.0, None),
        ("schema, t=0.7 top_k 40", SCHEMA, 0.7, 40),
        (f"schema, t=0.7 top_k {_llm.EMBEDDED_TOP_K}", SCHEMA, 0.7, None),
        ("schema, t=0.7 top_k 1", SCHEMA, 0.7, 1),
    ):
        request = {**base, "schema": schema, "temperature": temperature, "top_k": top_k}
        runs = [generation_rate(backend, _llm.LLMRequest(**request)) for _rep in range(args.repeat)]
        rates[label] = statistics.median(run[0] for run in runs)
        print(f"embedded {label:24s} {rates[label]:7.1f} tok/s ({runs[0][1]} tokens)", flush=True)
    schema_rate = rates["schema, greedy"]
    print(f"embedded schema vs no schema (peer): {schema_rate / rates['no schema, greedy']:.2f}x")
    if not args.child:
        active = subprocess.run(
            [sys.executable, __file__, "--child", "--repeat", str(args.repeat)],
            env={**os.environ, "OMP_WAIT_POLICY": "ACTIVE"},
            capture_output=True,
            text=True,
            check=True,
        )
        active_rate = float(active.stdout.strip().splitlines()[-1])
        print(
            f"embedded schema, greedy with OpenMP busy waiting (llama.cpp's default): {active_rate:.1f} tok/s; "
            f"passive waiting is {schema_rate / active_rate:.1f}x faster at load {os.getloadavg()[0]:.1f}"
        )
    else:
        print(schema_rate)
        return 0

    with _store.open_store(state_dir=state) as store:
        options = {"role": "security", "task": "Review these TLS settings for risk.", "context": FACTS, "schema": SCHEMA, "max_tokens": 96}
        real = []
        for i in range(args.repeat):
            start = time.perf_counter()
            _agent.run_agent({**options, "task": f"{options['task']} (run {i})", "cache": False}, store, job="bench")
            real.append(time.perf_counter() - start)
        _agent.run_agent(options, store, job="bench")  # fills the cache
        hits = []
        for _hit in range(max(20, args.repeat)):
            start = time.perf_counter()
            result = _agent.run_agent(options, store, job="bench")
            hits.append(time.perf_counter() - start)
            assert result["cached"], "expected a cache hit"
        real_ms, hit_ms = statistics.median(real) * 1000, statistics.median(hits) * 1000
        print(f"real embedded call {real_ms:8.1f} ms (median of {len(real)})")
        print(f"cache hit          {hit_ms:8.2f} ms (median of {len(hits)}): {real_ms / hit_ms:.0f}x faster than the real call")

        requests = [{**options, "task": f"Repeated run question {i}."} for i in range(3)]
        spent = []
        for _run in range(2):
            tokens = 0
            for req in requests:
                r = _agent.run_agent(req, store, job="bench")
                tokens += r["usage"]["input_tokens"] + r["usage"]["output_tokens"]
            spent.append(tokens)
        print(f"tokens spent: first run {spent[0]}, repeated run {spent[1]}")
    if spent[1] != 0:
        print("FAIL: a repeated run spent tokens", file=sys.stderr)
        return 1
    print(f"agent: cache hit {hit_ms:.2f} ms, embedded {schema_rate:.1f} tok/s schema")
    return 0


if __name__ == "__main__":
    sys.exit(main())
