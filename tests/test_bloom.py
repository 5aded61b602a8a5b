"""BloomFilter: no false negatives, the false-positive rate against its target on a million absent
keys, sizing against an independent exact formula, merging, save/load, refs, bad input.

Every test runs on each backend (the CUDA half on Numba's CUDA simulator in CI). References are
independent of the code under test: exact combinatorics with Python integers for the sizing
formula, the filter's bits counted with NumPy for ``estimated_fpr``, the added keys themselves for
false negatives, disjoint absent keys for the false-positive rate, and the CPU backend's bits for
the device's.
"""

from __future__ import annotations

import math
import textwrap
from fractions import Fraction

import numba
import numpy as np
import pytest

import bulkhash
from _support import KEY_DTYPES, edge_keys, random_keys, sized
from bulkhash.bloom import BloomFilter, blocked_fpr, plan

try:  # (a module global: the CUDA simulator swaps the globals a kernel sees, not its closure)
    from numba import cuda
except ImportError:  # pragma: no cover - numba-cuda not installed
    cuda = None

pytestmark = pytest.mark.usefixtures("each_device")


def absent_and_present(rng, dtype, n_present: int, n_absent: int):
    """Disjoint random keys of ``dtype``: present ones even, absent ones odd (bit patterns)."""
    info = np.iinfo(dtype)
    draw = lambda n: rng.integers(int(info.min), int(info.max), n, dtype=dtype, endpoint=True)
    one = dtype.type(1)
    return draw(n_present) & ~one, draw(n_absent) | one


def filter_bits_reference(bf: BloomFilter) -> float:
    """``estimated_fpr`` recomputed from the saved bits with NumPy: mean of (fill ** k)."""
    _, _, words = bf._save_state()
    per_block = np.unpackbits(words.view(np.uint8)).reshape(bf.n_blocks, -1).sum(axis=1)
    return float(np.mean((per_block / bf.block_bits) ** bf.num_hashes))


# ------------------------------------------------------------------ never a false negative
@pytest.mark.parametrize("kd", KEY_DTYPES, ids=str)
@pytest.mark.parametrize("block_bits", [64, 512])
def test_every_added_key_is_found(kd, block_bits):
    rng = np.random.default_rng(1)
    keys = np.concatenate([np.array(edge_keys(kd), kd), random_keys(rng, kd, sized(3000, 150))])
    bf = BloomFilter(keys.size, 0.01, key_dtype=kd, block_bits=block_bits)
    assert not bf.contains(keys).any() and bf.estimated_fpr == 0.0  # empty: nothing is there
    bf.add(keys)
    assert bf.contains(keys).all()
    assert bf.n_added == keys.size
    # scalars, lists of Python ints (2**64 - 1 stays exact), `in`
    for k in edge_keys(kd):
        assert bf.contains(k) is True and k in bf
    assert bf.contains(edge_keys(kd)).tolist() == [True] * len(edge_keys(kd))
    assert bf.contains(np.array([], kd)).shape == (0,)


def test_adding_again_changes_nothing():
    keys = np.arange(sized(2000, 100), dtype=np.uint64)
    bf = BloomFilter(keys.size)
    bf.add(keys)
    before = bf._save_state()[2]
    bf.add(keys[::-1])
    bf.add(keys[0])
    np.testing.assert_array_equal(bf._save_state()[2], before)
    assert bf.n_added == 2 * keys.size + 1


@pytest.mark.cpu_sized
@pytest.mark.parametrize("n_threads", [1, 2, 3, 5])
def test_parallel_add_sets_exactly_the_serial_bits(n_threads):
    """The filter-partitioned parallel add (any thread count, uneven splits, more threads than
    blocks) sets the same bits as adding the keys one small batch at a time."""
    from bulkhash._cpu import bloom as CB

    rng = np.random.default_rng(n_threads)
    for capacity, n in ((200_000, 300_000), (20, 50_000)):  # (20 keys: 1 block, overfilled)
        keys = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
        whole, pieces = BloomFilter(capacity), BloomFilter(capacity)
        CB.add_parallel(whole._bits, *whole._geometry, np.uint64(whole.seed), keys, n_threads)
        for part in np.array_split(keys, 97):
            CB.add_serial(pieces._bits, *pieces._geometry, np.uint64(pieces.seed), part)
        assert whole == pieces
        assert whole.contains(keys).all()


