"""One-dimensional optimal transport through quantile functions (docs/method.md §3).

A group's law on one coordinate is stored as a monotone piecewise-linear quantile function Q given by
knots (levels u_k non-decreasing from 0 to 1, values x_k non-decreasing). A value repeated in the data
(an atom) is a flat stretch of Q. The CDF F is the inverse of Q, and

    Q̄(u) = Σ_s p_s Q_s(u),     T_s(x) = Q̄(F_s(x)).

Two ways to build a group's knots:

- `build_knots` (exact, the empirical law): every observed value is a knot; the c tied points at cumulative
  position K of n occupy levels (K + ½)/n to (K + c − ½)/n. In-sample this is the sorted matching, but the map
  overfits: on held-out rows the group laws of T_s(X) differ at the scale of single observations (the
  empirical CDF's noise), and a flexible probe (gradient boosting) reads S from that.
- `build_smooth_knots` (the default of `BarycenterProjector`): a heavy atom, a value carrying at least one
  bin's mass 1/b, keeps its exact mass; a light value repeated on the coordinate's grid has its mass spread
  evenly over its cell; the light points between heavy atoms form an equal-mass histogram. The projector uses
  one b for every group, ⌈1.5 n_min^(1/3)⌉ (the histogram rate n^(1/3), n_min the smallest group), so the groups'
  estimation errors have the same shape and the held-out group laws of T_s(X) agree up to a bin's sampling
  error.

Ranks F_s(x) for a coordinate with discrete values (docs/method.md §3, "Ties"): the projector keeps the
coordinate's `Cells`: the values repeated in the fitted rows (all groups pooled) and the interval each owns.
A point on the grid gets the rank of a uniform point of its cell, u ~ U[F_s(cell lo), F_s(cell hi)]
(ties='random'; the middle with ties='mid'). For a heavy atom this is the distributional transform
u = F(x−) + V (F(x) − F(x−)), exactly U(0, 1) when X has the group's law F, so Q̄(u) has the barycenter's law
in every group even for binary and one-hot columns. A deterministic rank for a grid value would map each
group's held-out rows onto a group-specific set of values. A point off the grid gets the interpolated rank
F_s(x), so unseen points of a continuous coordinate get continuous ranks.

Knots come from raw samples (central fit, unit weights) or from weighted pseudo-points (merged federated
quantile sketches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Knots:
    """A monotone piecewise-linear quantile function: Q(levels[k]) = values[k]; both (k,), non-decreasing."""

    levels: np.ndarray
    values: np.ndarray


def auto_bins(n: float) -> int:
    """Histogram bins for groups of at least n rows (`build_smooth_knots`): ⌈1.5 n^(1/3)⌉, at least 2.

    The n^(1/3) rate balances a bin's sampling error against the histogram's bias; the factor 1.5 was chosen on
    held-out rows (a gradient-boosting probe per coordinate and a logistic probe on all; docs/method.md §3).
    """
    return max(2, int(np.ceil(1.5 * float(n) ** (1.0 / 3.0) - 1e-9)))


def _sorted_masses(values: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    if v.ndim != 1 or w.shape != v.shape or v.size == 0:
        raise ValueError(f"values and weights must be non-empty 1-D arrays of one length, got {v.shape} and {w.shape}")
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    order = np.argsort(v, kind="stable")
    return v[order], w[order]


def build_knots(values: np.ndarray, weights: np.ndarray | None = None) -> Knots:
    """Exact quantile-function knots of a (weighted) 1-D sample (n,); ties become flat stretches."""
    v, w = _sorted_masses(values, weights)
    uniq, start, counts = np.unique(v, return_index=True, return_counts=True)
    mass = np.add.reduceat(w, start)
    total = mass.sum()
    before = np.cumsum(mass) - mass
    half = 0.5 * mass / counts  # half the mean weight of the atom's points
    lo = (before + half) / total
    hi = (before + mass - half) / total
    multi = counts > 1
    # interleave (lo, hi) for atoms, a single knot for singletons
    n_knots = len(uniq) + int(multi.sum())
    levels = np.empty(n_knots)
    vals = np.empty(n_knots)
    pos = np.arange(len(uniq)) + np.concatenate([[0], np.cumsum(multi)[:-1]])
    levels[pos], vals[pos] = lo, uniq
    levels[pos[multi] + 1], vals[pos[multi] + 1] = hi[multi], uniq[multi]
    return Knots(levels, vals)


@dataclass(frozen=True)
class Cells:
    """A coordinate's discrete values and the interval each owns: grid, lo, hi (g,), lo ≤ grid ≤ hi.

    grid: the values repeated in the fitted rows; [lo, hi]: from the midpoint to the next smaller distinct
    observed value to the midpoint to the next larger one (mirrored at the extremes; zero width for a constant).
    """

    grid: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def discrete_cells(values: np.ndarray) -> Cells | None:
    """The `Cells` of a coordinate from its pooled values (n,); None when no value repeats (a continuous coordinate)."""
    uniq, counts = np.unique(np.asarray(values, dtype=np.float64), return_counts=True)
    rep = np.flatnonzero(counts > 1)
    if rep.size == 0:
        return None
    x, last = uniq[rep], uniq.size - 1
    with np.errstate(invalid="ignore"):
        lo = np.where(rep > 0, 0.5 * (uniq[np.maximum(rep - 1, 0)] + x), np.nan)
        hi = np.where(rep < last, 0.5 * (x + uniq[np.minimum(rep + 1, last)]), np.nan)
    lo = np.where(np.isnan(lo), np.where(np.isnan(hi), x, 2 * x - hi), lo)  # mirrored at the extremes
    hi = np.where(np.isnan(hi), 2 * x - lo, hi)
    return Cells(x, lo, hi)


def _histogram_knots(v: np.ndarray, w: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, cumulative mass) of an equal-mass histogram of a sorted weighted sample: its quantiles at k/bins."""
    total = w.sum()
    cum = np.cumsum(w)
    targets = total * np.arange(bins + 1) / bins
    idx = np.minimum(np.searchsorted(cum, targets * (1 - 1e-12), side="left"), v.size - 1)
    q = v[idx]
    q[0], q[-1] = v[0], v[-1]
    return q, targets


