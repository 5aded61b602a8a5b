"""``bulkhash bench --protocol``: the sweep of ``BENCHMARKS.md``, for every structure, resumable.

What is measured
----------------
The sweep is a list of *points*. A point is one case family (below) at one key/value type, one
size, one load and one workload; it yields one *record* per operation of its family, stored in
``OUT/results.json`` under a stable key ``family | operation | types | n=size | load=L |
workload`` (the family names the structure). A family's operations are all timed in the same
interleaved rounds, beside its peers and the ceiling.

* **Types**: uint32 keys with uint32 values, and uint64 with uint64 (sets and filters: keys only).
* **Sizes** (``n``): 2^16, 2^18, 2^20 and 2^22 keys for every point below (in cache: this
  machine's L3 holds 260 MiB); the **headline points** also at 50,000,000 keys, both key
  types (far out of cache, the issue's headline size): HashMap insert and lookups at load 0.9
  and Counter on Zipf keys (``LARGE_SIZES``, ``Family.large_workloads``). Measuring every point
  at 50M would take many hours on two cores; the rest scales from 2^22 as the plots show.
  MultiMap is not a headline point: its target names no size, the sweep measures it with 1, 4
  and 16 values per key up to 2^22 (4M keys, 67M pairs at 16 values per key), and at 50M its
  peers alone took 6 to 11 minutes a point (NumPy's ``searchsorted`` get, pandas' factorize).
  ``--quick``: ``QUICK_SIZES``. ``--max-keys M`` caps every size at ``M`` (a size above it is
  measured at ``M``), and the absent keys of the false-positive rates at ``16 M``.
* **Load**: a fixed table (``growable=False, capacity=n, max_load_factor=L``) filled with its
  ``n`` keys has load about ``L`` (``len / slots``; the record holds the load reached). Sweeps
  of ``L`` in 0.5, 0.8, 0.9, 0.95, 0.99 (``--quick``: 0.8 and 0.9) for HashMap and HashSet
  (the large sizes: 0.9 only); the other families run at one load, named in the key.
* **Workloads**: every one of each family below; ``--quick`` one per family (Counter: repeated
  keys; MultiMap and BucketListMap: 4 values per key).
* **Keys**: distinct uniformly random keys (``bench.unique_random_keys``) and random values from
  NumPy's ``default_rng``, seeded from the point's key, so a resumed run makes the same data.
  Absent keys are drawn in the same call, so they are distinct from the present ones. A query
  is a shuffled array (never insertion order, which would favour a dict's insertion-ordered
  entries); a lookup answers each key's value and 0 where it is absent.

The case families (``FAMILIES``; ``--only`` selects those whose name contains a substring):

* ``hashmap``: *insert* of ``n`` pairs into an emptied fixed HashMap (``bench.hashmap_cases``),
  *lookup 100% / 50% / 0% hits* of ``n`` keys (``get``).
* ``hashmap-max-load``: the highest load a fixed HashMap reaches. The largest
  ``max_load_factor`` its constructor accepts (of ``MAX_LOAD_CANDIDATES``; 0.99 today) and
  ``capacity=n``; keys are inserted untimed in ``FILL_CHUNKS`` batches until one raises
  ``TableFullError`` (the record says whether capacity or probing stopped it, and the load
  reached); then *insert* of the keys it held into the emptied table and *lookup 100% hits*.
* ``hashset``: HashSet *add* of ``n`` keys, *contains 100% / 50% / 0% hits*.
* ``counter``: Counter *add* of ``n`` key occurrences (``n`` is occurrences, not distinct keys)
  into a fixed Counter with ``capacity`` = the distinct keys, load 0.8, counts of the key
  type: *uniform* (``n`` distinct keys), *repeated* (each distinct key 1-16 times, uniformly,
  shuffled), *Zipf s=0.99* (``n`` draws over ``n`` random keys by rank, weight ``rank^-0.99``).
* ``multimap``: MultiMap (B=1, its default load 0.5) *insert* of ``n`` pairs and *get* (CSR) of
  every distinct key, with 1, 4 and 16 values per key (``bench.multimap.cases_for``).
* ``bucketlist``: the same for BucketListMap (its key index at load 0.8).
* ``bloom``: BloomFilter(n, fpr 0.01) *add* of ``n`` keys, *contains present* and *contains
  absent* of ``n`` keys each (``bench.bloom.cases_for``).
* ``cuckoo``: CuckooFilter(n, fpr 0.001) *add*, *contains present*, *contains absent*, *erase*.
  For both filters the record also holds the **measured false-positive rate** on
  ``FPR_KEYS`` (10M; ``--quick``: 1M) absent keys, queried untimed after the rounds on a filter
  holding the ``n`` keys (pure-Python peers on at most ``PYTHON_FPR_KEYS``), and **bits per
  key** (the filter's memory in bits over ``n``).
* ``hashmap-mixed``: a *mixed batch* of ``n`` operations on a fixed HashMap (load 0.8) holding
  ``n`` keys: erase 10% of them, insert 10% new ones, then look up 40% present and 40% absent
  keys (one ``get`` of the shuffled 80%); timed together, restored from a copy (untimed)
  before each round.
* ``hashmap-ageing``: ``AGEING_ROUNDS`` rounds, each erasing ``n/16`` random present keys and
  inserting ``n/16`` new ones, on a fixed HashMap at load 0.85 holding ``n`` keys (*insert/erase
  rounds*: ``2n`` operations, timed together), then *lookup 100% / 0% hits after ageing* on the
  aged table (the record holds its tombstones).

Peers (``bench.peers``), timed in the same rounds as the bulkhash case they are compared with,
each on the same input arrays and checked against the same answer: HashMap: Python ``dict`` (up
to 2^20 keys), pandas khash (``map_locations`` + ``lookup``, the table of the key type:
``UInt32HashTable`` / ``UInt64HashTable``, and the value gathered from the position it returns,
as ``get`` answers), ``numba.typed.Dict`` in compiled loops (up to 2^22),
``pyarrow.compute.index_in`` and a polars left join (both hash the table's keys on every call,
so their lookup is build + probe, and they have no insert case; up to 2^22); HashSet: Python
``set`` (up to 2^20), ``np.isin`` (it sorts both arrays on every call: up to 2^22),
``pyarrow.compute.is_in``, polars ``is_in``; Counter: ``np.unique(..., return_counts=True)``,
``pandas.Series.value_counts``, ``collections.Counter`` (up to 2^20); MultiMap and
BucketListMap: NumPy sort + searchsorted (and for MultiMap pandas factorize + Index);
BloomFilter: rbloom; CuckooFilter: pyprobables (pure Python, up to 2^16); mixed and ageing:
``dict`` and ``typed.Dict``. ``--quick`` leaves out the Python peers, typed.Dict and
``np.isin``. Peers run at the family's reference load only (for the load sweeps ``PEER_LOAD``,
0.9, the headline's: a peer's speed does not depend on bulkhash's load). A peer that is not
installed, is above its size limit, is left out of ``--quick``, or would not fit in memory
(``MEMORY_BUDGET``, and what the machine has free) is skipped, and the record's notes say so.

Method
------
Each point first makes its inputs, the bulkhash structure (empty) and its peers' inputs, all
untimed. **The ceiling** is then measured on the same footprint, in the same rounds, before the
tables: ``bench.ceiling_cases`` over a uint64 array of the bulkhash structure's ``nbytes``
(random gather and random scatter-update of ``n`` positions, each with and without software
prefetch, and a sequential read). The rounds follow ``bench.measure_rounds``: every case once
per round (ceiling first), round 0 a warm-up that is discarded (it also compiles: its time is
kept as ``warmup_s``), then ``reps`` rounds (5; ``--quick`` 3; ``--reps``) whose median, min
and max are recorded. Results are checked after every timed call, outside the timing, against
one answer computed with NumPy; a wrong answer stops the run.

A record's figures: ``seconds`` median/min/max of bulkhash's call; ``per_s`` = operations
(``n``, or the query count) / median seconds; for each peer the same and ``speedup`` = the
peer's median / bulkhash's (above 1: bulkhash is faster), and ``x_best_peer`` against the
fastest peer; **% of ceiling** = bulkhash's ``per_s`` over the ceiling's accesses/s on its
footprint: the random gather's (the faster variant) for lookups, contains, get and the mixed
batch (each needs at least one random read), the random scatter-update's for insert, add,
erase and the insert/erase rounds. Each record also holds the machine (with the load average
when the point started), the software versions and the parameters.

Duration (this project's 2-core shared VM, measured)
----------------------------------------------------
``--quick``: about 70 s with Numba's disk cache warm (the kernels compiled before); the first
run after an install compiles them, about 2.5 minutes more. The full run, from the per-point
times of the committed run (``benchmarks/results/protocol-2core-2026-11-24``, 2026-11-24):
47 minutes, 32 for the 192 points up to 2^22 keys (``--max-keys 4194304`` runs just those) and
15 for the four at 50M (HashMap 5.7 minutes a key type, Counter 1.8). Most of a 50M point is the
peers' rounds: khash takes 200 of HashMap's 257 s of rounds. That run also measured MultiMap at
50M, with 4 and 16 values per key, under the earlier plan: 49 minutes for the eight 50M points,
81 in all; its records stay in that folder.

Resuming: ``results.json`` is rewritten (to a temporary file, then renamed) after every point.
A rerun with the same ``--out`` skips every point whose records are all there (``--restart``
starts afresh); a ``--quick`` run and a full one cannot share an output folder. ``results.md``
and the PNG plots are drawn from ``results.json`` alone, by ``render(out_dir)``
(``bench.render``), at the end of every run.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import json
import os
import sys
import time
import zlib
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numba
import numpy as np

from . import (Case, Timing, _expect, _package_version, _read, _stage, ceiling_cases, dict_cases,
               hashmap_cases, khash_cases, machine_info, measure_rounds, software_info,
               summarize_ceiling, unique_random_keys)
from . import bloom as bloom_bench
from . import multimap as multimap_bench
from . import peers as P
from .peers import Peer, Query

SEED = 20_250_611
DTYPES = ("uint32", "uint64")
SIZES = (2**16, 2**18, 2**20, 2**22)  # every family, load and workload
LARGE_SIZES = (50_000_000,)  # the headline points only (Family.large_workloads)
QUICK_SIZES = (2**20,)
LOADS = (0.5, 0.8, 0.9, 0.95, 0.99)
QUICK_LOADS = (0.8, 0.9)
PEER_LOAD = 0.9  # the load of a sweep at which the peers run: the headline load
REPS = 5
QUICK_REPS = 3
HIT_RATES = (100, 50, 0)
MAX_LOAD_CANDIDATES = (1.0, 0.999, 0.995, 0.99)
FILL_CHUNKS = 64
COUNTER_LOAD = 0.8
REPEATS = (1, 16)
ZIPF_S = 0.99
VALUES_PER_KEY = (1, 4, 16)
MIXED_SHARES = dict(erase=0.1, insert=0.1, hit=0.4, miss=0.4)
MIXED_LOAD = 0.8
AGEING_LOAD = 0.85
AGEING_ROUNDS = 16
BLOOM_FPR = 0.01
CUCKOO_FPR = 0.001
FPR_KEYS = 10_000_000
QUICK_FPR_KEYS = 1_000_000
PYTHON_FPR_KEYS = 2**20
FPR_KEYS_PER_MAX_KEY = 16
MEMORY_BUDGET = 20 * 2**30
# pyarrow index_in and the polars join hash the table's keys again on every call: at 2^24 keys
# each pyarrow call took 10-15 s, 3-4 minutes of rounds for one point; khash stands for the
# hash-table peers out of cache
REBUILDING_PEER_MAX_KEYS = 2**22
DEFAULT_OUT = "bench-results"
RESULTS_FILE = "results.json"
FORMAT = "bulkhash-protocol/1"

# the per-operation ceiling: writes against the random scatter-update, the rest the gather
WRITE_OPS = ("insert", "add", "erase", "insert/erase rounds")


# ================================================================================================
# the sweep as data
# ================================================================================================


@dataclass(frozen=True)
class Settings:
    """What one run measures: ``quick`` or full, rounds, sizes, the swept loads, the size cap,
    and how many absent keys measure a filter's false-positive rate."""

    quick: bool
    reps: int
    max_keys: int | None = None

    @property
    def loads(self) -> tuple[float, ...]:
        return QUICK_LOADS if self.quick else LOADS

    @property
    def fpr_keys(self) -> int:
        """Absent keys a filter's false-positive rate is measured on (``max_keys`` caps them
        at ``FPR_KEYS_PER_MAX_KEY`` times itself)."""
        keys = QUICK_FPR_KEYS if self.quick else FPR_KEYS
        return keys if self.max_keys is None else min(keys, FPR_KEYS_PER_MAX_KEY * self.max_keys)

    def sizes(self) -> list[tuple[int, bool]]:
        """``(keys, large)`` for each size measured, ascending, capped at ``max_keys``: a
        ``large`` size runs only the headline points (``Family.large_workloads``)."""
        sizes = {min(n, self.max_keys or n): False for n in (QUICK_SIZES if self.quick
                                                               else SIZES)}
        for n in () if self.quick else LARGE_SIZES:
            sizes.setdefault(min(n, self.max_keys or n), True)
        return sorted(sizes.items())


