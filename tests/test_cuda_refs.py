"""GPU refs (``bulkhash._cuda.refs``): per-thread table operations inside a user's ``@cuda.jit``
kernel, checked under Numba's CUDA simulator against Python dicts, sets and Counters, and
compiled to PTX for sm_80 without a GPU.

The simulator must be switched on before Numba is imported, and this pytest process may run with
it off, so every simulated check runs in a child Python with ``NUMBA_ENABLE_CUDASIM=1`` (as
``test_cudasim_warp.py`` does). Inputs are drawn here and passed in an ``.npz`` file; the child
runs the kernels and writes what they returned, and what the table's bulk API then says, to
another; the expected values are computed here.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import _support
from _support import edge_keys

pytest.importorskip("numba_cuda", reason="needs numba-cuda (pip install bulkhash[cuda])")

TESTS_DIR = Path(__file__).resolve().parent
BLOCK = 64  # threads per block of every simulated launch (two warps: lanes of one rendezvous)

# Loaded by every child before its test body: the warp-intrinsic shim (``install()`` also gives
# the simulator's atomics one lock) and the user kernels the tests launch.
_PRELUDE = """
import sys

import numpy as np

sys.path.insert(0, {tests_dir!r})
import cudasim_warp

cudasim_warp.install()
cudasim_warp.RENDEZVOUS_TIMEOUT_S = 20.0  # a broken rendezvous fails fast instead of stalling

from numba import cuda

import bulkhash
BLOCK = {block}


