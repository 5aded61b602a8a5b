"""MultiMap: insert/get/count/erase/items/keys against a dict of lists, on every backend.

The reference appends each pair to a Python list per key, in array order; every view of the
table (CSR ``get``, ``count``, ``contains``, ``items``, ``keys``, ``len``, ``num_keys``) is
compared with it, values per key *in order* (both backends keep insertion order).
"""

from __future__ import annotations

import collections
import functools

import numpy as np
import pytest

import bulkhash
from _support import (KEY_DTYPES, edge_keys, host, on_simulator, random_keys, random_values,
                      same_values, sized)
from _ref_kernels import (multi_insert, multi_insert_gpu, multi_insert_parallel,
                          multi_ref_insert, multi_ref_query)
from bulkhash.bucketlist import BucketListMap
from bulkhash.multimap import MAX_VALUES_REACHED, MultiInsertResult, MultiMap

pytestmark = pytest.mark.usefixtures("each_device")

Status = bulkhash.Status


# ------------------------------------------------------------------------------- helpers
class Reference:
    """A dict of lists: the multimap semantics written out one pair at a time."""

    def __init__(self, value_dtype, max_values=None):
        self.lists = collections.defaultdict(list)
        self.dtype = np.dtype(value_dtype)
        self.max_values = max_values

    def insert(self, keys, values, skip=frozenset()) -> np.ndarray:
        """Append in array order; the expected per-pair Status flags (``skip``: failed
        positions)."""
        flags = np.zeros(len(keys), np.uint16)
        values = np.broadcast_to(np.asarray(values, self.dtype), (len(keys),))
        for i, (k, v) in enumerate(zip(np.asarray(keys).tolist(), values)):
            held = self.lists.get(k, [])
            if self.max_values is not None and len(held) >= self.max_values:
                flags[i] = MAX_VALUES_REACHED
                continue
            if i in skip:
                flags[i] = Status.OUT_OF_CAPACITY
                continue
            if held:
                flags[i] = Status.DUPLICATE_KEY
            self.lists[k].append(v)
        return flags

    def erase(self, keys) -> list[int]:
        return [len(self.lists.pop(k, [])) for k in np.asarray(keys).tolist()]

    def live(self) -> dict:
        return {k: v for k, v in self.lists.items() if v}


def assert_multimap_equals(m, ref: Reference, probe=()):
    """Every view of ``m`` (a MultiMap or a BucketListMap) equals the dict of lists ``ref``."""
    live = ref.live()
    assert len(m) == sum(map(len, live.values()))
    assert m.num_keys == len(live)
    assert m.nbytes > 0 and getattr(m, "load_factor", 0) <= 1
    keys = host(m.keys())
    assert keys.dtype == m.key_dtype
    assert sorted(keys.tolist()) == sorted(live)
    # items(): grouped by key, each key's values in insertion order
    item_keys, item_values = (host(a) for a in m.items())
    assert item_keys.dtype == m.key_dtype and item_values.dtype == m.value_dtype
    assert item_keys.size == item_values.size == len(m)
    seen = collections.defaultdict(list)
    for k, v in zip(item_keys.tolist(), item_values):
        seen[k].append(v)
    starts = np.flatnonzero(np.r_[True, item_keys[1:] != item_keys[:-1]]) if item_keys.size else []
    assert len(starts) == len(live), "items() does not group each key's pairs together"
    for k, values in live.items():
        assert same_values(np.array(seen[k], m.value_dtype), np.array(values, m.value_dtype)), k
    # get / count / contains, on every stored key and on absent ones
    query = np.array(sorted(live) + list(probe), m.key_dtype)
    offsets, values = (host(a) for a in m.get(query))
    assert offsets.dtype == np.int64 and offsets.size == query.size + 1 and offsets[0] == 0
    assert values.dtype == m.value_dtype and values.size == offsets[-1]
    expected_counts = [len(live.get(k, [])) for k in query.tolist()]
    np.testing.assert_array_equal(np.diff(offsets), expected_counts)
    for i, k in enumerate(query.tolist()):
        got = values[offsets[i]:offsets[i + 1]]
        assert same_values(got, np.array(live.get(k, []), m.value_dtype)), (k, got, live.get(k))
    np.testing.assert_array_equal(host(m.count(query)), expected_counts)
    np.testing.assert_array_equal(host(m.contains(query)), np.array(expected_counts) > 0)


