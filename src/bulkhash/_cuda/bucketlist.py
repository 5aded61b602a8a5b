"""numba-cuda kernels of ``BucketListMap`` on a GPU.

The layout is the CPU's (``bulkhash._cpu.bucketlist``): records ``[count, head, tail,
tail_fill]`` per key id, buckets ``[start, size, next]``, one value pool, all device arrays; the
key index is a GPU ``OpenTable``. New buckets are bumped off the pool with atomic adds, as on the
CPU.

An append keeps insertion order the way the GPU ``MultiMap`` does (``bulkhash._cuda.multi``):
the batch is grouped by key (``grouped_order``: a scratch hash table of batch positions, a
prefix sum, each key's positions sorted), and one thread per key appends that key's pairs in
array order. A lookup is one thread per key: the count from its record, then a walk of its
buckets, each a contiguous run of the pool.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .._cpu.bucketlist import (APPENDED, COUNT, FULL, GARBAGE, HEAD, MAX_REACHED, N_BUCKETS,
                               N_CODES, NEW_KEY, NEXT, NO_KEY, POOL_FULL, POOL_TOP, SIZE, START,
                               TAIL, TAIL_FILL, VALUES, next_bucket_size)
from .backend import empty, filled
from .kernels import BLOCK, blocks, tally
from .multi import CudaMultiBackend, _take, grouped_order, offsets_of, repeat_keys


@cuda.jit(device=True)
def _allocate(buckets, pool_size, state, size):
    """A new bucket of ``size`` pool slots, or -1 (``bulkhash._cpu.bucketlist._allocate``)."""
    bid = cuda.atomic.add(state, N_BUCKETS, 1)
    if bid >= buckets.shape[0]:
        return np.int64(-1)
    start = cuda.atomic.add(state, POOL_TOP, size)
    if start + size > pool_size:
        buckets[bid, SIZE] = 0
        buckets[bid, NEXT] = -1
        return np.int64(-1)
    buckets[bid, START] = start
    buckets[bid, SIZE] = size
    buckets[bid, NEXT] = -1
    return bid


@cuda.jit
def append_groups(records, buckets, pool, state, kids, values, vstride, order, offsets, n_groups,
                  max_per_key, min_size, max_size, grow, budget, outcome):
    """One thread per key of the batch appends its pairs in array order."""
    g = cuda.grid(1)
    if g >= n_groups:
        return
    lo = offsets[g]
    hi = offsets[g + 1]
    kid = kids[order[lo]]
    stored = np.int64(0)
    failed = 0  # 1: the budget ran out for this key, 2: the pool did
    for r in range(lo, hi):
        i = order[r]
        if kid < 0:
            outcome[i] = NO_KEY
            continue
        held = records[kid, COUNT]
        code = FULL
        if max_per_key >= 0 and held >= max_per_key:
            code = MAX_REACHED
        elif failed != 0:
            code = POOL_FULL if failed == 2 else FULL
        elif not _take(budget, 0):
            code = FULL
        else:
            tail = records[kid, TAIL]
            fill = records[kid, TAIL_FILL]
            if tail < 0 or fill == buckets[tail, SIZE]:
                size = np.int64(next_bucket_size(0 if tail < 0 else buckets[tail, SIZE],
                                                 min_size, max_size, grow))
                bid = _allocate(buckets, pool.size, state, size)
                if bid < 0:
                    cuda.atomic.add(budget, 0, 1)
                    code = POOL_FULL
                else:
                    if tail < 0:
                        records[kid, HEAD] = bid
                    else:
                        buckets[tail, NEXT] = bid
                    records[kid, TAIL] = bid
                    tail = bid
                    fill = 0
            if code != POOL_FULL:
                pool[buckets[tail, START] + fill] = values[i * vstride]
                records[kid, TAIL_FILL] = fill + 1
                records[kid, COUNT] = held + 1
                stored += 1
                code = NEW_KEY if held == 0 else APPENDED
        if code == FULL:
            failed = 1  # later pairs of the key fail too: the stored ones stay a prefix
        elif code == POOL_FULL:
            failed = 2
        outcome[i] = code
    cuda.atomic.add(state, VALUES, stored)


@cuda.jit
def kids_of(words, found, kids):
    """Key ids (-1 where the key is absent) from the index's value words."""
    i = cuda.grid(1)
    if i < words.size:
        kids[i] = np.int64(words[i]) if found[i] else -1


