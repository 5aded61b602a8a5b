"""``BucketListMap``: integer keys -> many values each, the values in linked buckets of a value
pool (WarpCore's BucketListHashTable). Layout and kernels: ``bulkhash._cpu.bucketlist`` and
``bulkhash._cuda.bucketlist``; the key index is the open-addressing engine of the other tables
(``bulkhash._table.OpenTable``), mapping each key to a key id."""

from __future__ import annotations

import math

import numpy as np

from ._base import make_backend
from ._cpu import bucketlist as BL
from ._cpu import kernels as K
from ._locks import ReadWriteLock
from ._table import (DEFAULT_CAPACITY, DEFAULT_MAX_LOAD_FACTOR, OpenTable, check_capacity,
                     check_max_load_factor)
from .hashing import DEFAULT_SEED
from .multimap import MultiValueTable

#: Largest bucket a key's list may use (values).
MAX_BUCKET_SIZE = 1 << 20


def _check_bucket_sizes(min_bucket_size, max_bucket_size, grow_factor) -> tuple[int, int, float]:
    for name, v in (("min_bucket_size", min_bucket_size), ("max_bucket_size", max_bucket_size)):
        if (isinstance(v, bool) or not isinstance(v, (int, np.integer))
                or not 1 <= v <= MAX_BUCKET_SIZE):
            raise ValueError(f"{name}={v!r} must be an integer from 1 to {MAX_BUCKET_SIZE}")
    if max_bucket_size < min_bucket_size:
        raise ValueError(f"max_bucket_size={max_bucket_size} is below min_bucket_size="
                         f"{min_bucket_size}; it must be at least as large")
    if (isinstance(grow_factor, bool) or not isinstance(grow_factor, (int, float))
            or not 1.0 <= grow_factor <= 16.0):
        raise ValueError(f"grow_factor={grow_factor!r} must be a number from 1 to 16 (each bucket "
                         "of a key holds grow_factor times its predecessor, at least one more)")
    return int(min_bucket_size), int(max_bucket_size), float(grow_factor)


