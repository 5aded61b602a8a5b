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


# ------------------------------------------------------------------ the GPU probe sequence
# On a GPU a probe looks at a *window* of G consecutive slots at once, one slot per lane of a
# cooperative group, and moves between windows by double hashing, as WarpCore does: the next
# cache line is not coming anyway (no hardware prefetcher to ride), and a stride that depends on
# the key breaks up the clusters linear probing builds when thousands of threads insert at once.

@njit(inline="always", cache=True, nogil=True)
def window_step(h, n_windows):
    """The stride between a key's windows: ``1 .. n_windows - 1``, from the low 32 bits of its hash
    ``h`` (the home window comes from the high 32 bits, ``hashing.home_bucket``).

    With ``n_windows`` prime every stride is coprime to it, so ``home + j * step (mod n_windows)``
    for ``j = 0 .. n_windows - 1`` meets every window exactly once: a probe that has taken
    ``n_windows`` steps has seen the whole table and can stop instead of cycling.
    """
    if n_windows < 2:
        return np.int64(1)
    low = np.uint64(h) & np.uint64(0xFFFFFFFF)
    return np.int64(1 + ((low * np.uint64(n_windows - 1)) >> np.uint64(32)))


@njit(inline="always", cache=True, nogil=True)
def next_window(window, step, n_windows):
    """The window after ``window`` in a probe with stride ``step`` (``0 < step < n_windows``)."""
    window += step
    if window >= n_windows:
        window -= n_windows
    return np.int64(window)


def next_prime(n: int) -> int:
    """The smallest prime >= ``n`` (window counts; n below 2**32, so trial division is quick:
    prime gaps there are under 400 and each candidate needs at most 6542 divisions)."""
    n = max(2, int(n))
    while True:
        if n < 4 or (n % 2 and all(n % d for d in range(3, int(n ** 0.5) + 1, 2))):
            return n
        n += 1