@pytest.mark.cpu_sized
def test_large_batches_take_the_parallel_paths():
    rng = np.random.default_rng(3)
    keys, others = absent_and_present(rng, np.dtype(np.int64), 400_000, 400_000)
    bf = BloomFilter(400_000, 0.01, key_dtype="int64")
    bf.add(keys)
    assert bf.contains(keys).all()
    small = np.concatenate([bf.contains(part) for part in np.array_split(others, 64)])
    np.testing.assert_array_equal(bf.contains(others), small)  # parallel == serial lookups


# ------------------------------------------------------------------ the false-positive rate
_FPR_CASES = [
    pytest.param(512, 0.01, "uint64", id="512b-1%"),
    pytest.param(512, 0.001, "uint64", id="512b-0.1%", marks=pytest.mark.cpu_sized),
    pytest.param(256, 0.01, "int32", id="256b-1%-int32", marks=pytest.mark.cpu_sized),
    pytest.param(64, 0.01, "uint64", id="64b-1%", marks=pytest.mark.cpu_sized),
    pytest.param(128, 0.001, "int64", id="128b-0.1%-int64", marks=pytest.mark.cpu_sized),
]


@pytest.mark.parametrize("block_bits, target, kd", _FPR_CASES)
def test_false_positive_rate_on_a_million_absent_keys(block_bits, target, kd, tmp_path):
    """Filled to capacity, a filter reports at most its target rate of a million absent keys
    (within 4 standard deviations of sampling), and not absurdly less than the formula says (a
    filter sized far too big would pass the first check).

    On the simulator the filter is built by the CPU and loaded onto the device: adding a million
    keys there would take minutes, and the simulator's add is checked bit for bit against the
    CPU's in ``test_both_backends_set_the_same_bits``."""
    kd = np.dtype(kd)
    n, m = 1_000_000, 1_000_000
    rng = np.random.default_rng(block_bits)
    present, absent = absent_and_present(rng, kd, n, m)
    built = BloomFilter(n, target, key_dtype=kd, block_bits=block_bits, device="cpu")
    built.add(present)
    built.save(tmp_path / "f.bh")
    bf = bulkhash.load(tmp_path / "f.bh")  # on the device under test
    assert bf.device == bulkhash.get_default_device()

    measured = float(np.mean(bf.contains(absent)))
    sigma = math.sqrt(target * (1 - target) / m)
    assert measured <= target + 4 * sigma, (measured, target)
    expected = blocked_fpr(n / bf.n_blocks, block_bits, bf.num_hashes)
    assert 0.8 * target <= expected <= target  # sized for the target, with little to spare
    assert measured >= expected - 4 * sigma - 0.05 * expected, (measured, expected)
    # estimated_fpr is this filter's exact rate given its bits: it matches what was measured
    estimated = bf.estimated_fpr
    assert estimated == pytest.approx(filter_bits_reference(bf), rel=1e-12)
    assert abs(measured - estimated) <= 4 * sigma, (measured, estimated)


@pytest.mark.cpu_sized
def test_false_positive_rate_of_consecutive_ids():
    """Keys that are consecutive integers (ids) spread like random ones: added 0, 2, 4, ...,
    absent 1, 3, 5, ..."""
    n, target = 1_000_000, 0.01
    ids = np.arange(2 * n, dtype=np.uint64)
    bf = BloomFilter(n, target)
    bf.add(ids[0::2])
    measured = float(np.mean(bf.contains(ids[1::2])))
    assert abs(measured - bf.estimated_fpr) <= 4 * math.sqrt(target / n)
    assert measured <= target + 4 * math.sqrt(target * (1 - target) / n)


def test_estimated_fpr_follows_the_fill():
    n = sized(20_000, 300)
    rng = np.random.default_rng(7)
    present, _ = absent_and_present(rng, np.dtype(np.uint64), 3 * n, 0)
    bf = BloomFilter(n, 0.01)
    rates = []
    for part in np.array_split(present, 3):
        bf.add(part)
        rates.append(bf.estimated_fpr)
        assert rates[-1] == pytest.approx(filter_bits_reference(bf), rel=1e-12)
    assert 0 < rates[0] < rates[1] < rates[2] < 1
    assert rates[0] < 0.03  # at capacity: about the target (few blocks on the simulator)


