"""What `aria distill` accepts and refuses: the config's JSON round trip and validation, bad inputs
(one line, exit 2, no run folder) and bad resumes (the run is left untouched), on tiny CPU
fixtures (tests/fixtures_train.py; the ``paths`` fixture is in this folder's conftest.py)."""
import re
import shutil

import pytest
import torch

import aria_cli
from aria_train.data.cache import TensorCacheWriter
from aria_train.distill.config import DistillConfig
from fixtures_train import MAX_TOKENS, TEXT_WIDTH, distill, pool_frame


# ---------------------------------------------------------------- config


def test_config_json_round_trip(tmp_path):
    config = DistillConfig(teacher="t", paired_cache="p", pool="q", method="kd", lr=1e-3, text_cache=None)
    config.save(tmp_path / "c.json")
    assert DistillConfig.load(tmp_path / "c.json") == config
    with pytest.raises(ValueError, match="unknown fields bogus"):
        DistillConfig.from_dict({**config.to_dict(), "bogus": 1})


@pytest.mark.parametrize("change,match", [
    ({"method": "ddpm"}, "method must be one of"), ({"null_prob": 1.5}, "null_prob"), ({"steps": 0}, "steps"),
    ({"ema_decay": 1.0}, "ema_decay"), ({"channel_scale": 2.0}, "channel_scale"), ({"teacher": ""}, "--teacher"),
    ({"l_out": 0.0, "l_feat": 0.0}, "nothing to train"),
])
def test_config_validation(change, match):
    config = DistillConfig(teacher="t", paired_cache="p", pool="q")
    with pytest.raises(ValueError, match=match):
        DistillConfig.from_dict({**config.to_dict(), **change})


# ---------------------------------------------------------------- bad input


def _corrupt_unet(paths, root):
    teacher = root / "teacher"
    shutil.copytree(paths.teacher, teacher)
    (weights,) = (teacher / "unet").glob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[:100])
    return ["--teacher", str(teacher)]


def _teacher_without(part):
    def make(paths, root):
        teacher = root / "teacher"
        shutil.copytree(paths.teacher, teacher)
        shutil.rmtree(teacher / part)
        return ["--teacher", str(teacher)]
    return make


def _pool(frame):
    def make(paths, root):
        frame.to_csv(root / "pool.csv", index=False)
        return ["--pool", str(root / "pool.csv")]
    return make


def _paired(**tensors):
    def make(paths, root):
        with TensorCacheWriter(root / "paired") as writer:
            writer.append(**tensors)
        return ["--paired-cache", str(root / "paired")]
    return make


def _cache_of_another_teacher(paths, root):
    """The fixture's paired samples, recorded as sampled by a teacher whose files differ (retrained)."""
    from aria_train.data.cache import TensorCache, folder_fingerprint
    from aria_train.diffusion.loading import teacher_parts

    other = root / "retrained"
    shutil.copytree(paths.teacher, other)
    (other / "scheduler" / "scheduler_config.json").write_text(
        (other / "scheduler" / "scheduler_config.json").read_text() + "\n")
    cache = TensorCache(paths.paired)
    with TensorCacheWriter(root / "paired",
                           metadata={"teacher_fingerprint": folder_fingerprint(other, teacher_parts(other))}) as writer:
        writer.append(sample=cache.get("sample"), prompt_id=cache.get("prompt_id"))
    return ["--paired-cache", str(root / "paired")]


def _text_rows(rows):
    def make(paths, root):
        with TensorCacheWriter(root / "text") as writer:
            writer.append(hidden=torch.zeros(rows, MAX_TOKENS, TEXT_WIDTH))
        return ["--text-cache", str(root / "text")]
    return make


def _corrupt_shard(paths, root):
    """The good paired cache with one byte of a sample flipped (the manifest left as it was)."""
    shutil.copytree(paths.paired, root / "paired")
    shard = root / "paired" / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF  # inside the tensor data, so the file still parses: only the checksum can tell
    shard.write_bytes(bytes(data))
    return ["--paired-cache", str(root / "paired")]


