"""``BloomFilter``: approximate membership of integer keys, whole arrays per call (WarpCore's
pattern-blocked Bloom filter).

A Bloom filter answers "may this key have been added?" in a fixed, small amount of memory: never
"no" for a key that was added (no false negatives), and "yes" for a key that was not with a
small probability, the *false-positive rate* (fpr). It stores no keys, so it cannot list or
remove them.

Layout: ``k`` bits per key, all inside one block of ``block_bits`` bits (512 = one 64-byte cache
line), so each operation touches one cache line; see ``bulkhash._cpu.bloom`` for the memory
layout and how a key's block and bits are chosen.

Sizing: what blocking costs, computed exactly
---------------------------------------------
A classic Bloom filter with ``b`` bits per key and ``k`` hash functions has fpr about
``(1 - exp(-k / b)) ** k``. A blocked one does worse for the same memory, because blocks receive
unequal numbers of keys and the fpr of a crowded block grows faster than that of a sparse one
falls. ``BloomFilter(capacity, fpr)`` therefore sizes itself with the blocked filter's own
false-positive rate, computed numerically (no approximation beyond the hashing model: every key
picks a uniformly random block and ``k`` positions in it, independently, with replacement):

* With ``n`` keys in ``N`` blocks, the number of keys ``c`` in the block a query lands in is
  Poisson with mean ``lam = n / N`` (the limit of Binomial(n, 1/N); its slightly heavier tail
  makes the estimate a little conservative).
* A block holding ``c`` keys has had ``c * k`` positions set at random; let ``S`` be how many
  distinct bits that set. A query's ``k`` positions all hit set bits with probability
  ``f_k(c) = E[(S / B) ** k]`` (``B = block_bits``). The distribution of ``S`` is computed
  exactly by a recurrence over throws (a throw at ``S = s`` sets a new bit with probability
  ``(B - s) / B``), so ``f_k(c)`` is exact -- unlike ``(1 - (1 - 1/B) ** (c k)) ** k``, which
  ignores the spread of ``S`` and underestimates the rate by up to ~20% on 64-bit blocks.
* ``fpr(lam, B, k) = sum_c Poisson(c; lam) * f_k(c)`` (``blocked_fpr``).

For each ``k`` the largest ``lam`` with ``fpr(lam, B, k) <= target`` is found by bisection; the
``k`` that allows the fewest blocks wins, and ``N = ceil(capacity / lam)``. So the expected fpr
with ``capacity`` distinct keys added is at most the target. With 512-bit blocks this costs
about 0.35 more bits per key than a classic filter at fpr 0.01 (9.9 against 9.6) and 1.2 more at
0.001; 64-bit blocks need far more (12.1 and 24 bits per key).

``estimated_fpr`` is the same model applied to the filter's actual bits: ``mean over blocks of
(set bits / B) ** k`` -- the exact probability that a key the filter never saw is reported
present (a key whose hash is random), whatever was added, however often, merged from where.

Examples
--------
>>> import numpy as np, bulkhash
>>> from bulkhash.bloom import BloomFilter
>>> bf = BloomFilter(1000, fpr=0.01, key_dtype="int64")
>>> bf.add(np.arange(-500, 500))
>>> bool(bf.contains(np.arange(-500, 500)).all())     # never a false negative
True
>>> bf.contains([-500, 499])
array([ True,  True])
>>> bf.num_hashes, bf.block_bits, round(bf.bits_per_key, 2)
(5, 512, 10.24)
>>> 0.005 < bf.estimated_fpr < 0.015
True
>>> both = bf | BloomFilter(1000, fpr=0.01, key_dtype="int64")   # equal shape and seed
"""

from __future__ import annotations

import math
import numbers
import os
import threading
from typing import Any, NamedTuple

import numpy as np

from . import _dtypes
from ._base import Placed, check_device, make_backend
from ._cpu import bloom as CB
from ._cpu.backend import aligned_zeros
from ._locks import ReadWriteLock
from .hashing import DEFAULT_SEED