@dataclass(frozen=True)
class Point:
    family: str
    key_dtype: str
    value_dtype: str | None
    size: int
    load: float | str | None
    workload: str

    @property
    def types(self) -> str:
        if self.value_dtype is None:
            return self.key_dtype
        return f"{self.key_dtype}/{self.value_dtype}"

    @property
    def label(self) -> str:
        load = "-" if self.load is None else self.load
        return f"{self.family} | {self.types} | n={self.size} | load={load} | {self.workload}"

    def record_key(self, op: str) -> str:
        """The record's stable key: family, operation, types, size, load, workload."""
        load = "-" if self.load is None else self.load
        return (f"{self.family} | {op} | {self.types} | n={self.size} | load={load} | "
                f"{self.workload}")


@dataclass
class Prepared:
    """One point, ready to time: the bulkhash cases then the peers', the footprint the ceiling
    is measured on, ``facts()`` (per implementation, read after the rounds), notes."""

    cases: list[Case]
    footprint: int
    facts: Callable[[], dict[str, dict]] = dict
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class Family:
    """A case family: its structure, operations and workloads, and ``prepare(point, settings,
    rng)``. ``sweeps_load``: its points take every load of the run (else only ``load``)."""

    name: str
    structure: str
    ops: tuple[str, ...]
    workloads: tuple[str, ...]
    prepare: Callable[[Point, Settings, np.random.Generator], Prepared]
    load: float | str | None = None
    sweeps_load: bool = False
    valued: bool = True
    quick_workload: str | None = None  # the one workload of --quick (default: the first)
    large_workloads: tuple[str, ...] = ()  # the headline workloads measured at LARGE_SIZES

    def loads(self, settings: Settings, large: bool = False) -> tuple:
        if not self.sweeps_load:
            return (self.load,)
        return (PEER_LOAD,) if large else settings.loads

    def workloads_of(self, settings: Settings, large: bool = False) -> tuple[str, ...]:
        if large:
            return self.large_workloads
        return (self.quick_workload or self.workloads[0],) if settings.quick else self.workloads

    def peers_run_at(self, point: Point) -> bool:
        return not self.sweeps_load or point.load == PEER_LOAD


