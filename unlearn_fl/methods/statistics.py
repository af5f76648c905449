"""Per-example soft statistics Z whose law the marginal criterion compares (docs/method.md §2).

Each maps logits (n, C) and labels (n,) to probability rows (n, K):
- "prediction": Ŷ drawn from the softmax (the authors' estimator, K = C);
- "correct": 1[Ŷ = Y], soft: (p_y, 1 − p_y) (label-aware, K = 2);
- "joint": (Y, Ŷ), soft: onehot(y) ⊗ softmax (label-aware, K = C²); marginalising Y gives "prediction",
  so I((Y,Ŷ);V) ≥ I(Ŷ;V);
- "loss": the per-example cross-entropy, softly binned on a log scale (K = LOSS_BINS). Its plug-in MI
  is zero iff the forget set's loss law matches the reference's: exactly what a loss-threshold
  membership attack looks at. Group means only match averages; this matches the distribution.
The label-aware ones follow docs/method.md §2's advice for forget sets that are a subpopulation.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.nn import functional as F

Statistic = Literal["prediction", "correct", "joint", "loss"]

LOSS_BINS = 12
_LOG_LOSS_CENTERS = torch.linspace(-9.0, 2.5, LOSS_BINS)  # log(loss) from ~1e-4 to ~12
_BANDWIDTH = float(_LOG_LOSS_CENTERS[1] - _LOG_LOSS_CENTERS[0])


def soft_statistic(logits: torch.Tensor, y: torch.Tensor, kind: Statistic) -> torch.Tensor:
    p = torch.softmax(logits, dim=1)
    if kind == "prediction":
        return p
    if kind == "correct":
        py = p.gather(1, y[:, None])
        return torch.cat([py, 1.0 - py], dim=1)
    if kind == "joint":
        c = p.shape[1]
        return (F.one_hot(y, c).to(p.dtype)[:, :, None] * p[:, None, :]).reshape(len(y), c * c)
    if kind == "loss":
        u = torch.log(F.cross_entropy(logits, y, reduction="none") + 1e-6)
        d = (u[:, None] - _LOG_LOSS_CENTERS.to(u.dtype)[None, :]) / _BANDWIDTH
        return torch.softmax(-0.5 * d * d, dim=1)
    raise ValueError(f"unknown statistic {kind!r}: use prediction, correct, joint or loss")
