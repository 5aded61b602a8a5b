"""MultiMap against the NumPy and pandas ways of a multi-value lookup, side by side in one run.

For each size (pairs) and number of values per key, every implementation builds its structure
from the same shuffled pairs (``insert``) and answers the same query -- every key once, in
random order -- with the same CSR result (``get``: offsets and every value, each key's in
insertion order; the results are checked equal):

* **bulkhash MultiMap** (``values_per_slot`` B = 1 at the default ``max_load_factor`` 0.5 and
  at 0.8, and B = 6 -- a 64-byte row -- where keys hold 4 or more values): the hash table, built
  by ``insert``, queried by ``get``.
* **bulkhash BucketListMap** (defaults: buckets of 1, 2, 4, ... values; sized for the number of
  keys, as MultiMap is for the number of pairs): a key index and each key's values in a few
  contiguous buckets of a value pool.
* **NumPy sort + searchsorted**: a stable ``argsort`` of the keys and the pairs gathered in that
  order; a query is two ``searchsorted`` per key (binary searches) and a CSR gather.
* **pandas factorize + Index hash**: what ``groupby`` does inside -- ``pd.factorize`` (khash)
  numbers the keys, a stable ``argsort`` of the codes groups the values; a query looks the keys
  up in a ``pd.Index`` of the distinct keys (its khash engine) and gathers the CSR. Left out,
  with a note, when pandas is not installed.

Rounds are interleaved (each round times every case once) after a warm-up round; medians and
min-max are reported with M ops/s and the memory each structure takes, in bytes per pair and in
bytes per (distinct) key. bulkhash runs on Numba's threads (2 on this project's machine), NumPy
and pandas on one.

Usage::

    bulkhash bench --structure multimap           # 1M and 10M pairs, 1 / 4 / 16 values per key
    bulkhash bench --structure multimap --quick   # 1M pairs only, 3 rounds
    python benchmarks/multimap.py --pairs 2000000 --values-per-key 8 --reps 7 --json out.json
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from . import (Case, _expect, _table, _write_json, machine_info, measure_rounds, software_info,
               unique_random_keys)

try:
    import pandas as pd
except ImportError:  # pragma: no cover - pandas is in the [bench] extra
    pd = None

SEED = 20_261_125
SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (1_000_000,)
VALUES_PER_KEY = (1, 4, 16)
REPS = 5
QUICK_REPS = 3
PANDAS_NOTE = "pandas is not installed (pip install 'bulkhash[bench]'): no pandas rows."


# ------------------------------------------------------------------------------- inputs
def make_pairs(n: int, per_key: int, rng: np.random.Generator, dtype=np.uint64):
    """``n`` (key, value) pairs: ``n // per_key`` random keys with ``per_key`` values each, in
    random order; and the distinct keys, shuffled (the query). Keys and values are of the
    unsigned ``dtype`` (default uint64)."""
    distinct = unique_random_keys(n // per_key, rng, dtype)
    keys = np.repeat(distinct, per_key)
    order = rng.permutation(keys.size)
    keys = keys[order]
    values = np.arange(keys.size, dtype=dtype)[order]  # a pair's value: its position
    query = rng.permutation(distinct)
    return keys, values, query


def expected_csr(keys, values, query):
    """The answer every implementation must give (NumPy, computed once, untimed)."""
    order = np.argsort(keys, kind="stable")
    sk, sv = keys[order], values[order]
    lo = np.searchsorted(sk, query, "left")
    hi = np.searchsorted(sk, query, "right")
    return csr_gather(sv, lo, hi - lo)


def csr_gather(sorted_values, starts, counts):
    """(offsets, values): the values of each query's run ``[starts[i], starts[i] + counts[i])``."""
    offsets = np.zeros(counts.size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], counts)
    return offsets, sorted_values[np.repeat(starts, counts) + within]


# ------------------------------------------------------------------------------- implementations
class BulkhashImpl:
    def __init__(self, values_per_slot: int, max_load_factor: float = 0.5):
        self.values_per_slot = values_per_slot
        self.max_load_factor = max_load_factor
        self.name = (f"bulkhash MultiMap (B={values_per_slot}, load {max_load_factor})")
        self.table = None

    def build(self, keys, values):
        from ..multimap import MultiMap

        table = MultiMap(str(keys.dtype), str(values.dtype), capacity=keys.size,
                         values_per_slot=self.values_per_slot,
                         max_load_factor=self.max_load_factor)
        return lambda: table.insert(keys, values), table

    def get(self, query):
        return self.table.get(query)

    def nbytes(self) -> int:
        return self.table.nbytes


