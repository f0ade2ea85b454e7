"""How many gradients the compiled channels-last distillation step's convolution backwards copy, with and
without the candidate of channels-last-dense convolution gradients (issue 16;
aria_train/diffusion/models/conv_grad_layout.py), on the CPU with an SD-shaped tiny teacher (four stages,
three with cross-attention, as SD v1.4) and its BK-SDM-Small student.

Each variant runs in its own process (dynamo does not guard on hooks, so one process would reuse the
first variant's graphs): the trainer's step (``train_step``, both UNets compiled as ``aria distill
--compile --channels-last`` compiles them, the loss compiled), one step to compile, one profiled; the
count is the ``aten::contiguous`` calls made inside ``aten::convolution_backward`` (the copies of a
gradient that is not channels-last-dense; on a GPU cuDNN makes the same ones). A few minutes on 2 cores.

    python -m scripts.conv_grad_copies [--out DIR]     writes OUT/conv_grad_copies_cpu.json (default bench/results)
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
from pathlib import Path

from bench.common import RESULTS


def count_copies(dense: bool) -> list[list[int]]:
    """The shapes of the gradients the compiled step's convolution backwards copy, one step, in a fresh process."""
    import numpy as np
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from torch.profiler import profile

    from aria_train.diffusion.models.configs import tiny_unet_config
    from aria_train.diffusion.models.conv_grad_layout import dense_conv_gradients
    from aria_train.diffusion.models.students import feature_layer_map, make_student
    from aria_train.distill.batches import Batch
    from aria_train.distill.losses import LossWeights
    from aria_train.distill.speed import compile_loss, prepare_unets
    from aria_train.distill.step import StepModels, Student, train_step

    config = tiny_unet_config(sample_size=32, block_out_channels=(32, 64, 128, 128), cross_attention_dim=16,
                              attention_heads=2, norm_num_groups=8)
    torch.manual_seed(0)
    teacher = UNet2DConditionModel(**config).eval().requires_grad_(False)
    student = make_student(teacher, "small")
    if dense:
        dense_conv_gradients(student)
    prepare_unets(teacher, student, compile=True, channels_last=True)
    models = StepModels(teacher, Student(student), DDPMScheduler(num_train_timesteps=1000),
                        feature_layer_map(dict(teacher.config), dict(student.config), "blocks"))
    models.loss_fn = compile_loss()
    generator = torch.Generator().manual_seed(1)
    n = 4

    def batch() -> Batch:
        return Batch(x0=torch.randn(n, 3, 32, 32, generator=generator), noise=torch.randn(n, 3, 32, 32, generator=generator),
                     timesteps=torch.tensor([10, 500, 990, 3]), hidden=torch.randn(n, 6, 16, generator=generator),
                     paired=torch.ones(n, dtype=torch.bool), prompt_ids=np.zeros(n, np.int64),
                     regions=np.zeros(n, np.int64), switched=np.zeros(n, bool), nulled=np.zeros(n, bool))

    weights = LossWeights(1.0, 1.0, 0.0)
    train_step(models, batch(), weights)  # compiles
    with profile(record_shapes=True) as traced:
        train_step(models, batch(), weights)
    return [e.input_shapes[0] for e in traced.events() if e.name == "aten::contiguous" and e.cpu_parent is not None
            and e.cpu_parent.name == "aten::convolution_backward"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m scripts.conv_grad_copies", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON folder (default: bench/results)")
    args = parser.parse_args(argv)
    result = {}
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        for dense in (False, True):
            print(f"compiling and profiling the step {'with' if dense else 'without'} --dense-conv-grads ...", flush=True)
            shapes = pool.apply(count_copies, (dense,))
            result["dense" if dense else "plain"] = {"copies": len(shapes), "gradient_shapes": shapes}
            print(f"  {len(shapes)} gradient copies in convolution backwards: {shapes}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "conv_grad_copies_cpu.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
