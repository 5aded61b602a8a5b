"""Refs of ``MultiMap``: per-element operations inside your own ``@numba.njit`` code.

``multimap.ref()`` returns a non-owning view (as ``bulkhash.refs`` does for the open tables).
Pass it to a compiled function and call, per element, from one thread or from every thread of a
``prange`` loop:

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
    >>> from bulkhash.multimap import MultiMap
    >>> m = MultiMap("uint64", "uint32", capacity=100)
    >>> @numba.njit
    ... def index_pairs(ref, xs):          # position of every value of xs
    ...     for i in range(xs.size):
    ...         ref.insert(xs[i], i)
    >>> @numba.njit
    ... def second_position(ref, x):
    ...     out = np.empty(2, np.uint32)
    ...     return out[1] if ref.retrieve(x, out) >= 2 else -1
    >>> index_pairs(m.ref(), np.array([7, 3, 7, 7], np.uint64))
    >>> int(second_position(m.ref(), 7)), int(second_position(m.ref(), 3)), m.count(7)
    (2, -1, 3)

Semantics:

* One thread's inserts of a key come back in the order it made them. Inserts of one key from
  several threads at once are all kept, in the order their claims landed.
* A ref never grows its table (growing replaces the arrays compiled code holds). An insert past
  ``capacity`` returns False and counts one more ``failed()``; make room first with
  ``m.ref(reserve=n)`` (which also makes room for ``n`` values of the two keys whose bits are 0
  and all-ones: they live in a side pool) or grow after the call and take a new ref. Threads of
  one ``prange`` loop that insert at the same instant may each pass the capacity check, so a ref
  may overshoot ``capacity`` -- and ``max_values_per_key`` -- by at most one pair per thread.
* A ref taken before its table was resized or cleared raises if used.
* Within one compiled call, a ``count`` or ``retrieve`` racing an ``insert`` of the same key may
  see the new value counted before it is written (split such a pipeline into two calls).
* Keys and values are converted to the table's dtypes as C would; refs skip the input checks of
  the bulk methods.

The ref is a NamedTuple of the table's arrays and geometry, as the open tables' refs are (so a
``prange`` loop passes it to its threads as it passes theirs).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from . import refs as open_refs
from ._cpu import kernels as K
from ._cpu import multi as M
from ._cpu.intrinsics import atomic_add, cas


class MultiMapRef(NamedTuple):
    """Ref of a ``MultiMap`` (see module docs)."""

    slots: np.ndarray
    side: np.ndarray  # the side pool: values of the key words 0 and all-ones
    state: np.ndarray
    n_buckets: int
    bucket_size: int
    seed: np.uint64
    tomb: np.uint64
    generation: int
    max_per_key: int  # -1: no limit
    key_marker: np.ndarray  # empty arrays whose dtypes tell compiled code the table's dtypes
    value_marker: np.ndarray

    @property
    def failed_inserts(self) -> int:
        return int(self.state[M.REF_FAILED])


def make_ref(mm) -> MultiMapRef:
    t = mm._table
    return MultiMapRef(
        t.slots, t.side, t.state, t.n_buckets, t.bucket_size, np.uint64(t.seed), t.tomb,
        int(t.state[M.GENERATION]), -1 if mm.max_values_per_key is None else mm.max_values_per_key,
        np.empty(0, mm.key_dtype), np.empty(0, mm.value_dtype))


# ------------------------------------------------------------------ the operations

@njit(inline="always", cache=True, nogil=True)
def _home(t, word):
    return K.bucket_of(word, t.n_buckets, t.seed, t.tomb)


@njit(inline="always", cache=True, nogil=True)
def _count(t, word):
    return M.count_values(t.slots, t.n_buckets, t.bucket_size, t.tomb, t.state, word,
                          _home(t, word))


@njit(inline="always", cache=True, nogil=True)
def _room(t, index, limit_index):
    """Whether the counter ``state[index]`` is below its limit (an atomic read)."""
    return atomic_add(t.state, index, 0) < t.state[limit_index]


@njit(inline="always", cache=True, nogil=True)
def _refuse(t):
    atomic_add(t.state, M.REF_FAILED, 1)
    return False


@njit(inline="always", cache=True, nogil=True)
def _stored(t, new_key):
    atomic_add(t.state, M.PAIRS, 1)
    if new_key:
        t.state[M.KEYS] = -1  # another thread may be adding the same key: recount on demand
    return True


@njit(inline="always", cache=True, nogil=True)
def _insert_side(t, word, value):
    """Append to the side pool: reserve a position with a compare-and-swap on its count."""
    s = M.side_index(word)
    while True:
        held = atomic_add(t.state, M.SIDE + s, 0)
        if t.max_per_key >= 0 and held >= t.max_per_key:
            return False
        if held >= t.side.shape[1] or not _room(t, M.PAIRS, M.CAPACITY):
            return _refuse(t)
        if cas(t.state, M.SIDE + s, held, held + 1) == held:
            t.side[s, held] = value
            return _stored(t, held == 0)


@njit(inline="always", cache=True, nogil=True)
def _insert(t, word, value):
    """Append ``value`` to ``word``'s values from any thread (compare-and-swap claims).

    As the bulk insert: fill the key's last row if it has room, else claim the first free row
    after it. A row's fill count is reserved with a compare-and-swap too, so a row freshly
    claimed (fill 0: erase and allocation leave free rows so) and an appender that found it
    meet there, each taking a position of its own."""
    open_refs._check_fresh(t)
    home = _home(t, word)
    if home < 0:
        return _insert_side(t, word, value)
    slots = t.slots
    flat = slots.reshape(-1)
    wpr = slots.shape[1]
    B = M.values_per_row(slots)
    zero = slots.dtype.type(0)
    for _ in range(slots.shape[0] + 8):  # each retry means another thread claimed something
        held, last, free, _ = M.walk_to_end(slots, t.n_buckets, t.bucket_size, t.tomb, word,
                                            home, t.n_buckets, True)
        if t.max_per_key >= 0 and held >= t.max_per_key:
            return False
        if not _room(t, M.PAIRS, M.CAPACITY):
            return _refuse(t)
        if B > 1 and last >= 0:
            fill = slots[last, 1]
            if fill < B:
                if cas(flat, last * wpr + 1, fill, slots.dtype.type(fill + 1)) == fill:
                    slots[last, 2 + np.int64(fill)] = value
                    return _stored(t, False)
                continue
        if free < 0 or not _room(t, M.ROWS, M.ROW_CAPACITY):
            return _refuse(t)
        expected = slots[free, 0]
        if expected != 0 and expected != t.tomb:
            continue
        if cas(flat, free * wpr, expected, slots.dtype.type(word)) != expected:
            continue
        atomic_add(t.state, M.ROWS, 1)
        if expected != 0:
            atomic_add(t.state, M.TOMBSTONES, -1)
        if B == 1:
            slots[free, 1] = value
            return _stored(t, held == 0)
        if cas(flat, free * wpr + 1, zero, slots.dtype.type(1)) == zero:
            slots[free, 2] = value
            return _stored(t, held == 0)
        # an appender of the same key took position 0 of the row: look again
    return _refuse(t)


@njit(inline="always", cache=True, nogil=True)
def _retrieve(t, word, out):
    home = _home(t, word)
    n = M.count_values(t.slots, t.n_buckets, t.bucket_size, t.tomb, t.state, word, home)
    M.copy_values(t.slots, t.n_buckets, t.bucket_size, t.tomb, t.state, t.side, word, home, out,
                  0, min(n, out.size))
    return n


# ------------------------------------------------------------------ compiled front end
open_refs.register_multi_value_methods(MultiMapRef, insert=_insert, count=_count,
                                       retrieve=_retrieve, fresh=open_refs._check_fresh,
                                       word_field="slots")
