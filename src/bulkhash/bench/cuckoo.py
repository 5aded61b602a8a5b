"""Benchmark: bulkhash's CuckooFilter against pyprobables' CuckooFilter, side by side in one run.

For each size (default 1M and 10M keys) a filter sized for that many keys is filled with them,
then timed: ``add`` of all keys into an empty filter (to load ~0.95), ``contains`` of all of them
(hits), ``contains`` of as many absent keys (misses: their hit rate is the measured
false-positive rate) and ``erase`` of all of them. Rates are million keys per second, median of
``--reps`` runs; memory is bits per key at the load reached.

pyprobables is pure Python (one interpreted call per key, fnv-1a hashing in Python), so it runs
on ``--peer-keys`` keys (default 100k, and never more than the smallest size) instead, in a
filter sized the same way; its keys are passed as 8-byte ``bytes`` made before the clock starts
(it hashes ``str``/``bytes``, not integers). Its filter is a list of per-bucket ``array('I')``
objects, so its memory is counted as the size of those objects (``sys.getsizeof``), 32-bit
fingerprints (its default ``finger_size=4``) with ``auto_expand=False``. Its ``add`` skips a key
whose fingerprint is already in one of the key's buckets, so it holds a set of fingerprints, not
a multiset.

Usage::

    bulkhash bench --structure cuckoo                 # 1M and 10M keys, Markdown to stdout
    bulkhash bench --structure cuckoo --quick         # 1M keys (and 100k for pyprobables), 3 runs
    bulkhash bench --structure cuckoo --device cuda   # bulkhash on the GPU (a real one)
    python benchmarks/cuckoo.py --sizes 1000000 --reps 5 --markdown results.md

Needs ``pip install pyprobables`` for the peer rows (they are left out, and said so, without it).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence

import numba
import numpy as np

from ..cuckoo import CuckooFilter
from . import _expect, _table, _write_json, distinct_of_sorted, machine_info, software_info

SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (1_000_000,)
PEER_KEYS = 100_000
REPS = 3
QUICK_REPS = 3
FPR = 0.001
SIMULATOR_ERROR = ("the CUDA simulator runs each GPU thread as a Python thread: its timings "
                   "mean nothing; run on a GPU")


def _timed(fn) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        gc.enable()


def _median(times: list[float]) -> float:
    return statistics.median(times)


def key_sets(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct present keys and ``n`` absent ones (even / odd uint64, shuffled)."""
    rng = np.random.default_rng(seed)
    present = distinct_of_sorted(np.sort(rng.integers(0, 2**63, n + n // 100 + 16,
                                                      dtype=np.uint64)))
    present = rng.permutation(present)[:n] * np.uint64(2)
    absent = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    return present, absent


def bench_bulkhash(n: int, fpr: float, bits: int | None, reps: int, device: str) -> dict:
    present, absent = key_sets(n)
    if device == "cuda":
        from numba import cuda

        present, absent = cuda.to_device(present), cuda.to_device(absent)
        sync = cuda.synchronize
    else:
        sync = lambda: None  # noqa: E731
    f = CuckooFilter(n, fpr=fpr if bits is None else None, fingerprint_bits=bits, device=device)
    # warm-up: compiles the kernels (cached on disk after the first run) and faults the table in
    f.add(present[:1000])
    f.contains(present[:1000])
    f.erase(present[:1000])
    times = {"add": [], "hits": [], "misses": [], "erase": []}
    found = measured = None
    for _ in range(reps):
        f.clear()
        times["add"].append(_timed(lambda: (f.add(present), sync())))
        times["hits"].append(_timed(lambda: (f.contains(present), sync())))
        times["misses"].append(_timed(lambda: (f.contains(absent), sync())))
        load, nbytes = f.load_factor, f.nbytes
        found = np.asarray(f._host(f.contains(present)))
        measured = float(np.asarray(f._host(f.contains(absent))).mean())
        times["erase"].append(_timed(lambda: (f.erase(present), sync())))
    _expect(bool(found.all()), "bulkhash CuckooFilter: a false negative")
    return dict(library="bulkhash", device=device, keys=n, bits=f.fingerprint_bits,
                target=f.fpr, expected=_expected(f, load),
                measured=measured, load=load, bits_per_key=8 * nbytes / n,
                **{op: n / _median(t) / 1e6 for op, t in times.items()})