#: The multi-value layouts the tests that take ``layout`` run on: MultiMap with a slot per pair
#: and with slots of 3 values, BucketListMap with buckets of 1 and 2 values (a key's values
#: then span many buckets). Tests specific to one class are in this module (MultiMap) and in
#: test_bucketlist.py.
LAYOUTS = {
    "MultiMap": MultiMap,
    "MultiMap-B3": functools.partial(MultiMap, values_per_slot=3),
    "BucketListMap": functools.partial(BucketListMap, max_bucket_size=2),
}


@pytest.fixture(params=list(LAYOUTS))
def layout(request):
    """A constructor of one multi-value layout (same signature as MultiMap's)."""
    return LAYOUTS[request.param]


def batch(rng, kd, n, distinct):
    """``n`` keys of ``kd`` repeating a pool of ``distinct`` (edge keys, 0 and -1 among them)."""
    return random_keys(rng, kd, n, distinct=distinct)


# ------------------------------------------------------------------------------- semantics
@pytest.mark.parametrize("values_per_slot", [1, 3])
@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
def test_matches_dict_of_lists(kd, values_per_slot):
    if on_simulator() and kd in ("uint64", "int32"):
        pytest.skip("the other two key dtypes cover both word sizes on the (slow) simulator")
    rng = np.random.default_rng(values_per_slot * 7 + KEY_DTYPES.index(kd))
    m = MultiMap(kd, "int64", capacity=sized(10, 64), values_per_slot=values_per_slot)
    ref = Reference("int64")
    n, distinct = sized(3000, 90), sized(400, 24)
    probe = edge_keys(kd)[:3]  # present or not
    for _ in range(3):
        keys = batch(rng, kd, n, distinct)
        values = rng.integers(-2**62, 2**62, n)
        result = m.insert(keys, values, status=True)
        expected = ref.insert(keys, values)
        np.testing.assert_array_equal(result.status, expected)
        assert result.stored == n and result.max_values_reached == 0 and result.failed == 0
        assert result.new_keys == int(np.count_nonzero(expected == 0))
        erase = batch(rng, kd, sized(200, 8), distinct)
        np.testing.assert_array_equal(host(m.erase(erase)), ref.erase(erase))
        assert_multimap_equals(m, ref, probe=probe)


def test_every_key_value_is_legal_and_keeps_its_order(layout):
    """The reserved words (0, all-ones) hold many values, like any key."""
    m = layout("int64", "float32")
    keys = np.array([0, -1, 5, 0, -1, 0, 5, 2**63 - 1, -2**63], np.int64)
    values = np.arange(keys.size, dtype=np.float32)
    m.insert(keys, values)
    offsets, got = (host(a) for a in m.get([0, -1, 5, 7]))
    assert offsets.tolist() == [0, 3, 5, 7, 7]
    assert got.tolist() == [0, 3, 5, 1, 4, 2, 6]
    assert host(m.erase([-1, -1, 0])).tolist() == [2, 0, 3]
    m.insert([-1, 0], [9, 8])
    assert host(m.get([-1, 0])[1]).tolist() == [9, 8]
    assert m.num_keys == 5 and len(m) == 6


def test_scalar_key_gives_its_values(layout):
    m = layout("uint64", "uint16")
    m.insert([3, 3, 4], [7, 8, 9])
    assert host(m.get(3)).tolist() == [7, 8]
    assert m.count(3) == 2 and m.count(5) == 0
    assert m.contains(4) is True and 5 not in m and 3 in m
    assert m.erase(3) == 2 and m.erase(3) == 0


