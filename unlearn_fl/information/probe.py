"""Held-out probe: how well can a fresh classifier predict S from Z? (docs/method.md §3 B, §6).

Independent of any training penalty, so a method is never graded by its own
estimator. Out-of-fold predicted probabilities from (repeated) stratified K-fold
cross-validation give

- AUC: binary ROC-AUC, or one-vs-rest macro AUC for more than two groups (0.5 = nothing left);
- information in bits: max(0, H(S) − CE) / ln 2, with H(S) the empirical entropy of S and CE the
  held-out cross-entropy of the probe; a variational lower bound on I(Z; S) (§3.3 b).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from threadpoolctl import threadpool_limits

from unlearn_fl.feature.validation import check_groups, check_permutation_test

ProbeKind = Literal["logistic", "quadratic", "gbm"]


class ProbeResult(BaseModel):
    """Cross-validated dependence of S on Z."""

    model_config = ConfigDict(extra="forbid")

    auc: float
    bits: float
    cross_entropy: float
    entropy_s: float
    n: int
    n_groups: int
    probe: str
    folds: int
    repeats: int


def _make_probe(kind: ProbeKind, seed: int):
    if kind == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    if kind == "quadratic":
        return make_pipeline(StandardScaler(), PolynomialFeatures(2, include_bias=False), StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    if kind == "gbm":
        return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15, early_stopping=False, random_state=seed)
    raise ValueError(f"probe must be 'logistic', 'quadratic' or 'gbm', got {kind!r}")


def _cross_validate(Z: np.ndarray, y: np.ndarray, k: int, probe: ProbeKind, folds: int, repeats: int, random_state: int) -> tuple[list[float], list[float]]:
    aucs, ces = [], []
    for r in range(repeats):
        oof = np.zeros((len(y), k))
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state + r)
        for tr, te in cv.split(Z, y):
            model = _make_probe(probe, random_state + r).fit(Z[tr], y[tr])
            pr = np.zeros((len(te), k))
            pr[:, model.classes_] = model.predict_proba(Z[te])
            oof[te] = pr
        oof = np.clip(oof, 1e-12, 1.0)
        oof /= oof.sum(axis=1, keepdims=True)
        aucs.append(roc_auc_score(y, oof[:, 1]) if k == 2 else roc_auc_score(y, oof, multi_class="ovr", average="macro"))
        ces.append(log_loss(y, oof, labels=np.arange(k)))
    return aucs, ces


def probe_s(
    Z: object, s: object, probe: ProbeKind = "logistic", folds: int = 5, repeats: int = 1, random_state: int = 0
) -> ProbeResult:
    """Out-of-fold probe of S from Z: AUC and bits, averaged over `repeats` reshuffled K-fold splits."""
    Z, y, classes, counts = check_groups(Z, s, folds, f"a {folds}-fold probe", "lower folds or pass more rows")
    k = len(classes)
    p_s = counts / counts.sum()
    h_s = float(-(p_s * np.log(p_s)).sum())
    with threadpool_limits(limits=1):  # tiny fits: BLAS/OpenMP threads only add contention on a shared machine
        aucs, ces = _cross_validate(Z, y, k, probe, folds, repeats, random_state)
    ce = float(np.mean(ces))
    return ProbeResult(
        auc=float(np.mean(aucs)),
        bits=max(0.0, h_s - ce) / np.log(2.0),
        cross_entropy=ce,
        entropy_s=h_s,
        n=int(len(y)),
        n_groups=k,
        probe=probe,
        folds=folds,
        repeats=repeats,
    )


def probe_auc(Z: object, s: object, probe: ProbeKind = "logistic", folds: int = 5, repeats: int = 1, random_state: int = 0) -> float:
    """Shortcut: the probe's cross-validated AUC only."""
    return probe_s(Z, s, probe, folds, repeats, random_state).auc


def probe_chance(Z: object, s: object, probe: ProbeKind = "logistic", folds: int = 5, repeats: int = 1,
                 permutations: int = 19, level: float = 0.95, random_state: int = 0) -> float:
    """The probe's chance level on these rows: the `level` quantile of its cross-validated AUC with S permuted
    (`permutations` times; a permutation keeps Z and the group sizes and removes any dependence).

    An AUC at or below it is indistinguishable from no dependence on this many rows (docs/method.md §3, "Checking").
    For two groups of n/2 rows one AUC's Mann–Whitney standard error is √((n + 1)/(3n²)) (0.039 at n = 221).
    Raises ValueError as `probe_s` does, or for permutations < 1 or level outside (0, 1).
    """
    check_permutation_test(permutations, level, folds)
    Z, y, _, _ = check_groups(Z, s, folds, f"a {folds}-fold probe", "lower folds or pass more rows")
    rng = np.random.default_rng(random_state)
    null = [probe_s(Z, rng.permutation(y), probe, folds, repeats, random_state).auc for _ in range(permutations)]
    return float(np.quantile(null, level))
