"""Record-level erasure on sites that each hold their own CSV: exactly the named rows are forgotten,
and no record id reaches the server, the report, the registry or the terminal."""

import hashlib
import json
import subprocess
import sys

import jsonschema
import pytest
from mlflow.tracking import MlflowClient

from unlearn_fl.data import digest_rows
from unlearn_fl.report.schema import ForgettingReport, json_schema
from unlearn_fl.sites import load_site, resolve_records

CLI = [sys.executable, "-m", "unlearn_fl.cli"]
SITE = dict(target="label", classes="benign,malignant")


def simulate(tmp, files, *extra):
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    args = ["simulate", "--site-files", ";".join(map(str, files)), "--target", "label", "--classes", SITE["classes"],
            "--rounds", "3", "--local-epochs", "2", "--lr", "0.01", "--tracking-uri", uri, "--out", str(tmp / "out"),
            "--model-name", "sites", "--quiet", *extra]
    return subprocess.run(CLI + args, capture_output=True, text=True, timeout=900, cwd=tmp), uri


def train_ids(path, n, skip=0):
    return [str(x) for x in load_site(path, **SITE).train_ids[skip:skip + n]]


@pytest.fixture(scope="module")
def erased(tmp_path_factory, site_files):
    """One run, two record-level requests: a planned one for site 1 (ids checked up front, applied after the
    last round), and one queued for site 2 without a pre-check naming an id the site does not hold (polled
    after round 1, refused by the site)."""
    tmp = tmp_path_factory.mktemp("records")
    ids = train_ids(site_files[1], 6, skip=3)
    (tmp / "ids.txt").write_text("\n".join(ids) + "\n")
    (tmp / "bad.txt").write_text("patient-2-does-not-exist\n")
    queue, out = tmp / "requests", tmp / "out"
    p = subprocess.run(CLI + ["withdraw", "--client", "2", "--records", str(tmp / "bad.txt"), "--requests-dir", str(queue),
                              "--erasure-dir", str(out / "sites" / "site-2" / "erasures")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    proc, uri = simulate(tmp, site_files, "--withdraw", "1", "--records", str(tmp / "ids.txt"), "--requests-dir", str(queue))
    assert proc.returncode == 3, proc.stderr[-3000:]  # exit 3: a request was not applied
    return dict(tmp=tmp, ids=ids, uri=uri, proc=proc, files=site_files, queue=queue)


def test_the_site_count_and_report_match_the_named_rows(erased):
    text = (erased["tmp"] / "out" / "forgetting_report.json").read_text()
    jsonschema.validate(json.loads(text), json_schema())
    r = ForgettingReport.model_validate_json(text)
    assert r.request.scope == "records" and r.request.client_ids == [1]
    assert r.request.n_forget == len(erased["ids"]) == 6
    assert r.request.records_digest and len(r.request.records_digest) == 64
    assert r.utility.test_acc_before > 0.8  # evaluated on the sites' holdouts: the server holds no data
    assert r.dataset["dataset"].startswith("per-site data")


def test_no_record_id_leaves_the_site(erased):
    out = erased["tmp"] / "out"
    places = {"report": (out / "forgetting_report.json").read_text(), "html": (out / "forgetting_report.html").read_text(),
              "summary": (out / "run-summary.json").read_text(), "stdout": erased["proc"].stdout, "stderr": erased["proc"].stderr}
    c = MlflowClient(erased["uri"])
    for v in c.search_model_versions("name='sites'"):
        places[f"tags v{v.version}"] = json.dumps(v.tags)
        run = c.get_run(v.run_id)
        places[f"params v{v.version}"] = json.dumps(run.data.params) + json.dumps(run.data.tags)
    for where, text in places.items():
        for rid in erased["ids"]:
            assert rid not in text, f"record id {rid} found in {where}"
    # The ids stay in the site's own erasure store.
    store = out / "sites" / "site-1" / "erasures"
    assert any(erased["ids"][0] in p.read_text() for p in store.glob("*.json"))


def test_forget_metrics_are_computed_on_exactly_the_named_rows(erased):
    """The site's digest of its forget set equals the digest of the named rows of its file."""
    site = load_site(erased["files"][1], **SITE)
    named = site.train.subset(resolve_records(site, erased["ids"]))
    expected = hashlib.sha256(digest_rows(named).encode()).hexdigest()
    versions = {str(v.version): v for v in MlflowClient(erased["uri"]).search_model_versions("name='sites'")}
    assert sorted(versions) == ["1", "2"]  # the refused request wrote no version at all
    child = versions["2"]
    assert child.tags["unlearn_fl.scope"] == "records" and child.tags["unlearn_fl.n_forget"] == "6"
    assert child.tags["unlearn_fl.forget_digest"] == expected
    assert child.tags["unlearn_fl.clients"] == "0,1,2"  # the site keeps its other rows
    assert versions["1"].tags["unlearn_fl.contains_withdrawn"] == "true"


def test_registered_model_carries_the_federated_scaler(erased):
    import mlflow
    import torch

    mlflow.set_tracking_uri(erased["uri"])
    model = mlflow.pytorch.load_model("models:/sites/2")
    raw = torch.as_tensor(load_site(erased["files"][0], **SITE).holdout.X)
    labels = load_site(erased["files"][0], **SITE).holdout.y
    acc = float((model(raw).argmax(1).numpy() == labels).mean())
    assert acc > 0.8  # raw feature rows in, the scaler inside the registered model


@pytest.mark.parametrize("case", ["unknown", "duplicated", "empty", "other site", "holdout"])
def test_bad_record_ids_exit_2_and_write_nothing(tmp_path, site_files, case):
    ids = train_ids(site_files[1], 3)
    lines = {"unknown": ids[:2] + ["patient-1-999999"], "duplicated": ids[:2] + ids[:1], "empty": ["# nothing"],
             "other site": train_ids(site_files[0], 2),
             "holdout": [str(load_site(site_files[1], **SITE).holdout_ids[0])]}[case]
    (tmp_path / "ids.txt").write_text("\n".join(lines) + "\n")
    proc, _ = simulate(tmp_path, site_files, "--withdraw", "1", "--records", str(tmp_path / "ids.txt"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("unlearn-fl: error:") and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "out").exists()


def test_a_queued_request_a_site_cannot_resolve_is_aborted_with_its_reason(erased):
    """Queued without a pre-check (no --data-path): the site refuses it at unlearning time, naming no id;
    the planned request still goes through, and only it produces an unlearned version."""
    summary = json.loads((erased["tmp"] / "out" / "run-summary.json").read_text())
    assert len(summary["aborts"]) == 1 and len(summary["reports"]) == 1
    reason = summary["aborts"][0]["reason"]
    assert "site 2 refused the request" in reason and "1 unknown record ids" in reason
    assert "does-not-exist" not in reason + erased["proc"].stderr + erased["proc"].stdout
    failed = list((erased["queue"] / "failed").glob("*.json"))
    assert len(failed) == 1 and "does-not-exist" not in failed[0].read_text()
    kinds = [v.tags["unlearn_fl.kind"] for v in MlflowClient(erased["uri"]).search_model_versions("name='sites'")]
    assert kinds.count("unlearned") == 1