# ------------------------------------------------------------------ sizing
def _exact_block_rate(B: int, k: int, c: int) -> Fraction:
    """P(k random positions all set | c keys of k random positions in a block of B bits), with
    Python integers: P(s bits set after t throws) = C(B, s) * s! * S2(t, s) / B**t."""
    t = c * k
    stirling = [1] + [0] * B  # S2(t, s) for the current t, s = 0..B
    for _ in range(t):
        stirling = [0] + [s * stirling[s] + stirling[s - 1] for s in range(1, B + 1)]
    total = Fraction(0)
    for s in range(B + 1):
        if stirling[s]:
            ways = math.comb(B, s) * math.factorial(s) * stirling[s]
            total += Fraction(ways, B**t) * Fraction(s, B) ** k
    return total


@pytest.mark.parametrize("B, k, lam", [(64, 4, 5.0), (128, 6, 11.0), (512, 3, 4.0)])
def test_blocked_fpr_matches_exact_combinatorics(B, k, lam):
    if bulkhash.get_default_device() == "cuda":
        pytest.skip("host arithmetic: once is enough")
    c_max = int(lam + 10 * math.sqrt(lam) + 20)
    exact = sum(math.exp(c * math.log(lam) - lam - math.lgamma(c + 1)) *
                float(_exact_block_rate(B, k, c)) for c in range(c_max + 1))
    assert blocked_fpr(lam, B, k) == pytest.approx(exact, rel=1e-9)
    # the classic (unblocked) approximation is lower: blocking costs something
    assert blocked_fpr(lam, B, k) > (1 - math.exp(-k * lam / B)) ** k


@pytest.mark.parametrize("block_bits", [64, 128, 256, 512])
@pytest.mark.parametrize("target", [0.1, 0.01, 0.001, 1e-5])
def test_plan_meets_the_target_with_near_minimal_memory(block_bits, target):
    if bulkhash.get_default_device() == "cuda":
        pytest.skip("host arithmetic: once is enough")
    n = 1_000_000
    n_blocks, k = plan(n, target, block_bits)
    assert blocked_fpr(n / n_blocks, block_bits, k) <= target
    # one block fewer, at any k, misses the target: the plan is the smallest filter
    for other_k in range(1, 2 * k + 3):
        assert blocked_fpr(n / (n_blocks - 1), block_bits, other_k) > target
    classic = -math.log(target) / math.log(2) ** 2  # bits per key of an ideal classic filter
    bits_per_key = n_blocks * block_bits / n
    assert classic < bits_per_key < 4 * classic  # (64-bit blocks at 1e-5: 3.6x)
    if block_bits == 512 and target >= 0.001:
        assert bits_per_key < 1.1 * classic


def test_properties_and_repr():
    bf = BloomFilter(1000, 0.01, key_dtype="int32", block_bits=256, seed=-1)
    assert bf.capacity == 1000 and bf.fpr == 0.01 and bf.block_bits == 256
    assert bf.key_dtype == np.dtype("int32") and bf.seed == 2**64 - 1
    assert bf.nbytes == bf.n_blocks * 256 // 8
    assert bf.bits_per_key == bf.nbytes * 8 / 1000
    assert bf.device == bulkhash.get_default_device()
    assert "BloomFilter(capacity=1000" in repr(bf) and "block_bits=256" in repr(bf)


# ------------------------------------------------------------------ both backends
def test_both_backends_set_the_same_bits():
    """A filter built on the device under test has exactly the bits of one built on the CPU,
    for every key dtype and block size (one addressing, compiled for each)."""
    rng = np.random.default_rng(11)
    for kd in KEY_DTYPES:
        for block_bits in (64, 512):
            keys = np.concatenate([np.array(edge_keys(kd), kd), random_keys(rng, kd, 200)])
            here = BloomFilter(300, 0.02, key_dtype=kd, block_bits=block_bits, seed=5)
            cpu = BloomFilter(300, 0.02, key_dtype=kd, block_bits=block_bits, seed=5,
                              device="cpu")
            here.add(keys)
            cpu.add(keys)
            np.testing.assert_array_equal(here._host_bits(), cpu._host_bits())
            probe = random_keys(rng, kd, 300)
            np.testing.assert_array_equal(here.contains(probe), cpu.contains(probe))
            assert here.estimated_fpr == cpu.estimated_fpr


