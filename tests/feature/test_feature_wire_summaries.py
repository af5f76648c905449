"""Feature unlearning's wire summaries: the maps the server merges from them are the central maps of the same rows.

The real Flower runs of `unlearn-fl feature --clients N` (diabetes's sex and a yes/no column) are in
tests/feature/test_feature_release.py, which also checks their registered releases."""

import numpy as np

from unlearn_fl.data import DataSpec
from unlearn_fl.engine.feature_exchange import local_rows, local_summary, summary_from_json
from unlearn_fl.feature import BarycenterProjector
from unlearn_fl.feature.federated import server_fit
from unlearn_fl.feature.tabular import write_diabetes_csv


def test_wire_summaries_rebuild_the_central_gaussian_maps(tmp_path):
    spec = DataSpec(dataset=str(write_diabetes_csv(tmp_path / "d.csv")), target="progression_high", num_clients=3)
    fed = server_fit([summary_from_json(local_summary(spec, c, "sex", "gaussian")) for c in range(3)])
    Z = np.concatenate([local_rows(spec, c, "sex")[0] for c in range(3)])
    s = np.concatenate([local_rows(spec, c, "sex")[1] for c in range(3)])
    central = BarycenterProjector(method="gaussian").fit(Z, s)
    assert np.allclose(fed.barycenter_cov_, central.barycenter_cov_, atol=1e-10)
    assert np.allclose(fed.transform(Z, s), central.transform(Z, s), atol=1e-8)


def _fair_csv(tmp_path, n=1500):
    from unlearn_fl.feature.tabular import synthetic_fairness_frame

    path = tmp_path / "fair.csv"
    synthetic_fairness_frame(n, seed=0).to_csv(path, index=False)
    return str(path)


def test_text_sensitive_column_wire_summaries_rebuild_the_central_maps(tmp_path):
    """A yes/no sensitive column (encoded by the loader as afam=no, afam=yes): both indicator columns are S, the
    groups are the category names, and the gaussian maps merged from the sites' wire summaries equal the central
    maps of the same rows to 1e-6 (the one-hot blocks make the covariances singular; the maps stay exact)."""
    from unlearn_fl.engine.feature_exchange import feature_blocks, sensitive_columns

    spec = DataSpec(dataset=_fair_csv(tmp_path), target="wage", num_clients=3)
    cols, cats = sensitive_columns(spec, "afam")
    assert len(cols) == 2 and cats == ["no", "yes"]
    rows = [local_rows(spec, c, "afam") for c in range(3)]
    Z, s = np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])
    assert set(s) == {"no", "yes"} and Z.shape[1] == 12  # 14 encoded columns less the two of S
    fed = server_fit([summary_from_json(local_summary(spec, c, "afam", "gaussian")) for c in range(3)])
    central = BarycenterProjector(method="gaussian").fit(Z, s)
    assert fed.classes_ == central.classes_ == ["no", "yes"] and fed.converged_ and central.converged_
    np.testing.assert_allclose(fed.barycenter_cov_, central.barycenter_cov_, atol=1e-6)
    np.testing.assert_allclose(fed.transform(Z, s), central.transform(Z, s), atol=1e-6)
    # quantile: the sketches carry each one-hot block's category counts, which add up to the central ones exactly
    blocks = feature_blocks(spec, "afam")
    assert len(blocks) == 4
    qfed = server_fit([summary_from_json(local_summary(spec, c, "afam", "quantile")) for c in range(3)], blocks=blocks)
    qcentral = BarycenterProjector(blocks=blocks).fit(Z, s)
    for b in range(len(blocks)):
        np.testing.assert_allclose(qfed.block_probs_[b], qcentral.block_probs_[b], atol=1e-12)
    block_cols = [c for b in blocks for c in b]
    np.testing.assert_allclose(qfed.transform(Z, s)[:, block_cols], qcentral.transform(Z, s)[:, block_cols], atol=1e-6)


def test_federated_unknown_sensitive_column_is_one_line_exit_2(tmp_path, capsys):
    from unlearn_fl.cli import main

    code = main(["feature", "--clients", "3", "--dataset", _fair_csv(tmp_path), "--target", "wage", "--sensitive", "race",
                 "--out", str(tmp_path / "o"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "sensitive column 'race' is not a column" in lines[0]
    assert "gender, afam, region, urban, union, educ, exper, score" in lines[0] and "afam=" not in lines[0]
