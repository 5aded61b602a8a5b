"""Hypothesis state machines: random mixes of every operation on HashMap, HashSet and Counter,
compared after each step with a Python dict / set.

Each run draws the key dtype, the value/count dtype, growable or fixed (with a capacity that a
run fills), and the max load factor; keys mix edge values (0, 1, -1, 2**63, 2**64-1, the dtype
extremes), a small pool (so batches repeat keys) and keys already in the table.
"""

from __future__ import annotations

import collections
import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

import bulkhash
from _support import (ARITHMETIC, COUNT_DTYPES, DEVICES, KEY_DTYPES, ON_DUPLICATE,
                      PARALLEL_BATCH, VALUE_DTYPES, apply_erase, apply_insert,
                      assert_counter_equals, assert_map_equals, assert_same_values,
                      assert_set_equals, check_sizes, key_array, key_values, on_simulator,
                      random_keys, random_values, snapshot, value_values)

Status = bulkhash.Status
FIXED_CAPACITIES = [0, 1, 5, 17, 64, 300, 20_000]
LOAD_FACTORS = [0.05, 0.5, 0.8, 0.99]


class TableMachine(RuleBasedStateMachine):
    """Rules every table kind shares. Subclasses set ``self.t`` (the table) and ``self.ref``
    (its dict/set reference) in an ``@initialize`` rule and provide ``assert_equals`` and
    ``insert_one`` (one mutation through the subclass's insert path)."""

    def __init__(self):
        super().__init__()
        self.tmpdir = tempfile.mkdtemp(prefix="bulkhash-stateful-")
        self.saved = 0
        self.t = None
        self.large_left = 0

    def teardown(self):
        try:
            if self.t is not None:
                self.assert_equals(self.t, self.ref)
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    # -------------------------------------------------------------- helpers
    def setup_common(self, kd, fixed, capacity, mlf, seed, large):
        self.kd = np.dtype(kd)
        self.fixed = fixed
        # large batches per run: they are slow to check (and on the simulator, to run)
        self.large_left = 2 if large and not on_simulator() else 0
        kwargs = dict(growable=not fixed, max_load_factor=mlf, seed=seed)
        note(f"table: key_dtype={kd} fixed={fixed} capacity={capacity} {kwargs}")
        event(f"device: {bulkhash.get_default_device()}")
        return kwargs

    def draw_keys(self, data, max_size=40):
        """A batch of keys (array of key dtype), and the same keys as the call's argument:
        the array, or sometimes a Python list."""
        elems = key_values(self.kd)
        if self.ref:
            elems = st.one_of(elems, st.sampled_from(list(self.ref)))
        keys = data.draw(st.lists(elems, max_size=max_size), label="keys")
        arr = key_array(keys, self.kd)
        return arr, (keys if data.draw(st.booleans(), label="keys as list") else arr)

    def check_fixed_failure(self, keys, failed, before: set):
        """What a TableFullError must mean: exactly the reported positions did not go in."""
        event("fixed table: TableFullError")
        assert self.fixed, "a growable table raised TableFullError"
        assert failed.dtype == np.int64 and failed.size > 0
        assert np.all(np.diff(failed) > 0) and failed[0] >= 0 and failed[-1] < keys.size
        mask = np.zeros(keys.size, bool)
        mask[failed] = True
        failed_keys = set(keys[mask].tolist())
        assert not failed_keys & set(keys[~mask].tolist()), "a key both failed and went in"
        assert not failed_keys & before, "a key already present was reported as failed"
        assert not self.t.contains(keys[mask]).any(), "a failed key is in the table"
        assert len(self.t) == self.t.capacity, "keys were refused while the table had room"

    # -------------------------------------------------------------- shared rules
    @invariant()
    def size_matches(self):
        if self.t is not None:
            assert len(self.t) == len(self.ref)
            check_sizes(self.t)

    @rule()
    def check_everything(self):
        self.assert_equals(self.t, self.ref)

    @rule(data=st.data())
    def erase(self, data):
        keys, arg = self.draw_keys(data)
        expected = apply_erase(self.ref, keys)
        if data.draw(st.booleans(), label="status"):
            removed, flags = self.t.erase(arg, status=True)
            np.testing.assert_array_equal(
                flags, np.where(expected, 0, int(Status.KEY_NOT_FOUND)).astype(flags.dtype))
        else:
            removed = self.t.erase(arg)
        assert removed.dtype == np.bool_
        np.testing.assert_array_equal(removed, expected)
        assert not self.t.contains(keys).any()

    @precondition(lambda self: self.large_left > 0 and len(self.ref) > 100)
    @rule(seed=st.integers(0, 2**32 - 1))
    def erase_large(self, seed):
        """Erase a batch big enough for the multi-threaded kernel: most present keys (some
        twice), plus absent ones."""
        self.large_left -= 1
        rng = np.random.default_rng(seed)
        present = np.array(list(self.ref), dtype=self.kd)
        keys = np.concatenate([present[rng.integers(0, present.size, PARALLEL_BATCH)],
                               random_keys(rng, self.kd, 3000)])
        expected = apply_erase(self.ref, keys)
        np.testing.assert_array_equal(self.t.erase(keys), expected)
        assert not self.t.contains(keys).any()

    @rule(n=st.one_of(st.integers(0, 50), st.integers(0, 5000)))
    def reserve(self, n):
        capacity = self.t.capacity
        if self.fixed and len(self.t) + n > capacity:
            before = snapshot(self.t)
            with pytest.raises(ValueError, match="capacity"):
                self.t.reserve(n)
            assert snapshot(self.t) == before
            return
        self.t.reserve(n)
        assert self.t.capacity >= len(self.t) + n
        if self.fixed:
            assert self.t.capacity == capacity
        if len(self.t) + n <= capacity:
            assert self.t.capacity == capacity, "reserve grew a table that had room"

    @rule()
    def clear(self):
        capacity = self.t.capacity
        self.t.clear()
        self.ref.clear()
        assert len(self.t) == 0 and self.t.capacity == capacity

    @rule(data=st.data(), switch=st.booleans())
    def copy(self, data, switch):
        """A copy equals the table and is independent of it; go on with either."""
        c = self.t.copy()
        assert type(c) is type(self.t)
        self.assert_equals(c, self.ref)
        before = self.ref.copy()
        self.insert_one(data)  # mutate the original only
        self.assert_equals(c, before)
        if switch:
            self.t, self.ref = c, before

    @rule(mmap=st.booleans())
    def save_and_load(self, mmap):
        path = os.path.join(self.tmpdir, f"table{self.saved}.bh")
        self.saved += 1
        self.t.save(path)
        loaded = bulkhash.load(path, mmap=mmap)
        assert type(loaded) is type(self.t)
        for attr in ("key_dtype", "capacity", "growable", "max_load_factor", "seed"):
            assert getattr(loaded, attr) == getattr(self.t, attr), attr
        self.assert_equals(loaded, self.ref)
        self.t = loaded  # keep going with the loaded (possibly memory-mapped) table


# ==================================================================================== HashMap
class HashMapMachine(TableMachine):
    @initialize(kd=st.sampled_from(KEY_DTYPES), vd=st.sampled_from(VALUE_DTYPES),
                fixed=st.booleans(), capacity=st.sampled_from(FIXED_CAPACITIES),
                mlf=st.sampled_from(LOAD_FACTORS), seed=st.integers(0, 2**64 - 1),
                large=st.integers(0, 2).map(lambda x: x == 0))
    def init(self, kd, vd, fixed, capacity, mlf, seed, large):
        kwargs = self.setup_common(kd, fixed, capacity, mlf, seed, large)
        self.vd = np.dtype(vd)
        self.t = bulkhash.HashMap(kd, vd, capacity if fixed else capacity % 100, **kwargs)
        self.ref = {}

    def assert_equals(self, table, ref):
        assert table.value_dtype == self.vd
        assert_map_equals(table, ref)

    def draw_values(self, data, n):
        """(values array of the value dtype, the call's argument: the array or a scalar)."""
        if data.draw(st.integers(0, 4), label="scalar value?") == 0:
            v = data.draw(value_values(self.vd), label="value")
            return np.full(n, v, dtype=self.vd), v
        vals = data.draw(st.lists(value_values(self.vd), min_size=n, max_size=n), label="values")
        arr = np.array(vals, dtype=self.vd)
        return arr, arr

    def do_insert(self, keys, keys_arg, values, values_arg, mode, want_status):
        if self.vd == np.float16 and mode in ARITHMETIC:
            before = snapshot(self.t)
            with pytest.raises(TypeError, match="on_duplicate"):
                self.t.insert(keys_arg, values_arg, on_duplicate=mode)
            assert snapshot(self.t) == before
            return
        before = set(self.ref)
        failed = np.empty(0, np.int64)
        try:
            result = self.t.insert(keys_arg, values_arg, on_duplicate=mode, status=want_status)
        except bulkhash.TableFullError as err:
            failed, result = err.failed_indices, err.result
            self.check_fixed_failure(keys, failed, before)
        expected_status = apply_insert(self.ref, keys, values, mode, skip=set(failed.tolist()))
        new = len(self.ref) - len(before)
        assert (result.inserted, result.updated, result.failed, result.saturated) == (
            new, keys.size - new - failed.size, failed.size, 0)
        if want_status:
            np.testing.assert_array_equal(result.status, expected_status)
        else:
            assert result.status is None
        uniq = np.unique(keys)
        assert_same_values(self.t.get(uniq),
                           np.array([self.ref.get(k, 0) for k in uniq.tolist()], self.vd))

    @rule(data=st.data(), mode=st.sampled_from(ON_DUPLICATE), want_status=st.booleans())
    def insert(self, data, mode, want_status):
        keys, keys_arg = self.draw_keys(data)
        values, values_arg = self.draw_values(data, keys.size)
        self.do_insert(keys, keys_arg, values, values_arg, mode, want_status)

    @precondition(lambda self: self.large_left > 0)
    @rule(seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(ON_DUPLICATE),
          distinct=st.sampled_from([300, 6000, 40_000]))
    def insert_large(self, seed, mode, distinct):
        """A batch big enough for the multi-threaded kernel, with repeats and present keys."""
        self.large_left -= 1
        rng = np.random.default_rng(seed)
        n = PARALLEL_BATCH + int(rng.integers(0, 5000))
        keys = random_keys(rng, self.kd, n, distinct=distinct)
        if self.ref:
            present = np.array(list(self.ref), dtype=self.kd)
            keys[rng.integers(0, n, 2000)] = present[rng.integers(0, present.size, 2000)]
        values = random_values(rng, self.vd, n)
        self.do_insert(keys, keys, values, values, mode, want_status=True)

    def insert_one(self, data):
        key = data.draw(key_values(self.kd), label="one key")
        value = data.draw(value_values(self.vd), label="one value")
        keys = key_array([key], self.kd)
        values = np.array([value], self.vd)
        self.do_insert(keys, keys, values, values, "overwrite", False)

    @rule(data=st.data())
    def lookup(self, data):
        keys, arg = self.draw_keys(data)
        default = data.draw(value_values(self.vd), label="default")
        found = np.array([k in self.ref for k in keys.tolist()], bool)
        expected = np.array([self.ref.get(k, default) for k in keys.tolist()], self.vd)
        got = self.t.get(arg, default=default)
        assert got.dtype == self.vd
        assert_same_values(got, expected, "get")
        values, is_found = self.t.find(arg)
        np.testing.assert_array_equal(is_found, found)
        assert_same_values(values[found], expected[found], "find")
        assert not values[~found].any(), "find must give 0 where a key is absent"
        np.testing.assert_array_equal(self.t.contains(arg), found)

    @rule(data=st.data())
    def scalar_access(self, data):
        elems = key_values(self.kd)
        if self.ref:
            elems = st.one_of(elems, st.sampled_from(list(self.ref)))
        key = data.draw(elems, label="scalar key")
        present = key in self.ref
        assert (key in self.t) is present
        assert self.t.contains(key) is present
        got = self.t.get(key)
        assert not isinstance(got, np.ndarray)
        if present:
            assert_same_values(np.array([got], self.vd), np.array([self.ref[key]]))
            assert_same_values(np.array([self.t[key]], self.vd), np.array([self.ref[key]]))
        else:
            assert got == 0
            with pytest.raises(KeyError):
                self.t[key]
        value = data.draw(value_values(self.vd), label="scalar value")
        if self.fixed and not present and len(self.t) >= self.t.capacity:
            with pytest.raises(bulkhash.TableFullError):
                self.t[key] = value
            assert key not in self.t
            return
        self.t[key] = value
        self.ref[key] = np.array([value], self.vd)[0]


# ==================================================================================== HashSet
class HashSetMachine(TableMachine):
    @initialize(kd=st.sampled_from(KEY_DTYPES), fixed=st.booleans(),
                capacity=st.sampled_from(FIXED_CAPACITIES), mlf=st.sampled_from(LOAD_FACTORS),
                seed=st.integers(0, 2**64 - 1), large=st.integers(0, 2).map(lambda x: x == 0))
    def init(self, kd, fixed, capacity, mlf, seed, large):
        kwargs = self.setup_common(kd, fixed, capacity, mlf, seed, large)
        self.t = bulkhash.HashSet(kd, capacity if fixed else capacity % 100, **kwargs)
        self.ref = set()

    def assert_equals(self, table, ref):
        assert_set_equals(table, ref)

    def do_add(self, keys, arg, want_status):
        before = set(self.ref)
        failed = np.empty(0, np.int64)
        try:
            out = self.t.add(arg, status=want_status)
        except bulkhash.TableFullError as err:
            failed = err.failed_indices
            self.check_fixed_failure(keys, failed, before)
            out = None
        skip = set(failed.tolist())
        expected_new = np.zeros(keys.size, bool)
        expected_status = np.zeros(keys.size, np.uint16)
        for i, k in enumerate(keys.tolist()):
            if i in skip:
                continue
            expected_new[i] = k not in self.ref
            expected_status[i] = 0 if expected_new[i] else Status.DUPLICATE_KEY
            self.ref.add(k)
        if out is not None:
            new, flags = out if want_status else (out, None)
            assert new.dtype == np.bool_
            np.testing.assert_array_equal(new, expected_new)
            if want_status:
                np.testing.assert_array_equal(flags, expected_status)
        assert self.t.contains(np.array(sorted(set(keys.tolist()) - set(keys[failed].tolist())),
                                        self.kd)).all()

    @rule(data=st.data(), want_status=st.booleans())
    def add(self, data, want_status):
        keys, arg = self.draw_keys(data)
        self.do_add(keys, arg, want_status)

    @precondition(lambda self: self.large_left > 0)
    @rule(seed=st.integers(0, 2**32 - 1), distinct=st.sampled_from([300, 6000, 40_000]))
    def add_large(self, seed, distinct):
        self.large_left -= 1
        rng = np.random.default_rng(seed)
        n = PARALLEL_BATCH + int(rng.integers(0, 5000))
        keys = random_keys(rng, self.kd, n, distinct=distinct)
        self.do_add(keys, keys, True)

    def insert_one(self, data):
        keys = key_array([data.draw(key_values(self.kd), label="one key")], self.kd)
        self.do_add(keys, keys, False)

    @rule(data=st.data())
    def contains(self, data):
        keys, arg = self.draw_keys(data)
        expected = np.array([k in self.ref for k in keys.tolist()], bool)
        np.testing.assert_array_equal(self.t.contains(arg), expected)
        if keys.size:
            k = keys.tolist()[0]
            assert self.t.contains(k) is (k in self.ref)
            assert (k in self.t) is (k in self.ref)

    @rule(data=st.data(), op=st.sampled_from(["union", "intersection", "difference"]),
          form=st.sampled_from(["HashSet", "array", "operator"]))
    def set_algebra(self, data, op, form):
        keys, _ = self.draw_keys(data)
        other_ref = set(keys.tolist())
        other = bulkhash.HashSet(self.kd)
        other.add(keys)
        # (list operands: test_hashset.py, which also covers keys beyond int64)
        operand = {"HashSet": other, "array": keys, "operator": other}[form]
        before = snapshot(self.t)
        if form == "operator":
            result = {"union": self.t | other, "intersection": self.t & other,
                      "difference": self.t - other}[op]
        else:
            result = getattr(self.t, op)(operand)
        expected = {"union": self.ref | other_ref, "intersection": self.ref & other_ref,
                    "difference": self.ref - other_ref}[op]
        assert isinstance(result, bulkhash.HashSet) and result is not self.t
        assert result.key_dtype == self.kd
        assert_set_equals(result, expected)
        assert snapshot(self.t) == before, "set algebra changed its left operand"
        assert_set_equals(other, other_ref)
        expected_set = bulkhash.HashSet(self.kd)
        expected_set.add(np.array(sorted(expected), self.kd))
        assert result == expected_set


