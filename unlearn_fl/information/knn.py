"""A sound, independent estimate of I(Z; S) for multivariate features Z and a discrete S (docs/method.md §3, "Checking").

For any function g, I(g(Z); S) ≤ I(Z; S) (data processing). We take g = an out-of-fold gradient-boosting probe's
predicted class probabilities (scikit-learn's HistGradientBoostingClassifier, stratified K-fold, each row scored by
a model that never saw it): a one-dimensional summary per group that keeps what a flexible classifier finds about S
in Z. Each summary coordinate's I(g_k(Z); S) is estimated by scikit-learn's `mutual_info_classif`, the
k-nearest-neighbour estimator of Ross (2014, PLoS ONE 9:e87357) for a continuous variable and a discrete one (the
Kraskov–Stögbauer–Grassberger construction), and the estimate is the largest over k (binary S: the log-odds
summary, one coordinate). So the estimate is, up to its sampling error, a lower bound on I(Z; S) in nats.

Why not the Gaussian formula ½ log det Σ_Z − Σ_s p_s ½ log det Σ_{Z|s}: on binary and one-hot columns the
within-group covariances are (near) singular and differ between groups after a projection, and the log-determinants
then swing by nats that no classifier can find. The Gaussian value stays available, guarded
(`information.gaussian.gaussian_mi_guarded`), as a model-based second opinion, not as the headline.

The chance level of the estimator, `null_nats`, is the same estimate with S permuted (so with no dependence); an
estimate within a few times that of it is indistinguishable from 0.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_selection import mutual_info_classif
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from unlearn_fl.feature.validation import check_groups

ESTIMATOR = ("k-NN MI (Ross 2014, scikit-learn mutual_info_classif, k={k}) between S and an out-of-fold gradient-"
             "boosting probe's score ({folds}-fold); a lower bound on I(Z;S) in nats up to its sampling error")


class MIEstimate(BaseModel):
    """I(Z; S) estimate in nats with the estimator's chance level and the summary probe's AUC."""

    model_config = ConfigDict(extra="forbid")

    nats: float
    null_nats: float
    auc: float
    n: int
    n_groups: int
    estimator: str


def _summary(Z: np.ndarray, y: np.ndarray, k: int, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold class probabilities (n, k), clipped away from 0 and 1."""
    oof = np.zeros((len(y), k))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for tr, te in cv.split(Z, y):
        model = HistGradientBoostingClassifier(max_iter=50, max_leaf_nodes=8, learning_rate=0.1, early_stopping=False,
                                               random_state=seed).fit(Z[tr], y[tr])
        oof[np.ix_(te, model.classes_)] = model.predict_proba(Z[te])
    oof = np.clip(oof, 1e-6, 1.0)
    return oof / oof.sum(axis=1, keepdims=True)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """AUC of class probabilities p (n, k) for group codes y: binary, or one-vs-rest macro for k > 2."""
    return float(roc_auc_score(y, p[:, 1]) if p.shape[1] == 2 else roc_auc_score(y, p, multi_class="ovr", average="macro"))


def gbm_auc(Z: np.ndarray, y: np.ndarray, folds: int = 5, random_state: int = 0) -> float:
    """Out-of-fold AUC of the gradient-boosting probe behind `knn_mi`, for Z (n, d) and group codes y (n,) in
    0..k-1 with at least `folds` rows each (callers check, as `check_groups` does). No MI estimate: the probe alone."""
    with threadpool_limits(limits=1):
        return _auc(y, _summary(Z, y, int(y.max()) + 1, folds, random_state))


def knn_mi(Z: object, s: object, folds: int = 5, n_neighbors: int = 3, random_state: int = 0) -> MIEstimate:
    """I(Z; S) in nats from Z (n, d) and group labels s (n,) (see the module doc); ≥ 0.

    Raises ValueError for bad shapes, fewer than two groups, or a group with fewer rows than `folds`.
    """
    Z, y, classes, counts = check_groups(Z, s, max(folds, n_neighbors + 1), "the k-NN MI", "pass more rows or lower folds")
    k = len(classes)
    with threadpool_limits(limits=1):
        p = _summary(Z, y, k, folds, random_state)
    summary = np.log(p[:, 1] / p[:, 0])[:, None] if k == 2 else np.log(p)
    auc = _auc(y, p)
    mi = mutual_info_classif(summary, y, discrete_features=False, n_neighbors=n_neighbors, random_state=random_state)
    perm = np.random.default_rng(random_state).permutation(y)
    null = mutual_info_classif(summary, perm, discrete_features=False, n_neighbors=n_neighbors, random_state=random_state)
    return MIEstimate(nats=float(np.max(mi)), null_nats=float(np.max(null)), auc=float(auc), n=int(len(y)), n_groups=k,
                      estimator=ESTIMATOR.format(k=n_neighbors, folds=folds))
