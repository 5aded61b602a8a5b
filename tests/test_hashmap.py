"""HashMap: the bulk API against a Python dict / NumPy, on small and on large (multi-threaded)
batches, for every key dtype, value dtype and on_duplicate mode."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import bulkhash
from _support import (ARITHMETIC, KEY_DTYPES, ON_DUPLICATE, PARALLEL_BATCH, VALUE_DTYPES,
                      apply_erase, apply_insert, assert_map_equals, assert_same_values, edge_keys,
                      random_keys, random_values)

Status = bulkhash.Status
pytestmark = pytest.mark.usefixtures("each_device")


# ------------------------------------------------------------------------------- basics
@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
def test_edge_keys_are_ordinary_keys(kd):
    """0, -1, 2**64-1, the dtype extremes (which the table uses internally) store like any key."""
    keys = np.array(edge_keys(kd), kd)
    m = bulkhash.HashMap(kd, "int64")
    values = np.arange(keys.size, dtype=np.int64) * 10 - 7
    result = m.insert(keys, values)
    assert (result.inserted, result.updated, result.failed) == (keys.size, 0, 0)
    ref = dict(zip(keys.tolist(), values))
    assert_map_equals(m, ref)
    # update them all, erase half, update again
    m.insert(keys, values + 1, on_duplicate="add")
    ref = {k: v + v + 1 for k, v in ref.items()}
    assert_map_equals(m, ref)
    np.testing.assert_array_equal(m.erase(keys[::2]), np.ones(keys[::2].size, bool))
    for k in keys[::2].tolist():
        del ref[k]
    assert_map_equals(m, ref)
    np.testing.assert_array_equal(m.erase(keys[::2]), np.zeros(keys[::2].size, bool))
    m.insert(keys[::2], values[::2])
    ref.update(zip(keys[::2].tolist(), values[::2]))
    assert_map_equals(m, ref)


@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
def test_edge_keys_absent_from_a_table_of_other_keys(kd):
    m = bulkhash.HashMap(kd, "uint8")
    m.insert(np.arange(3, 200, dtype=kd), 1)
    probe = np.array([k for k in edge_keys(kd) if not 3 <= k < 200], kd)
    assert not m.contains(probe).any()
    np.testing.assert_array_equal(m.get(probe, default=9), np.full(probe.size, 9, np.uint8))
    assert not m.erase(probe).any()
    assert len(m) == 197


def test_scalar_access():
    m = bulkhash.HashMap("int64", "float64")
    m[-1] = 2.5
    m[2**63 - 1] = -1.0
    assert m[-1] == 2.5 and m[2**63 - 1] == -1.0
    assert -1 in m and 0 not in m
    assert m.get(-1) == 2.5 and isinstance(m.get(-1), float)
    assert m.get(0) == 0.0 and m.get(0, default=7.5) == 7.5
    assert m.contains(-1) is True and m.contains(5) is False
    values, found = m.find(2**63 - 1)
    assert values == -1.0 and found is True
    with pytest.raises(KeyError):
        m[12345]
    assert m.erase(-1) is True and m.erase(-1) is False
    assert len(m) == 1


@pytest.mark.parametrize("vd", VALUE_DTYPES, ids=str)
@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
def test_value_dtypes_round_trip_exactly(kd, vd):
    keys = np.array(edge_keys(kd), kd)
    vd = np.dtype(vd)
    if vd.kind == "f":
        values = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.5, -2.25, np.finfo(vd).max,
                           np.finfo(vd).tiny, np.finfo(vd).min] * 3, vd)[: keys.size]
    elif vd.kind == "b":
        values = np.arange(keys.size) % 2 == 1
    else:
        info = np.iinfo(vd)
        values = np.array([info.min, info.max, 0, 1, info.max - 1] * 4, vd)[: keys.size]
    m = bulkhash.HashMap(kd, vd)
    m.insert(keys, values)
    got = m.get(keys)
    assert got.dtype == vd
    # bit-exact (NaN payloads and the sign of zero included)
    assert got.tobytes() == values.tobytes()
    assert m.items()[1].dtype == vd


def test_items_keys_values_agree():
    m = bulkhash.HashMap("uint32", "int16")
    keys = np.arange(0, 3000, 3, dtype=np.uint32)
    m.insert(keys, (keys % 1000).astype(np.int16))
    k, v = m.items()
    np.testing.assert_array_equal(m.keys(), k)
    np.testing.assert_array_equal(m.values(), v)
    np.testing.assert_array_equal(v, (k % 1000).astype(np.int16))
    np.testing.assert_array_equal(np.sort(k), keys)


def test_empty_batches_and_empty_table():
    m = bulkhash.HashMap("int32", "float32")
    assert len(m) == 0 and m.items()[0].size == 0
    result = m.insert([], [])
    assert (result.inserted, result.updated, result.failed) == (0, 0, 0)
    result = m.insert(np.empty(0, np.int32), np.empty(0, np.float32), status=True)
    assert result.status.size == 0
    assert m.get(np.empty(0, np.int32)).size == 0
    assert m.erase(np.empty(0, np.int32)).size == 0
    assert m.contains([]).size == 0
    assert len(m) == 0


def test_find_reports_zero_where_absent():
    m = bulkhash.HashMap("uint64", "int8")
    m.insert([1, 2], [-5, 6])
    values, found = m.find(np.array([2, 3, 1, 0], np.uint64))
    np.testing.assert_array_equal(found, [True, False, True, False])
    np.testing.assert_array_equal(values, np.array([6, 0, -5, 0], np.int8))


# ------------------------------------------------------------------------------- on_duplicate
DUP_KEYS = [5, 0, 5, 7, 0, 5, 9, 7, 5]


def _dup_values(vd):
    vd = np.dtype(vd)
    if vd.kind == "b":
        return np.array([True, False, False, True, True, False, False, False, True])
    if vd.kind == "f":
        return np.array([1.5, -0.0, np.inf, 2.0, np.nan, -7.25, 1e-3, -3.0, 0.1], vd)
    info = np.iinfo(vd)
    return np.array([info.max, 0, 3, info.min, 1, info.max, 2, 5, info.max - 1], vd)


@pytest.mark.parametrize("mode", ON_DUPLICATE)
@pytest.mark.parametrize("vd", ["uint8", "int8", "int32", "uint64", "int64", "float32",
                                "float64", "bool"])
def test_on_duplicate_within_and_across_batches(mode, vd):
    """Duplicates mean: insert one pair at a time, in array order (integers wrap like NumPy,
    float32 sums are float32 sums, NaN propagates through min/max like np.minimum)."""
    m = bulkhash.HashMap("int64", vd)
    keys = np.array(DUP_KEYS, np.int64)
    values = _dup_values(vd)
    ref = {}
    for _ in range(2):  # the second round meets every key already present
        expected_status = apply_insert(ref, keys, values, mode)
        result = m.insert(keys, values, on_duplicate=mode, status=True)
        np.testing.assert_array_equal(result.status, expected_status)
        assert result.inserted + result.updated == keys.size
        assert_map_equals(m, ref)


@pytest.mark.parametrize("mode", ARITHMETIC)
def test_float16_has_no_arithmetic_modes(mode):
    m = bulkhash.HashMap("uint64", "float16")
    m.insert([1], [1.0])
    with pytest.raises(TypeError, match="on_duplicate"):
        m.insert([1, 2], [2.0, 3.0], on_duplicate=mode)
    assert_map_equals(m, {1: np.float16(1.0)})


def test_add_wraps_like_numpy():
    m = bulkhash.HashMap("uint64", "uint8")
    m.insert([1, 1, 1], [200, 100, 250], on_duplicate="add")
    assert m.get(1) == (200 + 100 + 250) % 256
    m = bulkhash.HashMap("uint64", "int8")
    m.insert([1, 1], [127, 1], on_duplicate="add")
    assert m.get(1) == -128


def test_insert_result_counts_and_status():
    m = bulkhash.HashMap()
    r = m.insert([1, 2, 1, 3], [1, 1, 1, 1], status=True)
    assert (r.inserted, r.updated, r.failed, r.saturated) == (3, 1, 0, 0)
    np.testing.assert_array_equal(r.status, [0, 0, Status.DUPLICATE_KEY, 0])
    r = m.insert([3, 4], [1, 1])
    assert (r.inserted, r.updated) == (1, 1) and r.status is None


def test_erase_first_occurrence_and_status():
    m = bulkhash.HashMap("int32", "int32")
    m.insert([1, 2, 3], [1, 2, 3])
    removed, flags = m.erase(np.array([2, 2, 5, 1, -1], np.int32), status=True)
    np.testing.assert_array_equal(removed, [True, False, False, True, False])
    nf = int(Status.KEY_NOT_FOUND)
    np.testing.assert_array_equal(flags, [0, nf, nf, 0, nf])
    assert_map_equals(m, {3: 3})


# ------------------------------------------------------------------------------- large batches
def _numpy_reference(keys, values, mode):
    """Per unique key, the value sequential insertion gives (vectorised with ufunc.at, which
    applies its updates in index order)."""
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if mode == "keep":
        return uniq, values[first]
    if mode == "overwrite":
        last = np.zeros(uniq.size, np.int64)
        np.maximum.at(last, inverse, np.arange(keys.size))
        return uniq, values[last]
    out = values[first].copy()
    rest = np.ones(keys.size, bool)
    rest[first] = False
    ufunc = {"add": np.add, "min": np.minimum, "max": np.maximum}[mode]
    with np.errstate(all="ignore"):
        ufunc.at(out, inverse[rest], values[rest])
    return uniq, out


@pytest.mark.cpu_sized
@pytest.mark.parametrize("mode", ON_DUPLICATE)
@pytest.mark.parametrize("kd,vd", [("uint64", "uint64"), ("int32", "float32"),
                                   ("int64", "int16"), ("uint32", "float64")])
def test_large_batches_match_numpy(kd, vd, mode):
    """200k keys (the multi-threaded path), heavy repeats, edge keys included, into a table
    that grows from its default size and already holds some of the keys."""
    rng = np.random.default_rng(1234)
    n = 200_000
    keys = random_keys(rng, kd, n, distinct=60_000)
    values = random_values(rng, vd, n)
    m = bulkhash.HashMap(kd, vd)
    pre_keys = keys[:5000].copy()
    pre_values = random_values(rng, vd, pre_keys.size)
    m.insert(pre_keys, pre_values, on_duplicate=mode)  # some keys present already
    ref_keys, ref_values = _numpy_reference(np.concatenate([pre_keys, keys]),
                                            np.concatenate([pre_values, values]), mode)
    result = m.insert(keys, values, on_duplicate=mode)
    assert result.inserted == ref_keys.size - np.unique(pre_keys).size
    assert result.inserted + result.updated == n
    assert len(m) == ref_keys.size
    got_keys, got_values = m.items()
    order = np.argsort(got_keys)
    np.testing.assert_array_equal(got_keys[order], ref_keys)
    assert_same_values(got_values[order], ref_values)
    # bulk lookups (multi-threaded path) of present and absent keys
    probe = np.concatenate([ref_keys, random_keys(rng, kd, 30_000)])
    expect_found = np.isin(probe, ref_keys)
    values_found, found = m.find(probe)
    np.testing.assert_array_equal(found, expect_found)
    assert_same_values(values_found[: ref_keys.size], ref_values)


@pytest.mark.cpu_sized
@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
def test_large_erase_then_reinsert(kd):
    rng = np.random.default_rng(7)
    keys = np.unique(random_keys(rng, kd, 150_000))
    m = bulkhash.HashMap(kd, "uint32", capacity=keys.size)
    m.insert(keys, np.arange(keys.size, dtype=np.uint32))
    victims = rng.permutation(keys)[: keys.size // 2]
    batch = np.concatenate([victims, victims[:1000], random_keys(rng, kd, 1000)])
    expected = apply_erase(set(keys.tolist()), batch)
    np.testing.assert_array_equal(m.erase(batch), expected)
    victims = np.unique(batch[expected])
    survivors = np.setdiff1d(keys, victims)
    assert len(m) == survivors.size
    assert not m.contains(victims).any()
    np.testing.assert_array_equal(m.get(survivors),
                                  np.searchsorted(keys, survivors).astype(np.uint32))
    # tombstones left behind must not hide or duplicate anything
    m.insert(victims, 7)
    assert len(m) == keys.size
    assert (m.get(victims) == 7).all()
    assert np.unique(m.keys()).size == keys.size


@pytest.mark.cpu_sized
def test_large_batch_of_one_repeated_key_and_reserved_keys():
    n = PARALLEL_BATCH * 3
    keys = np.zeros(n, np.uint64)
    keys[1::3] = 2**64 - 1
    keys[2::3] = 12345
    values = np.arange(n, dtype=np.float64)
    m = bulkhash.HashMap("uint64", "float64")
    r = m.insert(keys, values, on_duplicate="add", status=True)
    assert (r.inserted, r.updated) == (3, n - 3)
    assert m.get(0) == values[0::3].sum()
    assert m.get(2**64 - 1) == values[1::3].sum()
    assert m.get(12345) == values[2::3].sum()


# ------------------------------------------------------------------------------- table-level
def test_copy_is_independent():
    m = bulkhash.HashMap("int64", "int64")
    m.insert([1, 2, 0, -1], [1, 2, 3, 4])
    c = m.copy()
    c.insert([5], [5])
    c.erase([1])
    m.insert([2], [20])
    assert_map_equals(m, {1: 1, 2: 20, 0: 3, -1: 4})
    assert_map_equals(c, {2: 2, 0: 3, -1: 4, 5: 5})
    assert (c.capacity, c.growable, c.seed, c.value_dtype) == (m.capacity, m.growable, m.seed,
                                                               m.value_dtype)


@pytest.mark.cpu_sized
def test_clear_keeps_capacity_and_table_stays_usable():
    m = bulkhash.HashMap(capacity=5000)
    m.insert(np.arange(4000, dtype=np.uint64), 1)
    m.clear()
    assert len(m) == 0 and m.capacity == 5000 and m.items()[0].size == 0
    assert not m.contains(np.arange(4000, dtype=np.uint64)).any()
    m.insert([0, 2**64 - 1], [1, 2])
    assert_map_equals(m, {0: 1, 2**64 - 1: 2})


@pytest.mark.cpu_sized
def test_seed_changes_layout_not_contents():
    keys = np.arange(1, 500, dtype=np.uint64)
    a = bulkhash.HashMap(seed=1)
    b = bulkhash.HashMap(seed=2**64 - 1)
    a.insert(keys, keys)
    b.insert(keys, keys)
    assert a.seed == 1 and b.seed == 2**64 - 1
    assert not np.array_equal(a.keys(), b.keys())  # different slot order
    assert_map_equals(b, dict(zip(keys.tolist(), keys)))


def test_properties_and_repr():
    m = bulkhash.HashMap("int32", "float32", 100, growable=False, max_load_factor=0.5)
    assert m.key_dtype == np.int32 and m.value_dtype == np.float32
    assert m.capacity == 100 and not m.growable and m.max_load_factor == 0.5
    assert m.device == bulkhash.get_default_device()
    assert m.nbytes >= 100 / 0.5 * 8
    text = repr(m)
    assert "HashMap" in text and "int32" in text and "float32" in text


# ------------------------------------------------------------------------------- for_each
@numba.njit
def _weighted(key, value, out):
    out[0] += key * value
    out[1] += 1


def test_for_each_visits_every_entry():
    m = bulkhash.HashMap("int64", "int64")
    keys = np.array([-3, 0, 7, 2**40, -1], np.int64)
    m.insert(keys, [2, 5, 3, 1, 4])
    out = np.zeros(2, np.int64)
    m.for_each(_weighted, out)
    assert out[1] == 5
    assert out[0] == -3 * 2 + 0 + 7 * 3 + 2**40 - 4


def test_for_each_needs_a_jitted_function():
    m = bulkhash.HashMap()
    m.insert([1], [1])
    with pytest.raises(TypeError, match="fn"):
        m.for_each(lambda k, v: None)


@pytest.mark.cpu_sized
def test_erase_and_reinsert_rounds_match_dict():
    """Many rounds of insert/erase on one table: tombstones, reuse and sweeps."""
    rng = np.random.default_rng(3)
    m = bulkhash.HashMap("uint32", "uint16", capacity=64)
    ref = {}
    pool = np.array(edge_keys("uint32") + list(range(3, 400)), np.uint32)
    for _ in range(60):
        keys = rng.choice(pool, 50)
        values = rng.integers(0, 2**16, 50).astype(np.uint16)
        apply_insert(ref, keys, values, "max")
        m.insert(keys, values, on_duplicate="max")
        victims = rng.choice(pool, 40)
        np.testing.assert_array_equal(m.erase(victims), apply_erase(ref, victims))
    assert_map_equals(m, ref)


@pytest.mark.parametrize("group_size", [0, 3, 64, True])
def test_bad_group_size_is_refused(group_size):
    if bulkhash.get_default_device() != "cuda":
        pytest.skip("group_size is a GPU table's")
    with pytest.raises(ValueError, match="group_size"):
        bulkhash.HashMap(group_size=group_size)
