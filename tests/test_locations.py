"""The read classifier's query index (bulkhash.genomics.LocationIndex) against a dict of lists,
and against the MultiMap it is condensed from."""

from __future__ import annotations

import numpy as np
import pytest

import bulkhash
from bulkhash.genomics import LocationIndex
from bulkhash.genomics.locations import MAX_RUN, pack_runs, unpack_runs


def grouped_pairs(rng, n_keys: int, max_values: int):
    """Random ``(keys, values)`` with each key's values adjacent, and the dict of lists they
    mean. Keys 0 and 2**32 - 1 are among them: the HashMap keeps those two in special rows."""
    keys = np.unique(rng.integers(1, 2**32 - 1, n_keys, dtype=np.uint64)).astype(np.uint32)
    keys = np.concatenate([keys, np.array([0, 2**32 - 1], np.uint32)])
    rng.shuffle(keys)
    counts = rng.integers(1, max_values + 1, keys.size)
    pairs = {int(k): rng.integers(0, 2**63, c, dtype=np.uint64).tolist()
             for k, c in zip(keys, counts)}
    flat_keys = np.repeat(keys, counts)
    flat_values = np.array([v for k in keys.tolist() for v in pairs[k]], np.uint64)
    return flat_keys, flat_values, pairs


def test_get_and_items_match_a_dict_of_lists():
    rng = np.random.default_rng(1)
    keys, values, pairs = grouped_pairs(rng, 3000, 6)
    index = LocationIndex.from_pairs(keys, values)
    assert len(index) == values.size and index.num_keys == len(pairs)
    absent = np.array([k for k in range(1, 400) if k not in pairs][:50], np.uint32)
    query = np.concatenate([np.array(list(pairs), np.uint32), absent])
    rng.shuffle(query)
    offsets, got = index.get(query)
    assert offsets.tolist()[0] == 0 and offsets.size == query.size + 1
    for i, key in enumerate(query.tolist()):
        assert got[offsets[i]:offsets[i + 1]].tolist() == pairs.get(key, [])
    item_keys, item_values = index.items()
    regrouped: dict[int, list[int]] = {}
    for k, v in zip(item_keys.tolist(), item_values.tolist()):
        regrouped.setdefault(k, []).append(v)
    assert regrouped == pairs
    assert np.flatnonzero(np.diff(item_keys.astype(np.int64))).size == len(pairs) - 1


def test_a_multimap_condensed_and_rebuilt_keeps_every_location_in_order():
    rng = np.random.default_rng(2)
    keys, values, pairs = grouped_pairs(rng, 2000, 9)
    order = rng.permutation(keys.size)  # interleaved keys: the MultiMap groups them
    multimap = bulkhash.MultiMap("uint32", "uint64", device="cpu")
    multimap.insert(keys[order], values[order])
    index = LocationIndex.from_multimap(multimap)
    query = np.array(list(pairs), np.uint32)
    for got, want in zip(index.get(query), multimap.get(query)):
        np.testing.assert_array_equal(got, want)
    rebuilt = index.to_multimap(max_values_per_key=254)
    for got, want in zip(rebuilt.get(query), multimap.get(query)):
        np.testing.assert_array_equal(got, want)
    assert rebuilt.max_values_per_key == 254


def test_runs_pack_and_unpack():
    starts = np.array([0, 5, 2**39 - 1], np.int64)
    counts = np.array([1, MAX_RUN, 7], np.int64)
    got_starts, got_counts = unpack_runs(pack_runs(starts, counts))
    assert got_starts.tolist() == starts.tolist() and got_counts.tolist() == counts.tolist()


def test_empty_and_bad_pairs():
    empty = LocationIndex.from_pairs(np.zeros(0, np.uint32), np.zeros(0, np.uint64))
    assert len(empty) == 0 and empty.num_keys == 0
    offsets, values = empty.get(np.array([1, 2], np.uint32))
    assert offsets.tolist() == [0, 0, 0] and values.size == 0
    with pytest.raises(ValueError, match="keys must be grouped: 1 of them"):
        LocationIndex.from_pairs(np.array([4, 5, 4], np.uint32), np.arange(3, dtype=np.uint64))
    with pytest.raises(ValueError, match="1-D arrays of one length"):
        LocationIndex.from_pairs(np.array([4, 5], np.uint32), np.arange(3, dtype=np.uint64))


def test_snapshot_and_adopt_share_the_arrays():
    rng = np.random.default_rng(3)
    keys, values, pairs = grouped_pairs(rng, 500, 4)
    index = LocationIndex.from_pairs(keys, values)
    geometry, arrays = index.snapshot()
    raw = np.concatenate([np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in arrays])
    adopted = LocationIndex.adopt(geometry, raw)
    assert np.shares_memory(adopted.locations, raw)
    query = np.array(list(pairs), np.uint32)
    for got, want in zip(adopted.get(query), index.get(query)):
        np.testing.assert_array_equal(got, want)
