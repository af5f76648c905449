"""Membership inference from per-example scores: ROC, AUC, TPR at low FPR, loss attack.

Setting (docs/method.md §4 (d) and §4): "members" are forget-set examples D_f
that the original model was trained on, "non-members" are never-trained
holdout examples D_h. An attack assigns each example a score; the convention
throughout `unlearn_fl.audit` is

    higher score  =  more likely a member.

The loss-threshold attack (Yeom et al. 2018) uses score = −loss, so a member
is predicted when loss ≤ τ. A threshold attack predicts "member" when
score ≥ t; sweeping t over every distinct score gives the exact empirical ROC
curve (one point per distinct score, ties move together), and its area is the
Mann–Whitney statistic

    AUC = P(S_m > S_n) + ½ · P(S_m = S_n),

for S_m a member score and S_n a non-member score drawn independently.
Carlini et al. (2022) argue that the TPR at a low FPR (1 %, 0.1 %) matters
more than the AUC for privacy; both are reported.

Inputs are plain numpy arrays (or anything `np.asarray` accepts); the report
type `AttackResult` is produced at the boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as _sk_roc_curve
from torch.nn import functional as F

from unlearn_fl.audit.results import AttackResult, RocCurve

DEFAULT_FPR_TARGETS: tuple[float, ...] = (0.01, 0.001)

__all__ = [
    "DEFAULT_FPR_TARGETS",
    "as_scores",
    "require_reference_per_example",
    "roc_curve",
    "auc",
    "tpr_at_fpr",
    "downsample_roc",
    "attack_result",
    "loss_threshold_attack",
    "per_example_losses",
    "scaled_logits",
    "per_example_scaled_logits",
]


def as_scores(scores: object, name: str) -> np.ndarray:
    """`scores` as a finite 1-D float64 array, or a ValueError naming `name` and the fix."""
    arr = np.asarray(scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    if arr.ndim > 1 and arr.squeeze().ndim == 1:  # a column or row vector
        arr = arr.squeeze()
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-example scores, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: an attack needs at least one member and one non-member score")
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(
            f"{name} has {bad} non-finite value(s) (NaN or ±inf); compute losses in float64 "
            "or clip them before the attack"
        )
    return arr


def require_reference_per_example(refs: np.ndarray, name: str, what: str) -> np.ndarray:
    """Counts of non-NaN entries per row of a (n, K) reference matrix; ValueError if a row has none."""
    counts = np.sum(~np.isnan(refs), axis=1)
    if np.any(counts == 0):
        bad = np.flatnonzero(counts == 0)
        raise ValueError(
            f"{name}: {bad.size} example(s) (first index {bad[0]}) have no reference {what} at all; "
            "train more reference models or drop those examples"
        )
    return counts


def _labels_and_scores(member_scores: object, nonmember_scores: object) -> tuple[np.ndarray, np.ndarray]:
    m = as_scores(member_scores, "member_scores")
    n = as_scores(nonmember_scores, "nonmember_scores")
    y = np.concatenate([np.ones(m.size, dtype=np.int8), np.zeros(n.size, dtype=np.int8)])
    return y, np.concatenate([m, n])


def roc_curve(member_scores: object, nonmember_scores: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact empirical ROC of the threshold attack "member iff score ≥ t".

    Returns (fpr, tpr, thresholds), one entry per distinct score plus the
    starting point (0, 0) at t = +inf; fpr and tpr are non-decreasing and end
    at (1, 1). Tied scores (across or within the groups) form one point, so
    the curve is the one a threshold can actually realise; no intermediate
    point is dropped.
    """
    y, s = _labels_and_scores(member_scores, nonmember_scores)
    fpr, tpr, thr = _sk_roc_curve(y, s, drop_intermediate=False)
    return fpr.astype(np.float64), tpr.astype(np.float64), thr.astype(np.float64)


