"""The test bed's representational floor (DistillConfig.blind_regions): the student is shown the
null text wherever the teacher is shown a prompt of a blind region -- in training, in the held-out
monitor and in `aria eval` of its run -- so it cannot tell those regions apart."""
import json
import shutil

import numpy as np
import pytest
import torch

import aria_cli
from aria_train.diffusion.prompts import blinded
from cli_errors import refused
from fixtures_train import assert_resumes_exactly, distill, make_teacher
from test_noisy_regions import _stream


def test_blinded_sets_the_rows_of_blind_regions_to_the_null_text():
    hidden = torch.arange(5 * 2 * 3, dtype=torch.float32).view(5, 2, 3)
    null = torch.full((1, 2, 3), -1.0)
    regions = np.array([0, 2, -1, 2, 1])
    blind = [2]
    out = blinded(hidden, regions, blind, null)
    assert torch.equal(out[[1, 3]], null.expand(2, -1, -1))
    assert torch.equal(out[[0, 2, 4]], hidden[[0, 2, 4]])  # other regions and the null text (-1) unchanged
    one = blinded(hidden, regions, [1], null)  # region 1 is row 4 alone
    assert torch.equal(one[[4]], null) and torch.equal(one[:4], hidden[:4])
    assert blinded(hidden, np.array([0, -1]), blind, null) is None  # no blind row: the student sees hidden


def test_student_is_blind_on_blind_regions_only(paths):
    stream = _stream(paths, method="rc", sampler="region", blind_regions=[1])
    null = stream.encoder.null
    seen = 0
    for _ in range(20):
        batch = stream.next()
        on = batch.regions == 1
        if not on.any():
            assert batch.student_hidden is None
            continue
        seen += int(on.sum())
        assert torch.equal(batch.student_hidden[on], null.expand(int(on.sum()), -1, -1))
        assert torch.equal(batch.student_hidden[~on], batch.hidden[~on])
        assert not torch.equal(batch.hidden[on], null.expand(int(on.sum()), -1, -1))  # the teacher sees the prompt
    assert seen > 0
    plain, same = _stream(paths, method="rc", sampler="region"), _stream(paths, method="rc", sampler="region",
                                                                        blind_regions=[1])
    for _ in range(3):  # no other draw changes
        x, y = plain.next(), same.next()
        assert x.student_hidden is None and torch.equal(x.noise, y.noise) and np.array_equal(x.prompt_ids, y.prompt_ids)


def test_monitor_and_eval_measure_the_student_as_it_trained(paths, tmp_path):
    heldout = tmp_path / "heldout.csv"
    heldout.write_text("text,region\na red circle,0\na blue circle,0\na green cross,2\na red square,1\n")
    run = tmp_path / "run"
    assert distill(paths, run, "--method", "rc", "--steps", "4", "--blind-regions", "0", "--log-every", "2",
                   "--heldout", str(heldout), "--heldout-every", "2") == 0
    assert json.loads((run / "config.json").read_text())["blind_regions"] == [0]
    # the same weights outside their run: evaluated as an ordinary student
    plain = tmp_path / "plain"
    shutil.copytree(sorted((run / "checkpoints").iterdir())[-1] / "student_ema", plain)
    out = tmp_path / "eval"
    assert aria_cli.main(["eval", "--teacher", str(paths.teacher), "--student", str(run), "--student", str(plain),
                          "--heldout", str(heldout), "--out", str(out), "--samples-per-region", "0", "--steps", "2",
                          "--timesteps", "500", "900", "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())["discrepancy"]
    blind_run, seeing = ({r["region"]: r["all"] for r in results[name]["per_region"]} for name in results)
    assert blind_run[0] != pytest.approx(seeing[0], rel=1e-3)  # region 0: the run's student is shown the null text
    assert blind_run[1] == pytest.approx(seeing[1], rel=1e-6) and blind_run[2] == pytest.approx(seeing[2], rel=1e-6)


def test_heldout_monitor_shows_the_student_the_null_text_on_blind_regions(paths, tmp_path):
    from aria_train.diffusion.loading import load_unet
    from aria_train.distill.config import DistillConfig
    from aria_train.distill.inputs import load_inputs
    from aria_train.evaluation.heldout_monitor import HeldoutMonitor

    heldout = tmp_path / "heldout.csv"
    heldout.write_text("text,region\na red circle,0\na green cross,2\na blue circle,0\n")
    inputs = load_inputs(DistillConfig(teacher=str(paths.teacher), paired_cache=str(paths.paired),
                                       pool=str(paths.pool)).validate())
    cpu = torch.device("cpu")
    blind = HeldoutMonitor(heldout, 4, 3, inputs, inputs.teacher, cpu, blind_regions=[0])
    seeing = HeldoutMonitor(heldout, 4, 3, inputs, inputs.teacher, cpu)
    shown = blind.student_hidden["student"]
    on = blind.regions == 0
    assert seeing.student_hidden == {} and torch.equal(blind.hidden, seeing.hidden)
    assert torch.equal(shown[on], inputs.prompts.null().expand(int(on.sum()), -1, -1))
    assert torch.equal(shown[~on], blind.hidden[~on])
    student = load_unet(make_teacher(tmp_path / "other", seed=1) / "unet")  # another random UNet
    with_blind, without = blind.measure(student)["heldout"], seeing.measure(student)["heldout"]
    assert all(np.isfinite(v) for v in with_blind + without if v is not None)
    assert with_blind[0] != pytest.approx(without[0], rel=1e-3)



def test_heldout_level_is_the_p_t_weighted_discrepancy_of_the_measured_prompts(paths, tmp_path):
    """"heldout_level" compares runs from their logs alone (the per-region "heldout" is relative to
    the run's own mean): it must equal the direct computation over the monitor's prompts."""
    from aria_train.diffusion.loading import load_unet
    from aria_train.distill.config import DistillConfig
    from aria_train.distill.inputs import load_inputs
    from aria_train.evaluation.discrepancy import fixed_timestep_errors, switch_weights
    from aria_train.evaluation.heldout_monitor import MONITOR_TIMESTEPS, HeldoutMonitor

    heldout = tmp_path / "heldout.csv"
    heldout.write_text("text,region\na red circle,0\na green cross,2\na blue circle,0\n")
    inputs = load_inputs(DistillConfig(teacher=str(paths.teacher), paired_cache=str(paths.paired),
                                       pool=str(paths.pool)).validate())
    monitor = HeldoutMonitor(heldout, 4, 3, inputs, inputs.teacher, torch.device("cpu"))
    student = load_unet(make_teacher(tmp_path / "other", seed=1) / "unet")
    measured = monitor.measure(student)
    errors = fixed_timestep_errors({"s": student}, inputs.scheduler, monitor.x0, monitor.hidden, monitor.seeds,
                                   MONITOR_TIMESTEPS, reference=inputs.teacher)["s"].numpy()
    direct = (errors @ switch_weights(MONITOR_TIMESTEPS, inputs.scheduler.config.num_train_timesteps)).mean()
    assert measured["heldout_level"] == pytest.approx(direct, rel=1e-12) and measured["heldout_level"] > 0
    assert measured["heldout"][1] is None and len(measured["heldout"]) == 3


def test_resume_with_blind_regions_is_exact(paths, tmp_path):
    assert_resumes_exactly(paths, tmp_path, "--method", "aria", "--blind-regions", "2", "--checkpoint-every", "2")


@pytest.mark.parametrize("extra, needle", [
    (("--blind-regions", "7"), "blind_regions"),
    (("--blind-regions", "-1"), "--blind-regions"),
])
def test_bad_blind_regions_refused(paths, tmp_path, capsys, extra, needle):
    out = tmp_path / "run"
    refused(paths.options(out, "--method", "aria", "--steps", "2", *extra), capsys, needle)
    assert not out.exists()