#: How keys pick blocks and bits; saved with a filter, so a file is never read with another.
HASHING = "fmix64-block-lcg64-v1"
_MAX_HASHES = 64
_MAX_BLOCKS = (1 << 32) - 1  # the block index is a multiply-shift of 32 hash bits


# ================================================================================================
# the false-positive rate of a blocked Bloom filter
# ================================================================================================

class _BlockRates:
    """``f_k(c)`` for ``c = 0, 1, ...`` keys in a block of ``B`` bits: the probability that ``k``
    random positions all hit bits that ``c * k`` random throws set (module docs). Extended on
    demand; one per ``(B, k)``."""

    def __init__(self, block_bits: int, k: int):
        self.B, self.k = block_bits, k
        s = np.arange(block_bits + 1, dtype=np.float64)
        self._stay = s / block_bits  # a throw at s set bits hits a set bit
        self._grow = (block_bits - s[:-1]) / block_bits  # ... or sets a new one
        self._query = (s / block_bits) ** k  # k query positions all set, given s
        self._occupancy = np.zeros(block_bits + 1)  # P(s bits set) after c * k throws
        self._occupancy[0] = 1.0
        self.rates = [float(self._occupancy @ self._query)]

    def upto(self, c_max: int) -> np.ndarray:
        while len(self.rates) <= c_max:
            p = self._occupancy
            for _ in range(self.k):
                q = p * self._stay
                q[1:] += p[:-1] * self._grow
                p = q
            self._occupancy = p
            self.rates.append(float(p @ self._query))
        return np.asarray(self.rates[:c_max + 1])


_RATES: dict[tuple[int, int], _BlockRates] = {}
_RATES_LOCK = threading.Lock()


def _block_rates(block_bits: int, k: int, c_max: int) -> np.ndarray:
    with _RATES_LOCK:
        rates = _RATES.get((block_bits, k))
        if rates is None:
            rates = _RATES[(block_bits, k)] = _BlockRates(block_bits, k)
        return rates.upto(c_max)


def _poisson(lam: float, c_max: int) -> np.ndarray:
    c = np.arange(c_max + 1, dtype=np.float64)
    if lam <= 0:
        return (c == 0).astype(np.float64)
    log_fact = np.array([math.lgamma(x + 1.0) for x in c])
    return np.exp(c * math.log(lam) - lam - log_fact)


def blocked_fpr(keys_per_block: float, block_bits: int, k: int) -> float:
    """The expected false-positive rate of a pattern-blocked Bloom filter whose blocks of
    ``block_bits`` bits hold ``keys_per_block`` keys on average, ``k`` bits per key (the module
    docs give the formula).

    >>> round(blocked_fpr(512 / 9.92, 512, 6), 4)
    0.01
    """
    lam = float(keys_per_block)
    c_max = int(math.ceil(lam + 12.0 * math.sqrt(lam) + 30.0))  # the Poisson tail beyond: < 1e-20
    return float(_poisson(lam, c_max) @ _block_rates(block_bits, k, c_max))


def _fpr_from_histogram(hist: np.ndarray, block_bits: int, k: int) -> float:
    """Mean over blocks of ``(set bits / block_bits) ** k``, from ``hist[s]`` = blocks with ``s``
    bits set."""
    hist = np.asarray(hist, np.float64)
    total = hist.sum()
    if total == 0:
        return 0.0
    fill = np.arange(block_bits + 1) / block_bits
    return float(hist @ fill**k / total)


def _largest_load(target: float, block_bits: int, k: int) -> float:
    """The largest mean keys per block with ``blocked_fpr <= target`` (0 if none)."""
    # A blocked filter never beats a classic one with the same bits per key, so the classic
    # filter's load at this k bounds the answer from above.
    per_hash = target ** (1.0 / k)
    if per_hash >= 1.0:
        return float(block_bits)
    classic_bits_per_key = -k / math.log1p(-per_hash)
    lo, hi = 0.0, block_bits / classic_bits_per_key * 1.001
    if blocked_fpr(hi, block_bits, k) <= target:
        return hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if blocked_fpr(mid, block_bits, k) <= target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-9 * hi:
            break
    return lo


