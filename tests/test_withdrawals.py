"""Successive, queued, duplicate, tolerated-dropout and aborted withdrawals in real Flower simulations."""

import json
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from unlearn_fl.requests import RequestQueue, WithdrawalRequest
from unlearn_fl.tracking import lineage

CLI = [sys.executable, "-m", "unlearn_fl.cli"]


def _simulate(d, *args, timeout=900):
    uri = f"sqlite:///{d / 'mlflow.db'}"
    p = subprocess.run(CLI + ["simulate", "--quiet", "--clients", "4", "--rounds", "3", "--tracking-uri", uri,
                              "--out", str(d / "out"), "--model-name", "m", *args],
                       capture_output=True, text=True, timeout=timeout, cwd=d)
    return p, uri


@pytest.fixture(scope="module")
def successive(tmp_path_factory):
    d = tmp_path_factory.mktemp("succ")
    q = RequestQueue(d / "requests")
    req = WithdrawalRequest(client_ids=(2,), fraction=0.5, reason="consent revoked")
    assert q.submit(req) == (req.request_id, True)
    assert q.submit(req) == (req.request_id, False)  # the duplicate is recognised at submission
    (d / "requests" / "pending" / "hand-written.json").write_text('{"client_ids": [1], "fraction": 7}')  # malformed
    p, uri = _simulate(d, "--rounds", "4", "--checkpoint-every", "1", "--withdraw", "0@1", "--withdraw", "1@2",
                       "--requests-dir", str(d / "requests"), "--no-reference")
    assert p.returncode == 0, p.stderr[-3000:]
    return dict(dir=d, uri=uri, rows=lineage(uri, "m"), queued=req, queue=q)


def test_each_withdrawal_is_a_child_of_the_previous_version(successive):
    rows = successive["rows"]
    kinds = [(r["version"], r["kind"], r["parent_version"]) for r in rows]
    # round 1: train v1 -> unlearn client 0 (v2) and the queued request on client 2 (v3);
    # round 2: train v4 -> unlearn client 1 (v5); round 3: a checkpoint, v6, with no withdrawal; round 4: final v7.
    assert kinds == [("1", "trained", ""), ("2", "unlearned", "1"), ("3", "unlearned", "2"),
                     ("4", "trained", "3"), ("5", "unlearned", "4"), ("6", "trained", "5"), ("7", "trained", "6")]
    by = {r["version"]: r for r in rows}
    assert by["2"]["withdrawn_clients"] == "0" and by["2"]["clients"] == "1,2,3"
    assert by["3"]["withdrawn_clients"] == "0,2" and by["3"]["clients"] == "1,2,3"  # client 2 keeps half its data
    assert by["5"]["withdrawn_clients"] == "0,1,2" and by["5"]["clients"] == "2,3"
    assert successive["queued"].request_id in by["5"]["request_ids"].split(",")
    # v3 is not v5's parent, but it still holds client 1's rows: flagged all the same.
    assert all(by[v]["contains_withdrawn"] == "true" for v in ("1", "2", "3", "4"))
    # v5 is clean only if its forgetting was verified; v6, trained on from it, holds what v5 holds.
    assert by["5"]["contains_withdrawn"] == ("false" if by["5"]["verdict"] == "passed" else "unverified")
    assert by["6"]["contains_withdrawn"] == by["7"]["contains_withdrawn"] == by["5"]["contains_withdrawn"]
    # Hashes of the forgotten rows, never the rows; different requests forget different rows.
    digests = [by[v]["forget_digest"] for v in ("2", "3", "5")]
    assert all(len(d) == 64 for d in digests) and len(set(digests)) == 3
    assert by["3"]["n_forget"] == str(json.loads((successive["dir"] / "out" / successive["queued"].request_id /
                                                  "forgetting_report.json").read_text())["request"]["n_forget"])
    assert set(by["5"]["figures"]) >= {"test_acc", "forget_acc", "mia_auc"} and 0 < by["5"]["figures"]["test_acc"] <= 1


