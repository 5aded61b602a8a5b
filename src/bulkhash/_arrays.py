"""Input checking and conversion: every public method calls these once, at the top.

They turn what a user passes (NumPy arrays, lists, scalars, CPU torch tensors) into validated,
contiguous 1-D NumPy arrays of the table's dtypes, and raise a ``TypeError``/``ValueError`` that
names the argument and the fix before anything in a table changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _is_gpu_array(obj: Any) -> bool:
    if hasattr(obj, "__cuda_array_interface__"):
        return True
    is_cuda = getattr(obj, "is_cuda", None)  # torch tensors on a GPU
    return is_cuda is True


def is_torch(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "torch"


def like_input(result: np.ndarray, original: Any):
    """Return ``result`` in the caller's array library (torch in -> torch out, else NumPy)."""
    if is_torch(original):
        import torch

        return torch.from_numpy(np.ascontiguousarray(result))
    return result


def _as_array(obj: Any, argname: str) -> np.ndarray:
    if _is_gpu_array(obj):
        raise ValueError(f"{argname} is on a GPU, but this table lives on the CPU: copy it to the "
                         "host first (cupy: .get(), torch: .cpu()), or use a device='cuda' table")
    if is_torch(obj):
        obj = obj.numpy()
    arr = np.asarray(obj)
    if arr.dtype.kind == "f" and not isinstance(obj, np.ndarray):
        # NumPy turns [1, 2**64 - 1] into float64; keep Python ints exact
        if all(isinstance(x, int) for x in np.asarray(obj, dtype=object).ravel().tolist()):
            arr = np.asarray(obj, dtype=object)
    if arr.dtype == object:  # Python ints too large for int64 (e.g. [2**64 - 1, -1])
        items = arr.ravel().tolist()
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in items):
            bad = next(x for x in items if not (isinstance(x, int) and not isinstance(x, bool)))
            raise TypeError(f"{argname} must hold numbers; found {bad!r} of type {type(bad).__name__}")
        return arr
    return arr


def _shape_1d(arr: np.ndarray, argname: str) -> tuple[np.ndarray, bool]:
    if arr.ndim == 0:
        return arr.reshape(1), True
    if arr.ndim != 1:
        raise ValueError(f"{argname} must be 1-D, got shape {arr.shape}; pass {argname}.ravel() "
                         "to use every element")
    return arr, False


def _first_out_of_range(arr: np.ndarray, target: np.dtype) -> Any | None:
    info = np.iinfo(target)
    if arr.dtype == object:
        for x in arr.tolist():
            if not info.min <= x <= info.max:
                return x
        return None
    if arr.size == 0:
        return None
    lo, hi = arr.min(), arr.max()
    if int(lo) < info.min:
        return lo
    if int(hi) > info.max:
        return hi
    return None


def as_keys(obj: Any, key_dt: np.dtype, argname: str = "keys") -> tuple[np.ndarray, bool]:
    """Validated, contiguous 1-D keys of ``key_dt``; also says whether a scalar was given."""
    arr, scalar = _shape_1d(_as_array(obj, argname), argname)
    kind = arr.dtype.kind
    if kind not in "iuO":
        if kind == "f":
            raise TypeError(f"{argname} must be integers, got {arr.dtype}; if they are whole "
                            f"numbers use {argname}.astype('{key_dt}'), otherwise hash them to "
                            "integers first")
        raise TypeError(f"{argname} must be integers, got {arr.dtype}; convert them to "
                        f"'{key_dt}' first")
    if arr.dtype != key_dt:
        bad = _first_out_of_range(arr, key_dt)
        if bad is not None:
            raise ValueError(f"{argname} holds {bad}, which is not a valid {key_dt} key; use a "
                             "table whose key_dtype covers your keys")
        arr = arr.astype(key_dt)
    return _writable(arr), scalar


_MANTISSA_BITS = {2: 11, 4: 24, 8: 53}


def _always_exact(src: np.dtype, dst: np.dtype) -> bool:
    """Whether every value of ``src`` converts to ``dst`` without loss (no per-value check)."""
    if src.kind == "b":
        return True
    if dst.kind == "f":
        if src.kind == "f":
            return dst.itemsize >= src.itemsize
        int_bits = 8 * src.itemsize - (src.kind == "i")
        return int_bits <= _MANTISSA_BITS[dst.itemsize]
    # NumPy calls int64 -> float64 "safe"; only integer -> integer casts are trusted here
    return src.kind in "iu" and dst.kind in "iu" and np.can_cast(src, dst, "safe")


def _first_lossy(arr: np.ndarray, dst: np.dtype) -> int | None:
    """Index of the first value of ``arr`` that ``dst`` cannot hold exactly, or None."""
    if dst.kind in "iu" and arr.dtype.kind in "iu":  # a range check: wrapping keeps the bits
        info = np.iinfo(dst)
        lost = (arr < info.min) | (arr > info.max) if arr.dtype.kind == "i" else arr > info.max
    else:
        with np.errstate(all="ignore"):
            converted = arr.astype(dst)
            if dst.kind == "f" and arr.dtype.kind == "f":
                # float -> narrower float rounds, as NumPy assignment does; overflow is the loss
                lost = np.isinf(converted) & ~np.isinf(arr)
            elif dst.kind == "b":
                lost = (arr != 0) & (arr != 1)
            else:
                back = converted.astype(arr.dtype)
                lost = back != arr
                if dst.kind in "iu":  # a float that is not a whole number in range
                    info = np.iinfo(dst)
                    lost |= ~np.isfinite(arr) | (arr < info.min) | (arr > float(info.max))
    bad = np.flatnonzero(lost)
    return int(bad[0]) if bad.size else None


def as_values(obj: Any, value_dt: np.dtype, n: int, argname: str = "values") -> np.ndarray:
    """Validated, contiguous 1-D values of ``value_dt`` and length ``n`` (scalars broadcast)."""
    arr = _as_array(obj, argname)
    if arr.ndim == 0:
        arr = np.full(n, arr.item() if arr.dtype != object else arr.item(), dtype=arr.dtype)
    arr, _ = _shape_1d(arr, argname)
    if arr.shape[0] != n:
        raise ValueError(f"{argname} has {arr.shape[0]} elements but keys has {n}; pass one value "
                         "per key (or a single scalar for all of them)")
    if arr.dtype.kind not in "biufO":
        raise TypeError(f"{argname} must be numbers, got {arr.dtype}; this table stores {value_dt}")
    if arr.dtype == object:
        bad = _first_out_of_range(arr, value_dt) if value_dt.kind in "iu" else None
        if bad is not None:
            raise ValueError(f"{argname} holds {bad}, which does not fit {value_dt}")
        arr = np.array(arr.tolist(), dtype=value_dt)
    elif arr.dtype != value_dt and not _always_exact(arr.dtype, value_dt):
        i = _first_lossy(arr, value_dt)
        if i is not None:
            raise ValueError(f"{argname}[{i}] = {arr[i].item()!r} does not fit the table's value dtype "
                             f"{value_dt} without loss; convert it yourself or use a wider "
                             "value_dtype")
    return _writable(arr.astype(value_dt, copy=False))


def _writable(arr: np.ndarray) -> np.ndarray:
    """Contiguous and writable: Numba compiles a second copy of every kernel for read-only
    arrays, which would cost a user ~30 s of compilation for passing a read-only view."""
    arr = np.ascontiguousarray(arr)
    return arr if arr.flags.writeable else arr.copy()
