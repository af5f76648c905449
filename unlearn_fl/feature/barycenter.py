"""BarycenterProjector: remove a discrete attribute S from features by Wasserstein-2 barycenter projection.

docs/method.md §3: Z* = T_S(X) pushes every group law μ_s = Law(X | S=s) onto
the W2 barycenter ν̄ of the μ_s, so Law(Z* | S=s) = ν̄ for all s and I(Z*; S) = 0,
with the least distortion Σ_s p_s W2²(μ_s, ν̄) among S-independent outcomes.
Partial unlearning uses the McCann interpolation Z_t = (1 − t) X + t T_S(X).

Two map families:
- "quantile": per-coordinate 1-D OT, T_s(x) = Q̄(F_s(x)), Q̄ = Σ_s p_s Q_s (exact
  coordinate-wise; equalises every marginal, not the joint dependence structure, so
  groups that differ only in their correlations stay distinguishable; points beyond a
  group's observed range are mapped to the barycenter's extreme quantile);
- "gaussian": affine maps T_s(x) = m̄ + A_s (x − m_s) between Gaussians with the
  groups' means and covariances (exact for Gaussian groups, a two-moment
  "pseudo-barycenter" otherwise).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Literal

import numpy as np

from unlearn_fl.feature import gaussian_ot, quantile
from unlearn_fl.feature.validation import (
    check_group_sizes,
    check_labels,
    check_matrix,
    check_t,
    group_index,
    normalise_labels,
)

Method = Literal["quantile", "gaussian"]


class BarycenterProjector:
    """Scikit-learn style projector of features Z onto the W2 barycenter of their S-groups.

    Parameters
    ----------
    t: interpolation weight in [0, 1]; 0 is the identity, 1 the full barycenter projection.
    method: "quantile" (per-coordinate 1-D OT) or "gaussian" (affine Gaussian OT maps).
    min_group_size: smallest group accepted at fit; default 5 (quantile) or max(5, d + 1) (gaussian).
    weights: group weights p_s as {label: weight}; default the empirical shares.
    ties: "random" (uniform rank inside an atom, seeded by random_state) or "mid" (mid rank).
    random_state: seed for randomised tie ranks; transform is deterministic given it.
    tol, max_iter: stopping rule of the Gaussian barycenter fixed-point iteration.
    reg: relative eigenvalue floor for covariance roots (Gaussian method).
    """

    def __init__(
        self,
        t: float = 1.0,
        method: Method = "quantile",
        min_group_size: int | None = None,
        weights: Mapping[Hashable, float] | None = None,
        ties: Literal["random", "mid"] = "random",
        random_state: int | None = 0,
        tol: float = 1e-10,
        max_iter: int = 1000,
        reg: float = 1e-9,
    ) -> None:
        self.t = t
        self.method = method
        self.min_group_size = min_group_size
        self.weights = weights
        self.ties = ties
        self.random_state = random_state
        self.tol = tol
        self.max_iter = max_iter
        self.reg = reg

    # ---------------------------------------------------------------- checks
    def _check_params(self) -> None:
        check_t(self.t)
        if self.method not in ("quantile", "gaussian"):
            raise ValueError(f"method must be 'quantile' or 'gaussian', got {self.method!r}")
        if self.ties not in ("random", "mid"):
            raise ValueError(f"ties must be 'random' or 'mid', got {self.ties!r}")
        if self.min_group_size is not None and int(self.min_group_size) < 1:
            raise ValueError(f"min_group_size must be a positive integer, got {self.min_group_size}")

    def _min_size(self, d: int) -> int:
        if self.min_group_size is not None:
            return int(self.min_group_size)
        return 5 if self.method == "quantile" else max(5, d + 1)

    def _group_weights(self, classes: list, counts: np.ndarray) -> np.ndarray:
        if self.weights is None:
            return counts / counts.sum()
        missing = [c for c in classes if c not in self.weights]
        if missing:
            raise ValueError(f"weights has no entry for group(s) {missing}; give a weight for every group or pass None")
        w = np.array([float(self.weights[c]) for c in classes])
        if np.any(w < 0) or w.sum() <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        return w / w.sum()

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise ValueError("this BarycenterProjector is not fitted yet; call fit(Z, s) first")

    # ---------------------------------------------------------------- fitting
    def fit(self, Z: object, s: object) -> BarycenterProjector:
        """Estimate the group laws of Z by S and the maps onto their barycenter."""
        self._check_params()
        Z = check_matrix(Z)
        s = check_labels(s, Z.shape[0])
        classes, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
        classes = normalise_labels(classes)
        check_group_sizes(classes, counts, self._min_size(Z.shape[1]))
        if self.method == "quantile":
            knots = [[quantile.build_knots(Z[inverse == g, j]) for j in range(Z.shape[1])] for g in range(len(classes))]
            return self.fit_from_knots(classes, counts, knots)
        means = np.stack([Z[inverse == g].mean(axis=0) for g in range(len(classes))])
        covs = np.stack([np.cov(Z[inverse == g], rowvar=False, bias=True).reshape(Z.shape[1], Z.shape[1]) for g in range(len(classes))])
        return self.fit_from_moments(classes, counts, means, covs)

    def fit_from_knots(self, classes: Sequence[Hashable], counts: Sequence[float], knots: Sequence[Sequence[quantile.Knots]]) -> BarycenterProjector:
        """Fit the quantile method from per-group, per-coordinate quantile knots (central or merged sketches)."""
        self._check_params()
        if self.method != "quantile":
            raise ValueError("fit_from_knots needs method='quantile'")
        counts = np.asarray(counts, dtype=np.float64)
        self._set_groups(list(classes), counts, len(knots[0]))
        self.knots_ = [list(k) for k in knots]
        return self

    def fit_from_moments(self, classes: Sequence[Hashable], counts: Sequence[float], means: np.ndarray, covs: np.ndarray) -> BarycenterProjector:
        """Fit the Gaussian method from per-group counts, means (G, d) and covariances (G, d, d)."""
        self._check_params()
        if self.method != "gaussian":
            raise ValueError("fit_from_moments needs method='gaussian'")
        counts = np.asarray(counts, dtype=np.float64)
        means = np.asarray(means, dtype=np.float64)
        self._set_groups(list(classes), counts, means.shape[1])
        covs = np.stack([gaussian_ot.regularise(C, self.reg) for C in np.asarray(covs, dtype=np.float64)])
        bary, n_iter, ok = gaussian_ot.barycenter_cov(covs, self.weights_, self.tol, self.max_iter, self.reg)
        if not ok:
            warnings.warn(
                f"Gaussian barycenter iteration did not reach tol={self.tol} in {self.max_iter} steps; "
                "raise max_iter or loosen tol",
                RuntimeWarning,
                stacklevel=2,
            )
        self.means_, self.covs_ = means, covs
        self.barycenter_mean_ = self.weights_ @ means
        self.barycenter_cov_ = bary
        self.n_iter_, self.converged_ = n_iter, ok
        self.maps_ = np.stack([gaussian_ot.ot_map_matrix(C, bary, self.reg) for C in covs])
        return self

    def _set_groups(self, classes: list, counts: np.ndarray, d: int) -> None:
        check_group_sizes(classes, counts, self._min_size(d))
        self.classes_ = normalise_labels(classes)
        self.counts_ = counts
        self.weights_ = self._group_weights(self.classes_, counts)
        self.n_features_in_ = d

    # ---------------------------------------------------------------- mapping
    def _prepare(self, Z: object, s: object) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        Z = check_matrix(Z)
        if Z.shape[1] != self.n_features_in_:
            raise ValueError(
                f"shape mismatch: Z has {Z.shape[1]} features but the projector was fitted on {self.n_features_in_}; "
                "pass the same columns in the same order"
            )
        return Z, group_index(check_labels(s, Z.shape[0]), self.classes_)

    def transport(self, Z: object, s: object) -> np.ndarray:
        """The full map T_S(Z) (t = 1), whatever self.t is."""
        Z, idx = self._prepare(Z, s)
        out = np.empty_like(Z)
        rng = np.random.default_rng(self.random_state) if self.ties == "random" else None
        for g in range(len(self.classes_)):
            rows = idx == g
            if not rows.any():
                continue
            if self.method == "gaussian":
                out[rows] = self.barycenter_mean_ + (Z[rows] - self.means_[g]) @ self.maps_[g].T
            else:
                for j in range(Z.shape[1]):
                    u = quantile.cdf(self.knots_[g][j], Z[rows, j], self.ties, rng)
                    out[rows, j] = quantile.barycenter_quantile([k[j] for k in self.knots_], self.weights_, u)
        return out

    def transform(self, Z: object, s: object, t: float | None = None) -> np.ndarray:
        """Z_t = (1 − t) Z + t T_S(Z) (docs/method.md §3); t defaults to self.t. t = 0 returns Z unchanged."""
        t = check_t(self.t if t is None else t)
        Zc, _ = self._prepare(Z, s)  # validates shapes and groups even for t = 0
        if t == 0.0:
            return Zc.copy()
        T = self.transport(Zc, s)
        return T if t == 1.0 else (1.0 - t) * Zc + t * T

    def fit_transform(self, Z: object, s: object) -> np.ndarray:
        """fit(Z, s) then transform(Z, s)."""
        return self.fit(Z, s).transform(Z, s)

    def __repr__(self) -> str:
        return f"BarycenterProjector(t={self.t}, method={self.method!r})"