def test_production_alias_follows_passed_versions_only(successive):
    rows = successive["rows"]
    prod = [r["version"] for r in rows if "production" in r["aliases"]]
    # Replay the on-pass policy: a trained root or a trained child of the production version takes
    # the alias; an unlearned version takes it only with a passed verdict.
    expected = None
    for r in rows:
        if r["kind"] == "trained" and (r["parent_version"] == "" or r["parent_version"] == expected):
            expected = r["version"]
        elif r["kind"] == "unlearned" and r["verdict"] == "passed":
            expected = r["version"]
    assert prod == [expected]
    candidates = [r["version"] for r in rows if "candidate" in r["aliases"]]
    assert all(r["verdict"] != "passed" for r in rows if r["version"] in candidates)


def test_queue_records_the_applied_version_and_ignores_the_duplicate(successive):
    q, req = successive["queue"], successive["queued"]
    assert q.status(req.request_id) == "applied"
    applied = json.loads((q.root / "applied" / f"{req.request_id}.json").read_text())
    assert applied["version"] == "3"
    assert not list((q.root / "pending").glob("*.json"))


def test_the_ledger_holds_every_request_once_with_its_final_state(successive):
    from unlearn_fl.ledger import Ledger

    ledger = Ledger(f"sqlite:///{successive['dir'] / 'unlearn-ledger.db'}")
    assert ledger.verify() is None
    by: dict[str, list[str]] = {}
    for e in ledger.entries(model_name="m"):
        by.setdefault(e.request_id, []).append(e.state)
    invalid = [rid for rid in by if rid.startswith("invalid-")]
    assert len(invalid) == 1 and by.pop(invalid[0]) == ["received", "aborted"]
    reason = ledger.entries(invalid[0])[-1].body["reason"]
    assert "hand-written.json" in reason and "fraction" in reason
    assert sorted(by.values()) == [["received", "running", "done"]] * 3  # two planned, one queued
    done = {e.request_id: e.body for e in ledger.entries(model_name="m") if e.state == "done"}
    assert done[successive["queued"].request_id]["version"] == "3"


def test_a_report_per_request(successive):
    out = successive["dir"] / "out"
    reports = sorted(p.parent.name for p in out.glob("wr-*/forgetting_report.json"))
    assert len(reports) == 3
    r = json.loads((out / successive["queued"].request_id / "forgetting_report.json").read_text())
    assert r["request"]["reason"] == "consent revoked" and r["request"]["forget_fraction"] == 0.5
    assert r["model"]["version"] == "3" and r["model"]["parent_version"] == "2"


def test_dropout_is_tolerated_and_a_failing_holder_aborts_without_a_version(tmp_path):
    # Client 3 fails every unlearning step: as a retainer (client 0's withdrawal) it is tolerated,
    # as the withdrawing client it makes the unlearning abort and the previous version stand.
    p, uri = _simulate(tmp_path, "--withdraw", "0@2", "--withdraw", "3", "--inject-failure", "3", "--no-reference")
    assert p.returncode == 3, p.stderr[-3000:]
    assert "NOT applied" in p.stderr
    rows = lineage(uri, "m")
    assert [(r["version"], r["kind"]) for r in rows] == [("1", "trained"), ("2", "unlearned"), ("3", "trained")]
    assert all("3" not in r["withdrawn_clients"].split(",") for r in rows)
    first = json.loads(next((tmp_path / "out").glob("wr-*/forgetting_report.json")).read_text())
    assert any("client 3 answered with an error: RuntimeError: client 3: injected failure" in x
               for x in first["audit"]["reasons"])  # the failing client is named with its own error
    aborted = list((tmp_path / "out").glob("wr-*/aborted.json"))
    error = json.loads(aborted[0].read_text())["error"] if aborted else ""
    assert len(aborted) == 1 and "aborted" in error and "a withdrawing client failed (client 3 answered with an error: RuntimeError: client 3: injected failure)" in error
    assert [r["version"] for r in rows if "production" in r["aliases"]] != []


