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

``--device cuda``: the same workloads on an NVIDIA GPU (``run_cuda``)
---------------------------------------------------------------------
* **Keys**: the same ``N`` keys and values (same seed), made on the host and copied to the GPU
  once, before anything is timed; lookups are checked against the host copy of the values.
* **bulkhash**: ``HashMap("uint64", "uint64", capacity=N, growable=False, max_load_factor=0.8,
  device="cuda", group_size=G)`` for every group size ``G`` in 1, 2, 4, 8, 16, 32, all in the
  same rounds: the sweep that picks the default ``G`` (the report names the fastest per
  operation and size, and by the geometric mean of all of them). The headline rows are the
  default ``G``'s. *insert* and *lookup* as on the CPU, Numba device arrays in and out.
* **CuPy sort + searchsorted** (the peer, when CuPy is installed; skipped with a note when not):
  *insert* = ``cupy.argsort`` of the keys and both arrays gathered into that order; *lookup* =
  ``cupy.searchsorted`` and one kernel that checks the key found and gathers its value. Ratios
  are "x CuPy".
* **The ceiling** (``bulkhash._cuda.ceiling``), over a uint64 array of the default table's
  ``nbytes``: a random gather of one 8-byte word per thread (the lookup ceiling: one 32-byte
  sector, the least any lookup costs), a random scatter-update (``cuda.atomic.add``, or a plain
  load and store; the faster is the insert ceiling) and a sequential read; beside them a gather
  of random 64-byte lines (what a G=4 window of 16-byte slots reads) and the datasheet bandwidth
  over 32-byte sectors.
* At ``min(N, 1,000,000)`` keys too, when that is fewer (a table that fits in L2): the sweep
  and the peer, without the ceiling.
* **Timing**: a table or peer call is timed on the host clock up to the ``cuda.synchronize()``
  that follows it (its setup also ends in one, outside the timing); a ceiling kernel by CUDA
  events around its one launch. Times are reported in milliseconds. Compilation as on the CPU,
  on 4,096 keys: CUDA kernels are not cached on disk, so it is always a compile (and CuPy's
  first call includes compiling, or loading from its own cache, CuPy's kernels).
* **Under Numba's CUDA simulator** (``NUMBA_ENABLE_CUDASIM=1``, with the warp-intrinsic shim
  of ``tests/cudasim_warp.py`` installed) it only shows that this code runs: ``SMOKE_KEYS``
  keys, group sizes 1 and the default, one round after the warm-up, every result checked, and
  an output labelled "simulator: not a GPU measurement" that holds no timings. With neither a
  GPU nor the simulator it says what is missing and exits with status 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

# --device cuda
PEER_CUPY = "CuPy sort + searchsorted"
_CUPY_PACKAGES = ("cupy", "cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x")
# Under Numba's CUDA simulator (one Python thread per GPU thread, a few thousand a second) the
# bench only shows that its GPU code runs: this many keys, group sizes 1 and the default, every
# case once after its warm-up, and no timings reported.
SMOKE_KEYS = 256
SIMULATOR_LABEL = "simulator: not a GPU measurement"


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
    clock: Callable[[Callable[[], Any]], tuple[float, Any]] | None = None  # ``timed`` if None


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


@contextlib.contextmanager
def _gc_paused():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call, with the garbage collector off during it."""
    with _gc_paused():
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
    return elapsed, result


def event_timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one GPU launch by CUDA events around it (the ceiling kernels' clock:
    ``bulkhash._cuda.ceiling.event_seconds``), with the garbage collector off during it."""
    from .._cuda.ceiling import event_seconds

    with _gc_paused():
        return event_seconds(fn)


def measure_rounds(cases: list[Case], reps: int) -> list[Timing]:
    """Time every case once per round, for one warm-up round and then ``reps`` recorded ones."""
    timings = [Timing(c.op, c.impl, c.n, c.unit) for c in cases]
    for round_ in range(reps + 1):
        for case, timing in zip(cases, timings):
            if case.setup is not None:
                case.setup()
            elapsed, result = (case.clock or timed)(case.run)
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


