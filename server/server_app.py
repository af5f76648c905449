"""The unlearn-fl ServerApp: a short user of `unlearn_fl.engine.server.UnlearningStrategy`.

Settings come from the Flower run config (`[tool.flwr.app.config]` in pyproject.toml,
overridable with `flwr run . --run-config ...`; `unlearn-fl simulate` writes one).
With bundled data the server keeps its own test split (Flower's `evaluate_fn` evaluates on it,
and the audits use it as extra non-members); with per-site files it holds no client data and
evaluation is federated.
"""

from __future__ import annotations

import logging

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from unlearn_fl.apps import config_from_run_config, make_model
from unlearn_fl.engine.federation import describe_sites
from unlearn_fl.engine.server import UnlearningStrategy
from unlearn_fl.engine.strategy import base_strategy
from unlearn_fl.config import UnlearningSettings
from unlearn_fl.models import Standardized, evaluate, reinitialized

log = logging.getLogger("unlearn_fl")
app = ServerApp()


def progress(phase: str, r: int, total: int) -> None:
    """One line per round, which `unlearn-fl simulate` turns into its progress bars."""
    log.warning("unlearn-fl progress %s %d %d", phase, r, total)


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = config_from_run_config(dict(context.run_config))
    recorder_options, test = {}, None
    if cfg.server_has_data:
        from unlearn_fl.data import dataset_info, federation

        fed = federation(cfg.data)
        shape, n_classes, test = fed.table.X.shape[1:], fed.table.n_classes, fed.scaled(fed.test_idx)
        recorder_options = {"dataset": dataset_info(cfg.data), "input_example": fed.table.X[fed.test_idx[:2]],
                            "class_names": list(fed.table.class_names),
                            "servable": lambda m: Standardized(fed.mean, fed.scale, m)}
    else:
        shape, n_classes = describe_sites(grid, cfg.num_clients)
    model_fn = lambda: reinitialized(make_model(cfg.model, tuple(shape), n_classes, cfg.hidden), seed=cfg.seed)
    if cfg.dp.central:
        from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

        base = DifferentialPrivacyServerSideFixedClipping(
            base_strategy(cfg.strategy, proximal_mu=cfg.proximal_mu), noise_multiplier=cfg.dp.central_noise_multiplier,
            clipping_norm=cfg.dp.central_clipping_norm, num_sampled_clients=cfg.num_clients)
    else:
        base = base_strategy(cfg.strategy, proximal_mu=cfg.proximal_mu)
    settings = {k: v for k, v in cfg.model_dump().items() if k in UnlearningSettings.model_fields}
    strategy = UnlearningStrategy(base, model_fn=model_fn, settings=UnlearningSettings.model_validate(settings), test=test,
                                  progress=progress, recorder_options=recorder_options)
    evaluate_fn = None
    if test is not None:  # Flower's server-side evaluation, on the server's own test split
        def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            m = strategy.make_model()
            m.load_state_dict(arrays.to_torch_state_dict())
            acc, loss = evaluate(m, test)
            return MetricRecord({"accuracy": acc, "loss": loss})

    model = strategy.make_model()
    strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=cfg.rounds,
                   train_config=ConfigRecord({"lr": cfg.lr, "local-epochs": cfg.local_epochs, "batch-size": cfg.batch_size}),
                   evaluate_fn=evaluate_fn)
