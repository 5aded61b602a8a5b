"""Bad input: every rejected call raises TypeError/ValueError naming the argument, and leaves the
table exactly as it was."""

from __future__ import annotations

from functools import partial

import numba
import numpy as np
import pytest

import bulkhash
from _support import DEVICES, raw_state, snapshot


class FakeGpuArray:
    """Stands in for a CuPy array / Numba device array: has ``__cuda_array_interface__``."""

    def __init__(self, n=3, typestr="<u8"):
        self.__cuda_array_interface__ = {"shape": (n,), "typestr": typestr, "data": (0, False),
                                         "version": 3, "strides": None}

    def __len__(self):
        return self.__cuda_array_interface__["shape"][0]


def full_map(kd="uint64", vd="uint64"):
    m = bulkhash.HashMap(kd, vd)
    m.insert(np.array([0, 1, 5], kd), np.array([1, 0, 1], vd))
    return m


def full_set(kd="uint64"):
    s = bulkhash.HashSet(kd)
    s.add(np.array([0, 1, 5], kd))
    return s


def full_counter(kd="uint64", cd="uint8"):
    c = bulkhash.Counter(kd, cd)
    c.add(np.array([0, 1, 5, 5], kd))
    return c


U64 = np.uint64
# (id, table factory, call, exception, text the message must contain)
CASES = [
    # --- keys: type
    ("float keys array", full_map, lambda t: t.insert(np.array([1.0, 2.0]), [1, 2]), TypeError, "keys"),
    ("float keys list", full_map, lambda t: t.insert([1.5], [1]), TypeError, "keys"),
    ("float32 keys", full_map, lambda t: t.get(np.array([1], np.float32)), TypeError, "keys"),
    ("float scalar key", full_map, lambda t: t.get(np.float64(1.0)), TypeError, "keys"),
    ("bool keys", full_map, lambda t: t.insert(np.array([True]), [1]), TypeError, "keys"),
    ("string keys", full_map, lambda t: t.insert(["a"], [1]), TypeError, "keys"),
    ("None keys", full_map, lambda t: t.erase(None), TypeError, "keys"),
    ("object keys", full_set, lambda t: t.add([1, "x"]), TypeError, "keys"),
    ("complex keys", full_set, lambda t: t.add(np.array([1 + 2j])), TypeError, "keys"),
    # --- keys: range
    ("negative key unsigned", full_map, lambda t: t.insert([-1], [1]), ValueError, "keys"),
    ("negative key in batch", full_map, lambda t: t.insert([3, 4, -1], [1, 1, 1]), ValueError, "keys"),
    ("negative int64 array into uint64", full_set, lambda t: t.add(np.array([5, -3], np.int64)), ValueError, "keys"),
    ("negative key erase", full_map, lambda t: t.erase(np.array([1, -1])), ValueError, "keys"),
    ("negative key contains", full_set, lambda t: t.contains([-2]), ValueError, "keys"),
    ("key 2**64", full_map, lambda t: t.insert([2**64], [1]), ValueError, "keys"),
    ("key 2**32 into uint32", partial(full_map, "uint32"), lambda t: t.insert([2**32], [1]), ValueError, "keys"),
    ("uint64 array into uint32", partial(full_set, "uint32"), lambda t: t.add(np.array([1, 2**40], U64)), ValueError, "keys"),
    ("key 2**31 into int32", partial(full_map, "int32"), lambda t: t.insert([2**31], [1]), ValueError, "keys"),
    ("key -2**31-1 into int32", partial(full_counter, "int32"), lambda t: t.add([-2**31 - 1]), ValueError, "keys"),
    ("uint64 2**63 into int64", partial(full_map, "int64"), lambda t: t.insert(np.array([2**63], U64), [1]), ValueError, "keys"),
    ("python 2**63 into int64", partial(full_set, "int64"), lambda t: t.add([2**63]), ValueError, "keys"),
    ("negative key counter", full_counter, lambda t: t.add([-5]), ValueError, "keys"),
    # --- shapes
    ("2-D keys", full_map, lambda t: t.insert(np.zeros((2, 2), U64), np.zeros(4, U64)), ValueError, "keys"),
    ("2-D keys get", full_map, lambda t: t.get(np.zeros((2, 1), U64)), ValueError, "keys"),
    ("2-D keys add", full_set, lambda t: t.add(np.zeros((1, 3), U64)), ValueError, "keys"),
    ("2-D values", full_map, lambda t: t.insert(np.arange(4, dtype=U64), np.zeros((2, 2), U64)), ValueError, "values"),
    ("2-D counts", full_counter, lambda t: t.add(np.arange(4, dtype=U64), np.ones((2, 2), np.uint8)), ValueError, "counts"),
    ("fewer values", full_map, lambda t: t.insert([7, 8, 9], [1, 2]), ValueError, "values"),
    ("more values", full_map, lambda t: t.insert([7], [1, 2]), ValueError, "values"),
    ("fewer counts", full_counter, lambda t: t.add([7, 8], counts=[1]), ValueError, "counts"),
    # --- values that do not fit
    ("300 into uint8", partial(full_map, vd="uint8"), lambda t: t.insert([9], [300]), ValueError, "values"),
    ("uint16 array 300 into uint8", partial(full_map, vd="uint8"), lambda t: t.insert([9, 10], np.array([3, 300], np.uint16)), ValueError, "values"),
    ("-1 into uint32", partial(full_map, vd="uint32"), lambda t: t.insert([9], [-1]), ValueError, "values"),
    ("-1 scalar into uint32", partial(full_map, vd="uint32"), lambda t: t.insert([9, 10], -1), ValueError, "values"),
    ("1.5 into int32", partial(full_map, vd="int32"), lambda t: t.insert([9], [1.5]), ValueError, "values"),
    ("1.5 into uint64", full_map, lambda t: t.insert([9], np.array([1.5])), ValueError, "values"),
    ("nan into int64", partial(full_map, vd="int64"), lambda t: t.insert([9], [np.nan]), ValueError, "values"),
    ("inf into int16", partial(full_map, vd="int16"), lambda t: t.insert([9], [np.inf]), ValueError, "values"),
    ("2**63 into int64", partial(full_map, vd="int64"), lambda t: t.insert([9], [2**63]), ValueError, "values"),
    ("uint64 max into int64", partial(full_map, vd="int64"), lambda t: t.insert([9], np.array([2**64 - 1], U64)), ValueError, "values"),
    ("-1 int8 into uint8", partial(full_map, vd="uint8"), lambda t: t.insert([9], np.array([-1], np.int8)), ValueError, "values"),
    ("2 into bool", partial(full_map, vd="bool"), lambda t: t.insert([9], [2]), ValueError, "values"),
    ("0.5 into bool", partial(full_map, vd="bool"), lambda t: t.insert([9], [0.5]), ValueError, "values"),
    ("1e300 into float32", partial(full_map, vd="float32"), lambda t: t.insert([9], [1e300]), ValueError, "values"),
    ("2**25+1 into float32", partial(full_map, vd="float32"), lambda t: t.insert([9], np.array([2**25 + 1], np.int64)), ValueError, "values"),
    ("2**53+1 int64 into float64", partial(full_map, vd="float64"), lambda t: t.insert([9], np.array([2**53 + 1], np.int64)), ValueError, "values"),
    ("2**64-1 uint64 into float64", partial(full_map, vd="float64"), lambda t: t.insert([9], np.array([2**64 - 1], U64)), ValueError, "values"),
    ("int64 -1 array into uint64", full_map, lambda t: t.insert([9], np.array([-1], np.int64)), ValueError, "values"),
    ("int32 -5 array into uint32", partial(full_map, vd="uint32"), lambda t: t.insert([9], np.array([-5], np.int32)), ValueError, "values"),
    ("string values", full_map, lambda t: t.insert([9], ["1"]), TypeError, "values"),
    ("negative count", full_counter, lambda t: t.add([9], counts=[-1]), ValueError, "counts"),
    ("negative int64 count array into uint64", partial(full_counter, cd="uint64"), lambda t: t.add([9], counts=np.array([-1], np.int64)), ValueError, "counts"),
    ("count too big for uint8", full_counter, lambda t: t.add([9], counts=[256]), ValueError, "counts"),
    ("fractional count", full_counter, lambda t: t.add([9], counts=[0.5]), ValueError, "counts"),
    ("default does not fit", partial(full_map, vd="uint8"), lambda t: t.get([1, 2], default=-1), ValueError, "default"),
    ("default 1.5 into int", partial(full_map, vd="int32"), lambda t: t.get([1, 2], default=1.5), ValueError, "default"),
    # --- on_duplicate
    ("bad on_duplicate", full_map, lambda t: t.insert([9], [1], on_duplicate="sum"), ValueError, "on_duplicate"),
    ("on_duplicate None", full_map, lambda t: t.insert([9], [1], on_duplicate=None), ValueError, "on_duplicate"),
    ("float16 add", partial(full_map, vd="float16"), lambda t: t.insert([1], [1.0], on_duplicate="add"), TypeError, "on_duplicate"),
    # --- set algebra operands
    ("float operand union", full_set, lambda t: t.union(np.array([1.5])), TypeError, "other"),
    ("negative operand intersection", full_set, lambda t: t.intersection(np.array([-1])), ValueError, "other"),
    # --- other arguments
    ("reserve negative", full_map, lambda t: t.reserve(-1), ValueError, "n="),
    ("reserve float", full_set, lambda t: t.reserve(1.5), ValueError, "n="),
    ("most_common negative", full_counter, lambda t: t.most_common(-1), ValueError, "n="),
    ("for_each plain function", full_map, lambda t: t.for_each(lambda k, v: None), TypeError, "fn"),
]
CPU_CASES = [
    # GPU arrays into a CPU table
    ("gpu keys insert", full_map, lambda t: t.insert(FakeGpuArray(), [1, 2, 3]), ValueError, "keys"),
    ("gpu values insert", full_map, lambda t: t.insert([7, 8, 9], FakeGpuArray()), ValueError, "values"),
    ("gpu keys get", full_map, lambda t: t.get(FakeGpuArray()), ValueError, "keys"),
    ("gpu keys erase", full_map, lambda t: t.erase(FakeGpuArray()), ValueError, "keys"),
    ("gpu keys set add", full_set, lambda t: t.add(FakeGpuArray()), ValueError, "keys"),
    ("gpu counts", full_counter, lambda t: t.add([7, 8, 9], FakeGpuArray()), ValueError, "counts"),
    ("gpu keys union", full_set, lambda t: t.union(FakeGpuArray()), ValueError, "other"),
]