def distinct_of_sorted(ordered: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted 1-D array, ascending: ``np.unique``'s answer without its
    cost. NumPy 2.4's ``np.unique`` (no counts, no indices) builds a hash set and then sorts it:
    on 100M random uint64 keys it took 268 s here, against 1.4 s for ``np.sort``."""
    keep = np.empty(ordered.size, dtype=np.bool_)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def unique_random_keys(n: int, rng: np.random.Generator, dtype=np.uint64) -> np.ndarray:
    """``n`` distinct uniformly random keys of an unsigned ``dtype`` (default uint64), in random
    order."""
    dtype = np.dtype(dtype)
    top = int(np.iinfo(dtype).max)
    keys = rng.integers(0, top, size=n, dtype=dtype, endpoint=True)
    while True:
        ordered = np.sort(keys)
        if n < 2 or not np.any(ordered[1:] == ordered[:-1]):
            return keys
        # collisions (about n**2 / 2**65 for uint64, n**2 / 2**33 for uint32): redraw the missing
        distinct = distinct_of_sorted(ordered)
        extra = rng.integers(0, top, size=n - distinct.size, dtype=dtype, endpoint=True)
        keys = np.concatenate([distinct, extra])
        rng.shuffle(keys)


def random_keys_values(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unique random uint64 keys and ``n`` random uint64 values."""
    keys = unique_random_keys(n, rng)
    return keys, rng.integers(0, _U64_MAX, size=n, dtype=np.uint64, endpoint=True)


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise RuntimeError(f"benchmark result check failed: {what}")


def _host(arr) -> np.ndarray:
    """A result as a NumPy array (a no-op for one; a copy from the GPU for a device array)."""
    if hasattr(arr, "copy_to_host"):  # Numba
        return arr.copy_to_host()
    if type(arr).__module__.startswith("cupy"):
        return arr.get()
    return np.asarray(arr)


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


def _numba_cache_counts(modules, kinds: tuple[type, ...] | None = None) -> tuple[int, int]:
    """(signatures loaded from Numba's disk cache, signatures compiled) of these modules' kernels:
    their dispatchers of ``kinds`` (default: Numba's CPU ``Dispatcher``)."""
    if kinds is None:
        from numba.core.dispatcher import Dispatcher

        kinds = (Dispatcher,)
    hits = misses = 0
    for module in modules:
        for obj in vars(module).values():
            stats = getattr(obj, "stats", None) if isinstance(obj, kinds) else None
            if stats is not None:
                hits += sum(stats.cache_hits.values())
                misses += sum(stats.cache_misses.values())
    return hits, misses


def _version(fn: Callable[[], Any]) -> str | None:
    """``fn()``'s (major, minor) as "major.minor"; None where it cannot say."""
    try:
        return ".".join(str(v) for v in fn())
    except Exception:  # noqa: BLE001 - a version we cannot read is left out, not fatal
        return None


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def gpu_info() -> dict:
    """The GPU: name, compute capability, multiprocessors, memory, L2, CUDA driver and runtime
    versions (as Numba reports them), and the datasheet memory bandwidth where the driver says."""
    from numba import config, cuda

    if config.ENABLE_CUDASIM:
        return dict(gpu="Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1), not a GPU",
                    simulator=True)
    from numba.cuda.cudadrv import driver

    from .._cuda import ceiling as GC

    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    _, total = cuda.current_context().get_memory_info()
    try:
        l2_mib = round(int(dev.L2_CACHE_SIZE) / 2**20, 1)
    except Exception:  # noqa: BLE001 - an attribute this driver does not report
        l2_mib = None
    bandwidth = GC.datasheet_bandwidth()
    return dict(gpu=name, simulator=False,
                compute_capability=".".join(map(str, dev.compute_capability)),
                multiprocessors=GC.sm_count(), memory_gib=round(total / 2**30, 1),
                l2_cache_mib=l2_mib, driver_version=_version(driver.get_version),
                runtime_version=_version(cuda.runtime.get_version),
                datasheet_bandwidth_GBps=bandwidth / 1e9 if bandwidth else None,
                datasheet_sectors_per_s=bandwidth / GC.SECTOR_BYTES if bandwidth else None)


def cuda_software_info() -> dict:
    """``software_info()`` plus numba-cuda's and CuPy's versions (CuPy's None when absent)."""
    return dict(software_info(), numba_cuda=_package_version("numba-cuda"),
                cupy=next(filter(None, map(_package_version, _CUPY_PACKAGES)), None))


# ================================================================================================
# compile time
# ================================================================================================


def measure_compile(nthreads: int) -> list[dict]:
    """First call minus second call of each compiled path, on tiny inputs (see module doc)."""
    import bulkhash
    from .._cpu import ceiling as C
    from .._cpu import kernels as K

    rng = np.random.default_rng(SEED + 1)
    keys, values = random_keys_values(4096, rng)
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
    return compile_rows(paths)


def compile_rows(paths: list[tuple[str, Callable[[], Any], tuple]],
                 kinds: tuple[type, ...] | None = None) -> list[dict]:
    """For each (name, call, modules of its kernels): the first call, the second, and whether
    the kernels (dispatchers of ``kinds``) were compiled or loaded from Numba's disk cache."""
    out = []
    for name, fn, modules in paths:
        hits0, misses0 = _numba_cache_counts(modules, kinds)
        first, _ = timed(fn)
        second, _ = timed(fn)
        hits1, misses1 = _numba_cache_counts(modules, kinds)
        hits, misses = hits1 - hits0, misses1 - misses0
        how = ("compiled" if misses and not hits else "loaded from Numba's disk cache"
               if hits and not misses else f"{misses} compiled, {hits} loaded from cache"
               if hits or misses else "already compiled")
        out.append(dict(path=name, first_call_s=first, second_call_s=second,
                        compile_s=max(0.0, first - second), how=how,
                        signatures_compiled=misses, signatures_loaded=hits))
    return out


def _cuda_dispatcher_kinds() -> tuple[type, ...]:
    """numba-cuda's dispatcher class, for ``_numba_cache_counts`` (none under the simulator)."""
    from numba import config

    if config.ENABLE_CUDASIM:
        return ()
    from numba.cuda.dispatcher import CUDADispatcher

    return (CUDADispatcher,)


def measure_compile_cuda(n_tiny: int, group_size: int, peer: bool) -> list[dict]:
    """First call minus second call of each GPU path (HashMap insert and lookup at
    ``group_size``, the ceiling kernels, and with ``peer`` the CuPy peer), on ``n_tiny`` keys.
    The table kernels take the group size as an argument: one compilation serves every G."""
    from numba import cuda

    from .._cuda import ceiling as GC
    from .._cuda import kernels as K

    rng = np.random.default_rng(SEED + 1)
    keys_h, values_h = random_keys_values(n_tiny, rng)
    keys, values = cuda.to_device(keys_h), cuda.to_device(values_h)
    (insert, lookup), _ = hashmap_cases(keys, values, "compile", group_size=group_size,
                                        host_values=values_h)
    arr = GC.footprint_array(8 * n_tiny)
    idx = GC.random_positions(arr, n_tiny, rng)
    sums = GC.gather_out(idx.size)
    seq_sums = cuda.device_array(GC.sequential_grid(arr.size), np.uint64)

    def insert_once():
        insert.setup()
        insert.run()

    def ceiling_kernels():
        GC.launch_gather(arr, idx, 1, sums)
        GC.launch_scatter_add(arr, idx, True)
        GC.launch_sequential_sum(arr, seq_sums)
        cuda.synchronize()

    paths = [("HashMap insert", insert_once, (K,)),
             ("HashMap lookup", lookup.run, (K,)),
             ("ceiling kernels", ceiling_kernels, (GC,))]
    if peer:
        build, find = cupy_sort_cases(keys, values, values_h)
        paths.append((PEER_CUPY, lambda: (build.run(), find.run()), (GC,)))
    return compile_rows(paths, _cuda_dispatcher_kinds())


# ================================================================================================
# the measurements
# ================================================================================================


def ceiling_cases(footprint_bytes: int, n: int, rng: np.random.Generator,
                  nthreads: int) -> tuple[list[Case], dict]:
    """Cases for the random gather / scatter-update / sequential read over ``footprint_bytes``."""
    from .._cpu import ceiling as C

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
                  threads: int | None = None, group_size: int | None = None,
                  host_values: np.ndarray | None = None,
                  max_load_factor: float = LOAD_FACTOR) -> tuple[list[Case], Any]:
    """Insert (into a cleared, preallocated table) and lookup cases for a fixed HashMap of the
    arrays' dtypes, ``capacity=keys.size`` at ``max_load_factor``.

    ``threads`` runs the calls on that many Numba threads (restored afterwards). With
    ``group_size`` the table is on the GPU (``device="cuda"``, ``group_size`` lanes per key):
    ``keys`` and ``values`` are then device arrays, ``host_values`` the host copy of ``values``
    that the lookup is checked against, and the cases are GPU cases (``gpu_case``)."""
    import bulkhash

    n = keys.size
    on_gpu = group_size is not None
    m = bulkhash.HashMap(str(keys.dtype), str(values.dtype), capacity=n, growable=False,
                         max_load_factor=max_load_factor,
                         **(dict(device="cuda", group_size=group_size) if on_gpu else {}))
    expected = host_values if on_gpu else values

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
             check=lambda out: _expect(np.array_equal(_host(out), expected),
                                       f"{label} lookup returned wrong values")),
    ]
    return ([gpu_case(c) for c in cases] if on_gpu else cases), m


