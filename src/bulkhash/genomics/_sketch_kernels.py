"""Numba kernels of the read classifier: window sketches, and scoring a read's hits.

Sketch
------
A window of sequence (127 bases by default) is summarised by its *sketch*, a few of the 32-bit
hashes of its canonical k-mers (k = 16 fits a k-mer in 32 bits), chosen in one of two ways:

* ``window`` sampling (MetaCache's, Müller et al., Bioinformatics 2017): the ``s`` smallest
  distinct hashes of the window. Two windows that share much sequence share most of their
  smallest hashes (min-hashing), so a read's sketch finds the reference windows it came from by
  exact lookups of a handful of features, without alignment. But whether a k-mer is kept depends
  on the rest of its window: two genomes that share a stretch at different window phases keep
  somewhat different features of it, and a read from the stretch then scores one of them a few
  hits higher by chance.
* ``fraction`` sampling (FracMinHash, as in sourmash): every distinct hash below a fixed bound,
  set so that a full window keeps ``s`` hashes on average. Whether a k-mer is kept depends on
  the k-mer alone, so a shared stretch yields the same features in every genome that has it, and
  a difference in hits between two genomes is a difference in their sequence.

Either way a window's hashes at most the bound are gathered first, and the ``s`` smallest distinct
of them kept, ascending (``_sketch_one`` says how each sampling's candidates are best chosen).

Scoring
-------
A read's features give locations ``target << 32 | window``. Sorted, equal locations are runs;
the best *range* of a target is the largest number of hits in ``W`` consecutive windows
(``W = 2 + read length // stride``, the windows a read can overlap), found by a two-pointer
sweep. The best few targets (``candidates``, two by default) decide: fewer than ``hits_min`` hits is
unclassified; otherwise the best target's taxon, or the lowest common ancestor of it and every
other candidate with more than ``(best - hits_min) * diff_fraction`` hits (MetaCache's rule).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._cpu import kernels as K
from .._cpu.intrinsics import prefetch
from ..hashing import fmix64
from ._kmer_kernels import INVALID
from .locations import COUNT_BITS, MAX_RUN
from .taxonomy import lowest_common_ancestor

_WINDOW_SHIFT = np.uint64(32)
_WINDOW_MASK = np.uint64(0xFFFFFFFF)
_RUN_START_SHIFT = np.uint64(COUNT_BITS)
_RUN_COUNT_MASK = np.uint64(MAX_RUN)


@njit(inline="always", cache=True, nogil=True)
def feature_hash(kmer):
    """A k-mer code (k <= 16) -> its 32-bit feature: the high half of a 64-bit mix."""
    return np.uint32(fmix64(np.uint64(kmer)) >> np.uint64(32))


@njit(cache=True, nogil=True)
def _sketch_one(seq, start, stop, k, codes, size, below, out, scratch):
    """The ``size`` smallest distinct feature hashes of the canonical k-mers in
    ``seq[start:stop]`` that are at most ``below``, ascending in ``out[:n]``; returns n.
    ``scratch`` holds ``stop - start`` hashes.

    Two passes. The first hashes every k-mer and appends those at most ``below`` to ``scratch``
    without a branch: which hashes pass is random, so a branch on it mispredicts about as often
    as fraction sampling keeps one. The second chooses among the candidates: with fraction
    sampling they are few (about ``size``), and an insertion sort of them, then a pass that
    skips repeats, is cheapest; with window sampling every k-mer is a candidate, and keeping a
    sorted ``out`` that a candidate enters only when below its largest is (a sort of the
    hundred-odd would cost more). One kernel for both, measured on 300k 100-base reads (one
    thread, 2-core VM): fraction sampling 0.28 -> 0.21 s, window sampling 0.39 -> 0.36 s."""
    mask = (np.uint64(1) << np.uint64(2 * k)) - np.uint64(1)
    top = np.uint64(2 * (k - 1))
    fwd = np.uint64(0)
    rev = np.uint64(0)
    run = 0
    m = 0
    for i in range(start, stop):
        c = codes[seq[i]]
        if c == INVALID:
            run = 0
            continue
        base = np.uint64(c)
        fwd = ((fwd << np.uint64(2)) | base) & mask
        rev = (rev >> np.uint64(2)) | ((np.uint64(3) - base) << top)
        run += 1
        h = feature_hash(min(fwd, rev))
        scratch[m] = h
        m += (run >= k) & (h <= below)
    if m <= 2 * size:
        _sort_small(scratch[:m])
        n = 0
        for i in range(m):
            if n == size:
                break
            out[n] = scratch[i]
            n += n == 0 or out[n - 1] != scratch[i]
        return n
    n = 0
    for i in range(m):
        h = scratch[i]
        if n == size and h >= out[n - 1]:
            continue
        # insertion into the sorted prefix, skipping a hash already kept
        j = n
        while j > 0 and out[j - 1] > h:
            j -= 1
        if j > 0 and out[j - 1] == h:
            continue
        last = n if n < size else size - 1
        for q in range(last, j, -1):
            out[q] = out[q - 1]
        out[j] = h
        if n < size:
            n += 1
    return n


@njit(parallel=True, cache=True, nogil=True)
def sketch_windows(seq, starts, stops, k, codes, size, below, nthreads):
    """Sketches of the windows ``seq[starts[w]:stops[w]]`` (``_sketch_one``):
    ``(features[n, size], counts[n])``; ``nthreads`` sets how finely they are shared out."""
    n = starts.size
    features = np.zeros((n, size), np.uint32)
    counts = np.zeros(n, np.int64)
    chunks = min(n, 64 * nthreads)
    longest = np.max(stops - starts) if n else 0
    for c in prange(chunks):
        scratch = np.empty(longest, np.uint32)
        for w in range(c * n // chunks, (c + 1) * n // chunks):
            counts[w] = _sketch_one(seq, starts[w], stops[w], k, codes, size, below,
                                    features[w], scratch)
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
def _best_targets(locations, span, targets, hits):
    """Sorted locations -> the ``targets.size`` targets (distinct) with the most hits within
    ``span`` consecutive windows, best first, into ``targets`` and ``hits`` (-1 and 0 where
    there are fewer). Of two with as many hits, the lower-numbered target comes first."""
    targets[:] = -1
    hits[:] = 0
    n = locations.size
    lo = 0
    in_span = 0
    best = 0
    for hi in range(n):
        target = np.int64(locations[hi] >> _WINDOW_SHIFT)
        window = np.int64(locations[hi] & _WINDOW_MASK)
        if np.int64(locations[lo] >> _WINDOW_SHIFT) != target:  # a new target begins at hi
            lo = hi
            in_span = 0
            best = 0
        while np.int64(locations[lo] & _WINDOW_MASK) + span <= window:
            lo += 1
            in_span -= 1
        in_span += 1
        if in_span > best:
            best = in_span
        last_of_target = hi + 1 == n or np.int64(locations[hi + 1] >> _WINDOW_SHIFT) != target
        if last_of_target:
            j = targets.size
            while j > 0 and hits[j - 1] < best:
                j -= 1
            if j < targets.size:
                for m in range(targets.size - 1, j, -1):
                    targets[m] = targets[m - 1]
                    hits[m] = hits[m - 1]
                targets[j] = target
                hits[j] = best


@njit(inline="always", cache=True, nogil=True)
def _window_count(length, k, window, stride):
    """Windows of a sequence of ``length`` bases: ``1 + ceil((length - window) / stride)``, one
    if it is shorter than a window, none if shorter than k (``classify.windows_of``)."""
    if length < k:
        return 0
    extra = max(length - window, 0)
    return 1 + (extra + stride - 1) // stride


@njit(inline="always", cache=True, nogil=True)
def _unpack_run(run):
    """``(start, count)`` of a run packed as ``locations.pack_runs`` packs it."""
    return np.int64(run >> _RUN_START_SHIFT), np.int64(run & _RUN_COUNT_MASK)


@njit(inline="always", cache=True, nogil=True)
def _find_runs(features_table, locations, features, n, homes, runs):
    """Each of the ``n`` features' run of locations (packed as ``locations.pack_runs``; 0 for
    a feature the index lacks) into ``runs``; returns how many locations they hold in all.

    The home buckets are prefetched first, all of them, and only then probed: the probes of one
    read are independent, so their cache misses overlap instead of following one another; each
    run's first line is prefetched as soon as its start is known, for the same reason."""
    table = features_table
    for j in range(n):
        homes[j] = K.bucket_of(features[j], table.n_buckets, table.seed, table.tomb)
        if homes[j] >= 0:
            prefetch(table.slots, homes[j] * table.bucket_size * table.slots.shape[1])
    total = 0
    for j in range(n):
        row = K.find_slot(table.slots, table.n_buckets, table.bucket_size, table.tomb,
                          table.state, features[j], homes[j])
        runs[j] = table.slots[row, 1] if row >= 0 else np.uint64(0)
        start, count = _unpack_run(runs[j])
        if count:
            prefetch(locations, start)
        total += count
    return total


