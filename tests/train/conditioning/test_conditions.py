"""RC's switch schedules, the condition samplers and random_conditioning (aria_train.conditioning.samplers).

Monte Carlo checks use Hoeffding's inequality: P(|mean - p| > eps) <= 2 exp(-2 n eps^2). Each
check's false-failure rate is fixed in advance (below) and the seeds are fixed, so a failure
replays.
"""
import math

import numpy as np
import pytest

from aria_train.conditioning.samplers import (NULL_PROMPT, ConditionSampler, RegionIndex, RegionUniformSampler,
                                   UniformPoolSampler, make_sampler, random_conditioning, switch_probability)

T = 1000
FALSE_FAILURE = 1e-6  # per Monte Carlo assertion


def hoeffding_eps(n: int, delta: float = FALSE_FAILURE) -> float:
    return math.sqrt(math.log(2 / delta) / (2 * n))


@pytest.mark.parametrize("lam", [5.0, 2.0])
def test_exp_schedule_matches_formula(lam):
    for t in (0, T // 2, T - 1):
        assert switch_probability(t, T, "exp", lam) == pytest.approx(math.exp(-lam * (1 - t / T)), rel=1e-12)


def test_sigmoid_schedule_matches_formula():
    for t in (0, T // 2, T - 1):
        assert switch_probability(t, T, "sigmoid") == pytest.approx(1 / (1 + math.exp(-20 * (t / T - 0.7))), rel=1e-12)


def test_schedule_values_quoted_in_design():
    # docs/design.md §2: p(0) = 0.0067, p(T/2) = 0.082, p -> 1 as t -> T (lambda = 5)
    assert switch_probability(0, T) == pytest.approx(0.0067, abs=5e-5)
    assert switch_probability(T // 2, T) == pytest.approx(0.082, abs=5e-4)
    assert switch_probability(T - 1, T) > 0.99
    p = switch_probability(np.arange(T), T, "sigmoid")
    assert np.all(np.diff(p) > 0) and p[700] == pytest.approx(0.5)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="schedule"):
        switch_probability(3, T, "linear")


@pytest.mark.parametrize("schedule", ["exp", "sigmoid"])
def test_switch_rate_monte_carlo(schedule):
    n = 40_000
    rng = np.random.default_rng(1)
    sampler = UniformPoolSampler(50)
    for t in (0, 500, 800, 999):
        ids, paired, switched = random_conditioning(np.zeros(n, np.int64), np.full(n, t), T, sampler, rng,
                                                    schedule=schedule, null_prob=0.0)
        assert abs(switched.mean() - switch_probability(t, T, schedule)) <= hoeffding_eps(n)
        assert np.array_equal(paired, ~switched)
        assert np.all(ids[paired] == 0) and np.all((ids[switched] >= 0) & (ids[switched] < 50))


def test_null_rate_independent_of_switch():
    n = 40_000
    rng = np.random.default_rng(2)
    t = rng.integers(0, T, n)
    ids, paired, switched = random_conditioning(np.full(n, 3), t, T, UniformPoolSampler(10), rng, null_prob=0.1)
    nulled = ids == NULL_PROMPT
    assert abs(nulled.mean() - 0.1) <= hoeffding_eps(n)
    # the null text falls on switched and paired samples alike (independent draws)
    assert abs(nulled[switched].mean() - 0.1) <= hoeffding_eps(int(switched.sum()))
    assert abs(nulled[paired].mean() - 0.1) <= hoeffding_eps(int(paired.sum()))
    # paired samples keep their caption unless nulled
    assert np.all(ids[paired & ~nulled] == 3)


def test_kd_never_switches():
    rng = np.random.default_rng(3)
    ids, paired, switched = random_conditioning(np.arange(100), np.full(100, T - 1), T, UniformPoolSampler(5), rng,
                                                null_prob=0.0, enabled=False)
    assert paired.all() and not switched.any() and np.array_equal(ids, np.arange(100))


def test_conditioning_is_a_function_of_the_generator_state():
    args = (np.arange(64), np.random.default_rng(0).integers(0, T, 64), T, RegionUniformSampler(np.arange(20) % 4))
    a = random_conditioning(*args, np.random.default_rng(9))
    b = random_conditioning(*args, np.random.default_rng(9))
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


def test_region_uniform_sampler_frequencies():
    regions = np.array([0] * 30 + [1] * 3 + [2] * 7)  # very unequal region sizes
    rng = np.random.default_rng(4)
    sampler = RegionUniformSampler(regions)
    n = 30_000
    drawn = sampler.draw(n, rng)
    k = regions[drawn]
    for region in range(3):  # regions equally likely, whatever their size (3 checks)
        assert abs((k == region).mean() - 1 / 3) <= hoeffding_eps(n)
    small = drawn[k == 1]  # uniform within region 1 (3 prompts)
    for row in np.flatnonzero(regions == 1):
        assert abs((small == row).mean() - 1 / 3) <= hoeffding_eps(small.size)


def test_uniform_pool_sampler_covers_pool():
    drawn = UniformPoolSampler(7).draw(5000, np.random.default_rng(5))
    assert drawn.dtype == np.int64 and set(drawn.tolist()) == set(range(7))


def test_region_index_draws_within_given_regions():
    index = RegionIndex(np.array([2, 0, 1, 2, 0, 2]))
    asked = np.array([2, 2, 0, 1, 0, 2, 1])
    drawn = index.draw_within(asked, np.random.default_rng(6))
    assert np.array_equal(np.array([2, 0, 1, 2, 0, 2])[drawn], asked)
    assert index.draw_within(np.array([], np.int64), np.random.default_rng(0)).size == 0


def test_region_errors_and_state():
    with pytest.raises(ValueError, match="without prompts"):
        RegionUniformSampler(np.array([0, 2, 2]))
    with pytest.raises(ValueError, match="needs a pool with a region column"):
        make_sampler("region", 3, None)
    with pytest.raises(ValueError, match="unknown condition sampler"):
        make_sampler("aria?", 3, None)
    with pytest.raises(ValueError, match="empty"):
        UniformPoolSampler(0)
    sampler = make_sampler("region", 4, np.array([0, 1, 1, 2]))
    state = sampler.state_dict()
    sampler.load_state_dict(state)
    with pytest.raises(ValueError, match="K mismatch"):
        make_sampler("region", 4, np.array([0, 1, 1, 1])).load_state_dict(state)
    with pytest.raises(ValueError, match="no state"):
        UniformPoolSampler(3).load_state_dict({"x": 1})


def test_sampler_interface_is_pluggable():
    class Recorder(ConditionSampler):
        def __init__(self):
            self.seen = []

        def draw(self, n, rng):
            return np.full(n, 7, dtype=np.int64)

        def observe(self, region_ids, values, timesteps):
            self.seen.append((region_ids, values, timesteps))

    sampler = Recorder()
    ids, _, switched = random_conditioning(np.zeros(200, np.int64), np.full(200, T - 1), T, sampler,
                                           np.random.default_rng(7), null_prob=0.0)
    assert switched.any() and np.all(ids[switched] == 7)
    assert sampler.metrics() == {} and sampler.state_dict() == {}
