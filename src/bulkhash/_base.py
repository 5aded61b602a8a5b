"""What every key-indexed table shares: construction, membership, erase, size, copy, save.

HashMap, HashSet and Counter subclass ``KeyedTable`` and add their own mutators; the engine
underneath is one ``OpenTable`` each.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _arrays, _dtypes
from ._cpu import kernels as K
from ._table import (DEFAULT_MAX_LOAD_FACTOR, OpenTable, check_capacity, check_max_load_factor)
from .hashing import DEFAULT_SEED
from .status import InsertResult, Status, TableFullError

_DEVICES = ("cpu", "cuda")
_default_device = "cpu"


def set_default_device(device: str) -> str:
    """Make ``device`` ("cpu" or "cuda") where new tables live when their constructor is not
    told; returns the previous default. Like ``torch.set_default_device``: it lets code, and
    bulkhash's own test suite, run unchanged on either backend.

    >>> import bulkhash
    >>> previous = bulkhash.set_default_device("cpu")
    >>> bulkhash.HashSet().device
    'cpu'
    """
    global _default_device
    previous = _default_device
    _default_device = check_device(device)
    return previous


def get_default_device() -> str:
    """Where new tables live when their constructor is not told (see ``set_default_device``)."""
    return _default_device


def check_device(device: str | None) -> str:
    if device is None:
        return _default_device
    if device not in _DEVICES:
        raise ValueError(f"device={device!r} is not known; use device='cpu' or device='cuda'")
    return device


def make_backend(device: str, group_size):
    """The backend for ``device`` (the CUDA one is imported only when asked for)."""
    if device == "cpu":
        if group_size is not None:
            raise ValueError(f"group_size={group_size!r} applies to device='cuda' tables only "
                             "(lanes of a warp that probe one key together); leave it out")
        return None
    from ._cuda import cuda_backend

    return cuda_backend(group_size)


def _flag_table() -> np.ndarray:
    table = np.zeros(256, np.uint16)
    for code, flag in ((K.UPDATED, Status.DUPLICATE_KEY), (K.FULL, Status.OUT_OF_CAPACITY),
                       (K.NOT_FOUND, Status.KEY_NOT_FOUND)):
        table[code] = flag
        table[code | K.SATURATED] = flag | Status.COUNT_SATURATED
    table[K.FULL | K.PROBE_LIMIT] = Status.OUT_OF_CAPACITY | Status.PROBING_LENGTH_EXCEEDED
    return table


_FLAGS = _flag_table()


def status_flags(outcome: np.ndarray) -> np.ndarray:
    """Per-key ``Status`` flags (uint16) from kernel outcome bytes (host memory)."""
    return _FLAGS[outcome]


def insert_result(table: OpenTable, outcome, tally: np.ndarray, want_status: bool,
                  capacity: int) -> InsertResult:
    """Summarise an upsert (outcome bytes and their tally); raise TableFullError if any key did
    not go in."""
    status = status_flags(table.backend.to_host(outcome)) if want_status else None
    result = InsertResult(inserted=int(tally[K.NEW]), updated=int(tally[K.UPDATED]),
                          failed=int(tally[K.FULL]), saturated=int(tally[0]), status=status)
    if result.failed:
        failed = table.backend.indices_of(outcome, K.FULL).astype(np.int64)
        raise TableFullError(failed, result, capacity)
    return result


class Placed:
    """Where a structure lives, and how its inputs come in and its results go out (the base of
    every public structure; not public). Subclasses set ``self._device`` ("cpu" or "cuda")."""

    _device: str

    # A CUDA structure takes and gives device arrays: ``_cuda.convert`` is its ``_arrays``.
    def _inputs(self):
        if self._device == "cuda":
            from ._cuda import convert

            return convert
        return _arrays

    def _out(self, result, scalar: bool, original: Any):
        """A per-key result in the caller's array library (a Python scalar for a scalar key)."""
        if scalar:
            first = self._host(result[:1])[0]
            return first.item() if result.dtype != np.bool_ else bool(first)
        return self._inputs().like_input(result, original)

    def _table_out(self, result):
        """A whole-structure result (``keys()``, ``items()``): NumPy, or on a GPU see
        ``_cuda.convert.table_result``."""
        return result if self._device == "cpu" else self._inputs().table_result(result)

    def _host(self, result) -> np.ndarray:
        """A result as a NumPy array (for the few whole-structure summaries computed on the
        host)."""
        return result if self._device == "cpu" else self._inputs().to_host(result)

    @property
    def device(self) -> str:
        """Where the structure's arrays live: "cpu" or "cuda"."""
        return self._device