def _expected(f: CuckooFilter, load: float) -> float:
    from .._cpu.cuckoo import false_positive_bound

    return false_positive_bound(f.fingerprint_bits, load)


def bench_pyprobables(n: int, reps: int) -> dict | None:
    try:
        from probables import CuckooFilter as PeerFilter
        from probables.exceptions import CuckooFilterFullError
    except ImportError:
        return None
    present, absent = key_sets(n, seed=2)
    present_b = [int(k).to_bytes(8, "little") for k in present.tolist()]
    absent_b = [int(k).to_bytes(8, "little") for k in absent.tolist()]
    bins = int(np.ceil(n / (4 * 0.95)))

    def new():
        return PeerFilter(capacity=bins, bucket_size=4, max_swaps=500, auto_expand=False,
                          finger_size=4)

    failed = 0

    def add_all(f):
        nonlocal failed
        for k in present_b:
            try:
                f.add(k)
            except CuckooFilterFullError:
                failed += 1

    times = {"add": [], "hits": [], "misses": [], "erase": []}
    for _ in range(reps):
        f = new()
        times["add"].append(_timed(lambda: add_all(f)))
        hits = []
        times["hits"].append(_timed(lambda: hits.extend(map(f.check, present_b))))
        misses = []
        times["misses"].append(_timed(lambda: misses.extend(map(f.check, absent_b))))
        load = f.load_factor()
        memory = sys.getsizeof(f.buckets) + sum(sys.getsizeof(b) for b in f.buckets)
        stored = f.elements_added
        times["erase"].append(_timed(lambda: list(map(f.remove, present_b))))
    _expect(all(hits), "pyprobables CuckooFilter: a false negative")
    import probables

    return dict(library=f"pyprobables {probables.__version__}", device="cpu (Python)", keys=n,
                bits=f.fingerprint_size_bits, target=f.error_rate, expected=None,
                measured=float(np.mean(misses)), load=load, bits_per_key=8 * memory / stored,
                failed=failed // reps, **{op: n / _median(t) / 1e6 for op, t in times.items()})


def markdown(rows: list[dict]) -> str:
    header = ["library", "device", "keys", "fp bits", "add M/s", "contains hits M/s",
              "contains misses M/s", "erase M/s", "measured fpr", "expected fpr", "load",
              "bits/key"]
    body = []
    for r in rows:
        expected = "-" if r["expected"] is None else f"{r['expected']:.2e}"
        body.append([
            r["library"], r["device"], f"{r['keys']:,}", str(r["bits"]), f"{r['add']:.2f}",
            f"{r['hits']:.2f}", f"{r['misses']:.2f}", f"{r['erase']:.2f}",
            f"{r['measured']:.2e}", expected, f"{r['load']:.3f}", f"{r['bits_per_key']:.1f}",
        ])
    return _table(header, body, right=set(range(2, len(header))))


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), platform.processor())
    except OSError:
        cpu = platform.processor()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} CPUs, Numba threads {numba.get_num_threads()}, "
            f"load average at start {load:.2f}; Python {platform.python_version()}, "
            f"NumPy {np.__version__}, Numba {numba.__version__}")


