"""Files the toolkit writes get the mode open() gives a new file (0o666 less the umask), not the
0600 that safetensors' save_file (so save_pretrained, accelerate's save_state) leaves: weights and
caches on a shared machine stay readable to the other users the umask lets read them."""
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.training_utils import EMAModel
from safetensors.torch import save_file

from aria_train.data.cache import TensorCacheWriter, write_shard_file
from aria_train.diffusion.models.configs import tiny_unet_config
from aria_train.runs.atomic import atomic_output_dir
from aria_train.runs.checkpoint import commit_group_checkpoints, generator_state, stage_group_checkpoint


@pytest.fixture(params=[0o022, 0o027], ids=["umask-022", "umask-027"])
def umask(request):
    """The process's umask set to the parameter for the test, and restored after it."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """The permission bits of every file under ``root``."""
    return {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*") if p.is_file()}


def test_cache_shards_get_the_usual_mode(umask, tmp_path):
    with TensorCacheWriter(tmp_path / "cache", shard_rows=2) as writer:
        writer.append(x=torch.zeros(3, 2))
    write_shard_file(tmp_path / "pending.safetensors", {"x": torch.ones(2, 2)})
    found = {**modes(tmp_path / "cache"), "pending": modes(tmp_path)["pending.safetensors"]}
    assert set(found) == {"manifest.json", "shard-00000.safetensors", "shard-00001.safetensors", "pending"}
    assert found == dict.fromkeys(found, 0o666 & ~umask)


def test_an_atomic_output_folder_gets_the_usual_mode(umask, tmp_path):
    with atomic_output_dir(tmp_path / "out") as tmp:
        save_file({"x": torch.zeros(2)}, tmp / "weights.safetensors")
        (tmp / "report.json").write_text("{}")
    assert modes(tmp_path / "out") == {"weights.safetensors": 0o666 & ~umask, "report.json": 0o666 & ~umask}


def test_checkpoint_weights_get_the_usual_mode(umask, tmp_path):
    config = tiny_unet_config(sample_size=8, block_out_channels=(8, 16), cross_attention_dim=8, attention_heads=2,
                              norm_num_groups=4)
    student = UNet2DConditionModel(**config)
    ema = EMAModel(student.parameters(), model_cls=UNet2DConditionModel, model_config=student.config)
    generators = {**generator_state(np.random.default_rng(0), torch.Generator()), "sampler": {}}
    staged = stage_group_checkpoint(tmp_path / "checkpoints", 1, student, ema, {"step": 1}, generators, {})
    commit_group_checkpoints([staged], limit=0)
    found = modes(tmp_path / "checkpoints" / "step-0000001")
    assert {"student/diffusion_pytorch_model.safetensors", "student_ema/diffusion_pytorch_model.safetensors"} <= set(found)
    assert found == dict.fromkeys(found, 0o666 & ~umask)
