"""Hypothesis profiles: "ci" is deterministic (derandomized, no example database, no deadline) and
the default, so `make test` -- the README's command, which CI runs -- gives the same result on
every machine whatever its environment; HYPOTHESIS_PROFILE=dev explores with random examples.
"""
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run faster on one thread than on two that wait on each other, and agree
    bitwise with child processes started with OMP_NUM_THREADS=1. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
