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
so a lookup may stop at the first empty slot it meets -- or, in a bulk lookup, as soon as it has
looked as far from home as any key of its home bucket went: a byte per bucket, the *reach map*,
built from the slots when lookups outnumber a share of them (see "the reach map" below). At load
0.9 that cuts a miss from 13 lines to 3.6 (uint64 keys).

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

Each thread works through its keys in blocks, probing them in waves (see "bulk kernels" below):
home buckets are prefetched ``PREFETCH_DISTANCE`` keys ahead, and a key its home bucket does not
settle waits for the next wave with its next bucket prefetched, instead of stalling the thread on a
cache miss. Lookups need no ordering: they split the input into interleaved stripes and probe
them the same way.

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
from ..probing import BUCKET_BYTES, next_bucket
from .intrinsics import (LINE_BYTES, atomic_add, bits_to_f32, bits_to_f64, cas, f32_to_bits,
                         f64_to_bits, line_equal_mask, prefetch)

# --- per-key outcome codes (uint8) ---------------------------------------------------------------
NEW = 1  # key was absent and is now stored
UPDATED = 2  # key was present; its value was combined
FULL = 3  # key was absent and there was no room (budget spent / no free slot)
DEFERRED = 4  # internal: handled by the serial pass
REMOVED = 5  # erase: key was present and is gone
NOT_FOUND = 6  # erase: key was absent
SATURATED = 0x80  # flag or-ed into UPDATED: a saturating add clipped at the maximum
PROBE_LIMIT = 0x40  # flag or-ed into FULL: the probe met every window without room (GPU tables)
CODE_MASK = 0x3F

# --- the state vector (int64), shared with refs --------------------------------------------------
SIZE = 0  # keys stored, special rows included
TOMBSTONES = 1  # slots holding a tombstone
HAS_EMPTY_KEY = 2  # key word 0 is stored in row n_slots
HAS_TOMB_KEY = 3  # key word ~0 is stored in row n_slots + 1
CAPACITY = 4  # keys the table may hold before it must grow (refs check it)
GENERATION = 5  # bumped whenever the slot array is replaced (stale refs detect it)
REF_FAILED = 6  # inserts through a ref that found no room
PLACED = 7  # keys ever placed in a bucket slot: a new value means a reach map may be stale
STATE_LEN = 8

# --- what a mutation does to each key ------------------------------------------------------------
ACTION_UPSERT = 0
ACTION_ERASE = 1

# --- how a duplicate key combines its values (on_duplicate) --------------------------------------
OP_OVERWRITE, OP_KEEP, OP_ADD, OP_MIN, OP_MAX, OP_SATURATING_ADD = 0, 1, 2, 3, 4, 5
# --- what the value bits mean ---------------------------------------------------------------------
KIND_UINT, KIND_INT, KIND_FLOAT = 0, 1, 2

PREFETCH_DISTANCE = 16  # how many keys ahead a wave prefetches home buckets
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
def scan_bucket(slots, b, key, tomb):
    """Look at every slot of bucket ``b``: (row of ``key`` or -1, first free row or -1, whether
    a slot is empty).

    One vector compare per question over the bucket's cache line, like SwissTable's group match
    but on the keys themselves (with 4-16 slots in a line, the keys *are* the control group):
    word ``w`` of the line belongs to slot ``w // words_per_slot``, and only key words count
    (``_MAP_KEY_WORDS`` / ``_SET_KEY_WORDS``). Branch-free on purpose: where a key sits in its
    bucket is random, so a loop that exits on a match mispredicts for most keys, and each
    misprediction also throws away the loads the CPU had started for the keys after it.

    The line's address depends only on the word size, a compile-time constant (a bucket is one
    line whatever the slot width), so it is a shift of ``b``, not a multiply on the critical path
    of every probe (7% of a lookup, measured); rows come from word indices by a shift. Indices
    into ``slots`` are unsigned here and in the probes: Numba wraps a negative *signed* index
    around (``i + len``), a few instructions more on every load that also keep LLVM from folding
    addresses (12% of a lookup, measured). They are never negative.
    """
    words = slots.shape[1]
    first_word = np.uint64(b) * np.uint64(_line_words(slots))
    key_words = _MAP_KEY_WORDS if words == 2 else _SET_KEY_WORDS
    match = line_equal_mask(slots, first_word, key) & key_words
    empty = line_equal_mask(slots, first_word, 0) & key_words
    free = empty | (line_equal_mask(slots, first_word, tomb) & key_words)
    to_row = np.uint64(words - 1)  # word index -> row: a shift by 0 (sets) or 1 (maps)
    row = np.int64((first_word + trailing_zeros(match)) >> to_row) if match != 0 else np.int64(-1)
    free_row = (np.int64((first_word + trailing_zeros(free)) >> to_row) if free != 0
                else np.int64(-1))
    return row, free_row, empty != 0


