"""Test configuration: hypothesis profiles.

``BULKHASH_HYPOTHESIS_PROFILE=thorough`` runs many more examples (for a nightly run); the
default keeps the whole suite within a few minutes on two cores with a cold Numba cache.
"""

import os
import sys

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])

settings.register_profile("default", max_examples=100, stateful_step_count=40, **_COMMON)
settings.register_profile("quick", max_examples=15, stateful_step_count=15, **_COMMON)
settings.register_profile("thorough", max_examples=1000, stateful_step_count=60, **_COMMON)
settings.load_profile(os.environ.get("BULKHASH_HYPOTHESIS_PROFILE", "default"))


# ------------------------------------------------------------------ backends
# A test module that says ``pytestmark = pytest.mark.usefixtures("each_device")`` runs every test
# on each backend: tables made without a ``device=`` land on the one under test. Tests sized for
# the CPU's parallel paths (tens of thousands of keys) are marked ``cpu_sized``: on the simulator
# each GPU thread is a Python thread, so they run on the CPU only.
import pytest  # noqa: E402

import bulkhash  # noqa: E402
from _support import CUDA_MODE, DEVICES  # noqa: E402

if "cuda" in DEVICES and CUDA_MODE == "sim":
    sys.path.insert(0, os.path.dirname(__file__))
    import cudasim_warp  # noqa: E402

    cudasim_warp.install()


def pytest_configure(config):
    config.addinivalue_line("markers", "cpu_sized: inputs too large for the CUDA simulator")


@pytest.fixture(params=DEVICES)
def each_device(request):
    """Run the test with ``bulkhash``'s default device set to each backend in turn."""
    if request.param == "cuda" and CUDA_MODE == "sim" and request.node.get_closest_marker(
            "cpu_sized"):
        pytest.skip("sized for the CPU; too slow on the CUDA simulator")
    previous = bulkhash.set_default_device(request.param)
    try:
        yield request.param
    finally:
        bulkhash.set_default_device(previous)
