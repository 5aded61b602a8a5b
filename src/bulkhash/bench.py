"""``bulkhash bench``: bulkhash against its peers and against the machine, in one process.

What is measured (``--quick``: about a minute on two cores, plus ~30 s of compilation the first time)
----------------------------------------------------------------------------------------------------
* **Keys**: ``N`` (default 20,000,000) unique uint64 keys drawn from NumPy's ``default_rng`` with a
  fixed seed (checked unique; duplicates, vanishingly rare, are replaced), and random uint64 values.
* **bulkhash**: a fixed ``HashMap("uint64", "uint64", capacity=N, growable=False,
  max_load_factor=0.8)``, so that ``N`` keys fill it to load 0.8. *insert* is ``m.insert(keys,
  values)`` into the empty table (``m.clear()`` before each repetition, untimed); *lookup* is
  ``m.get(keys)`` on the full table, every key present, queried in insertion order (placement is by
  hash, so the probes land at random table positions either way). Both run on Numba's threads.
* **pandas' khash** (``pandas._libs.hashtable.UInt64HashTable``, one thread): a table made with
  ``size_hint=N`` (untimed; khash rounds its buckets up to a power of two, so its load is what it
  reports, about 0.6 at 20M), then *insert* = ``map_locations(keys)`` (key -> position) and
  *lookup* = ``lookup(keys)``.
* **Python dict** (one thread) on the first 1,000,000 keys, beside HashMap and khash on the same
  1,000,000 keys: *insert* = ``dict(zip(key_list, value_list))``, *lookup* = ``[d[k] for k in
  key_list]``, with the lists made by ``.tolist()`` beforehand (untimed), so that the dict is
  not charged for boxing NumPy scalars.
* **The ceiling** (``bulkhash._cpu.ceiling``): compiled loops over a uint64 array as large as the
  HashMap (``m.nbytes``): a random gather (one 8-byte read at each of ``N`` random positions, with
  and without software prefetch; the faster counts), a random scatter-update (``a[i] += 1``, same
  two variants), and a sequential read (GB/s). Lookups are compared with the gather ceiling,
  inserts with the scatter-update ceiling.

Method (the project's benchmark protocol)
-----------------------------------------
Every figure is measured in this one process, side by side with what it is compared to. The
measurements run in *interleaved rounds*: each round times every case once (ceiling, HashMap,
khash, ...), so that a slow spell of a shared machine hits all of them alike. Round 0 is a warm-up
and is discarded; the report gives the median of the next ``reps`` rounds (at least 5) with their
min and max. Ratios ("x khash", "% of ceiling") are ratios of those medians. Results are checked
(every key inserted, every lookup returns its value) outside the timed region. Python's garbage
collector is off inside a timed call. Allocating a fresh table (``clear()`` / a new khash table)
is outside the timing; first-touch page faults of that memory, and allocating each call's output
array, are inside it, for every implementation alike.

Compilation is excluded from all of the above and reported on its own: before any data is made,
each compiled path (HashMap insert, HashMap lookup, the ceiling kernels) is called on a tiny input
twice; the first call minus the second is the compile time -- or, when Numba found the kernel in
its on-disk cache, the time to load it (the report says which).
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numba
import numpy as np

DEFAULT_KEYS = 20_000_000
DICT_KEYS = 1_000_000
LOAD_FACTOR = 0.8
SEED = 20_240_601
PREFETCH_DISTANCE = 16  # ceiling kernels' software-prefetch distance (the table kernels' too)
# Seven, not the protocol's minimum of five: on this shared VM about one call in six that allocates
# a large output runs at half speed (the kernel is faulting in fresh transparent huge pages and now
# and then compacting memory to find them), and with five rounds one or two such calls move the
# median. A preallocated output shows no such calls (18 in a row within 64-85 M/s).
QUICK_REPS = 7
FULL_REPS = 11

_U64_MAX = int(np.iinfo(np.uint64).max)


# ================================================================================================
# timing
# ================================================================================================


@dataclass
class Case:
    """One thing to time: ``run()`` is the timed call; ``setup()`` runs untimed before it and
    ``check(result)`` untimed after it (raises if the result is wrong)."""

    op: str
    impl: str
    n: int
    run: Callable[[], Any]
    setup: Callable[[], None] | None = None
    check: Callable[[Any], None] | None = None
    unit: str = "ops"  # what ``n`` counts: "ops", "accesses" or "bytes"


@dataclass
class Timing:
    op: str
    impl: str
    n: int
    unit: str
    seconds: list[float] = field(default_factory=list)
    warmup_seconds: float = float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        """``n`` per second at the median time."""
        return self.n / self.median

    def as_dict(self) -> dict:
        return dict(op=self.op, impl=self.impl, n=self.n, unit=self.unit,
                    median_s=self.median, min_s=min(self.seconds), max_s=max(self.seconds),
                    per_s=self.rate, seconds=self.seconds, warmup_s=self.warmup_seconds)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call, with the garbage collector off during it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
    finally:
        if was_enabled:
            gc.enable()
    return elapsed, result


def measure_rounds(cases: list[Case], reps: int) -> list[Timing]:
    """Time every case once per round, for one warm-up round and then ``reps`` recorded ones."""
    timings = [Timing(c.op, c.impl, c.n, c.unit) for c in cases]
    for round_ in range(reps + 1):
        for case, timing in zip(cases, timings):
            if case.setup is not None:
                case.setup()
            elapsed, result = timed(case.run)
            if case.check is not None:
                case.check(result)
            del result
            if round_ == 0:
                timing.warmup_seconds = elapsed
            else:
                timing.seconds.append(elapsed)
    return timings


# ================================================================================================
# inputs
# ================================================================================================


def unique_random_keys(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct uniformly random uint64 keys, in random order."""
    keys = rng.integers(0, _U64_MAX, size=n, dtype=np.uint64, endpoint=True)
    while True:
        ordered = np.sort(keys)
        if n < 2 or not np.any(ordered[1:] == ordered[:-1]):
            return keys
        distinct = np.unique(ordered)  # rare (about n**2 / 2**65 collisions): redraw the missing
        extra = rng.integers(0, _U64_MAX, size=n - distinct.size, dtype=np.uint64, endpoint=True)
        keys = np.concatenate([distinct, extra])
        rng.shuffle(keys)


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise RuntimeError(f"benchmark result check failed: {what}")


