"""Smoothing the group laws of the quantile maps: what the fitted maps leave in new rows (docs/method.md §3).

The maps are fitted on a sample, so on new rows each group carries its own estimation error, which a probe reads
S from. `smoothing="kernel"` (a Gaussian kernel CDF, Silverman's bandwidth) leaves less of it than the default
equal-mass histograms (`python -m benchmarks.feature_sample_size`); heavy atoms are handled the same way by both.
"""

import numpy as np
import pytest
from scipy.stats import norm

from unlearn_fl.feature import BarycenterProjector
from unlearn_fl.feature.quantile import build_smooth_knots, quantile
from unlearn_fl.information.knn import knn_mi
from unlearn_fl.information.probe import probe_auc


def test_the_kernel_cdf_of_a_normal_sample_is_close_to_the_normal_cdf():
    x = np.random.default_rng(0).standard_normal(2000)
    k = build_smooth_knots(x, None, 8, None, "kernel")
    u = np.linspace(0.02, 0.98, 49)
    assert np.max(np.abs(quantile(k, u) - norm.ppf(u))) < 0.12  # quantiles to a tenth of a standard deviation
    assert k.levels[0] == 0 and k.levels[-1] == 1 and np.all(np.diff(k.levels) >= 0) and np.all(np.diff(k.values) >= 0)
    assert k.values[0] < x.min() and k.values[-1] > x.max()  # tails beyond the sample, unlike the histogram's


def test_weights_count_as_repeated_rows():
    x = np.random.default_rng(1).standard_normal(50)
    doubled = build_smooth_knots(np.r_[x, x], None, 6, None, "kernel")
    weighted = build_smooth_knots(x, np.full(50, 2.0), 6, None, "kernel")
    assert np.allclose(doubled.levels, weighted.levels) and np.allclose(doubled.values, weighted.values)


def test_heavy_atoms_are_kept_exactly_by_both_smoothings():
    rng = np.random.default_rng(2)
    x = np.where(rng.random(300) < 0.4, 0.0, rng.standard_normal(300))  # 40% at one value: a heavy atom
    for smoothing in ("histogram", "kernel"):
        k = build_smooth_knots(x, None, 8, None, smoothing)
        at = k.values == 0.0
        assert k.levels[at].max() - k.levels[at].min() == pytest.approx(np.mean(x == 0.0), abs=1e-9)
    s = rng.integers(0, 2, 300)
    with pytest.raises(ValueError, match="smoothing must be"):
        BarycenterProjector(smoothing="spline").fit(x[:, None], s)
    for ignored in (dict(method="gaussian"), dict(bins=None)):  # where it would change nothing, it is refused
        with pytest.raises(ValueError, match="needs method='quantile' and bins set"):
            BarycenterProjector(smoothing="kernel", **ignored).fit(x[:, None], s)


def test_kernel_smoothing_leaves_less_of_s_in_new_rows():
    """S independent of X: before the maps no probe finds anything, so what it finds after was put there by the
    estimated maps. Fitted on 400 rows, read on 3,000 new ones, over 3 seeds."""
    rng = np.random.default_rng(3)
    mix = rng.standard_normal((6, 6)) / np.sqrt(6)
    found = {"histogram": [], "kernel": []}
    for seed in range(3):
        r = np.random.default_rng(seed)
        Xtr, s_tr = r.standard_normal((400, 6)) @ mix, r.integers(0, 2, 400)
        Xte, s_te = r.standard_normal((3000, 6)) @ mix, r.integers(0, 2, 3000)
        for smoothing in found:
            Z = BarycenterProjector(random_state=seed, smoothing=smoothing).fit(Xtr, s_tr).transform(Xte, s_te)
            found[smoothing].append((probe_auc(Z, s_te, "logistic", 5, 1, seed), knn_mi(Z, s_te, folds=5, random_state=seed).auc))
    hist, kern = np.mean(found["histogram"], axis=0), np.mean(found["kernel"], axis=0)
    assert kern[1] < hist[1] - 0.03, (hist, kern)  # gradient boosting
    assert kern[0] <= hist[0] + 0.01, (hist, kern)  # logistic
    # In-sample the kernel maps still equalise the groups' marginals up to the smoothing.
    P = BarycenterProjector(smoothing="kernel").fit(Xtr, s_tr)
    Z = P.transform(Xtr, s_tr)
    assert probe_auc(Z, s_tr, "logistic", 5, 1, 0) < 0.56


