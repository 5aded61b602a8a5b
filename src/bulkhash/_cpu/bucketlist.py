"""Numba CPU kernels of ``BucketListMap``: each key's values in a linked list of buckets, the
buckets carved out of one value pool (WarpCore's BucketListHashTable).

Memory layout
-------------
Three arrays besides the key index (an open-addressing ``HashMap`` from key to *key id*, the
engine of ``bulkhash._table``, which holds every key value, 0 and -1 included)::

    records[key id]  = [count, head, tail, tail_fill]     int64 x 4: 32 bytes per key
    buckets[bucket]  = [start, size, next]                int64 x 3: 24 bytes per bucket
    pool[start : start + size]                            a bucket's values, contiguous

A key's first bucket holds ``min_bucket_size`` values; each next one ``grow_factor`` times its
predecessor (at least one more), up to ``max_bucket_size``. A key with m values therefore spans
about log(m) buckets, each a contiguous run of the pool: a lookup reads the key's index slot,
its record and then one run per bucket (a run of 8 uint64 values is one cache line), where a
one-slot-per-pair table (``MultiMap``) reads a slot per value. The price is the unused tail of
each key's last bucket (at most a fraction ``1 - 1/grow_factor`` of its values with no
``max_bucket_size`` cap) and 24 bytes per bucket; ``value_load_factor`` reports the pool's use.

Buckets are allocated by bumping ``state[POOL_TOP]`` and ``state[N_BUCKETS]``: never freed one
by one. Erasing a key releases its buckets as *garbage*, and the table compacts itself (rebuilds
its pool in key order) when garbage passes half the pool.

Refs (``bulkhash.bucketlist_refs``) append from compiled code while no bulk call runs: they take
key ids off ``state[NEXT_ID]`` and pool room off the same counters with atomic adds, and lock a
key's record while they append to it by making its ``tail_fill`` word negative (``-1 - fill``;
a bulk call never sees a locked record: every ref insert unlocks before it returns).

Parallel appends without locks
------------------------------
Appending to a key touches only its record and its tail bucket, so a batch is split by key id:
thread p appends, in array order, the pairs whose key id is p modulo the number of threads. Each
key's pairs are appended by one thread in array order, so a key's values stay in insertion order
on every run; only the pool positions of new buckets (an atomic bump) depend on timing. A thread
that has spent its share of the call's value budget defers its later pairs to a serial pass in
array order, as in ``bulkhash._cpu.kernels``. A bucket the pool (or the bucket array) has no room
for makes the pair ``POOL_FULL``; every later pair of that key in the call fails the same way
(the pool only fills up), and the caller grows the pool and appends those pairs again, in order.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .backend import kernel_gate
from .intrinsics import atomic_add
from .kernels import _SERIAL_BELOW
from .multi import (APPENDED, DEFERRED, FULL, MAX_REACHED, N_CODES, NEW_KEY,  # noqa: F401
                    NO_KEY)

# --- records, buckets --------------------------------------------------------------------------
COUNT, HEAD, TAIL, TAIL_FILL = 0, 1, 2, 3
RECORD_WORDS = 4
START, SIZE, NEXT = 0, 1, 2
BUCKET_WORDS = 3

# --- the state vector (int64) ------------------------------------------------------------------
VALUES = 0  # values stored
POOL_TOP = 1  # pool slots handed out to buckets
N_BUCKETS = 2  # buckets handed out
GARBAGE = 3  # pool slots of erased keys' buckets (reclaimed by compaction)
NEXT_ID = 4  # key ids handed out (the next new key's id; refs take ids with atomic adds)
GENERATION = 5  # bumped whenever an array is replaced (stale refs detect it; as the open tables')
REF_FAILED = 6  # inserts through a ref that found no room (``bulkhash.bucketlist_refs``)
STATE_LEN = 8

# --- per-pair outcome codes of append (uint8): those of ``bulkhash._cpu.multi``, one more ----
POOL_FULL = 6  # not stored yet: no room for a new bucket; the caller grows the pool, retries


@njit(inline="always", cache=True, nogil=True)
def next_bucket_size(size, min_size, max_size, grow):
    """The size of a key's next bucket after one of ``size`` (0: the key has none yet)."""
    if size == 0:
        return np.int64(min_size)
    scaled = size * grow
    grown = np.int64(scaled)
    if grown < scaled:  # (a ceiling by hand: the CUDA target has no np.ceil)
        grown += 1
    return min(max(grown, np.int64(size) + 1), np.int64(max_size))


