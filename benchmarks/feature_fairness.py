"""Feature unlearning of a sensitive attribute on fairness-style tables, central and federated (docs/method.md §3).

Not a test, a longer experiment; everything is offline:

- `diabetes-sex`: scikit-learn's bundled diabetes table (442 patients, `sklearn.datasets.load_diabetes`, no
  network), made fairness-style: `sex` (coded 1/2 in the source; which is which is not documented) as a text
  column `sex` = "s1"/"s2" (the sensitive attribute), age and bmi as text bands (age: <40, 40-59, 60+;
  bmi: <25, 25-30, 30+, on the source's kg/m²), the six serum measurements and blood pressure numeric, the target
  progression above its median ("high"/"low").
- `synthetic`: `unlearn_fl.feature.tabular.synthetic_fairness_frame(4000)`, a synthetic table with text, integer and
  one-decimal columns and a yes/no sensitive column `afam` (no real people; its columns are independent given S).

For each table and method (quantile with one-hot blocks, gaussian), central (`run_feature`, held-out half) and
federated over 5 clients (a Flower simulation, `unlearn-fl feature --clients 5`'s engine part; the server
measures on its own 20% split, utility is pooled over the clients' holdouts): the S-probe AUC (logistic, the
report's) and an independent gradient-boosting probe's AUC before → after, the k-NN MI with its chance level,
the guarded Gaussian MI proxy, task accuracy before → after, and the disagreement flag.

    .venv/bin/python benchmarks/feature_fairness.py [--seeds 3] [--no-federated]

writes benchmarks/results/feature_fairness.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from unlearn_fl.feature.run import FeatureRunConfig, run_feature
from unlearn_fl.feature.tabular import diabetes_frame, synthetic_fairness_frame

RESULTS = Path(__file__).parent / "results"


def diabetes_fairness_frame() -> pd.DataFrame:
    """The diabetes table with sex, age and bmi as text columns (see the module doc)."""
    d = diabetes_frame()
    out = pd.DataFrame({
        "sex": np.where(d["sex"] == 1, "s1", "s2"),
        "age": pd.cut(d["age"], [-np.inf, 40, 60, np.inf], right=False, labels=["<40", "40-59", "60+"]).astype(str),
        "bmi": pd.cut(d["bmi"], [-np.inf, 25, 30, np.inf], right=False, labels=["<25", "25-30", "30+"]).astype(str),
    })
    for c in ("bp", "s1", "s2", "s3", "s4", "s5", "s6"):
        out[c] = d[c]
    out["progression"] = np.where(d["progression_high"] == 1, "high", "low")
    return out


TABLES = {
    "diabetes-sex": (diabetes_fairness_frame, "sex", "progression"),
    "synthetic": (lambda: synthetic_fairness_frame(4000, seed=0), "afam", "wage"),
}


def _row(f, extra: dict) -> dict:
    return {**extra, "s_auc": [f.s_auc_before, f.s_auc_after], "s_auc_gbm": [f.s_auc_gbm_before, f.s_auc_gbm_after],
            "mi_knn": [f.mi_before, f.mi_after], "mi_chance": f.mi_chance,
            "mi_gaussian": [f.mi_gaussian_before, f.mi_gaussian_after], "accuracy": [f.utility_before, f.utility_after],
            "estimates_agree": f.estimates_agree, "disagreement": f.disagreement}


def central(path: str, sensitive: str, target: str, method: str, seeds: int) -> dict:
    rows = []
    for seed in range(seeds):
        f = run_feature(FeatureRunConfig(dataset=path, sensitive=sensitive, target=target, method=method, seed=seed,
                                         grid=[0.0, 1.0], probe_repeats=3)).feature
        rows.append(_row(f, {"seed": seed}))
    return {"runs": rows, "mean": _mean(rows)}


def federated(path: str, sensitive: str, target: str, method: str, clients: int) -> dict:
    from unlearn_fl.cli import _federated_feature

    with tempfile.TemporaryDirectory() as out:
        a = argparse.Namespace(clients=clients, dataset=path, target=target, sensitive=sensitive, method=method, t=1.0,
                               grid="0,1", seed=0, out=out)
        report, _ = _federated_feature(a)
    return {"runs": [_row(report.feature, {"seed": 0, "rows_per_client": report.dataset["rows_per_client"]})],
            "mean": _mean([_row(report.feature, {})])}


def _mean(rows: list[dict]) -> dict:
    keys = ("s_auc", "s_auc_gbm", "mi_knn", "mi_gaussian", "accuracy")
    out = {k: np.mean([r[k] for r in rows], axis=0).round(4).tolist() for k in keys}
    out["mi_chance"] = round(float(np.mean([r["mi_chance"] for r in rows])), 4)
    out["flagged"] = sum(1 for r in rows if r["estimates_agree"] is False)
    return out


def markdown(res: dict) -> str:
    lines = ["# Feature unlearning on fairness-style tables", "",
             "`.venv/bin/python benchmarks/feature_fairness.py` (t = 1; before -> after; central: mean over "
             f"{res['seeds']} held-out splits; federated: {res['clients']} clients in a Flower simulation, measured on the "
             "server's own split). S-probe: logistic, the report's; GBM: an independent gradient-boosting probe; "
             "MI: k-NN estimate on the GBM probe's score (nats; chance level in brackets); flagged: runs whose report "
             "says the estimates disagree.", "",
             "| table | method | where | S-probe AUC | GBM AUC | MI k-NN | Gaussian MI proxy | accuracy | flagged |",
             "|---|---|---|---|---|---|---|---|---|"]
    for table, by_method in res["tables"].items():
        for method, by_where in by_method.items():
            for where, r in by_where.items():
                m = r["mean"]
                fmt = lambda v: f"{v[0]:.3f} -> {v[1]:.3f}"  # noqa: E731
                lines.append(f"| {table} | {method} | {where} | {fmt(m['s_auc'])} | {fmt(m['s_auc_gbm'])} | "
                             f"{fmt(m['mi_knn'])} ({m['mi_chance']:.3f}) | {fmt(m['mi_gaussian'])} | {fmt(m['accuracy'])} | "
                             f"{m['flagged']}/{len(r['runs'])} |")
    lines += ["", "Data: " + "; ".join(f"{k}: {v}" for k, v in res["data"].items()), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--no-federated", action="store_true")
    args = ap.parse_args()
    res: dict = {"seeds": args.seeds, "clients": args.clients, "tables": {}, "data": {
        "diabetes-sex": "scikit-learn's bundled diabetes table (442 rows), sex/age/bmi as text columns, S = sex",
        "synthetic": "synthetic_fairness_frame(4000, seed=0), S = afam (yes/no)"}}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name, (make, sensitive, target) in TABLES.items():
            path = str(Path(tmp) / f"{name}.csv")
            make().to_csv(path, index=False)
            res["tables"][name] = {}
            for method in ("quantile", "gaussian"):
                entry = {"central": central(path, sensitive, target, method, args.seeds)}
                if not args.no_federated:
                    entry[f"federated ({args.clients} clients)"] = federated(path, sensitive, target, method, args.clients)
                res["tables"][name][method] = entry
                print(name, method, {k: v["mean"] for k, v in entry.items()}, flush=True)
    res["seconds"] = round(time.time() - t0, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "feature_fairness.json").write_text(json.dumps(res, indent=1))
    (RESULTS / "feature_fairness.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
