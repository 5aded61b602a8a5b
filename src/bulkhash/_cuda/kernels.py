"""numba-cuda kernels of the open-addressing table behind HashMap, HashSet and Counter on a GPU.

Memory layout
-------------
The CPU layout (``bulkhash._cpu.kernels``) with a different grouping of the slots: one flat
device array of unsigned words, ``words_per_slot`` words per row (key, then value for a map), the
two reserved key words (0: empty, all-ones: tombstone) in their own rows after the slots, with
presence flags in the ``state`` vector. Kernels take the array flat (row ``r``'s key word is
``flat[r * words_per_slot]``): the atomics address one word, and a flat index is what they take.

Rows are grouped in *windows* of ``G`` consecutive slots, ``G`` the cooperative group size
(1-32, a table parameter), and the number of windows is prime. A key's probe visits windows by
double hashing (``bulkhash.probing.window_step``): home, home + step, home + 2 step, ... mod
n_windows, which meets every window once; after ``n_windows`` windows a probe stops and reports
``PROBE_EXCEEDED`` rather than cycle.

Cooperative probing (WarpCore's design)
---------------------------------------
A group of ``G`` lanes of one warp works on one key: lane ``j`` loads slot ``j`` of the window
(neighbouring lanes read neighbouring words, so the loads coalesce into one or two memory
transactions), and three ``ballot_sync`` votes tell every lane of the group at once where the
key is, where the empty slots are and where the tombstones are. All lanes of a group therefore
take the same branches. Only the claim of a free slot is done by one lane (the group's first),
with a compare-and-swap on the key word; a shuffle tells the others the outcome. A window fills
in lane order (a claim takes the lowest free lane, and a slot never becomes empty again while a
batch runs), so a window with an empty slot ends the probe.

Erase leaves a tombstone, and inserts reuse tombstones (WarpCore never does). That is safe against
two groups inserting the same key because both walk the same probe sequence to the end (a key may
sit past a tombstone) and then both claim the *first* free slot of it; free slots only ever become
taken while a batch runs, so the loser of that race finds the winner's key there, and a group
whose chosen slot went to another key starts over.

Batches mean what they mean on the CPU
---------------------------------------
Threads run in no fixed order, but a batch must mean what inserting its keys one at a time in
array order means. So an upsert runs in phases, each a kernel over the batch:

1. ``claim``: every occurrence finds its key's row or claims one (``rows``, ``code``) and writes
   its index into ``aux[row]`` with an atomic min: afterwards ``aux`` holds each row's *first*
   occurrence in array order. (``refind`` then re-probes the occurrences that found no room: the
   key may have been placed by another occurrence after they looked.)
2. ``mark_fresh``: the occurrence that claimed a row sets the row's FRESH bit in ``aux``.
3. ``settle``: the first occurrence of a fresh row is the one that is NEW (all others UPDATED),
   and stores its value.
4. values: ``"overwrite"`` resets ``aux`` and takes an atomic max (the *last* occurrence stores);
   ``"keep"`` is done; the arithmetic ops combine every other occurrence into the row with a
   compare-and-swap loop. Integer add, min and max are associative and commutative, so the
   result is the array-order result; float addition is not, and on a GPU a key's occurrences
   within one batch are added in an unspecified order (bits may differ from run to run, as with
   any GPU atomic reduction). Which occurrence of a key reports a saturated count is likewise
   the one the GPU applied when the count clipped.

``aux`` is a uint32 per row, allocated per call (a batch holds fewer than 2**31 keys).
"""

from __future__ import annotations

import numpy as np
from numba import config, cuda

from .._cpu.kernels import (CODE_MASK, FULL, HAS_EMPTY_KEY, HAS_TOMB_KEY, NEW, NOT_FOUND,
                            PROBE_LIMIT, REMOVED, SATURATED, SIZE, TOMBSTONES, UPDATED, combine)
from ..hashing import hash_key, home_bucket
from ..probing import next_window, window_step

#: Threads per block of every kernel (a multiple of 32, so groups never straddle warps). The CUDA
#: simulator runs each thread as a Python thread, idle ones too: there, one warp per block.
BLOCK = 32 if config.ENABLE_CUDASIM else 128

