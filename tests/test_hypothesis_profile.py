"""The property tests are deterministic under the README's test command (tests/conftest.py)."""
import os

from hypothesis import settings


def test_property_tests_are_derandomized_unless_asked_to_explore():
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    assert settings.get_current_profile_name() == profile
    if profile == "ci":
        assert settings.default.derandomize and settings.default.database is None