def _kernel_knots(v: np.ndarray, w: np.ndarray, grid: int = 128) -> tuple[np.ndarray, np.ndarray] | None:
    """(values, cumulative mass) of a Gaussian kernel estimate of a sorted weighted sample's CDF, its mass Σw; None
    when the sample has no spread (one value, or zero IQR and sd).

    Bandwidth: Silverman's rule h = 0.9 · min(sd, IQR / 1.34) · n^(−1/5), n = Σw: weights count rows (1 for a raw
    row; a merged sketch's pseudo-point carries the rows it stands for), so a sample and its weighted summary
    get the same bandwidth.

    The CDF is evaluated where the sample is: at its weighted quantiles at `grid` levels, each also at ±3h, and at
    min − 4h and max + 4h (the tails), linear in between. A uniform grid over [min − 4h, max + 4h] would put every
    point of the bulk in one grid step when one value lies far out (a missing-value code such as 999999 in a column
    of counts); the maps would then carry S in new rows (docs/method.md §3, "Smoothing").
    """
    from scipy.special import ndtr

    total = float(w.sum())
    mean = float(np.dot(w, v)) / total
    sd = float(np.sqrt(max(np.dot(w, (v - mean) ** 2) / total, 0.0)))
    cum = np.cumsum(w) / total
    q25, q75 = v[np.minimum(np.searchsorted(cum, [0.25, 0.75]), v.size - 1)]  # inverse-CDF quantiles
    spread = min(sd, (q75 - q25) / 1.34) if q75 > q25 else sd
    if not spread > 0:
        return None
    h = 0.9 * spread * total ** -0.2
    anchors = np.unique(v[np.minimum(np.searchsorted(cum, np.linspace(0.0, 1.0, grid)), v.size - 1)])
    xs = np.unique(np.concatenate([anchors - 3 * h, anchors, anchors + 3 * h, [v[0] - 4 * h, v[-1] + 4 * h]]))
    F = ndtr((xs[:, None] - v[None, :]) / h) @ w
    F = (F - F[0]) / (F[-1] - F[0]) * total
    return xs, np.maximum.accumulate(F)