@pytest.mark.parametrize("vd", ["bool", "int8", "uint16", "int32", "float16", "float32",
                                "float64", "uint64"])
def test_value_dtypes_round_trip(vd, layout):
    if on_simulator() and vd not in ("bool", "float16", "uint64"):
        pytest.skip("the widths in between are covered on the CPU")
    rng = np.random.default_rng(3)
    m = layout("uint32", vd)
    ref = Reference(vd)
    keys = rng.integers(0, 20, sized(500, 60)).astype(np.uint32)
    values = random_values(rng, vd, keys.size)
    m.insert(keys, values)
    ref.insert(keys, values)
    assert_multimap_equals(m, ref)


def test_max_values_per_key_is_reported_per_pair(layout):
    m = layout("int64", "int32", max_values_per_key=3)
    ref = Reference("int32", max_values=3)
    keys = np.array([1, 1, 0, 1, 1, 2, 0, 0, 0, -1, 1], np.int64)
    values = np.arange(keys.size, dtype=np.int32)
    result = m.insert(keys, values, status=True)
    expected = ref.insert(keys, values)
    np.testing.assert_array_equal(result.status, expected)
    assert (result.status[[4, 8, 10]] == MAX_VALUES_REACHED).all()
    assert result.max_values_reached == 3 and result.stored == 8
    # across calls: a key at its limit refuses more; erasing it makes room again
    result = m.insert([1, 2, 2], [50, 51, 52], status=True)
    np.testing.assert_array_equal(result.status, ref.insert([1, 2, 2], [50, 51, 52]))
    assert host(m.erase([1])).tolist() == ref.erase([1])
    np.testing.assert_array_equal(m.insert([1], [60], status=True).status, ref.insert([1], [60]))
    assert_multimap_equals(m, ref)
    assert m.max_values_per_key == 3


@pytest.mark.parametrize("values_per_slot", [1, 4])
def test_fixed_table_names_every_pair_that_did_not_fit(values_per_slot):
    capacity = 24
    m = MultiMap("uint64", "uint64", capacity, growable=False, values_per_slot=values_per_slot)
    keys = np.repeat(np.arange(1, 9, dtype=np.uint64), 5)  # 8 keys x 5 values = 40 pairs
    values = np.arange(keys.size, dtype=np.uint64)
    with pytest.raises(bulkhash.TableFullError) as info:
        m.insert(keys, values)
    failed = np.asarray(info.value.failed_indices)
    assert failed.dtype == np.int64 and failed.size == 40 - len(m) and len(m) <= capacity
    assert isinstance(info.value.result, MultiInsertResult)
    assert info.value.result.failed == failed.size
    ref = Reference("uint64")
    ref.insert(keys, values, skip=set(failed.tolist()))
    assert_multimap_equals(m, ref)  # every other pair went in, each key's in order
    # a key's refused pairs are the last of its pairs (the stored ones stay a prefix)
    for k in range(1, 9):
        positions = np.flatnonzero(keys == k)
        refused = np.isin(positions, failed)
        assert not refused.any() or refused[np.argmax(refused):].all()


def test_growth_keeps_every_pair_and_its_order():
    rng = np.random.default_rng(4)
    m = MultiMap("int32", "int32", capacity=4, values_per_slot=2)
    ref = Reference("int32")
    for _ in range(sized(6, 3)):
        keys = rng.integers(-20, 20, sized(700, 40)).astype(np.int32)
        values = rng.integers(-100, 100, keys.size).astype(np.int32)
        m.insert(keys, values)
        ref.insert(keys, values)
    assert m.capacity >= len(m)
    assert_multimap_equals(m, ref)


def test_erase_and_reinsert_cycles_reuse_room():
    """Tombstones are reused (only after a key's last row: order holds) and swept."""
    rng = np.random.default_rng(5)
    m = MultiMap("uint64", "uint32", capacity=sized(400, 60), growable=False)
    ref = Reference("uint32")
    for _ in range(sized(12, 4)):
        keys = rng.integers(0, sized(60, 10), sized(300, 40)).astype(np.uint64)
        values = rng.integers(0, 1000, keys.size).astype(np.uint32)
        m.insert(keys, values)
        ref.insert(keys, values)
        gone = np.unique(keys)[1:]  # one key keeps its values from round to round
        np.testing.assert_array_equal(host(m.erase(gone)), ref.erase(gone))
    assert_multimap_equals(m, ref)


