"""``CuckooFilter``: approximate membership with deletes, for whole arrays of integer keys.

A cuckoo filter (Fan, Andersen, Kaminsky and Mitzenmacher, CoNEXT 2014) answers "was this key
added?" with no false negatives and a false-positive rate it is built for, in a fraction of the
memory a set of the keys takes, and, unlike a Bloom filter, it can remove keys. It keeps a short
fingerprint of each key in one of two buckets of 4 slots; the layout, the hashing and how
parallel adds move fingerprints without losing one are in ``bulkhash._cpu.cuckoo``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from . import _dtypes
from ._base import Placed, check_device
from ._cpu import cuckoo as K
from ._locks import ReadWriteLock
from .hashing import DEFAULT_SEED
from .status import InsertResult, TableFullError

DEFAULT_FPR = 0.001
DEFAULT_MAX_LOAD_FACTOR = 0.95
_ON_FULL = ("raise", "report")


class FilterFullError(TableFullError):
    """Some keys of an ``add`` found no room: the filter is full.

    Every other key of the call *was* added. A ``TableFullError``, so code that catches that
    catches this too.

    Attributes
    ----------
    failed_indices : numpy.ndarray of int64
        Positions, in the call's ``keys``, of every key that was not added.
    result : InsertResult
        ``inserted``: keys added by the call; ``failed``: keys not added.
    """

    def __init__(self, failed_indices: np.ndarray, result: InsertResult, capacity: int,
                 load: float):
        self.failed_indices = failed_indices
        self.result = result
        n = failed_indices.size
        RuntimeError.__init__(
            self, f"{n} key(s) found no room: the filter is full (load factor {load:.3f}, "
            f"capacity={capacity}; first failed index: {int(failed_indices[0]) if n else None}). "
            "Every other key of the call was added. A filter cannot grow (it keeps fingerprints, "
            "not keys): make one with a larger capacity and add the keys to it, or pass "
            "on_full='report' to get the failures as False in the result instead.")


def _choose_fingerprint_bits(fpr, fingerprint_bits) -> int:
    if fingerprint_bits is not None:
        if isinstance(fingerprint_bits, bool) or fingerprint_bits not in K.FINGERPRINT_BITS:
            raise ValueError(f"fingerprint_bits={fingerprint_bits!r} must be one of "
                             f"{K.FINGERPRINT_BITS} (or None to choose from fpr)")
        bits = int(fingerprint_bits)
        if fpr is not None and K.false_positive_bound(bits) > fpr:
            raise ValueError(f"fingerprint_bits={bits} gives a false-positive rate up to "
                             f"{K.false_positive_bound(bits):.3g}, above fpr={fpr}; pass a wider "
                             "fingerprint, or fpr=None to take the width's own rate")
        return bits
    if fpr is None:
        raise ValueError("fpr=None needs fingerprint_bits=8, 16 or 32")
    for bits in K.FINGERPRINT_BITS:
        if K.false_positive_bound(bits) <= fpr:
            return bits
    raise ValueError(f"fpr={fpr} is below what 32-bit fingerprints reach "
                     f"({K.false_positive_bound(32):.3g}); ask for a larger rate")


def _check_number(name: str, value, lo: float, hi: float, *, integer: bool = False):
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds) or not lo <= value <= hi:
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name}={value!r} must be {what} between {lo} and {hi}")
    return int(value) if integer else float(value)


class CuckooFilter(Placed):
    """Approximate membership of integer keys, with deletes: a cuckoo filter.

    ``contains`` never misses a key that was added (and not erased since); it says True for an
    absent key with probability at most ``fpr``. Whole arrays per call, in compiled kernels, on
    the CPU or a GPU.

    Parameters
    ----------
    capacity : int
        Keys the filter is sized for: ``capacity / max_load_factor`` slots in buckets of 4, and
        ``sqrt(capacity / 4)`` buckets more (the load a random filter can reach varies by about
        that much: it matters in small filters). Adds past capacity go on while room can be
        found (to a load of about 0.97); then they fail, and say so (``add``). A filter cannot
        grow: it keeps fingerprints, not keys, so it cannot place them again in a larger table.
    fpr : float or None
        The false-positive rate to stay under, at any load. Fingerprints are 8, 16 or 32 bits
        (one bucket is one 4- or 8-byte word, two for 32 bits, so that a slot is claimed with one
        atomic compare-and-swap); the rate at load ``a`` is ``1 - (1 - 1/(2**f - 1))**(8 a)``, at
        most ``8 / (2**f - 1)``: 0.031 (8 bits), 1.2e-4 (16), 1.9e-9 (32). The smallest width
        that meets ``fpr`` is used.
    key_dtype : "uint32", "uint64", "int32" or "int64"
        Every value is a legal key (signed keys are hashed by their bits).
    fingerprint_bits : 8, 16, 32 or None
        Choose the width yourself (``fpr`` may then be None).
    max_load_factor : float
        How full the sized table is at ``capacity`` keys (0.05-0.98; the default 0.95 is about
        as full as 4-slot buckets take without slowing adds down).
    max_kicks : int
        How many buckets one add may search for room when both of its buckets are full, before
        the key is reported as failed (a search queues up to 64; ``bulkhash._cpu.cuckoo``).
    seed : int
        Hash seed.
    device : "cpu", "cuda" or None
        Where the filter lives (default: ``bulkhash.get_default_device()``).

    Notes
    -----
    * **Duplicates**: adding a key twice stores two fingerprints, and erasing it once removes one
      of them, so a key stays present until it is erased as often as it was added (the standard
      cuckoo filter, a multiset). That is what makes ``erase`` safe: a filter that skipped keys
      it already seemed to hold would store nothing for a new key whose fingerprint collides
      with another's, and erasing either key would then erase the other. Deduplicate first
      (``np.unique``) for set semantics. A key's two buckets hold at most 8 copies of one
      fingerprint, so the 9th add of one key fails (the 5th, for the one key in ``n_buckets``
      whose two buckets are the same bucket).
    * **Erasing a key that was never added** may remove the fingerprint of another key that
      shares it (probability about ``fpr``), and that key would then be missed: erase only keys
      you added (the standard cuckoo filter caveat).
    * Within one batch, which keys fail when the filter fills up, and which of the occurrences of
      a key erased more often than it was added report False, are up to the threads; the counts
      are exact, and nothing but the failed adds is left out.

    Examples
    --------
    >>> from bulkhash.cuckoo import CuckooFilter
    >>> f = CuckooFilter(1000, fpr=0.001, key_dtype="int64")
    >>> f.add([5, -1, 5, 2**40])
    array([ True,  True,  True,  True])
    >>> f.contains([5, -1, 7])
    array([ True,  True, False])
    >>> f.erase([5, 7])
    array([ True, False])
    >>> 5 in f, len(f), f.fingerprint_bits
    (True, 3, 16)
    """

    def __init__(self, capacity: int, fpr: float | None = DEFAULT_FPR, *, key_dtype="uint64",
                 fingerprint_bits: int | None = None,
                 max_load_factor: float = DEFAULT_MAX_LOAD_FACTOR,
                 max_kicks: int = K.DEFAULT_MAX_KICKS, seed: int = DEFAULT_SEED,
                 device: str | None = None):
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) \
                or capacity < 1:
            raise ValueError(f"capacity={capacity!r} must be a positive integer number of keys")
        if fpr is not None:
            if isinstance(fpr, bool) or not isinstance(fpr, (int, float, np.floating)) \
                    or not 0 < fpr < 1:
                raise ValueError(f"fpr={fpr!r} must be a false-positive rate between 0 and 1 "
                                 "(e.g. 0.001)")
            fpr = float(fpr)
        self._fp_bits = _choose_fingerprint_bits(fpr, fingerprint_bits)
        self._fpr = fpr
        self._key_dtype = _dtypes.key_dtype(key_dtype)
        self._max_load_factor = _check_number("max_load_factor", max_load_factor, 0.05, 0.98)
        self._max_kicks = _check_number("max_kicks", max_kicks, 0, 1 << 30, integer=True)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed={seed!r} must be an integer")
        self._seed = int(seed) & 0xFFFF_FFFF_FFFF_FFFF
        self._device = check_device(device)
        self._capacity = int(capacity)
        # capacity / max_load_factor slots, and sqrt(capacity / 4) buckets of slack: the load a
        # random filter can reach varies by about that many buckets (most in small filters)
        self._n_buckets = max(1, math.ceil(
            self._capacity / (K.BUCKET_SLOTS * self._max_load_factor)
            + math.sqrt(self._capacity / K.BUCKET_SLOTS)))
        if self._n_buckets >= 1 << 32:
            raise ValueError(f"capacity={capacity} is beyond what one filter addresses "
                             "(2**32 buckets)")
        self._word = K.word_dtype(self._fp_bits)
        self._words = self._n_buckets * K.words_per_bucket_of(self._fp_bits)
        if self._device == "cuda":
            from ._cuda.backend import filled

            self._backend()  # (says what to install or enable when no GPU can be used)
            self._table = filled(self._words, self._word, 0)
            self._state = filled(K.STATE_LEN, np.int64, 0)
        else:
            from ._cpu.backend import aligned_zeros

            self._table = aligned_zeros((self._words,), self._word)
            self._state = np.zeros(K.STATE_LEN, np.int64)
        self._lock = ReadWriteLock()

    def _backend(self):
        from ._cuda import cuda_backend

        return cuda_backend(1)

    # ------------------------------------------------------------------ the kernels
    def _key_words(self, keys: Any):
        """(uint64 key words, whether a scalar was given): the kernels hash 64-bit words, a
        32-bit key zero-extended (one compiled variant per table word type, not per key type)."""
        arr, scalar = self._inputs().as_keys(keys, self._key_dtype, "keys")
        return _dtypes.keys_to_words(arr, self._key_dtype, np.dtype(np.uint64)), scalar

    def _run(self, words, action: int):
        """One bulk kernel over the batch; the per-key bool results (device-side on a GPU)."""
        n = words.size
        if self._device == "cuda":
            from ._cuda import backend as B
            from ._cuda import cuckoo as G

            out = B.empty(n, np.bool_)
            G.launch(self._table, self._n_buckets, self._fp_bits, self._seed, words, action,
                     self._max_kicks, out, self._state)
            return out
        import numba

        from ._cpu.backend import kernel_gate

        out = np.empty(n, np.bool_)
        if n:
            with kernel_gate():
                K.bulk(self._table, self._n_buckets, self._fp_bits, np.uint64(self._seed), words,
                       action, self._max_kicks, out, self._state, numba.get_num_threads())
        return out

    # ------------------------------------------------------------------ operations
    def add(self, keys, *, on_full: str = "raise"):
        """Add keys: one fingerprint per occurrence (see the class notes on duplicates).

        Returns a bool array, True where the key was added. When the filter is too full for
        some keys, every other key is still added, and then ``on_full="raise"`` (the default)
        raises ``FilterFullError`` (a ``TableFullError``) whose ``failed_indices`` names the
        positions that were not; ``on_full="report"`` returns False at those positions instead.
        """
        if on_full not in _ON_FULL:
            raise ValueError(f"on_full={on_full!r} must be 'raise' or 'report'")
        words, scalar = self._key_words(keys)
        with self._lock.writing():
            before = len(self)
            added = self._run(words, K.ACTION_ADD)
            n_added = len(self) - before  # (one word from a GPU, not the whole result)
        if on_full == "raise" and n_added < words.size:
            failed = np.flatnonzero(~self._host(added)).astype(np.int64)
            result = InsertResult(inserted=n_added, updated=0, failed=int(failed.size))
            raise FilterFullError(failed, result, self._capacity, self.load_factor)
        return self._out(added, scalar, keys)

    def contains(self, keys):
        """Whether each key may be present: True for every key added (and not erased since),
        and for an absent key with probability at most ``fpr`` (a bool array; a bool for a
        scalar key)."""
        words, scalar = self._key_words(keys)
        with self._lock.reading():
            found = self._run(words, K.ACTION_CONTAINS)
        return self._out(found, scalar, keys)

    def __contains__(self, key) -> bool:
        return bool(self.contains(np.asarray(key).reshape(1))[0])

    def erase(self, keys):
        """Remove one fingerprint per occurrence; True where one was removed, False where the key
        was not found. Erase only keys that were added: erasing an absent key whose fingerprint
        collides with a present key's removes that key's (class notes)."""
        words, scalar = self._key_words(keys)
        with self._lock.writing():
            removed = self._run(words, K.ACTION_ERASE)
        return self._out(removed, scalar, keys)

    def clear(self) -> None:
        """Remove every fingerprint, keeping the capacity (refs taken before stay valid)."""
        with self._lock.writing():
            if self._device == "cuda":
                from ._cuda.cuckoo import zero

                zero(self._table)
                zero(self._state)
            else:
                self._table[:] = 0
                self._state[:] = 0

    def copy(self) -> "CuckooFilter":
        """An independent copy of the filter."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        with self._lock.reading():
            if self._device == "cuda":
                from numba import cuda

                new._table = cuda.device_array_like(self._table)
                new._table.copy_to_device(self._table)
                new._state = cuda.device_array_like(self._state)
                new._state.copy_to_device(self._state)
            else:
                from ._cpu.backend import aligned_zeros

                new._table = aligned_zeros(self._table.shape, self._word)
                new._table[:] = self._table
                new._state = self._state.copy()
        new._lock = ReadWriteLock()
        return new

    def ref(self):
        """A view for per-key ``add``/``contains``/``erase`` inside your own ``@numba.njit`` code
        (``bulkhash.cuckoo_refs``) or, for a ``device="cuda"`` filter, your own ``@cuda.jit``
        kernels (``bulkhash._cuda.cuckoo_refs``)."""
        if self._device == "cuda":
            from ._cuda.cuckoo_refs import make_ref
        else:
            from .cuckoo_refs import make_ref
        return make_ref(self)

    # ------------------------------------------------------------------ size and parameters
    def __len__(self) -> int:
        """Fingerprints stored: keys added and not erased, each occurrence counted."""
        return int(self._host(self._state[K.SIZE:K.SIZE + 1])[0])

    @property
    def capacity(self) -> int:
        """Keys the filter was sized for (adds past it go on while room is found)."""
        return self._capacity

    @property
    def slots(self) -> int:
        """Fingerprint slots: 4 per bucket."""
        return self._n_buckets * K.BUCKET_SLOTS

    @property
    def load_factor(self) -> float:
        """``len(self) / slots``."""
        return len(self) / self.slots

    @property
    def fpr(self) -> float:
        """The false-positive rate the filter was built to stay under (for ``fpr=None``: its
        fingerprint width's bound)."""
        return self._fpr if self._fpr is not None else K.false_positive_bound(self._fp_bits)

    @property
    def expected_fpr(self) -> float:
        """The false-positive rate at the current load: ``1 - (1 - 1/(2**f - 1))**(8 a)``."""
        return K.false_positive_bound(self._fp_bits, self.load_factor)

    @property
    def fingerprint_bits(self) -> int:
        return self._fp_bits

    @property
    def key_dtype(self) -> np.dtype:
        return self._key_dtype

    @property
    def max_load_factor(self) -> float:
        return self._max_load_factor

    @property
    def max_kicks(self) -> int:
        return self._max_kicks

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def nbytes(self) -> int:
        """Bytes of memory the filter's arrays take (8 * nbytes / len: bits per key)."""
        return int(self._table.nbytes + self._state.nbytes)

    def __repr__(self) -> str:
        return (f"CuckooFilter(capacity={self._capacity}, fpr={self.fpr:.3g}, "
                f"key_dtype={self._key_dtype}, fingerprint_bits={self._fp_bits}, len={len(self)}, "
                f"load_factor={self.load_factor:.3f}, device={self._device!r})")

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the filter to ``path`` atomically (``bulkhash.load`` opens it, on either
        device)."""
        from .io import save

        save(self, path)

    def _params(self) -> dict:
        return dict(capacity=self._capacity, fpr=self._fpr, key_dtype=str(self._key_dtype),
                    fingerprint_bits=self._fp_bits, max_load_factor=self._max_load_factor,
                    max_kicks=self._max_kicks, seed=self._seed)

    def _save_state(self):
        """(constructor parameters, metadata, the table as a host array) for ``bulkhash.io``.
        The layout is the same on both devices, so a file loads on either."""
        with self._lock.reading():
            table = self._host(self._table)
            size = len(self)
        return self._params(), dict(n_buckets=self._n_buckets, size=size,
                                    layout="cuckoo-4-slot-buckets"), table

    @classmethod
    def _load_state(cls, params: dict, meta: dict, data: np.ndarray, *, device=None):
        from .io import FormatError

        try:
            f = cls(**params, device=device)
            n_buckets, size = int(meta["n_buckets"]), int(meta["size"])
        except (KeyError, TypeError, ValueError) as err:
            raise FormatError(f"a saved CuckooFilter has unreadable parameters ({err})") from None
        if (n_buckets != f._n_buckets or data.dtype != f._word or data.shape != (f._words,)
                or not 0 <= size <= f.slots):
            raise FormatError("a saved CuckooFilter's table does not match its parameters "
                              f"({data.dtype}{list(data.shape)} for {n_buckets} buckets)")
        if f._device == "cuda":
            from numba import cuda

            f._table = cuda.to_device(np.ascontiguousarray(data))
            f._state = cuda.to_device(np.array([size, 0], np.int64))
        else:
            if data.flags.c_contiguous and data.flags.writeable:
                f._table = data  # (read into aligned memory, or mapped copy-on-write)
            else:
                f._table[:] = data
            f._state[K.SIZE] = size
        return f
