"""numba-cuda kernels of ``MultiMap`` on a GPU.

Memory layout
-------------
The CPU layout (``bulkhash._cpu.multi``: rows of ``[key, value]`` or ``[key, fill, v0 ..
v(B-1)]``, the reserved key words 0 and all-ones meaning empty and tombstone, their values in a
side pool) with the GPU's grouping of rows (``bulkhash._cuda.kernels``): the row array is one
flat device array, rows form *windows* of ``G`` consecutive rows (G: the cooperative group size),
the number of windows is prime, and a key's probe visits windows by double hashing. A group of G
lanes reads a window at once (lane j: row j, coalesced) and three ``ballot_sync`` votes say which
rows hold the key, which are empty and which are tombstones. Within a window rows fill in lane
order, so a key's rows all lie before the first window of its probe with an empty row.

Probe order is insertion order
------------------------------
A lookup collects a key's rows in probe order (window by window, lane by lane). To make that the
order in which the pairs were inserted -- the CPU's order, array order within a batch -- an
insert does not let every pair claim a row on its own (threads run in no fixed order). It first
*groups* the batch by key:

1. ``group_pairs``: every pair finds its key's entry in a scratch hash table of batch positions
   (``rep``: one representative position per key, claimed with a compare-and-swap; keys are
   compared through it, so no key value is reserved there), takes a ticket there (an atomic add)
   and the key's first position (an atomic min);
2. ``number_groups`` numbers the keys densely; a prefix sum of their pair counts gives each key a
   segment of ``order``; ``scatter_pairs`` puts each pair at its ticket in its key's segment, and
   ``sort_segments`` sorts each segment (one thread per key: insertion sort, heapsort when long),
   so a segment lists the key's pairs in array order;
3. ``append_groups``: one cooperative group per key walks its probe to the end once (counting the
   values it holds, for ``max_values_per_key``) and then appends the key's pairs one after
   another, each into the first free row after the key's last (a compare-and-swap on the key
   word: groups of other keys claim rows in the same windows at the same time), or into the
   key's last row while it has room (``values_per_slot`` > 1: only this group writes this key's
   rows). Reserved keys append to the side pool, by one lane.

So values come back in the same order as on the CPU, and which pairs ``max_values_per_key``
refuses is the same: the last ones of a key in array order. A key with many pairs in one batch
is appended by one group, serially (the price of the order). Erase uses step 1 only: the first
occurrence of each key in the batch removes all its values, the others none, as on the CPU.

``get`` is WarpCore's: a count pass (one group per key), a prefix sum (the offsets: runs of
``RUN`` counts summed on the device, the runs' sums added up on the host), and a fill pass that
writes each key's values at its offset (lane j writes the value of row j of a window, at its
rank among the window's matches). ``keys()`` marks each key's first row in its probe (a thread
per run of rows) and gathers those.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .._cpu.multi import (APPENDED, FULL, KEYS, MAX_REACHED, N_CODES, NEW_KEY, PAIRS, ROWS,
                          SIDE, STATE_LEN, TOMBSTONES)
from ..hashing import hash_key
from ..probing import next_window
from .backend import CudaBackend, empty, filled
from .kernels import BLOCK, _lowest, _probe_start, _vote, blocks, group_of, tally

_ONE = np.uint32(1)

#: Elements one thread of a prefix sum (or rows, of ``mark_heads``) walks; the runs' own prefix
#: sum is taken on the host (as ``bulkhash._cuda.kernels.count_live`` does): no barriers, few
#: threads, and (under the simulator) few Python threads.
RUN = 64


# ================================================================================================
# one key's probe, by a cooperative group
# ================================================================================================

@cuda.jit(device=True)
def _highest(bits):
    """Index of the highest set bit of a nonzero uint32."""
    return 31 - cuda.clz(bits)


@cuda.jit(device=True)
def _below(lane):
    """The bits of the lanes below ``lane``."""
    return (_ONE << np.uint32(lane)) - _ONE


@cuda.jit(device=True)
def _side_index(key):
    return 0 if key == 0 else 1


@cuda.jit(device=True)
def _values_in(flat, wpr, G, w, match):
    """Values held by the rows of ``match`` in window ``w`` (every lane computes the same)."""
    if wpr == 2:
        return np.int64(cuda.popc(match))
    total = np.int64(0)
    m = match
    while m != 0:
        total += np.int64(flat[((w * G + _lowest(m)) * wpr) + 1])
        m &= m - _ONE
    return total


@cuda.jit(device=True)
def count_values(flat, wpr, G, n_windows, seed, tomb, state, key, lane, mask, base):
    """How many values ``key`` holds (all lanes of the group get the answer)."""
    if key == 0 or key == tomb:
        return state[SIDE + _side_index(key)]
    w, step = _probe_start(key, seed, n_windows)
    total = np.int64(0)
    for _ in range(n_windows):
        word = flat[(w * G + lane) * wpr]
        match = _vote(mask, base, G, word == key)
        if match != 0:
            total += _values_in(flat, wpr, G, w, match)
        if _vote(mask, base, G, word == 0) != 0:
            break
        w = next_window(w, step, n_windows)
    return total


@cuda.jit(device=True)
def copy_values(flat, wpr, G, n_windows, seed, tomb, state, side, key, out, start, limit, lane,
                mask, base):
    """Write ``key``'s values, in insertion order, to ``out[start:]``, at most ``limit``;
    returns how many (all lanes get the answer)."""
    if limit <= 0:
        return np.int64(0)
    if key == 0 or key == tomb:
        s = _side_index(key)
        n = min(state[SIDE + s], limit)
        for j in range(lane, n, G):
            out[start + j] = side[s, j]
        return n
    w, step = _probe_start(key, seed, n_windows)
    written = np.int64(0)
    for _ in range(n_windows):
        word = flat[(w * G + lane) * wpr]
        match = _vote(mask, base, G, word == key)
        if match != 0:
            if wpr == 2:
                pos = written + cuda.popc(match & _below(lane))
                if (match >> np.uint32(lane)) & _ONE and pos < limit:
                    out[start + pos] = flat[(w * G + lane) * wpr + 1]
                written += cuda.popc(match)
            else:
                m = match
                while m != 0:
                    row = w * G + _lowest(m)
                    fill = np.int64(flat[row * wpr + 1])
                    for v in range(lane, fill, G):
                        if written + v < limit:
                            out[start + written + v] = flat[row * wpr + 2 + v]
                    written += fill
                    m &= m - _ONE
            if written >= limit:
                return limit
        if _vote(mask, base, G, word == 0) != 0:
            break
        w = next_window(w, step, n_windows)
    return written


@cuda.jit(device=True)
def _take(budget, which):
    """One unit of ``budget[which]``; False (nothing taken) when it is spent. (Only atomic adds
    touch the word: the CUDA simulator locks each kind of atomic apart.)"""
    if cuda.atomic.add(budget, which, -1) <= 0:
        cuda.atomic.add(budget, which, 1)
        return False
    return True


@cuda.jit(device=True)
def _group_take(budget, which, lane, mask, base):
    ok = 0
    if lane == 0:
        ok = 1 if _take(budget, which) else 0
    return cuda.shfl_sync(mask, ok, base) != 0


@cuda.jit(device=True)
def claim_after(flat, wpr, G, n_windows, step, tomb, key, w, floor, t, lane, mask, base):
    """Claim the first free row (empty or tombstone) of ``key``'s probe from lane ``floor`` of
    window ``w`` on (``t``: windows from the home one). Returns (row or -1, its window, t,
    whether it was a tombstone)."""
    while t < n_windows:
        word = flat[(w * G + lane) * wpr]
        free = _vote(mask, base, G, (word == 0 or word == tomb) and lane >= floor)
        if free != 0:
            row = w * G + _lowest(free)
            result = 0  # 0: another group took it first; 1: claimed an empty row; 2: a tombstone
            if lane == 0:
                expected = flat[row * wpr]
                if expected == 0 or expected == tomb:
                    if cuda.atomic.cas(flat, row * wpr, expected, key) == expected:
                        result = 1 if expected == 0 else 2
            result = cuda.shfl_sync(mask, result, base)
            if result != 0:
                return row, w, t, result == 2
            continue  # lost the race for that row: look at the window again
        w = next_window(w, step, n_windows)
        floor = 0
        t += 1
    return np.int64(-1), w, t, False


@cuda.jit(device=True)
def _store(flat, wpr, row, value, fill):
    """Write ``value`` as value ``fill`` of ``row`` (and the row's new fill count)."""
    if wpr == 2:
        flat[row * wpr + 1] = value
    else:
        flat[row * wpr + 2 + fill] = value
        flat[row * wpr + 1] = fill + 1


@cuda.jit(device=True)
def walk_probe(flat, wpr, G, n_windows, seed, tomb, key, lane, mask, base):
    """Follow a (non-reserved) key's probe to its end: (values held, the window of its last row
    or -1, that row's lane, windows from home to it, that row's fill)."""
    w, step = _probe_start(key, seed, n_windows)
    held = np.int64(0)
    last_w = np.int64(-1)
    last_lane = -1
    last_t = 0
    last_fill = np.int64(0)
    for t in range(n_windows):
        word = flat[(w * G + lane) * wpr]
        match = _vote(mask, base, G, word == key)
        if match != 0:
            held += _values_in(flat, wpr, G, w, match)
            last_w = w
            last_lane = _highest(match)
            last_t = t
            last_fill = (np.int64(1) if wpr == 2
                         else np.int64(flat[(w * G + last_lane) * wpr + 1]))
        if _vote(mask, base, G, word == 0) != 0:
            break
        w = next_window(w, step, n_windows)
    return held, last_w, last_lane, last_t, last_fill


@cuda.jit(device=True)
def append_pairs(flat, wpr, G, n_windows, seed, tomb, key, values, vstride, order, lo, hi,
                 max_per_key, budget, outcome, lane, mask, base):
    """Append the pairs ``order[lo:hi]`` (positions in the batch, array order) of one
    non-reserved key. Returns (pairs stored, rows taken, tombstone delta, values held before)."""
    B = 1 if wpr == 2 else wpr - 2
    home, step = _probe_start(key, seed, n_windows)
    held, last_w, last_lane, last_t, last_fill = walk_probe(flat, wpr, G, n_windows, seed, tomb,
                                                            key, lane, mask, base)
    count = held
    stored = np.int64(0)
    rows = np.int64(0)
    tombs = np.int64(0)
    failed = False
    cur_w = last_w if last_w >= 0 else home
    for r in range(lo, hi):
        i = order[r]
        value = values[i * vstride]
        code = FULL
        if max_per_key >= 0 and count >= max_per_key:
            code = MAX_REACHED
        elif not failed and _group_take(budget, 0, lane, mask, base):
            if last_w >= 0 and last_fill < B:  # the key's last row has room
                if lane == 0:
                    _store(flat, wpr, last_w * G + last_lane, value, last_fill)
                last_fill += 1
                code = APPENDED
            elif _group_take(budget, 1, lane, mask, base):
                row, cur_w, last_t, was_tomb = claim_after(flat, wpr, G, n_windows, step, tomb,
                                                           key, cur_w, last_lane + 1, last_t,
                                                           lane, mask, base)
                if row >= 0:
                    if lane == 0:
                        _store(flat, wpr, row, value, 0)
                    last_w = cur_w
                    last_lane = row - cur_w * G
                    last_fill = 1
                    rows += 1
                    tombs -= 1 if was_tomb else 0
                    code = NEW_KEY if count == 0 else APPENDED
                elif lane == 0:  # no free row anywhere: give both budgets back
                    cuda.atomic.add(budget, 0, 1)
                    cuda.atomic.add(budget, 1, 1)
            elif lane == 0:
                cuda.atomic.add(budget, 0, 1)
        if code == FULL:
            failed = True  # later pairs of the key fail too: the stored ones stay a prefix
        elif code != MAX_REACHED:
            count += 1
            stored += 1
        if lane == 0:
            outcome[i] = code
    return stored, rows, tombs, held


@cuda.jit(device=True)
def append_side(state, side, key, values, vstride, order, lo, hi, max_per_key, budget, outcome):
    """``append_pairs`` for a reserved key word: its values go to the side pool (one thread)."""
    s = _side_index(key)
    held = state[SIDE + s]
    count = held
    failed = False
    for r in range(lo, hi):
        i = order[r]
        code = FULL
        if max_per_key >= 0 and count >= max_per_key:
            code = MAX_REACHED
        elif not failed and _take(budget, 0):
            side[s, count] = values[i * vstride]
            code = NEW_KEY if count == 0 else APPENDED
            count += 1
        if code == FULL:
            failed = True
        outcome[i] = code
    state[SIDE + s] = count
    return count - held, held


# ================================================================================================
# grouping a batch by key
# ================================================================================================

@cuda.jit
def group_pairs(keys, seed, rep, counts, first, slot_of, ticket):
    """Each pair's entry in the scratch table ``rep`` (a power of two of at least twice the batch:
    a representative batch position per key), its ticket there, and each key's first position."""
    i = cuda.grid(1)
    if i >= keys.size:
        return
    key = keys[i]
    size_mask = np.uint64(rep.size - 1)
    s = np.int64(np.uint64(hash_key(key, seed)) & size_mask)
    while True:
        r = rep[s]
        if r == -1:
            r = cuda.atomic.cas(rep, s, np.int64(-1), np.int64(i))
            if r == -1:
                r = i
        if r == i or keys[r] == key:
            break
        s = np.int64(np.uint64(s + 1) & size_mask)
    slot_of[i] = s
    ticket[i] = cuda.atomic.add(counts, s, 1)
    cuda.atomic.min(first, s, i)


@cuda.jit
def number_groups(rep, counts, first, n_groups, group_count, group_first, gid):
    """Dense group numbers for the scratch entries in use, with their pair counts and first
    positions."""
    s = cuda.grid(1)
    if s >= rep.size or rep[s] == -1:
        return
    g = cuda.atomic.add(n_groups, 0, 1)
    gid[s] = g
    group_count[g] = counts[s]
    group_first[g] = first[s]


@cuda.jit
def scatter_pairs(slot_of, ticket, gid, offsets, order):
    i = cuda.grid(1)
    if i < slot_of.size:
        order[offsets[gid[slot_of[i]]] + ticket[i]] = i


@cuda.jit(device=True)
def _sift_down(a, lo, root, end):
    while True:
        child = 2 * root + 1
        if child >= end:
            return
        if child + 1 < end and a[lo + child] < a[lo + child + 1]:
            child += 1
        if a[lo + root] >= a[lo + child]:
            return
        a[lo + root], a[lo + child] = a[lo + child], a[lo + root]
        root = child


@cuda.jit
def sort_segments(order, offsets, n_groups):
    """Sort each group's segment of ``order`` ascending (one thread per group)."""
    g = cuda.grid(1)
    if g >= n_groups:
        return
    lo = offsets[g]
    n = offsets[g + 1] - lo
    if n <= 32:  # insertion sort: tickets are mostly in order already
        for j in range(1, n):
            x = order[lo + j]
            k = j - 1
            while k >= 0 and order[lo + k] > x:
                order[lo + k + 1] = order[lo + k]
                k -= 1
            order[lo + k + 1] = x
        return
    for root in range(n // 2 - 1, -1, -1):  # heapsort
        _sift_down(order, lo, root, n)
    for end in range(n - 1, 0, -1):
        order[lo], order[lo + end] = order[lo + end], order[lo]
        _sift_down(order, lo, 0, end)


# ================================================================================================
# bulk kernels
# ================================================================================================

@cuda.jit
def append_groups(flat, wpr, G, n_windows, seed, tomb, state, side, keys, values, vstride, order,
                  offsets, n_groups, max_per_key, budget, outcome):
    """Insert: one cooperative group per key of the batch appends its pairs in array order."""
    g, lane, mask, base = group_of(G)
    if g >= n_groups:
        return
    lo = offsets[g]
    hi = offsets[g + 1]
    key = keys[order[lo]]
    if key == 0 or key == tomb:
        if lane == 0:
            stored, held = append_side(state, side, key, values, vstride, order, lo, hi,
                                       max_per_key, budget, outcome)
            cuda.atomic.add(state, PAIRS, stored)
            cuda.atomic.add(state, KEYS, 1 if held == 0 and stored > 0 else 0)
        return
    stored, rows, tombs, held = append_pairs(flat, wpr, G, n_windows, seed, tomb, key, values,
                                             vstride, order, lo, hi, max_per_key, budget,
                                             outcome, lane, mask, base)
    if lane == 0:
        cuda.atomic.add(state, PAIRS, stored)
        cuda.atomic.add(state, ROWS, rows)
        cuda.atomic.add(state, TOMBSTONES, tombs)
        cuda.atomic.add(state, KEYS, 1 if held == 0 and stored > 0 else 0)


@cuda.jit
def erase_groups(flat, wpr, G, n_windows, seed, tomb, state, keys, group_first, n_groups,
                 removed):
    """Erase: one cooperative group per key of the batch tombstones every row of its key; the
    key's first occurrence reports how many values went (``removed`` starts at 0)."""
    g, lane, mask, base = group_of(G)
    if g >= n_groups:
        return
    first = group_first[g]
    key = keys[first]
    total = np.int64(0)
    rows = np.int64(0)
    if key == 0 or key == tomb:
        if lane == 0:
            s = _side_index(key)
            total = state[SIDE + s]
            state[SIDE + s] = 0
    else:
        w, step = _probe_start(key, seed, n_windows)
        for _ in range(n_windows):
            word = flat[(w * G + lane) * wpr]
            match = _vote(mask, base, G, word == key)
            end = _vote(mask, base, G, word == 0) != 0
            if match != 0:
                total += _values_in(flat, wpr, G, w, match)
                rows += cuda.popc(match)
                cuda.syncwarp(mask)  # every lane has read the fill counts before any is cleared
                if word == key:
                    flat[(w * G + lane) * wpr] = tomb
                    if wpr > 2:
                        flat[(w * G + lane) * wpr + 1] = 0  # (refs claim positions from 0)
            if end:
                break
            w = next_window(w, step, n_windows)
    if lane == 0:
        removed[first] = total
        cuda.atomic.add(state, PAIRS, -total)
        cuda.atomic.add(state, ROWS, -rows)
        cuda.atomic.add(state, TOMBSTONES, rows)
        cuda.atomic.add(state, KEYS, -1 if total > 0 else 0)


@cuda.jit
def count(flat, wpr, G, n_windows, seed, tomb, state, keys, out):
    i, lane, mask, base = group_of(G)
    if i >= keys.size:
        return
    c = count_values(flat, wpr, G, n_windows, seed, tomb, state, keys[i], lane, mask, base)
    if lane == 0:
        out[i] = c


@cuda.jit
def fill(flat, wpr, G, n_windows, seed, tomb, state, side, keys, offsets, out):
    """The fill pass of ``get``: key i's values to ``out[offsets[i]:offsets[i + 1]]``."""
    i, lane, mask, base = group_of(G)
    if i >= keys.size:
        return
    copy_values(flat, wpr, G, n_windows, seed, tomb, state, side, keys[i], out, offsets[i],
                offsets[i + 1] - offsets[i], lane, mask, base)


@cuda.jit
def mark_heads(flat, wpr, G, n_windows, seed, tomb, marks, run_counts):
    """``marks[row]`` = 1 where ``row`` is its key's first row, for a run of RUN rows per thread;
    ``run_counts[r]``: the run's marks."""
    r = cuda.grid(1)
    if r >= run_counts.size:
        return
    heads = 0
    for row in range(r * RUN, min(marks.size, (r + 1) * RUN)):
        marks[row] = 0
        key = flat[row * wpr]
        if key == 0 or key == tomb:
            continue
        w, step = _probe_start(key, seed, n_windows)
        for _ in range(n_windows):
            first = -1
            for j in range(G):
                if flat[(w * G + j) * wpr] == key:
                    first = w * G + j
                    break
            if first >= 0:
                if first == row:
                    marks[row] = 1
                    heads += 1
                break
            w = next_window(w, step, n_windows)
    run_counts[r] = heads


@cuda.jit
def gather_heads(flat, wpr, marks, run_starts, out):
    r = cuda.grid(1)
    if r >= run_starts.size - 1:
        return
    j = run_starts[r]
    for row in range(r * RUN, min(marks.size, (r + 1) * RUN)):
        if marks[row] != 0:
            out[j] = flat[row * wpr]
            j += 1


@cuda.jit
def count_reserved(keys, tomb, counts):
    i = cuda.grid(1)
    if i < keys.size:
        if keys[i] == 0:
            cuda.atomic.add(counts, 0, 1)
        elif keys[i] == tomb:
            cuda.atomic.add(counts, 1, 1)


@cuda.jit
def repeat_keys(keys, offsets, out):
    k = cuda.grid(1)
    if k < keys.size:
        for j in range(offsets[k], offsets[k + 1]):
            out[j] = keys[k]


@cuda.jit
def positive(counts, out):
    i = cuda.grid(1)
    if i < counts.size:
        out[i] = counts[i] > 0


# ================================================================================================
# prefix sums
# ================================================================================================
@cuda.jit
def _run_sums(data, sums):
    r = cuda.grid(1)
    if r < sums.size:
        total = np.int64(0)
        for i in range(r * RUN, min(data.size, (r + 1) * RUN)):
            total += data[i]
        sums[r] = total


@cuda.jit
def _run_scan(data, run_starts, out):
    """``out[i + 1]`` = sum of ``data[:i + 1]``, a run per thread from its run's start."""
    r = cuda.grid(1)
    if r < run_starts.size - 1:
        total = run_starts[r]
        for i in range(r * RUN, min(data.size, (r + 1) * RUN)):
            total += data[i]
            out[i + 1] = total


def _run_starts(run_counts) -> tuple[object, int]:
    """The runs' exclusive prefix sum (with the total last) on the device, and the total."""
    starts = np.zeros(run_counts.size + 1, np.int64)
    np.cumsum(run_counts.copy_to_host(), out=starts[1:])
    return cuda.to_device(starts), int(starts[-1])


def offsets_of(counts):
    """``[0, c0, c0 + c1, ...]`` (int64, ``counts.size + 1``) on the device, and its total."""
    offsets = filled(counts.size + 1, np.int64, 0)
    if not counts.size:
        return offsets, 0
    runs = -(-counts.size // RUN)
    sums = empty(runs, np.int64)
    _run_sums[blocks(runs), BLOCK](counts, sums)
    run_starts, total = _run_starts(sums)
    _run_scan[blocks(runs), BLOCK](counts, run_starts, offsets)
    return offsets, total


def group_batch(keys, seed):
    """Group a batch by key (steps 1-2 of the module docs): (slot_of, ticket, gid, group_count,
    group_first, n_groups), per pair its scratch entry and ticket, per entry its group, per
    group its pair count and first position."""
    n = keys.size
    size = 1 << max(1, (2 * n - 1).bit_length())
    rep = filled(size, np.int64, -1)
    counts = filled(size, np.int64, 0)
    first = filled(size, np.int64, n)
    slot_of = empty(n, np.int64)
    ticket = empty(n, np.int64)
    group_pairs[blocks(n), BLOCK](keys, np.uint64(seed), rep, counts, first, slot_of, ticket)
    n_groups = filled(1, np.int64, 0)
    group_count = empty(n, np.int64)
    group_first = empty(n, np.int64)
    gid = empty(size, np.int64)
    number_groups[blocks(size), BLOCK](rep, counts, first, n_groups, group_count, group_first,
                                       gid)
    return slot_of, ticket, gid, group_count, group_first, int(n_groups.copy_to_host()[0])


def grouped_order(keys, seed):
    """(order, offsets, n_groups): ``order[offsets[g]:offsets[g + 1]]`` lists the positions of
    group g's pairs (one group per distinct key) in array order."""
    slot_of, ticket, gid, group_count, _, n_groups = group_batch(keys, seed)
    offsets, _ = offsets_of(group_count[:n_groups])
    order = empty(keys.size, np.int64)
    scatter_pairs[blocks(keys.size), BLOCK](slot_of, ticket, gid, offsets, order)
    sort_segments[blocks(n_groups), BLOCK](order, offsets, n_groups)
    return order, offsets, n_groups


# ================================================================================================
# the backend: what MultiTable calls
# ================================================================================================

class CudaMultiBackend(CudaBackend):
    """The GPU half of ``MultiTable``: device arrays, the kernels above."""

    def new_multi_state(self):
        return filled(STATE_LEN, np.int64, 0)

    def _geometry(self, t):
        return (t.slots.reshape(t.slots.size), t.words_per_row, t.bucket_size, t.n_buckets,
                np.uint64(t.seed), t.word.type(t.tomb))

    def count_reserved(self, keys, tomb) -> tuple[int, int]:
        counts = filled(2, np.int64, 0)
        if keys.size:
            count_reserved[blocks(keys.size), BLOCK](keys, keys.dtype.type(tomb), counts)
        zeros, ones = counts.copy_to_host()
        return int(zeros), int(ones)

    def insert(self, t, keys, values, max_per_key: int, pair_budget: int, row_budget: int):
        n = keys.size
        outcome = empty(n, np.uint8)
        if n == 0:
            return outcome, np.zeros(N_CODES, np.int64)
        flat, wpr, G, n_windows, seed, tomb = self._geometry(t)
        order, offsets, n_groups = grouped_order(keys, seed)
        budget = cuda.to_device(np.array([max(pair_budget, 0), max(row_budget, 0)], np.int64))
        vstride = 1 if values.size == n else 0
        append_groups[blocks(n_groups, G), BLOCK](flat, wpr, G, n_windows, seed, tomb, t.state,
                                                  t.side, keys, values, vstride, order, offsets,
                                                  n_groups, max_per_key, budget, outcome)
        counts = filled(8, np.int64, 0)
        tally[blocks(n), BLOCK](outcome, counts)
        return outcome, counts.copy_to_host()

    def erase(self, t, keys):
        n = keys.size
        removed = filled(n, np.int64, 0)
        if n == 0:
            return removed
        flat, wpr, G, n_windows, seed, tomb = self._geometry(t)
        _, _, _, _, group_first, n_groups = group_batch(keys, seed)
        erase_groups[blocks(n_groups, G), BLOCK](flat, wpr, G, n_windows, seed, tomb, t.state,
                                                 keys, group_first, n_groups, removed)
        return removed

    def count(self, t, keys):
        out = empty(keys.size, np.int64)
        if keys.size:
            flat, wpr, G, n_windows, seed, tomb = self._geometry(t)
            count[blocks(keys.size, G), BLOCK](flat, wpr, G, n_windows, seed, tomb, t.state,
                                               keys, out)
        return out

    def get(self, t, keys):
        counts = self.count(t, keys)
        offsets, total = offsets_of(counts)
        values = empty(total, t.word)
        if total:
            flat, wpr, G, n_windows, seed, tomb = self._geometry(t)
            fill[blocks(keys.size, G), BLOCK](flat, wpr, G, n_windows, seed, tomb, t.state,
                                              t.side, keys, offsets, values)
        return offsets, values

    def head_keys(self, t):
        flat, wpr, G, n_windows, seed, tomb = self._geometry(t)
        n_rows = t.n_rows
        runs = -(-n_rows // RUN)
        marks = empty(n_rows, np.uint8)
        run_counts = empty(runs, np.int64)
        mark_heads[blocks(runs), BLOCK](flat, wpr, G, n_windows, seed, tomb, marks, run_counts)
        run_starts, total = _run_starts(run_counts)
        out = empty(total, t.word)
        if total:
            gather_heads[blocks(runs), BLOCK](flat, wpr, marks, run_starts, out)
        return out

    def concat(self, parts, dtype):
        total = sum(p.size for p in parts)
        out = empty(total, dtype)
        at = 0
        for p in parts:
            if p.size:
                out[at:at + p.size].copy_to_device(p)
            at += p.size
        return out

    def repeat(self, keys, offsets):
        total = int(offsets[keys.size])
        out = empty(total, keys.dtype)
        if total:
            repeat_keys[blocks(keys.size), BLOCK](keys, offsets, out)
        return out

    @staticmethod
    def positive(counts):
        out = empty(counts.size, np.bool_)
        if counts.size:
            positive[blocks(counts.size), BLOCK](counts, out)
        return out
