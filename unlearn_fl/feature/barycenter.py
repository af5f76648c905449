"""BarycenterProjector: remove a discrete attribute S from features by Wasserstein-2 barycenter projection.

docs/method.md §3: Z* = T_S(X) pushes every group law μ_s = Law(X | S=s) onto
the W2 barycenter ν̄ of the μ_s, so Law(Z* | S=s) = ν̄ for all s and I(Z*; S) = 0,
with the least distortion Σ_s p_s W2²(μ_s, ν̄) among S-independent outcomes.
Partial unlearning uses the McCann interpolation Z_t = (1 − t) X + t T_S(X).

One-hot blocks (quantile method, docs/method.md §3 "Categorical columns"): the K indicator columns of one
categorical variable C are mapped together. With the categories in a fixed order (most frequent first), a row of
group s and category k gets a rank u uniform over [F_s(k−), F_s(k)], and every group r reads its own category at
that rank, C_r(u); the block becomes Σ_r p_r e(C_r(u)), a point of the simplex spanned by the block's one-hot
vectors. This is the comonotone coupling of the groups' categorical laws: its law is the same in every group (u is
uniform in each), the block keeps Σ_k z_k = 1, and no per-coordinate shadow of the category is left to combine.

Two map families:
- "quantile": per-coordinate 1-D OT, T_s(x) = Q̄(F_s(x)), Q̄ = Σ_s p_s Q_s (coordinate-wise;
  equalises every marginal, not the joint dependence structure, so groups that differ
  only in their correlations stay distinguishable, and a one-hot block is mapped
  coordinate by coordinate; points beyond a group's observed range are mapped to the
  barycenter's extreme quantile). Group laws are smoothed (`bins`, see `quantile.py`) so
  that held-out rows, not only the fitted ones, lose S; discrete values get randomised
  ranks over their cell; a one-hot block (`blocks`) is mapped jointly, see below;
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
SMOOTHINGS = ("histogram", "kernel", "relative", "auto")
"""How a group's law is smoothed on a coordinate (`BarycenterProjector`, parameter smoothing)."""
AUTO_CANDIDATES = ("histogram", "relative", "kernel")
"""What smoothing="auto" chooses from, per coordinate, in this order of preference on equal scores."""
AUTO_SPLITS = 3
"""Random 2-fold splits whose scores smoothing="auto" sums: one split's choice between two close candidates flips with
the split (relative against kernel on the Boston table's housing-expense column: 123 against 122 in one split)."""


def _uniformity(u: np.ndarray) -> float:
    """How far ranks u (n,) in [0, 1] are from U(0, 1), by clustering: Moran's log-spacing statistic
    M = −Σ_{i=0..n} log((n + 1) D_i), D the n + 1 spacings of 0, the sorted u and 1, standardised as
    (M − (n + 1) γ) / √((n + 1)(π²/6 − 1)) (γ Euler's constant; about N(0, 1) for uniform ranks; Moran 1951,
    Biometrika 38:92). Many rows of one group on nearly the same rank, what a flexible probe reads S from, make
    tiny spacings and a large M. A χ² over √n bins, or the Cramér–von Mises distance, is blind at that scale: on
    the Boston mortgage table they chose the kernel for columns on a grid, where it leaves S (docs/method.md §3,
    "Values on a grid")."""
    n = u.size
    spacings = np.diff(np.concatenate([[0.0], np.sort(np.clip(u, 0.0, 1.0)), [1.0]]))
    m = -float(np.sum(np.log(np.maximum((n + 1) * spacings, 1e-12))))
    return (m - (n + 1) * np.euler_gamma) / np.sqrt((n + 1) * (np.pi ** 2 / 6 - 1))


class _Fixed:
    """A stand-in generator whose uniform draws are given: the same tie ranks for every candidate of a comparison."""

    def __init__(self, draws: np.ndarray) -> None:
        self._draws = draws

    def uniform(self, size: int) -> np.ndarray:
        """The first `size` given draws (`quantile.cdf` asks for one per tied point, fewer than the rows)."""
        return self._draws[:size]


