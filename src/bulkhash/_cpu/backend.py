"""The CPU backend: NumPy arrays in host memory, probed by the Numba kernels of ``kernels``.

``OpenTable`` holds the policy (sizes, growth, tombstone sweeps) and calls a backend for the
work; ``bulkhash._cuda.backend`` is the same interface on a GPU.
"""

from __future__ import annotations

import ctypes
import functools
import math
import mmap
import sys
import threading
from contextlib import contextmanager, nullcontext
from typing import Iterator

import numba
import numpy as np

from .. import probing
from .._dtypes import narrowest_unsigned
from . import kernels as K

_workqueue_gate = threading.Lock()


@contextmanager
def kernel_gate() -> Iterator[None]:
    """Serialise parallel kernels only under Numba's workqueue layer, which cannot run two at once
    (the omp and tbb layers can, and then tables on different threads really run together)."""
    try:
        safe = numba.threading_layer() != "workqueue"
    except ValueError:  # no parallel kernel has run yet: the layer is not chosen
        safe = False
    with nullcontext() if safe else _workqueue_gate:
        yield


def release_memory(arr: np.ndarray) -> None:
    """Give the whole pages inside ``arr`` back to the operating system now (Linux: madvise
    ``MADV_DONTNEED``; they read as zeros if touched again). Elsewhere, nothing: the pages go
    back when the array is freed.

    For memory that is dead but still owned by a live allocation: the part of a table's slot
    array after the pairs ``take_items`` moved to its front. Writing the results out then reuses
    those pages instead of faulting in fresh ones, which on a VM costs more than the writing
    (about 2 s a GB on this project's test machine)."""
    if not sys.platform.startswith("linux") or arr.nbytes == 0:
        return
    page = mmap.PAGESIZE
    start = -(-arr.ctypes.data // page) * page
    stop = (arr.ctypes.data + arr.nbytes) // page * page
    if stop > start:
        _libc().madvise(ctypes.c_void_p(start), ctypes.c_size_t(stop - start), _MADV_DONTNEED)


_MADV_DONTNEED = 4

#: A table's reach map is built once its lookups since the last new key reach this share of its
#: slots, if at least ``REACH_FROM_LOAD`` of its slots are taken (``CpuBackend._reach_map``).
REACH_AFTER_LOOKUPS = 0.125
REACH_FROM_LOAD = 0.7
_NO_REACH = np.empty(0, np.uint8)


@functools.cache
def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return libc


def aligned_zeros(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``np.zeros`` whose data starts on a cache-line boundary (buckets must not straddle lines)."""
    count = int(np.prod(shape))
    itemsize = np.dtype(dtype).itemsize
    raw = np.zeros(count + probing.BUCKET_BYTES // itemsize, dtype)
    skip = (-raw.ctypes.data % probing.BUCKET_BYTES) // itemsize
    return raw[skip:skip + count].reshape(shape)


class CpuBackend:
    """Slots in host memory, in 64-byte buckets probed linearly (``kernels``' module docs)."""

    name = "cpu"
    group_size = None

    # ------------------------------------------------------------ geometry and storage
    def layout(self) -> str:
        return "cpu-linear-64b"

    def bucket_size(self, word: np.dtype, words_per_slot: int) -> int:
        return probing.slots_per_bucket(word.itemsize, words_per_slot)

    def n_buckets_for(self, slots: int, bucket_size: int) -> int:
        return max(1, math.ceil(slots / bucket_size))

    zeros = staticmethod(aligned_zeros)

    def new_state(self) -> np.ndarray:
        return np.zeros(K.STATE_LEN, np.int64)

    def from_host(self, arr: np.ndarray) -> np.ndarray:
        return arr

    def to_host(self, arr: np.ndarray) -> np.ndarray:
        return arr

    def zero_fill(self, slots: np.ndarray) -> None:
        with kernel_gate():
            K.zero_fill(slots, numba.get_num_threads())

    def copy(self, slots: np.ndarray) -> np.ndarray:
        out = aligned_zeros(slots.shape, slots.dtype)
        out[...] = slots
        return out

    # ------------------------------------------------------------ per-key arrays
    def empty(self, n: int, dtype) -> np.ndarray:
        return np.empty(n, dtype)

    def take(self, arr: np.ndarray, index: np.ndarray) -> np.ndarray:
        return arr[index]

    def take_values(self, values: np.ndarray, index: np.ndarray) -> np.ndarray:
        """The value words of the keys at ``index``: a batch's values hold one per key, one
        used for every key, or none (a set)."""
        return values[index] if values.size > 1 else values

    def put(self, arr: np.ndarray, index: np.ndarray, values: np.ndarray) -> None:
        arr[index] = values

    def indices_of(self, outcome: np.ndarray, code: int) -> np.ndarray:
        return np.flatnonzero((outcome & K.CODE_MASK) == code)

    # ------------------------------------------------------------ kernels
    def _args(self, t):
        return (t.slots, t.n_buckets, t.bucket_size, np.uint64(t.seed), t.tomb, t.state)

    def mutate(self, t, keys, values, action: int, op: int, kind: int, nbytes: int, budget: int):
        outcome = np.empty(keys.size, np.uint8)
        counts = np.zeros(8, np.int64)
        with kernel_gate():
            K.mutate(*self._args(t), keys, values, action, op, kind, nbytes, budget, outcome,
                     counts, numba.get_num_threads())
        return outcome, counts

    def lookup(self, t, keys, default_word, want_values: bool, want_found: bool):
        found = np.empty(keys.size if want_found else 0, np.bool_)
        values = np.empty(keys.size if want_values else 0, t.word)
        reach = self._reach_map(t, keys.size)
        with kernel_gate():
            K.lookup(*self._args(t), keys, t.word.type(default_word), values, found, reach,
                     numba.get_num_threads())
        return values, found

    def _reach_map(self, t, batch: int) -> np.ndarray:
        """The table's reach map (``kernels.build_reach``: how far a miss must look), or an
        empty array while it does not pay.

        It is kept in ``t.derived`` with the ``(GENERATION, PLACED)`` state it was built from,
        and built once lookups since the last new key add up to ``REACH_AFTER_LOOKUPS`` of
        the slots (building reads every slot once, about what looking up that many keys
        costs), in a table at least ``REACH_FROM_LOAD`` full (emptier, misses end near home
        anyway). A new map is a new array: a lookup on another thread keeps the one it has."""
        version = (int(t.state[K.GENERATION]), int(t.state[K.PLACED]))
        memo = t.derived
        current = memo is not None and memo[0] == version
        looked_up, reach = (memo[1], memo[2]) if current else (0, None)
        if reach is None:
            looked_up += batch
            occupied = len(t) + int(t.state[K.TOMBSTONES])
            if (looked_up >= REACH_AFTER_LOOKUPS * t.n_slots
                    and occupied >= REACH_FROM_LOAD * t.n_slots):
                reach = np.empty(t.n_buckets, np.uint8)
                with kernel_gate():
                    K.build_reach(t.slots, t.n_buckets, t.bucket_size, np.uint64(t.seed), t.tomb,
                                  reach, numba.get_num_threads())
            t.derived = (version, looked_up, reach)
        return _NO_REACH if reach is None else reach

    def collect(self, t, want_values: bool, value_bytes: int | None = None):
        n = len(t)
        keys = np.empty(n, t.word)
        narrow = value_bytes is not None and value_bytes < t.word.itemsize
        values = np.empty(n if want_values and t.words_per_slot > 1 else 0,
                          np.dtype(f"u{value_bytes}") if narrow else t.word)
        with kernel_gate():
            K.collect(t.slots, t.n_buckets, t.bucket_size, t.tomb, t.state, keys, values,
                      numba.get_num_threads())
        return keys, values

    def take_items(self, t, narrow_values: bool):
        """``collect``, into the table's own memory (``K.gather_to_front``): the keys come back
        as a view of the slot array's first words, and the memory after them goes back to the
        operating system at once. The table is left unusable: the caller allocates it anew.

        ``narrow_values``: values in the smallest unsigned type that holds the largest."""
        n = len(t)
        if t.words_per_slot < 2:
            dtype = t.word
        elif narrow_values:
            dtype = narrowest_unsigned(
                int(K.max_stored_value(t.slots, t.n_buckets, t.bucket_size, t.tomb, t.state)))
        else:
            dtype = t.word
        values = np.empty(n if t.words_per_slot > 1 else 0, dtype)
        flat = t.slots.reshape(-1)
        with kernel_gate():
            K.gather_to_front(t.slots, t.n_buckets, t.bucket_size, t.tomb, t.state, values)
        release_memory(flat[n:])
        return flat[:n], values

    def hll_registers(self, keys: np.ndarray, seed: int) -> np.ndarray:
        with kernel_gate():
            return K.hll_registers(keys, np.uint64(seed), numba.get_num_threads())

    @staticmethod
    def equal_to(arr: np.ndarray, value) -> np.ndarray:
        return arr == value
