"""Plug-in mutual information between a soft categorical outcome and a group label.

docs/method.md §2 (the authors' estimator): each example carries a probability
vector over K categories (a softmax, or any soft statistic), group v has weight
w_v and mean vector q_v, the pooled mean is q̄ = Σ_v w_v q_v, and

    Î(Z; V) = Σ_v w_v · KL(q_v ‖ q̄)           (nats)

This is the mutual information of the mixture (V ~ w, Z | V=v ~ q_v). It is
differentiable in the probabilities, costs O(n·K), and is zero iff every group
has the same mean vector. It serves as the differentiable penalty in both
data-point unlearning (V = forget/reference indicator) and feature unlearning
(V = S, the sensitive attribute).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_EPS = 1e-12


def plugin_mi_from_means(means: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Î from group mean vectors `means` (G, K) and group weights `weights` (G,), in nats.

    Weights are normalised to sum to one. Both inputs may require grad.
    """
    if means.ndim != 2:
        raise ValueError(f"means must be (groups, categories), got shape {tuple(means.shape)}")
    if weights.shape != means.shape[:1]:
        raise ValueError(f"weights must have one entry per group ({means.shape[0]}), got {tuple(weights.shape)}")
    w = weights / weights.sum()
    q = means.clamp_min(_EPS)
    q = q / q.sum(dim=1, keepdim=True)
    qbar = (w[:, None] * q).sum(dim=0)
    kl = (q * (q.log() - qbar.log()[None, :])).sum(dim=1)
    return (w * kl).sum()


def plugin_mi(groups: Sequence[torch.Tensor], weights: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """Î(Z; V) for per-example probability rows split into groups.

    groups: one (n_v, K) tensor per value of V (rows are probability vectors).
    weights: P(V=v); defaults to the group sizes' shares (the empirical law of V).
    """
    if len(groups) < 2:
        raise ValueError("plug-in MI needs at least two groups")
    k = groups[0].shape[1]
    for g in groups:
        if g.ndim != 2 or g.shape[1] != k:
            raise ValueError("every group must be a (n, K) tensor with the same K")
        if g.shape[0] == 0:
            raise ValueError("every group needs at least one example")
    means = torch.stack([g.mean(dim=0) for g in groups])
    if weights is None:
        w = torch.tensor([float(g.shape[0]) for g in groups], dtype=means.dtype, device=means.device)
    else:
        w = torch.as_tensor(weights, dtype=means.dtype, device=means.device)
    return plugin_mi_from_means(means, w)


def plugin_mi_by_label(probs: torch.Tensor, labels: torch.Tensor, n_groups: int | None = None) -> torch.Tensor:
    """Î(Z; S) with S given as integer labels (0..G-1) of the rows of `probs`; empty groups are skipped."""
    g = int(labels.max().item()) + 1 if n_groups is None else n_groups
    groups = [probs[labels == s] for s in range(g) if bool((labels == s).any())]
    return plugin_mi(groups)
