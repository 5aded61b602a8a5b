"""Refs of GPU cuckoo filters: per-thread ``add``, ``contains`` and ``erase`` inside your own
``@cuda.jit`` kernels.

``CuckooFilter.ref()`` on a ``device="cuda"`` filter returns a small, non-owning view of its
device arrays; pass it to your kernel and call its methods there, one key per thread (a cuckoo
filter's bucket is one word, so there is no cooperative group to keep in step). The methods are
the CPU refs' (``bulkhash.cuckoo_refs``)::

    >>> import numpy as np
    >>> from numba import cuda
    >>> from bulkhash.cuckoo import CuckooFilter
    >>> @cuda.jit
    ... def add_evens(ref, keys, added):
    ...     i = cuda.grid(1)
    ...     if i < keys.size and keys[i] % 2 == 0:
    ...         added[i] = ref.add(keys[i])
    >>> f = CuckooFilter(1000, device="cuda")  # doctest: +SKIP
    >>> keys = cuda.to_device(np.arange(10, dtype=np.uint64))  # doctest: +SKIP
    >>> added = cuda.to_device(np.zeros(10, np.bool_))  # doctest: +SKIP
    >>> add_evens[1, 32](f.ref(), keys, added)  # doctest: +SKIP
    >>> f.contains(np.array([4, 5], np.uint64)).tolist(), len(f)  # doctest: +SKIP
    ([True, False], 5)

=====================  =============================================================
``add(key) -> bool``   store one fingerprint of ``key``; False if the filter had no room
                       (nothing is stored; counted in ``failed()``)
``contains(key)``      whether ``key`` may be present (no false negatives)
``erase(key) -> bool`` remove one fingerprint of ``key``; False if none was found
``failed() -> int``    adds through refs of this filter that found no room so far
=====================  =============================================================

Semantics are those of the CPU refs: a ``contains`` that runs while another thread of the same
kernel moves that key's fingerprint between its buckets can miss it for that moment, so look up
in a later kernel than you add; the filter's bulk methods and ``len()`` see what refs did. A
filter never reallocates its table, so a ref stays valid while its filter lives.

How it is built: the operations are ``bulkhash._cuda.cuckoo``'s (the shared source of
``bulkhash._cpu.cuckoo``). Compiled kernels reach them through ``overload_method`` on a Numba
type of the ref's own (a named tuple type subclass, so that the hash tables' refs, which hold
``add`` and ``contains`` for every named tuple, are not in the way); under Numba's CUDA simulator
a kernel is Python, and the ref's own methods run the same operations.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import config, cuda, types

from .. import _dtypes
from .._cpu import cuckoo as CK
from .cuckoo import GPU, SEARCH_BUCKETS


class _RefFields(NamedTuple):
    table: object  # the filter's table words (device array)
    state: object  # its int64 state vector: SIZE, REF_FAILED
    n_buckets: int
    fp_bits: int
    seed: np.uint64
    max_kicks: int
    key_marker: object  # a zero-length device array whose dtype is the filter's key dtype


if config.ENABLE_CUDASIM:  # (the simulator's atomics: the same locks its kernels take)
    from numba.cuda.simulator.kernelapi import FakeCUDAAtomic

    _atomic = FakeCUDAAtomic()


def _key_word(ref, key) -> np.uint64:
    """A key's bits as the filter's key dtype (C conversion), zero-extended to 64 bits."""
    kdt = ref.key_marker.dtype
    return np.uint64(np.asarray(key).astype(kdt).view(f"u{kdt.itemsize}"))


class CudaCuckooFilterRef(_RefFields):
    """Ref of a GPU ``CuckooFilter`` (module docs). Under the CUDA simulator these methods are
    what a kernel calls; compiled kernels call the overloads below."""

    def add(self, key):
        bucket, fp, h = CK.locate(_key_word(self, key), self.seed, self.n_buckets, self.fp_bits)
        node = np.empty(CK.SEARCH_BUCKETS, np.int64)
        node_fp = np.empty(CK.SEARCH_BUCKETS, np.uint64)
        added = GPU.add_one(self.table, self.n_buckets, self.fp_bits, self.seed, np.int64(bucket),
                            np.uint64(fp), np.uint64(h), self.max_kicks, node, node_fp)
        _atomic.add(self.state, CK.SIZE if added else CK.REF_FAILED, 1)
        return added

    def contains(self, key):
        bucket, fp, _ = CK.locate(_key_word(self, key), self.seed, self.n_buckets, self.fp_bits)
        return GPU.contains_one(self.table, self.n_buckets, self.fp_bits, self.seed,
                                np.int64(bucket), np.uint64(fp))

    def erase(self, key):
        bucket, fp, _ = CK.locate(_key_word(self, key), self.seed, self.n_buckets, self.fp_bits)
        removed = GPU.erase_one(self.table, self.n_buckets, self.fp_bits, self.seed,
                                np.int64(bucket), np.uint64(fp))
        if removed:
            _atomic.add(self.state, CK.SIZE, -1)
        return removed

    def failed(self):
        return self.state[CK.REF_FAILED]

    @property
    def failed_adds(self) -> int:
        """``failed()`` read from the host (a copy of one word from the device)."""
        return int(self.state[CK.REF_FAILED])


def make_ref(cuckoo) -> CudaCuckooFilterRef:
    """A ref of a ``device="cuda"`` filter (``CuckooFilter.ref()`` calls this)."""
    return CudaCuckooFilterRef(cuckoo._table, cuckoo._state, cuckoo._n_buckets,
                               cuckoo.fingerprint_bits, np.uint64(cuckoo.seed), cuckoo.max_kicks,
                               cuda.device_array(0, cuckoo.key_dtype))


def ref_type(key_dtype, fingerprint_bits: int) -> types.Type:
    """The Numba type of a GPU filter ref, for eager kernel signatures and ``cuda.compile_ptx``
    (it depends only on the dtypes, so no filter and no GPU is needed)."""
    kdt = _dtypes.key_dtype(key_dtype)
    stand_in = CudaCuckooFilterRef(np.empty(0, CK.word_dtype(fingerprint_bits)),
                                   np.empty(CK.STATE_LEN, np.int64), 1, fingerprint_bits,
                                   np.uint64(0), 0, np.empty(0, kdt))
    if config.ENABLE_CUDASIM:
        return numba.typeof(stand_in)
    from numba.cuda.typing.typeof import typeof

    return typeof(stand_in)


# ------------------------------------------------------------------ the compiled front end

if not config.ENABLE_CUDASIM:  # the simulator compiles nothing: its front end is the methods
    from numba.core.datamodel import models, register_default
    from numba.cuda.extending import overload_method
    from numba.cuda.typing.typeof import typeof_impl

    class CudaCuckooFilterRefType(types.NamedTuple):
        """A named tuple type of the filter ref's own: ``overload_method`` templates are kept
        per type class, and the hash tables' refs hold ``add``/``contains`` for every named
        tuple (``bulkhash._cuda.refs``)."""

    @typeof_impl.register(CudaCuckooFilterRef)
    def _typeof_ref(val, c):
        return CudaCuckooFilterRefType([typeof_impl(v, c) for v in val], type(val))

    # the CUDA target takes a named tuple's data model from Numba's default manager
    register_default(CudaCuckooFilterRefType)(models.TupleModel)

    def _to_word(ref):
        """A compiled key's conversion to the table's 64-bit key word (C conversion)."""
        key_type = ref.types[ref.fields.index("key_marker")].dtype
        if key_type.bitwidth == 32:
            return numba.njit(inline="always")(lambda key: np.uint64(np.uint32(key)))
        return numba.njit(inline="always")(lambda key: np.uint64(key))

    @overload_method(CudaCuckooFilterRefType, "add", target="cuda")
    def _add(ref, key):
        to_word = _to_word(ref)
        add_one = GPU.add_one

        def impl(ref, key):
            bucket, fp, h = CK.locate(to_word(key), ref.seed, ref.n_buckets, ref.fp_bits)
            node = cuda.local.array(SEARCH_BUCKETS, np.int64)
            node_fp = cuda.local.array(SEARCH_BUCKETS, np.uint64)
            added = add_one(ref.table, ref.n_buckets, ref.fp_bits, ref.seed, bucket, fp, h,
                            ref.max_kicks, node, node_fp)
            cuda.atomic.add(ref.state, CK.SIZE if added else CK.REF_FAILED, 1)
            return added

        return impl

    @overload_method(CudaCuckooFilterRefType, "contains", target="cuda")
    def _contains(ref, key):
        to_word = _to_word(ref)
        contains_one = GPU.contains_one

        def impl(ref, key):
            bucket, fp, _ = CK.locate(to_word(key), ref.seed, ref.n_buckets, ref.fp_bits)
            return contains_one(ref.table, ref.n_buckets, ref.fp_bits, ref.seed, bucket, fp)

        return impl

    @overload_method(CudaCuckooFilterRefType, "erase", target="cuda")
    def _erase(ref, key):
        to_word = _to_word(ref)
        erase_one = GPU.erase_one

        def impl(ref, key):
            bucket, fp, _ = CK.locate(to_word(key), ref.seed, ref.n_buckets, ref.fp_bits)
            removed = erase_one(ref.table, ref.n_buckets, ref.fp_bits, ref.seed, bucket, fp)
            if removed:
                cuda.atomic.add(ref.state, CK.SIZE, -1)
            return removed

        return impl

    @overload_method(CudaCuckooFilterRefType, "failed", target="cuda")
    def _failed(ref):
        return lambda ref: ref.state[CK.REF_FAILED]