# ================================================================================================
# inputs
# ================================================================================================


def point_rng(point: Point) -> np.random.Generator:
    """The point's own generator, seeded from its label: a resumed run makes the same data."""
    return np.random.default_rng([SEED, zlib.crc32(point.label.encode())])


def random_values(n: int, rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    return rng.integers(0, np.iinfo(dtype).max, size=n, dtype=dtype, endpoint=True)


def split_keys(rng: np.random.Generator, dtype: np.dtype, *counts: int) -> list[np.ndarray]:
    """Distinct random keys, cut into arrays of ``counts`` (disjoint: present and absent)."""
    keys = unique_random_keys(sum(counts), rng, dtype)
    bounds = np.cumsum((0,) + counts)
    return [keys[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def shuffled(rng: np.random.Generator, *arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays in one random order (the same for all)."""
    order = rng.permutation(arrays[0].size)
    return [a[order] for a in arrays]


def mixed_query(rng: np.random.Generator, op: str, hits: np.ndarray, hit_values: np.ndarray,
                misses: np.ndarray) -> Query:
    """A shuffled query of present keys ``hits`` and absent keys ``misses``, with its answer."""
    keys = np.concatenate([hits, misses])
    values = np.concatenate([hit_values, np.zeros(misses.size, hit_values.dtype)])
    found = np.arange(keys.size) < hits.size
    return Query(op, *shuffled(rng, keys, values, found))


def hit_queries(rng: np.random.Generator, verb: str, keys: np.ndarray, values: np.ndarray,
                absent: np.ndarray, rates: tuple[int, ...] = HIT_RATES) -> list[Query]:
    """For each hit rate, ``keys.size`` queries: that share of random present keys, the rest
    absent ones."""
    queries = []
    for rate in rates:
        hits = keys.size * rate // 100
        pick = rng.permutation(keys.size)[:hits]
        queries.append(mixed_query(rng, f"{verb} {rate}% hits", keys[pick], values[pick],
                                   absent[:keys.size - hits]))
    return queries


def repeated_keys(n: int, rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    """``n`` occurrences of distinct random keys, each repeated 1-16 times, shuffled."""
    low, high = REPEATS
    distinct = unique_random_keys(int(np.ceil(n / ((low + high) / 2) * 1.1)) + 1, rng, dtype)
    times = rng.integers(low, high, size=distinct.size, endpoint=True)
    while times.sum() < n:  # (never, but for the smallest n, by a hair)
        distinct, times = np.concatenate([distinct, distinct]), np.concatenate([times, times])
    return rng.permutation(np.repeat(distinct, times)[:n])


def zipf_keys(n: int, rng: np.random.Generator, dtype: np.dtype, s: float = ZIPF_S) -> np.ndarray:
    """``n`` draws from ``n`` random keys, the key of rank ``r`` with weight ``r ** -s``."""
    universe = unique_random_keys(n, rng, dtype)
    cdf = np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -s)
    ranks = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    return universe[np.minimum(ranks, n - 1)]


COUNTER_WORKLOADS = {"uniform": lambda n, rng, dt: unique_random_keys(n, rng, dt),
                     "repeated 1-16": repeated_keys,
                     f"Zipf s={ZIPF_S}": zipf_keys}


def mem_available() -> int:
    """Bytes the kernel says can be allocated now (MemAvailable), or the budget if unknown."""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return MEMORY_BUDGET


def memory_left(used: int, footprint: int, n: int) -> int:
    """What the peers of a point may use: the budget less the point's arrays (``used``), or
    what is free now less the ceiling's (``footprint`` bytes and ``n`` int64 positions)."""
    ceiling = footprint + 8 * n
    return min(MEMORY_BUDGET - used, mem_available()) - ceiling


def nbytes(*arrays) -> int:
    total = 0
    for a in arrays:
        total += sum(q.keys.nbytes + q.values.nbytes + q.found.nbytes for q in a) \
            if isinstance(a, list) else a.nbytes
    return total


def bulkhash_label(structure: str) -> str:
    threads = numba.get_num_threads()
    return f"bulkhash {structure} ({threads} thread{'s' if threads > 1 else ''})"


def with_peers(family_peers: tuple[Peer, ...], inputs: Any, point: Point, settings: Settings,
               family: Family, used: int, footprint: int) -> tuple[list[Case], dict, list[str]]:
    """The cases of the peers that run at ``point`` (with their facts) and the notes on those
    that do not."""
    if not family.peers_run_at(point):
        return [], {}, [f"peers run at load {PEER_LOAD} only"]
    chosen, notes = P.select_peers(family_peers, point.size, settings.quick,
                                   memory_left(used, footprint, point.size))
    cases, facts = [], {}
    for peer in chosen:
        built = peer.build(inputs)
        peer_cases, peer_facts = built if isinstance(built, tuple) else (built, None)
        cases += peer_cases
        if peer_facts is not None:
            facts[peer_cases[0].impl] = peer_facts
    return cases, facts, notes


# ================================================================================================
# HashMap and HashSet
# ================================================================================================


@dataclass
class MapInputs:
    keys: np.ndarray
    values: np.ndarray
    queries: list[Query]

    @property
    def triples(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(operation, query keys, expected values), as ``khash_cases`` / ``dict_cases`` take."""
        return [(q.op, q.keys, q.values) for q in self.queries]


HASHMAP_PEERS = (
    Peer("Python dict", lambda i: dict_cases(i.keys, i.values, i.triples), max_keys=2**20,
         in_quick=False, bytes_per_key=300),
    Peer("pandas khash", lambda i: khash_cases(i.keys, i.triples, i.values), module="pandas",
         bytes_per_key=48),
    Peer("numba typed.Dict", lambda i: P.typed_dict_cases(i.keys, i.values, i.queries),
         max_keys=2**22, in_quick=False, bytes_per_key=120),
    Peer("pyarrow index_in", lambda i: P.pyarrow_index_in_cases(i.keys, i.values, i.queries),
         module="pyarrow", max_keys=REBUILDING_PEER_MAX_KEYS, bytes_per_key=48),
    Peer("polars join", lambda i: P.polars_join_cases(i.keys, i.values, i.queries),
         module="polars", max_keys=REBUILDING_PEER_MAX_KEYS, bytes_per_key=96),
)


def hashmap_point(point: Point, settings: Settings, rng: np.random.Generator) -> Prepared:
    """HashMap insert and lookups at 100/50/0% hits; peers at ``PEER_LOAD``."""
    dtype, n = np.dtype(point.key_dtype), point.size
    keys, absent = split_keys(rng, dtype, n, n)
    values = random_values(n, rng, dtype)
    inputs = MapInputs(keys, values, hit_queries(rng, "lookup", keys, values, absent))
    del absent
    (insert, _), table = hashmap_cases(keys, values, bulkhash_label("HashMap"),
                                       max_load_factor=point.load)
    cases = [insert] + P.lookup_cases(insert.impl, inputs.queries, table.get)
    peer_cases, peer_facts, notes = with_peers(
        HASHMAP_PEERS, inputs, point, settings, FAMILY["hashmap"],
        nbytes(keys, values, inputs.queries) + table.nbytes, table.nbytes)

    def facts():
        return {insert.impl: table_facts(table), **peer_facts}

    return Prepared(cases + peer_cases, table.nbytes, facts, notes)


def table_facts(table) -> dict:
    return dict(load=table.load_factor, nbytes=table.nbytes, capacity=table.capacity,
                max_load_factor=table.max_load_factor)


def highest_max_load_factor() -> float:
    """The largest of ``MAX_LOAD_CANDIDATES`` that HashMap's constructor accepts."""
    import bulkhash

    for candidate in MAX_LOAD_CANDIDATES:
        try:
            bulkhash.HashMap("uint64", "uint64", capacity=1, growable=False,
                             max_load_factor=candidate)
        except ValueError:
            continue
        return candidate
    raise RuntimeError(f"HashMap accepts none of max_load_factor={MAX_LOAD_CANDIDATES}")


def fill_until_full(keys: np.ndarray, values: np.ndarray, capacity: int,
                    max_load_factor: float) -> dict:
    """Insert into a fixed HashMap of ``capacity`` in ``FILL_CHUNKS`` batches until one raises
    ``TableFullError``: the keys held, the load reached and what stopped it."""
    import bulkhash

    table = bulkhash.HashMap(str(keys.dtype), str(values.dtype), capacity=capacity,
                             growable=False, max_load_factor=max_load_factor)
    full = False
    for chunk in np.array_split(np.arange(keys.size), FILL_CHUNKS):
        try:
            table.insert(keys[chunk], values[chunk])
        except bulkhash.TableFullError:
            full = True
            break
    held = len(table)
    return dict(max_load_factor=max_load_factor, capacity=capacity, keys_offered=int(keys.size),
                keys_held=held, load_reached=table.load_factor, reported_full=full,
                stopped_by="capacity" if held >= capacity else "probing")


def max_load_point(point: Point, settings: Settings, rng: np.random.Generator) -> Prepared:
    """A fixed HashMap at the constructor's highest ``max_load_factor``, filled until full."""
    dtype, n = np.dtype(point.key_dtype), point.size
    keys = unique_random_keys(n + n // 8, rng, dtype)
    values = random_values(keys.size, rng, dtype)
    reached = fill_until_full(keys, values, n, highest_max_load_factor())
    held = reached["keys_held"]
    keys, values = keys[:held], values[:held]
    (insert, _), table = hashmap_cases(keys, values, bulkhash_label("HashMap"),
                                       max_load_factor=reached["max_load_factor"])
    query = Query("lookup 100% hits", *shuffled(rng, keys, values, np.ones(held, np.bool_)))
    cases = [insert] + P.lookup_cases(insert.impl, [query], table.get)
    note = (f"fixed HashMap(capacity={n:,}, max_load_factor={reached['max_load_factor']}): "
            f"filled in {FILL_CHUNKS} batches until TableFullError; held {held:,} keys, load "
            f"{reached['load_reached']:.4f}, stopped by {reached['stopped_by']}")
    return Prepared(cases, table.nbytes, lambda: {insert.impl: {**table_facts(table), **reached}},
                    [note, "no peers: a load a fixed table reaches is bulkhash's own question"])


HASHSET_PEERS = (
    Peer("Python set", lambda i: P.python_set_cases(i.keys, i.queries), max_keys=2**20,
         in_quick=False, bytes_per_key=200),
    Peer("NumPy isin", lambda i: P.numpy_isin_cases(i.keys, i.queries), max_keys=2**22,
         in_quick=False, bytes_per_key=40),
    Peer("pyarrow is_in", lambda i: P.pyarrow_is_in_cases(i.keys, i.queries), module="pyarrow",
         bytes_per_key=40),
    Peer("polars is_in", lambda i: P.polars_is_in_cases(i.keys, i.queries), module="polars",
         bytes_per_key=64),
)


def hashset_point(point: Point, settings: Settings, rng: np.random.Generator) -> Prepared:
    """HashSet add and contains at 100/50/0% hits; peers at ``PEER_LOAD``."""
    import bulkhash

    dtype, n = np.dtype(point.key_dtype), point.size
    keys, absent = split_keys(rng, dtype, n, n)
    inputs = MapInputs(keys, keys, hit_queries(rng, "contains", keys, keys, absent))
    del absent
    table = bulkhash.HashSet(point.key_dtype, capacity=n, growable=False,
                             max_load_factor=point.load)
    label = bulkhash_label("HashSet")

    def all_new(new):
        _expect(bool(new.all()) and len(table) == n, f"{label} add stored {len(table)} of {n}")

    cases = [Case("add", label, n, lambda: table.add(keys), setup=table.clear, check=all_new)]
    cases += P.lookup_cases(label, inputs.queries, table.contains, answer="found")
    peer_cases, peer_facts, notes = with_peers(
        HASHSET_PEERS, inputs, point, settings, FAMILY["hashset"],
        nbytes(keys, inputs.queries) + table.nbytes, table.nbytes)
    return Prepared(cases + peer_cases, table.nbytes,
                    lambda: {label: table_facts(table), **peer_facts}, notes)


# ================================================================================================
# Counter
# ================================================================================================


@dataclass
class CountInputs:
    keys: np.ndarray
    distinct: np.ndarray
    counts: np.ndarray


COUNTER_PEERS = (
    Peer("NumPy unique", lambda i: P.numpy_unique_cases(i.keys, i.distinct, i.counts),
         bytes_per_key=40),
    Peer("pandas value_counts", lambda i: P.value_counts_cases(i.keys, i.distinct, i.counts),
         module="pandas", bytes_per_key=64),
    Peer("collections.Counter",
         lambda i: P.collections_counter_cases(i.keys, i.distinct, i.counts), max_keys=2**20,
         in_quick=False, bytes_per_key=300),
)


def counter_point(point: Point, settings: Settings, rng: np.random.Generator) -> Prepared:
    """Counter add of ``n`` occurrences of the workload's keys."""
    import bulkhash

    dtype, n = np.dtype(point.key_dtype), point.size
    keys = COUNTER_WORKLOADS[point.workload](n, rng, dtype)
    distinct, counts = np.unique(keys, return_counts=True)
    inputs = CountInputs(keys, distinct, counts)
    table = bulkhash.Counter(point.key_dtype, point.value_dtype, capacity=distinct.size,
                             growable=False, max_load_factor=point.load)
    label = bulkhash_label("Counter")

    def counted(_):
        _expect(len(table) == distinct.size and np.array_equal(table.get(distinct), counts),
                f"{label} add: wrong counts")

    cases = [Case("add", label, n, lambda: table.add(keys), setup=table.clear, check=counted)]
    peer_cases, peer_facts, notes = with_peers(
        COUNTER_PEERS, inputs, point, settings, FAMILY["counter"],
        nbytes(keys, distinct, counts) + table.nbytes, table.nbytes)
    return Prepared(cases + peer_cases, table.nbytes,
                    lambda: {label: dict(table_facts(table), distinct_keys=int(distinct.size),
                                         most_frequent=int(counts.max())), **peer_facts},
                    notes)


# ================================================================================================
# MultiMap and BucketListMap
# ================================================================================================


def values_per_key(workload: str) -> int:
    return int(workload.split()[0])


NUMPY_SORT_PEER = Peer("NumPy sort + searchsorted", multimap_bench.NumpyImpl, bytes_per_key=48)
PANDAS_GROUP_PEER = Peer("pandas factorize + Index hash", multimap_bench.PandasImpl,
                         module="pandas", bytes_per_key=64)


def multi_value_point(impl_of: Callable[[int], Any], peers: tuple[Peer, ...]):
    """A ``prepare`` for a multi-value structure: ``impl_of(distinct keys)`` is its
    ``bench.multimap`` implementation; each peer's ``build`` its implementation class."""

    def prepare(point: Point, settings: Settings, rng: np.random.Generator) -> Prepared:
        dtype, per_key = np.dtype(point.key_dtype), values_per_key(point.workload)
        keys, values, query = multimap_bench.make_pairs(point.size, per_key, rng, dtype)
        expected = multimap_bench.expected_csr(keys, values, query)
        impl = impl_of(query.size)
        _, probe = impl.build(keys, values)  # an empty table: the ceiling's footprint
        footprint = probe.nbytes
        del probe
        used = nbytes(keys, values, query, *expected) + footprint
        chosen, notes = P.select_peers(peers, point.size, settings.quick,
                                       memory_left(used, footprint, point.size))
        cases = []
        for implementation in [impl] + [peer.build() for peer in chosen]:
            cases += multimap_bench.cases_for(implementation, keys, values, query, expected,
                                              per_key)

        def facts():
            return {impl.name: dict(nbytes=impl.nbytes(), bytes_per_pair=impl.nbytes() / keys.size,
                                    distinct_keys=int(query.size))}

        return Prepared(cases, footprint, facts, notes)

    return prepare


# ================================================================================================
# filters
# ================================================================================================


def fpr_of(contains: Callable[[Any], np.ndarray], absent) -> float:
    return float(np.mean(contains(absent)))


def python_contains(flt, keys: list) -> np.ndarray:
    """``key in flt`` for each key (a peer filter without a batch lookup)."""
    return np.fromiter(map(flt.__contains__, keys), np.bool_, len(keys))


def bloom_point(point: Point, settings: Settings, rng: np.random.Generator) -> Prepared:
    """BloomFilter add / contains beside rbloom (``bench.bloom.cases_for``); the measured
    false-positive rate on ``settings.fpr_keys`` absent keys and bits per key, after."""
    from ..bloom import BloomFilter

    dtype, n, fpr = np.dtype(point.key_dtype), point.size, BLOOM_FPR
    keys, absent = split_keys(rng, dtype, n, max(n, settings.fpr_keys))
    others = absent[:n]
    footprint = BloomFilter(n, fpr, key_dtype=dtype).nbytes
    chosen, notes = P.select_peers(BLOOM_PEERS, n, settings.quick,
                                   memory_left(nbytes(keys, absent) + footprint, footprint, n))
    lists = dict(keys=keys.tolist(), others=others.tolist()) if chosen else None
    measured: dict = {}
    cases = bloom_bench.cases_for(n, fpr, keys, others, lists, measured)

    def facts():
        out = {}
        for label, (_, flt) in measured.items():
            if isinstance(flt, BloomFilter):
                rate, bits = fpr_of(flt.contains, absent), flt.nbytes * 8
                sample = absent.size
            else:
                sample = min(absent.size, PYTHON_FPR_KEYS)
                rate = fpr_of(partial(python_contains, flt), absent[:sample].tolist())
                bits = flt.size_in_bits
            out[label] = dict(target_fpr=fpr, measured_fpr=rate, fpr_absent_keys=sample,
                              bits_per_key=bits / n)
        return out

    return Prepared(cases, footprint, facts, notes)


BLOOM_PEERS = (Peer("rbloom", None, module="rbloom", bytes_per_key=96),)


class BulkhashCuckoo:
    """bulkhash's CuckooFilter(n, fpr) in ``peers.filter_cases``' interface."""

    prepare = staticmethod(lambda keys: keys)

    def __init__(self, n: int, key_dtype: np.dtype, fpr: float):
        from ..cuckoo import CuckooFilter

        self.filter = CuckooFilter(n, fpr, key_dtype=key_dtype)
        self.label = bulkhash_label("CuckooFilter")

    def fresh(self):
        self.filter.clear()

    def add(self, keys):
        return self.filter.add(keys, on_full="report")

    def contains(self, keys):
        return self.filter.contains(keys)

    def erase(self, keys):
        return self.filter.erase(keys)

    def stored(self) -> int:
        return len(self.filter)

    def bits(self) -> int:
        return 8 * self.filter.nbytes


CUCKOO_PEERS = (Peer("pyprobables CuckooFilter", None, module="probables", max_keys=2**16,
                     in_quick=False, bytes_per_key=400),)


def cuckoo_point(point: Point, settings: Settings, rng: np.random.Generator) -> Prepared:
    """CuckooFilter add / contains / erase beside pyprobables; after the rounds each filter is
    filled again (untimed) for the measured false-positive rate, bits per key and load."""
    dtype, n = np.dtype(point.key_dtype), point.size
    keys, absent = split_keys(rng, dtype, n, max(n, settings.fpr_keys))
    others = absent[:n]
    tables = [BulkhashCuckoo(n, dtype, CUCKOO_FPR)]
    footprint = tables[0].filter.nbytes
    chosen, notes = P.select_peers(CUCKOO_PEERS, n, settings.quick,
                                   memory_left(nbytes(keys, absent) + footprint, footprint, n))
    tables += [P.ProbablesCuckoo(n, dtype) for _ in chosen]
    cases = [c for t in tables for c in P.filter_cases(t, keys, others)]

    def facts():
        out = {}
        for t in tables:
            sample = absent if isinstance(t, BulkhashCuckoo) else absent[:PYTHON_FPR_KEYS]
            t.fresh()
            added = t.add(t.prepare(keys))
            out[t.label] = dict(target_fpr=CUCKOO_FPR, keys_added=int(added.sum()),
                                measured_fpr=fpr_of(t.contains, t.prepare(sample)),
                                fpr_absent_keys=int(sample.size), bits_per_key=t.bits() / n)
            if isinstance(t, BulkhashCuckoo):
                out[t.label].update(load=t.filter.load_factor,
                                    fingerprint_bits=t.filter.fingerprint_bits,
                                    expected_fpr=t.filter.expected_fpr)
        return out

    return Prepared(cases, footprint, facts, notes)


# ================================================================================================
# mixed batches and ageing (HashMap with erase)
# ================================================================================================


class BulkhashMap:
    """A fixed HashMap (``capacity=n``) in the map adapters' interface (``peers.TypedDictMap``)."""

    prepare = staticmethod(lambda arr: arr)

    def __init__(self, keys: np.ndarray, values: np.ndarray, max_load_factor: float):
        self.args = (str(keys.dtype), str(values.dtype), keys.size, max_load_factor)
        self.label = bulkhash_label("HashMap")
        self.table = None

    def empty(self):
        import bulkhash

        key_dtype, value_dtype, capacity, load = self.args
        self.table = None
        self.table = bulkhash.HashMap(key_dtype, value_dtype, capacity=capacity, growable=False,
                                      max_load_factor=load)

    def adopt_copy_of(self, other: "BulkhashMap"):
        self.table = None
        self.table = other.table.copy()

    def insert(self, keys, values):
        self.table.insert(keys, values)

    def erase(self, keys):
        removed = self.table.erase(keys)
        _expect(bool(removed.all()), f"{self.label} erase missed keys that were present")

    def get(self, keys):
        return self.table.get(keys)

    def __len__(self):
        return len(self.table)


@dataclass
class ChurnInputs:
    """A map's initial ``keys`` and ``values``, the (erase, insert keys, insert values) steps
    applied to it, and the queries (with answers) after them."""

    keys: np.ndarray
    values: np.ndarray
    steps: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    queries: list[Query]


def filled_pair(adapter_of: Callable[[np.ndarray, np.ndarray], Any], inputs: ChurnInputs):
    """(a working map, a pristine one holding the initial pairs) of one implementation."""
    pristine = adapter_of(inputs.keys, inputs.values)
    pristine.empty()
    pristine.insert(pristine.prepare(inputs.keys), pristine.prepare(inputs.values))
    return adapter_of(inputs.keys, inputs.values), pristine


def apply_steps(table, steps) -> int:
    for erase, keys, values in steps:
        table.erase(erase)
        table.insert(keys, values)
    return len(table)


def step_ops(inputs: ChurnInputs) -> int:
    return sum(erase.size + keys.size for erase, keys, _ in inputs.steps)


def mixed_cases(adapter_of, inputs: ChurnInputs):
    """The mixed batch on a fresh copy of the filled map: its step (erase, insert), then one
    lookup of the query (present and absent keys), timed together. Returns (cases, working
    map, pristine map)."""
    table, pristine = filled_pair(adapter_of, inputs)
    steps = [tuple(map(table.prepare, step)) for step in inputs.steps]
    (query,) = inputs.queries
    lookups, n = table.prepare(query.keys), len(pristine)
    answer_is_right = P.equal_check(f"{table.label} mixed batch", table.prepare(query.values))

    def run():
        apply_steps(table, steps)
        return table.get(lookups)

    def check(found):
        _expect(len(table) == n, f"{table.label} mixed batch left {len(table)} keys, not {n}")
        answer_is_right(found)

    case = Case("mixed batch", table.label, query.keys.size + step_ops(inputs), run,
                setup=lambda: table.adopt_copy_of(pristine), check=check)
    return [case], table, pristine


def ageing_cases(adapter_of, inputs: ChurnInputs):
    """The insert/erase rounds on a fresh copy of the filled map, then lookups on the aged
    map. Returns (cases, working map, pristine map)."""
    table, pristine = filled_pair(adapter_of, inputs)
    steps = [tuple(map(table.prepare, step)) for step in inputs.steps]
    n = len(pristine)
    churn = Case("insert/erase rounds", table.label, step_ops(inputs),
                 lambda: apply_steps(table, steps), setup=lambda: table.adopt_copy_of(pristine),
                 check=lambda size: _expect(size == n, f"{table.label} ageing lost keys"))
    lookups = P.lookup_cases(table.label, inputs.queries, table.get, prepare=table.prepare,
                              expect=table.prepare)
    return [churn] + lookups, table, pristine


def mixed_inputs(point: Point, rng: np.random.Generator) -> ChurnInputs:
    """``n`` keys; a batch that erases 10% of them, inserts 10% new ones and looks up 40%
    present (not erased) and 40% absent keys."""
    dtype, n = np.dtype(point.key_dtype), point.size
    share = {op: int(n * frac) for op, frac in MIXED_SHARES.items()}
    keys, new, absent = split_keys(rng, dtype, n, share["insert"], share["miss"])
    values, new_values = random_values(n, rng, dtype), random_values(new.size, rng, dtype)
    order = rng.permutation(n)
    erased, kept = order[:share["erase"]], order[share["erase"]:share["erase"] + share["hit"]]
    query = mixed_query(rng, "mixed batch", keys[kept], values[kept], absent)
    return ChurnInputs(keys, values, [(keys[erased], new, new_values)], [query])


def ageing_inputs(point: Point, rng: np.random.Generator) -> ChurnInputs:
    """``n`` keys; ``AGEING_ROUNDS`` steps that each erase ``n / AGEING_ROUNDS`` random present
    keys and insert as many new ones; then queries of every key present after them (100%
    hits) and of ``n`` absent keys (0%)."""
    dtype, n = np.dtype(point.key_dtype), point.size
    per_round = max(1, n // AGEING_ROUNDS)
    keys, new, absent = split_keys(rng, dtype, n, per_round * AGEING_ROUNDS, n)
    values = random_values(n, rng, dtype)
    new_values = random_values(new.size, rng, dtype)
    present, present_values = keys.copy(), values.copy()
    steps = []
    for r in range(AGEING_ROUNDS):
        slot = rng.choice(n, per_round, replace=False)
        fresh = slice(r * per_round, (r + 1) * per_round)
        steps.append((present[slot], new[fresh], new_values[fresh]))
        present[slot], present_values[slot] = new[fresh], new_values[fresh]
    queries = hit_queries(rng, "lookup", present, present_values, absent, (100, 0))
    queries = [q._replace(op=f"{q.op} after ageing") for q in queries]
    return ChurnInputs(keys, values, steps, queries)


CHURN_PEERS = (
    Peer("Python dict", P.PythonDictMap, max_keys=2**20, in_quick=False, bytes_per_key=600),
    Peer("numba typed.Dict", P.TypedDictMap, max_keys=2**22, in_quick=False,
         bytes_per_key=240),
)


def churn_point(make_inputs: Callable[[Point, np.random.Generator], ChurnInputs],
                make_cases: Callable[[Any, ChurnInputs], tuple]):
    """A ``prepare`` for a workload that erases: bulkhash's fixed HashMap at the point's load,
    then the map peers (``CHURN_PEERS``), each given its cases by ``make_cases``."""
    from .._cpu import kernels as K

    def prepare(point: Point, settings: Settings, rng: np.random.Generator) -> Prepared:
        inputs = make_inputs(point, rng)
        cases, table, pristine = make_cases(lambda k, v: BulkhashMap(k, v, point.load), inputs)
        footprint = pristine.table.nbytes
        used = nbytes(inputs.keys, inputs.values, inputs.queries) + 2 * footprint
        chosen, notes = P.select_peers(CHURN_PEERS, point.size, settings.quick,
                                       memory_left(used, footprint, point.size))
        for peer in chosen:
            cases += make_cases(peer.build, inputs)[0]

        def facts():
            state = table.table._table.state
            return {table.label: dict(table_facts(table.table),
                                      tombstones=int(state[K.TOMBSTONES]))}

        return Prepared(cases, footprint, facts, notes)

    return prepare


# ================================================================================================
# the families
# ================================================================================================


MULTI_VALUE_WORKLOADS = tuple(f"{v} value{'s' if v > 1 else ''} per key"
                              for v in VALUES_PER_KEY)
FAMILIES = (
    Family("hashmap", "HashMap", ("insert",) + tuple(f"lookup {r}% hits" for r in HIT_RATES),
           ("uniform",), hashmap_point, sweeps_load=True, large_workloads=("uniform",)),
    Family("hashmap-max-load", "HashMap", ("insert", "lookup 100% hits"), ("fill until full",),
           max_load_point, load="max"),
    Family("hashset", "HashSet", ("add",) + tuple(f"contains {r}% hits" for r in HIT_RATES),
           ("uniform",), hashset_point, sweeps_load=True, valued=False),
    Family("counter", "Counter", ("add",), tuple(COUNTER_WORKLOADS), counter_point,
           load=COUNTER_LOAD, quick_workload="repeated 1-16",
           large_workloads=(f"Zipf s={ZIPF_S}",)),
    Family("multimap", "MultiMap", ("insert", "get"), MULTI_VALUE_WORKLOADS,
           multi_value_point(lambda keys: multimap_bench.BulkhashImpl(1),
                             (NUMPY_SORT_PEER, PANDAS_GROUP_PEER)),
           load=0.5, quick_workload="4 values per key"),
    Family("bucketlist", "BucketListMap", ("insert", "get"), MULTI_VALUE_WORKLOADS,
           multi_value_point(multimap_bench.BucketListImpl, (NUMPY_SORT_PEER,)),
           load=0.8, quick_workload="4 values per key"),
    Family("bloom", "BloomFilter", ("add", "contains present", "contains absent"),
           (f"target fpr {BLOOM_FPR}",), bloom_point, valued=False),
    Family("cuckoo", "CuckooFilter", ("add", "contains present", "contains absent", "erase"),
           (f"target fpr {CUCKOO_FPR}",), cuckoo_point, valued=False),
    Family("hashmap-mixed", "HashMap", ("mixed batch",),
           ("10% insert, 10% erase, 40% hit, 40% miss",),
           churn_point(mixed_inputs, mixed_cases), load=MIXED_LOAD),
    Family("hashmap-ageing", "HashMap",
           ("insert/erase rounds", "lookup 100% hits after ageing", "lookup 0% hits after ageing"),
           (f"{AGEING_ROUNDS} rounds of n/{AGEING_ROUNDS} erase + insert",),
           churn_point(ageing_inputs, ageing_cases), load=AGEING_LOAD),
)
FAMILY = {f.name: f for f in FAMILIES}


def plan(settings: Settings, only: str | None = None) -> list[tuple[Family, Point]]:
    """Every point of the run, smallest size first (so that a run cut short has measured every
    family at the small sizes), each with its family."""
    families = [f for f in FAMILIES if only is None or only in f.name]
    if not families:
        raise ValueError(f"--only {only!r} matches no case family; the families are: "
                         + ", ".join(f.name for f in FAMILIES))
    points = []
    for size, large in settings.sizes():
        for family in families:
            for key_dtype in DTYPES:
                for load in family.loads(settings, large):
                    for workload in family.workloads_of(settings, large):
                        points.append((family, Point(family.name, key_dtype,
                                                     key_dtype if family.valued else None,
                                                     size, load, workload)))
    return points


# ================================================================================================
# one point
# ================================================================================================


def ceiling_of(op: str) -> str:
    """Which ceiling an operation is held against: "insert" (the random scatter-update) for
    writes, "lookup" (the random gather) for the rest."""
    return "insert" if op in WRITE_OPS else "lookup"


def measure_point(family: Family, point: Point, settings: Settings) -> list[dict]:
    """Make the point's inputs, time the ceiling and every case in interleaved rounds, and
    return one record per operation of the family."""
    started = datetime.datetime.now().isoformat(timespec="seconds")
    machine = machine_info()
    rng = point_rng(point)
    prepared = family.prepare(point, settings, rng)
    ceil_cases, ceiling = ceiling_cases(prepared.footprint, point.size, rng,
                                        numba.get_num_threads())
    t0 = time.perf_counter()
    timings = measure_rounds(ceil_cases + prepared.cases, settings.reps)
    wall = time.perf_counter() - t0
    n_ceiling = len(ceil_cases)
    del ceil_cases  # the ceiling's arrays
    summarize_ceiling(ceiling, timings[:n_ceiling])
    records = point_records(family, point, settings, timings[n_ceiling:], ceiling,
                            prepared.facts(), prepared.notes)
    for r in records:
        r.update(machine=machine, measured_at=started, point_rounds_s=wall)
    del prepared, timings
    gc.collect()
    return records


def point_records(family: Family, point: Point, settings: Settings, timings: list[Timing],
                  ceiling: dict, facts: dict, notes: list[str]) -> list[dict]:
    """One record per operation: bulkhash's timing, each peer's with its speedup, the best
    peer, the ceiling and the fraction of it."""
    records = []
    parameters = dict(quick=settings.quick, reps=settings.reps, warmup_rounds=1,
                      interleaved_rounds=True, seed=SEED, numba_threads=numba.get_num_threads())
    for op in family.ops:
        of_op = [t for t in timings if t.op == op]
        bulkhash = next((t for t in of_op if t.impl.startswith("bulkhash")), None)
        if bulkhash is None:
            raise RuntimeError(f"{point.label}: no bulkhash timing of {op!r} (a bug in the "
                               "family's cases)")
        peers = {t.impl: dict(t.as_dict(), speedup=t.median / bulkhash.median,
                              facts=facts.get(t.impl))
                 for t in of_op if t is not bulkhash}
        best = min(peers, key=lambda impl: peers[impl]["median_s"]) if peers else None
        limit = ceiling[ceiling_of(op)]
        records.append(dict(
            key=point.record_key(op), family=family.name, structure=family.structure,
            operation=op, types=point.types, key_dtype=point.key_dtype,
            value_dtype=point.value_dtype, size=point.size, load=point.load,
            workload=point.workload, peer_point=family.peers_run_at(point),
            bulkhash=dict(bulkhash.as_dict(), facts=facts.get(bulkhash.impl)),
            peers=peers, best_peer=best, x_best_peer=peers[best]["speedup"] if best else None,
            ceiling=dict(kind=ceiling_of(op), primitive=limit["name"], per_s=limit["per_s"],
                         footprint_bytes=ceiling["bytes"], accesses=ceiling["accesses"],
                         sequential_read_GBps=ceiling["sequential_read_GBps"],
                         timings=ceiling["timings"]),
            fraction_of_ceiling=bulkhash.rate / limit["per_s"], notes=list(notes),
            parameters=parameters, software=protocol_software()))
    return records


def protocol_software() -> dict:
    """``software_info()`` and the peers' versions (None where not installed)."""
    return dict(software_info(), **{name: _package_version(name) for name in
                                    ("pyarrow", "polars", "rbloom", "pyprobables",
                                     "matplotlib")})


# ================================================================================================
# results.json
# ================================================================================================


def results_path(out_dir: str) -> str:
    return os.path.join(out_dir, RESULTS_FILE)


def load_results(out_dir: str) -> dict | None:
    path = results_path(out_dir)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)
    if results.get("format") != FORMAT:
        raise ValueError(f"{path} is not a bulkhash bench --protocol results file (format "
                         f"{results.get('format')!r}); use another --out, or --restart")
    return results


def save_results(out_dir: str, results: dict) -> None:
    """Write ``results.json`` whole to a temporary file, then rename it over the old one."""
    path = results_path(out_dir)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=float)
        f.write("\n")
    os.replace(tmp, path)


def fresh_results(quick: bool) -> dict:
    return dict(format=FORMAT, quick=quick, runs=[], records={})


# ================================================================================================
# the run
# ================================================================================================


@dataclass
class Outcome:
    """What a run did: the points it measured and those it found already in results.json."""

    measured: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)


def configure(quick: bool = False, max_keys: int | None = None, only: str | None = None,
              reps: int | None = None) -> tuple[Settings, list[tuple[Family, Point]]]:
    """The run's settings and points from the options (``ValueError`` for a bad one)."""
    if max_keys is not None and max_keys < 64:
        raise ValueError(f"--max-keys {max_keys}: use at least 64 keys")
    reps = (QUICK_REPS if quick else REPS) if reps is None else int(reps)
    if reps < 1:
        raise ValueError(f"--reps {reps}: use at least 1")
    if reps < 5:
        print(f"note: {reps} rounds, below the protocol's 5", file=sys.stderr)
    settings = Settings(quick=quick, reps=reps, max_keys=max_keys)
    return settings, plan(settings, only)


def open_results(out_dir: str, quick: bool, restart: bool) -> dict:
    """``out_dir/results.json`` to resume, or a fresh one (``restart``, or none there yet);
    ``ValueError`` when it holds a run of the other kind (quick or full)."""
    os.makedirs(out_dir, exist_ok=True)
    results = None if restart else load_results(out_dir)
    if results is None:
        return fresh_results(quick)
    if results["quick"] != quick:
        kind = {True: "--quick", False: "full"}
        raise ValueError(f"{results_path(out_dir)} holds a {kind[results['quick']]} run and "
                         f"this is a {kind[quick]} one: use another --out, or --restart")
    return results


def sweep(out_dir: str, settings: Settings, points: list[tuple[Family, Point]],
          results: dict, only: str | None = None) -> Outcome:
    """Measure every point not yet in ``results``, saving after each, then draw
    ``results.md`` and the plots (``render``)."""
    from .render import render

    results["runs"].append(dict(started=datetime.datetime.now().isoformat(timespec="seconds"),
                                machine=machine_info(), software=protocol_software(),
                                parameters=dict(quick=settings.quick, reps=settings.reps,
                                                max_keys=settings.max_keys, only=only,
                                                points=len(points))))
    save_results(out_dir, results)
    outcome, t0 = Outcome(), time.perf_counter()
    for i, (family, point) in enumerate(points, 1):
        if all(point.record_key(op) in results["records"] for op in family.ops):
            outcome.skipped.append(point.label)
            _stage(f"[{i}/{len(points)}] skip (in {RESULTS_FILE}): {point.label}", t0)
            continue
        _stage(f"[{i}/{len(points)}] {point.label}", t0)
        for record in measure_point(family, point, settings):
            results["records"][record["key"]] = record
        save_results(out_dir, results)
        outcome.measured.append(point.label)
    _stage(f"measured {len(outcome.measured)} points, skipped {len(outcome.skipped)}; "
           f"drawing {out_dir}/results.md and the plots", t0)
    render(out_dir)
    return outcome


def run_protocol(out_dir: str, quick: bool = False, max_keys: int | None = None,
                 only: str | None = None, restart: bool = False,
                 reps: int | None = None) -> Outcome:
    """The whole run: options checked, results opened (or started), the sweep, the report."""
    settings, points = configure(quick, max_keys, only, reps)
    return sweep(out_dir, settings, points, open_results(out_dir, quick, restart), only)


def run(out_dir: str = DEFAULT_OUT, quick: bool = False, max_keys: int | None = None,
        only: str | None = None, restart: bool = False, reps: int | None = None) -> int:
    """``bulkhash bench --protocol``: returns an exit status (2 for a bad option)."""
    try:
        settings, points = configure(quick, max_keys, only, reps)
        results = open_results(out_dir, quick, restart)
    except (ValueError, OSError) as err:
        print(f"bulkhash bench --protocol: {err}", file=sys.stderr)
        return 2
    sweep(out_dir, settings, points, results, only)
    return 0
