"""Settings shared by the whole suite.

Hypothesis profiles. `make test` (and CI) runs the `ci` profile unless HYPOTHESIS_PROFILE names
another, so that a run's outcome depends on the code alone:
- `ci`: a fixed budget of examples drawn from a fixed seed (`derandomize`), the same on every run
  and every machine; no deadline and no too-slow health check, whose verdicts depend on how busy
  the machine is; no example database, so nothing found on one run changes the next. A test's own
  `@settings(max_examples=N)` still sets its budget; regressions found once are kept as
  `@example`s in the test itself.
- `dev`: Hypothesis' random search with its database, for hunting new counterexamples locally:
  `HYPOTHESIS_PROFILE=dev .venv/bin/python -m pytest tests/unit`.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=100,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