def _simulated(device: str) -> bool:
    return device == "cuda" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def measure(sizes: Sequence[int] = SIZES, reps: int = REPS, fpr: float = FPR,
            peer_keys: int = PEER_KEYS, device: str = "cpu", quick: bool = False) -> dict:
    """bulkhash at every size (at ``fpr``'s fingerprint width and at 32 bits), then pyprobables
    on ``peer_keys`` keys (0: left out): machine, software, parameters, rows, notes."""
    if reps < 1 or not sizes:
        raise ValueError("reps and sizes must be positive / non-empty")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r}: use 'cpu' or 'cuda'")
    info = dict(machine_text=machine(), machine=machine_info(), software=software_info(),
                parameters=dict(quick=quick, sizes=[int(n) for n in sizes], reps=reps, fpr=fpr,
                                peer_keys=peer_keys, device=device),
                rows=[], notes=[])
    for n in sizes:
        for bits in (None, 32):
            info["rows"].append(bench_bulkhash(int(n), fpr, bits, reps, device))
            print(f"bulkhash {n:,} keys, {info['rows'][-1]['bits']}-bit: done", file=sys.stderr)
    peer = bench_pyprobables(peer_keys, reps) if peer_keys else None
    info["notes"] = [f"Machine: {info['machine_text']}.",
                     (f"Median of {reps} runs; rates in million keys per second. bulkhash rows: "
                      f"fpr={fpr} (its smallest fingerprint that meets it) and 32-bit "
                      "fingerprints, as pyprobables' default; bits/key: the filter's memory "
                      "over the keys it holds.")]
    if peer is not None:
        info["rows"].append(peer)
        info["notes"].append(
            f"pyprobables is pure Python: it ran on {peer_keys:,} keys (not the sizes above), "
            f"keys given as 8-byte bytes made before timing; {peer['failed']} of its adds found "
            "the filter full. Its bits/key is the Python objects holding its buckets.")
    elif peer_keys:
        info["notes"].append("pyprobables is not installed (pip install pyprobables): no peer "
                             "rows.")
        print("note: pyprobables is not installed: no peer rows", file=sys.stderr)
    else:
        info["notes"].append("pyprobables left out (--peer-keys 0).")
    return info


def report(info: dict) -> str:
    quick = info["parameters"].get("quick")
    return "\n".join([f"# bulkhash bench --structure cuckoo{' --quick' if quick else ''}", "",
                      markdown(info["rows"]), "", *[f"- {n}" for n in info["notes"]]])


def run(quick: bool = False, reps: int | None = None, json_path: str | None = None, *,
        sizes: Sequence[int] | None = None, peer_keys: int | None = None, fpr: float = FPR,
        device: str = "cpu", markdown_path: str | None = None) -> int:
    """``bulkhash bench --structure cuckoo``: measure, print the Markdown report, optionally
    write JSON (and the report to ``markdown_path``). ``sizes``: the key counts (default 1M and
    10M; 1M with ``quick``); ``peer_keys``: pyprobables' (default 100k, at most the smallest
    size). Returns 0, or 2 for ``device="cuda"`` under Numba's CUDA simulator."""
    if _simulated(device):
        print(f"bulkhash bench --structure cuckoo --device cuda: {SIMULATOR_ERROR}",
              file=sys.stderr)
        return 2
    sizes = [int(n) for n in (sizes or (QUICK_SIZES if quick else SIZES))]
    reps = (QUICK_REPS if quick else REPS) if reps is None else int(reps)
    if peer_keys is None:
        peer_keys = min(PEER_KEYS, min(sizes))
    info = measure(sizes, reps, fpr, peer_keys, device, quick=quick)
    text = report(info)
    print(text, flush=True)
    if markdown_path:
        with open(markdown_path, "w") as f:
            f.write(text + "\n")
    _write_json(info, json_path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="key counts (default 1M and 10M; 1M with --quick)")
    parser.add_argument("--peer-keys", type=int, default=None,
                        help="keys for pyprobables (pure Python; default 100k, at most the "
                        "smallest size; 0 leaves it out)")
    parser.add_argument("--reps", type=int, default=None, help=f"runs (default {REPS})")
    parser.add_argument("--quick", action="store_true", help="1M keys only, 3 runs")
    parser.add_argument("--fpr", type=float, default=FPR,
                        help="bulkhash's target rate (its fingerprint width follows)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--markdown", help="also write the report to this file")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    if _simulated(args.device):
        parser.error(SIMULATOR_ERROR)
    return run(quick=args.quick, reps=args.reps, json_path=args.json, sizes=args.sizes,
               peer_keys=args.peer_keys, fpr=args.fpr, device=args.device,
               markdown_path=args.markdown)


if __name__ == "__main__":
    sys.exit(main())
