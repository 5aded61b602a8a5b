"""Counter: counts, saturation, most_common and histogram against collections.Counter."""

from __future__ import annotations

import collections

import numpy as np
import pytest

import bulkhash
from _support import COUNT_DTYPES, KEY_DTYPES, assert_counter_equals, edge_keys, random_keys

pytestmark = pytest.mark.usefixtures("each_device")

Status = bulkhash.Status


@pytest.mark.parametrize("cd", COUNT_DTYPES, ids=str)
@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
def test_counts_match_collections_counter(kd, cd):
    rng = np.random.default_rng(2)
    pool = np.array(edge_keys(kd), kd)
    keys = pool[rng.integers(0, pool.size, 500)]
    c = bulkhash.Counter(kd, cd)
    result = c.add(keys)
    ref = collections.Counter(keys.tolist())
    assert result.inserted == len(ref) and result.updated == keys.size - len(ref)
    assert_counter_equals(c, ref)
    np.testing.assert_array_equal(c.get(np.array([3, 4], kd)), np.zeros(2, cd))
    assert c.get(pool[0]) == ref[pool[0].item()]


def test_take_items_on_every_device():
    c = bulkhash.Counter("int64", "uint16")
    keys = np.array([0, -1, 5, 2**62, 5, 0], np.int64)  # 0 and -1 are the reserved words
    c.add(keys)
    taken = dict(zip(*(c._host(x).tolist() for x in c.take_items())))
    assert taken == collections.Counter(keys.tolist()) and len(c) == 0


@pytest.mark.cpu_sized  # (the dtypes' kernels, compiled for the simulator: minutes)
@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("cd", COUNT_DTYPES, ids=str)
@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
def test_take_items_gives_every_pair_and_empties_the_counter(kd, cd, narrow):
    rng = np.random.default_rng(6)
    keys = random_keys(rng, kd, 30_000, distinct=20_000)  # edge keys (0, all-ones) included
    counts = rng.integers(1, 3 if narrow else 100, keys.size).astype(cd)
    c = bulkhash.Counter(kd, cd)
    c.add(keys, counts)
    expected = dict(zip(*(x.tolist() for x in c.items())))
    taken_keys, taken_counts = (np.asarray(c._host(x)) for x in c.take_items(narrow_counts=narrow))
    assert dict(zip(taken_keys.tolist(), taken_counts.tolist())) == expected
    assert taken_keys.dtype == np.dtype(kd) and taken_keys.size == len(expected)
    if narrow and c.device == "cpu":
        top = max(expected.values())
        assert taken_counts.dtype == np.min_scalar_type(top) or top < 256
        assert taken_counts.dtype.itemsize <= np.dtype(cd).itemsize
    else:
        assert taken_counts.dtype == np.dtype(cd)
    assert len(c) == 0 and c.get(keys[:5]).tolist() == [0] * 5
    c.add(keys[:3])  # still a working counter
    assert len(c) == len(set(keys[:3].tolist()))


def test_release_memory_zeroes_whole_pages_only():
    import mmap
    import sys

    from bulkhash._cpu.backend import release_memory

    page_words = mmap.PAGESIZE // 8
    arr = np.full(6 * page_words, 7, np.uint64)
    lo, hi = page_words // 2, arr.size - page_words // 2
    release_memory(arr[lo:hi])  # the whole pages inside, not the partial ones at either end
    first = (-(-(arr.ctypes.data + lo * 8) // mmap.PAGESIZE) * mmap.PAGESIZE - arr.ctypes.data)
    stop = (arr.ctypes.data + hi * 8) // mmap.PAGESIZE * mmap.PAGESIZE - arr.ctypes.data
    released = np.zeros(arr.size, bool)
    if sys.platform.startswith("linux"):
        released[first // 8:stop // 8] = True
        assert released.sum() >= 4 * page_words
    assert (arr[released] == 0).all() and (arr[~released] == 7).all()
    release_memory(arr[:0])  # nothing to give back


def test_take_items_of_an_empty_counter():
    c = bulkhash.Counter("uint32")
    keys, counts = c.take_items(narrow_counts=True)
    assert keys.size == 0 and counts.size == 0 and len(c) == 0


def test_add_with_counts_array_and_scalar():
    c = bulkhash.Counter("int64", "uint32")
    c.add([-1, 5, -1], counts=[10, 3, 7])
    c.add([5, 6], counts=4)
    assert_counter_equals(c, {-1: 17, 5: 7, 6: 4})


def test_zero_count_creates_key():
    """Like collections.Counter.update({k: 0}): the key is counted, with count 0."""
    c = bulkhash.Counter()
    c.add([9], counts=[0])
    assert 9 in c and c.get(9) == 0 and len(c) == 1


@pytest.mark.parametrize("cd", COUNT_DTYPES, ids=str)
def test_saturation(cd):
    top = int(np.iinfo(cd).max)
    c = bulkhash.Counter("uint64", cd)
    r = c.add([1, 2], counts=np.array([top - 1, top], cd), status=True)
    assert (r.inserted, r.saturated) == (2, 0)
    r = c.add([1, 1, 2, 3, 1], counts=np.array([1, 1, 0, 1, top], cd), status=True)
    sat = int(Status.COUNT_SATURATED | Status.DUPLICATE_KEY)
    dup = int(Status.DUPLICATE_KEY)
    if bulkhash.get_default_device() == "cuda":
        # a GPU applies one key's additions of a batch in no fixed order: the count comes out the
        # same, but which addition clipped (and so how many did) depends on that order
        np.testing.assert_array_equal(r.status[[2, 3]], [dup, 0])
        assert (r.status[[0, 1, 4]] & Status.COUNT_SATURATED != 0).sum() >= 2
        assert (r.inserted, r.updated) == (1, 4)
    else:
        # 1: top-1 -> top (exact) -> clipped -> clipped; 2: top + 0 stays; 3: new
        np.testing.assert_array_equal(r.status, [dup, sat, dup, 0, sat])
        assert (r.inserted, r.updated, r.saturated) == (1, 4, 2)
    assert_counter_equals(c, {1: top, 2: top, 3: 1})


@pytest.mark.cpu_sized
def test_uint8_saturation_in_a_large_batch():
    """A heavy key repeated 70k times in a multi-threaded batch stops at 255, and says so."""
    rng = np.random.default_rng(4)
    heavy = np.full(70_000, 2**64 - 1, np.uint64)
    light = random_keys(rng, "uint64", 30_000, distinct=1000)
    keys = rng.permutation(np.concatenate([heavy, light]))
    c = bulkhash.Counter("uint64", "uint8")
    r = c.add(keys, status=True)
    ref = collections.Counter(keys.tolist())
    assert_counter_equals(c, {k: min(v, 255) for k, v in ref.items()})
    expected_saturated = sum(max(0, v - 255) for v in ref.values())
    assert r.saturated == expected_saturated
    assert (r.status & Status.COUNT_SATURATED != 0).sum() == expected_saturated


@pytest.mark.cpu_sized
@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
def test_large_batches_match_numpy(kd):
    rng = np.random.default_rng(8)
    keys = random_keys(rng, kd, 200_000, distinct=20_000)
    counts = rng.integers(0, 1000, keys.size).astype(np.uint32)
    c = bulkhash.Counter(kd, "uint32", capacity=16)
    c.add(keys[:1000])
    c.add(keys, counts)
    uniq, inverse = np.unique(keys, return_inverse=True)
    expected = np.bincount(inverse, weights=counts, minlength=uniq.size).astype(np.uint64)
    expected += np.bincount(np.searchsorted(uniq, keys[:1000]), minlength=uniq.size
                            ).astype(np.uint64)
    got_keys, got_counts = c.items()
    order = np.argsort(got_keys)
    np.testing.assert_array_equal(got_keys[order], uniq)
    np.testing.assert_array_equal(got_counts[order], expected)
    assert c.total() == int(expected.sum())


# ------------------------------------------------------------------------------- queries
def _expected_most_common(ref, n):
    return sorted(ref.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
def test_most_common_with_ties(kd):
    rng = np.random.default_rng(6)
    pool = np.array(edge_keys(kd) + list(range(3, 60)), kd)
    keys = pool[rng.integers(0, pool.size, 400)]
    c = bulkhash.Counter(kd, "uint16")
    c.add(keys)
    ref = collections.Counter(keys.tolist())
    for n in [None, 0, 1, 2, 5, 17, len(ref) - 1, len(ref), len(ref) + 5]:
        k, v = c.most_common(n)
        assert k.dtype == kd and v.dtype == np.uint16
        assert list(zip(k.tolist(), v.tolist())) == _expected_most_common(ref, n), n


@pytest.mark.cpu_sized
def test_most_common_large():
    rng = np.random.default_rng(9)
    keys = rng.zipf(1.3, 300_000).astype(np.int64) * rng.choice([-1, 1], 300_000)
    c = bulkhash.Counter("int64", "uint32")
    c.add(keys)
    ref = collections.Counter(keys.tolist())
    for n in (10, 1000):
        k, v = c.most_common(n)
        assert list(zip(k.tolist(), v.tolist())) == _expected_most_common(ref, n)


def test_histogram_and_total():
    rng = np.random.default_rng(10)
    keys = rng.integers(0, 300, 5000).astype(np.uint32)
    c = bulkhash.Counter("uint32", "uint64")
    c.add(keys)
    ref = collections.Counter(keys.tolist())
    counts, num_keys = c.histogram()
    expected = sorted(collections.Counter(ref.values()).items())
    assert counts.tolist() == [e[0] for e in expected]
    assert num_keys.tolist() == [e[1] for e in expected]
    assert c.total() == 5000


def test_empty_counter_queries():
    c = bulkhash.Counter()
    k, v = c.most_common(3)
    assert k.size == 0 and v.size == 0
    counts, num = c.histogram()
    assert counts.size == 0 and num.size == 0
    assert c.total() == 0
    assert c.get(5) == 0


def test_erase_and_clear():
    c = bulkhash.Counter("int32", "uint8")
    c.add([1, 1, -1, 0])
    removed, flags = c.erase([1, 1, 7], status=True)
    np.testing.assert_array_equal(removed, [True, False, False])
    assert flags.tolist() == [0, int(Status.KEY_NOT_FOUND), int(Status.KEY_NOT_FOUND)]
    assert_counter_equals(c, {-1: 1, 0: 1})
    c.add([1])
    assert c.get(1) == 1  # counting restarts after erase
    c.clear()
    assert_counter_equals(c, {})


@pytest.mark.cpu_sized
def test_total_is_exact_beyond_uint64():
    """total() is a Python int: it must not wrap when uint64 counts sum past 2**64."""
    c = bulkhash.Counter("uint64", "uint64")
    c.add([1, 2, 3], counts=np.full(3, 2**64 - 1, np.uint64))
    assert c.total() == 3 * (2**64 - 1)
