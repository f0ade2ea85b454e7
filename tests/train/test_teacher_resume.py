"""`aria teacher --checkpoint-every / --stop-after-seconds / --resume`: a teacher run split across
jobs ends exactly where one uninterrupted run ends (CPU, one thread, a tiny world and UNet)."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import aria_cli
from aria_train.teacher.train import WorldBatches
from aria_train.worlds import World, WorldConfig

WORLD = {
    "image_size": 8, "colours": ["red", "green", "blue"], "shapes": ["circle", "square", "triangle"],
    "unseen": ["red triangle"], "under": ["green circle"], "pool_per_region": 6, "pool_per_under_region": 2,
    "paired_per_region": 2, "paired_per_under_region": 1, "heldout_per_region": 2,
}
TINY = ["--channels", "8", "16", "--layers-per-block", "1", "--attention-heads", "2", "--norm-groups", "4",
        "--text-hidden", "8", "--text-heads", "2", "--text-layers", "1", "--steps", "6", "--batch-size", "4",
        "--warmup-steps", "2", "--log-every", "3", "--eval-per-region", "1", "--eval-steps", "2", "--no-progress"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def teacher(out, world, *extra) -> int:
    return aria_cli.main(["teacher", "--out", str(out), "--world", str(world), *TINY, *map(str, extra)])


def weights(folder):
    return load_file(folder / "diffusion_pytorch_model.safetensors")


def test_a_stopped_and_resumed_teacher_equals_an_uninterrupted_one(tmp_path, capsys):
    world = tmp_path / "world.json"
    world.write_text(json.dumps(WORLD))
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert teacher(whole, world) == 0
    # stops at the first checkpoint (step 2): a stopped run, no teacher yet
    assert teacher(split, world, "--checkpoint-every", "2", "--stop-after-seconds", "1e-9") == 0
    assert (split / "checkpoint" / "training_state.pt").is_file() and not (split / "unet").exists()
    assert torch.load(split / "checkpoint" / "training_state.pt", weights_only=False)["step"] == 2
    capsys.readouterr()
    assert teacher(split, world) == 2  # neither resumed nor overwritten: refused
    assert "holds a stopped teacher run" in capsys.readouterr().err
    assert teacher(split, world, "--resume", "--lr", "0.1") == 2  # a training option cannot change
    assert "changed: lr" in capsys.readouterr().err
    moved = tmp_path / "moved"  # a checkpoint written on a GPU: its generator state is 16 bytes, not the CPU's 5,056
    shutil.copytree(split, moved)
    torch.save(torch.zeros(16, dtype=torch.uint8), moved / "checkpoint" / "rng-rank0.pt")
    assert aria_cli.main(["teacher", "--out", str(moved), "--resume", "--no-progress"]) == 2
    assert "written on another kind of device than cpu" in capsys.readouterr().err
    # run options can: this part stops again at step 4, the last one runs to the end
    assert aria_cli.main(["teacher", "--out", str(split), "--resume", "--no-progress"]) == 0
    assert torch.load(split / "checkpoint" / "training_state.pt", weights_only=False)["step"] == 4
    assert aria_cli.main(["teacher", "--out", str(split), "--resume", "--stop-after-seconds", "0", "--no-progress"]) == 0
    for part in ("unet", "checkpoint/unet_raw"):
        a, b = weights(whole / part), weights(split / part)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    log = [json.loads(line) for line in (whole / "train_log.jsonl").read_text().splitlines()]
    resumed = [json.loads(line) for line in (split / "train_log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"], r["lr"]) for r in resumed] == [(r["step"], r["loss"], r["lr"]) for r in log]
    report_a, report_b = (json.loads((f / "teacher_report.json").read_text()) for f in (whole, split))
    assert report_b["eval_loss"] == report_a["eval_loss"] and report_b["resumed"] and not report_a["resumed"]
    assert teacher(split, world, "--resume") == 2  # finished: nothing to resume
    assert "not a stopped teacher run" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*tmp*"))


def test_the_data_stream_does_not_depend_on_the_worker_count_or_the_start():
    from aria_train.diffusion.text import build_tokenizer

    world = World(WorldConfig(**WORLD))
    tokenizer = build_tokenizer(world.vocabulary(), world.max_words() + 2)

    def batches(workers, start, n):
        loader = torch.utils.data.DataLoader(WorldBatches(world, tokenizer, 4, 0, 0, start=start), batch_size=None,
                                             num_workers=workers)
        stream = iter(loader)
        return [next(stream) for _ in range(n)]

    reference = batches(0, 0, 6)
    for got in (batches(2, 0, 6), [*batches(0, 0, 3), *batches(0, 3, 3)]):
        assert len(got) == 6 and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(reference, got))
    assert not torch.equal(reference[0][1], reference[1][1])


def test_finish_writes_the_stopped_runs_ema_teacher_at_its_checkpoint_even_from_another_device(tmp_path, capsys):
    """`--finish`: a run whose device time ran out becomes a teacher at its last checkpoint, also on the
    CPU for a run that trained on a GPU (whose noise generator the CPU cannot take: none is needed)."""
    from diffusers.training_utils import EMAModel

    from aria_train.teacher.config import TeacherConfig
    from aria_train.teacher.train import build_teacher
    from aria_train.worlds import load_world_config, make_world

    world = tmp_path / "world.json"
    world.write_text(json.dumps(WORLD))
    run = tmp_path / "run"
    assert teacher(run, world, "--checkpoint-every", "2", "--stop-after-seconds", "1e-9") == 0
    torch.save(torch.zeros(16, dtype=torch.uint8), run / "checkpoint" / "rng-rank0.pt")  # as a CUDA generator's
    state = torch.load(run / "checkpoint" / "training_state.pt", weights_only=False)
    capsys.readouterr()
    assert aria_cli.main(["teacher", "--out", str(run), "--resume", "--finish", "--no-progress"]) == 2
    assert "give one" in capsys.readouterr().err
    assert aria_cli.main(["teacher", "--out", str(run), "--finish", "--steps", "3", "--no-progress"]) == 2
    assert "--finish keeps the run's training options; changed: steps" in capsys.readouterr().err
    assert aria_cli.main(["teacher", "--out", str(run), "--finish", "--no-progress"]) == 0
    stages = [line for line in capsys.readouterr().out.splitlines() if line.startswith("teacher evaluation: ")]
    assert len(stages) == 2 and "held-out prompts x 6 timesteps" in stages[0] and "DDIM steps" in stages[1]
    report = json.loads((run / "teacher_report.json").read_text())
    assert report["steps_trained"] == 2 and report["finished_early"] and report["accuracy"]["samples"] > 0
    assert torch.load(run / "checkpoint" / "training_state.pt", weights_only=False)["step"] == 2
    # the written UNet is the checkpoint's EMA (saved as float16)
    config = TeacherConfig.load(run / "teacher_config.json")
    unet, _, text_encoder, _ = build_teacher(config, make_world(load_world_config(world)))
    params = [p for m in (unet, text_encoder) for p in m.parameters()]
    ema = EMAModel(params, decay=config.ema_decay)
    ema.load_state_dict(state["ema"])
    ema.copy_to(params)
    written = weights(run / "unet")
    expected = {k: v.to(torch.float16) for k, v in unet.state_dict().items()}
    assert written.keys() == expected.keys() and all(torch.equal(written[k], expected[k]) for k in written)
    assert aria_cli.main(["teacher", "--out", str(run), "--finish", "--no-progress"]) == 2  # a teacher now
    assert "--finish: " in capsys.readouterr().err
