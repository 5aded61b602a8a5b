"""Capacity: growth from tiny to large, load factor bounds, fixed tables that fill up
(TableFullError), reserve, and tombstone churn in a table that never grows."""

from __future__ import annotations

import collections

import numpy as np
import pytest

import bulkhash
from _support import (PARALLEL_BATCH, apply_insert, assert_counter_equals, assert_map_equals,
                      assert_set_equals, check_sizes, edge_keys, on_simulator, random_keys, sized,
                      snapshot)

Status = bulkhash.Status
pytestmark = pytest.mark.usefixtures("each_device")


# ------------------------------------------------------------------------------- growth
@pytest.mark.parametrize("mlf", [0.05, 0.5, 0.8, 0.99])
@pytest.mark.parametrize("start", [0, 1, 7])
def test_growth_from_tiny_to_large(start, mlf):
    if on_simulator() and (start == 1 or mlf == 0.8):
        pytest.skip("the other start sizes and load factors cover the same paths on the simulator")
    rng = np.random.default_rng(int(mlf * 100) + start)
    m = bulkhash.HashMap("uint64", "uint32", capacity=start, max_load_factor=mlf)
    assert m.capacity == start
    present = np.empty(0, np.uint64)
    for size in sized([1, 2, 5, 30, 200, 1500, 9000, 60_000], [1, 2, 5, 30, 200]):
        batch = random_keys(rng, "uint64", size)
        m.insert(batch, (batch & np.uint64(0xFFFF)).astype(np.uint32))
        present = np.union1d(present, batch)
        assert len(m) == present.size
        check_sizes(m)
    np.testing.assert_array_equal(np.sort(m.keys()), present)
    np.testing.assert_array_equal(m.get(present), (present & np.uint64(0xFFFF)).astype(np.uint32))


@pytest.mark.parametrize("kind", ["HashMap", "HashSet", "Counter"])
def test_growth_one_key_at_a_time(kind):
    t = getattr(bulkhash, kind)("int32", capacity=1)
    keys = np.array(edge_keys("int32") + list(range(3, sized(300, 12))), np.int32)
    for i, k in enumerate(keys.tolist()):
        if kind == "HashMap":
            t.insert([k], [i])
        else:
            t.add([k])
        assert len(t) == i + 1
        check_sizes(t)
    assert t.contains(keys).all()


def test_reserve_makes_room_without_growing_later():
    n = sized(50_000, 2000)
    m = bulkhash.HashMap(capacity=10)
    m.insert(np.arange(5, dtype=np.uint64), 0)
    m.reserve(n)
    capacity = m.capacity
    assert capacity >= n + 5
    m.insert(np.arange(5, sized(n + 5, 300), dtype=np.uint64), 1)  # (the simulator: fewer)
    assert m.capacity == capacity
    assert len(m) == sized(n + 5, 300)
    m.reserve(0)
    assert m.capacity == capacity


