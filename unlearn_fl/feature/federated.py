"""Federated barycenter projection: clients send per-group summaries, never rows (docs/method.md §3).

Protocol (one round, no raw data leaves a client):
1. every client calls `client_summary(Z_local, s_local, method)` and sends the result;
2. the server calls `server_fit(summaries, method, ...)`: it merges the summaries into the
   group laws, computes the barycenter and the maps, and broadcasts the fitted projector
   (per-group means/covariances or quantile knots: aggregate statistics only);
3. every client applies `projector.transform(Z_local, s_local)` locally.

Gaussian summaries (counts, sums, outer-product sums) are additive, so the merged maps equal the
centrally fitted ones up to float error. Quantile sketches (a group's quantiles on a fixed grid of
m levels from 0 (minimum) to 1 (maximum), plus its count) are merged as weighted pseudo-points (each
sketch value carries its level cell's share of n_c), which approximates the pooled quantile function
to within the grid resolution.
Caveat: a sketch with m ≥ a client's group size essentially reveals that group's values
on each coordinate; use m well below the local group sizes when that matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from unlearn_fl.feature import quantile
from unlearn_fl.feature.barycenter import BarycenterProjector
from unlearn_fl.feature.validation import check_labels, check_matrix, normalise_labels


@dataclass(frozen=True)
class GaussianSummary:
    """One client's per-group moments: counts (G,), sums (G, d), outer-product sums (G, d, d)."""

    labels: list
    counts: np.ndarray
    sums: np.ndarray
    outer: np.ndarray


@dataclass(frozen=True)
class QuantileSketch:
    """One client's per-group quantile sketch: counts (G,), quantiles (G, m, d) at `levels` (m,)."""

    labels: list
    counts: np.ndarray
    levels: np.ndarray
    quantiles: np.ndarray


def _groups(Z: object, s: object) -> tuple[np.ndarray, list, np.ndarray]:
    Z = check_matrix(Z)
    s = check_labels(s, Z.shape[0])
    labels, inverse = np.unique(s, return_inverse=True)
    return Z, normalise_labels(labels), inverse


def gaussian_summary(Z: object, s: object) -> GaussianSummary:
    """Client side: count, Σ z and Σ z zᵀ per group of the local rows."""
    Z, labels, inv = _groups(Z, s)
    counts = np.bincount(inv, minlength=len(labels)).astype(np.float64)
    sums = np.stack([Z[inv == g].sum(axis=0) for g in range(len(labels))])
    outer = np.stack([Z[inv == g].T @ Z[inv == g] for g in range(len(labels))])
    return GaussianSummary(labels, counts, sums, outer)


def quantile_sketch(Z: object, s: object, n_levels: int = 201) -> QuantileSketch:
    """Client side: per group and coordinate, the local quantile function at levels k/(m − 1), plus counts."""
    if n_levels < 2:
        raise ValueError(f"n_levels must be at least 2, got {n_levels}")
    Z, labels, inv = _groups(Z, s)
    levels = quantile.sketch_levels(n_levels)
    counts = np.bincount(inv, minlength=len(labels)).astype(np.float64)
    q = np.empty((len(labels), n_levels, Z.shape[1]))
    for g in range(len(labels)):
        for j in range(Z.shape[1]):
            q[g, :, j] = quantile.quantile(quantile.build_knots(Z[inv == g, j]), levels)
    return QuantileSketch(labels, counts, levels, q)


def _all_labels(summaries: Sequence[GaussianSummary | QuantileSketch]) -> list:
    if not summaries:
        raise ValueError("no client summaries to merge; pass at least one")
    seen: dict = {}
    for summ in summaries:
        for lab in summ.labels:
            seen.setdefault(lab, None)
    try:
        return sorted(seen)
    except TypeError:
        raise ValueError("group labels of different types across clients (e.g. 1 and '1'); encode S the same way everywhere") from None


def merge_gaussian(summaries: Sequence[GaussianSummary], **projector_kwargs: Any) -> BarycenterProjector:
    """Server side: pooled means and (ML) covariances per group → Gaussian barycenter maps."""
    labels = _all_labels(summaries)
    d = summaries[0].sums.shape[1]
    n = np.zeros(len(labels))
    sums = np.zeros((len(labels), d))
    outer = np.zeros((len(labels), d, d))
    pos = {lab: i for i, lab in enumerate(labels)}
    for summ in summaries:
        if summ.sums.shape[1] != d:
            raise ValueError(f"clients disagree on the number of features ({summ.sums.shape[1]} vs {d}); use the same columns everywhere")
        for g, lab in enumerate(summ.labels):
            n[pos[lab]] += summ.counts[g]
            sums[pos[lab]] += summ.sums[g]
            outer[pos[lab]] += summ.outer[g]
    means = sums / n[:, None]
    covs = outer / n[:, None, None] - np.einsum("gi,gj->gij", means, means)
    return BarycenterProjector(method="gaussian", **projector_kwargs).fit_from_moments(labels, n, means, covs)


def merge_quantile(sketches: Sequence[QuantileSketch], **projector_kwargs: Any) -> BarycenterProjector:
    """Server side: per group and coordinate, pooled quantile knots from weighted sketch values."""
    labels = _all_labels(sketches)
    d = sketches[0].quantiles.shape[2]
    pos = {lab: i for i, lab in enumerate(labels)}
    vals: list[list[np.ndarray]] = [[] for _ in labels]
    wts: list[list[np.ndarray]] = [[] for _ in labels]
    n = np.zeros(len(labels))
    for sk in sketches:
        if sk.quantiles.shape[2] != d:
            raise ValueError(f"clients disagree on the number of features ({sk.quantiles.shape[2]} vs {d}); use the same columns everywhere")
        m = len(sk.levels)
        for g, lab in enumerate(sk.labels):
            if sk.counts[g] <= 0:
                continue
            vals[pos[lab]].append(sk.quantiles[g])
            wts[pos[lab]].append(quantile.sketch_weights(m, sk.counts[g]))
            n[pos[lab]] += sk.counts[g]
    knots = []
    for g in range(len(labels)):
        v = np.concatenate(vals[g], axis=0)
        w = np.concatenate(wts[g])
        knots.append([quantile.build_knots(v[:, j], w) for j in range(d)])
    return BarycenterProjector(method="quantile", **projector_kwargs).fit_from_knots(labels, n, knots)


def client_summary(Z: object, s: object, method: Literal["quantile", "gaussian"] = "quantile", n_levels: int = 201) -> GaussianSummary | QuantileSketch:
    """Client side, either method: the only object a client sends."""
    if method == "gaussian":
        return gaussian_summary(Z, s)
    if method == "quantile":
        return quantile_sketch(Z, s, n_levels)
    raise ValueError(f"method must be 'quantile' or 'gaussian', got {method!r}")


def server_fit(summaries: Sequence[GaussianSummary | QuantileSketch], **projector_kwargs: Any) -> BarycenterProjector:
    """Server side, either method (chosen by the summaries' type): merge and fit the projector."""
    if summaries and all(isinstance(x, GaussianSummary) for x in summaries):
        return merge_gaussian(summaries, **projector_kwargs)
    if summaries and all(isinstance(x, QuantileSketch) for x in summaries):
        return merge_quantile(summaries, **projector_kwargs)
    raise ValueError("summaries must be a non-empty list of GaussianSummary or of QuantileSketch, not a mix")