class BarycenterProjector:
    """Scikit-learn style projector of features Z onto the W2 barycenter of their S-groups.

    Parameters
    ----------
    t: interpolation weight in [0, 1]; 0 is the identity, 1 the full barycenter projection.
    method: "quantile" (per-coordinate 1-D OT) or "gaussian" (affine Gaussian OT maps).
    min_group_size: smallest group accepted at fit; default 5 (quantile) or max(5, d + 1) (gaussian).
    weights: group weights p_s as {label: weight}; default the empirical shares.
    ties: "random" (uniform rank over a discrete value's cell, seeded by random_state) or "mid" (the cell's middle).
    bins: quantile method: "auto" (⌈1.5 n_min^(1/3)⌉ histogram bins for every group, n_min the smallest group's
        rows; heavy atoms exact; docs/method.md §3),
        an int (that many bins for every group) or None (the exact empirical law, which overfits held-out rows).
    random_state: seed for randomised tie ranks; transform is deterministic given it.
    blocks: quantile method: one-hot blocks, each a list of ≥ 2 column indices whose columns take two values and
        exactly one of which is at its larger value in every fitted row (ValueError otherwise); mapped jointly.
        Ignored by the gaussian method (its affine maps already act on all columns together).
    smoothing: quantile method with bins set, how each group's law is estimated on a coordinate (docs/method.md §3,
        "Smoothing"): "histogram" (equal-mass bins between heavy atoms, on the values), "kernel" (a Gaussian kernel
        CDF of the light points, Silverman's bandwidth; smaller errors on new rows of continuous columns),
        "relative" (equal-mass bins on the pooled law's level axis, `quantile.relative_smooth_knots`, for a
        coordinate with repeated values; for columns of values on a grid mixed with stray values, where a histogram
        of the values gives a repeated value the share of its narrow cell instead of its mass) or "auto" (per
        coordinate, one of histogram, relative and kernel, whichever leaves the groups' ranks of held-out rows closest
        to uniform over `AUTO_SPLITS` random 2-fold splits of the fitted rows, `smoothing_scores`). The choice made for each coordinate is
        `smoothing_` after fit.
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
        bins: int | Literal["auto"] | None = "auto",
        blocks: Sequence[Sequence[int]] | None = None,
        smoothing: Literal["histogram", "kernel", "relative", "auto"] = "histogram",
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
        self.bins = bins
        self.blocks = None if blocks is None else [[int(c) for c in b] for b in blocks]
        self.smoothing = smoothing
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
        if self.bins is not None and self.bins != "auto" and (isinstance(self.bins, bool) or not isinstance(self.bins, (int, np.integer)) or self.bins < 1):
            raise ValueError(f"bins must be 'auto', a positive integer or None, got {self.bins!r}")
        smoothing = getattr(self, "smoothing", "histogram")  # absent in a stored release: the default
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {', '.join(map(repr, SMOOTHINGS))}, got {smoothing!r}")
        if smoothing != "histogram" and (self.method != "quantile" or self.bins is None):
            raise ValueError(f"smoothing={smoothing!r} smooths the group laws of the quantile maps: it needs method='quantile' "
                             "and bins set ('auto' or an int); drop it for " + ("the gaussian method" if self.method != "quantile" else "bins=None"))
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
            blocks = self._blocks(Z.shape[1])
            values = [np.stack([Z[:, cols].min(axis=0), Z[:, cols].max(axis=0)]) for cols in blocks]
            block_counts = []
            for cols, v in zip(blocks, values):
                cat = self._categories(Z[:, cols], v, cols, strict=True)
                block_counts.append(np.stack([np.bincount(cat[inverse == g], minlength=len(cols)) for g in range(len(classes))]))
            columns = [[Z[inverse == g, j] for g in range(len(classes))] for j in range(Z.shape[1])]
            return self.fit_from_columns(classes, columns, block_counts, values)
        means = np.stack([Z[inverse == g].mean(axis=0) for g in range(len(classes))])
        covs = np.stack([np.cov(Z[inverse == g], rowvar=False, bias=True).reshape(Z.shape[1], Z.shape[1]) for g in range(len(classes))])
        return self.fit_from_moments(classes, counts, means, covs)

    def fit_from_columns(self, classes: Sequence[Hashable], columns: Sequence[Sequence[np.ndarray]],
                         block_counts: Sequence[np.ndarray] | None = None,
                         block_values: Sequence[np.ndarray] | None = None) -> BarycenterProjector:
        """Fit the quantile method from each group's values on each coordinate (docs/method.md §3).

        columns[j][g]: group g's values (n_g,) on coordinate j, in any order; every coordinate has the same n_g.
        The per-coordinate maps depend on the rows only through these marginals, so `fit(Z, s)` is this with the
        columns of Z, and a federation whose sites send their marginals (`feature.marginals`) fits the same maps.
        block_counts, block_values: as `fit_from_knots`. ValueError for a group below the minimum size or columns of
        unequal group sizes.
        """
        self._check_params()
        if self.method != "quantile":
            raise ValueError("fit_from_columns needs method='quantile'")
        classes = list(classes)
        counts = np.array([np.asarray(v).size for v in columns[0]], dtype=np.float64)
        if any(len(col) != len(classes) or [np.asarray(v).size for v in col] != counts.tolist() for col in columns):
            raise ValueError("every coordinate needs one array per group, with the same group sizes on every coordinate")
        check_group_sizes(classes, counts.astype(int), self._min_size(len(columns)))
        inverse = np.repeat(np.arange(len(classes)), counts.astype(int))
        b = self.n_bins(counts)
        smoothing = getattr(self, "smoothing", "histogram")
        rng = np.random.default_rng(None if self.random_state is None else [int(self.random_state), 7919])
        in_block = {c for cols in self._blocks(len(columns)) for c in cols}  # mapped jointly, not by these knots
        knots_by_col, cells, choices = [], [], []
        for j, col in enumerate(columns):
            col = [np.asarray(v, dtype=np.float64) for v in col]
            x = np.concatenate(col)
            choice = ("histogram" if j in in_block else
                      self.auto_choice(self.smoothing_scores(x, inverse, len(classes), rng)) if smoothing == "auto"
                      else smoothing)
            k, c, choice = self.coordinate_knots(col, None, b, quantile.discrete_cells(x), choice)
            knots_by_col.append(k)
            cells.append(c)
            choices.append(choice)
        knots = [[knots_by_col[j][g] for j in range(len(columns))] for g in range(len(classes))]
        self.fit_from_knots(classes, counts, knots, cells, block_counts, block_values)
        self.smoothing_ = choices
        return self

    def n_bins(self, counts: Sequence[float]) -> int | None:
        """Histogram bins b shared by every group (docs/method.md §3): `auto_bins` of the smallest group, the
        given int, or None (exact empirical knots)."""
        if self.bins is None:
            return None
        return quantile.auto_bins(float(np.min(counts))) if self.bins == "auto" else int(self.bins)

    def group_knots(self, values: np.ndarray, weights: np.ndarray | None, bins: int | None,
                    cells: quantile.Cells | None, smoothing: str | None = None) -> quantile.Knots:
        """Quantile knots of one group's values (n,) on one coordinate, smoothed on the values (docs/method.md §3).

        weights: masses of weighted pseudo-points (merged sketches) or None; bins: from `n_bins` (None: exact);
        cells: the coordinate's discrete values (`quantile.discrete_cells`) or None; smoothing: "histogram" or
        "kernel" (default: the projector's, "histogram" when that is "relative" or "auto").
        """
        if bins is None:
            return quantile.build_knots(values, weights)
        smoothing = smoothing or getattr(self, "smoothing", "histogram")
        return quantile.build_smooth_knots(values, weights, bins, cells, "kernel" if smoothing == "kernel" else "histogram")

    def coordinate_knots(self, values: Sequence[np.ndarray], weights: Sequence[np.ndarray] | None, bins: int | None,
                         cells: quantile.Cells | None, smoothing: str) -> tuple[list[quantile.Knots], quantile.Cells | None, str]:
        """Every group's knots on one coordinate: (knots per group, the cells to rank new points with, the smoothing
        used). values, weights: per group (n_g,) (weights None for raw rows). "relative" on a coordinate with repeated
        values (cells not None) smooths on the pooled law's levels (`quantile.relative_smooth_knots`); its repeated
        values are flat stretches of every group's knots, so no cells are kept. Without repeated values, or with
        bins None, "relative" is the histogram."""
        if smoothing == "relative" and cells is not None and bins is not None:
            pooled = quantile.pooled_reference(np.concatenate(values),
                                               None if weights is None else np.concatenate(weights))
            return ([quantile.relative_smooth_knots(v, None if weights is None else weights[g], pooled, bins)
                     for g, v in enumerate(values)], None, "relative")
        used = "kernel" if smoothing == "kernel" else "histogram"
        return ([self.group_knots(v, None if weights is None else weights[g], bins, cells, used)
                 for g, v in enumerate(values)], cells, used)

    def smoothing_scores(self, x: np.ndarray, inverse: np.ndarray, n_groups: int, rng: np.random.Generator) -> np.ndarray:
        """The split scores of smoothing="auto" on one coordinate x (n,) with group indices inverse (n,): (3,), for
        `AUTO_CANDIDATES`; the smallest leaves held-out ranks closest to U(0, 1) (docs/method.md §3, "Values on a grid").

        The rows are split in two halves, each group evenly; the maps fitted on one half rank the other half's rows
        (random tie ranks, one draw per row shared by the candidates); a score is the sum over groups, both
        directions and `AUTO_SPLITS` random splits of Moran's standardised log-spacing statistic of those ranks
        (`_uniformity`). Scores are additive over sites, so a federation sums its sites' (`federated.quantile_sketch`).
        On a coordinate without repeated values "relative" is the histogram and gets its score. A split with fewer than 2 rows of a group in a half scores zeros (no choice).
        The rows are first sorted by group and value, so the scores are a function of each group's values on the
        coordinate (its marginal) and rng: exact federated maps rebuilt from the sites' marginals make the same split.
        """
        scores = np.zeros(len(AUTO_CANDIDATES))
        order = np.lexsort((x, inverse))  # rows sorted by group, then value: the split depends on the groups' values only
        x, inverse = np.asarray(x)[order], np.asarray(inverse)[order]
        for _ in range(AUTO_SPLITS):
            halves = np.zeros(x.size, dtype=bool)
            for g in range(n_groups):
                rows = np.flatnonzero(inverse == g)
                halves[rng.permutation(rows)[: rows.size // 2]] = True
            if min(np.bincount(inverse[f], minlength=n_groups).min() for f in (halves, ~halves)) < 2:
                return np.zeros(len(AUTO_CANDIDATES))
            draws = rng.uniform(size=x.size)  # one tie draw per row, shared by the candidates (a paired comparison)
            split = np.zeros(len(AUTO_CANDIDATES))
            for c, choice in enumerate(AUTO_CANDIDATES):
                for fit_rows in (halves, ~halves):
                    xf, inv_f = x[fit_rows], inverse[fit_rows]
                    knots, cells, used = self.coordinate_knots([xf[inv_f == g] for g in range(n_groups)], None,
                                                               self.n_bins(np.bincount(inv_f, minlength=n_groups)),
                                                               quantile.discrete_cells(xf), choice)
                    if used != choice:  # relative without repeated values: the histogram
                        split[c] = split[AUTO_CANDIDATES.index(used)]
                        break
                    for g in range(n_groups):
                        rows = ~fit_rows & (inverse == g)
                        if rows.any():
                            u = quantile.cdf(knots[g], x[rows], "random", _Fixed(draws[rows]), cells)
                            split[c] += _uniformity(u)
            scores += split
        return scores

    @staticmethod
    def auto_choice(scores: np.ndarray) -> str:
        """The candidate of `AUTO_CANDIDATES` with the smallest split score (`smoothing_scores`, summed over sites);
        ties go to the earlier one, so all-zero scores give "histogram"."""
        return AUTO_CANDIDATES[int(np.argmin(np.asarray(scores)))]

    def _blocks(self, d: int) -> list[list[int]]:
        """The one-hot blocks (quantile method), checked against d columns; ValueError naming a bad block."""
        if self.method != "quantile" or not self.blocks:
            return []
        seen: set[int] = set()
        for cols in self.blocks:
            if len(cols) < 2 or any(not 0 <= c < d for c in cols) or seen & set(cols) or len(set(cols)) < len(cols):
                raise ValueError(f"one-hot block {cols} must list at least two distinct column indices in 0..{d - 1}, "
                                 "disjoint from the other blocks")
            seen |= set(cols)
        return self.blocks

    @staticmethod
    def _categories(B: np.ndarray, values: np.ndarray, cols: Sequence[int], strict: bool = False) -> np.ndarray:
        """Category (position in the block) of each row of the block's columns B (n, K); values: (2, K) low/high.

        strict: ValueError unless every column takes only its two values and exactly one is high in every row.
        """
        lo, hi = values
        span = hi - lo
        score = np.where(span > 0, (B - lo) / np.where(span > 0, span, 1.0), -np.inf)
        if strict:
            active = (B == hi) & (span > 0)
            two = np.all((B == lo) | (B == hi))
            if not two or np.any(active.sum(axis=1) != 1):
                bad = int(np.flatnonzero(active.sum(axis=1) != 1)[0]) if two else None
                raise ValueError(f"columns {list(cols)} are not a one-hot block"
                                 + (f" (row {bad} has {int(active[bad].sum())} active columns)" if bad is not None
                                    else " (a column takes more than two values)")
                                 + "; pass only the indicator columns of one categorical variable as a block")
        return np.argmax(score, axis=1)

    def fit_from_knots(self, classes: Sequence[Hashable], counts: Sequence[float], knots: Sequence[Sequence[quantile.Knots]],
                       cells: Sequence[quantile.Cells | None] | None = None, block_counts: Sequence[np.ndarray] | None = None,
                       block_values: Sequence[np.ndarray] | None = None) -> BarycenterProjector:
        """Fit the quantile method from per-group, per-coordinate quantile knots (central or merged sketches).

        cells: per coordinate, its discrete values and their cells, whose points get randomised ranks, or None
        (see `quantile.cdf`); default None for every coordinate. block_counts, block_values: per one-hot block of
        `blocks`, the (G, K) count of each category per group (groups in the order of `classes`) and the (2, K)
        low/high value of each of its columns; required when `blocks` is set.
        """
        self._check_params()
        if self.method != "quantile":
            raise ValueError("fit_from_knots needs method='quantile'")
        counts = np.asarray(counts, dtype=np.float64)
        self._set_groups(list(classes), counts, len(knots[0]))
        self.knots_ = [list(k) for k in knots]
        cells = [None] * len(knots[0]) if cells is None else list(cells)
        if len(cells) != len(knots[0]):
            raise ValueError(f"cells has {len(cells)} entries for {len(knots[0])} coordinates; give one per coordinate")
        # stored as plain (3, g) arrays [grid; lo; hi] (None: a continuous coordinate), so the state is arrays only
        self.cells_ = [None if c is None else np.stack([c.grid, c.lo, c.hi]) for c in cells]
        blocks = self._blocks(len(knots[0]))
        if blocks and (block_counts is None or block_values is None or len(block_counts) != len(blocks) or len(block_values) != len(blocks)):
            raise ValueError(f"{len(blocks)} one-hot block(s) need their per-group category counts and column values")
        self.block_values_, self.block_probs_, self.block_order_ = [], [], []
        for cols, cnt, val in zip(blocks, block_counts or [], block_values or []):
            cnt = np.asarray(cnt, dtype=np.float64).reshape(len(self.classes_), len(cols))
            self.block_values_.append(np.asarray(val, dtype=np.float64).reshape(2, len(cols)))
            self.block_probs_.append(cnt / np.maximum(cnt.sum(axis=1, keepdims=True), np.finfo(float).tiny))
            self.block_order_.append(np.argsort(-cnt.sum(axis=0), kind="stable"))
        return self

    def fit_from_moments(self, classes: Sequence[Hashable], counts: Sequence[float], means: np.ndarray, covs: np.ndarray) -> BarycenterProjector:
        """Fit the Gaussian method from per-group counts, means (G, d) and covariances (G, d, d).

        The barycenter is computed on the span of the pooled within-group covariance; in the directions where no
        group varies (exact linear constraints such as a one-hot block's sum) the maps are the identity.
        """
        self._check_params()
        if self.method != "gaussian":
            raise ValueError("fit_from_moments needs method='gaussian'")
        counts = np.asarray(counts, dtype=np.float64)
        means = np.asarray(means, dtype=np.float64)
        self._set_groups(list(classes), counts, means.shape[1])
        covs = np.asarray(covs, dtype=np.float64)
        covs = 0.5 * (covs + np.swapaxes(covs, 1, 2))
        # Directions in which no group varies (a one-hot block's sum, a constant column: the pooled within-group
        # covariance is singular there) are left as they are (identity map; the groups' means there are equal for
        # one-hot sums and constants); the barycenter is computed on the rest, where it is well conditioned.
        wv, V = np.linalg.eigh(np.einsum("s,sij->ij", self.weights_, covs))
        basis = V[:, wv > 1e-10 * max(float(wv.max()), np.finfo(float).tiny)]
        if basis.shape[1] == 0:
            raise ValueError("every group's features are constant; there is nothing to project")
        null = np.eye(covs.shape[1]) - basis @ basis.T
        sub = np.stack([gaussian_ot.regularise(basis.T @ C @ basis, self.reg) for C in covs])
        bary_sub, n_iter, ok = gaussian_ot.barycenter_cov(sub, self.weights_, self.tol, self.max_iter, self.reg)
        covs = np.stack([basis @ C @ basis.T for C in sub])
        bary = basis @ bary_sub @ basis.T
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
        self.maps_ = np.stack([basis @ gaussian_ot.ot_map_matrix(C, bary_sub, self.reg) @ basis.T + null for C in sub])
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

    def _cells(self, j: int) -> quantile.Cells | None:
        c = getattr(self, "cells_", None)
        return None if c is None or c[j] is None else quantile.Cells(*np.asarray(c[j], dtype=np.float64))

    def transport(self, Z: object, s: object) -> np.ndarray:
        """The full map T_S(Z) (t = 1), whatever self.t is."""
        Z, idx = self._prepare(Z, s)
        out = np.empty_like(Z)
        blocks = self._blocks(Z.shape[1])
        # one random stream per column and per block, so a column's tie-breaking does not depend on the others
        rngs = [None if self.ties != "random" else
                np.random.default_rng(None if self.random_state is None else [int(self.random_state), k])
                for k in range(Z.shape[1] + len(blocks))]
        for g in range(len(self.classes_)):
            rows = idx == g
            if not rows.any():
                continue
            if self.method == "gaussian":
                out[rows] = self.barycenter_mean_ + (Z[rows] - self.means_[g]) @ self.maps_[g].T
            else:
                in_block = {c for cols in blocks for c in cols}
                for j in range(Z.shape[1]):
                    if j in in_block:
                        continue
                    u = quantile.cdf(self.knots_[g][j], Z[rows, j], self.ties, rngs[j], self._cells(j))
                    out[rows, j] = quantile.barycenter_quantile([k[j] for k in self.knots_], self.weights_, u)
                for b, cols in enumerate(blocks):
                    out[np.ix_(rows, cols)] = self._block_map(b, g, Z[np.ix_(rows, cols)], rngs[Z.shape[1] + b])
        return out

    def _block_map(self, b: int, g: int, B: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Rows B (n, K) of group g on one-hot block b → Σ_r p_r e(C_r(u)) (the comonotone coupling, see the module doc)."""
        values, order = self.block_values_[b], self.block_order_[b]
        lo, hi = values
        cat = self._categories(B, values, self.blocks[b])
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        cum = np.cumsum(self.block_probs_[b][:, order], axis=1)  # (G, K), categories in `order`
        cum[:, -1] = 1.0
        pos = rank[cat]
        u_lo = np.where(pos > 0, cum[g][np.maximum(pos - 1, 0)], 0.0)
        u_hi = cum[g][pos]
        r = rng.uniform(size=len(pos)) if rng is not None else np.full(len(pos), 0.5)
        u = u_lo + r * (u_hi - u_lo)
        out = np.zeros_like(B)
        for r_g, w in enumerate(self.weights_):
            c = order[np.minimum(np.searchsorted(cum[r_g], u, side="right"), len(order) - 1)]
            out += w * (lo + (hi - lo) * (c[:, None] == np.arange(len(order))[None, :]))
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