@njit(inline="always", cache=True, nogil=True)
def _copy_runs(locations, runs, n, out):
    """The locations of the ``n`` runs, one after another, into ``out``."""
    at = 0
    for j in range(n):
        start, count = _unpack_run(runs[j])
        for i in range(count):
            out[at + i] = locations[start + i]
        at += count


@njit(parallel=True, cache=True, nogil=True)
def classify_reads(text, offsets, lengths, k, codes, sketch_size, below, window, stride,
                   features_table, locations, target_taxon, parents, ranks, hits_min,
                   diff_fraction, candidates, nthreads):
    """Per read ``text[offsets[r]:offsets[r] + lengths[r]]``: ``(taxon row or -1, hits of the
    best target)``, looking its features up in a ``LocationIndex`` (``features_table``: its
    HashMap's ref; ``locations``: its array of locations); a window's sketch is as
    ``_sketch_one``'s with ``sketch_size`` and ``below``, the taxon the lowest common ancestor
    of the best of ``candidates`` targets that are close (module docstring).

    One pass per read, all in compiled code: sketch its windows, gather their features'
    locations straight from the index (no batch-wide arrays of features or of locations), sort
    them, and score."""
    n_reads = lengths.size
    taxon = np.full(n_reads, -1, np.int64)
    best_hits = np.zeros(n_reads, np.int64)
    chunks = min(n_reads, 4 * nthreads)
    for c in prange(chunks):
        features = np.empty(4 * sketch_size, np.uint32)
        homes = np.empty(features.size, np.int64)
        runs = np.empty(features.size, np.uint64)
        buffer = np.empty(4096, np.uint64)
        scratch = np.empty(window, np.uint32)
        best = np.empty(candidates, np.int64)
        hits = np.empty(candidates, np.int64)
        for r in range(c * n_reads // chunks, (c + 1) * n_reads // chunks):
            n_windows = _window_count(lengths[r], k, window, stride)
            if n_windows * sketch_size > features.size:
                features = np.empty(n_windows * sketch_size, np.uint32)
                homes = np.empty(features.size, np.int64)
                runs = np.empty(features.size, np.uint64)
            n = 0
            for w in range(n_windows):
                start = offsets[r] + w * stride
                stop = min(start + window, offsets[r] + lengths[r])
                n += _sketch_one(text, start, stop, k, codes, sketch_size, below, features[n:],
                                 scratch)
            total = _find_runs(features_table, locations, features, n, homes, runs)
            if total == 0:
                continue
            if total > buffer.size:
                buffer = np.empty(2 * total, np.uint64)
            _copy_runs(locations, runs, n, buffer)
            gathered = buffer[:total]
            _sort_small(gathered)
            _best_targets(gathered, 2 + lengths[r] // stride, best, hits)
            best_hits[r] = hits[0]
            if hits[0] < hits_min or best[0] < 0:
                continue
            threshold = (hits[0] - hits_min) * diff_fraction if hits[0] > hits_min else 0.0
            row = target_taxon[best[0]]
            for j in range(1, candidates):
                if best[j] >= 0 and hits[j] > threshold:
                    row = lowest_common_ancestor(row, target_taxon[best[j]], parents, ranks)
            taxon[r] = row
    return taxon, best_hits