def auc(member_scores: object, nonmember_scores: object) -> float:
    """Area under the ROC curve = Mann–Whitney U / (n_m · n_n), ties counted half.

    AUC = (1 / (n_m n_n)) Σ_i Σ_j [1{s_i > s_j} + ½ · 1{s_i = s_j}],
    i over members, j over non-members. 1 is perfect separation, 0.5 is chance,
    values below 0.5 mean the members look *less* like members (e.g. the
    "Streisand effect" of over-unlearning), which an attacker can also exploit.
    """
    y, s = _labels_and_scores(member_scores, nonmember_scores)
    return float(roc_auc_score(y, s))


def _target_key(target: float) -> str:
    return f"{target:g}"


def tpr_at_fpr(
    fpr: np.ndarray, tpr: np.ndarray, targets: Sequence[float] = DEFAULT_FPR_TARGETS
) -> dict[str, float]:
    """Largest TPR reachable with FPR ≤ target, for each target (keys like '0.01').

    Uses only attainable ROC points (no interpolation). With n non-members the
    smallest non-zero FPR is 1/n; below it the answer is the TPR at FPR = 0.
    """
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    if fpr.shape != tpr.shape or fpr.ndim != 1 or fpr.size == 0:
        raise ValueError(f"fpr and tpr must be 1-D arrays of the same length, got {fpr.shape} and {tpr.shape}")
    out: dict[str, float] = {}
    for t in targets:
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"FPR target {t} is outside [0, 1]")
        ok = fpr <= t + 1e-12
        out[_target_key(t)] = float(tpr[ok].max()) if ok.any() else 0.0
    return out


def downsample_roc(fpr: np.ndarray, tpr: np.ndarray, max_points: int = 101) -> RocCurve:
    """At most `max_points` attainable ROC points for the report, low FPRs kept.

    Half of the budget goes to a log-spaced FPR grid (from the smallest
    non-zero FPR up to 1), half to a linear grid; for each grid value the last
    ROC point with FPR ≤ grid value is kept, plus the two end points. The
    points are actual ROC points, so the curve drawn from them lies on or
    below the exact one (never flatters the attack).
    """
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2 (the two end points), got {max_points}")
    if fpr.size <= max_points:
        return RocCurve(fpr=fpr.tolist(), tpr=tpr.tolist())
    positive = fpr[fpr > 0]
    smallest = positive.min() if positive.size else 1.0
    n_grid = max_points - 2
    n_log = n_grid // 2
    grid = np.concatenate(
        [np.geomspace(smallest, 1.0, n_log) if n_log > 0 else [], np.linspace(0.0, 1.0, n_grid - n_log)]
    )
    idx = np.searchsorted(fpr, grid, side="right") - 1
    idx = np.unique(np.concatenate([[0, fpr.size - 1], np.clip(idx, 0, fpr.size - 1)]))
    if idx.size > max_points:  # grid values can land on distinct points more than once; thin evenly
        keep = np.unique(np.round(np.linspace(0, idx.size - 1, max_points)).astype(int))
        idx = idx[keep]
    return RocCurve(fpr=fpr[idx].tolist(), tpr=tpr[idx].tolist())


def attack_result(
    attack: str,
    member_scores: object,
    nonmember_scores: object,
    max_roc_points: int = 101,
    fpr_targets: Sequence[float] = DEFAULT_FPR_TARGETS,
) -> AttackResult:
    """`AttackResult` of a threshold attack on scores (higher = member)."""
    m = as_scores(member_scores, "member_scores")
    n = as_scores(nonmember_scores, "nonmember_scores")
    fpr, tpr, _ = roc_curve(m, n)
    return AttackResult(
        attack=attack,
        auc=auc(m, n),
        tpr_at_fpr=tpr_at_fpr(fpr, tpr, fpr_targets),
        roc=downsample_roc(fpr, tpr, max_roc_points),
        n_members=int(m.size),
        n_nonmembers=int(n.size),
    )