def build_smooth_knots(values: np.ndarray, weights: np.ndarray | None = None, bins: int | None = None,
                       cells: Cells | None = None, smoothing: str = "histogram") -> Knots:
    """Smoothed quantile-function knots of a (weighted) 1-D sample (n,) (docs/method.md §3, "Smoothing").

    bins: b, default `auto_bins(n)` (a projector passes one b for every group: that of its smallest group).
    A value whose mass is at least total/b is a heavy atom, kept with its exact mass as a flat stretch of Q. The
    other points are light: a light value repeated on the coordinate's grid (`cells`) has its mass spread
    evenly over its cell (the continuous extension of a discrete law), then each run of light points between
    two heavy atoms becomes an equal-mass histogram with max(1, round(b · its mass share)) bins, linear
    between its weighted quantiles. Levels run from 0 to 1. smoothing="kernel": the light points' CDF is instead
    one Gaussian kernel estimate over all of them (`_kernel_knots`; smooth, no bin edges, tails beyond the
    sample), the histogram when they have no spread. Raises ValueError for empty input, negative weights or bins < 1.
    """
    v, w = _sorted_masses(values, weights)
    b = auto_bins(v.size) if bins is None else int(bins)
    if b < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    uniq, start, counts = np.unique(v, return_index=True, return_counts=True)
    mass = np.add.reduceat(w, start)
    total = mass.sum()
    heavy = mass >= total / b * (1 - 1e-12)
    heavy_x, heavy_m = uniq[heavy], mass[heavy]
    atom = np.repeat(np.arange(uniq.size), counts)  # each point's distinct value
    light = ~heavy[atom]
    lv, lw = v[light].copy(), w[light]
    if cells is not None and lv.size:
        a = atom[light]
        pos = np.searchsorted(cells.grid, lv)
        on = (pos < cells.grid.size) & (cells.grid[np.minimum(pos, cells.grid.size - 1)] == lv) & (counts[a] > 1)
        if on.any():
            rank = (np.arange(v.size) - start[atom])[light][on]  # position of the point inside its value's run
            c = counts[a[on]]
            p = pos[on]
            lv[on] = cells.lo[p] + (rank + 0.5) / c * (cells.hi[p] - cells.lo[p])
            order = np.argsort(lv, kind="stable")
            lv, lw = lv[order], lw[order]
    # Light knots: one equal-mass histogram per run of light points between heavy atoms, concatenated.
    light_x: list[np.ndarray] = []
    light_c: list[np.ndarray] = []
    kernel = _kernel_knots(lv, lw) if smoothing == "kernel" and lv.size > 1 else None
    if kernel is not None:
        light_x.append(kernel[0])
        light_c.append(kernel[1])
    elif lv.size:
        seg = np.searchsorted(heavy_x, lv)
        offset = 0.0
        for g in np.unique(seg):
            sv, sw = lv[seg == g], lw[seg == g]
            q, c = _histogram_knots(sv, sw, max(1, int(round(b * sw.sum() / total))))
            light_x.append(q)
            light_c.append(offset + c)
            offset += sw.sum()
    lx = np.concatenate(light_x) if light_x else np.zeros(0)
    lc = np.concatenate(light_c) if light_c else np.zeros(0)

    def light_cdf(x: float, side: str) -> float:
        """Cumulative light mass at x (left or right limit) of the piecewise-linear light CDF."""
        if lx.size == 0 or x < lx[0] or (side == "left" and x == lx[0]):
            return 0.0
        if x > lx[-1] or (side == "right" and x == lx[-1]):
            return float(lc[-1])
        lo = np.searchsorted(lx, x, side="left")
        hi = np.searchsorted(lx, x, side="right")
        if hi > lo:  # x is a knot (repeated: a flat stretch of Q)
            return float(lc[lo] if side == "left" else lc[hi - 1])
        frac = (x - lx[lo - 1]) / (lx[lo] - lx[lo - 1])
        return float(lc[lo - 1] + frac * (lc[lo] - lc[lo - 1]))

    heavy_cum = np.cumsum(heavy_m)
    levels, vals = [], []
    for x in np.unique(np.concatenate([lx, heavy_x])):
        k = np.searchsorted(heavy_x, x, side="left")
        h_left = float(heavy_cum[k - 1]) if k > 0 else 0.0
        h_right = h_left + (float(heavy_m[k]) if k < heavy_x.size and heavy_x[k] == x else 0.0)
        left = (h_left + light_cdf(x, "left")) / total
        right = (h_right + light_cdf(x, "right")) / total
        levels.append(left)
        vals.append(x)
        if right > left:
            levels.append(right)
            vals.append(x)
    levels_arr = np.clip(np.maximum.accumulate(np.asarray(levels)), 0.0, 1.0)
    return Knots(levels_arr, np.asarray(vals))


