"""Faults found by trying the product as a user would, each fixed as a kind and pinned here.

1. model names MLflow cannot register, search or load: refused up front by every command;
2. a read-only working folder: nothing is written there, artifacts go where the store says, checked before training;
3. an unbounded accountant ε: stated explicitly, and every report the product writes reads back;
4. a target that cannot be a class label: refused before training, on the sites' path too (a site names itself);
5. a partial withdrawal that rounds to every row of a site: refused up front, and by the site itself;
6. a forget set too small to audit: an `inconclusive` verdict, recorded normally;
7. a site that answers with an error: the server names the site and its error.

Fast checks fail before any federation starts. The federation-level checks drive the real `Federation`
(server) and the project's real ClientApp (`client.client_app`) through `LocalGrid`, a transport that
hands each message to the ClientApp in-process and turns an exception into the error reply Flower's
SuperNode sends. One test runs a full `unlearn-fl simulate` (`flwr run`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

CLI = [sys.executable, "-m", "unlearn_fl.cli"]


def _run(args, cwd, prefix=(), timeout=300):
    return subprocess.run([*prefix, *CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


class _Done:
    """What an in-process `unlearn-fl` call returned: returncode, stdout, stderr (like CompletedProcess)."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _cli(args, capsys) -> _Done:
    """`unlearn-fl ARGS` in this process (the checks that end before any federation: no interpreter start-up)."""
    from unlearn_fl import cli

    capsys.readouterr()
    try:
        rc = cli.main(list(args))
    except SystemExit as e:  # argparse
        rc = e.code
    out = capsys.readouterr()
    return _Done(rc, out.out, out.err)


def _one_line(p, needle: str, rc: int = 2) -> str:
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert p.returncode == rc, p.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert needle in lines[0], lines[0]
    return lines[0]


def _unprivileged() -> list[str]:
    """A command prefix under which a chmod 0o555 folder really is read-only.

    Root writes through permission bits (CAP_DAC_OVERRIDE); `setpriv` drops that capability for the child.
    Empty when not root, or when setpriv is missing or not allowed (then only "nothing was created" is checked).
    """
    if os.geteuid() != 0:
        return []
    exe = shutil.which("setpriv")
    cmd = [exe, "--bounding-set", "-dac_override,-dac_read_search"] if exe else []
    if cmd and subprocess.run([*cmd, "true"], capture_output=True).returncode == 0:
        return cmd
    return []


def _read_only_dir(path: Path) -> tuple[Path, list[str]]:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o555)
    return path, _unprivileged()


def _reports_read_back(out: Path, uri: str, name: str, cwd: Path, prefix=()) -> list[str]:
    """Every version the run registered with a report: `unlearn-fl report` reads it (exit 0, no traceback)."""
    summary = json.loads((out / "run-summary.json").read_text())
    unlearned = [v for v, kind in summary["versions"].items() if kind == "unlearned"]
    assert unlearned, summary
    for v in unlearned:
        p = _run(["report", v, "--tracking-uri", uri, "--model-name", name, "--dest", str(out / f"fetched-{v}")], cwd, prefix)
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-3000:]
        assert "verdict:" in p.stdout
    return unlearned


# ---------------------------------------------------------------- 1. model names

BAD_NAMES = [
    ("clinic/a", "contains '/'"),
    ("clinic:a", "contains ':'"),
    ("50%", "contains '%'"),
    ("what?", "contains '?'"),
    ("model@prod", "contains '@'"),
    ("..", "relative path"),
    ("..clinic", "relative path"),
    ("o'brien \"clinic\"", "both kinds of quote"),
    ("line\nbreak", "control character"),
    ("   ", "is empty"),
    ("x" * 257, "at most 256"),
]


@pytest.mark.parametrize("name,needle", BAD_NAMES)
def test_model_names_mlflow_cannot_hold_are_refused_by_every_command_before_anything_is_written(tmp_cwd, capsys, name, needle):
    uri = f"sqlite:///{tmp_cwd / 'mlflow.db'}"
    p = _cli(["simulate", "--quiet", "--model-name", name, "--tracking-uri", uri, "--out", str(tmp_cwd / "out")], capsys)
    line = _one_line(p, needle)
    assert line.startswith("unlearn-fl: error: --model-name:") and "--model-name" in line.split(":", 3)[-1]
    for cmd in (["lineage"], ["report", "1"]):
        _one_line(_cli([*cmd, "--model-name", name, "--tracking-uri", uri], capsys), needle)
    assert sorted(os.listdir(tmp_cwd)) == []  # no store, no report, no experiment


