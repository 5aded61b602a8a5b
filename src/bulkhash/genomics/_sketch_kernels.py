"""Numba kernels of the read classifier: window sketches, and scoring a read's hits.

Sketch
------
A window of sequence (127 bases by default) is summarised by its *sketch*: the ``s`` smallest
distinct 32-bit hashes of its canonical k-mers (k = 16 fits a k-mer in 32 bits). Two windows that
share much sequence share most of their smallest hashes (min-hashing), so a read's sketch finds
the reference windows it came from by exact lookups of a handful of features, without
alignment. This is MetaCache's scheme (Müller et al., Bioinformatics 2017). The sketch is kept
sorted in a small array: a new hash is compared with the largest kept one first, and once the
array is full nearly every hash stops there.

Scoring
-------
A read's features give locations ``target << 32 | window``. Sorted, equal locations are runs;
the best *range* of a target is the largest number of hits in ``W`` consecutive windows
(``W = 2 + read length // stride``, the windows a read can overlap), found by a two-pointer
sweep. The two best targets decide: fewer than ``hits_min`` hits is unclassified; otherwise the
best target's taxon, or the lowest common ancestor of both when the second is within
``(best - hits_min) * diff_fraction`` of the best (MetaCache's rule).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._cpu import kernels as K
from .._cpu import multi as M
from .._cpu.intrinsics import prefetch
from ..hashing import fmix64
from ._kmer_kernels import INVALID
from .taxonomy import lowest_common_ancestor

_WINDOW_SHIFT = np.uint64(32)
_WINDOW_MASK = np.uint64(0xFFFFFFFF)


@njit(inline="always", cache=True, nogil=True)
def feature_hash(kmer):
    """A k-mer code (k <= 16) -> its 32-bit feature: the high half of a 64-bit mix."""
    return np.uint32(fmix64(np.uint64(kmer)) >> np.uint64(32))


@njit(cache=True, nogil=True)
def _sketch_one(seq, start, stop, k, codes, size, out):
    """The ``size`` smallest distinct feature hashes of the canonical k-mers in
    ``seq[start:stop]``, ascending in ``out[:n]``; returns n."""
    mask = (np.uint64(1) << np.uint64(2 * k)) - np.uint64(1)
    top = np.uint64(2 * (k - 1))
    fwd = np.uint64(0)
    rev = np.uint64(0)
    run = 0
    n = 0
    for i in range(start, stop):
        c = codes[seq[i]]
        if c == INVALID:
            run = 0
            continue
        base = np.uint64(c)
        fwd = ((fwd << np.uint64(2)) | base) & mask
        rev = (rev >> np.uint64(2)) | ((np.uint64(3) - base) << top)
        run += 1
        if run < k:
            continue
        h = feature_hash(min(fwd, rev))
        if n == size and h >= out[n - 1]:
            continue
        # insertion into the sorted prefix, skipping a hash already kept
        j = n
        while j > 0 and out[j - 1] > h:
            j -= 1
        if j > 0 and out[j - 1] == h:
            continue
        last = n if n < size else size - 1
        for m in range(last, j, -1):
            out[m] = out[m - 1]
        out[j] = h
        if n < size:
            n += 1
    return n


@njit(parallel=True, cache=True, nogil=True)
def sketch_windows(seq, starts, stops, k, codes, size):
    """Sketches of the windows ``seq[starts[w]:stops[w]]``: ``(features[n, size], counts[n])``."""
    n = starts.size
    features = np.zeros((n, size), np.uint32)
    counts = np.zeros(n, np.int64)
    for w in prange(n):
        counts[w] = _sketch_one(seq, starts[w], stops[w], k, codes, size, features[w])
    return features, counts


@njit(inline="always", cache=True, nogil=True)
def _sort_small(values):
    """Sort in place: insertion sort for the few dozen locations a short read gathers (a call
    of NumPy's sort costs more than sorting them), ``ndarray.sort`` beyond that."""
    n = values.size
    if n > 64:
        values.sort()
        return
    for i in range(1, n):
        v = values[i]
        j = i
        while j > 0 and values[j - 1] > v:
            values[j] = values[j - 1]
            j -= 1
        values[j] = v


@njit(cache=True, nogil=True)
def _best_two_targets(locations, span):
    """Sorted locations -> ``(target1, hits1, target2, hits2)``: the two targets (distinct) with
    the most hits within ``span`` consecutive windows (-1 and 0 where there is none)."""
    t1, h1, t2, h2 = -1, 0, -1, 0
    n = locations.size
    lo = 0
    hits = 0
    best = 0
    for hi in range(n):
        target = np.int64(locations[hi] >> _WINDOW_SHIFT)
        window = np.int64(locations[hi] & _WINDOW_MASK)
        if np.int64(locations[lo] >> _WINDOW_SHIFT) != target:  # a new target begins at hi
            lo = hi
            hits = 0
            best = 0
        while np.int64(locations[lo] & _WINDOW_MASK) + span <= window:
            lo += 1
            hits -= 1
        hits += 1
        if hits > best:
            best = hits
        last_of_target = hi + 1 == n or np.int64(locations[hi + 1] >> _WINDOW_SHIFT) != target
        if last_of_target:
            if best > h1:
                t2, h2 = t1, h1
                t1, h1 = target, best
            elif best > h2:
                t2, h2 = target, best
    return t1, h1, t2, h2


@njit(inline="always", cache=True, nogil=True)
def _window_count(length, k, window, stride):
    """Windows of a sequence of ``length`` bases: ``1 + ceil((length - window) / stride)``, one
    if it is shorter than a window, none if shorter than k (``classify.windows_of``)."""
    if length < k:
        return 0
    extra = max(length - window, 0)
    return 1 + (extra + stride - 1) // stride


@njit(inline="always", cache=True, nogil=True)
def _count_locations(index, features, n, homes, counts):
    """How many locations the ``n`` features have in all; each one's home bucket and count go to
    ``homes`` and ``counts``.

    The home buckets are prefetched first, all of them, and only then read: the probes of one
    read are independent, so their cache misses overlap instead of following one another
    (counting the locations of 300k reads' features: 0.28 s without the prefetches, 0.18 s with
    them, on the 2-core VM)."""
    for j in range(n):
        homes[j] = K.bucket_of(features[j], index.n_buckets, index.seed, index.tomb)
        if homes[j] >= 0:
            prefetch(index.slots, homes[j] * index.bucket_size * index.slots.shape[1])
    total = 0
    for j in range(n):
        counts[j] = M.count_values(index.slots, index.n_buckets, index.bucket_size, index.tomb,
                                   index.state, features[j], homes[j])
        total += counts[j]
    return total


@njit(inline="always", cache=True, nogil=True)
def _copy_locations(index, features, n, homes, counts, out):
    """The locations of the ``n`` features, one after another, into ``out``."""
    at = 0
    for j in range(n):
        M.copy_values(index.slots, index.n_buckets, index.bucket_size, index.tomb, index.state,
                      index.side, features[j], homes[j], out, at, counts[j])
        at += counts[j]


@njit(parallel=True, cache=True, nogil=True)
def classify_reads(text, offsets, lengths, k, codes, sketch_size, window, stride, index,
                   target_taxon, parents, ranks, hits_min, diff_fraction, nthreads):
    """Per read ``text[offsets[r]:offsets[r] + lengths[r]]``: ``(taxon row or -1, hits of the
    best target)``, looking its features up in ``index`` (a ``MultiMap`` ref).

    One pass per read, all in compiled code: sketch its windows, gather their features'
    locations straight from the table (no batch-wide arrays of features or of locations), sort
    them, and score."""
    n_reads = lengths.size
    taxon = np.full(n_reads, -1, np.int64)
    best_hits = np.zeros(n_reads, np.int64)
    chunks = min(n_reads, 4 * nthreads)
    for c in prange(chunks):
        features = np.empty(4 * sketch_size, np.uint32)
        homes = np.empty(features.size, np.int64)
        counts = np.empty(features.size, np.int64)
        buffer = np.empty(4096, np.uint64)
        for r in range(c * n_reads // chunks, (c + 1) * n_reads // chunks):
            n_windows = _window_count(lengths[r], k, window, stride)
            if n_windows * sketch_size > features.size:
                features = np.empty(n_windows * sketch_size, np.uint32)
                homes = np.empty(features.size, np.int64)
                counts = np.empty(features.size, np.int64)
            n = 0
            for w in range(n_windows):
                start = offsets[r] + w * stride
                stop = min(start + window, offsets[r] + lengths[r])
                n += _sketch_one(text, start, stop, k, codes, sketch_size, features[n:])
            total = _count_locations(index, features, n, homes, counts)
            if total == 0:
                continue
            if total > buffer.size:
                buffer = np.empty(2 * total, np.uint64)
            _copy_locations(index, features, n, homes, counts, buffer)
            locations = buffer[:total]
            _sort_small(locations)
            t1, h1, t2, h2 = _best_two_targets(locations, 2 + lengths[r] // stride)
            best_hits[r] = h1
            if h1 < hits_min or t1 < 0:
                continue
            threshold = (h1 - hits_min) * diff_fraction if h1 > hits_min else 0.0
            row = target_taxon[t1]
            if t2 >= 0 and h2 > threshold:
                row = lowest_common_ancestor(row, target_taxon[t2], parents, ranks)
            taxon[r] = row
    return taxon, best_hits
