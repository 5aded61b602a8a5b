"""Shared pieces of the bulkhash test suite: dtypes, edge keys, hypothesis strategies and the
pure-Python reference semantics every table is compared against.

Nothing here uses bulkhash's own code paths to compute an expected answer: references are
Python dicts, sets, ``collections.Counter`` and plain NumPy.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

import bulkhash

KEY_DTYPES = [np.dtype(d) for d in ("uint32", "uint64", "int32", "int64")]
VALUE_DTYPES = [np.dtype(d) for d in ("bool", "int8", "uint8", "int16", "uint16", "int32",
                                      "uint32", "int64", "uint64", "float16", "float32",
                                      "float64")]
COUNT_DTYPES = [np.dtype(d) for d in ("uint8", "uint16", "uint32", "uint64")]
ON_DUPLICATE = ["overwrite", "keep", "add", "min", "max"]
ARITHMETIC = ("add", "min", "max")

#: Bulk mutations of at least this many keys take the multi-threaded kernel path.
PARALLEL_BATCH = 1 << 14


# ------------------------------------------------------------------------------------- backends
#: Where the CUDA backend runs in this session (the root conftest.py sets it): sim, gpu or off.
CUDA_MODE = os.environ.get("BULKHASH_TEST_CUDA", "off")
#: The backends under test.
DEVICES = ["cpu", "cuda"] if (CUDA_MODE != "off"
                              and importlib.util.find_spec("numba_cuda") is not None) else ["cpu"]


def on_simulator() -> bool:
    """Whether tables made now land on Numba's CUDA simulator, which runs each GPU thread as a
    Python thread (about 10 ms per key and kernel): tests there keep to hundreds of keys."""
    return (bulkhash.get_default_device() == "cuda"
            and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1")


def sized(cpu, simulator):
    """``cpu`` normally, ``simulator`` where the test runs on the CUDA simulator."""
    return simulator if on_simulator() else cpu


def run_simulated(tmp_path: Path, prelude: str, body: str, timeout: float,
                  **inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Run ``prelude`` then ``body`` in a child Python on Numba's CUDA simulator (which must be
    switched on before Numba is imported, and this process may have it off). The child starts
    with ``inputs`` (a dict of the arrays given here) and an empty dict ``outputs``, which it
    fills; those arrays come back."""
    in_file, out_file = tmp_path / "inputs.npz", tmp_path / "outputs.npz"
    np.savez(in_file, **inputs)
    script = (prelude
              + f"\nimport numpy as np\ninputs = dict(np.load({str(in_file)!r}))\noutputs = {{}}\n"
              + textwrap.dedent(body)
              + f"\nnp.savez({str(out_file)!r}, **outputs)\n")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    with np.load(out_file, allow_pickle=False) as out:
        return dict(out)


# ------------------------------------------------------------------------------------- keys
def edge_keys(dtype) -> list[int]:
    """Key values that are easy to get wrong: 0, 1, -1, the extremes, word-boundary values."""
    info = np.iinfo(dtype)
    cands = {0, 1, 2, -1, -2, info.max, info.max - 1, info.min, info.min + 1, 2**31 - 1, 2**31,
             -2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1}
    return sorted(k for k in cands if info.min <= k <= info.max)


def key_values(dtype) -> st.SearchStrategy[int]:
    """One key of ``dtype``: an edge key, a small key (so batches repeat keys) or any key."""
    info = np.iinfo(dtype)
    return st.one_of(st.sampled_from(edge_keys(dtype)), st.integers(0, 24),
                     st.integers(int(info.min), int(info.max)))


def key_array(keys, dtype) -> np.ndarray:
    return np.array(list(keys), dtype=dtype)


# ------------------------------------------------------------------------------------- values
def value_values(dtype) -> st.SearchStrategy:
    """One value exactly representable in ``dtype`` (a Python bool/int/float)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind == "f":
        return st.floats(width=dtype.itemsize * 8, allow_nan=True, allow_infinity=True)
    info = np.iinfo(dtype)
    edges = sorted({int(info.min), int(info.max), 0, 1} | ({-1} if info.min < 0 else set()))
    return st.one_of(st.sampled_from(edges), st.integers(int(info.min), int(info.max)))


def random_values(rng: np.random.Generator, dtype, n: int) -> np.ndarray:
    """``n`` random values of ``dtype`` covering its whole range (finite floats)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, n).astype(bool)
    if dtype.kind == "f":
        return (rng.standard_normal(n) * 1000).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(int(info.min), int(info.max), n, dtype=dtype, endpoint=True)


def random_keys(rng: np.random.Generator, dtype, n: int, distinct: int | None = None) -> np.ndarray:
    """``n`` keys of ``dtype`` over its whole range, edge keys mixed in; with ``distinct`` the
    batch repeats a pool of that many keys."""
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype)
    pool_size = n if distinct is None else distinct
    pool = rng.integers(int(info.min), int(info.max), pool_size, dtype=dtype, endpoint=True)
    pool[: len(edge_keys(dtype))] = edge_keys(dtype)[:pool_size]
    keys = pool if distinct is None else pool[rng.integers(0, pool_size, n)]
    return rng.permutation(keys)


# ------------------------------------------------------------------------------------- reference
def combine(old, new, mode: str, dtype):
    """``on_duplicate`` semantics on NumPy values of ``dtype`` (integers wrap, bool add is or)."""
    if mode == "overwrite":
        return new
    if mode == "keep":
        return old
    a = np.array([old], dtype)
    b = np.array([new], dtype)
    with np.errstate(all="ignore"):
        if mode == "add":
            r = a + b
        elif mode == "min":
            r = np.minimum(a, b)
        else:
            r = np.maximum(a, b)
    return r[0]


