"""ProgressPolicy in the trainer (``--aria-policy progress``): which regions count as trained, the
policy's state in checkpoints (exact resume, the other policy refused), its metrics, bitwise-equal
policy state on every rank of a 2-process run, and one-line errors for bad option values."""
import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import aria_cli
from aria_theory.allocation import AllocationPolicy
from aria_theory.progress import ProgressPolicy
from aria_theory.tracker import Tracker
from aria_train.conditioning.aria import AriaOptions, AriaSampler
from aria_train.conditioning.feedback import Feedback
from fixtures_train import DistillPaths, make_distill_inputs, run_two_processes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T = 1000
# fast 0.5 and rate 0.05 so that the policy's fit is identified within a few steps of a tiny run
PROGRESS = ("--method", "aria", "--aria-policy", "progress", "--aria-warmup", "1", "--aria-observe", "all",
            "--aria-progress-rate", "0.05", "--aria-progress-fast", "0.5")


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> DistillPaths:
    return make_distill_inputs(tmp_path_factory.mktemp("progress-inputs"))


def records(out):
    return [{k: v for k, v in json.loads(line).items() if k != "images_per_s"}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def progress_sampler(**options) -> AriaSampler:
    regions = np.array([0, 0, 1, 1, 2, 2])
    return AriaSampler(regions, T, AriaOptions(policy="progress", warmup=0, normalise="none", **options))


def feedback(regions, switched, nulled, finite=True) -> Feedback:
    n = len(regions)
    return Feedback(regions=np.array(regions), switched=np.array(switched), nulled=np.array(nulled),
                    timesteps=np.full(n, 500), discrepancy=np.linspace(1.0, 2.0, n), losses={}, finite=finite)


def assert_consistent_sampler_state(state: dict, logged: list[dict]) -> None:
    """The checkpointed policy trained exactly the non-null samples the run logged by region, and
    the last logged pi is the restored policy's pi of the restored tracker's estimates."""
    policy = AllocationPolicy.from_state_dict(state["policy"])
    assert type(policy) is ProgressPolicy
    assert policy.trained.tolist() == np.sum([r["region_counts"] for r in logged], axis=0).tolist()
    estimates = Tracker.from_state_dict(state["tracker"]).estimates
    assert logged[-1]["pi"] == policy.probabilities(estimates).tolist()


# ---------------------------------------------------------------- the sampler on its own


def test_trained_regions_include_paired_samples_and_exclude_null_ones():
    sampler = progress_sampler()  # observes switched samples only (the default)
    # regions: paired 0, switched 1, null (-1), switched 2, paired 1
    feedback([0, 1, -1, 2, 1], [False, True, False, True, False], [False, False, True, False, False]).observe(sampler)
    assert sampler.policy.trained.tolist() == [1, 2, 1]  # paired samples train their region too
    assert sampler.policy.counts.tolist() == [0, 1, 1]  # but only the switched ones are observed
    assert np.array_equal(sampler.tracker.counts, sampler.policy.counts)  # one observation feeds both
    # a micro-batch whose loss was not finite trained nothing, though its samples are observed
    feedback([0, 1], [True, True], [False, False], finite=False).observe(sampler)
    assert sampler.policy.trained.tolist() == [1, 2, 1] and sampler.policy.counts.tolist() == [1, 2, 1]
    # called without ``trained``, every given sample counts as trained
    sampler.observe(np.array([2, 2]), np.array([1.0, 1.0]), np.array([5, 5]), np.array([False, True]))
    assert sampler.policy.trained.tolist() == [1, 2, 3] and sampler.policy.counts.tolist() == [1, 2, 2]


def test_state_round_trips_through_json_exactly_and_the_other_policy_is_refused():
    rng = np.random.default_rng(0)
    sampler = progress_sampler(progress_fast=0.5, base="shares")
    for _ in range(8):
        sampler.observe(rng.integers(0, 3, 6), rng.exponential(size=6), rng.integers(0, T, 6),
                        trained=rng.integers(0, 3, 9))
    state = json.loads(json.dumps(sampler.state_dict()))  # what trainer_state.json holds
    restored = progress_sampler(progress_fast=0.5, base="shares")
    restored.load_state_dict(state)
    assert restored.state_dict() == sampler.state_dict()
    assert np.array_equal(restored.probabilities(), sampler.probabilities())
    assert np.isfinite(sampler.policy.reducible).any()  # the fit is identified: the test compares estimates

    aria = AriaSampler(np.array([0, 0, 1, 1, 2, 2]), T, AriaOptions(warmup=0, normalise="none"))
    with pytest.raises(ValueError, match="allocates with ProgressPolicy, this one with AriaPolicy"):
        aria.load_state_dict(state)
    with pytest.raises(ValueError, match="allocates with AriaPolicy, this one with ProgressPolicy"):
        restored.load_state_dict(aria.state_dict())
    with pytest.raises(ValueError, match="ProgressPolicy differs in rate"):
        progress_sampler(progress_fast=0.5, base="shares", progress_rate=0.01).load_state_dict(state)
    assert restored.state_dict() == sampler.state_dict()  # a refused state changes nothing


def test_metrics_add_the_reducible_estimates_under_progress_only():
    sampler = progress_sampler(progress_fast=0.5)
    assert sampler.metrics()["reducible"] == [None, None, None]  # nothing identified yet: JSON null
    for trained in range(4):
        sampler.observe(np.array([0]), np.array([2.0 - trained]), np.array([5]), trained=np.array([0, 0]))
    reducible = sampler.metrics()["reducible"]
    assert reducible[0] > 0 and reducible[1:] == [None, None]
    assert "reducible" not in AriaSampler(np.array([0, 1]), T, AriaOptions()).metrics()


# ---------------------------------------------------------------- in the trainer


def test_progress_run_resumes_bitwise_exactly(paths, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    args = (*PROGRESS, "--grad-accum", "2", "--checkpoint-every", "2")
    assert aria_cli.main(paths.options(straight, *args, "--steps", "6")) == 0
    assert aria_cli.main(paths.options(split, *args, "--steps", "4")) == 0
    assert aria_cli.main(["distill", "--out", str(split), "--resume", "latest", "--steps", "6"]) == 0
    a, b = (run / "checkpoints" / "step-0000006" for run in (straight, split))
    for part in ("student", "student_ema"):
        (fa,), (fb,) = (p.glob(f"{part}/*.safetensors") for p in (a, b))
        ta, tb = load_file(fa), load_file(fb)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    state = json.loads((a / "trainer_state.json").read_text())["sampler"]
    assert state == json.loads((b / "trainer_state.json").read_text())["sampler"]
    logged = records(straight)
    assert logged == records(split)
    assert_consistent_sampler_state(state, logged)
    assert any(m is not None for m in logged[-1]["reducible"])  # the policy's fit is identified


@pytest.mark.slow
def test_two_processes_hold_the_same_policy_state(paths, tmp_path):
    """gloo DDP with 2 CPU processes: each rank saves its own copy of the sampler state in its
    rng-rank file; both equal the main process's, and the policy counted every rank's samples."""
    out = tmp_path / "run"
    run_two_processes(*paths.options(out, *PROGRESS, "--steps", "3", "--grad-accum", "2", "--checkpoint-every", "3"))
    final = out / "checkpoints" / "step-0000003"
    main = json.loads((final / "trainer_state.json").read_text())["sampler"]
    ranks = [json.loads((final / f"rng-rank{r}.json").read_text())["sampler"] for r in (0, 1)]
    assert ranks[0] == ranks[1] == main
    logged = records(out)
    assert_consistent_sampler_state(main, logged)
    assert sum(sum(r["region_counts"]) for r in logged) > 3 * 2 * 4  # more than one rank's samples


BAD_OPTIONS = {
    "rate 0": (("--aria-progress-rate", "0"), "--aria-progress-rate must be finite and > 0"),
    "slow = fast": (("--aria-progress-slow", "0.05"), "must satisfy 0 <= slow < fast <= 1"),
    "fast > 1": (("--aria-progress-fast", "1.5"), "must satisfy 0 <= slow < fast <= 1"),
    "tau with progress": (("--aria-tau", "1"), "--aria-tau .* applies to --aria-policy 'aria' only"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_bad_progress_options_are_one_line_exit_2(paths, tmp_path, capsys, case):
    extra, match = BAD_OPTIONS[case]
    out = tmp_path / "run"
    assert aria_cli.main(paths.options(out, "--steps", "2", "--method", "aria", "--aria-policy", "progress", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("aria: error: "), err
    assert re.search(match, err[0]), err[0]
    assert not out.exists()
