"""The hash and probe arithmetic is written once for every backend (``bulkhash.hashing``,
``bulkhash.probing``): these checks compile it inside a CUDA kernel to PTX for sm_80 and sm_90
(no GPU needed: NVIDIA's compiler libraries come as wheels with ``bulkhash[cuda]``), and run that
kernel under Numba's CUDA simulator to show it places keys exactly where the CPU kernels do, so
that a table built on one backend is the same table on the other."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba_cuda", reason="needs numba-cuda (pip install bulkhash[cuda])")
from numba import cuda  # noqa: E402  (numba-cuda's, once it is installed)

# The np.uint64() around the hash is for the simulator, where the shared functions run as CPU
# dispatchers that return Python ints, and a dispatcher types any Python int as int64 (a hash
# above 2**63 then does not fit). Compiled for the GPU it is a no-op.
_KERNEL_SOURCE = '''
import numpy as np
from numba import cuda
from bulkhash.hashing import hash_key, home_bucket
from bulkhash.probing import next_bucket


def probe_start(keys, seed, n_buckets, home, second):
    """Each key's home bucket and the next bucket of its probe sequence."""
    i = cuda.grid(1)
    if i < keys.size:
        b = home_bucket(np.uint64(hash_key(keys[i], seed)), n_buckets)
        home[i] = b
        second[i] = next_bucket(b, n_buckets)
'''


@pytest.mark.parametrize("cc", [(8, 0), (9, 0)])
def test_hash_and_probe_arithmetic_compiles_to_ptx(cc):
    from numba import types

    namespace: dict = {}
    exec(compile(_KERNEL_SOURCE, "<probe_start>", "exec"), namespace)
    sig = (types.uint64[::1], types.uint64, types.int64, types.int64[::1], types.int64[::1])
    ptx, _ = cuda.compile_ptx(namespace["probe_start"], sig, cc=cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert "mul.lo.s64" in ptx or "mul.lo.u64" in ptx  # fmix64's multiplies made it in


def test_the_simulated_kernel_places_keys_where_the_cpu_does(tmp_path):
    from bulkhash._cpu.kernels import bucket_of
    from bulkhash.hashing import DEFAULT_SEED

    rng = np.random.default_rng(5)
    keys = rng.integers(1, 2**64 - 1, 4096, dtype=np.uint64)
    n_buckets = 1_000_003
    keys_file = tmp_path / "keys.npy"
    np.save(keys_file, keys)
    script = _KERNEL_SOURCE + textwrap.dedent(f'''
        import numpy as np
        keys = np.load({str(keys_file)!r})
        home = np.empty(keys.size, np.int64)
        second = np.empty(keys.size, np.int64)
        cuda.jit(probe_start)[(keys.size + 127) // 128, 128](
            keys, np.uint64({DEFAULT_SEED}), {n_buckets}, home, second)
        print(" ".join(map(str, home.tolist())))
        print(" ".join(map(str, second.tolist())))
    ''')
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    home_line, second_line = done.stdout.strip().splitlines()[-2:]
    home = np.array(home_line.split(), np.int64)
    second = np.array(second_line.split(), np.int64)
    expected = np.array([bucket_of(k, n_buckets, np.uint64(DEFAULT_SEED), np.uint64(2**64 - 1))
                         for k in keys])
    np.testing.assert_array_equal(home, expected)
    np.testing.assert_array_equal(second, (expected + 1) % n_buckets)

