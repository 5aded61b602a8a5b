"""Every GPU kernel compiles to PTX, for sm_80 and sm_90, without a GPU.

The simulator runs kernels as Python, so it cannot see a type error that only the CUDA compiler
would: this check compiles each kernel of ``bulkhash._cuda.kernels`` for both word types with
NVIDIA's compiler libraries (wheels that come with ``bulkhash[cuda]``). numba-cuda asks the
driver for the current GPU's compute capability when it compiles a device function; with no
driver, the child process answers for it (``_NO_DRIVER``). It runs in a child process because
this one may have the CUDA simulator switched on, and the simulator has no compiler.

It also checks the shared hash arithmetic: the simulated GPU places keys in the same home
windows as ``bulkhash.hashing`` computes on the CPU, so the two cannot drift.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba_cuda", reason="needs numba-cuda (pip install bulkhash[cuda])")

_NO_DRIVER = """
import types as _types
import numba.cuda.dispatcher as _dispatcher
_dispatcher.get_current_device = lambda: _types.SimpleNamespace(compute_capability=CC)
"""

_KINDS = """
import json
from numba import cuda, types as T

i8, u8, u32, u64, b1, f8 = T.int64, T.uint8, T.uint32, T.uint64, T.boolean, T.float64
A = lambda t: t[::1]
report = {}
"""

_SWEEP = """
kernels = {name for name, obj in vars(K).items()  # the module's own kernels (not device functions)
           if type(obj).__module__.startswith("numba.cuda") and hasattr(obj, "py_func")
           and obj.py_func.__module__ == K.__name__ and not obj.targetoptions.get("device")}
compiled = {}
for W in (u32, u64):
    for name, sig in signatures(W).items():
        ptx, _ = cuda.compile_ptx(getattr(K, name).py_func, sig, cc=CC)
        compiled[name] = compiled.get(name, 0) + ("atom." in ptx) + ("vote.sync" in ptx)
        assert f".target sm_{CC[0]}{CC[1]}" in ptx, name
"""


def compile_kernels(module: str, definitions: str, after: str = "", cc=(8, 0)) -> dict:
    """Compile every kernel of ``bulkhash._cuda.<module>`` to PTX for ``cc``, for both word
    types, in a child process with no GPU.

    ``definitions`` (Python source) defines ``signatures(W) -> {kernel name: argument types}``
    (``A(t)`` is a 1-D C array of ``t``; ``i8 u8 u32 u64 b1 f8`` are Numba types; ``K`` is the
    module); ``after`` runs last and may compile more (user kernels with refs) and put what it
    finds in the dict ``report``. Returns ``report`` with ``kernels`` (every kernel the module
    defines) and ``compiled`` (per kernel: how many of its two PTX texts hold an atomic, plus how
    many hold a warp vote).
    """
    script = (f"CC = {cc!r}\n" + _NO_DRIVER + _KINDS
              + f"from bulkhash._cuda import {module} as K\n"
              + textwrap.dedent(definitions) + _SWEEP + textwrap.dedent(after)
              + "print(json.dumps(dict(report, kernels=sorted(kernels), compiled=compiled)))\n")
    done = _child(script)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report["compiled"]) == set(report["kernels"]), (
        "a kernel has no signature in this test: add it to signatures()")
    return report


_SIGNATURES = """
def signatures(W):
    geometry = (A(W), i8, i8, i8, u64, W, A(i8))  # flat, wps, G, n_windows, seed, tomb, state
    return {
        "lookup": geometry + (A(W), W, A(W), A(b1)),
        "claim": geometry + (A(i8), A(W), A(i8), A(u8), A(u32)),
        "refind": geometry + (A(W), A(i8), A(u8), A(u32)),
        "locate": geometry + (A(W), A(i8), A(u32)),
        "mark_fresh": (A(i8), A(u8), A(u32)),
        "settle": (A(W), i8, A(i8), A(u8), A(u32), A(W), i8, A(u8)),
        "reset_aux": (A(i8), A(u8), A(u32)),
        "mark_last": (A(i8), A(u8), A(u32)),
        "store_last": (A(W), i8, A(i8), A(u8), A(u32), A(W), i8),
        "combine_rest": (A(W), i8, A(i8), A(u8), A(W), i8, i8, i8, i8),
        "remove_first": (A(W), i8, i8, W, A(i8), A(i8), A(u32), A(u8)),
        "tally": (A(u8), A(i8)),
        "count_live": (A(W), i8, i8, W, A(i8)),
        "gather_live": (A(W), i8, i8, W, A(i8), A(i8), A(W), A(W)),
        "hll_registers": (A(W), u64, A(u32)),
        "fill": (A(W), W),
        "cast": (A(W), A(u8)),
        "take": (A(W), A(i8), A(W)),
        "put": (A(W), A(i8), A(W)),
        "equal_to": (A(u8), u8, A(b1)),
    }