class TableBase(Placed):
    """What every table keyed by integers shares, whatever it keeps per key (not public):
    ``self._table`` is its engine (``_table.OpenTable``, ``_multitable.MultiTable`` or
    ``bucketlist.BucketStore``), which works on table words and brings its own lock."""

    _key_dtype: np.dtype
    _UNIT = "keys"  # what ``len()`` and ``capacity`` count

    def _check_common(self, key_dtype, value_dtype, seed, device: str | None):
        """Check and set the key dtype and the device; check the seed. Returns the value dtype
        (None for a set) and the table's word dtype (wide enough for a key and a value)."""
        self._key_dtype = _dtypes.key_dtype(key_dtype)
        vdt = None if value_dtype is None else _dtypes.value_dtype(value_dtype)
        word = _dtypes.word_dtype(self._key_dtype, vdt)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise TypeError(f"seed={seed!r} must be an integer")
        self._device = check_device(device)
        return vdt, word

    def _key_words(self, keys: Any, argname: str = "keys"):
        arr, scalar = self._inputs().as_keys(keys, self._key_dtype, argname)
        return _dtypes.keys_to_words(arr, self._key_dtype, self._table.word), scalar

    def __contains__(self, key) -> bool:
        return bool(self.contains(np.asarray(key).reshape(1))[0])

    def __len__(self) -> int:
        return len(self._table)

    @property
    def max_load_factor(self) -> float:
        return self._table.max_load_factor

    @property
    def growable(self) -> bool:
        return self._table.growable

    @property
    def seed(self) -> int:
        return self._table.seed

    @property
    def key_dtype(self) -> np.dtype:
        return self._key_dtype

    @property
    def nbytes(self) -> int:
        """Bytes of memory the table's arrays take."""
        return self._table.nbytes

    def reserve(self, n: int) -> None:
        """Grow now so that ``n`` more entries (keys; pairs in a multi-value table) fit without
        growing (growable tables only)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n={n!r} must be a non-negative integer")
        if not self.growable and len(self) + n > self.capacity:
            raise ValueError(f"a fixed table (growable=False) cannot make room for {n} more "
                             f"{self._UNIT} beyond capacity={self.capacity}")
        with self._table.lock.writing():
            self._table.reserve(int(n))

    def clear(self) -> None:
        """Remove everything, keeping the capacity."""
        with self._table.lock.writing():
            self._table.clear()

    def copy(self):
        """An independent copy of the table."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        with self._table.lock.reading():
            new._table = self._table.copy()
        return new

    def save(self, path: str | os.PathLike) -> None:
        """Write the table to ``path`` atomically (``bulkhash.load`` reads it on either device)."""
        from .io import save

        save(self, path)

    @property
    def group_size(self) -> int | None:
        """Lanes that probe one key together on a GPU (None on the CPU)."""
        return self._table.backend.group_size