def _no_regions(paths, root):
    pool_frame()[["text"]].to_csv(root / "pool.csv", index=False)
    return ["--pool", str(root / "pool.csv"), "--sampler", "region"]


BAD_INPUTS = {
    "missing teacher": (lambda p, r: ["--teacher", str(r / "nowhere")], "teacher folder .* not found"),
    "teacher without unet": (_teacher_without("unet"), "lacks unet/"),
    "teacher without scheduler": (_teacher_without("scheduler"), "lacks scheduler/"),
    "corrupt teacher weights": (_corrupt_unet, "cannot load teacher"),
    "empty pool": (_pool(pool_frame().iloc[:0]), "empty"),
    "pool without text": (_pool(pool_frame().rename(columns={"text": "caption"})), "no text column"),
    "region sampler without regions": (_no_regions, "needs a region column"),
    "paired cache without prompt ids": (_paired(sample=torch.zeros(4, 3, 16, 16)), "lacks the tensors prompt_id"),
    "paired prompt id out of pool": (_paired(sample=torch.zeros(4, 3, 16, 16), prompt_id=torch.tensor([0, 1, 2, 12])),
                                     "outside the pool"),
    "paired channels": (_paired(sample=torch.zeros(4, 4, 16, 16), prompt_id=torch.zeros(4, dtype=torch.int64)),
                        "takes 3 channels"),
    "text cache rows": (_text_rows(11), "has 11 rows, the pool 12"),
    "paired shard with a flipped byte": (_corrupt_shard, "is corrupt: its SHA-256 differs"),
    "paired cache of another teacher": (_cache_of_another_teacher, "was sampled by another teacher than"),
    "bad option value": (lambda p, r: ["--null-prob", "2"], "--null-prob must be in"),
    "region sampler with kd": (lambda p, r: ["--method", "kd", "--sampler", "region"], "applies to --method rc only"),
    "region sampler with aria": (lambda p, r: ["--method", "aria", "--sampler", "region"], "applies to --method rc only"),
    "teacher stream without CUDA": (lambda p, r: ["--teacher-stream"], "--teacher-stream needs a CUDA device"),
    "resume without checkpoint": (lambda p, r: ["--resume", "latest"], "no checkpoint"),
    "resume from missing path": (lambda p, r: ["--resume", str(r / "nowhere")], "not found"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_no_run_dir(paths, tmp_path, capsys, case):
    if case == "teacher stream without CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has the CUDA device the option needs")
    make, match = BAD_INPUTS[case]
    out = tmp_path / "run"
    extra = make(paths, tmp_path)
    assert distill(paths, out, "--steps", "2", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aria: error: "), err
    assert re.search(match, err[0]), err[0]
    assert not out.exists()


def test_bad_resume_leaves_run_untouched(paths, tmp_path, capsys):
    out = tmp_path / "run"
    assert distill(paths, out, "--steps", "2", "--sampler", "region") == 0
    snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()

    # a pool with K = 2 regions where the checkpoint's sampler had 3
    frame = pool_frame()
    frame["region"] = frame["region"].clip(upper=1)
    frame.to_csv(tmp_path / "pool2.csv", index=False)
    state_file = out / "checkpoints" / "step-0000002" / "trainer_state.json"
    cases = [
        (["--resume", "latest", "--steps", "4", "--pool", str(tmp_path / "pool2.csv")], "K mismatch"),
        (["--resume", "latest", "--steps", "4", "--lr", "1"], "changed config: lr"),
        (["--steps", "4"], "exists and is not empty"),
        (["--resume", "latest", "--steps", "1"], "--steps 1 is below the checkpoint's step 2"),
    ]
    for args, match in cases:
        assert aria_cli.main(["distill", "--out", str(out), *args] if "--resume" in args else
                             paths.options(out, *args)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err
    state_file.write_text("{not json")
    assert aria_cli.main(["distill", "--out", str(out), "--resume", "latest", "--steps", "4"]) == 2
    assert "cannot read" in capsys.readouterr().err
    state_file.write_bytes(snapshot[state_file])
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot

