"""HashSet: add/contains/erase and set algebra against Python sets."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import bulkhash
from _support import (KEY_DTYPES, PARALLEL_BATCH, apply_erase, assert_set_equals, edge_keys,
                      random_keys, snapshot)

pytestmark = pytest.mark.usefixtures("each_device")

Status = bulkhash.Status


def make_set(kd, keys, **kwargs):
    s = bulkhash.HashSet(kd, **kwargs)
    s.add(np.array(sorted(keys), kd))
    return s


@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
def test_add_reports_first_occurrences_as_new(kd):
    s = bulkhash.HashSet(kd)
    edges = edge_keys(kd)
    keys = np.array(edges + edges[::-1] + [5, 5], kd)
    new, flags = s.add(keys, status=True)
    expected = np.zeros(keys.size, bool)
    expected[: len(edges)] = True
    expected[2 * len(edges)] = 5 not in edges
    np.testing.assert_array_equal(new, expected)
    np.testing.assert_array_equal(flags, np.where(expected, 0, int(Status.DUPLICATE_KEY)))
    assert_set_equals(s, set(edges) | {5})
    assert not s.add(keys).any()
    assert s.add(keys[0]) is False


@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
def test_contains_and_erase(kd):
    s = make_set(kd, edge_keys(kd)[::2])
    ref = set(edge_keys(kd)[::2])
    probe = np.array(edge_keys(kd) + [3, 4], kd)
    np.testing.assert_array_equal(s.contains(probe), [k in ref for k in probe.tolist()])
    batch = np.concatenate([probe, probe])
    np.testing.assert_array_equal(s.erase(batch), apply_erase(ref, batch))
    assert len(s) == 0 and ref == set()


@pytest.mark.cpu_sized
@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
def test_large_add_matches_numpy_unique(kd):
    rng = np.random.default_rng(11)
    keys = random_keys(rng, kd, 150_000, distinct=50_000)
    s = bulkhash.HashSet(kd, capacity=10)
    new = s.add(keys)
    uniq, first = np.unique(keys, return_index=True)
    expected = np.zeros(keys.size, bool)
    expected[first] = True
    np.testing.assert_array_equal(new, expected)
    np.testing.assert_array_equal(np.sort(s.keys()), uniq)
    probe = np.concatenate([keys, random_keys(rng, kd, PARALLEL_BATCH)])
    np.testing.assert_array_equal(s.contains(probe), np.isin(probe, uniq))


# ------------------------------------------------------------------------------- set algebra
OPS = {
    "union": (lambda a, b: a.union(b), lambda a, b: a | b, set.__or__),
    "intersection": (lambda a, b: a.intersection(b), lambda a, b: a & b, set.__and__),
    "difference": (lambda a, b: a.difference(b), lambda a, b: a - b, set.__sub__),
}
OPERAND_FORMS = ["HashSet", "array", "list", "fixed HashSet"]


def _operand(form, kd, keys):
    if form == "HashSet":
        return make_set(kd, keys)
    if form == "fixed HashSet":
        return make_set(kd, keys, capacity=max(1, len(keys)), growable=False)
    arr = np.array(sorted(keys), kd)
    return arr if form == "array" else arr.tolist()


@pytest.mark.parametrize("form", OPERAND_FORMS)
@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
def test_set_algebra_matches_python_sets(kd, op, form):
    edges = edge_keys(kd)
    a_keys = set(edges[::2]) | set(range(10, 60))
    b_keys = set(edges[1::3]) | set(range(40, 90)) | {edges[0]}
    a = make_set(kd, a_keys)
    other = _operand(form, kd, b_keys)
    method, operator, reference = OPS[op]
    before = snapshot(a)
    for fn in (method, operator):
        result = fn(a, other)
        assert isinstance(result, bulkhash.HashSet) and result is not a
        assert result.key_dtype == kd
        assert_set_equals(result, reference(a_keys, b_keys))
        assert snapshot(a) == before
        if isinstance(other, bulkhash.HashSet):
            assert_set_equals(other, b_keys)
        result.add(np.array([3], kd))  # results are ordinary, mutable sets
        assert 3 in result and 3 not in a


@pytest.mark.parametrize("form", OPERAND_FORMS)
@pytest.mark.parametrize("op", sorted(OPS))
def test_set_algebra_with_empty_operands(op, form):
    method, _, reference = OPS[op]
    full = {0, 1, 2**64 - 1}
    a = make_set("uint64", full)
    empty = _operand(form, "uint64", set())
    assert_set_equals(method(a, empty), reference(full, set()))
    assert_set_equals(method(bulkhash.HashSet("uint64"), _operand(form, "uint64", full)),
                      reference(set(), full))


def test_list_operand_with_keys_beyond_int64():
    """A list of Python ints is a valid operand, as it is for add(), even above 2**63."""
    a = make_set("uint64", {1, 2**64 - 1})
    assert_set_equals(a.union([2**63, 2**64 - 2]), {1, 2**63, 2**64 - 2, 2**64 - 1})
    assert_set_equals(a.intersection([2**64 - 1, 5]), {2**64 - 1})
    assert_set_equals(a.difference([2**64 - 1]), {1})


def test_union_of_fixed_set_can_exceed_its_capacity():
    a = make_set("int32", {1, 2, 3}, capacity=3, growable=False)
    u = a | np.arange(100, 200, dtype=np.int32)
    assert_set_equals(u, {1, 2, 3} | set(range(100, 200)))
    assert_set_equals(a, {1, 2, 3})
    with pytest.raises(bulkhash.TableFullError):
        a.add([4])


@pytest.mark.cpu_sized
def test_large_set_algebra():
    rng = np.random.default_rng(5)
    a_keys = np.unique(random_keys(rng, "int64", 60_000))
    b_keys = np.concatenate([a_keys[::3], random_keys(rng, "int64", 40_000)])
    a = make_set("int64", a_keys.tolist())
    b = make_set("int64", b_keys.tolist())
    np.testing.assert_array_equal(np.sort((a | b).keys()), np.union1d(a_keys, b_keys))
    np.testing.assert_array_equal(np.sort((a & b).keys()), np.intersect1d(a_keys, b_keys))
    np.testing.assert_array_equal(np.sort((a - b).keys()), np.setdiff1d(a_keys, b_keys))


def test_equality():
    a = make_set("uint32", {0, 1, 2**32 - 1})
    b = make_set("uint32", {2**32 - 1, 1, 0}, capacity=3, growable=False)
    assert a == b and b == a
    b.erase([0])
    assert a != b
    assert (a == {0, 1, 2**32 - 1}) is False  # not a HashSet: not equal


def test_copy_clear_and_scalar_membership():
    s = make_set("int64", {-1, 0, 1})
    c = s.copy()
    s.clear()
    assert len(s) == 0 and -1 not in s
    assert_set_equals(c, {-1, 0, 1})
    assert -1 in c and c.contains(0) is True and c.erase(0) is True


@numba.njit
def _sum_keys(key, out):
    out[0] += key
    out[1] += 1


def test_for_each_visits_every_key():
    s = make_set("int64", {-5, 0, 9, 2**40})
    out = np.zeros(2, np.int64)
    s.for_each(_sum_keys, out)
    assert out.tolist() == [-5 + 9 + 2**40, 4]
