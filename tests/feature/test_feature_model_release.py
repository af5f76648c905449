"""S out of a federated model, released and registered (issue #12 items 1 and 4): `unlearn-fl feature --clients N
--outcome embedding|scores` (post hoc) and `--lam` (in training), through real Flower simulations into a real MLflow
store; the release's numpy network against the torch model it came from.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from unlearn_fl import cli
from unlearn_fl.data import DataSpec, Split, federation
from unlearn_fl.engine.feature_exchange import representation_rows, sensitive_values
from unlearn_fl.feature.network import Network
from unlearn_fl.feature.registry import KIND_BASE, KIND_RELEASED, save_pyfunc
from unlearn_fl.feature.release import FeatureRelease, Head, network_release
from unlearn_fl.feature.representation import gaussian_shift_frame, representation, unlearn_representation
from unlearn_fl.information.dependence import measure
from unlearn_fl.models import make_model, train_epochs
from unlearn_fl.report.schema import ForgettingReport
from unlearn_fl.tracking import TAG

NAME = "feature-s-model"
FLOWER = ["--clients", "3", "--rounds", "10"]
POST_HOC = ["--head-rounds", "3", "--grid", "0,0.5,1", "--method", "gaussian"]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _tags(client: MlflowClient, version: str) -> dict[str, str]:
    tags = client.get_model_version(NAME, version).tags or {}
    return {k[len(TAG):]: v for k, v in tags.items() if k.startswith(TAG)}


# ------------------------------------------------------------------ the network, without Flower or MLflow


@pytest.mark.parametrize("hidden", [(16,), (12, 8)])
def test_the_release_network_computes_what_the_torch_model_computes(hidden):
    torch.manual_seed(0)
    model = make_model(7, 3, hidden, seed=1)
    X = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
    net_e, w, b = Network.from_state(model.state_dict(), "embedding")
    assert np.abs(net_e.represent(X) - representation(model, X, "embedding")).max() < 1e-5
    head = Head.from_linear(["a", "b", "c"], w, b)
    with torch.no_grad():
        p = torch.softmax(model(torch.as_tensor(X)), dim=1).numpy()
    assert np.abs(head.proba(net_e.activate(net_e.represent(X))) - p).max() < 1e-5
    net_s, w, b = Network.from_state(model.state_dict(), "scores")
    assert np.abs(net_s.represent(X) - representation(model, X, "scores")).max() < 1e-5
    assert np.abs(Head.from_linear(["a", "b", "c"], w, b).proba(net_s.represent(X)) - p).max() < 1e-5


def test_a_two_class_linear_head_keeps_its_softmax_probabilities():
    rng = np.random.default_rng(1)
    W, bias, Z = rng.normal(size=(2, 5)), rng.normal(size=2), rng.normal(size=(40, 5))
    logits = Z @ W.T + bias
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    head = Head.from_linear(["no", "yes"], W, bias)
    assert np.abs(head.proba(Z) - want).max() < 1e-12
    assert list(head.predict(Z)) == list(np.array(["no", "yes"])[want.argmax(1)])
    with pytest.raises(ValueError, match="2 classes"):
        Head.from_linear(["no", "yes"], W[:1], bias[:1])


def test_a_projected_embedding_release_predicts_as_the_central_unlearning_and_round_trips(tmp_path):
    """Central post-hoc unlearning (unlearn_representation) of a model trained on the federation's rows, packed as a
    release: raw CSV rows -> the pyfunc's probabilities equal the torch pipeline's; save/load keeps every number."""
    path = tmp_path / "shift.csv"
    gaussian_shift_frame(900, seed=2).to_csv(path, index=False)
    spec = DataSpec(dataset=str(path), target="y", num_clients=3, seed=0)
    X, s, y = (np.concatenate(p) for p in zip(*[representation_rows(spec, c, "s") for c in range(3)]))
    model = make_model(X.shape[1], 2, (16,), seed=0)
    train_epochs(model, Split(X, y), 10, 0.01, seed=0)
    run = unlearn_representation(model, X, s, y, t=1.0, method="gaussian", epochs=5)
    net, _, _ = Network.from_state(model.state_dict(), "embedding")
    head = run.head.state_dict()
    release = network_release(spec, "s", net, head["weight"].numpy(), head["bias"].numpy(), projector=run.projector, t=1.0)
    assert release.needs_sensitive and "s" in release.inputs
    f = federation(spec)
    test = f.scaled(f.test_idx)
    s_te = sensitive_values(spec, "s", f.test_idx)
    rows = pd.read_csv(path).iloc[f.test_idx].drop(columns=["y"])
    with torch.no_grad():
        want = torch.softmax(run.head(torch.as_tensor(run.embed(test.X, s_te), dtype=torch.float32)), 1).numpy()
    pyfunc = mlflow.pyfunc.load_model(str(save_pyfunc(release, tmp_path / "model")))
    got = pyfunc.predict(rows, params={"output": "proba"}).to_numpy()
    assert got.shape == (len(rows), 2) and np.abs(got - want).max() < 1e-4
    back = FeatureRelease.load(release.save(tmp_path / "r"))
    assert back.digest() == release.digest()
    assert np.array_equal(back.predict(rows, "proba").to_numpy(), release.predict(rows, "proba").to_numpy())
    with pytest.raises(MlflowException, match="no column 's'"):
        pyfunc.predict(rows.drop(columns=["s"]))


# ------------------------------------------------------------------ the CLI through Flower into MLflow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One store, three runs on one table: post hoc on the embedding (v2), in training with λ = 10 (v3, which takes
    `production`), and the first command again (no new version, no alias moved); v1 is the federation's base."""
    d = tmp_path_factory.mktemp("model-release")
    path = d / "shift.csv"
    gaussian_shift_frame(1500, seed=0).to_csv(path, index=False)
    uri = f"sqlite:///{d / 'mlflow.db'}"
    common = ["feature", "--dataset", str(path), "--sensitive", "s", "--target", "y", "--tracking-uri", uri, *FLOWER]
    out = {}
    for key, extra in (("embedding", ["--outcome", "embedding", *POST_HOC]), ("lam", ["--lam", "10"]),
                       ("again", ["--outcome", "embedding", *POST_HOC])):
        code = cli.main([*common, *extra, "--out", str(d / key)])
        assert code == 0
        out[key] = ForgettingReport.model_validate_json((d / key / "forgetting_report.json").read_text())
    return {"uri": uri, "dir": d, "path": path, "reports": out,
            "spec": DataSpec(dataset=str(path), target="y", num_clients=3, seed=0)}


