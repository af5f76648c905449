"""The project's own Flower app: how its ClientApp and ServerApp make data, models and settings.

Everything comes from Flower's run config (`[tool.flwr.app.config]`, `--run-config`) and,
on each SuperNode, its node config:

- `data-path` (node config): the site's own file (CSV, .npz or image folder, `sites.load_site`);
  `erasure-dir` (node config): its site-local erasure store for record-level requests.
- `site-files` (run config, simulation): one such file per simulated site, ';'-separated.
- otherwise the bundled data set / CSV named by `dataset`, partitioned by `partition-id`.

`to_run_config` and `config_from_run_config` convert a `RunConfig` to and from the flat
run config, so `unlearn-fl simulate` and `flwr run .` run the very same app.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from torch import nn

from unlearn_fl.config import AuditSettings, DPSettings, RecordScope, RunConfig, WithdrawalPlan
from unlearn_fl.data import DataSpec, federation
from unlearn_fl.engine.client import LocalData
from unlearn_fl.models import MLP, parse_hidden


def _bool(v) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() in ("1", "true", "yes", "on")


# ------------------------------------------------------------------ data


def site_dir(run_config: dict, client_id: int) -> Path | None:
    """The simulated site's own folder (erasure store), when the run names a sites folder."""
    root = str(run_config.get("sites-dir", "") or "")
    return Path(root) / f"site-{client_id}" if root else None


def local_data(run_config: dict, node_config: dict) -> LocalData:
    """The site's data as the project's ClientApp loads it (see the module docstring)."""
    from unlearn_fl.sites import load_site

    k = int(node_config.get("partition-id", 0))
    own = site_dir(run_config, k)
    erasure = node_config.get("erasure-dir") or (own / "erasures" if own else None)
    files = [f for f in str(run_config.get("site-files", "") or "").split(";") if f.strip()]
    path = node_config.get("data-path") or (files[k] if files else None)
    if path:
        classes = str(run_config.get("classes", "") or "") or None
        site = load_site(path, target=str(run_config.get("target", "") or "label"), classes=classes,
                         holdout_fraction=float(run_config.get("holdout-fraction", 0.2)),
                         id_column=str(run_config.get("id-column", "record_id")))
        return LocalData.from_site(site, erasure)
    spec = config_from_run_config(run_config).data
    spec = spec.model_copy(update={"num_clients": int(node_config.get("num-partitions", spec.num_clients))})
    fed = federation(spec)
    train, holdout = fed.client_train_idx[k], fed.client_holdout_idx[k]
    return LocalData(fed.scaled(train), fed.scaled(holdout), [str(i) for i in train], [str(i) for i in holdout], erasure)


# ------------------------------------------------------------------ models


def make_model(kind: str, input_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...] = (64,)) -> nn.Module:
    """The project's architectures for an input of `input_shape` (without the batch axis).

    mlp: a ReLU MLP on flattened inputs. cnn: `cnn.SmallCNN` on (C, H, W) images; flat rows
    of a square number of pixels (the digits' 64) are viewed as one-channel images.
    Raises ValueError for a cnn on inputs that are not images.
    """
    d = int(np.prod(input_shape))
    if kind == "mlp":
        mlp = MLP(d, n_classes, hidden)
        return mlp if len(input_shape) == 1 else nn.Sequential(nn.Flatten(), mlp)
    if kind == "cnn":
        from unlearn_fl.cnn import SmallCNN

        if len(input_shape) == 3:
            return SmallCNN(*input_shape, n_classes=n_classes)
        side = math.isqrt(d)
        if len(input_shape) == 1 and side * side == d:
            return nn.Sequential(nn.Unflatten(1, (1, side, side)), SmallCNN(1, side, side, n_classes=n_classes))
        raise ValueError(f"model cnn needs images: inputs of shape {input_shape} are not (C, H, W) nor a square of pixels; use model mlp")
    raise ValueError(f"unknown model {kind!r}: use mlp or cnn")


# ------------------------------------------------------------------ run config


