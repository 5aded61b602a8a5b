"""``Counter``: integer keys -> counts, with saturating atomic-style adds (CountingHashTable)."""

from __future__ import annotations

import numpy as np

from . import _dtypes
from ._base import DEFAULTS, ValuedTable, insert_result
from ._cpu import kernels as K
from .status import InsertResult


def count_dtype(spec) -> np.dtype:
    dt = _dtypes.value_dtype(spec, "count_dtype")
    if dt.kind != "u":
        raise TypeError(f"count_dtype={dt} must be an unsigned integer dtype "
                        "('uint8', 'uint16', 'uint32' or 'uint64')")
    return dt


class Counter(ValuedTable):
    """Counts of integer keys, like ``collections.Counter`` for whole arrays.

    A count that would pass its dtype's maximum stays at the maximum, and the call reports it
    (``InsertResult.saturated``, ``Status.COUNT_SATURATED``).

    Examples
    --------
    >>> import bulkhash
    >>> c = bulkhash.Counter("uint64", "uint8")
    >>> c.add([7, 3, 7, 7])
    InsertResult(inserted=2, updated=2, failed=0, saturated=0)
    >>> c.get([7, 3, 4])
    array([3, 1, 0], dtype=uint8)
    >>> c.add([3], counts=[255]).saturated
    1
    >>> c.most_common(1)
    (array([3], dtype=uint64), array([255], dtype=uint8))
    >>> c.histogram()
    (array([  3, 255], dtype=uint8), array([1, 1]))
    """

    def __init__(self, key_dtype="uint64", count_dtype="uint32", capacity: int | None = None, *,
                 growable: bool = True, max_load_factor: float = DEFAULTS["max_load_factor"],
                 seed: int = DEFAULTS["seed"], device: str | None = None,
                 group_size: int | None = None):
        self._setup(key_dtype, globals()["count_dtype"](count_dtype), capacity, growable,
                    max_load_factor, seed, device, group_size)

    @property
    def count_dtype(self) -> np.dtype:
        return self._value_codec.dtype

    def add(self, keys, counts=None, *, status: bool = False) -> InsertResult:
        """Add 1 (or ``counts[i]``) to each key's count."""
        words, _ = self._key_words(keys)
        if counts is None:  # one count of 1, which the kernel uses for every key
            one = self._table.backend.from_host(np.ones(1, self.count_dtype))
            value_words = self._value_codec.to_words(one)
        else:
            value_words = self._value_words(counts, words.size, "counts")
        with self._table.lock.writing():
            outcome, tally = self._table.upsert(words, value_words, K.OP_SATURATING_ADD,
                                                K.KIND_UINT, self._value_codec.nbytes)
        return insert_result(self._table, outcome, tally, status, self.capacity)

    def get(self, keys):
        """Each key's count, 0 where absent."""
        counts, _, scalar = self._lookup_values(keys, want_found=False)
        return self._out(counts, scalar, keys)

    def most_common(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` highest counts (all if None), highest first; ties by ascending key."""
        if n is not None and (not isinstance(n, (int, np.integer)) or n < 0):
            raise ValueError(f"n={n!r} must be a non-negative integer or None")
        keys, counts = (self._host(x) for x in self.items())  # (host: a sort of the counts)
        if n is not None and n < keys.size:
            if n == 0:
                return keys[:0], counts[:0]
            threshold = np.partition(counts, counts.size - n)[counts.size - n]
            above = np.flatnonzero(counts > threshold)
            tied = np.flatnonzero(counts == threshold)
            tied = tied[np.argsort(keys[tied], kind="stable")][: n - above.size]
            pick = np.concatenate([above, tied])
            keys, counts = keys[pick], counts[pick]
        order = np.lexsort((keys, np.iinfo(counts.dtype).max - counts))  # count desc, key asc
        return keys[order], counts[order]

    def take_items(self, narrow_counts: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, counts)`` of every entry, as ``items()`` gives them, leaving the counter
        empty (as ``clear()`` does, at its smallest capacity).

        For a counter whose contents are only to be written out: on the CPU the keys are moved
        within the table's own memory and returned as a view of it, and the rest of that memory
        is given back at once, so taking 21M uint64 keys costs no new 170 MB array. With
        ``narrow_counts`` the counts come in the smallest unsigned type that holds the largest
        (21 MB of uint8 instead of 85 MB of uint32 when every count is below 256).

        >>> import bulkhash
        >>> c = bulkhash.Counter("uint64")
        >>> _ = c.add([5, 7, 5, 5])
        >>> keys, counts = c.take_items(narrow_counts=True)
        >>> sorted(zip(keys.tolist(), counts.tolist())), counts.dtype, len(c)
        ([(5, 3), (7, 1)], dtype('uint8'), 0)
        """
        with self._table.lock.writing():
            key_words, count_words = self._table.take_items(narrow_values=narrow_counts)
        keys = self._table_out(_dtypes.words_to_keys(key_words, self._key_dtype))
        if narrow_counts and count_words.dtype.itemsize < self._value_codec.nbytes:
            return keys, self._table_out(count_words)
        return keys, self._table_out(self._value_codec.from_words(count_words))

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, num_keys)``: for each count that occurs, how many keys have it."""
        values, num = np.unique(self._host(self.items()[1]), return_counts=True)
        return values, num.astype(np.int64)

    def total(self) -> int:
        """The sum of all counts."""
        counts = self._host(self.items()[1]).astype(np.uint64)
        # two 32-bit halves: each half's sum fits in uint64 for up to 2**32 keys
        high = int((counts >> np.uint64(32)).sum(dtype=np.uint64))
        low = int((counts & np.uint64(0xFFFFFFFF)).sum(dtype=np.uint64))
        return (high << 32) + low

    def _params(self) -> dict:
        return dict(super()._params(), count_dtype=str(self.count_dtype))