# ------------------------------------------------------------------ merging, copy, clear
def test_union_reports_the_keys_of_both():
    rng = np.random.default_rng(2)
    n = sized(5000, 100)
    a_keys, b_keys = absent_and_present(rng, np.dtype(np.uint64), n, n)
    a, b = BloomFilter(2 * n, seed=9), BloomFilter(2 * n, seed=9)
    a.add(a_keys)
    b.add(b_keys)
    both = a | b
    assert both.contains(a_keys).all() and both.contains(b_keys).all()
    assert both.n_added == 2 * n
    np.testing.assert_array_equal(both._host_bits(), a._host_bits() | b._host_bits())
    assert not b.contains(a_keys).all()  # the operands are unchanged
    one = BloomFilter(2 * n, seed=9)
    one.add(np.concatenate([a_keys, b_keys]))
    assert both == one  # merging is adding
    a |= b
    assert a == both and a.n_added == 2 * n
    a |= a
    assert a == both


def test_union_refuses_filters_of_other_shapes():
    bf = BloomFilter(1000, 0.01, seed=1)
    for other, what in ((BloomFilter(1000, 0.01, seed=2), "seed"),
                        (BloomFilter(5000, 0.01, seed=1), "n_blocks"),
                        (BloomFilter(1000, 0.01, seed=1, key_dtype="int64"), "key_dtype"),
                        (BloomFilter(1000, 0.01, seed=1, block_bits=256), "block_bits")):
        with pytest.raises(ValueError, match=f"other.{what} is"):
            bf | other
        with pytest.raises(ValueError, match=what):
            bf |= other
    with pytest.raises(TypeError, match="must be a BloomFilter.*add"):
        bf.union([1, 2])
    # equal shape from other parameters is fine: only the geometry and seed matter
    twin = BloomFilter(1000, 0.01, seed=1)
    assert (bf | twin) == bf


def test_union_across_devices_is_refused():
    here = BloomFilter(100)
    try:
        other = BloomFilter(100, device="cpu" if here.device == "cuda" else "cuda")
    except (ImportError, RuntimeError):
        pytest.skip("no CUDA backend here")
    with pytest.raises(ValueError, match="other.device is"):
        here | other


def test_copy_clear_and_equality():
    keys = np.arange(sized(1000, 50), dtype=np.uint64)
    bf = BloomFilter(keys.size)
    bf.add(keys)
    twin = bf.copy()
    assert twin == bf and twin is not bf
    bf.clear()
    assert bf.n_added == 0 and bf.estimated_fpr == 0.0 and not bf.contains(keys).any()
    assert twin.contains(keys).all() and twin != bf
    assert (bf == "filter") is False


# ------------------------------------------------------------------ save / load
@pytest.mark.parametrize("mmap", [False, True])
def test_save_and_load_on_every_device(tmp_path, mmap):
    rng = np.random.default_rng(4)
    keys = random_keys(rng, np.dtype(np.int64), sized(5000, 100))
    bf = BloomFilter(keys.size, 0.005, key_dtype="int64", block_bits=128, seed=3)
    bf.add(keys)
    path = tmp_path / "bloom.bh"
    bf.save(path)
    devices = ["cpu"] if bf.device == "cpu" else ["cpu", "cuda"]
    for device in devices:
        back = bulkhash.load(path, mmap=mmap, device=device)
        assert isinstance(back, BloomFilter) and back.device == device
        assert (back.capacity, back.fpr, back.key_dtype, back.block_bits, back.seed,
                back.num_hashes, back.n_blocks, back.n_added) == (
                    bf.capacity, bf.fpr, bf.key_dtype, bf.block_bits, bf.seed, bf.num_hashes,
                    bf.n_blocks, bf.n_added)
        np.testing.assert_array_equal(back._host_bits(), bf._host_bits())
        assert back.contains(keys).all()
        back.add(np.array([12345], np.int64))  # a loaded filter is writable; the file is not
        assert back.contains(12345)
    assert bulkhash.load(path, device="cpu") == BloomFilter._load_state(
        *bf._save_state(), device="cpu")


def test_load_refuses_other_hashing_and_corrupt_files(tmp_path):
    from bulkhash import io

    bf = BloomFilter(100)
    params, meta, data = bf._save_state()
    with pytest.raises(io.FormatError, match="hashing"):
        BloomFilter._load_state(params, dict(meta, hashing="something-else"), data)
    with pytest.raises(io.FormatError, match="words"):
        BloomFilter._load_state(params, meta, data[:-1])
    path = tmp_path / "f.bh"
    bf.save(path)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(io.FormatError, match="checksum"):
        bulkhash.load(path)


