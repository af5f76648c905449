"""The marginal-unlearning criterion, evaluated from model outputs (docs/method.md §2, §3.3).

Draw V; take x from D = D_r ∪ D_f when V = 0 and from D_r when V = 1; Z = statistic of
f_θ(x). The model ε-marginally unlearned D_f when I(Z; V) ≤ ε. Because D_r sits in both
groups, I(Z;V) = 0 iff outputs on D_f have the same law as outputs on D_r.

With group weights (π, 1−π) the MI is the π-weighted Jensen–Shannon divergence of the two
output laws, so by Pinsker any test of V from Z has TPR − FPR ≤ √(I / (2π(1−π)))
(balanced: √(2I)): an MI budget ε gives (0, δ)-indistinguishability with δ = √(2ε).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import BaseModel

from unlearn_fl.data import Split
from unlearn_fl.information.plugin import plugin_mi_from_means
from unlearn_fl.methods.statistics import Statistic, soft_statistic


class CriterionResult(BaseModel):
    mi: float
    """Î(Z; V) in nats."""
    tv_bound: float
    """Upper bound on any detector's TPR − FPR (Pinsker)."""
    epsilon: float | None = None
    satisfied: bool | None = None
    n_forget: int
    n_retain: int


def mean_statistic(model: torch.nn.Module, data: Split, statistic: Statistic) -> np.ndarray:
    """Mean statistic over a split: the aggregate a client may share (no rows)."""
    with torch.no_grad():
        model.eval()
        z = soft_statistic(model(torch.as_tensor(data.X)), torch.as_tensor(data.y), statistic)
        return z.mean(0).double().numpy()


def marginal_mi_from_means(q_forget: np.ndarray, n_forget: int, q_retain: np.ndarray, n_retain: int) -> float:
    """I(Z;V) of the criterion from group means: V=0 mixes D_r and D_f by their sizes, V=1 is D_r.

    With P(V=0) = P(V=1) = ½ (the definition's fair coin).
    """
    n = n_forget + n_retain
    q0 = (n_retain * q_retain + n_forget * q_forget) / n
    means = torch.tensor(np.stack([q0, q_retain]), dtype=torch.float64)
    return float(plugin_mi_from_means(means, torch.tensor([0.5, 0.5], dtype=torch.float64)))


def pinsker_tv_bound(mi: float, pi: float = 0.5) -> float:
    return min(1.0, math.sqrt(max(mi, 0.0) / (2 * pi * (1 - pi))))


def marginal_criterion(
    model: torch.nn.Module,
    forget: Split,
    retain: Split,
    statistic: Statistic = "prediction",
    epsilon: float | None = None,
) -> CriterionResult:
    """Evaluate the ε-marginal-unlearning criterion of a model on (D_f, D_r)."""
    if len(forget) == 0 or len(retain) == 0:
        raise ValueError("the criterion needs a non-empty forget set and retain set")
    qf, qr = mean_statistic(model, forget, statistic), mean_statistic(model, retain, statistic)
    mi = marginal_mi_from_means(qf, len(forget), qr, len(retain))
    return CriterionResult(
        mi=mi,
        tv_bound=pinsker_tv_bound(mi),
        epsilon=epsilon,
        satisfied=None if epsilon is None else mi <= epsilon,
        n_forget=len(forget),
        n_retain=len(retain),
    )
