"""Numba kernels that write text: tables of many short lines, built in one buffer.

Writing a line per record from Python costs about a microsecond a line (an f-string and a
``write``); for the 21M lines of a k-mer dump or the 300k lines of a read classification that is
most of the command. These kernels size every line first (a parallel pass), place them with a
prefix sum, then fill the buffer in parallel: the caller writes the bytes with one ``write``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_ZERO = np.uint8(ord("0"))
_TEN = np.uint64(10)


@njit(inline="always", cache=True, nogil=True)
def decimal_digits(x):
    """How many decimal digits the unsigned integer ``x`` has (1 for 0)."""
    x = np.uint64(x)
    n = 1
    while x >= _TEN:
        x //= _TEN
        n += 1
    return n


@njit(inline="always", cache=True, nogil=True)
def write_decimal(x, text, end):
    """Write the digits of the unsigned integer ``x`` so that the last one is ``text[end - 1]``."""
    x = np.uint64(x)
    at = end - 1
    while True:  # digits right to left
        text[at] = _ZERO + np.uint8(x % _TEN)
        x //= _TEN
        at -= 1
        if x == 0:
            break


@njit(inline="always", cache=True, nogil=True)
def _copy(source, start, stop, text, at):
    for j in range(stop - start):
        text[at + j] = source[start + j]
    return at + stop - start


@njit(parallel=True, cache=True, nogil=True)
def format_labelled_numbers(names, name_starts, name_stops, labels, heads, head_bounds, numbers,
                            tails, tail_bounds):
    """Line ``i`` = name ``i`` + head ``labels[i]`` + ``numbers[i]`` in decimal + tail
    ``labels[i]``, as one uint8 array.

    Name ``i`` is ``names[name_starts[i]:name_stops[i]]``; heads and tails are small tables of
    pieces laid end to end (``packed``): piece ``j`` is ``heads[head_bounds[j]:head_bounds[j +
    1]]``. A tail usually ends in a newline."""
    n = labels.size
    ends = np.empty(n + 1, np.int64)
    ends[0] = 0
    for i in prange(n):
        label = labels[i]
        ends[i + 1] = (name_stops[i] - name_starts[i]
                       + head_bounds[label + 1] - head_bounds[label]
                       + decimal_digits(numbers[i])
                       + tail_bounds[label + 1] - tail_bounds[label])
    ends = np.cumsum(ends)
    text = np.empty(ends[-1], np.uint8)
    for i in prange(n):
        label = labels[i]
        at = _copy(names, name_starts[i], name_stops[i], text, ends[i])
        at = _copy(heads, head_bounds[label], head_bounds[label + 1], text, at)
        at += decimal_digits(numbers[i])
        write_decimal(numbers[i], text, at)
        _copy(tails, tail_bounds[label], tail_bounds[label + 1], text, at)
    return text


def split_lines(text: bytes, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(text, starts, stops)`` of the ``count`` lines of ``text`` (``count - 1`` newlines, none
    at the end; a line may be empty), the layout of ``format_labelled_numbers``'s names."""
    array = np.frombuffer(text, np.uint8)
    newlines = np.flatnonzero(array == ord("\n"))
    if count == 0:
        empty = np.zeros(0, np.int64)
        return array, empty, empty
    if newlines.size != count - 1:
        raise ValueError(f"expected {count} lines, found {newlines.size + 1}: a name holds a "
                         "newline")
    return array, np.append(0, newlines + 1), np.append(newlines, array.size)


def packed(pieces: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """``(text, bounds)`` of byte strings laid end to end: piece ``i`` is
    ``text[bounds[i]:bounds[i + 1]]``, the layout ``format_labelled_numbers`` takes."""
    bounds = np.zeros(len(pieces) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, pieces), np.int64, len(pieces)), out=bounds[1:])
    return np.frombuffer(b"".join(pieces), np.uint8), bounds
