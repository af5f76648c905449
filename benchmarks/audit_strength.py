"""How strong is each membership attack, and how often does the verdict fail a model that did nothing wrong?

1. Attack strength on planted canaries (docs/method.md §4). Gaussian blobs (10 features, 3 classes), a
   1000-row pool, 400 evaluation rows: 200 mislabelled canaries and 200 ordinary rows, half of each in the
   target's training set (members), half never trained (non-members). Small MLPs, full batch. Attacks on
   the same target and the same rows:
   - loss threshold (no reference);
   - RMIA offline with K = 1 and K = 4 OUT references (trained on half the pool, none of the evaluation rows);
   - RMIA online and LiRA online with K = 8 references, each evaluation row IN for half of them;
   - LiRA offline with the K = 4 OUT references.
   Reported: AUC and TPR at 1% FPR, on canaries only and on all 400 rows, mean ± sd over seeds.
2. False `failed` rate: a model retrained from scratch audited against another retraining (another seed)
   on rows neither saw, with the verdict's loss and RMIA attacks and the ε rule, over 20 seeds.

    .venv/bin/python benchmarks/audit_strength.py --seeds 5     # ~1 min -> results/audit_strength.{json,md}
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from torch import nn

from unlearn_fl.audit.canaries import blobs, fit_mlp, mislabel
from unlearn_fl.audit.epsilon import empirical_epsilon
from unlearn_fl.audit.lira import lira_attack, train_reference_confidences
from unlearn_fl.audit.mia import loss_threshold_attack, per_example_losses
from unlearn_fl.audit.rmia import rmia_attack, true_label_probs
from unlearn_fl.audit.verdict import AttackEvidence, AuditThresholds, decide_verdict

C = 3
RESULTS = Path(__file__).parent / "results"


def fit(X, y, seed: int, steps: int = 400) -> nn.Module:
    return fit_mlp(X, y, seed, steps, n_classes=C)


def logit(p: np.ndarray) -> np.ndarray:
    """LiRA's scaled logit log(p / (1 − p)) from the true-label probability."""
    p = np.clip(p, 1e-300, 1 - 1e-16)
    return np.log(p) - np.log1p(-p)


def strength(seed: int) -> dict[str, dict[str, dict[str, float]]]:
    rng, sample = blobs(seed)
    X_pool, y_pool = sample(1000)
    X_can, y_true = sample(200)
    y_can = mislabel(y_true, rng, C)
    X_ord, y_ord = sample(200)
    X_eval, y_eval = np.concatenate([X_can, X_ord]), np.concatenate([y_can, y_ord])
    canary = np.arange(400) < 200
    member = np.zeros(400, bool)
    member[rng.permutation(200)[:100]] = True
    member[200 + rng.permutation(200)[:100]] = True
    target = fit(np.concatenate([X_pool, X_eval[member]]), np.concatenate([y_pool, y_eval[member]]), seed=seed)
    counter = iter(range(10**6))
    train_fn = lambda X, y: fit(X, y, seed=1000 * seed + next(counter))
    online = train_reference_confidences(train_fn, X_pool, y_pool, X_eval, y_eval, 8, rng=seed, confidence_fn=true_label_probs)
    offline = train_reference_confidences(train_fn, X_pool, y_pool, X_eval, y_eval, 4, rng=seed + 1,
                                          include_eval=False, confidence_fn=true_label_probs)
    p = true_label_probs(target, X_eval, y_eval)
    loss = per_example_losses(target, X_eval, y_eval)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for group, rows in (("canaries", canary), ("all rows", np.ones(400, bool))):
        m, n = rows & member, rows & ~member
        on_in = np.where(online.in_mask, online.conf, np.nan)
        on_out = np.where(~online.in_mask, online.conf, np.nan)
        results = {
            "loss threshold": loss_threshold_attack(loss[m], loss[n]),
            "RMIA offline K=1": rmia_attack(p[m], offline.conf[m, :1], p[n], offline.conf[n, :1], mode="offline"),
            "RMIA offline K=4": rmia_attack(p[m], offline.conf[m], p[n], offline.conf[n], mode="offline"),
            "RMIA online K=8": rmia_attack(p[m], online.conf[m], p[n], online.conf[n], mode="online"),
            "LiRA offline K=4": lira_attack(logit(p[m]), logit(p[n]), logit(offline.conf[m]), logit(offline.conf[n])),
            "LiRA online K=8": lira_attack(logit(p[m]), logit(p[n]), logit(on_out[m]), logit(on_out[n]),
                                           logit(on_in[m]), logit(on_in[n])),
        }
        out[group] = {k: {"auc": r.auc, "tpr@1%": r.tpr_at_fpr["0.01"]} for k, r in results.items()}
    return out


