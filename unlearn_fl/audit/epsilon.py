"""Empirical ε lower bound from a membership-inference threshold attack (docs/method.md §4).

Why a threshold attack bounds ε. If a mechanism M is (ε, δ)-DP, every test
of "x was in the training data" (H1) against "x was not" (H0) that looks at
the output of M has, for TPR = P(say member | H1) and FPR = P(say member | H0),

    TPR ≤ e^ε · FPR + δ            and      1 − FPR ≤ e^ε · (1 − TPR) + δ

(the second is the first applied to the complementary test with the roles of
the neighbouring datasets swapped). Solving for ε,

    ε ≥ max( ln((TPR − δ) / FPR),  ln((1 − FPR − δ) / (1 − TPR)) ).      (★)

An audit observes TPR and FPR only through counts, so (Jagielski et al. 2020,
"Auditing differentially private machine learning"; Nasr et al. 2021,
"Adversary instantiation") it plugs confidence bounds into (★): both
numerators grow with TPR and shrink with FPR, both denominators grow with FPR
and shrink with TPR, so the conservative choice for *both* ratios is

    TPR  →  TPR_lo (Clopper–Pearson lower bound),
    FPR  →  FPR_hi (Clopper–Pearson upper bound).

Clopper–Pearson (1934), exact one-sided bounds for k successes in n trials:

    p_lo = Beta⁻¹(α′; k, n − k + 1)       (0 when k = 0)
    p_hi = Beta⁻¹(1 − α′; k + 1, n − k)   (1 when k = n)

With α = 1 − confidence we use α′ = α/2 for each of the two bounds, so by the
union bound both hold together with probability ≥ 1 − α, and then the
bound (★) evaluated at (TPR_lo, FPR_hi) is a valid lower bound on ε.

Honest threshold choice. Picking the threshold that maximises the bound on the
same data would overfit (a multiple-comparison bias). The scores are split at
random into two halves: the threshold is chosen on the selection half (the
one that maximises the bound there) and (★) is evaluated once, on the
evaluation half. The reported ε_lower is floored at 0.

Caveat (stated, not hidden): the binomial model treats the n_m member and
n_n non-member examples as independent trials. For one trained model with
many members this is the usual approximation, not a theorem; Steinke, Nasr &
Jagielski (2023, "Privacy auditing with one (1) training run") give a rigorous
one-run analysis when each canary's inclusion is an independent coin flip,
with a bound of a different form. When the trials are independent (e.g. one
example per training run, or the μ-GDP scores of the tests), the bound exceeds
the true ε with probability ≤ α.

Largest certifiable ε. Even a perfect attack on n_m / n_n evaluation
examples only yields TPR_lo = (α′)^{1/n_m} and FPR_hi = 1 − (α′)^{1/n_n}; (★)
at these values is the largest ε the sample sizes can ever certify
(`max_certifiable_epsilon`). If a target ε is above it, the audit cannot
detect a violation of that target: it is inconclusive.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

from unlearn_fl.audit.mia import as_scores
from unlearn_fl.audit.results import EpsilonEstimate

__all__ = [
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "epsilon_from_rates",
    "epsilon_lower_from_counts",
    "max_certifiable_epsilon",
    "inconclusive_reason",
    "empirical_epsilon",
    "gaussian_dp_delta",
    "gaussian_dp_epsilon",
]


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}")
    return 1.0 - confidence


def _check_delta(delta: float) -> None:
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), e.g. 1e-5; got {delta}")


def clopper_pearson_lower(k: np.ndarray | int, n: np.ndarray | int, alpha: float) -> np.ndarray:
    """One-sided (1 − alpha) Clopper–Pearson lower bound on p from k successes in n trials."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = stats.beta.ppf(alpha, k, n - k + 1)
    return np.where(k <= 0, 0.0, lo)


