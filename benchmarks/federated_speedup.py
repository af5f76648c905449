"""Unlearning vs retraining from scratch, side by side in one Flower simulation run.

For each training budget R and seed: a federation of digits clients trains R rounds, client 0
withdraws, the method unlearns (at most `unlearn_rounds` rounds, early stopping), and the
reference retrains R rounds from scratch without client 0 in the same engine. Reports the
wall-clock ratio (retrain / unlearn), rounds, accuracies and MIA AUCs.

    .venv/bin/python benchmarks/federated_speedup.py [--rounds 5 20] [--seeds 0 1 2] [--method marginal]

Writes benchmarks/results/federated_speedup.{json,md}. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from unlearn_fl.cli import _quiet_logs, run_simulation_job
from unlearn_fl.config import RunConfig, WithdrawalPlan
from unlearn_fl.data import DataSpec

RESULTS = Path(__file__).parent / "results"


def one(rounds: int, seed: int, method: str, clients: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        cfg = RunConfig(data=DataSpec(num_clients=clients, seed=seed), rounds=rounds, seed=seed, method=method,
                        withdrawals=[WithdrawalPlan(client_ids=(0,))], tracking_uri=f"sqlite:///{d}/m.db", out=Path(d) / "out")
        r = run_simulation_job(cfg)["reports"][0]
    return {"rounds": rounds, "seed": seed, "method": method, "unlearn_s": r.cost.unlearn_seconds,
            "retrain_s": r.cost.retrain_seconds, "speedup": r.cost.speedup, "unlearn_rounds": r.cost.unlearn_rounds,
            "test_before": r.utility.test_acc_before, "test_after": r.utility.test_acc_after,
            "test_retrain": r.utility.test_acc_retrain, "forget_after": r.utility.forget_acc_after,
            "forget_retrain": r.utility.forget_acc_retrain, "auc_before": r.audit.mia_auc_before,
            "auc_after": r.audit.mia_auc_after, "auc_retrain": r.audit.mia_auc_retrain, "verdict": r.audit.verdict}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--method", default="marginal")
    ap.add_argument("--clients", type=int, default=5)
    a = ap.parse_args()
    _quiet_logs()
    rows = [one(r, s, a.method, a.clients) for r in a.rounds for s in a.seeds]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "federated_speedup.json").write_text(json.dumps(rows, indent=2))
    m = lambda xs: f"{statistics.mean(xs):.3f} ± {statistics.pstdev(xs):.3f}"
    lines = ["# Federated unlearning vs retraining from scratch (digits, 5 clients, client 0 withdraws)", "",
             f"method `{a.method}`; seeds {a.seeds}; unlearning ≤ 2 rounds with early stopping; retraining R rounds; "
             "both timed in the same Flower simulation run (Ray start-up excluded: it falls in the training phase).", "",
             "| R | retrain s | unlearn s | speed-up | unlearn rounds | test after / retrain | MIA AUC before / after / retrain |",
             "|---:|---:|---:|---:|---:|---|---|"]
    for r in a.rounds:
        rs = [x for x in rows if x["rounds"] == r]
        lines.append(f"| {r} | {m([x['retrain_s'] for x in rs])} | {m([x['unlearn_s'] for x in rs])} | "
                     f"{m([x['speedup'] for x in rs])} | {m([x['unlearn_rounds'] for x in rs])} | "
                     f"{m([x['test_after'] for x in rs])} / {m([x['test_retrain'] for x in rs])} | "
                     f"{m([x['auc_before'] for x in rs])} / {m([x['auc_after'] for x in rs])} / {m([x['auc_retrain'] for x in rs])} |")
    (RESULTS / "federated_speedup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