def loss_threshold_attack(
    member_losses: object,
    nonmember_losses: object,
    max_roc_points: int = 101,
    fpr_targets: Sequence[float] = DEFAULT_FPR_TARGETS,
) -> AttackResult:
    """Loss-threshold membership inference (Yeom et al. 2018): member iff loss ≤ τ.

    Score = −loss. Returns an `AttackResult` with attack="loss-threshold", the
    AUC, the TPR at each FPR target and an ROC downsampled to `max_roc_points`.
    """
    m = -as_scores(member_losses, "member_losses")
    n = -as_scores(nonmember_losses, "nonmember_losses")
    return attack_result("loss-threshold", m, n, max_roc_points, fpr_targets)


def _model_logits(model: Callable[[torch.Tensor], torch.Tensor], X: object, batch_size: int) -> torch.Tensor:
    """Logits of `model` on X in batches, in eval mode and without gradients (mode restored)."""
    x = torch.as_tensor(X)
    if not torch.is_floating_point(x):
        x = x.float()
    is_module = isinstance(model, torch.nn.Module)
    if is_module:
        p = next(model.parameters(), None)
        if p is not None:
            x = x.to(device=p.device, dtype=p.dtype)
        was_training = model.training
        model.eval()
    try:
        with torch.no_grad():
            out = [torch.as_tensor(model(x[i : i + batch_size])) for i in range(0, x.shape[0], batch_size)]
        return torch.cat(out) if out else torch.empty(0, 0)
    finally:
        if is_module:
            model.train(was_training)


def per_example_losses(
    model: Callable[[torch.Tensor], torch.Tensor], X: object, y: object, batch_size: int = 4096
) -> np.ndarray:
    """Cross-entropy ℓ_i = −log softmax(f(x_i))_{y_i} for every example, as float64 numpy.

    Runs in eval mode under `torch.no_grad()` and restores the model's mode.
    `model(X)` must return logits of shape (n, C).
    """
    logits = _model_logits(model, X, batch_size)
    target = torch.as_tensor(y, device=logits.device).long().reshape(-1)
    if logits.ndim != 2 or logits.shape[0] != target.shape[0]:
        raise ValueError(f"model returned logits of shape {tuple(logits.shape)} for {target.shape[0]} labels")
    return F.cross_entropy(logits.double(), target, reduction="none").cpu().numpy()


def scaled_logits(logits: object, labels: object) -> np.ndarray:
    """LiRA's scaled-logit confidence φ = log(p_y / (1 − p_y)) (Carlini et al. 2022).

    With p = softmax(z), log p_y = z_y − LSE(z) and log(1 − p_y) = LSE(z_{−y}) − LSE(z), so

        φ = z_y − LSE_{j ≠ y}(z_j),

    computed in float64 without forming p (no overflow at p_y → 1, no log 0).
    The transform makes the per-example confidence across retrainings close
    to Gaussian, which is what LiRA fits. Needs C ≥ 2 classes.
    """
    z = torch.as_tensor(logits).detach().double().cpu()
    t = torch.as_tensor(labels).detach().long().cpu().reshape(-1)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must be (n, C) with C ≥ 2 classes, got shape {tuple(z.shape)}")
    if z.shape[0] != t.shape[0]:
        raise ValueError(f"{z.shape[0]} logit rows but {t.shape[0]} labels")
    if t.numel() and (t.min() < 0 or t.max() >= z.shape[1]):
        raise ValueError(f"labels must lie in [0, {z.shape[1] - 1}]")
    z_y = z.gather(1, t[:, None]).squeeze(1)
    others = z.scatter(1, t[:, None], float("-inf"))
    return (z_y - torch.logsumexp(others, dim=1)).numpy()


def per_example_scaled_logits(
    model: Callable[[torch.Tensor], torch.Tensor], X: object, y: object, batch_size: int = 4096
) -> np.ndarray:
    """`scaled_logits` of `model` on (X, y): the confidence score LiRA uses (higher = member)."""
    return scaled_logits(_model_logits(model, X, batch_size), y)
