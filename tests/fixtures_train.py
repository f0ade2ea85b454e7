"""Tiny distillation inputs for tests (a helper module, not a conftest): a teacher folder in the
diffusers layout, a prompt pool with regions, a paired cache and a text-embedding cache.

Everything is built from configs and seeds in well under a second; nothing is downloaded.
    paths = make_distill_inputs(tmp_path)   # -> DistillPaths(teacher, pool, paired, text)
    distill(paths, tmp_path / "run", "--steps", "2")   # `aria distill` on them in this process
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from aria_train.data.cache import TensorCacheWriter
from aria_train.diffusion.models.configs import tiny_unet_config
from aria_train.diffusion.text import build_text_encoder, build_tokenizer, encode_prompts, save_text_stack

COLORS = ("red", "green", "blue", "white")
SHAPES = ("circle", "square", "cross")  # region = shape index
IMAGE_SIZE = 16
TEXT_WIDTH = 16
MAX_TOKENS = 6


@dataclass
class DistillPaths:
    teacher: Path
    pool: Path
    paired: Path
    text: Path

    def options(self, out: Path, *extra: str, text_cache: bool = False) -> list[str]:
        """`aria distill` arguments for these inputs (tiny, fast settings), plus ``extra``."""
        args = ["distill", "--out", str(out), "--teacher", str(self.teacher), "--pool", str(self.pool),
                "--paired-cache", str(self.paired), "--batch-size", "4", "--log-every", "1",
                "--checkpoint-every", "2", "--sample-every", "0"]
        if text_cache:
            args += ["--text-cache", str(self.text)]
        return args + list(extra)


def pool_frame() -> pd.DataFrame:
    """12 prompts "a COLOR SHAPE", region = shape (K = 3)."""
    rows = [(f"a {c} {s}", k) for k, s in enumerate(SHAPES) for c in COLORS]
    return pd.DataFrame(rows, columns=["text", "region"])


def make_teacher(folder: Path, seed: int = 0, block_out_channels: tuple[int, ...] = (8, 16)) -> Path:
    """A teacher folder (unet/, text_encoder/, tokenizer/, scheduler/) with random weights."""
    tokenizer = build_tokenizer(["a", *COLORS, *SHAPES], max_length=MAX_TOKENS)
    encoder = build_text_encoder(len(tokenizer), hidden=TEXT_WIDTH, layers=1, heads=2, max_length=MAX_TOKENS, seed=seed)
    save_text_stack(folder, tokenizer, encoder)
    config = tiny_unet_config(sample_size=IMAGE_SIZE, block_out_channels=block_out_channels,
                              cross_attention_dim=TEXT_WIDTH, attention_heads=2, norm_num_groups=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**config)
    unet.save_pretrained(folder / "unet")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(folder / "scheduler")
    return folder


def make_distill_inputs(root: Path, paired_rows: int = 16, seed: int = 0) -> DistillPaths:
    """Teacher, pool (parquet), paired cache of random samples in [-1, 1] whose captions are
    pool rows of the first two regions (the third is "unseen"), and a text cache of the pool."""
    root = Path(root)
    teacher = make_teacher(root / "teacher", seed)
    frame = pool_frame()
    pool = root / "pool.parquet"
    frame.to_parquet(pool)
    rng = np.random.default_rng(seed)
    seen = np.flatnonzero(frame["region"].to_numpy() < 2)
    with TensorCacheWriter(root / "paired", shard_rows=7) as writer:
        writer.append(sample=torch.from_numpy(rng.uniform(-1, 1, (paired_rows, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)),
                      prompt_id=torch.from_numpy(rng.choice(seen, paired_rows)))
    from aria_train.diffusion.text import load_text_stack

    tokenizer, encoder = load_text_stack(teacher)
    hidden, _ = encode_prompts(tokenizer, encoder, frame["text"].tolist(), "cpu")
    with TensorCacheWriter(root / "text") as writer:
        writer.append(hidden=hidden)
    return DistillPaths(teacher, pool, root / "paired", root / "text")


def distill(paths: DistillPaths, out: Path, *extra: str, text_cache: bool = False) -> int:
    """`aria distill` on ``paths`` into ``out`` (``DistillPaths.options``) in this process; its exit code."""
    import aria_cli

    return aria_cli.main(paths.options(out, *extra, text_cache=text_cache))


TIMING = {"images_per_s"}  # the only metrics that depend on the wall clock


def run_metrics(out: Path) -> list[dict]:
    """A run's metrics records without the wall-clock ones: equal for runs that trained alike."""
    import json

    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_resumes_exactly(paths: DistillPaths, root: Path, *extra: str) -> Path:
    """A 4-step run, and the same run killed after step 3 with only its step-2 checkpoint left,
    then resumed to step 4: their metrics must be equal. Needs --checkpoint-every 2 in ``extra``;
    returns the straight run's folder."""
    import shutil

    import aria_cli

    straight, split = root / "straight", root / "split"
    assert distill(paths, straight, *extra, "--steps", "4") == 0
    assert distill(paths, split, *extra, "--steps", "3") == 0
    shutil.rmtree(split / "checkpoints" / "step-0000003")
    assert aria_cli.main(["distill", "--out", str(split), "--resume", "latest", "--steps", "4"]) == 0
    assert run_metrics(straight) == run_metrics(split)
    return straight


def run_two_processes(*args: str) -> None:
    """`aria ARGS` as 2 CPU processes of one gloo data-parallel group (torchrun); asserts success."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "aria_cli"]
    done = subprocess.run(launch + [str(a) for a in args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
