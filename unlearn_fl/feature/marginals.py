"""Exact federated quantile maps from the sites' per-group marginals (docs/method.md §3, "Exact federated maps").

The quantile maps act coordinate by coordinate, and a central fit reads the rows only through each group's values on
each coordinate, its marginal (`BarycenterProjector.fit_from_columns`), plus each one-hot block's category counts. A
site's marginal is its distinct values on the coordinate and how many rows of each group hold each value. Marginals
add up over sites exactly, so the server, and every site it sends the merged marginals to, fits the maps that a
central fit on the pooled rows would fit, bit for bit: the same knots, cells, bins, and, for smoothing="auto", the
same random splits (the split scores sort each group's values first).

Disclosure, the price of exactness: a marginal holds every value of every column of the site's rows, unlinked
across columns (no row can be put back together from it, but a column's values are all there). The quantile sketch
(`federated.quantile_sketch`, the default) sends 201 quantiles per group and column instead and gives maps equal to the
central ones only up to the sketch's resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unlearn_fl.feature.barycenter import BarycenterProjector
from unlearn_fl.feature.validation import check_labels, check_matrix, normalise_labels


@dataclass(frozen=True)
class MarginalSummary:
    """One site's (or the merged) per-group marginals on d coordinates.

    labels: the G groups (values of S); counts: (G,) rows per group; values: d arrays (k_j,), the sorted distinct
    values of coordinate j; value_counts: d arrays (G, k_j), the rows of each group at each value; block_counts: per
    one-hot block, the (G, K) count of each category per group (empty without blocks).
    """

    labels: list
    counts: np.ndarray
    values: list
    value_counts: list
    block_counts: list = field(default_factory=list)


def marginal_summary(Z: object, s: object, blocks: Sequence[Sequence[int]] | None = None) -> MarginalSummary:
    """Site side: each group's marginal on every coordinate of Z (n, d) by the labels s (n,), and each one-hot
    block's category counts (the active column of a row is its largest value in the block). ValueError for a bad
    matrix or labels."""
    Z = check_matrix(Z)
    s = check_labels(s, Z.shape[0])
    labels, inv = np.unique(s, return_inverse=True)
    G = len(labels)
    values, value_counts = [], []
    for j in range(Z.shape[1]):
        uniq, where = np.unique(Z[:, j], return_inverse=True)
        values.append(uniq)
        value_counts.append(np.stack([np.bincount(where[inv == g], minlength=uniq.size) for g in range(G)]).astype(np.float64))
    block_counts = []
    for cols in blocks or []:
        cat = np.argmax(Z[:, list(cols)], axis=1)
        block_counts.append(np.stack([np.bincount(cat[inv == g], minlength=len(cols)) for g in range(G)]).astype(np.float64))
    return MarginalSummary(normalise_labels(labels), np.bincount(inv, minlength=G).astype(np.float64), values,
                           value_counts, block_counts)


def merge_marginals(summaries: Sequence[MarginalSummary]) -> MarginalSummary:
    """Server side: the pooled marginals, the sum of the sites' (groups: the union of their labels, sorted).

    ValueError for no summaries, sites that disagree on the number of coordinates or one-hot blocks, non-integer
    counts, or labels of different types."""
    if not summaries:
        raise ValueError("no client summaries to merge; pass at least one")
    d, nb = len(summaries[0].values), len(summaries[0].block_counts)
    try:
        labels = sorted({lab for sm in summaries for lab in sm.labels})
    except TypeError:
        raise ValueError("group labels of different types across clients (e.g. 1 and '1'); encode S the same way everywhere") from None
    pos = {lab: i for i, lab in enumerate(labels)}
    counts = np.zeros(len(labels))
    values, value_counts = [], []
    for sm in summaries:
        if len(sm.values) != d or len(sm.value_counts) != d:
            raise ValueError(f"clients disagree on the number of features ({len(sm.values)} vs {d}); use the same columns everywhere")
        if len(sm.block_counts) != nb:
            raise ValueError(f"clients disagree on the one-hot blocks ({len(sm.block_counts)} vs {nb}); make every "
                             "summary with the server's blocks")
        for arr in [sm.counts, *sm.value_counts, *sm.block_counts]:
            a = np.asarray(arr, dtype=np.float64)
            if np.any(a < 0) or np.any(a != np.round(a)):
                raise ValueError("a marginal summary holds a negative or fractional count; counts are rows")
        rows = [pos[lab] for lab in sm.labels]
        counts[rows] += np.asarray(sm.counts, dtype=np.float64)
    for j in range(d):
        uniq = np.unique(np.concatenate([np.asarray(sm.values[j], dtype=np.float64) for sm in summaries]))
        total = np.zeros((len(labels), uniq.size))
        for sm in summaries:
            at = np.searchsorted(uniq, np.asarray(sm.values[j], dtype=np.float64))
            vc = np.asarray(sm.value_counts[j], dtype=np.float64).reshape(len(sm.labels), -1)
            for g, lab in enumerate(sm.labels):
                total[pos[lab], at] += vc[g]
        keep = total.sum(axis=0) > 0
        values.append(uniq[keep])
        value_counts.append(total[:, keep])
    blocks = []
    for b in range(nb):
        k = np.asarray(summaries[0].block_counts[b]).shape[-1]
        total = np.zeros((len(labels), k))
        for sm in summaries:
            bc = np.asarray(sm.block_counts[b], dtype=np.float64)
            if bc.shape[-1] != k:
                raise ValueError(f"clients disagree on one-hot block {b}'s size ({bc.shape[-1]} vs {k})")
            for g, lab in enumerate(sm.labels):
                total[pos[lab]] += bc.reshape(len(sm.labels), k)[g]
        blocks.append(total)
    for j in range(d):
        if not np.array_equal(value_counts[j].sum(axis=1), counts):
            raise ValueError(f"coordinate {j}'s value counts do not add up to the group counts; make every summary with "
                             "marginal_summary")
    return MarginalSummary(labels, counts, values, value_counts, blocks)


def fit_marginals(summaries: Sequence[MarginalSummary], **projector_kwargs: Any) -> BarycenterProjector:
    """Server side (and every site, from the merged summary): the quantile maps of the pooled marginals, equal to
    `BarycenterProjector(**projector_kwargs).fit(Z, s)` on the pooled rows. projector_kwargs as `BarycenterProjector`
    (method must be quantile); blocks, when set, take their category counts from the summaries and their columns'
    low and high values from the marginals."""
    merged = merge_marginals(summaries)
    proj = BarycenterProjector(**{"method": "quantile", **projector_kwargs})
    present = merged.counts > 0
    labels = [lab for lab, p in zip(merged.labels, present) if p]
    columns = [[np.repeat(merged.values[j], merged.value_counts[j][g].astype(np.int64)) for g in np.flatnonzero(present)]
               for j in range(len(merged.values))]
    blocks = proj._blocks(len(merged.values))
    if len(merged.block_counts) != len(blocks):
        raise ValueError(f"the summaries carry {len(merged.block_counts)} one-hot block count(s) for {len(blocks)} "
                         "block(s); make every site's summary with the server's blocks")
    block_values = [np.stack([[merged.values[c][0] for c in cols], [merged.values[c][-1] for c in cols]]) for cols in blocks]
    return proj.fit_from_columns(labels, columns, [bc[present] for bc in merged.block_counts], block_values)
