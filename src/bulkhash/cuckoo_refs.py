"""Refs of cuckoo filters: per-key ``add``, ``contains`` and ``erase`` inside your own
``@numba.njit`` code.

``CuckooFilter.ref()`` returns a small, non-owning view of the filter (cuCollections calls these
*refs*, WarpCore *device-sided operations*; ``bulkhash.refs`` has the hash tables' own). Pass it
to a compiled function and call its methods per key, so that a pipeline stays in compiled code::

    >>> import numba, numpy as np
    >>> from bulkhash.cuckoo import CuckooFilter
    >>> seen = CuckooFilter(1000, fpr=0.001)
    >>> @numba.njit
    ... def first_sightings(ref, xs):
    ...     firsts = 0
    ...     for x in xs:
    ...         if not ref.contains(x):   # (a false positive would skip a first sighting)
    ...             ref.add(x)
    ...             firsts += 1
    ...     return firsts
    >>> first_sightings(seen.ref(), np.array([3, 1, 3, 3, 2, 1], np.uint64))
    3
    >>> len(seen)
    3

Methods (all per key, all safe to call from many threads of a ``prange`` loop):

=====================  =============================================================
``add(key) -> bool``   store one fingerprint of ``key``; False if the filter had no room
                       (nothing is stored; counted in ``failed()``)
``contains(key)``      whether ``key`` may be present (no false negatives)
``erase(key) -> bool`` remove one fingerprint of ``key``; False if none was found
``failed() -> int``    adds through refs of this filter that found no room so far
=====================  =============================================================

The semantics are the bulk methods' (``bulkhash.cuckoo.CuckooFilter``): an add stores a copy per
call, erase only keys you added. A ``contains`` that runs while another thread's add is moving
that key's fingerprint between its two buckets can miss it for that moment: a pipeline that
must see every add should add in one loop and look up in the next. ``len()`` of the filter
and its bulk methods see what refs did, and refs see what bulk calls did. A filter never
reallocates its table (``clear`` zeroes it in place), so a ref stays valid as long as its filter
lives. Keys are converted to the filter's key type as C would (a 32-bit filter keeps the low 32
bits); refs skip the input checks of the bulk methods.

Why a ``StructRef`` and not a named tuple like the hash tables' refs: Numba keeps one method
template per method name for all named tuples, and ``bulkhash.refs`` holds ``add`` and
``contains`` there; a type of the filter's own keeps the two apart. (Making one costs a short
compilation, about a third of a second, the first time in a process.)
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.experimental import structref
from numba.extending import overload_method

from ._cpu import cuckoo as K
from ._cpu.intrinsics import atomic_add
from .refs import _word32, _word64  # (a user key as a word: as the tables' refs)


@structref.register
class CuckooFilterRefType(types.StructRef):
    """The Numba type of a ``CuckooFilterRef`` (one per table word and key dtype)."""

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


_FIELDS = ("table", "state", "n_buckets", "fp_bits", "seed", "max_kicks", "key_marker")


class CuckooFilterRef(structref.StructRefProxy):
    """Ref of a ``CuckooFilter`` (see the module docs)."""

    @property
    def failed_adds(self) -> int:
        """``failed()`` read from Python: adds through refs that found no room."""
        return int(self._filter_state[K.REF_FAILED])


structref.define_proxy(CuckooFilterRef, CuckooFilterRefType, list(_FIELDS))


def make_ref(cuckoo) -> CuckooFilterRef:
    """A ref of a CPU ``CuckooFilter`` (``CuckooFilter.ref()`` calls this)."""
    ref = CuckooFilterRef(cuckoo._table, cuckoo._state, np.int64(cuckoo._n_buckets),
                          np.int64(cuckoo.fingerprint_bits), np.uint64(cuckoo.seed),
                          np.int64(cuckoo.max_kicks), np.empty(0, cuckoo.key_dtype))
    ref._filter_state = cuckoo._state
    return ref


# ------------------------------------------------------------------ the methods, compiled

def _key_to_word(ref):
    return _word32 if ref.field_dict["key_marker"].dtype.bitwidth == 32 else _word64


def _add(ref, key):
    to_word = _key_to_word(ref)

    def impl(ref, key):
        bucket, fp, h = K.locate(to_word(key), ref.seed, ref.n_buckets, ref.fp_bits)
        other = K.alt_bucket(bucket, fp, ref.n_buckets, ref.seed)
        added = (K.swap_value(ref.table, bucket, 0, fp, ref.fp_bits, False)
                 or K.swap_value(ref.table, other, 0, fp, ref.fp_bits, False))
        if not added:  # both buckets full: search for room (scratch only on this rare path)
            node = np.empty(K.SEARCH_BUCKETS, np.int64)
            node_fp = np.empty(K.SEARCH_BUCKETS, np.uint64)
            added = K.add_one(ref.table, ref.n_buckets, ref.fp_bits, ref.seed, bucket, fp, h,
                               ref.max_kicks, node, node_fp)
        atomic_add(ref.state, K.SIZE if added else K.REF_FAILED, 1)
        return added

    return impl


def _contains(ref, key):
    to_word = _key_to_word(ref)

    def impl(ref, key):
        bucket, fp, _ = K.locate(to_word(key), ref.seed, ref.n_buckets, ref.fp_bits)
        return K.contains_one(ref.table, ref.n_buckets, ref.fp_bits, ref.seed, bucket, fp)

    return impl


def _erase(ref, key):
    to_word = _key_to_word(ref)

    def impl(ref, key):
        bucket, fp, _ = K.locate(to_word(key), ref.seed, ref.n_buckets, ref.fp_bits)
        removed = K.erase_one(ref.table, ref.n_buckets, ref.fp_bits, ref.seed, bucket, fp)
        if removed:
            atomic_add(ref.state, K.SIZE, -1)
        return removed

    return impl


overload_method(CuckooFilterRefType, "add")(_add)
overload_method(CuckooFilterRefType, "contains")(_contains)
overload_method(CuckooFilterRefType, "erase")(_erase)
overload_method(CuckooFilterRefType, "failed")(lambda ref: lambda ref: ref.state[K.REF_FAILED])