def test_per_round_forget_metrics_are_reported_and_logged(successive):
    """Every unlearning round's forget-set accuracy and loss, in the report and as the version's MLflow metric."""
    by = {r["version"]: r for r in successive["rows"]}
    reports = [json.loads(f.read_text()) for f in (successive["dir"] / "out").glob("wr-*/forgetting_report.json")]
    by_version = {r["model"]["version"]: r for r in reports}  # a version's request list is not in applied order
    assert sorted(by_version) == ["2", "3", "5"]
    for v, report in by_version.items():
        unlearn = [x for x in report["rounds"] if x["phase"] == "unlearn"]
        assert unlearn and all(0 <= x["forget_acc"] <= 1 and x["forget_loss"] > 0 for x in unlearn)
        assert report["cost"]["monitor_seconds"] > 0
        hist = MlflowClient(successive["uri"]).get_metric_history(by[v]["run_id"], "round_forget_acc")
        assert [m.step for m in hist] == [x["round"] for x in unlearn]


def test_a_version_that_did_not_change_is_not_certified(tmp_path):
    """Issue: gradient ascent this strong rolls back its only round, so the "unlearned" version is
    bit-identical to its parent. It must fail, say why, hold the withdrawn data, and not be served."""
    import mlflow
    import torch

    p, uri = _simulate(tmp_path, "--withdraw", "0@2", "--method", "gradient-ascent", "--unlearn-rounds", "3",
                       "--method-config", '{"lr":0.05,"epochs":30,"alpha":5,"early_stop":false}',
                       "--audit-references", "2", "--audit-reference-mode", "online")
    assert p.returncode == 0, p.stderr[-3000:]
    rows = {r["version"]: r for r in lineage(uri, "m")}
    report = json.loads(next((tmp_path / "out").glob("wr-*/forgetting_report.json")).read_text())
    a = report["audit"]
    assert a["unchanged"] and "no unlearning round survived" in a["unchanged"] and "rolled back" in a["unchanged"]
    assert report["cost"]["speedup"] is None and "speedup" not in rows["2"]["figures"]  # nothing unlearned, nothing sped up
    assert a["verdict"] == "failed" and a["decided_by"] == "none" and "left the weights exactly as they were" in a["reasons"][0]
    assert rows["2"]["kind"] == "unlearned" and rows["2"]["contains_withdrawn"] == "true"
    assert rows["1"]["contains_withdrawn"] == "true" and "production" in rows["1"]["aliases"]
    # The operator is told production still holds the data, and not to promote a version that did not change.
    assert "warning: production still serves m v1, which contains withdrawn data" in p.stderr and "do not promote it" in p.stderr
    assert rows["3"]["contains_withdrawn"] == "true"  # trained on from the unchanged version
    mlflow.set_tracking_uri(uri)
    w1 = mlflow.pytorch.load_model("models:/m/1").state_dict()
    w2 = mlflow.pytorch.load_model("models:/m/2").state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)  # the premise: the weights really are the parent's
    # The run still measured everything else: RMIA (online: the retrained model and two references the
    # withdrawing site trained on half its audited rows, at a reported cost) and the retained sites' exposure.
    assert [x["attack"] for x in a["after"]["attacks"]] == ["loss-threshold", "rmia-online"]
    assert [x["attack"] for x in a["retrain"]["attacks"]] == ["loss-threshold"]
    cost = a["after"]["reference_cost"]
    assert cost["references"] == 2 and cost["mode"] == "online" and cost["examples"] > 0
    assert a["before"]["reference_cost"] == cost  # trained once per request, shared by the before/after audits
    assert sorted(e["client"] for e in a["retained_exposure"]) == [1, 2, 3]
    assert all(e["n_nonmembers"] > 0 and 0 <= e["auc_after"] <= 1 for e in a["retained_exposure"])
    assert rows["2"]["exposure_increased"] == ",".join(str(e["client"]) for e in a["retained_exposure"] if e["increased"])
