"""Cost of a withdrawal in the example app against retraining it from scratch, side by side in one run.

Runs examples/quickstart-unlearning with `flwr run` (3 simulated sites, its own residual CNN on 8x8 digit
images, site 1 withdraws after the last round). Each run times the unlearning and the retrain-from-scratch
reference in the same Flower engine, and counts their rounds and the bytes of model arrays sent both ways.

    .venv/bin/python benchmarks/example_app_cost.py --rounds 5 20 --seeds 3     # ~6 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

from unlearn_fl.engine.launch import flwr_run
from unlearn_fl.report.schema import ForgettingReport

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "quickstart-unlearning"
RESULTS = Path(__file__).parent / "results"


def one(rounds: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        code, tail = flwr_run(EXAMPLE, {"num-server-rounds": rounds, "seed": seed, "tracking-uri": f"sqlite:///{d}/m.db",
                                        "out": f"{d}/out", "model-name": "cost"}, num_supernodes=3)
        if code != 0 or not (Path(d) / "out" / "forgetting_report.json").exists():
            raise RuntimeError("\n".join(tail[-20:]))
        r = ForgettingReport.model_validate_json((Path(d) / "out" / "forgetting_report.json").read_text())
    c, u = r.cost, r.utility
    return {"rounds": rounds, "seed": seed, "unlearn_s": c.unlearn_seconds, "retrain_s": c.retrain_seconds,
            "speedup": c.speedup, "unlearn_rounds": c.unlearn_rounds, "retrain_rounds": c.retrain_rounds,
            "unlearn_bytes": c.unlearn_bytes, "retrain_bytes": c.retrain_bytes,
            "bytes_ratio": c.retrain_bytes / c.unlearn_bytes, "test_before": u.test_acc_before,
            "test_after": u.test_acc_after, "test_retrain": u.test_acc_retrain, "forget_after": u.forget_acc_after,
            "forget_retrain": u.forget_acc_retrain, "verdict": r.audit.verdict}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    runs = [one(r, s) for r in a.rounds for s in range(a.seeds)]
    RESULTS.mkdir(exist_ok=True)
    meta = {"cpus": os.cpu_count(), "python": platform.python_version(), "seeds": a.seeds, "rounds": a.rounds}
    (RESULTS / "example_app_cost.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=2))
    med = lambda rows, k: statistics.median(x[k] for x in rows)  # noqa: E731
    lines = ["| training rounds | unlearn s | retrain s | speed-up | rounds (unlearn / retrain) | MB sent (unlearn / retrain) "
             "| test acc (after / retrained) | forget acc (after / retrained) |", "|---|---|---|---|---|---|---|---|"]
    for r in a.rounds:
        rows = [x for x in runs if x["rounds"] == r]
        lines.append(f"| {r} | {med(rows, 'unlearn_s'):.2f} | {med(rows, 'retrain_s'):.2f} | {med(rows, 'speedup'):.1f}× "
                     f"| {med(rows, 'unlearn_rounds'):.0f} / {med(rows, 'retrain_rounds'):.0f} "
                     f"| {med(rows, 'unlearn_bytes') / 1e6:.2f} / {med(rows, 'retrain_bytes') / 1e6:.2f} "
                     f"| {med(rows, 'test_after'):.3f} / {med(rows, 'test_retrain'):.3f} "
                     f"| {med(rows, 'forget_after'):.3f} / {med(rows, 'forget_retrain'):.3f} |")
    text = (f"Medians over {a.seeds} seeds; 3 simulated sites, site 1 withdraws after the last round; "
            f"{meta['cpus']} cores. `python benchmarks/example_app_cost.py --rounds {' '.join(map(str, a.rounds))} "
            f"--seeds {a.seeds}`\n\n" + "\n".join(lines) + "\n")
    (RESULTS / "example_app_cost.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
