"""The peers of ``bulkhash bench --protocol``: what each one is asked to do, as timed ``Case`` s.

Every builder here takes the inputs of one protocol point (NumPy arrays, made untimed) and
returns cases that do the job the bulkhash case beside them does, with the same answer, which
each case's ``check`` compares with the answer computed once with NumPy (outside the timing).
Which peers run at a point, and why the others do not, is ``select_peers``'s business; what
each number means is told in ``bulkhash.bench.protocol``'s docstring.
"""

from __future__ import annotations

import collections
import importlib
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numba
import numpy as np
from numba import njit

from . import Case, _expect


class Query(NamedTuple):
    """One lookup workload: its operation name, the query keys, and the answer every
    implementation must give (each key's value, 0 where absent; whether it is present)."""

    op: str
    keys: np.ndarray
    values: np.ndarray
    found: np.ndarray


# ================================================================================================
# which peers run
# ================================================================================================


@dataclass(frozen=True)
class Peer:
    """A peer of one case family, and what the family builds its cases from (``build``): a
    function of the point's inputs that returns its cases (or its cases and facts), or the
    peer's adapter class (the churn families), or None where the family builds them itself.

    It runs when ``module`` imports, the point has at most ``max_keys`` keys, the run is not
    ``--quick`` or ``in_quick`` says it runs there too, and about ``bytes_per_key`` times the
    point's keys of memory is left (``select_peers``)."""

    name: str
    build: Callable[..., Any] | None
    module: str | None = None
    max_keys: int | None = None
    in_quick: bool = True
    bytes_per_key: int = 48


def _importable(module: str | None) -> bool:
    if module is None:
        return True
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def select_peers(peers: tuple[Peer, ...], n: int, quick: bool,
                 memory_left: int) -> tuple[list[Peer], list[str]]:
    """The peers that run at a point of ``n`` keys, and a note for each one that does not."""
    chosen, notes = [], []
    for peer in peers:
        if not _importable(peer.module):
            notes.append(f"{peer.name}: skipped, {peer.module} is not installed")
        elif quick and not peer.in_quick:
            notes.append(f"{peer.name}: not run by --quick")
        elif peer.max_keys is not None and n > peer.max_keys:
            notes.append(f"{peer.name}: skipped above {peer.max_keys:,} keys (too slow)")
        elif peer.bytes_per_key * n > memory_left:
            notes.append(f"{peer.name}: skipped, would need about "
                         f"{peer.bytes_per_key * n / 2**30:.1f} GiB, "
                         f"{memory_left / 2**30:.1f} GiB left")
        else:
            chosen.append(peer)
            memory_left -= peer.bytes_per_key * n
    return chosen, notes


def equal_check(what: str, expected) -> Callable[[Any], None]:
    """A check: the result equals ``expected`` (arrays, or lists for Python peers)."""
    def check(result):
        if isinstance(result, list) and isinstance(expected, list):
            same = result == expected
        else:
            same = np.array_equal(np.asarray(result), np.asarray(expected))
        _expect(same, f"{what} returned a wrong answer")
    return check


def lookup_cases(label: str, queries: list[Query], lookup: Callable[[Any], Any],
                  answer: str = "values", prepare: Callable[[np.ndarray], Any] = lambda q: q,
                  expect: Callable[[np.ndarray], Any] = lambda a: a) -> list[Case]:
    """One case per query: ``lookup(prepare(query keys))`` checked against the query's
    ``answer`` ("values" or "found"), through ``expect`` (e.g. ``tolist`` for Python peers)."""
    cases = []
    for q in queries:
        arg = prepare(q.keys)
        cases.append(Case(q.op, label, q.keys.size, lambda arg=arg: lookup(arg),
                          check=equal_check(f"{label} {q.op}", expect(getattr(q, answer)))))
    return cases


# ================================================================================================
# key -> value maps
# ================================================================================================


@njit(cache=True, nogil=True)
def typed_dict_insert(d, keys, values):
    """``d[keys[i]] = values[i]`` for every ``i``; the entries after."""
    for i in range(keys.size):
        d[keys[i]] = values[i]
    return len(d)


