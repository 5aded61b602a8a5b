"""``HashMap``: unique integer keys, one value each (WarpCore's SingleValueHashTable)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ._base import DEFAULTS, ValuedTable, insert_result
from ._cpu import kernels as K
from .status import InsertResult

ON_DUPLICATE = {"overwrite": K.OP_OVERWRITE, "keep": K.OP_KEEP, "add": K.OP_ADD,
                "min": K.OP_MIN, "max": K.OP_MAX}


def duplicate_op(on_duplicate: str, value_dtype: np.dtype) -> int:
    """The kernel op for ``on_duplicate`` on values of ``value_dtype`` (validated)."""
    if on_duplicate not in ON_DUPLICATE:
        raise ValueError(f"on_duplicate={on_duplicate!r} is not one of "
                         f"{', '.join(map(repr, ON_DUPLICATE))}")
    op = ON_DUPLICATE[on_duplicate]
    if value_dtype.kind == "b" and op == K.OP_ADD:
        return K.OP_MAX  # NumPy's True + True is True: adding booleans is a logical or
    if value_dtype == np.float16 and op not in (K.OP_OVERWRITE, K.OP_KEEP):
        raise TypeError(f"on_duplicate={on_duplicate!r} needs arithmetic that float16 values do "
                        "not have here; use value_dtype='float32'")
    return op


class HashMap(ValuedTable):
    """A hash table from integer keys to one value each, operated on whole arrays at once.

    Parameters
    ----------
    key_dtype : {"uint64", "uint32", "int64", "int32"}
        Every value of the dtype is a legal key, 0 and -1 included.
    value_dtype : numpy dtype
        Any 1-8 byte integer, unsigned, float or bool dtype.
    capacity : int, optional
        Keys the table holds before it must grow (default 1024 for a growable table). Slots are
        about ``capacity / max_load_factor``.
    growable : bool
        If False, inserting past ``capacity`` raises ``TableFullError`` naming the keys that did
        not go in (all others did).
    max_load_factor : float
        Highest ``len / slots`` before the table grows (0.05-0.99).
    seed : int
        Hash seed.
    device : {"cpu", "cuda"}, optional
        Where the table lives (default: ``bulkhash.get_default_device()``, "cpu" unless set).
        A "cuda" table takes CuPy arrays, torch CUDA tensors, Numba device arrays or host
        arrays, and answers in the same library (needs ``pip install "bulkhash[cuda]"``).
    group_size : int, optional
        GPU tables only: lanes of a warp that probe one key together (1, 2, 4, 8, 16 or 32).

    Examples
    --------
    >>> import numpy as np, bulkhash
    >>> m = bulkhash.HashMap("uint64", "float32")
    >>> m.insert(np.array([3, 1, 2**64 - 1], dtype=np.uint64), [0.5, 1.5, 2.5])
    InsertResult(inserted=3, updated=0, failed=0, saturated=0)
    >>> m.get([1, 7, 2**64 - 1], default=-1)
    array([ 1.5, -1. ,  2.5], dtype=float32)
    >>> m.insert([1, 1], [10, 20], on_duplicate="add").updated
    2
    >>> float(m.get(1))
    31.5
    """

    def __init__(self, key_dtype="uint64", value_dtype="uint64", capacity: int | None = None, *,
                 growable: bool = True, max_load_factor: float = DEFAULTS["max_load_factor"],
                 seed: int = DEFAULTS["seed"], device: str | None = None,
                 group_size: int | None = None):
        self._setup(key_dtype, value_dtype, capacity, growable, max_load_factor, seed, device,
                    group_size)

    @property
    def value_dtype(self) -> np.dtype:
        return self._value_codec.dtype

    def insert(self, keys, values, on_duplicate: str = "overwrite", *,
               status: bool = False) -> InsertResult:
        """Insert key/value pairs.

        A key already present, or repeated within ``keys``, is combined as if the pairs were
        inserted one at a time in array order: ``"overwrite"`` (last wins), ``"keep"`` (first
        wins), ``"add"``, ``"min"``, ``"max"``. ``"add"`` follows NumPy arithmetic on the value
        dtype (integers wrap; use ``Counter`` for saturating counts).

        ``values`` may be a scalar, used for every key. Returns an ``InsertResult``; with
        ``status=True`` it carries per-key ``Status`` flags. A fixed table that runs out of room
        raises ``TableFullError`` after inserting every key that fitted.
        """
        op = duplicate_op(on_duplicate, self.value_dtype)
        words, _ = self._key_words(keys)
        value_words = self._value_words(values, words.size)
        codec = self._value_codec
        with self._table.lock.writing():
            outcome, tally = self._table.upsert(words, value_words, op, codec.kind, codec.nbytes)
        return insert_result(self._table, outcome, tally, status, self.capacity)

    def __setitem__(self, key, value) -> None:
        self.insert(np.asarray(key).reshape(1), np.asarray(value).reshape(1))

    def __getitem__(self, key):
        values, found = self.find(np.asarray(key).reshape(1))
        if not found[0]:
            raise KeyError(key)
        return values[0].item()

    def find(self, keys) -> tuple[np.ndarray, np.ndarray]:
        """``(values, found)``: each key's value (0 where absent) and whether it is present."""
        values, found, scalar = self._lookup_values(keys)
        return self._out(values, scalar, keys), self._out(found, scalar, keys)

    def get(self, keys, default=0):
        """Each key's value, ``default`` where the key is absent."""
        default_word = int(self._value_words(default, 1, "default")[0])
        values, _, scalar = self._lookup_values(keys, default_word, want_found=False)
        return self._out(values, scalar, keys)

    def for_each(self, fn: Callable[..., None], *args) -> None:
        """Call a user ``@numba.njit`` function ``fn(key, value, *args)`` on every entry.

        Keys and values arrive in the table's dtypes; ``args`` (arrays, scalars) are passed
        through, so ``fn`` can accumulate into an output array.

        >>> import numba, numpy as np, bulkhash
        >>> m = bulkhash.HashMap("int64", "int64")
        >>> _ = m.insert([1, 2, 3], [10, 20, 30])
        >>> @numba.njit
        ... def weighted_sum(key, value, total):
        ...     total[0] += key * value
        >>> total = np.zeros(1, np.int64)
        >>> m.for_each(weighted_sum, total)
        >>> int(total[0])
        140
        """
        from ._foreach import call_each

        keys, values = self.items()  # (a GPU table's entries are copied to the host for fn)
        call_each(fn, self._host(keys), self._host(values), *args)

    def _params(self) -> dict:
        return dict(super()._params(), value_dtype=str(self.value_dtype))
