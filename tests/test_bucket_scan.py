"""The bucket scan at the heart of every probe: ``line_equal_mask`` (one vector compare over a
cache line) and ``scan_bucket`` built on it, checked against NumPy and a slot-by-slot loop for
every word size and slot width a table uses (sets and maps of 32- and 64-bit words)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from bulkhash._cpu.intrinsics import LINE_BYTES, line_equal_mask
from bulkhash._cpu.kernels import scan_bucket


@njit(cache=False)
def _mask(arr, index, value):
    return line_equal_mask(arr, index, value)


@njit(cache=False)
def _scan(slots, b, key, tomb):
    return scan_bucket(slots, b, key, tomb)


def _reference_scan(slots, base, key, tomb, per_bucket):
    """The scan one slot at a time: (row of key, first empty-or-tombstone row, any empty)."""
    column = slots[base:base + per_bucket, 0]
    match = [r for r, w in enumerate(column) if w == key]
    free = [r for r, w in enumerate(column) if w == 0 or w == tomb]
    return (base + match[0] if match else -1, base + free[0] if free else -1,
            bool((column == 0).any()))


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_line_equal_mask_matches_numpy(dtype):
    rng = np.random.default_rng(7)
    words = LINE_BYTES // np.dtype(dtype).itemsize
    arr = rng.integers(0, 4, 5 * words, dtype=dtype)  # few distinct values: many equal words
    for index in (0, 1, words - 1, 2 * words, 4 * words):
        for value in range(5):
            expected = sum(1 << j for j, w in enumerate(arr[index:index + words]) if w == value)
            assert _mask(arr, index, dtype(value)) == expected


def test_line_equal_mask_casts_a_wide_value_to_the_word():
    arr = np.full(16, 0xFFFFFFFF, np.uint32)
    arr[3] = 5
    assert _mask(arr, 0, np.uint64(5)) == 1 << 3
    assert _mask(arr, 0, np.uint64(0xFFFFFFFF)) == 0xFFFF & ~(1 << 3)


@pytest.mark.parametrize("dtype,words_per_slot", [(np.uint64, 2), (np.uint32, 2),
                                                  (np.uint64, 1), (np.uint32, 1)])
def test_scan_bucket_agrees_with_a_slot_by_slot_scan(dtype, words_per_slot):
    rng = np.random.default_rng(11)
    tomb = np.iinfo(dtype).max
    per_bucket = LINE_BYTES // (np.dtype(dtype).itemsize * words_per_slot)
    n_buckets = 64
    slots = np.zeros((n_buckets * per_bucket, words_per_slot), dtype)
    # keys from a small alphabet with empties and tombstones mixed in, values equal to keys so a
    # value word that happens to equal the key would show up as a false match
    choices = np.array([0, tomb, 1, 2, 3, 4, 5], dtype)
    slots[:, 0] = rng.choice(choices, slots.shape[0])
    if words_per_slot == 2:
        slots[:, 1] = rng.choice(choices, slots.shape[0])
    for b in range(n_buckets):
        base = b * per_bucket
        for key in (1, 3, 5, 9):
            got = _scan(slots, b, dtype(key), dtype(tomb))
            assert got == _reference_scan(slots, base, key, tomb, per_bucket), (b, key)
