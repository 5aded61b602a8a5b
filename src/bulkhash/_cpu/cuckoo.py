"""The cuckoo filter's arithmetic and operations, written once for both targets, and its Numba
CPU kernels.

Memory layout
-------------
Partial-key cuckoo hashing (Fan, Andersen, Kaminsky and Mitzenmacher, CoNEXT 2014): the filter
stores an ``f``-bit *fingerprint* of each key, never the key, in one of two *buckets* of
``BUCKET_SLOTS = 4`` slots. The table is one flat array of unsigned words::

    f = 8:   uint32 words, one per bucket     [fp3 fp2 fp1 fp0]            (4 bytes a bucket)
    f = 16:  uint64 words, one per bucket     [fp3 fp2 fp1 fp0]            (8 bytes)
    f = 32:  uint64 words, two per bucket     [fp1 fp0] [fp3 fp2]          (16 bytes)

Slot ``j`` of a word is bits ``[j*f, (j+1)*f)``. Why these widths: a bucket is one aligned word
(two for ``f = 32``), so claiming or clearing a slot is a single compare-and-swap on the word that
holds it -- on the CPU (LLVM ``cmpxchg``) and on a GPU (``atomicCAS`` on 32 or 64 bits) alike --
and a bucket never straddles a cache line (4, 8 or 16 bytes divide 64; the array is allocated
64-byte aligned), so looking a key up reads at most two lines, one per bucket. A width in
between (say 12 bits) would save no memory with one bucket per word, and packing buckets across
words would lose the single-word atomic. The fingerprint 0 is reserved for "empty slot" (a new
table is zeros); fingerprints are spread evenly over ``1 .. 2**f - 1`` (``fingerprint``), so
every *key* value stays legal.

Addressing
----------
With ``h = fmix64(key ^ seed)`` (``bulkhash.hashing.hash_key``), a key's first bucket is
``home_bucket(h, n)`` (the top 32 bits of ``h``, multiply-shift), its fingerprint comes from the
low 32 bits, and its other bucket is ``alt_bucket(b, fp) = (H(fp) - b) mod n`` with
``H(fp) = home_bucket(fmix64(fp ^ seed ^ salt), n)``. That map is an involution --
``alt(alt(b)) = b`` -- so a fingerprint found in either bucket can move to the other knowing
only the bucket it is in, which is all partial-key cuckoo hashing needs. Fan et al. use
``b XOR hash(fp)``, which needs a power-of-two bucket count and so up to twice the memory a
capacity asks for; the difference ``H - b`` is the same involution for any bucket count ``n``,
so the table is sized to the capacity (``capacity / max_load_factor`` slots and a little slack:
``bulkhash.cuckoo``).

False-positive rate: an absent key matches each of the up to ``2 * 4`` occupied slots of its two
buckets with probability ``q = 1 / (2**f - 1)``, so at load ``a`` the rate is
``1 - (1 - q) ** (8 * a)``, at most ``8 / (2**f - 1)``: 0.031 for f = 8, 1.2e-4 for f = 16 and
1.9e-9 for f = 32. The filter takes the smallest width whose bound meets the target.

Adding: lock-free claims, and evictions that never carry a fingerprint outside the table
--------------------------------------------------------------------------------------------
``add_one`` first tries to claim an empty slot of either bucket with one CAS. When both are
full it makes room as MemC3 and libcuckoo do, *path first, then moves from the end*:

1. search (``search``): breadth-first from the key's two buckets, looking at every victim of a
   bucket for one whose other bucket has an empty slot; the buckets those victims would go to
   are queued for the next level (each bucket once). A level's buckets are independent loads,
   which the memory system serves together, so a level costs about one memory latency; at load
   0.95 the first or second level almost always ends the search (a random walk that looks at
   one victim per step, Fan et al.'s, takes several times as long there). Where the first
   levels are all full -- a few keys in ten million at load 0.95 -- the search goes deep
   instead, walking on from the deepest bucket it queued. At most ``SEARCH_BUCKETS`` buckets
   are queued. The search only reads.
2. move, last victim first (``move_chain``): each victim is *copied* into an empty slot of its
   other bucket (CAS), then *cleared* from the slot it left (CAS expecting its fingerprint).
   Each move frees a slot for the victim before it, and the first for the new key, which is
   then claimed as in the first step.

At every instant every stored fingerprint is in the table (a move holds it twice for a moment,
which a lookup cannot tell from once), so nothing is ever lost however threads interleave:

* a copy that finds no empty slot (another thread took it) abandons the chain; the moves
  already made each left a fingerprint in one of its own two buckets, and the add searches
  again;
* a clear that finds its slot changed (another thread moved the same victim meanwhile) removes
  one copy of that fingerprint from the victim's two buckets instead (``drop_copy``) -- one
  exists, because each thread removes only after its own copy went in, and nothing else removes
  during an add.

A key whose searches have looked at ``max_kicks`` buckets without making room is not added, and
is reported. Slots change hands only by CAS, so the scheme is the same on the CPU's threads and
a GPU's.

Written once for both targets
-----------------------------
The arithmetic (hashing, fingerprints, the other bucket, slot fields of a word) is plain
``@njit(inline="always")`` functions on scalars that both Numba targets compile. The per-key
operations that touch the table (``swap_value``, ``add_one``, ``erase_one``, ``contains_one``,
...) are built by ``build_operations(jit, cas, prefetch)`` from one source: the CPU passes
``njit``, the ``cmpxchg`` intrinsic and a software prefetch, ``bulkhash._cuda.cuckoo`` passes
``cuda.jit(device=True)``, ``cuda.atomic.cas`` and a no-op (under Numba's CUDA simulator, plain
Python functions). Only the kernels that split a batch between threads differ per target.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ..hashing import fmix64, hash_key, home_bucket
from .intrinsics import cas as _cpu_cas
from .intrinsics import prefetch

#: Fingerprint slots per bucket (Fan et al.'s b = 4: loads of 95% and more).
BUCKET_SLOTS = 4
#: Fingerprint widths the table packs (bits), and the word type each is stored in.
FINGERPRINT_BITS = (8, 16, 32)
#: Bucket-pair slots an absent key is compared against: its false-positive budget.
COMPARED_SLOTS = 2 * BUCKET_SLOTS
#: Buckets an add may search for room (over all its searches) before the key is reported as
#: failed. (Fan et al.'s random walk takes up to 500 single-victim steps.)
DEFAULT_MAX_KICKS = 256
#: Buckets one breadth-first search for room may queue (per-thread scratch, 16 bytes a bucket:
#: a GPU thread keeps the queue in local memory). Four levels of the search fit.
SEARCH_BUCKETS = 64

# --- the state vector (int64) ---------------------------------------------------------------------
SIZE = 0  # fingerprints stored
REF_FAILED = 1  # adds through a ref that found no room
STATE_LEN = 2

_LOW32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ALT_SALT = np.uint64(0xD6E8FEB86659FD93)  # keeps H(fp) apart from a key's own hash
_DROP_TRIES = 1 << 20  # bound on a retry loop that always ends far sooner (see drop_copy)

_SERIAL_BELOW = 1 << 14  # batches smaller than this run on one thread
BLOCK = 1024  # keys per block: hashed in one pass, then probed with prefetch
PREFETCH_DISTANCE = 16  # keys ahead whose buckets are prefetched
SEARCH_AHEAD = 8  # keys ahead whose search for room is prefetched, when their buckets are full


def false_positive_bound(fp_bits: int, load: float = 1.0) -> float:
    """The false-positive rate at ``load`` for ``fp_bits``-bit fingerprints:
    ``1 - (1 - 1/(2**f - 1)) ** (8 * load)`` (at most ``8 / (2**f - 1)``)."""
    q = 1.0 / ((1 << fp_bits) - 1)
    return float(-np.expm1(COMPARED_SLOTS * load * np.log1p(-q)))


def word_dtype(fp_bits: int) -> np.dtype:
    """The table word for a fingerprint width: one bucket (two for f = 32) per word group."""
    return np.dtype(np.uint32) if fp_bits == 8 else np.dtype(np.uint64)


def words_per_bucket_of(fp_bits: int) -> int:
    return 2 if fp_bits == 32 else 1


# ================================================================================================
# arithmetic on scalars (both targets)
# ================================================================================================

@njit(inline="always", cache=True, nogil=True)
def slots_per_word(fp_bits):
    """Fingerprint slots one table word holds: 4 (f = 8 in uint32, f = 16 in uint64) or 2."""
    return 2 if fp_bits == 32 else 4


@njit(inline="always", cache=True, nogil=True)
def words_per_bucket(fp_bits):
    return 2 if fp_bits == 32 else 1


@njit(inline="always", cache=True, nogil=True)
def fingerprint(h, fp_bits):
    """A nonzero ``fp_bits``-bit fingerprint from the low 32 bits of a key's hash: multiply-shift
    onto ``1 .. 2**f - 1``, so every nonzero value is (near-)equally likely and 0 stays free."""
    span = (np.uint64(1) << np.uint64(fp_bits)) - np.uint64(1)
    return (((np.uint64(h) & _LOW32) * span) >> _S32) + np.uint64(1)


@njit(inline="always", cache=True, nogil=True)
def locate(key, seed, n_buckets, fp_bits):
    """A key word's (first bucket, fingerprint, hash); the hash seeds its searches for room."""
    h = hash_key(np.uint64(key), np.uint64(seed))
    return home_bucket(h, n_buckets), fingerprint(h, fp_bits), h


