"""BloomFilter against rbloom, side by side in one process; prints a Markdown table.

    bulkhash bench --structure bloom            # 1M and 10M keys, fpr 0.01 and 0.001, 5 rounds
    bulkhash bench --structure bloom --quick    # 1M keys only, 3 rounds
    python benchmarks/bloom.py --json out.json  # the same, as a script

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
  no batch lookup. Left out, with a note, when rbloom is not installed.
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
import sys
from collections.abc import Sequence

import numba
import numpy as np

from .. import bench
from ..bloom import BloomFilter

SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (1_000_000,)
FPRS = (0.01, 0.001)
REPS = 5
QUICK_REPS = 3
RBLOOM_NOTE = "rbloom is not installed (pip install rbloom): no rbloom rows, no ratios."
OPS = ("add", "contains_present", "contains_absent")


def _keys(n: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct keys to add and ``n`` distinct others, absent from them."""
    both = bench.unique_random_keys(2 * n, np.random.default_rng(seed))
    return both[:n], both[n:]


def _rbloom():
    """The rbloom module, or None when it is not installed."""
    try:
        import rbloom
    except ImportError:
        return None
    return rbloom


def cases_for(n: int, fpr: float, keys: np.ndarray, others: np.ndarray, lists: dict | None,
              measured: dict) -> list[bench.Case]:
    """The six timed cases of one (N, fpr): add, contains present, contains absent, for each
    implementation (three when ``lists`` is None: bulkhash only, rbloom being missing); the
    BloomFilter is of the keys' dtype.
    ``measured[impl]`` receives the absent keys' answers and the filter."""
    bf = BloomFilter(n, fpr, key_dtype=keys.dtype)

    def no_false_negatives(what):
        return lambda found: bench._expect(bool(found.all()), f"{what}: a false negative")

    def keep(impl, holder):
        def check(found):
            measured[impl] = (found, holder())
        return check

    impl_b = f"bulkhash BloomFilter ({numba.get_num_threads()} threads)"
    cases = [
        bench.Case("add", impl_b, n, lambda: bf.add(keys), setup=bf.clear),
        bench.Case("contains present", impl_b, n, lambda: bf.contains(keys),
                   check=no_false_negatives("bulkhash")),
        bench.Case("contains absent", impl_b, n, lambda: bf.contains(others),
                   check=keep(impl_b, lambda: bf)),
    ]
    if lists is None:
        return cases

    import rbloom

    rb_box = {}

    def fresh_rbloom():
        rb_box["rb"] = rbloom.Bloom(n, fpr)

    def rb_add():
        rb_box["rb"].update(lists["keys"])

    def rb_contains(which):
        rb = rb_box["rb"]
        return lambda: np.fromiter(map(rb.__contains__, lists[which]), np.bool_, n)

    impl_r = "rbloom (1 thread)"
    return cases + [
        bench.Case("add", impl_r, n, rb_add, setup=fresh_rbloom),
        bench.Case("contains present", impl_r, n, lambda: rb_contains("keys")(),
                   check=no_false_negatives("rbloom")),
        bench.Case("contains absent", impl_r, n, lambda: rb_contains("others")(),
                   check=keep(impl_r, lambda: rb_box["rb"])),
    ]


def measure(sizes: Sequence[int] = SIZES, fprs: Sequence[float] = FPRS, reps: int = REPS,
            quick: bool = False) -> dict:
    """Every (N, fpr), measured: machine, software, parameters, rows (one per implementation,
    with each operation's timing, the measured fpr and bits per key) and notes."""
    if reps < 1 or not sizes or not fprs:
        raise ValueError("reps, sizes and fprs must be positive / non-empty")
    info = dict(machine=bench.machine_info(), software=bench.software_info(),
                parameters=dict(quick=quick, sizes=list(sizes), fprs=list(fprs), reps=reps,
                                interleaved_rounds=True, warmup_rounds=1),
                rows=[], notes=[])
    peer = _rbloom() is not None
    info["software"]["rbloom"] = bench._package_version("rbloom")
    if not peer:
        info["notes"].append(RBLOOM_NOTE)
        print(f"note: {RBLOOM_NOTE}", file=sys.stderr)
    for n in sizes:
        n = int(n)
        keys, others = _keys(n)
        lists = dict(keys=keys.tolist(), others=others.tolist()) if peer else None
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
    quick = info.get("parameters", {}).get("quick")
    head = (f"machine:  {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
            f"{m['memory_gib']} GiB RAM, load average at start {m['loadavg_start']:.2f}\n"
            f"software: Python {s['python']}, NumPy {s['numpy']}, Numba {s['numba']} "
            f"({s['numba_threads']} threads), rbloom {s['rbloom']}, bulkhash {s['bulkhash']}")
    rows = []
    peer = {(r["n"], r["fpr_target"], op): r[op]["per_s"]
            for r in info["rows"] if r["impl"].startswith("rbloom") for op in OPS}
    for r in info["rows"]:
        cells = [f"{r['n']:,}", f"{r['fpr_target']:g}", r["impl"]]
        for op in OPS:
            rate = r[op]["per_s"]
            base = peer.get((r["n"], r["fpr_target"], op))
            ratio = f"{rate / base:.1f}x" if base else "-"
            cells.append(f"{rate / 1e6:.2f} ({ratio})")
        cells += [f"{r['measured_fpr']:.5f}", f"{r['bits_per_key']:.2f}"]
        rows.append(cells)
    header = ["keys", "target fpr", "implementation", "add M/s (x rbloom)",
              "contains present M/s", "contains absent M/s", "measured fpr", "bits/key"]
    notes = [f"- {note}" for note in info.get("notes", [])]
    return "\n".join([f"# bulkhash bench --structure bloom{' --quick' if quick else ''}", "",
                      "```", head, "```", "",
                      bench._table(header, rows, right={0, 1, 3, 4, 5, 6, 7}),
                      *([""] + notes if notes else [])])


def run(quick: bool = False, reps: int | None = None, json_path: str | None = None, *,
        sizes: Sequence[int] | None = None, fprs: Sequence[float] | None = None,
        device: str = "cpu") -> int:
    """``bulkhash bench --structure bloom``: measure, print the Markdown report, optionally write
    JSON. ``sizes``: the key counts (default 1M and 10M; 1M with ``quick``). Returns 0."""
    if device != "cpu":
        raise ValueError(f"device={device!r}: the bloom benchmark runs on the CPU only "
                         "(its peer, rbloom, has no GPU version)")
    sizes = list(sizes or (QUICK_SIZES if quick else SIZES))
    reps = (QUICK_REPS if quick else REPS) if reps is None else int(reps)
    info = measure(sizes, list(fprs or FPRS), reps, quick=quick)
    print(report(info), flush=True)
    bench._write_json(info, json_path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1M keys only, 3 rounds")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="key counts (default 1M and 10M; 1M with --quick)")
    parser.add_argument("--fpr", type=float, nargs="+", default=list(FPRS))
    parser.add_argument("--reps", type=int, default=None,
                        help=f"recorded rounds after a warm-up (default {REPS}; "
                        f"{QUICK_REPS} with --quick)")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    return run(quick=args.quick, reps=args.reps, json_path=args.json, sizes=args.sizes,
               fprs=args.fpr)


if __name__ == "__main__":
    sys.exit(main())
