"""ARIA in the trainer (aria_train.conditioning.aria): the proven tracker is the one that allocates,
pi is always a valid distribution, beta = 0 / eps = 1 is region-uniform sampling exactly, the
unbiased mode's weights, exact resumption with the tracker, and bitwise-equal tracker state on
every rank of a 2-process run."""
import json
import shutil

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import aria_cli
import aria_theory.allocation
import aria_theory.tracker
from aria_train.conditioning.aria import AriaOptions, AriaSampler, TimestepNormaliser
from aria_train.runs.checkpoint import list_checkpoints
from aria_train.conditioning.samplers import RegionUniformSampler
from cli_errors import refused
from fixtures_train import DistillPaths, make_distill_inputs, run_two_processes

T = 1000
ARIA = ("--method", "aria", "--aria-warmup", "1")


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> DistillPaths:
    return make_distill_inputs(tmp_path_factory.mktemp("aria-inputs"))


def records(out):
    return [{k: v for k, v in json.loads(line).items() if k != "images_per_s"}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- the sampler on its own


def test_the_trainers_tracker_and_policy_are_aria_theorys_classes(paths, tmp_path):
    sampler = AriaSampler(np.array([0, 1, 1, 2]), T, AriaOptions(warmup=0))
    assert type(sampler.tracker) is aria_theory.tracker.RegionTracker
    assert type(sampler.policy) is aria_theory.allocation.AriaPolicy
    assert type(sampler.normaliser.tracker) is aria_theory.tracker.RegionTracker
    # and a real run's checkpoint holds aria_theory's tracker, which aria_theory restores
    out = tmp_path / "run"
    assert aria_cli.main(paths.options(out, *ARIA, "--steps", "3")) == 0
    state = json.loads((list_checkpoints(out / "checkpoints")[-1] / "trainer_state.json").read_text())
    tracker = aria_theory.tracker.Tracker.from_state_dict(state["sampler"]["tracker"])
    assert type(tracker) is aria_theory.tracker.RegionTracker and tracker.counts.sum() > 0


def test_beta_zero_eps_one_draws_exactly_as_region_uniform():
    regions = np.random.default_rng(1).integers(0, 7, 500)
    aria = AriaSampler(regions, T, AriaOptions(warmup=0, beta=0.0, eps=1.0))
    uniform = RegionUniformSampler(regions)
    rng_a, rng_u, obs = np.random.default_rng(5), np.random.default_rng(5), np.random.default_rng(6)
    for _ in range(20):
        n = int(obs.integers(0, 40))
        assert np.array_equal(aria.draw(n, rng_a), uniform.draw(n, rng_u))
        # observations move the tracker but cannot move pi
        aria.observe(obs.integers(0, 7, 30), obs.exponential(size=30) * 10 ** obs.uniform(-3, 3), obs.integers(0, T, 30))
    assert aria.tracker.counts.sum() == 600 and np.ptp(aria.tracker.estimates) > 0


def test_warmup_draws_rc_shares_then_allocates():
    regions = np.array([0] * 90 + [1] * 10)
    sampler = AriaSampler(regions, T, AriaOptions(beta=1.0, eps=0.0, warmup=2, normalise="none"))
    assert np.allclose(sampler.probabilities(), [0.9, 0.1])
    sampler.observe(np.array([0, 1]), np.array([1.0, 3.0]), np.array([10, 10]))
    assert np.allclose(sampler.probabilities(), [0.9, 0.1])  # one batch observed, warm-up is two
    sampler.observe(np.array([0, 1]), np.array([1.0, 3.0]), np.array([10, 10]))
    assert np.allclose(sampler.probabilities(), [0.25, 0.75])  # m = (1, 3), beta 1, no floor


def test_unbiased_weights_make_expected_weight_one_and_match_aria_theory():
    regions = np.array([0] * 50 + [1] * 30 + [2] * 20)
    sampler = AriaSampler(regions, T, AriaOptions(warmup=0, beta=2.0, eps=0.1, unbiased=True, normalise="none"))
    sampler.observe(np.array([0, 1, 2]), np.array([1.0, 2.0, 5.0]), np.zeros(3, np.int64))
    pi, q = sampler.probabilities(), np.array([0.5, 0.3, 0.2])
    w = sampler.loss_weights(np.arange(3))
    assert np.allclose(w, q / pi) and np.isclose((pi * w).sum(), 1.0)  # E_pi[q/pi] = 1 exactly
    assert np.array_equal(AriaSampler(regions, T, AriaOptions(warmup=0)).loss_weights(np.arange(3)), np.ones(3))


def test_timestep_normalisation_removes_per_bin_scale():
    rng = np.random.default_rng(0)
    t = rng.integers(0, T, 4000)
    values = rng.exponential(size=4000)
    scale = 10.0 ** (t // 100)  # the discrepancy grows by 10x per bin
    a, b = TimestepNormaliser(T, 10, 0.01), TimestepNormaliser(T, 10, 0.01)
    out_a = np.concatenate([a(values[i:i + 40], t[i:i + 40]) for i in range(0, 4000, 40)])
    out_b = np.concatenate([b(values[i:i + 40] * scale[i:i + 40], t[i:i + 40]) for i in range(0, 4000, 40)])
    assert np.allclose(out_a, out_b, rtol=1e-9)
    assert out_b[-2000:].mean() == pytest.approx(1.0, abs=0.1)  # normalised to the bin mean


estimates = st.lists(st.one_of(st.floats(0, 1e6), st.just(0.0)), min_size=1, max_size=12)


@given(values=estimates, beta=st.floats(0, 8), eps=st.floats(0, 1), tau=st.one_of(st.just(0.0), st.floats(1e-3, 10)),
       shares=st.booleans(), seed=st.integers(0, 2**32 - 1))
@example(values=[0.0, 0.0], beta=1.0, eps=0.0, tau=0.0, shares=False, seed=0)  # nothing positive observed
@example(values=[1e6, 1e-300], beta=8.0, eps=0.0, tau=1e-3, shares=True, seed=0)  # extreme weights
def test_pi_is_always_a_valid_distribution(values, beta, eps, tau, shares, seed):
    k = len(values)
    rng = np.random.default_rng(seed)
    regions = np.concatenate([np.arange(k), rng.integers(0, k, 3 * k)])
    sampler = AriaSampler(regions, T, AriaOptions(warmup=0, beta=beta, eps=eps, tau=tau, base="shares" if shares else "uniform"))
    for _ in range(3):
        pi = sampler.probabilities()
        assert pi.shape == (k,) and np.isfinite(pi).all() and (pi >= 0).all()
        assert abs(pi.sum() - 1.0) <= 1e-12
        assert (pi >= sampler.policy.floors - 1e-15).all()
        drawn = sampler.draw(50, rng)
        assert ((drawn >= 0) & (drawn < len(regions))).all()
        sampler.observe(np.arange(k), np.asarray(values), rng.integers(0, T, k))


# ---------------------------------------------------------------- in the trainer


RESUME = (*ARIA, "--aria-step", "auto", "--aria-unbiased", "--grad-accum", "2", "--log-every", "2",
          "--checkpoint-every", "2")


def test_aria_run_logs_pi_and_estimates_and_resumes_exactly(paths, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert aria_cli.main(paths.options(straight, *RESUME, "--steps", "6")) == 0
    assert aria_cli.main(paths.options(split, *RESUME, "--steps", "4")) == 0
    assert aria_cli.main(["distill", "--out", str(split), "--resume", "latest", "--steps", "6"]) == 0
    a, b = (run / "checkpoints" / "step-0000006" for run in (straight, split))
    for part in ("student", "student_ema"):
        from safetensors.torch import load_file

        (fa,), (fb,) = (p.glob(f"{part}/*.safetensors") for p in (a, b))
        ta, tb = load_file(fa), load_file(fb)
        assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert records(straight) == records(split)
    state = json.loads((a / "trainer_state.json").read_text())["sampler"]
    assert state == json.loads((b / "trainer_state.json").read_text())["sampler"]
    last = records(straight)[-1]
    assert len(last["pi"]) == 3 and abs(sum(last["pi"]) - 1) < 1e-12
    assert len(last["estimates"]) == 3 and state["observed_batches"] == 12  # 6 steps x 2 micro-batches
    # region 2 has no paired images; with eps > 0 it is still drawn, hence observed
    assert all(m is not None and m > 0 for m in last["estimates"])


@pytest.mark.slow
def test_two_processes_hold_the_same_tracker_state(paths, tmp_path):
    """gloo DDP with 2 CPU processes: after 5 steps of 2 micro-batches each rank's copy of the
    sampler (tracker, normaliser) is bitwise the one the main process saved, and resuming gives
    the same run."""
    out = tmp_path / "run"
    run_two_processes(*paths.options(out, *ARIA, "--steps", "5", "--grad-accum", "2", "--checkpoint-every", "2"))
    final = out / "checkpoints" / "step-0000005"
    main = json.loads((final / "trainer_state.json").read_text())["sampler"]
    ranks = [json.loads((final / f"rng-rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["sampler"] == ranks[1]["sampler"] == main
    assert ranks[0]["numpy"] != ranks[1]["numpy"]  # each rank draws its own samples
    assert main["observed_batches"] == 10 and sum(main["tracker"]["arrays"]["counts"]) > 0
    expected = records(out)
    shutil.rmtree(final)
    run_two_processes("distill", "--out", str(out), "--resume", "latest", "--steps", "5")
    assert records(out) == expected


def test_heldout_discrepancy_is_logged_per_region(paths, tmp_path, capsys):
    heldout = tmp_path / "heldout.csv"
    heldout.write_text("text,region\na red circle,0\na blue circle,0\na green cross,2\n")  # region 1 has none
    out = tmp_path / "run"
    assert aria_cli.main(paths.options(out, *ARIA, "--steps", "4", "--log-every", "2", "--heldout", str(heldout),
                                       "--heldout-every", "2")) == 0
    measured = [r["heldout"] for r in records(out)]
    assert len(measured) == 2
    for values in measured:
        assert values[1] is None and values[0] > 0 and values[2] > 0
        # relative to the mean over prompts at each timestep: the prompt-weighted mean is 1
        assert (2 * values[0] + values[2]) / 3 == pytest.approx(1.0)
    refused(paths.options(tmp_path / "bad", "--heldout-every", "3", "--heldout", str(heldout), "--log-every", "2"),
            capsys, "--heldout-every needs --heldout and must be a multiple of --log-every")
    assert not (tmp_path / "bad").exists()


def test_tracker_observes_switched_samples_only_by_default():
    regions = np.array([0, 0, 1, 1])
    ids, values, t = np.array([0, 1, 0]), np.array([1.0, 5.0, 3.0]), np.array([5, 5, 5])
    switched = np.array([False, True, True])
    only = AriaSampler(regions, T, AriaOptions(warmup=0, normalise="none"))
    only.observe(ids, values, t, switched)
    assert np.array_equal(only.tracker.counts, [1, 1]) and np.array_equal(only.tracker.estimates, [3.0, 5.0])
    every = AriaSampler(regions, T, AriaOptions(warmup=0, normalise="none", observe="all"))
    every.observe(ids, values, t, switched)
    assert np.array_equal(every.tracker.counts, [2, 1]) and np.array_equal(every.tracker.estimates, [2.0, 5.0])
