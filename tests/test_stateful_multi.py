"""A hypothesis state machine for the multi-value tables: random mixes of insert (small batches
and, on the CPU, batches big enough for the threaded kernels), erase, reserve, clear, copy and
save/load on MultiMap (a slot per pair or ``values_per_slot`` B > 1) and BucketListMap (drawn
bucket shapes), growable or fixed, with or without ``max_values_per_key``; after every step the
table is compared with a dict of lists (``test_multimap.Reference``): per-pair status flags,
removed counts, and every view (``get`` in CSR form with each key's values in order, ``count``,
``contains``, ``items``, ``keys``, ``len``, ``num_keys``).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

import bulkhash
from _support import (KEY_DTYPES, PARALLEL_BATCH, key_array, key_values, on_simulator,
                      random_keys, random_values, value_values)
from test_multimap import Reference, assert_multimap_equals
from test_stateful import on_gpu

Status = bulkhash.Status
VALUE_DTYPES = [np.dtype(d) for d in ("bool", "int8", "uint16", "int32", "float32", "float64",
                                      "uint64")]
#: (values_per_slot,) for MultiMap; (min_bucket_size, max_bucket_size, grow_factor) for
#: BucketListMap.
LAYOUTS = [("MultiMap", dict(values_per_slot=1)), ("MultiMap", dict(values_per_slot=2)),
           ("MultiMap", dict(values_per_slot=6)),
           ("BucketListMap", dict(min_bucket_size=1, max_bucket_size=1024, grow_factor=2.0)),
           ("BucketListMap", dict(min_bucket_size=2, max_bucket_size=3, grow_factor=1.5)),
           ("BucketListMap", dict(min_bucket_size=1, max_bucket_size=1, grow_factor=1.0))]


class MultiValueMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmpdir = tempfile.mkdtemp(prefix="bulkhash-stateful-multi-")
        self.saved = 0
        self.t = None

    def teardown(self):
        try:
            if self.t is not None:
                assert_multimap_equals(self.t, self.ref)
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    @initialize(layout=st.sampled_from(LAYOUTS), kd=st.sampled_from(KEY_DTYPES),
                vd=st.sampled_from(VALUE_DTYPES), fixed=st.booleans(),
                capacity=st.sampled_from([0, 3, 40, 500]),
                max_values=st.sampled_from([None, None, 1, 3]),
                seed=st.integers(0, 2**64 - 1), large=st.integers(0, 2).map(lambda x: x == 0))
    def init(self, layout, kd, vd, fixed, capacity, max_values, seed, large):
        name, shape = layout
        self.kd, self.vd, self.fixed = np.dtype(kd), np.dtype(vd), fixed
        self.large_left = 2 if large and not on_simulator() else 0
        kwargs = dict(shape, growable=not fixed, max_values_per_key=max_values, seed=seed)
        note(f"table: {name}({kd}, {vd}, capacity={capacity}, {kwargs})")
        event(f"{name} on {bulkhash.get_default_device()}")
        self.t = getattr(bulkhash, name)(kd, vd, capacity if fixed else capacity % 50, **kwargs)
        self.ref = Reference(vd, max_values=max_values)

    # -------------------------------------------------------------- helpers
    def draw_keys(self, data, max_size=40):
        elems = key_values(self.kd)
        live = list(self.ref.live())
        if live:
            elems = st.one_of(elems, st.sampled_from(live))
        return key_array(data.draw(st.lists(elems, max_size=max_size), label="keys"), self.kd)

    def do_insert(self, keys, values):
        failed = np.empty(0, np.int64)
        try:
            result = self.t.insert(keys, values, status=True)
        except bulkhash.TableFullError as err:
            assert self.fixed, "a growable table raised TableFullError"
            event("fixed table: TableFullError")
            failed, result = np.asarray(err.failed_indices), err.result
            assert failed.dtype == np.int64 and np.all(np.diff(failed) > 0)
            for k in np.unique(keys[failed]).tolist():  # a key's refused pairs are its last
                refused = np.isin(np.flatnonzero(keys == k), failed)
                assert refused[np.argmax(refused):].all(), k
        expected = self.ref.insert(keys, values, skip=set(failed.tolist()))
        np.testing.assert_array_equal(result.status, expected)
        assert result.failed == failed.size
        assert result.max_values_reached == int((expected == Status.MAX_VALUES_REACHED).sum())
        assert result.stored == keys.size - failed.size - result.max_values_reached

    # -------------------------------------------------------------- rules
    @rule(data=st.data(), scalar_value=st.booleans())
    def insert(self, data, scalar_value):
        keys = self.draw_keys(data)
        if scalar_value:
            value = data.draw(value_values(self.vd), label="value")
            values = np.full(keys.size, value, self.vd)
        else:
            values = np.array(data.draw(st.lists(value_values(self.vd), min_size=keys.size,
                                                 max_size=keys.size), label="values"), self.vd)
        self.do_insert(keys, values)

    @precondition(lambda self: self.large_left > 0)
    @rule(seed=st.integers(0, 2**32 - 1), distinct=st.sampled_from([50, 3000, 20_000]))
    def insert_large(self, seed, distinct):
        """A batch past the parallel threshold: every thread's range and the serial pass."""
        self.large_left -= 1
        rng = np.random.default_rng(seed)
        n = PARALLEL_BATCH + int(rng.integers(0, 3000))
        keys = random_keys(rng, self.kd, n, distinct=distinct)
        self.do_insert(keys, random_values(rng, self.vd, n))

    @rule(data=st.data())
    def erase(self, data):
        keys = self.draw_keys(data)
        removed = self.t.erase(keys)
        assert removed.dtype == np.int64
        np.testing.assert_array_equal(removed, self.ref.erase(keys))
        assert not self.t.contains(keys).any()

    @rule(data=st.data())
    def query(self, data):
        """get / count / contains on a batch with repeats, present and absent keys."""
        keys = self.draw_keys(data)
        offsets, values = self.t.get(keys)
        expected = [self.ref.lists.get(k, []) for k in keys.tolist()]
        np.testing.assert_array_equal(np.diff(offsets), [len(v) for v in expected])
        flat = np.array([v for vs in expected for v in vs], self.vd)
        assert values.dtype == self.vd
        np.testing.assert_array_equal(values.view(f"u{self.vd.itemsize}"),
                                      flat.view(f"u{self.vd.itemsize}"))
        np.testing.assert_array_equal(self.t.count(keys), [len(v) for v in expected])

    @rule()
    def check_everything(self):
        assert_multimap_equals(self.t, self.ref)

    @rule(n=st.one_of(st.integers(0, 30), st.integers(0, 3000)))
    def reserve(self, n):
        if self.fixed and len(self.t) + n > self.t.capacity:
            with pytest.raises(ValueError, match="capacity"):
                self.t.reserve(n)
            return
        self.t.reserve(n)
        assert self.t.capacity >= len(self.t) + n

    @rule()
    def clear(self):
        capacity = self.t.capacity
        self.t.clear()
        self.ref.lists.clear()
        assert len(self.t) == 0 and self.t.num_keys == 0 and self.t.capacity == capacity

    @rule(data=st.data(), switch=st.booleans())
    def copy(self, data, switch):
        """A copy equals the table and does not change with it; go on with either."""
        c = self.t.copy()
        before = Reference(self.vd, self.ref.max_values)
        before.lists.update({k: list(v) for k, v in self.ref.lists.items()})
        keys = self.draw_keys(data, max_size=5)
        self.do_insert(keys, np.zeros(keys.size, self.vd))  # the original only
        assert_multimap_equals(c, before)
        if switch:
            self.t, self.ref = c, before

    @rule(mmap=st.booleans())
    def save_and_load(self, mmap):
        path = os.path.join(self.tmpdir, f"multi{self.saved}.bh")
        self.saved += 1
        self.t.save(path)
        loaded = bulkhash.load(path, mmap=mmap)
        assert type(loaded) is type(self.t) and loaded._params() == self.t._params()
        assert_multimap_equals(loaded, self.ref)
        self.t = loaded


TestMultiValueStateful = MultiValueMachine.TestCase
TestMultiValueStatefulOnGpu = on_gpu(MultiValueMachine)