def launch(kernel, n, *args, lanes=1):
    kernel[max(1, -(-n * lanes // BLOCK)), BLOCK](*args)


@cuda.jit
def map_insert(ref, keys, values, new):
    i = cuda.grid(1)
    if i < keys.size:
        new[i] = ref.insert(keys[i], values[i])


@cuda.jit
def map_lookup(ref, keys, default, values, found):
    i = cuda.grid(1)
    if i < keys.size:
        values[i] = ref.get(keys[i], default)
        found[i] = ref.contains(keys[i])


@cuda.jit
def set_add(ref, keys, new):
    i = cuda.grid(1)
    if i < keys.size:
        new[i] = ref.add(keys[i])


@cuda.jit
def set_contains(ref, keys, found):
    i = cuda.grid(1)
    if i < keys.size:
        found[i] = ref.contains(keys[i])


@cuda.jit
def counter_add(ref, keys, counts, new):
    i = cuda.grid(1)
    if i < keys.size:
        new[i] = ref.add(keys[i], counts[i])


@cuda.jit
def counter_get(ref, keys, counts):
    i = cuda.grid(1)
    if i < keys.size:
        counts[i] = ref.get(keys[i])


@cuda.jit
def read_failed(ref, out):
    if cuda.grid(1) == 0:
        out[0] = ref.failed()


def failed(ref):
    out = np.zeros(1, np.int64)
    read_failed[1, 1](ref, out)
    return int(out[0])


def host(arr):
    return arr.copy_to_host() if hasattr(arr, "copy_to_host") else np.asarray(arr)
"""


def run_simulated(tmp_path: Path, body: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Run ``body`` under the simulator, after the prelude, with ``inputs``; its ``outputs``."""
    prelude = _PRELUDE.format(tests_dir=str(TESTS_DIR), block=BLOCK)
    return _support.run_simulated(tmp_path, prelude, body, 300, **inputs)


def distinct_keys(rng, dtype, n, avoid=()) -> np.ndarray:
    """``n`` distinct keys of ``dtype``, the edge keys (0 and all-ones included) first."""
    info = np.iinfo(dtype)
    avoid = set(avoid)
    keys = dict.fromkeys(k for k in edge_keys(dtype) if k not in avoid)
    while len(keys) < n:
        k = int(rng.integers(int(info.min), int(info.max), dtype=dtype, endpoint=True))
        if k not in avoid:
            keys[k] = None
    return rng.permutation(np.array(list(keys)[:n], dtype))


# ------------------------------------------------------------------------------- every method
@pytest.mark.parametrize("key_dtype", ["int64", "uint32"], ids=["64-bit words", "32-bit words"])
def test_map_ref_methods_match_dict(tmp_path, key_dtype):
    """insert / get / contains against a dict, on top of keys the bulk API put there first.

    Keys reach the kernel as int64 either way: a uint32 table keeps their low 32 bits, as C
    converts (so -1 is the all-ones word, one of the two reserved key words)."""
    rng = np.random.default_rng(1)
    keys = distinct_keys(rng, key_dtype, 240)
    bulk, first, second = keys[:40], keys[:160], keys[100:]  # second: 60 old keys, 80 new

    def as_kernel_keys(k):  # int64, with high bits a uint32 table drops
        return k.astype(np.int64) + np.int64(1 << 32 if key_dtype == "uint32" else 0)

    v1 = (rng.standard_normal(first.size) * 100).astype(np.float32)
    v2 = (rng.standard_normal(second.size) * 100).astype(np.float32)
    absent = distinct_keys(rng, key_dtype, 300, avoid=keys.tolist())[-40:]
    probe = np.concatenate([keys, absent])
    out = run_simulated(tmp_path, f"""
        m = bulkhash.HashMap({key_dtype!r}, "float32", capacity=400, device="cuda", group_size=1)
        m.insert(inputs["bulk"], np.float32(-7.0))
        ref = m.ref()
        for name in ("first", "second"):
            keys, values = inputs[name + "_k"], inputs[name + "_v"]
            new = np.zeros(keys.size, np.bool_)
            launch(map_insert, keys.size, ref, keys, values, new)
            outputs[name + "_new"] = new
        probe = inputs["probe"]
        values = np.zeros(probe.size, np.float32)
        found = np.zeros(probe.size, np.bool_)
        launch(map_lookup, probe.size, ref, probe, np.float32(-2.5), values, found)
        outputs.update(values=values, found=found, failed=failed(ref), size=len(m))
        keys, table_values = m.items()
        outputs.update(table_keys=host(keys), table_values=host(table_values))
    """, bulk=bulk, first_k=as_kernel_keys(first), first_v=v1, second_k=as_kernel_keys(second),
                        second_v=v2, probe=as_kernel_keys(probe))

    expected = {k: np.float32(-7.0) for k in bulk.tolist()}
    for name, ks, vs in (("first", first, v1), ("second", second, v2)):
        new = [k not in expected for k in ks.tolist()]
        np.testing.assert_array_equal(out[name + "_new"], new, err_msg=name)
        expected.update(zip(ks.tolist(), vs))
    np.testing.assert_array_equal(out["values"],
                                  [expected.get(k, np.float32(-2.5)) for k in probe.tolist()])
    np.testing.assert_array_equal(out["found"], [k in expected for k in probe.tolist()])
    assert out["failed"] == 0 and out["size"] == len(expected)
    assert dict(zip(out["table_keys"].tolist(), out["table_values"])) == expected


def test_set_and_counter_refs_match_set_and_counter(tmp_path):
    rng = np.random.default_rng(2)
    set_keys = distinct_keys(rng, "uint64", 150)
    probe = np.concatenate([set_keys[:100], distinct_keys(rng, "uint64", 190)[-40:]])
    counter_keys = distinct_keys(rng, "uint32", 120)
    counts = rng.integers(1, 9, counter_keys.size).astype(np.uint16)
    out = run_simulated(tmp_path, """
        s = bulkhash.HashSet("uint64", capacity=200, device="cuda", group_size=1)
        ref = s.ref()
        keys = inputs["set_keys"]
        new_first = np.zeros(100, np.bool_)
        new_again = np.zeros(keys.size, np.bool_)
        launch(set_add, 100, ref, keys[:100], new_first)
        launch(set_add, keys.size, ref, keys, new_again)
        found = np.zeros(inputs["probe"].size, np.bool_)
        launch(set_contains, found.size, ref, inputs["probe"], found)
        outputs.update(new_first=new_first, new_again=new_again, found=found,
                       set_keys_after=host(s.keys()), set_failed=failed(ref))

        c = bulkhash.Counter("uint32", "uint16", capacity=200, device="cuda", group_size=1)
        ref = c.ref()
        keys, counts = inputs["counter_keys"], inputs["counts"]
        new = np.zeros(keys.size, np.bool_)
        launch(counter_add, keys.size, ref, keys, counts, new)
        new_again = np.zeros(keys.size, np.bool_)
        launch(counter_add, keys.size, ref, keys, counts, new_again)
        got = np.zeros(keys.size + 1, np.uint16)
        launch(counter_get, got.size, ref, np.append(keys, np.uint32(12345)), got)
        outputs.update(counter_new=new, counter_new_again=new_again, counter_got=got,
                       counter_bulk=host(c.get(keys)), counter_failed=failed(ref))
    """, set_keys=set_keys, probe=probe, counter_keys=counter_keys, counts=counts)

    assert out["new_first"].all()
    np.testing.assert_array_equal(out["new_again"], np.arange(set_keys.size) >= 100)
    np.testing.assert_array_equal(out["found"], np.isin(probe, set_keys))
    assert set(out["set_keys_after"].tolist()) == set(set_keys.tolist())
    assert out["new_first"].sum() + out["new_again"].sum() == set_keys.size
    assert out["counter_new"].all() and not out["counter_new_again"].any()
    expected = 2 * counts if 12345 in counter_keys else np.append(2 * counts, 0)
    np.testing.assert_array_equal(out["counter_got"], expected)
    np.testing.assert_array_equal(out["counter_bulk"], 2 * counts)
    assert out["set_failed"] == 0 and out["counter_failed"] == 0


# ------------------------------------------------------------------------------- concurrency
def test_concurrent_adds_lose_nothing_and_one_thread_sees_each_key_new(tmp_path):
    """Every key recurs across the threads of a block and across blocks: exactly one occurrence
    is new, every count is kept (uint8 counts saturate at 255 whatever the order), and a map
    whose values are a function of the key ends with exactly those values."""
    rng = np.random.default_rng(3)
    pool = distinct_keys(rng, "uint64", 40)
    keys = rng.permutation(np.concatenate([pool, pool[rng.integers(0, pool.size, 400)]]))
    counts = rng.integers(1, 12, keys.size).astype(np.uint8)
    counts[keys == pool[0]] = 100  # this key's total passes 255
    out = run_simulated(tmp_path, """
        keys, counts = inputs["keys"], inputs["counts"]
        s = bulkhash.HashSet("uint64", capacity=64, device="cuda", group_size=1)
        c = bulkhash.Counter("uint64", "uint8", capacity=64, device="cuda", group_size=1)
        m = bulkhash.HashMap("uint64", "uint64", capacity=64, device="cuda", group_size=1)
        for name in ("set_new", "counter_new", "map_new"):
            outputs[name] = np.zeros(keys.size, np.bool_)
        launch(set_add, keys.size, s.ref(), keys, outputs["set_new"])
        launch(counter_add, keys.size, c.ref(), keys, counts, outputs["counter_new"])
        launch(map_insert, keys.size, m.ref(), keys, keys * np.uint64(3), outputs["map_new"])
        outputs.update(set_len=len(s), counter_counts=host(c.get(inputs["pool"])),
                       counter_len=len(c), map_values=host(m.get(inputs["pool"])),
                       map_len=len(m))
    """, keys=keys, counts=counts, pool=pool)

    total = collections.Counter()
    for k, n in zip(keys.tolist(), counts.tolist()):
        total[k] += n
    for name in ("set_new", "counter_new", "map_new"):
        new = out[name]
        assert collections.Counter(keys[new].tolist()) == dict.fromkeys(pool.tolist(), 1), name
    assert out["set_len"] == out["counter_len"] == out["map_len"] == pool.size
    np.testing.assert_array_equal(out["counter_counts"],
                                  [min(total[k], 255) for k in pool.tolist()])
    assert out["counter_counts"][0] == 255
    np.testing.assert_array_equal(out["map_values"], pool * np.uint64(3))


# ------------------------------------------------------------------------------- capacity
@pytest.mark.parametrize("growable", [False, True], ids=["fixed", "growable"])
def test_inserts_past_capacity_fail_and_are_counted_nothing_else_lost(tmp_path, growable):
    """The ref's room is capacity - len: exactly that many new keys go in, however many threads
    race for them; the rest return False and count in failed(); keys already present are still
    counted, before and after the table filled up; the table does not grow."""
    rng = np.random.default_rng(4)
    keys = distinct_keys(rng, "uint32", 130)
    old, fresh = keys[:10], keys[10:]  # 10 keys in the table before the ref; 120 new ones
    # each old key three times, mixed with the new keys (they race for the room meanwhile)
    stream = rng.permutation(np.concatenate([np.repeat(old, 3), fresh]))
    counts = rng.integers(1, 5, stream.size).astype(np.uint32)
    out = run_simulated(tmp_path, f"""
        c = bulkhash.Counter("uint32", "uint32", capacity=40, growable={growable},
                             device="cuda", group_size=1)
        c.add(inputs["old"], np.uint32(1))
        capacity = c.capacity
        ref = c.ref()
        stream, counts = inputs["stream"], inputs["counts"]
        new = np.zeros(stream.size, np.bool_)
        launch(counter_add, stream.size, ref, stream, counts, new)
        outputs.update(new=new, failed_after_fill=failed(ref), len_after_fill=len(c))
        # at capacity, keys already there still count; the refused ones are refused again
        new_again = np.zeros(stream.size, np.bool_)
        launch(counter_add, stream.size, ref, stream, counts, new_again)
        outputs.update(new_again=new_again, failed=failed(ref), host_failed=ref.failed_inserts,
                       size=len(c), capacity_unchanged=c.capacity == capacity,
                       contains=host(c.contains(stream)), got=host(c.get(stream)))
    """, old=old, stream=stream, counts=counts)

    room = 40 - old.size
    is_fresh = np.isin(stream, fresh)
    new = out["new"]
    assert new.sum() == room and not new[~is_fresh].any()
    assert out["failed_after_fill"] == fresh.size - room and out["len_after_fill"] == 40
    assert not out["new_again"].any()
    assert out["failed"] == out["host_failed"] == 2 * (fresh.size - room)
    assert out["size"] == 40 and out["capacity_unchanged"]
    stored = new | ~is_fresh
    np.testing.assert_array_equal(out["contains"], stored)
    total = collections.Counter(dict.fromkeys(old.tolist(), 1))
    for k, n, keep in zip(stream.tolist(), counts.tolist(), stored):
        if keep:
            total[k] += 2 * n
    np.testing.assert_array_equal(out["got"], [total[k] for k in stream.tolist()])


# ------------------------------------------------------------------------------- stale refs
@pytest.mark.parametrize("cause", ["reserve", "clear"])
def test_stale_ref_is_ignored_and_counted(tmp_path, cause):
    """After the table was grown (its slot array replaced) or cleared, every operation on an old
    ref is ignored -- insert False, get the default, contains False -- and counted in failed();
    the table is untouched, and a new ref works."""
    out = run_simulated(tmp_path, f"""
        m = bulkhash.HashMap("int64", "float32", capacity=16, device="cuda", group_size=1)
        m.insert(np.array([1, 2], np.int64), np.array([1.0, 2.0], np.float32))
        old = m.ref()
        m.{"reserve(1000)" if cause == "reserve" else "clear()"}
        keys = np.array([1, 3], np.int64)
        new = np.ones(2, np.bool_)
        launch(map_insert, 2, old, keys, np.full(2, 9.0, np.float32), new)
        values = np.zeros(2, np.float32)
        found = np.ones(2, np.bool_)
        launch(map_lookup, 2, old, keys, np.float32(-1.0), values, found)
        outputs.update(new=new, values=values, found=found, failed=failed(old),
                       host_failed=old.failed_inserts, size=len(m),
                       table=host(m.get(np.array([1, 2, 3], np.int64), -5.0)))
        fresh, fresh_new = m.ref(), np.zeros(2, np.bool_)
        launch(map_insert, 2, fresh, keys, np.full(2, 9.0, np.float32), fresh_new)
        outputs.update(fresh_new=fresh_new, fresh_failed=failed(fresh),
                       table_after=host(m.get(np.array([1, 2, 3], np.int64), -5.0)))
    """)
    assert not out["new"].any() and not out["found"].any()
    np.testing.assert_array_equal(out["values"], [-1.0, -1.0])
    assert out["failed"] == out["host_failed"] == 6  # 2 inserts, 2 gets, 2 contains
    if cause == "reserve":
        assert out["size"] == 2
        np.testing.assert_array_equal(out["table"], [1.0, 2.0, -5.0])
        np.testing.assert_array_equal(out["fresh_new"], [False, True])
    else:
        assert out["size"] == 0
        np.testing.assert_array_equal(out["table"], [-5.0, -5.0, -5.0])
        np.testing.assert_array_equal(out["fresh_new"], [True, True])
    assert out["fresh_failed"] == 6  # the table's counter: the fresh ref added nothing to it
    np.testing.assert_array_equal(out["table_after"][[0, 2]], [9.0, 9.0])


# ------------------------------------------------------------------------------- groups
def test_cooperative_groups_on_a_group_size_4_table(tmp_path):
    """On a table with group_size=4 each method is called by the 4 lanes of a group together;
    a group whose lanes pass different keys is refused and counted, not let loose on the table."""
    rng = np.random.default_rng(5)
    pool = distinct_keys(rng, "uint64", 24)
    keys = rng.permutation(np.concatenate([pool, pool[rng.integers(0, pool.size, 40)]]))
    out = run_simulated(tmp_path, """
        @cuda.jit
        def group_add(ref, keys, new, counts):
            t = cuda.grid(1)
            g = t // 4
            if g < keys.size:  # uniform across the group: all 4 lanes call, or none
                n = ref.add(keys[g], 1)
                c = ref.get(keys[g])
                if t % 4 == 0:
                    new[g] = n
                counts[t] = c

        c = bulkhash.Counter("uint64", "uint32", capacity=64, device="cuda", group_size=4)
        ref = c.ref()
        keys = inputs["keys"]
        new = np.zeros(keys.size, np.bool_)
        seen = np.zeros(4 * keys.size, np.uint32)
        launch(group_add, keys.size, ref, keys, new, seen, lanes=4)
        outputs.update(new=new, lanes_agree=(seen.reshape(-1, 4) == seen[::4, None]).all(),
                       counts=host(c.get(inputs["pool"])), failed=failed(ref))
        # per-thread use of a group_size=4 table: each lane its own key
        misuse = np.arange(1000, 1064, dtype=np.uint64)
        new = np.ones(misuse.size, np.bool_)
        launch(counter_add, misuse.size, ref, misuse, np.ones(misuse.size, np.uint32), new)
        outputs.update(misuse_new=new, misuse_failed=failed(ref), size=len(c))
    """, keys=keys, pool=pool)
    assert collections.Counter(keys[out["new"]].tolist()) == dict.fromkeys(pool.tolist(), 1)
    assert out["lanes_agree"]
    expected = collections.Counter(keys.tolist())
    np.testing.assert_array_equal(out["counts"], [expected[k] for k in pool.tolist()])
    assert out["failed"] == 0
    assert not out["misuse_new"].any()
    assert out["misuse_failed"] == 64 // 4 and out["size"] == pool.size


# ------------------------------------------------------------------------------- the docs
def test_fused_pipeline_example(tmp_path):
    """The module docs' example runs as written (its GPU lines included) and prints what the
    docs say; its kernel, on a few hundred k-mers, counts each repeated k-mer's occurrences - 1."""
    rng = np.random.default_rng(6)
    pool = distinct_keys(rng, "uint64", 120)
    kmers = pool[rng.zipf(1.6, 400) % pool.size]
    out = run_simulated(tmp_path, """
        import contextlib
        import doctest
        import io

        import bulkhash._cuda.refs as R

        namespace = {}
        got, wanted = [], []
        for example in doctest.DocTestParser().get_examples(R.__doc__):
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(example.source, "<refs docs>", "single"), namespace)
            got.append(printed.getvalue().strip())
            wanted.append(example.want.strip())
        outputs.update(got=np.array(got), wanted=np.array(wanted))

        seen = bulkhash.HashSet("uint64", capacity=200, device="cuda", group_size=1)
        repeats = bulkhash.Counter("uint64", "uint32", capacity=200, device="cuda", group_size=1)
        kmers = inputs["kmers"]
        launch(namespace["count_repeats"], kmers.size, cuda.to_device(kmers), seen.ref(),
               repeats.ref())
        keys, counts = repeats.items()
        outputs.update(keys=host(keys), counts=host(counts), seen=len(seen))
    """, kmers=kmers)
    assert out["got"].size >= 6 and "count_repeats" not in " ".join(out["got"])
    np.testing.assert_array_equal(out["got"], out["wanted"])
    occurrences = collections.Counter(kmers.tolist())
    expected = {k: n - 1 for k, n in occurrences.items() if n > 1}
    assert dict(zip(out["keys"].tolist(), out["counts"].tolist())) == expected
    assert out["seen"] == len(occurrences)


# ------------------------------------------------------------------------------- PTX
_PTX_SCRIPT = """
import types as pytypes

# Without a GPU: device functions and overloads ask the driver for the current device while
# they compile; answer for an sm_80 one (only the compute capability is read).
import numba.cuda.dispatcher as D
D.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(8, 0))

from numba import cuda, types
from bulkhash._cuda.refs import ref_type


def map_kernel(ref, keys, values, out, found):
    i = cuda.grid(1)
    if i < keys.size:
        found[i] = ref.insert(keys[i], values[i])
        out[i] = ref.get(keys[i], values[i])
        found[i] = ref.contains(keys[i]) and ref.get(keys[i]) != 0 and ref.failed() == 0


def set_kernel(ref, keys, out):
    i = cuda.grid(1)
    if i < keys.size:
        out[i] = ref.add(keys[i]) + 2 * ref.contains(keys[i]) + ref.failed()


def counter_kernel(ref, keys, out):
    i = cuda.grid(1)
    if i < keys.size:
        out[i] = (ref.add(keys[i], 1) + ref.get(keys[i]) + ref.get(keys[i], 5)
                  + ref.contains(keys[i]) + ref.failed())


CASES = {{
    "uint32": (("uint32", "float32"), ("uint32",), ("int32", "uint16")),
    "uint64": (("int64", "float64"), ("uint64",), ("uint64", "uint32")),
}}
map_types, set_types, counter_types = CASES[{word!r}]
i64 = types.int64[::1]
for name, kernel, ref, args in (
        ("map", map_kernel, ref_type("HashMap", *map_types),
         (i64, types.float64[::1], types.float64[::1], types.boolean[::1])),
        ("set", set_kernel, ref_type("HashSet", *set_types), (i64, i64)),
        ("counter", counter_kernel, ref_type("Counter", *counter_types), (i64, i64))):
    ptx, _ = cuda.compile_ptx(kernel, (ref,) + args, cc=(8, 0))
    with open({out_dir!r} + "/" + name + ".ptx", "w") as f:
        f.write(ptx)
"""


WORDS = ("uint32", "uint64")


@pytest.fixture(scope="module")
def ptx_jobs(tmp_path_factory):
    """Both word sizes' compiles, started together (one child each; compiling is most of the
    time). Children still running when the module ends are stopped."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    jobs = {}
    for word in WORDS:
        out_dir = tmp_path_factory.mktemp(f"ptx_{word}")
        script = _PTX_SCRIPT.format(word=word, out_dir=str(out_dir))
        jobs[word] = out_dir, subprocess.Popen([sys.executable, "-c", script], env=env,
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                               text=True)
    yield jobs
    for _, job in jobs.values():
        if job.poll() is None:  # its test was deselected, or timed out
            job.kill()
            job.communicate()


@pytest.mark.parametrize("word", WORDS)
def test_every_ref_method_compiles_to_ptx_without_a_gpu(ptx_jobs, word):
    out_dir, job = ptx_jobs[word]
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stderr[-4000:]
    width = word[-2:]
    for name in ("map", "set", "counter"):
        ptx = (out_dir / f"{name}.ptx").read_text()
        assert ".target sm_80" in ptx, name
        assert f"atom.global.cas.b{width}" in ptx, name  # the key claim (and value combine)
        assert "match.any.sync" in ptx, name  # the group's key-agreement check