@njit(inline="always", cache=True, nogil=True)
def _line_words(slots):
    """Words in one bucket's cache line: 8 or 16, a constant for the array's word type."""
    return LINE_BYTES * 8 // np.iinfo(slots.dtype).bits


# Which words of a bucket's line are key words (bits past the line's 8 or 16 words are never set):
# in a set every word, in a map the even ones (key, value, key, value, ...).
_SET_KEY_WORDS = np.uint64(0xFFFF)
_MAP_KEY_WORDS = np.uint64(0x5555)
assert BUCKET_BYTES == LINE_BYTES, "a bucket is the line line_equal_mask compares"


@njit(inline="always", cache=True, nogil=True)
def find_slot(slots, n_buckets, bsize, tomb, state, key, bucket):
    """Row holding ``key`` or -1, probing from ``bucket`` (``bucket_of(key)``: -1 for a reserved
    key; a later bucket of the key's probe sequence continues a probe)."""
    k = np.uint64(key)
    if bucket < 0:
        row, flag = special_row(k, n_buckets * bsize)
        return row if state[flag] != 0 else -1
    b = bucket
    for _ in range(n_buckets):
        match, _, empty = scan_bucket(slots, b, k, tomb)
        if match >= 0:
            return match
        if empty:  # slots fill in probe order: the key cannot be further on
            return np.int64(-1)
        b = next_bucket(b, n_buckets)
    return np.int64(-1)


# --- one bucket of a mutation: the step both the single-key probes and the bulk waves take -------
CONTINUE = 0  # internal step result: the probe goes on to the next bucket
RESTART = 7  # internal step result: a free slot remembered from an earlier bucket was taken


@njit(inline="always", cache=True, nogil=True)
def _store_value(slots, row, value, op, kind, nbytes):
    """Combine ``value`` into an existing row; returns True if a saturating add clipped."""
    if slots.shape[1] < 2:
        return False
    bits, saturated = combine(slots[row, 1], value, op, kind, nbytes)
    slots[row, 1] = bits
    return saturated


@njit(inline="always", cache=True, nogil=True)
def _place(slots, tomb, row, key, value, allow_new, no_room):
    """Store a new key in free ``row``: (code, new keys, tombstone delta)."""
    if not allow_new:
        return no_room, 0, 0
    w = np.uint64(slots[row, 0])
    if w != 0 and w != tomb:  # remembered from an earlier wave and taken since
        return RESTART, 0, 0
    slots[row, 0] = key
    if slots.shape[1] > 1:
        slots[row, 1] = value
    return NEW, 1, (-1 if w == tomb else 0)


