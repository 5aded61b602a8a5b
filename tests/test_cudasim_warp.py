"""Checks of the warp-intrinsic shim for Numba's CUDA simulator (``tests/cudasim_warp.py``).

The simulator must be switched on before Numba is imported, and this pytest process may run
with it off, so every check runs its kernels in a child Python with ``NUMBA_ENABLE_CUDASIM=1``.
Inputs are drawn here and passed in an ``.npz`` file; the child writes the kernels' outputs to
another, and the expected values are computed here with plain NumPy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import _support

pytest.importorskip("numba_cuda", reason="needs numba-cuda (pip install bulkhash[cuda])")

TESTS_DIR = Path(__file__).resolve().parent
WARP = 32
GROUP_SIZES = (1, 2, 4, 8, 16, 32)
BLOCKS, THREADS = 2, 64
N = BLOCKS * THREADS

# Loaded by every child before its kernels. The timeout is lowered from the shim's 60 s so a
# broken rendezvous fails the test within seconds instead of stalling it.
_PRELUDE = """
import sys
import numpy as np
sys.path.insert(0, {tests_dir!r})
import cudasim_warp
cudasim_warp.install()
cudasim_warp.RENDEZVOUS_TIMEOUT_S = 10.0
from numba import cuda


def group_mask(group_size):
    # The lanes of the calling thread's group of `group_size` consecutive lanes, and the first.
    lane = cuda.threadIdx.x % 32
    base = lane - lane % group_size
    return ((1 << group_size) - 1) << base, base
"""


def run_simulated(tmp_path: Path, body: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Run ``body`` under the simulator, after the prelude, with ``inputs``; its ``outputs``."""
    return _support.run_simulated(tmp_path, _PRELUDE.format(tests_dir=str(TESTS_DIR)), body, 120,
                                  **inputs)


def group_starts(group_size: int) -> np.ndarray:
    """For every global thread index, the index of the first thread of its lane group."""
    i = np.arange(N)
    return i - i % group_size


