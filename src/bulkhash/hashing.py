"""Hash functions: plain integer arithmetic that compiles for every target.

Every function here takes and returns ``uint64`` and uses nothing but shifts, xors and wrapping
multiplies, so the same source compiles with ``numba.njit`` for the CPU and, called from a
``cuda.jit`` kernel, for the GPU. Keep it that way: a hash that differs between backends would
make a table saved on one unreadable on the other.

The default is MurmurHash3's 64-bit finaliser (``fmix64``): a bijection on 64-bit words whose
every output bit depends on every input bit, cheap (two multiplies) and good enough that
sequential keys (ids, k-mers) spread evenly. The table seed is xor-ed in first, so two tables
with different seeds place the same keys differently.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S32 = np.uint64(32)

#: The seed tables use unless told otherwise (any 64-bit value works).
DEFAULT_SEED = 0x9E3779B97F4A7C15


@njit(inline="always", cache=True, nogil=True)
def fmix64(x):
    """MurmurHash3's 64-bit finaliser: a fast bijective mix of ``x`` (uint64 -> uint64)."""
    x = np.uint64(x)
    x ^= x >> _S33
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x


@njit(inline="always", cache=True, nogil=True)
def hash_key(key, seed):
    """The table hash of a key word: ``fmix64(key ^ seed)``."""
    return fmix64(np.uint64(key) ^ np.uint64(seed))


@njit(inline="always", cache=True, nogil=True)
def home_bucket(h, n_buckets):
    """Map a 64-bit hash onto ``[0, n_buckets)`` by multiply-shift ("fastrange").

    Uses the top 32 bits of ``h``; ``n_buckets`` must be below 2**32. Unlike ``h % n`` this needs
    no division and keeps the hash order: a larger hash never lands in an earlier bucket, so a
    contiguous range of buckets is a contiguous range of hashes. The parallel insert relies on
    that to give each thread its own region of the table.
    """
    return np.int64(((np.uint64(h) >> _S32) * np.uint64(n_buckets)) >> _S32)

