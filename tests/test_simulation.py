"""A real Flower simulation (3 clients, one withdrawal) recorded in a real sqlite MLflow store."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from mlflow.tracking import MlflowClient

from unlearn_fl.report.schema import ForgettingReport, json_schema

CLI = [sys.executable, "-m", "unlearn_fl.cli"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    proc = subprocess.run(
        CLI + ["simulate", "--clients", "3", "--rounds", "3", "--withdraw", "1", "--forget-fraction", "0.5",
               "--tracking-uri", uri, "--out", str(d / "report"), "--model-name", "sim-test", "--quiet", "--seed", "3"],
        capture_output=True, text=True, timeout=600, cwd=d,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(dir=d, uri=uri, proc=proc, report=json.loads((d / "report" / "forgetting_report.json").read_text()))


def test_report_validates_against_its_schema(run):
    jsonschema.validate(run["report"], json_schema())
    r = ForgettingReport.model_validate(run["report"])
    assert r.request.kind == "data" and r.request.client_ids == [1]
    assert r.request.forget_fraction == 0.5 and r.request.n_forget > 0
    assert r.audit.verdict in ("passed", "failed", "inconclusive") and r.audit.reasons
    assert r.cost.retrain_seconds is not None and r.utility.test_acc_retrain is not None
    assert (run["dir"] / "report" / "forgetting_report.html").read_text().count("data:image/png;base64") >= 3


def test_federated_model_learned_and_unlearning_kept_utility(run):
    u = run["report"]["utility"]
    assert u["test_acc_before"] > 0.8
    assert abs(u["test_acc_after"] - u["test_acc_retrain"]) < 0.08
    phases = [x["phase"] for x in run["report"]["rounds"]]
    assert phases.count("train") == 3 and phases.count("retrain") == 3 and "unlearn" in phases


def test_registry_holds_parent_and_child_versions_with_lineage(run):
    c = MlflowClient(run["uri"])
    versions = {str(v.version): v for v in c.search_model_versions("name='sim-test'")}
    assert sorted(versions) == ["1", "2"]
    parent, child = versions["1"], versions["2"]
    assert child.tags["unlearn_fl.parent_version"] == "1"
    assert child.tags["unlearn_fl.withdrawn_clients"] == "1"
    assert child.tags["unlearn_fl.request_ids"] == run["report"]["request"]["request_id"]
    # A partial withdrawal keeps the client's remaining data in the model.
    assert child.tags["unlearn_fl.clients"] == "0,1,2" and parent.tags["unlearn_fl.clients"] == "0,1,2"
    assert parent.tags["unlearn_fl.contains_withdrawn"] == "true"
    assert child.tags["unlearn_fl.verdict"] == run["report"]["audit"]["verdict"]
    assert child.tags["unlearn_fl.report_digest"] == ForgettingReport.model_validate(run["report"]).digest()
    assert run["report"]["model"] == {"name": "sim-test", "parent_version": "1", "version": "2", "run_id": child.run_id}
    arts = [a.path for a in c.list_artifacts(child.run_id, "report")]
    assert sorted(arts) == ["report/forgetting_report.html", "report/forgetting_report.json"]
    stored = json.loads(Path(c.download_artifacts(child.run_id, "report/forgetting_report.json", str(run["dir"]))).read_text())
    assert stored == run["report"]


def test_summary_table_printed(run):
    out = run["proc"].stdout
    assert "MIA AUC" in out and "verdict:" in out and "v2 (parent v1)" in out