@pytest.mark.parametrize("kind", ["HashMap", "HashSet", "Counter"])
def test_batches_of_stored_keys_do_not_grow_the_table(kind):
    """Regression: a batch larger than the free room grew the table even when every key in it
    was stored already, so each update of a half-full table doubled it."""
    n = sized(60_000, 600)
    t = getattr(bulkhash, kind)("uint64")

    def put(keys):
        return t.insert(keys, 1) if kind == "HashMap" else t.add(keys)

    keys = np.arange(n, dtype=np.uint64)
    put(keys)
    capacity = t.capacity
    assert capacity - len(t) < n  # the batches below are larger than the free room
    for again in (keys, keys[::-1], np.repeat(keys[: n // 2], 3)):
        put(again)
        assert t.capacity == capacity and len(t) == n
    put(np.arange(3 * n, dtype=np.uint64))  # a third stored, two thirds new: grows
    assert len(t) == 3 * n and t.capacity >= 3 * n
    check_sizes(t)


def test_nbytes_grows_with_capacity():
    small = bulkhash.HashMap(capacity=100)
    big = bulkhash.HashMap(capacity=100_000)
    assert big.nbytes > 100 * small.nbytes / 2
    assert big.nbytes >= 100_000 * 16  # 8-byte keys + 8-byte values


# ------------------------------------------------------------------------------- fixed tables
def _check_table_full(err, keys, table, capacity, before_keys=frozenset()):
    """What a TableFullError must mean: exactly the reported positions did not go in, every other
    key did, and the table is full."""
    failed = err.failed_indices
    assert failed.dtype == np.int64
    assert err.result.failed == failed.size > 0
    mask = np.zeros(keys.size, bool)
    mask[failed] = True
    failed_keys = set(keys[mask].tolist())
    assert not failed_keys & set(keys[~mask].tolist())
    assert not failed_keys & set(before_keys)
    assert not table.contains(keys[mask]).any()
    assert table.contains(keys[~mask]).all()
    assert len(table) == table.capacity == capacity
    return mask


@pytest.mark.parametrize("mode", ["overwrite", "keep", "add", "max"])
@pytest.mark.parametrize("n,capacity,distinct", [
    (40, 10, 25), (300, 299, 300),
    pytest.param(3 * PARALLEL_BATCH, 20_000, 30_000, marks=pytest.mark.cpu_sized),
    pytest.param(2 * PARALLEL_BATCH, 1, 5000, marks=pytest.mark.cpu_sized)])
def test_fixed_map_overflow(n, capacity, distinct, mode):
    """A batch with more distinct keys than a fixed table holds (duplicates and edge keys
    included, serial and multi-threaded batch sizes)."""
    rng = np.random.default_rng(n + capacity)
    pool = np.unique(random_keys(rng, "int64", distinct + 50))[:distinct]
    assert pool.size == distinct
    keys = rng.permutation(np.concatenate([pool, pool[rng.integers(0, distinct, n - distinct)]]))
    values = rng.integers(-1000, 1000, n)
    m = bulkhash.HashMap("int64", "int64", capacity, growable=False)
    with pytest.raises(bulkhash.TableFullError) as info:
        m.insert(keys, values, on_duplicate=mode, status=True)
    mask = _check_table_full(info.value, keys, m, capacity)
    ref = {}
    expected_status = apply_insert(ref, keys, values, mode, skip=set(np.flatnonzero(mask)))
    assert_map_equals(m, ref)
    np.testing.assert_array_equal(info.value.result.status, expected_status)
    assert info.value.result.inserted == capacity
    # a full fixed table still updates keys it holds, and refuses only new ones
    present = np.array(sorted(ref), np.int64)
    result = m.insert(present, 1, on_duplicate="add")
    assert (result.inserted, result.updated, result.failed) == (0, present.size, 0)
    before = snapshot(m)
    with pytest.raises(bulkhash.TableFullError) as info:
        m.insert([2**62 + 12345], [1])
    np.testing.assert_array_equal(info.value.failed_indices, [0])
    assert snapshot(m) == before


@pytest.mark.parametrize("capacity", [0, 1, 2, 3])
def test_fixed_table_with_reserved_keys_at_the_limit(capacity):
    keys = np.array([0, 2**64 - 1, 0, 5, 2**64 - 1, 6], np.uint64)
    s = bulkhash.HashSet("uint64", capacity, growable=False)
    distinct = 4
    if capacity >= distinct:
        s.add(keys)
        return
    with pytest.raises(bulkhash.TableFullError) as info:
        s.add(keys)
    _check_table_full(info.value, keys, s, capacity)


@pytest.mark.cpu_sized
def test_fixed_counter_overflow_in_parallel_batch():
    rng = np.random.default_rng(12)
    keys = random_keys(rng, "uint32", 4 * PARALLEL_BATCH, distinct=30_000)
    c = bulkhash.Counter("uint32", "uint16", 25_000, growable=False)
    with pytest.raises(bulkhash.TableFullError) as info:
        c.add(keys)
    mask = _check_table_full(info.value, keys, c, 25_000)
    ref = collections.Counter(keys[~mask].tolist())
    assert_counter_equals(c, ref)


def test_fixed_table_second_call_fills_remaining_room_only():
    m = bulkhash.HashMap("uint32", "uint8", 100, growable=False)
    m.insert(np.arange(60, dtype=np.uint32), 1)
    keys = np.arange(50, 150, dtype=np.uint32)  # 10 present, 90 new, room for 40
    with pytest.raises(bulkhash.TableFullError) as info:
        m.insert(keys, 2)
    mask = _check_table_full(info.value, keys, m, 100, before_keys=range(60))
    assert mask.sum() == 50
    assert (m.get(np.arange(50, 60, dtype=np.uint32)) == 2).all()


def test_fixed_reserve_beyond_capacity_is_refused():
    s = bulkhash.HashSet(capacity=10, growable=False)
    s.add(np.arange(8, dtype=np.uint64))
    s.reserve(2)
    with pytest.raises(ValueError, match="capacity"):
        s.reserve(3)
    assert_set_equals(s, set(range(8)))


@pytest.mark.parametrize("batch", [7, 50, pytest.param(PARALLEL_BATCH + 100,
                                                         marks=pytest.mark.cpu_sized)])
def test_fixed_table_churn_never_reports_full(batch):
    """Erase then insert the same number of new keys, many times over: tombstones pile up
    but a table at or below capacity must take every key."""
    capacity = max(100, batch)
    m = bulkhash.HashMap("uint64", "uint64", capacity, growable=False)
    rng = np.random.default_rng(batch)
    live = np.unique(random_keys(rng, "uint64", capacity))[:capacity - 3]
    m.insert(live, live)
    rounds = sized(40 if batch < 1000 else 6, 5)
    for _ in range(rounds):
        victims = rng.choice(live, batch, replace=False) if batch <= live.size else live
        assert m.erase(victims).all()
        live = np.setdiff1d(live, victims)
        fresh = np.setdiff1d(random_keys(rng, "uint64", victims.size + 10), live)[:victims.size]
        m.insert(fresh, fresh)
        live = np.union1d(live, fresh)
        assert len(m) == live.size and m.capacity == capacity
    np.testing.assert_array_equal(np.sort(m.keys()), live)
    np.testing.assert_array_equal(m.get(live), live)


def test_table_full_error_message_and_attributes():
    m = bulkhash.HashMap(capacity=2, growable=False)
    with pytest.raises(bulkhash.TableFullError, match="capacity=2") as info:
        m.insert([1, 2, 3, 4], [1, 2, 3, 4])
    assert isinstance(info.value, RuntimeError)
    assert info.value.failed_indices.size == 2
    assert info.value.result.inserted == 2
