"""Data minimisation, checked on every message of a real Flower run.

What a site sends holds no raw examples, labels or record ids: only model parameters and the
declared aggregates of `unlearn_fl.engine.protocol.REPLIES`. One `unlearn-fl simulate` run (`flwr run`
on Flower's simulation engine, three sites with their own CSV files, part of one site withdrawn, one
site-trained RMIA reference) whose ClientApp is the library's `UnlearningClient` behind a Flower mod
that records every reply a site sends. Every reply is checked key by key against the declaration and
value by value against the sites' own files; then the report, the run summary, the MLflow registry
(tags, params, metrics, artefacts), any ledger and the terminal output are checked for record ids and
raw rows.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import pickle
import re
import signal
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unlearn_fl.audit.results import ModelAudit
from unlearn_fl.data import forget_mask
from unlearn_fl.engine import protocol
from unlearn_fl.engine.protocol import ARRAYS, CONFIG, MODEL_PARAMETERS, PER_MODEL, REPLIES, decode_withdrawals
from unlearn_fl.sites import load_site

ROOT = Path(__file__).parents[1]
CLASSES = "benign,malignant"
HIDDEN = 16  # no model dimension may coincide with a site's row count (checked below)
FRACTION = 0.3

CAPTURE_CLIENT = '''"""Test ClientApp: the project's UnlearningClient handlers behind a mod that records every reply a site sends."""

import pickle
import time
import uuid
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
from flwr.clientapp import ClientApp

from client.client_app import unlearner  # the library's UnlearningClient on this project's data and models

CAPTURE = Path({capture!r})


def _records(content):
    out = {{}}
    for name, rec in content.items():
        if isinstance(rec, ArrayRecord):
            out[name] = ("arrays", {{k: a.numpy() for k, a in rec.items()}})
        elif isinstance(rec, MetricRecord):
            out[name] = ("metrics", dict(rec))
        elif isinstance(rec, ConfigRecord):
            out[name] = ("config", dict(rec))
        else:
            out[name] = (type(rec).__name__, None)
    return out


def _save(entry):
    CAPTURE.mkdir(parents=True, exist_ok=True)
    (CAPTURE / f"{{time.time_ns()}}-{{uuid.uuid4().hex}}.pkl").write_bytes(pickle.dumps(entry))


def capture(msg, context, call_next):
    entry = {{"site": int(context.node_config["partition-id"]), "message_type": msg.metadata.message_type,
              "request": _records(msg.content)}}
    try:
        reply = call_next(msg, context)
    except BaseException as e:  # Flower turns it into an error reply: its text leaves the site too
        entry["raised"] = f"{{type(e).__name__}}: {{e}}"
        _save(entry)
        raise
    if reply.has_error():
        entry["error"] = str(reply.error.reason)
    else:
        entry["reply"] = _records(reply.content)
    _save(entry)
    return reply


