"""Forgetting quality of the NeurIPS 2023 machine-unlearning challenge (docs/method.md §4.4).

The challenge (Triantafillou et al., "Are we making progress in unlearning?", 2024) compares the
*distribution over training runs* of an unlearned model with that of models retrained from scratch
without the forget set, one forget example at a time:

1. Train K models retrained without D_f and K unlearned models (K = 512 there; here a handful, so the
   estimate is coarse: see "Resolution").
2. For forget example i, each model gives a score s (here its cross-entropy loss on i; any monotone
   transform of it, such as the challenge's logit-scaled confidence, gives the same thresholds).
   Every threshold τ is an attack "s ≥ τ ⇒ unlearned" (and the mirror attack "s ≤ τ ⇒ unlearned"),
   with FPR = share of retrained models called unlearned and FNR = share of unlearned models called
   retrained.
3. (ε, δ)-DP of "unlearned vs retrained" implies, for every such attack,
   FPR + e^ε·FNR ≥ 1 − δ and e^ε·FPR + FNR ≥ 1 − δ, so each attack gives
   ε_i ≥ max( ln((1 − δ − FPR)/FNR), ln((1 − δ − FNR)/FPR) ).
   As in the challenge, an attack with FNR = 0 or FPR = 0 (but not both) gives no finite bound and is
   skipped; one with both zero separates the two sets perfectly and gives ε_i = ∞. ε_i is the largest
   bound over attacks, floored at 0.
4. ε_i falls in bin n = 1 + ⌊ε_i / 0.5⌋ (bins 0.5 wide over [0, 6.5)); the example scores 2 / 2ⁿ
   (1 for ε_i < 0.5, halving per bin, 0 from 6.5 and for ∞). Forgetting quality F is the mean score.
5. The challenge's final score is F × (retain accuracy ratio to retraining) × (test accuracy ratio).

Resolution. With K runs per side, FPR and FNR are multiples of 1/K, so a finite ε_i is at most
ln(K − 1 − Kδ): K = 4 can only say ε_i ∈ {0, ≤ ln 3 ≈ 1.1, ∞}. F from few runs separates "the two
sets of runs overlap" (score ≥ 0.5) from "they never overlap" (score 0); it cannot grade small ε.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ForgettingQuality", "per_example_epsilon", "bin_scores", "forgetting_quality", "challenge_score"]

BIN_WIDTH = 0.5
N_BINS = 13
"""Bins of width 0.5 over [0, 6.5)."""


def per_example_epsilon(unlearned: np.ndarray, retrained: np.ndarray, delta: float = 0.0) -> np.ndarray:
    """ε_i for each forget example from the scores of K_u unlearned and K_r retrained models.

    unlearned: (n, K_u), retrained: (n, K_r) scores (e.g. per-example loss) of the same n examples.
    Returns (n,) float64, ε_i ≥ 0, `inf` where the two sets of scores are perfectly separated.
    Raises ValueError on shapes that do not match or an empty side.
    """
    u, r = np.asarray(unlearned, dtype=np.float64), np.asarray(retrained, dtype=np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[0] != r.shape[0]:
        raise ValueError(f"scores must be (n, K) arrays for the same n examples; got {u.shape} and {r.shape}")
    if u.shape[1] < 1 or r.shape[1] < 1:
        raise ValueError("per-example ε needs at least one unlearned and one retrained model")
    if not 0 <= delta < 1:
        raise ValueError(f"delta {delta} is outside [0, 1)")
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise ValueError("scores must be finite")
    ku, kr = u.shape[1], r.shape[1]
    out = np.zeros(u.shape[0])
    for i in range(u.shape[0]):
        thresholds = np.unique(np.concatenate([u[i], r[i]]))
        # "s ≥ τ ⇒ unlearned", τ over every observed value and above the maximum (nobody called unlearned).
        tau = np.append(thresholds, np.inf)
        fpr = (r[i][None, :] >= tau[:, None]).sum(1) / kr
        fnr = (u[i][None, :] < tau[:, None]).sum(1) / ku
        eps = 0.0
        for a, b in ((fpr, fnr), (1 - fpr, 1 - fnr)):  # the attack and its mirror ("s < τ ⇒ unlearned")
            if np.any((a == 0) & (b == 0)):
                eps = np.inf
                break
            ok = (a > 0) & (b > 0)
            if ok.any():
                with np.errstate(divide="ignore", invalid="ignore"):
                    e1 = np.log(np.maximum(1 - delta - a[ok], 0) / b[ok])
                    e2 = np.log(np.maximum(1 - delta - b[ok], 0) / a[ok])
                eps = max(eps, float(np.nanmax(np.concatenate([e1, e2]))))
        out[i] = max(eps, 0.0)
    return out


def bin_scores(epsilon: np.ndarray) -> np.ndarray:
    """Per-example score 2 / 2ⁿ for ε in bin n = 1 + ⌊ε / 0.5⌋ (n ≤ 13), else 0 (ε ≥ 6.5 or ∞). Shape kept."""
    e = np.asarray(epsilon, dtype=np.float64)
    n = 1 + np.floor(np.where(np.isfinite(e), e, 1e9) / BIN_WIDTH)
    return np.where(n <= N_BINS, 2.0 / np.power(2.0, np.minimum(n, N_BINS)), 0.0)


class ForgettingQuality(BaseModel):
    """The challenge's forgetting quality F of one method, with what it rests on."""

    model_config = ConfigDict(extra="forbid")

    quality: float = Field(ge=0, le=1, description="F: mean per-example score, 1 = indistinguishable from retraining.")
    n_examples: int
    k_unlearned: int
    k_retrained: int
    delta: float
    share_infinite: float = Field(description="Share of forget examples whose unlearned and retrained scores never overlap.")
    median_epsilon: float | None = Field(description="Median finite ε_i (None when every ε_i is infinite).")


def forgetting_quality(unlearned: np.ndarray, retrained: np.ndarray, delta: float = 0.0) -> ForgettingQuality:
    """F from (n, K_u) unlearned and (n, K_r) retrained scores of the forget examples (module docstring, steps 2–4)."""
    eps = per_example_epsilon(unlearned, retrained, delta)
    finite = eps[np.isfinite(eps)]
    return ForgettingQuality(quality=float(bin_scores(eps).mean()), n_examples=int(len(eps)),
                             k_unlearned=int(np.shape(unlearned)[1]), k_retrained=int(np.shape(retrained)[1]), delta=delta,
                             share_infinite=float(np.mean(~np.isfinite(eps))),
                             median_epsilon=float(np.median(finite)) if len(finite) else None)


def challenge_score(quality: float, retain_acc: float, retain_acc_retrain: float, test_acc: float, test_acc_retrain: float) -> float:
    """The challenge's final score F × (RA / RA_retrain) × (TA / TA_retrain) (module docstring, step 5)."""
    if retain_acc_retrain <= 0 or test_acc_retrain <= 0:
        raise ValueError("the retrained model's accuracies must be positive")
    return float(quality * (retain_acc / retain_acc_retrain) * (test_acc / test_acc_retrain))
