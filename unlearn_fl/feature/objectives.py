"""Regularised training for deep models: utility objective + λ · Î(Z; S) (docs/method.md §1, §2.3 B).

Z is the softmax output of a small MLP (class probabilities for a supervised
objective, soft cluster assignments for the unsupervised "entropy" one). The
penalty is the plug-in MI of `unlearn_fl.information.plugin` applied to a
soft-assignment outcome:

- penalty="histogram" (default): each output coordinate p_k ∈ [0, 1] is softly
  quantised into `n_bins` bins (Gaussian kernel, bandwidth 1/n_bins); Î is the
  plug-in MI of those soft histograms with S, averaged over coordinates. Equal
  soft histograms ⇔ (approximately) equal laws of p_k per group, so this
  penalises the whole distribution, not only its mean.
- penalty="softmax": the authors' plug-in on the softmax rows themselves (§3.2), which
  only equalises the groups' mean softmax vectors.

The four utilities of the paper's abstract (our reading, docs/method.md §3):

- "entropy": maximise H(Z) for the discrete outcome Z ~ softmax(f(x)). For a
  deterministic Z = f(X), H(Z) = I(X; Z); with soft assignments we maximise
  I(X; Z) = H(mean p) − mean H(p_i), so the outcome is pushed to be a function of X
  (confident) and to use all K outputs. Needs no target.
- "conditional_entropy": minimise H(Y | Z) through its usual upper bound, the task
  cross-entropy E[−log p_θ(Y | X)].
- "kl": minimise KL(P_T(Y|X) ‖ p_θ(Y|X)), keeping the model's conditional law close to a
  reference ("teacher") P_T: teacher probabilities passed in, or an unpenalised
  cross-entropy model trained first on the same data.
- "energy": maximise the energy of the conditional probability E‖P(Y | Z)‖². Chosen
  reading: minimise the Brier score E‖e_Y − p_θ‖². For any predictor q(Z),
  E‖e_Y − q(Z)‖² = 1 − E‖P(Y|Z)‖² + E‖P(Y|Z) − q(Z)‖², so the best Brier risk reachable from Z
  is exactly 1 − energy: minimising it maximises the energy and fits a calibrated head,
  with no decoder needed (the E‖X − E[X|Z]‖² reading would need a reconstruction network
  and is what the barycenter projection already optimises in closed form, §2.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

from unlearn_fl.types import Seed
from unlearn_fl.feature.validation import check_labels, check_matrix, group_index, normalise_labels
from unlearn_fl.models import MLP
from unlearn_fl.information.plugin import plugin_mi_by_label

Objective = Literal["entropy", "conditional_entropy", "kl", "energy"]
OBJECTIVES: tuple[str, ...] = ("entropy", "conditional_entropy", "kl", "energy")


class RegularizedConfig(BaseModel):
    """Settings of `fit_regularized` (validated at the boundary)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    objective: Objective = "conditional_entropy"
    lam: float = Field(1.0, ge=0.0, description="Weight λ of the MI penalty Î(Z; S).")
    epochs: int = Field(300, ge=1, description="Optimiser steps over the data (full batch when batch_size is None).")
    lr: float = Field(1e-2, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    hidden: tuple[int, ...] = (32,)
    n_outputs: int | None = Field(None, ge=2, description="Softmax size; default: number of classes, or 4 clusters for 'entropy'.")
    penalty: Literal["histogram", "softmax"] = "histogram"
    n_bins: int = Field(10, ge=2)
    batch_size: int | None = Field(None, ge=2)
    warmup_epochs: int = Field(0, ge=0, description="Epochs with λ = 0 before the penalty is switched on.")
    standardize: bool = True
    seed: Seed = 0


def soft_histogram(p: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Soft quantisation of values in [0, 1] (shape (n,)) into (n, n_bins) probability rows."""
    centres = (torch.arange(n_bins, dtype=p.dtype) + 0.5) / n_bins
    h = 1.0 / n_bins
    return torch.softmax(-((p[:, None] - centres[None, :]) ** 2) / (2 * h * h), dim=1)


def mi_penalty(probs: torch.Tensor, s_idx: torch.Tensor, n_groups: int, kind: str = "histogram", n_bins: int = 10) -> torch.Tensor:
    """Differentiable Î(Z; S) of softmax outputs `probs` (n, K) (plug-in, docs/method.md §2 with V = S)."""
    if kind == "softmax":
        return plugin_mi_by_label(probs, s_idx, n_groups)
    coords = [1] if probs.shape[1] == 2 else range(probs.shape[1])  # two classes: p_0 = 1 − p_1 is redundant
    return torch.stack([plugin_mi_by_label(soft_histogram(probs[:, k], n_bins), s_idx, n_groups) for k in coords]).mean()


def utility_loss(objective: str, logits: torch.Tensor, y: torch.Tensor | None, teacher: torch.Tensor | None) -> torch.Tensor:
    """The loss to minimise for one utility objective (see module docstring)."""
    logp = F.log_softmax(logits, dim=1)
    p = logp.exp()
    if objective == "entropy":
        pbar = p.mean(dim=0)
        h_marginal = -(pbar * pbar.clamp_min(1e-12).log()).sum()
        h_cond = -(p * logp).sum(dim=1).mean()
        return -(h_marginal - h_cond)
    if y is None:
        raise ValueError(f"objective {objective!r} needs a target y")
    if objective == "conditional_entropy":
        return F.nll_loss(logp, y)
    if objective == "kl":
        assert teacher is not None
        return (teacher * (teacher.clamp_min(1e-12).log() - logp)).sum(dim=1).mean()
    if objective == "energy":
        return ((F.one_hot(y, p.shape[1]).to(p.dtype) - p) ** 2).sum(dim=1).mean()
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


@dataclass
class RegularizedResult:
    """What `fit_regularized` returns: the trained network, its outputs Z on the training rows, the loss history."""

    model: nn.Module
    Z: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    classes: list | None = None  # target labels of the softmax columns (None for 'entropy')

    def outputs(self, X: object) -> np.ndarray:
        """Z = softmax(f(x)) for new rows (standardised with the training statistics)."""
        Xa = check_matrix(X, "X")
        if self.mean is not None:
            Xa = (Xa - self.mean) / self.scale
        with torch.no_grad():
            return torch.softmax(self.model(torch.as_tensor(Xa, dtype=torch.float32)), dim=1).numpy().astype(np.float64)


def _train(
    cfg: RegularizedConfig, x: torch.Tensor, y: torch.Tensor | None, s_idx: torch.Tensor, n_groups: int, k: int,
    objective: str, lam: float, teacher: torch.Tensor | None,
) -> tuple[nn.Module, list[dict[str, float]]]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = MLP(x.shape[1], k, cfg.hidden)
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n = x.shape[0]
        history: list[dict[str, float]] = []
        for epoch in range(cfg.epochs):
            batches = [torch.arange(n)] if cfg.batch_size is None else torch.randperm(n, generator=gen).split(cfg.batch_size)
            lam_now = lam if epoch >= cfg.warmup_epochs else 0.0
            for b in batches:
                logits = model(x[b])
                u = utility_loss(objective, logits, None if y is None else y[b], None if teacher is None else teacher[b])
                if lam_now > 0 and len(torch.unique(s_idx[b])) > 1:
                    pen = mi_penalty(torch.softmax(logits, dim=1), s_idx[b], n_groups, cfg.penalty, cfg.n_bins)
                else:
                    pen = torch.zeros(())
                loss = u + lam_now * pen
                opt.zero_grad()
                loss.backward()
                opt.step()
            history.append({"epoch": float(epoch), "utility_loss": float(u.detach()), "penalty": float(pen.detach())})
    return model, history


def fit_regularized(
    X: object, y: object | None, s: object, config: RegularizedConfig | None = None, teacher_probs: object | None = None
) -> RegularizedResult:
    """Train an MLP minimising utility + λ · Î(Z; S) on (X, y, s); return model, outputs Z and history.

    y may be None for objective="entropy". teacher_probs (n, K) are used by objective="kl";
    without them an unpenalised cross-entropy teacher is trained first with the same settings.
    """
    cfg = config or RegularizedConfig()
    Xa = check_matrix(X, "X")
    s_arr = check_labels(s, Xa.shape[0])
    classes = normalise_labels(np.unique(s_arr))
    if len(classes) < 2:
        raise ValueError("s must contain at least two groups")
    s_idx = torch.as_tensor(group_index(s_arr, classes))
    mean = scale = None
    if cfg.standardize:
        mean, scale = Xa.mean(axis=0), Xa.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        Xa = (Xa - mean) / scale
    x = torch.as_tensor(Xa, dtype=torch.float32)
    y_t: torch.Tensor | None = None
    y_labels: list | None = None
    if cfg.objective == "entropy":
        k = cfg.n_outputs or 4
    else:
        if y is None:
            raise ValueError(f"objective {cfg.objective!r} needs a target y (only 'entropy' is unsupervised)")
        y_arr = check_labels(y, Xa.shape[0], "y")
        y_classes, y_idx = np.unique(y_arr, return_inverse=True)
        k = cfg.n_outputs or max(2, len(y_classes))
        if k < len(y_classes):
            raise ValueError(f"n_outputs={k} is smaller than the number of target classes ({len(y_classes)}); raise it or leave it None")
        y_labels = normalise_labels(y_classes)
        y_t = torch.as_tensor(y_idx, dtype=torch.long)
    teacher: torch.Tensor | None = None
    if cfg.objective == "kl":
        if teacher_probs is not None:
            tp = check_matrix(teacher_probs, "teacher_probs")
            if tp.shape != (Xa.shape[0], k):
                raise ValueError(f"teacher_probs must have shape {(Xa.shape[0], k)}, got {tp.shape}")
            teacher = torch.as_tensor(tp / tp.sum(axis=1, keepdims=True), dtype=torch.float32)
        else:
            t_model, _ = _train(cfg, x, y_t, s_idx, len(classes), k, "conditional_entropy", 0.0, None)
            with torch.no_grad():
                teacher = torch.softmax(t_model(x), dim=1)
    model, history = _train(cfg, x, y_t, s_idx, len(classes), k, cfg.objective, cfg.lam, teacher)
    model.eval()
    with torch.no_grad():
        Z = torch.softmax(model(x), dim=1).numpy().astype(np.float64)
    return RegularizedResult(model=model, Z=Z, history=history, mean=mean, scale=scale, classes=y_labels)


class RegularizedMLP:
    """Estimator wrapper: `fit(X, y, s)`, then `transform(X)` → Z (softmax outputs), `predict(X)`."""

    def __init__(self, config: RegularizedConfig | None = None, **kwargs: object) -> None:
        self.config = config or RegularizedConfig(**kwargs)

    def fit(self, X: object, y: object | None, s: object, teacher_probs: object | None = None) -> RegularizedMLP:
        self.result_ = fit_regularized(X, y, s, self.config, teacher_probs)
        return self

    def transform(self, X: object) -> np.ndarray:
        if not hasattr(self, "result_"):
            raise ValueError("RegularizedMLP is not fitted yet; call fit(X, y, s) first")
        return self.result_.outputs(X)

    predict_proba = transform

    def predict(self, X: object) -> np.ndarray:
        """Most likely target label (or cluster index for 'entropy')."""
        idx = self.transform(X).argmax(axis=1)
        labels = self.result_.classes
        return idx if labels is None else np.asarray(labels)[np.minimum(idx, len(labels) - 1)]
