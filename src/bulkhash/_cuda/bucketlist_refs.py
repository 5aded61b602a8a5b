"""Refs of GPU ``BucketListMap`` tables: per-thread operations inside your own ``@cuda.jit``
kernels.

The methods and their meaning are the CPU refs' (``bulkhash.bucketlist_refs``): ``insert(key,
value) -> bool``, ``count(key) -> int``, ``contains(key) -> bool``, ``retrieve(key, out) -> int``
(writes the key's values, in insertion order, to ``out[0:min(n, out.size)]`` and returns ``n``)
and ``failed() -> int``::

    >>> import numpy as np
    >>> from numba import cuda
    >>> from bulkhash.bucketlist import BucketListMap
    >>> @cuda.jit
    ... def index_positions(ref, xs):
    ...     i = cuda.grid(1)
    ...     if i < xs.size:
    ...         ref.insert(xs[i], i)
    >>> m = BucketListMap("uint64", "int64", 100, device="cuda",
    ...                   group_size=1)  # doctest: +SKIP
    >>> xs = cuda.to_device(np.array([7, 3, 7], np.uint64))  # doctest: +SKIP
    >>> index_positions[1, 64](m.ref(reserve=3), xs)  # doctest: +SKIP
    >>> sorted(m.get(7).tolist())  # (two threads inserted 7: in the order they took its lock)
    ... # doctest: +SKIP
    [0, 2]

As on the CPU:

* a ref never grows its table; ``ref(reserve=n)`` makes room for ``n`` more values whatever keys
  they go to (the bound is explained in ``bulkhash.bucketlist_refs``). An insert that finds no
  room returns False and is counted in ``failed()``; a key at ``max_values_per_key`` refuses
  the insert (False, not counted). Room is taken with atomic adds on the table's counters, so
  a ref never passes ``capacity`` nor the arrays' ends;
* a stale ref (its table resized, grown, compacted or cleared since) ignores every operation and
  counts it in ``failed()``: a kernel cannot raise;
* refs work one thread per element: the table must have ``group_size=1`` (``ref()`` raises
  otherwise);
* an insert takes its key's lock (a compare-and-swap on the record's ``tail_fill`` word) while it
  appends: one thread's inserts of a key come back in its order, concurrent inserts of one key
  are all kept, in the order they took the lock. Threads of a warp that wait for a lock another
  lane holds rely on independent thread scheduling (Volta, sm_70, and later);
* a ``count``/``retrieve`` racing an ``insert`` of that key sees the values with or without the
  new one (the count is published last, after a memory fence).

Each operation is one ``cuda.jit(device=True)`` function, with two front ends, as in
``bulkhash._cuda.refs``: compiled kernels reach it through ``overload_method``, and Numba's CUDA
simulator, where a kernel is Python, through the ref's own methods. Each word is touched by one
kind of atomic only (the simulator locks each kind apart): compare-and-swap for index slots, the
reserved keys' flags and the records' lock words, atomic adds for every counter.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import cuda, types

from .. import _dtypes
from .. import refs as cpu_refs
from .._cpu import bucketlist as BL
from .._cpu import kernels as CK
from ..probing import next_window
from .kernels import _probe_start
from . import refs as open_cuda_refs

ABSENT = -1
NO_ROOM = -2
_LOCK = BL.RECORD_WORDS  # words per record in the flat records array


class _CudaBucketListRefFields(NamedTuple):
    flat: object  # the key index's rows, flat: row r is [key word, key id] at flat[2 r : 2 r + 2]
    index_state: object
    n_windows: int  # rows of the index (group_size 1: a window is a row)
    seed: np.uint64
    tomb: object  # the all-ones word, in the table's word type (also the *pending* mark)
    index_generation: int
    records: object  # flat: record k is records[4 k : 4 k + 4] = count, head, tail, tail_fill
    buckets: object  # (buckets, 3): start, size, next
    pool: object
    state: object  # the store's int64 state vector
    capacity: int
    min_size: int
    max_size: int
    grow: float
    max_per_key: int  # -1: no limit
    generation: int
    key_marker: object  # zero-length arrays whose dtypes are the table's key and value dtypes
    value_marker: object


# ------------------------------------------------------------------ the operations

@cuda.jit(device=True)
def _fresh(t):
    """False (and the operation counted in REF_FAILED) for a stale ref."""
    if (t.state[BL.GENERATION] != t.generation
            or t.index_state[CK.GENERATION] != t.index_generation):
        cuda.atomic.add(t.state, BL.REF_FAILED, 1)
        return False
    return True


@cuda.jit(device=True)
def _take(arr, i, amount, limit):
    """Add ``amount`` to ``arr[i]`` if it stays within ``limit``: the old value, or -1."""
    old = cuda.atomic.add(arr, i, amount)
    if old + amount > limit:
        cuda.atomic.add(arr, i, -amount)
        return np.int64(-1)
    return np.int64(old)


@cuda.jit(device=True)
def _new_id(t):
    if _take(t.index_state, CK.SIZE, 1, t.index_state[CK.CAPACITY]) < 0:
        return np.int64(-1)
    kid = _take(t.state, BL.NEXT_ID, 1, t.records.size // _LOCK)
    if kid < 0:
        cuda.atomic.add(t.index_state, CK.SIZE, -1)
    return kid


@cuda.jit(device=True)
def _special_id(t, k, claim):
    row = t.n_windows if k == 0 else t.n_windows + 1
    flag = CK.HAS_EMPTY_KEY if k == 0 else CK.HAS_TOMB_KEY
    while True:
        f = cuda.atomic.cas(t.index_state, flag, -7, -7)  # an atomic read
        if f == 1:
            return np.int64(t.flat[2 * row + 1])
        if f == 2:
            continue
        if not claim:
            return np.int64(ABSENT)
        if cuda.atomic.cas(t.index_state, flag, 0, 2) != 0:
            continue
        kid = _new_id(t)
        if kid < 0:
            cuda.atomic.cas(t.index_state, flag, 2, 0)
            return np.int64(NO_ROOM)
        t.flat[2 * row] = k
        t.flat[2 * row + 1] = kid
        cuda.threadfence()
        cuda.atomic.cas(t.index_state, flag, 2, 1)
        return kid


@cuda.jit(device=True)
def _key_id(t, k, claim):
    """``k``'s key id; ABSENT, or with ``claim`` a new id (NO_ROOM): the CPU ref's protocol."""
    pending = t.tomb
    zero = pending ^ pending
    if k == zero or k == pending:
        return _special_id(t, k, claim)
    w, step = _probe_start(k, t.seed, t.n_windows)
    for _ in range(t.n_windows):
        row = w
        while True:
            key_word = cuda.atomic.cas(t.flat, 2 * row, pending, pending)  # an atomic read
            if key_word == k:
                v = cuda.atomic.cas(t.flat, 2 * row + 1, pending, pending)
                while v == pending:
                    v = cuda.atomic.cas(t.flat, 2 * row + 1, pending, pending)
                return np.int64(v)
            if key_word != zero:
                break
            v = cuda.atomic.cas(t.flat, 2 * row + 1, pending, pending)
            if v == pending:
                continue
            if not claim:
                return np.int64(ABSENT)
            if cuda.atomic.cas(t.flat, 2 * row + 1, v, pending) != v:
                continue
            if cuda.atomic.cas(t.flat, 2 * row, pending, pending) != zero:
                cuda.atomic.cas(t.flat, 2 * row + 1, pending, v)  # finished between our reads
                continue
            kid = _new_id(t)
            if kid < 0:
                cuda.atomic.cas(t.flat, 2 * row + 1, pending, v)
                return np.int64(NO_ROOM)
            cuda.atomic.cas(t.flat, 2 * row, zero, k)
            cuda.threadfence()
            cuda.atomic.cas(t.flat, 2 * row + 1, pending, kid)
            return kid
        w = next_window(w, step, t.n_windows)
    return np.int64(NO_ROOM if claim else ABSENT)


@cuda.jit(device=True)
def _refuse(t):
    cuda.atomic.add(t.state, BL.REF_FAILED, 1)
    return False


@cuda.jit(device=True)
def _lock(records, kid):
    at = kid * _LOCK + BL.TAIL_FILL
    while True:
        fill = cuda.atomic.cas(records, at, -7, -7)  # an atomic read
        if fill >= 0 and cuda.atomic.cas(records, at, fill, -1 - fill) == fill:
            return fill


@cuda.jit(device=True)
def _unlock(records, kid, locked_fill, fill):
    cuda.threadfence()
    cuda.atomic.cas(records, kid * _LOCK + BL.TAIL_FILL, -1 - locked_fill, fill)


@cuda.jit(device=True)
def _open_bucket(t, size):
    bid = _take(t.state, BL.N_BUCKETS, 1, t.buckets.shape[0])
    if bid < 0:
        return np.int64(-1)
    start = _take(t.state, BL.POOL_TOP, size, t.pool.size)
    t.buckets[bid, BL.NEXT] = -1
    if start < 0:
        t.buckets[bid, BL.START] = 0
        t.buckets[bid, BL.SIZE] = 0
        return np.int64(-1)
    t.buckets[bid, BL.START] = start
    t.buckets[bid, BL.SIZE] = size
    return bid


@cuda.jit(device=True)
def _insert(t, k, value):
    if not _fresh(t):
        return False
    kid = _key_id(t, k, True)
    if kid < 0:
        return _refuse(t)
    records = t.records
    fill = _lock(records, kid)
    held = records[kid * _LOCK + BL.COUNT]
    if t.max_per_key >= 0 and held >= t.max_per_key:
        _unlock(records, kid, fill, fill)
        return False
    if _take(t.state, BL.VALUES, 1, t.capacity) < 0:
        _unlock(records, kid, fill, fill)
        return _refuse(t)
    tail = records[kid * _LOCK + BL.TAIL]
    at = np.int64(0)
    new_fill = fill + 1
    if tail < 0 or fill == t.buckets[tail, BL.SIZE]:
        size = np.int64(BL.next_bucket_size(0 if tail < 0 else t.buckets[tail, BL.SIZE],
                                            t.min_size, t.max_size, t.grow))
        bid = _open_bucket(t, size)
        if bid < 0:
            cuda.atomic.add(t.state, BL.VALUES, -1)
            _unlock(records, kid, fill, fill)
            return _refuse(t)
        if tail < 0:
            records[kid * _LOCK + BL.HEAD] = bid
        else:
            t.buckets[tail, BL.NEXT] = bid
        records[kid * _LOCK + BL.TAIL] = bid
        at = t.buckets[bid, BL.START]
        new_fill = 1
    else:
        at = t.buckets[tail, BL.START] + fill
    t.pool[at] = value
    cuda.threadfence()  # the value and the links before the count that shows them
    cuda.atomic.add(records, kid * _LOCK + BL.COUNT, 1)
    _unlock(records, kid, fill, new_fill)
    return True


@cuda.jit(device=True)
def _count_of(t, kid):
    if kid < 0:
        return np.int64(0)
    return np.int64(cuda.atomic.add(t.records, kid * _LOCK + BL.COUNT, 0))


@cuda.jit(device=True)
def _count(t, k):
    if not _fresh(t):
        return np.int64(0)
    return _count_of(t, _key_id(t, k, False))


@cuda.jit(device=True)
def _retrieve(t, k, out_bits):
    """``out_bits``: the caller's ``out``, viewed as unsigned words of the value's width."""
    if not _fresh(t):
        return np.int64(0)
    kid = _key_id(t, k, False)
    n = _count_of(t, kid)
    left = min(n, out_bits.size)
    bid = t.records[kid * _LOCK + BL.HEAD] if kid >= 0 else np.int64(-1)
    at = 0
    while left > 0 and bid >= 0:
        start = t.buckets[bid, BL.START]
        take = min(left, t.buckets[bid, BL.SIZE])
        for j in range(take):
            out_bits[at + j] = t.pool[start + j]
        at += take
        left -= take
        bid = t.buckets[bid, BL.NEXT]
    return n


# ------------------------------------------------------------------ the simulator's front end

# Under NUMBA_ENABLE_CUDASIM a kernel is Python and calls the ref's methods; compiled kernels
# reach the same device functions through the typers registered at the end of this module.
_SimulatedMethods = open_cuda_refs.simulated_multi_value_methods(_insert, _count, _retrieve,
                                                                 BL.REF_FAILED)


class CudaBucketListMapRef(_SimulatedMethods, _CudaBucketListRefFields):
    """Ref of a GPU ``BucketListMap`` (see module docs)."""


def make_ref(blm) -> CudaBucketListMapRef:
    t = blm._table
    ix = t.index
    flat, wps, G, n_windows, seed, tomb = ix.backend._geometry(ix)
    assert wps == 2 and G == 1, "BucketListMap.ref() checks group_size"
    return CudaBucketListMapRef(
        flat, ix.state, n_windows, seed, tomb, int(ix.state[CK.GENERATION]),
        t.records.reshape(t.records.size), t.buckets, t.pool, t.state, int(t.capacity),
        t.min_size, t.max_size, float(t.grow),
        -1 if blm.max_values_per_key is None else blm.max_values_per_key,
        int(t.state[BL.GENERATION]), cuda.device_array(0, blm.key_dtype),
        cuda.device_array(0, blm.value_dtype))


def ref_type(key_dtype, value_dtype) -> types.Type:
    """The Numba type of a GPU BucketListMap ref (for eager signatures and ``cuda.compile_ptx``;
    depends only on the dtypes, so no table and no GPU is needed)."""
    kdt = _dtypes.key_dtype(key_dtype)
    vdt = _dtypes.value_dtype(value_dtype)
    word = _dtypes.word_dtype(kdt, vdt)
    stand_in = CudaBucketListMapRef(
        np.empty(0, word), np.empty(CK.STATE_LEN, np.int64), 1, np.uint64(0), word.type(0), 0,
        np.empty(0, np.int64), np.empty((1, BL.BUCKET_WORDS), np.int64), np.empty(0, word),
        np.empty(BL.STATE_LEN, np.int64), 0, 1, 1, 2.0, -1, 0, np.empty(0, kdt), np.empty(0, vdt))
    return numba.typeof(stand_in)


# ------------------------------------------------------------------ the compiled front end
cpu_refs.register_multi_value_methods(CudaBucketListMapRef, insert=_insert, count=_count,
                                      retrieve=_retrieve, fresh=open_cuda_refs.no_check,
                                      word_field="flat")
