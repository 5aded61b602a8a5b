"""Refs of GPU ``MultiMap`` tables: per-thread operations inside your own ``@cuda.jit`` kernels.

The methods and their meaning are the CPU refs' (``bulkhash.multimap_refs``): ``insert(key,
value) -> bool``, ``count(key) -> int``, ``contains(key) -> bool``, ``retrieve(key, out) -> int``
(writes the key's values, in insertion order, to ``out[0:min(n, out.size)]`` and returns ``n``:
how a kernel iterates a key's values without allocating) and ``failed() -> int``::

    >>> import numpy as np
    >>> from numba import cuda
    >>> from bulkhash.multimap import MultiMap
    >>> @cuda.jit
    ... def index_positions(ref, xs):
    ...     i = cuda.grid(1)
    ...     if i < xs.size:
    ...         ref.insert(xs[i], i)
    >>> @cuda.jit
    ... def first_two(ref, xs, out):
    ...     i = cuda.grid(1)
    ...     if i < xs.size:
    ...         ref.retrieve(xs[i], out[i])       # out[i]: a row of a 2-D array
    >>> m = MultiMap("uint64", "int64", 100, device="cuda", group_size=1)  # doctest: +SKIP
    >>> xs = cuda.to_device(np.array([7, 3, 7], np.uint64))  # doctest: +SKIP
    >>> index_positions[1, 64](m.ref(), xs)  # doctest: +SKIP
    >>> out = cuda.to_device(np.zeros((3, 2), np.int64))  # doctest: +SKIP
    >>> first_two[1, 64](m.ref(), xs, out)  # doctest: +SKIP
    >>> sorted(out.copy_to_host()[0].tolist())  # (two threads inserted 7: in their claims' order)
    ... # doctest: +SKIP
    [0, 2]

As on the CPU, and as the open tables' GPU refs (``bulkhash._cuda.refs``) behave:

* a ref never grows its table; it holds its own *room* (pairs and slots it may still add, taken
  atomically: it never passes ``capacity``), and an insert that finds none returns False and is
  counted in ``failed()``. A key at ``max_values_per_key`` refuses the insert (False, not
  counted); threads appending one key at the same instant may pass the limit by one each.
* the two keys whose bits are 0 and all-ones keep their values in a side pool, which the ref
  cannot grow either: ``ref(reserve=n)`` makes room for ``max(n, 1024)`` more of each;
* a stale ref (its table resized or cleared since) ignores every operation and counts it in
  ``failed()``; a kernel cannot raise;
* with ``group_size`` G > 1 the G threads of a group call a method together with the same key;
  ``group_size=1`` lets every thread work on its own;
* one thread's inserts of a key come back in its order; concurrent inserts of one key from
  several threads are all kept, in the order their claims landed; a ``count``/``retrieve``
  racing an ``insert`` of that key may see the new value counted before it is written.

Each operation is one ``cuda.jit(device=True)`` function built on the bulk kernels' probe
(``bulkhash._cuda.multi``), with two front ends, as in ``bulkhash._cuda.refs``: compiled
kernels reach it through ``overload_method``, and Numba's CUDA simulator, where a kernel is
Python, through the ref's own methods.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import cuda, types

from .. import _dtypes
from .. import refs as cpu_refs
from .._cpu import kernels as CK
from .._cpu import multi as M
from . import multi as GM
from .kernels import _probe_start
from . import refs as open_cuda_refs
from .refs import _begin

# ``_begin`` (the stale-ref and group checks of the open tables' refs) reads the state vector at
# the open tables' indices: the multimap state keeps them where they are.
assert (M.GENERATION, M.REF_FAILED) == (CK.GENERATION, CK.REF_FAILED)


class _CudaMultiMapRefFields(NamedTuple):
    flat: object  # the row array, flat: row r's key word is flat[r * words_per_row]
    side: object  # the side pool (2 x capacity): values of the key words 0 and all-ones
    state: object  # the table's int64 state vector
    room: object  # int64[2]: pairs, and rows, this ref may still add
    words_per_row: int
    group_size: int
    n_windows: int
    seed: np.uint64
    tomb: object  # the tombstone word, in the table's word type
    generation: int
    max_per_key: int  # -1: no limit
    key_marker: object  # zero-length arrays whose dtypes are the table's key and value dtypes
    value_marker: object


# ------------------------------------------------------------------ the operations

@cuda.jit(device=True)
def _refuse(t, lane):
    if lane == 0:
        cuda.atomic.add(t.state, M.REF_FAILED, 1)
    return False


@cuda.jit(device=True)
def _stored(t, new_key):
    """Count a stored pair (lane 0 only)."""
    cuda.atomic.add(t.state, M.PAIRS, 1)
    if new_key:
        t.state[M.KEYS] = -1  # another thread may be adding the same key: recount on demand


@cuda.jit(device=True)
def _insert_side(t, key, value):
    """Append to the side pool (one thread): 1 stored, 0 refused, -1 no room."""
    s = 0 if key == 0 else 1
    while True:
        held = cuda.atomic.add(t.state, M.SIDE + s, 0)
        if t.max_per_key >= 0 and held >= t.max_per_key:
            return 0
        if held >= t.side.shape[1] or not GM._take(t.room, 0):
            return -1
        if cuda.atomic.cas(t.state, M.SIDE + s, held, held + 1) == held:
            t.side[s, held] = value
            _stored(t, held == 0)
            return 1
        cuda.atomic.add(t.room, 0, 1)


@cuda.jit(device=True)
def _insert(t, key, value):
    """Append ``value`` to ``key``'s values (the CPU ref's algorithm, cooperatively)."""
    lane, mask, base, ok = _begin(t, key)
    if not ok:
        return False
    flat = t.flat
    wpr = t.words_per_row
    G = t.group_size
    if key == 0 or key == t.tomb:
        r = 0
        if lane == 0:
            r = _insert_side(t, key, value)
            if r < 0:
                cuda.atomic.add(t.state, M.REF_FAILED, 1)
        return cuda.shfl_sync(mask, r, base) > 0
    B = 1 if wpr == 2 else wpr - 2
    home, step = _probe_start(key, t.seed, t.n_windows)
    for _ in range(t.n_windows * G + 8):  # each retry means another thread claimed something
        held, last_w, last_lane, last_t, last_fill = GM.walk_probe(
            flat, wpr, G, t.n_windows, t.seed, t.tomb, key, lane, mask, base)
        if t.max_per_key >= 0 and held >= t.max_per_key:
            return False
        if not GM._group_take(t.room, 0, lane, mask, base):
            return _refuse(t, lane)
        one = t.tomb // t.tomb  # 1 in the word type
        if last_w >= 0 and last_fill < B:  # reserve a position in the key's last row
            done = 0
            if lane == 0:
                row = last_w * G + last_lane
                fill = flat[row * wpr + 1]
                if cuda.atomic.cas(flat, row * wpr + 1, fill, fill + one) == fill:
                    flat[row * wpr + 2 + np.int64(fill)] = value
                    _stored(t, False)
                    done = 1
                else:
                    cuda.atomic.add(t.room, 0, 1)
            if cuda.shfl_sync(mask, done, base) != 0:
                return True
            continue
        if not GM._group_take(t.room, 1, lane, mask, base):
            if lane == 0:
                cuda.atomic.add(t.room, 0, 1)
            return _refuse(t, lane)
        row, _, _, was_tomb = GM.claim_after(flat, wpr, G, t.n_windows, step, t.tomb, key,
                                             last_w if last_w >= 0 else home, last_lane + 1,
                                             last_t, lane, mask, base)
        if row < 0:
            if lane == 0:
                cuda.atomic.add(t.room, 0, 1)
                cuda.atomic.add(t.room, 1, 1)
            return _refuse(t, lane)
        done = 0
        if lane == 0:
            cuda.atomic.add(t.state, M.ROWS, 1)
            if was_tomb:
                cuda.atomic.add(t.state, M.TOMBSTONES, -1)
            if wpr == 2:
                flat[row * wpr + 1] = value
                done = 1
            else:  # position 0 of the new row, unless an appender of the key got there first
                zero = one - one
                if cuda.atomic.cas(flat, row * wpr + 1, zero, one) == zero:
                    flat[row * wpr + 2] = value
                    done = 1
            if done:
                _stored(t, held == 0)
            else:
                cuda.atomic.add(t.room, 0, 1)
        if cuda.shfl_sync(mask, done, base) != 0:
            return True
    return _refuse(t, lane)


@cuda.jit(device=True)
def _count(t, key):
    lane, mask, base, ok = _begin(t, key)
    if not ok:
        return np.int64(0)
    return GM.count_values(t.flat, t.words_per_row, t.group_size, t.n_windows, t.seed, t.tomb,
                           t.state, key, lane, mask, base)


@cuda.jit(device=True)
def _retrieve(t, key, out_bits):
    """``out_bits``: the caller's ``out``, viewed as unsigned words of the value's width."""
    lane, mask, base, ok = _begin(t, key)
    if not ok:
        return np.int64(0)
    n = GM.count_values(t.flat, t.words_per_row, t.group_size, t.n_windows, t.seed, t.tomb,
                        t.state, key, lane, mask, base)
    GM.copy_values(t.flat, t.words_per_row, t.group_size, t.n_windows, t.seed, t.tomb, t.state,
                   t.side, key, out_bits, 0, min(n, out_bits.size), lane, mask, base)
    return n


# ------------------------------------------------------------------ the simulator's front end

# Under NUMBA_ENABLE_CUDASIM a kernel is Python and calls the ref's methods; compiled kernels
# reach the same device functions through the typers registered at the end of this module.
_SimulatedMethods = open_cuda_refs.simulated_multi_value_methods(_insert, _count, _retrieve,
                                                                 M.REF_FAILED)


class CudaMultiMapRef(_SimulatedMethods, _CudaMultiMapRefFields):
    """Ref of a GPU ``MultiMap`` (see module docs)."""


def make_ref(mm) -> CudaMultiMapRef:
    t = mm._table
    flat, wpr, G, n_windows, seed, tomb = t.backend._geometry(t)
    state = t.state.copy_to_host()
    room = cuda.to_device(np.array([max(0, t.capacity - int(state[M.PAIRS])),
                                    max(0, t.row_capacity - int(state[M.ROWS]))], np.int64))
    return CudaMultiMapRef(
        flat, t.side, t.state, room, wpr, G, n_windows, seed, tomb, int(state[M.GENERATION]),
        -1 if mm.max_values_per_key is None else mm.max_values_per_key,
        cuda.device_array(0, mm.key_dtype), cuda.device_array(0, mm.value_dtype))


def ref_type(key_dtype, value_dtype, values_per_slot: int = 1) -> types.Type:
    """The Numba type of a GPU MultiMap ref (for eager signatures and ``cuda.compile_ptx``;
    depends only on the dtypes, so no table and no GPU is needed)."""
    kdt = _dtypes.key_dtype(key_dtype)
    vdt = _dtypes.value_dtype(value_dtype)
    word = _dtypes.word_dtype(kdt, vdt)
    stand_in = CudaMultiMapRef(
        np.empty(0, word), np.empty((2, 1), word), np.empty(M.STATE_LEN, np.int64),
        np.empty(2, np.int64), 2 if values_per_slot == 1 else values_per_slot + 2, 1, 1,
        np.uint64(0), word.type(0), 0, -1, np.empty(0, kdt), np.empty(0, vdt))
    return numba.typeof(stand_in)


# ------------------------------------------------------------------ the compiled front end
cpu_refs.register_multi_value_methods(CudaMultiMapRef, insert=_insert, count=_count,
                                      retrieve=_retrieve, fresh=open_cuda_refs.no_check,
                                      word_field="flat")
