"""The CUDA backend: device memory, kernel launches, and the arrays that cross the bus.

``OpenTable`` holds the policy (sizes, growth, tombstone sweeps) and calls a backend for the
work; this is the backend whose arrays live on the GPU. Every mutation, lookup, rehash and
``items()`` runs as kernels on device arrays (``bulkhash._cuda.kernels``); what comes back to the
host is a tally of 8 counts per call, and per-key arrays only when the caller asks for them
(``status=True``, the failed indices of a full fixed table).
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda

from .. import probing
from .._cpu import kernels as CK
from . import kernels as K

#: Lanes per cooperative group unless the table says otherwise. WarpCore's single-value table
#: defaults to 4 lanes for 8-byte keys; no GPU has measured ours yet (``bulkhash bench
#: --device cuda`` sweeps it), so this follows WarpCore.
DEFAULT_GROUP_SIZE = 4
GROUP_SIZES = (1, 2, 4, 8, 16, 32)

_MAX_BATCH = (1 << 31) - 1  # batch indices live in 31 bits of ``aux``
_SIMULATED = bool(config.ENABLE_CUDASIM)


def as_device(obj):
    """A Numba view of a device array (no copy)."""
    if hasattr(obj, "copy_to_host"):
        return obj
    return cuda.as_cuda_array(obj)


def to_host(arr) -> np.ndarray:
    return arr.copy_to_host() if hasattr(arr, "copy_to_host") else np.asarray(arr)


def empty(n: int, dtype) -> object:
    return cuda.device_array(int(n), dtype=np.dtype(dtype))


def filled(n: int, dtype, value) -> object:
    """A new device array of ``n`` copies of ``value``."""
    if _SIMULATED:  # a kernel would run one Python thread per element
        return cuda.to_device(np.full(int(n), value, np.dtype(dtype)))
    arr = empty(n, dtype)
    if n:
        K.fill[K.blocks(n), K.BLOCK](arr, np.dtype(dtype).type(value))
    return arr


def astype(arr, dtype):
    """``arr.astype(dtype)`` on the device (C conversion: integers wrap, as NumPy's does)."""
    dtype = np.dtype(dtype)
    if arr.dtype == dtype:
        return arr
    out = empty(arr.size, dtype)
    if arr.size:
        K.cast[K.blocks(arr.size), K.BLOCK](arr, out)
    return out


def take(arr, index: np.ndarray):
    """``arr[index]`` for host integer indices."""
    index = cuda.to_device(np.ascontiguousarray(index, np.int64))
    out = empty(index.size, arr.dtype)
    if index.size:
        K.take[K.blocks(index.size), K.BLOCK](arr, index, out)
    return out


def put(arr, index: np.ndarray, values) -> None:
    """``arr[index] = values`` for host integer indices."""
    index = cuda.to_device(np.ascontiguousarray(index, np.int64))
    if index.size:
        K.put[K.blocks(index.size), K.BLOCK](arr, index, values)


def equal_to(arr, value):
    """``arr == value`` as a device bool array."""
    out = empty(arr.size, np.bool_)
    if arr.size:
        K.equal_to[K.blocks(arr.size), K.BLOCK](arr, arr.dtype.type(value), out)
    return out


class CudaBackend:
    """Slots in GPU memory, probed by cooperative groups of ``group_size`` lanes."""

    name = "cuda"

    def __init__(self, group_size: int = DEFAULT_GROUP_SIZE):
        self.group_size = group_size

    # ------------------------------------------------------------ geometry and storage
    def layout(self) -> str:
        return f"cuda-double-hashing-g{self.group_size}"

    def bucket_size(self, word: np.dtype, words_per_slot: int) -> int:
        return self.group_size

    def n_buckets_for(self, slots: int, bucket_size: int) -> int:
        """A prime number of windows (the double-hashing probe needs it; module docs)."""
        return probing.next_prime(max(2, math.ceil(slots / bucket_size)))

    def zeros(self, shape: tuple[int, int], dtype):
        return filled(shape[0] * shape[1], dtype, 0).reshape(shape)

    def new_state(self):
        return filled(CK.STATE_LEN, np.int64, 0)

    def from_host(self, arr: np.ndarray):
        return cuda.to_device(np.ascontiguousarray(arr))

    to_host = staticmethod(to_host)

    def zero_fill(self, slots) -> None:
        flat = slots.reshape(slots.size)
        if _SIMULATED:
            flat.copy_to_device(np.zeros(flat.size, flat.dtype))
        else:
            K.fill[K.blocks(flat.size), K.BLOCK](flat, flat.dtype.type(0))

    def copy(self, slots):
        out = cuda.device_array(slots.shape, slots.dtype)
        out.copy_to_device(slots)
        return out

    # ------------------------------------------------------------ per-key arrays
    def empty(self, n: int, dtype):
        return empty(n, dtype)

    take = staticmethod(take)

    def take_values(self, values, index: np.ndarray):
        """As ``CpuBackend.take_values``."""
        return take(values, index) if values.size > 1 else values

    def put(self, arr, index: np.ndarray, values) -> None:
        put(arr, index, values)

    equal_to = staticmethod(equal_to)

    def indices_of(self, outcome, code: int) -> np.ndarray:
        """Host positions whose outcome code (flags masked off) is ``code``."""
        return np.flatnonzero((to_host(outcome) & CK.CODE_MASK) == code)

    # ------------------------------------------------------------ kernels
    def _geometry(self, t):
        return (t.slots.reshape(t.slots.size), t.words_per_slot, t.bucket_size, t.n_buckets,
                np.uint64(t.seed), t.word.type(t.tomb))

    def mutate(self, t, keys, values, action: int, op: int, kind: int, nbytes: int,
               budget: int):
        """Upsert or erase a batch in phases (``bulkhash._cuda.kernels``); (outcome, tally)."""
        n = keys.size
        if n > _MAX_BATCH:
            raise ValueError(f"keys has {n} elements; a GPU table takes at most {_MAX_BATCH} "
                             "per call: split the batch")
        flat, wps, G, n_windows, seed, tomb = self._geometry(t)
        outcome = empty(n, np.uint8)
        counts = filled(8, np.int64, 0)
        if n == 0:
            return outcome, np.zeros(8, np.int64)
        rows = empty(n, np.int64)
        aux = filled(t.slots.shape[0], np.uint32, K.NO_INDEX)
        grid, per_key = K.blocks(n, G), K.blocks(n)
        if values.size == 0:
            values = empty(1, t.word)
        vstride = 1 if values.size == n else 0
        if action == CK.ACTION_ERASE:
            K.locate[grid, K.BLOCK](flat, wps, G, n_windows, seed, tomb, t.state, keys, rows, aux)
            K.remove_first[per_key, K.BLOCK](flat, wps, n_windows * G, tomb, t.state, rows, aux,
                                             outcome)
        else:
            code = empty(n, np.uint8)
            remaining = cuda.to_device(np.array([budget], np.int64))
            K.claim[grid, K.BLOCK](flat, wps, G, n_windows, seed, tomb, t.state, remaining, keys,
                                   rows, code, aux)
            K.refind[grid, K.BLOCK](flat, wps, G, n_windows, seed, tomb, t.state, keys, rows,
                                    code, aux)
            K.mark_fresh[per_key, K.BLOCK](rows, code, aux)
            K.settle[per_key, K.BLOCK](flat, wps, rows, code, aux, values, vstride, outcome)
            if wps > 1 and op == CK.OP_OVERWRITE:
                K.reset_aux[per_key, K.BLOCK](rows, outcome, aux)
                K.mark_last[per_key, K.BLOCK](rows, outcome, aux)
                K.store_last[per_key, K.BLOCK](flat, wps, rows, outcome, aux, values, vstride)
            elif wps > 1 and op != CK.OP_KEEP:
                K.combine_rest[per_key, K.BLOCK](flat, wps, rows, outcome, values, vstride, op,
                                                 kind, nbytes)
        K.tally[per_key, K.BLOCK](outcome, counts)
        return outcome, counts.copy_to_host()

    def lookup(self, t, keys, default_word, want_values: bool, want_found: bool):
        flat, wps, G, n_windows, seed, tomb = self._geometry(t)
        n = keys.size
        found = empty(n if want_found else 0, np.bool_)
        values = empty(n if want_values else 0, t.word)
        if n:
            K.lookup[K.blocks(n, G), K.BLOCK](flat, wps, G, n_windows, seed, tomb, t.state, keys,
                                              t.word.type(default_word), values, found)
        return values, found

    def take_items(self, t, narrow_values: bool):
        """``collect`` (the caller then allocates the table anew): a GPU table's memory is not
        reused for the result, and its values come back as whole words."""
        return self.collect(t, True)

    def collect(self, t, want_values: bool, value_bytes: int | None = None):
        """Every key word (and value word) in slot order, the reserved keys last (always whole
        words: ``value_bytes`` is a CPU saving)."""
        flat, wps, G, n_windows, seed, tomb = self._geometry(t)
        n_slots = n_windows * G
        runs = -(-n_slots // K.RUN)
        counts = empty(runs, np.int64)
        K.count_live[K.blocks(runs), K.BLOCK](flat, wps, n_slots, tomb, counts)
        starts = np.zeros(runs + 1, np.int64)
        np.cumsum(counts.copy_to_host(), out=starts[1:])
        n = len(t)
        keys = empty(n, t.word)
        values = empty(n if want_values and wps > 1 else 0, t.word)
        if n:
            K.gather_live[K.blocks(runs + 1), K.BLOCK](flat, wps, n_slots, tomb, t.state,
                                                       cuda.to_device(starts), keys, values)
        return keys, values

    def hll_registers(self, keys, seed: int) -> np.ndarray:
        regs = filled(1 << 12, np.uint32, 0)
        K.hll_registers[K.blocks(keys.size), K.BLOCK](keys, np.uint64(seed), regs)
        return regs.copy_to_host().astype(np.uint8)