KHASH_TABLES = {np.dtype(np.uint64): "UInt64HashTable", np.dtype(np.uint32): "UInt32HashTable",
                np.dtype(np.int64): "Int64HashTable", np.dtype(np.int32): "Int32HashTable"}


def khash_cases(keys: np.ndarray, queries: list[tuple[str, np.ndarray, np.ndarray]] | None = None,
                values: np.ndarray | None = None) -> tuple[list[Case], dict]:
    """map_locations / lookup on a pandas hash table made with ``size_hint=n``: the khash table
    of the keys' dtype (``KHASH_TABLES``: UInt64HashTable for uint64, UInt32HashTable for uint32).

    ``queries``: (operation, query keys, expected answer) for each lookup case; by default one,
    "lookup" of every key in order, answered with the positions ``0 .. n-1``. Given ``values``,
    a lookup answers what ``HashMap.get`` does, each key's value (``values[position]``, 0 where
    the key is absent), the gather timed with the lookup; without, khash's positions (-1 where
    absent)."""
    from pandas._libs import hashtable as ht

    n = keys.size
    table_type = getattr(ht, KHASH_TABLES[keys.dtype])
    holder: dict[str, Any] = {"table": None}
    info: dict[str, Any] = dict(table=KHASH_TABLES[keys.dtype])

    def fresh_table():
        holder["table"] = None  # free the last one before making the next
        holder["table"] = table_type(n)

    def check_insert(_):
        table = holder["table"]
        state = table.get_state()
        _expect(len(table) == n, f"khash stored {len(table)} of {n} keys")
        info.update(n_buckets=int(state["n_buckets"]), load=n / state["n_buckets"],
                    nbytes=int(table.sizeof()))

    def lookup(query):
        positions = holder["table"].lookup(query)
        if values is None:
            return positions
        return np.where(positions >= 0, values.take(positions, mode="clip"), values.dtype.type(0))

    def lookup_case(op, query, expected):
        what = "positions" if values is None else "values"
        return Case(op, "pandas khash (1 thread)", query.size, lambda: lookup(query),
                    check=lambda out: _expect(np.array_equal(out, expected),
                                              f"khash {op} returned wrong {what}"))

    if queries is None:
        queries = [("lookup", keys, np.arange(n, dtype=np.int64))]
    cases = [Case("insert", "pandas khash (1 thread)", n,
                  lambda: holder["table"].map_locations(keys), setup=fresh_table,
                  check=check_insert)]
    return cases + [lookup_case(*q) for q in queries], info


