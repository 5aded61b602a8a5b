"""Python threads sharing tables: concurrent bulk lookups and inserts (the kernels release the
GIL), concurrent copies, refs used from several threads at once, and Numba's workqueue
threading layer (which must never be entered by two threads at once)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import bulkhash
from _ref_kernels import COUNTER_TYPES, MAP_TYPES, counter_add, map_insert
from _support import (PARALLEL_BATCH, assert_counter_equals, assert_map_equals, assert_set_equals,
                      host, sized)

# The bulk-operation tests run on each backend: a GPU table's calls take the same locks.
on_each_device = pytest.mark.usefixtures("each_device")


def run_threads(*targets, timeout=120):
    """Start every target at once (a barrier), join them, re-raise the first failure."""
    errors = []
    barrier = threading.Barrier(len(targets))

    def wrap(fn):
        def run():
            try:
                barrier.wait()
                fn()
            except BaseException as err:  # noqa: BLE001 - reported to the main thread
                errors.append(err)
        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread hung (deadlock?)"
    if errors:
        raise errors[0]


def value_of(keys):
    return keys * np.uint64(3) + np.uint64(1)


@on_each_device
def test_concurrent_inserts_and_lookups_on_one_map():
    m = bulkhash.HashMap("uint64", "uint64", capacity=16)
    writers = 3
    sizes = sized([10, 500, PARALLEL_BATCH + 1000, 3, 40_000, 100], [10, 60, 3, 30])
    batches = {}
    for w in range(writers):
        start = (w + 1) << 40
        batches[w] = []
        for size in sizes:
            batches[w].append(np.arange(start, start + size, dtype=np.uint64))
            start += size
    everything = np.concatenate([b for w in batches for b in batches[w]])
    stop = threading.Event()

    def writer(w):
        def run():
            for b in batches[w]:
                m.insert(b, value_of(b))
        return run

    def reader():
        rng = np.random.default_rng()
        while not stop.is_set():
            probe = everything[rng.integers(0, everything.size, sized(30_000, 40))]
            values, found = (host(x) for x in m.find(probe))
            # a key is either absent (not inserted yet) or has exactly its value
            np.testing.assert_array_equal(values[found], value_of(probe[found]))
            assert len(m) <= everything.size

    def writers_then_stop():
        try:
            run_threads(*[writer(w) for w in range(writers)])
        finally:
            stop.set()

    run_threads(writers_then_stop, reader, reader)
    assert_map_equals(m, dict(zip(everything.tolist(), value_of(everything))))


@on_each_device
def test_concurrent_counter_adds_are_exact():
    c = bulkhash.Counter("int64", "uint32")
    rng = np.random.default_rng(31)
    batches = [rng.integers(-500, 500, size)
               for size in sized((1000, PARALLEL_BATCH * 2, 77, 5000), (100, 7, 30))]

    def adder():
        for b in batches:
            c.add(b)

    run_threads(adder, adder, adder, adder)
    keys, counts = np.unique(np.concatenate(batches), return_counts=True)
    assert_counter_equals(c, dict(zip(keys.tolist(), (4 * counts).tolist())))


@on_each_device
def test_concurrent_set_add_erase_contains():
    s = bulkhash.HashSet("int32")
    n = sized(30_000, 40)
    ranges = [np.arange(i * 100_000, i * 100_000 + n, dtype=np.int32) for i in range(3)]

    def churn(keys):
        def run():
            for _ in range(3):
                s.add(keys)
                assert s.contains(keys).all()
                assert s.erase(keys[::2]).all()
                assert not s.contains(keys[::2]).any()
            s.add(keys[::2])
        return run

    run_threads(*[churn(r) for r in ranges])
    assert_set_equals(s, set(np.concatenate(ranges).tolist()))


@on_each_device
def test_copy_and_save_see_whole_batches(tmp_path):
    """A copy (or a save) taken while other threads insert holds each insert call entirely or
    not at all: calls are atomic with respect to readers."""
    m = bulkhash.HashMap("uint64", "uint32", capacity=8)
    n, rounds = sized((10_000, 12), (30, 3))
    batches = [np.arange(i * n, (i + 1) * n, dtype=np.uint64) for i in range(1, 2 * rounds + 1)]
    snapshots = []

    def writer():
        for b in batches:
            m.insert(b, np.uint32(7))

    def copier():
        for i in range(rounds):
            snapshots.append(m.copy())
            path = tmp_path / f"s{i}.bh"
            m.save(path)
            snapshots.append(bulkhash.load(path))

    run_threads(writer, copier)
    for snap in snapshots:
        counts = [int(host(snap.contains(b)).sum()) for b in batches]
        assert all(n in (0, b.size) for n, b in zip(counts, batches)), counts
        assert (host(snap.values()) == 7).all()


# ------------------------------------------------------------------------------- refs + threads
def test_counter_ref_from_two_threads_loses_no_counts():
    """Two threads add the same new keys through one ref at once (functions compiled with
    nogil=True run truly in parallel): every count must come out exact."""
    keys = np.arange(1, 1_000_001, dtype=np.uint32)
    ones = np.ones(keys.size, np.uint16)
    counter_add(bulkhash.Counter(*COUNTER_TYPES, capacity=4).ref(), keys[:2], ones[:2])  # compile
    for _ in range(4):
        c = bulkhash.Counter(*COUNTER_TYPES, capacity=keys.size)
        r = c.ref()
        new = [None, None]

        def adder(i):
            def run():
                new[i] = counter_add(r, keys, ones)
            return run

        run_threads(adder(0), adder(1))
        assert len(c) == keys.size
        assert int((new[0] & new[1]).sum()) == 0, "a key was new for both threads"
        assert int((new[0] | new[1]).sum()) == keys.size
        counts = c.get(keys)
        assert (counts == 2).all(), f"{int((counts != 2).sum())} keys lost an addition"


def test_map_ref_from_two_threads():
    keys = np.arange(-400_000, 400_000, dtype=np.int64)
    values = (keys % 977).astype(np.float32)
    m = bulkhash.HashMap(*MAP_TYPES, capacity=keys.size)
    r = m.ref()
    new = [None, None]

    def inserter(i):
        def run():
            new[i] = map_insert(r, keys, values)
        return run

    run_threads(inserter(0), inserter(1))
    assert int((new[0] & new[1]).sum()) == 0 and int((new[0] | new[1]).sum()) == keys.size
    assert len(m) == keys.size
    np.testing.assert_array_equal(m.get(keys), values)


# ------------------------------------------------------------------------------- workqueue layer
WORKQUEUE_SCRIPT = textwrap.dedent("""
    import threading
    import numpy as np
    import bulkhash

    tables = [bulkhash.HashMap(), bulkhash.HashSet()]
    errors = []

    def work(t, seed):
        try:
            rng = np.random.default_rng(seed)
            for _ in range(60):
                keys = rng.integers(0, 2**63, 20_000).astype(np.uint64)
                if isinstance(t, bulkhash.HashMap):
                    t.insert(keys, keys)
                    assert (t.get(keys) == keys).all()
                else:
                    t.add(keys)
                    assert t.contains(keys).all()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t, i)) for i, t in enumerate(tables)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    import numba
    assert numba.threading_layer() == "workqueue", numba.threading_layer()
    print("OK", [len(t) for t in tables])
""")


def test_two_tables_on_two_threads_under_workqueue_layer():
    """Numba's workqueue layer aborts the process if two threads enter parallel kernels at once;
    bulkhash serialises its kernels under that layer, so two tables used from two threads must
    work (every kernel, including the ones that size a table before it grows)."""
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    proc = subprocess.run([sys.executable, "-c", WORKQUEUE_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "OK" in proc.stdout
