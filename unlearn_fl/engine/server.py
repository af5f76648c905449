"""The server side of unlearn-fl: a complete Flower `Strategy` that wraps the user's own.

A user's `server_app.py` keeps the shape of Flower's templates:

    from unlearn_fl.engine.server import UnlearningStrategy
    from unlearn_fl.config import UnlearningSettings

    @app.main()
    def main(grid, context):
        strategy = UnlearningStrategy(FedAvg(), model_fn=Net, settings=UnlearningSettings(
            num_clients=3, requests_dir="requests", model_name="my-model", tracking_uri="sqlite:///mlflow.db"))
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(Net().state_dict()), num_rounds=5,
                                train_config=ConfigRecord({"lr": 0.01}))

`start` runs the user's strategy round by round (sampling and aggregation are the
wrapped strategy's), and between rounds takes the withdrawals that are due (planned in
the settings, or found in the request folder): it runs the unlearning rounds, the
retrain-from-scratch reference (optional), the sites' audits, and registers each
released model in MLflow with its forgetting report. Withdrawn sites are never sampled
again. The server loads no client data: evaluation is the user's `evaluate_fn` when
given, else federated (the sites' holdout counts).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from torch import nn

from unlearn_fl.config import UnlearningSettings
from unlearn_fl.data import Split
from unlearn_fl.engine.federation import Progress
from unlearn_fl.engine.withdrawal import WithdrawalOutcome, run_federation
from unlearn_fl.engine.strategy import WithdrawalFilter, default_base_strategy

log = logging.getLogger("unlearn_fl")

FlowerEvaluateFn = Callable[[int, ArrayRecord], "MetricRecord | None"]


class UnlearningStrategy(Strategy):
    """Any Flower strategy, plus withdrawals: unlearning, audit and registration between rounds.

    base: the user's strategy (FedAvg when None); it samples and aggregates every round.
    model_fn: () -> nn.Module, the architecture the sites train (same as their `model_fn`).
    settings: `UnlearningSettings` (withdrawals, method, tracking, audit, DP, ...).
    test: an optional labelled test split the server owns (else federated evaluation).
    progress: optional callback (phase, round, total).

    After `start`, `outcomes` holds each applied withdrawal and `recorder` the versions,
    reports and aborted requests.
    """

    def __init__(self, base: Strategy | None = None, *, model_fn: Callable[[], nn.Module],
                 settings: UnlearningSettings | None = None, test: Split | None = None,
                 progress: Progress | None = None, recorder_options: dict | None = None) -> None:
        self.base = base if base is not None else default_base_strategy()
        for attr in ("min_train_nodes", "min_evaluate_nodes", "min_available_nodes"):
            # A withdrawal shrinks the federation: a minimum above 1 would wait forever for a site that left.
            if getattr(self.base, attr, 1) > 1:
                setattr(self.base, attr, 1)
        self.model_fn, self.settings, self.test, self.progress = model_fn, settings or UnlearningSettings(), test, progress
        self.recorder_options = recorder_options or {}
        self.outcomes: list[WithdrawalOutcome] = []
        self.recorder = None

    # ---- Flower's Strategy interface: the wrapped strategy's, unchanged
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self.base.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.base.aggregate_train(server_round, replies)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self.base.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.base.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        log.info("UnlearningStrategy around %s: method %s, %d planned withdrawal(s), requests from %s",
                 type(self.base).__name__, self.settings.method, len(self.settings.withdrawals),
                 self.settings.requests_dir or "-")
        self.base.summary()

    # ---- the federation with withdrawals
    def make_model(self) -> nn.Module:
        """The model factory's module, made Opacus-compatible the same way the sites do when DP-SGD is on."""
        model = self.model_fn()
        if self.settings.dp.local:
            from unlearn_fl.accounting.validation import dp_compatible

            model = dp_compatible(model)[0]
        return model

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3, timeout: float = 3600,
              train_config: ConfigRecord | None = None, evaluate_config: ConfigRecord | None = None,
              evaluate_fn: FlowerEvaluateFn | None = None) -> Result:
        """Flower's `Strategy.start`, with withdrawals applied between rounds (see the module docstring).

        train_config: `lr`, `local-epochs` and `batch-size` override the settings' values.
        evaluate_fn: Flower's (round, arrays) -> MetricRecord; it must report `accuracy` and `loss`.
        Raises FederationError when the sites do not connect or disagree on the input shape.
        """
        from unlearn_fl.engine.recorder import MlflowRecorder
        from unlearn_fl.tracking import Tracker

        tc = dict(train_config or {})
        update: dict = {"rounds": int(num_rounds)}
        for key, field, kind in (("lr", "lr", float), ("local-epochs", "local_epochs", int),
                                 ("local_epochs", "local_epochs", int), ("batch-size", "batch_size", int)):
            if key in tc:
                update[field] = kind(tc[key])
        settings = UnlearningSettings.model_validate({**self.settings.model_dump(), **update})
        model = self.make_model()
        model.load_state_dict(initial_arrays.to_torch_state_dict())
        server_eval = None
        if evaluate_fn is not None:
            def server_eval(m: nn.Module) -> tuple[float, float]:
                rec = evaluate_fn(0, ArrayRecord({k: v.detach() for k, v in m.state_dict().items()}))
                if rec is None or "accuracy" not in rec or "loss" not in rec:
                    raise ValueError("evaluate_fn must return a MetricRecord with 'accuracy' and 'loss'")
                return float(rec["accuracy"]), float(rec["loss"])
        inner = WithdrawalFilter(self.base).keep_pristine()
        name = type(getattr(self.base, "strategy", self.base)).__name__.lower()  # DP wrappers hold the inner strategy
        with Tracker(settings.tracking_uri, settings.model_name, run_name=f"federation-seed{settings.seed}",
                     promote=settings.promote, params={"method": settings.method, "clients": settings.num_clients,
                                                       "rounds": settings.rounds}) as tracker:
            self.recorder = MlflowRecorder(settings, tracker, strategy_name=name, **self.recorder_options)
            model, self.outcomes, logs = run_federation(grid, settings, self.recorder, model, inner, self.progress,
                                                        test=self.test, evaluate_fn=server_eval, timeout=timeout)
        result = Result()
        result.arrays = ArrayRecord({k: v.detach() for k, v in model.state_dict().items()})
        for x in logs:
            result.evaluate_metrics_serverapp[x.round] = MetricRecord({"accuracy": x.test_acc, "loss": x.test_loss})
        return result

    def __deepcopy__(self, memo):
        new = copy.copy(self)
        new.base = copy.deepcopy(self.base, memo)
        return new
