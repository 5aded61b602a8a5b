"""Refs: per-element table operations inside your own ``@numba.njit`` code.

``table.ref()`` returns a small, non-owning view (cuCollections calls these *refs*; WarpCore calls
the operations "device-sided"). Pass it to a compiled function and call its methods per element,
so a whole pipeline -- parse, transform, insert, look up -- stays in compiled code::

    >>> import numba, numpy as np, bulkhash
    >>> counts = bulkhash.Counter("uint64", "uint32", capacity=1000)
    >>> @numba.njit
    ... def count_pairs(ref, xs):
    ...     for i in range(xs.size - 1):
    ...         ref.add(xs[i] * 1000 + xs[i + 1], 1)   # count adjacent pairs
    >>> count_pairs(counts.ref(), np.array([1, 2, 1, 2, 1], np.uint64))
    >>> counts.get([1002, 2001]).tolist()
    [2, 2]

Methods (all per element, all safe to call from many threads of a ``prange`` loop):

=================  ==================================================================
``HashMap`` ref    ``insert(key, value) -> bool`` (True if new; an existing key's value is
                   overwritten), ``get(key, default) -> value``, ``contains(key) -> bool``
``HashSet`` ref    ``add(key) -> bool`` (True if new), ``contains(key) -> bool``
``Counter`` ref    ``add(key, count) -> bool`` (True if new; saturating),
                   ``get(key) -> count``
every ref          ``failed() -> int``: inserts that found no room so far
=================  ==================================================================

A ref never grows its table: growing replaces the table's arrays, which compiled code holding
the ref cannot follow. An insert past ``capacity`` returns False and counts one more
``failed()``; after the call, grow (``table.reserve(n)``) and take a new ref. Threads of one
``prange`` loop that claim slots at the same instant may each pass the capacity check, so a
ref may overshoot ``capacity`` by at most one key per thread (refusing one of them would lose
an addition to a key another thread was inserting at that moment). A ref taken before
the table changed size raises if used. Make room up front with ``table.ref(reserve=n)``.

Keys and values are converted to the table's dtypes as C would (a 32-bit table keeps the low 32
bits of a key); refs skip the input checks of the bulk methods.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numba import njit, types
from numba.extending import overload_method
from numba.np.numpy_support import as_dtype

from ._cpu import kernels as K
from ._cpu.intrinsics import bits_to_f32, bits_to_f64, f32_to_bits, f64_to_bits


class _RefFields(NamedTuple):
    slots: np.ndarray
    state: np.ndarray
    n_buckets: int
    bucket_size: int
    seed: np.uint64
    tomb: np.uint64
    generation: int
    key_marker: np.ndarray  # empty arrays whose dtypes tell compiled code the table's dtypes
    value_marker: np.ndarray


class HashMapRef(_RefFields):
    """Ref of a ``HashMap`` (see module docs)."""

    @property
    def failed_inserts(self) -> int:
        return int(self.state[K.REF_FAILED])


class HashSetRef(_RefFields):
    """Ref of a ``HashSet`` (see module docs)."""

    @property
    def failed_inserts(self) -> int:
        return int(self.state[K.REF_FAILED])


class CounterRef(_RefFields):
    """Ref of a ``Counter`` (see module docs)."""

    @property
    def failed_inserts(self) -> int:
        return int(self.state[K.REF_FAILED])


_REF_CLASSES = {"HashMap": HashMapRef, "HashSet": HashSetRef, "Counter": CounterRef}


def make_ref(table):
    inner = table._table
    codec = table._value_codec
    return _REF_CLASSES[type(table).__name__](
        inner.slots, inner.state, inner.n_buckets, inner.bucket_size, np.uint64(inner.seed),
        inner.tomb, int(inner.state[K.GENERATION]), np.empty(0, table.key_dtype),
        np.empty(0, codec.dtype if codec else np.uint8))


# ------------------------------------------------------------------ compile-time helpers
# Each overload below is resolved while Numba compiles the user's function: it reads the table's
# dtypes off the ref's marker arrays and returns an implementation specialised for them. The
# methods are not inlined into the caller at Numba's level: their stale-ref check can raise, and a
# raise inside a prange body would stop Numba from parallelising the user's loop (LLVM still
# inlines the call afterwards).

def _field(ref_type, name):
    return ref_type.types[ref_type.fields.index(name)]


@njit(inline="always", cache=True, nogil=True)
def _word32(key):
    return np.uint64(np.uint32(key))


@njit(inline="always", cache=True, nogil=True)
def _word64(key):
    return np.uint64(key)


def _key_to_word(ref_type):
    return _word32 if _field(ref_type, "key_marker").dtype.bitwidth == 32 else _word64


@functools.lru_cache(maxsize=None)
def _value_codec(dtype):
    """(to_word, from_word, kind, nbytes): compiled conversions for values of a Numba type."""
    inline = njit(inline="always", nogil=True)
    if isinstance(dtype, types.Boolean):
        return (inline(lambda v: np.uint64(1) if v else np.uint64(0)),
                inline(lambda w: w != 0), K.KIND_UINT, 1)
    if isinstance(dtype, types.Float):
        if dtype.bitwidth == 64:
            return (inline(lambda v: f64_to_bits(np.float64(v))),
                    inline(lambda w: bits_to_f64(np.uint64(w))), K.KIND_FLOAT, 8)
        if dtype.bitwidth == 32:
            return (inline(lambda v: np.uint64(f32_to_bits(np.float32(v)))),
                    inline(lambda w: bits_to_f32(np.uint32(w))), K.KIND_FLOAT, 4)
        raise TypeError("refs do not support float16 values; use float32")
    mask = np.uint64((1 << dtype.bitwidth) - 1)
    cast = dtype  # a Numba type is a conversion function in compiled code
    kind = K.KIND_INT if dtype.signed else K.KIND_UINT
    return (inline(lambda v: np.uint64(cast(v)) & mask), inline(lambda w: cast(w)), kind,
            dtype.bitwidth // 8)


@njit(inline="always", cache=True, nogil=True)
def _check_fresh(ref):
    if ref.state[K.GENERATION] != ref.generation:
        raise RuntimeError("stale ref: its table was resized or cleared after ref() was called; "
                           "take a new ref")


@njit(inline="always", cache=True, nogil=True)
def _find_row(ref, word):
    bucket = K.bucket_of(word, ref.n_buckets, ref.seed, ref.tomb)
    return K.find_slot(ref.slots, ref.n_buckets, ref.bucket_size, ref.tomb, ref.state, word,
                       bucket)


@njit(inline="always", cache=True, nogil=True)
def _upsert(ref, word, value_word, op, kind, nbytes):
    _check_fresh(ref)
    r = K.ref_upsert(ref.slots, ref.state, ref.n_buckets, ref.bucket_size, ref.seed, ref.tomb,
                     word, ref.slots.dtype.type(value_word), op, kind, nbytes)
    return r == K.REF_NEW


def _insert_or_add(ref, key, value, op):
    to_word = _key_to_word(ref)
    if value is None:  # HashSet.add(key)
        return lambda ref, key, value=None: _upsert(ref, to_word(key), 0, op, K.KIND_UINT, 8)
    value_to_word, _, kind, nbytes = _value_codec(_field(ref, "value_marker").dtype)
    return lambda ref, key, value=None: _upsert(ref, to_word(key), value_to_word(value), op,
                                                kind, nbytes)


def _contains(ref, key):
    to_word = _key_to_word(ref)

    def impl(ref, key):
        _check_fresh(ref)
        return _find_row(ref, to_word(key)) >= 0

    return impl


def _get(ref, key, default):
    to_word = _key_to_word(ref)
    value_to_word, from_word, _, _ = _value_codec(_field(ref, "value_marker").dtype)

    def impl(ref, key, default=0):
        _check_fresh(ref)
        row = _find_row(ref, to_word(key))
        if row < 0:
            return from_word(value_to_word(default))
        return from_word(ref.slots[row, 1])

    return impl


def _given(arg) -> bool:
    return arg is not None and not isinstance(arg, (types.Omitted, types.NoneType))


# ------------------------------------------------------------------ the method registry
# Numba resolves ``ref.name(...)`` on a NamedTuple through the templates registered for ``name``
# on its type classes, and takes the first that answers; two modules registering the same name on
# the same class would make one hide the other. So every name a ref of this package answers to is
# registered here once, on ``types.BaseNamedTuple``, with its signature, and each ref class brings
# the typing functions of its own methods (``register_ref_methods``), CPU and GPU refs alike
# (a GPU ref is a class of its own). A call on a class that has no such method gets Numba's usual
# "unknown attribute" error.

_METHODS: dict[str, dict[type, Callable]] = {
    name: {} for name in ("insert", "add", "get", "contains", "count", "retrieve", "failed")}
# (each name's dispatcher, with the signature its calls are typed by, is at the end of the module)


def register_ref_methods(ref_class: type, **typers: Callable) -> None:
    """Give the NamedTuple ref class ``ref_class`` its compiled methods: each typer is called at
    compile time with the Numba types of the call (``ref`` first, then the arguments, ``None`` for
    an omitted optional one) and returns an implementation, or None where the types do not fit."""
    for name, typer in typers.items():
        if name not in _METHODS:
            raise ValueError(f"ref method {name!r} has no dispatcher; add one to "
                             "bulkhash.refs._DISPATCHERS and its name to _METHODS")
        _METHODS[name][ref_class] = typer


def _typer(ref, name: str):
    cls = ref.instance_class if isinstance(ref, types.BaseNamedTuple) else None
    return _METHODS[name].get(cls, lambda *args: None)


def _failed(ref):
    return lambda ref: ref.state[K.REF_FAILED]


register_ref_methods(
    HashMapRef, contains=_contains, failed=_failed, get=_get,
    insert=lambda ref, key, value: (_insert_or_add(ref, key, value, K.OP_OVERWRITE)
                                    if _given(value) else None))
register_ref_methods(
    HashSetRef, contains=_contains, failed=_failed,
    add=lambda ref, key, value: (None if _given(value)
                                 else _insert_or_add(ref, key, None, K.OP_KEEP)))
register_ref_methods(
    CounterRef, contains=_contains, failed=_failed, get=_get,
    add=lambda ref, key, value: (_insert_or_add(ref, key, value, K.OP_SATURATING_ADD)
                                 if _given(value) else None))


# ------------------------------------------------------------------ multi-value refs
def register_multi_value_methods(ref_class: type, *, insert, count, retrieve, fresh,
                                 word_field: str) -> None:
    """Give a multi-value ref class (MultiMap's, BucketListMap's; CPU or GPU) its methods
    ``insert(key, value)``, ``count(key)``, ``contains(key)``, ``retrieve(key, out)`` and
    ``failed()``, from its compiled operations on table words: ``insert(ref, key word, value
    word)``, ``count(ref, key word)``, ``retrieve(ref, key word, out as unsigned words)``.
    ``fresh(ref)`` runs first (the CPU's raises on a stale ref; a GPU operation checks for
    itself and passes a no-op); ``word_field`` names the ref's field of table words."""

    def conversions(ref):
        value_to_word = _value_codec(_field(ref, "value_marker").dtype)[0]
        return _key_to_word(ref), value_to_word, _field(ref, word_field).dtype

    def insert_typer(ref, key, value):
        if not _given(value):
            return None
        to_word, value_to_word, word = conversions(ref)

        def impl(ref, key, value=None):
            fresh(ref)
            return insert(ref, word(to_word(key)), word(value_to_word(value)))

        return impl

    def count_typer(ref, key):
        to_word, _, word = conversions(ref)

        def impl(ref, key):
            fresh(ref)
            return count(ref, word(to_word(key)))

        return impl

    def contains_typer(ref, key):
        to_word, _, word = conversions(ref)

        def impl(ref, key):
            fresh(ref)
            return count(ref, word(to_word(key))) > 0

        return impl

    def retrieve_typer(ref, key, out):
        value_dtype = _field(ref, "value_marker").dtype
        if not isinstance(out, types.Array) or out.ndim != 1 or out.dtype != value_dtype:
            raise TypeError(f"retrieve(key, out): out must be a 1-D array of the table's value "
                            f"dtype ({value_dtype}), got {out}")
        to_word, _, word = conversions(ref)
        # the table's value words are the values' bits: written through an unsigned view
        bits = getattr(np, f"uint{8 * as_dtype(value_dtype).itemsize}")

        def impl(ref, key, out):
            fresh(ref)
            return retrieve(ref, word(to_word(key)), out.view(bits))

        return impl

    register_ref_methods(ref_class, insert=insert_typer, count=count_typer,
                         contains=contains_typer, retrieve=retrieve_typer, failed=_failed)


