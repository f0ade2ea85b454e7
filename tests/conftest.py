"""Hypothesis profiles: CI is deterministic (derandomized, no deadline); local runs explore.

The profile is chosen by HYPOTHESIS_PROFILE, else "ci" when the CI variable is set, else "dev".
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
