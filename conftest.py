"""Settings for every test under the repository (tests/ and plugins/*/tests/)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Property-based (fuzz) tests: a short profile for every `make test` (CI's 2 cores), a long one for
# `make fuzz`. Deadlines are off: a loaded machine is slow, and a hang is caught by pytest-timeout.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("fuzz", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