def false_failed(n_seeds: int) -> dict:
    th = AuditThresholds(epsilon_target=1.0)
    verdicts = []
    for s in range(n_seeds):
        _, sample = blobs(100 + s)
        X, y = sample(1000)
        (X_f, y_f), (X_h, y_h) = sample(150), sample(150)
        a, b = fit(X, y, seed=2 * s, steps=150), fit(X, y, seed=2 * s + 1, steps=150)
        la = loss_threshold_attack(per_example_losses(a, X_f, y_f), per_example_losses(a, X_h, y_h))
        lb = loss_threshold_attack(per_example_losses(b, X_f, y_f), per_example_losses(b, X_h, y_h))
        ra = rmia_attack(true_label_probs(a, X_f, y_f), true_label_probs(b, X_f, y_f)[:, None],
                         true_label_probs(a, X_h, y_h), true_label_probs(b, X_h, y_h)[:, None])
        eps = lambda m: empirical_epsilon(-per_example_losses(m, X_f, y_f), -per_example_losses(m, X_h, y_h), seed=s).epsilon_lower
        v = decide_verdict([AttackEvidence("loss-threshold", la.auc, 150, 150, auc_retrain=lb.auc),
                            AttackEvidence("rmia-offline", ra.auc, 150, 150)],
                           epsilon_lower_after=eps(a), epsilon_lower_retrain=eps(b), thresholds=th)
        verdicts.append(v.verdict)
    return {"seeds": n_seeds, "failed": verdicts.count("failed"), "inconclusive": verdicts.count("inconclusive"),
            "passed": verdicts.count("passed"), "alpha": round(1 - th.confidence, 6)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--null-seeds", type=int, default=20)
    a = ap.parse_args()
    runs = [strength(s) for s in range(a.seeds)]
    summary = {g: {k: {m: (float(np.mean([r[g][k][m] for r in runs])), float(np.std([r[g][k][m] for r in runs])))
                       for m in ("auc", "tpr@1%")} for k in runs[0][g]} for g in runs[0]}
    null = false_failed(a.null_seeds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "audit_strength.json").write_text(json.dumps({"per_seed": runs, "summary": summary, "false_failed": null}, indent=2))
    lines = [f"# Attack strength on planted canaries ({a.seeds} seeds, mean ± sd)", ""]
    for g, rows in summary.items():
        lines += [f"## {g}", "", "| attack | AUC | TPR at 1% FPR |", "|---|---|---|"]
        lines += [f"| {k} | {v['auc'][0]:.3f} ± {v['auc'][1]:.3f} | {v['tpr@1%'][0]:.3f} ± {v['tpr@1%'][1]:.3f} |" for k, v in rows.items()]
        lines.append("")
    lines += ["# False `failed` between two retrainings", "",
              f"{null['failed']} failed, {null['inconclusive']} inconclusive, {null['passed']} passed of {null['seeds']} seeds "
              f"(α = {null['alpha']:g}; a passed verdict needs power, which two retrainings cannot give)."]
    (RESULTS / "audit_strength.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