"""


def _child(script: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.parametrize("cc", [(8, 0), (9, 0)])
def test_every_kernel_compiles_to_ptx(cc):
    report = compile_kernels("kernels", _SIGNATURES, cc=cc)
    # the probing kernels vote with ballot_sync and claim with atomics
    for name in ("claim", "refind", "locate", "lookup"):
        assert report["compiled"][name] >= 2, name


def test_the_simulated_kernel_places_keys_where_the_cpu_does(tmp_path):
    from bulkhash.hashing import DEFAULT_SEED, hash_key, home_bucket
    from bulkhash.probing import window_step

    rng = np.random.default_rng(5)
    keys = rng.integers(1, 2**64 - 1, 2048, dtype=np.uint64)
    n_windows = 1_000_003
    keys_file = tmp_path / "keys.npy"
    np.save(keys_file, keys)
    script = textwrap.dedent(f'''
        import numpy as np
        from numba import cuda
        from bulkhash._cuda.kernels import _probe_start

        @cuda.jit
        def starts(keys, seed, n_windows, home, step):
            i = cuda.grid(1)
            if i < keys.size:
                home[i], step[i] = _probe_start(keys[i], seed, n_windows)

        keys = np.load({str(keys_file)!r})
        home = np.empty(keys.size, np.int64)
        step = np.empty(keys.size, np.int64)
        starts[(keys.size + 127) // 128, 128](keys, np.uint64({DEFAULT_SEED}), {n_windows},
                                              home, step)
        print(" ".join(map(str, home.tolist())))
        print(" ".join(map(str, step.tolist())))
    ''')
    done = _child(script, NUMBA_ENABLE_CUDASIM="1")
    assert done.returncode == 0, done.stderr[-4000:]
    home_line, step_line = done.stdout.strip().splitlines()[-2:]
    seed = np.uint64(DEFAULT_SEED)
    hashes = [np.uint64(hash_key(k, seed)) for k in keys]
    np.testing.assert_array_equal(np.array(home_line.split(), np.int64),
                                  [home_bucket(h, n_windows) for h in hashes])
    np.testing.assert_array_equal(np.array(step_line.split(), np.int64),
                                  [window_step(h, n_windows) for h in hashes])


@pytest.mark.parametrize("n_windows", [2, 3, 5, 7, 101, 1009])
def test_double_hashing_meets_every_window_once(n_windows):
    """With a prime number of windows, any key's probe visits each window exactly once."""
    from bulkhash.hashing import hash_key, home_bucket
    from bulkhash.probing import next_window, window_step

    for key in np.random.default_rng(n_windows).integers(1, 2**63, 50, dtype=np.uint64):
        h = np.uint64(hash_key(key, np.uint64(7)))  # (a Python int from a dispatcher: typed int64)
        w, step = home_bucket(h, n_windows), window_step(h, n_windows)
        assert 1 <= step < n_windows
        seen = []
        for _ in range(n_windows):
            seen.append(w)
            w = next_window(w, step, n_windows)
        assert sorted(seen) == list(range(n_windows))
