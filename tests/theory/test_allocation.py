"""Allocation policies: valid distributions above their floors for any estimates, the beta = 0 and
softmax limits, EXP3/DoReMi updates, sampling frequencies, unbiased importance weights, JSON state.
ProgressPolicy's own properties are in test_theory_progress.py."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from aria_theory.allocation import (AllocationPolicy, AriaPolicy, DoReMiPolicy, Exp3Policy,
                                    PromptSharePolicy, UniformPolicy, check_distribution,
                                    importance_weights, sample_regions)
from aria_theory.progress import ProgressPolicy

K = 5
SHARES = np.array([0.5, 0.2, 0.15, 0.1, 0.05])


def make_policies(num_regions=K, shares=SHARES):
    return {
        "uniform": UniformPolicy(num_regions),
        "prompt_share": PromptSharePolicy(num_regions, shares * 7),
        "aria": AriaPolicy(num_regions),
        "aria_beta0": AriaPolicy(num_regions, beta=0.0, eps=0.3),
        "aria_beta3_shares": AriaPolicy(num_regions, beta=3.0, eps=0.2, base=shares),
        "aria_sqrt_no_floor": AriaPolicy(num_regions, beta=0.5, eps=0.0),
        "aria_softmax": AriaPolicy(num_regions, tau=1e-3, eps=0.05),
        "aria_softmax_wide": AriaPolicy(num_regions, tau=1e3, base=shares),
        "exp3": Exp3Policy(num_regions, gamma=0.2, eta=0.5),
        "doremi": DoReMiPolicy(num_regions, reference=np.linspace(0.0, 1.0, num_regions), eta=2.0),
        "progress": ProgressPolicy(num_regions, rate=0.05, fast=0.5, slow=0.1, beta=2.0, base=shares),
        "progress_running_mean": ProgressPolicy(num_regions, rate=1.0, fast=1.0, eps=0.0),
    }


NAMES = list(make_policies())
special = st.sampled_from([np.nan, 0.0, -0.0, 1e300, -1e300, 1e-300, 1.7e308, -1.7e308, 5.0])
estimate = st.one_of(special, st.floats(allow_nan=True, allow_infinity=False))
estimates_strategy = st.lists(estimate, min_size=K, max_size=K).map(np.array)
feedback_strategy = st.lists(st.tuples(st.integers(0, K - 1), st.floats(-10, 10)), max_size=10)


def feed(policy, rounds):
    """Draw-free feedback: each round observes `rounds[i]` under the policy's current pi."""
    for obs in rounds:
        p = policy.probabilities(np.full(K, np.nan))
        policy.observe([r for r, _ in obs], [y for _, y in obs], p)


def assert_valid(policy, p):
    assert p.shape == (K,) and p.dtype == np.float64
    assert np.isfinite(p).all() and (p >= 0).all()
    assert abs(p.sum() - 1.0) <= 1e-12
    assert (p >= policy.floors).all()


@pytest.mark.parametrize("name", NAMES)
@given(m=estimates_strategy, rounds=st.lists(feedback_strategy, max_size=3))
@settings(max_examples=60)
def test_probabilities_are_a_distribution_above_the_floors(name, m, rounds):
    policy = make_policies()[name]
    feed(policy, rounds)
    assert_valid(policy, policy.probabilities(m))


@given(m=estimates_strategy)
def test_beta_zero_with_uniform_base_is_uniform(m):
    p = AriaPolicy(K, beta=0.0, eps=0.3).probabilities(m)
    assert (p == p[0]).all()
    assert abs(p[0] - 1 / K) <= 2 * np.spacing(1 / K)


@given(m=estimates_strategy, eps=st.floats(0.0, 1.0))
def test_beta_zero_with_shares_base_mixes_uniform_and_shares(m, eps):
    p = AriaPolicy(K, beta=0.0, eps=eps, base=SHARES * 3).probabilities(m)
    np.testing.assert_allclose(p, (1 - eps) / K + eps * SHARES, rtol=1e-14)


def test_power_weights_follow_the_estimates_and_nan_counts_as_the_max():
    p = AriaPolicy(4, beta=1.0, eps=0.2).probabilities([np.nan, 1.0, 3.0, -2.0])
    np.testing.assert_allclose(p, 0.8 * np.array([3, 1, 3, 0]) / 7 + 0.05, rtol=1e-14)
    # nothing observed, or nothing positive: uniform weights
    for m in ([np.nan] * 4, [0.0] * 4, [-1.0, -2.0, np.nan, -3.0]):
        np.testing.assert_allclose(AriaPolicy(4, beta=2.0).probabilities(m), 0.25, rtol=1e-14)


