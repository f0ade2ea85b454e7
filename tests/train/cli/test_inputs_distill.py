"""What `aria distill` checks of its pool before anything is written (issue 15): the paired cache's
prompt ids must point into the pool the cache was made with, and region ids must fit the pool.
Each refusal is one `aria: error:` line, exit 2, and no run folder."""
from __future__ import annotations

from pathlib import Path

import pytest

import aria_cli
from aria_train.data.cache import TensorCache
from aria_train.data.pool import PromptPool
from aria_train.distill.config import DistillConfig
from aria_train.distill.inputs import load_inputs
from cli_errors import refused
from fixtures_train import DistillPaths, make_distill_inputs, pool_frame

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> DistillPaths:
    """The tiny distillation inputs, with the paired cache made by `aria cache --pool` (so it
    records the pool's fingerprint) instead of the fixture's synthetic one."""
    root = tmp_path_factory.mktemp("inputs")
    made = make_distill_inputs(root)
    pool_frame().iloc[[0, 4, 5, 9]][["text"]].to_parquet(root / "paired.parquet")
    argv = ["cache", "--teacher", made.teacher, "--paired", root / "paired.parquet", "--pool", made.pool,
            "--out", root / "cache", "--steps", "1", "--guidance", "1", "--no-progress"]
    assert aria_cli.main([str(a) for a in argv]) == 0
    return DistillPaths(made.teacher, made.pool, root / "cache" / "paired", made.text)


def _config(paths: DistillPaths, pool: Path, method: str = "rc") -> DistillConfig:
    return DistillConfig(teacher=str(paths.teacher), paired_cache=str(paths.paired), pool=str(pool), method=method)


def test_the_paired_cache_records_its_pool_and_accepts_the_same_texts_in_another_file(paths, tmp_path):
    recorded = TensorCache(paths.paired).metadata["pool_fingerprint"]
    assert recorded == PromptPool.from_file(paths.pool).fingerprint()
    # the same texts in the same order, with other regions, as an .arrow file: the same pool for the cache
    frame = pool_frame().assign(region=lambda f: f["region"].to_numpy()[::-1])
    arrow = PromptPool.from_frame(frame).to_arrow(tmp_path / "pool.arrow")
    assert len(load_inputs(_config(paths, arrow, "aria")).paired) == 4


def test_distill_refuses_a_pool_other_than_the_caches(paths, tmp_path, capsys):
    pool = tmp_path / "pool.parquet"
    pool_frame().iloc[::-1].to_parquet(pool)  # the same prompts in another order: every prompt_id would be wrong
    out = tmp_path / "run"
    refused(paths.options(out, "--steps", "2", "--pool", pool), capsys,
            f"paired cache {paths.paired} was made with another pool than {pool}")
    assert not out.exists()


@pytest.mark.parametrize("method", ["rc", "aria"])
def test_distill_refuses_a_region_id_beyond_the_pool_before_counting(paths, tmp_path, capsys, method):
    """rc counts shown prompts per region too (the tally): both methods must refuse before that."""
    frame = pool_frame()
    frame.loc[3, "region"] = 2**39  # below aria pool's 2^40 limit, but an array per id up to it needs TiBs
    pool = tmp_path / "pool.parquet"
    frame.to_parquet(pool)
    out = tmp_path / "run"
    refused(paths.options(out, "--steps", "2", "--pool", pool, "--method", method), capsys,
            f"region id {2**39} needs", "more than the 12 prompts")
    assert not out.exists()