def plan(capacity: int, fpr: float, block_bits: int) -> tuple[int, int]:
    """``(n_blocks, k)``: the fewest blocks (then the fewest bits per key) for which
    ``capacity`` keys have an expected false-positive rate of at most ``fpr``."""
    best: tuple[int, int] | None = None
    worse = 0
    for k in range(1, _MAX_HASHES + 1):
        lam = _largest_load(fpr, block_bits, k)
        if lam <= 0:
            continue
        n_blocks = max(1, math.ceil(capacity / lam))
        if best is None or n_blocks < best[0]:
            best, worse = (n_blocks, k), 0
        else:
            worse += 1
            if worse == 3:  # the memory needed is unimodal in k: past the optimum, stop
                break
    if best is None:  # pragma: no cover - fpr is validated to be reachable
        raise ValueError(f"fpr={fpr!r} cannot be reached with block_bits={block_bits}")
    return best


# ================================================================================================
# the filter
# ================================================================================================

class _Geometry(NamedTuple):
    """The kernels' view of a filter's shape (argument order of every kernel)."""

    n_blocks: int
    block_words: int
    shift: int  # 64 - log2(block_bits): a bit position is the top bits of a stream state
    k: int

    @classmethod
    def of(cls, n_blocks: int, block_bits: int, k: int) -> "_Geometry":
        return cls(int(n_blocks), block_bits // CB.WORD_BITS,
                   64 - (block_bits.bit_length() - 1), int(k))

    @property
    def block_bits(self) -> int:
        return self.block_words * CB.WORD_BITS

    @property
    def n_words(self) -> int:
        return self.n_blocks * self.block_words


def _check_capacity(capacity) -> int:
    if isinstance(capacity, bool) or not isinstance(capacity, numbers.Integral):
        raise TypeError(f"capacity={capacity!r} must be an integer: the number of distinct keys "
                        "the filter is sized for")
    if capacity < 1:
        raise ValueError(f"capacity={capacity!r} must be at least 1 (the number of distinct keys "
                         "the filter is sized for)")
    return int(capacity)


def _check_fpr(fpr) -> float:
    if isinstance(fpr, bool) or not isinstance(fpr, numbers.Real):
        raise TypeError(f"fpr={fpr!r} must be a number between 0 and 1, e.g. fpr=0.01")
    fpr = float(fpr)
    if not 1e-12 <= fpr < 1.0:
        raise ValueError(f"fpr={fpr!r} must be in [1e-12, 1): the false-positive rate to size "
                         "for, e.g. fpr=0.01 for 1%")
    return fpr


def _check_block_bits(block_bits) -> int:
    if isinstance(block_bits, bool) or block_bits not in CB.BLOCK_BITS:
        raise ValueError(f"block_bits={block_bits!r} must be one of {CB.BLOCK_BITS} (512 = one "
                         "64-byte cache line per key)")
    return int(block_bits)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed={seed!r} must be an integer")
    return int(seed) & 0xFFFF_FFFF_FFFF_FFFF


