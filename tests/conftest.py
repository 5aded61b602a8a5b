"""Test configuration: hypothesis profiles.

``BULKHASH_HYPOTHESIS_PROFILE=thorough`` runs many more examples (for a nightly run); the
default keeps the whole suite within a few minutes on two cores with a cold Numba cache.
"""

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])

settings.register_profile("default", max_examples=100, stateful_step_count=40, **_COMMON)
settings.register_profile("quick", max_examples=15, stateful_step_count=15, **_COMMON)
settings.register_profile("thorough", max_examples=1000, stateful_step_count=60, **_COMMON)
settings.load_profile(os.environ.get("BULKHASH_HYPOTHESIS_PROFILE", "default"))