def clopper_pearson_upper(k: np.ndarray | int, n: np.ndarray | int, alpha: float) -> np.ndarray:
    """One-sided (1 − alpha) Clopper–Pearson upper bound on p from k successes in n trials."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        hi = stats.beta.ppf(1.0 - alpha, k + 1, n - k)
    return np.where(k >= n, 1.0, hi)


def epsilon_from_rates(tpr: np.ndarray | float, fpr: np.ndarray | float, delta: float) -> np.ndarray:
    """max( ln((TPR − δ)/FPR), ln((1 − FPR − δ)/(1 − TPR)) ), elementwise, in [−inf, +inf].

    A ratio with a non-positive numerator contributes −inf (it certifies
    nothing); a zero denominator with a positive numerator gives +inf.
    """
    tpr = np.asarray(tpr, dtype=np.float64)
    fpr = np.asarray(fpr, dtype=np.float64)

    def log_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(num > 0, np.log(np.where(num > 0, num, 1.0)) - np.log(den), -np.inf)
        return np.where((num > 0) & (den <= 0), np.inf, r)

    return np.maximum(log_ratio(tpr - delta, fpr), log_ratio(1.0 - fpr - delta, 1.0 - tpr))


def epsilon_lower_from_counts(
    tp: np.ndarray | int, n_members: int, fp: np.ndarray | int, n_nonmembers: int, delta: float, confidence: float
) -> np.ndarray:
    """(★) at (TPR_lo, FPR_hi), each one-sided Clopper–Pearson at α/2, floored at 0.

    tp members of n_members and fp non-members of n_nonmembers were called
    "members" by one fixed threshold. Holds jointly with probability ≥ confidence.
    """
    alpha = _check_confidence(confidence)
    _check_delta(delta)
    tpr_lo = clopper_pearson_lower(tp, n_members, alpha / 2)
    fpr_hi = clopper_pearson_upper(fp, n_nonmembers, alpha / 2)
    return np.maximum(epsilon_from_rates(tpr_lo, fpr_hi, delta), 0.0)


def _eval_sizes(n_members: int, n_nonmembers: int) -> tuple[int, int]:
    """Evaluation-half sizes used by `empirical_epsilon` (the larger half of each group)."""
    return n_members - n_members // 2, n_nonmembers - n_nonmembers // 2


def max_certifiable_epsilon(n_members: int, n_nonmembers: int, confidence: float = 0.95, delta: float = 1e-5) -> float:
    """Largest ε lower bound `empirical_epsilon` can return for these sample sizes.

    Perfect separation on the evaluation half (n_m − ⌊n_m/2⌋ members,
    n_n − ⌊n_n/2⌋ non-members): TPR_lo = (α/2)^{1/n_m}, FPR_hi = 1 − (α/2)^{1/n_n},
    plugged into (★), floored at 0.
    """
    if n_members < 2 or n_nonmembers < 2:
        return 0.0
    m, n = _eval_sizes(n_members, n_nonmembers)
    return float(epsilon_lower_from_counts(m, m, 0, n, delta, confidence))


def inconclusive_reason(
    n_members: int,
    n_nonmembers: int,
    confidence: float = 0.95,
    delta: float = 1e-5,
    epsilon_target: float | None = None,
) -> str | None:
    """Why an ε audit with these sample sizes cannot be conclusive, or None if it can.

    Inconclusive when even a perfect attack could not certify an ε above the
    target (so "no violation found" would say nothing), or, without a target,
    could not certify any ε > 0.
    """
    if n_members < 2 or n_nonmembers < 2:
        return (
            f"The empirical epsilon audit needs at least 2 members and 2 non-members to split into a "
            f"threshold-selection half and an evaluation half, but got {n_members} members and "
            f"{n_nonmembers} non-members."
        )
    best = max_certifiable_epsilon(n_members, n_nonmembers, confidence, delta)
    m, n = _eval_sizes(n_members, n_nonmembers)
    if epsilon_target is None:
        if best <= 0.0:
            return (
                f"With {n_members} members and {n_nonmembers} non-members ({m} and {n} in the evaluation half), "
                f"even a perfect attack cannot certify any epsilon > 0 at delta={delta:g} and "
                f"confidence {confidence:g}; use more forget and holdout examples."
            )
        return None
    if best < epsilon_target:
        return (
            f"With {n_members} members and {n_nonmembers} non-members ({m} and {n} in the evaluation half), "
            f"the largest epsilon any attack could certify at delta={delta:g} and confidence {confidence:g} "
            f"is {best:.3f}, below the target epsilon {epsilon_target:g}, so the audit cannot detect a "
            f"violation of the target; use more forget and holdout examples or a smaller confidence."
        )
    return None


def _threshold_counts(
    member: np.ndarray, nonmember: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct threshold rule "member iff score ≥ t" on these scores, with its counts.

    Thresholds are the midpoints between consecutive distinct pooled scores,
    plus −inf (all members) and +inf (none). Returns (thresholds, tp, fp).
    """
    u = np.unique(np.concatenate([member, nonmember]))
    thr = np.concatenate([[-np.inf], (u[:-1] + u[1:]) / 2.0, [np.inf]])
    sm = np.sort(member)
    sn = np.sort(nonmember)
    tp = sm.size - np.searchsorted(sm, thr, side="left")
    fp = sn.size - np.searchsorted(sn, thr, side="left")
    return thr, tp, fp