@pytest.mark.parametrize("factory,call,exc,match", [c[1:] for c in CASES + CPU_CASES],
                         ids=[c[0] for c in CASES + CPU_CASES])
def test_bad_input_is_rejected_before_anything_changes(factory, call, exc, match):
    table = factory()
    before = snapshot(table)
    with pytest.raises(exc, match=match):
        call(table)
    assert snapshot(table) == before


# ------------------------------------------------------------------------------- GPU tables
def _device_array(values, dtype):
    from numba import cuda

    return cuda.to_device(np.asarray(values, dtype))


# Device inputs to a GPU table: used in place when their dtype is the table's; a dtype that
# does not always convert exactly is refused with the .astype() to call.
GPU_CASES = [
    ("device float keys", full_map, lambda t: t.get(_device_array([1.0], np.float64)), TypeError, "keys must be integers"),
    ("device int64 keys into uint64", full_set, lambda t: t.add(_device_array([1, -2], np.int64)), TypeError, r"keys.astype\('uint64'\)"),
    ("device uint64 keys into int32", partial(full_map, "int32"), lambda t: t.insert(_device_array([1], U64), [1]), TypeError, "astype"),
    ("device 2-D keys", full_set, lambda t: t.contains(_device_array(np.zeros((2, 2)), U64)), ValueError, "keys must be 1-D"),
    ("device strided keys", full_set, lambda t: t.add(_device_array(np.arange(8), U64)[::2]), ValueError, "contiguous"),
    ("device values too few", full_map, lambda t: t.insert([7, 8, 9], _device_array([1, 2], U64)), ValueError, "values has 2 elements"),
    ("device int64 values into uint8", partial(full_map, vd="uint8"), lambda t: t.insert([7], _device_array([1], np.int64)), TypeError, "values.astype"),
    ("device float values into int32", partial(full_map, vd="int32"), lambda t: t.insert([7], _device_array([1.0], np.float64)), TypeError, "values"),
    ("device counts into uint8", full_counter, lambda t: t.add([7], _device_array([1], np.uint32)), TypeError, "counts"),
    ("device float counts", full_counter, lambda t: t.add([7], _device_array([1.0], np.float32)), TypeError, "counts"),
    ("device float operand", full_set, lambda t: t.union(_device_array([1.5], np.float64)), TypeError, "other"),
]