@njit(inline="always", cache=True, nogil=True)
def _mutate_step(slots, bsize, tomb, key, value, b, free, allow_new, no_room, action, op, kind,
                 nbytes):
    """Look at bucket ``b`` of a non-reserved key's probe.

    Returns (code, new keys, tombstone delta, free): ``code`` is final, or CONTINUE (go on to the
    next bucket, remembering ``free``, the first free slot met so far or -1), or RESTART.
    """
    k = np.uint64(key)
    match, bucket_free, empty = scan_bucket(slots, b, k, tomb)
    if action == ACTION_ERASE:
        if match >= 0:
            if slots.shape[1] > 1:
                slots[match, 1] = 0  # a free slot's value is 0: refs add onto it when they claim it
            # The slot may become empty again (no tombstone) when the next slot of its bucket is
            # empty: no probe can have passed through it to a key further on.
            if (match + 1) % bsize != 0 and np.uint64(slots[match + 1, 0]) == 0:
                slots[match, 0] = 0
                return REMOVED, -1, 0, free
            slots[match, 0] = tomb
            return REMOVED, -1, 1, free
        return (NOT_FOUND if empty else CONTINUE), 0, 0, free
    if match >= 0:
        saturated = _store_value(slots, match, value, op, kind, nbytes)
        return UPDATED | (SATURATED if saturated else 0), 0, 0, free
    if free < 0:
        free = bucket_free
    if empty:  # the key is absent: take the first free slot met on the way
        code, d_size, d_tomb = _place(slots, tomb, free, k, value, allow_new, no_room)
        return code, d_size, d_tomb, free
    return CONTINUE, 0, 0, free


@njit(inline="always", cache=True, nogil=True)
def _mutate_special(slots, n_slots, state, key, value, allow_new, action, op, kind, nbytes):
    """A reserved key word (0 or all-ones), kept in a special row: (code, new keys, 0)."""
    row, flag = special_row(key, n_slots)
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


@njit(inline="always", cache=True, nogil=True)
def _mutate_one(slots, n_buckets, bsize, tomb, state, key, value, bucket, hi, wrap, allow_new,
                no_room, action, op, kind, nbytes):
    """One key of a mutation, probed to the end from its home ``bucket``.

    Without ``wrap`` the probe may not reach bucket ``hi`` (another thread's range): it returns
    DEFERRED there, as it does for a reserved key (only the serial pass touches special rows).
    Returns (outcome byte, new keys, tombstone delta).
    """
    if bucket < 0:
        if not wrap:
            return DEFERRED, 0, 0
        return _mutate_special(slots, n_buckets * bsize, state, key, value, allow_new, action, op,
                               kind, nbytes)
    free = np.int64(-1)
    b = bucket
    for _ in range(n_buckets):
        code, d_size, d_tomb, free = _mutate_step(slots, bsize, tomb, key, value, b, free,
                                                  allow_new, no_room, action, op, kind, nbytes)
        if code != CONTINUE:
            return code, d_size, d_tomb
        b += 1
        if b == hi:
            if not wrap:
                return DEFERRED, 0, 0
            b = np.int64(0)
    if action != ACTION_ERASE and free >= 0:  # went all the way round: only tombstones were free
        return _place(slots, tomb, free, np.uint64(key), value, allow_new, no_room)
    return (NOT_FOUND, 0, 0) if action == ACTION_ERASE else (FULL, 0, 0)


# ================================================================================================
# bulk kernels: probes in waves
# ================================================================================================
# A probe is a chain of dependent cache misses: hash -> home bucket -> maybe the next bucket.
# Software prefetch hides the first miss (the home bucket is fetched PREFETCH_DISTANCE keys
# ahead), but at load 0.8 about 16% of keys do not sit in their home bucket, and a probe that
# steps on to the next bucket at once waits a full memory latency for it, stalling every key
# behind it. So the bulk kernels probe a block of keys in *waves*: wave 1 looks at every key's
# home bucket; a key that must go on prefetches its next bucket and joins a pending list (kept in
# array order, compacted in place), which the next wave works through once that line has had a
# whole wave's time to arrive. Most blocks need two or three waves; after MAX_WAVES the few keys
# left finish one at a time.
#
# The helpers these loops call per key take scalars and the table's arrays, never the
# thread-local lists (``pending``, ``bucket``, ``free``), and never branch on an array they are
# given. Where Numba cannot prove an inlined helper's use of an array balanced, it brackets the
# call with a reference-count increment and decrement: two ``lock``-prefixed instructions per
# key, and on x86 each is a full fence that keeps the next key's loads from overlapping this
# key's cache miss. One such helper halved the lookup rate (31 -> 70 M/s without it, 20M keys,
# 2 threads). ``inspect_asm()`` of a kernel shows any ``NRT_incref`` that creeps back in.