def test_the_release_and_its_base_are_registered_once_with_lineage_tags(runs):
    client = MlflowClient(runs["uri"])
    versions = sorted(int(mv.version) for mv in client.search_model_versions(f"name='{NAME}'"))
    assert versions == [1, 2, 3]  # the repeated run registered nothing new
    base, post, lam = _tags(client, "1"), _tags(client, "2"), _tags(client, "3")
    assert base["kind"] == KIND_BASE and post["kind"] == lam["kind"] == KIND_RELEASED
    assert post["parent_version"] == lam["parent_version"] == "1" and post["clients"] == "0,1,2"
    assert post["outcome"] == "embedding" and post["t"] == "1" and "lam" not in post
    assert lam["lam"] == "10" and lam["method"] == "regularized-conditional_entropy-federated"
    r = runs["reports"]
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "3"  # the re-run took nothing back
    assert r["again"].model.version == "2" and r["again"].digest() == r["embedding"].digest() == post["report_digest"]
    assert r["lam"].feature.lam == 10 and r["lam"].feature.outcome == "scores"
    html = {k: (runs["dir"] / k / "forgetting_report.html").read_text() for k in ("embedding", "lam")}
    assert "the model&#x27;s last hidden layer" in html["embedding"] or "the model's last hidden layer" in html["embedding"]
    assert "λ (in training)" in html["lam"] and "λ (in training)" not in html["embedding"]


def test_the_registered_models_are_the_measured_ones(runs):
    """The report's S-probe AUCs were measured on the server's test rows from the models in the federation; the
    registered pyfuncs, fed those rows raw from the CSV, reproduce them, and the base reads no projection."""
    spec = runs["spec"]
    f = federation(spec)
    rows = pd.read_csv(runs["path"]).iloc[f.test_idx].drop(columns=["y"])
    s_te = sensitive_values(spec, "s", f.test_idx)
    mlflow.set_tracking_uri(runs["uri"])
    proba = {v: mlflow.pyfunc.load_model(f"models:/{NAME}/{v}").predict(rows, params={"output": "proba"}).to_numpy()
             for v in ("1", "2", "3")}
    emb, lam = runs["reports"]["embedding"].feature, runs["reports"]["lam"].feature
    for p, want in ((proba["1"], emb.s_auc_before), (proba["2"], emb.s_auc_after), (proba["3"], lam.s_auc_after)):
        assert abs(measure(p, s_te, "logistic", 5, 3, 0).s_auc - want) < 2e-3
    assert emb.s_auc_before > 0.6 and emb.s_auc_after < 0.56 and lam.s_auc_after < emb.s_auc_before - 0.05
    labels = mlflow.pyfunc.load_model(f"models:/{NAME}/2").predict(rows)
    assert list(labels.columns) == ["y"] and set(labels["y"]) <= {"high", "low"}


