"""Hypothesis profiles of the property tests (issue 22): bounded in `make test`, long in a soak.

- `properties` (the default): about 50-100 examples a test, no per-example deadline (the
  machine is shared; a slow example is not a failure). The whole package stays within ~40 s.
- `soak`: `HYPOTHESIS_PROFILE=soak .venv/bin/pytest tests/properties` (or `make soak-properties`),
  many more examples; its figures are in docs/reliability.md.

The profile is applied to this package's tests only (`bounded(...)` as a decorator, `.settings`
of the state machine's TestCase), never loaded globally: the rest of the suite keeps its own.
"""

from __future__ import annotations

import os
from typing import Final

from hypothesis import HealthCheck, settings

_SHARED: Final = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)

settings.register_profile("properties", _SHARED, max_examples=60, stateful_step_count=30)
settings.register_profile("soak", _SHARED, max_examples=2000, stateful_step_count=60)

PROFILE: Final = "soak" if os.environ.get("HYPOTHESIS_PROFILE") == "soak" else "properties"


def bounded(max_examples: int | None = None) -> settings:
    """The active profile, optionally with fewer examples for a test whose examples are slow
    (scaled up in the soak by the same factor as the profile's own)."""
    profile = settings.get_profile(PROFILE)
    if max_examples is None:
        return profile
    scale = profile.max_examples / settings.get_profile("properties").max_examples
    return settings(profile, max_examples=max(1, int(max_examples * scale)))