BLOCK = 1024  # keys per wave block: its lists are 16 KiB, well inside L1 + L2
MAX_WAVES = 8
STRIPE = 256 * BLOCK  # lookup keys per stripe (see _lookup_stripes)


@njit(inline="always", cache=True, nogil=True)
def _prefetch_bucket(slots, b):
    """Prefetch bucket ``b``'s cache line; nothing for ``b < 0`` (a reserved key's)."""
    if b >= 0:
        prefetch(slots, b * _line_words(slots))


@njit(inline="always", cache=True, nogil=True)
def _count(tally, code):
    """Count one final outcome in a tally row (column 0: how many saturated)."""
    tally[code & CODE_MASK] += 1
    if code & SATURATED:
        tally[0] += 1


@njit(cache=True, nogil=True)
def _mutate_range(slots, n_buckets, bsize, seed, tomb, state, keys, values, action, op, kind,
                  nbytes, lo, hi, quota, first, outcome, tally):
    """One thread's share of ``mutate``: the batch's keys whose home bucket is in ``[lo, hi)``,
    in waves, adding at most ``quota`` new keys. ``first`` marks reserved keys DEFERRED.
    Returns (new keys, tombstone delta)."""
    n = keys.size
    has_values = values.size > 0
    vstride = 1 if values.size == n else 0
    added = 0
    tomb_delta = 0
    pending = np.empty(BLOCK, np.int64)  # key index
    bucket = np.empty(BLOCK, np.int64)  # the bucket its probe looks at next
    free = np.empty(BLOCK, np.int64)  # first free slot its probe met, or -1
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        m = 0  # this thread's keys of the block, compacted without a branch
        for i in range(start, stop):
            b = bucket_of(keys[i], n_buckets, seed, tomb)
            pending[m] = i
            bucket[m] = b
            free[m] = -1
            m += (lo <= b) & (b < hi)
            if b < 0 and first:
                outcome[i] = DEFERRED  # reserved keys: special rows, serial pass
        for j in range(min(m, PREFETCH_DISTANCE)):  # the first keys' buckets
            _prefetch_bucket(slots, bucket[j])
        for wave in range(MAX_WAVES + 1):
            if m == 0:
                break
            left = 0
            for j in range(m):
                if j + PREFETCH_DISTANCE < m:  # (later waves' entries: already fetched, a hit)
                    _prefetch_bucket(slots, bucket[j + PREFETCH_DISTANCE])
                i = pending[j]
                b = bucket[j]
                value = values[i * vstride] if has_values else slots[0, 0]
                f = np.int64(-1)
                if wave < MAX_WAVES:
                    code, d_size, d_tomb, f = _mutate_step(
                        slots, bsize, tomb, keys[i], value, b, free[j], added < quota, DEFERRED,
                        action, op, kind, nbytes)
                else:
                    code = RESTART  # a very long probe: finish it one key at a time
                if code == RESTART:
                    code, d_size, d_tomb = _mutate_one(
                        slots, n_buckets, bsize, tomb, state, keys[i], value,
                        bucket_of(keys[i], n_buckets, seed, tomb), hi, False, added < quota,
                        DEFERRED, action, op, kind, nbytes)
                elif code == CONTINUE:
                    b += 1
                    if b == hi:
                        code = DEFERRED
                    else:
                        _prefetch_bucket(slots, b)
                        pending[left] = i
                        bucket[left] = b
                        free[left] = f
                        left += 1
                        continue
                outcome[i] = code
                if code != DEFERRED:
                    _count(tally, code)
                added += d_size
                tomb_delta += d_tomb
            m = left
    return added, tomb_delta


