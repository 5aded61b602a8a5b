"""Numba CPU kernels of ``BloomFilter``, the arithmetic they share with the GPU, and CPU refs.

Memory layout
-------------
A filter is one flat, 64-byte aligned array of ``uint64`` words, cut into ``n_blocks`` blocks of
``block_bits`` bits (64, 128, 256 or 512: one to eight words)::

    word:  0   1   2   3   4   5   6   7 | 8   9  ...  15 | ...
          \\__________ block 0 _________/ \\__ block 1 __/

    bit ``p`` of a block (0 <= p < block_bits) is bit ``p % 64`` of the block's word ``p // 64``

A key sets (and a lookup tests) ``k`` bits, all in *one* block: the pattern-blocked Bloom filter
of WarpCore (and Putze, Sanders & Singler's "cache-, hash- and space-efficient Bloom filters").
With 512-bit blocks a block is exactly one cache line (the array is line-aligned, so a block
never straddles two): an ``add`` or a ``contains`` costs one cache miss, where a classic Bloom
filter costs up to ``k`` of them. The price is a higher false-positive rate for the same memory
(blocks receive unequal numbers of keys); ``bulkhash.bloom`` sizes the filter for it.

Addressing (shared by every backend)
------------------------------------
``h = hash_key(key_word, seed)`` (``bulkhash.hashing``: MurmurHash3's ``fmix64``) picks the block
from its top 32 bits by multiply-shift (``hashing.home_bucket``). The ``k`` bit positions come
from a 64-bit linear congruential stream seeded with ``h``: ``x <- x * A + C`` (Knuth's MMIX
constants), position ``i`` being the top ``log2(block_bits)`` bits of the ``i``-th state. Top
bits of a 64-bit LCG are well distributed, and for keys that share a block (same top half of
``h``) the stream still depends on every bit of ``h``. Positions are drawn *with* replacement
(two may coincide): that is the model ``bulkhash.bloom`` computes the false-positive rate for.

``block_start`` and ``draw_bit`` are plain ``@njit(inline="always")`` functions: the CPU kernels
below and the CUDA kernels (``bulkhash._cuda.bloom``) call the same source, so a filter built on
one backend answers identically on the other (and saves and loads across them).

Parallel scheme
---------------
Lookups split the batch into chunks of ``CHUNK`` keys over the threads of a ``prange`` loop; each
chunk hashes every key once, keeps the hashes of the next ``PREFETCH_DISTANCE`` keys in a small
ring and prefetches their blocks, so that by the time a key is tested its cache line is (usually)
on its way.

``add`` must never lose a bit to two threads writing one word at once. An atomic OR per bit
would do it, but a locked instruction is a full fence on x86: it stalls the prefetch pipeline and
made a 2-thread add slower than a 1-thread one here. So a parallel add splits the *filter*
instead, as the tables' inserts do: thread ``t`` owns a contiguous range of blocks, the batch's
hashes are sorted by owner (count per chunk and owner, prefix sums, scatter: two parallel passes
over the keys, a temporary of 8 bytes per key), and each thread sets the bits of its own keys
with plain stores. Refs, which the threads of a user's ``prange`` loop call on any key, use the
atomic OR (``_set_bits_atomic``). Bits only go from 0 to 1, so the order keys are added in never
matters: a batch means what adding its keys one at a time means, however it is split.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import (NativeValue, intrinsic, make_attribute_wrapper, models,
                             overload_method, register_model, typeof_impl, unbox)

from ..hashing import hash_key, home_bucket
from .intrinsics import atomic_or, prefetch

#: Block sizes a filter may use, in bits (one 64-bit word up to one 64-byte cache line).
BLOCK_BITS = (64, 128, 256, 512)
WORD_BITS = 64

_LCG_MUL = np.uint64(6364136223846793005)  # Knuth's MMIX linear congruential generator
_LCG_INC = np.uint64(1442695040888963407)
_WORD_SHIFT = np.int64(6)  # position -> word within the block
_BIT_MASK = np.int64(63)  # position -> bit within the word

PREFETCH_DISTANCE = 16  # keys ahead whose blocks are prefetched (a power of two: a ring index)
CHUNK = 1 << 12  # keys per task of a parallel kernel
SERIAL_BELOW = 1 << 14  # batches smaller than this run on the calling thread


# ================================================================================================
# addressing: shared with the CUDA kernels
# ================================================================================================

@njit(inline="always", cache=True, nogil=True)
def block_start(h, n_blocks, block_words):
    """Index of the first word of the block that the key with hash ``h`` maps to."""
    return home_bucket(h, n_blocks) * np.int64(block_words)


@njit(inline="always", cache=True, nogil=True)
def draw_bit(x, start, shift):
    """One step of a key's bit stream: ``(next state, word index, bit mask)``.

    ``x`` is the stream's state (the key's hash before the first step), ``start`` the first word of
    the key's block, ``shift`` is ``64 - log2(block_bits)``: the position is the state's top bits.
    """
    x = np.uint64(x) * _LCG_MUL + _LCG_INC
    position = np.int64(x >> np.uint64(shift))
    return (x, start + (position >> _WORD_SHIFT),
            np.uint64(1) << np.uint64(position & _BIT_MASK))


# ================================================================================================
# intrinsics
# ================================================================================================

@intrinsic
def popcount(typingctx, word):
    """Number of set bits of an unsigned 64-bit word (one ``popcnt`` instruction)."""
    if not isinstance(word, types.Integer):
        return None
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


# ================================================================================================
# one key
# ================================================================================================

@njit(inline="always", cache=True, nogil=True)
def _has_bits(bits, h, n_blocks, block_words, shift, k):
    start = block_start(h, n_blocks, block_words)
    x = h
    for _ in range(k):
        x, word, mask = draw_bit(x, start, shift)
        if bits[word] & mask == 0:
            return False
    return True


@njit(inline="always", cache=True, nogil=True)
def _set_bits(bits, h, n_blocks, block_words, shift, k):
    """Set the key's bits (plain stores: the caller owns the key's block)."""
    start = block_start(h, n_blocks, block_words)
    x = h
    for _ in range(k):
        x, word, mask = draw_bit(x, start, shift)
        bits[word] |= mask


@njit(inline="always", cache=True, nogil=True)
def _set_bits_atomic(bits, h, n_blocks, block_words, shift, k):
    """Set the key's bits with atomic ORs (any thread may write any block); True if any of them
    was clear before. A bit already set is not written again."""
    start = block_start(h, n_blocks, block_words)
    x = h
    changed = False
    for _ in range(k):
        x, word, mask = draw_bit(x, start, shift)
        if bits[word] & mask == 0 and atomic_or(bits, word, mask) & mask == 0:
            changed = True
    return changed


# ================================================================================================
# batches: each key hashed once, its block prefetched PREFETCH_DISTANCE keys ahead
# ================================================================================================

@njit(inline="always", cache=True, nogil=True)
def _hash_ahead(bits, keys, j, ring, lo, n_blocks, block_words, seed):
    h = hash_key(keys[j], seed)
    ring[(j - lo) & (PREFETCH_DISTANCE - 1)] = h
    prefetch(bits, block_start(h, n_blocks, block_words))


@njit(inline="always", cache=True, nogil=True)
def _run_range(bits, n_blocks, block_words, shift, k, seed, keys, out, lo, hi, adding):
    """Add (``adding``: plain stores, one thread) or test (into ``out``) ``keys[lo:hi]``."""
    ring = np.empty(PREFETCH_DISTANCE, np.uint64)  # hashes of the keys being prefetched
    for j in range(lo, min(hi, lo + PREFETCH_DISTANCE)):
        _hash_ahead(bits, keys, j, ring, lo, n_blocks, block_words, seed)
    for i in range(lo, hi):
        h = ring[(i - lo) & (PREFETCH_DISTANCE - 1)]
        if i + PREFETCH_DISTANCE < hi:
            _hash_ahead(bits, keys, i + PREFETCH_DISTANCE, ring, lo, n_blocks, block_words, seed)
        if adding:
            _set_bits(bits, h, n_blocks, block_words, shift, k)
        else:
            out[i] = _has_bits(bits, h, n_blocks, block_words, shift, k)


@njit(cache=True, nogil=True)
def add_serial(bits, n_blocks, block_words, shift, k, seed, keys):
    _run_range(bits, n_blocks, block_words, shift, k, seed, keys, keys[:0], 0, keys.size, True)


@njit(cache=True, nogil=True)
def contains_serial(bits, n_blocks, block_words, shift, k, seed, keys, out):
    _run_range(bits, n_blocks, block_words, shift, k, seed, keys, out, 0, keys.size, False)


@njit(cache=True, nogil=True, parallel=True)
def contains_parallel(bits, n_blocks, block_words, shift, k, seed, keys, out):
    n = keys.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        _run_range(bits, n_blocks, block_words, shift, k, seed, keys, out, c * CHUNK,
                   min(n, (c + 1) * CHUNK), False)


# A parallel add splits the *filter*: thread t owns a contiguous range of blocks and sets the
# bits of exactly the keys that map there, with plain stores (no two threads write one word, and
# a locked instruction per bit would cost more than the store). The keys' hashes are first sorted
# by owner, stably and in parallel: count per (chunk, owner), prefix sums, scatter.

@njit(inline="always", cache=True, nogil=True)
def _owner(h, n_blocks, owner_mult):
    """The thread that owns the block of hash ``h``: monotone in the block index, so each thread
    owns a contiguous range of blocks (``owner_mult = (nthreads << 32) // n_blocks``)."""
    return np.int64((np.uint64(home_bucket(h, n_blocks)) * owner_mult) >> np.uint64(32))


@njit(inline="always", cache=True, nogil=True)
def _set_hashes(bits, hashes, lo, hi, n_blocks, block_words, shift, k):
    for i in range(lo, hi):
        if i + PREFETCH_DISTANCE < hi:
            prefetch(bits, block_start(hashes[i + PREFETCH_DISTANCE], n_blocks, block_words))
        _set_bits(bits, hashes[i], n_blocks, block_words, shift, k)


@njit(cache=True, nogil=True, parallel=True)
def add_parallel(bits, n_blocks, block_words, shift, k, seed, keys, nthreads):
    n = keys.size
    n_chunks = (n + CHUNK - 1) // CHUNK
    owner_mult = np.uint64((np.uint64(nthreads) << np.uint64(32)) // np.uint64(n_blocks))
    counts = np.zeros((n_chunks, nthreads), np.int64)
    for c in prange(n_chunks):
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            counts[c, _owner(hash_key(keys[i], seed), n_blocks, owner_mult)] += 1
    bounds = np.empty(nthreads + 1, np.int64)  # owner t's hashes: [bounds[t], bounds[t + 1])
    run = 0
    for t in range(nthreads):
        bounds[t] = run
        for c in range(n_chunks):
            count = counts[c, t]
            counts[c, t] = run  # now: where chunk c writes its next hash of owner t
            run += count
    bounds[nthreads] = run
    hashes = np.empty(n, np.uint64)
    for c in prange(n_chunks):
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            h = hash_key(keys[i], seed)
            t = _owner(h, n_blocks, owner_mult)
            hashes[counts[c, t]] = h
            counts[c, t] += 1
    for t in prange(nthreads):
        _set_hashes(bits, hashes, bounds[t], bounds[t + 1], n_blocks, block_words, shift, k)


@njit(cache=True, nogil=True, parallel=True)
def fill_histogram(bits, block_words, nthreads):
    """``hist[s]``: how many blocks have ``s`` bits set (``s`` = 0 .. block_bits)."""
    n_blocks = bits.size // block_words
    hist = np.zeros((nthreads, block_words * WORD_BITS + 1), np.int64)
    for t in prange(nthreads):
        for b in range(t * n_blocks // nthreads, (t + 1) * n_blocks // nthreads):
            s = 0
            for w in range(b * block_words, (b + 1) * block_words):
                s += popcount(bits[w])
            hist[t, s] += 1
    return hist.sum(axis=0)


# ------------------------------------------------------------------ what the public class calls

def add(bits, geometry, seed: int, keys: np.ndarray) -> None:
    """Set the bits of ``keys`` (unsigned words) in the host filter ``bits``."""
    args = (bits, *geometry, np.uint64(seed), keys)
    nthreads = numba.get_num_threads()
    if keys.size < SERIAL_BELOW or nthreads == 1:
        add_serial(*args)
    else:
        add_parallel(*args, nthreads)


def contains(bits, geometry, seed: int, keys: np.ndarray) -> np.ndarray:
    """Whether every bit of each key is set: a bool array."""
    out = np.empty(keys.size, np.bool_)
    args = (bits, *geometry, np.uint64(seed), keys, out)
    if keys.size < SERIAL_BELOW or numba.get_num_threads() == 1:
        contains_serial(*args)
    else:
        contains_parallel(*args)
    return out


def histogram(bits, block_words: int) -> np.ndarray:
    return fill_histogram(bits, block_words, numba.get_num_threads())


# ================================================================================================
# refs: per-key operations inside user @njit code
# ================================================================================================

class BloomFilterRef(NamedTuple):
    """A non-owning view of a CPU ``BloomFilter`` for user ``@numba.njit`` code.

    ``ref.add(key) -> bool``: set the key's bits; True if any was clear (the filter did not
    report the key before). Safe from every thread of a ``prange`` loop (atomic OR); when threads
    add the *same* key at the same instant, more than one of them may get True.
    ``ref.contains(key) -> bool``: whether the key may be in the filter (no false negatives).

    Keys are converted to the filter's key dtype as C would (a 32-bit filter keeps the low 32
    bits); refs skip the bulk methods' input checks, and ``add`` through a ref is not counted in
    the filter's ``n_added``. A filter never changes size, so a ref stays valid for the filter's
    lifetime (``clear`` and ``|=`` work in place).
    """

    bits: np.ndarray
    n_blocks: int
    block_words: int
    shift: int
    k: int
    seed: np.uint64
    key_marker: np.ndarray  # an empty array whose dtype is the filter's key dtype


class BloomFilterRefType(types.Type):
    """Numba's type of a ``BloomFilterRef``: a struct of its fields, not a tuple type.

    Not a ``types.NamedTuple`` for two reasons. ``bulkhash.refs`` registers ``add`` and
    ``contains`` for every named tuple, and Numba answers a method call from the first template
    registered on the most derived type class. And a ``prange`` loop cannot take a tuple into its
    body whole: it passes the fields and rebuilds the tuple from its Python class, which Numba
    types as a plain named tuple -- losing the filter's methods. A struct passes as it is.
    """

    def __init__(self, key_dtype: types.Integer):
        self.key_dtype = key_dtype
        super().__init__(f"BloomFilterRef[{key_dtype}]")


_REF_FIELDS = (("bits", types.uint64[::1]), ("n_blocks", types.int64),
               ("block_words", types.int64), ("shift", types.int64), ("k", types.int64),
               ("seed", types.uint64))


@typeof_impl.register(BloomFilterRef)
def _typeof_ref(val, c):
    return BloomFilterRefType(numba.from_dtype(val.key_marker.dtype))


@register_model(BloomFilterRefType)
class _RefModel(models.StructModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, list(_REF_FIELDS))


for _name, _ in _REF_FIELDS:
    make_attribute_wrapper(BloomFilterRefType, _name, _name)


@unbox(BloomFilterRefType)
def _unbox_ref(typ, obj, c):
    """A ``BloomFilterRef`` passed to compiled code: each field unboxed into the struct."""
    ref = cgutils.create_struct_proxy(typ)(c.context, c.builder)
    failed = cgutils.alloca_once_value(c.builder, cgutils.false_bit)
    for name, field_type in _REF_FIELDS:
        attr = c.pyapi.object_getattr_string(obj, name)
        native = c.unbox(field_type, attr)
        c.pyapi.decref(attr)
        setattr(ref, name, native.value)
        with c.builder.if_then(native.is_error):
            c.builder.store(cgutils.true_bit, failed)
    return NativeValue(ref._getvalue(), is_error=c.builder.load(failed))


def make_ref(bits, geometry, seed: int, key_dtype: np.dtype) -> BloomFilterRef:
    return BloomFilterRef(bits, *geometry, np.uint64(seed), np.empty(0, key_dtype))


def _key_word(ref):
    """The compiled conversion of a user key to the filter's word (as ``bulkhash.refs``)."""
    from .. import refs

    return refs._word32 if ref.key_dtype.bitwidth == 32 else refs._word64


@overload_method(BloomFilterRefType, "add")
def _ref_add(ref, key):
    to_word = _key_word(ref)

    def impl(ref, key):
        h = hash_key(to_word(key), ref.seed)
        return _set_bits_atomic(ref.bits, h, ref.n_blocks, ref.block_words, ref.shift, ref.k)

    return impl


@overload_method(BloomFilterRefType, "contains")
def _ref_contains(ref, key):
    to_word = _key_word(ref)

    def impl(ref, key):
        h = hash_key(to_word(key), ref.seed)
        return _has_bits(ref.bits, h, ref.n_blocks, ref.block_words, ref.shift, ref.k)

    return impl
