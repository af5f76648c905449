"""The unlearn-fl ServerApp: trains, applies withdrawals as they fall due, records every version.

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
from server.workflow import Progress, WithdrawalOutcome, run_federation
from unlearn_fl.config import DPSettings, RunConfig, WithdrawalPlan
from unlearn_fl.engine.protocol import Withdrawals
from unlearn_fl.data import DataSpec, dataset_info, federation
from unlearn_fl.methods import get_method
from unlearn_fl.models import MLP, Standardized, parse_hidden
from unlearn_fl.report.build import data_report
from unlearn_fl.report.html import render_html
from unlearn_fl.report.schema import ForgettingReport, RoundLog
from unlearn_fl.requests import WithdrawalRequest
from unlearn_fl.tracking import Tracker, VersionSpec


def _bool(v) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() in ("1", "true", "yes", "on")


def config_from_run_config(rc: dict) -> RunConfig:
    """Flower run config (flat, kebab-case, from pyproject or --run-config) -> RunConfig."""
    g = rc.get
    fraction = float(g("forget-fraction", 1.0))
    plans = [WithdrawalPlan.parse(t, fraction) for t in str(g("withdraw", "0")).split(";") if t.strip()]
    return RunConfig(
        data=DataSpec(dataset=str(g("dataset", "digits")), target=str(g("target", "")) or None,
                      num_clients=int(g("num-clients", 5)), partition=str(g("partition", "iid")), alpha=float(g("alpha", 0.5)),
                      test_fraction=float(g("test-fraction", 0.2)), holdout_fraction=float(g("holdout-fraction", 0.2)),
                      seed=int(g("seed", 0))),
        rounds=int(g("rounds", 5)), local_epochs=int(g("local-epochs", 2)), batch_size=int(g("batch-size", 32)),
        lr=float(g("lr", 5e-3)), hidden=parse_hidden(str(g("hidden", "64"))), withdrawals=plans,
        requests_dir=Path(str(g("requests-dir"))) if g("requests-dir") else None,
        method=str(g("method", "marginal")), method_config=json.loads(str(g("method-config", "{}"))),
        unlearn_rounds=int(g("unlearn-rounds", 2)), reference=_bool(g("reference", True)),
        model_name=str(g("model-name", "unlearn-fl")), tracking_uri=str(g("tracking-uri", "sqlite:///mlflow.db")),
        out=Path(str(g("out", "unlearn-report"))), seed=int(g("seed", 0)), promote=str(g("promote", "on-pass")),
        checkpoint_every=int(g("checkpoint-every", 0)) or None,
        strategy=str(g("strategy", "fedavg")), proximal_mu=float(g("proximal-mu", 0.01)),
        inject_failure=tuple(int(x) for x in str(g("inject-failure", "")).split(",") if x.strip()),
        dp=DPSettings(noise_multiplier=float(g("dp-noise", 0.0)), max_grad_norm=float(g("dp-clip", 1.0)),
                      central_noise_multiplier=float(g("central-dp-noise", 0.0)),
                      central_clipping_norm=float(g("central-dp-clip", 1.0)), accountant=str(g("accountant", "rdp"))),
    )


class MlflowRecorder:
    """Records versions in MLflow and writes each forgetting report to `cfg.out`."""

    def __init__(self, cfg: RunConfig, tracker: Tracker, strategy_name: str | None = None) -> None:
        self.cfg, self.tracker = cfg, tracker
        self.strategy_name = strategy_name or cfg.strategy
        self.info = dataset_info(cfg.data)
        fed = federation(cfg.data)
        self._mean, self._scale = fed.mean, fed.scale
        self.example = fed.table.X[fed.test_idx[:2]]  # raw rows: the registered model scales its own input
        self.class_names = list(fed.table.class_names)
        method = get_method(cfg.method)
        self.method_config = method.make_config(**{"epochs": cfg.local_epochs, **cfg.method_config}).model_dump()
        self.reports: list[ForgettingReport] = []
        self.aborts: list[tuple[str, str]] = []
        self._params = {"rounds": cfg.rounds, "local_epochs": cfg.local_epochs, "lr": cfg.lr, "clients": cfg.data.num_clients,
                        "dataset": cfg.data.dataset, "partition": cfg.data.partition, "seed": cfg.seed, "hidden": cfg.hidden}

    def _servable(self, model: MLP) -> Standardized:
        return Standardized(self._mean, self._scale, model)

    @staticmethod
    def _rows(logs: list[RoundLog], phase: str) -> list[dict]:
        return [{"step": x.round, "test_acc": x.test_acc, "test_loss": x.test_loss, "n_clients": x.n_clients,
                 "forget_acc": x.forget_acc, "forget_loss": x.forget_loss} for x in logs if x.phase == phase]

    def trained(self, model: MLP, clients: list[int], withdrawals: Withdrawals, rounds: list[RoundLog]) -> str:
        spec = VersionSpec(model=self._servable(model), input_example=self.example, kind="trained", classes=self.class_names, clients=clients,
                           withdrawn_clients=sorted(withdrawals), request_ids=sorted({w.request_id for v in withdrawals.values() for w in v}),
                           method=self.strategy_name, method_config={}, data_digest=self.info["digest"],
                           metrics={"test_acc": rounds[-1].test_acc if rounds else None}, round_metrics=self._rows(rounds, "train"),
                           params=self._params)
        return self.tracker.register(spec, run_name=f"train-r{rounds[-1].round if rounds else 0}")

    def unlearned(self, o: WithdrawalOutcome) -> str:
        cfg = self.cfg
        report = data_report(
            request_id=o.request.request_id, client_ids=list(o.request.client_ids), n_forget=o.n_forget,
            forget_fraction=o.request.fraction, reason=o.request.reason, method=cfg.method, method_config=self.method_config,
            dataset=self.info, model_name=cfg.model_name, test_acc=o.test_acc, retain_acc=o.retain_acc, forget_acc=o.forget_acc,
            audits=o.audits, audit_settings=cfg.audit, unlearn_seconds=o.unlearn_seconds, retrain_seconds=o.retrain_seconds,
            train_seconds=None, unlearn_rounds=o.unlearn_rounds, retrain_rounds=o.trained_rounds if cfg.reference else None,
            rounds=o.rounds, seed=cfg.seed,
        )
        report.audit.reasons.extend(f"note: {n}" for n in o.notes)
        report.accounting = o.accounting
        report.cost.monitor_seconds = o.monitor_seconds
        spec = VersionSpec(model=self._servable(o.after), input_example=self.example, kind="unlearned", classes=self.class_names, clients=o.clients_after,
                           withdrawn_clients=o.withdrawn_clients, request_ids=o.request_ids, method=cfg.method,
                           method_config=self.method_config, data_digest=self.info["digest"],
                           metrics={"test_acc": o.test_acc["after"], "forget_acc": o.forget_acc["after"],
                                    "mia_auc": report.audit.mia_auc_after, "unlearn_seconds": o.unlearn_seconds,
                                    "speedup": report.cost.speedup},
                           round_metrics=self._rows(o.rounds, "unlearn"), params=self._params)

        def attach(version: str, parent: str | None, run_id: str) -> dict[str, str]:
            report.model.version, report.model.parent_version, report.model.run_id = version, parent, run_id
            return {"forgetting_report.json": report.to_json(), "forgetting_report.html": render_html(report)}

        parent = self.tracker.last_version
        version = self.tracker.register(spec, run_name=f"unlearn-{o.request.request_id}", artifacts_fn=attach,
                                        extra_tags={"forget_digest": o.forget_digest, "n_forget": str(o.n_forget)})
        self.tracker.conclude_withdrawal(parent, version, report.audit.verdict, report.digest(),
                                         withdrawn_now=list(o.request.client_ids))
        self._write(report)
        self.reports.append(report)
        return version

    def aborted(self, request: WithdrawalRequest, reason: str) -> None:
        d = Path(self.cfg.out) / request.request_id
        d.mkdir(parents=True, exist_ok=True)
        (d / "aborted.json").write_text(json.dumps({"request_id": request.request_id, "error": reason}, indent=2))
        self.aborts.append((request.request_id, reason))

    def _write(self, report: ForgettingReport) -> None:
        out = Path(self.cfg.out)
        for d in (out, out / report.request.request_id):
            d.mkdir(parents=True, exist_ok=True)
            (d / "forgetting_report.json").write_text(report.to_json())
            (d / "forgetting_report.html").write_text(render_html(report))


def execute(grid: Grid, cfg: RunConfig, strategy: UnlearningStrategy | None = None, progress: Progress | None = None) -> MlflowRecorder:
    """Run the federation with its withdrawals; every version and report is recorded as it is made."""
    with Tracker(cfg.tracking_uri, cfg.model_name, run_name=f"federation-seed{cfg.seed}", promote=cfg.promote,
                 params={"method": cfg.method, "clients": cfg.data.num_clients, "rounds": cfg.rounds}) as tracker:
        name = None
        if strategy is not None:
            base = strategy.base
            name = getattr(base, "strategy", base).__class__.__name__.lower()  # DP wrappers hold the inner strategy
        recorder = MlflowRecorder(cfg, tracker, strategy_name=name)
        run_federation(grid, cfg, recorder, strategy, progress)
    return recorder


def make_server_app(cfg: RunConfig, strategy: UnlearningStrategy | None = None, progress: Progress | None = None,
                    result: dict | None = None, quiet: bool = False) -> ServerApp:
    """A ServerApp bound to `cfg`; the reports and aborts (or the error) are put in `result`."""
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        if quiet:  # run_simulation resets Flower's logger after the CLI quieted it
            import logging

            logging.getLogger("flwr").setLevel(logging.ERROR)
        try:
            recorder = execute(grid, cfg, strategy, progress)
            if result is not None:
                result["reports"] = recorder.reports
                result["aborts"] = recorder.aborts
        except BaseException as e:  # surfaced by the caller; the simulation thread would swallow it
            if result is not None:
                result["error"] = e
            raise

    return server


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    execute(grid, config_from_run_config(dict(context.run_config)))
