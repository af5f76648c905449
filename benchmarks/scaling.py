"""Scaling of unlearn-fl on Flower's simulation engine: 10, 50 and 100 simulated clients.

    .venv/bin/python benchmarks/scaling.py                       # 10, 50, 100 clients
    .venv/bin/python benchmarks/scaling.py --clients 10,50 --rounds 2 --reference-at ''     # no retrain reference

Each size runs `unlearn_fl.cli.run_simulation_job` (train -> withdrawal of client 0 -> unlearning ->
optional retrain reference -> audit -> registry) in its own Python process, so Ray starts fresh and a
crash or out-of-memory at one size does not hide the others. The retrain-from-scratch reference runs
only at the sizes named in --reference-at (default: all three; on digits it adds about 1-2 s of
rounds plus its audit per size), and only there is the unlearning/retraining time ratio measured;
`--reference-at ''` turns it off.

Writes benchmarks/results/scaling.json and benchmarks/results/scaling.md. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"


# ----------------------------------------------------------------- one size (child process)


def _run_config(n: int, rounds: int, local_epochs: int, unlearn_rounds: int, reference: bool, work: Path):
    from unlearn_fl.config import RunConfig
    from unlearn_fl.data import DataSpec

    fields = RunConfig.model_fields
    kw: dict = dict(data=DataSpec(dataset="digits", num_clients=n, seed=0), rounds=rounds, local_epochs=local_epochs,
                    reference=reference, tracking_uri=f"sqlite:///{work / 'mlflow.db'}", out=work / "report",
                    model_name=f"scaling-{n}", seed=0)
    if "unlearn_rounds" in fields:
        kw["unlearn_rounds"] = unlearn_rounds
    if "withdrawals" in fields:  # current API: a list of WithdrawalPlan
        from unlearn_fl.config import WithdrawalPlan

        kw["withdrawals"] = [WithdrawalPlan(client_ids=(0,))]
    else:  # earlier API: withdraw=(0,)
        kw["withdraw"] = (0,)
    return RunConfig(**kw)


def run_one(n: int, rounds: int, local_epochs: int, unlearn_rounds: int, reference: bool) -> dict:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    import logging

    import torch

    torch.set_num_threads(1)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from unlearn_fl.cli import run_simulation_job

    with tempfile.TemporaryDirectory(prefix=f"scaling-{n}-") as tmp:
        cfg = _run_config(n, rounds, local_epochs, unlearn_rounds, reference, Path(tmp))
        ticks: list[tuple[str, int, float]] = []  # (phase, round, time) at the end of every round

        def progress(phase: str, r: int, total: int) -> None:
            ticks.append((phase, r, time.perf_counter()))

        t0 = time.perf_counter()
        try:
            result = run_simulation_job(cfg, progress=progress)
        except TypeError:  # an API without the progress hook
            result = run_simulation_job(cfg)
        wall = time.perf_counter() - t0
    reports = result["reports"] if isinstance(result, dict) else [result]
    rep = reports[0]
    phases: dict[str, int] = {}
    for r in rep.rounds or []:
        phases[r.phase] = phases.get(r.phase, 0) + 1
    cost = rep.cost
    # Steady-state training speed: rounds 2..R of the train phase (round 1 includes Ray start-up).
    train_t = [t for ph, _, t in ticks if ph == "train"]
    train_rpm = (len(train_t) - 1) / ((train_t[-1] - train_t[0]) / 60.0) if len(train_t) >= 2 and train_t[-1] > train_t[0] else None
    return {
        "clients": n,
        "rounds": rounds,
        "local_epochs": local_epochs,
        "reference": reference,
        "wall_seconds": round(wall, 2),
        "rounds_by_phase": phases,
        "rounds_total": sum(phases.values()),
        "train_seconds": cost.train_seconds,
        "train_rounds_per_min_steady": round(train_rpm, 1) if train_rpm else None,
        "first_round_seconds": round(train_t[0] - t0, 2) if train_t else None,
        "unlearn_seconds": cost.unlearn_seconds,
        "retrain_seconds": cost.retrain_seconds,
        "unlearn_rounds": cost.unlearn_rounds,
        "unlearn_over_retrain": (cost.unlearn_seconds / cost.retrain_seconds) if cost.retrain_seconds else None,
        "test_acc_before": rep.utility.test_acc_before,
        "test_acc_after": rep.utility.test_acc_after,
        "verdict": rep.audit.verdict,
        "aborts": len(result.get("aborts", [])) if isinstance(result, dict) else 0,
    }


# ----------------------------------------------------------------- driver


def _fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# unlearn-fl scaling on Flower's simulation engine",
        "",
        f"Machine: {meta['cpus']} CPUs, Python {meta['python']}, flwr {meta['flwr']}, ray {meta['ray']}, torch {meta['torch']}. "
        f"Digits (1,797 rows) split iid; client 0 withdraws; method marginal; 1 local epoch; "
        f"at most {meta['args']['unlearn_rounds']} unlearning rounds; {meta['started']}, 1-min load average at start "
        f"{meta['load_average_at_start']} (the machine may be shared).",
        "",
        "Rounds per minute = federated rounds of all phases (train + unlearn + retrain) / wall minutes, "
        "wall = the whole `run_simulation_job` (Ray start-up, audits, MLflow registration included). "
        "Train rounds/min (steady) = training rounds 2..R over the time between their ends (round 1 carries Ray start-up: see first-round s). unlearn/retrain is the time ratio of the two phases, "
        "measured in the same engine, only where the retrain reference ran.",
        "",
        "| clients | train rounds | rounds (all phases) | wall s | rounds/min | first-round s | train rounds/min (steady) | unlearn s | retrain s | unlearn/retrain | status |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['clients']} | {r['rounds']} | - | {_fmt(r.get('wall_seconds'))} | - | - | - | - | - | - | FAILED: {r['error'][:120]} |")
            continue
        rpm = r["rounds_total"] / (r["wall_seconds"] / 60.0) if r["wall_seconds"] else None
        train_rpm = r.get("train_rounds_per_min_steady")
        ratio = r.get("unlearn_over_retrain")
        lines.append(
            f"| {r['clients']} | {r['rounds']} | {r['rounds_total']} | {_fmt(r['wall_seconds'])} | {_fmt(rpm)} | "
            f"{_fmt(r.get('first_round_seconds'))} | {_fmt(train_rpm)} | "
            f"{_fmt(r['unlearn_seconds'])} | {_fmt(r['retrain_seconds'])} | {_fmt(ratio, '.2f')} | ok ({r['verdict']}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", default="10,50,100", help="comma-separated client counts")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--unlearn-rounds", type=int, default=2)
    p.add_argument("--reference-at", default="10,50,100", help="client counts that also run the retrain reference ('' for none)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per size")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child mode: run one size, print JSON
    p.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.one is not None:
        row = run_one(a.one, a.rounds, a.local_epochs, a.unlearn_rounds, a.reference)
        print("SCALING-RESULT " + json.dumps(row), flush=True)
        return 0

    sizes = [int(x) for x in a.clients.split(",") if x.strip()]
    ref_at = {int(x) for x in a.reference_at.split(",") if x.strip()}
    import flwr
    import ray
    import torch

    meta = {"cpus": os.cpu_count(), "python": platform.python_version(), "flwr": flwr.__version__,
            "ray": ray.__version__, "torch": torch.__version__, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_average_at_start": round(os.getloadavg()[0], 2),
            "args": {"clients": sizes, "rounds": a.rounds, "local_epochs": a.local_epochs,
                     "unlearn_rounds": a.unlearn_rounds, "reference_at": sorted(ref_at)}}
    rows: list[dict] = []
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(n), "--rounds", str(a.rounds),
               "--local-epochs", str(a.local_epochs), "--unlearn-rounds", str(a.unlearn_rounds)]
        if n in ref_at:
            cmd.append("--reference")
        print(f"== {n} clients (reference={'on' if n in ref_at else 'off'})", flush=True)
        t0 = time.perf_counter()
        row: dict
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=a.timeout)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SCALING-RESULT ")]
            if proc.returncode == 0 and lines:
                row = json.loads(lines[-1].removeprefix("SCALING-RESULT "))
            else:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
                row = {"clients": n, "rounds": a.rounds, "error": f"exit {proc.returncode}: " + " | ".join(tail)}
        except subprocess.TimeoutExpired:
            row = {"clients": n, "rounds": a.rounds, "error": f"timeout after {a.timeout:.0f}s"}
        row["process_wall_seconds"] = round(time.perf_counter() - t0, 2)
        row.setdefault("wall_seconds", None)
        rows.append(row)
        print(json.dumps(row), flush=True)
        (out / "scaling.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        (out / "scaling.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    return 0 if all(not r.get("error") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
