"""Refs of GPU tables: per-thread table operations inside your own ``@cuda.jit`` kernels.

``table.ref()`` on a ``device="cuda"`` table returns a small, non-owning view of the table's
device arrays (cuCollections calls these *refs*, WarpCore *device-sided* operations). Pass it to
your kernel and call its methods there, so that a whole pipeline -- read, transform, look up,
insert -- runs in one launch with nothing going back to the host between steps. The methods have
the names and meaning of the CPU refs' (``bulkhash.refs``):

=================  ==================================================================
``HashMap`` ref    ``insert(key, value) -> bool`` (True if new; an existing key's value is
                   overwritten), ``get(key, default) -> value``, ``contains(key) -> bool``
``HashSet`` ref    ``add(key) -> bool`` (True if new), ``contains(key) -> bool``
``Counter`` ref    ``add(key, count) -> bool`` (True if new; saturating),
                   ``get(key) -> count``
every ref          ``failed() -> int``: operations refused so far (below; the table's
                   count, shared by all its refs)
=================  ==================================================================

A fused pipeline: count only the k-mers that occur more than once, without ever giving a counter
slot to a singleton (most k-mers of a sequencing run are errors seen once). A set remembers what
was seen; only a k-mer the set already held goes on to the counter, so each repeated k-mer ends
with its number of occurrences minus one, whatever order the threads ran in::

    >>> import numpy as np, bulkhash
    >>> from numba import cuda
    >>> @cuda.jit
    ... def count_repeats(kmers, seen, repeats):
    ...     i = cuda.grid(1)
    ...     if i < kmers.size and not seen.add(kmers[i]):   # False: the set had it already
    ...         repeats.add(kmers[i], 1)
    >>> seen = bulkhash.HashSet("uint64", capacity=1000, device="cuda",
    ...                         group_size=1)  # doctest: +SKIP
    >>> repeats = bulkhash.Counter("uint64", "uint32", capacity=1000, device="cuda",
    ...                            group_size=1)  # doctest: +SKIP
    >>> kmers = cuda.to_device(np.array([7, 3, 7, 9, 7, 3], np.uint64))  # doctest: +SKIP
    >>> count_repeats[1, 64](kmers, seen.ref(), repeats.ref())  # doctest: +SKIP
    >>> repeats.get(np.array([7, 3, 9], np.uint64)).tolist()  # doctest: +SKIP
    [2, 1, 0]

(It needs a GPU, or Numba's CUDA simulator with ``tests/cudasim_warp.py`` installed.)

Threads and groups
------------------
A GPU table probes in windows of ``group_size`` slots, one lane of a warp per slot
(``bulkhash._cuda.kernels``). With ``group_size=1`` -- the natural choice for a table you mean to
use through refs -- every thread calls the methods on its own, for its own key, as above. On a
table with ``group_size`` G > 1 a method is cooperative, as in WarpCore: the G consecutive
threads of a group (threads ``G*g .. G*g + G-1`` of a 1-D launch whose block size is a multiple
of G) call it together, with the same arguments, and all get the same result. A group whose
lanes pass different keys is caught (the operation is refused, see below) rather than left to
corrupt the table; lanes that skip a call their group makes deadlock, as any warp vote does.

Semantics
---------
* Many threads may insert the same key at once: exactly one of them gets True (new), and every
  count added through a Counter ref is kept (the value is combined with a compare-and-swap).
* A ref never grows its table: growing replaces the slot array, which a running kernel cannot
  follow. Each ref holds its own *room*, ``capacity - len(table)`` when ``ref()`` was called,
  which every new key takes one from (atomically: however many threads race, a ref adds at most
  its room, where a CPU ref may overshoot by one key per thread). An insert that finds no room
  returns False and is counted in ``failed()``; keys already in the table are still updated.
  Grow with ``table.reserve(n)`` (or ``table.ref(reserve=n)``) and take a new ref. The room is
  the ref's: two refs of one table used in the same kernel each have all of it, and bulk inserts
  made after ``ref()`` are not taken off it -- take the ref just before the kernels that use it.
* A kernel cannot raise, so a *stale* ref -- one taken before the table was resized (grown by
  ``reserve`` or a bulk insert) or cleared -- cannot report the way a CPU ref does. Instead every
  operation on it is ignored (``insert``/``add`` return False, ``get`` returns the default,
  ``contains`` False) and counted in ``failed()``; nothing is read from or written to the old
  slot array. ``failed()`` reads the table's live counter, so check it after a kernel (or
  ``ref.failed_inserts`` on the host): nonzero means some operations did not happen.
* Within one kernel, a ``get`` racing an ``insert`` of the same key may find the key with its
  value not yet stored (the value word then reads as 0): claiming the slot and storing the value
  are two atomics. Split a pipeline into two kernels where a read must see a write.
* A ref sees keys inserted or erased by the table's bulk methods between kernels, and the bulk
  methods see what refs wrote (``len(table)`` included).
* Keys and values are converted to the table's dtypes as C would (a 32-bit table keeps the low 32
  bits of a key); refs skip the input checks of the bulk methods.

How it is built
---------------
Each operation is one ``cuda.jit(device=True)`` function below, built on the table kernels'
probe (``find_row``, ``claim_row``, ``combine_into``). Two front ends call it:

* compiled kernels: ``numba.cuda.extending.overload_method`` on ``types.BaseNamedTuple``, picked
  by the ref's class as ``bulkhash.refs`` does for CPU refs; the key and value conversions are
  chosen at compile time from the ref's marker arrays;
* Numba's CUDA simulator, where a kernel is plain Python: the ref classes' own methods, which
  convert with NumPy and call the same device functions.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numba
import numpy as np
from numba import config, cuda, types

from .. import _dtypes
from .. import refs as cpu_refs
from .._cpu import kernels as CK
from .._cpu.kernels import GENERATION, REF_FAILED
from .kernels import CLAIMED, FOUND, claim_row, combine_into, find_row, group_of


class _CudaRefFields(NamedTuple):
    flat: object  # the slot array, flat: row r's key word is flat[r * words_per_slot]
    state: object  # the table's int64 state vector (SIZE, GENERATION, REF_FAILED, ...)
    room: object  # int64[1]: new keys this ref may still add (module docs)
    words_per_slot: int
    group_size: int  # lanes per probe window (the table's G)
    n_windows: int
    seed: np.uint64
    tomb: object  # the tombstone word, in the table's word type
    generation: int  # state[GENERATION] when the ref was taken
    key_marker: object  # zero-length arrays whose dtypes are the table's key and value dtypes
    value_marker: object

    @property
    def failed_inserts(self) -> int:
        """``failed()`` read from the host (a copy of one word from the device)."""
        return int(self.state[REF_FAILED])


# ------------------------------------------------------------------ the operations (one each)

@cuda.jit(device=True)
def _begin(ref, key):
    """(lane, mask, base, ok) for one operation on ``key`` by the calling thread's group.

    ``ok`` is False for a stale ref (its slot array is no longer the table's: writes there would
    be lost, reads out of date) and for a group whose lanes disagree on the key (their ballots
    would mix different probe sequences); such an operation is counted in REF_FAILED, once per
    group, instead of raising.
    """
    _, lane, mask, base = group_of(ref.group_size)
    ok = ref.state[GENERATION] == ref.generation  # uniform across the group: safe to branch on
    if ok and ref.group_size > 1:
        ok = cuda.match_any_sync(mask, key) == mask
    if not ok and lane == 0:
        cuda.atomic.add(ref.state, REF_FAILED, 1)
    return lane, mask, base, ok


@cuda.jit(device=True)
def _upsert(ref, key, value, op, kind, nbytes):
    """Find or claim ``key``'s row and combine the value word into it; True if the key is new.

    The value is *combined* even into a row this call claimed: threads that found the key in the
    moment after the claim may already have added to the 0 a free slot holds (erase leaves 0).
    """
    lane, mask, base, ok = _begin(ref, key)
    if not ok:
        return False
    wps = ref.words_per_slot
    row, code = claim_row(ref.flat, wps, ref.group_size, ref.n_windows, ref.seed, ref.tomb,
                          ref.state, ref.room, key, lane, mask, base)
    if code != CLAIMED and code != FOUND:  # FULL (room spent) or PROBE_EXCEEDED (no free slot)
        if lane == 0:
            cuda.atomic.add(ref.state, REF_FAILED, 1)
        return False
    if wps > 1 and lane == 0:
        combine_into(ref.flat, row * wps + 1, value, op, kind, nbytes)
    return code == CLAIMED


@cuda.jit(device=True)
def _find(ref, key):
    """(``key``'s row or -1 if absent or the operation was refused, group mask, leader lane)."""
    lane, mask, base, ok = _begin(ref, key)
    if not ok:
        return np.int64(-1), mask, base
    row = find_row(ref.flat, ref.words_per_slot, ref.group_size, ref.n_windows, ref.seed,
                   ref.tomb, ref.state, key, lane, mask, base)
    return row, mask, base


@cuda.jit(device=True)
def _contains(ref, key):
    row, _, _ = _find(ref, key)
    return row >= 0


@cuda.jit(device=True)
def _value_word(ref, key, default):
    """``key``'s value word (as uint64), or ``default`` if absent."""
    row, mask, base = _find(ref, key)
    word = default
    if row >= 0:
        word = np.uint64(ref.flat[row * ref.words_per_slot + 1])
    if ref.group_size > 1:  # the leader's read for all: other threads may be adding to the value
        # between the lanes' own reads. (shfl_sync moves signed words only: bits via int64.)
        word = np.uint64(cuda.shfl_sync(mask, np.int64(word), base))
    return word


@cuda.jit(device=True)
def no_check(ref):
    """A GPU ref's staleness check, where its operations check for themselves (a kernel cannot
    raise: a stale ref's operations do nothing and count in ``failed()``)."""


@cuda.jit(device=True)
def _failed(ref):
    return ref.state[REF_FAILED]


# ------------------------------------------------------------------ the simulator's front end
# Under NUMBA_ENABLE_CUDASIM a kernel is Python, so the ref's methods are plain methods: they
# convert with NumPy what the compiled front end converts with Numba's casts, and call the same
# device functions.

def _unsigned(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"u{dtype.itemsize}")


def _key_word(ref, key):
    """The table word of a key: its bits as the key dtype (C conversion), zero-extended."""
    kdt = ref.key_marker.dtype
    return ref.flat.dtype.type(np.asarray(key).astype(kdt).view(_unsigned(kdt)))


def _value_bits(ref, value):
    vdt = ref.value_marker.dtype
    return np.uint64(np.asarray(value).astype(vdt).view(_unsigned(vdt)))


def _from_bits(ref, word):
    vdt = ref.value_marker.dtype
    return np.asarray(word).astype(_unsigned(vdt)).view(vdt)[()]


@functools.lru_cache(maxsize=None)
def _kind_nbytes(value_dtype: np.dtype) -> tuple[int, int]:
    codec = _dtypes.ValueCodec(value_dtype, np.dtype(np.uint64))
    return codec.kind, codec.nbytes


def _upsert_value(ref, key, value, op):
    kind, nbytes = _kind_nbytes(ref.value_marker.dtype)
    return _upsert(ref, _key_word(ref, key), _value_bits(ref, value), op, kind, nbytes)


def _get_value(ref, key, default):
    return _from_bits(ref, _value_word(ref, _key_word(ref, key), _value_bits(ref, default)))


def simulated_multi_value_methods(insert, count, retrieve, failed_index: int) -> type:
    """A base class with the methods a multi-value GPU ref (MultiMap's, BucketListMap's) answers
    to under NUMBA_ENABLE_CUDASIM, where a kernel is Python and calls them; compiled kernels reach
    the same device functions ``insert``/``count``/``retrieve`` through the typers registered with
    ``bulkhash.refs.register_multi_value_methods``. Put it before the ref's NamedTuple fields."""

    class SimulatedMultiValueRef:
        __slots__ = ()

        @property
        def failed_inserts(self) -> int:
            """``failed()`` read from the host."""
            return int(self.state[failed_index])

        def insert(self, key, value):
            return insert(self, _key_word(self, key),
                          self.flat.dtype.type(_value_bits(self, value)))

        def count(self, key):
            return count(self, _key_word(self, key))

        def contains(self, key):
            return self.count(key) > 0

        def retrieve(self, key, out):
            return retrieve(self, _key_word(self, key),
                            out.view(_unsigned(self.value_marker.dtype)))

        def failed(self):
            return self.state[failed_index]

    return SimulatedMultiValueRef


class _CudaRef(_CudaRefFields):
    """What every GPU ref answers (the simulator's front end; see module docs)."""

    def contains(self, key):
        return _contains(self, _key_word(self, key))

    def failed(self):
        return _failed(self)


class _ValuedCudaRef(_CudaRef):
    def get(self, key, default=0):
        return _get_value(self, key, default)


class CudaHashMapRef(_ValuedCudaRef):
    """Ref of a GPU ``HashMap`` (see module docs)."""

    def insert(self, key, value):
        return _upsert_value(self, key, value, CK.OP_OVERWRITE)


class CudaHashSetRef(_CudaRef):
    """Ref of a GPU ``HashSet`` (see module docs)."""

    def add(self, key):
        return _upsert(self, _key_word(self, key), np.uint64(0), CK.OP_KEEP, CK.KIND_UINT, 8)


class CudaCounterRef(_ValuedCudaRef):
    """Ref of a GPU ``Counter`` (see module docs)."""

    def add(self, key, count):
        return _upsert_value(self, key, count, CK.OP_SATURATING_ADD)


_REF_CLASSES = {"HashMap": CudaHashMapRef, "HashSet": CudaHashSetRef, "Counter": CudaCounterRef}


def make_ref(table):
    """A ref of a ``device="cuda"`` table (``table.ref()`` calls this; see module docs)."""
    t = table._table
    flat, wps, G, n_windows, seed, tomb = t.backend._geometry(t)
    state = t.state.copy_to_host()
    codec = table._value_codec
    # A ref's room is its own device word (module docs): claim_row takes new keys off it, so the
    # ref can never push the table past capacity, however many threads insert at once.
    room = cuda.to_device(np.array([max(0, t.capacity - int(state[CK.SIZE]))], np.int64))
    return _REF_CLASSES[type(table).__name__](
        flat, t.state, room, wps, G, n_windows, seed, tomb, int(state[GENERATION]),
        cuda.device_array(0, table.key_dtype),
        cuda.device_array(0, codec.dtype if codec else np.uint8))


def ref_type(table_class, key_dtype, value_dtype=None) -> types.Type:
    """The Numba type of a GPU ref, for eager kernel signatures and ``cuda.compile_ptx``.

    ``table_class`` is ``bulkhash.HashMap``, ``HashSet`` or ``Counter`` (or its name); the type
    depends only on the dtypes, so no table (and no GPU) is needed::

        >>> ref_type("HashSet", "uint32").fields[:3]
        ('flat', 'state', 'room')
    """
    name = table_class if isinstance(table_class, str) else table_class.__name__
    kdt = _dtypes.key_dtype(key_dtype)
    vdt = None if value_dtype is None else _dtypes.value_dtype(value_dtype)
    word = _dtypes.word_dtype(kdt, vdt)
    # A ref of host arrays types exactly as the device one does (1-D, C-contiguous, mutable).
    stand_in = _REF_CLASSES[name](
        np.empty(0, word), np.empty(CK.STATE_LEN, np.int64), np.empty(1, np.int64),
        1 if vdt is None else 2, 1, 1, np.uint64(0), word.type(0), 0, np.empty(0, kdt),
        np.empty(0, np.uint8 if vdt is None else vdt))
    return numba.typeof(stand_in)


# ------------------------------------------------------------------ the compiled front end
# Method names are registered once, for CPU and GPU refs alike, in ``bulkhash.refs``; these are
# the typers of the GPU refs' methods.

def _key_conversion(ref):
    """(to_bits, word): a compiled key's bits as the CPU refs take them, then the table's word
    type (a Numba type is a conversion function in compiled code): ``word(to_bits(key))``."""
    return cpu_refs._key_to_word(ref), cpu_refs._field(ref, "flat").dtype


def _value_conversion(ref):
    """(to_bits, from_bits, kind, nbytes) for the ref's value dtype (the CPU refs' codec)."""
    return cpu_refs._value_codec(cpu_refs._field(ref, "value_marker").dtype)


def _insert_or_add(ref, op):
    to_bits, word = _key_conversion(ref)
    value_bits, _, kind, nbytes = _value_conversion(ref)

    def impl(ref, key, value=None):
        return _upsert(ref, word(to_bits(key)), value_bits(value), op, kind, nbytes)

    return impl


def _get(ref, key, default):
    to_bits, word = _key_conversion(ref)
    value_bits, from_bits, _, _ = _value_conversion(ref)
    return lambda ref, key, default=0: from_bits(_value_word(ref, word(to_bits(key)),
                                                             value_bits(default)))


def _contains_typer(ref, key):
    to_bits, word = _key_conversion(ref)
    return lambda ref, key: _contains(ref, word(to_bits(key)))


def _failed_typer(ref):
    return lambda ref: _failed(ref)


def _add_key(ref, key, value):
    if cpu_refs._given(value):
        return None
    to_bits, word = _key_conversion(ref)
    return lambda ref, key, value=None: _upsert(ref, word(to_bits(key)), np.uint64(0),
                                                 CK.OP_KEEP, CK.KIND_UINT, 8)


def _with_value(op):
    """The typer of ``insert(key, value)``/``add(key, value)`` with the operation ``op``."""
    return lambda ref, key, value: (_insert_or_add(ref, op) if cpu_refs._given(value) else None)


cpu_refs.register_ref_methods(CudaHashMapRef, insert=_with_value(CK.OP_OVERWRITE), get=_get,
                              contains=_contains_typer, failed=_failed_typer)
cpu_refs.register_ref_methods(CudaHashSetRef, add=_add_key, contains=_contains_typer,
                              failed=_failed_typer)
cpu_refs.register_ref_methods(CudaCounterRef, add=_with_value(CK.OP_SATURATING_ADD), get=_get,
                              contains=_contains_typer, failed=_failed_typer)

if not config.ENABLE_CUDASIM:  # the simulator compiles nothing: its front end is the methods
    cpu_refs.register_cuda_dispatchers()
