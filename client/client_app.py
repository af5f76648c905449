"""The unlearn-fl ClientApp: trains, evaluates, unlearns and audits on the client's own data.

Thin wiring: decode the message, call unlearn_fl.engine.client_logic, encode the reply.
Only model arrays and aggregate statistics are ever returned.

The client's id is its `partition-id` from the node config (simulation), and in a
deployment `--node-config "partition-id=K num-partitions=N"` on each SuperNode.
"""

from __future__ import annotations

import json

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from unlearn_fl.engine import client_logic as local
from unlearn_fl.engine.protocol import ARRAYS, CONFIG, METRICS, decode_spec, decode_withdrawals
from unlearn_fl.models import MLP, parse_hidden

app = ClientApp()


def _client_id(context: Context) -> int:
    try:
        return int(context.node_config["partition-id"])
    except KeyError:
        raise RuntimeError("this SuperNode has no partition-id: start it with --node-config \"partition-id=K num-partitions=N\"") from None


def _setup(msg: Message, context: Context):
    cfg = dict(msg.content[CONFIG])
    spec = decode_spec(cfg)
    cid = _client_id(context)
    withdrawals = decode_withdrawals(str(cfg.get("withdrawals", "")))
    cd, retained, forgotten = local.local_views(spec, cid, withdrawals, str(cfg.get("active-request", "")))
    failing = [int(x) for x in str(cfg.get("inject-failure", "")).split(",") if x.strip()]
    if cid in failing and cfg.get("phase", cfg.get("task")) in ("unlearn",):
        # Resilience testing only (run config `inject-failure`): this client fails its unlearning step.
        raise RuntimeError(f"client {cid}: injected failure")
    model = None
    if ARRAYS in msg.content:
        from unlearn_fl.data import load_table

        t = load_table(spec.dataset, spec.target)
        model = MLP(t.X.shape[1], t.n_classes, parse_hidden(str(cfg["hidden"])))
        model.load_state_dict(msg.content[ARRAYS].to_torch_state_dict())
    return cfg, cid, withdrawals, cd, retained, forgotten, model


def _numeric(d: dict) -> dict:
    return {k: float(v) if isinstance(v, float) else int(v) for k, v in d.items() if isinstance(v, (int, float)) and np.isfinite(v)}


_TRAIN_KEYS = ("num-examples", "train-loss")
_UNLEARN_KEYS = ("num-examples", "steps", "forget-n", "target-reached")
_DP_KEYS = ("dp-steps", "dp-sample-rate")


@app.train()
def train(msg: Message, context: Context) -> Message:
    cfg, cid, withdrawals, cd, retained, forgotten, model = _setup(msg, context)
    seed = int(cfg["seed"]) + 7919 * cid
    dp_noise, dp_clip = float(cfg.get("dp-noise", 0.0)), float(cfg.get("dp-clip", 1.0))
    holder = len(forgotten) > 0
    if cfg["phase"] == "unlearn" and (holder or dp_noise <= 0):
        # Retainers train on retained rows only; the forget-holders of the active request also
        # run the method's forget term on the rows that request removes. Under DP a holder's own
        # retained rows sit this step out, so no row is ever trained on without DP-SGD.
        ref = list(cfg.get("reference-mean", [])) or None
        keep = retained if dp_noise <= 0 else retained.subset(np.zeros(0, dtype=np.int64))
        model, metrics = local.local_unlearn(model, cd, keep, forgotten, str(cfg["method"]),
                                             json.loads(str(cfg["method-config"])), ref, seed)
        if dp_noise > 0:
            metrics.update({"dp-steps": 0, "dp-sample-rate": 0.0})
    else:
        metrics = local.local_train(model, retained, int(cfg["local-epochs"]), float(cfg["lr"]), int(cfg["batch-size"]),
                                    seed, dp_noise=dp_noise, dp_clip=dp_clip, proximal_mu=float(cfg.get("proximal-mu", 0.0)))
        if cfg["phase"] == "unlearn":
            metrics.update({"steps": 0, "forget-n": 0, "target-reached": 0})
    metrics["num-examples"] = max(1, int(metrics["num-examples"]))
    # Flower aggregates metrics only when every reply has the same keys.
    keys = _UNLEARN_KEYS if cfg["phase"] == "unlearn" else _TRAIN_KEYS
    metrics = {k: metrics.get(k, 0) for k in keys + (_DP_KEYS if dp_noise > 0 else ())}
    content = RecordDict({ARRAYS: ArrayRecord(model.state_dict()), METRICS: MetricRecord(_numeric(metrics))})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    _, _, _, _, retained, forgotten, model = _setup(msg, context)
    metrics = local.local_evaluate(model, retained, forgotten)
    return Message(content=RecordDict({METRICS: MetricRecord(_numeric(metrics))}), reply_to=msg)


@app.query()
def query(msg: Message, context: Context) -> Message:
    cfg = dict(msg.content[CONFIG])
    task = cfg.get("task")
    if task == "hello":
        return Message(content=RecordDict({METRICS: MetricRecord({"client-id": _client_id(context)})}), reply_to=msg)
    if task in ("feature-summary", "feature-apply"):
        from unlearn_fl.engine import feature_exchange as fx

        spec, cid = decode_spec(cfg), _client_id(context)
        if task == "feature-summary":
            summary = fx.local_summary(spec, cid, str(cfg["sensitive"]), str(cfg["method"]))
            return Message(content=RecordDict({CONFIG: ConfigRecord({"summary": summary})}), reply_to=msg)
        out = fx.local_apply(spec, cid, str(cfg["sensitive"]), [str(x) for x in cfg["summaries"]],
                             [float(x) for x in cfg["grid"]], int(cfg["seed"]))
        return Message(content=RecordDict({METRICS: MetricRecord(out)}), reply_to=msg)
    cfg, cid, withdrawals, cd, retained, forgotten, model = _setup(msg, context)
    if task == "count":
        # The count and a hash of the rows this request forgets (for lineage tags): never the rows.
        from unlearn_fl.data import digest_rows

        return Message(content=RecordDict({METRICS: MetricRecord({"forget-n": len(forgotten)}),
                                           CONFIG: ConfigRecord({"forget-digest": digest_rows(forgotten)})}), reply_to=msg)
    if task == "stats":
        stats = local.local_stats(model, retained, str(cfg["statistic"]))
        return Message(content=RecordDict({CONFIG: ConfigRecord(stats)}), reply_to=msg)
    if task == "audit":
        audit = local.local_audit(
            model, cd, forgotten,
            extra_nonmember_losses=np.asarray(cfg.get("nonmember-losses", []), dtype=np.float64),
            extra_nonmember_labels=np.asarray(cfg.get("nonmember-labels", []), dtype=np.int64),
            retain_mean=list(cfg.get("retain-mean", [])) or None,
            n_retain=int(cfg.get("retain-n", 0)),
            statistic=str(cfg["statistic"]),
            delta=float(cfg["delta"]), confidence=float(cfg["confidence"]), seed=int(cfg["seed"]),
        )
        return Message(content=RecordDict({CONFIG: ConfigRecord({"audit": audit.model_dump_json()})}), reply_to=msg)
    raise ValueError(f"unknown query task {task!r}")