class BucketListImpl(BulkhashImpl):
    name = "bulkhash BucketListMap"

    def __init__(self, n_keys: int):
        self.n_keys = n_keys
        self.table = None

    def build(self, keys, values):
        from ..bucketlist import BucketListMap

        table = BucketListMap(str(keys.dtype), str(values.dtype), capacity=keys.size,
                              key_capacity=self.n_keys)
        return lambda: table.insert(keys, values), table


class NumpyImpl:
    name = "NumPy sort + searchsorted"

    def build(self, keys, values):
        def run():
            order = np.argsort(keys, kind="stable")
            return keys[order], values[order]
        return run, None

    def adopt(self, built):
        self.sorted_keys, self.sorted_values = built

    def get(self, query):
        lo = np.searchsorted(self.sorted_keys, query, "left")
        hi = np.searchsorted(self.sorted_keys, query, "right")
        return csr_gather(self.sorted_values, lo, hi - lo)

    def nbytes(self) -> int:
        return self.sorted_keys.nbytes + self.sorted_values.nbytes


class PandasImpl:
    name = "pandas factorize + Index hash"

    def build(self, keys, values):
        def run():
            codes, uniques = pd.factorize(keys)
            order = np.argsort(codes, kind="stable")
            counts = np.bincount(codes, minlength=uniques.size)
            starts = np.zeros(uniques.size, np.int64)
            np.cumsum(counts[:-1], out=starts[1:])
            index = pd.Index(uniques)
            index.get_indexer(uniques[:1])  # builds the index's hash table now, not on first use
            return index, starts, counts, values[order]
        return run, None

    def adopt(self, built):
        self.index, self.starts, self.counts, self.sorted_values = built

    def get(self, query):
        pos = self.index.get_indexer(query)
        found = pos >= 0
        counts = np.where(found, self.counts[pos], 0)
        return csr_gather(self.sorted_values, np.where(found, self.starts[pos], 0), counts)

    def nbytes(self) -> int:
        return (self.index.memory_usage(deep=True) + self.starts.nbytes + self.counts.nbytes
                + self.sorted_values.nbytes)


# ------------------------------------------------------------------------------- one setting
def cases_for(impl, keys, values, query, expected, per_key):
    """(insert case, get case) for one implementation; the get case queries what the last
    insert round built."""
    n = keys.size
    holder = {}

    def insert_setup():
        holder["run"], holder["table"] = impl.build(keys, values)

    def insert_run():
        return holder["run"]()

    def insert_keep(result):
        if isinstance(impl, BulkhashImpl):
            impl.table = holder["table"]
            _expect(len(impl.table) == n, f"{impl.name} stored {len(impl.table)} of {n} pairs")
        else:
            impl.adopt(result)

    def get_check(result):
        offsets, got = (np.asarray(a) for a in result)
        _expect(np.array_equal(offsets, expected[0]) and np.array_equal(got, expected[1]),
                f"{impl.name} get: wrong CSR result")

    label = f"{impl.name}"
    return (Case("insert", label, n, insert_run, setup=insert_setup, check=insert_keep),
            Case("get", label, query.size, lambda: impl.get(query), check=get_check))