@njit(parallel=True, nogil=True, cache=True)
def mutate(slots, n_buckets, bsize, seed, tomb, state, keys, values, action, op, kind, nbytes,
           budget, outcome, tally, nthreads):
    """Upsert (``action=ACTION_UPSERT``) or erase a batch; writes one outcome byte per key.

    ``values`` is ignored for erase and for sets (pass an empty array); one value for a longer
    batch is used for every key. ``budget`` is how many new keys may go in.
    Updates ``state[SIZE]`` and ``state[TOMBSTONES]``. ``tally`` (int64, length 8) receives how
    many keys ended with each outcome code, and at index 0 how many saturated.

    Waves keep array order per key: every occurrence of a key has the same probe sequence and
    sees the same buckets, so all of them are pending in the same waves, in array order. The one
    exception -- a tombstone remembered by an earlier wave and since taken (RESTART) -- reprobes
    that key from its home bucket on the spot, before any later occurrence moves.
    """
    n = keys.size
    has_values = values.size > 0
    vstride = 1 if values.size == n else 0
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
        added, tomb_delta = _mutate_range(slots, n_buckets, bsize, seed, tomb, state, keys, values,
                                          action, op, kind, nbytes, lo, hi, quota, p == 0, outcome,
                                          tally_per_part[p])
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
        _count(tally_per_part[nparts], code)
        added += d_size
        tomb_delta += d_tomb
    for p in range(nparts + 1):
        for c in range(8):
            tally[c] += tally_per_part[p, c]
    state[SIZE] += added
    state[TOMBSTONES] += tomb_delta
    if added > 0:  # (an upsert only adds, an erase only removes)
        state[PLACED] += added


# ================================================================================================
# the reach map: where a miss may stop
# ================================================================================================
# A miss reads buckets until one has an empty slot. Linear probing gathers keys into runs of full
# buckets, and at load 0.9 a miss walks 13 lines on average (uint64 keys; 1064 at load 0.99),
# although most keys sit within a bucket or two of home. The reach map keeps, per home bucket,
# how far its furthest key went: ``reach[h]`` is the largest ``(bucket - h) mod n_buckets`` of
# any key stored with home ``h`` (REACH_UNBOUNDED from 255 on: probe to an empty slot, as
# without a map). A lookup that has looked at ``h .. h + reach[h]`` without finding its key may
# stop there: at load 0.9 a miss then reads 3.6 lines instead of 13.
#
# The map is a byte per bucket (14 MB beside an 889 MB table of 50M uint64 keys: it stays in the
# last-level cache) and is derived, not maintained: ``build_reach`` makes it in one sequential
# pass over the slots, and the table keeps it for as long as ``state[PLACED]`` and
# ``state[GENERATION]`` say no key has been placed since (erasing only shortens probes, so an
# old map stays a safe bound). Every writer of a new key bumps PLACED: ``mutate``, ``ref_upsert``
# and the BucketListMap index's refs. Inserts never read the map: a new key needs the first free
# slot anyway, which is where a miss would stop.

REACH_UNBOUNDED = 255


@njit(cache=True, nogil=True)
def _reach_of_range(slots, n_buckets, bsize, seed, tomb, reach, lo, hi):
    """``reach[h]`` for the home buckets ``h`` in ``[lo, hi)``: a scan of buckets ``lo ..
    hi - 1`` and on, past ``hi``, to the end of the run of full buckets that crosses it (a key of
    this range can sit no further: every bucket between a key's home and its own is full).
    Keys met there with a home outside the range are another part's, so no two parts write
    the same byte."""
    for h in range(lo, hi):
        reach[h] = 0
    b = np.int64(lo)
    for step in range(n_buckets):
        any_empty = False
        for j in range(bsize):
            w = np.uint64(slots[np.uint64(b * bsize + j), 0])
            any_empty |= w == 0
            home = bucket_of(w, n_buckets, seed, tomb)  # -1 for an empty slot or a tombstone
            if lo <= home < hi:
                d = b - home if b >= home else b + n_buckets - home
                if d > reach[home]:
                    reach[home] = min(d, REACH_UNBOUNDED)
        if any_empty and step >= hi - lo - 1:
            return
        b = next_bucket(b, n_buckets)


