"""Exact federated quantile maps (issue #12's target "federated maps equal central maps to 1e-6"; docs/method.md §3,
"Exact federated maps"): sites that send their per-group marginals give the maps of a central fit on the pooled rows,
for every smoothing, through the wire format and through a real Flower run whose release is registered in MLflow."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from unlearn_fl import cli
from unlearn_fl.feature import BarycenterProjector
from unlearn_fl.feature.federated import client_summary, server_fit
from unlearn_fl.feature.marginals import MarginalSummary, marginal_summary, merge_marginals

SMOOTHINGS = ("histogram", "relative", "kernel", "auto")


def _table(n=1500, seed=0):
    """A continuous column shifted by S, an integer column on a grid, a column with a heavy atom at 0, a one-hot block
    (3 categories, frequencies by S) and a constant column."""
    rng = np.random.default_rng(seed)
    s = rng.choice(["a", "b"], size=n, p=[0.6, 0.4])
    b = s == "b"
    cat = np.where(b, rng.choice(3, n, p=[0.2, 0.3, 0.5]), rng.choice(3, n, p=[0.5, 0.3, 0.2]))
    Z = np.column_stack([rng.normal(b * 0.8, 1.0), np.round(rng.normal(3 + 2 * b, 2)),
                         np.where(rng.random(n) < 0.3 + 0.2 * b, 0.0, rng.exponential(1 + b, n)),
                         np.eye(3)[cat], np.full(n, 2.5)])
    return Z, s, [[3, 4, 5]]


def _max_gap(p: BarycenterProjector, q: BarycenterProjector) -> float:
    """The largest difference between two fitted projectors' knots (levels and values) over groups and coordinates."""
    gap = 0.0
    for ka, kb in zip(p.knots_, q.knots_):
        for a, b in zip(ka, kb):
            if a.levels.shape != b.levels.shape:
                return np.inf
            gap = max(gap, float(np.abs(a.levels - b.levels).max()), float(np.abs(a.values - b.values).max()))
    return gap


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_maps_merged_from_site_marginals_are_the_central_maps_of_the_pooled_rows(smoothing):
    """3 uneven sites, one without group b: the merged marginals' maps equal the central fit's knots, cells, per-column
    smoothing and transform exactly; the default sketches' maps do not (so the equality comes from the marginals)."""
    Z, s, blocks = _table()
    order = np.argsort(s == "b", kind="stable")  # site 0 gets group a only
    sites = np.split(order, [200, 900])
    kw = dict(smoothing=smoothing, blocks=blocks, random_state=3)
    central = BarycenterProjector(**kw).fit(Z, s)
    fed = server_fit([client_summary(Z[i], s[i], blocks=blocks, summary="marginals") for i in sites], **kw)
    assert set(s[sites[0]]) == {"a"} and fed.classes_ == central.classes_ == ["a", "b"]
    assert _max_gap(fed, central) == 0.0 and fed.smoothing_ == central.smoothing_
    for c, f in zip(central.cells_, fed.cells_):
        assert (c is None and f is None) or np.array_equal(c, f)
    np.testing.assert_array_equal(fed.block_probs_[0], central.block_probs_[0])
    np.testing.assert_array_equal(fed.transform(Z, s), central.transform(Z, s))
    if smoothing != "auto":  # the sketches' server sums the sites' split scores instead
        sketched = server_fit([client_summary(Z[i], s[i], blocks=blocks) for i in sites], **kw)
        assert _max_gap(sketched, central) > 1e-6


def test_merging_marginals_adds_counts_exactly_in_any_site_order():
    Z, s, blocks = _table(600, seed=1)
    parts = [marginal_summary(Z[i], s[i], blocks) for i in np.array_split(np.arange(600), 4)]
    one, other = merge_marginals(parts), merge_marginals(parts[::-1])
    whole = marginal_summary(Z, s, blocks)
    for m in (one, other):
        assert m.labels == whole.labels
        np.testing.assert_array_equal(m.counts, whole.counts)
        for j in range(Z.shape[1]):
            np.testing.assert_array_equal(m.values[j], whole.values[j])
            np.testing.assert_array_equal(m.value_counts[j], whole.value_counts[j])
        np.testing.assert_array_equal(m.block_counts[0], whole.block_counts[0])
    assert whole.value_counts[6].shape == (2, 1)  # the constant column: one value


def test_bad_marginals_are_refused_with_the_fix():
    Z, s, blocks = _table(300)
    good = marginal_summary(Z, s, blocks)
    frac = MarginalSummary(good.labels, good.counts, good.values, [v * 0.5 for v in good.value_counts], good.block_counts)
    with pytest.raises(ValueError, match="fractional"):
        merge_marginals([good, frac])
    with pytest.raises(ValueError, match="number of features"):
        merge_marginals([good, marginal_summary(Z[:, :3], s)])
    with pytest.raises(ValueError, match="not a mix"):
        server_fit([good, client_summary(Z, s, blocks=blocks)], blocks=blocks)
    with pytest.raises(ValueError, match="'sketch' or 'marginals'"):
        client_summary(Z, s, summary="rows")