def test_a_model_name_is_refused_in_its_own_process_before_anything_is_written(tmp_path):
    p = _run(["simulate", "--quiet", "--model-name", "clinic/a", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
              "--out", str(tmp_path / "out")], tmp_path)
    _one_line(p, "--model-name: model name 'clinic/a' contains '/'")
    assert os.listdir(tmp_path) == []


def test_the_name_rule_covers_mlflows_own_and_run_config_in_deployment():
    from pydantic import ValidationError

    from mlflow.exceptions import MlflowException
    from mlflow.store.model_registry.file_store import _validate_model_name as mlflow_rule  # MLflow's strictest (file store)

    from unlearn_fl.apps import config_from_run_config
    from unlearn_fl.config import check_model_name

    for name in ["o'brien-clinic", 'say "hi"', "Klinik Zürich #2", "a_b.c-d", "x" * 256]:
        assert check_model_name(name) == name
        mlflow_rule(name)  # MLflow accepts what we accept
    for name, _ in BAD_NAMES:
        try:
            mlflow_rule(name)
        except MlflowException:
            with pytest.raises(ValueError):  # whatever MLflow refuses, we refuse first
                check_model_name(name)
    with pytest.raises(ValidationError, match="contains '/'"):  # `flwr run .` with a run config, no CLI involved
        config_from_run_config({"model-name": "clinic/a"})


# ---------------------------------------------------------------- 2. artifacts where the store says


