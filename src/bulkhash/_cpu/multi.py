"""Numba CPU kernels of ``MultiMap``: one slot per pair (WarpCore's MultiValueHashTable), or one
slot per ``values_per_slot`` pairs of a key (its MultiBucketHashTable).

Memory layout
-------------
One C-contiguous 2-D array of unsigned words (``uint32``, or ``uint64`` when the key or the
value needs more than 4 bytes, as for the open tables of ``bulkhash._cpu.kernels``),
``slots[n_rows, words_per_row]``::

    values_per_slot B = 1:  row = [key, value]                   2 words
    values_per_slot B > 1:  row = [key, fill, v0, v1 .. v(B-1)]  B + 2 words (fill: values held)

A key with m values holds ``ceil(m / B)`` rows, all but its last full. Rows are grouped in
buckets of ``bucket_size`` consecutive rows: for B = 1 a bucket is one 64-byte cache line (4
pairs of 8+8 bytes, 8 of 4+4), read with three vector compares as the open tables read theirs;
for B > 1 a bucket is as many rows as fit a line (at least one) and is read row by row.

Key words 0 and all-ones mark empty and erased (tombstone) rows. A multimap key may hold any
number of values, so the two keys with those bits cannot live in a special row as they do in the
open tables: their values go to a *side pool*, ``side[2, side_capacity]`` (row 0: the key whose
word is 0, row 1: the key whose word is all-ones), with their counts in the state vector. The
pool grows before a batch that brings more of them (the caller counts them first).

Probing, and why a key's values come back in insertion order
------------------------------------------------------------
Probing is linear over buckets from the key's home bucket (``bulkhash.probing``), as in the open
tables. Every row of a key lies before the first bucket of its probe sequence that has an empty
row (the *end* of its probe), and rows in a bucket fill in order (empty rows are a suffix of
their bucket). A lookup therefore walks from the home bucket to the end and collects the key's
rows in probe order. An insert walks to the end as well (it counts the key's values, which
``max_values_per_key`` needs) and *appends*: it fills the key's last row if that has room, else
takes the first free row (empty or tombstone) after the key's last row. So probe order is
insertion order, and a tombstone is reused only where that keeps it so.

What a lookup costs, and why MultiMap's default load is 0.5
----------------------------------------------------------
A lookup walks to the end of the key's probe: a key with m values (B = 1, u64/u64 pairs, 4 rows
to a line) reads at least m / 4 lines, and then the lines up to the first bucket with an empty
row -- what a *miss* costs in a single-value table, which for linear probing grows as
1 / (1 - load)^2. Measured on this project's 2-core machine (``benchmarks/multimap.py``, 10M
pairs, one value per key), ``get`` ran at 6.9 M keys/s at load 0.5 and 2.1 M keys/s at 0.8; so
MultiMap defaults to 0.5 (32 bytes per u64/u64 pair instead of 20). Lookups run in *waves*
(``_probe_part``), as the open tables' do, so that a key whose probe goes on to another bucket
waits for it with the line prefetched instead of stalling its thread. ``get`` is a count pass,
a prefix sum and a fill pass (WarpCore's), each of them waves. Keys with many values are better
kept in ``BucketListMap``, whose values lie in a few contiguous runs.

Parallel mutation without locks or atomics
------------------------------------------
As in ``bulkhash._cpu.kernels``: thread p owns the bucket range ``[p*B/T, (p+1)*B/T)`` and
handles, in array order, the pairs whose home bucket it owns; a probe that would leave the range
is deferred to a serial pass that handles deferred pairs in array order. Every pair of a key has
the same home, so one thread appends all of a key's pairs of a batch, in order; and every pair of
a key after a deferred one is deferred too (its probe walks the same, only longer, chain; a
spent quota stays spent), so the serial pass appends them after it. Reserved keys (the side pool)
are always handled by the serial pass. Erase splits the table the same way, so within one batch
only a key's first occurrence removes its values, on every run.

Every parallel kernel takes ``nthreads`` (``numba.get_num_threads()``) from its caller (see
``bulkhash._cpu.kernels``: calling it inside a kernel stops Numba caching the kernel).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

from ..probing import next_bucket
from .backend import CpuBackend, kernel_gate
from .intrinsics import line_equal_mask, prefetch
from .kernels import (BLOCK, MAX_WAVES, PREFETCH_DISTANCE, _SERIAL_BELOW, _line_words,
                      bucket_of)

# --- the state vector (int64) ---------------------------------------------------------------------
PAIRS = 0  # values stored (side pool included)
TOMBSTONES = 1  # rows holding a tombstone
ROWS = 2  # rows holding a key
KEYS = 3  # distinct keys stored (side pool included)
CAPACITY = 4  # pairs the table may hold before it must grow (refs check it)
GENERATION = 5  # bumped whenever the slot array is replaced (stale refs detect it)
REF_FAILED = 6  # inserts through a ref that were not stored (no room)
SIDE = 7  # SIDE + 0: values of the key whose word is 0; SIDE + 1: of the all-ones key
ROW_CAPACITY = 9  # rows the table may fill before it must grow (capacity of the rows)
STATE_LEN = 12

# --- per-pair outcome codes of insert (uint8) ------------------------------------------------
NEW_KEY = 1  # stored, the key's first value
APPENDED = 2  # stored after the key's other values
FULL = 3  # not stored: no room (a fixed table's capacity, or no free row)
DEFERRED = 4  # internal: handled by the serial pass
MAX_REACHED = 5  # not stored: the key already holds max_values_per_key values
NO_KEY = 7  # not stored: the key did not fit a fixed key index (BucketListMap; never here)
N_CODES = 8

_ONE = np.uint64(1)


# ================================================================================================
# rows and buckets
# ================================================================================================

@njit(inline="always", cache=True, nogil=True)
def values_per_row(slots):
    """B: values one row holds (2 words per row: 1; B + 2 words: B)."""
    return 1 if slots.shape[1] == 2 else slots.shape[1] - 2


@njit(inline="always", cache=True, nogil=True)
def row_fill(slots, row):
    """How many values row ``row`` holds."""
    if slots.shape[1] == 2:
        return np.int64(1)
    return np.int64(slots[row, 1])


@njit(inline="always", cache=True, nogil=True)
def row_value(slots, row, j):
    """Value word ``j`` of row ``row``."""
    if slots.shape[1] == 2:
        return slots[row, 1]
    return slots[row, 2 + j]


@njit(inline="always", cache=True, nogil=True)
def _even_bits(m):
    """Bits 0, 2, 4, .. 14 of ``m`` packed into bits 0 .. 7 (word bits of a line -> its rows)."""
    x = m & np.uint64(0x5555)
    x = (x | (x >> np.uint64(1))) & np.uint64(0x3333)
    x = (x | (x >> np.uint64(2))) & np.uint64(0x0F0F)
    return (x | (x >> np.uint64(4))) & np.uint64(0x00FF)


@njit(inline="always", cache=True, nogil=True)
def bucket_masks(slots, b, bsize, key, tomb):
    """(match, empty, tombstone): bitmasks over bucket ``b``'s rows, bit j for row
    ``b * bsize + j``. With two words per row the bucket is one cache line, compared as a vector
    (``bulkhash._cpu.kernels.scan_bucket``); wider rows are compared one by one."""
    if slots.shape[1] == 2:
        first_word = np.uint64(b) * np.uint64(_line_words(slots))
        return (_even_bits(line_equal_mask(slots, first_word, key)),
                _even_bits(line_equal_mask(slots, first_word, 0)),
                _even_bits(line_equal_mask(slots, first_word, tomb)))
    match = np.uint64(0)
    empty = np.uint64(0)
    tombs = np.uint64(0)
    base = np.uint64(b) * np.uint64(bsize)
    for j in range(bsize):
        w = np.uint64(slots[base + np.uint64(j), 0])
        bit = _ONE << np.uint64(j)
        if w == key:
            match |= bit
        elif w == 0:
            empty |= bit
        elif w == tomb:
            tombs |= bit
    return match, empty, tombs


@njit(inline="always", cache=True, nogil=True)
def _lowest(m):
    return np.int64(trailing_zeros(m))


@njit(inline="always", cache=True, nogil=True)
def _highest(m):
    return np.int64(63 - leading_zeros(m))


@njit(inline="always", cache=True, nogil=True)
def _values_in(slots, base, match):
    """Values held by the rows of ``match`` (a bucket's bitmask; ``base``: its first row)."""
    if slots.shape[1] == 2:
        count = np.int64(0)
        while match:  # (LLVM turns this loop into one popcount)
            match &= match - _ONE
            count += 1
        return count
    count = np.int64(0)
    while match:
        count += row_fill(slots, base + _lowest(match))
        match &= match - _ONE
    return count


@njit(inline="always", cache=True, nogil=True)
def _prefetch_bucket(slots, b, bsize):
    if b >= 0:
        prefetch(slots, b * bsize * slots.shape[1])


@njit(inline="always", cache=True, nogil=True)
def side_index(key):
    """Which side-pool row holds a reserved key word's values (0 for word 0, 1 for all-ones)."""
    return 0 if np.uint64(key) == 0 else 1


# ================================================================================================
# one key's probe
# ================================================================================================

@njit(inline="always", cache=True, nogil=True)
def count_values(slots, n_buckets, bsize, tomb, state, key, home):
    """How many values ``key`` holds (``home``: ``bucket_of(key)``, -1 for a reserved word)."""
    if home < 0:
        return state[SIDE + side_index(key)]
    k = np.uint64(key)
    total = np.int64(0)
    b = home
    for _ in range(n_buckets):
        match, empty, _ = bucket_masks(slots, b, bsize, k, tomb)
        if match:
            total += _values_in(slots, b * bsize, match)
        if empty:
            break
        b = next_bucket(b, n_buckets)
    return total


@njit(inline="always", cache=True, nogil=True)
def copy_values(slots, n_buckets, bsize, tomb, state, side, key, home, out, start, limit):
    """Write ``key``'s values, in insertion order, to ``out[start:]``, at most ``limit`` of them;
    returns how many it wrote."""
    written = np.int64(0)
    if limit <= 0:
        return written
    if home < 0:
        s = side_index(key)
        n = min(state[SIDE + s], limit)
        for j in range(n):
            out[start + j] = side[s, j]
        return n
    k = np.uint64(key)
    B = values_per_row(slots)
    b = home
    for _ in range(n_buckets):
        match, empty, _ = bucket_masks(slots, b, bsize, k, tomb)
        base = b * bsize
        while match:
            row = base + _lowest(match)
            for j in range(row_fill(slots, row) if B > 1 else 1):
                out[start + written] = row_value(slots, row, j)
                written += 1
                if written == limit:
                    return written
            match &= match - _ONE
        if empty:
            break
        b = next_bucket(b, n_buckets)
    return written


@njit(inline="always", cache=True, nogil=True)
def walk_to_end(slots, n_buckets, bsize, tomb, key, home, hi, wrap):
    """Follow a (non-reserved) key's probe to its end: (values held, the key's last row or -1,
    the first free row after that or -1, whether the probe reached bucket ``hi`` first).

    Without ``wrap`` the probe may not enter bucket ``hi`` (another thread's range)."""
    k = np.uint64(key)
    count = np.int64(0)
    last = np.int64(-1)
    free = np.int64(-1)
    b = home
    for _ in range(n_buckets):
        match, empty, tombs = bucket_masks(slots, b, bsize, k, tomb)
        base = b * bsize
        free_bits = empty | tombs
        if match:
            j = _highest(match)
            last = base + j
            free = np.int64(-1)
            free_bits &= ~((_ONE << np.uint64(j + 1)) - _ONE)  # only rows after the key's last
            count += _values_in(slots, base, match)
        if free < 0 and free_bits:
            free = base + _lowest(free_bits)
        if empty:
            return count, last, free, False
        b += 1
        if b == hi and not wrap:
            return count, last, free, True
        if b == n_buckets:
            b = np.int64(0)
    return count, last, free, False


@njit(inline="always", cache=True, nogil=True)
def append_value(slots, tomb, key, value, count, last, free, max_per_key, pairs_ok, rows_ok,
                 no_room):
    """Append ``value`` to a key whose probe ``walk_to_end`` followed. Returns (code, rows
    taken, tombstone delta); ``no_room`` is the code when a budget is spent."""
    if max_per_key >= 0 and count >= max_per_key:
        return MAX_REACHED, 0, 0
    if not pairs_ok:
        return no_room, 0, 0
    if slots.shape[1] > 2 and last >= 0:
        fill = np.int64(slots[last, 1])
        if fill < slots.shape[1] - 2:  # the key's last row has room
            slots[last, 2 + fill] = value
            slots[last, 1] = fill + 1
            return APPENDED, 0, 0
    if not rows_ok:
        return no_room, 0, 0
    if free < 0:  # the probe met no free row at all
        return FULL, 0, 0
    was_tomb = np.uint64(slots[free, 0]) == tomb
    slots[free, 0] = key
    if slots.shape[1] == 2:
        slots[free, 1] = value
    else:
        slots[free, 1] = 1
        slots[free, 2] = value
    return (NEW_KEY if count == 0 else APPENDED), 1, (-1 if was_tomb else 0)


@njit(inline="always", cache=True, nogil=True)
def append_side(side, state, key, value, max_per_key, pairs_ok):
    """Append a reserved key word's value to the side pool (which the caller made room in)."""
    s = side_index(key)
    count = state[SIDE + s]
    if max_per_key >= 0 and count >= max_per_key:
        return MAX_REACHED
    if not pairs_ok:
        return FULL
    side[s, count] = value
    state[SIDE + s] = count + 1
    return NEW_KEY if count == 0 else APPENDED


@njit(inline="always", cache=True, nogil=True)
def remove_rows(slots, bsize, tomb, b, match):
    """Erase the rows of ``match`` in bucket ``b``: (values removed, rows removed, tombstones
    added). Highest row first: a row whose next row in the bucket is empty becomes empty itself
    (no probe can have passed through a bucket that has an empty row), else a tombstone."""
    base = b * bsize
    values = np.int64(0)
    rows = np.int64(0)
    tombs = np.int64(0)
    while match:
        j = _highest(match)
        row = base + j
        values += row_fill(slots, row)
        rows += 1
        if slots.shape[1] > 2:
            slots[row, 1] = 0  # a free row holds no value: refs claim positions from 0
        if j + 1 < bsize and np.uint64(slots[row + 1, 0]) == 0:
            slots[row, 0] = 0
        else:
            slots[row, 0] = tomb
            tombs += 1
        match &= ~(_ONE << np.uint64(j))
    return values, rows, tombs


# ================================================================================================
# bulk kernels
# ================================================================================================

@njit(cache=True, nogil=True)
def _insert_range(slots, n_buckets, bsize, seed, tomb, keys, values, max_per_key, lo, hi,
                  pair_quota, row_quota, mark_reserved, outcome, tally):
    """One thread's share of ``insert``: the pairs whose home bucket is in ``[lo, hi)``, in array
    order. Returns (pairs stored, rows taken, tombstone delta, new keys)."""
    n = keys.size
    vstride = 1 if values.size == n else 0
    pairs = np.int64(0)
    rows = np.int64(0)
    tombs = np.int64(0)
    new_keys = np.int64(0)
    pending = np.empty(BLOCK, np.int64)
    bucket = np.empty(BLOCK, np.int64)
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        m = 0
        for i in range(start, stop):
            b = bucket_of(keys[i], n_buckets, seed, tomb)
            pending[m] = i
            bucket[m] = b
            m += (lo <= b) & (b < hi)
            if b < 0 and mark_reserved:
                outcome[i] = DEFERRED  # reserved words: the side pool, serial pass
        for j in range(min(m, PREFETCH_DISTANCE)):
            _prefetch_bucket(slots, bucket[j], bsize)
        for j in range(m):
            if j + PREFETCH_DISTANCE < m:
                _prefetch_bucket(slots, bucket[j + PREFETCH_DISTANCE], bsize)
            i = pending[j]
            key = keys[i]
            count, last, free, deferred = walk_to_end(slots, n_buckets, bsize, tomb, key,
                                                      bucket[j], hi, False)
            if deferred:
                outcome[i] = DEFERRED
                continue
            code, d_rows, d_tomb = append_value(slots, tomb, key, values[i * vstride], count,
                                                last, free, max_per_key, pairs < pair_quota,
                                                rows < row_quota, DEFERRED)
            outcome[i] = code
            if code == DEFERRED:
                continue
            tally[code] += 1
            if code == NEW_KEY or code == APPENDED:
                pairs += 1
                new_keys += code == NEW_KEY
            rows += d_rows
            tombs += d_tomb
    return pairs, rows, tombs, new_keys


@njit(parallel=True, nogil=True, cache=True)
def insert(slots, n_buckets, bsize, seed, tomb, state, side, keys, values, max_per_key,
           pair_budget, row_budget, outcome, tally, nthreads):
    """Append each pair's value to its key, in array order; one outcome byte per pair.

    ``values`` holds one value per key (or one for all). At most ``pair_budget`` values and
    ``row_budget`` new rows go in; ``max_per_key < 0`` means no limit. ``side`` must have room
    for every reserved key word of the batch. Updates the state; ``tally[code]`` counts outcomes.
    """
    n = keys.size
    vstride = 1 if values.size == n else 0
    nparts = 1 if n < _SERIAL_BELOW else min(nthreads, n_buckets)
    sums = np.zeros((nparts, 4), np.int64)  # pairs, rows, tombstone delta, new keys
    tallies = np.zeros((nparts + 1, N_CODES), np.int64)  # last row: the serial pass
    for p in prange(nparts):
        lo = p * n_buckets // nparts
        hi = (p + 1) * n_buckets // nparts
        pair_quota = pair_budget // nparts + (1 if p < pair_budget % nparts else 0)
        row_quota = row_budget // nparts + (1 if p < row_budget % nparts else 0)
        a, b, c, d = _insert_range(slots, n_buckets, bsize, seed, tomb, keys, values,
                                   max_per_key, lo, hi, pair_quota, row_quota, p == 0, outcome,
                                   tallies[p])
        sums[p, 0] = a
        sums[p, 1] = b
        sums[p, 2] = c
        sums[p, 3] = d
    pairs = sums[:, 0].sum()
    rows = sums[:, 1].sum()
    tombs = sums[:, 2].sum()
    new_keys = sums[:, 3].sum()
    serial = tallies[nparts]
    for i in range(n):  # the serial pass, in array order
        if outcome[i] != DEFERRED:
            continue
        key = keys[i]
        value = values[i * vstride]
        home = bucket_of(key, n_buckets, seed, tomb)
        if home < 0:
            code = append_side(side, state, key, value, max_per_key, pairs < pair_budget)
        else:
            count, last, free, _ = walk_to_end(slots, n_buckets, bsize, tomb, key, home,
                                               n_buckets, True)
            code, d_rows, d_tomb = append_value(slots, tomb, key, value, count, last, free,
                                                max_per_key, pairs < pair_budget,
                                                rows < row_budget, FULL)
            rows += d_rows
            tombs += d_tomb
        outcome[i] = code
        serial[code] += 1
        if code == NEW_KEY or code == APPENDED:
            pairs += 1
            new_keys += code == NEW_KEY
    for p in range(nparts + 1):
        for c in range(N_CODES):
            tally[c] += tallies[p, c]
    state[PAIRS] += pairs
    state[ROWS] += rows
    state[TOMBSTONES] += tombs
    state[KEYS] += new_keys


@njit(inline="always", cache=True, nogil=True)
def _remove_key(slots, n_buckets, bsize, tomb, k, b):
    """Remove every row of key ``k`` along its probe from bucket ``b`` to the probe's end;
    returns (values, rows, tombstones added)."""
    values = np.int64(0)
    rows = np.int64(0)
    tombs = np.int64(0)
    for _ in range(n_buckets):
        match, empty, _ = bucket_masks(slots, b, bsize, k, tomb)
        if match:
            v, r, t = remove_rows(slots, bsize, tomb, b, match)
            values += v
            rows += r
            tombs += t
        if empty:
            break
        b = next_bucket(b, n_buckets)
    return values, rows, tombs


@njit(cache=True, nogil=True)
def _erase_range(slots, n_buckets, bsize, seed, tomb, keys, lo, hi, mark_reserved, removed):
    """One thread's share of ``erase``; returns (values, rows, tombstones added, keys) removed."""
    n = keys.size
    values = np.int64(0)
    rows = np.int64(0)
    tombs = np.int64(0)
    gone = np.int64(0)
    for i in range(n):
        b = bucket_of(keys[i], n_buckets, seed, tomb)
        if b < 0:
            if mark_reserved:
                removed[i] = -1  # deferred: the side pool, serial pass
            continue
        if b < lo or b >= hi:
            continue
        k = np.uint64(keys[i])
        # a first, read-only walk: a probe that leaves the range must not half-erase its key
        _, _, _, deferred = walk_to_end(slots, n_buckets, bsize, tomb, k, b, hi, False)
        if deferred:
            removed[i] = -1
            continue
        total, r, t = _remove_key(slots, n_buckets, bsize, tomb, k, b)
        rows += r
        tombs += t
        removed[i] = total
        values += total
        gone += total > 0
    return values, rows, tombs, gone


@njit(parallel=True, nogil=True, cache=True)
def erase(slots, n_buckets, bsize, seed, tomb, state, keys, removed, nthreads):
    """Remove every value of each key; ``removed[i]``: how many key i's occurrence removed (only
    a key's first occurrence in the batch finds any). Updates the state."""
    n = keys.size
    nparts = 1 if n < _SERIAL_BELOW else min(nthreads, n_buckets)
    sums = np.zeros((nparts, 4), np.int64)
    for p in prange(nparts):
        lo = p * n_buckets // nparts
        hi = (p + 1) * n_buckets // nparts
        a, b, c, d = _erase_range(slots, n_buckets, bsize, seed, tomb, keys, lo, hi, p == 0,
                                  removed)
        sums[p, 0] = a
        sums[p, 1] = b
        sums[p, 2] = c
        sums[p, 3] = d
    values = sums[:, 0].sum()
    rows = sums[:, 1].sum()
    tombs = sums[:, 2].sum()
    gone = sums[:, 3].sum()
    for i in range(n):  # the serial pass, in array order
        if removed[i] >= 0:
            continue
        key = keys[i]
        b = bucket_of(key, n_buckets, seed, tomb)
        total = np.int64(0)
        if b < 0:
            s = side_index(key)
            total = state[SIDE + s]
            state[SIDE + s] = 0
        else:
            total, r, t = _remove_key(slots, n_buckets, bsize, tomb, np.uint64(key), b)
            rows += r
            tombs += t
        removed[i] = total
        values += total
        gone += total > 0
    state[PAIRS] -= values
    state[ROWS] -= rows
    state[TOMBSTONES] += tombs
    state[KEYS] -= gone


@njit(inline="always", cache=True, nogil=True)
def _copy_rows(slots, base, match, out, at):
    """Write the values of the rows of ``match`` (a bucket's bitmask; ``base``: its first row)
    to ``out[at:]`` in row order; returns the position after them."""
    B = values_per_row(slots)
    while match:
        row = base + _lowest(match)
        if B == 1:
            out[at] = slots[row, 1]
            at += 1
        else:
            for j in range(row_fill(slots, row)):
                out[at] = slots[row, 2 + j]
                at += 1
        match &= match - _ONE
    return at


@njit(cache=True, nogil=True)
def _probe_part(slots, n_buckets, bsize, seed, tomb, state, side, keys, lo, hi, offsets, out,
                counts):
    """Count (``counts``, when non-empty) or copy out (``out`` at ``offsets``) the values of the
    keys ``lo .. hi``, probed block by block in waves.

    As the open tables' lookup (``bulkhash._cpu.kernels._lookup_stripes``): wave 1 looks at every
    key's home bucket, with home buckets prefetched ``PREFETCH_DISTANCE`` keys ahead; a key whose
    probe does not end there (no empty row in the bucket) keeps what it found so far, prefetches
    its next bucket and waits for the next wave, instead of stalling the thread on that miss. A
    multimap probe always runs to the end of the key's probe (every row of the key), so more
    keys go on to a second bucket than in a single-value lookup, which stops at the key.
    """
    counting = counts.size > 0
    pending = np.empty(BLOCK, np.int64)  # key index
    bucket = np.empty(BLOCK, np.int64)  # the bucket its probe looks at next
    done = np.empty(BLOCK, np.int64)  # values counted, or the output position reached
    for first in range(lo, hi, BLOCK):
        stop = min(hi, first + BLOCK)
        m = 0  # the block's non-reserved keys, compacted without a branch
        for i in range(first, stop):
            b = bucket_of(keys[i], n_buckets, seed, tomb)
            pending[m] = i
            bucket[m] = b
            done[m] = 0 if counting else offsets[i]
            m += b >= 0
        for j in range(min(m, PREFETCH_DISTANCE)):
            _prefetch_bucket(slots, bucket[j], bsize)
        for wave in range(MAX_WAVES):
            left = 0
            for j in range(m):
                if j + PREFETCH_DISTANCE < m:
                    _prefetch_bucket(slots, bucket[j + PREFETCH_DISTANCE], bsize)
                i = np.uint64(pending[j])  # (unsigned: see kernels.scan_bucket)
                b = bucket[j]
                match, empty, _ = bucket_masks(slots, b, bsize, np.uint64(keys[i]), tomb)
                if counting:
                    d = done[j] + _values_in(slots, b * bsize, match)
                else:
                    d = _copy_rows(slots, b * bsize, match, out, done[j])
                if empty == 0:
                    b = next_bucket(b, n_buckets)
                    _prefetch_bucket(slots, b, bsize)
                    pending[left] = i
                    bucket[left] = b
                    done[left] = d
                    left += 1
                    continue
                if counting:
                    counts[i] = d
            m = left
            if m == 0:
                break
        for j in range(m):  # probes longer than MAX_WAVES buckets: one at a time
            i = pending[j]
            k = np.uint64(keys[i])
            b = bucket[j]
            d = done[j]
            for _ in range(n_buckets):
                match, empty, _ = bucket_masks(slots, b, bsize, k, tomb)
                if counting:
                    d += _values_in(slots, b * bsize, match)
                else:
                    d = _copy_rows(slots, b * bsize, match, out, d)
                if empty:
                    break
                b = next_bucket(b, n_buckets)
            if counting:
                counts[i] = d
        for i in range(first, stop):  # the reserved key words: the side pool
            if bucket_of(keys[i], n_buckets, seed, tomb) < 0:
                if counting:
                    counts[i] = state[SIDE + side_index(keys[i])]
                else:
                    copy_values(slots, n_buckets, bsize, tomb, state, side, keys[i], -1, out,
                                offsets[i], offsets[i + 1] - offsets[i])


@njit(parallel=True, nogil=True, cache=True)
def count(slots, n_buckets, bsize, seed, tomb, state, side, keys, out, nthreads):
    """``out[i]``: how many values key i holds."""
    n = keys.size
    nparts = 1 if n < _SERIAL_BELOW else 4 * nthreads
    no_offsets = np.empty(0, np.int64)
    no_values = np.empty(0, slots.dtype)
    for p in prange(nparts):
        _probe_part(slots, n_buckets, bsize, seed, tomb, state, side, keys, p * n // nparts,
                    (p + 1) * n // nparts, no_offsets, no_values, out)


@njit(parallel=True, nogil=True, cache=True)
def fill(slots, n_buckets, bsize, seed, tomb, state, side, keys, offsets, out, nthreads):
    """The fill pass of ``get``: key i's values, in insertion order, to
    ``out[offsets[i]:offsets[i + 1]]`` (``offsets``: the prefix sum of ``count``)."""
    n = keys.size
    nparts = 1 if n < _SERIAL_BELOW else 4 * nthreads
    no_counts = np.empty(0, np.int64)
    for p in prange(nparts):
        _probe_part(slots, n_buckets, bsize, seed, tomb, state, side, keys, p * n // nparts,
                    (p + 1) * n // nparts, offsets, out, no_counts)


@njit(inline="always", cache=True, nogil=True)
def is_head(slots, n_buckets, bsize, seed, tomb, row):
    """Whether ``row`` holds a key that no earlier row of its probe holds (its first row)."""
    k = np.uint64(slots[row, 0])
    if k == 0 or k == tomb:
        return False
    b = bucket_of(k, n_buckets, seed, tomb)
    for _ in range(n_buckets):
        match, _, _ = bucket_masks(slots, b, bsize, k, tomb)
        if match:
            return b * bsize + _lowest(match) == row
        b = next_bucket(b, n_buckets)
    return False


@njit(parallel=True, nogil=True, cache=True)
def heads(slots, n_buckets, bsize, seed, tomb, out, nthreads):
    """``out[row]``: whether ``row`` is its key's first row (one row per distinct key)."""
    n_rows = n_buckets * bsize
    nparts = 1 if n_rows < _SERIAL_BELOW else 4 * nthreads
    for p in prange(nparts):
        for row in range(p * n_rows // nparts, (p + 1) * n_rows // nparts):
            out[row] = is_head(slots, n_buckets, bsize, seed, tomb, row)


# ================================================================================================
# the backend: what MultiTable calls
# ================================================================================================

class CpuMultiBackend(CpuBackend):
    """The CPU half of ``MultiTable``: host arrays, the kernels above."""

    def bucket_size(self, word: np.dtype, words_per_row: int) -> int:
        return max(1, 64 // (word.itemsize * words_per_row))

    def _args(self, t):
        return (t.slots, t.n_buckets, t.bucket_size, np.uint64(t.seed), t.tomb, t.state)

    def count_reserved(self, keys: np.ndarray, tomb) -> tuple[int, int]:
        """How many of ``keys`` are the word 0, and how many all-ones (the side pool's keys)."""
        return int(np.count_nonzero(keys == 0)), int(np.count_nonzero(keys == tomb))

    def insert(self, t, keys, values, max_per_key: int, pair_budget: int, row_budget: int):
        outcome = np.empty(keys.size, np.uint8)
        tally = np.zeros(N_CODES, np.int64)
        with kernel_gate():
            insert(*self._args(t), t.side, keys, values, max_per_key, pair_budget, row_budget,
                   outcome, tally, numba.get_num_threads())
        return outcome, tally

    def erase(self, t, keys):
        removed = np.empty(keys.size, np.int64)
        with kernel_gate():
            erase(*self._args(t), keys, removed, numba.get_num_threads())
        return removed

    def count(self, t, keys):
        out = np.empty(keys.size, np.int64)
        with kernel_gate():
            count(*self._args(t), t.side, keys, out, numba.get_num_threads())
        return out

    def get(self, t, keys):
        counts = self.count(t, keys)
        offsets = np.zeros(keys.size + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        values = np.empty(int(offsets[-1]), t.word)
        with kernel_gate():
            fill(*self._args(t), t.side, keys, offsets, values, numba.get_num_threads())
        return offsets, values

    def head_keys(self, t):
        """The key word of every distinct key in the rows, in row order."""
        marks = np.empty(t.n_rows, np.bool_)
        with kernel_gate():
            heads(t.slots, t.n_buckets, t.bucket_size, np.uint64(t.seed), t.tomb, marks,
                  numba.get_num_threads())
        return t.slots[:t.n_rows, 0][marks]

    def concat(self, parts, dtype):
        if not parts:
            return np.empty(0, dtype)
        return np.concatenate([np.asarray(p, dtype) for p in parts])

    def repeat(self, keys, offsets):
        return np.repeat(keys, np.diff(offsets))

    def new_multi_state(self) -> np.ndarray:
        return np.zeros(STATE_LEN, np.int64)

    @staticmethod
    def positive(counts: np.ndarray) -> np.ndarray:
        return counts > 0