def test_wire_marginals_of_a_yes_no_attribute_rebuild_the_central_maps(tmp_path):
    """The synthetic fairness table (yes/no S, four one-hot text columns) through the JSON the sites send: the server
    merges the marginals into one summary for the sites, whose maps are the central fit of the pooled train rows."""
    from unlearn_fl.data import DataSpec
    from unlearn_fl.engine.feature_exchange import (feature_blocks, local_rows, local_summary, merge_for_sites,
                                                      merged_maps, summary_from_json)
    from unlearn_fl.feature.tabular import synthetic_fairness_frame

    path = tmp_path / "fair.csv"
    synthetic_fairness_frame(1500, seed=0).to_csv(path, index=False)
    spec = DataSpec(dataset=str(path), target="wage", num_clients=3)
    sent = [local_summary(spec, c, "afam", "quantile", "marginals") for c in range(3)]
    back = merge_for_sites(sent)
    assert len(back) == 1 and isinstance(summary_from_json(back[0]), MarginalSummary)
    rows = [local_rows(spec, c, "afam") for c in range(3)]
    Z, s = np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])
    for smoothing in ("relative", "auto"):
        central = BarycenterProjector(smoothing=smoothing, blocks=feature_blocks(spec, "afam"), random_state=0).fit(Z, s)
        for summaries in (sent, back):
            fed = merged_maps(spec, "afam", summaries, 0, smoothing)
            assert _max_gap(fed, central) == 0.0 and fed.smoothing_ == central.smoothing_
            np.testing.assert_array_equal(fed.transform(Z, s), central.transform(Z, s))


def test_flower_release_with_marginals_is_the_central_fit_of_the_sites_rows(tmp_path, capsys):
    """`unlearn-fl feature --clients 3 --summary marginals`: a real Flower simulation; the registered release's maps
    (loaded back from MLflow) equal a central fit on the three sites' train rows to 1e-6 (they are equal), smoothing
    defaults to auto, and the report records what the sites sent. The same run with sketches is another request."""
    from unlearn_fl.data import DataSpec
    from unlearn_fl.engine.feature_exchange import local_rows
    from unlearn_fl.report.schema import ForgettingReport

    uri, out = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "out"
    capsys.readouterr()
    code = cli.main(["feature", "--clients", "3", "--summary", "marginals", "--grid", "0,1", "--head-rounds", "2",
                     "--tracking-uri", uri, "--out", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    head = next(line for line in printed.splitlines() if line.startswith("feature unlearning of"))
    assert head.endswith(str(out / "diabetes.csv")), head  # the federated summary names its table too
    report = ForgettingReport.model_validate_json((out / "forgetting_report.json").read_text())
    assert report.method_config["summary"] == "marginals" and report.method_config["smoothing"] == "auto"
    assert "marginals" in report.method_config["exchanged"]
    page = (out / "forgetting_report.html").read_text()
    assert "what each site sent for the quantile maps</th><td>every column&#x27;s values" in page
    capsys.readouterr()
    assert cli.main(["lineage", "--tracking-uri", uri, "--model-name", "feature-sex-federated"]) == 0
    assert "summary=marginals" in capsys.readouterr()[0]
    pc = report.method_config["parity_ceiling"]  # on the server's test rows, as every feature report
    assert 0.5 <= pc["ceiling"] <= 1 and pc["probe"] in ("logistic", "gradient boosting")
    mlflow.set_tracking_uri(uri)
    proj = mlflow.pyfunc.load_model("models:/feature-sex-federated/2").unwrap_python_model().release.projector
    spec = DataSpec(dataset=str(out / "diabetes.csv"), target="progression_high", num_clients=3, seed=0)
    rows = [local_rows(spec, c, "sex") for c in range(3)]
    Z, s = np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])
    central = BarycenterProjector(smoothing="auto", random_state=0).fit(Z, s)
    assert _max_gap(proj, central) <= 1e-6 and proj.smoothing_ == central.smoothing_
    assert list(report.method_config["smoothing_used"].values()) == central.smoothing_
    assert np.abs(proj.transform(Z, s) - central.transform(Z, s)).max() <= 1e-6
    code = cli.main(["feature", "--clients", "3", "--smoothing", "auto", "--grid", "0,1", "--head-rounds", "2",
                     "--tracking-uri", uri, "--out", str(tmp_path / "sketch")])
    capsys.readouterr()
    assert code == 0
    sketch = ForgettingReport.model_validate_json((tmp_path / "sketch" / "forgetting_report.json").read_text())
    assert sketch.request.request_id != report.request.request_id and "summary" not in sketch.method_config
    sk = mlflow.pyfunc.load_model("models:/feature-sex-federated/3").unwrap_python_model().release.projector
    assert _max_gap(sk, central) > 1e-6


@pytest.mark.parametrize("argv, names", [
    (["--summary", "marginals"], ("--summary marginals", "--clients N")),
    (["--clients", "3", "--method", "gaussian", "--summary", "marginals"], ("--summary marginals", "--method quantile")),
    (["--clients", "3", "--outcome", "scores", "--summary", "sketch"], ("--summary sketch", "--outcome features")),
    (["--clients", "3", "--lam", "10", "--summary", "marginals"], ("--summary marginals", "with --lam")),
    (["--clients", "0", "--summary", "marginals"], ("--clients 0", "at least two clients")),
])
def test_summary_flag_where_it_does_not_apply_is_one_line_exit_2(tmp_path, capsys, argv, names):
    code = cli.main(["feature", *argv, "--out", str(tmp_path / "o"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and all(n in lines[0] for n in names), err
    assert not (tmp_path / "o").exists() and not (tmp_path / "m.db").exists()