@njit(inline="always", cache=True, nogil=True)
def alt_bucket(bucket, fp, n_buckets, seed):
    """The other bucket of fingerprint ``fp`` found in ``bucket``: ``(H(fp) - bucket) mod n``.

    An involution for every ``n`` (module docs), so ``alt_bucket(alt_bucket(b, fp), fp) == b``.
    """
    pair_sum = home_bucket(fmix64(np.uint64(fp) ^ np.uint64(seed) ^ _ALT_SALT), n_buckets)
    other = pair_sum - np.int64(bucket)
    if other < 0:
        other += n_buckets
    return np.int64(other)


@njit(inline="always", cache=True, nogil=True)
def field_of(word, j, fp_bits):
    """The fingerprint in slot ``j`` of a word."""
    mask = (np.uint64(1) << np.uint64(fp_bits)) - np.uint64(1)
    return (np.uint64(word) >> np.uint64(j * fp_bits)) & mask


@njit(inline="always", cache=True, nogil=True)
def with_field(word, j, fp_bits, value):
    """``word`` with slot ``j`` set to ``value``."""
    shift = np.uint64(j * fp_bits)
    mask = ((np.uint64(1) << np.uint64(fp_bits)) - np.uint64(1)) << shift
    return (np.uint64(word) & ~mask) | (np.uint64(value) << shift)


