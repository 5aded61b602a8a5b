"""Refs: per-element table operations from user ``@numba.njit`` code, including a
``numba.prange`` loop where many threads insert at once, full tables (``failed()``) and stale
refs after the table was resized or cleared."""

from __future__ import annotations

import collections

import numba
import numpy as np
import pytest

import bulkhash
from _ref_kernels import (COUNTER_TYPES, MAP_TYPES, SET_TYPE, counter_add, counter_get,
                          map_contains, map_get, map_insert, prange_counter_add,
                          prange_map_insert, ref_failed, set_add, set_contains)
from _support import assert_counter_equals, assert_map_equals, assert_set_equals, edge_keys

MAP_KEYS = np.array(edge_keys("int64") + [3, 4, 5], np.int64)


def new_map(capacity=1000, **kwargs):
    return bulkhash.HashMap(*MAP_TYPES, capacity, **kwargs)


# ------------------------------------------------------------------------------- HashMap refs
def test_map_ref_insert_get_contains_match_dict():
    m = new_map()
    keys = np.concatenate([MAP_KEYS, MAP_KEYS[::-1], MAP_KEYS[:3]])
    values = (np.arange(keys.size) * 1.5 - 4).astype(np.float32)
    new = map_insert(m.ref(), keys, values)
    ref, expected_new = {}, []
    for k, v in zip(keys.tolist(), values):
        expected_new.append(k not in ref)
        ref[k] = v  # a ref's insert overwrites
    np.testing.assert_array_equal(new, expected_new)
    assert_map_equals(m, ref)  # the bulk API sees what the ref wrote
    probe = np.concatenate([MAP_KEYS, np.array([6, 7, -5], np.int64)])
    expected = np.array([ref.get(k, np.float32(-9.5)) for k in probe.tolist()], np.float32)
    np.testing.assert_array_equal(map_get(m.ref(), probe, np.float32(-9.5)), expected)
    np.testing.assert_array_equal(map_contains(m.ref(), probe), [k in ref for k in probe.tolist()])


def test_map_ref_sees_bulk_inserts_and_erases():
    m = new_map()
    m.insert(MAP_KEYS, np.arange(MAP_KEYS.size, dtype=np.float32))
    m.erase(MAP_KEYS[::2])
    r = m.ref()
    np.testing.assert_array_equal(map_contains(r, MAP_KEYS), np.arange(MAP_KEYS.size) % 2 == 1)
    # re-inserting erased keys through the ref works and is reported as new
    new = map_insert(r, MAP_KEYS, np.full(MAP_KEYS.size, 2.0, np.float32))
    np.testing.assert_array_equal(new, np.arange(MAP_KEYS.size) % 2 == 0)
    assert len(m) == MAP_KEYS.size
    assert (m.get(MAP_KEYS) == 2.0).all()
    assert np.unique(m.keys()).size == MAP_KEYS.size


@pytest.mark.parametrize("growable", [False, True], ids=["fixed", "growable"])
def test_map_ref_does_not_grow_and_counts_failures(growable):
    m = new_map(capacity=10, growable=growable)
    capacity = m.capacity
    keys = np.arange(100, 130, dtype=np.int64)
    r = m.ref()
    new = map_insert(r, keys, np.ones(keys.size, np.float32))
    assert new.sum() == 10
    assert ref_failed(r) == 20
    assert r.failed_inserts == 20
    assert len(m) == 10 and m.capacity == capacity
    np.testing.assert_array_equal(m.contains(keys), new)
    # an existing key is still updated through a ref at capacity
    assert not map_insert(r, keys[new][:1], np.array([5.0], np.float32))[0]
    assert m.get(keys[new][0]) == 5.0
    assert ref_failed(r) == 20


def test_ref_reserve_argument_makes_room():
    """refs' documentation: 'Make room up front with table.ref(reserve=n)'."""
    m = new_map(capacity=4)
    r = m.ref(reserve=100)
    assert m.capacity >= 100
    keys = np.arange(100, dtype=np.int64)
    assert map_insert(r, keys, np.ones(100, np.float32)).all()
    assert ref_failed(r) == 0 and len(m) == 100


STALE_USES = {
    "insert": lambda r: map_insert(r, np.array([1], np.int64), np.ones(1, np.float32)),
    "get": lambda r: map_get(r, np.array([1], np.int64), np.float32(0)),
    "contains": lambda r: map_contains(r, np.array([1], np.int64)),
}
STALE_CAUSES = {
    "bulk insert grew it": lambda m: m.insert(np.arange(5000, dtype=np.int64), 1.0),
    "reserve grew it": lambda m: m.reserve(10_000),
    "clear": lambda m: m.clear(),
}


@pytest.mark.parametrize("cause", sorted(STALE_CAUSES))
@pytest.mark.parametrize("use", sorted(STALE_USES))
def test_stale_ref_raises(use, cause):
    m = new_map(capacity=16)
    m.insert([1], [1.0])
    old = m.ref()
    STALE_CAUSES[cause](m)
    with pytest.raises(RuntimeError, match="stale"):
        STALE_USES[use](old)
    STALE_USES[use](m.ref())  # a fresh ref works


