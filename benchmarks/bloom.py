"""BloomFilter against rbloom, side by side in one process; prints a Markdown table.

    python benchmarks/bloom.py            # 1M and 10M keys, fpr 0.01 and 0.001, 5 rounds
    python benchmarks/bloom.py --quick    # 1M keys only, 3 rounds
    python benchmarks/bloom.py --json out.json

What is measured
----------------
* **Keys**: ``N`` distinct random uint64 keys to add and ``N`` others (distinct from them) to look
  up as absent keys, NumPy ``default_rng`` with a fixed seed.
* **bulkhash**: ``BloomFilter(N, fpr)`` (512-bit blocks, CPU, Numba's threads). *add* is
  ``bf.add(keys)`` into an empty filter (``bf.clear()`` before each round, untimed);
  *contains (present)* is ``bf.contains(keys)`` on the full filter, *contains (absent)*
  ``bf.contains(others)``: NumPy in, a bool array out.
* **rbloom** (``rbloom.Bloom(N, fpr)``, Rust, one thread, Python's ``hash`` of each int): the
  keys as a Python list made beforehand with ``.tolist()`` (untimed, so rbloom is not charged
  for boxing NumPy scalars); *add* is ``rb.update(key_list)`` into a fresh filter (made
  untimed); *contains* is ``np.fromiter(map(rb.__contains__, key_list), bool, N)``, rbloom having
  no batch lookup.
* **measured fpr**: the fraction of the ``N`` absent keys each filter reports present;
  **bits/key**: the filter's memory in bits over ``N``.

Method: the project's protocol (``bulkhash.bench``): every case timed once per round, in
interleaved rounds, round 0 a discarded warm-up (it also compiles); the table shows the median of
the rounds that follow (min-max in the JSON). Results are checked outside the timed region
(no false negatives; the absent keys' answers are kept for the measured fpr). Only ratios within
one run are meaningful on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import sys

import numba
import numpy as np

from bulkhash import bench
from bulkhash.bloom import BloomFilter


def _keys(n: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct keys to add and ``n`` distinct others, absent from them."""
    both = bench.unique_random_keys(2 * n, np.random.default_rng(seed))
    return both[:n], both[n:]


def cases_for(n: int, fpr: float, keys: np.ndarray, others: np.ndarray, lists: dict,
              measured: dict) -> list[bench.Case]:
    """The six timed cases of one (N, fpr): add, contains present, contains absent, for each
    implementation. ``measured[impl]`` receives the absent keys' answers and the filter."""
    import rbloom

    bf = BloomFilter(n, fpr)
    rb_box = {}

    def fresh_rbloom():
        rb_box["rb"] = rbloom.Bloom(n, fpr)

    def rb_add():
        rb_box["rb"].update(lists["keys"])

    def rb_contains(which):
        rb = rb_box["rb"]
        return lambda: np.fromiter(map(rb.__contains__, lists[which]), np.bool_, n)

    def no_false_negatives(what):
        return lambda found: bench._expect(bool(found.all()), f"{what}: a false negative")

    def keep(impl, holder):
        def check(found):
            measured[impl] = (found, holder())
        return check

    impl_b = f"bulkhash BloomFilter ({numba.get_num_threads()} threads)"
    impl_r = "rbloom (1 thread)"
    return [
        bench.Case("add", impl_b, n, lambda: bf.add(keys), setup=bf.clear),
        bench.Case("contains present", impl_b, n, lambda: bf.contains(keys),
                   check=no_false_negatives("bulkhash")),
        bench.Case("contains absent", impl_b, n, lambda: bf.contains(others),
                   check=keep(impl_b, lambda: bf)),
        bench.Case("add", impl_r, n, rb_add, setup=fresh_rbloom),
        bench.Case("contains present", impl_r, n, lambda: rb_contains("keys")(),
                   check=no_false_negatives("rbloom")),
        bench.Case("contains absent", impl_r, n, lambda: rb_contains("others")(),
                   check=keep(impl_r, lambda: rb_box["rb"])),
    ]


def run(sizes: list[int], fprs: list[float], reps: int) -> dict:
    info = dict(machine=bench.machine_info(), software=bench.software_info(), rows=[])
    try:
        import rbloom  # noqa: F401 (the peer: fail before any work when it is missing)
    except ImportError:
        sys.exit("benchmarks/bloom.py compares with rbloom: pip install rbloom")
    info["software"]["rbloom"] = bench._package_version("rbloom")
    for n in sizes:
        keys, others = _keys(n)
        lists = dict(keys=keys.tolist(), others=others.tolist())
        for fpr in fprs:
            measured: dict = {}
            cases = cases_for(n, fpr, keys, others, lists, measured)
            timings = bench.measure_rounds(cases, reps)
            by_impl: dict = {}
            for t in timings:
                by_impl.setdefault(t.impl, {})[t.op] = t
            for impl, ops in by_impl.items():
                found, flt = measured[impl]
                nbits = flt.nbytes * 8 if isinstance(flt, BloomFilter) else flt.size_in_bits
                info["rows"].append(dict(
                    n=n, fpr_target=fpr, impl=impl,
                    measured_fpr=float(np.mean(found)), bits_per_key=nbits / n,
                    **{op.replace(" ", "_"): t.as_dict() for op, t in ops.items()}))
            print(f"done: {n:,} keys, fpr {fpr}", file=sys.stderr)
    return info


def report(info: dict) -> str:
    m, s = info["machine"], info["software"]
    head = (f"machine:  {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
            f"{m['memory_gib']} GiB RAM, load average at start {m['loadavg_start']:.2f}\n"
            f"software: Python {s['python']}, NumPy {s['numpy']}, Numba {s['numba']} "
            f"({s['numba_threads']} threads), rbloom {s['rbloom']}, bulkhash {s['bulkhash']}")
    ops = ("add", "contains_present", "contains_absent")
    rows = []
    peer = {(r["n"], r["fpr_target"], op): r[op]["per_s"]
            for r in info["rows"] if r["impl"].startswith("rbloom") for op in ops}
    for r in info["rows"]:
        cells = [f"{r['n']:,}", f"{r['fpr_target']:g}", r["impl"]]
        for op in ops:
            rate = r[op]["per_s"]
            ratio = rate / peer[(r["n"], r["fpr_target"], op)]
            cells.append(f"{rate / 1e6:.2f} ({ratio:.1f}x)")
        cells += [f"{r['measured_fpr']:.5f}", f"{r['bits_per_key']:.2f}"]
        rows.append(cells)
    header = ["keys", "target fpr", "implementation", "add M/s (x rbloom)",
              "contains present M/s", "contains absent M/s", "measured fpr", "bits/key"]
    return "```\n" + head + "\n```\n\n" + bench._table(header, rows, right={0, 1, 3, 4, 5, 6, 7})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1M keys only, 3 rounds")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--fpr", type=float, nargs="+", default=[0.01, 0.001])
    parser.add_argument("--reps", type=int, default=5, help="recorded rounds (after a warm-up)")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    sizes, reps = ([1_000_000], 3) if args.quick else (args.sizes, args.reps)
    info = run(sizes, args.fpr, reps)
    print(report(info))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
