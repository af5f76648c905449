"""Likelihood-ratio membership inference with reference models (LiRA, Carlini et al. 2022).

Carlini, Chien, Nasr, Song, Terzis & Tramèr, "Membership inference attacks from
first principles", IEEE S&P 2022. Per example x, the confidence of a model on
x is measured as the scaled logit φ = log(p_y / (1 − p_y))
(`unlearn_fl.audit.mia.scaled_logits`). Over retrainings with fresh
randomness and data, φ is close to Gaussian, with different laws for models
trained WITH x (IN) and WITHOUT x (OUT):

    φ | IN  ~ N(μ_in(x),  σ²_in(x)),      φ | OUT ~ N(μ_out(x), σ²_out(x)).

K reference ("shadow") models, each trained on a random half of the
population, give per-example estimates of these moments. For the target
model's confidence c on x:

- online (IN and OUT references):  Λ(x) = log N(c; μ_in, σ²_in) − log N(c; μ_out, σ²_out),
  the log likelihood ratio of the two hypotheses (Neyman–Pearson optimal for
  the fitted Gaussians);
- offline (OUT references only):  Λ(x) = log Φ((c − μ_out) / σ_out),
  the one-sided test "c is unusually high for a model that did not see x"
  (computed as z = (c − μ_out) / σ_out, the same order without float64 saturation).

Higher Λ = more likely a member. With few references the per-example variance
is noisy; Carlini et al. then estimate one global variance shared by all
examples instead. We do the same (`global_variance=None` → automatic, pooled
when some example has fewer than `GLOBAL_VARIANCE_BELOW` = 64 references; the
switch point is our choice): σ² is pooled over all examples,
σ²_pool = Σ_i Σ_k (φ_ik − μ_i)² / Σ_i (K_i − 1), separately for IN and OUT.

For unlearning (docs/method.md §4): with OUT references retrained without D_f,
the offline score asks whether the unlearned model still treats forget
examples as trained-on. U-LiRA (Hayes et al. 2024) goes further and runs the
unlearning algorithm inside each reference model; that is not implemented
here (train_fn can do it, though: it is any callable returning a model).

Inputs: confidence matrices of shape (n_examples, K) where NaN marks
"this reference model does not provide this example in this role"
(`ReferenceConfidences.in_confs()` / `.out_confs()` build them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from unlearn_fl.audit.mia import (
    DEFAULT_FPR_TARGETS,
    as_scores,
    attack_result,
    per_example_scaled_logits,
    require_reference_per_example,
)
from unlearn_fl.audit.results import AttackResult

__all__ = [
    "GLOBAL_VARIANCE_BELOW",
    "lira_scores",
    "lira_attack",
    "ReferenceConfidences",
    "train_reference_confidences",
]

GLOBAL_VARIANCE_BELOW = 64
"""Automatic rule: use a pooled variance when some example has fewer references than this."""

_VAR_FLOOR = 1e-8


def _as_matrix(confs: object, n: int, name: str) -> np.ndarray:
    arr = np.asarray(confs.detach().cpu().numpy() if isinstance(confs, torch.Tensor) else confs, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape (n_examples={n}, n_refs), got {arr.shape}")
    if np.any(np.isinf(arr)):
        raise ValueError(f"{name} contains ±inf; use NaN to mark a missing reference and finite confidences otherwise")
    return arr


def _moments(confs: np.ndarray, name: str, global_variance: bool | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and variance (per-example or pooled) of a NaN-masked (n, K) matrix."""
    counts = require_reference_per_example(confs, name, "confidence")
    with np.errstate(invalid="ignore"):
        mu = np.nanmean(confs, axis=1)
    resid2 = np.where(np.isnan(confs), 0.0, (confs - mu[:, None]) ** 2)
    use_global = bool(np.min(counts) < GLOBAL_VARIANCE_BELOW) if global_variance is None else global_variance
    if use_global:
        dof = float(np.sum(counts - 1))
        if dof <= 0:
            raise ValueError(
                f"{name}: one reference per example gives no variance estimate; "
                "LiRA needs at least 2 reference confidences for some example"
            )
        var = np.full(confs.shape[0], max(float(resid2.sum()) / dof, _VAR_FLOOR))
    else:
        if np.any(counts < 2):
            raise ValueError(
                f"{name}: per-example variances need ≥ 2 references per example; pass global_variance=True"
            )
        var = np.maximum(resid2.sum(axis=1) / (counts - 1), _VAR_FLOOR)
    return mu, var