# ==================================================================================== Counter
class CounterMachine(TableMachine):
    @initialize(kd=st.sampled_from(KEY_DTYPES), cd=st.sampled_from(COUNT_DTYPES),
                fixed=st.booleans(), capacity=st.sampled_from(FIXED_CAPACITIES),
                mlf=st.sampled_from(LOAD_FACTORS), seed=st.integers(0, 2**64 - 1),
                large=st.integers(0, 2).map(lambda x: x == 0))
    def init(self, kd, cd, fixed, capacity, mlf, seed, large):
        kwargs = self.setup_common(kd, fixed, capacity, mlf, seed, large)
        self.cd = np.dtype(cd)
        self.max = int(np.iinfo(self.cd).max)
        self.t = bulkhash.Counter(kd, cd, capacity if fixed else capacity % 100, **kwargs)
        self.ref = {}

    def assert_equals(self, table, ref):
        assert table.count_dtype == self.cd
        assert_counter_equals(table, ref)

    def do_add(self, keys, keys_arg, counts, counts_arg, want_status):
        before = set(self.ref)
        failed = np.empty(0, np.int64)
        try:
            if counts_arg is None and not want_status:
                result = self.t.add(keys_arg)
            else:
                result = self.t.add(keys_arg, counts_arg, status=want_status)
        except bulkhash.TableFullError as err:
            failed, result = err.failed_indices, err.result
            self.check_fixed_failure(keys, failed, before)
        skip = set(failed.tolist())
        status = np.zeros(keys.size, np.uint16)
        saturated = 0
        for i, (k, c) in enumerate(zip(keys.tolist(), counts.tolist())):
            if i in skip:
                status[i] = Status.OUT_OF_CAPACITY
            elif k in self.ref:
                status[i] = Status.DUPLICATE_KEY
                total = self.ref[k] + c
                if total > self.max:
                    status[i] |= Status.COUNT_SATURATED
                    saturated += 1
                self.ref[k] = min(total, self.max)
            else:
                self.ref[k] = c
        new = len(self.ref) - len(before)
        assert (result.inserted, result.updated, result.failed, result.saturated) == (
            new, keys.size - new - failed.size, failed.size, saturated)
        if want_status:
            np.testing.assert_array_equal(result.status, status)
        uniq = np.unique(keys)
        np.testing.assert_array_equal(self.t.get(uniq),
                                      np.array([self.ref.get(k, 0) for k in uniq.tolist()],
                                               self.cd))

    @rule(data=st.data(), how=st.sampled_from(["ones", "array", "scalar"]),
          want_status=st.booleans())
    def add(self, data, how, want_status):
        keys, arg = self.draw_keys(data)
        if how == "ones":
            counts, counts_arg = np.ones(keys.size, np.uint64), None
        elif how == "scalar":
            c = data.draw(value_values(self.cd), label="count")
            counts, counts_arg = np.full(keys.size, c, np.uint64), c
        else:
            cs = data.draw(st.lists(value_values(self.cd), min_size=keys.size,
                                    max_size=keys.size), label="counts")
            counts_arg = np.array(cs, self.cd)
            counts = counts_arg.astype(np.uint64)
        self.do_add(keys, arg, counts, counts_arg, want_status)

    @precondition(lambda self: self.large_left > 0)
    @rule(seed=st.integers(0, 2**32 - 1), distinct=st.sampled_from([50, 6000, 40_000]))
    def add_large(self, seed, distinct):
        self.large_left -= 1
        rng = np.random.default_rng(seed)
        n = PARALLEL_BATCH + int(rng.integers(0, 5000))
        keys = random_keys(rng, self.kd, n, distinct=distinct)
        counts = rng.integers(0, min(self.max, 1000), n, endpoint=True).astype(self.cd)
        self.do_add(keys, keys, counts.astype(np.uint64), counts, True)

    def insert_one(self, data):
        keys = key_array([data.draw(key_values(self.kd), label="one key")], self.kd)
        self.do_add(keys, keys, np.ones(1, np.uint64), None, False)

    @rule(data=st.data())
    def get(self, data):
        keys, arg = self.draw_keys(data)
        got = self.t.get(arg)
        assert got.dtype == self.cd
        np.testing.assert_array_equal(
            got, np.array([self.ref.get(k, 0) for k in keys.tolist()], self.cd))
        if keys.size:
            k = keys.tolist()[0]
            assert self.t.get(k) == self.ref.get(k, 0)

    @rule(data=st.data())
    def most_common(self, data):
        n = data.draw(st.one_of(st.none(), st.integers(0, len(self.ref) + 2)), label="n")
        keys, counts = self.t.most_common(n)
        expected = sorted(self.ref.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        assert keys.dtype == self.kd and counts.dtype == self.cd
        assert list(zip(keys.tolist(), counts.tolist())) == expected

    @rule()
    def histogram(self):
        counts, num_keys = self.t.histogram()
        expected = sorted(collections.Counter(self.ref.values()).items())
        assert list(zip(counts.tolist(), num_keys.tolist())) == expected


TestHashMapStateful = HashMapMachine.TestCase
TestHashSetStateful = HashSetMachine.TestCase
TestCounterStateful = CounterMachine.TestCase


# ==================================================================================== on a GPU
def on_gpu(machine: type[RuleBasedStateMachine]):
    """The machine's test case with every table on the CUDA backend. On the simulator a step
    takes seconds, so a run draws a twentieth of the profile's examples (5 by default, 50 in
    the thorough profile) of at most 12 steps, without the large batches."""
    profile = settings.default

    @pytest.mark.skipif("cuda" not in DEVICES, reason="the CUDA backend is not under test")
    class OnGpu(machine.TestCase):
        settings = settings(profile, max_examples=max(3, profile.max_examples // 20),
                            stateful_step_count=min(12, profile.stateful_step_count))

        def setUp(self):
            self.previous_device = bulkhash.set_default_device("cuda")

        def tearDown(self):
            bulkhash.set_default_device(self.previous_device)

    OnGpu.__name__ = OnGpu.__qualname__ = f"{machine.__name__}OnGpu"
    return OnGpu


TestHashMapStatefulOnGpu = on_gpu(HashMapMachine)
TestHashSetStatefulOnGpu = on_gpu(HashSetMachine)
TestCounterStatefulOnGpu = on_gpu(CounterMachine)