def test_reserve_copy_clear(layout):
    m = layout("uint64", "float64", capacity=8)
    m.insert([1, 2, 1], [1.5, 2.5, 3.5])
    m.reserve(5000)
    assert m.capacity >= 5003
    c = m.copy()
    c.insert([1], [9.0])
    assert host(m.count([1])).tolist() == [2] and host(c.count([1])).tolist() == [3]
    m.clear()
    assert len(m) == 0 and m.num_keys == 0 and host(m.keys()).size == 0
    assert host(c.get([1])[1]).tolist() == [1.5, 3.5, 9.0]
    m.reserve(20000)  # an empty table: allocated, nothing gathered
    assert m.capacity >= 20000 and len(m) == 0
    m.insert([4, 4], [1.0, 2.0])
    assert host(m.get([4])[1]).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="fixed table"):
        layout("uint64", "uint64", 4, growable=False).reserve(10)


def test_empty_inputs(layout):
    m = layout("uint64", "uint8")
    assert m.insert(np.empty(0, np.uint64), np.empty(0, np.uint8)).stored == 0
    offsets, values = (host(a) for a in m.get(np.empty(0, np.uint64)))
    assert offsets.tolist() == [0] and values.size == 0
    assert host(m.count(np.empty(0, np.uint64))).size == 0
    assert host(m.erase(np.empty(0, np.uint64))).size == 0
    assert host(m.items()[0]).size == 0


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, error, match", [
    (lambda m: m.insert([1.5], [1]), TypeError, "keys must be integers"),
    (lambda m: m.insert([1, 2], [1, 2, 3]), ValueError, "values has 3 elements"),
    (lambda m: m.insert([-1], [1]), ValueError, "not a valid uint64 key"),
    (lambda m: m.insert([1], [300]), ValueError, "does not fit"),
    (lambda m: m.insert([[1]], [1]), ValueError, "must be 1-D"),
    (lambda m: m.get([0.5]), TypeError, "keys must be integers"),
    (lambda m: m.erase(["a"]), TypeError, "keys must be integers"),
])
def test_bad_input_changes_nothing(call, error, match, layout):
    m = layout("uint64", "uint8")
    m.insert([1, 2, 1], [3, 4, 5])
    with pytest.raises(error, match=match):
        call(m)
    assert len(m) == 3 and host(m.get([1])[1]).tolist() == [3, 5]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(values_per_slot=0), ValueError, "values_per_slot"),
    (dict(values_per_slot=2.0), ValueError, "values_per_slot"),
    (dict(values_per_slot=33), ValueError, "values_per_slot"),
    (dict(max_values_per_key=0), ValueError, "max_values_per_key"),
    (dict(max_values_per_key=True), ValueError, "max_values_per_key"),
    (dict(value_dtype="complex64"), TypeError, "value_dtype"),
    (dict(key_dtype="float64"), TypeError, "key_dtype"),
    (dict(capacity=-1), ValueError, "capacity"),
    (dict(growable=False), ValueError, "needs capacity"),
    (dict(max_load_factor=1.5), ValueError, "max_load_factor"),
])
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        MultiMap(**kwargs)


