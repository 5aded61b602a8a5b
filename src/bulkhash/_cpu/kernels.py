"""Numba CPU kernels of the open-addressing table behind HashMap, HashSet and Counter.

Memory layout
-------------
One C-contiguous 2-D array of unsigned words, ``slots[n_slots + 2, words_per_slot]``::

    row:     0     1     2     3  |  4     5  ...       | n_slots   n_slots+1
           [k v] [k v] [k v] [k v] | [k v] [k v] ...     | [0 v]     [~0 v]
           \\____ bucket 0 _______/ \\____ bucket 1 ___   | special rows

* A word is ``uint64`` when the key or the value needs more than 4 bytes, else ``uint32``;
  column 0 holds the key's bits, column 1 (maps only; a set has one column) the value's bits.
* Slots are grouped in buckets of one 64-byte cache line (4, 8 or 16 slots). The array is
  allocated 64-byte aligned, so a bucket never straddles two lines: a lookup that finds its key in
  the home bucket -- nearly all of them below load 0.9 -- touches exactly one cache line, key and
  value together. That is why keys and values are interleaved rather than kept in two arrays.
* Two key words are reserved inside the buckets: ``0`` marks an empty slot (so a fresh table is
  ``np.zeros`` -- pages the OS hands out lazily and already zeroed) and all-ones marks a
  tombstone. Users may still store those two keys: each has a row of its own after the buckets,
  with a presence flag in ``state``. Reserved keys are the library's problem, not the user's.

Probe sequence: linear over buckets (``bulkhash.probing``). Within a bucket, slots fill in order,
so a lookup may stop at the first empty slot it meets.

Every parallel kernel takes ``nthreads`` (``numba.get_num_threads()``) from its caller: calling
that inside a kernel embeds a runtime address and Numba then refuses to cache the kernel on disk.

Parallel mutation without locks or atomics
------------------------------------------
An insert batch must mean what inserting its keys one at a time in array order means, on every
run. Splitting the *input* between threads cannot promise that (two threads holding the same key
race). So mutations split the *table*: with T threads, thread p owns the bucket range
``[p*B/T, (p+1)*B/T)`` and scans the whole batch in order, handling only keys whose home bucket it
owns. Every occurrence of a key has the same home, so all of them are handled by one thread, in
array order; threads never write the same bucket, so no atomics are needed. A probe that would
leave the thread's range (rare: only near a range's end) marks its key DEFERRED; a serial pass
then handles deferred keys in array order. Every occurrence of a key after a deferred one is
deferred too (the state it would see is unchanged), so the order of each key's occurrences is
kept. The scan of the whole batch per thread costs one sequential read of the keys, cheap beside
the random bucket accesses it orders.

Each thread hashes ``PREFETCH_DISTANCE`` keys ahead of the one it probes, remembers those home
buckets in a small ring, and prefetches the ones it owns. Lookups need no ordering: they split the
input into chunks and do the same prefetching per chunk.

Capacity is a budget of new keys per call, split evenly between the threads; a thread that has
spent its share defers further new keys to the serial pass, which spends what the others left.
A key that finds no budget there is FULL; the caller grows the table or reports it.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange
from numba.cpython.unsafe.numbers import trailing_zeros

from ..hashing import hash_key, home_bucket
from ..probing import next_bucket
from .intrinsics import (atomic_add, bits_to_f32, bits_to_f64, cas, f32_to_bits, f64_to_bits,
                         prefetch)

# --- per-key outcome codes (uint8) ---------------------------------------------------------------
NEW = 1  # key was absent and is now stored
UPDATED = 2  # key was present; its value was combined
FULL = 3  # key was absent and there was no room (budget spent / no free slot)
DEFERRED = 4  # internal: handled by the serial pass
REMOVED = 5  # erase: key was present and is gone
NOT_FOUND = 6  # erase: key was absent
SATURATED = 0x80  # flag or-ed into UPDATED: a saturating add clipped at the maximum
CODE_MASK = 0x7F

# --- the state vector (int64), shared with refs --------------------------------------------------
SIZE = 0  # keys stored, special rows included
TOMBSTONES = 1  # slots holding a tombstone
HAS_EMPTY_KEY = 2  # key word 0 is stored in row n_slots
HAS_TOMB_KEY = 3  # key word ~0 is stored in row n_slots + 1
CAPACITY = 4  # keys the table may hold before it must grow (refs check it)
GENERATION = 5  # bumped whenever the slot array is replaced (stale refs detect it)
REF_FAILED = 6  # inserts through a ref that found no room
STATE_LEN = 8

# --- how a duplicate key combines its values (on_duplicate) --------------------------------------
OP_OVERWRITE, OP_KEEP, OP_ADD, OP_MIN, OP_MAX, OP_SATURATING_ADD = 0, 1, 2, 3, 4, 5
# --- what the value bits mean ---------------------------------------------------------------------
KIND_UINT, KIND_INT, KIND_FLOAT = 0, 1, 2

PREFETCH_DISTANCE = 16  # keys hashed ahead; a power of two (the ring index is a mask)
_RING_MASK = PREFETCH_DISTANCE - 1
_SERIAL_BELOW = 1 << 14  # batches smaller than this run on one thread
_U64_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


# ================================================================================================
# value arithmetic on raw bits
# ================================================================================================


@njit(inline="always", cache=True, nogil=True)
def _width_mask(nbytes):
    if nbytes >= 8:
        return _U64_ONES
    return (np.uint64(1) << np.uint64(8 * nbytes)) - np.uint64(1)


@njit(inline="always", cache=True, nogil=True)
def _as_signed(bits, nbytes):
    shift = np.uint64(64 - 8 * nbytes)
    return np.int64(bits << shift) >> np.int64(64 - 8 * nbytes)


@njit(inline="always", cache=True, nogil=True)
def _float_op(a, b, op):
    if a != a:  # NaN propagates, as in np.minimum / np.maximum / +
        return a
    if b != b:
        return b
    if op == OP_ADD:
        return a + b
    if op == OP_MIN:
        return b if b < a else a
    return b if b > a else a


@njit(inline="always", cache=True, nogil=True)
def combine(old, new, op, kind, nbytes):
    """Combine a stored value with an incoming one (both raw bits); returns (bits, saturated)."""
    o = np.uint64(old)
    n = np.uint64(new)
    if op == OP_OVERWRITE:
        return n, False
    if op == OP_KEEP:
        return o, False
    mask = _width_mask(nbytes)
    if kind == KIND_FLOAT:
        if nbytes == 8:
            return f64_to_bits(_float_op(bits_to_f64(o), bits_to_f64(n), op)), False
        r32 = _float_op(bits_to_f32(np.uint32(o)), bits_to_f32(np.uint32(n)), op)
        return np.uint64(f32_to_bits(r32)), False
    if op == OP_ADD:
        return (o + n) & mask, False
    if op == OP_SATURATING_ADD:
        s = o + n
        if s < o or s > mask:
            return mask, True
        return s, False
    if kind == KIND_INT:
        a = _as_signed(o, nbytes)
        b = _as_signed(n, nbytes)
        pick_new = b < a if op == OP_MIN else b > a
    else:
        pick_new = n < o if op == OP_MIN else n > o
    return (n if pick_new else o), False


# ================================================================================================
# single-key probes
# ================================================================================================


@njit(inline="always", cache=True, nogil=True)
def bucket_of(key, n_buckets, seed, tomb):
    """Home bucket of a key word, or -1 for the two reserved words (they live in special rows)."""
    k = np.uint64(key)
    if k == 0 or k == tomb:
        return np.int64(-1)
    return home_bucket(hash_key(k, seed), n_buckets)


@njit(inline="always", cache=True, nogil=True)
def special_row(key, n_slots):
    """(row, state flag index) of a reserved key word."""
    if np.uint64(key) == 0:
        return n_slots, HAS_EMPTY_KEY
    return n_slots + 1, HAS_TOMB_KEY


@njit(inline="always", cache=True, nogil=True)
def scan_bucket(slots, base, bsize, key, tomb):
    """Look at every slot of one bucket: (row of ``key`` or -1, first free row or -1, whether a
    slot is empty).

    Branch-free on purpose (the compiler turns the selects into conditional moves): where a key
    sits in its bucket is random, so a loop that exits on a match mispredicts for most keys, and
    each misprediction also throws away the loads the CPU had started for the keys after it.
    """
    match = np.int64(-1)
    free = np.int64(-1)
    empty = False
    for j in range(bsize):
        w = np.uint64(slots[base + j, 0])
        match = base + j if w == key else match
        is_empty = w == 0
        free = base + j if (free < 0) & (is_empty | (w == tomb)) else free
        empty |= is_empty
    return match, free, empty


@njit(inline="always", cache=True, nogil=True)
def find_slot(slots, n_buckets, bsize, tomb, state, key, bucket):
    """Row holding ``key`` or -1. ``bucket`` is ``bucket_of(key)`` (-1 for a reserved key)."""
    k = np.uint64(key)
    if bucket < 0:
        row, flag = special_row(k, n_buckets * bsize)
        return row if state[flag] != 0 else -1
    b = bucket
    for _ in range(n_buckets):
        match, _, empty = scan_bucket(slots, b * bsize, bsize, k, tomb)
        if match >= 0:
            return match
        if empty:  # slots fill in probe order: the key cannot be further on
            return np.int64(-1)
        b = next_bucket(b, n_buckets)
    return np.int64(-1)


@njit(inline="always", cache=True, nogil=True)
def _store_value(slots, row, value, op, kind, nbytes):
    """Combine ``value`` into an existing row; returns True if a saturating add clipped."""
    if slots.shape[1] < 2:
        return False
    bits, saturated = combine(slots[row, 1], value, op, kind, nbytes)
    slots[row, 1] = bits
    return saturated


@njit(inline="always", cache=True, nogil=True)
def _upsert_regular(slots, n_buckets, bsize, tomb, key, value, bucket, hi, wrap, allow_new,
                    no_room, op, kind, nbytes):
    """Insert or combine one non-reserved key, probing from ``bucket``.

    Without ``wrap`` the probe may not reach bucket ``hi`` (another thread's range): it returns
    DEFERRED there. Returns (code, saturated, reused_tombstone).
    """
    k = np.uint64(key)
    free = np.int64(-1)
    b = bucket
    for _ in range(n_buckets):
        match, bucket_free, empty = scan_bucket(slots, b * bsize, bsize, k, tomb)
        if match >= 0:
            return UPDATED, _store_value(slots, match, value, op, kind, nbytes), False
        if free < 0:
            free = bucket_free
        if empty:  # the key is absent: take the first free slot met on the way
            return _place(slots, tomb, free, k, value, allow_new, no_room)
        b += 1
        if b == hi:
            if not wrap:
                return DEFERRED, False, False
            b = np.int64(0)
    if free >= 0:  # went all the way round: only tombstones were free
        return _place(slots, tomb, free, k, value, allow_new, no_room)
    return FULL, False, False


@njit(inline="always", cache=True, nogil=True)
def _place(slots, tomb, row, key, value, allow_new, no_room):
    if not allow_new:
        return no_room, False, False
    reused = np.uint64(slots[row, 0]) == tomb
    slots[row, 0] = key
    if slots.shape[1] > 1:
        slots[row, 1] = value
    return NEW, False, reused


@njit(inline="always", cache=True, nogil=True)
def _erase_regular(slots, n_buckets, bsize, key, bucket, hi, wrap, tomb):
    """Remove one non-reserved key. Returns (code, tombstones added)."""
    k = np.uint64(key)
    b = bucket
    for _ in range(n_buckets):
        row, _, empty = scan_bucket(slots, b * bsize, bsize, k, tomb)
        if row >= 0:
            if slots.shape[1] > 1:
                slots[row, 1] = 0  # a free slot's value is 0: refs add onto it when they claim it
            # The slot may become empty again (no tombstone) when the next slot of its bucket
            # is empty: no probe can have passed through it to a key further on.
            if (row + 1) % bsize != 0 and np.uint64(slots[row + 1, 0]) == 0:
                slots[row, 0] = 0
                return REMOVED, 0
            slots[row, 0] = tomb
            return REMOVED, 1
        if empty:
            return NOT_FOUND, 0
        b += 1
        if b == hi:
            if not wrap:
                return DEFERRED, 0
            b = np.int64(0)
    return NOT_FOUND, 0


# ================================================================================================
# bulk kernels
# ================================================================================================

ACTION_UPSERT = 0
ACTION_ERASE = 1


@njit(inline="always", cache=True, nogil=True)
def _count(tally, row, code):
    """Count one final outcome in row ``row`` of a 2-D tally (column 0: saturated)."""
    tally[row, code & CODE_MASK] += 1
    if code & SATURATED:
        tally[row, 0] += 1


@njit(inline="always", cache=True, nogil=True)
def _mutate_one(slots, n_buckets, bsize, tomb, state, key, value, bucket, hi, wrap, allow_new,
                no_room, action, op, kind, nbytes):
    """One key of a mutation batch. Returns (outcome byte, new keys, tombstone delta)."""
    if bucket < 0:  # a reserved key word: only the serial pass touches the special rows
        if not wrap:
            return DEFERRED, 0, 0
        row, flag = special_row(key, n_buckets * bsize)
        present = state[flag] != 0
        if action == ACTION_ERASE:
            state[flag] = 0
            return (REMOVED, -1, 0) if present else (NOT_FOUND, 0, 0)
        if present:
            sat = _store_value(slots, row, value, op, kind, nbytes)
            return UPDATED | (SATURATED if sat else 0), 0, 0
        if not allow_new:
            return FULL, 0, 0
        state[flag] = 1
        slots[row, 0] = key
        if slots.shape[1] > 1:
            slots[row, 1] = value
        return NEW, 1, 0
    if action == ACTION_ERASE:
        code, tombs = _erase_regular(slots, n_buckets, bsize, key, bucket, hi, wrap, tomb)
        return code, (-1 if code == REMOVED else 0), tombs
    code, sat, reused = _upsert_regular(slots, n_buckets, bsize, tomb, key, value, bucket, hi, wrap,
                                        allow_new, no_room, op, kind, nbytes)
    if code == NEW:
        return NEW, 1, (-1 if reused else 0)
    return code | (SATURATED if sat else 0), 0, 0


@njit(parallel=True, nogil=True, cache=True)
def mutate(slots, n_buckets, bsize, seed, tomb, state, keys, values, action, op, kind, nbytes,
           budget, outcome, tally, nthreads):
    """Upsert (``action=ACTION_UPSERT``) or erase a batch; writes one outcome byte per key.

    ``values`` is ignored for erase and for sets (pass an empty array); one value for a longer
    batch is used for every key. ``budget`` is how many new keys may go in.
    Updates ``state[SIZE]`` and ``state[TOMBSTONES]``. ``tally`` (int64, length 8) receives how
    many keys ended with each outcome code, and at index 0 how many saturated.
    """
    n = keys.size
    has_values = values.size > 0
    vstride = 1 if values.size == n else 0
    words = slots.shape[1]
    nparts = min(nthreads, n_buckets)
    if n < _SERIAL_BELOW:
        nparts = 1
    new_per_part = np.zeros(nparts, np.int64)
    tomb_per_part = np.zeros(nparts, np.int64)
    tally_per_part = np.zeros((nparts + 1, 8), np.int64)  # last row: the serial pass
    for p in prange(nparts):
        lo = p * n_buckets // nparts
        hi = (p + 1) * n_buckets // nparts
        quota = budget // nparts + (1 if p < budget % nparts else 0)
        added = 0
        tomb_delta = 0
        ring = np.empty(PREFETCH_DISTANCE, np.int64)
        for i in range(min(n, PREFETCH_DISTANCE)):
            ring[i] = bucket_of(keys[i], n_buckets, seed, tomb)
        for i in range(n):
            b = ring[i & _RING_MASK]
            ahead = i + PREFETCH_DISTANCE
            if ahead < n:
                b_ahead = bucket_of(keys[ahead], n_buckets, seed, tomb)
                ring[ahead & _RING_MASK] = b_ahead
                if lo <= b_ahead < hi:
                    prefetch(slots, b_ahead * bsize * words)
            if b < 0:
                if p == 0:
                    outcome[i] = DEFERRED
                continue
            if b < lo or b >= hi:
                continue
            value = values[i * vstride] if has_values else slots[0, 0]
            code, d_size, d_tomb = _mutate_one(slots, n_buckets, bsize, tomb, state, keys[i],
                                               value, b, hi, False, added < quota, DEFERRED,
                                               action, op, kind, nbytes)
            outcome[i] = code
            if code != DEFERRED:
                _count(tally_per_part, p, code)
            added += d_size
            tomb_delta += d_tomb
        new_per_part[p] = added
        tomb_per_part[p] = tomb_delta
    added = new_per_part.sum()
    tomb_delta = tomb_per_part.sum()
    for i in range(n):  # the serial pass, in array order
        if outcome[i] != DEFERRED:
            continue
        key = keys[i]
        value = values[i * vstride] if has_values else slots[0, 0]
        code, d_size, d_tomb = _mutate_one(slots, n_buckets, bsize, tomb, state, key, value,
                                           bucket_of(key, n_buckets, seed, tomb), n_buckets, True,
                                           added < budget, FULL, action, op, kind, nbytes)
        outcome[i] = code
        _count(tally_per_part, nparts, code)
        added += d_size
        tomb_delta += d_tomb
    for p in range(nparts + 1):
        for c in range(8):
            tally[c] += tally_per_part[p, c]
    state[SIZE] += added
    state[TOMBSTONES] += tomb_delta


@njit(parallel=True, nogil=True, cache=True)
def lookup(slots, n_buckets, bsize, seed, tomb, state, keys, default, out_values, out_found,
           nthreads):
    """For each key: ``out_found[i]`` and, if ``out_values`` is non-empty, its value bits
    (``default`` where absent)."""
    n = keys.size
    want_values = out_values.size > 0
    words = slots.shape[1]
    nchunks = 1 if n < _SERIAL_BELOW else 4 * nthreads
    chunk = (n + nchunks - 1) // nchunks
    for c in prange(nchunks):
        start = c * chunk
        stop = min(n, start + chunk)
        ring = np.empty(PREFETCH_DISTANCE, np.int64)
        for i in range(start, min(stop, start + PREFETCH_DISTANCE)):
            ring[i & _RING_MASK] = bucket_of(keys[i], n_buckets, seed, tomb)
        for i in range(start, stop):
            b = ring[i & _RING_MASK]
            ahead = i + PREFETCH_DISTANCE
            if ahead < stop:
                b_ahead = bucket_of(keys[ahead], n_buckets, seed, tomb)
                ring[ahead & _RING_MASK] = b_ahead
                if b_ahead >= 0:
                    prefetch(slots, b_ahead * bsize * words)
            row = find_slot(slots, n_buckets, bsize, tomb, state, keys[i], b)
            out_found[i] = row >= 0
            if want_values:
                out_values[i] = slots[row, 1] if row >= 0 else default


@njit(parallel=True, nogil=True, cache=True)
def collect(slots, n_buckets, bsize, tomb, state, out_keys, out_values, nthreads):
    """Copy every stored key (and value, if ``out_values`` is non-empty) out, in slot order with
    the reserved keys last. The outputs must hold exactly ``state[SIZE]`` entries."""
    n_slots = n_buckets * bsize
    want_values = out_values.size > 0
    nchunks = min(n_buckets, 4 * nthreads)
    per_chunk = np.zeros(nchunks + 1, np.int64)
    for c in prange(nchunks):
        lo = c * n_buckets // nchunks * bsize
        hi = (c + 1) * n_buckets // nchunks * bsize
        count = 0
        for row in range(lo, hi):
            w = np.uint64(slots[row, 0])
            if w != 0 and w != tomb:
                count += 1
        per_chunk[c + 1] = count
    starts = np.cumsum(per_chunk)
    for c in prange(nchunks):
        lo = c * n_buckets // nchunks * bsize
        hi = (c + 1) * n_buckets // nchunks * bsize
        j = starts[c]
        for row in range(lo, hi):
            w = np.uint64(slots[row, 0])
            if w != 0 and w != tomb:
                out_keys[j] = slots[row, 0]
                if want_values:
                    out_values[j] = slots[row, 1]
                j += 1
    j = starts[nchunks]
    for row, flag in ((n_slots, HAS_EMPTY_KEY), (n_slots + 1, HAS_TOMB_KEY)):
        if state[flag] != 0:
            out_keys[j] = slots[row, 0]
            if want_values:
                out_values[j] = slots[row, 1]
            j += 1


# ================================================================================================
# sizing: how many distinct keys does a batch hold?
# ================================================================================================

_HLL_BITS = 12
_HLL_REGISTERS = 1 << _HLL_BITS
_HLL_LOW_MASK = np.uint64((1 << (64 - _HLL_BITS)) - 1)


@njit(parallel=True, nogil=True, cache=True)
def hll_registers(keys, seed, nthreads):
    """HyperLogLog registers (2**12, about 1.6% error) of a batch's key words.

    A growable table uses the estimate to grow once, to the right size, before a large batch:
    ``len + n`` would over-allocate by the batch's multiplicity (k-mers from reads repeat 10-100x).
    """
    n = keys.size
    nchunks = 1 if n < _SERIAL_BELOW else nthreads
    chunk = (n + nchunks - 1) // nchunks
    regs = np.zeros((nchunks, _HLL_REGISTERS), np.uint8)
    for c in prange(nchunks):
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            h = hash_key(keys[i], seed)
            idx = h >> np.uint64(64 - _HLL_BITS)
            # rank: 1 + trailing zeros of the other 52 bits (a guard bit caps it at 53)
            rest = (h & _HLL_LOW_MASK) | (_HLL_LOW_MASK + np.uint64(1))
            rank = np.uint8(trailing_zeros(rest) + 1)
            if rank > regs[c, idx]:
                regs[c, idx] = rank
    out = np.zeros(_HLL_REGISTERS, np.uint8)
    for c in range(nchunks):
        for j in range(_HLL_REGISTERS):
            if regs[c, j] > out[j]:
                out[j] = regs[c, j]
    return out


def estimate_distinct(keys: np.ndarray, seed: int) -> int:
    """HyperLogLog estimate of the number of distinct values in ``keys`` (never above its size)."""
    if keys.size == 0:
        return 0
    regs = hll_registers(keys, np.uint64(seed ^ 0x5851F42D4C957F2D),
                         numba.get_num_threads()).astype(np.float64)
    m = float(_HLL_REGISTERS)
    raw = 0.7213 / (1 + 1.079 / m) * m * m / np.sum(np.exp2(-regs))
    zeros = int(np.count_nonzero(regs == 0))
    if raw <= 2.5 * m and zeros:
        raw = m * np.log(m / zeros)  # linear counting for small sets
    return int(min(keys.size, np.ceil(raw)))


# ================================================================================================
# single-key operations for refs: safe when a user's prange loop calls them from many threads
# ================================================================================================
# Bulk kernels own disjoint bucket ranges and need no atomics. A ref cannot know who else is
# writing, so it claims an empty slot with a compare-and-swap on the key word and counts new keys
# with an atomic add on the shared state vector. Refs never reuse tombstones (a tombstone can be
# claimed by two threads for two different keys only with a second CAS on the value; not worth it).

REF_NEW = 1
REF_FOUND = 0
REF_NO_ROOM = -1


@njit(inline="always", cache=True, nogil=True)
def _ref_combine(slots, row, value, op, kind, nbytes):
    """Atomically combine ``value`` into ``slots[row, 1]`` (a CAS loop; a plain store to
    overwrite)."""
    if slots.shape[1] < 2:
        return
    if op == OP_OVERWRITE:
        slots[row, 1] = value
        return
    flat = row * 2 + 1
    old = slots[row, 1]
    while True:
        bits, _ = combine(old, value, op, kind, nbytes)
        seen = cas(slots.reshape(-1), flat, old, slots.dtype.type(bits))
        if seen == old:
            return
        old = seen


@njit(inline="always", cache=True, nogil=True)
def _ref_room_left(state):
    """Whether the capacity budget allows one more key; if not, the failure is counted.

    Checked *before* claiming a slot and counted after, so a thread that loses the race for a
    slot to the same key never has its addition refused. The price: threads claiming at the same
    instant may each pass the check, so a ref can overshoot ``capacity`` by at most one key per
    concurrent thread (slots always have room for that: the load limit is at most 0.99).
    """
    if atomic_add(state, SIZE, 0) >= state[CAPACITY]:
        atomic_add(state, REF_FAILED, 1)
        return False
    return True


@njit(inline="always", cache=True, nogil=True)
def ref_upsert(slots, state, n_buckets, bsize, seed, tomb, key, value, op, kind, nbytes):
    """Insert or combine one key word from any thread. Returns REF_NEW, REF_FOUND or REF_NO_ROOM."""
    k = np.uint64(key)
    word = slots.dtype.type
    flat = slots.reshape(-1)
    words = slots.shape[1]
    if k == 0 or k == tomb:
        row, flag = special_row(k, n_buckets * bsize)
        if atomic_add(state, flag, 0) == 0:
            if not _ref_room_left(state):
                return REF_NO_ROOM
            if cas(state, flag, 0, 2) == 0:  # 2: being written
                slots[row, 0] = word(k)
                if words > 1:
                    slots[row, 1] = value
                atomic_add(state, SIZE, 1)
                atomic_add(state, flag, -1)  # 2 -> 1: present
                return REF_NEW
        while atomic_add(state, flag, 0) == 2:  # another thread is writing this row (atomic read)
            pass
        _ref_combine(slots, row, value, op, kind, nbytes)
        return REF_FOUND
    b = home_bucket(hash_key(k, seed), n_buckets)
    for _ in range(n_buckets):
        base = b * bsize
        for j in range(bsize):
            row = base + j
            w = np.uint64(slots[row, 0])
            if w == 0:
                if not _ref_room_left(state):
                    return REF_NO_ROOM
                seen = np.uint64(cas(flat, row * words, word(0), word(k)))
                if seen == 0:
                    atomic_add(state, SIZE, 1)
                    # Other threads may already be combining into this slot: combine onto the 0
                    # a free slot holds instead of storing over what they added.
                    _ref_combine(slots, row, value, op, kind, nbytes)
                    return REF_NEW
                w = seen  # lost the race: look at who won
            if w == k:
                _ref_combine(slots, row, value, op, kind, nbytes)
                return REF_FOUND
        b = next_bucket(b, n_buckets)
    atomic_add(state, REF_FAILED, 1)
    return REF_NO_ROOM