app = ClientApp(mods=[capture])
unlearner.register(app)
'''


def _write_app(app: Path, capture: Path) -> None:
    """A Flower app folder: the project's ServerApp, the capturing ClientApp, the project's run config keys."""
    app.mkdir(parents=True)
    text = (ROOT / "pyproject.toml").read_text()
    text, n = re.subn(r'(?m)^clientapp\s*=\s*".*"$', 'clientapp = "capture_client:app"', text)
    assert n == 1, "pyproject.toml has no [tool.flwr.app.components] clientapp line"
    (app / "pyproject.toml").write_text(text)
    (app / "README.md").write_text("data-minimisation test app\n")
    (app / "capture_client.py").write_text(CAPTURE_CLIENT.format(capture=str(capture)))


@pytest.fixture(scope="module")
def run(tmp_path_factory, site_files):
    """One `unlearn-fl simulate` (in-process CLI, `flwr run` underneath) with the capturing ClientApp."""
    from unlearn_fl import cli

    tmp = tmp_path_factory.mktemp("minimisation")
    capture, app, out, db = tmp / "capture", tmp / "app", tmp / "out", tmp / "mlflow.db"
    _write_app(app, capture)
    argv = ["simulate", "--site-files", ";".join(map(str, site_files)), "--target", "label", "--classes", CLASSES,
            "--rounds", "2", "--local-epochs", "1", "--lr", "0.01", "--hidden", str(HIDDEN), "--withdraw", "1",
            "--forget-fraction", str(FRACTION), "--unlearn-rounds", "1", "--audit-references", "1",
            "--tracking-uri", f"sqlite:///{db}", "--out", str(out), "--model-name", "minimise", "--quiet", "--seed", "2",
            "--reason", "consent revoked"]
    stdout, stderr = io.StringIO(), io.StringIO()
    loggers = {n: logging.getLogger(n).level for n in ("flwr", "mlflow", "alembic")}
    sigterm = signal.getsignal(signal.SIGTERM)
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        mp.chdir(tmp)
        mp.setattr(cli, "APP_DIR", app)
        for k, v in {"RAY_DEDUP_LOGS": "0", "GIT_PYTHON_REFRESH": "quiet", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
                     "MLFLOW_LOGGING_LEVEL": "ERROR", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}.items():
            mp.setenv(k, v)  # what the CLI sets, undone after the run
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = cli.main(argv)
        finally:
            signal.signal(signal.SIGTERM, sigterm)
            for n, level in loggers.items():
                logging.getLogger(n).setLevel(level)
    assert code == 0, stderr.getvalue()[-3000:]
    entries = [pickle.loads(p.read_bytes()) for p in sorted(capture.glob("*.pkl"))]
    assert entries, "the capturing ClientApp recorded nothing: did flwr run load capture_client:app?"
    sites = [_site(k, f) for k, f in enumerate(site_files)]
    return dict(tmp=tmp, out=out, db=db, entries=entries, sites=sites, stdout=stdout.getvalue(), stderr=stderr.getvalue(),
                files=[Path(f) for f in site_files])


def _site(k: int, path) -> dict:
    """The site's file as ground truth: ids, raw rows, labels, its train/holdout split."""
    site = load_site(path, target="label", classes=CLASSES)
    df = pd.read_csv(path)
    return dict(k=k, site=site, ids=[str(x) for x in df["record_id"]],
                rows=df.drop(columns=["record_id", "label"]).to_numpy(dtype=np.float64),
                labels=[site.train.y, site.holdout.y])


# ------------------------------------------------------------------ what counts as data


def _numbers(obj, out: list[np.ndarray]) -> None:
    """Every numeric vector in a value: arrays (flattened), lists, dict values in order, nested JSON."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biuf" and obj.size:
            out.append(obj.astype(np.float64).ravel())
        return
    if isinstance(obj, str):
        s = obj.strip()
        if s[:1] in "[{":
            with contextlib.suppress(ValueError):
                _numbers(json.loads(s), out)
        return
    if isinstance(obj, dict):
        vals = [v for v in obj.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if vals:
            out.append(np.asarray(vals, dtype=np.float64))
        for v in obj.values():
            if not isinstance(v, (int, float)):
                _numbers(v, out)
        return
    if isinstance(obj, (list, tuple)):
        flat = [v for v in obj if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if flat and len(flat) == len(obj):
            out.append(np.asarray(flat, dtype=np.float64))
        else:
            for v in obj:
                _numbers(v, out)


def _strings(obj, out: list[str]) -> None:
    """Every string in a value, keys included, nested JSON included."""
    if isinstance(obj, str):
        out.append(obj)
        s = obj.strip()
        if s[:1] in "[{":
            with contextlib.suppress(ValueError):
                _strings(json.loads(s), out)
    elif isinstance(obj, bytes):
        out.append(obj.decode("utf-8", "replace"))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _strings(k, out)
            _strings(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _strings(v, out)


def _row_in(vec: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
    """A row of `rows` that appears, whole and in order, anywhere in `vec` (None: none does)."""
    d = rows.shape[1]
    if vec.size < d:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(vec, d)
    finite = np.isfinite(windows).all(axis=1)
    windows = windows[finite]
    for i in range(0, len(windows), 256):
        w = windows[i:i + 256, None, :]
        hit = np.isclose(w, rows[None], rtol=1e-5, atol=1e-6).all(axis=2)
        if hit.any():
            return rows[np.argwhere(hit)[0][1]]
    return None


def _is_label_vector(vec: np.ndarray, labels: list[np.ndarray]) -> bool:
    return any(vec.size == y.size and y.size > 1 and np.array_equal(vec, y.astype(np.float64)) for y in labels)


@pytest.fixture(scope="module")
def truth(run):
    """All sites' raw and scaled rows (as the sites train on them), label vectors, record ids, row counts."""
    scaler = None
    for e in run["entries"]:
        cfg = e["request"].get(CONFIG, (None, {}))[1]
        if cfg.get("input-mean"):
            scaler = (np.asarray(cfg["input-mean"], dtype=np.float64), np.asarray(cfg["input-scale"], dtype=np.float64))
            break
    assert scaler is not None, "the server never sent the federated scaler"
    rows, labels, ids, counts = [], [], [], {}
    withdrawals = {}
    for e in run["entries"]:
        cfg = e["request"].get(CONFIG, (None, {}))[1]
        withdrawals.update(decode_withdrawals(str(cfg.get("withdrawals", ""))))
    assert list(withdrawals) == [1] and withdrawals[1][0].fraction == FRACTION
    for s in run["sites"]:
        raw = s["rows"]
        rows += [raw, (raw - scaler[0]) / scaler[1]]
        site = s["site"]
        n = len(site.train)
        mask = np.zeros(n, dtype=bool)
        for w in withdrawals.get(s["k"], []):
            mask |= forget_mask(n, w.fraction, w.sample_key)
        labels += [site.train.y, site.holdout.y, site.train.y[mask], site.train.y[~mask], np.asarray(
            [CLASSES.split(",").index(v) for v in pd.read_csv(run["files"][s["k"]])["label"]])]
        ids += s["ids"]
        counts[s["k"]] = {n, len(site.holdout), int(mask.sum()), int((~mask).sum()), len(s["ids"])} - {0}
    return dict(rows=np.concatenate(rows), labels=labels, ids=ids, counts=counts, d=run["sites"][0]["rows"].shape[1])


def _no_data(where: str, value, truth: dict, counts: set[int] | None = None) -> None:
    """No record id in any string; no raw or scaled row, no label vector, no per-row vector in any number."""
    strings: list[str] = []
    _strings(value, strings)
    for s in strings:
        assert "patient-" not in s, f"{where}: a record id reached it: {s[:200]!r}"
    found = set(truth["ids"]) & set(re.findall(r"patient-\d+-\d+", " ".join(strings)))
    assert not found, f"{where}: record ids {sorted(found)[:3]}"
    if counts is not None and isinstance(value, dict):
        for key, arr in value.items():
            if isinstance(arr, np.ndarray) and arr.ndim:
                assert arr.shape[0] not in counts, \
                    f"{where}: array {key!r} of shape {arr.shape} has one entry per row of the site (row counts {sorted(counts)})"
    vectors: list[np.ndarray] = []
    _numbers(value, vectors)
    for v in vectors:
        row = _row_in(v, truth["rows"])
        assert row is None, f"{where}: holds a site's feature row {row.tolist()}"
        assert not _is_label_vector(v, truth["labels"]), f"{where}: holds a site's label vector"
        if counts is not None:
            assert v.size not in counts or v.size <= 1, \
                f"{where}: a vector of {v.size} values, one per row of the site (row counts {sorted(counts)})"


# ------------------------------------------------------------------ the messages


def test_every_handler_of_the_protocol_is_declared():
    from flwr.clientapp import ClientApp

    from unlearn_fl.engine.client import UnlearningClient

    app = ClientApp()
    UnlearningClient(model_fn=lambda: None, data_fn=lambda c: None).register(app)
    # Flower files the default action of `train` as "train.default"; every other type as it is.
    assert set(app._registered_funcs) == {"train.default" if t == protocol.TRAIN else t for t in REPLIES}
    for t, decl in REPLIES.items():
        assert decl.summary and decl.records(), t
        for keys in decl.records().values():
            assert all(isinstance(doc, str) and len(doc) > 5 for doc in keys.values()), t


def test_no_round_trip_is_repeated(run):
    """Each site is described once (the ServerApp's `describe_sites` hands its answer to the federation), the last
    training round's test evaluation is not asked again when unlearning starts, and an unlearning round's test and
    forget-set evaluation is one message, as are the evaluation and the retained statistics of the audited models
    (before, after, retrain: `audit-models`). Here: 2 training rounds, 1 unlearning round, a 2-round retrain, then the
    audited models' metrics, so 2 + 1 + 2 + 1 = 6 evaluations and one statistics query reach every site."""
    for site in (0, 1, 2):
        types = [e["message_type"] for e in run["entries"] if e["site"] == site]
        assert types.count(protocol.DESCRIBE) == 1, site
        assert types.count(protocol.UNLEARN) == 1 and types.count(protocol.EVALUATE) == 6, (site, types)
        assert types.count(protocol.STATS) == 1, (site, types)
    both = [e for e in run["entries"] if e["message_type"] in (protocol.EVALUATE, protocol.STATS)
            and e["request"][CONFIG][1].get("audit-models")]
    assert len(both) == 6 and all(e["request"][CONFIG][1]["audit-models"] == "before,after,retrain" for e in both)


def test_the_run_exercised_every_message_type_without_errors(run):
    seen = {e["message_type"] for e in run["entries"]}
    assert seen == set(REPLIES), f"not exercised: {set(REPLIES) - seen}; undeclared: {seen - set(REPLIES)}"
    failed = [(e["message_type"], e.get("raised") or e.get("error")) for e in run["entries"] if "reply" not in e]
    assert not failed
    by_type = {t: {e["site"] for e in run["entries"] if e["message_type"] == t} for t in seen}
    assert by_type[protocol.DESCRIBE] == by_type[protocol.TRAIN] == {0, 1, 2}
    assert by_type[protocol.COUNT] == by_type[protocol.AUDIT] == {1}  # only the withdrawing site audits its forget set
    audit = next(e for e in run["entries"] if e["message_type"] == protocol.AUDIT)
    assert audit["request"][CONFIG][1]["audit-models"] == "before,after,retrain"
    assert audit["request"][CONFIG][1]["audit-references"] == 1


def _declared(key: str, declared: dict[str, str], request_cfg: dict) -> bool:
    if key in declared:
        return True
    models = [m for m in str(request_cfg.get("audit-models", "")).split(",") if m]
    return any(PER_MODEL in d and key in {d.replace(PER_MODEL, m) for m in models} for d in declared)


def test_every_reply_carries_only_declared_keys(run):
    for e in run["entries"]:
        t, reply, request = e["message_type"], e["reply"], e["request"]
        where = f"site {e['site']} {t}"
        declared = REPLIES[t].records()
        assert set(reply) <= set(declared), f"{where}: undeclared records {set(reply) - set(declared)}"
        request_cfg = request.get(CONFIG, (None, {}))[1]
        for name, (kind, items) in reply.items():
            assert kind == name, f"{where}: record {name!r} is a {kind} record"
            if MODEL_PARAMETERS in declared[name]:
                sent = request[ARRAYS][1]
                assert list(items) == list(sent), f"{where}: arrays {sorted(set(items) ^ set(sent))} differ from the model's"
                assert all(items[k].shape == sent[k].shape for k in items), f"{where}: an array changed shape"
                continue
            undeclared = [k for k in items if not _declared(k, declared[name], request_cfg)]
            assert not undeclared, f"{where}: undeclared {name} keys {undeclared}"


def test_audit_summaries_are_summaries(run):
    """The audit JSON validates against `ModelAudit` (no extra fields) and its curves have bounded size."""
    audits = [(e, k, v) for e in run["entries"] if e["message_type"] == protocol.AUDIT for k, v in e["reply"][CONFIG][1].items()]
    assert {k for _, k, _ in audits} == {"audit-before", "audit-after", "audit-retrain"}
    for e, key, text in audits:
        a = ModelAudit.model_validate_json(text)
        for attack in a.attacks:
            assert attack.roc is None or len(attack.roc.fpr) <= 101
        assert len(a.loss_histogram["forget"]) == 40 and len(a.loss_histogram["edges"]) == 41
        if a.score_histogram is not None:
            assert len(a.score_histogram["forget"]) == 20
    after = ModelAudit.model_validate_json(next(v for _, k, v in audits if k == "audit-after"))
    assert [x.attack for x in after.attacks] == ["loss-threshold", "rmia-offline"]
    assert after.reference_cost is not None and after.reference_cost["references"] == 1


def test_no_reply_holds_rows_labels_or_record_ids(run, truth):
    # The check has teeth: no model dimension, histogram or curve length equals a row count.
    dims = {HIDDEN, truth["d"], 2, 40, 41, 20, 21}
    assert not dims & set().union(*truth["counts"].values()), (dims, truth["counts"])
    checked = 0
    for e in run["entries"]:
        where = f"site {e['site']} {e['message_type']} reply"
        for name, (_, items) in e["reply"].items():
            for key, value in items.items():
                _no_data(f"{where} {name}[{key!r}]", {key: value}, truth, truth["counts"][e["site"]])
                checked += 1
    assert checked > 100


def test_what_the_server_sends_holds_no_site_data_either(run, truth):
    """The server holds no client data: its messages carry models, the scaler, request ids and fractions."""
    for e in run["entries"]:
        for name, (kind, items) in e["request"].items():
            if kind != "arrays":
                _no_data(f"server -> site {e['site']} {e['message_type']} {name}", items, truth)


def _flower_error_reason(ex: BaseException) -> str:
    """The reason Flower puts in the error reply of a ClientApp that raised (flwr/supernode/runtime/run_clientapp.py,
    flwr/server/superlink/fleet/vce/vce_api.py): the exception's text travels to the server."""
    return str(type(ex)) + ":<'" + str(ex) + "'>"


@pytest.mark.parametrize("defect", ["duplicate id", "text cell"])
def test_an_error_reply_holds_no_record_id_or_cell(tmp_path, site_files, defect):
    """A site whose own file is malformed answers with an error: its text leaves the site too.

    Deployment path: the project's ClientApp loads node config `data-path` (apps.local_data) inside the handler."""
    from flwr.app import ConfigRecord, Context, Message, RecordDict

    from client.client_app import unlearner

    df = pd.read_csv(site_files[1])
    secret_id, secret_cell = str(df.loc[7, "record_id"]), "Jane Doe, 1970-01-01"
    if defect == "duplicate id":
        df.loc[9, "record_id"] = secret_id
    else:
        df["f3"] = df["f3"].astype(object)
        df.loc[9, "f3"] = secret_cell
    path = tmp_path / "site.csv"
    df.to_csv(path, index=False)
    ctx = Context(run_id=1, node_id=11, node_config={"partition-id": 1, "num-partitions": 3, "data-path": str(path)},
                  state=RecordDict(), run_config={"target": "label", "classes": CLASSES})
    from flwr.supercore.task_identity import TaskIdentity

    before = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    try:
        msg = Message(content=RecordDict({CONFIG: ConfigRecord({})}), dst_node_id=11, message_type=protocol.DESCRIBE)
        with pytest.raises(Exception) as raised:
            unlearner.describe(msg, ctx)
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = before
    reason = _flower_error_reason(raised.value)
    assert secret_id not in reason and "patient-" not in reason, f"the error reply names a record id: {reason}"
    assert "Jane Doe" not in reason, f"the error reply quotes a cell of the site's file: {reason}"


def test_the_checks_catch_a_leak(truth, run):
    """The same checks on replies that do leak: a raw row, a scaled row, a label vector, a record id."""
    site = run["sites"][1]
    leaks = {"row": {"sum": site["rows"][5].tolist()},
             "scaled row inside weights": {"w": np.concatenate([np.zeros(3), truth["rows"][len(site["rows"]) + 7], np.ones(2)])},
             "labels": {"y": site["site"].train.y.tolist()},
             "id": {"note": f"forgot {site['ids'][3]}"},
             "id in json": {"audit-after": json.dumps({"attacks": [], "ids": [site["ids"][0]]})},
             "per-row losses": {"losses": np.zeros(len(site["site"].holdout))},
             "per-row matrix": {"embeddings": np.zeros((len(site["site"].train), 3))}}
    for name, leak in leaks.items():
        with pytest.raises(AssertionError):
            _no_data(name, leak, truth, truth["counts"][1])


# ------------------------------------------------------------------ what the run left behind


def _texts(run) -> dict[str, str]:
    """Every file the run wrote (reports, summary, MLflow artefacts, stores) and its terminal output."""
    skip = {run["tmp"] / "capture", run["tmp"] / "app"}
    out = {"stdout": run["stdout"], "stderr": run["stderr"]}
    for p in run["tmp"].rglob("*"):
        if p.is_file() and not any(s in p.parents for s in skip):
            out[str(p.relative_to(run["tmp"]))] = p.read_bytes().decode("utf-8", "replace")
    return out


def test_reports_summary_and_artefacts_hold_digests_not_data(run, truth):
    texts = _texts(run)
    reports = [k for k in texts if k.endswith("forgetting_report.json")]
    assert reports and any(k.endswith(".html") for k in texts) and any("run-summary" in k for k in texts)
    for where, text in texts.items():
        assert "patient-" not in text, f"{where} holds a record id"
        if where.endswith(".json"):
            _no_data(where, json.loads(text), truth)
    from unlearn_fl.report.schema import ForgettingReport

    report = ForgettingReport.model_validate_json(texts[reports[0]])
    assert report.request.scope == "fraction" and report.request.client_ids == [1] and report.request.n_forget > 0
    assert report.dataset["dataset"].startswith("per-site data")


def _sqlite_values(db: Path) -> dict[str, list]:
    """Every value of every table of an sqlite file, by table."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        return {t: [v for row in con.execute(f'select * from "{t}"') for v in row] for t in tables}
    finally:
        con.close()


def test_registry_and_ledger_hold_digests_not_data(run, truth):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{run['db']}")
    versions = {str(v.version): v for v in c.search_model_versions("name='minimise'")}
    assert sorted(versions) == ["1", "2"]
    for v in versions.values():
        r = c.get_run(v.run_id)
        place = {"tags": v.tags, "params": r.data.params, "run tags": r.data.tags, "metrics": list(r.data.metrics)}
        _no_data(f"version {v.version}", place, truth)
        for k, value in v.tags.items():
            if k.endswith("digest"):
                assert re.fullmatch(r"[0-9a-f]{64}", value), (k, value)
    assert versions["2"].tags["unlearn_fl.n_forget"] == str(int(round(FRACTION * len(run["sites"][1]["site"].train))))
    # Every store the run wrote (the MLflow database, a ledger beside it): every value of every table.
    dbs = [p for p in run["tmp"].glob("*.db")]
    assert run["db"] in dbs
    for db in dbs:
        for table, values in _sqlite_values(db).items():
            _no_data(f"{db.name}:{table}", [v for v in values if isinstance(v, str)], truth)
            for v in values:
                if isinstance(v, bytes):
                    assert b"patient-" not in v, f"{db.name}:{table} holds a record id"