_gpu_tables = {}


def _gpu_table(factory):
    """One GPU table per factory, shared by the cases (each rejected call must leave it as it
    was, which is what is checked): building a table on the simulator takes a second."""
    key = factory
    if isinstance(factory, partial):  # (equal partials make equal tables)
        key = (factory.func, factory.args, tuple(sorted(factory.keywords.items())))
    if key not in _gpu_tables:
        previous = bulkhash.set_default_device("cuda")
        try:
            _gpu_tables[key] = factory()
        finally:
            bulkhash.set_default_device(previous)
    return _gpu_tables[key]


@pytest.mark.skipif("cuda" not in DEVICES, reason="the CUDA backend is not under test")
@pytest.mark.parametrize("factory,call,exc,match", [c[1:] for c in CASES + GPU_CASES],
                         ids=[c[0] for c in CASES + GPU_CASES])
def test_bad_input_to_a_gpu_table_changes_nothing(factory, call, exc, match):
    table = _gpu_table(factory)
    assert table.device == "cuda"
    before = raw_state(table)
    with pytest.raises(exc, match=match):
        call(table)
    assert raw_state(table) == before


def test_fixed_table_reserve_beyond_capacity():
    m = bulkhash.HashMap(capacity=4, growable=False)
    m.insert([1, 2], [1, 2])
    before = snapshot(m)
    with pytest.raises(ValueError, match="capacity"):
        m.reserve(3)
    assert snapshot(m) == before