@njit(cache=True, nogil=True)
def typed_dict_get(d, keys, default, out):
    """``out[i] = d.get(keys[i], default)``; ``out``."""
    for i in range(keys.size):
        out[i] = d.get(keys[i], default)
    return out


@njit(cache=True, nogil=True)
def typed_dict_erase(d, keys):
    """``del d[keys[i]]`` for every ``i`` (each must be present); the entries after."""
    for i in range(keys.size):
        del d[keys[i]]
    return len(d)


class TypedDictMap:
    """A ``numba.typed.Dict`` of the arrays' dtypes, filled, read and emptied by the compiled
    loops above (one thread; each call is one compiled loop over the whole batch).

    The map adapters (this, ``PythonDictMap``, ``protocol.BulkhashMap``) share one interface:
    ``empty``, ``adopt_copy_of``, ``insert``, ``erase``, ``get``, ``len``, and ``prepare``, which
    turns an input array, or an expected answer, into the form the map takes and gives."""

    label = "numba typed.Dict (1 thread)"
    prepare = staticmethod(lambda arr: arr)

    def __init__(self, keys: np.ndarray, values: np.ndarray):
        self.key_type = numba.from_dtype(keys.dtype)
        self.value_type = numba.from_dtype(values.dtype)
        self.value_dtype = values.dtype
        self.table = None

    def empty(self):
        from numba import typed

        self.table = None
        self.table = typed.Dict.empty(key_type=self.key_type, value_type=self.value_type)

    def adopt_copy_of(self, other: "TypedDictMap"):
        self.table = None
        self.table = other.table.copy()

    def insert(self, keys, values):
        return typed_dict_insert(self.table, keys, values)

    def erase(self, keys):
        return typed_dict_erase(self.table, keys)

    def get(self, keys):
        return typed_dict_get(self.table, keys, self.value_dtype.type(0),
                              np.empty(keys.size, self.value_dtype))

    def __len__(self):
        return len(self.table)


class PythonDictMap:
    """A Python ``dict`` on Python ints (the arrays turned into lists beforehand, untimed)."""

    label = "Python dict (1 thread)"
    prepare = staticmethod(lambda arr: arr.tolist())

    def __init__(self, keys: np.ndarray, values: np.ndarray):
        self.table = None

    def empty(self):
        self.table = {}

    def adopt_copy_of(self, other: "PythonDictMap"):
        self.table = None
        self.table = dict(other.table)

    def insert(self, keys, values):
        self.table.update(zip(keys, values))

    def erase(self, keys):
        table = self.table
        for k in keys:
            del table[k]

    def get(self, keys):
        get = self.table.get
        return [get(k, 0) for k in keys]

    def __len__(self):
        return len(self.table)


def typed_dict_cases(keys: np.ndarray, values: np.ndarray, queries: list[Query]) -> list[Case]:
    """typed.Dict: *insert* every pair into a fresh dict (made untimed), then the lookups."""
    table = TypedDictMap(keys, values)
    n = keys.size
    insert = Case("insert", table.label, n, lambda: table.insert(keys, values), setup=table.empty,
                  check=lambda size: _expect(size == n, "typed.Dict lost keys"))
    return [insert] + lookup_cases(table.label, queries, table.get)


def pyarrow_index_in_cases(keys: np.ndarray, values: np.ndarray,
                           queries: list[Query]) -> list[Case]:
    """``pyarrow.compute.index_in(query, value_set=keys)`` (it hashes the value set on every
    call: build and probe in one), and each key's value gathered from its position (0 where
    absent), as ``HashMap.get`` answers. No insert case: pyarrow keeps no table between calls."""
    import pyarrow as pa
    import pyarrow.compute as pc

    value_set = pa.array(keys)
    zero = values.dtype.type(0)

    def lookup(query):
        positions = pc.index_in(query, value_set=value_set).fill_null(-1).to_numpy()
        return np.where(positions >= 0, values.take(positions, mode="clip"), zero)

    return lookup_cases("pyarrow index_in", queries, lookup, prepare=pa.array)


