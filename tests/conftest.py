"""Shared test configuration.

Hypothesis profiles: ``default`` is what ``make test`` runs (no per-example deadline,
since CI machines are noisy). ``HYPOTHESIS_PROFILE=thorough`` raises
``settings.default.max_examples``; properties that derive their example count from it
run longer for a local campaign.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=5000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
