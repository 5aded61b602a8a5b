"""The open-addressing table that HashMap, HashSet and Counter share.

``OpenTable`` owns the slot array and the state vector (layout: ``bulkhash._cpu.kernels``), and
holds the policy the kernels leave to their caller: how big to make the table, when to grow it,
when to sweep out tombstones, and what a full fixed table reports. It works on table *words*
only; the public classes above it check user input and convert dtypes.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager, nullcontext
from typing import Iterator

import numba
import numpy as np

from . import probing
from ._cpu import kernels as K
from ._locks import ReadWriteLock
from .hashing import DEFAULT_SEED

DEFAULT_CAPACITY = 1024
DEFAULT_MAX_LOAD_FACTOR = 0.8
_ALIGN = probing.BUCKET_BYTES

_workqueue_gate = threading.Lock()


@contextmanager
def _kernel_gate() -> Iterator[None]:
    """Serialise parallel kernels only under Numba's workqueue layer, which cannot run two at once
    (the omp and tbb layers can, and then tables on different threads really run together)."""
    try:
        safe = numba.threading_layer() != "workqueue"
    except ValueError:  # no parallel kernel has run yet: the layer is not chosen
        safe = False
    with nullcontext() if safe else _workqueue_gate:
        yield


def aligned_zeros(shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """``np.zeros`` whose data starts on a cache-line boundary (buckets must not straddle lines)."""
    count = shape[0] * shape[1]
    itemsize = np.dtype(dtype).itemsize
    raw = np.zeros(count + _ALIGN // itemsize, dtype)
    skip = (-raw.ctypes.data % _ALIGN) // itemsize
    return raw[skip:skip + count].reshape(shape)


def check_max_load_factor(max_load_factor: float) -> float:
    if not isinstance(max_load_factor, (int, float)) or not 0.05 <= max_load_factor <= 0.99:
        raise ValueError(f"max_load_factor={max_load_factor!r} must be a number between 0.05 and "
                         "0.99 (0.8 is a good default; higher saves memory, costs probe length)")
    return float(max_load_factor)


def check_capacity(capacity, growable: bool) -> int:
    if capacity is None:
        if not growable:
            raise ValueError("a fixed table (growable=False) needs capacity=<number of keys>")
        return DEFAULT_CAPACITY
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 0:
        raise ValueError(f"capacity={capacity!r} must be a non-negative integer number of keys")
    return int(capacity)


class OpenTable:
    """Slots + state + policy. Not public: see HashMap, HashSet, Counter."""

    def __init__(self, word: np.dtype, words_per_slot: int, capacity: int, *, growable: bool,
                 max_load_factor: float, seed: int):
        self.word = np.dtype(word)
        self.words_per_slot = words_per_slot
        self.growable = growable
        self.max_load_factor = max_load_factor
        self.seed = int(seed) & 0xFFFF_FFFF_FFFF_FFFF
        self.bucket_size = probing.slots_per_bucket(self.word.itemsize, words_per_slot)
        self.tomb = np.uint64(np.iinfo(self.word).max)
        self.lock = ReadWriteLock()
        self.state = np.zeros(K.STATE_LEN, np.int64)
        self._allocate(capacity)

    # ---------------------------------------------------------------- storage
    def _buckets_for(self, capacity: int) -> int:
        slots = math.ceil(max(capacity, 1) / self.max_load_factor)
        n_buckets = max(1, math.ceil(slots / self.bucket_size))
        if n_buckets >= 1 << 32:
            raise ValueError(f"capacity={capacity} is beyond what one table addresses (2**32 buckets)")
        return n_buckets

    def _allocate(self, capacity: int) -> None:
        self.n_buckets = self._buckets_for(capacity)
        self.capacity = capacity
        self.slots = aligned_zeros((self.n_slots + 2, self.words_per_slot), self.word)
        self._reset_state()

    def _reset_state(self) -> None:
        """An empty table's state (its generation too: callers that keep refs bump it)."""
        self.state[:] = 0
        self.state[K.CAPACITY] = self.capacity

    def adopt(self, slots: np.ndarray, state: np.ndarray, n_buckets: int, capacity: int) -> None:
        """Take over arrays restored by ``load`` (possibly memory-mapped)."""
        self.slots, self.n_buckets, self.capacity = slots, n_buckets, capacity
        self.state[:] = state
        self.state[K.CAPACITY] = capacity

    @property
    def n_slots(self) -> int:
        return self.n_buckets * self.bucket_size

    def __len__(self) -> int:
        return int(self.state[K.SIZE])

    @property
    def nbytes(self) -> int:
        return int(self.slots.nbytes + self.state.nbytes)

    @property
    def load_factor(self) -> float:
        return len(self) / self.n_slots

    # ---------------------------------------------------------------- kernels
    def _args(self):
        return (self.slots, self.n_buckets, self.bucket_size, np.uint64(self.seed), self.tomb,
                self.state)

    def _mutate(self, keys: np.ndarray, values: np.ndarray, action: int, op: int, kind: int,
                nbytes: int, budget: int, tally: np.ndarray | None = None) -> np.ndarray:
        """Run the mutation kernel; outcome bytes per key, counts added into ``tally``."""
        outcome = np.empty(keys.size, np.uint8)
        counts = np.zeros(8, np.int64)
        with _kernel_gate():
            K.mutate(*self._args(), keys, values, action, op, kind, nbytes, budget, outcome,
                     counts, numba.get_num_threads())
        if tally is not None:
            tally += counts
        return outcome

    def upsert(self, keys: np.ndarray, values: np.ndarray, op: int, kind: int,
               nbytes: int) -> tuple[np.ndarray, np.ndarray]:
        """Insert/combine a batch of key words (and value words; empty for a set).

        Returns one outcome byte per key (``K.NEW``, ``K.UPDATED`` [| ``K.SATURATED``], or
        ``K.FULL`` -- only for a fixed table; a growable table never reports FULL) and the tally
        of outcomes (index = code, index 0 = saturated).
        """
        if self.growable and len(self) + keys.size > self.capacity:
            distinct = self._estimate_distinct(keys)
            if distinct > self.capacity - len(self):
                self.resize(self._grown_capacity(len(self) + distinct + distinct // 32))
        self._sweep_tombstones_if_crowded(keys.size)
        tally = np.zeros(8, np.int64)
        outcome = self._mutate(keys, values, K.ACTION_UPSERT, op, kind, nbytes,
                               self.capacity - len(self), tally)
        if self.growable and tally[K.FULL]:
            full = np.flatnonzero(outcome == K.FULL)
            while full.size:  # the estimate was low: grow and redo just those keys, in order
                tally[K.FULL] -= full.size
                retry_keys = keys[full]
                need = len(self) + self._estimate_distinct(retry_keys)
                self.resize(self._grown_capacity(need))
                retry_values = values[full] if values.size == keys.size else values
                outcome[full] = self._mutate(retry_keys, retry_values, K.ACTION_UPSERT, op, kind,
                                             nbytes, self.capacity - len(self), tally)
                full = full[outcome[full] == K.FULL]
        return outcome, tally

    def erase(self, keys: np.ndarray) -> np.ndarray:
        """Remove key words; returns outcome bytes (``K.REMOVED`` / ``K.NOT_FOUND``)."""
        empty = np.empty(0, self.word)
        return self._mutate(keys, empty, K.ACTION_ERASE, K.OP_OVERWRITE, K.KIND_UINT, 8, 0)

    def lookup(self, keys: np.ndarray, default_word: int = 0, want_values: bool = True,
               want_found: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(value words, found flags) for each key word; either is an empty array if not wanted
        (a lookup of 20M keys spends a tenth of its time faulting in fresh output pages)."""
        found = np.empty(keys.size if want_found else 0, np.bool_)
        values = np.empty(keys.size if want_values else 0, self.word)
        with _kernel_gate():
            K.lookup(*self._args(), keys, self.word.type(default_word), values, found,
                     numba.get_num_threads())
        return values, found

    def items(self, want_values: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Every stored key word (and value word), slot order, reserved keys last."""
        n = len(self)
        keys = np.empty(n, self.word)
        values = np.empty(n if want_values and self.words_per_slot > 1 else 0, self.word)
        with _kernel_gate():
            K.collect(self.slots, self.n_buckets, self.bucket_size, self.tomb, self.state, keys,
                      values, numba.get_num_threads())
        return keys, values

    def _estimate_distinct(self, keys: np.ndarray) -> int:
        with _kernel_gate():
            return K.estimate_distinct(keys, self.seed)

    # ---------------------------------------------------------------- size policy
    def _grown_capacity(self, need: int) -> int:
        return max(need, 2 * self.capacity, DEFAULT_CAPACITY)

    def resize(self, capacity: int) -> None:
        """Rebuild with room for ``capacity`` keys (never fewer than stored); drops tombstones."""
        capacity = max(capacity, len(self))
        keys, values = self.items()
        generation = self.state[K.GENERATION]
        self._allocate(capacity)
        self.state[K.GENERATION] = generation + 1
        if keys.size:
            self._mutate(keys, values, K.ACTION_UPSERT, K.OP_OVERWRITE, K.KIND_UINT, 8, capacity)

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more keys without growing during the next calls."""
        if len(self) + extra > self.capacity:
            self.resize(self._grown_capacity(len(self) + extra))

    def _sweep_tombstones_if_crowded(self, incoming: int) -> None:
        """Rebuild in place when live keys + tombstones + a batch would crowd the slots past
        halfway between the load limit and full: long probes cost more than one sweep."""
        tombs = int(self.state[K.TOMBSTONES])
        if tombs and len(self) + tombs + incoming > self.n_slots * (1 + self.max_load_factor) / 2:
            self.resize(self.capacity)

    def clear(self) -> None:
        """Empty the table. Its own slot array is zeroed in place, on every thread: the memory
        stays mapped, so the next fill does not fault 2 MiB pages back in one by one (about a
        sixth of a 20M-key insert). A memory-mapped or read-only array is replaced instead."""
        generation = self.state[K.GENERATION]
        own = type(self.slots) is np.ndarray and self.slots.flags.writeable
        if own and self.n_buckets == self._buckets_for(self.capacity):
            with _kernel_gate():
                K.zero_fill(self.slots, numba.get_num_threads())
            self._reset_state()
        else:
            self._allocate(self.capacity)
        self.state[K.GENERATION] = generation + 1

    def copy(self) -> "OpenTable":
        new = object.__new__(OpenTable)
        new.__dict__.update(self.__dict__)
        new.lock = ReadWriteLock()
        new.slots = aligned_zeros(self.slots.shape, self.word)
        new.slots[...] = self.slots
        new.state = self.state.copy()
        return new