# ================================================================================================
# the machine
# ================================================================================================


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def machine_info() -> dict:
    cpuinfo = _read("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    meminfo = _read("/proc/meminfo")
    mem_kib = next((int(line.split()[1]) for line in meminfo.splitlines()
                    if line.startswith("MemTotal:")), 0)
    thp = _read("/sys/kernel/mm/transparent_hugepage/enabled").strip()
    thp = thp[thp.find("[") + 1:thp.find("]")] if "[" in thp else (thp or "unknown")
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return dict(cpu=model, cores=os.cpu_count(), usable_cores=usable,
                memory_gib=round(mem_kib / 2**20, 1), transparent_hugepages=thp,
                os=f"{platform.system()} {platform.release()}",
                loadavg_start=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)


def software_info() -> dict:
    import bulkhash

    try:
        import pandas
        pandas_version = pandas.__version__
    except ImportError:
        pandas_version = None
    return dict(python=platform.python_version(), numpy=np.__version__, numba=numba.__version__,
                pandas=pandas_version, bulkhash=bulkhash.__version__,
                numba_threads=numba.get_num_threads())


def _numba_cache_counts(modules) -> tuple[int, int]:
    """(signatures loaded from Numba's disk cache, signatures compiled) of these modules' kernels."""
    from numba.core.dispatcher import Dispatcher

    hits = misses = 0
    for module in modules:
        for obj in vars(module).values():
            stats = getattr(obj, "stats", None) if isinstance(obj, Dispatcher) else None
            if stats is not None:
                hits += sum(stats.cache_hits.values())
                misses += sum(stats.cache_misses.values())
    return hits, misses


# ================================================================================================
# compile time
# ================================================================================================


def measure_compile(nthreads: int) -> list[dict]:
    """First call minus second call of each compiled path, on tiny inputs (see module doc)."""
    import bulkhash
    from ._cpu import ceiling as C
    from ._cpu import kernels as K

    rng = np.random.default_rng(SEED + 1)
    keys = unique_random_keys(4096, rng)
    values = rng.integers(0, _U64_MAX, size=keys.size, dtype=np.uint64, endpoint=True)
    m = bulkhash.HashMap("uint64", "uint64", capacity=keys.size, growable=False,
                         max_load_factor=LOAD_FACTOR)
    arr = np.arange(1024, dtype=np.uint64)
    idx = rng.integers(0, arr.size, size=256, dtype=np.int64)

    def insert():
        m.clear()
        m.insert(keys, values)

    paths = [("HashMap insert", insert, (K,)),
             ("HashMap lookup", lambda: m.get(keys), (K,)),
             ("ceiling kernels", lambda: (C.gather(arr, idx, PREFETCH_DISTANCE, nthreads),
                                          C.scatter_add(arr, idx, PREFETCH_DISTANCE, nthreads),
                                          C.sequential_sum(arr, nthreads)), (C,))]
    out = []
    for name, fn, modules in paths:
        hits0, misses0 = _numba_cache_counts(modules)
        first, _ = timed(fn)
        second, _ = timed(fn)
        hits1, misses1 = _numba_cache_counts(modules)
        hits, misses = hits1 - hits0, misses1 - misses0
        how = ("compiled" if misses and not hits else "loaded from Numba's disk cache"
               if hits and not misses else f"{misses} compiled, {hits} loaded from cache"
               if hits or misses else "already compiled")
        out.append(dict(path=name, first_call_s=first, second_call_s=second,
                        compile_s=max(0.0, first - second), how=how,
                        signatures_compiled=misses, signatures_loaded=hits))
    return out


# ================================================================================================
# the measurements
# ================================================================================================


def ceiling_cases(footprint_bytes: int, n: int, rng: np.random.Generator,
                  nthreads: int) -> tuple[list[Case], dict]:
    """Cases for the random gather / scatter-update / sequential read over ``footprint_bytes``."""
    from ._cpu import ceiling as C

    words = max(1, footprint_bytes // 8)
    arr = np.arange(words, dtype=np.uint64)  # touched: every page is resident before timing
    idx = rng.integers(0, words, size=n, dtype=np.int64)
    d = PREFETCH_DISTANCE
    cases = [
        Case("random gather", "no prefetch", n, lambda: C.gather(arr, idx, 0, nthreads),
             unit="accesses"),
        Case("random gather", f"prefetch {d} ahead", n, lambda: C.gather(arr, idx, d, nthreads),
             unit="accesses"),
        Case("random scatter-update", "no prefetch", n,
             lambda: C.scatter_add(arr, idx, 0, nthreads), unit="accesses"),
        Case("random scatter-update", f"prefetch {d} ahead", n,
             lambda: C.scatter_add(arr, idx, d, nthreads), unit="accesses"),
        Case("sequential read", "sum", arr.nbytes, lambda: C.sequential_sum(arr, nthreads),
             unit="bytes"),
    ]
    return cases, dict(words=words, bytes=int(arr.nbytes), accesses=n,
                       prefetch_distance=d)


def hashmap_cases(keys: np.ndarray, values: np.ndarray, label: str,
                  threads: int | None = None) -> tuple[list[Case], Any]:
    """Insert (into a cleared, preallocated table) and lookup cases for a fixed HashMap.

    ``threads`` runs the calls on that many Numba threads (restored afterwards)."""
    import bulkhash

    n = keys.size
    m = bulkhash.HashMap("uint64", "uint64", capacity=n, growable=False,
                         max_load_factor=LOAD_FACTOR)

    def with_threads(fn):
        if threads is None:
            return fn

        def run():
            before = numba.get_num_threads()
            numba.set_num_threads(threads)
            try:
                return fn()
            finally:
                numba.set_num_threads(before)

        return run

    def check_insert(result):
        _expect(result.inserted == n and len(m) == n,
                f"{label} insert stored {len(m)} of {n} keys ({result})")

    cases = [
        Case("insert", label, n, with_threads(lambda: m.insert(keys, values)), setup=m.clear,
             check=check_insert),
        Case("lookup", label, n, with_threads(lambda: m.get(keys)),
             check=lambda out: _expect(np.array_equal(out, values),
                                       f"{label} lookup returned wrong values")),
    ]
    return cases, m


def khash_cases(keys: np.ndarray) -> tuple[list[Case], dict]:
    """map_locations / lookup on a pandas UInt64HashTable made with ``size_hint=n``."""
    from pandas._libs import hashtable as ht

    n = keys.size
    holder: dict[str, Any] = {"table": None}
    info: dict[str, Any] = {}

    def fresh_table():
        holder["table"] = None  # free the last one before making the next
        holder["table"] = ht.UInt64HashTable(n)

    def check_insert(_):
        table = holder["table"]
        state = table.get_state()
        _expect(len(table) == n, f"khash stored {len(table)} of {n} keys")
        info.update(n_buckets=int(state["n_buckets"]), load=n / state["n_buckets"],
                    nbytes=int(table.sizeof()))

    positions = np.arange(n, dtype=np.int64)
    cases = [
        Case("insert", "pandas khash (1 thread)", n,
             lambda: holder["table"].map_locations(keys), setup=fresh_table, check=check_insert),
        Case("lookup", "pandas khash (1 thread)", n, lambda: holder["table"].lookup(keys),
             check=lambda out: _expect(np.array_equal(out, positions),
                                       "khash lookup returned wrong positions")),
    ]
    return cases, info


def dict_cases(keys: np.ndarray, values: np.ndarray) -> list[Case]:
    """A Python dict built from, and queried with, Python lists of ints (made untimed)."""
    key_list = keys.tolist()
    value_list = values.tolist()
    n = len(key_list)
    holder: dict[str, Any] = {"d": None}

    def build():
        holder["d"] = dict(zip(key_list, value_list))
        return holder["d"]

    def clear():
        holder["d"] = None

    def lookup():
        d = holder["d"]
        return [d[k] for k in key_list]

    return [
        Case("insert", "Python dict (1 thread)", n, build, setup=clear,
             check=lambda d: _expect(len(d) == n, "dict lost keys")),
        Case("lookup", "Python dict (1 thread)", n, lookup,
             check=lambda out: _expect(out == value_list, "dict lookup returned wrong values")),
    ]


# ================================================================================================
# report
# ================================================================================================


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2))
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def build_results(timings: list[Timing], ceiling: dict | None, stage: str) -> list[dict]:
    """Timings of one stage (measured side by side) with ops/s, the ratio to khash's same
    operation and, given the ceiling measured with them, the fraction of it."""
    khash = {t.op: t for t in timings if t.impl.startswith("pandas khash")}
    results = []
    for t in timings:
        k = khash.get(t.op)
        ceil = ceiling.get(t.op) if ceiling is not None else None
        results.append(dict(t.as_dict(), stage=stage, x_khash=k.median / t.median if k is not None else None,
                            fraction_of_ceiling=t.rate / ceil["per_s"] if ceil else None,
                            ceiling=ceil["name"] if ceil else None))
    return results


