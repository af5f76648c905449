"""One-dimensional optimal transport through quantile functions (docs/method.md §3).

A group's law on one coordinate is stored as a piecewise-linear quantile
function Q given by knots (levels u_k strictly increasing, values x_k
non-decreasing). An atom (a repeated value) becomes a flat stretch of Q: the
c tied points at cumulative position K of n occupy levels from (K + ½)/n to
(K + c − ½)/n. The matching CDF F is the inverse of Q; a point sitting on an
atom gets a randomised (or mid) rank within the atom's flat stretch, a point
between knots a linearly interpolated rank, so unseen points get continuous
ranks. Then

    Q̄(u) = Σ_s p_s Q_s(u),     T_s(x) = Q̄(F_s(x)).

Knots come either from raw samples (central fit, unit weights) or from
weighted pseudo-points (merged federated quantile sketches, §2.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Knots:
    """A monotone piecewise-linear quantile function: Q(levels[k]) = values[k]."""

    levels: np.ndarray
    values: np.ndarray


def build_knots(values: np.ndarray, weights: np.ndarray | None = None) -> Knots:
    """Quantile-function knots of a (weighted) 1-D sample; ties become flat stretches."""
    v = np.asarray(values, dtype=np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
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


def quantile(knots: Knots, u: np.ndarray) -> np.ndarray:
    """Q(u), clipped to the extreme knots outside their range."""
    return np.interp(u, knots.levels, knots.values)


def cdf(knots: Knots, x: np.ndarray, ties: str, rng: np.random.Generator | None) -> np.ndarray:
    """Continuous rank F(x) in (0, 1): inverse of Q, randomised ('random') or mid ('mid') within atoms."""
    lv, vv = knots.levels, knots.values
    k = len(vv)
    x = np.asarray(x, dtype=np.float64)
    left = np.searchsorted(vv, x, side="left")
    right = np.searchsorted(vv, x, side="right")
    u = np.empty_like(x)
    on_knot = right > left
    if on_knot.any():
        u_lo, u_hi = lv[left[on_knot]], lv[right[on_knot] - 1]
        if ties == "random":
            if rng is None:
                raise ValueError("ties='random' needs a random generator")
            r = rng.uniform(size=u_lo.shape)
        else:
            r = np.full(u_lo.shape, 0.5)
        u[on_knot] = u_lo + r * (u_hi - u_lo)
    between = ~on_knot & (left > 0) & (left < k)
    if between.any():
        j = left[between]
        frac = (x[between] - vv[j - 1]) / (vv[j] - vv[j - 1])
        u[between] = lv[j - 1] + frac * (lv[j] - lv[j - 1])
    u[~on_knot & (left == 0)] = lv[0]
    u[~on_knot & (left == k)] = lv[-1]
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