def polars_join_cases(keys: np.ndarray, values: np.ndarray, queries: list[Query]) -> list[Case]:
    """A polars left join of the query keys (a one-column frame) against the (key, value)
    frame, in query order (``maintain_order="left"``), nulls filled with 0, as a NumPy array.
    A join hashes one side on every call: build and probe in one; no insert case."""
    import polars as pl

    table = pl.DataFrame({"k": keys, "v": values})

    def lookup(frame):
        joined = frame.join(table, on="k", how="left", maintain_order="left")
        return joined["v"].fill_null(0).to_numpy()

    return lookup_cases(f"polars join ({pl.thread_pool_size()} threads)", queries, lookup,
                         prepare=lambda q: pl.DataFrame({"k": q}))


# ================================================================================================
# sets
# ================================================================================================


def python_set_cases(keys: np.ndarray, queries: list[Query]) -> list[Case]:
    """A Python ``set`` of Python ints: *add* = ``set(key_list)``, *contains* =
    ``[k in s for k in query_list]`` (lists made untimed)."""
    key_list = keys.tolist()
    holder: dict[str, Any] = {}
    label = "Python set (1 thread)"

    def build():
        holder["set"] = set(key_list)
        return len(holder["set"])

    add = Case("add", label, keys.size, build, setup=holder.clear,
               check=lambda size: _expect(size == keys.size, "set lost keys"))
    return [add] + lookup_cases(label, queries, lambda q: [k in holder["set"] for k in q],
                                 answer="found", prepare=np.ndarray.tolist,
                                 expect=np.ndarray.tolist)


def numpy_isin_cases(keys: np.ndarray, queries: list[Query]) -> list[Case]:
    """``np.isin(query, keys)`` (NumPy sorts both on every call)."""
    return lookup_cases("NumPy isin (1 thread)", queries, lambda q: np.isin(q, keys),
                         answer="found")