def test_softmax_is_stable_for_huge_estimates():
    m = np.array([1e300, -1e300, 1.7e308, -1.7e308, 0.0])
    p = AriaPolicy(K, tau=1e-3, eps=0.1).probabilities(m)
    np.testing.assert_allclose(p, 0.02 + 0.9 * (np.arange(K) == 2), rtol=1e-14)
    p = AriaPolicy(K, tau=2.0, eps=0.0).probabilities([0.0, 2.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(p, np.exp([0, 1, 0, 0, 0]) / (4 + np.e), rtol=1e-14)


def test_exp3_update_is_the_importance_weighted_reward():
    policy = Exp3Policy(3, gamma=0.3, eta=0.5)
    p = policy.probabilities([np.nan] * 3)
    np.testing.assert_allclose(p, 1 / 3, rtol=1e-14)
    policy.observe([0, 1, 0], [2.0, 4.0, 1.0], p)  # scale 4: rewards 0.5, 1, 0.25
    gains = np.array([(0.5 + 0.25) * 3, 1.0 * 3, 0.0]) / 3
    scores = 0.5 * gains - 0.5 * gains.max()
    expected = 0.7 * np.exp(scores) / np.exp(scores).sum() + 0.1
    np.testing.assert_allclose(policy.probabilities([0.0] * 3), expected, rtol=1e-13)


def test_doremi_update_is_multiplicative_on_mean_excess():
    policy = DoReMiPolicy(3, reference=[1.0, 0.0, 5.0], eta=2.0, eps=0.3)
    p = policy.probabilities([np.nan] * 3)
    policy.observe([0, 0, 1, 2], [3.0, 0.0, 0.5, 4.0], p)  # excess: mean(2, 0)=1, 0.5, 0
    alpha = np.exp(2.0 * np.array([1.0, 0.5, 0.0]))
    expected = 0.7 * alpha / alpha.sum() + 0.1
    np.testing.assert_allclose(policy.probabilities([0.0] * 3), expected, rtol=1e-13)


def test_sampling_frequencies_match_the_probabilities():
    """Pearson chi-square on 10^5 draws, 7 regions (6 degrees of freedom). The test rejects at
    p < 1e-6, so a correct sampler fails with probability 1e-6; the seed is fixed."""
    p = AriaPolicy(7, beta=1.0, eps=0.1).probabilities([0.0, 1.0, 2.0, 5.0, 0.3, np.nan, 1e-3])
    ids = sample_regions(p, 100_000, np.random.default_rng(12345))
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < 7
    observed = np.bincount(ids, minlength=7)
    assert chisquare(observed, 100_000 * p).pvalue > 1e-6
    assert sample_regions(p, 0, np.random.default_rng(0)).shape == (0,)


@given(p=st.lists(st.floats(1e-3, 1.0), min_size=K, max_size=K),
       base=st.lists(st.floats(0.0, 1.0), min_size=K, max_size=K).filter(lambda b: sum(b) > 0),
       f=st.lists(st.floats(-1e3, 1e3), min_size=K, max_size=K))
def test_importance_weights_are_unbiased_exactly(p, base, f):
    p, base, f = (np.array(x) for x in (p, base, f))
    p, base = p / p.sum(), base / base.sum()
    w = importance_weights(np.arange(K), p, base)
    # E_pi[w f] summed over regions = E_base[f]
    np.testing.assert_allclose((p * w * f).sum(), (base * f).sum(), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
@given(before=st.lists(feedback_strategy, max_size=3), after=st.lists(feedback_strategy, max_size=3),
       m=estimates_strategy)
@settings(max_examples=30)
def test_state_round_trips_through_json_exactly(name, before, after, m):
    original = make_policies()[name]
    feed(original, before)
    state = json.loads(json.dumps(original.state_dict()))
    rebuilt = AllocationPolicy.from_state_dict(state)
    loaded = make_policies(shares=np.ones(K))[name]
    loaded.load_state_dict(state)
    for policy in (original, rebuilt, loaded):
        feed(policy, after)
    reference = json.dumps(original.state_dict())
    for copy in (rebuilt, loaded):
        assert type(copy) is type(original)
        assert json.dumps(copy.state_dict()) == reference
        np.testing.assert_array_equal(copy.probabilities(m), original.probabilities(m))


# bad input -> (arguments, what the one-line error says)
BAD_ESTIMATES = {"inf": ([np.inf, 0, 0, 0, 0], "must not be infinite"),
                 "short": ([0.0] * (K - 1), "estimates must be 5 real numbers"),
                 "2-D": ([[0.0] * K], "estimates must be 5 real numbers"),
                 "strings": (["a"] * K, "estimates must be 5 real numbers")}
BAD_FEEDBACK = {
    "nan value": (([0], [np.nan], np.full(K, 1 / K)), "values must be finite"),
    "id out of range": (([K], [1.0], np.full(K, 1 / K)), "out of range"),
    "float id": (([0.0], [1.0], np.full(K, 1 / K)), "integer dtype"),
    "length mismatch": (([0, 1], [1.0], np.full(K, 1 / K)), "differ in length"),
    "probabilities not summing to 1": (([0], [1.0], np.full(K, 0.3)), "must sum to 1"),
    "negative probability": (([0], [1.0], [1.5, -0.5, 0, 0, 0]), "finite and >= 0"),
    "nan probability": (([0], [1.0], [np.nan, 1, 0, 0, 0]), "finite and >= 0"),
    "observed region with probability 0": (([4], [1.0], [1.0, 0, 0, 0, 0]), "had probability 0"),
    "wrong length probabilities": (([0], [1.0], [0.5, 0.5]), "must be shape"),
}


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_rejected_and_state_untouched(name):
    policy = make_policies()[name]
    feed(policy, [[(0, 1.0), (3, 2.0)]])
    before = json.dumps(policy.state_dict())
    for bad, needle in BAD_ESTIMATES.values():
        with pytest.raises(ValueError, match=needle):
            policy.probabilities(bad)
    for case, (bad, needle) in BAD_FEEDBACK.items():
        if case == "observed region with probability 0" and name.startswith("progress"):
            continue  # ProgressPolicy also observes samples that pi did not draw (paired ones)
        with pytest.raises(ValueError, match=needle):
            policy.observe(*bad)
    assert json.dumps(policy.state_dict()) == before
    with pytest.raises(ValueError, match="cannot load"):
        policy.load_state_dict({**policy.state_dict(), "type": "Tracker"})


@pytest.mark.parametrize("make, needle", [
    (lambda: UniformPolicy(0), "num_regions must be a positive integer"),
    (lambda: PromptSharePolicy(K, [0.0] * K), "not all zero"), (lambda: PromptSharePolicy(K, [1.0] * 3), "shares must be 5"),
    (lambda: PromptSharePolicy(K, [-1.0, 1, 1, 1, 1]), "shares must be finite, >= 0"),
    (lambda: AriaPolicy(K, beta=-1.0), "beta must be"), (lambda: AriaPolicy(K, tau=0.0), "tau must be"),
    (lambda: AriaPolicy(K, eps=1.5), "eps must be in"), (lambda: AriaPolicy(K, base=[np.nan] * K), "base must be finite"),
    (lambda: Exp3Policy(K, gamma=0.0), "gamma must be"), (lambda: Exp3Policy(K, eta=-1.0), "eta must be"),
    (lambda: DoReMiPolicy(K, reference=[0.0] * 3), "reference must be 5"),
    (lambda: DoReMiPolicy(K, reference=[0.0] * K, eps=-0.1), "eps must be in"),
    (lambda: ProgressPolicy(K, rate=-1.0), "rate must be"),
    (lambda: ProgressPolicy(K, fast=0.1, slow=0.2), r"slow \(0.2\) must be smaller than fast"),
])
def test_bad_config_is_rejected(make, needle):
    with pytest.raises(ValueError, match=needle):
        make()


def test_sampling_and_weights_reject_bad_input():
    rng = np.random.default_rng(0)
    for bad, needle in (([0.5, 0.6], "must sum to 1"), ([1.2, -0.2], "finite and >= 0"), ([np.nan, 1.0], "finite and >= 0"),
                        ([[0.5, 0.5]], "non-empty 1-D array"), ([], "non-empty 1-D array")):
        with pytest.raises(ValueError, match=needle):
            sample_regions(bad, 3, rng)
    for n in (-1, 2.5, True):
        with pytest.raises(ValueError, match="n must be a non-negative integer"):
            sample_regions([0.5, 0.5], n, rng)
    with pytest.raises(ValueError, match="probability 0"):
        importance_weights([1], [1.0, 0.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="base must be shape"):
        importance_weights([0], [0.5, 0.5], [1.0])
    assert check_distribution([0.25] * 4).dtype == np.float64


def test_a_normalised_base_survives_the_round_trip_bitwise():
    """config() keeps the base as given: normalising [0.4, 0.3, 0.2, 0.1] twice moves it by an ulp."""
    for make in (lambda base: AriaPolicy(4, eps=0.3, base=base), lambda base: ProgressPolicy(4, eps=0.3, base=base)):
        policy = make([0.4, 0.3, 0.2, 0.1])
        copy = AllocationPolicy.from_state_dict(json.loads(json.dumps(policy.state_dict())))
        np.testing.assert_array_equal(copy.base, policy.base)
        m = [1.0, 2.0, 0.5, 0.0]
        np.testing.assert_array_equal(copy.probabilities(m), policy.probabilities(m))