def test_ref_stays_valid_while_the_table_does_not_resize():
    m = new_map(capacity=1000)
    r = m.ref()
    m.insert(np.arange(10, dtype=np.int64), 1.0)  # fits: no resize
    m.erase([3])
    assert map_contains(r, np.array([2, 3], np.int64)).tolist() == [True, False]


# ------------------------------------------------------------------------------- prange
def _multi_threaded():
    return numba.get_num_threads() > 1


def test_prange_map_inserts_match_dict():
    """Many threads insert overlapping keys at once: each distinct key is reported new exactly
    once, and the table holds each key with its (key-determined) value."""
    rng = np.random.default_rng(21)
    pool = np.concatenate([MAP_KEYS, rng.integers(-2**63, 2**63 - 1, 30_000)])
    keys = pool[rng.integers(0, pool.size, 300_000)]
    keys[: pool.size] = pool  # every pool key at least once
    values = (keys % 1000).astype(np.float32)
    m = new_map(capacity=pool.size)
    thread_ids = np.zeros(keys.size, np.int64)
    new = prange_map_insert(m.ref(), keys, values, thread_ids)
    distinct = np.unique(keys)
    assert new.sum() == distinct.size
    np.testing.assert_array_equal(np.sort(keys[new]), distinct)
    assert_map_equals(m, dict(zip(keys.tolist(), values)))
    assert ref_failed(m.ref()) == 0


def test_prange_counter_adds_match_collections_counter():
    rng = np.random.default_rng(22)
    edges = np.array(edge_keys("uint32"), np.uint32)
    keys = np.concatenate([edges.repeat(500), rng.integers(0, 3000, 400_000).astype(np.uint32)])
    keys = rng.permutation(keys)
    c = bulkhash.Counter(*COUNTER_TYPES, capacity=4000)
    thread_ids = np.zeros(keys.size, np.int64)
    prange_counter_add(c.ref(), keys, thread_ids)
    assert_counter_equals(c, collections.Counter(keys.tolist()))


@pytest.mark.skipif(not _multi_threaded(), reason="Numba runs one thread here")
def test_prange_loop_calling_a_ref_runs_on_several_threads():
    """Refs are documented as safe 'from many threads of a prange loop'; the loop must then
    really run in parallel (Numba serialises a prange loop it cannot parallelise)."""
    c = bulkhash.Counter(*COUNTER_TYPES, capacity=100_000)
    keys = np.arange(200_000, dtype=np.uint32) % 50_000
    thread_ids = np.zeros(keys.size, np.int64)
    prange_counter_add(c.ref(), keys, thread_ids)
    assert np.unique(thread_ids).size > 1


# ------------------------------------------------------------------------------- Counter refs
def test_counter_ref_add_saturates_and_reports_new():
    c = bulkhash.Counter(*COUNTER_TYPES, capacity=100)
    top = np.iinfo(np.uint16).max
    keys = np.array([0, 7, 0, 2**32 - 1, 7, 7], np.uint32)
    counts = np.array([60_000, 1, 60_000, 5, top, 3], np.uint16)
    new = counter_add(c.ref(), keys, counts)
    np.testing.assert_array_equal(new, [True, True, False, True, False, False])
    assert_counter_equals(c, {0: top, 7: top, 2**32 - 1: 5})


def test_counter_ref_does_not_grow_and_counts_failures():
    c = bulkhash.Counter(*COUNTER_TYPES, capacity=5)
    r = c.ref()
    new = counter_add(r, np.arange(12, dtype=np.uint32), np.ones(12, np.uint16))
    assert new.sum() == 5 and len(c) == 5
    assert r.failed_inserts == 7


def test_counter_ref_failed():
    c = bulkhash.Counter(*COUNTER_TYPES, capacity=2)
    r = c.ref()
    counter_add(r, np.arange(3, dtype=np.uint32), np.ones(3, np.uint16))
    assert ref_failed(r) == 1


def test_counter_ref_get():
    c = bulkhash.Counter(*COUNTER_TYPES, capacity=100)
    c.add(np.array([1, 1, 0, 2**32 - 1], np.uint32))
    got = counter_get(c.ref(), np.array([1, 0, 2**32 - 1, 5], np.uint32))
    np.testing.assert_array_equal(got, [2, 1, 1, 0])


# ------------------------------------------------------------------------------- HashSet refs
def test_set_ref_add_and_contains():
    s = bulkhash.HashSet(SET_TYPE, capacity=100)
    keys = np.array(edge_keys(SET_TYPE) * 2, np.uint64)
    new = set_add(s.ref(), keys)
    n = len(edge_keys(SET_TYPE))
    np.testing.assert_array_equal(new, np.arange(keys.size) < n)
    assert_set_equals(s, set(keys.tolist()))
    probe = np.array([0, 3, 2**64 - 1, 12345], np.uint64)
    np.testing.assert_array_equal(set_contains(s.ref(), probe), [True, False, True, False])


def test_set_ref_failed():
    s = bulkhash.HashSet(SET_TYPE, capacity=3, growable=False)
    r = s.ref()
    new = set_add(r, np.arange(10, dtype=np.uint64))
    assert new.sum() == 3
    assert ref_failed(r) == 7 and r.failed_inserts == 7
