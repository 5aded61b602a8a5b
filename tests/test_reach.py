"""The reach map of a CPU table (``bulkhash._cpu.kernels.build_reach``): how far a bulk lookup
probes before it calls a key absent.

A map older than the last new key could hide that key, so besides the map's own contents (the
furthest walk of each home bucket, recomputed here in Python) these tests put keys in through
every writer -- bulk insert, HashMap and Counter refs, the BucketListMap index's refs, a clear
and refill -- and check that the stale map really would have missed some of them, and that the
tables' lookups still find every one (against a dict or a set).
"""

from __future__ import annotations

import collections

import numba
import numpy as np
import pytest
from _ref_kernels import (COUNTER_TYPES, MAP_TYPES, counter_add, map_insert, multi_insert,
                          set_add)

import bulkhash
from bulkhash._cpu import kernels as K
from bulkhash.bucketlist import BucketListMap
from bulkhash.hashing import hash_key, home_bucket


def distinct_keys(n, dtype, seed=7):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    keys = np.unique(rng.integers(max(info.min, -2**62), min(info.max, 2**62), 2 * n,
                                  dtype=np.int64 if info.min < 0 else np.uint64))
    return rng.permutation(keys)[:n].astype(dtype)


def reach_now(table):
    """The map the next bulk lookup of ``table`` (a HashMap, HashSet or Counter) uses: after a
    lookup of as many keys as it holds, a table this full has one."""
    t = table._table
    t.lookup(np.zeros(max(1, len(t)), t.word), want_values=False)
    assert t.derived is not None and t.derived[2] is not None, "no reach map was built"
    return t.derived[2]