def test_install_refuses_without_the_simulator():
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        import cudasim_warp
        try:
            cudasim_warp.install()
        except RuntimeError as err:
            print("refused:", err)
    """)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "refused:" in done.stdout and "NUMBA_ENABLE_CUDASIM" in done.stdout


def test_ballot_sync_per_lane_group(tmp_path):
    rng = np.random.default_rng(1)
    preds = rng.random((len(GROUP_SIZES), N)) < 0.5
    out = run_simulated(tmp_path, f"""
        @cuda.jit
        def ballot(pred, group_size, out):
            i = cuda.grid(1)
            mask, base = group_mask(group_size)
            out[i] = cuda.ballot_sync(mask, pred[i]) >> base

        result = np.zeros(({len(GROUP_SIZES)}, {N}), np.uint32)
        for row, group_size in enumerate({GROUP_SIZES}):
            ballot[{BLOCKS}, {THREADS}](inputs["preds"][row], group_size, result[row])
        outputs["ballots"] = result
    """, preds=preds)
    for row, g in enumerate(GROUP_SIZES):
        starts = group_starts(g)
        expected = np.array([sum(int(preds[row, s + k]) << k for k in range(g)) for s in starts],
                            np.uint32)
        np.testing.assert_array_equal(out["ballots"][row], expected, err_msg=f"group size {g}")


def test_shfl_sync_broadcasts_uint64_exactly(tmp_path):
    rng = np.random.default_rng(2)
    # Above 2**63 and odd in the low bits: a detour through int64 or float64 would show.
    values = rng.integers(2**63 + 1, 2**64 - 1, N, dtype=np.uint64, endpoint=True) | np.uint64(1)
    out = run_simulated(tmp_path, f"""
        @cuda.jit
        def broadcast(values, group_size, got, same_type):
            i = cuda.grid(1)
            mask, base = group_mask(group_size)
            value = cuda.shfl_sync(mask, values[i], base)
            got[i] = value
            same_type[i] = type(value) is type(values[i])

        for group_size in (4, 32):
            got = np.zeros({N}, np.uint64)
            same_type = np.zeros({N}, np.bool_)
            broadcast[{BLOCKS}, {THREADS}](inputs["values"], group_size, got, same_type)
            outputs[f"got{{group_size}}"] = got
            outputs[f"same_type{{group_size}}"] = same_type
    """, values=values)
    for g in (4, 32):
        np.testing.assert_array_equal(out[f"got{g}"], values[group_starts(g)])
        assert out[f"same_type{g}"].all(), f"group size {g}: shfl_sync changed the value's type"


def test_groups_of_one_warp_progress_independently(tmp_path):
    group_size = 4
    n_groups = N // group_size
    rng = np.random.default_rng(3)
    values = rng.integers(0, 1000, N, dtype=np.int64)
    # Neighbouring groups of a warp loop different, data-dependent numbers of times, some of
    # them not at all, so one group makes many more calls with its mask than the next.
    trips = rng.integers(0, 9, n_groups, dtype=np.int64)
    trips[:4] = [7, 0, 2, 5]
    out = run_simulated(tmp_path, f"""
        @cuda.jit
        def rotate(values, trips, group_size, total):
            i = cuda.grid(1)
            mask, base = group_mask(group_size)
            acc = 0
            for k in range(trips[i // group_size]):
                # Successive rounds with the same mask but a different source lane: a lane that
                # races into round k+1 must not leak its value into round k.
                acc += cuda.shfl_sync(mask, values[i] + k, base + k % group_size)
                cuda.syncwarp(mask)
            total[i] = acc

        total = np.zeros({N}, np.int64)
        rotate[{BLOCKS}, {THREADS}](inputs["values"], inputs["trips"], {group_size}, total)
        outputs["total"] = total
    """, values=values, trips=trips)
    expected = np.array([sum(int(values[s + k % group_size]) + k
                             for k in range(trips[i // group_size]))
                         for i, s in enumerate(group_starts(group_size))], np.int64)
    np.testing.assert_array_equal(out["total"], expected)


def test_match_any_sync(tmp_path):
    rng = np.random.default_rng(4)
    # Few distinct values, so most lanes share theirs with others.
    values = rng.integers(0, 3, N, dtype=np.int64)
    out = run_simulated(tmp_path, f"""
        @cuda.jit
        def match(values, group_size, out):
            i = cuda.grid(1)
            mask, _ = group_mask(group_size)
            out[i] = cuda.match_any_sync(mask, values[i])

        for group_size in (8, 32):
            out = np.zeros({N}, np.uint32)
            match[{BLOCKS}, {THREADS}](inputs["values"], group_size, out)
            outputs[f"match{{group_size}}"] = out
    """, values=values)
    for g in (8, 32):
        expected = np.zeros(N, np.uint32)
        for i, s in enumerate(group_starts(g)):
            group = np.arange(s, s + g)
            expected[i] = sum(1 << int(j % WARP) for j in group if values[j] == values[i])
        np.testing.assert_array_equal(out[f"match{g}"], expected, err_msg=f"group size {g}")


def test_any_sync_and_all_sync(tmp_path):
    group_size = 4
    rng = np.random.default_rng(5)
    preds = rng.random(N) < 0.5
    preds[:4], preds[4:8] = True, False  # make sure both unanimous cases occur
    out = run_simulated(tmp_path, f"""
        @cuda.jit
        def vote(pred, group_size, any_out, all_out):
            i = cuda.grid(1)
            mask, _ = group_mask(group_size)
            any_out[i] = cuda.any_sync(mask, pred[i])
            all_out[i] = cuda.all_sync(mask, pred[i])

        any_out = np.full({N}, 7, np.int64)
        all_out = np.full({N}, 7, np.int64)
        vote[{BLOCKS}, {THREADS}](inputs["preds"], {group_size}, any_out, all_out)
        outputs["any"], outputs["all"] = any_out, all_out
    """, preds=preds)
    groups = preds.reshape(-1, group_size)
    np.testing.assert_array_equal(out["any"], np.repeat(groups.any(axis=1), group_size))
    np.testing.assert_array_equal(out["all"], np.repeat(groups.all(axis=1), group_size))


def test_a_missing_lane_makes_the_others_fail_fast(tmp_path):
    out = run_simulated(tmp_path, """
        import time
        cudasim_warp.RENDEZVOUS_TIMEOUT_S = 0.5

        @cuda.jit
        def lane_three_exits(out):
            if cuda.threadIdx.x == 3:
                return
            cuda.syncwarp(0xFFFFFFFF)
            out[cuda.threadIdx.x] = 1

        @cuda.jit
        def mask_without_caller(out):
            out[0] = cuda.ballot_sync(0x1, True)

        for name, kernel in (("exit", lane_three_exits), ("mask", mask_without_caller)):
            start = time.monotonic()
            try:
                kernel[1, 32](np.zeros(32, np.int64))
                outputs[name] = "no error"
            except RuntimeError as err:
                outputs[name] = str(err)
            outputs[name + "_seconds"] = time.monotonic() - start
    """)
    message = str(out["exit"])
    assert "timed out" in message, message
    assert "block (0, 0, 0), warp 0, mask 0xffffffff" in message, message
    assert "lanes [3] never arrived" in message, message
    assert out["exit_seconds"] < 10, out["exit_seconds"]
    assert "does not include it" in str(out["mask"]), out["mask"]