def lira_scores(
    target_conf: object,
    out_confs: object,
    in_confs: object | None = None,
    global_variance: bool | None = None,
) -> np.ndarray:
    """LiRA membership scores Λ (higher = member) for each example.

    target_conf: (n,) scaled-logit confidences of the audited model.
    out_confs: (n, K_out) confidences of reference models trained WITHOUT each
        example (NaN where a model did include it, or is otherwise missing).
    in_confs: (n, K_in) confidences of reference models trained WITH each
        example, or None for the offline attack.
    global_variance: True = pooled variance, False = per-example variance,
        None = pooled when some example has < GLOBAL_VARIANCE_BELOW references.

    Online: Λ = log N(c; μ_in, σ²_in) − log N(c; μ_out, σ²_out).
    Offline: the one-sided test log Φ((c − μ_out)/σ_out), returned as its argument
    z = (c − μ_out)/σ_out, which ranks examples identically (every threshold attack,
    ROC and AUC are the same) but does not saturate at 0 in float64 for large z.
    """
    c = as_scores(target_conf, "target_conf")
    out = _as_matrix(out_confs, c.size, "out_confs")
    mu_out, var_out = _moments(out, "out_confs", global_variance)
    if in_confs is None:
        # log Φ is increasing, so z orders examples exactly as log Φ(z) does, without its float64 saturation:
        # log Φ(z) rounds to 0 for z ≳ 38, tying every confidently-fitted example (members and non-members alike).
        return (c - mu_out) / np.sqrt(var_out)
    inn = _as_matrix(in_confs, c.size, "in_confs")
    mu_in, var_in = _moments(inn, "in_confs", global_variance)
    return stats.norm.logpdf(c, mu_in, np.sqrt(var_in)) - stats.norm.logpdf(c, mu_out, np.sqrt(var_out))


def lira_attack(
    target_conf_members: object,
    target_conf_nonmembers: object,
    out_confs_members: object,
    out_confs_nonmembers: object,
    in_confs_members: object | None = None,
    in_confs_nonmembers: object | None = None,
    global_variance: bool | None = None,
    max_roc_points: int = 101,
    fpr_targets: Sequence[float] = DEFAULT_FPR_TARGETS,
) -> AttackResult:
    """LiRA on members vs non-members → `AttackResult` ("lira-online" or "lira-offline").

    Online when both `in_confs_*` are given, offline when neither is. Members
    and non-members are scored together so a pooled variance uses all of them.
    Use `lira_scores` directly to feed the scores to `empirical_epsilon`.
    """
    if (in_confs_members is None) != (in_confs_nonmembers is None):
        raise ValueError("give IN confidences for both members and non-members (online LiRA) or for neither (offline)")
    cm = as_scores(target_conf_members, "target_conf_members")
    cn = as_scores(target_conf_nonmembers, "target_conf_nonmembers")
    out = np.concatenate(
        [_as_matrix(out_confs_members, cm.size, "out_confs_members"),
         _as_matrix(out_confs_nonmembers, cn.size, "out_confs_nonmembers")]
    )
    inn = None
    if in_confs_members is not None:
        inn = np.concatenate(
            [_as_matrix(in_confs_members, cm.size, "in_confs_members"),
             _as_matrix(in_confs_nonmembers, cn.size, "in_confs_nonmembers")]
        )
    scores = lira_scores(np.concatenate([cm, cn]), out, inn, global_variance)
    name = "lira-offline" if inn is None else "lira-online"
    return attack_result(name, scores[: cm.size], scores[cm.size :], max_roc_points, fpr_targets)