@njit(inline="always", cache=True, nogil=True)
def _allocate(buckets, pool_size, state, size):
    """A new bucket of ``size`` pool slots: its id, or -1 if the pool or the bucket array has no
    room (the counters may then run past the arrays: the caller clamps them)."""
    bid = atomic_add(state, N_BUCKETS, 1)
    if bid >= buckets.shape[0]:
        return np.int64(-1)
    start = atomic_add(state, POOL_TOP, size)
    if start + size > pool_size:
        buckets[bid, SIZE] = 0  # (a bucket id spent on nothing)
        buckets[bid, NEXT] = -1
        return np.int64(-1)
    buckets[bid, START] = start
    buckets[bid, SIZE] = size
    buckets[bid, NEXT] = -1
    return bid


@njit(inline="always", cache=True, nogil=True)
def append_value(records, buckets, pool, state, kid, value, max_per_key, min_size, max_size,
                 grow, pairs_ok, no_room):
    """Append ``value`` to key ``kid``'s list (this thread owns the key). Returns the code."""
    held = records[kid, COUNT]
    if max_per_key >= 0 and held >= max_per_key:
        return MAX_REACHED
    if not pairs_ok:
        return no_room
    tail = records[kid, TAIL]
    fill = records[kid, TAIL_FILL]
    if tail < 0 or fill == buckets[tail, SIZE]:
        size = next_bucket_size(0 if tail < 0 else buckets[tail, SIZE], min_size, max_size, grow)
        bid = _allocate(buckets, pool.size, state, size)
        if bid < 0:
            return POOL_FULL
        if tail < 0:
            records[kid, HEAD] = bid
        else:
            buckets[tail, NEXT] = bid
        records[kid, TAIL] = bid
        tail = bid
        fill = 0
    pool[buckets[tail, START] + fill] = value
    records[kid, TAIL_FILL] = fill + 1
    records[kid, COUNT] = held + 1
    return NEW_KEY if held == 0 else APPENDED


@njit(parallel=True, nogil=True, cache=True)
def append(records, buckets, pool, state, kids, values, max_per_key, min_size, max_size, grow,
           budget, outcome, tally, nthreads):
    """Append ``values[i]`` to key ``kids[i]`` (-1: the key has no id, NO_KEY), in array order
    per key; at most ``budget`` values. Writes one outcome byte per pair and counts them."""
    n = kids.size
    vstride = 1 if values.size == n else 0
    nparts = 1 if n < _SERIAL_BELOW else nthreads
    stored = np.zeros(nparts, np.int64)
    tallies = np.zeros((nparts + 1, N_CODES), np.int64)
    for p in prange(nparts):
        quota = budget // nparts + (1 if p < budget % nparts else 0)
        done = np.int64(0)
        for i in range(n):
            kid = kids[i]
            if kid < 0:
                if p == 0:
                    outcome[i] = NO_KEY
                    tallies[p, NO_KEY] += 1
                continue
            if kid % nparts != p:
                continue
            code = append_value(records, buckets, pool, state, kid, values[i * vstride],
                                max_per_key, min_size, max_size, grow, done < quota, DEFERRED)
            outcome[i] = code
            if code != DEFERRED:
                tallies[p, code] += 1
                done += code == NEW_KEY or code == APPENDED
        stored[p] = done
    total = stored.sum()
    for i in range(n):  # the serial pass, in array order
        if outcome[i] != DEFERRED:
            continue
        code = append_value(records, buckets, pool, state, kids[i], values[i * vstride],
                            max_per_key, min_size, max_size, grow, total < budget, FULL)
        outcome[i] = code
        tallies[nparts, code] += 1
        total += code == NEW_KEY or code == APPENDED
    for p in range(nparts + 1):
        for c in range(N_CODES):
            tally[c] += tallies[p, c]
    state[VALUES] += total
    state[N_BUCKETS] = min(state[N_BUCKETS], buckets.shape[0])  # (failed allocations overshoot)
    state[POOL_TOP] = min(state[POOL_TOP], pool.size)


