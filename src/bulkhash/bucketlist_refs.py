"""Refs of ``BucketListMap``: per-element operations inside your own ``@numba.njit`` code.

``blm.ref()`` returns a non-owning view of the table's arrays (as ``bulkhash.refs`` does for the
open tables and ``bulkhash.multimap_refs`` for ``MultiMap``). Pass it to a compiled function and
call, per element, from one thread or from every thread of a ``prange`` loop:

=============================  ===============================================================
``insert(key, value) -> bool``  append ``value`` to ``key``'s values; True if stored, False if
                                the key already holds ``max_values_per_key`` values or the
                                table has no room (the latter counted in ``failed()``)
``count(key) -> int``           how many values ``key`` holds
``contains(key) -> bool``       whether it holds any
``retrieve(key, out) -> int``   iterate a key's values: writes them, in insertion order, to
                                ``out[0:min(n, out.size)]`` and returns ``n``, the key's count
                                (call again with a larger ``out`` when ``n > out.size``)
``failed() -> int``             inserts refused for want of room so far
=============================  ===============================================================

::

    >>> import numba, numpy as np
    >>> from bulkhash.bucketlist import BucketListMap
    >>> m = BucketListMap("uint64", "uint32")
    >>> @numba.njit
    ... def index_positions(ref, xs):          # position of every value of xs
    ...     for i in range(xs.size):
    ...         ref.insert(xs[i], i)
    >>> @numba.njit
    ... def second_position(ref, x):
    ...     out = np.empty(2, np.uint32)
    ...     return out[1] if ref.retrieve(x, out) >= 2 else -1
    >>> xs = np.array([7, 3, 7, 7], np.uint64)
    >>> index_positions(m.ref(reserve=xs.size), xs)
    >>> int(second_position(m.ref(), 7)), int(second_position(m.ref(), 3)), m.count(7)
    (2, -1, 3)
    >>> m.get(7).tolist(), len(m), m.num_keys
    ([0, 2, 3], 4, 2)

Semantics:

* A ref never grows its table (growing replaces the arrays compiled code holds). Before handing
  out a ref, ``m.ref(reserve=n)`` grows the table so that ``n`` more values fit whatever keys they
  go to: room for ``n`` more values (``capacity``), ``n`` more keys in the key index and the
  records, ``n`` more buckets, and pool room for the buckets ``n`` values can open (see *Room*
  below). An insert that finds no room returns False and counts one more ``failed()``; it
  leaves everything stored as it was. After the call, grow (``m.reserve(n)`` or a bulk insert)
  and take a new ref.
* The room is the table's, taken with atomic adds on its counters: however many threads insert
  at once, a ref never passes ``capacity`` (a thread may be refused while another, which then
  fails too, holds the last of the room for an instant), and never passes
  ``max_values_per_key`` (checked under the key's lock).
* Inserts are safe from many threads at once. A key's appends take its record's lock (a
  compare-and-swap on the record's ``tail_fill`` word), so one thread's inserts of a key come
  back in the order it made them, and inserts of one key from several threads are all kept, in
  the order they took the lock.
* An insert of a new key claims an empty slot of the key index with a compare-and-swap on its
  value word (marked *pending*), writes the key, takes the next key id off the state vector and
  publishes it in the value word; threads that meet a pending slot wait for its key, and for its
  id, a few instructions. A key claimed by an insert that then finds no room for its value stays
  in the index with no values (``count`` 0, ``contains`` False), as a refused bulk pair's does.
* A ref taken before its table was resized, grown, compacted or cleared raises if used.
* Within one compiled call, ``count``/``contains``/``retrieve`` racing an ``insert`` of the same
  key see the key's values either with or without the new one (the count is published last).
* Keys and values are converted to the table's dtypes as C would; refs skip the input checks of
  the bulk methods.

Room
----
``ref(reserve=n)`` makes sure that ``n`` values fit however they spread over keys, old or new.
Values that land in a key's last bucket take no pool room; each bucket an insert opens holds at
least one of the ``n`` values, so ``n`` buckets always do. A key given ``j`` of the values opens
buckets ``b_1 .. b_k``, each but the last filled by new values, so their sizes add up to at most
``j - 1 + max(b_1, grow_factor * j)``, where ``b_1`` is the key's next bucket size. Summed over
keys: pool room for ``(1 + ceil(grow_factor)) * n`` values plus the ``n`` largest next-bucket sizes
of the table's keys (a new key's is ``min_bucket_size``). That is a bound, not a guess: with the
defaults and keys of few values it is about ``4 n`` pool slots.

The ref is a NamedTuple of the table's arrays and geometry, as the open tables' refs are (so a
``prange`` loop passes it to its threads as it passes theirs).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from . import refs as open_refs
from ._cpu import bucketlist as BL
from ._cpu import kernels as K
from ._cpu.intrinsics import atomic_add, cas
from .probing import next_bucket

# ``failed()`` and the stale check read the store's state at the open tables' indices
assert (BL.GENERATION, BL.REF_FAILED) == (K.GENERATION, K.REF_FAILED)

ABSENT = -1  # _key_id: the key is not in the index
NO_ROOM = -2  # _key_id: the key is not in the index and there was no room to add it


class BucketListMapRef(NamedTuple):
    """Ref of a ``BucketListMap`` (see module docs)."""

    slots: np.ndarray  # the key index's rows: [key word, key id]
    index_state: np.ndarray
    n_buckets: int
    bucket_size: int
    seed: np.uint64
    tomb: np.uint64
    index_generation: int
    records: np.ndarray  # [count, head, tail, tail_fill] per key id (bulkhash._cpu.bucketlist)
    buckets: np.ndarray  # [start, size, next] per bucket
    pool: np.ndarray
    state: np.ndarray  # the store's state vector (VALUES, POOL_TOP, ..., REF_FAILED)
    capacity: int
    min_size: int
    max_size: int
    grow: float
    max_per_key: int  # -1: no limit
    generation: int
    key_marker: np.ndarray  # empty arrays whose dtypes tell compiled code the table's dtypes
    value_marker: np.ndarray

    @property
    def failed_inserts(self) -> int:
        return int(self.state[BL.REF_FAILED])


# ------------------------------------------------------------------ host side: room, the ref

def _next_sizes(t) -> np.ndarray:
    """Each key id's next bucket size (host NumPy), as ``next_bucket_size`` computes it."""
    records = t.backend.to_host(t.records)[:t.next_id]
    tails = records[:, BL.TAIL]
    sizes = np.zeros(tails.size, np.int64)
    has = tails >= 0
    if has.any():
        sizes[has] = t.backend.to_host(t.buckets)[tails[has], BL.SIZE]
    grown = np.maximum(np.ceil(sizes * t.grow).astype(np.int64), sizes + 1)
    return np.where(sizes == 0, t.min_size, np.minimum(grown, t.max_size))


