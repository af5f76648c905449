"""The example app (Flower's quickstart shape, its own residual CNN) runs a withdrawal end to end with `flwr run`."""

import json
from pathlib import Path

import jsonschema
from mlflow.tracking import MlflowClient

from unlearn_fl.engine.launch import flwr_run
from unlearn_fl.report.schema import ForgettingReport, json_schema

EXAMPLE = Path(__file__).parents[1] / "examples" / "quickstart-unlearning"


def test_example_app_withdrawal_ends_in_a_registered_unlearned_version(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, tail = flwr_run(EXAMPLE, {"num-sites": 3, "num-server-rounds": 3, "withdraw-client": 1, "tracking-uri": uri,
                                    "out": str(tmp_path / "out"), "model-name": "example"}, num_supernodes=3)
    assert code == 0, "\n".join(tail)
    report_file = tmp_path / "out" / "forgetting_report.json"
    assert report_file.exists(), "\n".join(tail)
    report = json.loads(report_file.read_text())
    jsonschema.validate(report, json_schema())
    r = ForgettingReport.model_validate(report)
    assert r.request.client_ids == [1] and r.request.scope == "client" and r.request.n_forget > 0
    assert r.utility.test_acc_before > 0.5  # the residual CNN learned the digits (federated evaluation)
    assert r.cost.unlearn_bytes > 0 and r.cost.retrain_bytes > 0
    versions = {str(v.version): v for v in MlflowClient(uri).search_model_versions("name='example'")}
    assert sorted(versions) == ["1", "2"]
    child = versions["2"]
    assert child.tags["unlearn_fl.kind"] == "unlearned" and child.tags["unlearn_fl.parent_version"] == "1"
    assert child.tags["unlearn_fl.clients"] == "0,2" and child.tags["unlearn_fl.report_digest"] == r.digest()
    # The registered artefact is the app's own module and serves 8x8 images.
    import mlflow
    import torch

    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model("models:/example/2")
    assert tuple(model(torch.zeros(2, 1, 8, 8)).shape) == (2, 10)