def walked_reach(t):
    """Per home bucket, the furthest bucket any of its keys sits past it, from the slots."""
    slots = t.slots.reshape(t.slots.shape[0], -1)
    nb, bs = t.n_buckets, t.bucket_size
    tomb = int(np.iinfo(slots.dtype).max)
    reach = np.zeros(nb, np.int64)
    for row in range(nb * bs):
        k = int(slots[row, 0])
        if k in (0, tomb):
            continue
        home = int(home_bucket(np.uint64(hash_key(np.uint64(k), np.uint64(t.seed))), nb))
        reach[home] = max(reach[home], (row // bs - home) % nb)
    return np.minimum(reach, K.REACH_UNBOUNDED)


def found_with(t, reach, keys, absent):
    """Which of ``keys`` a lookup of table ``t`` through the map ``reach`` finds, asked with as
    many ``absent`` keys between them (a block of keys reads the map only after a block with
    many keys absent)."""
    probe = np.empty(2 * keys.size, keys.dtype)
    probe[0::2], probe[1::2] = keys, absent[:keys.size]
    words = probe.view(np.dtype(f"u{keys.itemsize}")).astype(t.word)  # (signed keys: their bits)
    found = np.empty(probe.size, np.bool_)
    K.lookup(t.slots, t.n_buckets, t.bucket_size, np.uint64(t.seed), t.tomb, t.state, words,
             t.word.type(0), np.empty(0, t.word), found, reach, numba.get_num_threads())
    assert not found[1::2].any()
    return found[0::2]


# ------------------------------------------------------------------------------- the map itself
@pytest.mark.parametrize("make", [
    lambda n: bulkhash.HashMap("uint64", "uint64", n, growable=False, max_load_factor=0.97),
    lambda n: bulkhash.HashMap("uint32", "uint32", n, growable=False, max_load_factor=0.97),
    lambda n: bulkhash.HashSet("int64", n, growable=False, max_load_factor=0.99),
], ids=["map-u64", "map-u32", "set-i64"])
def test_reach_is_the_furthest_walk_from_each_home(make):
    m = make(4000)
    keys = distinct_keys(m.capacity, m.key_dtype)
    if isinstance(m, bulkhash.HashSet):
        m.add(keys)
    else:
        m.insert(keys, 1)
    m.erase(keys[::7])  # tombstones do not count, and an erase never lengthens a walk
    reach = reach_now(m)
    expected = walked_reach(m._table)
    np.testing.assert_array_equal(reach, expected)
    assert expected.max() > 4  # a crowded table: the test looks at long walks too


@pytest.mark.parametrize("key_dtype", ["uint64", "int32"])
def test_lookups_through_the_map_match_a_dict(key_dtype):
    n = 5000
    keys = distinct_keys(3 * n, key_dtype)
    stored, later, absent = keys[:n], keys[n:2 * n], keys[2 * n:]
    m = bulkhash.HashMap(key_dtype, "int64", n, growable=False, max_load_factor=0.98)
    ref = {}
    m.insert(stored, np.arange(n))
    ref.update(zip(stored.tolist(), range(n)))

    def check():  # (shuffled: most blocks have keys absent, so they read the map)
        probe = np.random.default_rng(1).permutation(np.concatenate([stored, later, absent]))
        np.testing.assert_array_equal(m.contains(probe), [k in ref for k in probe.tolist()])
        np.testing.assert_array_equal(m.get(probe, default=-1),
                                      [ref.get(k, -1) for k in probe.tolist()])

    check()
    assert m._table.derived[2] is not None
    m.erase(stored[: n // 3])  # room for new keys, which go wherever the runs of full buckets end
    for k in stored[: n // 3].tolist():
        del ref[k]
    m.insert(later[: n // 3], -np.arange(n // 3))
    ref.update(zip(later[: n // 3].tolist(), (-np.arange(n // 3)).tolist()))
    check()
    check()  # the second time through a map built after the new keys


# ------------------------------------------------------------------------------- stale maps
def _map_then_add(table, add, more):
    """Build the map of ``table`` as it is, then ``add(more)``: returns the map built before."""
    reach = reach_now(table)
    add(more)
    return reach


def _hashmap_case(writer):
    m = bulkhash.HashMap(*MAP_TYPES, 6000, growable=False, max_load_factor=0.98)
    keys = distinct_keys(2 * m.capacity, MAP_TYPES[0])
    first, more, absent = keys[:4500], keys[4500:6000], keys[6000:]
    m.insert(first, np.float32(1))

    def add(k):
        if writer == "insert":
            m.insert(k, np.float32(2))
        elif writer == "ref":
            assert map_insert(m.ref(), k, np.full(k.size, 2, np.float32)).all()
        else:  # clear, then refill with as many keys as before plus the new ones
            m.clear()
            m.insert(np.concatenate([first[::-1], k]), np.float32(2))
    return m, m._table, first, more, absent, add


@pytest.mark.parametrize("writer", ["insert", "ref", "clear"])
def test_a_map_older_than_the_last_new_key_is_not_used(writer):
    m, t, first, more, absent, add = _hashmap_case(writer)
    old = _map_then_add(m, add, more)
    everything = np.concatenate([first, more])
    assert not found_with(t, old, everything, absent).all(), "the old map would hide no key"
    assert m.contains(everything).all()
    assert m.contains(everything).all()  # and through the map built since
    assert t.derived[2] is not None and not np.array_equal(t.derived[2], old)


def test_counter_and_set_refs_make_the_map_stale():
    c = bulkhash.Counter(*COUNTER_TYPES, 6000, growable=False, max_load_factor=0.98)
    keys, absent = np.split(distinct_keys(2 * c.capacity, COUNTER_TYPES[0]), 2)
    c.add(keys[:4500])
    old = _map_then_add(c, lambda k: counter_add(c.ref(), k, np.ones(k.size, np.uint16)),
                        keys[4500:])
    assert not found_with(c._table, old, keys, absent).all()
    expected = collections.Counter(keys.tolist())
    np.testing.assert_array_equal(c.get(keys), [expected[k] for k in keys.tolist()])

    s = bulkhash.HashSet("uint64", 6000, growable=False, max_load_factor=0.98)
    keys, absent = np.split(distinct_keys(2 * s.capacity, "uint64", seed=8), 2)
    s.add(keys[:4500])
    old = _map_then_add(s, lambda k: set_add(s.ref(), k), keys[4500:])
    assert not found_with(s._table, old, keys, absent).all()
    assert s.contains(keys).all()


def test_bucketlist_index_refs_make_the_map_stale():
    m = BucketListMap("uint32", "float32", capacity=8000, key_capacity=6000, growable=False,
                      max_load_factor=0.98)
    index = m._table.index
    keys, absent = np.split(distinct_keys(2 * index.capacity, "uint32"), 2)
    first, more = keys[:4500], keys[4500:]
    m.insert(first, np.float32(1))
    assert m.contains(first).all()  # looked up enough for a map: the index is crowded
    old = index.derived[2]
    assert old is not None
    assert multi_insert(m.ref(reserve=more.size), more, np.full(more.size, 2, np.float32)).all()
    assert not found_with(index, old, keys, absent).all()
    assert m.contains(keys).all()
    np.testing.assert_array_equal(m.count(keys), 1)