# ------------------------------------------------------------------ bad input
def test_bad_constructor_arguments():
    for kwargs, error, match in (
            (dict(capacity=0), ValueError, "capacity"),
            (dict(capacity=-5), ValueError, "capacity"),
            (dict(capacity=1.5), TypeError, "capacity"),
            (dict(capacity=True), TypeError, "capacity"),
            (dict(capacity=10, fpr=0), ValueError, "fpr"),
            (dict(capacity=10, fpr=1.0), ValueError, "fpr"),
            (dict(capacity=10, fpr=float("nan")), ValueError, "fpr"),
            (dict(capacity=10, fpr="1%"), TypeError, "fpr"),
            (dict(capacity=10, block_bits=1024), ValueError, "block_bits"),
            (dict(capacity=10, block_bits=True), ValueError, "block_bits"),
            (dict(capacity=10, key_dtype="float64"), TypeError, "key_dtype"),
            (dict(capacity=10, seed="x"), TypeError, "seed"),
            (dict(capacity=10, device="tpu"), ValueError, "device"),
            (dict(capacity=10**13, fpr=1e-6, block_bits=64), ValueError, "blocks")):
        with pytest.raises(error, match=match):
            BloomFilter(**kwargs)


def test_bad_keys_are_refused_before_anything_changes():
    bf = BloomFilter(100, key_dtype="uint32")
    bf.add([1, 2, 3])
    before = bf._host_bits()
    for keys, error, match in (([1.5, 2.0], TypeError, "keys must be integers"),
                               (np.array([1.0]), TypeError, "astype"),
                               ([5, -1], ValueError, "not a valid uint32"),
                               ([2**32], ValueError, "not a valid uint32"),
                               (np.zeros((2, 2), np.uint32), ValueError, "1-D"),
                               (["a"], TypeError, "integers")):
        with pytest.raises(error, match=match):
            bf.add(keys)
        with pytest.raises(error, match=match):
            bf.contains(keys)
    np.testing.assert_array_equal(bf._host_bits(), before)
    assert bf.n_added == 3


def test_results_come_back_as_numpy_for_host_input():
    bf = BloomFilter(100, key_dtype="int64")
    bf.add([-3])
    out = bf.contains(np.array([-3, 4]))
    assert isinstance(out, np.ndarray) and out.dtype == np.bool_ and out.tolist() == [True, False]
    assert isinstance(bf.contains([-3]), np.ndarray)
    assert bf.contains(np.int64(-3)) is True


# ------------------------------------------------------------------ refs
def test_cpu_ref_in_a_prange_loop():
    if bulkhash.get_default_device() == "cuda":
        pytest.skip("CPU refs: the GPU's are tested below")

    @numba.njit(parallel=True)
    def add_all(ref, keys):
        fresh = np.zeros(keys.size, np.bool_)
        for i in numba.prange(keys.size):
            fresh[i] = ref.add(keys[i])
        return fresh

    @numba.njit
    def find_all(ref, keys, out):
        for i in range(keys.size):
            out[i] = ref.contains(keys[i])

    rng = np.random.default_rng(8)
    for kd in (np.dtype(np.uint32), np.dtype(np.int64)):
        keys = np.concatenate([np.array(edge_keys(kd), kd), random_keys(rng, kd, 100_000)])
        bf = BloomFilter(keys.size, key_dtype=kd)
        fresh = add_all(bf.ref(), keys)
        assert fresh.mean() > 0.9  # most keys set a new bit (duplicates and rare overlaps don't)
        bulk = BloomFilter(keys.size, key_dtype=kd)
        bulk.add(keys)
        assert bf == bulk  # a ref sets exactly the bits the bulk add does
        out = np.empty(keys.size, np.bool_)
        find_all(bf.ref(), keys, out)
        assert out.all()
        assert not add_all(bf.ref(), keys[:1000]).any()  # all there already: nothing new
        assert bf.n_added == 0  # (adds through a ref are not counted)


def test_cpu_ref_and_a_hashset_ref_in_one_function():
    """The filter's ref has its own Numba type: its add/contains and the tables' (registered for
    every named tuple) do not shadow each other."""
    if bulkhash.get_default_device() == "cuda":
        pytest.skip("CPU refs")

    @numba.njit
    def both(bloom, seen, keys):
        n = 0
        for k in keys:
            bloom.add(k)
            n += bloom.contains(k) + seen.contains(k)
        return n

    s = bulkhash.HashSet("uint64")
    s.add(np.arange(5, dtype=np.uint64))
    bf = BloomFilter(100)
    keys = np.arange(10, dtype=np.uint64)
    assert both(bf.ref(), s.ref(), keys) == 15
    assert bf.contains(keys).all()


