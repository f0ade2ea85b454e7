"""On a GPU, `aria distill --compile --cuda-graphs` trains as the compiled loop without graphs: the
same losses and tracker feedback at every step, with the feedback read one micro-batch late
(--feedback-lag 1, where a step's outputs are read after the next step's replays were launched)
and at once. Skipped without CUDA (CI); run on a GPU with
`PYTHONPATH=tests python -m pytest --noconftest tests/train/distill/test_cuda_graphs_gpu.py`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aria_train.distill.config import DistillConfig
from aria_train.distill.loop import train
from fixtures_train import make_distill_inputs


def records(run) -> list[dict]:
    """Each metrics record but its timing and memory: losses, counts, the tracker's metrics."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in ("images_per_s", "peak_memory_gib")}
            for line in lines if line]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("lag", [0, 1])
def test_cuda_graphs_train_as_the_compiled_loop(tmp_path, lag):
    paths = make_distill_inputs(tmp_path / "inputs")
    runs = {}
    for graphs in (False, True):
        torch._dynamo.reset()  # each run compiles its own UNets
        config = DistillConfig(teacher=str(paths.teacher), paired_cache=str(paths.paired), pool=str(paths.pool),
                               method="aria", batch_size=8, steps=6, log_every=1, checkpoint_every=0,
                               sample_every=0, compile=True, channels_last=True, cuda_graphs=graphs,
                               feedback_lag=lag)
        runs[graphs] = records(train(config, tmp_path / f"run-{graphs}-{lag}", progress=False))
    assert len(runs[True]) == len(runs[False]) == 6
    for plain, graphed in zip(runs[False], runs[True]):
        assert plain.keys() == graphed.keys() and plain
        assert np.isfinite(plain["loss"])
        for name in plain:  # the same kernels on the same inputs; float32 rounding at most
            if isinstance(plain[name], str) or plain[name] is None:
                assert graphed[name] == plain[name], name
            else:
                np.testing.assert_allclose(graphed[name], plain[name], rtol=1e-5, atol=1e-7, err_msg=name)