@dataclass(frozen=True)
class ReferenceConfidences:
    """Confidences of K reference models on n evaluation examples.

    conf: (n, K) scaled-logit confidence of model k on example i.
    in_mask: (n, K) True where model k was trained on evaluation example i.
    pool_mask: (K, n_pool) True where model k was trained on pool example j.
    """

    conf: np.ndarray
    in_mask: np.ndarray
    pool_mask: np.ndarray

    @property
    def n_refs(self) -> int:
        return int(self.conf.shape[1])

    def in_confs(self, rows: object = slice(None)) -> np.ndarray:
        """(n, K) IN confidences, NaN where the model did not see the example."""
        return np.where(self.in_mask, self.conf, np.nan)[rows]

    def out_confs(self, rows: object = slice(None)) -> np.ndarray:
        """(n, K) OUT confidences, NaN where the model saw the example."""
        return np.where(self.in_mask, np.nan, self.conf)[rows]


def _take(X: object, mask: np.ndarray) -> object:
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(mask)]
    return np.asarray(X)[mask]


def _concat(a: object, b: object) -> object:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.cat([torch.as_tensor(a), torch.as_tensor(b)])
    return np.concatenate([np.asarray(a), np.asarray(b)])


def train_reference_confidences(
    train_fn: Callable[[object, object], torch.nn.Module],
    X_pool: object,
    y_pool: object,
    X_eval: object,
    y_eval: object,
    n_refs: int,
    rng: np.random.Generator | int | None = 0,
    include_eval: bool = True,
    confidence_fn: Callable[[torch.nn.Module, object, object], np.ndarray] = per_example_scaled_logits,
) -> ReferenceConfidences:
    """Train `n_refs` reference models and record their confidences on the evaluation examples.

    Model k is `train_fn(X_k, y_k)` on a random half (⌊n_pool/2⌋ points) of
    the pool plus, when `include_eval`, the evaluation examples assigned to
    it: each evaluation example is IN for exactly ⌊n_refs/2⌋ randomly chosen
    models (balanced, as in Carlini et al.) and OUT for the rest. With
    `include_eval=False` every model is OUT for every evaluation example
    (offline LiRA only, e.g. when the evaluation set is D_f ∪ D_h and the pool is D_r).

    `confidence_fn(model, X_eval, y_eval)` gives the per-example confidence,
    by default the scaled logit. All randomness in data assignment comes from
    `rng` (a Generator or a seed); make `train_fn` deterministic (seed torch
    inside it) for reproducible references. Cost: n_refs trainings.
    """
    if n_refs < 1:
        raise ValueError(f"n_refs must be at least 1, got {n_refs}")
    if include_eval and n_refs < 2:
        raise ValueError("online references need n_refs ≥ 2 (each example IN for half of the models)")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    n_pool = len(X_pool)
    n_eval = len(X_eval)
    if len(y_pool) != n_pool or len(y_eval) != n_eval:
        raise ValueError("X_pool/y_pool and X_eval/y_eval must have matching lengths")

    pool_mask = np.zeros((n_refs, n_pool), dtype=bool)
    for k in range(n_refs):
        pool_mask[k, gen.permutation(n_pool)[: n_pool // 2]] = True
    in_mask = np.zeros((n_eval, n_refs), dtype=bool)
    if include_eval:
        for i in range(n_eval):
            in_mask[i, gen.permutation(n_refs)[: n_refs // 2]] = True

    conf = np.empty((n_eval, n_refs), dtype=np.float64)
    for k in range(n_refs):
        X_k = _concat(_take(X_pool, pool_mask[k]), _take(X_eval, in_mask[:, k]))
        y_k = _concat(_take(y_pool, pool_mask[k]), _take(y_eval, in_mask[:, k]))
        model = train_fn(X_k, y_k)
        conf[:, k] = np.asarray(confidence_fn(model, X_eval, y_eval), dtype=np.float64).reshape(-1)
    return ReferenceConfidences(conf=conf, in_mask=in_mask, pool_mask=pool_mask)