# ------------------------------------------------------------------------------- interop
def test_csr_result_is_a_pyarrow_list_array(layout):
    pa = pytest.importorskip("pyarrow")
    m = layout("int64", "float32")
    m.insert([1, 2, 1, 3, 1], [1, 2, 3, 4, 5])
    offsets, values = (host(a) for a in m.get([1, 9, 3]))
    lists = pa.ListArray.from_arrays(offsets, values)
    assert lists.to_pylist() == [[1.0, 3.0, 5.0], [], [4.0]]


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_save_load_round_trip(tmp_path, target, each_device, layout):
    if target == "cuda" and not cuda_available():
        pytest.skip("no CUDA backend in this run")
    rng = np.random.default_rng(6)
    m = layout("int64", "float32", max_values_per_key=5, seed=99)
    ref = Reference("float32", max_values=5)
    keys = batch(rng, "int64", 60, 12)  # (small: either end may be the simulator)
    values = rng.standard_normal(keys.size).astype(np.float32)
    m.insert(keys, values)
    ref.insert(keys, values)
    m.erase(keys[:3])
    ref.erase(keys[:3])
    path = tmp_path / "mm.bh"
    m.save(path)
    loaded = bulkhash.load(path, device=target)
    assert type(loaded) is type(m) and loaded.device == target
    assert loaded._params() == m._params()
    previous = bulkhash.set_default_device(target)
    try:
        assert_multimap_equals(loaded, ref)
    finally:
        bulkhash.set_default_device(previous)


def cuda_available() -> bool:
    try:
        MultiMap(capacity=1, device="cuda")
    except (ImportError, RuntimeError):
        return False
    return True


# ------------------------------------------------------------------------------- big batches
@pytest.mark.cpu_sized
def test_large_batches_match_numpy_grouping(layout):
    """Batches past the parallel threshold: every thread's range, the serial pass, growth."""
    rng = np.random.default_rng(8)
    m = layout("uint64", "uint32", capacity=1000)
    all_keys, all_values = [], []
    for _ in range(3):
        keys = random_keys(rng, "uint64", 120_000, distinct=25_000)
        values = rng.integers(0, 2**32, keys.size, dtype=np.uint32)
        m.insert(keys, values)
        all_keys.append(keys)
        all_values.append(values)
    keys, values = np.concatenate(all_keys), np.concatenate(all_values)
    order = np.argsort(keys, kind="stable")  # each key's values in insertion order
    uniq, starts, counts = np.unique(keys[order], return_index=True, return_counts=True)
    query = np.concatenate([uniq, random_keys(rng, "uint64", 20_000)])
    offsets, got = m.get(query)
    found = np.searchsorted(uniq, query)
    found = np.minimum(found, uniq.size - 1)
    present = uniq[found] == query
    expected_counts = np.where(present, counts[found], 0)
    np.testing.assert_array_equal(np.diff(offsets), expected_counts)
    gather = np.concatenate([order[s:s + c] for s, c in zip(starts[found[present]],
                                                            counts[found[present]])])
    np.testing.assert_array_equal(got, values[gather])
    assert len(m) == keys.size and m.num_keys == uniq.size
    removed = m.erase(uniq[::3])
    np.testing.assert_array_equal(removed, counts[::3])
    assert len(m) == keys.size - counts[::3].sum()
    np.testing.assert_array_equal(m.count(uniq), np.where(np.arange(uniq.size) % 3, counts, 0))



# ------------------------------------------------------------------------------- refs
# Per-element use from compiled code: ``@njit`` functions for a CPU table, ``@cuda.jit`` kernels
# (one thread per element, group_size=1) for a GPU one. The same checks run on both.

def new_ref_table(*args, **kwargs):
    if bulkhash.get_default_device() == "cuda":
        kwargs["group_size"] = 1  # one thread per element
    return MultiMap(*args, **kwargs)


