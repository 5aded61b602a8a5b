"""The GPU backend (numba-cuda). Imported only when a table is made with ``device="cuda"``.

``cuda_backend()`` is how the rest of bulkhash reaches it: it says what to install or enable when the
GPU cannot be used, instead of failing deep inside a kernel launch.
"""

from __future__ import annotations


def cuda_backend(group_size: int | None = None):
    """A ``CudaBackend`` with ``group_size`` lanes per key (the default when None)."""
    try:
        from numba import cuda
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError("device='cuda' needs numba-cuda: pip install 'bulkhash[cuda]'") from err
    if not hasattr(cuda, "ballot_sync") and not _simulated(cuda):
        raise ImportError("device='cuda' needs numba-cuda (the CUDA target Numba split out): "
                          "pip install 'bulkhash[cuda]'")
    if not cuda.is_available():
        raise RuntimeError("device='cuda': no usable CUDA GPU was found (numba.cuda.is_available() "
                           "is False; numba.cuda.detect() says why). Use device='cpu', or set "
                           "NUMBA_ENABLE_CUDASIM=1 to run the GPU kernels on the (slow) CUDA "
                           "simulator")
    from .backend import DEFAULT_GROUP_SIZE, GROUP_SIZES, CudaBackend

    if group_size is None:
        group_size = DEFAULT_GROUP_SIZE
    if isinstance(group_size, bool) or group_size not in GROUP_SIZES:
        raise ValueError(f"group_size={group_size!r} must be one of {GROUP_SIZES} (lanes of a "
                         "warp that probe one key together)")
    return CudaBackend(int(group_size))


def _simulated(cuda) -> bool:
    from numba import config

    return bool(config.ENABLE_CUDASIM)
