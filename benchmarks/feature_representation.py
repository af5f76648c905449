"""S out of a trained MLP's representation, central and federated: a Pareto curve (docs/method.md §3, issue #12 4a).

For each table: train the project's MLP on the pooled train rows of a 3-client split, then for t in a grid project the
penultimate pre-activation Z by S (W2 barycenter, Gaussian maps), refit the head on act(Z_t), and report on held-out
rows (the server's test split) the S-AUC of an independent gradient-boosting probe on act(Z_t) against the refit head's
accuracy. Central: `unlearn_representation` on the pooled rows. Federated: a Flower simulation (run_simulation, like
cli.py's `_federated_feature`): sites send per-group summaries of their own Z, the server merges them into the maps
and runs FedAvg rounds of the heads (server/feature_workflow.py `run_representation_federation`).

In training (issue #12 4b), on the first table: the same MLP trained federated from scratch on utility + λ·Î(Z; S) for
a grid of λ, all in one Flower simulation (server/feature_workflow.py `run_regularized_federation`); S-AUC of the
probe on its softmax scores and its accuracy, on the same held-out rows.

Tables: `gaussian_shift_frame` (groups differ in location; S is a model input) and `synthetic_fairness_frame` (S =
afam, one-hot/discrete columns; S not in the model's input). Writes benchmarks/results/feature_representation.{json,md}.

    .venv/bin/python -m benchmarks.feature_representation [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from unlearn_fl.data import DataSpec, Split, federation
from unlearn_fl.engine.feature_exchange import representation_rows, sensitive_values
from unlearn_fl.feature.representation import (activate, gaussian_shift_frame, gbm_probe_auc, head_correct,
                                               initial_head, representation, unlearn_representation)
from unlearn_fl.feature.tabular import synthetic_fairness_frame
from unlearn_fl.models import make_model, train_epochs

OUT = Path(__file__).parent / "results"


def pooled(spec: DataSpec, sensitive: str):
    rows = [representation_rows(spec, c, sensitive) for c in range(spec.num_clients)]
    return tuple(np.concatenate([r[i] for r in rows]) for i in range(3))


def server_test(spec: DataSpec, sensitive: str):
    f = federation(spec)
    test = f.scaled(f.test_idx)
    return test.X, sensitive_values(spec, sensitive, f.test_idx), test.y


def federated(spec: DataSpec, sensitive: str, model, grid_t, method="gaussian", rounds=10, epochs=2, seed=0) -> dict:
    """`run_representation_federation` in a Flower simulation with `spec.num_clients` supernodes."""
    import logging

    from client.client_app import app as client_app
    from server.feature_workflow import run_representation_federation
    from unlearn_fl.engine.launch import run_in_simulation

    for name in ("flwr", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return run_in_simulation(lambda grid: run_representation_federation(grid, spec, sensitive, model, method, tuple(grid_t),
                                                                         rounds=rounds, epochs=epochs, seed=seed),
                             client_app, spec.num_clients)


def in_training(spec: DataSpec, sensitive: str, lams, n_features: int, Xte, ste, yte, rounds=10, epochs=2, seed=0) -> list[dict]:
    """`run_regularized_federation` for each λ in one Flower simulation, from the same initial model."""
    import torch

    from client.client_app import app as client_app
    from server.feature_workflow import run_regularized_federation
    from unlearn_fl.engine.feature_exchange import group_key
    from unlearn_fl.engine.launch import run_in_simulation

    groups = sorted({group_key(v) for v in pooled(spec, sensitive)[1]})
    init = make_model(n_features, 2, (16,), seed=seed)

    def sweep(grid) -> dict:
        out = {}
        for lam in lams:
            t0 = time.perf_counter()
            out[lam] = run_regularized_federation(grid, spec, sensitive, groups, init,
                                                  {"lam": lam, "epochs": epochs, "lr": 0.01, "seed": seed}, rounds=rounds)
            out[lam]["seconds"] = time.perf_counter() - t0
        return out

    result = run_in_simulation(sweep, client_app, spec.num_clients)
    points = []
    for lam in lams:
        with torch.no_grad():
            P = torch.softmax(result[lam]["model"](torch.as_tensor(Xte)), dim=1).numpy()
        points.append({"lam": lam, "s_auc_gbm": gbm_probe_auc(P, ste, seed=seed), "accuracy": float((P.argmax(1) == yte).mean()),
                       "site_holdout_accuracy": result[lam]["accuracy"], "seconds": result[lam]["seconds"]})
    return points


def one_table(name: str, spec: DataSpec, sensitive: str, drop_s: bool, grid_t, federate: bool, seed: int = 0) -> dict:
    X, s, y = pooled(spec, sensitive)
    Xte, ste, yte = server_test(spec, sensitive)
    from unlearn_fl.engine.feature_exchange import sensitive_columns

    if drop_s:  # the model never sees S: make S's columns constant 0 (scaled), so the encoder ignores them
        cols, _ = sensitive_columns(spec, sensitive)
        X, Xte = X.copy(), Xte.copy()
        X[:, cols] = 0.0
        Xte[:, cols] = 0.0
    model = make_model(X.shape[1], 2, (16,), seed=seed)
    train_epochs(model, Split(X, y), 30, 0.01, seed=seed)
    import torch

    with torch.no_grad():
        acc_model = float((model(torch.as_tensor(Xte)).argmax(1).numpy() == yte).mean())
    central = []
    for t in grid_t:
        run = unlearn_representation(model, X, s, y, t=t, method="gaussian", epochs=20, seed=seed)
        H = run.embed(Xte, ste)
        central.append({"t": t, "s_auc_gbm": gbm_probe_auc(H, ste, seed=seed), "accuracy": head_correct(run.head, H, yte) / len(yte)})
    out = {"table": name, "sensitive": sensitive, "s_is_model_input": not drop_s, "rows_train": int(len(y)),
           "rows_test": int(len(yte)), "model_accuracy": acc_model, "central": central}
    if federate and not drop_s:
        t0 = time.perf_counter()
        fed = federated(spec, sensitive, model, grid_t, seed=seed)
        proj_c = unlearn_representation(model, X, s, y, t=1.0, epochs=0).projector
        Zte = representation(model, Xte)
        points = []
        for t in grid_t:
            head = initial_head(model)
            head.load_state_dict(fed["heads"][float(t)])
            H = activate(model, fed["projector"].transform(Zte, ste, t=t))
            points.append({"t": t, "s_auc_gbm": gbm_probe_auc(H, ste, seed=seed), "accuracy": head_correct(head, H, yte) / len(yte),
                           "site_holdout_accuracy": fed["accuracy"][float(t)]})
        out["federated"] = {"clients": spec.num_clients, "rounds": 10, "local_epochs": 2, "points": points,
                            "max_abs_map_difference_vs_central": float(np.max(np.abs(
                                fed["projector"].transform(Zte, ste) - proj_c.transform(Zte, ste)))),
                            "seconds": time.perf_counter() - t0}
        out["in_training"] = {"rounds": 10, "local_epochs": 2, "objective": "conditional_entropy",
                              "points": in_training(spec, sensitive, [0.0, 1.0, 3.0, 10.0, 30.0], X.shape[1], Xte, ste, yte, seed=seed)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    grid_t = [0.0, 0.25, 0.5, 0.75, 1.0]
    tmp = Path(tempfile.mkdtemp())
    n = 2000 if a.quick else 4000
    gaussian_shift_frame(n, seed=0).to_csv(tmp / "shift.csv", index=False)
    synthetic_fairness_frame(n, seed=0).to_csv(tmp / "fair.csv", index=False)
    results = [
        one_table("gaussian_shift_frame", DataSpec(dataset=str(tmp / "shift.csv"), target="y", num_clients=3), "s", False, grid_t, True),
        one_table("synthetic_fairness_frame", DataSpec(dataset=str(tmp / "fair.csv"), target="wage", num_clients=3), "afam", False, grid_t, False),
        one_table("synthetic_fairness_frame", DataSpec(dataset=str(tmp / "fair.csv"), target="wage", num_clients=3), "afam", True, grid_t, False),
    ]
    OUT.mkdir(exist_ok=True)
    (OUT / "feature_representation.json").write_text(json.dumps({"rows": n, "grid": grid_t, "results": results}, indent=2))
    lines = ["# S out of a learned representation (docs/method.md §3)", "",
             f"`.venv/bin/python -m benchmarks.feature_representation{' --quick' if a.quick else ''}`: MLP (16 hidden) "
             f"on {n} rows, 3-client split; Z = penultimate pre-activation, Gaussian W2 maps by S, head refit on "
             "ReLU(Z_t); probe = HistGradientBoosting out-of-fold S-AUC on the server's held-out test rows.", ""]
    for r in results:
        lines += [f"## {r['table']} (S = {r['sensitive']}, S a model input: {r['s_is_model_input']})", "",
                  f"model accuracy {r['model_accuracy']:.3f}; {r['rows_train']} train rows, {r['rows_test']} test rows", "",
                  "| t | central S-AUC (GBM) | central accuracy | federated S-AUC | federated accuracy |", "|---|---|---|---|---|"]
        fpts = {p["t"]: p for p in r.get("federated", {}).get("points", [])}
        for p in r["central"]:
            f = fpts.get(p["t"])
            lines.append(f"| {p['t']:g} | {p['s_auc_gbm']:.3f} | {p['accuracy']:.3f} | "
                         + (f"{f['s_auc_gbm']:.3f} | {f['accuracy']:.3f} |" if f else "– | – |"))
        if "federated" in r:
            lines += ["", f"federated: {r['federated']['clients']} Flower clients, {r['federated']['rounds']} FedAvg rounds "
                      f"of the heads; max |federated − central map| on the test rows "
                      f"{r['federated']['max_abs_map_difference_vs_central']:.1e}"]
        if "in_training" in r:
            it = r["in_training"]
            lines += ["", f"In training, federated (λ·Î(Z;S), Z = softmax scores, {it['rounds']} FedAvg rounds × "
                      f"{it['local_epochs']} local epochs, objective {it['objective']}, from scratch):", "",
                      "| λ | S-AUC (GBM, scores) | accuracy |", "|---|---|---|"]
            lines += [f"| {p['lam']:g} | {p['s_auc_gbm']:.3f} | {p['accuracy']:.3f} |" for p in it["points"]]
        lines.append("")
    (OUT / "feature_representation.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
