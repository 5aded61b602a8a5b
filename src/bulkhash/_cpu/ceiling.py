"""Memory-system ceilings: what this machine can do at best for a table of a given size.

A bulk hash-table lookup of a key that is not in cache costs at least one random cache-line read;
an insert at least one random read-modify-write. These kernels measure those two primitives with
nothing else around them, over an array as large as the table, so that ``bulkhash bench`` can say
what fraction of the machine a table operation reaches:

* ``gather(arr, idx, distance, nthreads)``: ``sum(arr[idx[i]])`` -- one 8-byte read at each
  random position. ``distance > 0`` adds a software prefetch of ``arr[idx[i + distance]]``
  (``distance = 0``: none; out-of-order execution alone keeps several misses in flight).
  ``lines=L`` reads ``L`` consecutive cache lines at each position: what a probe through ``L``
  buckets costs when nothing but the memory system counts (``bulkhash.bench.probes``).
* ``scatter_add(arr, idx, distance, nthreads)``: ``arr[idx[i]] += 1`` -- one random 8-byte
  read-modify-write. Threads own disjoint chunks of ``idx``, not of ``arr``, so two threads may
  race on one word and lose an increment: harmless here, where only the time counts.
* ``sequential_sum(arr, nthreads)``: every word once, in order -- streaming read bandwidth.

The positions come from a precomputed ``int64`` index array read in order, as a bulk lookup reads
its keys in order. Each kernel returns a checksum so that the compiler cannot drop the reads.
Like the table kernels, they take ``nthreads`` from the caller (calling ``numba.get_num_threads``
inside a kernel stops Numba from caching it on disk).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .intrinsics import LINE_BYTES, prefetch

LINE_WORDS = LINE_BYTES // 8  # uint64 words per cache line


@njit(inline="always", cache=True, nogil=True)
def _chunk(c, nchunks, n):
    return c * n // nchunks, (c + 1) * n // nchunks


@njit(inline="always", cache=True, nogil=True)
def _read_lines(arr, at, lines):
    """The first word of each of ``lines`` consecutive cache lines from word ``at``."""
    acc = np.uint64(arr[at])
    for line in range(1, lines):
        acc += np.uint64(arr[at + line * LINE_WORDS])
    return acc


@njit(inline="always", cache=True, nogil=True)
def _prefetch_lines(arr, at, lines):
    for line in range(lines):
        prefetch(arr, at + line * LINE_WORDS)


@njit(parallel=True, nogil=True, cache=True)
def gather(arr, idx, distance, nthreads, lines=1):
    """Sum of ``arr[idx[i]]`` over all ``i`` (uint64, wrapping); prefetch ``distance`` ahead.
    ``lines > 1`` reads the first word of ``lines`` consecutive cache lines from each position
    instead (what a probe through that many buckets reads; ``idx`` must leave room for them)."""
    n = idx.size
    nchunks = max(1, min(n, 4 * nthreads))
    sums = np.zeros(nchunks, np.uint64)
    for c in prange(nchunks):
        start, stop = _chunk(c, nchunks, n)
        acc = np.uint64(0)
        if distance > 0:
            ahead_stop = max(start, stop - distance)
            for i in range(start, ahead_stop):
                _prefetch_lines(arr, idx[i + distance], lines)
                acc += _read_lines(arr, idx[i], lines)
            for i in range(ahead_stop, stop):
                acc += _read_lines(arr, idx[i], lines)
        else:
            for i in range(start, stop):
                acc += _read_lines(arr, idx[i], lines)
        sums[c] = acc
    total = np.uint64(0)
    for c in range(nchunks):
        total += sums[c]
    return total


@njit(parallel=True, nogil=True, cache=True)
def scatter_add(arr, idx, distance, nthreads):
    """``arr[idx[i]] += 1`` for all ``i`` (racy between threads; see the module docstring)."""
    n = idx.size
    nchunks = max(1, min(n, 4 * nthreads))
    for c in prange(nchunks):
        start, stop = _chunk(c, nchunks, n)
        if distance > 0:
            ahead_stop = max(start, stop - distance)
            for i in range(start, ahead_stop):
                prefetch(arr, idx[i + distance])
                arr[idx[i]] += 1
            for i in range(ahead_stop, stop):
                arr[idx[i]] += 1
        else:
            for i in range(start, stop):
                arr[idx[i]] += 1
    return arr.size


@njit(parallel=True, nogil=True, cache=True)
def sequential_sum(arr, nthreads):
    """Sum of every word of ``arr`` (uint64, wrapping), read in order by ``nthreads`` chunks."""
    n = arr.size
    nchunks = max(1, min(n, nthreads))
    sums = np.zeros(nchunks, np.uint64)
    for c in prange(nchunks):
        start, stop = _chunk(c, nchunks, n)
        acc = np.uint64(0)
        for i in range(start, stop):
            acc += np.uint64(arr[i])
        sums[c] = acc
    total = np.uint64(0)
    for c in range(nchunks):
        total += sums[c]
    return total