# --- phase codes in ``code`` (uint8), besides the final outcome codes of the CPU kernels --------
CLAIMED = 8  # this occurrence claimed a free slot for its key
FOUND = 9  # this occurrence found its key in the table
PROBE_EXCEEDED = 10  # the probe met every window and none had room
_RETRY = 11  # internal: the slot this probe chose went to another key; probe again

FRESH = np.uint32(0x80000000)  # aux bit: the row was claimed by this batch
NO_INDEX = np.uint32(0x7FFFFFFF)  # aux value: no occurrence yet (above any batch index)
_LOW31 = np.uint32(0x7FFFFFFF)


# ================================================================================================
# the cooperative group
# ================================================================================================

@cuda.jit(device=True)
def group_of(G):
    """(group id in the grid, lane in the group, warp mask of the group, lane of its leader)."""
    t = cuda.grid(1)
    base = (cuda.laneid // G) * G
    mask = (np.uint32(0xFFFFFFFF) >> np.uint32(32 - G)) << np.uint32(base)
    return t // G, t % G, mask, base


@cuda.jit(device=True)
def _vote(mask, base, G, predicate):
    """The group's ballot on ``predicate``, shifted down so that bit j is lane j of the group."""
    bits = cuda.ballot_sync(mask, predicate)
    return (bits >> np.uint32(base)) & (np.uint32(0xFFFFFFFF) >> np.uint32(32 - G))


@cuda.jit(device=True)
def _lowest(bits):
    """Index of the lowest set bit of a nonzero uint32 (the bits below it, counted)."""
    return cuda.popc(~bits & (bits - np.uint32(1)))


@cuda.jit(device=True)
def _probe_start(key, seed, n_windows):
    # np.uint64 around the shared hash: under the CUDA simulator it runs as a CPU function that
    # hands back a Python int, which later calls would type as int64 (a no-op on the GPU)
    h = np.uint64(hash_key(key, seed))
    return home_bucket(h, n_windows), window_step(h, n_windows)


@cuda.jit(device=True)
def is_reserved(key, tomb):
    return key == 0 or key == tomb


@cuda.jit(device=True)
def special_row(key, n_slots):
    """(row, state flag index) of a reserved key word: 0 and all-ones live after the slots."""
    if key == 0:
        return n_slots, HAS_EMPTY_KEY
    return n_slots + 1, HAS_TOMB_KEY


@cuda.jit(device=True)
def find_row(flat, wps, G, n_windows, seed, tomb, state, key, lane, mask, base):
    """Row of ``key`` or -1, found cooperatively by the group (all lanes get the answer)."""
    if is_reserved(key, tomb):
        row, flag = special_row(key, n_windows * G)
        return row if state[flag] != 0 else -1
    w, step = _probe_start(key, seed, n_windows)
    for _ in range(n_windows):
        word = flat[(w * G + lane) * wps]
        hit = _vote(mask, base, G, word == key)
        if hit != 0:
            return w * G + _lowest(hit)
        if _vote(mask, base, G, word == 0) != 0:
            return -1  # windows fill in lane order: the key is not further on
        w = next_window(w, step, n_windows)
    return -1


@cuda.jit(device=True)
def _take_budget(remaining):
    """One new key's share of the call's budget; False (and nothing taken) if it is spent."""
    if cuda.atomic.sub(remaining, 0, 1) <= 0:
        cuda.atomic.add(remaining, 0, 1)
        return False
    return True


@cuda.jit(device=True)
def _claim_special(flat, wps, n_slots, state, remaining, key):
    """(row, code) for a reserved key word: claim its special row or find it there."""
    row, flag = special_row(key, n_slots)
    if state[flag] != 0:
        return row, FOUND
    if not _take_budget(remaining):
        return -1, FULL
    if cuda.atomic.cas(state, flag, 0, 1) != 0:
        cuda.atomic.add(remaining, 0, 1)
        return row, FOUND
    flat[row * wps] = key
    cuda.atomic.add(state, SIZE, 1)
    return row, CLAIMED


@cuda.jit(device=True)
def claim_row(flat, wps, G, n_windows, seed, tomb, state, remaining, key, lane, mask, base):
    """Find ``key``'s row or claim a free one for it, cooperatively: (row, code) with code
    FOUND, CLAIMED, FULL (the budget is spent) or PROBE_EXCEEDED (no free slot anywhere).

    The probe walks to the end of the key's sequence (a window with an empty slot), remembering
    the first free slot it passed (empty or tombstone); only then does the leader claim that
    slot, so that two groups inserting the same key pick the same slot (module docs).
    """
    n_slots = n_windows * G
    if is_reserved(key, tomb):
        row = np.int64(-1)
        code = np.int64(0)
        if lane == 0:
            row, code = _claim_special(flat, wps, n_slots, state, remaining, key)
        return cuda.shfl_sync(mask, row, base), cuda.shfl_sync(mask, code, base)
    home, step = _probe_start(key, seed, n_windows)
    zero = tomb ^ tomb  # the empty word, in the table's word type
    for _ in range(n_slots + 1):  # each retry means another key took a slot: bounded by slots
        w = home
        free = np.int64(-1)
        free_word = zero
        for _ in range(n_windows):
            word = flat[(w * G + lane) * wps]
            hit = _vote(mask, base, G, word == key)
            if hit != 0:
                return w * G + _lowest(hit), FOUND
            empty = _vote(mask, base, G, word == 0)
            if free < 0:
                free_lanes = empty | _vote(mask, base, G, word == tomb)
                if free_lanes != 0:
                    f = _lowest(free_lanes)
                    free = w * G + f
                    free_word = zero if (empty >> np.uint32(f)) & np.uint32(1) else tomb
            if empty != 0:
                break
            w = next_window(w, step, n_windows)
        if free < 0:
            return np.int64(-1), PROBE_EXCEEDED
        code = np.int64(_RETRY)
        if lane == 0:
            if not _take_budget(remaining):
                code = FULL
            else:
                seen = cuda.atomic.cas(flat, free * wps, free_word, key)
                if seen == free_word:
                    code = CLAIMED
                    cuda.atomic.add(state, SIZE, 1)
                    if free_word == tomb:
                        cuda.atomic.sub(state, TOMBSTONES, 1)
                else:
                    cuda.atomic.add(remaining, 0, 1)
                    if seen == key:
                        code = FOUND
        code = cuda.shfl_sync(mask, code, base)
        if code == FULL:
            return np.int64(-1), FULL
        if code != _RETRY:
            return free, code
    return np.int64(-1), PROBE_EXCEEDED


# ================================================================================================
# lookup
# ================================================================================================

@cuda.jit
def lookup(flat, wps, G, n_windows, seed, tomb, state, keys, default, out_values, out_found):
    """Each key's value word (``default`` where absent) and presence; an empty output is skipped."""
    i, lane, mask, base = group_of(G)
    if i >= keys.size:
        return
    row = find_row(flat, wps, G, n_windows, seed, tomb, state, keys[i], lane, mask, base)
    if lane == 0:
        if out_found.size > 0:
            out_found[i] = row >= 0
        if out_values.size > 0:
            out_values[i] = flat[row * wps + 1] if row >= 0 else default


# ================================================================================================
# upsert, in phases (module docs)
# ================================================================================================

@cuda.jit
def claim(flat, wps, G, n_windows, seed, tomb, state, remaining, keys, rows, code, aux):
    """Phase 1: each occurrence's row (found or claimed) and code; ``aux[row]`` = first index."""
    i, lane, mask, base = group_of(G)
    if i >= keys.size:
        return
    row, c = claim_row(flat, wps, G, n_windows, seed, tomb, state, remaining, keys[i], lane, mask,
                       base)
    if lane == 0:
        rows[i] = row
        code[i] = c
        if row >= 0:
            cuda.atomic.min(aux, row, np.uint32(i))


@cuda.jit
def refind(flat, wps, G, n_windows, seed, tomb, state, keys, rows, code, aux):
    """Phase 1b: an occurrence that found no room looks again; its key may have gone in since."""
    i, lane, mask, base = group_of(G)
    if i >= keys.size or (code[i] != FULL and code[i] != PROBE_EXCEEDED):
        return
    row = find_row(flat, wps, G, n_windows, seed, tomb, state, keys[i], lane, mask, base)
    if lane == 0 and row >= 0:
        rows[i] = row
        code[i] = FOUND
        cuda.atomic.min(aux, row, np.uint32(i))


@cuda.jit
def mark_fresh(rows, code, aux):
    """Phase 2: the row an occurrence claimed gets the FRESH bit."""
    i = cuda.grid(1)
    if i < rows.size and code[i] == CLAIMED:
        aux[rows[i]] |= FRESH


@cuda.jit
def settle(flat, wps, rows, code, aux, values, vstride, outcome):
    """Phase 3: outcome bytes; the first occurrence of a fresh row stores its value."""
    i = cuda.grid(1)
    if i >= rows.size:
        return
    if code[i] != FOUND and code[i] != CLAIMED:
        outcome[i] = FULL | (PROBE_LIMIT if code[i] == PROBE_EXCEEDED else 0)
        return
    row = rows[i]
    a = aux[row]
    if (a & FRESH) != 0 and (a & _LOW31) == i:
        outcome[i] = NEW
        if wps > 1:
            flat[row * wps + 1] = values[i * vstride]
    else:
        outcome[i] = UPDATED


@cuda.jit
def reset_aux(rows, outcome, aux):
    """``aux[row] = 0`` for every row the batch touched (many lanes may store the same 0)."""
    i = cuda.grid(1)
    if i < rows.size and (outcome[i] & CODE_MASK) != FULL:
        aux[rows[i]] = 0


@cuda.jit
def mark_last(rows, outcome, aux):
    """``aux[row]`` = the last occurrence of each row (an atomic max)."""
    i = cuda.grid(1)
    if i < rows.size and (outcome[i] & CODE_MASK) != FULL:
        cuda.atomic.max(aux, rows[i], np.uint32(i))


@cuda.jit
def store_last(flat, wps, rows, outcome, aux, values, vstride):
    """``"overwrite"``: the last occurrence of each row stores its value."""
    i = cuda.grid(1)
    if i < rows.size and (outcome[i] & CODE_MASK) != FULL and aux[rows[i]] == i:
        flat[rows[i] * wps + 1] = values[i * vstride]


@cuda.jit(device=True)
def combine_into(flat, index, value, op, kind, nbytes):
    """Atomically combine ``value`` into ``flat[index]``; True if a saturating add clipped."""
    old = flat[index]
    while True:
        bits, saturated = combine(old, value, op, kind, nbytes)
        seen = cuda.atomic.cas(flat, index, old, bits)  # (cas converts bits to the word type)
        if seen == old:
            return saturated
        old = seen


@cuda.jit
def combine_rest(flat, wps, rows, outcome, values, vstride, op, kind, nbytes):
    """The arithmetic ops: every UPDATED occurrence combines its value into its row."""
    i = cuda.grid(1)
    if i < rows.size and outcome[i] == UPDATED:
        if combine_into(flat, rows[i] * wps + 1, values[i * vstride], op, kind, nbytes):
            outcome[i] = UPDATED | SATURATED


# ================================================================================================
# erase
# ================================================================================================

@cuda.jit
def locate(flat, wps, G, n_windows, seed, tomb, state, keys, rows, aux):
    """Erase phase 1: each occurrence's row (or -1); ``aux[row]`` = its first occurrence."""
    i, lane, mask, base = group_of(G)
    if i >= keys.size:
        return
    row = find_row(flat, wps, G, n_windows, seed, tomb, state, keys[i], lane, mask, base)
    if lane == 0:
        rows[i] = row
        if row >= 0:
            cuda.atomic.min(aux, row, np.uint32(i))


@cuda.jit
def remove_first(flat, wps, n_slots, tomb, state, rows, aux, outcome):
    """Erase phase 2: a key's first occurrence removes it (tombstone, or the special row's flag);
    the value word goes back to 0, which refs add onto when they claim the slot."""
    i = cuda.grid(1)
    if i >= rows.size:
        return
    row = rows[i]
    if row < 0 or aux[row] != i:
        outcome[i] = NOT_FOUND
        return
    outcome[i] = REMOVED
    if wps > 1:
        flat[row * wps + 1] = 0
    cuda.atomic.sub(state, SIZE, 1)
    if row >= n_slots:
        state[HAS_EMPTY_KEY if row == n_slots else HAS_TOMB_KEY] = 0
    else:
        flat[row * wps] = tomb
        cuda.atomic.add(state, TOMBSTONES, 1)


# ================================================================================================
# whole-table and whole-array helpers
# ================================================================================================

@cuda.jit
def tally(outcome, counts):
    """How many keys ended with each outcome code (``counts[0]``: how many saturated)."""
    i = cuda.grid(1)
    if i < outcome.size:
        c = outcome[i]
        cuda.atomic.add(counts, c & CODE_MASK, 1)
        if c & SATURATED:
            cuda.atomic.add(counts, 0, 1)


#: Slots one thread of ``count_live`` / ``gather_live`` walks: the slot order of ``items()`` is
#: kept by giving each thread a run of slots and each run its output offset (a prefix sum).
RUN = 64


@cuda.jit
def count_live(flat, wps, n_slots, tomb, counts):
    """Live keys in each run of RUN slots."""
    r = cuda.grid(1)
    if r >= counts.size:
        return
    live = 0
    for row in range(r * RUN, min(n_slots, (r + 1) * RUN)):
        word = flat[row * wps]
        if word != 0 and word != tomb:
            live += 1
    counts[r] = live


@cuda.jit
def gather_live(flat, wps, n_slots, tomb, state, starts, out_keys, out_values):
    """Every stored key (and value, if wanted) in slot order, the reserved keys last."""
    r = cuda.grid(1)
    if r >= starts.size:
        return
    want_values = out_values.size > 0
    j = starts[r]
    if r == starts.size - 1:  # the last thread also writes the special rows
        for row, flag in ((n_slots, HAS_EMPTY_KEY), (n_slots + 1, HAS_TOMB_KEY)):
            if state[flag] != 0:
                out_keys[j] = flat[row * wps]
                if want_values:
                    out_values[j] = flat[row * wps + 1]
                j += 1
        return
    for row in range(r * RUN, min(n_slots, (r + 1) * RUN)):
        word = flat[row * wps]
        if word != 0 and word != tomb:
            out_keys[j] = word
            if want_values:
                out_values[j] = flat[row * wps + 1]
            j += 1


@cuda.jit
def hll_registers(keys, seed, regs):
    """HyperLogLog registers of a batch (the CPU's ``hll_registers``, with an atomic max)."""
    i = cuda.grid(1)
    if i >= keys.size:
        return
    h = np.uint64(hash_key(keys[i], seed))
    idx = h >> np.uint64(64 - 12)
    rest = (h & np.uint64((1 << 52) - 1)) | np.uint64(1 << 52)
    rank = np.uint32(1)
    while (rest & np.uint64(1)) == 0:
        rest >>= np.uint64(1)
        rank += np.uint32(1)
    cuda.atomic.max(regs, idx, rank)


@cuda.jit
def fill(arr, value):
    i = cuda.grid(1)
    if i < arr.size:
        arr[i] = value


@cuda.jit
def cast(src, dst):
    """``dst[i] = src[i]`` converted to ``dst``'s dtype (as C converts: integers wrap)."""
    i = cuda.grid(1)
    if i < src.size:
        dst[i] = src[i]


@cuda.jit
def take(src, index, dst):
    i = cuda.grid(1)
    if i < index.size:
        dst[i] = src[index[i]]


@cuda.jit
def put(dst, index, src):
    i = cuda.grid(1)
    if i < index.size:
        dst[index[i]] = src[i]


@cuda.jit
def equal_to(arr, value, out):
    i = cuda.grid(1)
    if i < arr.size:
        out[i] = arr[i] == value


def blocks(n: int, lanes: int = 1) -> int:
    """Blocks of BLOCK threads for ``n`` items of ``lanes`` threads each (at least one)."""
    return max(1, -(-n * lanes // BLOCK))