@njit(inline="always", cache=True, nogil=True)
def copy_values(records, buckets, pool, kid, out, at):
    """Write key ``kid``'s values, in insertion order, to ``out[at:]``; returns how many."""
    left = records[kid, COUNT]
    bid = records[kid, HEAD]
    written = np.int64(0)
    while left > 0 and bid >= 0:
        start = buckets[bid, START]
        take = min(left, buckets[bid, SIZE])
        for j in range(take):
            out[at + written + j] = pool[start + j]
        written += take
        left -= take
        bid = buckets[bid, NEXT]
    return written


@njit(parallel=True, nogil=True, cache=True)
def counts_of(records, kids, out, nthreads):
    """``out[i]``: the values of key id ``kids[i]`` (0 for -1: an absent key)."""
    n = kids.size
    nparts = 1 if n < _SERIAL_BELOW else 4 * nthreads
    for p in prange(nparts):
        for i in range(p * n // nparts, (p + 1) * n // nparts):
            out[i] = records[kids[i], COUNT] if kids[i] >= 0 else 0


@njit(parallel=True, nogil=True, cache=True)
def fill(records, buckets, pool, kids, offsets, out, nthreads):
    """The fill pass of ``get``: key i's values to ``out[offsets[i]:offsets[i + 1]]``."""
    n = kids.size
    nparts = 1 if n < _SERIAL_BELOW else 4 * nthreads
    for p in prange(nparts):
        for i in range(p * n // nparts, (p + 1) * n // nparts):
            if kids[i] >= 0:
                copy_values(records, buckets, pool, kids[i], out, offsets[i])


@njit(nogil=True, cache=True)
def release(records, buckets, state, kids, removed, positions):
    """Empty the records of erased key ids: their buckets become garbage;
    ``removed[positions[j]]``: the values key ``kids[j]`` held."""
    for j in range(kids.size):
        kid = kids[j]
        held = records[kid, COUNT]
        removed[positions[j]] = held
        bid = records[kid, HEAD]
        while bid >= 0:
            state[GARBAGE] += buckets[bid, SIZE]
            bid = buckets[bid, NEXT]
        records[kid, COUNT] = 0
        records[kid, HEAD] = -1
        records[kid, TAIL] = -1
        records[kid, TAIL_FILL] = 0
        state[VALUES] -= held


class CpuBucketKernels:
    """What ``BucketListMap``'s engine calls on the CPU (the key index has its own backend)."""

    @staticmethod
    def kids(words, found):
        kids = words.astype(np.int64)
        kids[~found] = -1
        return kids

    def append(self, t, kids, values, max_per_key: int, budget: int, keys=None):
        outcome = np.empty(kids.size, np.uint8)
        tally = np.zeros(N_CODES, np.int64)
        with kernel_gate():
            append(t.records, t.buckets, t.pool, t.state, kids, values, max_per_key, t.min_size,
                   t.max_size, t.grow, max(budget, 0), outcome, tally, numba.get_num_threads())
        return outcome, tally

    def counts(self, t, kids):
        out = np.empty(kids.size, np.int64)
        with kernel_gate():
            counts_of(t.records, kids, out, numba.get_num_threads())
        return out

    @staticmethod
    def offsets(counts):
        offsets = np.zeros(counts.size + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return offsets, int(offsets[-1])

    def fill(self, t, kids, offsets, total: int):
        out = np.empty(total, t.word)
        with kernel_gate():
            fill(t.records, t.buckets, t.pool, kids, offsets, out, numba.get_num_threads())
        return out

    def release(self, t, kids, removed, positions) -> None:
        release(t.records, t.buckets, t.state, kids, removed, positions)

    @staticmethod
    def repeat(keys, offsets):
        return np.repeat(keys, np.diff(offsets))

    @staticmethod
    def positive(counts):
        return counts > 0