class KeyedTable(TableBase):
    """Base of the tables with at most one entry per key, on ``_table.OpenTable`` (not public)."""

    _value_codec: _dtypes.ValueCodec | None

    def _setup(self, key_dtype, value_dtype, capacity, growable: bool, max_load_factor: float,
               seed: int, device: str, group_size: int | None = None) -> None:
        vdt, word = self._check_common(key_dtype, value_dtype, seed, device)
        backend = make_backend(self._device, group_size)
        self._value_codec = None if vdt is None else _dtypes.ValueCodec(vdt, word)
        self._table = OpenTable(word, 1 if vdt is None else 2,
                                check_capacity(capacity, bool(growable)),
                                growable=bool(growable),
                                max_load_factor=check_max_load_factor(max_load_factor),
                                seed=int(seed), backend=backend)

    def _value_words(self, values: Any, n: int, argname: str = "values"):
        arr = self._inputs().as_values(values, self._value_codec.dtype, n, argname)
        return self._value_codec.to_words(arr)

    def _placement(self) -> dict:
        """The constructor arguments that put a new table where this one is."""
        if self._device == "cpu":
            return {}
        return dict(device=self._device, group_size=self._table.backend.group_size)

    # ------------------------------------------------------------------ queries
    def contains(self, keys) -> np.ndarray:
        """Whether each key is present (a bool array; a bool for a scalar key)."""
        words, scalar = self._key_words(keys)
        with self._table.lock.reading():
            _, found = self._table.lookup(words, want_values=False)
        return self._out(found, scalar, keys)

    def erase(self, keys, *, status: bool = False):
        """Remove keys; returns a bool array, True where a key was removed.

        Within one call only a key's first occurrence removes it. With ``status=True`` also
        returns per-key ``Status`` flags (``KEY_NOT_FOUND`` where absent).
        """
        words, scalar = self._key_words(keys)
        with self._table.lock.writing():
            outcome = self._table.erase(words)
        removed = self._table.backend.equal_to(outcome, K.REMOVED)
        out = self._out(removed, scalar, keys)
        if not status:
            return out
        return out, status_flags(self._table.backend.to_host(outcome))

    def keys(self) -> np.ndarray:
        """Every stored key, as an array of ``key_dtype`` (in table order: unsorted)."""
        with self._table.lock.reading():
            words, _ = self._table.items(want_values=False)
        return self._table_out(_dtypes.words_to_keys(words, self._key_dtype))

    # ------------------------------------------------------------------ size
    @property
    def capacity(self) -> int:
        """Keys the table holds before it must grow (a fixed table: before it refuses keys)."""
        return self._table.capacity

    @property
    def load_factor(self) -> float:
        """``len(self) / slots``: how full the slot array is."""
        return self._table.load_factor

    def ref(self, reserve: int = 0):
        """A view for per-element use inside your own ``@numba.njit`` code (see ``bulkhash.refs``),
        or, for a ``device="cuda"`` table, inside your own ``@cuda.jit`` kernels (see
        ``bulkhash._cuda.refs``; a table used through refs from single threads wants
        ``group_size=1``, since a probe is a group of ``group_size`` lanes).

        ``reserve=n`` first grows the table so that ``n`` more keys fit: a ref itself never grows
        its table.
        """
        if self._device == "cuda":
            from ._cuda.refs import make_ref
        else:
            from .refs import make_ref
        if reserve:
            self.reserve(reserve)
        return make_ref(self)

    def _params(self) -> dict:
        """The constructor arguments that describe this table (saved with it; where it lives is
        the loader's choice)."""
        return dict(key_dtype=str(self._key_dtype), growable=self.growable,
                    max_load_factor=self.max_load_factor, seed=self.seed)

    def __repr__(self) -> str:
        vals = "" if self._value_codec is None else f", value_dtype={self._value_codec.dtype}"
        return (f"{type(self).__name__}(key_dtype={self._key_dtype}{vals}, len={len(self)}, "
                f"capacity={self.capacity}, load_factor={self.load_factor:.3f}, "
                f"growable={self.growable}, device={self._device!r})")


class ValuedTable(KeyedTable):
    """Base of the tables that keep a value per key (HashMap, Counter)."""

    def _lookup_values(self, keys, default_word: int = 0, want_found: bool = True):
        """(values in the value dtype, found flags [empty unless wanted], scalar?) for user keys."""
        words, scalar = self._key_words(keys)
        with self._table.lock.reading():
            value_words, found = self._table.lookup(words, default_word, want_found=want_found)
        return self._value_codec.from_words(value_words), found, scalar

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, values)`` of every entry, in table order."""
        with self._table.lock.reading():
            key_words, value_words = self._table.items(value_bytes=self._value_codec.nbytes)
        return (self._table_out(_dtypes.words_to_keys(key_words, self._key_dtype)),
                self._table_out(self._value_codec.from_words(value_words)))

    def values(self) -> np.ndarray:
        """Every stored value, in the same order as ``keys()`` and ``items()``."""
        return self.items()[1]


DEFAULTS = dict(max_load_factor=DEFAULT_MAX_LOAD_FACTOR, seed=DEFAULT_SEED)