def pyarrow_is_in_cases(keys: np.ndarray, queries: list[Query]) -> list[Case]:
    """``pyarrow.compute.is_in(query, value_set=keys)`` (hashes the value set on every call)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    value_set = pa.array(keys)
    return lookup_cases("pyarrow is_in", queries,
                         lambda q: pc.is_in(q, value_set=value_set).to_numpy(
                             zero_copy_only=False), answer="found", prepare=pa.array)


def polars_is_in_cases(keys: np.ndarray, queries: list[Query]) -> list[Case]:
    """``polars.Series(query).is_in(keys.implode())`` (hashes the keys on every call)."""
    import polars as pl

    key_list = pl.Series(keys).implode()
    return lookup_cases(f"polars is_in ({pl.thread_pool_size()} threads)", queries,
                         lambda q: q.is_in(key_list).to_numpy(), answer="found",
                         prepare=pl.Series)


# ================================================================================================
# counting
# ================================================================================================


def numpy_unique_cases(keys: np.ndarray, distinct: np.ndarray, counts: np.ndarray) -> list[Case]:
    """``np.unique(keys, return_counts=True)`` (a sort), checked against (distinct, counts)."""
    def check(result):
        _expect(np.array_equal(result[0], distinct) and np.array_equal(result[1], counts),
                "np.unique returned wrong counts")

    return [Case("add", "NumPy unique (1 thread)", keys.size,
                 lambda: np.unique(keys, return_counts=True), check=check)]


def value_counts_cases(keys: np.ndarray, distinct: np.ndarray, counts: np.ndarray) -> list[Case]:
    """``pandas.Series(keys).value_counts(sort=False)`` (khash), checked once sorted by key."""
    import pandas as pd

    def check(result):
        ordered = result.sort_index()
        _expect(np.array_equal(ordered.index.to_numpy(), distinct)
                and np.array_equal(ordered.to_numpy(), counts),
                "pandas value_counts returned wrong counts")

    return [Case("add", "pandas value_counts (1 thread)", keys.size,
                 lambda: pd.Series(keys, copy=False).value_counts(sort=False), check=check)]


def collections_counter_cases(keys: np.ndarray, distinct: np.ndarray,
                              counts: np.ndarray) -> list[Case]:
    """``collections.Counter(key_list)`` on Python ints (the list made untimed)."""
    key_list = keys.tolist()
    distinct_list, count_list = distinct.tolist(), counts.tolist()

    def check(result):
        _expect(len(result) == len(distinct_list)
                and [result[k] for k in distinct_list] == count_list,
                "collections.Counter returned wrong counts")

    return [Case("add", "Python collections.Counter (1 thread)", keys.size,
                 lambda: collections.Counter(key_list), check=check)]


# ================================================================================================
# filters
# ================================================================================================


def key_bytes(keys: np.ndarray) -> list[bytes]:
    """Each key as its little-endian bytes (what pyprobables hashes)."""
    width = keys.dtype.itemsize
    return [int(k).to_bytes(width, "little") for k in keys.tolist()]


class ProbablesCuckoo:
    """pyprobables' ``CuckooFilter`` (pure Python), sized like bulkhash's for ``n`` keys at load
    0.95 in buckets of 4, 32-bit fingerprints (its default), ``auto_expand=False``; keys as
    bytes (``key_bytes``, made untimed). Its ``add`` of a key whose fingerprint is already in one
    of the key's buckets stores nothing (a set, not a multiset); a key that finds the filter
    full is reported not added."""

    label = "pyprobables CuckooFilter (1 thread)"
    prepare = staticmethod(key_bytes)

    def __init__(self, n: int, key_dtype: np.dtype):
        self.bins = int(np.ceil(n / (4 * 0.95)))
        self.filter = None

    def fresh(self):
        from probables import CuckooFilter

        self.filter = None
        self.filter = CuckooFilter(capacity=self.bins, bucket_size=4, max_swaps=500,
                                   auto_expand=False, finger_size=4)

    def add(self, keys: list[bytes]) -> np.ndarray:
        from probables.exceptions import CuckooFilterFullError

        added = np.ones(len(keys), np.bool_)
        add = self.filter.add
        for i, k in enumerate(keys):
            try:
                add(k)
            except CuckooFilterFullError:
                added[i] = False
        return added

    def contains(self, keys: list[bytes]) -> np.ndarray:
        return np.fromiter(map(self.filter.check, keys), np.bool_, len(keys))

    def erase(self, keys: list[bytes]) -> np.ndarray:
        return np.fromiter(map(self.filter.remove, keys), np.bool_, len(keys))

    def stored(self) -> int:
        return self.filter.elements_added

    def bits(self) -> int:
        import sys

        buckets = self.filter.buckets
        return 8 * (sys.getsizeof(buckets) + sum(sys.getsizeof(b) for b in buckets))


def filter_cases(table, keys: np.ndarray, others: np.ndarray) -> list[Case]:
    """*add* every key to an emptied filter, *contains present* (every added key must be
    found), *contains absent* (the others), *erase* every key (each stored key removed once),
    for a filter with ``fresh``, ``add``, ``contains``, ``erase``, ``stored`` and ``prepare``
    (the keys as that filter takes them, made untimed)."""
    label, n = table.label, keys.size
    present, absent = table.prepare(keys), table.prepare(others)
    state: dict[str, Any] = {}

    def keep_added(added):
        state["added"] = added
        state["stored"] = table.stored()

    def no_false_negatives(found):
        _expect(bool(found[state["added"]].all()), f"{label}: a false negative")

    def erased_all(removed):
        _expect(int(removed.sum()) == state["stored"],
                f"{label} erase removed {int(removed.sum())} of {state['stored']} keys")

    return [
        Case("add", label, n, lambda: table.add(present), setup=table.fresh, check=keep_added),
        Case("contains present", label, n, lambda: table.contains(present),
             check=no_false_negatives),
        Case("contains absent", label, others.size, lambda: table.contains(absent)),
        Case("erase", label, n, lambda: table.erase(present), check=erased_all),
    ]
