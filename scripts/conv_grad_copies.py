"""How many gradients the compiled channels-last distillation step's convolution backwards copy, with and
without the channels-last-dense convolution gradients the trainer gives the student (issue 16;
aria_train/diffusion/models/conv_grad_layout.py; measured while they were a candidate), on the CPU with bench.step_setup's ``sd-tiny`` teacher
(SD v1.4's four stages, three with cross-attention) and its BK-SDM-Small student.

Each variant runs in its own process (dynamo does not guard on hooks, so one process would reuse the
first variant's graphs): the trainer's step (``train_step``, both UNets set up and compiled as ``aria
distill --compile --channels-last`` does, the loss compiled) on 4 images, one step to compile, one
profiled; the count is the ``aten::contiguous`` calls made inside ``aten::convolution_backward`` (the
copies of a gradient that is not channels-last-dense; on a GPU cuDNN makes the same ones). A few
minutes on 2 cores.

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
    import torch
    from torch.profiler import profile

    from aria_train.diffusion.models.conv_grad_layout import set_conv_gradient_layout
    from aria_train.distill.losses import LossWeights
    from aria_train.distill.speed import compile_loss
    from aria_train.distill.step import train_step
    from bench.step_setup import build, make_batch

    torch.manual_seed(0)
    cpu = torch.device("cpu")
    models, inputs = build("sd-tiny", "small", "blocks", cpu, {"compile": True, "channels_last": True})
    # the trainer's set-up (build's) makes them dense; before the first compiled call, which traces the hooks
    set_conv_gradient_layout(models.student.unet, dense=dense)
    models.loss_fn = compile_loss()
    generator = torch.Generator().manual_seed(1)
    weights = LossWeights(1.0, 1.0, 0.0)
    train_step(models, make_batch(4, inputs, cpu, generator), weights)  # compiles
    with profile(record_shapes=True) as traced:
        train_step(models, make_batch(4, inputs, cpu, generator), weights)
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
            print(f"compiling and profiling the step {'with' if dense else 'without'} dense convolution gradients ...", flush=True)
            shapes = pool.apply(count_copies, (dense,))
            result["dense" if dense else "plain"] = {"copies": len(shapes), "gradient_shapes": shapes}
            print(f"  {len(shapes)} gradient copies in convolution backwards: {shapes}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "conv_grad_copies_cpu.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