def _ref_insert(ref, key, value=None):
    return _typer(ref, "insert")(ref, key, value)


def _ref_add(ref, key, value=None):
    return _typer(ref, "add")(ref, key, value)


def _ref_get(ref, key, default=0):
    return _typer(ref, "get")(ref, key, default)


def _ref_contains(ref, key):
    return _typer(ref, "contains")(ref, key)


def _ref_count(ref, key):
    return _typer(ref, "count")(ref, key)


def _ref_retrieve(ref, key, out):
    return _typer(ref, "retrieve")(ref, key, out)


def _ref_failed(ref):
    return _typer(ref, "failed")(ref)


_DISPATCHERS = {"insert": _ref_insert, "add": _ref_add, "get": _ref_get,
                "contains": _ref_contains, "count": _ref_count, "retrieve": _ref_retrieve,
                "failed": _ref_failed}
for _name, _dispatcher in _DISPATCHERS.items():
    overload_method(types.BaseNamedTuple, _name)(_dispatcher)


def register_cuda_dispatchers() -> None:
    """The same dispatchers for ``@cuda.jit`` code (``bulkhash._cuda.refs`` calls this once, on a
    real GPU: the simulator compiles nothing and calls the refs' Python methods instead)."""
    from numba.cuda.extending import overload_method as cuda_overload_method

    for name, dispatcher in _DISPATCHERS.items():
        cuda_overload_method(types.BaseNamedTuple, name, target="cuda")(dispatcher)
