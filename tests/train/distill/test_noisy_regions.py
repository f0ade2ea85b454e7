"""The test bed's irreducible floor (DistillConfig.noisy_regions): noise on the teacher's
prediction for the chosen regions' prompts only, a floor in the loss the tracker sees, exact resume."""
import json

import numpy as np
import pytest
import torch

from aria_train.distill.config import DistillConfig
from cli_errors import refused
from fixtures_train import assert_resumes_exactly, distill


def _stream(paths, **fields):
    from aria_train.conditioning.samplers import make_sampler
    from aria_train.distill.batches import BatchStream, ConditionEncoder
    from aria_train.distill.inputs import load_inputs

    config = DistillConfig(teacher=str(paths.teacher), paired_cache=str(paths.paired), pool=str(paths.pool),
                           batch_size=8, **fields).validate()
    inputs = load_inputs(config)
    sampler = make_sampler("region", len(inputs.pool), inputs.pool.regions)
    cpu = torch.device("cpu")
    return BatchStream(config, inputs, sampler, ConditionEncoder(inputs, cpu), 0, 1, cpu)


def test_noise_only_on_noisy_regions_prompts(paths):
    stream = _stream(paths, method="rc", sampler="region", noisy_regions=[1], noise_std=0.5)
    seen = set()
    for _ in range(20):
        batch = stream.next()
        on = (batch.regions == 1)
        per_row = batch.target_noise.flatten(1).std(1).numpy()
        assert np.all(per_row[~on] == 0), "rows of other regions and null texts get no noise"
        assert np.all(np.abs(per_row[on] - 0.5) < 0.2), per_row[on]  # 3 * 16 * 16 draws of std 0.5 per row
        seen |= set(batch.regions[on].tolist())
    assert seen == {1}


def test_no_noise_leaves_the_stream_unchanged(paths):
    """Without noisy_regions no extra draw is made: the batches are those of the plain config."""
    a, b = _stream(paths, method="rc"), _stream(paths, method="rc")
    for _ in range(3):
        x, y = a.next(), b.next()
        assert x.target_noise is None and torch.equal(x.noise, y.noise)


def test_floor_in_the_observed_loss(paths, tmp_path):
    """The output loss of the noisy region carries the floor noise_std^2 on top of the discrepancy."""
    out = tmp_path / "run"
    assert distill(paths, out, "--method", "aria", "--steps", "4", "--noisy-regions", "0", "--noise-std", "1.0",
                   "--aria-observe", "all", "--aria-normalise", "none", "--aria-warmup", "0") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["noisy_regions"] == [0] and config["noise_std"] == 1.0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    est = records[-1]["estimates"]
    others = [e for e in est[1:] if e is not None]  # None: a region not observed yet
    # the tracker sees the floor (1 per element) in region 0 only; the others' discrepancy is ~0.1-0.3
    assert others and est[0] > 0.8 and est[0] > 2 * max(others), est


def test_resume_with_noise_is_exact(paths, tmp_path):
    assert_resumes_exactly(paths, tmp_path, "--method", "aria", "--noisy-regions", "2", "--noise-std", "0.3",
                           "--checkpoint-every", "2")


@pytest.mark.parametrize("extra, needle", [
    (("--noisy-regions", "0"), "--noise-std"),
    (("--noise-std", "0.5"), "--noise-std needs --noisy-regions"),
    (("--noisy-regions", "7", "--noise-std", "0.5"), "noisy_regions"),
    (("--noisy-regions", "-1", "--noise-std", "0.5"), "--noisy-regions"),
])
def test_bad_noise_options_refused(paths, tmp_path, capsys, extra, needle):
    out = tmp_path / "run"
    refused(paths.options(out, "--method", "aria", "--steps", "2", *extra), capsys, needle)
    assert not out.exists()