def report(info: dict) -> str:
    m, s, p = info["machine"], info["software"], info["parameters"]
    out = [f"# bulkhash bench{' --quick' if p['quick'] else ''}", ""]
    out.append(f"machine:  {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
               f"{m['memory_gib']} GiB RAM, transparent hugepages: {m['transparent_hugepages']}, "
               f"{m['os']}, load average at start {m['loadavg_start']:.2f}")
    out.append(f"software: Python {s['python']}, NumPy {s['numpy']}, Numba {s['numba']} "
               f"({s['numba_threads']} threads, {s.get('threading_layer', '?')} layer), "
               f"pandas {s['pandas']}, bulkhash {s['bulkhash']}")
    kh = info.get("khash", {})
    out.append(f"method:   {p['keys']:,} unique random uint64 keys (default_rng seed {p['seed']}), "
               f"uint64 values; HashMap load {p['hashmap_load']:.3f} "
               f"({p['hashmap_nbytes'] / 1e6:.1f} MB); khash size_hint=N: load "
               f"{kh.get('load', float('nan')):.3f} ({kh.get('nbytes', 0) / 1e6:.1f} MB); "
               f"median of {p['reps']} interleaved rounds after 1 warm-up round")
    out.append("")
    out.append("compile (first call on a tiny input minus second call; excluded from all timings):")
    out.append("")
    out.append(_table(["compiled path", "first call s", "second call s", "compile s", "kernels"],
                      [[c["path"], f"{c['first_call_s']:.3f}", f"{c['second_call_s']:.4f}",
                        f"{c['compile_s']:.3f}", c["how"]] for c in info["compile"]], {1, 2, 3}))
    out.append("")
    c = info["ceiling"]
    out.append(f"ceiling: uint64 array of {c['words']:,} words ({c['bytes'] / 1e6:.1f} MB = the "
               f"HashMap's nbytes), {c['accesses']:,} random positions:")
    out.append("")
    rows = []
    for t in c["timings"]:
        rate = (f"{t['per_s'] / 1e9:.2f} GB/s" if t["unit"] == "bytes"
                else f"{t['per_s'] / 1e6:.1f} M/s")
        rows.append([t["op"], t["impl"], f"{t['median_s']:.3f}",
                     f"{t['min_s']:.3f}-{t['max_s']:.3f}", rate])
    out.append(_table(["primitive", "variant", "median s", "min-max s", "rate"], rows, {2, 3, 4}))
    out.append("")
    out.append(f"ceiling for lookup (random gather, faster variant): "
               f"{c['lookup']['per_s'] / 1e6:.1f} M accesses/s; for insert (random "
               f"scatter-update, faster variant): {c['insert']['per_s'] / 1e6:.1f} M accesses/s")
    out.append("")
    rows = []
    for r in info["results"]:
        rows.append([r["op"], r["impl"], f"{r['n']:,}", f"{r['median_s']:.3f}",
                     f"{r['min_s']:.3f}-{r['max_s']:.3f}", f"{r['per_s'] / 1e6:.2f}",
                     f"{r['x_khash']:.2f}x" if r["x_khash"] is not None else "-",
                     f"{100 * r['fraction_of_ceiling']:.1f}%"
                     if r["fraction_of_ceiling"] is not None else "-"])
    out.append(_table(["operation", "implementation", "keys", "median s", "min-max s", "M ops/s",
                       "x khash", "% of ceiling"], rows, {2, 3, 4, 5, 6, 7}))
    out.append("")
    out.append("x khash: khash's median time / this one's, same operation and key count. "
               "% of ceiling: lookup vs the random gather, insert vs the random scatter-update "
               f"(rows at {p['keys']:,} keys only: the ceiling is measured at that table's footprint). "
               "HashMap uses all Numba threads; khash and dict one thread each.")
    out.append("")
    out.append("floors (this issue):")
    for f in info["floors"]:
        verdict = "ok" if f["met"] else "BELOW FLOOR"
        out.append(f"  {f['what']}: {f['value']:.2f} (needs >= {f['floor']}) -> {verdict}")
    out.append("")
    out.append(f"total wall time: {info['wall_s']:.1f} s (load average at end "
               f"{info['loadavg_end']:.2f})")
    return "\n".join(out)


