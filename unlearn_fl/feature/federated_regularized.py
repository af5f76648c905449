"""Regularised training in a federation: every site minimises utility + λ·Î(Z; S) with the federation's Î
(docs/method.md §3, "In training"; issue #12 item 4b). Nothing here depends on Flower.

The plug-in Î(Z; S) of `unlearn_fl.feature.objectives.mi_penalty` is a function of the per-group mean soft
histograms q_s of Z and the group shares P(S = s) (`information.plugin.plugin_mi_from_means`). Over the federation

    q_s = (Σ_sites Σ_{i at the site, S_i = s} h(z_i)) / N_s,        P(S = s) = N_s / N,

and both are sums over sites. One round:

1. every site sends, for the round's starting model, its per-group sums of h(z) and its per-group counts
   (`group_sums`: an aggregate of shape (G, K', B) and (G,), never rows); the server adds them up and sends the totals;
2. each site takes local steps on  utility(batch) + λ·Î_fed, where Î_fed uses the federation's group means with this
   site's part replaced by its current batch (`federated_penalty`):

       q_s = (n_s^site · mean_{batch, S=s} h(z) + (T_s − A_s)) / N_s,

   T_s the totals, A_s the site's own sums at the round's start, n_s^site its own count of group s (a group absent
   from the batch keeps A_s, without gradient). With the whole site as the batch and the round's starting model this
   is exactly the central plug-in Î on the pooled rows (tested); the other sites' parts are one round stale, as the
   retain statistic of data-point unlearning is (docs/method.md §2, federated form);
3. the server averages the sites' models (FedAvg, weights = rows).

Any of the four utility objectives of `objectives.utility_loss` applies (the 'kl' teacher is the round's starting
model, a stated simplification of the central form's separately trained teacher).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from unlearn_fl.feature.objectives import Objective, soft_histogram, utility_loss
from unlearn_fl.information.plugin import plugin_mi_from_means
from unlearn_fl.types import Seed

__all__ = ["FederatedRegularizedConfig", "soft_outcome", "group_sums", "federated_penalty", "local_regularized_steps"]


class FederatedRegularizedConfig(BaseModel):
    """One site's settings for a round of regularised training (validated at the boundary)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    objective: Objective = "conditional_entropy"
    lam: float = Field(1.0, ge=0.0, description="Weight λ of the federation's Î(Z; S).")
    epochs: int = Field(1, ge=1, le=1000, description="Local epochs per round.")
    lr: float = Field(1e-2, gt=0.0)
    batch_size: int = Field(64, ge=2)
    penalty: str = Field("histogram", pattern="^(histogram|softmax)$",
                         description="histogram: soft histograms of each output coordinate (the law); softmax: the softmax rows (the means).")
    n_bins: int = Field(10, ge=2, le=100)
    seed: Seed = 0


def soft_outcome(probs: torch.Tensor, penalty: str, n_bins: int) -> torch.Tensor:
    """The per-row outcome whose group means the penalty compares: (n, K', B) soft histograms of the softmax
    coordinates (K' = 1 for two outputs, whose second coordinate is redundant, else K), or (n, 1, K) softmax rows."""
    if penalty == "softmax":
        return probs[:, None, :]
    coords = [1] if probs.shape[1] == 2 else range(probs.shape[1])
    return torch.stack([soft_histogram(probs[:, k], n_bins) for k in coords], dim=1)


