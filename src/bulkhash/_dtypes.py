"""Key and value dtype rules, and the conversions between user arrays and table words.

A table stores everything as unsigned *words* (``uint32`` or ``uint64``, see
``bulkhash._cpu.kernels``). Keys are stored by their bits: an ``int64`` key ``-1`` is the word
``0xFFFF_FFFF_FFFF_FFFF``. A value is stored as the bits of its dtype, zero-extended to a word,
so a ``float32`` value round-trips exactly and ``on_duplicate="min"`` can still compare it as a
float (the kernels receive the value's kind and width).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._cpu import kernels as K

KEY_DTYPES = (np.dtype(np.uint32), np.dtype(np.uint64), np.dtype(np.int32), np.dtype(np.int64))
_VALUE_KINDS = "uif"  # unsigned, signed, float (bool is handled as uint8 with OR for "add")


def key_dtype(spec) -> np.dtype:
    """Validate a ``key_dtype=`` argument."""
    try:
        dt = np.dtype(spec)
    except TypeError as err:
        raise TypeError(f"key_dtype={spec!r} is not a dtype; use one of "
                        "'uint32', 'uint64', 'int32', 'int64'") from err
    if dt not in KEY_DTYPES:
        raise TypeError(f"key_dtype={dt} is not supported; keys must be 'uint32', 'uint64', "
                        "'int32' or 'int64' (hash floats or strings to integers first)")
    return dt


def value_dtype(spec, argname: str = "value_dtype") -> np.dtype:
    """Validate a value dtype: any 1-8 byte integer, unsigned, float or bool dtype."""
    try:
        dt = np.dtype(spec)
    except TypeError as err:
        raise TypeError(f"{argname}={spec!r} is not a dtype; use e.g. 'uint64' or 'float32'") from err
    if dt.kind not in _VALUE_KINDS + "b" or dt.itemsize > 8 or dt.byteorder == ">":
        raise TypeError(f"{argname}={dt} is not supported; use a native integer, unsigned, "
                        "float or bool dtype of 1-8 bytes")
    return dt


def word_dtype(key_dt: np.dtype, value_dt: np.dtype | None) -> np.dtype:
    """The table word: 64-bit if the key or the value needs more than 4 bytes."""
    widest = max(key_dt.itemsize, value_dt.itemsize if value_dt is not None else 0)
    return np.dtype(np.uint64) if widest > 4 else np.dtype(np.uint32)


def narrowest_unsigned(top: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds ``top`` (uint8 .. uint64)."""
    return next(np.dtype(t) for t in ("u1", "u2", "u4", "u8") if top <= np.iinfo(t).max)


def unsigned_view_dtype(dt: np.dtype) -> np.dtype:
    """The unsigned integer dtype of the same width (for reading bits)."""
    return np.dtype(f"u{dt.itemsize}")


def _bits(arr, dt: np.dtype):
    """``arr`` (NumPy or GPU) reinterpreted as ``dt`` of the same width: a view."""
    if isinstance(arr, np.ndarray):
        arr = np.ascontiguousarray(arr)
    return arr.view(dt)


def _astype(arr, dt: np.dtype):
    """``arr.astype(dt)`` for NumPy and GPU arrays alike."""
    if isinstance(arr, np.ndarray):
        return arr.astype(dt)
    from ._cuda.backend import astype

    return astype(arr, dt)


@dataclass(frozen=True)
class ValueCodec:
    """How one value dtype maps onto kernel arguments (kind, width) and table words."""

    dtype: np.dtype
    word: np.dtype

    @property
    def kind(self) -> int:
        return {"u": K.KIND_UINT, "b": K.KIND_UINT, "i": K.KIND_INT, "f": K.KIND_FLOAT}[self.dtype.kind]

    @property
    def nbytes(self) -> int:
        return self.dtype.itemsize

    def to_words(self, values: np.ndarray) -> np.ndarray:
        """User values (already of ``self.dtype``) -> table words (a view when widths match)."""
        bits = _bits(values, unsigned_view_dtype(self.dtype))
        return bits if bits.dtype == self.word else _astype(bits, self.word)

    def from_words(self, words: np.ndarray) -> np.ndarray:
        """Table words -> user values (a view when widths match)."""
        bits = words if words.dtype.itemsize == self.nbytes else _astype(
            words, unsigned_view_dtype(self.dtype))
        return _bits(bits, self.dtype)


def keys_to_words(keys: np.ndarray, key_dt: np.dtype, word: np.dtype) -> np.ndarray:
    """Validated keys of ``key_dt`` -> table words (a view when widths match)."""
    bits = _bits(keys, unsigned_view_dtype(key_dt))
    return bits if bits.dtype == word else _astype(bits, word)


def words_to_keys(words: np.ndarray, key_dt: np.dtype) -> np.ndarray:
    bits = words if words.dtype.itemsize == key_dt.itemsize else _astype(
        words, unsigned_view_dtype(key_dt))
    return _bits(bits, key_dt)
