"""The unlearn-fl ServerApp: runs one withdrawal end to end and records it.

`app` reads its settings from the Flower run config (`[tool.flwr.app.config]` in
pyproject.toml, overridable with `flwr run . --run-config "key=value ..."`).
`make_server_app(cfg)` builds the same app from a RunConfig (used by `unlearn-fl simulate`).
"""

from __future__ import annotations

import json
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from server.strategy import UnlearningStrategy
from server.workflow import Progress, run_withdrawal
from unlearn_fl.config import RunConfig
from unlearn_fl.data import DataSpec, dataset_info, server_test
from unlearn_fl.methods import get_method
from unlearn_fl.models import parse_hidden
from unlearn_fl.report.build import data_report
from unlearn_fl.report.html import render_html
from unlearn_fl.report.schema import ForgettingReport
from unlearn_fl.tracking import VersionSpec, record_withdrawal


def config_from_run_config(rc: dict) -> RunConfig:
    """Flower run config (flat, kebab-case) -> RunConfig."""
    g = rc.get
    return RunConfig(
        data=DataSpec(dataset=str(g("dataset", "digits")), target=(str(g("target")) or None) if g("target") else None,
                      num_clients=int(g("num-clients", 5)), partition=str(g("partition", "iid")), alpha=float(g("alpha", 0.5)),
                      test_fraction=float(g("test-fraction", 0.2)), holdout_fraction=float(g("holdout-fraction", 0.2)),
                      seed=int(g("seed", 0))),
        rounds=int(g("rounds", 5)), local_epochs=int(g("local-epochs", 2)), batch_size=int(g("batch-size", 32)),
        lr=float(g("lr", 5e-3)), hidden=parse_hidden(str(g("hidden", "64"))),
        withdraw=tuple(int(x) for x in str(g("withdraw", "0")).split(",") if x.strip()),
        forget_fraction=float(g("forget-fraction", 1.0)), method=str(g("method", "marginal")),
        method_config=json.loads(str(g("method-config", "{}"))), reference=bool(g("reference", True)),
        model_name=str(g("model-name", "unlearn-fl")), tracking_uri=str(g("tracking-uri", "sqlite:///mlflow.db")),
        out=Path(str(g("out", "unlearn-report"))), seed=int(g("seed", 0)),
    )


def execute(grid: Grid, cfg: RunConfig, strategy: UnlearningStrategy | None = None, progress: Progress | None = None) -> ForgettingReport:
    """Run the withdrawal, build the report, register both versions, write the report files."""
    outcome = run_withdrawal(grid, cfg, strategy, progress)
    method = get_method(cfg.method)
    mcfg = method.make_config(**{"epochs": cfg.local_epochs, **cfg.method_config}).model_dump()
    info = dataset_info(cfg.data)
    report = data_report(
        request_id=outcome.request.request_id, client_ids=list(outcome.request.client_ids), n_forget=outcome.n_forget,
        forget_fraction=cfg.forget_fraction, reason=cfg.reason, method=cfg.method, method_config=mcfg, dataset=info,
        model_name=cfg.model_name, test_acc=outcome.test_acc, retain_acc=outcome.retain_acc, forget_acc=outcome.forget_acc,
        audits=outcome.audits, audit_settings=cfg.audit, unlearn_seconds=outcome.unlearn_seconds,
        retrain_seconds=outcome.retrain_seconds, train_seconds=outcome.train_seconds, unlearn_rounds=outcome.unlearn_rounds,
        retrain_rounds=cfg.rounds if cfg.reference else None, rounds=outcome.rounds, seed=cfg.seed,
    )
    if outcome.dropped:
        report.audit.reasons.extend(f"note: {d}" for d in outcome.dropped)
    example = server_test(cfg.data).X[:2]
    common = dict(method_config=mcfg, data_digest=info["digest"],
                  params={"rounds": cfg.rounds, "local_epochs": cfg.local_epochs, "lr": cfg.lr, "clients": cfg.data.num_clients,
                          "dataset": cfg.data.dataset, "partition": cfg.data.partition, "seed": cfg.seed, "hidden": cfg.hidden})
    rounds = lambda phase: [{"step": x.round, "test_acc": x.test_acc, "test_loss": x.test_loss} for x in outcome.rounds if x.phase == phase]
    trained = VersionSpec(model=outcome.before, input_example=example, kind="trained", clients=outcome.clients_contained["before"],
                          parent_version=None, withdrawn_clients=[], request_ids=[], method="fedavg",
                          metrics={"test_acc": outcome.test_acc["before"]}, round_metrics=rounds("train"), **common)
    unlearned = VersionSpec(model=outcome.after, input_example=example, kind="unlearned", clients=outcome.clients_contained["after"],
                            parent_version=None, withdrawn_clients=list(outcome.request.client_ids),
                            request_ids=[outcome.request.request_id], method=cfg.method,
                            metrics={"test_acc": outcome.test_acc["after"], "mia_auc": report.audit.mia_auc_after,
                                     "forget_acc": outcome.forget_acc["after"]}, round_metrics=rounds("unlearn"), **common)
    record_withdrawal(cfg.tracking_uri, cfg.model_name, trained, unlearned, report, render_html)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "forgetting_report.json").write_text(report.to_json())
    (out / "forgetting_report.html").write_text(render_html(report))
    return report


def make_server_app(cfg: RunConfig, strategy: UnlearningStrategy | None = None, progress: Progress | None = None,
                    result: dict | None = None) -> ServerApp:
    """A ServerApp bound to `cfg`; the finished report (or the error) is put in `result`."""
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            report = execute(grid, cfg, strategy, progress)
            if result is not None:
                result["report"] = report
        except BaseException as e:  # surfaced by the caller; the simulation thread would swallow it
            if result is not None:
                result["error"] = e
            raise

    return server


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    execute(grid, config_from_run_config(dict(context.run_config)))