def test_gpu_ref_in_a_user_kernel():
    if bulkhash.get_default_device() != "cuda":
        pytest.skip("GPU refs")

    @cuda.jit
    def add_then_find(ref, keys, fresh, found):
        i = cuda.grid(1)
        if i < keys.size:
            fresh[i] = ref.add(keys[i])
            found[i] = ref.contains(keys[i])

    rng = np.random.default_rng(12)
    kd = np.dtype(np.int64)
    keys = np.concatenate([np.array(edge_keys(kd), kd), random_keys(rng, kd, 100)])
    bf = BloomFilter(keys.size, key_dtype=kd)
    fresh = np.zeros(keys.size, np.bool_)
    found = np.zeros(keys.size, np.bool_)
    add_then_find[(keys.size + 31) // 32, 32](bf.ref(), keys, fresh, found)
    assert found.all() and fresh.sum() >= np.unique(keys).size * 0.9
    bulk = BloomFilter(keys.size, key_dtype=kd, device="cpu")
    bulk.add(keys)
    np.testing.assert_array_equal(bf._host_bits(), bulk._host_bits())


# ------------------------------------------------------------------ GPU kernels compile
_COMPILE = """
from numba import cuda, types as T
from bulkhash._cuda import bloom as CB
from bulkhash._cuda import refs as table_refs

i8, u8, u32, u64, b1 = T.int64, T.uint8, T.uint32, T.uint64, T.boolean
A = lambda t: t[::1]
geometry = (A(u64), i8, i8, i8, i8, u64)  # bits, n_blocks, block_words, shift, k, seed


def user_kernel(bloom, seen, keys, out):
    i = cuda.grid(1)
    if i < keys.size:
        seen.add(keys[i])
        out[i] = bloom.add(keys[i]) and bloom.contains(keys[i]) and seen.contains(keys[i])


for CC in ((8, 0), (9, 0)):  # (the driver stand-in of _NO_DRIVER reads CC)
    report = {}
    for W in (u32, u64):
        for name, sig in (("add_keys", geometry + (A(W),)),
                          ("query_keys", geometry + (A(W), A(b1)))):
            ptx, _ = cuda.compile_ptx(getattr(CB, name).py_func, sig, cc=CC)
            report[f"{name}-{W}"] = ptx
    for name, sig in (("block_fill_histogram", (A(u64), i8, A(i8))),
                      ("or_words", (A(u64), A(u64)))):
        report[name], _ = cuda.compile_ptx(getattr(CB, name).py_func, sig, cc=CC)
    for kd in ("uint32", "uint64", "int32", "int64"):
        sig = (CB.ref_type(kd), table_refs.ref_type("HashSet", kd), A(getattr(T, kd)), A(b1))
        report["ref-" + kd], _ = cuda.compile_ptx(user_kernel, sig, cc=CC)
    assert all(f".target sm_{CC[0]}{CC[1]}" in ptx for ptx in report.values())
    print("OK", (CC, {name: ("atom.global.or" in ptx, "popc" in ptx)
                     for name, ptx in report.items()}))
"""


def test_gpu_kernels_and_refs_compile_to_ptx():
    if bulkhash.get_default_device() == "cuda":
        pytest.skip("a compile check: once is enough")
    pytest.importorskip("numba_cuda", reason="needs numba-cuda (pip install bulkhash[cuda])")
    from test_cuda_compile import _NO_DRIVER, _child

    done = _child("CC = (8, 0)\n" + _NO_DRIVER + textwrap.dedent(_COMPILE))
    assert done.returncode == 0, done.stderr[-4000:]
    for line in done.stdout.strip().splitlines()[-2:]:
        cc, report = eval(line[3:])
        for name, (atomic_or, popc) in report.items():
            assert atomic_or == (name.startswith("add_keys") or name.startswith("ref-")), name
        assert report["block_fill_histogram"][1], cc


# ------------------------------------------------------------------ the benchmark script runs
def test_benchmark_script_smoke(capsys):
    if bulkhash.get_default_device() == "cuda":
        pytest.skip("a CPU benchmark")
    pytest.importorskip("rbloom", reason="the benchmark's peer (pip install rbloom)")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bloom.py"
    spec = importlib.util.spec_from_file_location("bloom_benchmark", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--sizes", "20000", "--fpr", "0.01", "--reps", "1"]) == 0
    table = capsys.readouterr().out
    assert "| 20,000 |" in table.replace("  ", " ") and "rbloom (1 thread)" in table
