"""ARIA's text signal (--aria-signal text): the tracker observes the error in the prompt's effect,
(S(c) - S(null)) - (T(c) - T(null)), instead of the output discrepancy."""
import json

import numpy as np
import torch
from torch import nn

from aria_train.distill.config import DistillConfig
from aria_train.distill.losses import LossWeights
from fixtures_train import assert_resumes_exactly


class Offset(nn.Module):
    """The teacher plus a constant on its prediction: wrong on every image, right about every prompt."""

    def __init__(self, teacher: nn.Module, offset: float):
        super().__init__()
        self.teacher, self.offset = teacher, nn.Parameter(torch.tensor(offset))  # a parameter: backward runs

    def forward(self, *args, **kwargs):
        out = self.teacher(*args, **kwargs)
        out.sample = out.sample + self.offset
        return out


def _setup(paths, student_of):
    from aria_train.conditioning.samplers import make_sampler
    from aria_train.distill.batches import BatchStream, ConditionEncoder
    from aria_train.distill.inputs import load_inputs
    from aria_train.distill.step import StepModels, Student

    config = DistillConfig(teacher=str(paths.teacher), paired_cache=str(paths.paired), pool=str(paths.pool),
                           batch_size=8, method="rc")
    inputs = load_inputs(config)
    cpu = torch.device("cpu")
    encoder = ConditionEncoder(inputs, cpu)
    stream = BatchStream(config, inputs, make_sampler("uniform", len(inputs.pool), None), encoder, 0, 1, cpu)
    models = StepModels(inputs.teacher, Student(student_of(inputs.teacher)), inputs.scheduler, {},
                        null_hidden=encoder.null, text_signal_rows="all")
    return models, stream


def test_text_independent_error_is_invisible_to_the_text_signal(paths):
    from aria_train.distill.step import train_step

    models, stream = _setup(paths, lambda teacher: Offset(teacher, 0.3))
    batch = stream.next()
    losses = train_step(models, batch, LossWeights(1.0, 0.0, 0.0))
    observed = ~batch.nulled
    assert observed.any()
    d = losses["discrepancy"].numpy()
    assert np.allclose(d[observed], 0.0, atol=1e-10)  # the offset cancels in S(c) - S(null)
    assert np.allclose(d[~observed], 0.09, rtol=1e-5)  # null rows keep the output discrepancy 0.3^2
    assert abs(float(losses["out"].detach()) - 0.09) < 1e-5  # the loss itself is unchanged


def test_text_signal_equals_a_direct_computation(paths):
    import copy

    from aria_train.distill.step import train_step

    def perturbed(teacher):
        student = copy.deepcopy(teacher).requires_grad_(True)
        with torch.no_grad():
            for p in student.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        return student

    models, stream = _setup(paths, perturbed)
    batch = stream.next()
    d = train_step(models, batch, LossWeights(1.0, 0.0, 0.0))["discrepancy"]
    noisy = models.scheduler.add_noise(batch.x0, batch.noise, batch.timesteps)
    with torch.no_grad():
        def effect(model, i):
            x, t = noisy[i:i + 1], batch.timesteps[i:i + 1]
            return (model(x, t, encoder_hidden_states=batch.hidden[i:i + 1]).sample
                    - model(x, t, encoder_hidden_states=models.null_hidden).sample)
        for i in np.flatnonzero(~batch.nulled):
            direct = (effect(models.student, i) - effect(models.teacher, i)).square().mean()
            assert torch.allclose(d[i], direct, rtol=1e-4, atol=1e-9), (i, d[i], direct)


def test_run_with_text_signal_resumes_exactly(paths, tmp_path):
    straight = assert_resumes_exactly(paths, tmp_path, "--method", "aria", "--aria-signal", "text",
                                      "--aria-warmup", "0", "--checkpoint-every", "2")
    assert json.loads((straight / "config.json").read_text())["aria_signal"] == "text"