@njit(inline="always", cache=True, nogil=True)
def find_field(word, value, fp_bits):
    """The first slot of ``word`` holding ``value``, or -1."""
    for j in range(slots_per_word(fp_bits)):
        if field_of(word, j, fp_bits) == np.uint64(value):
            return j
    return -1


@njit(inline="always", cache=True, nogil=True)
def next_random(state):
    """The next pseudo-random number of a key's searches (a Weyl step through fmix64)."""
    return fmix64(np.uint64(state) + _GOLDEN)


# ================================================================================================
# per-key operations on the table (built once per target)
# ================================================================================================

class Operations(NamedTuple):
    """The per-key operations, compiled for one target (``build_operations``)."""

    bucket_find: object
    swap_value: object
    contains_one: object
    erase_one: object
    add_one: object


def build_operations(jit, cas, prefetch) -> Operations:
    """The per-key table operations for one target.

    ``jit`` compiles a function for the target (``njit`` on the CPU, ``cuda.jit(device=True)`` on
    a GPU); ``cas(table, index, expected, new)`` is its atomic compare-and-swap on one table
    word, returning the word it found; ``prefetch(table, index)`` hints that a word will be read
    soon (a no-op where the hardware has no use for it). Everything else the operations call is
    the target-independent arithmetic above.
    """

    @jit
    def bucket_find(table, bucket, value, fp_bits):
        """Slot (0-3) of the first slot of ``bucket`` holding ``value``, or -1."""
        per_word = slots_per_word(fp_bits)
        words = words_per_bucket(fp_bits)
        for w in range(words):
            j = find_field(table[bucket * words + w], value, fp_bits)
            if j >= 0:
                return w * per_word + j
        return -1

    @jit
    def swap_value(table, bucket, old, new, fp_bits, fresh):
        """Atomically turn one slot of ``bucket`` holding ``old`` into ``new``; False if no slot
        holds ``old``. ``old = 0`` claims an empty slot, ``new = 0`` removes a fingerprint.
        ``fresh`` reads each word with an atomic (a GPU's plain load may come from a stale L1
        line; a retry loop that must see other threads' writes asks for it)."""
        words = words_per_bucket(fp_bits)
        for w in range(words):
            i = bucket * words + w
            if fresh:
                word = np.uint64(cas(table, i, 0, 0))
            else:
                word = np.uint64(table[i])
            while True:
                j = find_field(word, old, fp_bits)
                if j < 0:
                    break
                seen = np.uint64(cas(table, i, word, with_field(word, j, fp_bits, new)))
                if seen == word:
                    return True
                word = seen
        return False

    @jit
    def clear_slot(table, bucket, slot, fp, fp_bits):
        """Clear slot ``slot`` of ``bucket`` if it still holds ``fp``; False if it does not."""
        per_word = slots_per_word(fp_bits)
        i = bucket * words_per_bucket(fp_bits) + slot // per_word
        j = slot % per_word
        word = np.uint64(table[i])
        while field_of(word, j, fp_bits) == np.uint64(fp):
            seen = np.uint64(cas(table, i, word, with_field(word, j, fp_bits, 0)))
            if seen == word:
                return True
            word = seen
        return False

    @jit
    def drop_copy(table, bucket, other, fp, fp_bits):
        """Remove one copy of ``fp`` from the bucket pair (``bucket``, ``other``): the extra copy
        a move made when another thread moved the same victim first (module docs)."""
        for _ in range(_DROP_TRIES):
            if swap_value(table, other, fp, 0, fp_bits, True):
                return
            if swap_value(table, bucket, fp, 0, fp_bits, True):
                return
        # Not reached: a copy exists in the pair while this thread's own copy is unremoved. Were
        # it ever reached, the extra copy stays: a duplicate fingerprint, never a lost one.

    @jit
    def queued(node, count, bucket):
        """Whether ``bucket`` is among the first ``count`` entries of a search queue."""
        for e in range(count):
            if node[e] >> 10 == bucket:
                return True
        return False

    @jit
    def prefetch_level(table, n_buckets, fp_bits, seed, node, first, stop):
        """Prefetch the other buckets of every victim of queue entries ``first .. stop - 1``
        (the buckets themselves were read by the level before): one level of a search then
        waits for memory about once, not once per bucket."""
        per_word = slots_per_word(fp_bits)
        words = words_per_bucket(fp_bits)
        for e in range(first, stop):
            bucket = node[e] >> 10
            for slot in range(BUCKET_SLOTS):
                victim = field_of(table[bucket * words + slot // per_word], slot % per_word,
                                  fp_bits)
                prefetch(table, alt_bucket(bucket, victim, n_buckets, seed) * words)

    @jit
    def search(table, n_buckets, fp_bits, seed, bucket1, bucket2, walk, node, node_fp):
        """Search from the key's two full buckets for a victim whose other bucket has an empty
        slot: (entry, slot, fingerprint) of that victim, or (-1, -1, 0) if the ``node.size``
        buckets the queue holds have none. ``slot = -1`` means the entry's own bucket has room
        again (another thread cleared a slot).

        Queue entry ``e`` is a bucket reached by moving a victim out of its parent entry's
        bucket: ``node[e] = bucket << 10 | (parent + 1) << 2 | slot in the parent``, and
        ``node_fp[e]`` is that victim (the two roots have parent 0). A bucket is queued once.

        First breadth-first, over half the queue: looking at all four victims of a bucket issues
        four independent loads, which the memory system serves together, and a level's buckets
        are prefetched together, so a level costs about one memory latency; at load 0.95 the
        first or second level almost always finds room. Then, in the rare dense spot where the
        first levels are all full (a few keys in ten million, at load 0.95), deep: a walk from
        the deepest bucket queued, on through a victim whose other bucket is not queued yet,
        for the other half of the queue. ``walk`` seeds the choices (a retry goes elsewhere)."""
        per_word = slots_per_word(fp_bits)
        words = words_per_bucket(fp_bits)
        node[0] = bucket1 << 10
        node[1] = bucket2 << 10
        count = 1 if bucket2 == bucket1 else 2
        breadth = node.size // 2
        head = 0
        level_end = 0
        while head < count:
            if head == level_end:  # a new level: fetch every bucket it will look at, together
                prefetch_level(table, n_buckets, fp_bits, seed, node, head, count)
                level_end = count
            bucket = node[head] >> 10
            walk = np.uint64(next_random(walk))  # (np.uint64: the simulator gets a Python int)
            first = np.int64(walk >> np.uint64(62))
            for t in range(BUCKET_SLOTS):
                slot = (first + t) % BUCKET_SLOTS
                victim = field_of(table[bucket * words + slot // per_word], slot % per_word,
                                  fp_bits)
                if victim == np.uint64(0):
                    return head, -1, np.uint64(0)
                dest = alt_bucket(bucket, victim, n_buckets, seed)
                if bucket_find(table, dest, 0, fp_bits) >= 0:
                    return head, slot, victim
                if count < breadth and not queued(node, count, dest):
                    node[count] = (dest << 10) | ((head + 1) << 2) | slot
                    node_fp[count] = victim
                    count += 1
            head += 1
        entry = count - 1
        while count < node.size:
            bucket = node[entry] >> 10
            walk = np.uint64(next_random(walk))
            first = np.int64(walk >> np.uint64(62))
            onward = -1
            onward_dest = np.int64(0)
            onward_victim = np.uint64(0)
            for t in range(BUCKET_SLOTS):
                slot = (first + t) % BUCKET_SLOTS
                victim = field_of(table[bucket * words + slot // per_word], slot % per_word,
                                  fp_bits)
                if victim == np.uint64(0):
                    return entry, -1, np.uint64(0)
                dest = alt_bucket(bucket, victim, n_buckets, seed)
                if bucket_find(table, dest, 0, fp_bits) >= 0:
                    return entry, slot, victim
                if onward < 0 and not queued(node, count, dest):
                    onward, onward_dest, onward_victim = slot, dest, victim
            if onward < 0:  # every way on is queued already: a dead end
                break
            node[count] = (onward_dest << 10) | ((entry + 1) << 2) | onward
            node_fp[count] = onward_victim
            entry = count
            count += 1
        return -1, -1, np.uint64(0)

    @jit
    def move_chain(table, n_buckets, fp_bits, seed, node, node_fp, entry, slot, fp):
        """Make room in the root bucket of ``entry``'s chain: move the victim ``fp`` in ``slot``
        of ``entry``'s bucket to its other bucket, then the parent's victim into the slot that
        freed, and so on up to the root (last move first: module docs). False if a move found
        its destination full again (the chain is abandoned; every move made is complete)."""
        while True:
            bucket = node[entry] >> 10
            if slot >= 0:
                dest = alt_bucket(bucket, fp, n_buckets, seed)
                if not swap_value(table, dest, 0, fp, fp_bits, False):
                    return False
                if not clear_slot(table, bucket, slot, fp, fp_bits):
                    drop_copy(table, bucket, dest, fp, fp_bits)
            parent = ((node[entry] >> 2) & 0xFF) - 1
            if parent < 0:
                return True
            slot = node[entry] & 3
            fp = np.uint64(node_fp[entry])
            entry = parent

    @jit
    def add_one(table, n_buckets, fp_bits, seed, bucket1, fp, walk, max_kicks, node, node_fp):
        """Store ``fp`` in one of its buckets, making room by moving other fingerprints when both
        are full (module docs). False if searches over ``max_kicks`` buckets found no room:
        nothing was added. ``walk`` seeds the searches' choices; ``node``/``node_fp`` are the
        search queue (scratch arrays of at most 255 entries)."""
        fp = np.uint64(fp)
        bucket2 = alt_bucket(bucket1, fp, n_buckets, seed)
        walk = np.uint64(walk)
        kicks = 0
        while True:
            if (swap_value(table, bucket1, 0, fp, fp_bits, False)
                    or swap_value(table, bucket2, 0, fp, fp_bits, False)):
                return True
            if kicks >= max_kicks:
                return False
            kicks += node.size
            walk = np.uint64(next_random(walk))  # (np.uint64: the simulator gets a Python int)
            entry, slot, victim = search(table, n_buckets, fp_bits, seed, bucket1, bucket2, walk,
                                         node, node_fp)
            if entry >= 0:
                move_chain(table, n_buckets, fp_bits, seed, node, node_fp, entry, slot, victim)

    @jit
    def contains_one(table, n_buckets, fp_bits, seed, bucket1, fp):
        if bucket_find(table, bucket1, fp, fp_bits) >= 0:
            return True
        return bucket_find(table, alt_bucket(bucket1, fp, n_buckets, seed), fp, fp_bits) >= 0

    @jit
    def erase_one(table, n_buckets, fp_bits, seed, bucket1, fp):
        """Remove one copy of ``fp`` from either of its buckets; False if neither holds it."""
        if swap_value(table, bucket1, fp, 0, fp_bits, False):
            return True
        return swap_value(table, alt_bucket(bucket1, fp, n_buckets, seed), fp, 0, fp_bits,
                          False)

    return Operations(bucket_find, swap_value, contains_one, erase_one, add_one)


CPU = build_operations(njit(nogil=True), _cpu_cas, prefetch)
bucket_find, swap_value, contains_one, erase_one, add_one = CPU


# ================================================================================================
# CPU kernels: a batch split between threads, hashed a block at a time, prefetched ahead
# ================================================================================================
# Each thread takes interleaved blocks of BLOCK keys: one pass hashes a block (first bucket,
# fingerprint, other bucket), a second probes it, prefetching the two buckets of the key
# PREFETCH_DISTANCE ahead, so that a probe finds its cache lines arriving rather than waits a
# memory latency for each; an add also prefetches, SEARCH_AHEAD keys ahead, the first buckets
# that key's search for room will read if both of its buckets are full (near load 0.95, most
# keys' are: this and the search's own level prefetch nearly double the rate of the last adds).
# Adds and erases claim and clear slots by CAS, so threads need no other coordination (module
# docs).

ACTION_CONTAINS, ACTION_ADD, ACTION_ERASE = 0, 1, 2


@njit(inline="always", cache=True, nogil=True)
def _prefetch_bucket(table, bucket, fp_bits):
    prefetch(table, bucket * words_per_bucket(fp_bits))


@njit(inline="always", cache=True, nogil=True)
def _prefetch_search(table, n_buckets, fp_bits, seed, bucket1, bucket2):
    """For a key whose buckets (fetched by now) are both full: prefetch the buckets its search
    for room looks at first, the other buckets of their 8 victims."""
    if (bucket_find(table, bucket1, 0, fp_bits) >= 0
            or bucket_find(table, bucket2, 0, fp_bits) >= 0):
        return
    per_word = slots_per_word(fp_bits)
    words = words_per_bucket(fp_bits)
    for bucket in (bucket1, bucket2):
        for slot in range(BUCKET_SLOTS):
            victim = field_of(table[bucket * words + slot // per_word], slot % per_word, fp_bits)
            _prefetch_bucket(table, alt_bucket(bucket, victim, n_buckets, seed), fp_bits)


@njit(cache=True, nogil=True)
def _blocks(table, n_buckets, fp_bits, seed, keys, action, max_kicks, out, part, parts):
    """One thread's share of a bulk call: blocks ``part, part + parts, ...``; returns how many
    keys ended True (added, found or removed)."""
    n = keys.size
    first_bucket = np.empty(BLOCK, np.int64)
    other_bucket = np.empty(BLOCK, np.int64)
    fps = np.empty(BLOCK, np.uint64)
    walks = np.empty(BLOCK, np.uint64)
    search_node = np.empty(SEARCH_BUCKETS, np.int64)
    search_fp = np.empty(SEARCH_BUCKETS, np.uint64)
    done = 0
    for start in range(part * BLOCK, n, parts * BLOCK):
        m = min(n, start + BLOCK) - start
        for j in range(m):
            b, fp, h = locate(keys[start + j], seed, n_buckets, fp_bits)
            first_bucket[j] = b
            other_bucket[j] = alt_bucket(b, fp, n_buckets, seed)
            fps[j] = fp
            walks[j] = h
        for j in range(min(m, PREFETCH_DISTANCE)):
            _prefetch_bucket(table, first_bucket[j], fp_bits)
            _prefetch_bucket(table, other_bucket[j], fp_bits)
        for j in range(m):
            if j + PREFETCH_DISTANCE < m:
                _prefetch_bucket(table, first_bucket[j + PREFETCH_DISTANCE], fp_bits)
                _prefetch_bucket(table, other_bucket[j + PREFETCH_DISTANCE], fp_bits)
            if action == ACTION_ADD and j + SEARCH_AHEAD < m:
                _prefetch_search(table, n_buckets, fp_bits, seed, first_bucket[j + SEARCH_AHEAD],
                                 other_bucket[j + SEARCH_AHEAD])
            b1 = first_bucket[j]
            b2 = other_bucket[j]
            fp = fps[j]
            if action == ACTION_CONTAINS:
                ok = (bucket_find(table, b1, fp, fp_bits) >= 0
                      or bucket_find(table, b2, fp, fp_bits) >= 0)
            elif action == ACTION_ERASE:
                ok = (swap_value(table, b1, fp, 0, fp_bits, False)
                      or swap_value(table, b2, fp, 0, fp_bits, False))
            else:
                ok = (swap_value(table, b1, 0, fp, fp_bits, False)
                      or swap_value(table, b2, 0, fp, fp_bits, False))
                if not ok:  # both buckets full: evict (rare below load 0.8)
                    ok = add_one(table, n_buckets, fp_bits, seed, b1, fp, walks[j], max_kicks,
                                  search_node, search_fp)
            out[start + j] = ok
            done += ok
    return done


@njit(parallel=True, cache=True, nogil=True)
def bulk(table, n_buckets, fp_bits, seed, keys, action, max_kicks, out, state, nthreads):
    """``contains``, ``add`` or ``erase`` (``action``) of a batch of key words: ``out[i]`` is
    True where key ``i`` was found, added or removed; ``state[SIZE]`` follows adds and erases."""
    n = keys.size
    parts = 1 if n < _SERIAL_BELOW else max(1, min(nthreads, (n + BLOCK - 1) // BLOCK))
    done = np.zeros(parts, np.int64)
    for p in prange(parts):
        done[p] = _blocks(table, n_buckets, fp_bits, seed, keys, action, max_kicks, out, p,
                          parts)
    total = done.sum()
    if action == ACTION_ADD:
        state[SIZE] += total
    elif action == ACTION_ERASE:
        state[SIZE] -= total


@njit(parallel=True, cache=True, nogil=True)
def occupied(table, fp_bits, nthreads):
    """Nonzero fingerprint slots in the table (a consistency check: equals ``state[SIZE]``)."""
    n = table.size
    parts = 1 if n < _SERIAL_BELOW else nthreads
    counts = np.zeros(parts, np.int64)
    per_word = slots_per_word(fp_bits)
    for p in prange(parts):
        c = 0
        for i in range(p * n // parts, (p + 1) * n // parts):
            for j in range(per_word):
                c += field_of(table[i], j, fp_bits) != np.uint64(0)
        counts[p] = c
    return counts.sum()