@pytest.mark.parametrize("values_per_slot", [1, 2])
def test_ref_methods_match_dict_of_lists(values_per_slot):
    m = new_ref_table("int64", "float32", 200, values_per_slot=values_per_slot)
    m.insert([5, 5, 0], [1.5, 2.5, 3.5])  # refs see what the bulk API wrote, and vice versa
    keys = np.array([7, 3, 7, 0, -1, 7, 5, 2**63 - 1, 3], np.int64)
    values = np.arange(keys.size, dtype=np.float32) - 2
    assert multi_ref_insert(m, keys, values).all()
    ref = Reference("float32")
    ref.insert([5, 5, 0], [1.5, 2.5, 3.5])
    ref.insert(keys, values)
    probe = np.array([7, 3, 0, -1, 5, 2**63 - 1, 4, -7], np.int64)
    counts, found, failed, out = multi_ref_query(m, probe, 4)
    expected = [ref.lists.get(k, []) for k in probe.tolist()]
    np.testing.assert_array_equal(counts, [len(v) for v in expected])
    np.testing.assert_array_equal(found, [bool(v) for v in expected])
    assert failed == 0
    for row, values_of_key in zip(out, expected):
        got = row[:min(4, len(values_of_key))]
        if m.device == "cpu":  # one thread inserted: its order
            np.testing.assert_array_equal(got, values_of_key[:4])
        else:  # threads of one kernel insert a key together: all kept, in their claims' order
            assert set(got.tolist()) <= set(values_of_key)
    if m.device == "cuda":
        ref_sorted = {k: sorted(v) for k, v in ref.live().items()}
        got_keys, got_values = (host(a) for a in m.items())
        for k in ref_sorted:
            assert sorted(got_values[got_keys == k].tolist()) == ref_sorted[k]
        assert len(m) == sum(map(len, ref_sorted.values())) and m.num_keys == len(ref_sorted)
    else:
        assert_multimap_equals(m, ref, probe=[4])


def test_ref_refuses_past_capacity_and_max_values():
    m = new_ref_table("int64", "float32", 6, growable=False, max_values_per_key=2)
    keys = np.array([1, 1, 1, 2, 3, 4, 5, 6, 7], np.int64)
    stored = multi_ref_insert(m, keys, np.arange(keys.size, dtype=np.float32))
    assert stored.sum() == len(m) == 6  # the third 1 is refused; of the rest, capacity decides
    if m.device == "cpu":
        assert stored.tolist() == [True, True, False, True, True, True, True, False, False]
    counts, _, failed, _ = multi_ref_query(m, np.array([1], np.int64), 2)
    assert m.ref().failed_inserts == failed
    if m.device == "cpu":
        assert counts.tolist() == [2] and failed == 2  # the max refusal is not a failure
    else:  # GPU threads appending one key at once may each pass the limit (module docs)
        assert (counts[0], failed) in ((2, 2), (3, 3))


def test_stale_ref_is_refused():
    m = new_ref_table("int64", "float32", 8)
    stale = m.ref()
    m.reserve(1000)  # replaces the arrays the ref points at
    keys = np.array([1, 2], np.int64)
    values = np.ones(2, np.float32)
    if m.device == "cpu":
        with pytest.raises(RuntimeError, match="stale ref"):
            multi_insert(stale, keys, values)
        return
    stored = np.zeros(2, np.bool_)
    multi_insert_gpu[1, 32](stale, keys, values, stored)
    assert not stored.any() and len(m) == 0 and stale.failed_inserts == 2


@pytest.mark.cpu_sized
def test_prange_inserts_from_many_threads_lose_nothing(each_device):
    if each_device != "cpu":
        pytest.skip("a CPU ref from a prange loop")
    rng = np.random.default_rng(9)
    for values_per_slot in (1, 3):
        m = MultiMap("uint64", "uint64", values_per_slot=values_per_slot)
        keys = rng.integers(0, 500, 50_000).astype(np.uint64)
        keys[::50] = 0  # the side pool's key, from every thread too
        values = np.arange(keys.size, dtype=np.uint64)
        assert multi_insert_parallel(m.ref(reserve=keys.size), keys, values).all()
        assert len(m) == keys.size and m.num_keys == np.unique(keys).size
        got_keys, got_values = m.items()
        order = np.argsort(got_values)
        np.testing.assert_array_equal(got_values[order], values)  # every pair, once
        np.testing.assert_array_equal(got_keys[order], keys)


