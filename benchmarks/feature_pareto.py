"""Feature-unlearning trade-off on the diabetes table (sex as S): not a test, a longer experiment.

1. Barycenter projection (docs/method.md §3): run_feature over `--seeds` train/test splits for both
   methods on an 11-point t-grid; prints mean ± sd of probe AUC for S, MI (k-NN, nats; information.knn),
   accuracy and distortion per t, plus a permutation null (S shuffled on the held-out split)
   for AUC and MI at t = 1, the noise floor of the held-out measurements.
2. Regularised training (docs/method.md §3 B): for each utility objective and λ, probe AUC for S on the
   held-out softmax outputs and task accuracy, on synthetic data (S strongly encoded) and on diabetes.

    .venv/bin/python benchmarks/feature_pareto.py --seeds 5 [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from unlearn_fl.feature import BarycenterProjector
from unlearn_fl.feature.objectives import OBJECTIVES, RegularizedMLP
from unlearn_fl.feature.run import FeatureRunConfig, _split, run_feature
from unlearn_fl.feature.tabular import load_feature_table
from unlearn_fl.information.knn import knn_mi
from unlearn_fl.information.probe import probe_auc

GRID = [round(0.1 * i, 1) for i in range(11)]


def projection(seeds: int) -> dict:
    out: dict = {}
    for method in ("quantile", "gaussian"):
        rows = []
        for seed in range(seeds):
            f = run_feature(FeatureRunConfig(method=method, seed=seed, grid=GRID)).feature
            rows.append([[p.s_auc, p.mi, p.utility, p.distortion] for p in f.pareto])
        arr = np.array(rows)  # seeds × t × 4
        out[method] = {"t": GRID, "mean": arr.mean(0).tolist(), "sd": arr.std(0).tolist()}
        print(f"\n{method}: t | s_auc | mi (nats) | accuracy | distortion   (mean ± sd over {seeds} splits)")
        for i, t in enumerate(GRID):
            m, s = arr.mean(0)[i], arr.std(0)[i]
            print(f"  {t:.1f} | {m[0]:.3f}±{s[0]:.3f} | {m[1]:.3f}±{s[1]:.3f} | {m[2]:.3f}±{s[2]:.3f} | {m[3]:.3f}±{s[3]:.3f}")
    table = load_feature_table("diabetes", "sex", "progression_high")
    rng = np.random.default_rng(0)
    null_auc, null_mi = [], []
    for seed in range(seeds):
        tr, te = _split(len(table.y), table.s, table.y, 0.5, seed)
        mu, sd = table.X[tr].mean(0), table.X[tr].std(0)
        X = (table.X - mu) / sd
        Z = BarycenterProjector(method="gaussian").fit(X[tr], table.s[tr]).transform(X[te], table.s[te])
        for _ in range(5):
            perm = rng.permutation(table.s[te])
            null_auc.append(probe_auc(Z, perm, repeats=5, random_state=seed))
            null_mi.append(knn_mi(Z, perm, random_state=seed).nats)
    out["null_t1"] = {"s_auc_mean": float(np.mean(null_auc)), "s_auc_p95": float(np.quantile(null_auc, 0.95)),
                      "mi_mean": float(np.mean(null_mi)), "mi_p95": float(np.quantile(null_mi, 0.95))}
    print("\npermutation null at t=1:", {k: round(v, 3) for k, v in out["null_t1"].items()})
    return out


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S strongly predictable from X (x1) and Y leaning on x1 (the data of tests/feature/test_feature_objectives.py)."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 2, n)
    x1 = 2.0 * (2 * s - 1) + 0.7 * rng.normal(size=n)
    x2, x3 = rng.normal(size=n), rng.normal(size=n)
    y = (x1 + 1.5 * x2 + 0.5 * rng.normal(size=n) > 0).astype(int)
    return np.c_[x1, x2, x3], y, s


def regularised(seed: int = 0) -> dict:
    """λ sweep per objective on the synthetic data and on diabetes (held-out probe AUC for S, accuracy)."""
    torch.set_num_threads(1)
    table = load_feature_table("diabetes", "sex", "progression_high")
    tr, te = _split(len(table.y), table.s, table.y, 0.5, seed)
    data = {
        "synthetic": (_synthetic(800, seed), _synthetic(800, seed + 1)),
        "diabetes": ((table.X[tr], table.y[tr], table.s[tr]), (table.X[te], table.y[te], table.s[te])),
    }
    out: dict = {}
    for name, ((X, y, s), (Xt, yt, st)) in data.items():
        print(f"\nregularised MLP on {name}: objective | λ | probe AUC(S | Z_test) | accuracy")
        out[name] = {}
        for obj in OBJECTIVES:
            out[name][obj] = []
            for lam in (0.0, 1.0, 5.0, 20.0):
                m = RegularizedMLP(objective=obj, lam=lam, epochs=200, lr=1e-2, seed=seed).fit(X, y, s)
                auc = probe_auc(m.transform(Xt), st, probe="quadratic", repeats=3)
                acc = float((m.predict(Xt) == yt).mean()) if obj != "entropy" else float("nan")
                out[name][obj].append({"lam": lam, "s_auc": auc, "accuracy": acc})
                print(f"  {obj:19s} | {lam:4.1f} | {auc:.3f} | {acc:.3f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--json", help="write all numbers here")
    args = ap.parse_args()
    result = {"projection": projection(args.seeds), "regularised": regularised()}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
