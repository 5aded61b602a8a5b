"""The probe sequence: linear probing over cache-line buckets.

Layout (see ``bulkhash._cpu.kernels`` for the whole picture): the slot array is cut into buckets
of one 64-byte cache line each -- 4 key/value pairs of 8+8 bytes, 8 pairs of 4+4 bytes, or 8 keys
of a 64-bit set. A key's probe sequence starts at its home bucket and walks to the next bucket,
wrapping at the end of the table::

    home, home + 1, home + 2, ...  (mod n_buckets)

Why linear over buckets rather than double hashing between them: on a CPU the next bucket is the
next cache line, which the hardware prefetcher is already bringing in, so a long probe costs a
fraction of a random access; and because a probe only moves forward through memory, a contiguous
range of buckets can be handed to one thread whose inserts never meet another thread's unless a
probe runs past the range's end (the parallel insert defers exactly those keys to a serial pass).

These are plain integer functions, compiled for the CPU by Numba and callable from a CUDA kernel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Bytes per bucket: one cache line on every CPU bulkhash targets.
BUCKET_BYTES = 64


def slots_per_bucket(word_bytes: int, words_per_slot: int) -> int:
    """How many slots fill one 64-byte bucket (4, 8 or 16)."""
    return BUCKET_BYTES // (word_bytes * words_per_slot)


@njit(inline="always", cache=True, nogil=True)
def next_bucket(bucket, n_buckets):
    """The bucket after ``bucket`` in a probe sequence (wraps at the end of the table)."""
    bucket += 1
    if bucket == n_buckets:
        return np.int64(0)
    return np.int64(bucket)