# ------------------------------------------------------------------------------- PTX
_SIGNATURES = """
from bulkhash._cuda.multi_refs import ref_type


def signatures(W):
    geometry = (A(W), i8, i8, i8, u64, W)  # flat, words per row, G, n_windows, seed, tomb
    side = T.Array(W, 2, "C")
    return {
        "group_pairs": (A(W), u64) + (A(i8),) * 5,
        "number_groups": (A(i8),) * 7,
        "scatter_pairs": (A(i8),) * 5,
        "sort_segments": (A(i8), A(i8), i8),
        "append_groups": geometry + (A(i8), side, A(W), A(W), i8, A(i8), A(i8), i8, i8, A(i8),
                                     A(u8)),
        "erase_groups": geometry + (A(i8), A(W), A(i8), i8, A(i8)),
        "count": geometry + (A(i8), A(W), A(i8)),
        "fill": geometry + (A(i8), side, A(W), A(i8), A(W)),
        "mark_heads": geometry + (A(u8), A(i8)),
        "gather_heads": (A(W), i8, A(u8), A(i8), A(W)),
        "count_reserved": (A(W), W, A(i8)),
        "repeat_keys": (A(W), A(i8), A(W)),
        "positive": (A(i8), A(b1)),
        "_run_sums": (A(i8), A(i8)),
        "_run_scan": (A(i8), A(i8), A(i8)),
    }


def user_kernel(ref, keys, values, out, counts, flags):
    i = cuda.grid(1)
    if i < keys.size:
        flags[i] = ref.insert(keys[i], values[i])
        counts[i] = ref.count(keys[i]) + ref.retrieve(keys[i], out[i])
        flags[i] = ref.contains(keys[i])
        counts[0] = ref.failed()
"""

_REFS = """
for kd, vd, per_slot in (("uint64", "float32", 1), ("uint32", "int16", 3)):
    vt = getattr(T, vd)
    ptx, _ = cuda.compile_ptx(user_kernel, (ref_type(kd, vd, per_slot), A(getattr(T, kd)), A(vt),
                                            T.Array(vt, 2, "C"), A(i8), A(b1)), cc=CC)
    report[kd + vd] = (".cas." in ptx) + ("vote.sync" in ptx)
"""


def test_every_kernel_and_ref_method_compiles_to_ptx(each_device):
    """The simulator runs kernels as Python: only the CUDA compiler sees their type errors."""
    pytest.importorskip("numba_cuda", reason="needs numba-cuda")
    if each_device != "cpu":
        pytest.skip("device-independent: checked once, in the cpu run")
    from test_cuda_compile import compile_kernels

    report = compile_kernels("multi", _SIGNATURES, after=_REFS)
    for name in ("append_groups", "erase_groups", "count", "fill"):
        assert report["compiled"][name] >= 2, name  # voted with ballot_sync, and atomics
    refs = {k: report[k] for k in ("uint64float32", "uint32int16")}
    assert all(v == 2 for v in refs.values()), refs  # a user kernel's ref: CAS claims, votes


def test_snapshot_and_adopt_restore_a_cpu_table_verbatim():
    """``MultiTable.snapshot``/``adopt`` (the classifier's index file): the same pairs in the
    same order, the reserved keys' side pool included, and a refusal across layouts."""
    m = bulkhash.MultiMap("uint64", "int32", device="cpu")
    keys = np.array([0, 5, 2**64 - 1, 5, 0, 7], np.uint64)
    m.insert(keys, np.arange(6, dtype=np.int32))
    geometry, slots, side = m._table.snapshot()
    twin = bulkhash.MultiMap("uint64", "int32", capacity=0, device="cpu")
    twin._table.adopt(geometry, slots.copy(), side.copy())
    for got, want in zip(twin.get(keys), m.get(keys)):
        np.testing.assert_array_equal(got, want)
    assert (len(twin), twin.num_keys) == (6, 4)
    twin.insert([9], [9])  # and it goes on working
    assert twin.get([9])[1].tolist() == [9]
    narrow = bulkhash.MultiMap("uint32", "int32", capacity=0, device="cpu")
    with pytest.raises(ValueError, match="does not fit"):
        narrow._table.adopt(geometry, slots, side)