def pooled_ranks(values: np.ndarray, weights: np.ndarray | None, pooled: Knots, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """A group's sample (n,) as positions on the pooled law's level axis, r = F_pool(x): (r, weights), sorted.

    pooled: the pooled sample's knots (`pooled_reference`, every group). A value that is a flat stretch of the pooled
    quantile function (an atom) spreads the group's points at it evenly over the stretch, except a heavy atom of the
    group (mass ≥ total/bins), whose points all sit at the stretch's middle so that the smoothing keeps its mass exact.
    """
    v, w = _sorted_masses(values, weights)
    uniq, start, counts = np.unique(v, return_index=True, return_counts=True)
    mass = np.add.reduceat(w, start)
    total = mass.sum()
    lo_k = np.searchsorted(pooled.values, uniq, side="left")
    hi_k = np.searchsorted(pooled.values, uniq, side="right")
    at = np.interp(uniq, pooled.values, pooled.levels)
    stretch = hi_k - lo_k > 1
    lo = np.where(stretch, pooled.levels[np.minimum(lo_k, pooled.levels.size - 1)], at)
    hi = np.where(stretch, pooled.levels[np.maximum(hi_k - 1, 0)], at)
    atom = np.repeat(np.arange(uniq.size), counts)
    within = (np.cumsum(w) - np.repeat(np.cumsum(mass) - mass, counts) - 0.5 * w) / mass[atom]
    heavy = (mass >= total / bins * (1 - 1e-12))[atom]
    within = np.where(heavy, 0.5, within)
    r = lo[atom] + within * (hi - lo)[atom]
    order = np.argsort(r, kind="stable")
    return r[order], w[order]


def pooled_reference(values: np.ndarray, weights: np.ndarray | None = None, bins: int | None = None) -> Knots:
    """The pooled law's knots for `relative_smooth_knots`: the exact knots (`build_knots`) with every repeated value
    kept as its flat stretch and each run of single values between them thinned to an equal-mass polyline of about
    bins · (its mass share) segments (bins: default ⌈1.5 n^(1/3)⌉ of the pooled n). Linear between knots, so every new
    value between two fitted ones gets its own rank (no flat stretch of the CDF)."""
    exact = build_knots(values, weights)
    lv, vv = exact.levels, exact.values
    n = float(np.asarray(values).size if weights is None else np.sum(weights))
    b = auto_bins(n) if bins is None else int(bins)
    atom = np.zeros(lv.size, dtype=bool)
    same = vv[1:] == vv[:-1]
    atom[1:] |= same
    atom[:-1] |= same
    keep = atom.copy()
    keep[[0, -1]] = True
    idx = np.flatnonzero(~atom)
    if idx.size:
        runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
        for run in runs:
            share = lv[run[-1]] - lv[run[0]]
            segs = max(1, int(round(b * share)))
            keep[run[np.unique(np.round(np.linspace(0, run.size - 1, segs + 1)).astype(int))]] = True
    return Knots(lv[keep], vv[keep])


def relative_smooth_knots(values: np.ndarray, weights: np.ndarray | None, pooled: Knots, bins: int | None = None) -> Knots:
    """Smoothed quantile knots of a group's sample (n,), smoothed on the pooled law's level axis (docs/method.md §3).

    The group's law is smoothed as a law of r = F_pool(x) (`pooled_ranks`, then `build_smooth_knots` with no cells),
    then mapped back through the pooled quantile function: Q_s = Q_pool ∘ G_s⁻¹, exact as a piecewise-linear function
    (knots at G_s's and at Q_pool's breakpoints). On that axis every pooled atom is an interval as wide as its pooled
    mass and the group's density is the likelihood ratio dμ_s/dμ_pool, which is smooth where the raw values are not
    (values on a grid, atoms next to continuous stretches). Every pooled atom is a flat stretch of Q_s carrying a
    smoothed mass, so a new point at an atom gets a rank spread over that mass (`cdf`).
    """
    v = np.asarray(values, dtype=np.float64)
    b = auto_bins(v.size) if bins is None else int(bins)
    r, w = pooled_ranks(v, weights, pooled, b)
    G = build_smooth_knots(r, w, b, None, "histogram")
    # composite breakpoints: G's knots and the pooled knots' levels inside G's range, as (u, r) pairs sorted by r
    inner = pooled.levels[(pooled.levels > G.values[0]) & (pooled.levels < G.values[-1])]
    u = np.concatenate([G.levels, np.interp(inner, G.values, G.levels)])
    rr = np.concatenate([G.values, inner])
    order = np.lexsort((u, rr))
    u, rr = np.maximum.accumulate(u[order]), rr[order]
    return Knots(np.clip(u, 0.0, 1.0), np.interp(rr, pooled.levels, pooled.values))


def quantile(knots: Knots, u: np.ndarray) -> np.ndarray:
    """Q(u), clipped to the extreme knots outside their range."""
    return np.interp(u, knots.levels, knots.values)


def _interp_cdf(knots: Knots, x: np.ndarray) -> np.ndarray:
    return np.interp(x, knots.values, knots.levels)


def cdf(knots: Knots, x: np.ndarray, ties: str, rng: np.random.Generator | None, cells: Cells | None = None) -> np.ndarray:
    """Ranks F(x) in [0, 1] of the points x (n,) (docs/method.md §3, "Ties").

    cells: the coordinate's discrete values and their cells (`discrete_cells`). A point on the grid gets a rank
    uniform over [F(cell lo), F(cell hi)] (ties='random', drawn from rng) or that interval's middle (ties='mid').
    Off the grid, a point equal to a repeated knot value gets a rank in that flat stretch (the same rule), any
    other point its linearly interpolated rank, clipped to the extreme levels outside the knots.
    Raises ValueError for ties='random' without a generator.
    """
    lv, vv = knots.levels, knots.values
    x = np.asarray(x, dtype=np.float64)
    u_lo, u_hi = np.empty_like(x), np.empty_like(x)
    random = np.zeros(x.shape, dtype=bool)
    on_grid = np.zeros(x.shape, dtype=bool)
    if cells is not None:
        pos = np.clip(np.searchsorted(cells.grid, x), 0, cells.grid.size - 1)
        on_grid = cells.grid[pos] == x
        if on_grid.any():
            p = pos[on_grid]
            u_lo[on_grid], u_hi[on_grid] = _interp_cdf(knots, cells.lo[p]), _interp_cdf(knots, cells.hi[p])
            # a cell of zero width (a constant coordinate) or a point at a flat stretch's value: use the stretch
            lo_k = np.searchsorted(vv, x[on_grid], side="left")
            hi_k = np.searchsorted(vv, x[on_grid], side="right")
            zero = (cells.lo[p] == cells.hi[p]) & (hi_k > lo_k)
            u_lo[np.flatnonzero(on_grid)[zero]] = lv[lo_k[zero]]
            u_hi[np.flatnonzero(on_grid)[zero]] = lv[hi_k[zero] - 1]
            random |= on_grid
    lo_k = np.searchsorted(vv, x, side="left")
    hi_k = np.searchsorted(vv, x, side="right")
    flat = ~on_grid & (hi_k - lo_k > 1)
    if flat.any():
        u_lo[flat], u_hi[flat] = lv[lo_k[flat]], lv[hi_k[flat] - 1]
        random |= flat
    u = _interp_cdf(knots, x)
    if random.any():
        if ties == "random":
            if rng is None:
                raise ValueError("ties='random' needs a random generator")
            r = rng.uniform(size=int(random.sum()))
        else:
            r = np.full(int(random.sum()), 0.5)
        u[random] = u_lo[random] + r * (u_hi[random] - u_lo[random])
    return u


def barycenter_quantile(knots: Sequence[Knots], weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Q̄(u) = Σ_s p_s Q_s(u) (docs/method.md §3)."""
    out = np.zeros_like(np.asarray(u, dtype=np.float64))
    for kn, p in zip(knots, weights):
        out += p * quantile(kn, u)
    return out


def sketch_levels(n_levels: int) -> np.ndarray:
    """The fixed grid of levels k/(m − 1), k = 0..m − 1, of federated quantile sketches (docs/method.md §3).

    The end levels carry the group's minimum and maximum, so merged maps keep the tails.
    """
    return np.linspace(0.0, 1.0, n_levels)


def sketch_weights(n_levels: int, count: float) -> np.ndarray:
    """Mass carried by each sketch value when merging: trapezoid cells of the level grid, summing to `count`."""
    w = np.full(n_levels, 1.0 / (n_levels - 1))
    w[[0, -1]] *= 0.5
    return count * w
