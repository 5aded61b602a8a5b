"""User-side ``@numba.njit`` functions (and ``@cuda.jit`` kernels) that drive table refs
(shared by the test modules of refs so that each compiles once per test session).

Compiling a function that calls ref methods takes Numba many seconds, so the suite uses few of
them and few table dtypes: a HashMap int64 -> float32 (64-bit words), a Counter uint32 -> uint16
(32-bit words) and a HashSet uint64.
"""

import numba
import numpy as np
from numba import cuda

MAP_TYPES = ("int64", "float32")
COUNTER_TYPES = ("uint32", "uint16")
SET_TYPE = "uint64"


@numba.njit(nogil=True)
def map_insert(ref, keys, values):
    new = np.zeros(keys.size, np.bool_)
    for i in range(keys.size):
        new[i] = ref.insert(keys[i], values[i])
    return new


@numba.njit(nogil=True)
def map_get(ref, keys, default):
    out = np.empty(keys.size, np.float32)
    for i in range(keys.size):
        out[i] = ref.get(keys[i], default)
    return out


@numba.njit(nogil=True)
def map_contains(ref, keys):
    out = np.zeros(keys.size, np.bool_)
    for i in range(keys.size):
        out[i] = ref.contains(keys[i])
    return out


@numba.njit
def ref_failed(ref):
    return ref.failed()


@numba.njit(nogil=True)
def counter_add(ref, keys, counts):
    new = np.zeros(keys.size, np.bool_)
    for i in range(keys.size):
        new[i] = ref.add(keys[i], counts[i])
    return new


@numba.njit(nogil=True)
def counter_get(ref, keys):
    out = np.zeros(keys.size, np.uint64)
    for i in range(keys.size):
        out[i] = ref.get(keys[i])
    return out


@numba.njit(nogil=True)
def set_add(ref, keys):
    new = np.zeros(keys.size, np.bool_)
    for i in range(keys.size):
        new[i] = ref.add(keys[i])
    return new


@numba.njit(nogil=True)
def set_contains(ref, keys):
    out = np.zeros(keys.size, np.bool_)
    for i in range(keys.size):
        out[i] = ref.contains(keys[i])
    return out


@numba.njit(parallel=True)
def prange_counter_add(ref, keys, thread_ids):
    """Add 1 per key from a prange loop; records which thread handled each element."""
    for i in numba.prange(keys.size):
        ref.add(keys[i], 1)
        thread_ids[i] = numba.get_thread_id()


@numba.njit(parallel=True)
def prange_map_insert(ref, keys, values, thread_ids):
    new = np.zeros(keys.size, np.bool_)
    for i in numba.prange(keys.size):
        new[i] = ref.insert(keys[i], values[i])
        thread_ids[i] = numba.get_thread_id()
    return new


# ------------------------------------------------------------------ multi-value refs
# (MultiMap and BucketListMap refs: test_multimap, test_bucketlist_refs; the GPU kernels run on
# the simulator or a GPU)
@numba.njit(nogil=True)
def multi_insert(ref, keys, values):
    stored = np.empty(keys.size, np.bool_)
    for i in range(keys.size):
        stored[i] = ref.insert(keys[i], values[i])
    return stored


@numba.njit(parallel=True, nogil=True)
def multi_insert_parallel(ref, keys, values):
    stored = np.empty(keys.size, np.bool_)
    for i in numba.prange(keys.size):
        stored[i] = ref.insert(keys[i], values[i])
    return stored


@numba.njit(nogil=True)
def multi_query(ref, keys, out):
    counts = np.empty(keys.size, np.int64)
    found = np.empty(keys.size, np.bool_)
    for i in range(keys.size):
        counts[i] = ref.retrieve(keys[i], out[i])
        found[i] = ref.contains(keys[i])
        if ref.count(keys[i]) != counts[i]:  # (no assert: pytest rewrites them, Numba cannot)
            counts[i] = -1
    return counts, found, ref.failed()


@cuda.jit
def multi_insert_gpu(ref, keys, values, stored):
    i = cuda.grid(1)
    if i < keys.size:
        stored[i] = ref.insert(keys[i], values[i])


@cuda.jit
def multi_query_gpu(ref, keys, out, counts, found, failed):
    i = cuda.grid(1)
    if i < keys.size:
        counts[i] = ref.retrieve(keys[i], out[i])
        found[i] = ref.contains(keys[i])
        if ref.count(keys[i]) != counts[i]:
            counts[i] = -1
        if i == 0:
            failed[0] = ref.failed()


def multi_ref_insert(m, keys, values, ref=None) -> np.ndarray:
    ref = m.ref() if ref is None else ref
    if m.device == "cpu":
        return multi_insert(ref, keys, values)
    stored = np.zeros(keys.size, np.bool_)
    multi_insert_gpu[max(1, -(-keys.size // 32)), 32](ref, keys, values, stored)
    return stored


def multi_ref_query(m, keys, width):
    """(counts, found, failed(), out): each key's first ``width`` values in ``out[i]``."""
    out = np.zeros((keys.size, width), m.value_dtype)
    if m.device == "cpu":
        counts, found, failed = multi_query(m.ref(), keys, out)
        return counts, found, int(failed), out
    counts, found, failed = (np.zeros(keys.size, np.int64), np.zeros(keys.size, np.bool_),
                             np.zeros(1, np.int64))
    multi_query_gpu[max(1, -(-keys.size // 32)), 32](m.ref(), keys, out, counts, found, failed)
    return counts, found, int(failed[0]), out