class BloomFilter(Placed):
    """A pattern-blocked Bloom filter of integer keys, operated on whole arrays at once.

    Parameters
    ----------
    capacity : int
        Distinct keys the filter is sized for. More may be added; the false-positive rate then
        rises above ``fpr`` (``estimated_fpr`` says by how much).
    fpr : float
        The false-positive rate to size for, in [1e-12, 1): with ``capacity`` distinct keys
        added, the expected rate is at most this (module docs: how blocking is accounted for).
    key_dtype : "uint32", "uint64", "int32" or "int64"
        Every value is a legal key; signed keys are hashed by their bits.
    block_bits : 64, 128, 256 or 512
        Bits of the block a key's bits live in. 512 (one cache line) needs the least memory for
        a given ``fpr``; smaller blocks need more (at fpr 0.01: 9.9 bits per key with 512-bit
        blocks, 12.1 with 64-bit ones).
    seed : int
        Hash seed. Filters can be merged only when their seeds (and shapes) are equal.
    device : "cpu" or "cuda", optional
        Where the bits live (default: ``bulkhash.get_default_device()``).

    ``add`` and ``contains`` take anything the tables take (NumPy, lists, scalars; on a GPU also
    CuPy, torch and Numba device arrays) and answer in the caller's array library.
    """

    def __init__(self, capacity: int, fpr: float = 0.01, *, key_dtype="uint64",
                 block_bits: int = 512, seed: int = DEFAULT_SEED, device: str | None = None):
        capacity = _check_capacity(capacity)
        fpr = _check_fpr(fpr)
        block_bits = _check_block_bits(block_bits)
        n_blocks, k = plan(capacity, fpr, block_bits)
        if n_blocks > _MAX_BLOCKS:
            raise ValueError(f"capacity={capacity} at fpr={fpr} needs {n_blocks} blocks of "
                             f"{block_bits} bits, more than the {_MAX_BLOCKS} a filter can "
                             "address; use larger blocks or shard the keys over several filters")
        self._setup(capacity, fpr, _dtypes.key_dtype(key_dtype), _check_seed(seed),
                    _Geometry.of(n_blocks, block_bits, k), check_device(device), None)

    def _setup(self, capacity: int, fpr: float, key_dtype: np.dtype, seed: int,
               geometry: _Geometry, device: str, bits) -> None:
        self._capacity, self._fpr, self._key_dtype, self._seed = capacity, fpr, key_dtype, seed
        self._geometry, self._device = geometry, device
        self._n_added = 0
        self._lock = ReadWriteLock()
        if device == "cuda":
            make_backend(device, None)  # says what to install or enable if the GPU is unusable
        self._bits = self._engine().zeros(geometry.n_words) if bits is None else bits

    def _engine(self):
        if self._device == "cuda":
            from ._cuda import bloom

            return bloom
        return _CpuEngine

    def _words(self, keys: Any, argname: str = "keys"):
        arr, scalar = self._inputs().as_keys(keys, self._key_dtype, argname)
        return _dtypes.keys_to_words(arr, self._key_dtype,
                                     _dtypes.unsigned_view_dtype(self._key_dtype)), scalar

    # ------------------------------------------------------------------ keys
    def add(self, keys) -> None:
        """Add keys (an array, a list or one key). Adding a key again changes nothing."""
        words, _ = self._words(keys)
        with self._lock.writing():
            if words.size:
                self._engine().add(self._bits, self._geometry, self._seed, words)
            self._n_added += int(words.size)

    def contains(self, keys):
        """Whether each key may have been added: a bool array (a bool for one key). True for
        every key that was added; True for others with probability about ``estimated_fpr``."""
        words, scalar = self._words(keys)
        with self._lock.reading():
            found = self._engine().contains(self._bits, self._geometry, self._seed, words)
        return self._out(found, scalar, keys)

    def __contains__(self, key) -> bool:
        return bool(self.contains(np.asarray(key).reshape(1))[0])

    # ------------------------------------------------------------------ merging
    def _check_mergeable(self, other, argname: str = "other") -> None:
        if not isinstance(other, BloomFilter):
            raise TypeError(f"{argname} must be a BloomFilter, got {type(other).__name__}; to add "
                            "keys use add()")
        for what, mine, theirs in (
                ("device", self._device, other._device),
                ("key_dtype", self._key_dtype, other._key_dtype),
                ("block_bits", self.block_bits, other.block_bits),
                ("n_blocks", self.n_blocks, other.n_blocks),
                ("num_hashes", self.num_hashes, other.num_hashes),
                ("seed", self._seed, other._seed)):
            if mine != theirs:
                raise ValueError(
                    f"cannot merge Bloom filters of different shapes: {argname}.{what} is "
                    f"{theirs!r}, this filter's is {mine!r}; build both with the same capacity, "
                    "fpr, key_dtype, block_bits, seed and device")

    def union(self, other: "BloomFilter") -> "BloomFilter":
        """A new filter holding the keys of both (the OR of their bits). ``other`` must have the
        same shape and seed; the result reports every key either reported."""
        self._check_mergeable(other)
        result = self.copy()
        result |= other
        return result

    __or__ = union

    def __ior__(self, other: "BloomFilter") -> "BloomFilter":
        """Merge ``other``'s keys into this filter, in place."""
        self._check_mergeable(other)
        if other is self:
            return self
        with other._lock.reading():  # (a snapshot first: never hold both filters' locks)
            theirs, their_count = self._engine().copy(other._bits), other._n_added
        with self._lock.writing():
            self._engine().or_into(self._bits, theirs)
            self._n_added += their_count
        return self

    # ------------------------------------------------------------------ state
    @property
    def estimated_fpr(self) -> float:
        """The false-positive rate now, from the filter's bits: the mean over blocks of
        ``(set bits / block_bits) ** num_hashes``, which is exactly the probability that a key
        never added is reported present if its hash is random (module docs). It counts what is
        there, so repeated keys, ``|`` and keys added through refs are all accounted for."""
        with self._lock.reading():
            hist = self._engine().histogram(self._bits, self._geometry.block_words)
        return _fpr_from_histogram(hist, self.block_bits, self.num_hashes)

    def clear(self) -> None:
        """Remove every key (zero the bits, keep the size)."""
        with self._lock.writing():
            self._engine().clear(self._bits)
            self._n_added = 0

    def copy(self) -> "BloomFilter":
        """An independent copy."""
        new = object.__new__(type(self))
        with self._lock.reading():
            bits = self._engine().copy(self._bits)
        new._setup(self._capacity, self._fpr, self._key_dtype, self._seed, self._geometry,
                   self._device, bits)
        new._n_added = self._n_added
        return new

    def __eq__(self, other) -> bool:
        """Equal shape, seed, device and bits."""
        if not isinstance(other, BloomFilter):
            return NotImplemented
        try:
            self._check_mergeable(other)
        except ValueError:
            return False
        return bool(np.array_equal(self._host_bits(), other._host_bits()))

    __hash__ = None  # mutable

    def _host_bits(self) -> np.ndarray:
        with self._lock.reading():
            return self._engine().to_host(self._bits)

    def ref(self):
        """A view for per-key use inside your own ``@numba.njit`` code (CPU filters) or
        ``@cuda.jit`` kernels (GPU filters): ``ref.add(key) -> bool`` (True if some bit of the
        key was clear) and ``ref.contains(key) -> bool``; see ``bulkhash._cpu.bloom.BloomFilterRef``
        and ``bulkhash._cuda.bloom.CudaBloomFilterRef``.

        >>> import numba, numpy as np
        >>> bf = BloomFilter(100)
        >>> @numba.njit
        ... def add_squares(ref, n):
        ...     for i in range(n):
        ...         ref.add(i * i)
        >>> add_squares(bf.ref(), 10)
        >>> bf.contains([81, 64]).tolist()
        [True, True]
        """
        return self._engine().make_ref(self._bits, self._geometry, self._seed, self._key_dtype)

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | os.PathLike) -> None:
        """Write the filter to ``path`` atomically; ``bulkhash.load`` reads it on any device."""
        from .io import save

        save(self, path)

    def _save_state(self) -> tuple[dict, dict, np.ndarray]:
        params = dict(capacity=self._capacity, fpr=self._fpr, key_dtype=str(self._key_dtype),
                      block_bits=self.block_bits, seed=self._seed)
        meta = dict(n_blocks=self.n_blocks, num_hashes=self.num_hashes, n_added=self._n_added,
                    hashing=HASHING)
        return params, meta, self._host_bits()

    @classmethod
    def _load_state(cls, params: dict, meta: dict, data: np.ndarray, *,
                    device: str | None = None) -> "BloomFilter":
        from .io import FormatError

        if meta.get("hashing") != HASHING:
            raise FormatError(f"this Bloom filter was written with hashing "
                              f"{meta.get('hashing')!r}; this bulkhash reads {HASHING!r}: "
                              "upgrade bulkhash")
        try:
            geometry = _Geometry.of(meta["n_blocks"], _check_block_bits(params["block_bits"]),
                                    meta["num_hashes"])
            key_dtype = _dtypes.key_dtype(params["key_dtype"])
            capacity, fpr, seed = params["capacity"], params["fpr"], params["seed"]
            n_added = int(meta["n_added"])
        except (KeyError, TypeError, ValueError) as err:
            raise FormatError(f"a Bloom filter file is corrupted: bad header ({err})") from None
        if data.dtype != np.uint64 or data.ndim != 1 or data.size != geometry.n_words:
            raise FormatError(f"a Bloom filter file is corrupted: {data.size} words of "
                              f"{data.dtype} for {geometry.n_words} words of uint64")
        new = object.__new__(cls)
        device = check_device(device)
        if device == "cpu":
            bits = _CpuEngine.adopt(data)
        else:
            from ._cuda import bloom as engine

            bits = engine.from_host(data)
        new._setup(_check_capacity(capacity), _check_fpr(fpr), key_dtype, _check_seed(seed),
                   geometry, device, bits)
        new._n_added = n_added
        return new

    # ------------------------------------------------------------------ introspection
    @property
    def capacity(self) -> int:
        """Distinct keys the filter was sized for."""
        return self._capacity

    @property
    def fpr(self) -> float:
        """The false-positive rate the filter was sized for (at ``capacity`` keys)."""
        return self._fpr

    @property
    def key_dtype(self) -> np.dtype:
        return self._key_dtype

    @property
    def block_bits(self) -> int:
        return self._geometry.block_bits

    @property
    def n_blocks(self) -> int:
        return self._geometry.n_blocks

    @property
    def num_hashes(self) -> int:
        """Bits set per key (``k``), all in one block."""
        return self._geometry.k

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def n_added(self) -> int:
        """Keys passed to ``add`` (repeats included; through ``|``, both filters' counts)."""
        return self._n_added

    @property
    def nbytes(self) -> int:
        """Bytes of memory the bits take."""
        return self._geometry.n_words * 8

    @property
    def bits_per_key(self) -> float:
        """Bits of memory per key of ``capacity``."""
        return self.nbytes * 8 / self._capacity

    def __repr__(self) -> str:
        return (f"BloomFilter(capacity={self._capacity}, fpr={self._fpr}, "
                f"key_dtype={self._key_dtype}, block_bits={self.block_bits}, "
                f"num_hashes={self.num_hashes}, nbytes={self.nbytes}, n_added={self._n_added}, "
                f"device={self._device!r})")


