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
same comparison on the diabetes table of `unlearn-fl feature [--smoothing kernel]`, whose maps are fitted on 221
rows: the run's own fit (`run_feature_fit`, what the command registers), for seeds 0.. (seed 0 is the default run).

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
from unlearn_fl.information.columns import column_probe
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
    0..seeds-1), t = 1, each smoothing: the run's own fit (`run_feature_fit`, the projector and task head the command
    registers). S-probe AUCs on the projected held-out features, on the task head's scores (what the released model
    outputs) and, per column, the largest one-column AUC; the head's accuracy before and after. Probes: logistic
    (5-fold × 3), gradient boosting (mean of 3 fold seeds)."""
    from unlearn_fl.feature.run import FeatureRunConfig, run_feature_fit

    rows = []
    for smoothing in ("histogram", "kernel"):
        runs = []
        for seed in range(seeds):
            fit = run_feature_fit(FeatureRunConfig(probe_repeats=1, grid=[], seed=seed, smoothing=smoothing))[1]
            tab, te = fit.table, fit.test_idx
            X, s = ((tab.X - fit.mean) / fit.scale)[te], tab.s[te]
            Z = fit.projector.transform(X, s)
            p = fit.heads[1.0].predict_proba(Z)[:, 1:]
            gbm = lambda Z: float(np.mean([knn_mi(Z, s, folds=5, random_state=r).auc for r in range(3)]))  # noqa: E731
            runs.append({"features_logistic": probe_auc(Z, s, "logistic", 5, 3, 0), "features_gbm": gbm(Z),
                         "scores_logistic": probe_auc(p, s, "logistic", 5, 3, 0), "scores_gbm": gbm(p),
                         **_one_column(Z, s, seed),
                         "accuracy_before": float(fit.heads[0.0].score(X, tab.y[te])),
                         "accuracy": float(fit.heads[1.0].score(Z, tab.y[te]))})
        rows.append({"smoothing": smoothing, "runs": runs, "mean": {k: float(np.mean([r[k] for r in runs])) for k in runs[0]},
                     "sd": {k: float(np.std([r[k] for r in runs])) for k in runs[0]}})
    return rows


def _one_column(Z: np.ndarray, s: np.ndarray, seed: int) -> dict:
    """The largest one-column gradient-boosting AUC of S, its 95% chance level and permutation p-value (S permuted
    19 times, `information.columns.column_probe`)."""
    c = column_probe(Z, s, permutations=19, random_state=seed)
    return {"column_gbm": c.max_auc, "column_chance": c.chance, "column_p": c.p_value}


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
        lines += ["", f"Diabetes (sex as S), `unlearn-fl feature [--smoothing kernel]`'s own fit, t = 1; S-probe AUCs on the "
                  f"221 held-out rows, mean ± sd over {out['seeds']} train/test splits (seeds 0..{out['seeds'] - 1}), then "
                  "seed 0 alone (the default run). Scores: the released task head's; one column: the largest "
                  "gradient-boosting AUC of S from a single projected column, its chance level (the 95% point of the "
                  "same statistic with S permuted 19 times: what columns that carry no S give on 221 rows) and its "
                  "permutation p-value (`unlearn_fl.information.columns`). The probes here average more fold splits "
                  "(logistic 5-fold × 3, gradient boosting over 3 fold seeds) than the report of `unlearn-fl feature`, "
                  "so seed 0's figures differ a little from the ones it prints (0.594 / 0.689).", "",
                  "| smoothing | seeds | features: logistic | features: gradient boosting | classifier scores: logistic | "
                  "classifier scores: gradient boosting | one column: gradient boosting | one column: chance level | "
                  "one column: p | accuracy before → after |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        keys = ("features_logistic", "features_gbm", "scores_logistic", "scores_gbm", "column_gbm", "column_chance", "column_p")
        for r in out["diabetes"]:
            m, sd, r0 = r["mean"], r.get("sd", {}), r["runs"][0]
            lines.append(f"| {r['smoothing']} | mean | " + " | ".join(f"{m[k]:.3f} ± {sd.get(k, 0):.3f}" for k in keys)
                         + f" | {m.get('accuracy_before', float('nan')):.3f} → {m['accuracy']:.3f} |")
        for r in out["diabetes"]:
            r0 = r["runs"][0]
            lines.append(f"| {r['smoothing']} | 0 | " + " | ".join(f"{r0[k]:.3f}" for k in keys)
                         + f" | {r0.get('accuracy_before', float('nan')):.3f} → {r0['accuracy']:.3f} |")
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
