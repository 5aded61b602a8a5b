"""What crosses into and out of a GPU table: the ``_arrays`` checks for device memory.

Inputs may be CuPy arrays, PyTorch CUDA tensors, Numba device arrays (anything with
``__cuda_array_interface__``), or host data (NumPy arrays, lists, scalars, CPU tensors), which
is checked on the host exactly as for a CPU table and then copied in. A device input is used in
place, without a copy, when its dtype is the table's; a dtype that converts without loss for
every value (``int32`` keys into an ``int64`` table) is converted on the device; any other dtype
is refused with the conversion to make, because checking each value would mean a pass over the
whole array for a mistake the caller can fix once.

Results come back in the caller's library: NumPy in, NumPy out; CuPy in, CuPy out; torch in,
torch out; Numba device array in, Numba device array out -- zero-copy on the device. Results
with no input to follow (``items()``, ``keys()``) are CuPy arrays when CuPy is installed, else
Numba device arrays; both speak ``__cuda_array_interface__``, so ``cupy.asarray`` and
``torch.as_tensor`` take either without a copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from .. import _arrays
from . import backend as B


def _library(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def _on_device(obj: Any) -> bool:
    """A GPU array: anything with ``__cuda_array_interface__`` (or the simulator's stand-in,
    which lacks it), a torch CUDA tensor."""
    return _arrays._is_gpu_array(obj) or hasattr(obj, "copy_to_host")


def _device_id(obj: Any) -> int | None:
    """The GPU an input lives on, where its library says (CuPy, torch)."""
    device = getattr(obj, "device", None)
    for attr in ("id", "index"):
        value = getattr(device, attr, None)
        if isinstance(value, int):
            return value
    return None


def _from_device(obj: Any, dtype: np.dtype, argname: str, what: str):
    """A 1-D device input as a Numba device array of ``dtype`` (no copy when it already is)."""
    here = getattr(cuda.get_current_device(), "id", 0)  # (the simulator's device has no id)
    there = _device_id(obj)
    if there is not None and there != here:
        raise ValueError(f"{argname} is on GPU {there} but this table is on GPU {here}; move it "
                         f"there first (cupy: with cupy.cuda.Device({here}): cupy.asarray(x); "
                         f"torch: x.to('cuda:{here}'))")
    arr = B.as_device(obj)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{argname} must be 1-D, got shape {arr.shape}; pass {argname}.ravel() "
                         "to use every element")
    if not arr.is_c_contiguous():
        raise ValueError(f"{argname} is a strided view; pass a contiguous array "
                         f"({argname}.copy())")
    if arr.dtype == dtype:
        return arr
    if arr.dtype.kind not in what:
        raise TypeError(f"{argname} must be {'integers' if what == 'iu' else 'numbers'}, got "
                        f"{arr.dtype}; this table stores {dtype}")
    if _arrays._always_exact(arr.dtype, dtype) and (what != "iu" or arr.dtype.kind in "iu"):
        return B.astype(arr, dtype)
    raise TypeError(f"{argname} is a {arr.dtype} device array but this table stores {dtype}, and "
                    f"not every {arr.dtype} converts exactly; convert it on the GPU first "
                    f"({argname}.astype('{dtype}')) if its values fit")


def as_keys(obj: Any, key_dt: np.dtype, argname: str = "keys"):
    """(device keys of ``key_dt``, whether a scalar was given)."""
    if _on_device(obj):
        scalar = getattr(obj, "ndim", 1) == 0
        return _from_device(obj, key_dt, argname, "iu"), scalar
    arr, scalar = _arrays.as_keys(obj, key_dt, argname)
    return cuda.to_device(arr), scalar


def as_values(obj: Any, value_dt: np.dtype, n: int, argname: str = "values"):
    """Device values of ``value_dt``: ``n`` of them, or one used for every key."""
    if _on_device(obj):
        arr = _from_device(obj, value_dt, argname, "biuf")
        scalar = getattr(obj, "ndim", 1) == 0  # one value for every key
        if arr.size != n and not scalar:
            raise ValueError(f"{argname} has {arr.size} elements but keys has {n}; pass one value "
                             "per key (or a single scalar for all of them)")
        return arr
    if np.ndim(obj) == 0:
        return cuda.to_device(_arrays.as_values(obj, value_dt, 1, argname))
    return cuda.to_device(_arrays.as_values(obj, value_dt, n, argname))


def like_input(result, original: Any):
    """A device result, in the library of the input it answers."""
    lib = _library(original)
    if lib == "cupy":
        import cupy

        return cupy.asarray(result)
    if lib == "torch" and getattr(original, "is_cuda", False):
        import torch

        return torch.as_tensor(result, device=original.device)
    if _on_device(original):
        return result
    return _arrays.like_input(B.to_host(result), original)


def table_result(result):
    """A whole-table result (no input to follow): CuPy if installed, else Numba."""
    try:
        import cupy
    except ImportError:
        return result
    return cupy.asarray(result)


def to_host(result) -> np.ndarray:
    """Any device result (Numba, CuPy, torch) as a NumPy array."""
    if hasattr(result, "copy_to_host"):
        return result.copy_to_host()
    if _library(result) == "cupy":
        return result.get()
    if _library(result) == "torch":
        return result.cpu().numpy()
    return np.asarray(result)
