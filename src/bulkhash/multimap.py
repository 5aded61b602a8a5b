"""``MultiMap``: integer keys -> many values each (WarpCore's MultiValueHashTable, and with
``values_per_slot > 1`` its MultiBucketHashTable). Layout and kernels: ``bulkhash._cpu.multi``
and ``bulkhash._cuda.multi``; the policy (growth, budgets): ``bulkhash._multitable``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _dtypes
from ._base import TableBase, make_backend
from ._cpu import multi as M
from ._multitable import MultiTable
from ._table import check_capacity, check_max_load_factor
from .hashing import DEFAULT_SEED
from .status import Status, TableFullError

MAX_VALUES_REACHED = int(Status.MAX_VALUES_REACHED)

#: Values one row may hold (``values_per_slot``): a row of B values is B + 2 words.
MAX_VALUES_PER_SLOT = 32

#: MultiMap's default ``max_load_factor`` (see the class docs for why it is below the 0.8 of the
#: single-value tables).
MAX_LOAD_FACTOR = 0.5


def _flag_table() -> np.ndarray:
    table = np.zeros(256, np.uint16)
    table[M.APPENDED] = Status.DUPLICATE_KEY
    table[M.FULL] = Status.OUT_OF_CAPACITY
    table[M.MAX_REACHED] = MAX_VALUES_REACHED
    table[M.NO_KEY] = Status.OUT_OF_CAPACITY
    return table


_FLAGS = _flag_table()


@dataclass(frozen=True)
class MultiInsertResult:
    """What ``MultiMap.insert`` (or ``BucketListMap.insert``) did.

    ``stored``: pairs stored; ``new_keys``: keys that had no value before the call;
    ``max_values_reached``: pairs not stored because their key already held
    ``max_values_per_key`` values; ``failed``: pairs that did not fit a fixed table (it raises
    ``TableFullError``, whose ``result`` this is); ``status``: per-pair ``Status`` flags (only
    with ``status=True``): ``DUPLICATE_KEY`` where the key already had values,
    ``MAX_VALUES_REACHED``, ``OUT_OF_CAPACITY``.
    """

    stored: int
    new_keys: int
    max_values_reached: int = 0
    failed: int = 0
    status: np.ndarray | None = None

    def __repr__(self) -> str:
        extra = "" if self.status is None else f", status=<{self.status.size} flags>"
        return (f"MultiInsertResult(stored={self.stored}, new_keys={self.new_keys}, "
                f"max_values_reached={self.max_values_reached}, failed={self.failed}{extra})")


def _check_values_per_slot(values_per_slot) -> int:
    if (isinstance(values_per_slot, bool) or not isinstance(values_per_slot, (int, np.integer))
            or not 1 <= values_per_slot <= MAX_VALUES_PER_SLOT):
        raise ValueError(f"values_per_slot={values_per_slot!r} must be an integer from 1 to "
                         f"{MAX_VALUES_PER_SLOT} (1: one slot per pair; B > 1: slots of B values "
                         "of one key, for keys that hold many values)")
    return int(values_per_slot)


def _check_max_values(max_values_per_key) -> int | None:
    if max_values_per_key is None:
        return None
    if (isinstance(max_values_per_key, bool)
            or not isinstance(max_values_per_key, (int, np.integer)) or max_values_per_key < 1):
        raise ValueError(f"max_values_per_key={max_values_per_key!r} must be a positive integer, "
                         "or None for no limit")
    return int(max_values_per_key)


class MultiValueTable(TableBase):
    """What ``MultiMap`` and ``BucketListMap`` share: the multi-value API over an engine
    (``self._table``: ``_multitable.MultiTable`` or ``bucketlist.BucketStore``) that works on
    table words. Not public."""

    _UNIT = "pairs"
    _codec: _dtypes.ValueCodec
    _max_values: int | None

    def _setup_values(self, key_dtype, value_dtype, max_values_per_key, seed, device):
        """The constructor checks both multi-value tables make; returns the table's word."""
        vdt, word = self._check_common(key_dtype, value_dtype, seed, device)
        self._codec = _dtypes.ValueCodec(vdt, word)
        self._max_values = _check_max_values(max_values_per_key)
        return word

    # ------------------------------------------------------------------ inputs
    def _user_values(self, words):
        return self._codec.from_words(words)

    # ------------------------------------------------------------------ mutation
    def insert(self, keys, values, *, status: bool = False) -> MultiInsertResult:
        """Append each pair: ``values[i]`` becomes the last value of ``keys[i]``.

        ``values`` may be a scalar, used for every key. Pairs of a key that already holds
        ``max_values_per_key`` values are not stored (reported, never silently). Returns a
        ``MultiInsertResult``; with ``status=True`` it carries per-pair ``Status`` flags. A fixed
        table that runs out of room raises ``TableFullError`` after storing every pair that fit.
        """
        words, _ = self._key_words(keys)
        value_words = self._codec.to_words(
            self._inputs().as_values(values, self._codec.dtype, words.size, "values"))
        t = self._table
        with t.lock.writing():
            outcome, tally = t.insert(words, value_words,
                                      -1 if self._max_values is None else self._max_values)
        flags = _FLAGS[t.backend.to_host(outcome)] if status else None
        result = MultiInsertResult(stored=int(tally[M.NEW_KEY] + tally[M.APPENDED]),
                                   new_keys=int(tally[M.NEW_KEY]),
                                   max_values_reached=int(tally[M.MAX_REACHED]),
                                   failed=int(tally[M.FULL] + tally[M.NO_KEY]), status=flags)
        if result.failed:
            failed = np.union1d(t.backend.indices_of(outcome, M.FULL),
                                t.backend.indices_of(outcome, M.NO_KEY)).astype(np.int64)
            raise TableFullError(failed, result, self.capacity)
        return result

    def erase(self, keys):
        """Remove every value of each key; returns how many values each occurrence removed
        (int64; within one call only a key's first occurrence finds any)."""
        words, scalar = self._key_words(keys)
        with self._table.lock.writing():
            removed = self._table.erase(words)
        return self._out(removed, scalar, keys)

    # ------------------------------------------------------------------ queries
    def get(self, keys):
        """``(offsets, values)``: key ``i``'s values, in insertion order, are
        ``values[offsets[i]:offsets[i + 1]]`` (``offsets``: int64, ``len(keys) + 1``). For a
        scalar key, just its values."""
        words, scalar = self._key_words(keys)
        with self._table.lock.reading():
            offsets, value_words = self._table.get(words)
        values = self._user_values(value_words)
        if scalar:
            return self._inputs().like_input(values, keys)
        return self._out(offsets, False, keys), self._out(values, False, keys)

    def count(self, keys):
        """How many values each key holds (int64; an int for a scalar key)."""
        words, scalar = self._key_words(keys)
        with self._table.lock.reading():
            counts = self._table.count(words)
        return self._out(counts, scalar, keys)

    def contains(self, keys):
        """Whether each key holds at least one value (bool; a bool for a scalar key)."""
        words, scalar = self._key_words(keys)
        with self._table.lock.reading():
            counts = self._table.count(words)
        return self._out(self._table.positive(counts), scalar, keys)

    def items(self):
        """``(keys, values)``, one entry per pair: grouped by key (keys in table order), each
        key's values in insertion order."""
        with self._table.lock.reading():
            key_words, value_words = self._table.dump()
        return (self._table_out(_dtypes.words_to_keys(key_words, self._key_dtype)),
                self._table_out(self._user_values(value_words)))

    def keys(self):
        """Every distinct key (in table order: unsorted)."""
        with self._table.lock.reading():
            words = self._table.unique_keys()
        return self._table_out(_dtypes.words_to_keys(words, self._key_dtype))

    def for_each(self, fn, *args) -> None:
        """Call a user ``@numba.njit`` function ``fn(key, value, *args)`` on every pair (in the
        order of ``items()``; a GPU table's pairs are copied to the host for ``fn``)."""
        from ._foreach import call_each

        keys, values = self.items()
        call_each(fn, self._host(keys), self._host(values), *args)

    # ------------------------------------------------------------------ size
    @property
    def num_keys(self) -> int:
        """Distinct keys stored."""
        return self._table.num_keys

    @property
    def capacity(self) -> int:
        """Pairs the table holds before it must grow (a fixed table: before it refuses pairs)."""
        return self._table.capacity

    @property
    def value_dtype(self) -> np.dtype:
        return self._codec.dtype

    @property
    def max_values_per_key(self) -> int | None:
        return self._max_values

    # ------------------------------------------------------------------ persistence
    def _save_state(self):
        """(params, meta, data): ``data`` holds the distinct keys, their value counts (int64)
        and every value grouped by key in insertion order, back to back (``save`` writes the
        three parts without joining them first); loading inserts them again, so a table saved
        on one device loads on the other."""
        t = self._table
        with t.lock.reading():
            key_words = t.unique_keys()
            offsets, value_words = t.get(key_words)
        keys = np.ascontiguousarray(self._host(_dtypes.words_to_keys(key_words, self._key_dtype)))
        counts = np.diff(self._host(offsets)).astype(np.int64)
        values = np.ascontiguousarray(self._host(self._user_values(value_words)))
        meta = dict(num_keys=int(keys.size), pairs=int(values.size))
        return self._params(), meta, (keys, counts, values)

    @classmethod
    def _load_state(cls, params: dict, meta: dict, data: np.ndarray, *, device=None):
        table = cls(**dict(params, capacity=max(params["capacity"], meta["pairs"])),
                    device=device)
        n_keys, n_pairs = meta["num_keys"], meta["pairs"]
        raw = np.ascontiguousarray(data).view(np.uint8)
        key_bytes = n_keys * table.key_dtype.itemsize
        keys = raw[:key_bytes].view(table.key_dtype)
        counts = raw[key_bytes:key_bytes + 8 * n_keys].view(np.int64)
        values = raw[key_bytes + 8 * n_keys:].view(table.value_dtype)[:n_pairs]
        if values.size:
            table.insert(np.repeat(keys, counts), values)
        return table


