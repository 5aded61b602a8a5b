"""Where the test suite runs the CUDA backend (read before anything imports Numba).

``BULKHASH_TEST_CUDA``:

* ``sim`` (the default, and what CI does): every backend-parametrised test also runs with
  ``device="cuda"`` on Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which runs each GPU
  thread as a Python thread: the same kernels, checked for semantics, on small inputs. The
  simulator has no warp intrinsics; ``tests/cudasim_warp.py`` adds them (test-only).
* ``gpu``: the same tests on a real NVIDIA GPU.
* ``off``: CPU only.
"""

import os

CUDA_MODE = os.environ.setdefault("BULKHASH_TEST_CUDA", "sim")
if CUDA_MODE not in ("sim", "gpu", "off"):
    raise RuntimeError(f"BULKHASH_TEST_CUDA={CUDA_MODE!r}: use sim, gpu or off")
if CUDA_MODE == "sim":
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