# ------------------------------------------------------------------------------- constructors
CONSTRUCTOR_CASES = [
    ("float key dtype", lambda: bulkhash.HashMap("float64"), TypeError, "key_dtype"),
    ("uint16 key dtype", lambda: bulkhash.HashSet("uint16"), TypeError, "key_dtype"),
    ("int8 key dtype", lambda: bulkhash.Counter("int8"), TypeError, "key_dtype"),
    ("bogus key dtype", lambda: bulkhash.HashMap("bogus"), TypeError, "key_dtype"),
    ("complex value dtype", lambda: bulkhash.HashMap("uint64", "complex64"), TypeError, "value_dtype"),
    ("object value dtype", lambda: bulkhash.HashMap("uint64", object), TypeError, "value_dtype"),
    ("string value dtype", lambda: bulkhash.HashMap("uint64", "U4"), TypeError, "value_dtype"),
    ("big-endian value dtype", lambda: bulkhash.HashMap("uint64", ">u4"), TypeError, "value_dtype"),
    ("16-byte value dtype", lambda: bulkhash.HashMap("uint64", "complex128"), TypeError, "value_dtype"),
    ("datetime value dtype", lambda: bulkhash.HashMap("uint64", "datetime64[s]"), TypeError, "value_dtype"),
    ("bogus value dtype", lambda: bulkhash.HashMap("uint64", "nonsense"), TypeError, "value_dtype"),
    ("signed count dtype", lambda: bulkhash.Counter("uint64", "int32"), TypeError, "count_dtype"),
    ("float count dtype", lambda: bulkhash.Counter("uint64", "float32"), TypeError, "count_dtype"),
    ("negative capacity", lambda: bulkhash.HashMap(capacity=-1), ValueError, "capacity"),
    ("float capacity", lambda: bulkhash.HashSet(capacity=10.5), ValueError, "capacity"),
    ("bool capacity", lambda: bulkhash.HashSet(capacity=True), ValueError, "capacity"),
    ("fixed without capacity", lambda: bulkhash.HashMap(growable=False), ValueError, "capacity"),
    ("load factor above 1", lambda: bulkhash.HashMap(max_load_factor=1.5), ValueError, "max_load_factor"),
    ("load factor zero", lambda: bulkhash.Counter(max_load_factor=0), ValueError, "max_load_factor"),
    ("load factor string", lambda: bulkhash.HashSet(max_load_factor="0.5"), ValueError, "max_load_factor"),
    ("string seed", lambda: bulkhash.HashMap(seed="1"), TypeError, "seed"),
    ("float seed", lambda: bulkhash.HashSet(seed=1.5), TypeError, "seed"),
    ("group size on a cpu table", lambda: bulkhash.HashMap(device="cpu", group_size=4),
     ValueError, "group_size"),
    ("unknown device", lambda: bulkhash.Counter(device="tpu"), ValueError, "device"),
]