@cuda.jit
def counts_of(records, kids, out):
    i = cuda.grid(1)
    if i < kids.size:
        out[i] = records[kids[i], COUNT] if kids[i] >= 0 else 0


@cuda.jit
def fill(records, buckets, pool, kids, offsets, out):
    """The fill pass of ``get`` (one thread per key)."""
    i = cuda.grid(1)
    if i >= kids.size or kids[i] < 0:
        return
    kid = kids[i]
    left = records[kid, COUNT]
    bid = records[kid, HEAD]
    at = offsets[i]
    while left > 0 and bid >= 0:
        start = buckets[bid, START]
        take = min(left, buckets[bid, SIZE])
        for j in range(take):
            out[at + j] = pool[start + j]
        at += take
        left -= take
        bid = buckets[bid, NEXT]


@cuda.jit
def release(records, buckets, state, kids, removed, positions):
    """Empty the records of erased key ids (one thread each); ``removed[positions[j]]``: the
    values key ``kids[j]`` held."""
    j = cuda.grid(1)
    if j >= kids.size:
        return
    kid = kids[j]
    held = records[kid, COUNT]
    removed[positions[j]] = held
    garbage = np.int64(0)
    bid = records[kid, HEAD]
    while bid >= 0:
        garbage += buckets[bid, SIZE]
        bid = buckets[bid, NEXT]
    records[kid, COUNT] = 0
    records[kid, HEAD] = -1
    records[kid, TAIL] = -1
    records[kid, TAIL_FILL] = 0
    cuda.atomic.add(state, GARBAGE, garbage)
    cuda.atomic.add(state, VALUES, -held)


@cuda.jit
def clamp_counters(state, n_buckets_cap, pool_cap):
    """Failed allocations leave the bump counters past the arrays: clamp them."""
    if cuda.grid(1) == 0:
        state[N_BUCKETS] = min(state[N_BUCKETS], n_buckets_cap)
        state[POOL_TOP] = min(state[POOL_TOP], pool_cap)


class CudaBucketKernels:
    """What ``BucketListMap``'s engine calls on a GPU (the key index has its own backend)."""

    @staticmethod
    def kids(words, found):
        out = empty(words.size, np.int64)
        if words.size:
            kids_of[blocks(words.size), BLOCK](words, found, out)
        return out

    def append(self, t, kids, values, max_per_key: int, budget: int, keys=None):
        n = kids.size
        outcome = empty(n, np.uint8)
        if n == 0:
            return outcome, np.zeros(N_CODES, np.int64)
        order, offsets, n_groups = grouped_order(keys, t.seed)
        budget_word = cuda.to_device(np.array([max(budget, 0)], np.int64))
        vstride = 1 if values.size == n else 0
        append_groups[blocks(n_groups), BLOCK](
            t.records, t.buckets, t.pool, t.state, kids, values, vstride, order, offsets,
            n_groups, max_per_key, t.min_size, t.max_size, t.grow, budget_word, outcome)
        clamp_counters[1, 1](t.state, t.buckets.shape[0], t.pool.size)
        counts = filled(8, np.int64, 0)
        tally[blocks(n), BLOCK](outcome, counts)
        return outcome, counts.copy_to_host()

    def counts(self, t, kids):
        out = empty(kids.size, np.int64)
        if kids.size:
            counts_of[blocks(kids.size), BLOCK](t.records, kids, out)
        return out

    @staticmethod
    def offsets(counts):
        return offsets_of(counts)

    def fill(self, t, kids, offsets, total: int):
        out = empty(total, t.word)
        if total:
            fill[blocks(kids.size), BLOCK](t.records, t.buckets, t.pool, kids, offsets, out)
        return out

    def release(self, t, kids, removed, positions) -> None:
        if kids.size:
            release[blocks(kids.size), BLOCK](t.records, t.buckets, t.state, kids, removed,
                                              positions)

    @staticmethod
    def repeat(keys, offsets):
        total = int(offsets[keys.size])
        out = empty(total, keys.dtype)
        if total:
            repeat_keys[blocks(keys.size), BLOCK](keys, offsets, out)
        return out

    positive = staticmethod(CudaMultiBackend.positive)
