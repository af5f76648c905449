"""The unlearn-fl ClientApp: the library's handlers on this project's data and models.

A short user of `unlearn_fl.engine.client`, as any Flower app would be: the site's data
comes from its node config (`data-path`) or, in simulation, from the run config
(`unlearn_fl.apps.local_data`); the model from the run config (`model`, `hidden`).
Feature-unlearning summaries (`unlearn-fl feature --clients N`) are answered by `query`.
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from unlearn_fl.apps import local_data, make_model
from unlearn_fl.engine.client import UnlearningClient
from unlearn_fl.engine.protocol import ARRAYS, CONFIG, METRICS, decode_spec
from unlearn_fl.models import parse_hidden


def model_fn(context: Context, info: dict):
    rc = context.run_config
    return make_model(str(rc.get("model", "mlp")), info["input_shape"], info["n_classes"], parse_hidden(str(rc.get("hidden", "64"))))


unlearner = UnlearningClient(model_fn=model_fn, data_fn=lambda context: local_data(dict(context.run_config), dict(context.node_config)))
app = ClientApp()
unlearner.register(app)


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Feature unlearning's exchange: per-group summaries out, barycenter maps in (engine/feature_exchange.py)."""
    from unlearn_fl.engine import feature_exchange as fx

    cfg = dict(msg.content[CONFIG])
    spec, cid = decode_spec(cfg), UnlearningClient.client_id(context)
    if cfg.get("task") == "feature-summary":
        summary = fx.local_summary(spec, cid, str(cfg["sensitive"]), str(cfg["method"]), str(cfg.get("summary", "sketch")),
                                   split_scores=cfg.get("smoothing") == "auto")
        return Message(content=RecordDict({CONFIG: ConfigRecord({"summary": summary})}), reply_to=msg)
    if cfg.get("task") == "feature-apply":
        out = fx.local_apply(spec, cid, str(cfg["sensitive"]), [str(x) for x in cfg["summaries"]],
                             [float(x) for x in cfg["grid"]], int(cfg["seed"]), str(cfg.get("smoothing", "histogram")))
        return Message(content=RecordDict({METRICS: MetricRecord(out)}), reply_to=msg)
    if cfg.get("task") in ("feature-heads", "feature-heads-eval"):  # the release's task heads, FedAvg
        return _feature_heads(msg, cfg, spec, cid)
    if str(cfg.get("task", "")).startswith("representation-"):  # S out of the global model's representation
        return _representation(msg, cfg, spec, cid)
    if str(cfg.get("task", "")).startswith("regularized-"):  # training with the federation's λ·Î(Z;S)
        return _regularized(msg, cfg, spec, cid)
    raise ValueError(f"unknown query task {cfg.get('task')!r}")


def _feature_heads(msg: Message, cfg: dict, spec, cid: int) -> Message:
    """feature-heads: one local round of the release's task heads on the projected features (arrays back);
    feature-heads-eval: their holdout counts per t (engine/feature_exchange.py `local_feature_heads`)."""
    from flwr.app import Array, ArrayRecord

    from unlearn_fl.engine import feature_exchange as fx

    heads = fx.heads_from_flat({k: a.numpy() for k, a in msg.content["heads"].items()})
    train = cfg["task"] == "feature-heads"
    out, metrics = fx.local_feature_heads(spec, cid, str(cfg["sensitive"]), [str(x) for x in cfg["summaries"]], heads,
                                          int(cfg["head-epochs"]), float(cfg["head-lr"]), int(cfg["seed"]),
                                          str(cfg.get("smoothing", "histogram")), train)
    content = {METRICS: MetricRecord(metrics)}
    if train:
        content[ARRAYS] = ArrayRecord({k: Array(v) for k, v in fx.heads_to_flat(out).items()})
    return Message(content=RecordDict(content), reply_to=msg)


def _representation(msg: Message, cfg: dict, spec, cid: int) -> Message:
    """representation-summary: per-group summary of Z; representation-heads: one local round of the refit heads
    (arrays back); representation-eval: holdout counts per t (engine/feature_exchange.py)."""
    from flwr.app import Array, ArrayRecord

    from unlearn_fl.engine import feature_exchange as fx

    state = {k: a.numpy() for k, a in msg.content["model"].items()}
    sensitive, kind = str(cfg["sensitive"]), str(cfg["kind"])
    if cfg["task"] == "representation-summary":
        summary = fx.local_representation_summary(spec, cid, sensitive, str(cfg["method"]), state, kind)
        return Message(content=RecordDict({CONFIG: ConfigRecord({"summary": summary})}), reply_to=msg)
    heads = fx.heads_from_flat({k: a.numpy() for k, a in msg.content["heads"].items()})
    train = cfg["task"] == "representation-heads"
    out, metrics = fx.local_representation_heads(spec, cid, sensitive, state, [str(x) for x in cfg["summaries"]], heads,
                                                 kind, int(cfg["epochs"]), float(cfg["lr"]), int(cfg["seed"]), train)
    content = {METRICS: MetricRecord(metrics)}
    if train:
        content[ARRAYS] = ArrayRecord({k: Array(v) for k, v in fx.heads_to_flat(out).items()})
    return Message(content=RecordDict(content), reply_to=msg)


def _regularized(msg: Message, cfg: dict, spec, cid: int) -> Message:
    """regularized-sums: per-group sums of the model's soft outcome and counts; regularized-train: one round's local
    steps on utility + λ·Î_fed (model arrays back); regularized-eval: holdout counts (unlearn_fl.feature.federated_regularized)."""
    from flwr.app import Array, ArrayRecord

    from unlearn_fl.engine import feature_exchange as fx

    out = fx.local_regularized(spec, cid, str(cfg["sensitive"]), [str(g) for g in cfg["groups"]], str(cfg["task"]),
                               str(cfg["regularized-config"]), {k: a.numpy() for k, a in msg.content["model"].items()},
                               {k: a.numpy() for k, a in msg.content["totals"].items()} if "totals" in msg.content else None)
    arrays, metrics = out
    content = {METRICS: MetricRecord(metrics)}
    if arrays:
        content[ARRAYS] = ArrayRecord({k: Array(v) for k, v in arrays.items()})
    return Message(content=RecordDict(content), reply_to=msg)