def test_an_experiment_whose_artifacts_cannot_be_written_is_refused_before_training(tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    locked, prefix = _read_only_dir(tmp_path / "locked")
    c = MlflowClient(uri)
    gone = c.create_experiment("deleted", artifact_location=(store / "a").as_uri())
    c.delete_experiment(gone)
    c.create_experiment("locked", artifact_location=(locked / "mlruns" / "1").as_uri())  # e.g. made by MLflow in a folder now read-only
    args = ["simulate", "--quiet", "--tracking-uri", uri, "--out", str(tmp_path / "out"), "--model-name"]
    _one_line(_cli([*args, "deleted"], capsys), f"experiment 'deleted' (id {gone}) in {uri} is deleted")
    if prefix or os.geteuid() != 0:  # a folder root could write into anyway is no test of this
        p = _run([*args, "locked"], tmp_path, prefix)
        _one_line(p, f"keeps its artifacts in {locked / 'mlruns' / '1'} (to be created in {locked}), which is not writable")
    assert c.search_registered_models() == [] and not (tmp_path / "out").exists() and os.listdir(locked) == []


# ---------------------------------------------------------------- 3. every report reads back


def _report(accounting) -> "ForgettingReport":  # noqa: F821
    from unlearn_fl.report.schema import AuditBlock, CostBlock, ForgettingReport, ModelBlock, RequestBlock, UtilityBlock

    return ForgettingReport(
        request=RequestBlock(request_id="wr-1", kind="data", client_ids=[1], n_forget=3), method="marginal",
        model=ModelBlock(name="m", version="1"),
        utility=UtilityBlock(test_acc_before=0.9, test_acc_after=float("nan"), retain_acc_after=0.9, forget_acc_before=1.0,
                             forget_acc_after=0.5),
        audit=AuditBlock(mia_auc_before=0.5, mia_auc_after=0.5, delta=1e-5, verdict="inconclusive",
                         epsilon_interval=(0.0, None)),
        accounting=accounting, cost=CostBlock(unlearn_seconds=1.0))


def test_an_unbounded_epsilon_is_explicit_and_reads_back():
    from unlearn_fl.accounting.accountant import account
    from unlearn_fl.accounting.results import AccountingBlock
    from unlearn_fl.report.html import render_html
    from unlearn_fl.report.schema import ForgettingReport

    # PRV cannot compose such low noise (∞, or a failure): the stated fallback is RDP's upper bound.
    for sigma, steps, what in ((0.05, 5, "returned an infinite epsilon"), (0.001, 1000, "failed with MemoryError")):
        b = account(sigma, 1.0, steps, 1e-5, "prv")
        assert b.accountant == "rdp" and b.requested_accountant == "prv" and math.isfinite(b.epsilon)
        assert f"the prv accountant {what}" in b.epsilon_note and "rdp accountant's upper bound" in b.epsilon_note
    inf = AccountingBlock(accountant="rdp", epsilon=math.inf, delta=1e-5, noise_multiplier=0.01, sample_rate=1.0, steps=5,
                          per_client={"0": math.inf, "1": 2.0})
    assert inf.epsilon is None and inf.epsilon_status == "infinite" and inf.per_client == {"0": None, "1": 2.0}
    r = _report(inf)
    back = ForgettingReport.model_validate_json(r.to_json())
    assert back.accounting.epsilon is None and back.accounting.epsilon_status == "infinite" and back.accounting.epsilon_note
    assert back.utility.test_acc_after is None and back.digest() == r.digest()
    assert json.loads(r.to_json())["accounting"]["epsilon"] is None
    assert "unbounded (infinite)" in render_html(back)
    with pytest.raises(ValueError, match="unlearn_seconds holds inf, a number a JSON report cannot carry"):
        ForgettingReport.model_validate({**json.loads(r.to_json()), "cost": {"unlearn_seconds": math.inf}})


def _register_report(uri: str, root: Path, name: str, text: str, digest: str) -> None:
    """Version 1 of model `name` in a real sqlite MLflow store, with `text` attached as its forgetting report."""
    c = MlflowClient(uri)
    exp = c.create_experiment(name, artifact_location=(root / "mlruns" / name).as_uri())
    run = c.create_run(exp)
    art = root / "art" / name / "forgetting_report.json"
    art.parent.mkdir(parents=True)
    art.write_text(text)
    c.log_artifact(run.info.run_id, str(art), "report")
    c.set_terminated(run.info.run_id)
    c.create_registered_model(name)
    mv = c.create_model_version(name, f"runs:/{run.info.run_id}/report", run_id=run.info.run_id)
    # A concluded unlearned version, as the Recorder leaves it (readers skip versions still being written).
    c.set_model_version_tag(name, mv.version, "unlearn_fl.kind", "unlearned")
    c.set_model_version_tag(name, mv.version, "unlearn_fl.report_digest", digest)


def test_report_reads_an_earlier_null_epsilon_and_refuses_an_unreadable_report_with_one_line(tmp_path, capsys):
    from unlearn_fl.accounting.results import AccountingBlock
    from unlearn_fl.report.schema import stored_digest

    r = _report(AccountingBlock(accountant="prv", epsilon=3.0, delta=1e-5, noise_multiplier=0.05, sample_rate=0.5, steps=20))
    old = json.loads(r.to_json())
    for k in ("epsilon_status", "requested_accountant", "epsilon_note"):  # as unlearn-fl wrote it before the fix
        del old["accounting"][k]
    old["accounting"]["epsilon"] = None
    text = json.dumps(old, indent=2)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _register_report(uri, tmp_path, "old", text, stored_digest(text))
    _register_report(uri, tmp_path, "bad", json.dumps(dict(old, audit={**old["audit"], "verdict": "maybe"})), "0" * 64)
    _register_report(uri, tmp_path, "cut", text[: len(text) // 2], "0" * 64)  # cut short (a full disk, a killed upload)
    p = _cli(["report", "1", "--tracking-uri", uri, "--model-name", "old", "--dest", str(tmp_path / "f-old")], capsys)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "ε unbounded (infinite)" in p.stdout.replace("\n", " ")
    p = _cli(["report", "1", "--tracking-uri", uri, "--model-name", "bad", "--dest", str(tmp_path / "f-bad")], capsys)
    _one_line(p, "does not read back (audit.verdict: Input should be 'passed', 'failed' or 'inconclusive'")
    p = _cli(["report", "1", "--tracking-uri", uri, "--model-name", "cut", "--dest", str(tmp_path / "f-cut")], capsys)
    line = _one_line(p, "does not read back")
    assert str(tmp_path / "f-cut") in line  # names the raw file


# ---------------------------------------------------------------- 4 and 5: refused before training


def _csv(path: Path, y, n_features=3, seed=0, target="y") -> Path:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(len(y), n_features)).round(4), columns=[f"f{j}" for j in range(n_features)])
    df[target] = y
    df.to_csv(path, index=False)
    return path


def test_a_target_that_cannot_be_a_class_label_is_refused_before_training(tmp_path, capsys):
    rng = np.random.default_rng(1)
    price = _csv(tmp_path / "price.csv", (rng.normal(size=300) * 100).round(2))  # continuous: 300 distinct floats
    cents = _csv(tmp_path / "cents.csv", rng.permutation(300) + 1000)  # whole numbers, 300 distinct: a quantity
    ok = _csv(tmp_path / "ok.csv", rng.integers(0, 3, 300))
    for data, needle in ((price, "looks continuous"), (cents, "has 300 distinct values in 300 rows")):
        p = _cli(["simulate", "--quiet", "--dataset", str(data), "--target", "y", "--tracking-uri",
                  f"sqlite:///{tmp_path / 'm.db'}", "--out", str(tmp_path / "out")], capsys)
        line = _one_line(p, needle)
        assert "bin it into a few classes" in line
    # The sites' path: each site checks its own file (the CLI loads them up front, as the sites will).
    sites = [_csv(tmp_path / "s0.csv", rng.integers(0, 2, 60), seed=2), _csv(tmp_path / "s1.csv", rng.permutation(60), seed=3)]
    p = _cli(["simulate", "--quiet", "--site-files", ";".join(map(str, sites)), "--target", "y", "--withdraw", "0",
              "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "--out", str(tmp_path / "out")], capsys)
    _one_line(p, f"target of {sites[1]} (column 'y') has")
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "out").exists()
    from unlearn_fl.data import load_csv

    assert load_csv(ok, "y").n_classes == 3


@pytest.mark.parametrize("args,needle", [
    (["--withdraw", "0,1,2", "--forget-fraction", "0.999"], "--forget-fraction 0.999 of client 0's 230 training rows rounds to all 230"),
    (["--clients", "3", "--withdraw", "1", "--forget-fraction", "0.999"], "--forget-fraction 0.999 of client 1's 383 training rows"),
])
def test_a_fraction_that_rounds_to_every_row_is_refused_before_training(tmp_cwd, capsys, args, needle):
    p = _cli(["simulate", "--quiet", *args], capsys)
    line = _one_line(p, needle)
    assert "withdraw client" in line and "whole with --forget-fraction 1" in line
    assert os.listdir(tmp_cwd) == []


def test_a_fraction_that_rounds_to_every_row_of_a_site_file_is_refused_before_training(tmp_path, capsys, site_files):
    p = _cli(["simulate", "--quiet", "--site-files", ";".join(map(str, site_files)), "--target", "label", "--classes",
              "benign,malignant", "--withdraw", "1", "--forget-fraction", "0.999", "--tracking-uri",
              f"sqlite:///{tmp_path / 'm.db'}", "--out", str(tmp_path / "out")], capsys)
    _one_line(p, "of site 1's")
    assert not (tmp_path / "m.db").exists()


# ---------------------------------------------------------------- the server and its sites, in-process


@pytest.fixture
def task_identity():
    """What Flower sets in a ServerApp/ClientApp process before messages are made."""
    from flwr.supercore.task_identity import TaskIdentity

    before = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = before


class LocalGrid:
    """A Flower Grid's transport, in-process: each message goes to the real ClientApp with its node's Context.

    As Flower's SuperNode does, an exception raised by the ClientApp comes back as an error reply with
    reason "<class 'T'>:<'message'>". `fail` makes a site raise for one message type (a failing disk, say).
    """

    runs = iter(range(1000, 10**6))  # a run id per grid: the ClientApp caches each (run, node)'s data

    def __init__(self, run_config: dict, n: int, node_config=None, fail: dict | None = None):
        from flwr.app import Context, RecordDict

        from client.client_app import app

        self.app, self.fail, run_id = app, fail or {}, next(LocalGrid.runs)
        self.contexts = {100 + k: Context(run_id=run_id, node_id=100 + k, state=RecordDict(), run_config=run_config,
                                          node_config={"partition-id": k, "num-partitions": n, **(node_config or {}).get(k, {})})
                         for k in range(n)}

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        from flwr.app import Error, Message

        out = []
        for m in messages:
            try:
                if self.fail.get(m.metadata.dst_node_id) == m.metadata.message_type:
                    raise OSError("No space left on device")
                out.append(self.app(m, self.contexts[m.metadata.dst_node_id]))
            except Exception as ex:
                out.append(Message(Error(code=2, reason=str(type(ex)) + ":<'" + str(ex) + "'>"), reply_to=m))
        return out


def _federation(tmp_path, site_files, node_config=None, fail=None, classes="benign,malignant", **settings):
    from unlearn_fl.apps import to_run_config
    from unlearn_fl.config import RunConfig
    from unlearn_fl.engine.federation import Federation

    cfg = RunConfig(site_files=tuple(map(str, site_files)), classes=classes, standardize_inputs=True,
                    tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", out=tmp_path / "out", **settings)
    rc = {**to_run_config(cfg), "target": "label"}
    return Federation(LocalGrid(rc, len(site_files), node_config, fail), cfg, timeout=5), cfg


def test_a_site_that_cannot_load_its_data_names_itself_and_the_server_reports_it(tmp_path, task_identity):
    from unlearn_fl.engine.federation import FederationError

    rng = np.random.default_rng(5)  # sites with integer class indices (no declared class names); site 2's "label" counts rows
    sites = [_csv(tmp_path / f"s{k}.csv", rng.integers(0, 2, 80), seed=k, target="label") for k in range(2)]
    sites.append(_csv(tmp_path / "quantity.csv", np.arange(80) + 7, seed=4, target="label"))
    fed, _ = _federation(tmp_path, sites, classes="")
    with pytest.raises(FederationError) as e:
        fed.discover(timeout=5)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("1 site(s) could not load their data: site 2 cannot load its data: ")
    assert "has 80 distinct values in" in msg and "(node 102)" in msg


def test_a_site_refuses_a_fraction_that_would_leave_it_no_rows_and_the_server_aborts_naming_it(tmp_path, task_identity, site_files):
    from unlearn_fl.config import WithdrawalPlan
    from unlearn_fl.engine.federation import WithdrawalAborted, with_request
    from unlearn_fl.requests import WithdrawalRequest

    fed, _ = _federation(tmp_path, site_files, withdrawals=[WithdrawalPlan(client_ids=(1,), fraction=0.999)])
    fed.discover(timeout=5)
    request = WithdrawalRequest(client_ids=(1,), fraction=0.999)
    n = fed.sites[1]["n_train"]
    with pytest.raises(WithdrawalAborted) as e:
        fed.count_forgotten(with_request({}, request), request)
    assert str(e.value) == (f"site 1 refused the request: forgetting 0.999 of its {n} training rows rounds to all {n} rows, "
                            "which would leave it none to train on: withdraw the whole site (fraction 1, no record list) "
                            "or forget fewer rows")


def _models(fed, cfg, seeds=(0, 1, 2)):
    from unlearn_fl.apps import make_model
    from unlearn_fl.models import reinitialized

    return [reinitialized(make_model("mlp", fed.input_shape, fed.n_classes, cfg.hidden), seed=s) for s in seeds]


def test_a_one_row_forget_set_is_audited_as_too_small_and_its_report_reads_back(tmp_path, task_identity, site_files):
    from unlearn_fl.engine.federation import with_request
    from unlearn_fl.report.build import audit_block
    from unlearn_fl.report.schema import AuditBlock
    from unlearn_fl.requests import WithdrawalRequest

    fed, cfg = _federation(tmp_path, site_files)
    fed.discover(timeout=5)
    fed.fit_scaler()
    request = WithdrawalRequest(client_ids=(1,), fraction=0.001)
    w = with_request({}, request)
    n_forget, _ = fed.count_forgotten(w, request)
    assert n_forget == 1  # 0.001 of ~160 rows rounds to 0; a withdrawal forgets at least one row
    before, after, retrain = _models(fed, cfg)
    audits = fed.audit({"before": before, "after": after, "retrain": retrain}, w, request, "prediction", reference="retrain")
    assert audits["after"].attacks[0].n_members == 1 and audits["after"].epsilon is None  # no ε from one row
    block = audit_block(audits, n_forget, cfg.audit)
    assert block.verdict == "inconclusive"
    assert "The forget set of 1 rows is too small to audit; need at least 50" in block.reasons[0]
    assert AuditBlock.model_validate_json(block.model_dump_json()) == block


def test_a_site_answering_with_an_error_is_named_with_its_error_everywhere_replies_are_collected(tmp_path, task_identity, site_files):
    from unlearn_fl.engine.federation import FederationError, WithdrawalAborted, with_request
    from unlearn_fl.engine.protocol import AUDIT, INPUTS
    from unlearn_fl.requests import WithdrawalRequest

    fed, cfg = _federation(tmp_path, site_files, fail={101: AUDIT, 102: INPUTS})
    fed.discover(timeout=5)
    with pytest.raises(FederationError) as e:  # the scaler needs every site: site 2 failing stops the run before training
        fed.fit_scaler()
    assert str(e.value) == ("the feature scaler needs every site's sums: site 2 answered with an error: "
                            "OSError: No space left on device")
    fed.scaler = None
    request = WithdrawalRequest(client_ids=(0, 1), fraction=0.5)
    w = with_request({}, request)
    before, after, _ = _models(fed, cfg)
    with pytest.raises(WithdrawalAborted) as e:
        fed.audit({"before": before, "after": after}, w, request, "prediction")
    assert str(e.value) == ("the audit could not run at every withdrawing site: site 1 answered with an error: "
                            "OSError: No space left on device")
    assert "did not answer" not in str(e.value)


# ---------------------------------------------------------------- one full run (`flwr run`)


def test_one_real_run_records_every_fault_kind_from_a_read_only_working_folder(tmp_path):
    """Faults 1, 2, 3, 6 and 7 in one real run (`flwr run`), started from a read-only working folder: a model name
    with a quote; 40 rows, DP-SGD noise 0.05 with the PRV accountant; a one-row forget set at site 1; site 2 failing
    every unlearning step. Everything records and reads back, and nothing lands in the working folder."""
    name = "o'brien-clinic"
    cwd, prefix = _read_only_dir(tmp_path / "cwd")
    store, out = tmp_path / "store", tmp_path / "out"
    store.mkdir()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4)).round(3)
    df = pd.DataFrame(X, columns=list("abcd"))
    df["label"] = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    df.to_csv(tmp_path / "small.csv", index=False)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    p = _run(["simulate", "--quiet", "--dataset", str(tmp_path / "small.csv"), "--target", "label", "--clients", "3",
              "--rounds", "2", "--dp-noise", "0.05", "--accountant", "prv", "--withdraw", "1", "--forget-fraction", "0.001",
              "--inject-failure", "2", "--model-name", name, "--tracking-uri", uri, "--out", str(out)], cwd, prefix,
             timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    # 1. The quoted name records and reads back.
    q = _run(["lineage", "--model-name", name, "--tracking-uri", uri, "--json"], cwd, prefix)
    assert q.returncode == 0, q.stderr[-3000:]
    rows = json.loads(q.stdout)
    assert [(r["version"], r["kind"]) for r in rows] == [("1", "trained"), ("2", "unlearned")]
    assert rows[1]["verdict"] and "production" in rows[0]["aliases"] + rows[1]["aliases"]
    summary = json.loads((out / "run-summary.json").read_text())
    assert summary["aborts"] == [] and len(summary["reports"]) == 1
    report = json.loads((out / summary["reports"][0] / "forgetting_report.json").read_text())
    acc = report["accounting"]
    # 3. PRV cannot compose σ = 0.05: the stated fallback, never a bare ∞ or null.
    assert acc["requested_accountant"] == "prv" and acc["accountant"] == "rdp" and "prv accountant" in acc["epsilon_note"]
    assert (acc["epsilon"] is None) == (acc["epsilon_status"] != "finite")
    assert "ε = inf" not in p.stdout and "privacy (rdp)" in p.stdout
    # 6. One forgotten row: inconclusive, with the reason, and a registered version.
    assert report["request"]["n_forget"] == 1 and report["audit"]["verdict"] == "inconclusive"
    assert any("forget set of 1 rows is too small to audit; need at least 50" in x for x in report["audit"]["reasons"])
    assert report["model"]["version"] == "2"
    # 7. The failing site is named with its own error, not as a site that "did not answer".
    notes = [x for x in report["audit"]["reasons"] if x.startswith("note: unlearning round")]
    assert notes and all("client 2 answered with an error: RuntimeError: client 2: injected failure" in x for x in notes)
    assert not any("did not answer" in x for x in notes)
    # 3 (b, c). Every report the run wrote reads back through `unlearn-fl report`.
    assert _reports_read_back(out, uri, name, cwd, prefix) == ["2"]
    # 2. The store, its artifacts and the report went where they were told.
    assert os.listdir(cwd) == [] and (store / "mlruns").is_dir()