def apply_insert(ref: dict, keys: np.ndarray, values: np.ndarray, mode: str,
                 skip: set[int] = frozenset()) -> np.ndarray:
    """Insert pairs one at a time in array order into the dict ``ref``; return per-occurrence
    expected Status flags. Positions in ``skip`` (failed indices) are left out."""
    status = np.zeros(keys.size, np.uint16)
    dtype = values.dtype
    for i, (k, v) in enumerate(zip(keys.tolist(), values)):
        if i in skip:
            status[i] = bulkhash.Status.OUT_OF_CAPACITY
            continue
        if k in ref:
            ref[k] = combine(ref[k], v, mode, dtype)
            status[i] = bulkhash.Status.DUPLICATE_KEY
        else:
            ref[k] = np.array([v], dtype)[0]
    return status


def apply_erase(ref, keys: np.ndarray) -> np.ndarray:
    """Erase from a dict or set in array order; True where a key was removed."""
    out = np.zeros(keys.size, bool)
    for i, k in enumerate(keys.tolist()):
        if k in ref:
            if isinstance(ref, dict):
                del ref[k]
            else:
                ref.discard(k)
            out[i] = True
    return out


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Element-wise equality that treats NaN as equal to NaN."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        return bool(np.array_equal(a.astype(np.float64), b.astype(np.float64), equal_nan=True))
    return bool(np.array_equal(a, b))


def assert_same_values(actual, expected, what="values"):
    assert same_values(actual, expected), f"{what} differ:\n actual   {actual!r}\n expected {expected!r}"


# ------------------------------------------------------------------------------------- comparing
def map_as_dict(m) -> dict:
    keys, values = m.items()
    assert keys.dtype == m.key_dtype
    assert keys.size == len(m)
    assert np.unique(keys).size == keys.size, "items() returned a key twice"
    return dict(zip(keys.tolist(), values))


def check_sizes(t):
    assert len(t) <= t.capacity, f"len {len(t)} > capacity {t.capacity}"
    assert t.load_factor <= t.max_load_factor + 1e-12, (t.load_factor, t.max_load_factor)
    assert t.nbytes > 0


def assert_map_equals(m, ref: dict):
    """Every view of ``m`` (items, keys, values, get, find, contains) equals the dict ``ref``."""
    check_sizes(m)
    keys, values = m.items()
    assert keys.dtype == m.key_dtype and values.dtype == m.value_dtype
    assert len(m) == len(ref) == keys.size == values.size
    order = np.argsort(keys, kind="stable")
    exp_keys = np.array(sorted(ref), dtype=m.key_dtype)
    np.testing.assert_array_equal(keys[order], exp_keys)
    exp_values = np.array([ref[k] for k in exp_keys.tolist()], dtype=m.value_dtype)
    assert_same_values(values[order], exp_values)
    # keys()/values() agree with items(), in the same order
    np.testing.assert_array_equal(m.keys(), keys)
    assert_same_values(m.values(), values)
    if exp_keys.size:
        assert_same_values(m.get(exp_keys), exp_values, "get")
        found_values, found = m.find(exp_keys)
        assert found.all()
        assert_same_values(found_values, exp_values, "find")
        assert m.contains(exp_keys).all()


def assert_set_equals(s, ref: set):
    check_sizes(s)
    keys = s.keys()
    assert keys.dtype == s.key_dtype
    assert len(s) == len(ref) == keys.size
    np.testing.assert_array_equal(np.sort(keys), np.array(sorted(ref), dtype=s.key_dtype))
    np.testing.assert_array_equal(np.sort(s.to_array()), np.sort(keys))
    if ref:
        assert s.contains(np.array(sorted(ref), dtype=s.key_dtype)).all()


def assert_counter_equals(c, ref):
    """``ref``: a collections.Counter (or dict) of the expected counts (zero counts absent)."""
    check_sizes(c)
    keys, counts = c.items()
    assert keys.dtype == c.key_dtype and counts.dtype == c.count_dtype
    assert len(c) == len(ref) == keys.size
    order = np.argsort(keys, kind="stable")
    exp_keys = np.array(sorted(ref), dtype=c.key_dtype)
    np.testing.assert_array_equal(keys[order], exp_keys)
    exp_counts = np.array([ref[k] for k in exp_keys.tolist()], dtype=c.count_dtype)
    np.testing.assert_array_equal(counts[order], exp_counts)
    if exp_keys.size:
        np.testing.assert_array_equal(c.get(exp_keys), exp_counts)
    expected_total = sum(ref.values())
    if expected_total < 2**64:  # beyond: see test_counter.py::test_total_is_exact_beyond_uint64
        assert c.total() == expected_total


def host(arr) -> np.ndarray:
    """A result of any backend as a NumPy array (a GPU result is copied to the host)."""
    if hasattr(arr, "copy_to_host"):
        return arr.copy_to_host()
    if hasattr(arr, "get"):  # CuPy
        return arr.get()
    if hasattr(arr, "cpu"):  # torch
        return arr.cpu().numpy()
    return np.asarray(arr)


def snapshot(t):
    """Everything observable about a table, to check that a rejected call changed nothing."""
    keys = host(t.keys())
    order = np.argsort(keys, kind="stable")
    values = host(t.items()[1])[order].tobytes() if hasattr(t, "items") else None
    return (len(t), t.capacity, keys[order].tobytes(), values)


def raw_state(t):
    """A table's memory, byte for byte (stricter than ``snapshot`` and, on the CUDA simulator,
    much cheaper: no kernel runs)."""
    inner = t._table
    return (inner.capacity, host(inner.slots).tobytes(), host(inner.state).tobytes())