def test_rows_the_model_cannot_read_are_refused_in_one_line_by_the_model_itself(runs):
    """Not by MLflow's schema check, which prints the whole input and refuses 0.0 for a whole-number column."""
    mlflow.set_tracking_uri(runs["uri"])
    rows = pd.read_csv(runs["path"]).head(5).drop(columns=["y"])
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/2")
    want = model.predict(rows, params={"output": "proba"}).to_numpy()
    assert np.array_equal(model.predict(rows.assign(s=rows["s"].astype(float)), params={"output": "proba"}).to_numpy(), want)
    for bad, match in ((rows.drop(columns=["s"]), "no column 's'"), (rows.assign(s=7), "never seen"),
                       (rows.assign(s=0.5), "never seen"), (rows.assign(s=[0, None, 1, 0, 1]), "column 's' is missing"),
                       (rows.drop(columns=["x3"]), "lacks column"), (rows.assign(x1="a"), "not a number"),
                       (rows.head(0), "no rows")):
        with pytest.raises(MlflowException, match=match) as e:
            model.predict(bad)
        assert len(str(e.value).strip().splitlines()) == 1, str(e.value)


def test_lineage_shows_what_each_release_removed(runs, capsys):
    code, out, err = _run(["lineage", "--tracking-uri", runs["uri"], "--model-name", NAME], capsys)
    flat = " ".join(out.split())
    assert code == 0 and "Z=embedding t=1" in flat and "λ=10" in flat, out


@pytest.mark.parametrize("argv,names", [
    (["--outcome", "embedding"], ("--clients N",)),
    (["--clients", "3", "--lam", "-1"], ("--lam",)),
    (["--clients", "3", "--lam", "1", "--outcome", "embedding"], ("--outcome scores",)),
    (["--clients", "0"], ("--clients 0", "central")),
    (["--clients", "3", "--outcome", "scores", "--hidden", "0"], ("--hidden",)),
    (["--clients", "3", "--outcome", "scores", "--rounds", "0"], ("--rounds",)),
    (["--clients", "3", "--outcome", "scores", "--objective", "energy"], ("--objective applies to --lam training only",)),
    (["--clients", "3", "--lam", "3", "--method", "gaussian", "--grid", "0,1"], ("--grid applies", "--method applies",
                                                                                  "drop them")),
    (["--rounds", "4"], ("--rounds applies to the model",)),
    (["--objective", "kl"], ("--objective applies to --lam training only", "drop it")),
    (["--promote", "always", "--max-s-auc", "0.7"], ("--max-s-auc applies to --promote on-pass only",)),
    (["--lam", "5"], ("--lam needs a federation",)),
    (["--clients", "3", "--lam", "0"], ("--lam 0",)),
    (["--clients", "3", "--lam", "3", "--objective", "kl"], ("--objective kl", "teacher")),
    (["--clients", "3", "--lam", "3", "--objective", "entropy"], ("--objective entropy", "labels")),
    (["--sensitive", "sex", "--target", "sex"], ("--sensitive 'sex'", "--target")),
    (["--clients", "3", "--outcome", "embedding", "--smoothing", "kernel"], ("--smoothing applies", "drop it")),
    (["--clients", "3", "--lam", "3", "--smoothing", "histogram"], ("--smoothing applies", "drop it")),
    (["--head-rounds", "3"], ("--head-rounds applies to", "a --clients N release", "drop it")),  # central: no FedAvg heads
    (["--clients", "3", "--head-rounds", "0"], ("--head-rounds 0", "at least 1")),
])
def test_bad_model_flags_exit_2_in_one_line_before_anything_runs(tmp_path, monkeypatch, capsys, argv, names):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(["feature", "--out", "out", *argv], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert all(n in err for n in names), err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