def dict_cases(keys: np.ndarray, values: np.ndarray,
               queries: list[tuple[str, np.ndarray, np.ndarray]] | None = None) -> list[Case]:
    """A Python dict built from, and queried with, Python lists of ints (made untimed).

    ``queries``: (operation, query keys, expected values) for each lookup case, answered with
    ``d.get(k, 0)`` (0 where absent, as ``HashMap.get``); by default one, "lookup" of every key,
    answered with ``d[k]``."""
    key_list = keys.tolist()
    value_list = values.tolist()
    n = len(key_list)
    holder: dict[str, Any] = {"d": None}

    def build():
        holder["d"] = dict(zip(key_list, value_list))
        return holder["d"]

    def clear():
        holder["d"] = None

    def lookup_all():
        d = holder["d"]
        return [d[k] for k in key_list]

    def lookup_case(op, query, expected):
        query_list, expected_list = query.tolist(), expected.tolist()

        def lookup():
            get = holder["d"].get
            return [get(k, 0) for k in query_list]

        return Case(op, "Python dict (1 thread)", len(query_list), lookup,
                    check=lambda out: _expect(out == expected_list,
                                              f"dict {op} returned wrong values"))

    lookups = ([Case("lookup", "Python dict (1 thread)", n, lookup_all,
                     check=lambda out: _expect(out == value_list,
                                               "dict lookup returned wrong values"))]
               if queries is None else [lookup_case(*q) for q in queries])
    return [Case("insert", "Python dict (1 thread)", n, build, setup=clear,
                 check=lambda d: _expect(len(d) == n, "dict lost keys"))] + lookups