def pool_room_for(t, n: int) -> int:
    """Pool slots that ``n`` more values need at most (module docs, *Room*)."""
    if n <= 0:
        return 0
    nxt = _next_sizes(t)
    if nxt.size > n:
        nxt = np.partition(nxt, nxt.size - n)[nxt.size - n:]
    return int((1 + math.ceil(t.grow)) * n + nxt.sum() + (n - nxt.size) * t.min_size)


def make_room(t, n: int) -> None:
    """Grow the store's arrays (not its capacity: ``reserve`` does that) so that ``n`` more values
    fit through a ref. A fixed table's key index is not grown (it refuses keys past it)."""
    if n <= 0:
        return
    if t.growable:
        t.index.reserve(n)
    rows = t.records.shape[0]
    if t.next_id + n > rows:
        t.records = t._grown(t.records, max(t.next_id + n, rows + rows // 2), BL.RECORD_WORDS)
    cap = t.buckets.shape[0]
    if t._read(BL.N_BUCKETS) + n > cap:
        t.buckets = t._grown(t.buckets, max(t._read(BL.N_BUCKETS) + n, cap + cap // 2),
                             BL.BUCKET_WORDS)
    need = t._read(BL.POOL_TOP) + pool_room_for(t, n)
    if need > t.pool.size:
        t.pool = t._grown(t.pool, max(need, t.pool.size + t.pool.size // 2), None)


def make_ref(blm) -> BucketListMapRef:
    t = blm._table
    ix = t.index
    return BucketListMapRef(
        ix.slots, ix.state, ix.n_buckets, ix.bucket_size, np.uint64(ix.seed), np.uint64(ix.tomb),
        int(ix.state[K.GENERATION]), t.records, t.buckets, t.pool, t.state, int(t.capacity),
        t.min_size, t.max_size, float(t.grow),
        -1 if blm.max_values_per_key is None else blm.max_values_per_key,
        int(t.state[BL.GENERATION]), np.empty(0, blm.key_dtype), np.empty(0, blm.value_dtype))


# ------------------------------------------------------------------ the operations

@njit(inline="always", cache=True, nogil=True)
def _check_fresh(t):
    if (t.state[BL.GENERATION] != t.generation
            or t.index_state[K.GENERATION] != t.index_generation):
        raise RuntimeError("stale ref: its table was resized, grown, compacted or cleared after "
                           "ref() was called; take a new ref")


@njit(inline="always", cache=True, nogil=True)
def _take(arr, i, amount, limit):
    """Add ``amount`` to the counter ``arr[i]`` if it stays within ``limit``: its old value, or
    -1 (and nothing taken). An add that overshoots is undone, so the values handed out are
    distinct and below the limit."""
    old = atomic_add(arr, i, amount)
    if old + amount > limit:
        atomic_add(arr, i, -amount)
        return np.int64(-1)
    return np.int64(old)


@njit(inline="always", cache=True, nogil=True)
def _new_id(t):
    """Room for one more key in the index and a key id for it: the id, or -1."""
    if _take(t.index_state, K.SIZE, 1, t.index_state[K.CAPACITY]) < 0:
        return np.int64(-1)
    kid = _take(t.state, BL.NEXT_ID, 1, t.records.shape[0])
    if kid < 0:
        atomic_add(t.index_state, K.SIZE, -1)
    return kid


@njit(inline="always", cache=True, nogil=True)
def _special_id(t, k, claim):
    """The key id of a reserved key word (0 or all-ones: special rows after the slots)."""
    row, flag = K.special_row(k, t.n_buckets * t.bucket_size)
    while True:
        f = atomic_add(t.index_state, flag, 0)
        if f == 1:
            return np.int64(t.slots[row, 1])
        if f == 2:  # another thread is adding it
            continue
        if not claim:
            return np.int64(ABSENT)
        if cas(t.index_state, flag, 0, 2) != 0:
            continue
        kid = _new_id(t)
        if kid < 0:
            cas(t.index_state, flag, 2, 0)
            return np.int64(NO_ROOM)
        t.slots[row, 0] = t.slots.dtype.type(k)
        t.slots[row, 1] = t.slots.dtype.type(kid)
        cas(t.index_state, flag, 2, 1)
        return kid


@njit(inline="always", cache=True, nogil=True)
def _key_id(t, k, claim):
    """``k``'s key id; if absent, ABSENT, or with ``claim`` a new id (NO_ROOM if none is left).

    Slots fill in probe order and only empty slots are claimed, so all threads looking for one
    key meet at the same slot. The claim is a compare-and-swap of the slot's value word to
    *pending* (all-ones: never a key id); the key word follows, then the id.

    The key word and the value word are read one after the other, so a slot seen empty may have
    been claimed and finished in between (its value word is then that key's id, perhaps 0): the
    claim re-reads the key word after its compare-and-swap and backs off if the slot is taken."""
    b = K.bucket_of(k, t.n_buckets, t.seed, t.tomb)
    if b < 0:
        return _special_id(t, k, claim)
    slots = t.slots
    word = slots.dtype.type
    pending = word(t.tomb)
    zero = word(0)
    bsize = t.bucket_size
    for _ in range(t.n_buckets):
        for j in range(bsize):
            row = b * bsize + j
            while True:
                w = np.uint64(cas(slots, 2 * row, zero, zero))  # an atomic read
                if w == k:
                    v = cas(slots, 2 * row + 1, pending, pending)
                    while v == pending:  # claimed by another thread: wait for its id
                        v = cas(slots, 2 * row + 1, pending, pending)
                    return np.int64(v)
                if w != 0:
                    break  # another key's slot
                v = cas(slots, 2 * row + 1, pending, pending)
                if v == pending:
                    continue  # being claimed: wait for its key
                if not claim:
                    return np.int64(ABSENT)  # slots fill in probe order: k is not further on
                if cas(slots, 2 * row + 1, v, pending) != v:
                    continue
                if cas(slots, 2 * row, zero, zero) != 0:
                    # the slot was claimed and finished between our two reads (its id is the
                    # ``v`` we just replaced): put the id back and meet the key there
                    cas(slots, 2 * row + 1, pending, v)
                    continue
                kid = _new_id(t)
                if kid < 0:
                    cas(slots, 2 * row + 1, pending, v)
                    return np.int64(NO_ROOM)
                cas(slots, 2 * row, zero, word(k))
                atomic_add(t.index_state, K.PLACED, 1)  # (a reach map of the index is stale)
                cas(slots, 2 * row + 1, pending, word(kid))
                return kid
        b = next_bucket(b, t.n_buckets)
    return np.int64(ABSENT if not claim else NO_ROOM)


@njit(inline="always", cache=True, nogil=True)
def _refuse(t):
    atomic_add(t.state, BL.REF_FAILED, 1)
    return False


@njit(inline="always", cache=True, nogil=True)
def _lock(records, kid):
    """Lock key ``kid``'s record (its tail_fill word becomes ``-1 - fill``); returns ``fill``."""
    at = kid * BL.RECORD_WORDS + BL.TAIL_FILL
    while True:
        fill = cas(records, at, -7, -7)  # an atomic read (a plain load could leave the loop)
        if fill >= 0 and cas(records, at, fill, -1 - fill) == fill:
            return fill


@njit(inline="always", cache=True, nogil=True)
def _unlock(records, kid, fill):
    at = kid * BL.RECORD_WORDS + BL.TAIL_FILL
    cas(records, at, records[kid, BL.TAIL_FILL], fill)


@njit(inline="always", cache=True, nogil=True)
def _open_bucket(t, size):
    """A new bucket of ``size`` pool slots (exact atomic takes), or -1."""
    bid = _take(t.state, BL.N_BUCKETS, 1, t.buckets.shape[0])
    if bid < 0:
        return np.int64(-1)
    start = _take(t.state, BL.POOL_TOP, size, t.pool.size)
    t.buckets[bid, BL.NEXT] = -1
    if start < 0:
        t.buckets[bid, BL.START] = 0
        t.buckets[bid, BL.SIZE] = 0  # (a bucket id spent on nothing, linked nowhere)
        return np.int64(-1)
    t.buckets[bid, BL.START] = start
    t.buckets[bid, BL.SIZE] = size
    return bid


@njit(inline="always", cache=True, nogil=True)
def _insert(t, k, value):
    """Append ``value`` to key word ``k``'s values, from any thread."""
    _check_fresh(t)
    kid = _key_id(t, k, True)
    if kid < 0:
        return _refuse(t)
    records = t.records
    fill = _lock(records, kid)
    held = records[kid, BL.COUNT]
    if t.max_per_key >= 0 and held >= t.max_per_key:
        _unlock(records, kid, fill)
        return False
    if _take(t.state, BL.VALUES, 1, t.capacity) < 0:
        _unlock(records, kid, fill)
        return _refuse(t)
    tail = records[kid, BL.TAIL]
    if tail < 0 or fill == t.buckets[tail, BL.SIZE]:
        size = BL.next_bucket_size(0 if tail < 0 else t.buckets[tail, BL.SIZE], t.min_size,
                                   t.max_size, t.grow)
        bid = _open_bucket(t, size)
        if bid < 0:
            atomic_add(t.state, BL.VALUES, -1)
            _unlock(records, kid, fill)
            return _refuse(t)
        t.pool[t.buckets[bid, BL.START]] = value
        if tail < 0:
            records[kid, BL.HEAD] = bid
        else:
            t.buckets[tail, BL.NEXT] = bid
        records[kid, BL.TAIL] = bid
        fill = 0
    else:
        t.pool[t.buckets[tail, BL.START] + fill] = value
    atomic_add(records, kid * BL.RECORD_WORDS + BL.COUNT, 1)  # publish: readers go by the count
    _unlock(records, kid, fill + 1)
    return True


@njit(inline="always", cache=True, nogil=True)
def _count_of(t, kid):
    if kid < 0:
        return np.int64(0)
    return np.int64(atomic_add(t.records, kid * BL.RECORD_WORDS + BL.COUNT, 0))


@njit(inline="always", cache=True, nogil=True)
def _count(t, k):
    return _count_of(t, _key_id(t, k, False))


@njit(inline="always", cache=True, nogil=True)
def _retrieve(t, k, out):
    kid = _key_id(t, k, False)
    n = _count_of(t, kid)
    left = min(n, out.size)
    bid = t.records[kid, BL.HEAD] if kid >= 0 else -1
    at = 0
    while left > 0 and bid >= 0:
        start = t.buckets[bid, BL.START]
        take = min(left, t.buckets[bid, BL.SIZE])
        for j in range(take):
            out[at + j] = t.pool[start + j]
        at += take
        left -= take
        bid = t.buckets[bid, BL.NEXT]
    return n


# ------------------------------------------------------------------ compiled front end
open_refs.register_multi_value_methods(BucketListMapRef, insert=_insert, count=_count,
                                       retrieve=_retrieve, fresh=_check_fresh,
                                       word_field="pool")
