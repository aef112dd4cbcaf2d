"""Test configuration: Hypothesis profiles chosen by ACTORKUBE_HYPOTHESIS_PROFILE.

- ``ci`` (the default): enough examples to catch regressions in a CI run of minutes.
- ``soak``: many more examples and no deadline, for long runs hunting rare bugs:
  ``ACTORKUBE_HYPOTHESIS_PROFILE=soak pytest``.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "soak",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("ACTORKUBE_HYPOTHESIS_PROFILE", "ci"))
