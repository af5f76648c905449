"""The best accuracy a model independent of S can reach: the demographic-parity ceiling (docs/method.md §3,
"What independence costs").

Feature unlearning at t = 1 makes the features Z_1 independent of S, so every classifier h(Z_1) has the same rate of
positive predictions in every group (demographic parity). The most accurate binary classifier with that property,
allowed to see X and S and to randomise, predicts 1 on the top r of each group by η(x, s) = P(Y = 1 | X = x, S = s),
with one r for all groups (Menon & Williamson 2018, "The cost of fairness in binary classification"; Zeng, Dobriban &
Cheng 2022, "Bayes-optimal classifiers under group fairness"):

    acc(r) = Σ_s p_s [ E_s(η 1{top r}) + E_s((1 − η) 1{not top r}) ],     ceiling = max_r acc(r).

No classifier on S-independent features is more accurate, so when the ceiling is more than a few points below the
unconstrained accuracy, a small accuracy cost of feature unlearning is out of reach on that table for any method,
not only this one. It is an upper bound for our setting: independence of Z_1 is stronger than parity of one output.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict


class ParityCeiling(BaseModel):
    """accuracy: the best accuracy of one threshold on η for every row (unconstrained); ceiling: the best accuracy
    under demographic parity, at the common positive rate `rate`; positive_rates: per group (labels as str), that
    unconstrained rule's rate of positive predictions; probe: what estimated η (`estimate_parity_ceiling`), None when
    η was given. Both maxima choose one parameter on the same rows, so they
    carry the same small optimism. Accuracies in [0, 1]."""

    model_config = ConfigDict(extra="forbid")

    accuracy: float
    ceiling: float
    rate: float
    positive_rates: dict[str, float]
    n: int
    probe: str | None = None


def _group_curve(eta: np.ndarray, gain: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """For each rate r: the mean over the group of (1 − y) + (2y − 1) 1{top r}, the top-r rows by η taken whole and the
    boundary row by its fraction (the randomised rule). gain = 2y − 1 per row (or 2η − 1), base added by the caller."""
    order = np.argsort(-eta, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(gain[order])])
    k = rates * eta.size
    whole = np.floor(k).astype(int)
    frac = k - whole
    nxt = np.append(gain[order], 0.0)[np.minimum(whole, eta.size)]
    return (cum[whole] + frac * nxt) / eta.size


def parity_ceiling(eta: object, s: object, y: object | None = None, grid: int = 2001) -> ParityCeiling:
    """The demographic-parity accuracy ceiling of binary labels (module doc).

    eta: (n,) estimates of P(Y = 1 | X, S) (e.g. out-of-fold probabilities of a probe that sees S); s: (n,) groups;
    y: (n,) labels in {0, 1}, when given the accuracies are empirical on them, else the plug-in expectation under η.
    Group weights are the groups' shares of the n rows; r runs over `grid` equally spaced rates in [0, 1].
    ValueError for mismatched lengths, η outside [0, 1], labels other than 0/1, or fewer than two groups.
    """
    eta = np.asarray(eta, dtype=np.float64).ravel()
    s = np.asarray(s).ravel()
    if eta.size == 0 or s.size != eta.size or (y is not None and np.asarray(y).size != eta.size):
        raise ValueError(f"eta, s and y need one entry per row, got {eta.size}, {s.size} and "
                         f"{'-' if y is None else np.asarray(y).size}")
    if not np.all(np.isfinite(eta)) or eta.min() < 0 or eta.max() > 1:
        raise ValueError("eta must hold probabilities in [0, 1]")
    target = eta if y is None else np.asarray(y, dtype=np.float64).ravel()
    if y is not None and not np.isin(target, (0.0, 1.0)).all():
        raise ValueError("y must hold binary labels 0/1; encode the positive class as 1")
    labels, inv = np.unique(s, return_inverse=True)
    if labels.size < 2:
        raise ValueError("s has a single group; the parity ceiling compares at least two")
    rates = np.linspace(0.0, 1.0, grid)
    curve = np.zeros(grid)
    for g in range(labels.size):
        rows = inv == g
        curve += rows.mean() * (np.mean(1 - target[rows]) + _group_curve(eta[rows], 2 * target[rows] - 1, rates))
    best = int(np.argmax(curve))
    overall = np.mean(1 - target) + _group_curve(eta, 2 * target - 1, rates)  # one threshold for every row
    top = int(np.argmax(overall))
    cut = np.sort(eta)[::-1][min(int(np.floor(rates[top] * eta.size)), eta.size - 1)] if rates[top] > 0 else np.inf
    positive = {str(lab): float(np.mean(eta[inv == g] >= cut)) for g, lab in enumerate(labels)}
    return ParityCeiling(accuracy=float(overall[top]), ceiling=float(curve[best]), rate=float(rates[best]),
                         positive_rates=positive, n=int(eta.size))


def estimate_parity_ceiling(X: object, s: object, y: object, positive: object | None = None, folds: int = 5,
                            random_state: int = 0) -> ParityCeiling:
    """`parity_ceiling` from data: η = P(Y = 1 | X, S) out of fold (`folds`-fold stratified) from the better, by
    out-of-fold log loss, of a logistic regression and a gradient-boosting classifier (scikit-learn's) on (X, one-hot
    S); accuracies empirical on y. X: (n, d) numeric; s: (n,) groups; y: (n,) two classes; positive: the label taken as
    1 (default: the larger). The probe is `probe` in the result. Choosing r (and the probe) on the same rows makes the
    ceiling optimistic by the noise of those choices. ValueError for a y with other than two classes."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(X, dtype=np.float64)
    s = np.asarray(s)
    classes, y01 = np.unique(np.asarray(y), return_inverse=True)
    if classes.size != 2:
        raise ValueError(f"y has {classes.size} classes; the parity ceiling here is for binary labels")
    if positive is not None:
        if positive not in classes.tolist():
            raise ValueError(f"positive label {positive!r} is not one of y's labels {classes.tolist()}")
        y01 = (np.asarray(y) == positive).astype(int)
    groups = np.unique(s)
    features = np.column_stack([X, (s[:, None] == groups[None, :]).astype(np.float64)])
    cv = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    probes = {"logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
              "gradient boosting": HistGradientBoostingClassifier(random_state=random_state)}
    etas = {k: cross_val_predict(m, features, y01, cv=cv, method="predict_proba")[:, 1] for k, m in probes.items()}
    probe = min(etas, key=lambda k: log_loss(y01, np.clip(etas[k], 1e-12, 1 - 1e-12)))
    return parity_ceiling(etas[probe], s, y01).model_copy(update={"probe": probe})


def ceiling_record(X: object, s: object, y: object, random_state: int = 0) -> dict:
    """The report's `parity_ceiling` entry for held-out rows X (n, d), s, y (docs/method.md §3): accuracy_with_s and
    ceiling (`estimate_parity_ceiling`, 5 folds, or fewer when a class is rare), and a note; for a target with other than
    two classes, or too few rows of a class to fold, only the note saying why there is none."""
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    if classes.size != 2:
        return {"note": f"not estimated: the target has {classes.size} classes (the ceiling here is for binary targets)"}
    folds = int(min(5, counts.min()))
    if folds < 2:
        return {"note": "not estimated: a class of the target has fewer than 2 held-out rows"}
    pc = estimate_parity_ceiling(X, s, y, folds=folds, random_state=random_state)
    return {"accuracy_with_s": pc.accuracy, "ceiling": pc.ceiling, "probe": pc.probe,
            "note": "best accuracy of any classifier independent of S (demographic parity) against the best with S, "
                    f"from a {pc.probe} probe's out-of-fold P(Y | X, S) ({folds} folds) on the held-out rows: their "
                    "difference estimates what any S-free model gives up (a ceiling above the accuracy with S is "
                    "estimation noise: no measurable cost)"}
