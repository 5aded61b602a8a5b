"""What the CPU layout allows a lookup: cache lines per probe against the cost of reading them.

For a fixed HashMap of ``--keys`` keys at each load, in one process and in interleaved rounds
(``bulkhash.bench.measure_rounds``): the one-line random gather (the ceiling), reads of 2, 4, ...
32 consecutive lines at random positions of an array as large as the table (``probes.span_cases``),
and the table's own lookups of stored keys (hits) and of absent keys (misses). With the exact
histogram of lines each hit and miss reads (``probes.probe_lines``) the span costs give the best
rate this layout allows, as a fraction of the ceiling (``probes.best_fraction``), printed beside
the measured one.

    python benchmarks/probe_cost.py --keys 50000000 --loads 0.8 0.9
"""

from __future__ import annotations

import argparse

import numba
import numpy as np

import bulkhash
from bulkhash.bench import Case, _expect, measure_rounds, unique_random_keys
from bulkhash.bench import probes


def measure(n: int, key_dtype: str, load: float, reps: int, rng) -> dict:
    nthreads = numba.get_num_threads()
    both = unique_random_keys(2 * n, rng, key_dtype)
    keys, absent = both[:n].copy(), both[n:2 * n].copy()
    del both
    m = bulkhash.HashMap(key_dtype, key_dtype, capacity=n, growable=False, max_load_factor=load)
    m.insert(keys, keys)
    cases = probes.span_cases(m.nbytes, n, rng, nthreads) + [
        Case("lookup", "hits", n, lambda: m.get(keys),
             check=lambda out: _expect(np.array_equal(out, keys), "wrong values")),
        Case("lookup", "misses", n, lambda: m.contains(absent),
             check=lambda out: _expect(not out.any(), "an absent key was found")),
    ]
    timings = measure_rounds(cases, reps)
    spans = [t for t in timings if t.op.endswith("span")]
    costs = probes.span_costs(spans)
    lines = probes.probe_lines(m)
    rates = {t.impl: t.rate for t in timings if t.op == "lookup"}
    return dict(key_dtype=key_dtype, load=m.load_factor, nbytes=m.nbytes,
                ceiling=1.0 / costs[0], hit_lines=lines["hit"], miss_lines=lines["miss"],
                span_cost_vs_one_line={k: float(costs[k - 1] / costs[0]) for k in probes.SPANS},
                hit_best=probes.best_fraction(lines["hit_histogram"], costs),
                miss_best=probes.best_fraction(lines["miss_histogram"], costs),
                hit_measured=rates["hits"] * costs[0], miss_measured=rates["misses"] * costs[0],
                hit_rate=rates["hits"], miss_rate=rates["misses"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=20_000_000)
    ap.add_argument("--loads", type=float, nargs="+", default=[0.8, 0.9])
    ap.add_argument("--dtypes", nargs="+", default=["uint64", "uint32"])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(20_241_124)
    print(f"{args.keys:,} keys, {numba.get_num_threads()} threads, median of {args.reps} "
          "interleaved rounds\n")
    print("| keys/values | load | MB | lines/hit | lines/miss | 2-line span | 4-line span "
          "| ceiling M/s | hit M/s | hit: best, measured | miss M/s | miss: best, measured |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
    for key_dtype in args.dtypes:
        for load in args.loads:
            r = measure(args.keys, key_dtype, load, args.reps, rng)
            span = r["span_cost_vs_one_line"]
            print(f"| {key_dtype} | {r['load']:.2f} | {r['nbytes'] / 1e6:.0f} "
                  f"| {r['hit_lines']:.2f} | {r['miss_lines']:.2f} | {span[2]:.2f}x "
                  f"| {span[4]:.2f}x | {r['ceiling'] / 1e6:.1f} | {r['hit_rate'] / 1e6:.1f} "
                  f"| {r['hit_best']:.2f}, {r['hit_measured']:.2f} | {r['miss_rate'] / 1e6:.1f} "
                  f"| {r['miss_best']:.2f}, {r['miss_measured']:.2f} |", flush=True)
    print("\nbest: the fraction of the one-line gather a lookup reaches if each probe of d lines "
          "costs exactly a d-line span read; measured: the lookup's own rate over the same "
          "gather. Span costs are per read of that many consecutive lines, over one line's.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
