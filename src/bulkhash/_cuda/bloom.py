"""numba-cuda kernels of ``BloomFilter`` on a GPU, and refs for user ``@cuda.jit`` kernels.

The memory layout and the addressing are the CPU's (``bulkhash._cpu.bloom``): one flat device
array of ``uint64`` words in blocks of ``block_bits`` bits; a key's block and its ``k`` bits come
from the same ``block_start`` / ``draw_bit`` functions, compiled here for the GPU, so a filter's
bits are identical on both backends and a saved filter loads on either.

One thread per key: it hashes the key, then reads (``contains``) or ORs into (``add``) the words
of the key's block. A 512-bit block is one 64-byte line, so a key costs one or two 32-byte
sectors of DRAM traffic whatever ``k`` is -- the point of blocking on a GPU as on a CPU. ``add``
sets bits with ``atomic.or_``, skipped for bits already set (a plain load first): many threads
add keys of one block at once and no bit is lost. Every kernel walks its input with a
grid-stride loop, so the launch size is a tuning choice, not a correctness one: on a GPU one
thread per key, on the CUDA simulator (where each thread is a Python thread) a single block.

(WarpCore's BloomFilter can spread a key's block over a cooperative group of threads; with one
line per block and one thread per key the loads already coalesce into the line's sectors, so this
first version keeps one thread per key. No GPU has measured it yet.)
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import config, cuda, types
from numba.core.datamodel import models
from numba.extending import register_model

from .._cpu.bloom import WORD_BITS, block_start, draw_bit
from ..hashing import hash_key
from . import backend as B
from .kernels import BLOCK, blocks, fill

_SIMULATED = bool(config.ENABLE_CUDASIM)


# ================================================================================================
# one key (device functions; also the refs' operations)
# ================================================================================================

@cuda.jit(device=True)
def has_key(bits, n_blocks, block_words, shift, k, seed, key):
    """Whether every bit of ``key`` (an unsigned word) is set."""
    # np.uint64/np.int64 around the shared functions: under the simulator they run as CPU
    # functions that hand back Python ints (no-ops on the GPU)
    h = np.uint64(hash_key(key, seed))
    start = np.int64(block_start(h, n_blocks, block_words))
    x = h
    for _ in range(k):
        x, word, mask = draw_bit(x, start, shift)
        x = np.uint64(x)
        if bits[np.int64(word)] & np.uint64(mask) == 0:
            return False
    return True


@cuda.jit(device=True)
def set_key(bits, n_blocks, block_words, shift, k, seed, key):
    """Set the bits of ``key``; True if any of them was clear before."""
    h = np.uint64(hash_key(key, seed))
    start = np.int64(block_start(h, n_blocks, block_words))
    x = h
    changed = False
    for _ in range(k):
        x, word, mask = draw_bit(x, start, shift)
        x = np.uint64(x)
        word = np.int64(word)
        mask = np.uint64(mask)
        if bits[word] & mask == 0 and cuda.atomic.or_(bits, word, mask) & mask == 0:
            changed = True
    return changed


# ================================================================================================
# kernels
# ================================================================================================

@cuda.jit
def add_keys(bits, n_blocks, block_words, shift, k, seed, keys):
    for i in range(cuda.grid(1), keys.size, cuda.gridsize(1)):
        set_key(bits, n_blocks, block_words, shift, k, seed, keys[i])


@cuda.jit
def query_keys(bits, n_blocks, block_words, shift, k, seed, keys, out):
    for i in range(cuda.grid(1), keys.size, cuda.gridsize(1)):
        out[i] = has_key(bits, n_blocks, block_words, shift, k, seed, keys[i])


@cuda.jit
def block_fill_histogram(bits, block_words, hist):
    """``hist[s] +=`` the number of blocks with ``s`` bits set."""
    n_blocks = bits.size // block_words
    for b in range(cuda.grid(1), n_blocks, cuda.gridsize(1)):
        s = 0
        for w in range(b * block_words, (b + 1) * block_words):
            s += cuda.popc(bits[w])
        cuda.atomic.add(hist, s, 1)


@cuda.jit
def or_words(dst, src):
    for i in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
        dst[i] |= src[i]


def _grid(n: int) -> int:
    """Blocks to launch over ``n`` items (one thread each; a single block on the simulator)."""
    return 1 if _SIMULATED else blocks(n)


# ================================================================================================
# what ``BloomFilter`` calls (the CPU's counterpart: ``bulkhash.bloom._CpuEngine``)
# ================================================================================================

def zeros(n_words: int):
    return B.filled(n_words, np.uint64, 0)


def from_host(data: np.ndarray):
    return cuda.to_device(np.ascontiguousarray(data, np.uint64))


def to_host(bits) -> np.ndarray:
    return bits.copy_to_host()


def copy(bits):
    new = cuda.device_array(bits.size, np.uint64)
    new.copy_to_device(bits)
    return new


def clear(bits) -> None:
    if _SIMULATED:
        bits.copy_to_device(np.zeros(bits.size, np.uint64))
    else:
        fill[blocks(bits.size), BLOCK](bits, np.uint64(0))


def add(bits, geometry, seed: int, keys) -> None:
    add_keys[_grid(keys.size), BLOCK](bits, *geometry, np.uint64(seed), keys)


def contains(bits, geometry, seed: int, keys):
    out = cuda.device_array(keys.size, np.bool_)
    if keys.size:
        query_keys[_grid(keys.size), BLOCK](bits, *geometry, np.uint64(seed), keys, out)
    return out


def histogram(bits, block_words: int) -> np.ndarray:
    hist = cuda.to_device(np.zeros(block_words * WORD_BITS + 1, np.int64))
    block_fill_histogram[_grid(bits.size // block_words), BLOCK](bits, block_words, hist)
    return hist.copy_to_host()


def or_into(bits, other) -> None:
    or_words[_grid(bits.size), BLOCK](bits, other)


# ================================================================================================
# refs
# ================================================================================================

class CudaBloomFilterRef(NamedTuple):
    """A non-owning view of a GPU ``BloomFilter`` for user ``@cuda.jit`` kernels.

    Each thread calls ``ref.add(key) -> bool`` (set the key's bits; True if any was clear before:
    with several threads adding one key at once, more than one may get True) and
    ``ref.contains(key) -> bool`` on its own key. Keys convert to the filter's key dtype as C
    would; adds through a ref are not counted in ``n_added``. A filter never changes size, so a
    ref stays valid while the filter lives::

        >>> import numpy as np
        >>> from numba import cuda
        >>> from bulkhash.bloom import BloomFilter
        >>> @cuda.jit
        ... def add_evens(ref, n):
        ...     i = cuda.grid(1)
        ...     if i < n:
        ...         ref.add(2 * i)
        >>> bf = BloomFilter(100, device="cuda")  # doctest: +SKIP
        >>> add_evens[1, 64](bf.ref(), 50)  # doctest: +SKIP
        >>> bf.contains(np.array([0, 98], np.uint64)).tolist()  # doctest: +SKIP
        [True, True]

    Under Numba's CUDA simulator the methods are plain Python methods calling the same device
    functions; compiled, they are ``overload_method``\\ s of the ref's own Numba type.
    """

    bits: object
    n_blocks: int
    block_words: int
    shift: int
    k: int
    seed: np.uint64
    key_marker: object  # a zero-length device array of the filter's key dtype

    # the simulator's front end (a simulated kernel is Python)
    def _word(self, key):
        kdt = self.key_marker.dtype
        return np.uint64(np.asarray(key).astype(kdt).view(f"u{kdt.itemsize}"))

    def add(self, key):
        return set_key(self.bits, self.n_blocks, self.block_words, self.shift, self.k, self.seed,
                       self._word(key))

    def contains(self, key):
        return has_key(self.bits, self.n_blocks, self.block_words, self.shift, self.k, self.seed,
                       self._word(key))


class CudaBloomFilterRefType(types.NamedTuple):
    """The Numba type of a ``CudaBloomFilterRef``: a named tuple of a type class of its own, so
    that its ``add``/``contains`` are found before the generic ones ``bulkhash._cuda.refs``
    registers for every named tuple (Numba resolves a method on the most derived type class
    first). (The CPU ref is a struct instead, for ``prange``'s sake; kernels have no ``prange``,
    and a tuple is what a CUDA kernel launch knows how to pass.)"""


register_model(CudaBloomFilterRefType)(models.TupleModel)


def make_ref(bits, geometry, seed: int, key_dtype: np.dtype) -> CudaBloomFilterRef:
    return CudaBloomFilterRef(bits, *geometry, np.uint64(seed), cuda.device_array(0, key_dtype))


def ref_type(key_dtype) -> types.Type:
    """The Numba type of a GPU Bloom filter ref, for eager signatures and ``cuda.compile_ptx``
    (it depends only on the key dtype: no filter and no GPU needed)."""
    from .. import _dtypes

    stand_in = CudaBloomFilterRef(np.empty(0, np.uint64), 1, 8, 55, 1, np.uint64(0),
                                  np.empty(0, _dtypes.key_dtype(key_dtype)))
    return CudaBloomFilterRefType([numba.typeof(v) for v in stand_in], CudaBloomFilterRef)


if not _SIMULATED:  # the simulator compiles nothing: its front end is the methods above
    from numba.cuda.extending import overload_method
    from numba.cuda.typing.typeof import typeof_impl as cuda_typeof

    from .. import refs as _cpu_refs

    @cuda_typeof.register(CudaBloomFilterRef)
    def _typeof_ref(val, c):
        return CudaBloomFilterRefType([cuda_typeof(v, c) for v in val], type(val))

    def _key_conversion(ref):
        """A compiled key's bits as the CPU refs take them (``bulkhash.refs``)."""
        return _cpu_refs._key_to_word(ref)

    @overload_method(CudaBloomFilterRefType, "add", target="cuda")
    def _ref_add(ref, key):
        to_word = _key_conversion(ref)
        return lambda ref, key: set_key(ref.bits, ref.n_blocks, ref.block_words, ref.shift,
                                        ref.k, ref.seed, to_word(key))

    @overload_method(CudaBloomFilterRefType, "contains", target="cuda")
    def _ref_contains(ref, key):
        to_word = _key_conversion(ref)
        return lambda ref, key: has_key(ref.bits, ref.n_blocks, ref.block_words, ref.shift,
                                        ref.k, ref.seed, to_word(key))
