"""The distillation stage's shared fixture: one set of tiny inputs per test module."""
import pytest

from fixtures_train import DistillPaths, make_distill_inputs


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> DistillPaths:
    """Teacher, pool, paired and text caches (tests/fixtures_train.py), built once per module."""
    return make_distill_inputs(tmp_path_factory.mktemp("inputs"))