class MultiMap(MultiValueTable):
    """A hash table from integer keys to any number of values each, on whole arrays at once.

    ``insert(keys, values)`` *appends*: every pair is kept, a key may hold the same value more
    than once (WarpCore's MultiValueHashTable). ``get(keys)`` returns each key's values in CSR
    form, ``(offsets, values)``: key ``i``'s values are ``values[offsets[i]:offsets[i + 1]]``, in
    the order they were inserted (on every backend: inserting a batch means inserting its pairs
    one at a time in array order). ``pyarrow.ListArray.from_arrays(offsets, values)`` takes the
    pair as it is.

    ``erase(keys)`` removes every value of each key and says how many (a key repeated in the call
    removes them at its first occurrence); ``count``, ``contains``; ``items()`` (one entry per
    pair, grouped by key, each key's values in order) and ``keys()`` (distinct keys); ``len()``
    counts pairs, ``num_keys`` distinct keys, ``capacity`` pairs. A growable table (the default)
    grows as pairs come; a fixed one (``growable=False``) raises ``TableFullError`` naming every
    pair that did not fit, after storing all the others (each key keeps the first of its pairs).
    ``save``/``bulkhash.load`` work across devices; ``ref()`` works inside ``@njit`` and
    ``@cuda.jit`` code. The layout (a slot per pair, or per ``values_per_slot`` pairs) is
    explained in ``bulkhash._cpu.multi``.

    Parameters
    ----------
    key_dtype : {"uint64", "uint32", "int64", "int32"}
        Every value of the dtype is a legal key, 0 and -1 included.
    value_dtype : numpy dtype
        Any 1-8 byte integer, unsigned, float or bool dtype.
    capacity : int, optional
        *Pairs* the table holds before it must grow (default 1024 for a growable table).
    values_per_slot : int
        Values one slot holds (1-32). 1 (default): a slot per pair, 2 words. B > 1: a key's
        values share slots of B values (B + 2 words each: key, fill count, values), so a key
        with many values stores its key once per B values (WarpCore's MultiBucketHashTable;
        B = 6 makes a slot one 64-byte line for 8-byte words, B = 2 half of one). A key with
        fewer than B values leaves the rest of its slot unused; a fixed table reserves
        ``capacity / B`` slots, so it may refuse pairs before ``capacity`` when its keys hold
        fewer than B values each.
    max_values_per_key : int, optional
        At most this many values per key (None: no limit). A pair that would pass it is not
        stored, and the call says so: ``MultiInsertResult.max_values_reached``, and per pair
        ``Status.MAX_VALUES_REACHED`` with ``status=True``. Within a batch the first pairs of a
        key in array order are the ones stored.
    growable : bool
        If False, inserting past ``capacity`` raises ``TableFullError`` naming the pairs that did
        not go in (all others did).
    max_load_factor : float
        Highest fraction of slots in use before the table grows (0.05-0.99; default 0.5, where
        the other tables use 0.8: a lookup here walks to the end of the key's probe, as a miss
        does in a single-value table, and on this project's 2-core machine ``get`` of 10M pairs
        ran 3.4x faster at 0.5 than at 0.8, for 32 instead of 20 bytes per uint64 pair:
        ``benchmarks/multimap.py``).
    seed : int
        Hash seed.
    device : {"cpu", "cuda"}, optional
        Where the table lives (default: ``bulkhash.get_default_device()``).
    group_size : int, optional
        GPU tables only: lanes of a warp that probe one key together (1, 2, 4, 8, 16 or 32).

    Examples
    --------
    >>> from bulkhash.multimap import MultiMap
    >>> m = MultiMap("int64", "float32")
    >>> m.insert([7, 3, 7, 7, -1], [1.0, 2.0, 3.0, 1.0, 5.0])
    MultiInsertResult(stored=5, new_keys=3, max_values_reached=0, failed=0)
    >>> offsets, values = m.get([7, 4, -1])
    >>> offsets
    array([0, 3, 3, 4])
    >>> values
    array([1., 3., 1., 5.], dtype=float32)
    >>> m.count([7, 3, 4]), len(m), m.num_keys
    (array([3, 1, 0]), 5, 3)
    >>> m.erase([7, 7])                     # every value of a key; a repeat finds none
    array([3, 0])
    >>> capped = MultiMap("uint64", "uint8", max_values_per_key=2)
    >>> r = capped.insert([1, 1, 1, 2], [10, 11, 12, 20], status=True)
    >>> r.max_values_reached, r.status.tolist()
    (1, [0, 1, 32, 0])
    """

    def __init__(self, key_dtype="uint64", value_dtype="uint64", capacity: int | None = None, *,
                 values_per_slot: int = 1, max_values_per_key: int | None = None,
                 growable: bool = True, max_load_factor: float = MAX_LOAD_FACTOR,
                 seed: int = DEFAULT_SEED, device: str | None = None,
                 group_size: int | None = None):
        word = self._setup_values(key_dtype, value_dtype, max_values_per_key, seed, device)
        B = _check_values_per_slot(values_per_slot)
        backend = make_backend(self._device, group_size)  # (validates group_size)
        if backend is not None:
            from ._cuda.multi import CudaMultiBackend

            backend = CudaMultiBackend(backend.group_size)
        self._table = MultiTable(word, B, check_capacity(capacity, bool(growable)),
                                 growable=bool(growable),
                                 max_load_factor=check_max_load_factor(max_load_factor),
                                 seed=int(seed), backend=backend)

    @property
    def load_factor(self) -> float:
        """Pairs stored in slots / the values the slots can hold."""
        return self._table.load_factor

    @property
    def values_per_slot(self) -> int:
        return self._table.values_per_slot

    def ref(self, reserve: int = 0):
        """A view for per-element use inside your own ``@numba.njit`` code, or for a
        ``device="cuda"`` table inside ``@cuda.jit`` kernels: ``insert(key, value)``,
        ``count(key)``, ``contains(key)``, ``retrieve(key, out)`` (see
        ``bulkhash.multimap_refs``). ``reserve=n`` first grows the table so that ``n`` more pairs
        fit: a ref never grows its table. The two keys whose bits are 0 and all-ones keep their
        values in a side pool, which gets room for ``max(n, 1024)`` more values of each."""
        if reserve:
            self.reserve(reserve)
        t = self._table
        with t.lock.writing():
            t.make_side_room(max(t._read(M.SIDE), t._read(M.SIDE + 1)) + max(reserve, 1024))
        if self._device == "cuda":
            from ._cuda.multi_refs import make_ref
        else:
            from .multimap_refs import make_ref
        return make_ref(self)

    def _params(self) -> dict:
        return dict(key_dtype=str(self._key_dtype), value_dtype=str(self.value_dtype),
                    capacity=self.capacity, values_per_slot=self.values_per_slot,
                    max_values_per_key=self._max_values, growable=self.growable,
                    max_load_factor=self.max_load_factor, seed=self.seed)

    def __repr__(self) -> str:
        return (f"MultiMap(key_dtype={self._key_dtype}, value_dtype={self.value_dtype}, "
                f"len={len(self)}, num_keys={self.num_keys}, capacity={self.capacity}, "
                f"values_per_slot={self.values_per_slot}, load_factor={self.load_factor:.3f}, "
                f"device={self._device!r})")
