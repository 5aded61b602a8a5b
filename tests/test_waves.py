"""The bulk kernels probe in waves (``bulkhash._cpu.kernels``): a key that is not settled by its
home bucket is set aside and finished in a later pass over its block. These tests build the
situations where that could go wrong -- long probe chains, tombstones a probe remembers and
another key takes first, many occurrences of one key inside one large batch -- and compare
every outcome with a Python dict fed one key at a time."""

from __future__ import annotations

import numpy as np
import pytest

import bulkhash
from _support import PARALLEL_BATCH, apply_erase, apply_insert, assert_map_equals


def _insert_like_dict(m, ref, keys, values, mode):
    """Insert into the table and, one key at a time, into ``ref``; compare everything."""
    try:
        result = m.insert(keys, values, on_duplicate=mode)
        failed = set()
    except bulkhash.TableFullError as full:
        result = full.result
        failed = set(full.failed_indices.tolist())
    room = m.capacity - len(ref)
    apply_insert(ref, keys, values, mode, skip=failed)
    assert_map_equals(m, ref)
    assert result.inserted <= room and result.failed == len(failed)
    if failed:  # a key is refused only when the table is at capacity
        assert len(ref) == m.capacity


def _crowded_fixed_table(rng, capacity, filled, universe_size):
    """A fixed table at load 0.99 holding ``filled`` keys of a random universe, and its dict."""
    universe = rng.choice(2**40, universe_size, replace=False).astype(np.uint64)
    m = bulkhash.HashMap("uint64", "int64", capacity=capacity, growable=False,
                         max_load_factor=0.99)
    ref: dict = {}
    _insert_like_dict(m, ref, universe[:filled], np.arange(filled, dtype=np.int64), "overwrite")
    return m, ref, universe


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["add", "keep", "overwrite"])
def test_remembered_tombstones_taken_by_an_earlier_key(seed, mode):
    """A probe passing a full bucket remembers its first tombstone and goes on looking for the
    key; by the time it comes back to claim it, an earlier key of the batch may have taken it.
    Crowd a table (load 0.99) with keys and tombstones, stay under the sweep threshold, and
    insert batches where every key repeats."""
    rng = np.random.default_rng(seed)
    m, ref, universe = _crowded_fixed_table(rng, 5000, 4500, 6000)
    for _ in range(4):
        gone = rng.choice(np.array(sorted(ref), np.uint64), len(ref) // 3, replace=False)
        np.testing.assert_array_equal(m.erase(gone), apply_erase(ref, gone))
        few = rng.choice(universe, 250, replace=False)  # present, erased and never-seen keys
        keys = rng.choice(few, 600)
        _insert_like_dict(m, ref, keys, rng.integers(-50, 50, keys.size).astype(np.int64), mode)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("mode", ["add", "overwrite"])
def test_large_batches_on_a_crowded_fixed_table(seed, mode):
    """Batches far above the parallel threshold, few distinct keys, a table at its limit."""
    rng = np.random.default_rng(seed)
    m, ref, universe = _crowded_fixed_table(rng, 500, 480, 600)
    for _ in range(3):
        gone = rng.choice(universe, 200)
        np.testing.assert_array_equal(m.erase(gone), apply_erase(ref, gone))
        keys = rng.choice(universe, PARALLEL_BATCH * 2 + 333)
        _insert_like_dict(m, ref, keys, rng.integers(-50, 50, keys.size).astype(np.int64), mode)


@pytest.mark.parametrize("load", [0.5, 0.9, 0.99])
def test_high_load_lookup_and_erase(load):
    """At load 0.99 many probes run past MAX_WAVES buckets and finish one key at a time."""
    rng = np.random.default_rng(7)
    keys = np.unique(rng.integers(0, 2**63, 3 * PARALLEL_BATCH, dtype=np.uint64))
    n = keys.size
    m = bulkhash.HashMap("uint64", "uint64", capacity=n, growable=False, max_load_factor=load)
    m.insert(keys, keys ^ np.uint64(0xABCDEF))
    ref = dict(zip(keys.tolist(), (keys ^ np.uint64(0xABCDEF)).tolist()))
    probe = np.concatenate([keys, rng.integers(0, 2**63, n, dtype=np.uint64)])
    rng.shuffle(probe)
    values, found = m.find(probe)
    expected_found = np.array([k in ref for k in probe.tolist()])
    np.testing.assert_array_equal(found, expected_found)
    np.testing.assert_array_equal(values[found], [ref[k] for k in probe[found].tolist()])
    gone = probe[: n // 2]
    np.testing.assert_array_equal(m.erase(gone), apply_erase(ref, gone))
    assert_map_equals(m, {k: np.uint64(v) for k, v in ref.items()})


@pytest.mark.parametrize("key_dtype,value_dtype", [("uint64", "uint64"), ("uint32", "int32"),
                                                   ("int64", None), ("uint32", None)])
def test_lookup_over_many_stripes_with_reserved_keys(key_dtype, value_dtype):
    """A lookup batch several stripes long per thread (``kernels.STRIPE``), on a crowded table,
    with the two reserved key words (0 and all-ones) present, absent keys, and long probes mixed
    in: every answer checked against a dict / set."""
    from bulkhash._cpu.kernels import STRIPE

    rng = np.random.default_rng(3)
    info = np.iinfo(key_dtype)
    stored = np.unique(rng.integers(info.min, info.max, 4000, dtype=key_dtype, endpoint=True))
    all_ones = np.array(-1).astype(key_dtype)  # the all-ones word, whatever the signedness
    stored = np.unique(np.concatenate([stored, np.array([0], key_dtype), [all_ones]]))
    absent = rng.integers(info.min, info.max, 4000, dtype=key_dtype, endpoint=True)
    probe = rng.choice(np.concatenate([stored, absent]), 5 * STRIPE)
    if value_dtype is None:
        table = bulkhash.HashSet(key_dtype, capacity=stored.size, growable=False,
                                 max_load_factor=0.97)
        table.add(stored)
        expected = np.isin(probe, stored)
        np.testing.assert_array_equal(table.contains(probe), expected)
        return
    table = bulkhash.HashMap(key_dtype, value_dtype, capacity=stored.size, growable=False,
                             max_load_factor=0.97)
    values = rng.integers(-100, 100, stored.size).astype(value_dtype)
    table.insert(stored, values)
    ref = dict(zip(stored.tolist(), values.tolist()))
    got, found = table.find(probe)
    np.testing.assert_array_equal(found, [k in ref for k in probe.tolist()])
    np.testing.assert_array_equal(got[found], [ref[k] for k in probe[found].tolist()])
    np.testing.assert_array_equal(table.get(probe, default=7),
                                  [ref.get(k, 7) for k in probe.tolist()])
