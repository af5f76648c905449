"""What independence from S costs on each benchmark table: the demographic-parity accuracy ceiling
(`unlearn_fl.feature.parity_ceiling`; docs/method.md §3, "What independence costs").

For each table: out-of-fold P(Y = 1 | X, S) (5 folds, 3 fold seeds) from the better by log loss of a logistic and a
gradient-boosting probe, the accuracy of the best single threshold on it, and the best accuracy of any classifier whose positive rate is the same in every group, which
bounds every model on S-independent features (feature unlearning at t = 1). On `gaussian_shift_frame`, the table of
benchmarks/feature_representation.py, the closed form is printed beside the estimate.

    .venv/bin/python -m benchmarks.parity_ceiling

writes benchmarks/results/parity_ceiling.{json,md}.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.feature_fairness import TABLES
from unlearn_fl.feature.parity_ceiling import estimate_parity_ceiling
from unlearn_fl.feature.representation import gaussian_shift_frame

OUT = Path(__file__).parent / "results"


def gaussian_shift_closed_form() -> tuple[float, float]:
    """(Bayes accuracy, parity ceiling) of gaussian_shift_frame's law (tests/feature/test_feature_parity_ceiling.py)."""
    from scipy.optimize import minimize_scalar
    from scipy.stats import multivariate_normal, norm

    sig, tau, cut, share, shift = np.sqrt(3.5), 0.5, 0.7, 0.4, 1.5

    def group(mu: float, c: float) -> float:
        joint = multivariate_normal(mean=[mu, mu], cov=[[sig**2, sig**2], [sig**2, sig**2 + tau**2]]).cdf([c, cut])
        return 2 * joint + 1 - norm.cdf(c, mu, sig) - norm.cdf(cut, mu, np.hypot(sig, tau))

    def acc(r: float) -> float:
        return (1 - share) * group(0.0, sig * norm.ppf(1 - r)) + share * group(shift, shift + sig * norm.ppf(1 - r))

    best = minimize_scalar(lambda r: -acc(r), bounds=(1e-6, 1 - 1e-6), method="bounded")
    return (1 - share) * group(0.0, cut) + share * group(shift, cut), -best.fun


POSITIVE = {"diabetes-sex": "high", "synthetic": "high", "loanapp-minority": "yes"}
"""The label counted as a positive prediction on each table of benchmarks/feature_fairness.py."""


def tables() -> dict[str, tuple[pd.DataFrame, str, str, str]]:
    out = {"gaussian-shift (representation)": (gaussian_shift_frame(4000), "s", "y", "high")}
    for name, (frame, sensitive, target) in TABLES.items():
        out[name] = (frame(), sensitive, target, POSITIVE[name])
    return out


def main() -> None:
    rows = []
    for name, (frame, sensitive, target, positive) in tables().items():
        X = pd.get_dummies(frame.drop(columns=[sensitive, target]), dtype=float).to_numpy(dtype=np.float64)
        found = [estimate_parity_ceiling(X, frame[sensitive].to_numpy(), frame[target].to_numpy(), positive, random_state=seed)
                 for seed in range(3)]
        row = {"table": name, "n": len(frame), "sensitive": sensitive, "target": f"{target} = {positive}",
               "accuracy": float(np.mean([f.accuracy for f in found])), "ceiling": float(np.mean([f.ceiling for f in found])),
               "rate": float(np.mean([f.rate for f in found])), "probes": [f.probe for f in found],
               "positive_rates": {k: float(np.mean([f.positive_rates[k] for f in found])) for k in found[0].positive_rates}}
        if name.startswith("gaussian-shift"):
            row["closed_form"] = dict(zip(("accuracy", "ceiling"), gaussian_shift_closed_form()))
        rows.append(row)
        print(name, {k: v for k, v in row.items() if k not in ("table",)})
    OUT.mkdir(exist_ok=True)
    (OUT / "parity_ceiling.json").write_text(json.dumps(rows, indent=1))
    lines = ["# What independence from S costs: the demographic-parity ceiling", "",
             "`.venv/bin/python -m benchmarks.parity_ceiling`: P(Y=1 | X, S) out of fold from the better by log loss of a "
             "logistic and a gradient-boosting probe (5 folds, mean of 3 fold seeds; the probe each seed chose in the last column); *accuracy*: the best single threshold on η; *ceiling*: the best accuracy with one positive rate in "
             "every group, an upper bound for any model on S-independent features (docs/method.md §3).", "",
             "| table | rows | S | positive label | accuracy with S | parity ceiling | gap (points) | positive rates by group (with S) | probe |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rates = ", ".join(f"{k}: {v:.2f}" for k, v in r["positive_rates"].items())
        lines.append(f"| {r['table']} | {r['n']} | {r['sensitive']} | {r['target']} | {r['accuracy']:.3f} | {r['ceiling']:.3f} | "
                     f"{100 * (r['accuracy'] - r['ceiling']):.1f} | {rates} | {', '.join(sorted(set(r['probes'])))} |")
    for r in rows:
        if "closed_form" in r:
            lines += ["", f"{r['table']}, closed form of its law: Bayes accuracy {r['closed_form']['accuracy']:.3f}, "
                          f"parity ceiling {r['closed_form']['ceiling']:.3f}."]
    (OUT / "parity_ceiling.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
