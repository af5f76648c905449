"""How much S a fitted barycenter map leaves, or puts, in new rows, by training-set size: not a test, an experiment.

The quantile maps T_s = Q̄ ∘ F_s (docs/method.md §3) are estimated from each group's training rows. On those
rows the projected groups agree; on new rows each group carries its own estimation error of F_s, and a probe
reads S from the difference. This measures that floor on synthetic tables where the truth is known:

- "independent": S is independent of X (9 correlated Gaussian columns): before the map nothing is there, so
  everything a probe finds afterwards was put there by the estimated maps;
- "shifted": S shifts the means of 3 columns by 0.5 sd and scales a fourth (the kind of dependence the diabetes
  table has).

For each training size the maps are fitted on n_train rows (about half in each group) and the probes read a
separate 4,000-row held-out sample (large, so that the probes' own noise is small): a logistic probe
(5-fold cross-validated AUC) and the gradient-boosting probe of the feature reports (out-of-fold AUC).
Means ± sd over seeds, for both ways of smoothing the group laws (`BarycenterProjector(smoothing=...)`). Then the
same comparison on the diabetes table of `unlearn-fl feature`, whose maps are fitted on 221 rows.

    .venv/bin/python -m benchmarks.feature_sample_size [--seeds 5] [--sizes 221 1000 4000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from unlearn_fl.feature import BarycenterProjector
from unlearn_fl.information.knn import knn_mi
from unlearn_fl.information.probe import probe_auc

RESULTS = Path(__file__).resolve().parent / "results"
D, N_TEST = 9, 4000


def table(kind: str, n: int, rng: np.random.Generator, mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, 9), s (n,)): correlated Gaussian columns; S ~ Bernoulli(½), independent of X or shifting it."""
    s = rng.integers(0, 2, n)
    X = rng.standard_normal((n, D)) @ mix
    if kind == "shifted":
        X[:, :3] += 0.5 * s[:, None]
        X[:, 3] *= 1.0 + 0.5 * s
    return X, s


def one(kind: str, n_train: int, seed: int, smoothing: str) -> dict:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((D, D)) / np.sqrt(D)
    Xtr, s_tr = table(kind, n_train, rng, mix)
    Xte, s_te = table(kind, N_TEST, rng, mix)
    Z = BarycenterProjector(random_state=seed, smoothing=smoothing).fit(Xtr, s_tr).transform(Xte, s_te)
    return {"logistic_before": probe_auc(Xte, s_te, "logistic", 5, 1, seed), "logistic_after": probe_auc(Z, s_te, "logistic", 5, 1, seed),
            "gbm_before": knn_mi(Xte, s_te, folds=5, random_state=seed).auc, "gbm_after": knn_mi(Z, s_te, folds=5, random_state=seed).auc}


def diabetes(seeds: int) -> list[dict]:
    """The diabetes table of `unlearn-fl feature` (sex as S; its 221-row train / 221-row test splits, seeds
    0..seeds-1): S-probe AUCs on the projected held-out features and on a logistic classifier's scores, and its
    accuracy, for each smoothing. Probes: logistic (5-fold × 3), gradient boosting (mean of 3 fold seeds)."""
    from sklearn.linear_model import LogisticRegression

    from unlearn_fl.feature.run import FeatureRunConfig, run_feature_fit

    fits = [run_feature_fit(FeatureRunConfig(probe_repeats=1, grid=[0.0], t=0.0, seed=seed))[1] for seed in range(seeds)]
    rows = []
    for smoothing in ("histogram", "kernel"):
        runs = []
        for fit in fits:
            tab, tr, te = fit.table, fit.train_idx, fit.test_idx
            X, s = (tab.X - fit.mean) / fit.scale, tab.s[te]
            P = BarycenterProjector(random_state=0, smoothing=smoothing).fit(X[tr], tab.s[tr])
            Ztr, Zte = P.transform(X[tr], tab.s[tr]), P.transform(X[te], s)
            clf = LogisticRegression(max_iter=5000).fit(Ztr, tab.y[tr])
            p = clf.predict_proba(Zte)[:, 1:]
            gbm = lambda Z: float(np.mean([knn_mi(Z, s, folds=5, random_state=r).auc for r in range(3)]))
            runs.append({"features_logistic": probe_auc(Zte, s, "logistic", 5, 3, 0), "features_gbm": gbm(Zte),
                         "scores_logistic": probe_auc(p, s, "logistic", 5, 3, 0), "scores_gbm": gbm(p),
                         "accuracy": float(clf.score(Zte, tab.y[te]))})
        rows.append({"smoothing": smoothing, "runs": runs, "mean": {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}})
    return rows


def markdown(out: dict) -> str:
    lines = ["# Feature unlearning: what the fitted maps leave in new rows, by training size", "",
             f"{out['seeds']} seeds; probes on {N_TEST} held-out rows; quantile maps (default bins), the group laws "
             "smoothed by equal-mass histograms (the default) or a Gaussian kernel. "
             "Regenerate: `.venv/bin/python -m benchmarks.feature_sample_size`.", "",
             "| table | maps fitted on | smoothing | logistic AUC before → after | gradient boosting AUC before → after |",
             "|---|---|---|---|---|"]
    for r in out["rows"]:
        m, sd = r["mean"], r["sd"]
        lines.append(f"| {r['kind']} | {r['n_train']} rows | {r['smoothing']} | {m['logistic_before']:.3f} → {m['logistic_after']:.3f} ± {sd['logistic_after']:.3f} "
                     f"| {m['gbm_before']:.3f} → {m['gbm_after']:.3f} ± {sd['gbm_after']:.3f} |")
    if out.get("diabetes"):
        lines += ["", f"Diabetes (sex as S), t = 1, means over {out['seeds']} train/test splits of 221 rows each; S-probe AUCs "
                  "on the held-out rows:", "",
                  "| smoothing | features: logistic | features: gradient boosting | classifier scores: logistic | "
                  "classifier scores: gradient boosting | accuracy |", "|---|---|---|---|---|---|"]
        for r in out["diabetes"]:
            m = r["mean"]
            lines.append(f"| {r['smoothing']} | {m['features_logistic']:.3f} | {m['features_gbm']:.3f} | {m['scores_logistic']:.3f} "
                         f"| {m['scores_gbm']:.3f} | {m['accuracy']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds per table, size and smoothing (default 5)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[221, 1000, 4000], help="rows the maps are fitted on (default 221 1000 4000)")
    ap.add_argument("--out", type=Path, default=RESULTS / "feature_sample_size", help="results file stem (.json and .md)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = []
    for kind in ("independent", "shifted"):
        for n, smoothing in ((n, sm) for n in a.sizes for sm in ("histogram", "kernel")):
            runs = [one(kind, n, seed, smoothing) for seed in range(a.seeds)]
            keys = runs[0].keys()
            rows.append({"kind": kind, "n_train": n, "smoothing": smoothing, "runs": runs,
                         "mean": {k: float(np.mean([r[k] for r in runs])) for k in keys},
                         "sd": {k: float(np.std([r[k] for r in runs])) for k in keys}})
            print(markdown({"seeds": a.seeds, "rows": rows[-1:]}).splitlines()[-1], flush=True)
    out = {"seeds": a.seeds, "n_test": N_TEST, "rows": rows, "diabetes": diabetes(a.seeds),
           "seconds": round(time.perf_counter() - t0, 1),
           "python": platform.python_version()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(out, indent=1))
    a.out.with_suffix(".md").write_text(markdown(out))
    print(markdown(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
