"""Discrete and one-hot columns in the quantile projection, measured on held-out rows (docs/method.md §3, issue #12).

The table is `synthetic_fairness_frame`: text columns (gender, region, urban, union) one-hot encoded, integer and
one-decimal columns, a yes/no sensitive column. Given S its columns are independent, so a projection that equalises
each column's (each one-hot block's) law across S leaves no S in any single column, nor jointly.
"""

import numpy as np
import pytest
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from threadpoolctl import threadpool_limits

from unlearn_fl.feature import BarycenterProjector
from unlearn_fl.feature.federated import client_summary, server_fit
from unlearn_fl.feature.run import FeatureRunConfig, run_feature
from unlearn_fl.feature.tabular import load_feature_table, synthetic_fairness_frame


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("fair") / "fair.csv"
    synthetic_fairness_frame(10000, seed=0).to_csv(path, index=False)
    t = load_feature_table(str(path), "afam", "wage")
    tr, te = np.arange(7000), np.arange(7000, 10000)  # the rows are i.i.d.: fit on the first 7000, measure on the rest
    mean, sd = t.X[tr].mean(axis=0), t.X[tr].std(axis=0)
    return path, t, (t.X - mean) / sd, tr, te


def gbm_auc(Z, s):
    """Out-of-fold AUC of an independent gradient-boosting probe for S (5-fold, on the rows given)."""
    y = (np.asarray(s) == "yes").astype(int)
    model = HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=15, early_stopping=False, random_state=0)
    with threadpool_limits(limits=1):
        p = cross_val_predict(model, Z, y, cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")
    return roc_auc_score(y, p[:, 1])


def test_loader_records_one_hot_blocks(table):
    _, t, _, _, _ = table
    names = [[t.feature_names[c] for c in b] for b in t.blocks]
    assert names == [["gender_female", "gender_male"], ["region_north", "region_south", "region_west"],
                     ["urban_no", "urban_yes"], ["union_no", "union_yes"]]
    assert "afam_yes" not in t.feature_names and set(t.s) == {"no", "yes"}


def test_after_full_projection_no_single_column_predicts_s(table):
    """Held-out rows, t = 1: an independent gradient-boosting probe on any one column has AUC ≤ 0.55 (and all
    columns together ≤ 0.6), while before the projection some columns predict S (the test has power)."""
    _, t, X, tr, te = table
    before = [gbm_auc(X[te][:, [j]], t.s[te]) for j in range(X.shape[1])]
    assert max(before) > 0.6
    Z = BarycenterProjector(blocks=t.blocks).fit(X[tr], t.s[tr]).transform(X[te], t.s[te])
    after = {t.feature_names[j]: gbm_auc(Z[:, [j]], t.s[te]) for j in range(Z.shape[1])}
    assert max(after.values()) <= 0.55, after
    assert gbm_auc(Z, t.s[te]) <= 0.6


def test_exact_empirical_maps_leak_on_held_out_rows(table):
    """Why the maps are smoothed: with the exact empirical laws (bins=None) a fine-valued column ('score', one
    decimal) keeps S for held-out rows, because each group's empirical CDF errs at the scale of single values."""
    _, t, X, tr, te = table
    j, fit = t.feature_names.index("score"), tr[:1500]  # fewer fitted rows: coarser empirical laws
    exact = BarycenterProjector(bins=None, blocks=t.blocks).fit(X[fit], t.s[fit]).transform(X[te], t.s[te])
    smooth = BarycenterProjector(blocks=t.blocks).fit(X[fit], t.s[fit]).transform(X[te], t.s[te])
    a_exact, a_smooth = gbm_auc(exact[:, [j]], t.s[te]), gbm_auc(smooth[:, [j]], t.s[te])
    assert a_exact > 0.58 and a_smooth < 0.56, (a_exact, a_smooth)


def test_one_hot_block_is_mapped_jointly(table):
    """A block stays on the simplex of its one-hot vectors and its law is the same in both groups; mapped column by
    column instead, the block's columns together still predict S."""
    _, t, X, tr, te = table
    cols = t.blocks[1]  # region: three categories whose shares depend on S
    joint = BarycenterProjector(blocks=t.blocks).fit(X[tr], t.s[tr])
    Z = joint.transform(X[te], t.s[te])[:, cols]
    lo, hi = X[:, cols].min(axis=0), X[:, cols].max(axis=0)
    np.testing.assert_allclose(((Z - lo) / (hi - lo)).sum(axis=1), 1.0, atol=1e-9)
    # the block takes finitely many values (barycentric combinations of the vertices): compare their frequencies
    keys = [tuple(r) for r in np.round(Z, 9)]
    values = sorted(set(keys))
    table_ = np.array([[sum(1 for k, g in zip(keys, t.s[te]) if k == v and g == grp) for v in values] for grp in ("no", "yes")])
    assert stats.chi2_contingency(table_[:, table_.sum(axis=0) > 0]).pvalue > 0.001
    assert gbm_auc(Z, t.s[te]) <= 0.55
    per_column = BarycenterProjector().fit(X[tr], t.s[tr]).transform(X[te], t.s[te])[:, cols]
    assert gbm_auc(per_column, t.s[te]) > 0.6


def test_block_must_be_one_hot(table):
    _, t, X, tr, _ = table
    with pytest.raises(ValueError, match="not a one-hot block"):
        BarycenterProjector(blocks=[[0, 1]]).fit(X[tr], t.s[tr])  # educ and exper are not indicators
    with pytest.raises(ValueError, match="at least two distinct column indices"):
        BarycenterProjector(blocks=[[3]]).fit(X[tr], t.s[tr])


@pytest.mark.parametrize("smoothing", ["histogram", "kernel"])
def test_federated_sketches_carry_exact_block_counts(table, smoothing):
    """Sketches carry each block's category counts per group; merged, the block maps equal the central ones (with
    either smoothing of the other columns' group laws)."""
    _, t, X, tr, te = table
    parts = np.array_split(tr, 3)
    fed = server_fit([client_summary(X[p], t.s[p], "quantile", blocks=t.blocks) for p in parts], blocks=t.blocks,
                     smoothing=smoothing)
    central = BarycenterProjector(blocks=t.blocks, smoothing=smoothing).fit(X[tr], t.s[tr])
    for b in range(len(t.blocks)):
        np.testing.assert_array_equal(fed.block_probs_[b], central.block_probs_[b])
        np.testing.assert_allclose(fed.block_values_[b], central.block_values_[b], atol=1e-12)
    cols = [c for b in t.blocks for c in b]
    np.testing.assert_allclose(fed.transform(X[te], t.s[te])[:, cols], central.transform(X[te], t.s[te])[:, cols], atol=1e-9)


def null_auc_sd(n0, n1):
    """Standard deviation of an AUC estimate under no dependence (Mann–Whitney): √((n0 + n1 + 1) / (12 n0 n1))."""
    return float(np.sqrt((n0 + n1 + 1) / (12.0 * n0 * n1)))


@pytest.mark.parametrize("method", ["quantile", "gaussian"])
def test_pareto_curve_is_monotone_in_t(table, method):
    """The report's S-probe AUC does not rise with t by more than the probe's noise. Tolerance: 2 × the AUC's
    standard deviation under no dependence for the held-out group sizes (Mann–Whitney): a later point within it of
    an earlier one is not distinguishably higher. The logistic probe sees the groups' mean difference, which
    Z_t = (1 − t) X + t T_S(X) shrinks linearly in t up to the held-out residual of the maps."""
    path, t, _, _, _ = table
    report = run_feature(FeatureRunConfig(dataset=str(path), sensitive="afam", target="wage", method=method,
                                          grid=[0.0, 0.25, 0.5, 0.75, 1.0], probe_repeats=3))
    f = report.feature
    aucs = [p.s_auc for p in f.pareto]
    share = report.dataset["n_test"] / report.dataset["n_rows"]  # the held-out split is stratified by S
    tol = 2 * null_auc_sd(*(report.dataset["groups"][g] * share for g in ("no", "yes")))
    assert aucs[0] > 0.7 and abs(aucs[-1] - 0.5) < 0.06, aucs
    for i in range(1, len(aucs)):
        assert aucs[i] <= min(aucs[:i]) + tol, (aucs, tol)
    assert all(b < a for a, b in zip(aucs[::2], aucs[2::2]))  # two steps apart it strictly falls


def test_gaussian_maps_on_discrete_columns_are_flagged(table):
    """The gaussian (affine) maps send each group's discrete values to group-specific points: the logistic probe sees
    nothing left, a gradient-boosting probe sees S perfectly, and the report says the estimates disagree."""
    path, _, _, _, _ = table
    f = run_feature(FeatureRunConfig(dataset=str(path), sensitive="afam", target="wage", method="gaussian", grid=[0.0, 1.0],
                                     probe_repeats=1)).feature
    assert f.s_auc_after < 0.56 and f.s_auc_gbm_after > 0.95 and f.mi_after > f.mi_before
    assert f.estimates_agree is False and "gradient-boosting probe" in f.disagreement