def empirical_epsilon(
    member_scores: object,
    nonmember_scores: object,
    delta: float = 1e-5,
    confidence: float = 0.95,
    rng: np.random.Generator | None = None,
    seed: int | None = 0,
) -> EpsilonEstimate:
    """Honest empirical ε lower bound at `delta` from member / non-member scores (higher = member).

    1. Split members and non-members at random into a selection half
       (⌊n/2⌋ of each) and an evaluation half (the rest), using `rng` or,
       if None, `np.random.default_rng(seed)`.
    2. On the selection half, choose the threshold t maximising the bound (★)
       at (TPR_lo, FPR_hi) over all distinct thresholds.
    3. On the evaluation half, count members and non-members with score ≥ t
       and return (★) at (TPR_lo, FPR_hi) as `epsilon_lower` (floored at 0),
       and (★) at the point estimates as `epsilon_point` (floored at 0; None
       when unbounded, i.e. the evaluation half shows FPR = 0 or TPR = 1 with
       a positive numerator). `tpr`/`fpr` are the evaluation-half point
       estimates at the returned `threshold`.

    With probability ≥ `confidence` (under the binomial model of the module
    docstring) `epsilon_lower` ≤ the true ε of the mechanism at `delta`.
    """
    _check_confidence(confidence)
    _check_delta(delta)
    m = as_scores(member_scores, "member_scores")
    n = as_scores(nonmember_scores, "nonmember_scores")
    if m.size < 2 or n.size < 2:
        raise ValueError(
            f"empirical_epsilon needs at least 2 members and 2 non-members (one per half), got {m.size} and {n.size}"
        )
    gen = rng if rng is not None else np.random.default_rng(seed)
    pm = gen.permutation(m.size)
    pn = gen.permutation(n.size)
    m_sel, m_eval = m[pm[: m.size // 2]], m[pm[m.size // 2 :]]
    n_sel, n_eval = n[pn[: n.size // 2]], n[pn[n.size // 2 :]]

    thr, tp, fp = _threshold_counts(m_sel, n_sel)
    bounds = epsilon_lower_from_counts(tp, m_sel.size, fp, n_sel.size, delta, confidence)
    # Ties in the bound (e.g. all zero): prefer the rule with the best point estimate on the selection half.
    point_sel = epsilon_from_rates(tp / m_sel.size, fp / n_sel.size, delta)
    point_sel = np.where(np.isfinite(point_sel), point_sel, np.where(point_sel > 0, 1e300, -1e300))
    best = np.lexsort((-point_sel, -bounds))[0]
    t = float(thr[best])

    tp_e = int(np.sum(m_eval >= t))
    fp_e = int(np.sum(n_eval >= t))
    eps_lo = float(epsilon_lower_from_counts(tp_e, m_eval.size, fp_e, n_eval.size, delta, confidence))
    tpr_e = tp_e / m_eval.size
    fpr_e = fp_e / n_eval.size
    point = float(epsilon_from_rates(tpr_e, fpr_e, delta))
    eps_point = None if math.isinf(point) and point > 0 else max(point, 0.0)
    return EpsilonEstimate(
        epsilon_lower=eps_lo,
        epsilon_point=eps_point,
        delta=delta,
        confidence=confidence,
        threshold=t if math.isfinite(t) else None,
        tpr=tpr_e,
        fpr=fpr_e,
    )


def gaussian_dp_delta(epsilon: float, mu: float) -> float:
    """δ(ε) of μ-Gaussian DP (Dong, Roth & Su 2022, Cor. 2.13).

    δ(ε) = Φ(−ε/μ + μ/2) − e^ε · Φ(−ε/μ − μ/2). This is the exact privacy
    profile of distinguishing N(μ, 1) from N(0, 1): a reference for audits.
    """
    if mu <= 0:
        raise ValueError(f"mu must be positive, got {mu}")
    return float(
        stats.norm.cdf(-epsilon / mu + mu / 2) - math.exp(epsilon) * stats.norm.cdf(-epsilon / mu - mu / 2)
    )


def gaussian_dp_epsilon(mu: float, delta: float) -> float:
    """The ε at which μ-GDP is (ε, δ)-DP: the root of `gaussian_dp_delta(ε, μ) = δ` (0 if δ(0) ≤ δ)."""
    _check_delta(delta)
    if delta <= 0:
        return math.inf
    if gaussian_dp_delta(0.0, mu) <= delta:
        return 0.0
    hi = 1.0
    while gaussian_dp_delta(hi, mu) > delta:
        hi *= 2.0
    return float(optimize.brentq(lambda e: gaussian_dp_delta(e, mu) - delta, 0.0, hi, xtol=1e-10))
