"""The driver behind ``for_each``: a compiled loop calling a user's compiled function.

Not cached on disk (``cache=False``): it is specialised on the user's function, which Numba
cannot key a disk cache on. It compiles in well under a second.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import is_jitted


@njit(nogil=True)
def _each_pair(fn, keys, values, *args):
    for i in range(keys.size):
        fn(keys[i], values[i], *args)


@njit(nogil=True)
def _each_key(fn, keys, *args):
    for i in range(keys.size):
        fn(keys[i], *args)


def call_each(fn, keys: np.ndarray, values: np.ndarray | None, *args) -> None:
    if not is_jitted(fn):
        raise TypeError(f"fn={fn!r} must be a @numba.njit function (a plain Python function would "
                        "be called once per key from Python; wrap it with numba.njit)")
    if values is None:
        _each_key(fn, keys, *args)
    else:
        _each_pair(fn, keys, values, *args)
