"""User-side ``@numba.njit`` functions that drive table refs (shared by test_refs and
test_threads so that each compiles once per test session).

Compiling a function that calls ref methods takes Numba many seconds, so the suite uses few of
them and few table dtypes: a HashMap int64 -> float32 (64-bit words), a Counter uint32 -> uint16
(32-bit words) and a HashSet uint64.
"""

import numba
import numpy as np

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