def floors(results: list[dict], n: int) -> list[dict]:
    def find(op):
        return next((r for r in results if r["op"] == op and r["n"] == n
                     and r["impl"].startswith("bulkhash HashMap") and "1 thread" not in r["impl"]),
                    None)

    ins, look = find("insert"), find("lookup")
    out = []
    for what, value, floor in (("HashMap insert, x khash", ins and ins["x_khash"], 5.0),
                               ("HashMap lookup, x khash", look and look["x_khash"], 5.0),
                               ("HashMap lookup, fraction of ceiling",
                                look and look["fraction_of_ceiling"], 0.4)):
        if value is not None:
            out.append(dict(what=what, value=value, floor=floor, met=value >= floor))
    return out


# ================================================================================================
# driver
# ================================================================================================


def large_stage(keys: np.ndarray, values: np.ndarray, hm_label: str, quick: bool, reps: int,
                rng: np.random.Generator, nthreads: int) -> tuple[list[dict], dict, dict]:
    """The headline: ceiling, HashMap and khash on all keys, interleaved.

    Returns (results, ceiling, table facts). Without ``quick`` HashMap also runs on one thread."""
    hm, hm_map = hashmap_cases(keys, values, hm_label)
    if not quick and nthreads > 1:
        hm += hashmap_cases(keys, values, "bulkhash HashMap (1 thread)", threads=1)[0]
    kh, kh_info = khash_cases(keys)
    ceil_cases, ceiling = ceiling_cases(hm_map.nbytes, keys.size, rng, nthreads)
    timings = measure_rounds(ceil_cases + hm + kh, reps)
    ceil_t, table_t = timings[:len(ceil_cases)], timings[len(ceil_cases):]
    table_info = dict(hashmap_load=hm_map.load_factor, hashmap_nbytes=hm_map.nbytes, khash=kh_info)
    del hm, kh, ceil_cases, hm_map  # the tables and the ceiling's arrays
    gc.collect()

    ceiling["timings"] = [t.as_dict() for t in ceil_t]
    for op, prim in (("lookup", "random gather"), ("insert", "random scatter-update")):
        best = min((t for t in ceil_t if t.op == prim), key=lambda t: t.median)
        ceiling[op] = dict(name=f"{prim}, {best.impl}", per_s=best.rate, median_s=best.median)
    seq = next(t for t in ceil_t if t.op == "sequential read")
    ceiling["sequential_read_GBps"] = seq.rate / 1e9
    return build_results(table_t, ceiling, "large"), ceiling, table_info


