"""`unlearn-fl feature` registers its release in a real MLflow store: versions, lineage, report, pyfunc predictions.

The central runs use the diabetes table (sensitive attribute: sex); the federated one a real Flower simulation.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from unlearn_fl import cli
from unlearn_fl.feature.barycenter import BarycenterProjector
from unlearn_fl.feature.registry import KIND_BASE, KIND_RELEASED, register_feature
from unlearn_fl.feature.release import FeatureRelease, central_releases
from unlearn_fl.feature.run import FeatureRunConfig, run_feature_fit
from unlearn_fl.feature.tabular import diabetes_frame
from unlearn_fl.report.schema import ForgettingReport, stored_digest
from unlearn_fl.tracking import TAG, is_complete

NAME = "feature-sex"


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _passes(f) -> bool:
    """The on-pass rule at --max-s-auc 0.6: both probes' AUCs after within it and the estimates agree."""
    return f.s_auc_after <= 0.6 and f.s_auc_gbm_after is not None and f.s_auc_gbm_after <= 0.6 and f.estimates_agree is True


def _tags(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    tags = client.get_model_version(name, version).tags or {}
    return {k[len(TAG):]: v for k, v in tags.items() if k.startswith(TAG)}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two central runs on one model: quantile (v2) and gaussian (v3), both children of the t = 0 model (v1)."""
    d = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    runs = {}
    for method in ("quantile", "gaussian"):
        out = d / f"out-{method}"
        code = cli.main(["feature", "--method", method, "--grid", "0,1", "--tracking-uri", uri, "--out", str(out)])
        assert code == 0
        runs[method] = ForgettingReport.model_validate_json((out / "forgetting_report.json").read_text())
    return {"uri": uri, "dir": d, "reports": runs}


@functools.lru_cache(maxsize=2)
def _fit(method: str):
    """run.py's own fit of the same run (deterministic given the seed): the projector, scaler and heads."""
    return run_feature_fit(FeatureRunConfig(method=method, grid=[0.0, 1.0]))


def _test_rows(fit) -> pd.DataFrame:
    raw = diabetes_frame().dropna().reset_index(drop=True)
    return raw.iloc[fit.test_idx].drop(columns=["progression_high"])


def test_release_and_its_parent_are_registered_with_lineage_tags_and_the_report(store):
    client = MlflowClient(store["uri"])
    versions = {str(mv.version): mv for mv in client.search_model_versions(f"name='{NAME}'")}
    assert sorted(versions) == ["1", "2", "3"]
    base = _tags(client, NAME, "1")
    assert base["kind"] == KIND_BASE and base["parent_version"] == "" and base["t"] == "0" and is_complete(versions["1"].tags)
    aliases = {a: str(v) for a, v in client.get_registered_model(NAME).aliases.items()}
    for version, method in (("2", "quantile"), ("3", "gaussian")):
        tags, report = _tags(client, NAME, version), store["reports"][method]
        f = report.feature
        assert is_complete(versions[version].tags)
        assert tags["kind"] == KIND_RELEASED and tags["parent_version"] == "1"  # the same t = 0 model, reused
        assert tags["sensitive"] == "sex" and tags["feature_method"] == method and float(tags["t"]) == f.t == 1.0
        assert float(tags["s_auc_before"]) == pytest.approx(f.s_auc_before, abs=1e-4)
        assert float(tags["s_auc_after"]) == pytest.approx(f.s_auc_after, abs=1e-4)
        assert tags["method"] == f"barycenter-{method}" and tags["request_id"] == report.request.request_id
        assert tags["contains_withdrawn"] == "false" and tags["clients"] == ""
        assert tags["outputs"] == "label,proba,features" and tags["default_output"] == "label"
        assert tags["release"] == ("production" if _passes(f) else "candidate")
        # the report: its model block is this version; the attached file and the local copy match the tag
        assert (report.model.name, report.model.version, report.model.parent_version) == (NAME, version, "1")
        attached = Path(client.download_artifacts(versions[version].run_id, "report/forgetting_report.json",
                                                  str(store["dir"] / f"dl-{version}")))
        assert stored_digest(attached.read_text()) == tags["report_digest"] == report.digest()
        html = client.download_artifacts(versions[version].run_id, "report/forgetting_report.html", str(store["dir"] / f"dl-{version}"))
        assert "sex" in Path(html).read_text()
    # production goes to the latest release within the S-AUC limit of both probes with agreeing estimates, candidate
    # to the latest other one
    released = {v: _passes(store["reports"][m].feature) for v, m in (("2", "quantile"), ("3", "gaussian"))}
    passing = [v for v, ok in released.items() if ok]
    failing = [v for v, ok in released.items() if not ok]
    assert aliases.get("production") == (passing[-1] if passing else None)
    assert aliases.get("candidate") == (failing[-1] if failing else None)


def test_lineage_and_report_commands_read_the_release(store, capsys):
    code, out, err = _run(["lineage", "--tracking-uri", store["uri"], "--model-name", NAME, "--json"], capsys)
    assert code == 0, err
    rows = {r["version"]: r for r in json.loads(out)}
    assert rows["1"]["kind"] == KIND_BASE and rows["2"]["parent_version"] == "1" and rows["3"]["parent_version"] == "1"
    assert rows["2"]["sensitive"] == "sex" and rows["3"]["feature_method"] == "gaussian"
    code, out, err = _run(["lineage", "--tracking-uri", store["uri"], "--model-name", NAME], capsys)
    assert code == 0 and "feature-unlearned method=barycenter-gaussian" in out
    # the tree says what each release removed and how far: the S-probe AUC before → after, from the version's tags
    g = rows["3"]
    assert f"S=sex t={g['t']} S-AUC {g['s_auc_before']}→{g['s_auc_after']}" in " ".join(out.split())  # rich wraps lines
    dest = store["dir"] / "fetched"
    code, out, err = _run(["report", "3", "--tracking-uri", store["uri"], "--model-name", NAME, "--dest", str(dest)], capsys)
    assert code == 0, err
    fetched = Path(out.split("report: ")[-1].strip())
    shown = ForgettingReport.model_validate_json(fetched.read_text())
    assert shown == store["reports"]["gaussian"] and shown.model.version == "3"
    # printed as `unlearn-fl feature` prints it, not as raw JSON
    f = shown.feature
    assert out.startswith("feature unlearning of 'sex' (gaussian, t=1) on diabetes") and not out.lstrip().startswith("{")
    assert f"S-probe AUC   {f.s_auc_before:.3f} -> {f.s_auc_after:.3f}" in out and f"task accuracy {f.utility_before:.3f}" in out
    assert f"model {NAME} v3 (parent v1)" in out
    # the t = 0 parent has no report: `report` says so in one line
    code, out, err = _run(["report", "1", "--tracking-uri", store["uri"], "--model-name", NAME, "--dest", str(dest)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no forgetting report" in err
    # a version or model that is not there: one line naming it and what to pass, and no folder left behind
    nowhere = store["dir"] / "not-written"
    for args, says in ((["abc"], "'abc' is not a model version number"), (["99"], f"{NAME!r} has no version 99"),
                       (["2", "--model-name", "other"], f"no model named 'other' in {store['uri']} (it holds {NAME!r})")):
        code, out, err = _run(["report", *args, "--tracking-uri", store["uri"], "--dest", str(nowhere),
                               *([] if "--model-name" in args else ["--model-name", NAME])], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err
        assert not nowhere.exists()


@pytest.mark.parametrize("method,version", [("quantile", "2"), ("gaussian", "3")])
def test_pyfunc_applies_scaler_maps_and_head_as_the_run_did(store, method, version):
    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
    fit = _fit(method)[1]
    rows = _test_rows(fit)
    X = (fit.table.X - fit.mean) / fit.scale
    te = fit.test_idx
    Z_run = fit.projector.transform(X[te], fit.table.s[te], t=1.0)  # run.py's own projection of the held-out rows
    Z = model.predict(rows, params={"output": "features"})
    assert list(Z.columns) == fit.table.feature_names and Z.index.equals(rows.index)
    assert np.abs(Z.to_numpy() - Z_run).max() < 1e-9
    proba = model.predict(rows, params={"output": "proba"})
    assert np.abs(proba.to_numpy() - fit.heads[1.0].predict_proba(Z_run)).max() < 1e-9
    labels = model.predict(rows)["progression_high"].to_numpy()
    assert np.array_equal(labels, fit.heads[1.0].predict(Z_run))
    report = ForgettingReport.model_validate_json(Path(store["dir"] / f"out-{method}" / "forgetting_report.json").read_text())
    assert np.mean(labels == fit.table.y[te]) == pytest.approx(report.feature.utility_after, abs=1e-12)
    sig = model.metadata.signature
    assert "sex" in sig.inputs.input_names() and "sex" not in sig.inputs.required_input_names()
    assert sig.params.to_dict()[0]["name"] == "output"


def test_default_runs_record_their_smoothing_and_the_gaussian_ids_are_kept(store):
    """A default quantile run smooths with `auto` (docs/method.md §3, "Values on a grid"): its report, the version's run
    and the registered maps' state record it, so its request id is not the one of runs made with the histogram before
    (feature-sex-853980672668, which `--smoothing histogram` still gets). The gaussian maps have no smoothing: their
    default run records none and keeps the id it had before the setting existed."""
    from unlearn_fl.feature.release import _projector_state

    ids = {m: r.request.request_id for m, r in store["reports"].items()}
    assert ids["gaussian"] == "feature-sex-c02a5e3b686e"
    assert ids["quantile"].startswith("feature-sex-") and ids["quantile"] != "feature-sex-853980672668"
    client = MlflowClient(store["uri"])
    mlflow.set_tracking_uri(store["uri"])
    for version, method, want in (("2", "quantile", "auto"), ("3", "gaussian", None)):
        assert store["reports"][method].method_config.get("smoothing") == want
        assert client.get_run(client.get_model_version(NAME, version).run_id).data.params.get("smoothing") == want
        release = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}").unwrap_python_model().release
        assert _projector_state(release.projector).get("smoothing") == want


def test_kernel_smoothing_is_recorded_and_released_with_its_maps(tmp_path, capsys):
    """`--smoothing kernel` (central): the report and the version's run record it, the request id differs from the
    default run's, and the registered model applies the kernel maps the run fitted (not the histogram ones)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, out, err = _run(["feature", "--smoothing", "kernel", "--grid", "0,1", "--tracking-uri", uri,
                           "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert "(quantile, t=1, kernel smoothing)" in out
    report = ForgettingReport.model_validate_json((tmp_path / "out" / "forgetting_report.json").read_text())
    assert report.method_config["smoothing"] == "kernel" and report.method == "barycenter-quantile"
    cfg = FeatureRunConfig(grid=[0.0, 1.0], smoothing="kernel")
    assert report.request.request_id == f"feature-sex-{cfg.digest()}" != "feature-sex-853980672668"
    client = MlflowClient(uri)
    assert client.get_run(client.get_model_version(NAME, "2").run_id).data.params["smoothing"] == "kernel"
    assert client.get_model_version(NAME, "2").tags["unlearn_fl.smoothing"] == "kernel"  # reviewers see it on the version
    assert "unlearn_fl.smoothing" not in client.get_model_version(NAME, "1").tags
    code, out, err = _run(["lineage", "--tracking-uri", uri, "--model-name", NAME], capsys)
    assert code == 0 and "smoothing=kernel" in out, out + err
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/2")
    assert model.unwrap_python_model().release.projector.smoothing == "kernel"
    fit = run_feature_fit(cfg)[1]
    rows = _test_rows(fit)
    X = (fit.table.X - fit.mean) / fit.scale
    te = fit.test_idx
    Z_run = fit.projector.transform(X[te], fit.table.s[te], t=1.0)
    Z = model.predict(rows, params={"output": "features"}).to_numpy()
    assert np.abs(Z - Z_run).max() < 1e-9
    hist = run_feature_fit(FeatureRunConfig(grid=[0.0, 1.0], smoothing="histogram"))[1]
    Z_hist = hist.projector.transform(X[te], fit.table.s[te], t=1.0)
    assert np.abs(Z - Z_hist).max() > 0.01
    labels = model.predict(rows)["progression_high"].to_numpy()
    assert np.mean(labels == fit.table.y[te]) == pytest.approx(report.feature.utility_after, abs=1e-12)


def test_federated_kernel_smoothing_reaches_the_server_the_sites_and_the_release(tmp_path, capsys):
    """`--clients 3 --smoothing kernel`, a real Flower simulation: the server's maps (registered) are the kernel maps
    of the sites' sketches, the sites apply the same maps (the pooled utility is that of the kernel maps), and the
    report and the release record the setting."""
    from sklearn.linear_model import LogisticRegression

    from unlearn_fl.data import DataSpec
    from unlearn_fl.engine.feature_exchange import local_rows, local_summary, merged_maps

    uri, out, name = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "out", "feature-sex-federated"
    code, printed, err = _run(["feature", "--clients", "3", "--smoothing", "kernel", "--grid", "0,1", "--head-rounds", "4",
                               "--tracking-uri", uri, "--out", str(out)], capsys)
    assert code == 0, err[-2000:]
    report = ForgettingReport.model_validate_json((out / "forgetting_report.json").read_text())
    assert report.method_config["smoothing"] == "kernel" and "kernel smoothing" in printed
    page = (out / "forgetting_report.html").read_text()  # a reviewer reads the setting and the heads in the HTML too
    assert "group laws of the quantile maps</th><td>kernel-smoothed" in page
    heads = report.method_config["head_accuracy"]
    assert (f"task heads&#x27; accuracy before / after (the released model, pooled site holdouts)</th>"
            f"<td>{heads['before']:.4g} / {heads['after']:.4g}<") in page
    scores = report.method_config["scores_s_auc"]
    assert f"S-probe AUC on the released model&#x27;s scores before / after</th><td>{scores['before']:.4g} / {scores['after']:.4g}<" in page
    assert "task accuracy before / after (pooled accuracy of each client&#x27;s logistic regression" in page
    assert "4 FedAvg rounds x 2 local epochs" in page and "4 FedAvg rounds" in report.method_config["head"]
    assert "rows the attribute was removed from" in page and "forgotten examples" not in page
    mlflow.set_tracking_uri(uri)
    proj = mlflow.pyfunc.load_model(f"models:/{name}/2").unwrap_python_model().release.projector
    spec = DataSpec(dataset=str(out / "diabetes.csv"), target="progression_high", num_clients=3, seed=0)
    summaries = [local_summary(spec, c, "sex", "quantile") for c in range(3)]
    for smoothing in ("kernel", "histogram"):
        want = merged_maps(spec, "sex", summaries, 0, smoothing)
        same = all(np.array_equal(a.values, b.values) and np.array_equal(a.levels, b.levels)
                   for ka, kb in zip(proj.knots_, want.knots_) for a, b in zip(ka, kb))
        assert same == (smoothing == "kernel") and proj.smoothing == "kernel"
    correct = n = 0
    for c in range(3):  # the sites' utility, recomputed with the kernel maps
        (Z, s, y), (Zh, sh, yh) = local_rows(spec, c, "sex"), local_rows(spec, c, "sex", "holdout")
        clf = LogisticRegression(max_iter=5000).fit(proj.transform(Z, s), y)
        correct += int((clf.predict(proj.transform(Zh, sh)) == yh).sum())
        n += len(yh)
    assert report.feature.utility_after == pytest.approx(correct / n, abs=1e-12)


def test_parent_is_the_model_before_unlearning_and_does_not_need_s(store):
    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    fit = _fit("gaussian")[1]
    rows = _test_rows(fit).drop(columns=["sex"])
    X = (fit.table.X - fit.mean) / fit.scale
    Z = model.predict(rows, params={"output": "features"}).to_numpy()
    assert np.abs(Z - X[fit.test_idx]).max() < 1e-12
    labels = model.predict(rows)["progression_high"].to_numpy()
    assert np.mean(labels == fit.table.y[fit.test_idx]) == pytest.approx(store["reports"]["gaussian"].feature.utility_before)


def test_missing_or_unseen_sensitive_value_is_one_clear_line(store):
    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/2")
    rows = _test_rows(_fit("quantile")[1]).head(5)
    with pytest.raises(MlflowException) as e:
        model.predict(rows.drop(columns=["sex"]))
    msg = str(e.value.message)
    assert len(msg.splitlines()) == 1 and "no column 'sex'" in msg and "pass 'sex' with every row" in msg
    bad = rows.copy()
    bad["sex"] = [1, 2, 3, 1, 2]
    with pytest.raises(MlflowException) as e:
        model.predict(bad)
    msg = str(e.value.message)
    assert len(msg.splitlines()) == 1 and "'sex' has value(s) 3 never seen at fit time (known: 1, 2)" in msg and "drop" in msg
    with pytest.raises(MlflowException, match="output 'scores' is not one of label, proba, features"):
        model.predict(rows, params={"output": "scores"})


def test_mid_ties_give_each_row_its_own_output(store):
    """Random tie ranks depend on the batch (as in run.py); params ties='mid' are per-row deterministic."""
    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/2")
    rows = _test_rows(_fit("quantile")[1]).head(20)
    whole = model.predict(rows, params={"output": "features", "ties": "mid"}).to_numpy()
    alone = np.vstack([model.predict(rows.iloc[[i]], params={"output": "features", "ties": "mid"}).to_numpy()
                       for i in range(len(rows))])
    assert np.array_equal(whole, alone)


def test_release_round_trips_exactly(tmp_path):
    for method in ("quantile", "gaussian"):
        fit = _fit(method)[1]
        _, after = central_releases(fit)
        back = FeatureRelease.load(after.save(tmp_path / method))
        rows = _test_rows(fit)
        assert back.digest() == after.digest()
        assert np.array_equal(back.predict(rows, "features").to_numpy(), after.predict(rows, "features").to_numpy())


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.mark.parametrize("argv,names", [
    (["--model-name", "a/b"], ("--model-name", "'/'")),
    (["--tracking-uri", "sqlite:////no/such/folder/m.db"], ("/no/such/folder", "does not exist")),
    (["--tracking-uri", "postgres://db/x"], ("unsupported tracking URI",)),
    (["--max-s-auc", "0.3"], ("--max-s-auc",)),
    (["--t", "1.5"], ("--t",)),
    (["--clients", "3", "--t", "nan"], ("--t",)),
    (["--smoothing", "kernel", "--method", "gaussian"], ("--smoothing kernel", "--method quantile")),
    (["--smoothing", "histogram", "--method", "gaussian"], ("--smoothing histogram", "--method quantile")),
])
def test_bad_input_exits_2_before_anything_is_written(tmp_path, monkeypatch, capsys, argv, names):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(["feature", "--out", "out", *argv], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert any(n in err for n in names), err
    assert _files(tmp_path) == []


def test_a_data_withdrawal_model_name_is_refused(store, tmp_path, capsys):
    client = MlflowClient(store["uri"])
    client.create_registered_model("unlearn-fl")
    mv = client.create_model_version("unlearn-fl", source=(tmp_path / "m").as_uri())
    client.set_model_version_tag("unlearn-fl", mv.version, TAG + "kind", "trained")
    before = _files(store["dir"])
    code, out, err = _run(["feature", "--model-name", "unlearn-fl", "--tracking-uri", store["uri"], "--out",
                           str(tmp_path / "o")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "holds data-withdrawal versions (kind trained)" in err
    assert _files(store["dir"]) == before and not (tmp_path / "o").exists()
    assert len(client.search_model_versions("name='unlearn-fl'")) == 1


def test_a_failure_after_the_version_exists_leaves_nothing(store, tmp_path, capsys):
    report, fit = run_feature_fit(FeatureRunConfig(method="gaussian", grid=[0.0, 1.0]))
    before, after = central_releases(fit)
    client = MlflowClient(store["uri"])
    n = len(client.search_model_versions(f"name='{NAME}'"))
    # a new model: neither the t = 0 version nor the release nor the registered model survive
    with pytest.raises(RuntimeError, match="injected failure"):
        register_feature(store["uri"], "feature-rollback", report, before, after, fail_after_version=True)
    assert client.search_model_versions("name='feature-rollback'") == []
    code, out, err = _run(["lineage", "--tracking-uri", store["uri"], "--model-name", "feature-rollback"], capsys)
    assert code == 2 and "no registered model 'feature-rollback'" in err
    # an existing model: the reused parent stays, the half-made version goes, with its artefacts (a new request id:
    # the same request's identical release is registered in the store already, and would be reused, not created)
    report.request.request_id += "-rollback"
    models = len(list((store["dir"] / "mlruns").rglob("MLmodel")))
    with pytest.raises(RuntimeError, match="injected failure"):
        register_feature(store["uri"], NAME, report, before, after, fail_after_version=True)
    versions = client.search_model_versions(f"name='{NAME}'")
    assert len(versions) == n and all(is_complete(mv.tags) for mv in versions)
    assert len(list((store["dir"] / "mlruns").rglob("MLmodel"))) == models
    assert report.model.version is None  # the caller's report was not stamped with a version that does not exist


def test_federated_release_holds_the_sites_maps_and_predicts_as_the_central_fit(store, tmp_path, capsys):
    """A real Flower simulation over 3 sites (gaussian maps from the sites' summaries). The registered model's maps
    are the central maps of the same rows: its projected features equal, to 1e-6, those of a release with the maps
    fitted centrally on the pooled site rows (same encoding and scaler), both loaded as MLflow pyfuncs."""
    from unlearn_fl.data import DataSpec
    from unlearn_fl.engine.feature_exchange import local_rows
    from unlearn_fl.feature.registry import save_pyfunc
    from unlearn_fl.feature.release import federated_releases

    uri, out, name = store["uri"], tmp_path / "out", "feature-sex-federated"
    code, printed, err = _run(["feature", "--clients", "3", "--method", "gaussian", "--tracking-uri", uri,
                               "--model-name", name, "--out", str(out)], capsys)
    assert code == 0, err[-2000:]
    report = ForgettingReport.model_validate_json((out / "forgetting_report.json").read_text())
    # What the sites' summaries bought, measured on the server's own rows: S mostly gone, the task kept.
    f = report.feature
    assert report.request.kind == "feature" and report.request.client_ids == [0, 1, 2]
    assert sum(report.dataset["rows_per_client"]) == report.request.n_forget
    assert f.s_auc_before > 0.65 and f.s_auc_after < f.s_auc_before - 0.15 and abs(f.s_auc_after - 0.5) < 0.12
    assert f.utility_after > f.utility_before - 0.1
    assert [pt.t for pt in f.pareto] == [0.0, 0.25, 0.5, 0.75, 1.0]  # the default grid
    client = MlflowClient(uri)
    tags = _tags(client, name, "2")
    assert tags["kind"] == KIND_RELEASED and tags["parent_version"] == "1" and tags["clients"] == "0,1,2"
    assert tags["method"] == "barycenter-gaussian-federated" and tags["outputs"] == "label,proba,features"
    assert tags["report_digest"] == report.digest() and report.model.version == "2"
    assert _tags(client, name, "1")["kind"] == KIND_BASE

    spec = DataSpec(dataset=str(out / "diabetes.csv"), target="progression_high", num_clients=3, seed=0)
    Z = np.concatenate([local_rows(spec, c, "sex")[0] for c in range(3)])
    s = np.concatenate([local_rows(spec, c, "sex")[1] for c in range(3)])
    central = BarycenterProjector(method="gaussian", random_state=0).fit(Z, s)
    central_model = mlflow.pyfunc.load_model(str(save_pyfunc(federated_releases(spec, "sex", central, 1.0)[1],
                                                             tmp_path / "central-model")))
    mlflow.set_tracking_uri(uri)
    registered = mlflow.pyfunc.load_model(f"models:/{name}/2")
    rows = pd.read_csv(out / "diabetes.csv").drop(columns=["progression_high"])
    got = registered.predict(rows, params={"output": "features"}).to_numpy()
    want = central_model.predict(rows, params={"output": "features"}).to_numpy()
    assert got.shape == (len(rows), 9) and np.abs(got - want).max() < 1e-6
    # The task head the sites trained by FedAvg on the projected features: labels by default, and what the report says.
    y = pd.read_csv(out / "diabetes.csv")["progression_high"].to_numpy()
    labels = registered.predict(rows)
    proba = registered.predict(rows, params={"output": "proba"}).to_numpy()
    got_y = labels["progression_high"].astype(str).to_numpy()  # the table's class names, as a model release gives them
    assert list(labels.columns) == ["progression_high"] and set(got_y) <= {"0", "1"}
    assert np.allclose(proba.sum(axis=1), 1.0) and (got_y == proba.argmax(1).astype(str)).all()
    assert (got_y == y.astype(str)).mean() > 0.65  # a logistic regression fits about 0.73 here
    assert abs(report.method_config["head_accuracy"]["after"] - report.feature.utility_after) < 0.1
    with pytest.raises(MlflowException, match="no column 'sex'"):
        registered.predict(rows.drop(columns=["sex"]))


def test_federated_release_with_a_text_sensitive_column_is_registered_and_predicts_as_the_central_fit(store, tmp_path,
                                                                                                      capsys):
    """A yes/no S (afam, one-hot encoded by the loader as afam=no, afam=yes) through a real 3-site Flower simulation:
    the release is registered, loads as a pyfunc and maps raw rows carrying the text S column; its projected features
    equal, to 1e-6, those of a release with the maps fitted centrally on the pooled site rows. S is handled as the
    central run on the same table handles it: a string column of the signature whose categories are the groups."""
    from unlearn_fl.data import DataSpec
    from unlearn_fl.engine.feature_exchange import local_rows
    from unlearn_fl.feature.registry import save_pyfunc
    from unlearn_fl.feature.release import federated_releases
    from unlearn_fl.feature.tabular import synthetic_fairness_frame

    csv = tmp_path / "fair.csv"
    synthetic_fairness_frame(1200, seed=0).to_csv(csv, index=False)
    uri = store["uri"]
    common = ["--dataset", str(csv), "--target", "wage", "--sensitive", "afam", "--method", "gaussian", "--grid", "0,1",
              "--tracking-uri", uri]
    # Default names: a federated release (the sites' head) never takes `production` from a central one (its own head).
    code, printed, err = _run(["feature", "--clients", "3", *common, "--out", str(tmp_path / "fed")], capsys)
    assert code == 0, err[-2000:]
    code, printed, err = _run(["feature", *common, "--out", str(tmp_path / "central")], capsys)
    assert code == 0, err[-2000:]
    client = MlflowClient(uri)
    assert {m.name for m in client.search_registered_models()} >= {"feature-afam-federated", "feature-afam"}
    tags = _tags(client, "feature-afam-federated", "2")
    assert tags["kind"] == KIND_RELEASED and tags["parent_version"] == "1" and tags["clients"] == "0,1,2"
    assert tags["sensitive"] == "afam" and tags["method"] == "barycenter-gaussian-federated"
    # The report measures S on the server's rows by category, as the central path does.
    fed_report = ForgettingReport.model_validate_json((tmp_path / "fed" / "forgetting_report.json").read_text())
    f = fed_report.feature
    assert set(fed_report.dataset["test_groups"]) == {"no", "yes"}
    assert f.s_auc_before > 0.7 and abs(f.s_auc_after - 0.5) < 0.1
    # Two-moment maps leave one-hot columns readable to gradient boosting: an MI that rose is flagged, never shown alone.
    assert f.mi_after <= f.mi_before or f.estimates_agree is False

    mlflow.set_tracking_uri(uri)
    registered = mlflow.pyfunc.load_model("models:/feature-afam-federated/2")
    central_run = mlflow.pyfunc.load_model("models:/feature-afam/2")
    fed_release, central_release = (m.unwrap_python_model().release for m in (registered, central_run))
    for m, rel in ((registered, fed_release), (central_run, central_release)):
        assert rel.groups == ["no", "yes"] and rel.s_type == "string" and "afam" not in rel.inputs
        assert not any(col == "afam" for col, _ in rel.encoded)  # neither of S's indicator columns is a feature
        spec_s = [c for c in m.metadata.signature.inputs.to_dict() if c["name"] == "afam"]
        assert [(c["name"], c["required"]) for c in spec_s] == [("afam", False)]  # listed; the model checks it

    spec = DataSpec(dataset=str(csv), target="wage", num_clients=3, seed=0)
    parts = [local_rows(spec, c, "afam") for c in range(3)]
    Z, s = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    central = BarycenterProjector(method="gaussian", random_state=0).fit(Z, s)
    central_model = mlflow.pyfunc.load_model(str(save_pyfunc(federated_releases(spec, "afam", central, 1.0)[1],
                                                             tmp_path / "central-model")))
    rows = pd.read_csv(csv).drop(columns=["wage"])
    assert not pd.api.types.is_numeric_dtype(rows["afam"]) and set(rows["afam"]) == {"no", "yes"}
    got = registered.predict(rows, params={"output": "features"}).to_numpy()
    want = central_model.predict(rows, params={"output": "features"}).to_numpy()
    assert got.shape == (len(rows), 12) and np.abs(got - want).max() < 1e-6
    assert central_run.predict(rows, params={"output": "features"}).shape == (len(rows), 12)
    for m in (registered, central_run):
        bad = rows.head(3).copy()
        bad["afam"] = ["no", "maybe", "yes"]
        with pytest.raises(MlflowException, match=r"column 'afam' has value\(s\) maybe never seen at fit time \(known: no, yes\)"):
            m.predict(bad)
        with pytest.raises(MlflowException, match="no column 'afam'"):
            m.predict(rows.head(3).drop(columns=["afam"]))


def _moment_matched_csv(path: Path, n: int = 600) -> Path:
    """x's law differs by group g beyond its mean and variance: g=a at ±1, g=b at −1, 1 or 3 (a little noise). Gaussian
    maps equalise the first two moments, so the logistic probe drops to chance, but they move b's atoms off a's: the
    groups' supports become disjoint, and a gradient-boosting probe separates them better than before."""
    rng = np.random.default_rng(0)
    g = rng.choice(["a", "b"], n)
    a = rng.choice([-1.0, 1.0], n)
    b = rng.choice([-1.0, 1.0, 3.0], n, p=[0.25, 0.25, 0.5])
    x = np.where(g == "a", a, b) + rng.normal(0.0, 0.01, n)
    u = rng.normal(size=n)
    pd.DataFrame({"g": g, "x": x, "u": u, "y": np.where(u + rng.normal(0, 0.5, n) > 0, "hi", "lo")}).to_csv(path, index=False)
    return path


def test_a_release_the_gradient_boosting_probe_still_separates_is_not_promoted(store, tmp_path, capsys):
    """Promotion under --promote on-pass needs the logistic S-probe AUC, the gradient-boosting probe's AUC after, and
    the estimates' agreement: here the logistic probe falls to chance (within --max-s-auc), the gradient-boosting
    probe still separates S (AUC ≈ 1) and the report flags the disagreement, so the release gets `candidate` and the
    CLI says why in one line."""
    csv = _moment_matched_csv(tmp_path / "m.csv")
    name = "feature-moment-matched"
    code, out, err = _run(["feature", "--dataset", str(csv), "--sensitive", "g", "--target", "y", "--method", "gaussian",
                           "--grid", "0,1", "--tracking-uri", store["uri"], "--model-name", name, "--out",
                           str(tmp_path / "out")], capsys)
    assert code == 0, err[-2000:]
    f = ForgettingReport.model_validate_json((tmp_path / "out" / "forgetting_report.json").read_text()).feature
    assert f.s_auc_after <= 0.6 and f.s_auc_gbm_after > 0.95  # the case of the bug: the logistic probe alone passed
    assert f.estimates_agree is False and f.disagreement
    client = MlflowClient(store["uri"])
    aliases = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
    assert aliases == {"candidate": "2"}
    tags = _tags(client, name, "2")
    assert tags["release"] == "candidate" and float(tags["s_auc_gbm_after"]) == pytest.approx(f.s_auc_gbm_after, abs=1e-4)
    assert tags["estimates_agree"] == "false"
    [line] = [ln for ln in out.splitlines() if ln.startswith(f"model {name} v2")]
    assert "@candidate (not promoted: " in line and "gradient-boosting probe AUC" in line and "disagree" in line


def test_promotion_needs_both_probes_within_the_limit_and_agreeing_estimates():
    from unlearn_fl.feature.registry import promotion_gate
    from unlearn_fl.report.schema import FeatureBlock

    ok = FeatureBlock(sensitive="s", method="gaussian", t=1.0, mi_before=0.2, mi_after=0.01, s_auc_before=0.8,
                      s_auc_after=0.52, utility_before=0.7, utility_after=0.69, s_auc_gbm_before=0.8, s_auc_gbm_after=0.55,
                      estimates_agree=True)
    passed, why = promotion_gate(ok, 0.6)
    assert passed and "0.520 <= 0.6" in why and "0.550 <= 0.6" in why
    for change, words in (({"s_auc_after": 0.61}, "S-probe AUC 0.610 > 0.6"),
                          ({"s_auc_gbm_after": 0.99}, "gradient-boosting probe AUC 0.990 > 0.6"),
                          ({"s_auc_gbm_after": None}, "no gradient-boosting probe AUC"),
                          ({"estimates_agree": False, "disagreement": "the probes moved apart"},
                           "the estimates disagree: the probes moved apart"),
                          ({"estimates_agree": None}, "does not say whether the estimates agree")):
        passed, why = promotion_gate(ok.model_copy(update=change), 0.6)
        assert not passed and why.startswith("not promoted: ") and words in why and "\n" not in why


def test_text_columns_and_a_text_attribute_are_encoded_from_raw_rows(tmp_path):
    """A table with a text feature (one-hot at fit time) and a text S: the pyfunc takes the raw rows."""
    from unlearn_fl.feature.registry import save_pyfunc

    rng = np.random.default_rng(0)
    n = 300
    g = rng.choice(["f", "m"], n)
    df = pd.DataFrame({"group": g, "city": rng.choice(["a", "b", "c"], n), "age": rng.integers(20, 70, n),
                       "x": rng.normal(size=n) + 1.5 * (g == "m"), "label": rng.choice(["yes", "no"], n)})
    df.to_csv(tmp_path / "t.csv", index=False)
    report, fit = run_feature_fit(FeatureRunConfig(dataset=str(tmp_path / "t.csv"), sensitive="group", target="label",
                                                   method="quantile", grid=[0.0, 1.0]))
    _, after = central_releases(fit)
    assert after.inputs == {"age": "long", "x": "double", "city": "string"} and after.s_type == "string"
    model = mlflow.pyfunc.load_model(str(save_pyfunc(after, tmp_path / "model")))
    rows = df.iloc[fit.test_idx].drop(columns=["label"])
    X = (fit.table.X - fit.mean) / fit.scale
    Z_run = fit.projector.transform(X[fit.test_idx], fit.table.s[fit.test_idx], t=1.0)
    assert np.abs(model.predict(rows, params={"output": "features"}).to_numpy() - Z_run).max() < 1e-12
    labels = model.predict(rows)["label"].to_numpy()
    assert np.mean(labels == fit.table.y[fit.test_idx]) == pytest.approx(report.feature.utility_after, abs=1e-12)
    bad = rows.head(3).copy()
    bad["city"] = ["a", "z", "b"]
    with pytest.raises(MlflowException, match=r"column 'city' has value\(s\) z never seen at fit time \(known: a, b, c\)"):
        model.predict(bad)
    bad = rows.head(3).copy()
    bad["group"] = ["f", "x", "m"]
    with pytest.raises(MlflowException, match=r"column 'group' has value\(s\) x never seen at fit time \(known: f, m\)"):
        model.predict(bad)