def config_from_run_config(rc: dict) -> RunConfig:
    """Flower run config (flat, kebab-case, from pyproject or --run-config) -> RunConfig."""
    g = rc.get
    fraction = float(g("forget-fraction", 1.0))
    reason = str(g("withdraw-reason", "") or "") or None
    plans = [WithdrawalPlan.parse(t, fraction, reason) for t in str(g("withdraw", "0")).split(";") if t.strip()]
    records = str(g("withdraw-records", "") or "")
    if records:  # "COUNT:DIGEST" of a record-level request whose ids the site holds
        count, _, digest = records.partition(":")
        plans = [p.model_copy(update={"records": RecordScope(count=int(count), digest=digest)}) for p in plans]
    files = tuple(f for f in str(g("site-files", "") or "").split(";") if f.strip())
    return RunConfig(
        data=DataSpec(dataset=str(g("dataset", "digits")), target=str(g("target", "")) or None,
                      num_clients=int(g("num-clients", 5)), partition=str(g("partition", "iid")), alpha=float(g("alpha", 0.5)),
                      test_fraction=float(g("test-fraction", 0.2)), holdout_fraction=float(g("holdout-fraction", 0.2)),
                      canaries=float(g("canaries", 0.0)), canary_kind=str(g("canary-kind", "ood")),
                      canary_clients=tuple(int(x) for x in str(g("canary-clients", "0")).split(",") if x.strip()),
                      seed=int(g("seed", 0))),
        site_files=files, sites_dir=Path(str(g("sites-dir"))) if g("sites-dir") else None,
        site_data=_bool(g("site-data", False)), model=str(g("model", "mlp")),
        classes=str(g("classes", "") or ""), id_column=str(g("id-column", "record_id")),
        standardize_inputs=bool(files) or _bool(g("site-data", False)),
        rounds=int(g("rounds", 5)), local_epochs=int(g("local-epochs", 2)), batch_size=int(g("batch-size", 32)),
        lr=float(g("lr", 5e-3)), hidden=parse_hidden(str(g("hidden", "64"))), withdrawals=plans,
        requests_dir=Path(str(g("requests-dir"))) if g("requests-dir") else None,
        method=str(g("method", "marginal")), method_config=json.loads(str(g("method-config", "{}"))),
        unlearn_rounds=int(g("unlearn-rounds", 2)), store_history=_bool(g("store-history", False)),
        history_every=int(g("history-every", 2)), forget_weight=str(g("forget-weight", "objective")), reference=_bool(g("reference", True)),
        model_name=str(g("model-name", "unlearn-fl")), tracking_uri=str(g("tracking-uri", "sqlite:///mlflow.db")),
        out=Path(str(g("out", "unlearn-report"))), seed=int(g("seed", 0)), promote=str(g("promote", "on-pass")),
        erase_superseded=str(g("erase-superseded", "keep")), plan_salt=str(g("plan-salt", "") or ""), ledger=str(g("ledger", "") or "") or None,
        checkpoint_every=int(g("checkpoint-every", 0)) or None,
        strategy=str(g("strategy", "fedavg")), proximal_mu=float(g("proximal-mu", 0.01)),
        inject_failure=tuple(int(x) for x in str(g("inject-failure", "")).split(",") if x.strip()),
        dp=DPSettings(noise_multiplier=float(g("dp-noise", 0.0)), max_grad_norm=float(g("dp-clip", 1.0)),
                      central_noise_multiplier=float(g("central-dp-noise", 0.0)),
                      central_clipping_norm=float(g("central-dp-clip", 1.0)), accountant=str(g("accountant", "rdp"))),
        audit=AuditSettings(epsilon_target=float(g("epsilon-target", 0.0)) or None, confidence=float(g("audit-confidence", 0.95)),
                            references=int(g("audit-references", 0)), reference_mode=str(g("audit-reference-mode", "offline"))),
    )


def to_run_config(cfg: RunConfig) -> dict:
    """RunConfig -> the flat run config of `[tool.flwr.app.config]` (inverse of `config_from_run_config`)."""
    d = cfg.data
    plans = cfg.withdrawals
    fractions = {p.fraction for p in plans}
    if len(fractions) > 1:
        raise ValueError("the run config carries one forget fraction for all planned withdrawals")
    records = [p.records for p in plans if p.records is not None]
    return {
        "dataset": d.dataset, "target": d.target or "", "num-clients": cfg.num_clients, "partition": d.partition,
        "alpha": d.alpha, "test-fraction": d.test_fraction, "holdout-fraction": d.holdout_fraction, "seed": cfg.seed,
        "canaries": d.canaries, "canary-kind": d.canary_kind, "canary-clients": ",".join(map(str, d.canary_clients)),
        "site-files": ";".join(cfg.site_files), "sites-dir": str(cfg.sites_dir or ""), "model": cfg.model,
        "site-data": cfg.site_data, "classes": cfg.classes, "id-column": cfg.id_column,
        "rounds": cfg.rounds, "local-epochs": cfg.local_epochs, "batch-size": cfg.batch_size, "lr": cfg.lr,
        "hidden": ",".join(map(str, cfg.hidden)),
        "withdraw": ";".join(",".join(map(str, p.client_ids)) + (f"@{p.at_round}" if p.at_round else "") for p in plans),
        "forget-fraction": next(iter(fractions)) if fractions else 1.0,
        "withdraw-reason": next((p.reason for p in plans if p.reason), "") or "",
        "withdraw-records": f"{records[0].count}:{records[0].digest}" if records else "",
        "method": cfg.method, "method-config": json.dumps(cfg.method_config), "unlearn-rounds": cfg.unlearn_rounds,
        "store-history": cfg.store_history, "history-every": cfg.history_every, "forget-weight": cfg.forget_weight,
        "reference": cfg.reference, "promote": cfg.promote, "erase-superseded": cfg.erase_superseded,
        "ledger": cfg.ledger or "", "plan-salt": cfg.plan_salt, "requests-dir": str(cfg.requests_dir or ""),
        "inject-failure": ",".join(map(str, cfg.inject_failure)),
        "dp-noise": cfg.dp.noise_multiplier, "dp-clip": cfg.dp.max_grad_norm,
        "central-dp-noise": cfg.dp.central_noise_multiplier, "central-dp-clip": cfg.dp.central_clipping_norm,
        "accountant": cfg.dp.accountant, "epsilon-target": cfg.audit.epsilon_target or 0.0, "audit-confidence": cfg.audit.confidence,
        "audit-references": cfg.audit.references, "audit-reference-mode": cfg.audit.reference_mode,
        "strategy": cfg.strategy, "proximal-mu": cfg.proximal_mu,
        "checkpoint-every": cfg.checkpoint_every or 0, "model-name": cfg.model_name, "tracking-uri": cfg.tracking_uri,
        "out": str(cfg.out),
    }