def test_a_release_stores_the_smoothing_only_when_it_is_not_the_default():
    """Releases stored before the setting existed keep their digests; a loaded projector refits as it was set."""
    from unlearn_fl.feature.release import _projector_state

    rng = np.random.default_rng(4)
    X, s = rng.standard_normal((60, 2)), rng.integers(0, 2, 60)
    assert "smoothing" not in _projector_state(BarycenterProjector().fit(X, s))
    assert _projector_state(BarycenterProjector(smoothing="kernel").fit(X, s))["smoothing"] == "kernel"
    loaded = BarycenterProjector.__new__(BarycenterProjector)
    loaded.__dict__.update(_projector_state(BarycenterProjector().fit(X, s)))
    assert np.array_equal(loaded.fit(X, s).transform(X, s), BarycenterProjector().fit(X, s).transform(X, s))


def test_a_run_config_records_the_smoothing_unless_it_is_the_histogram():
    """`FeatureRunConfig.smoothing`: the histogram is left out of what is digested, so histogram runs keep the request
    ids (and recorded configs) they had before the setting existed (the ids below were computed by the code before
    it); the quantile default, auto, and kernel runs record the setting and get their own ids; the gaussian maps
    default to the histogram (they have none to smooth) and refuse any other."""
    from pydantic import ValidationError

    from unlearn_fl.feature.run import FeatureRunConfig

    assert FeatureRunConfig(smoothing="histogram").digest() == "bf2243a7a27c"
    assert "smoothing" not in FeatureRunConfig(smoothing="histogram").recorded()
    assert FeatureRunConfig(method="gaussian").digest() == "207d7d256805"
    assert FeatureRunConfig(method="gaussian").smoothing == "histogram"
    default = FeatureRunConfig()
    assert default.smoothing == "auto" and default.recorded()["smoothing"] == "auto"
    kernel = FeatureRunConfig(smoothing="kernel")
    assert len({default.digest(), kernel.digest(), "bf2243a7a27c"}) == 3 and kernel.recorded()["smoothing"] == "kernel"
    for smoothing in ("kernel", "relative", "auto"):
        with pytest.raises(ValidationError, match="use method='quantile'"):
            FeatureRunConfig(method="gaussian", smoothing=smoothing)


def test_sites_rebuild_the_servers_kernel_maps(tmp_path):
    """Federated: every site rebuilds the maps from the merged sketches (`merged_maps`, as `local_apply` does) with the
    server's smoothing, so their maps are the server's, array for array; the kernel maps differ from the histogram's."""
    from unlearn_fl.data import DataSpec
    from unlearn_fl.engine.feature_exchange import local_apply, local_rows, local_summary, merged_maps, summary_from_json
    from unlearn_fl.feature.federated import server_fit
    from unlearn_fl.feature.tabular import write_diabetes_csv
    from sklearn.linear_model import LogisticRegression

    spec = DataSpec(dataset=str(write_diabetes_csv(tmp_path / "d.csv")), target="progression_high", num_clients=3)
    summaries = [local_summary(spec, c, "sex", "quantile") for c in range(3)]
    server = server_fit([summary_from_json(x) for x in summaries], random_state=0, smoothing="kernel")
    site = merged_maps(spec, "sex", summaries, 0, "kernel")
    assert site.smoothing == server.smoothing == "kernel"
    for kg_site, kg_server in zip(site.knots_, server.knots_):
        for a, b in zip(kg_site, kg_server):
            assert np.array_equal(a.levels, b.levels) and np.array_equal(a.values, b.values)
    Z, s, y = local_rows(spec, 1, "sex")
    Zh, sh, yh = local_rows(spec, 1, "sex", "holdout")
    assert np.array_equal(site.transform(Z, s), server.transform(Z, s))
    histogram = merged_maps(spec, "sex", summaries, 0)
    assert np.abs(histogram.transform(Z, s) - server.transform(Z, s)).max() > 0.01  # the setting reaches the maps
    # the site's utility counts are those of the server's maps
    clf = LogisticRegression(max_iter=5000).fit(server.transform(Z, s), y)
    want = float((clf.predict(server.transform(Zh, sh)) == yh).sum())
    assert local_apply(spec, 1, "sex", summaries, [1.0], 0, smoothing="kernel")["correct@1"] == want