class _CpuEngine:
    """Where a CPU filter's work goes (the GPU's counterpart is ``bulkhash._cuda.bloom``)."""

    @staticmethod
    def zeros(n_words: int) -> np.ndarray:
        return aligned_zeros((n_words,), np.uint64)

    @staticmethod
    def from_host(data: np.ndarray) -> np.ndarray:
        bits = aligned_zeros((data.size,), np.uint64)
        bits[:] = data
        return bits

    @staticmethod
    def adopt(data: np.ndarray) -> np.ndarray:
        """``data`` itself when the kernels can use it as it is (a loaded file's aligned array,
        or its copy-on-write map: ``load(mmap=True)`` then copies nothing), else a copy."""
        if (type(data) is np.ndarray or isinstance(data, np.memmap)) and data.flags.writeable \
                and data.flags.c_contiguous and data.ctypes.data % 64 == 0:
            return data.view(np.ndarray)
        return _CpuEngine.from_host(data)

    to_host = staticmethod(np.array)  # (a copy)
    add = staticmethod(CB.add)
    contains = staticmethod(CB.contains)
    histogram = staticmethod(CB.histogram)
    make_ref = staticmethod(CB.make_ref)

    @staticmethod
    def copy(bits: np.ndarray) -> np.ndarray:
        return _CpuEngine.from_host(bits)

    @staticmethod
    def or_into(bits: np.ndarray, other: np.ndarray) -> None:
        np.bitwise_or(bits, other, out=bits)

    @staticmethod
    def clear(bits: np.ndarray) -> None:
        bits[:] = 0