def small_stage(keys: np.ndarray, values: np.ndarray, hm_label: str, reps: int,
                ceiling: dict | None) -> list[dict]:
    """HashMap, khash and a Python dict on the same (1M) keys, interleaved."""
    hm, _ = hashmap_cases(keys, values, hm_label)
    kh, _ = khash_cases(keys)
    timings = measure_rounds(hm + kh + dict_cases(keys, values), reps)
    del hm, kh
    gc.collect()
    return build_results(timings, ceiling, "small")


def _stage(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)


def run(quick: bool = False, keys: int | None = None, reps: int | None = None,
        json_path: str | None = None, dict_keys: int = DICT_KEYS) -> int:
    """Run the benchmark, print the report, optionally write JSON. Returns an exit status."""
    t0 = time.perf_counter()
    n = DEFAULT_KEYS if keys is None else int(keys)
    reps = (QUICK_REPS if quick else FULL_REPS) if reps is None else int(reps)
    if n < 1 or reps < 1:
        raise ValueError("keys and reps must be positive")
    if reps < 5:
        print(f"warning: reps={reps} is below the protocol's 5", file=sys.stderr)
    try:
        import pandas  # noqa: F401
    except ImportError:
        print("bulkhash bench needs pandas (pip install 'bulkhash[bench]')", file=sys.stderr)
        return 2
    nthreads = numba.get_num_threads()
    info: dict[str, Any] = dict(machine=machine_info(), software=software_info(),
                                started=datetime.datetime.now().isoformat(timespec="seconds"))

    _stage("compiling (or loading) kernels", t0)
    info["compile"] = measure_compile(nthreads)
    try:
        info["software"]["threading_layer"] = numba.threading_layer()
    except ValueError:
        pass

    _stage(f"making {n:,} unique random keys", t0)
    rng = np.random.default_rng(SEED)
    key_arr = unique_random_keys(n, rng)
    value_arr = rng.integers(0, _U64_MAX, size=n, dtype=np.uint64, endpoint=True)

    hm_label = f"bulkhash HashMap ({nthreads} thread{'s' if nthreads > 1 else ''})"
    _stage(f"timing the ceiling, HashMap and khash at {n:,} keys, {reps} rounds + warm-up", t0)
    big_results, ceiling, table_info = large_stage(key_arr, value_arr, hm_label, quick, reps, rng,
                                                   nthreads)
    m_small = min(n, dict_keys)
    small_keys = key_arr[:m_small].copy()
    small_values = value_arr[:m_small].copy()
    del key_arr, value_arr
    gc.collect()
    _stage(f"timing HashMap, khash and dict at {m_small:,} keys", t0)
    results = big_results + small_stage(small_keys, small_values, hm_label, reps,
                                        ceiling if m_small == n else None)

    info.update(
        parameters=dict(quick=quick, keys=n, dict_keys=m_small, reps=reps, seed=SEED,
                        max_load_factor=LOAD_FACTOR, hashmap_load=table_info["hashmap_load"],
                        hashmap_nbytes=table_info["hashmap_nbytes"], interleaved_rounds=True,
                        warmup_rounds=1),
        khash=table_info["khash"], ceiling=ceiling, results=results, floors=floors(results, n),
        loadavg_end=os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
        wall_s=time.perf_counter() - t0)
    print(report(info), flush=True)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(info, f, indent=2, default=float)
            f.write("\n")
        print(f"wrote {json_path}", file=sys.stderr)
    return 0
