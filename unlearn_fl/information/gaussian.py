"""Gaussian mutual information between continuous features Z and a discrete group S.

docs/method.md §3 B (an evaluation estimator, independent of the training penalty):

    I_G(Z; S) = ½ log det Σ_Z − Σ_s p_s ½ log det Σ_{Z|s}      (nats)

exact when every Z | S=s is Gaussian and Z is treated as Gaussian overall (an
upper-bound-style proxy otherwise: the Gaussian maximises entropy for a given
covariance). With maximum-likelihood covariances the estimate is ≥ 0 (log det
is concave). Small groups bias log det downwards, which inflates the estimate;
`bias_correction=True` removes the Wishart expectation of that bias:
E log det Σ̂ = log det Σ + Σ_{i=1}^{d} ψ((n − i)/2) + d log(2/n).
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma

from unlearn_fl.feature.validation import check_labels, check_matrix


def _logdet(C: np.ndarray, ridge: float) -> float:
    sign, val = np.linalg.slogdet(C + ridge * np.eye(C.shape[0]))
    if sign <= 0:
        raise ValueError("covariance is not positive definite even after regularisation; raise reg")
    return float(val)


def _wishart_bias(n: int, d: int) -> float:
    """E[log det Σ̂_ML] − log det Σ for n Gaussian samples in d dimensions (mean estimated)."""
    i = np.arange(1, d + 1)
    return float(np.sum(digamma((n - i) / 2.0)) + d * np.log(2.0 / n))


def gaussian_mi(Z: object, s: object, reg: float = 1e-8, bias_correction: bool = True) -> float:
    """I_G(Z; S) in nats, floored at 0. reg: ridge as a fraction of the mean pooled variance.

    bias_correction needs every group to have more than d + 1 rows; smaller groups fall back to the
    uncorrected term for that group.
    """
    Z = check_matrix(Z)
    s = check_labels(s, Z.shape[0])
    n, d = Z.shape
    classes, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        return 0.0
    pooled = np.cov(Z, rowvar=False, bias=True).reshape(d, d)
    ridge = reg * max(float(np.trace(pooled)) / d, np.finfo(float).tiny)
    total = _logdet(pooled, ridge)
    if bias_correction and n > d + 1:
        total -= _wishart_bias(n, d)
    within = 0.0
    for g, n_g in enumerate(counts):
        if n_g < 2:
            raise ValueError(f"group {classes[g]!s} has {n_g} row(s); Gaussian MI needs at least 2 per group")
        C = np.cov(Z[inverse == g], rowvar=False, bias=True).reshape(d, d)
        term = _logdet(C, ridge)
        if bias_correction and n_g > d + 1:
            term -= _wishart_bias(int(n_g), d)
        within += (n_g / n) * term
    return max(0.0, 0.5 * (total - within))


GUARDED = ("Gaussian MI proxy, bias-corrected, on the pooled covariance's non-degenerate subspace with a 1e-3 ridge; "
           "exact only for Gaussian groups; on discrete columns it measures mean and covariance differences")


def gaussian_mi_guarded(Z: object, s: object, ridge: float = 1e-3, rank_tol: float = 1e-8) -> float:
    """The Gaussian MI proxy, guarded for binary, one-hot and constant columns (docs/method.md §3, "Checking"); nats, ≥ 0.

    Z (n, d), s (n,). The columns are standardised (constant ones dropped) and projected onto the eigenvectors of
    their pooled covariance with eigenvalue above rank_tol × the largest: a one-hot block's sum, a constant column
    or any exact linear constraint shared by all rows carries no information and would only add log(0) to both
    terms. Then `gaussian_mi` with a ridge of `ridge` (relative to the unit variances): a direction singular in one
    group only (a column constant within a group) contributes at most ½ log(1 / ridge) ≈ 3.5 nats instead of
    infinity; and the value is capped at the plug-in entropy H(S), which bounds I(Z; S) for a discrete S. Bias: the
    ridge lowers the estimate (it raises small within-group eigenvalues most); the Wishart
    correction of `gaussian_mi` removes the small-sample inflation. Exact only for Gaussian groups; on discrete
    columns it measures differences of means and covariances, not information. A second opinion to `knn_mi`.
    Raises ValueError for bad shapes or a group with fewer than 2 rows.
    """
    Z = check_matrix(Z)
    s = check_labels(s, Z.shape[0])
    sd = Z.std(axis=0)
    keep = sd > 1e-12 * np.maximum(1.0, np.abs(Z).max(axis=0))
    if not keep.any() or len(np.unique(s)) < 2:
        return 0.0
    X = (Z[:, keep] - Z[:, keep].mean(axis=0)) / sd[keep]
    w, V = np.linalg.eigh(np.cov(X, rowvar=False, bias=True).reshape(X.shape[1], X.shape[1]))
    basis = V[:, w > rank_tol * max(float(w.max()), np.finfo(float).tiny)]
    if basis.shape[1] == 0:
        return 0.0
    _, counts = np.unique(s, return_counts=True)
    p = counts / counts.sum()
    h_s = float(-(p * np.log(p)).sum())  # I(Z; S) ≤ H(S) for a discrete S: a larger Gaussian value is no information
    return min(gaussian_mi(X @ basis, s, reg=ridge), h_s)
