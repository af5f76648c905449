"""Feature unlearning over a real Flower simulation: only per-group summaries leave the clients."""

import json
import subprocess
import sys

import numpy as np

from unlearn_fl.data import DataSpec
from unlearn_fl.engine.feature_exchange import local_rows, local_summary, summary_from_json
from unlearn_fl.feature import BarycenterProjector
from unlearn_fl.feature.federated import server_fit
from unlearn_fl.feature.tabular import write_diabetes_csv
from unlearn_fl.report.schema import ForgettingReport


def test_wire_summaries_rebuild_the_central_gaussian_maps(tmp_path):
    spec = DataSpec(dataset=str(write_diabetes_csv(tmp_path / "d.csv")), target="progression_high", num_clients=3)
    fed = server_fit([summary_from_json(local_summary(spec, c, "sex", "gaussian")) for c in range(3)])
    Z = np.concatenate([local_rows(spec, c, "sex")[0] for c in range(3)])
    s = np.concatenate([local_rows(spec, c, "sex")[1] for c in range(3)])
    central = BarycenterProjector(method="gaussian").fit(Z, s)
    assert np.allclose(fed.barycenter_cov_, central.barycenter_cov_, atol=1e-10)
    assert np.allclose(fed.transform(Z, s), central.transform(Z, s), atol=1e-8)


def test_federated_feature_unlearning_in_a_flower_simulation(tmp_path):
    p = subprocess.run([sys.executable, "-m", "unlearn_fl.cli", "feature", "--clients", "3", "--method", "gaussian",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    r = ForgettingReport.model_validate_json((tmp_path / "forgetting_report.json").read_text())
    f = r.feature
    assert r.request.kind == "feature" and r.request.client_ids == [0, 1, 2] and r.method.endswith("federated")
    assert f.s_auc_before > 0.65 and f.s_auc_after < f.s_auc_before - 0.15 and abs(f.s_auc_after - 0.5) < 0.12
    assert f.utility_after > f.utility_before - 0.1
    assert [pt.t for pt in f.pareto] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert sum(r.dataset["rows_per_client"]) == r.request.n_forget