class BucketStore:
    """The engine: a key index (key -> key id), records, buckets, a value pool, and the policy
    (growth, compaction). Works on table words; ``BucketListMap`` checks user input."""

    def __init__(self, word: np.dtype, capacity: int, key_capacity: int, *, growable: bool,
                 max_load_factor: float, seed: int, backend, sizes: tuple[int, int, float]):
        self.word = np.dtype(word)
        self.growable = growable
        self.min_size, self.max_size, self.grow = sizes
        self._index_args = dict(growable=growable, max_load_factor=max_load_factor, seed=seed,
                                backend=backend)
        self.lock = ReadWriteLock()
        if backend is None:
            self.kernels = BL.CpuBucketKernels()
        else:
            from ._cuda.bucketlist import CudaBucketKernels

            self.kernels = CudaBucketKernels()
        self._allocate(capacity, key_capacity)

    # ---------------------------------------------------------------- storage
    def _allocate(self, capacity: int, key_capacity: int) -> None:
        generation = 0
        if getattr(self, "state", None) is not None:  # refs of the old arrays go stale
            generation = self._read(BL.GENERATION) + 1
            self.state[BL.GENERATION] = generation
        self.index = OpenTable(self.word, 2, key_capacity, **self._index_args)
        self.backend = self.index.backend
        self.capacity = capacity
        self.state = self.backend.from_host(np.zeros(BL.STATE_LEN, np.int64))
        self.state[BL.GENERATION] = generation
        self.records = self._new(max(16, key_capacity), BL.RECORD_WORDS)
        self.buckets = self._new(max(16, key_capacity), BL.BUCKET_WORDS)
        self.pool = self._new_pool(max(64, capacity))

    def _new(self, rows: int, width: int):
        """A fresh records or buckets array: counts 0, links -1."""
        host = np.zeros((rows, width), np.int64)
        host[:, 1:3] = -1  # (records: head, tail; buckets: size 0 is overwritten, next)
        return self.backend.from_host(host)

    def _new_pool(self, size: int):
        return self.backend.zeros((size, 1), self.word).reshape(size)

    @property
    def next_id(self) -> int:
        """The id the next new key gets (kept in the state vector: refs take ids too)."""
        return self._read(BL.NEXT_ID)

    @next_id.setter
    def next_id(self, value: int) -> None:
        self.state[BL.NEXT_ID] = value

    def _grown(self, arr, rows: int, width: int | None):
        """``arr`` with room for ``rows`` (entries past the old ones as ``_new`` makes them);
        the caller replaces ``arr`` with it, so refs of the old one go stale."""
        self.state[BL.GENERATION] = self._read(BL.GENERATION) + 1
        fresh = self._new(rows, width) if width else self._new_pool(rows)
        old = arr.shape[0]
        if isinstance(fresh, np.ndarray):
            fresh[:old] = arr
        else:
            fresh[:old].copy_to_device(arr)
        return fresh

    def _read(self, index: int) -> int:
        return int(self.state[index])

    @property
    def seed(self) -> int:
        return self.index.seed

    @property
    def max_load_factor(self) -> float:
        return self.index.max_load_factor

    def __len__(self) -> int:
        return self._read(BL.VALUES)

    @property
    def num_keys(self) -> int:
        return len(self.index) if not self._read(BL.REF_FAILED) else int(self.unique_keys().size)

    @property
    def key_capacity(self) -> int:
        return self.index.capacity

    @property
    def nbytes(self) -> int:
        return int(self.index.nbytes + self.records.nbytes + self.buckets.nbytes
                   + self.pool.nbytes + self.state.nbytes)

    @property
    def pool_in_use(self) -> int:
        """Pool slots handed out to buckets (erased keys' included until compaction)."""
        return self._read(BL.POOL_TOP)

    # ---------------------------------------------------------------- operations
    def _key_ids(self, words):
        kid_words, found = self.index.lookup(words, 0, want_values=True, want_found=True)
        return self.kernels.kids(kid_words, found)

    def insert(self, words, values, max_per_key: int):
        n = words.size
        if self.growable and len(self) + n > self.capacity:
            self.capacity = max(len(self) + n, 2 * self.capacity, DEFAULT_CAPACITY)
        backend = self.backend
        # 1. key ids: new keys (their first occurrences, in array order) get the next ids
        placeholder = backend.from_host(np.zeros(1, self.word))
        first_seen, _ = self.index.upsert(words, placeholder, K.OP_KEEP, K.KIND_UINT, 8)
        new = backend.indices_of(first_seen, K.NEW)
        if new.size:
            ids = np.arange(self.next_id, self.next_id + new.size, dtype=self.word)
            self.index.assign(backend.take(words, new), backend.from_host(ids))
            self.next_id += new.size
            if self.next_id > self.records.shape[0]:
                self.records = self._grown(self.records, max(self.next_id,
                                                             2 * self.records.shape[0]),
                                           BL.RECORD_WORDS)
        kids = self._key_ids(words)
        # 2. append, growing the pool (and the bucket array) for pairs that found no room there
        self._make_room(n, new.size)
        outcome, tally = self.kernels.append(self, kids, values, max_per_key,
                                             self.capacity - len(self), keys=words)
        while tally[BL.POOL_FULL]:
            full = backend.indices_of(outcome, BL.POOL_FULL)
            tally[BL.POOL_FULL] -= full.size
            # (the bump counters stop at the end of whichever array ran out: grow that one)
            pool, cap = self.pool.size, self.buckets.shape[0]
            if self._read(BL.POOL_TOP) >= pool:
                self.pool = self._grown(self.pool, pool + max(pool // 2, self.max_size), None)
            if self._read(BL.N_BUCKETS) >= cap:
                self.buckets = self._grown(self.buckets, cap + max(cap // 2, 16),
                                           BL.BUCKET_WORDS)
            retry, retry_tally = self.kernels.append(self, backend.take(kids, full),
                                                     backend.take_values(values, full), max_per_key,
                                                     self.capacity - len(self),
                                                     keys=backend.take(words, full))
            tally += retry_tally
            backend.put(outcome, full, retry)
        if new.size and tally[BL.FULL]:  # a fixed table refused every pair of some new keys
            new_words = backend.take(words, new)
            self.index.erase(backend.take(new_words, self._holding(new_words, False)))
        return outcome, tally

    def _holding(self, words, holds: bool) -> np.ndarray:
        """Host positions of the (indexed) keys ``words`` that hold values (or, ``holds=False``,
        that hold none: their index entry is left over from pairs that were refused)."""
        counts = self.backend.to_host(self.kernels.counts(self, self._key_ids(words)))
        return np.flatnonzero((counts > 0) == holds)

    def _make_room(self, n: int, new_keys: int) -> None:
        """Grow the pool and the bucket array ahead of a batch of ``n`` pairs, ``new_keys`` of
        them new keys: to what the values need at least (a pair that still finds no room grows
        them again and is appended once more, so this stays a floor, not a guess that
        over-allocates)."""
        top, pool = self._read(BL.POOL_TOP), self.pool.size
        need = top + n + new_keys * (self.min_size - 1)
        if need > pool:
            self.pool = self._grown(self.pool, max(pool + pool // 2, need), None)
        used, cap = self._read(BL.N_BUCKETS), self.buckets.shape[0]
        if used + new_keys > cap:
            self.buckets = self._grown(self.buckets, max(cap + cap // 2, used + new_keys),
                                       BL.BUCKET_WORDS)

    def erase(self, words):
        kids = self._key_ids(words)
        removed_first = self.index.erase(words)  # REMOVED at each key's first occurrence
        positions = self.backend.indices_of(removed_first, K.REMOVED)
        removed = self.backend.from_host(np.zeros(words.size, np.int64))
        if positions.size:
            self.kernels.release(self, self.backend.take(kids, positions), removed,
                                 self.backend.from_host(positions))
            if self._read(BL.GARBAGE) > max(64, self._read(BL.POOL_TOP) // 2):
                self.rebuild(self.capacity)  # compact: most of the pool is erased keys'
        return removed

    def count(self, words):
        return self.kernels.counts(self, self._key_ids(words))

    def positive(self, counts):
        """``counts > 0``, where the counts live."""
        return self.kernels.positive(counts)

    def get(self, words):
        kids = self._key_ids(words)
        offsets, total = self.kernels.offsets(self.kernels.counts(self, kids))
        return offsets, self.kernels.fill(self, kids, offsets, total)

    def unique_keys(self):
        """Every key holding a value. A ref insert refused for want of room may leave a new key
        in the index with none (refs cannot take it out again: another thread may be adding to
        it): those are skipped once a ref has refused anything."""
        words = self.index.items(want_values=False)[0]
        if self._read(BL.REF_FAILED):
            words = self.backend.take(words, self._holding(words, True))
        return words

    def dump(self):
        """(key word per value, value words): grouped by key, each key's values in order."""
        key_words = self.unique_keys()
        offsets, values = self.get(key_words)
        return self.kernels.repeat(key_words, offsets), values

    # ---------------------------------------------------------------- size policy
    def rebuild(self, capacity: int, key_capacity: int | None = None) -> None:
        """Lay every key's values out afresh (drops erased keys' buckets and the tails of
        buckets), with room for ``capacity`` values."""
        keys, values = self.dump()
        self._allocate(max(capacity, keys.size),
                       max(key_capacity or self.index.capacity, self.num_keys))
        if keys.size:
            _, tally = self.insert(keys, values, -1)
            assert tally[BL.FULL] + tally[BL.NO_KEY] == 0, "a rebuilt table lost pairs"

    def reserve(self, extra: int) -> None:
        if len(self) + extra > self.capacity:
            self.capacity = max(len(self) + extra, 2 * self.capacity, DEFAULT_CAPACITY)
        if self.pool.size < self._read(BL.POOL_TOP) + extra:
            self.pool = self._grown(self.pool, self._read(BL.POOL_TOP) + extra, None)

    def clear(self) -> None:
        self._allocate(self.capacity, self.index.capacity)

    def copy(self) -> "BucketStore":
        new = object.__new__(BucketStore)
        new.__dict__.update(self.__dict__)
        new.lock = ReadWriteLock()
        new.index = self.index.copy()
        new.backend = new.index.backend
        for name in ("records", "buckets", "pool"):
            setattr(new, name, self.backend.copy(getattr(self, name)))
        new.state = self.backend.from_host(self.backend.to_host(self.state).copy())
        return new


class BucketListMap(MultiValueTable):
    """A hash table from integer keys to any number of values each, its values kept in linked
    buckets of a value pool (WarpCore's BucketListHashTable); the API and semantics of
    ``MultiMap`` (appends, CSR ``get`` in insertion order, ``max_values_per_key``, full key
    domain, growth, save/load, both devices).

    Where ``MultiMap`` stores a slot per pair, a ``BucketListMap`` stores each key once (in a key
    index) and its values in buckets that grow geometrically: a key's first bucket holds
    ``min_bucket_size`` values, each next one ``grow_factor`` times more, up to
    ``max_bucket_size``. A lookup reads a handful of contiguous runs instead of a slot per value,
    which pays off for keys with many values; keys with one or two values cost more (a record
    and a bucket each). ``key_load_factor``, ``value_load_factor`` and ``bytes_per_value`` say
    what the layout costs for your data.

    Parameters
    ----------
    key_dtype, value_dtype, max_values_per_key, growable, seed, device, group_size
        As for ``MultiMap``.
    capacity : int, optional
        *Values* the table holds before it must grow (default 1024 for a growable table).
    key_capacity : int, optional
        Distinct keys the key index (and the per-key records) hold before they grow. Default:
        ``min(capacity, 1024)`` for a growable table, which grows as keys come (pass the number
        of keys you expect to save the growth); ``capacity`` for a fixed table
        (``growable=False``), which refuses the pairs of keys beyond it.
    min_bucket_size, max_bucket_size : int
        Values in a key's first bucket (default 1) and the most any bucket holds (default 1024).
    grow_factor : float
        How much larger each next bucket of a key is (default 2.0: about log2(m) buckets for m
        values, and at most half of a key's last bucket unused).
    max_load_factor : float
        Of the key index (0.05-0.99).

    Examples
    --------
    >>> from bulkhash.bucketlist import BucketListMap
    >>> m = BucketListMap("int64", "float32")
    >>> m.insert([7, 3, 7, 7, -1], [1.0, 2.0, 3.0, 1.0, 5.0])
    MultiInsertResult(stored=5, new_keys=3, max_values_reached=0, failed=0)
    >>> offsets, values = m.get([7, 4, -1])
    >>> offsets.tolist(), values.tolist()
    ([0, 3, 3, 4], [1.0, 3.0, 1.0, 5.0])
    >>> m.erase([3]).tolist(), len(m), m.num_keys
    ([1], 4, 2)
    >>> m.value_load_factor     # 4 values in 5 slots: 7's buckets of 1 and 2, -1's of 1,
    0.8
    >>>                         # and 3's, erased (garbage until the table compacts itself)
    """

    def __init__(self, key_dtype="uint64", value_dtype="uint64", capacity: int | None = None, *,
                 key_capacity: int | None = None, min_bucket_size: int = 1,
                 max_bucket_size: int = 1024, grow_factor: float = 2.0,
                 max_values_per_key: int | None = None, growable: bool = True,
                 max_load_factor: float = DEFAULT_MAX_LOAD_FACTOR, seed: int = DEFAULT_SEED,
                 device: str | None = None, group_size: int | None = None):
        # the index's words hold key ids too: at least as wide as a key, and 64-bit with the
        # values' word, so that ids and values share the tables' two word types
        word = self._setup_values(key_dtype, value_dtype, max_values_per_key, seed, device)
        sizes = _check_bucket_sizes(min_bucket_size, max_bucket_size, grow_factor)
        capacity = check_capacity(capacity, bool(growable))
        if key_capacity is None:  # a fixed table: as if every key held one value
            key_capacity = min(capacity, DEFAULT_CAPACITY) if growable else capacity
        elif (isinstance(key_capacity, bool) or not isinstance(key_capacity, (int, np.integer))
              or key_capacity < 0):
            raise ValueError(f"key_capacity={key_capacity!r} must be a non-negative integer "
                             "number of keys")
        backend = make_backend(self._device, group_size)  # (validates group_size)
        self._table = BucketStore(word, capacity, int(key_capacity), growable=bool(growable),
                                  max_load_factor=check_max_load_factor(max_load_factor),
                                  seed=int(seed), backend=backend, sizes=sizes)

    @property
    def key_capacity(self) -> int:
        """Distinct keys the key index holds before it grows."""
        return self._table.key_capacity

    @property
    def key_load_factor(self) -> float:
        """Keys / slots of the key index."""
        return self._table.index.load_factor

    @property
    def value_load_factor(self) -> float:
        """Values stored / pool slots handed out to buckets: how much of the buckets' room holds
        values (the rest: the unused tails of keys' last buckets, and erased keys' buckets until
        the table compacts itself)."""
        used = self._table.pool_in_use
        return len(self) / used if used else 0.0

    @property
    def bytes_per_value(self) -> float:
        """``nbytes / len(self)``: memory per stored value, everything included."""
        return self.nbytes / len(self) if len(self) else math.inf

    @property
    def min_bucket_size(self) -> int:
        return self._table.min_size

    @property
    def max_bucket_size(self) -> int:
        return self._table.max_size

    @property
    def grow_factor(self) -> float:
        return self._table.grow

    def ref(self, reserve: int = 0):
        """A view for per-element use inside your own ``@numba.njit`` code, or for a
        ``device="cuda"`` table (``group_size=1``) inside ``@cuda.jit`` kernels:
        ``insert(key, value)``, ``count(key)``, ``contains(key)``, ``retrieve(key, out)``,
        ``failed()`` (see ``bulkhash.bucketlist_refs``). ``reserve=n`` first grows the table so
        that ``n`` more values fit, whatever keys they go to: a ref never grows its table (a fixed
        table keeps its key index and ``capacity``, and raises if ``n`` values are past it).
        Sizing the pool for ``n`` values reads every key's last bucket size: one pass over the
        records, so take a reserved ref per batch of work, not per element."""
        if isinstance(reserve, bool) or not isinstance(reserve, (int, np.integer)) or reserve < 0:
            raise ValueError(f"reserve={reserve!r} must be a non-negative integer")
        t = self._table
        if self._device == "cuda" and t.backend.group_size != 1:
            raise ValueError("a GPU BucketListMap ref works one thread per element: make the "
                             f"table with group_size=1 (it has {t.backend.group_size})")
        from .bucketlist_refs import make_room

        if reserve:
            self.reserve(int(reserve))
            with t.lock.writing():
                make_room(t, int(reserve))
        if self._device == "cuda":
            from ._cuda.bucketlist_refs import make_ref
        else:
            from .bucketlist_refs import make_ref
        return make_ref(self)

    def _params(self) -> dict:
        return dict(key_dtype=str(self._key_dtype), value_dtype=str(self.value_dtype),
                    capacity=self.capacity, key_capacity=self.key_capacity,
                    min_bucket_size=self.min_bucket_size, max_bucket_size=self.max_bucket_size,
                    grow_factor=self.grow_factor, max_values_per_key=self._max_values,
                    growable=self.growable, max_load_factor=self.max_load_factor, seed=self.seed)

    def __repr__(self) -> str:
        return (f"BucketListMap(key_dtype={self._key_dtype}, value_dtype={self.value_dtype}, "
                f"len={len(self)}, num_keys={self.num_keys}, capacity={self.capacity}, "
                f"value_load_factor={self.value_load_factor:.3f}, device={self._device!r})")