def run_setting(n: int, per_key: int, reps: int, rng) -> list[dict]:
    """The rows of one (pairs, values per key): insert and get for every implementation."""
    if not 1 <= per_key <= n:
        raise ValueError(f"values per key {per_key} must be between 1 and the pairs ({n:,})")
    keys, values, query = make_pairs(n, per_key, rng)
    n = keys.size  # n // per_key keys with per_key values each
    expected = expected_csr(keys, values, query)
    impls = [BulkhashImpl(1), BulkhashImpl(1, 0.8), BucketListImpl(n // per_key)]
    if per_key >= 4:
        impls.append(BulkhashImpl(6))
    impls.append(NumpyImpl())
    if pd is not None:
        impls.append(PandasImpl())
    inserts, gets = zip(*(cases_for(i, keys, values, query, expected, per_key) for i in impls))
    insert_t = measure_rounds(list(inserts), reps)  # builds the structures the gets query
    get_t = measure_rounds(list(gets), reps)
    rows = []
    numpy_rate = {t.op: t.rate for t in insert_t + get_t if t.impl == NumpyImpl.name}
    for impl, ti, tg in zip(impls, insert_t, get_t):
        nbytes = impl.nbytes()
        for t in (ti, tg):
            rows.append(dict(op=t.op, impl=t.impl, pairs=n, values_per_key=per_key,
                             keys=query.size, median_s=t.median, min_s=min(t.seconds),
                             max_s=max(t.seconds), seconds=t.seconds,
                             m_keys_per_s=(query.size if t.op == "get" else n) / t.median / 1e6,
                             m_pairs_per_s=n / t.median / 1e6,
                             x_numpy=t.rate / numpy_rate[t.op], nbytes=nbytes,
                             bytes_per_pair=nbytes / n, bytes_per_key=nbytes / query.size))
    return rows


def measure(pairs: Sequence[int] = SIZES, values_per_key: Sequence[int] = VALUES_PER_KEY,
            reps: int = REPS, quick: bool = False, seed: int = SEED) -> dict:
    """Every (pairs, values per key) setting, measured: machine, software, parameters, rows
    (one per operation and implementation) and notes (what was left out)."""
    if reps < 1 or not pairs or not values_per_key:
        raise ValueError("reps, pairs and values_per_key must be positive / non-empty")
    info = dict(machine=machine_info(), software=software_info(),
                parameters=dict(quick=quick, pairs=list(pairs),
                                values_per_key=list(values_per_key), reps=reps, seed=seed,
                                interleaved_rounds=True, warmup_rounds=1),
                rows=[], notes=[] if pd is not None else [PANDAS_NOTE])
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for n in pairs:
        for per_key in values_per_key:
            info["rows"] += run_setting(int(n), int(per_key), reps, rng)
            print(f"[{time.perf_counter() - start:.0f} s] {n:,} pairs, {per_key} per key done",
                  file=sys.stderr, flush=True)
    return info


# ------------------------------------------------------------------------------- report
def markdown(rows: list[dict]) -> str:
    header = ["op", "implementation", "pairs", "values/key", "median s", "min-max s",
              "M keys/s", "M pairs/s", "x NumPy", "bytes/pair", "bytes/key"]
    body = [[r["op"], r["impl"], f"{r['pairs']:,}", str(r["values_per_key"]),
             f"{r['median_s']:.3f}", f"{r['min_s']:.3f}-{r['max_s']:.3f}",
             f"{r['m_keys_per_s']:.2f}", f"{r['m_pairs_per_s']:.2f}", f"{r['x_numpy']:.2f}x",
             f"{r['bytes_per_pair']:.1f}", f"{r['bytes_per_key']:.1f}"] for r in rows]
    return _table(header, body, right={2, 3, 4, 5, 6, 7, 8, 9, 10})


def report(info: dict) -> str:
    m, s, p = info["machine"], info["software"], info["parameters"]
    out = [f"# bulkhash bench --structure multimap{' --quick' if p['quick'] else ''}", "",
           (f"machine:  {m['cpu']}, {m['usable_cores']} usable cores, {m['memory_gib']} GiB, "
            f"load average at start {m['loadavg_start']:.2f}"),
           (f"software: Python {s['python']}, NumPy {s['numpy']}, Numba {s['numba']} "
            f"({s['numba_threads']} threads), pandas {s['pandas']}, bulkhash {s['bulkhash']}"),
           (f"method:   medians of {p['reps']} interleaved rounds after a warm-up (compilation "
            "excluded); uint64 keys and values; get queries every key once, in random order; "
            "bytes/key: the structure's memory over its distinct keys")]
    out += [f"note:     {note}" for note in info["notes"]]
    for op in ("get", "insert"):
        out += ["", f"{op}:", "", markdown([r for r in info["rows"] if r["op"] == op])]
    return "\n".join(out)


def run(quick: bool = False, reps: int | None = None, json_path: str | None = None, *,
        sizes: Sequence[int] | None = None, values_per_key: Sequence[int] | None = None,
        device: str = "cpu") -> int:
    """``bulkhash bench --structure multimap``: measure, print the Markdown report, optionally
    write JSON. ``sizes``: the pair counts (default 1M and 10M; 1M with ``quick``). Returns 0."""
    if device != "cpu":
        raise ValueError(f"device={device!r}: the multimap benchmark runs on the CPU only")
    sizes = list(sizes or (QUICK_SIZES if quick else SIZES))
    reps = (QUICK_REPS if quick else REPS) if reps is None else int(reps)
    info = measure(sizes, list(values_per_key or VALUES_PER_KEY), reps, quick=quick)
    print(report(info), flush=True)
    _write_json(info, json_path)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=None,
                        help="pair counts (default 1M and 10M; 1M with --quick)")
    parser.add_argument("--values-per-key", type=int, nargs="+", default=list(VALUES_PER_KEY))
    parser.add_argument("--reps", type=int, default=None,
                        help=f"recorded rounds (default {REPS}; {QUICK_REPS} with --quick)")
    parser.add_argument("--quick", action="store_true", help="1M pairs only, 3 rounds")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    return run(quick=args.quick, reps=args.reps, json_path=args.json, sizes=args.pairs,
               values_per_key=args.values_per_key)


if __name__ == "__main__":
    sys.exit(main())
