"""Every cooperative group size of the CUDA backend (1, 2, 4, 8, 16, 32 lanes per key) keeps the
same semantics.

The structure suites run with the default group size; this module drives one table of each
kind through the paths where the group size matters (windows of G slots found by ballot, the
claim by the group's leader, tombstones reused inside a window, growth that rehashes, a fixed
table running out of windows) for each G, against Python references. Key sets are small, so
that a window holds several of them and probes cross window boundaries.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

import bulkhash
from _support import (DEVICES, apply_erase, apply_insert, assert_counter_equals,
                      assert_map_equals, assert_set_equals, edge_keys, host)

GROUP_SIZES = [1, 2, 4, 8, 16, 32]
pytestmark = pytest.mark.skipif("cuda" not in DEVICES, reason="the CUDA backend is not under test")


def _keys(rng, n, dtype="int64"):
    """``n`` keys with repeats, edge keys (the sentinel values among them) and a small range."""
    pool = np.array(edge_keys(dtype) + list(range(3, 3 + n)), dtype)
    return rng.choice(pool, n)


@pytest.mark.parametrize("group_size", GROUP_SIZES)
def test_map_insert_erase_reinsert_grow(group_size):
    rng = np.random.default_rng(group_size)
    m = bulkhash.HashMap("int64", "int32", capacity=8, max_load_factor=0.9, device="cuda",
                         group_size=group_size)
    assert m.group_size == group_size
    ref = {}
    for mode in ("overwrite", "keep", "add", "min", "max"):
        keys = _keys(rng, 40)
        values = rng.integers(-1000, 1000, keys.size).astype(np.int32)
        expected_status = apply_insert(ref, keys, values, mode)
        result = m.insert(keys, values, on_duplicate=mode, status=True)
        np.testing.assert_array_equal(result.status, expected_status, err_msg=mode)
    assert_map_equals(m, ref)
    victims = _keys(rng, 30)
    np.testing.assert_array_equal(host(m.erase(victims)), apply_erase(ref, victims))
    # fresh keys reuse the tombstones; the table grew from 8 on the way, and grows again
    fresh = np.arange(10**9, 10**9 + 50, dtype=np.int64)
    m.insert(fresh, fresh.astype(np.int32))
    ref.update(zip(fresh.tolist(), fresh.astype(np.int32)))
    assert m.capacity > 8
    assert_map_equals(m, ref)
    capacity = m.capacity
    m.reserve(capacity)  # a rehash of every entry into a table twice the size
    assert m.capacity >= capacity + len(ref)
    assert_map_equals(m, ref)


@pytest.mark.parametrize("group_size", GROUP_SIZES)
def test_fixed_set_fills_every_slot_and_names_the_rest(group_size):
    """A fixed table takes keys up to its capacity, which the GPU rounds to whole windows; the
    keys beyond it are reported one by one, never dropped."""
    s = bulkhash.HashSet("uint32", capacity=20, growable=False, device="cuda",
                         group_size=group_size)
    keys = np.array([0, 2**32 - 1] + list(range(1, 40)), np.uint32)
    with pytest.raises(bulkhash.TableFullError) as info:
        s.add(keys)
    failed = info.value.failed_indices
    took = np.setdiff1d(np.arange(keys.size), failed)
    assert took.size == s.capacity == len(s) >= 20
    assert_set_equals(s, set(keys[took].tolist()))
    assert not host(s.contains(keys[failed])).any()
    # erasing makes room again: the freed slots (tombstones) take new keys
    s.erase(keys[took[:5]])
    s.add(keys[failed[:5]])
    assert_set_equals(s, set(keys[took[5:]].tolist()) | set(keys[failed[:5]].tolist()))


@pytest.mark.parametrize("group_size", GROUP_SIZES)
def test_counter_counts_and_saturates(group_size):
    rng = np.random.default_rng(100 + group_size)
    c = bulkhash.Counter("uint64", "uint8", device="cuda", group_size=group_size)
    keys = np.concatenate([rng.choice(np.array([0, 2**64 - 1, 5, 6, 7], np.uint64), 300),
                           np.arange(100, 140, dtype=np.uint64)])
    c.add(keys)
    ref = collections.Counter(keys.tolist())
    assert_counter_equals(c, {k: min(n, 255) for k, n in ref.items()})
