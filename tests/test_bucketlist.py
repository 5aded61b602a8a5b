"""BucketListMap: the MultiMap semantics over linked buckets of a value pool, for several bucket
shapes, checked against a dict of lists on every backend; and what the layout reports about itself
(key and value load factors, bytes per value, compaction). The semantics both multi-value tables
share (reserved keys, max_values_per_key, bad input, save/load, big batches...) are tested once,
on both, in test_multimap.py (its ``layout`` fixture)."""

from __future__ import annotations

import numpy as np
import pytest

import bulkhash
from _support import KEY_DTYPES, host, on_simulator, sized
from bulkhash._table import DEFAULT_CAPACITY
from bulkhash.bucketlist import BucketListMap
from bulkhash.multimap import MultiInsertResult
from test_multimap import Reference, assert_multimap_equals, batch

pytestmark = pytest.mark.usefixtures("each_device")

Status = bulkhash.Status

#: (min_bucket_size, max_bucket_size, grow_factor): the default, WarpCore-like slow growth with a
#: cap, and single-value buckets (a plain linked list).
BUCKET_SHAPES = [(1, 1024, 2.0), (2, 8, 1.5), (1, 1, 1.0)]


@pytest.mark.parametrize("shape", BUCKET_SHAPES, ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
def test_matches_dict_of_lists(kd, shape):
    if on_simulator() and (kd in ("uint64", "int32") or shape == BUCKET_SHAPES[1]):
        pytest.skip("covered by the other variants on the (slow) simulator")
    min_size, max_size, grow = shape
    rng = np.random.default_rng(KEY_DTYPES.index(kd))
    m = BucketListMap(kd, "int64", capacity=sized(10, 64), min_bucket_size=min_size,
                      max_bucket_size=max_size, grow_factor=grow)
    ref = Reference("int64")
    n, distinct = sized(3000, 90), sized(400, 24)
    for _ in range(3):
        keys = batch(rng, kd, n, distinct)
        values = rng.integers(-2**62, 2**62, n)
        result = m.insert(keys, values, status=True)
        np.testing.assert_array_equal(result.status, ref.insert(keys, values))
        assert result.stored == n and result.failed == 0
        erase = batch(rng, kd, sized(200, 8), distinct)
        np.testing.assert_array_equal(host(m.erase(erase)), ref.erase(erase))
        assert_multimap_equals(m, ref, probe=[1, 2])


def test_fixed_table_refuses_past_capacity_and_key_capacity():
    m = BucketListMap("uint64", "uint64", 20, key_capacity=4, growable=False)
    keys = np.repeat(np.arange(1, 7, dtype=np.uint64), 5)  # 6 keys x 5 values
    values = np.arange(keys.size, dtype=np.uint64)
    with pytest.raises(bulkhash.TableFullError) as info:
        m.insert(keys, values)
    failed = np.asarray(info.value.failed_indices)
    assert isinstance(info.value.result, MultiInsertResult)
    assert failed.size == keys.size - len(m) and len(m) <= 20 and m.num_keys <= 4
    ref = Reference("uint64")
    flags = ref.insert(keys, values, skip=set(failed.tolist()))
    assert (flags[failed] == Status.OUT_OF_CAPACITY).all()
    assert_multimap_equals(m, ref)
    for k in range(1, 7):  # a key's refused pairs are its last ones
        refused = np.isin(np.flatnonzero(keys == k), failed)
        assert not refused.any() or refused[np.argmax(refused):].all()


def test_key_index_is_sized_for_keys_not_pairs(tmp_path):
    """Regression (found by the multi-value state machine): a batch of many pairs on few new
    keys grew the key index as if each pair were a new key, so a table loaded from a file (its
    pairs inserted again) had twice the original's key_capacity."""
    n = sized(3000, 300)
    keys = np.repeat(np.arange(1, n + 1, dtype=np.uint64), 4)
    m = BucketListMap("uint64", "uint32")
    m.insert(keys, np.arange(keys.size, dtype=np.uint32))
    key_capacity = m.key_capacity
    assert n <= key_capacity < max(2 * n, DEFAULT_CAPACITY + 1)
    m.insert(keys[::-1], np.zeros(keys.size, np.uint32))  # more values for every stored key
    assert m.key_capacity == key_capacity
    m.save(tmp_path / "m.bh")
    loaded = bulkhash.load(tmp_path / "m.bh")
    assert loaded.key_capacity == key_capacity and len(loaded) == 2 * keys.size


def test_keys_whose_every_pair_was_refused_are_not_keys():
    """A fixed table that refuses all of a new key's pairs (the pool is full, not the key
    index) must not count or list that key (found by the multi-value state machine)."""
    m = BucketListMap("uint32", "bool", 3, key_capacity=8, growable=False, min_bucket_size=2)
    keys = np.array([4294967294, 13, 4294967295, 13, 4294967294, 6], np.uint32)
    values = np.array([True, False, False, False, False, True])
    with pytest.raises(bulkhash.TableFullError) as info:
        m.insert(keys, values)
    failed = np.asarray(info.value.failed_indices)
    ref = Reference("bool")
    ref.insert(keys, values, skip=set(failed.tolist()))
    assert len(ref.live()) < np.unique(keys).size  # some key lost every pair
    assert_multimap_equals(m, ref)  # num_keys, keys(), items(), get, count
    m.erase(host(m.keys()))
    assert m.insert(keys[:3], values[:3]).stored == 3  # the refused keys took no key room


def test_layout_reports_and_compaction():
    per_key = 16
    m = BucketListMap("uint64", "uint32", min_bucket_size=1, grow_factor=2.0)
    keys = np.repeat(np.arange(1, sized(401, 21), dtype=np.uint64), per_key)
    m.insert(keys, np.arange(keys.size, dtype=np.uint32))
    # 16 values: buckets of 1, 2, 4, 8 and 16 -> 16 of 31 slots in use (a bucket that found the
    # pool full before it grew may leave a few slots at its old end unused)
    assert 0.95 * 16 / 31 <= m.value_load_factor <= 16 / 31
    assert 0 < m.key_load_factor <= m._table.index.max_load_factor
    assert m.bytes_per_value == m.nbytes / len(m)
    before = m._table.pool_in_use
    gone = np.unique(keys)[: -2]  # erase all but two keys: the pool compacts itself
    m.erase(gone)
    assert m._table.pool_in_use < before / 4
    assert m.value_load_factor == pytest.approx(16 / 31)  # compacted: no slot wasted
    ref = Reference("uint32")
    ref.insert(keys, np.arange(keys.size, dtype=np.uint32))
    ref.erase(gone)
    assert_multimap_equals(m, ref)


@pytest.mark.parametrize("kwargs, match", [
    (dict(min_bucket_size=0), "min_bucket_size"),
    (dict(max_bucket_size=2, min_bucket_size=4), "below min_bucket_size"),
    (dict(grow_factor=0.5), "grow_factor"),
    (dict(grow_factor=True), "grow_factor"),
    (dict(key_capacity=-3), "key_capacity"),
    (dict(max_values_per_key=0), "max_values_per_key"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BucketListMap(**kwargs)


_SIGNATURES = """
table = T.Array(i8, 2, "C")  # records, buckets


def signatures(W):
    return {
        "append_groups": (table, table, A(W), A(i8), A(i8), A(W), i8, A(i8), A(i8), i8, i8, i8,
                          i8, f8, A(i8), A(u8)),
        "kids_of": (A(W), A(b1), A(i8)),
        "counts_of": (table, A(i8), A(i8)),
        "fill": (table, table, A(W), A(i8), A(i8), A(W)),
        "release": (table, table, A(i8), A(i8), A(i8), A(i8)),
        "clamp_counters": (A(i8), i8, i8),
    }
"""


def test_every_kernel_compiles_to_ptx(each_device):
    """The simulator runs kernels as Python: only the CUDA compiler sees their type errors."""
    pytest.importorskip("numba_cuda", reason="needs numba-cuda")
    if each_device != "cpu":
        pytest.skip("device-independent: checked once, in the cpu run")
    from test_cuda_compile import compile_kernels

    report = compile_kernels("bucketlist", _SIGNATURES)
    assert report["compiled"]["append_groups"] >= 2  # the budget and the bump allocator: atomics
