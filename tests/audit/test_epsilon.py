"""Empirical epsilon: Clopper–Pearson, closed forms, monotonicity, soundness against μ-GDP."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from unlearn_fl.audit.epsilon import (
    clopper_pearson_lower,
    clopper_pearson_upper,
    empirical_epsilon,
    epsilon_from_rates,
    epsilon_lower_from_counts,
    gaussian_dp_delta,
    gaussian_dp_epsilon,
    inconclusive_reason,
    max_certifiable_epsilon,
)
from unlearn_fl.report.schema import EpsilonEstimate

DELTA = 1e-5


def perfect_bound(n_eval_m: int, n_eval_n: int, confidence: float = 0.95, delta: float = DELTA) -> float:
    """Closed form of (★) for a perfect attack: TPR_lo = (α/2)^{1/m}, FPR_hi = 1 − (α/2)^{1/n}."""
    a = (1 - confidence) / 2
    tpr_lo = a ** (1 / n_eval_m)
    fpr_hi = 1 - a ** (1 / n_eval_n)
    return max(math.log((tpr_lo - delta) / fpr_hi), math.log((1 - fpr_hi - delta) / (1 - tpr_lo)))


def test_clopper_pearson_closed_forms_and_scipy_agreement():
    a = 0.025
    assert float(clopper_pearson_upper(0, 40, a)) == pytest.approx(1 - a ** (1 / 40))
    assert float(clopper_pearson_lower(40, 40, a)) == pytest.approx(a ** (1 / 40))
    assert float(clopper_pearson_lower(0, 40, a)) == 0.0
    assert float(clopper_pearson_upper(40, 40, a)) == 1.0
    # One-sided at α equals the two-sided exact interval at 1 − 2α.
    for k, n in [(3, 17), (10, 10), (0, 5), (250, 500)]:
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=1 - 2 * a, method="exact")
        assert float(clopper_pearson_lower(k, n, a)) == pytest.approx(ci.low, abs=1e-9)
        assert float(clopper_pearson_upper(k, n, a)) == pytest.approx(ci.high, abs=1e-9)


def test_epsilon_from_rates_forms():
    assert float(epsilon_from_rates(0.5, 0.1, 0.0)) == pytest.approx(math.log(5.0))
    assert float(epsilon_from_rates(0.9, 0.5, 0.0)) == pytest.approx(math.log(0.5 / 0.1))  # second form wins
    assert float(epsilon_from_rates(0.3, 0.3, 0.0)) == pytest.approx(0.0)
    assert float(epsilon_from_rates(0.5, 0.0, 0.0)) == math.inf
    assert float(epsilon_from_rates(0.0, 0.2, 0.01)) == pytest.approx(math.log(0.79))  # first form certifies nothing


def test_perfect_separation_closed_form_n1000():
    rng = np.random.default_rng(0)
    members = rng.uniform(2.0, 3.0, 1000)
    nonmembers = rng.uniform(0.0, 1.0, 1000)
    est = empirical_epsilon(members, nonmembers, delta=DELTA, confidence=0.95, seed=0)
    assert isinstance(est, EpsilonEstimate)
    # Evaluation half: 500 members all above t, 500 non-members all below; p = 0.025^{1/500}.
    p = 0.025 ** (1 / 500)
    closed = math.log((p - DELTA) / (1 - p))
    assert closed == pytest.approx(4.9056, abs=1e-4)
    assert est.epsilon_lower == pytest.approx(closed, rel=1e-9)
    assert est.epsilon_lower == pytest.approx(max_certifiable_epsilon(1000, 1000, 0.95, DELTA), rel=1e-12)
    assert (est.tpr, est.fpr) == (1.0, 0.0)
    assert est.epsilon_point is None  # unbounded point estimate
    assert 1.0 < est.threshold < 2.0
    assert est.delta == DELTA and est.confidence == 0.95


def test_identical_distributions_give_zero():
    zeros = 0
    worst = 0.0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        est = empirical_epsilon(rng.normal(size=500), rng.normal(size=500), seed=seed)
        zeros += est.epsilon_lower == 0.0
        worst = max(worst, est.epsilon_lower)
        assert est.epsilon_lower >= 0.0
    assert zeros >= 19 and worst < 0.5


def test_lower_bound_increases_with_sample_size():
    perfect = [max_certifiable_epsilon(n, n) for n in (20, 100, 1000, 10000)]
    assert all(b > a for a, b in zip(perfect, perfect[1:]))
    assert perfect[0] > 0
    rng = np.random.default_rng(7)
    gauss = [
        empirical_epsilon(rng.normal(3.0, 1.0, n), rng.normal(0.0, 1.0, n), seed=1).epsilon_lower
        for n in (100, 1000, 10000)
    ]
    assert all(b > a for a, b in zip(gauss, gauss[1:])), gauss


def test_gaussian_dp_reference():
    # δ(ε) of μ-GDP: δ(0) is the total variation 2Φ(μ/2) − 1, and ε(δ) inverts δ(ε).
    assert gaussian_dp_delta(0.0, 1.0) == pytest.approx(2 * stats.norm.cdf(0.5) - 1)
    for mu in (0.5, 1.0, 2.0):
        eps = gaussian_dp_epsilon(mu, DELTA)
        assert gaussian_dp_delta(eps, mu) == pytest.approx(DELTA, rel=1e-6)
    assert gaussian_dp_epsilon(1.0, DELTA) == pytest.approx(4.3772, abs=1e-3)


@pytest.mark.parametrize("mu", [1.0, 2.0])
def test_soundness_against_gaussian_dp(mu: float):
    """N(μ,1) vs N(0,1) scores are exactly a μ-GDP mechanism: the audit must never exceed its ε(δ)."""
    true_eps = gaussian_dp_epsilon(mu, DELTA)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        est = empirical_epsilon(rng.normal(mu, 1.0, 4000), rng.normal(0.0, 1.0, 4000), seed=seed)
        assert 0.0 < est.epsilon_lower <= true_eps, (seed, est.epsilon_lower, true_eps)
        # A threshold's true (TPR, FPR) obeys the mechanism's (ε, δ) trade-off.
        t = est.threshold
        true_tpr, true_fpr = stats.norm.sf(t - mu), stats.norm.sf(t)
        assert float(epsilon_from_rates(true_tpr, true_fpr, DELTA)) <= true_eps + 1e-9


def test_deterministic_given_seed_and_rng():
    rng = np.random.default_rng(5)
    m, n = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 300)
    assert empirical_epsilon(m, n, seed=3) == empirical_epsilon(m, n, seed=3)
    a = empirical_epsilon(m, n, rng=np.random.default_rng(9))
    assert a == empirical_epsilon(m, n, rng=np.random.default_rng(9))


def test_inconclusive_reason():
    # 40 + 40 examples: even a perfect attack certifies only ≈ 1.6 at δ=1e-5.
    best = max_certifiable_epsilon(40, 40)
    assert best == pytest.approx(perfect_bound(20, 20))
    reason = inconclusive_reason(40, 40, 0.95, DELTA, epsilon_target=5.0)
    assert reason is not None and f"{best:.3f}" in reason and "40 members" in reason and "5" in reason
    assert inconclusive_reason(40, 40, 0.95, DELTA, epsilon_target=1.0) is None
    assert inconclusive_reason(1000, 1000, 0.95, DELTA) is None
    assert "at least 2" in inconclusive_reason(1, 50, 0.95, DELTA)
    # Three examples per group: one and one in the selection half, two and two evaluated → nothing certifiable.
    assert max_certifiable_epsilon(3, 3) == 0.0
    assert "cannot certify any epsilon" in inconclusive_reason(3, 3, 0.95, DELTA)


def test_bound_from_counts_uses_conservative_sides():
    # Point estimates TPR 0.8, FPR 0.1 would give ln(8) ≈ 2.08; the bound must be lower, and tighter with more data.
    small = float(epsilon_lower_from_counts(40, 50, 5, 50, DELTA, 0.95))
    large = float(epsilon_lower_from_counts(4000, 5000, 500, 5000, DELTA, 0.95))
    assert 0.0 <= small < large < math.log(8.0)


def test_errors():
    with pytest.raises(ValueError, match="confidence"):
        empirical_epsilon([1.0, 2.0], [0.0, 1.0], confidence=1.5)
    with pytest.raises(ValueError, match="delta"):
        empirical_epsilon([1.0, 2.0], [0.0, 1.0], delta=1.0)
    with pytest.raises(ValueError, match="at least 2 members"):
        empirical_epsilon([1.0], [0.0, 1.0])