@torch.no_grad()
def group_sums(model: nn.Module, X: np.ndarray, s_idx: np.ndarray, n_groups: int, penalty: str = "histogram",
               n_bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(sums (G, K', B) float64, counts (G,) int64): per group of S, the sum of the rows' soft outcomes and the rows.

    X: (n, d) float32 inputs; s_idx: (n,) group index in 0..G−1. What a site sends (an aggregate of its rows).
    """
    model.eval()
    z = soft_outcome(torch.softmax(model(torch.as_tensor(X, dtype=torch.float32)), dim=1), penalty, n_bins).double()
    s = torch.as_tensor(np.asarray(s_idx, dtype=np.int64))
    sums = torch.zeros((n_groups,) + tuple(z.shape[1:]), dtype=torch.float64).index_add_(0, s, z)
    return sums.numpy(), np.bincount(np.asarray(s_idx, dtype=np.int64), minlength=n_groups).astype(np.int64)


def federated_penalty(probs: torch.Tensor, s_batch: torch.Tensor, own_counts: torch.Tensor, own_sums: torch.Tensor,
                      total_sums: torch.Tensor, total_counts: torch.Tensor, penalty: str = "histogram",
                      n_bins: int = 10) -> torch.Tensor:
    """Differentiable Î_fed(Z; S) in nats (module docstring, step 2), averaged over the outcome's coordinates.

    probs: (b, K) softmax of the batch; s_batch: (b,) group indices; own_counts (G,), own_sums (G, K', B): this
    site's counts and sums at the round's start; total_sums / total_counts: the federation's. Groups without rows
    anywhere are left out. ValueError when fewer than two groups have rows.
    """
    z = soft_outcome(probs, penalty, n_bins).to(torch.float64)
    G = total_counts.shape[0]
    present = [g for g in range(G) if float(total_counts[g]) > 0]
    if len(present) < 2:
        raise ValueError("the federation's Î(Z;S) needs rows of at least two groups of S")
    means = []
    for g in present:
        sel = s_batch == g
        own = own_counts[g] * z[sel].mean(0) if bool(sel.any()) else own_sums[g]
        means.append((own + total_sums[g] - own_sums[g]) / total_counts[g])
    m = torch.stack(means)  # (G', K', B)
    w = total_counts[present].to(torch.float64)
    return torch.stack([plugin_mi_from_means(m[:, k, :], w) for k in range(m.shape[1])]).mean()


def local_regularized_steps(model: nn.Module, X: np.ndarray, y: np.ndarray | None, s_idx: np.ndarray,
                            total_sums: np.ndarray, total_counts: np.ndarray, cfg: FederatedRegularizedConfig,
                            ) -> tuple[nn.Module, dict]:
    """One site's local steps of a round (module docstring, step 2); the input model is not modified.

    X (n, d) float32; y (n,) int64 or None (objective 'entropy'); s_idx (n,) in 0..G−1; total_sums (G, K', B) and
    total_counts (G,): the federation's `group_sums` for the round's starting model. Returns the trained copy and
    metrics (num-examples, the last batch's utility loss and penalty).
    """
    import copy

    n_groups = int(np.asarray(total_counts).shape[0])
    own_sums, own_counts = group_sums(model, X, s_idx, n_groups, cfg.penalty, cfg.n_bins)
    model = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        x = torch.as_tensor(X, dtype=torch.float32)
        yt = None if y is None else torch.as_tensor(np.asarray(y, dtype=np.int64))
        st = torch.as_tensor(np.asarray(s_idx, dtype=np.int64))
        T, Tn = torch.as_tensor(total_sums, dtype=torch.float64), torch.as_tensor(total_counts, dtype=torch.float64)
        A, An = torch.as_tensor(own_sums), torch.as_tensor(own_counts, dtype=torch.float64)
        with torch.no_grad():
            teacher = torch.softmax(model(x), dim=1) if cfg.objective == "kl" else None
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        u = pen = torch.zeros(())
        model.train()
        for _ in range(cfg.epochs):
            for b in torch.randperm(len(x), generator=gen).split(cfg.batch_size):
                logits = model(x[b])
                u = utility_loss(cfg.objective, logits, None if yt is None else yt[b], None if teacher is None else teacher[b])
                pen = (federated_penalty(torch.softmax(logits, dim=1), st[b], An, A, T, Tn, cfg.penalty, cfg.n_bins)
                       if cfg.lam > 0 else torch.zeros(()))
                loss = u + cfg.lam * pen.to(u.dtype)
                opt.zero_grad()
                loss.backward()
                opt.step()
    return model, {"num-examples": len(x), "utility-loss": float(u.detach()), "penalty": float(pen.detach())}