@njit(parallel=True, nogil=True, cache=True)
def build_reach(slots, n_buckets, bsize, seed, tomb, reach, nthreads):
    """Fill ``reach`` (uint8, one per bucket) from the keys as they stand (see above)."""
    parts = min(nthreads, n_buckets)
    for p in prange(parts):
        _reach_of_range(slots, n_buckets, bsize, seed, tomb, reach, p * n_buckets // parts,
                        (p + 1) * n_buckets // parts)


# ================================================================================================
# bulk lookups
# ================================================================================================


@njit(cache=True, nogil=True)
def _lookup_stripes(slots, n_buckets, bsize, seed, tomb, state, keys, default, out_values,
                    out_found, reach, part, parts):
    """``lookup`` of the keys in stripes ``part, part + parts, part + 2 * parts, ...``, probed
    block by block, in waves.

    Parts take interleaved stripes of ``STRIPE`` keys rather than one contiguous range each:
    keys inserted late in a batch are the ones more often pushed out of their home bucket, so
    when the lookup keys come in insertion order the end of the array costs more, and contiguous
    ranges would leave one thread idle while the other finishes the expensive end (20% of a
    lookup, measured). Stripes rather than single blocks: a stripe's output (2 MB of uint64) is
    one transparent huge page, so two threads do not queue on the fault of the same fresh page
    (3-5% of a ``get``)."""
    n = keys.size
    has_reach = reach.size > 0
    # Reading the map costs a hit that left home a cache miss of its own (hits of 50M stored
    # keys at load 0.9 ran 13-20% slower when every block read it, measured), so a block reads it
    # only after a block in which at least a quarter of the keys were absent (and the first).
    use_reach = has_reach
    pending = np.empty(BLOCK, np.int64)  # key index
    bucket = np.empty(BLOCK, np.int64)  # the bucket its probe looks at next
    steps_left = np.empty(BLOCK, np.int64)  # buckets from that one on it may still look at
    for stripe in range(part * STRIPE, n, parts * STRIPE):
        for first in range(stripe, min(n, stripe + STRIPE), BLOCK):
            stop = min(n, first + BLOCK)
            m = stop - first
            reserved = 0
            # Every key of the block, the two reserved words too: they go through the waves
            # like any key (matching an empty slot or a tombstone) and are answered again,
            # properly, below. A loop without branches or a running index vectorizes.
            for j in range(m):
                k = np.uint64(keys[first + j])
                pending[j] = first + j
                bucket[j] = home_bucket(hash_key(k, seed), n_buckets)
                reserved += (k == 0) | (k == tomb)
            for j in range(min(m, PREFETCH_DISTANCE)):  # the first keys' buckets
                _prefetch_bucket(slots, bucket[j])
            absent = 0
            for wave in range(MAX_WAVES):
                left = 0
                for j in range(m):
                    if j + PREFETCH_DISTANCE < m:  # (a later wave's entry: fetched, a hit)
                        _prefetch_bucket(slots, bucket[j + PREFETCH_DISTANCE])
                    i = np.uint64(pending[j])  # (unsigned: see scan_bucket)
                    b = bucket[j]
                    row, empty = np.int64(-1), True  # (the reach map says: not further on)
                    if wave == 0 or steps_left[j] > 0:
                        row, _, empty = scan_bucket(slots, b, np.uint64(keys[i]), tomb)
                    if row < 0 and not empty:
                        # Home full, key not there: the reach map, read only now (most keys are
                        # answered by their home bucket alone) and acted on only in the next
                        # wave (no branch waits for the load), says how far the probe may go.
                        if wave > 0:
                            steps = steps_left[j] - 1
                        elif use_reach:
                            r = np.int64(reach[np.uint64(b)])
                            steps = r if r != REACH_UNBOUNDED else np.int64(n_buckets)
                        else:
                            steps = np.int64(n_buckets)
                        b = next_bucket(b, n_buckets)
                        _prefetch_bucket(slots, b)
                        pending[left] = i
                        bucket[left] = b
                        steps_left[left] = steps
                        left += 1
                        continue
                    # _answer, written out: an inlined helper that takes the output arrays and
                    # branches costs a reference-count pair on them per key (see the note above)
                    absent += row < 0
                    if out_found.size > 0:
                        out_found[i] = row >= 0
                    if out_values.size > 0:
                        out_values[i] = slots[np.uint64(max(row, 0)), 1] if row >= 0 else default
                m = left
                if m == 0:
                    break
            use_reach = has_reach and 4 * absent >= stop - first
            # The rare keys kept out of the waves' loops (so that those stay small): probes longer
            # than MAX_WAVES buckets, then the reserved key words, which live in special rows.
            for j in range(m):
                i = pending[j]
                row = find_slot(slots, n_buckets, bsize, tomb, state, keys[i], bucket[j])
                _answer(slots, row, default, out_values, out_found, i)
            if reserved > 0:
                for i in range(first, stop):
                    if bucket_of(keys[i], n_buckets, seed, tomb) < 0:
                        row = find_slot(slots, n_buckets, bsize, tomb, state, keys[i], -1)
                        _answer(slots, row, default, out_values, out_found, i)


@njit(inline="always", cache=True, nogil=True)
def _answer(slots, row, default, out_values, out_found, i):
    """Write key ``i``'s lookup result (``row``: where it is, or -1) into the wanted outputs."""
    if out_found.size > 0:
        out_found[i] = row >= 0
    if out_values.size > 0:  # (an unsigned row index: see scan_bucket)
        out_values[i] = slots[np.uint64(max(row, 0)), 1] if row >= 0 else default


@njit(parallel=True, nogil=True, cache=True)
def lookup(slots, n_buckets, bsize, seed, tomb, state, keys, default, out_values, out_found,
           reach, nthreads):
    """For each key: whether it is present (``out_found[i]``) and its value bits (``default``
    where absent) into ``out_values[i]``; either output may be empty to skip it. ``reach``: the
    table's current reach map (``build_reach``), or an empty array to probe without one."""
    parts = 1 if keys.size < _SERIAL_BELOW else nthreads
    for part in prange(parts):
        _lookup_stripes(slots, n_buckets, bsize, seed, tomb, state, keys, default, out_values,
                        out_found, reach, part, parts)


@njit(parallel=True, nogil=True, cache=True)
def zero_fill(slots, nthreads):
    """``slots[...] = 0``, split between the threads (C-contiguous ``slots``)."""
    flat = slots.reshape(-1)
    n = flat.size
    nchunks = 1 if n < _SERIAL_BELOW else 4 * nthreads
    for c in prange(nchunks):
        flat[c * n // nchunks:(c + 1) * n // nchunks] = 0


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


@njit(cache=True, nogil=True)
def max_stored_value(slots, n_buckets, bsize, tomb, state):
    """The largest value word of a stored key (0 for an empty table or a set)."""
    top = np.uint64(0)
    if slots.shape[1] < 2:
        return top
    for row in range(n_buckets * bsize):
        w = np.uint64(slots[row, 0])
        if w != 0 and w != tomb and np.uint64(slots[row, 1]) > top:
            top = np.uint64(slots[row, 1])
    for row, flag in ((n_buckets * bsize, HAS_EMPTY_KEY), (n_buckets * bsize + 1, HAS_TOMB_KEY)):
        if state[flag] != 0 and np.uint64(slots[row, 1]) > top:
            top = np.uint64(slots[row, 1])
    return top


@njit(cache=True, nogil=True)
def gather_to_front(slots, n_buckets, bsize, tomb, state, out_values):
    """``collect`` into the table's own memory: every stored key word moves to the front of the
    slot array's words (flat word ``j`` holds the ``j``-th key, in ``collect``'s order) and its
    value to ``out_values[j]`` (cast to its type). Returns the number of keys.

    The table is destroyed. One thread, in slot order, so that it is safe: key ``j`` comes from
    row ``r >= j``, whose words start at ``r * words_per_slot >= j``, so a write never lands on
    a word not yet read."""
    flat = slots.reshape(-1)
    words = slots.shape[1]
    want_values = out_values.size > 0
    n_slots = n_buckets * bsize
    j = 0
    for row in range(n_slots):
        w = slots[row, 0]
        if np.uint64(w) != 0 and np.uint64(w) != tomb:
            if want_values:
                out_values[j] = slots[row, 1]
            flat[j] = w
            j += 1
    for row, flag in ((n_slots, HAS_EMPTY_KEY), (n_slots + 1, HAS_TOMB_KEY)):
        if state[flag] != 0:
            w = slots[row, 0]
            if want_values:
                out_values[j] = slots[row, 1] if words > 1 else 0
            flat[j] = w
            j += 1
    return j


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


#: What the distinct-count sketch hashes with: the table's seed xor this, so that its registers do
#: not see the same bits as the table's home buckets.
HLL_SEED_XOR = 0x5851F42D4C957F2D


def estimate_distinct(keys: np.ndarray, seed: int) -> int:
    """HyperLogLog estimate of the number of distinct values in ``keys`` (never above its size)."""
    if keys.size == 0:
        return 0
    regs = hll_registers(keys, np.uint64(seed ^ HLL_SEED_XOR), numba.get_num_threads())
    return estimate_from_registers(regs, keys.size)


def estimate_from_registers(regs: np.ndarray, n: int) -> int:
    """The distinct count that HyperLogLog registers (from any backend) stand for, at most ``n``."""
    regs = regs.astype(np.float64)
    m = float(_HLL_REGISTERS)
    raw = 0.7213 / (1 + 1.079 / m) * m * m / np.sum(np.exp2(-regs))
    zeros = int(np.count_nonzero(regs == 0))
    if raw <= 2.5 * m and zeros:
        raw = m * np.log(m / zeros)  # linear counting for small sets
    return int(min(n, np.ceil(raw)))


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
    """Whether the capacity budget allows one more key (an atomic read of the size).

    Checked *before* claiming a slot, so threads claiming at the same instant may each pass the
    check: a ref can overshoot ``capacity`` by at most one key per concurrent thread (slots
    always have room for that: the load limit is at most 0.99). A thread that finds no room
    must look at its slot once more before it gives up: the thread that used the last of the
    room may have claimed it for this very key (its claim is visible before its size update),
    and refusing then would lose an addition to a key that is in the table.
    """
    return atomic_add(state, SIZE, 0) < state[CAPACITY]


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
            if not _ref_room_left(state) and atomic_add(state, flag, 0) == 0:
                atomic_add(state, REF_FAILED, 1)
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
    home = home_bucket(hash_key(k, seed), n_buckets)
    b = home
    for _ in range(n_buckets):
        base = b * bsize
        for j in range(bsize):
            row = base + j
            w = np.uint64(slots[row, 0])
            if w == 0:
                if not _ref_room_left(state):
                    found = find_slot(slots, n_buckets, bsize, tomb, state, k, home)
                    if found < 0:
                        atomic_add(state, REF_FAILED, 1)
                        return REF_NO_ROOM
                    _ref_combine(slots, found, value, op, kind, nbytes)
                    return REF_FOUND
                seen = np.uint64(cas(flat, row * words, word(0), word(k)))
                if seen == 0:
                    atomic_add(state, SIZE, 1)
                    atomic_add(state, PLACED, 1)
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