@pytest.mark.parametrize("make,exc,match", [c[1:] for c in CONSTRUCTOR_CASES],
                         ids=[c[0] for c in CONSTRUCTOR_CASES])
def test_bad_constructor_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


# ------------------------------------------------------------------------------- accepted input
@pytest.mark.parametrize("keys", [
    [1, 2**64 - 1],                      # Python ints beyond int64 (NumPy would make floats)
    np.array([1, 2**64 - 1], np.uint64),
    np.array([1, 2], np.int32),          # other integer dtypes convert when every key fits
    np.array([1, 2], np.uint8),
    (1, 2),
    np.uint64(2**64 - 1),                # a scalar
], ids=["list beyond int64", "uint64 array", "int32 array", "uint8 array", "tuple", "scalar"])
def test_accepted_key_forms(keys):
    m = bulkhash.HashMap("uint64", "int8")
    m.insert(keys, 3)
    expected = np.atleast_1d(np.array(keys, dtype=object)).astype(np.uint64)
    assert m.contains(expected).all() and len(m) == np.unique(expected).size


@pytest.mark.parametrize("values,expected", [
    (np.array([1.0, -2.0]), [1, -2]),               # whole floats into ints are lossless
    ([True, False], [1, 0]),
    (np.array([1, 2], np.uint8), [1, 2]),
    ([127, -128], [127, -128]),
], ids=["whole floats", "bools", "uint8", "python ints at the limits"])
def test_lossless_value_conversions_are_accepted(values, expected):
    m = bulkhash.HashMap("int64", "int8")
    m.insert([1, 2], values)
    assert m.get([1, 2]).tolist() == expected


def test_float64_values_round_into_float32():
    m = bulkhash.HashMap("int64", "float32")
    m.insert([1], [0.1])
    assert m.get(1) == np.float32(0.1)


def test_noncontiguous_and_readonly_inputs():
    keys = np.arange(20, dtype=np.uint64)[::2]
    values = np.arange(40, dtype=np.int64)[::4]
    keys.setflags(write=False)
    values.setflags(write=False)
    m = bulkhash.HashMap("uint64", "int64")
    m.insert(keys, values)
    np.testing.assert_array_equal(m.get(keys), values)


@numba.njit
def _noop(key, value):
    pass


def test_for_each_on_empty_table():
    bulkhash.HashMap().for_each(_noop)


def test_gpu_table_without_a_gpu_says_what_to_do():
    """Without a GPU (and without the simulator) device='cuda' fails at once, saying why and
    what to use instead, not inside a kernel launch."""
    import os
    import subprocess
    import sys

    code = ("import numba.cuda, bulkhash\n"
            "if numba.cuda.is_available(): print('HAS A GPU'); raise SystemExit\n"
            "try:\n"
            "    bulkhash.HashMap(device='cuda')\n"
            "except RuntimeError as err:\n"
            "    print(err)\n")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    if "HAS A GPU" in out:
        pytest.skip("this machine has a GPU")
    assert "no usable CUDA GPU" in out and "device='cpu'" in out, out