def _synced(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` followed by ``cuda.synchronize()``: a call that returns when its GPU work is done."""
    from numba import cuda

    def call():
        result = fn()
        cuda.synchronize()
        return result

    return call


def gpu_case(case: Case) -> Case:
    """``case`` for the GPU: its setup and its timed call each end in ``cuda.synchronize()``, so
    that the timed call holds all of its own GPU work and none of the setup's."""
    return dataclasses.replace(case, run=_synced(case.run),
                               setup=_synced(case.setup) if case.setup is not None else None)


def hashmap_label(group_size: int) -> str:
    from .._cuda.backend import DEFAULT_GROUP_SIZE

    return (f"bulkhash HashMap (G={group_size}"
            f"{', default' if group_size == DEFAULT_GROUP_SIZE else ''})")


def cuda_ceiling_cases(footprint_bytes: int, n: int,
                       rng: np.random.Generator) -> tuple[list[Case], dict]:
    """Cases for the GPU's random gather (8-byte words: the lookup ceiling; 64-byte lines beside
    it), random scatter-update (atomic add, or a plain load and store) and sequential read, over
    a uint64 array of ``footprint_bytes`` (``bulkhash._cuda.ceiling``), timed by CUDA events."""
    from numba import cuda

    from .._cuda import ceiling as GC

    w = GC.LINE_WORDS
    arr = GC.footprint_array(footprint_bytes)
    idx = GC.random_positions(arr, n, rng)
    lines = GC.random_positions(arr, n, rng, w)
    sums, line_sums = GC.gather_out(n), GC.gather_out(n, w)
    seq_sums = cuda.device_array(GC.sequential_grid(arr.size), np.uint64)
    cases = [
        Case("random gather", "8-byte word", n, lambda: GC.launch_gather(arr, idx, 1, sums),
             unit="accesses", clock=event_timed),
        Case("random scatter-update", "atomic add", n,
             lambda: GC.launch_scatter_add(arr, idx, True), unit="accesses", clock=event_timed),
        Case("random scatter-update", "load + store", n,
             lambda: GC.launch_scatter_add(arr, idx, False), unit="accesses", clock=event_timed),
        Case("sequential read", "sum", arr.nbytes,
             lambda: GC.launch_sequential_sum(arr, seq_sums), unit="bytes", clock=event_timed),
        Case("random line gather", f"{8 * w}-byte line, {w} lanes", n,
             lambda: GC.launch_gather(arr, lines, w, line_sums), unit="accesses",
             clock=event_timed),
    ]
    return cases, dict(words=int(arr.size), bytes=int(arr.nbytes), accesses=n, line_words=w)


def cupy_sort_cases(keys, values, host_values: np.ndarray) -> list[Case]:
    """The GPU peer, on the same device arrays (CuPy views of them, no copy): *insert* sorts,
    ``order = cupy.argsort(keys)`` and the keys and values gathered into that order (one sort,
    where ``cupy.sort`` and an argsort for the values would be two); *lookup* is
    ``cupy.searchsorted`` and then one kernel that checks the key at each position and gathers
    its value (``bulkhash._cuda.ceiling.sorted_lookup``)."""
    import cupy

    from .._cuda import ceiling as GC

    n = keys.size
    k, v = cupy.asarray(keys), cupy.asarray(values)
    held: dict[str, Any] = {}

    def build():
        order = cupy.argsort(k)
        held["keys"], held["values"] = k[order], v[order]
        return held["keys"]

    def lookup():
        sorted_keys = held["keys"]
        out = cupy.empty_like(k)
        GC.launch_sorted_lookup(sorted_keys, held["values"], k, cupy.searchsorted(sorted_keys, k),
                                np.uint64(0), out)
        return out

    cases = [
        Case("insert", PEER_CUPY, n, build, setup=held.clear,
             check=lambda sk: _expect(sk.size == n and bool((sk[1:] > sk[:-1]).all()),
                                      "CuPy sort did not sort the keys")),
        Case("lookup", PEER_CUPY, n, lookup,
             check=lambda out: _expect(np.array_equal(_host(out), host_values),
                                       "CuPy searchsorted lookup returned wrong values")),
    ]
    return [gpu_case(c) for c in cases]


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


def build_results(timings: list[Timing], ceiling: dict | None, stage: str,
                  peer: str = "pandas khash", ratio_key: str = "x_khash") -> list[dict]:
    """Timings of one stage (measured side by side) with ops/s, the ratio to the peer's same
    operation (``ratio_key``: the peer's median time / this one's; the peer is the
    implementation whose name starts with ``peer``) and, given the ceiling measured with them,
    the fraction of it."""
    peers = {t.op: t for t in timings if t.impl.startswith(peer)}
    results = []
    for t in timings:
        k = peers.get(t.op)
        ceil = ceiling.get(t.op) if ceiling is not None else None
        ratio = k.median / t.median if k is not None else None
        results.append(dict(t.as_dict(), stage=stage, **{ratio_key: ratio},
                            fraction_of_ceiling=t.rate / ceil["per_s"] if ceil else None,
                            ceiling=ceil["name"] if ceil else None))
    return results


COMPILE_HEADING = ("compile (first call on a tiny input minus second call; excluded from all "
                   "timings):")


def _compile_table(rows: list[dict]) -> str:
    return _table(["compiled path", "first call s", "second call s", "compile s", "kernels"],
                  [[c["path"], f"{c['first_call_s']:.3f}", f"{c['second_call_s']:.4f}",
                    f"{c['compile_s']:.3f}", c["how"]] for c in rows], {1, 2, 3})


def _time_unit(ms: bool) -> tuple[float, str]:
    return (1e3, "ms") if ms else (1.0, "s")


def _ceiling_table(timings: list[dict], ms: bool = False) -> str:
    """The ceiling's primitives. ``ms``: times in milliseconds and access rates in G/s (a GPU's)."""
    scale, unit = _time_unit(ms)
    rows = []
    for t in timings:
        rate = (f"{t['per_s'] / 1e9:.2f} GB/s" if t["unit"] == "bytes"
                else f"{t['per_s'] / 1e9:.2f} G/s" if ms else f"{t['per_s'] / 1e6:.1f} M/s")
        rows.append([t["op"], t["impl"], f"{t['median_s'] * scale:.3f}",
                     f"{t['min_s'] * scale:.3f}-{t['max_s'] * scale:.3f}", rate])
    return _table(["primitive", "variant", f"median {unit}", f"min-max {unit}", "rate"], rows,
                  {2, 3, 4})


def _results_table(results: list[dict], ratio_key: str = "x_khash", ratio_header: str = "x khash",
                   ms: bool = False) -> str:
    """One row per timed operation: time, M ops/s, ratio to the peer, % of ceiling."""
    scale, unit = _time_unit(ms)
    rows = []
    for r in results:
        rows.append([r["op"], r["impl"], f"{r['n']:,}", f"{r['median_s'] * scale:.3f}",
                     f"{r['min_s'] * scale:.3f}-{r['max_s'] * scale:.3f}",
                     f"{r['per_s'] / 1e6:.2f}",
                     f"{r[ratio_key]:.2f}x" if r[ratio_key] is not None else "-",
                     f"{100 * r['fraction_of_ceiling']:.1f}%"
                     if r["fraction_of_ceiling"] is not None else "-"])
    return _table(["operation", "implementation", "keys", f"median {unit}", f"min-max {unit}",
                   "M ops/s", ratio_header, "% of ceiling"], rows, {2, 3, 4, 5, 6, 7})


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
    out.append(COMPILE_HEADING)
    out.append("")
    out.append(_compile_table(info["compile"]))
    out.append("")
    c = info["ceiling"]
    out.append(f"ceiling: uint64 array of {c['words']:,} words ({c['bytes'] / 1e6:.1f} MB = the "
               f"HashMap's nbytes), {c['accesses']:,} random positions:")
    out.append("")
    out.append(_ceiling_table(c["timings"]))
    out.append("")
    out.append(f"ceiling for lookup (random gather, faster variant): "
               f"{c['lookup']['per_s'] / 1e6:.1f} M accesses/s; for insert (random "
               f"scatter-update, faster variant): {c['insert']['per_s'] / 1e6:.1f} M accesses/s")
    out.append("")
    out.append(_results_table(info["results"]))
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


def group_sweep(results: list[dict], tables: dict) -> dict:
    """The group-size sweep: per G, the HashMap's insert and lookup ops/s at each size measured
    and their geometric mean; the fastest G per (operation, size) and by that mean (the one to
    make the default). ``tables``: per G, the large table's load and bytes."""
    columns = []  # (op, keys), in the order measured
    rates: dict[int, dict] = {}
    for r in results:
        g = r.get("group_size")
        if g is None:
            continue
        column = f"{r['op']} {r['n']:,}"
        if column not in columns:
            columns.append(column)
        rates.setdefault(g, {})[column] = r["per_s"]
    rows = []
    for g, by_column in rates.items():
        geomean = statistics.geometric_mean(by_column.values())
        rows.append(dict(group_size=g, **tables.get(g, {}), per_s=by_column, geomean_per_s=geomean))
    fastest = {col: max(rows, key=lambda row: row["per_s"].get(col, 0.0))["group_size"]
               for col in columns}
    best = max(rows, key=lambda row: row["geomean_per_s"])["group_size"] if rows else None
    return dict(columns=columns, rows=rows, fastest=fastest, recommended_group_size=best)


def report_cuda(info: dict) -> str:
    """The Markdown report of ``--device cuda`` on a GPU."""
    g, m, s, p = info["gpu"], info["machine"], info["software"], info["parameters"]
    out = [f"# bulkhash bench --device cuda{' --quick' if p['quick'] else ''}", ""]
    bw = g["datasheet_bandwidth_GBps"]
    out.append(f"gpu:      {g['gpu']}, compute capability {g['compute_capability']}, "
               f"{g['multiprocessors']} SMs, {g['memory_gib']} GiB, L2 {g['l2_cache_mib']} MiB; "
               f"CUDA driver {g['driver_version']}, runtime (NVRTC) {g['runtime_version']}; "
               "datasheet bandwidth " + (f"{bw:.0f} GB/s" if bw else "not reported by the driver"))
    out.append(f"host:     {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
               f"{m['memory_gib']} GiB RAM, {m['os']}, load average at start "
               f"{m['loadavg_start']:.2f}")
    out.append(f"software: Python {s['python']}, NumPy {s['numpy']}, Numba {s['numba']}, "
               f"numba-cuda {s['numba_cuda']}, CuPy {s['cupy'] or 'not installed'}, "
               f"bulkhash {s['bulkhash']}")
    default = p["default_group_size"]
    t = info["tables"].get(default, {})
    out.append(f"method:   {p['keys']:,} unique random uint64 keys (default_rng seed {p['seed']}), "
               "uint64 values, made on the host and copied to the GPU before timing; "
               f"HashMap(device='cuda', growable=False, max_load_factor={p['max_load_factor']}) "
               f"at group sizes G = {', '.join(map(str, p['group_sizes']))} (default G={default}: "
               f"load {t.get('load', float('nan')):.3f}, {t.get('nbytes', 0) / 1e6:.1f} MB); each "
               "call timed on the host clock up to cuda.synchronize(), the ceiling kernels by CUDA "
               f"events; median of {p['reps']} interleaved rounds after 1 warm-up round")
    out.append("")
    out.append(COMPILE_HEADING)
    out.append("")
    out.append(_compile_table(info["compile"]))
    out.append("")
    c = info["ceiling"]
    out.append(f"ceiling: uint64 array of {c['words']:,} words ({c['bytes'] / 1e6:.1f} MB = the "
               f"default HashMap's nbytes), {c['accesses']:,} random positions, one thread each "
               "(a line: one group of lanes each):")
    out.append("")
    out.append(_ceiling_table(c["timings"], ms=True))
    out.append("")
    datasheet = (f"; the datasheet's {bw:.0f} GB/s is {g['datasheet_sectors_per_s'] / 1e9:.1f}"
                 " G random 32-byte sectors/s" if bw else "")
    out.append(f"ceiling for lookup (random gather, 8-byte word): "
               f"{c['lookup']['per_s'] / 1e9:.2f} G accesses/s; for insert (random "
               f"scatter-update, faster variant): {c['insert']['per_s'] / 1e9:.2f} G accesses/s; "
               f"beside them: {c['line_gather']['per_s'] / 1e9:.2f} G random 64-byte lines/s, "
               f"sequential read {c['sequential_read_GBps']:.0f} GB/s{datasheet}")
    out.append("")
    headline = [r for r in info["results"] if r.get("group_size") in (None, default)]
    out.append(_results_table(headline, "x_cupy", "x CuPy", ms=True))
    out.append("")
    out.append(f"HashMap rows: the default group size, G={default} (all G: the sweep below). "
               "x CuPy: CuPy sort + searchsorted's median time / this one's, same operation and "
               "key count. % of ceiling: lookup vs the random gather, insert vs the random "
               f"scatter-update (rows at {p['keys']:,} keys only: the ceiling is measured at that "
               "table's footprint).")
    if info.get("peer_note"):
        out.append(f"CuPy peer: {info['peer_note']}")
    out.append("")
    sweep = info["group_sweep"]
    out.append("group size sweep (M ops/s; every G in the same interleaved rounds):")
    out.append("")
    rows = [[str(r["group_size"]) + (" (default)" if r["group_size"] == default else ""),
             f"{r.get('load', float('nan')):.3f}", f"{r.get('nbytes', 0) / 1e6:.1f}"]
            + [f"{r['per_s'][col] / 1e6:.1f}" if col in r["per_s"] else "-"
               for col in sweep["columns"]]
            + [f"{r['geomean_per_s'] / 1e6:.1f}"] for r in sweep["rows"]]
    out.append(_table(["G", "load", "MB"] + sweep["columns"] + ["geometric mean"], rows,
                      set(range(1, 4 + len(sweep["columns"])))))
    out.append("")
    out.append("fastest G: " + ", ".join(f"{col}: G={g_}" for col, g_ in sweep["fastest"].items())
               + f"; by the geometric mean: G={sweep['recommended_group_size']} (the default is "
               f"G={default}, bulkhash._cuda.backend.DEFAULT_GROUP_SIZE)")
    out.append("")
    out.append(f"total wall time: {info['wall_s']:.1f} s (load average at end "
               f"{info['loadavg_end']:.2f})")
    return "\n".join(out)


def simulator_info(info: dict) -> dict:
    """``info`` of a smoke pass under the simulator, every timing taken out: what ran and was
    checked, and the label."""
    def names(rows, keep):
        return [{k: r[k] for k in keep if k in r} for r in rows]

    c = info["ceiling"] or {}
    return dict(label=SIMULATOR_LABEL, gpu=info["gpu"], software=info["software"],
                started=info["started"], parameters=info["parameters"],
                compile=names(info["compile"], ("path",)),
                ceiling=dict(words=c.get("words"), bytes=c.get("bytes"),
                             accesses=c.get("accesses"),
                             cases=names(c.get("timings", []), ("op", "impl", "n", "unit"))),
                results=names(info["results"], ("op", "impl", "n", "unit", "stage", "group_size")),
                peer_note=info.get("peer_note"))


def report_simulator(info: dict) -> str:
    """What a smoke pass under the simulator ran: names and checks, no timings."""
    p = info["parameters"]
    out = [f"# bulkhash bench --device cuda ({SIMULATOR_LABEL})", ""]
    out.append(f"{SIMULATOR_LABEL}. NUMBA_ENABLE_CUDASIM=1 runs the GPU kernels on the CPU, one "
               f"Python thread per GPU thread: this was a smoke pass on {p['keys']:,} keys, group "
               f"sizes {', '.join(map(str, p['group_sizes']))}, to show that every GPU case runs "
               "and (where it has a result to check) returns the right answer. No timings are "
               "reported; for them, run without NUMBA_ENABLE_CUDASIM on a machine with an NVIDIA "
               "GPU.")
    out.append("")
    out.append("compiled paths called: " + ", ".join(c["path"] for c in info["compile"]))
    out.append("")
    rows = [["ceiling", t["op"], t["impl"], f"{t['n']:,} {t['unit']}", "ran"]
            for t in info["ceiling"]["cases"]]
    rows += [[r["stage"], r["op"], r["impl"], f"{r['n']:,} {r['unit']}", "ran, result checked"]
             for r in info["results"]]
    out.append(_table(["stage", "operation", "implementation", "n", "outcome"], rows, {3}))
    if info.get("peer_note"):
        out.append("")
        out.append(f"CuPy peer: {info['peer_note']}")
    return "\n".join(out)


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

    summarize_ceiling(ceiling, ceil_t)
    return build_results(table_t, ceiling, "large"), ceiling, table_info


def summarize_ceiling(ceiling: dict, ceil_t: list[Timing]) -> None:
    """Add the ceiling's timings to ``ceiling``, and the ceiling of each operation: lookup, the
    random gather; insert, the random scatter-update (each its faster variant); and the
    sequential read in GB/s."""
    ceiling["timings"] = [t.as_dict() for t in ceil_t]
    for op, prim in (("lookup", "random gather"), ("insert", "random scatter-update")):
        best = min((t for t in ceil_t if t.op == prim), key=lambda t: t.median)
        ceiling[op] = dict(name=f"{prim}, {best.impl}", per_s=best.rate, median_s=best.median)
    seq = next(t for t in ceil_t if t.op == "sequential read")
    ceiling["sequential_read_GBps"] = seq.rate / 1e9


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


def _sizes(quick: bool, keys: int | None, reps: int | None) -> tuple[int, int]:
    """(keys, rounds) from the options, with the defaults filled in and checked."""
    n = DEFAULT_KEYS if keys is None else int(keys)
    reps = (QUICK_REPS if quick else FULL_REPS) if reps is None else int(reps)
    if n < 1 or reps < 1:
        raise ValueError("keys and reps must be positive")
    if reps < 5:
        print(f"warning: reps={reps} is below the protocol's 5", file=sys.stderr)
    return n, reps


def _write_json(info: dict, json_path: str | None) -> None:
    if json_path:
        with open(json_path, "w") as f:
            json.dump(info, f, indent=2, default=float)
            f.write("\n")
        print(f"wrote {json_path}", file=sys.stderr)


def run(quick: bool = False, keys: int | None = None, reps: int | None = None,
        json_path: str | None = None, dict_keys: int = DICT_KEYS, device: str = "cpu") -> int:
    """Run the benchmark, print the report, optionally write JSON. Returns an exit status.

    ``device="cuda"``: the GPU bench (``run_cuda``)."""
    if device == "cuda":
        return run_cuda(quick=quick, keys=keys, reps=reps, json_path=json_path,
                        dict_keys=dict_keys)
    if device != "cpu":
        raise ValueError(f"device={device!r}: use 'cpu' or 'cuda'")
    t0 = time.perf_counter()
    n, reps = _sizes(quick, keys, reps)
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
    key_arr, value_arr = random_keys_values(n, rng)

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
    _write_json(info, json_path)
    return 0


def cuda_stage(keys, values, host_values: np.ndarray, stage: str, group_sizes: tuple[int, ...],
               reps: int, rng: np.random.Generator | None, peer: bool
               ) -> tuple[list[dict], dict | None, dict]:
    """HashMap at every group size, the CuPy peer (``peer``) and, given ``rng``, the ceiling on
    the default table's footprint, on the same device keys, in interleaved rounds (the ceiling
    first in each). Returns (results, ceiling or None, per-G table facts)."""
    from .._cuda.backend import DEFAULT_GROUP_SIZE

    table_cases, maps = [], {}
    for g in group_sizes:
        cases, maps[g] = hashmap_cases(keys, values, hashmap_label(g), group_size=g,
                                       host_values=host_values)
        table_cases += cases
    if peer:
        table_cases += cupy_sort_cases(keys, values, host_values)
    ceil_cases, ceiling = [], None
    if rng is not None:
        footprint = maps.get(DEFAULT_GROUP_SIZE, maps[group_sizes[0]]).nbytes
        ceil_cases, ceiling = cuda_ceiling_cases(footprint, keys.size, rng)
    timings = measure_rounds(ceil_cases + table_cases, reps)
    ceil_t, table_t = timings[:len(ceil_cases)], timings[len(ceil_cases):]
    tables = {g: dict(load=m.load_factor, nbytes=m.nbytes) for g, m in maps.items()}
    del table_cases, ceil_cases, maps  # the tables and the ceiling's arrays
    gc.collect()

    if ceiling is not None:
        summarize_cuda_ceiling(ceiling, ceil_t)
    results = build_results(table_t, ceiling, stage, peer=PEER_CUPY, ratio_key="x_cupy")
    labels = {hashmap_label(g): g for g in group_sizes}
    for r in results:
        r["group_size"] = labels.get(r["impl"])
    return results, ceiling, tables


def summarize_cuda_ceiling(ceiling: dict, ceil_t: list[Timing]) -> None:
    """``summarize_ceiling``, and the 64-byte line gather beside it."""
    summarize_ceiling(ceiling, ceil_t)
    line = next(t for t in ceil_t if t.op == "random line gather")
    ceiling["line_gather"] = dict(name=f"random line gather, {line.impl}", per_s=line.rate,
                                  median_s=line.median)


def _cupy_note(simulated: bool) -> str | None:
    """Why the CuPy peer cannot run here, or None when it can."""
    if simulated:
        return "skipped: CuPy needs a real GPU (the CUDA simulator is active)"
    try:
        import cupy  # noqa: F401
    except ImportError:
        return ("skipped: CuPy is not installed (pip install cupy-cuda13x, or cupy-cuda12x for "
                "a CUDA 12 driver); no x CuPy ratios")
    except Exception as err:  # noqa: BLE001 - installed but unusable: say why, bench the rest
        return f"skipped: CuPy is installed but failed to import ({type(err).__name__}: {err})"
    return None


def run_cuda(quick: bool = False, keys: int | None = None, reps: int | None = None,
             json_path: str | None = None, dict_keys: int = DICT_KEYS) -> int:
    """``bulkhash bench --device cuda``: the CPU bench's workloads on the GPU (module docstring).

    Under Numba's CUDA simulator it runs a smoke pass and reports no timings; with neither a GPU
    nor the simulator it says what is missing and returns 2."""
    t0 = time.perf_counter()
    from numba import config

    simulated = bool(config.ENABLE_CUDASIM)
    try:
        from .._cuda import cuda_backend

        cuda_backend()  # raises, saying what to install or enable, when the GPU cannot be used
    except (ImportError, RuntimeError) as err:
        print(f"bulkhash bench --device cuda: {err}", file=sys.stderr)
        return 2
    from numba import cuda

    from .._cuda.backend import DEFAULT_GROUP_SIZE, GROUP_SIZES

    if simulated:
        from numba.cuda.simulator.kernelapi import FakeCUDAModule  # ``cuda`` inside a kernel

        if not hasattr(FakeCUDAModule, "ballot_sync"):
            print("bulkhash bench --device cuda: NUMBA_ENABLE_CUDASIM=1 is set, but the CUDA "
                  "simulator has no warp intrinsics (cuda.ballot_sync), which the table kernels "
                  "use; its smoke pass runs only with the test shim installed "
                  "(tests/cudasim_warp.py: cudasim_warp.install()). Timings need a GPU: unset "
                  "NUMBA_ENABLE_CUDASIM.", file=sys.stderr)
            return 2
        print(f"{SIMULATOR_LABEL}: a smoke pass on {SMOKE_KEYS} keys, no timings",
              file=sys.stderr)
        n, reps = min(SMOKE_KEYS, DEFAULT_KEYS if keys is None else int(keys)), 1
        group_sizes = tuple(sorted({1, DEFAULT_GROUP_SIZE}))
        n_tiny = 32
    else:
        n, reps = _sizes(quick, keys, reps)
        group_sizes = GROUP_SIZES
        n_tiny = 4096
    peer_note = _cupy_note(simulated)
    info: dict[str, Any] = dict(machine=machine_info(), gpu=gpu_info(),
                                software=cuda_software_info(),
                                started=datetime.datetime.now().isoformat(timespec="seconds"))

    _stage("compiling kernels", t0)
    info["compile"] = measure_compile_cuda(n_tiny, DEFAULT_GROUP_SIZE, peer_note is None)

    _stage(f"making {n:,} unique random keys and copying them to the GPU", t0)
    rng = np.random.default_rng(SEED)
    key_arr, value_arr = random_keys_values(n, rng)
    keys_d, values_d = cuda.to_device(key_arr), cuda.to_device(value_arr)

    _stage(f"timing the ceiling, HashMap at G = {', '.join(map(str, group_sizes))} and "
           f"{'CuPy' if peer_note is None else 'no peer'} at {n:,} keys, {reps} rounds + warm-up",
           t0)
    results, ceiling, tables = cuda_stage(keys_d, values_d, value_arr, "large", group_sizes,
                                          reps, rng, peer_note is None)
    del keys_d, values_d
    m_small = min(n, dict_keys)
    if m_small < n:
        _stage(f"timing HashMap and CuPy at {m_small:,} keys", t0)
        small_values = value_arr[:m_small].copy()
        small = cuda_stage(cuda.to_device(key_arr[:m_small]), cuda.to_device(small_values),
                           small_values, "small", group_sizes, reps, None, peer_note is None)
        results += small[0]
    del key_arr, value_arr
    gc.collect()

    info.update(
        parameters=dict(quick=quick, keys=n, small_keys=m_small, reps=reps, seed=SEED,
                        max_load_factor=LOAD_FACTOR, group_sizes=list(group_sizes),
                        default_group_size=DEFAULT_GROUP_SIZE, interleaved_rounds=True,
                        warmup_rounds=1, simulator=simulated),
        tables=tables, ceiling=ceiling, results=results, peer_note=peer_note,
        group_sweep=group_sweep(results, tables),
        loadavg_end=os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
        wall_s=time.perf_counter() - t0)
    if simulated:
        info = simulator_info(info)
        print(report_simulator(info), flush=True)
    else:
        print(report_cuda(info), flush=True)
    _write_json(info, json_path)
    return 0
