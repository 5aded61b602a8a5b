"""``HashSet``: a set of integer keys (WarpCore's HashSet), with set algebra on whole arrays."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ._base import DEFAULTS, KeyedTable, insert_result, status_flags
from ._cpu import kernels as K


class HashSet(KeyedTable):
    """A set of integer keys, operated on whole arrays at once.

    Parameters are those of ``HashMap`` without ``value_dtype``. A set stores keys only, so a
    64-byte bucket holds 8 ``uint64`` (or 16 ``uint32``) keys.

    Examples
    --------
    >>> import bulkhash
    >>> s = bulkhash.HashSet("int64")
    >>> s.add([5, -1, 5, 0])
    array([ True,  True, False,  True])
    >>> s.contains([0, 1, -1])
    array([ True, False,  True])
    >>> sorted((s | [7]).to_array().tolist())
    [-1, 0, 5, 7]
    """

    def __init__(self, key_dtype="uint64", capacity: int | None = None, *, growable: bool = True,
                 max_load_factor: float = DEFAULTS["max_load_factor"],
                 seed: int = DEFAULTS["seed"], device: str | None = None,
                 group_size: int | None = None):
        self._setup(key_dtype, None, capacity, growable, max_load_factor, seed, device,
                    group_size)

    def add(self, keys, *, status: bool = False):
        """Add keys; returns a bool array, True where the key was new.

        Within one call only a key's first occurrence is new. A fixed table that runs out of
        room raises ``TableFullError`` after adding every key that fitted. With ``status=True``
        returns ``(new, status_flags)``.
        """
        words, scalar = self._key_words(keys)
        with self._table.lock.writing():
            no_values = self._table.backend.empty(0, self._table.word)
            outcome, tally = self._table.upsert(words, no_values, K.OP_KEEP, K.KIND_UINT, 8)
        # (raises TableFullError if any key failed)
        insert_result(self._table, outcome, tally, False, self.capacity)
        new = self._out(self._table.backend.equal_to(outcome, K.NEW), scalar, keys)
        return (new, status_flags(self._table.backend.to_host(outcome))) if status else new

    def to_array(self) -> np.ndarray:
        """The keys, as an array of ``key_dtype`` (unsorted)."""
        return self.keys()

    def for_each(self, fn: Callable[..., None], *args) -> None:
        """Call a user ``@numba.njit`` function ``fn(key, *args)`` on every key."""
        from ._foreach import call_each

        call_each(fn, self._host(self.keys()), None, *args)  # (a GPU table's: copied to the host)

    # ------------------------------------------------------------------ set algebra
    def _other_keys(self, other):
        if isinstance(other, HashSet):
            return other.keys()
        return self._inputs().as_keys(other, self._key_dtype, "other")[0]

    def _other_set(self, other) -> "HashSet":
        if isinstance(other, HashSet):
            return other
        keys = self._other_keys(other)
        result = HashSet(self._key_dtype, max(1, keys.size), seed=self.seed, **self._placement())
        result.add(keys)
        return result

    def _from_keys(self, keys: np.ndarray) -> "HashSet":
        result = HashSet(self._key_dtype, max(1, keys.size), max_load_factor=self.max_load_factor,
                         seed=self.seed, **self._placement())
        result.add(keys)
        return result

    def union(self, other) -> "HashSet":
        """Keys in either set (``other``: a HashSet or an array of keys)."""
        result = self.copy()
        result._table.growable = True
        result.add(self._other_keys(other))
        result._table.growable = self.growable
        return result

    def intersection(self, other) -> "HashSet":
        """Keys in both."""
        mine = self._host(self.keys())
        return self._from_keys(mine[self._host(self._other_set(other).contains(mine))])

    def difference(self, other) -> "HashSet":
        """Keys in this set and not in ``other``."""
        mine = self._host(self.keys())
        return self._from_keys(mine[~self._host(self._other_set(other).contains(mine))])

    __or__ = union
    __and__ = intersection
    __sub__ = difference

    def __eq__(self, other) -> bool:
        if not isinstance(other, HashSet):
            return NotImplemented
        return len(self) == len(other) and bool(np.all(self._host(other.contains(self.keys()))))

    __hash__ = None  # mutable
