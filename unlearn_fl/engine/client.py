"""The client side of unlearn-fl: a handler object any Flower `ClientApp` registers.

The user keeps their model and data code and hands unlearn-fl three things:

    from flwr.clientapp import ClientApp
    from unlearn_fl.engine.client import LocalData, UnlearningClient

    def local_data(context):                 # the site's own rows, loaded at the site
        train, holdout, ids = load_my_site(context.node_config["data-path"])
        return LocalData(train=train, holdout=holdout, record_ids=ids,
                         erasure_dir=context.node_config.get("erasure-dir"))

    unlearner = UnlearningClient(model_fn=Net, data_fn=local_data)   # optional: criterion=...
    app = ClientApp()
    unlearner.register(app)

`register` adds a handler for each message type of the protocol (`engine/protocol.py`):
Flower's default `train` (training on retained rows) and unlearn-fl's own actions
(`train.unlearn`, `evaluate.unlearn`, `query.unlearn_*`). An app that already has its own
`@app.train()` calls `unlearner.train(msg, context)` from it instead (`register(app, train=False)`),
so that no withdrawn row is ever trained on again.

What leaves the site: model arrays, counts, sums, mean statistics and audit summaries
(declared aggregates). Never rows, labels or record ids.

Data: `train` and `holdout` may be torch `Dataset`s of (x, y) pairs, `DataLoader`s, or
`data.Split`s; they are materialised once per node as tensors (x: float32 (N, ...), y: int64
class labels (N,)), so a site's data must fit in memory. The model must map a batch
(B, ...) to class logits (B, C).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from torch import nn

from unlearn_fl.data import Split, forget_mask
from unlearn_fl.engine import client_logic as local
from unlearn_fl.engine import protocol
from unlearn_fl.engine.protocol import ARRAYS, CONFIG, METRICS, Withdrawals, decode_withdrawals
from unlearn_fl.models import Criterion

torch.set_num_threads(1)


def public_error(text: str) -> str:
    """What of a site's error message may leave the site (Flower sends an exception's text to the server).

    Quoted values (record ids, cells, labels, column names) and file paths are blanked: loaders quote the
    offending value, which is the site's data. The full message goes to the site's own log.
    """
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    return re.sub(r"(?:[A-Za-z]:)?(?:/|\\)[^\s,;()]+", "<path>", text)


@dataclass
class LocalData:
    """One site's data as the user's code loads it.

    train: rows the site trains on (Dataset of (x, y), DataLoader, or Split).
    holdout: never-trained rows of the same population (membership audits use them as
        non-members, and federated evaluation when the server holds no data). Optional,
        but without it a site cannot audit its forget set.
    record_ids: one stable id per train row (str); default: the row numbers "0", "1", ...
    holdout_ids: ids of the holdout rows (record-level requests naming them are refused).
    erasure_dir: the site-local folder of record-level erasure lists (`sites.ErasureStore`).
    """

    train: Any
    holdout: Any = None
    record_ids: Sequence[str] | None = None
    holdout_ids: Sequence[str] | None = None
    erasure_dir: str | Path | None = None

    @classmethod
    def from_site(cls, site, erasure_dir: str | Path | None = None) -> "LocalData":
        """From a `sites.SiteData` (a site's own file loaded by `sites.load_site`)."""
        return cls(site.train, site.holdout, list(site.train_ids), list(site.holdout_ids), erasure_dir)


def as_split(data: Any) -> Split:
    """A Dataset / DataLoader / Split as a Split of tensors-to-be (X float32 (N, ...), y int64 (N,))."""
    if data is None:
        return Split(np.zeros((0, 1), dtype=np.float32), np.zeros(0, dtype=np.int64))
    if isinstance(data, Split):
        return Split(np.asarray(data.X, dtype=np.float32), np.asarray(data.y, dtype=np.int64))
    from torch.utils.data import DataLoader, Dataset

    if isinstance(data, Dataset):
        data = DataLoader(data, batch_size=256, shuffle=False)
    if not isinstance(data, DataLoader):
        raise TypeError(f"site data must be a torch Dataset, DataLoader or data.Split, got {type(data).__name__}")
    xs, ys = [], []
    for batch in data:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TypeError("each item of the site's data must be an (x, y) pair")
        xs.append(torch.as_tensor(batch[0]).float())
        ys.append(torch.as_tensor(batch[1]).long())
    if not xs:
        return as_split(None)
    return Split(torch.cat(xs).numpy(), torch.cat(ys).numpy())


@dataclass(frozen=True)
class _Site:
    """A site's materialised data, cached per node."""

    client_id: int
    train: Split
    holdout: Split
    train_ids: np.ndarray
    holdout_ids: np.ndarray
    erasure_dir: Path | None


class UnlearningClient:
    """The handlers of unlearn-fl's protocol for a user's model, data and loss.

    model_fn: () -> nn.Module, the same architecture the server's `model_fn` builds; or
        (context, info) -> nn.Module when the architecture depends on the run, with info =
        {"input_shape": the site's input shape, "n_classes": the federation's class count}.
    data_fn: (Context) -> LocalData, called once per node (the result is cached).
    criterion: loss(logits, y) for training and the retain term; None: cross-entropy.
    Membership audits score rows by cross-entropy, so the model must output class logits.
    """

    def __init__(self, model_fn: Callable[[], nn.Module], data_fn: Callable[[Context], LocalData],
                 criterion: Criterion | None = None) -> None:
        self.model_fn, self.data_fn, self.criterion = model_fn, data_fn, criterion
        self._sites: dict[tuple[int, int], _Site] = {}

    # ------------------------------------------------------------ registration
    def register(self, app, train: bool = True) -> None:
        """Register every handler of the protocol on a `flwr.clientapp.ClientApp`."""
        if train:
            app.train()(self.train)
        handlers = {protocol.UNLEARN: self.unlearn, protocol.EVALUATE: self.evaluate, protocol.DESCRIBE: self.describe,
                    protocol.INPUTS: self.inputs, protocol.COUNT: self.count, protocol.STATS: self.stats,
                    protocol.AUDIT: self.audit, protocol.EXPOSURE: self.exposure}
        for message_type, fn in handlers.items():
            category, action = message_type.split(".")
            getattr(app, category)(action)(fn)

    # ------------------------------------------------------------ the site's data
    @staticmethod
    def client_id(context: Context) -> int:
        """The site's id: node config `partition-id` (simulation sets it; deployments pass it)."""
        try:
            return int(context.node_config["partition-id"])
        except KeyError:
            raise RuntimeError('this SuperNode has no partition-id: start it with --node-config "partition-id=K ..."') from None

    def site(self, context: Context) -> _Site:
        key = (int(context.run_id), int(context.node_id))
        if key not in self._sites:  # a ClientApp handles one message at a time
            from unlearn_fl.sites import SiteError

            k = self.client_id(context)
            try:
                d = self.data_fn(context)
            except Exception as e:  # the server learns which site failed only from this message
                own = type(e).__name__ in ("SiteError", "DataError")
                full = f"site {k} cannot load its data: {e if own else f'{type(e).__name__}: {e}'}"
                logging.getLogger("unlearn_fl").error("%s", full)  # the whole message stays in the site's own log
                raise SiteError(public_error(full) + " (details in the site's log)") from None
            train, holdout = as_split(d.train), as_split(d.holdout)
            ids = np.asarray([str(i) for i in (d.record_ids if d.record_ids is not None else range(len(train)))])
            hids = np.asarray([str(i) for i in (d.holdout_ids if d.holdout_ids is not None else [])])
            if len(ids) != len(train):
                raise ValueError(f"record_ids has {len(ids)} ids for {len(train)} train rows: give one id per row")
            if len(set(ids.tolist())) != len(ids):
                raise ValueError("record_ids repeat: every train row needs its own id")
            self._sites[key] = _Site(self.client_id(context), train, holdout, ids, hids,
                                     Path(d.erasure_dir) if d.erasure_dir else None)
        return self._sites[key]

    def __getstate__(self) -> dict:
        # Flower's simulation pickles the ClientApp into its workers: ship the code, not the cached data.
        return {**self.__dict__, "_sites": {}}

    def _scaled(self, split: Split, cfg: dict) -> Split:
        mean, scale = cfg.get("input-mean"), cfg.get("input-scale")
        if not mean:
            return split
        shape = (1,) + split.X.shape[1:]
        m = np.asarray(mean, dtype=np.float32).reshape(shape)
        s = np.asarray(scale, dtype=np.float32).reshape(shape)
        return Split(((split.X - m) / s).astype(np.float32), split.y)

    def forget_masks(self, site: _Site, withdrawals: Withdrawals, active: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows under any withdrawal so far, rows the active request forgets that no earlier one did)."""
        n = len(site.train)
        gone, now = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        for w in withdrawals.get(site.client_id, []):
            if w.records:
                m = np.zeros(n, dtype=bool)
                m[self._record_rows(site, w.request_id, withdrawals)] = True
            else:
                m = forget_mask(n, w.fraction, w.sample_key)
            if w.request_id == active:
                now |= m & ~gone
            gone |= m
        return gone, now

    def _record_rows(self, site: _Site, request_id: str, withdrawals: Withdrawals) -> np.ndarray:
        from unlearn_fl.sites import ErasureStore, SiteData, SiteError, resolve_records

        if site.erasure_dir is None:
            raise SiteError(f"site {site.client_id} has no erasure store for record-level request {request_id}: "
                            "give the site an erasure-dir (node config) and record the ids there with `unlearn-fl withdraw --records`")
        store = ErasureStore(site.erasure_dir)
        ids = store.get(request_id)
        if ids is None:
            raise SiteError(f"site {site.client_id} holds no id list for request {request_id}: "
                            "the request names another site, or its ids were recorded elsewhere")
        order = [w.request_id for w in withdrawals.get(site.client_id, []) if w.records]
        view = SiteData(site.train, site.holdout, site.train_ids, site.holdout_ids, None)
        return resolve_records(view, ids, store.erased_before(request_id, order), reveal_ids=False)

    def views(self, msg: Message, context: Context) -> tuple[dict, _Site, Split, Split, Split]:
        """(config, site, retained rows, rows the active request forgets, holdout), scaled as configured."""
        cfg = dict(msg.content[CONFIG]) if CONFIG in msg.content else {}
        site = self.site(context)
        withdrawals = decode_withdrawals(str(cfg.get("withdrawals", "")))
        gone, now = self.forget_masks(site, withdrawals, str(cfg.get("active-request", "")))
        train = self._scaled(site.train, cfg)
        return (cfg, site, train.subset(np.where(~gone)[0]), train.subset(np.where(now)[0]),
                self._scaled(site.holdout, cfg))

    def model(self, msg: Message, cfg: dict, context: Context, key: str = ARRAYS) -> nn.Module:  # noqa: D102
        import inspect

        if len(inspect.signature(self.model_fn).parameters) >= 2:
            site = self.site(context)
            n_classes = int(cfg.get("n-classes", 0)) or int(max(site.train.y.max(initial=0), site.holdout.y.max(initial=0))) + 1
            model = self.model_fn(context, {"input_shape": tuple(site.train.X.shape[1:]), "n_classes": n_classes})
        else:
            model = self.model_fn()
        if float(cfg.get("dp-noise", 0.0)) > 0:
            from unlearn_fl.accounting.validation import dp_compatible

            model = dp_compatible(model)[0]
        model.load_state_dict(msg.content[key].to_torch_state_dict())
        return model

    # ------------------------------------------------------------ handlers
    def train(self, msg: Message, context: Context) -> Message:
        """`train`: local epochs on the retained rows (DP-SGD when `dp-noise` > 0)."""
        cfg, site, retained, _, _ = self.views(msg, context)
        self._require_rows(site, retained, "train")
        model = self.model(msg, cfg, context)
        seed = int(cfg.get("seed", 0)) + 7919 * site.client_id
        dp_noise = float(cfg.get("dp-noise", 0.0))
        metrics = local.local_train(model, retained, int(cfg.get("local-epochs", 1)), float(cfg.get("lr", 1e-3)),
                                    int(cfg.get("batch-size", 32)), seed, dp_noise=dp_noise,
                                    dp_clip=float(cfg.get("dp-clip", 1.0)), proximal_mu=float(cfg.get("proximal-mu", 0.0)),
                                    criterion=self.criterion)
        metrics["num-examples"] = max(1, int(metrics["num-examples"]))
        keys = ("num-examples", "train-loss", "examples-processed") + (("dp-steps", "dp-sample-rate") if dp_noise > 0 else ())
        return self._reply(msg, model, {k: metrics.get(k, 0) for k in keys})

    def unlearn(self, msg: Message, context: Context) -> Message:
        """`train.unlearn`: the method's local step. Forget-holders of the active request run the
        forget term on the rows it removes; retainers train on retained rows only. Under DP-SGD a
        holder's own retained rows sit this step out, so no row is trained on without DP.
        A second model the server sends (`reference-arrays`: SCRUB's teacher, Halimi's w_ref) and the
        config's `step` go to the method's `run_local`."""
        cfg, site, retained, forgotten, holdout = self.views(msg, context)
        failing = [int(x) for x in str(cfg.get("inject-failure", "")).split(",") if x.strip()]
        if site.client_id in failing:  # resilience testing only (run config `inject-failure`)
            raise RuntimeError(f"client {site.client_id}: injected failure")
        if len(forgotten) == 0:
            self._require_rows(site, retained, "take part in unlearning")
        model = self.model(msg, cfg, context)
        seed = int(cfg.get("seed", 0)) + 7919 * site.client_id
        dp_noise = float(cfg.get("dp-noise", 0.0))
        if len(forgotten) > 0 or dp_noise <= 0:
            ref = list(cfg.get("reference-mean", [])) or None
            keep = retained if dp_noise <= 0 else retained.subset(np.zeros(0, dtype=np.int64))
            reference = (self.model(msg, cfg, context, protocol.REFERENCE_ARRAYS)
                         if protocol.REFERENCE_ARRAYS in msg.content else None)
            model, metrics = local.local_unlearn(model, holdout, keep, forgotten, str(cfg["method"]),
                                                 json.loads(str(cfg["method-config"])), ref, seed, criterion=self.criterion,
                                                 reference_model=reference, step=str(cfg.get("step", "")))
        else:
            metrics = local.local_train(model, retained, int(cfg.get("local-epochs", 1)), float(cfg.get("lr", 1e-3)),
                                        int(cfg.get("batch-size", 32)), seed, dp_noise=dp_noise,
                                        dp_clip=float(cfg.get("dp-clip", 1.0)), criterion=self.criterion)
            metrics.update({"steps": 0, "forget-n": 0, "target-reached": 0, "examples-forward": 0})
        metrics["num-examples"] = max(1, int(metrics["num-examples"]))
        keys = (("num-examples", "examples-processed", "examples-forward", "steps", "forget-n", "target-reached")
                + (("dp-steps", "dp-sample-rate") if dp_noise > 0 else ()))
        return self._reply(msg, model, {k: metrics.get(k, 0) for k in keys})

    def evaluate(self, msg: Message, context: Context) -> Message:
        """`evaluate.unlearn`: correct counts and summed losses on retained, forgotten and holdout rows."""
        cfg, _, retained, forgotten, holdout = self.views(msg, context)
        names = _audited(cfg)
        if not names:
            metrics = local.local_evaluate(self.model(msg, cfg, context), retained, forgotten, holdout)
            return Message(content=RecordDict({METRICS: MetricRecord(_numeric(metrics))}), reply_to=msg)
        metrics = {}
        for n in names:  # every audited model in one message, keys suffixed by its name
            m = local.local_evaluate(self.model(msg, cfg, context, f"{ARRAYS}-{n}"), retained, forgotten, holdout)
            metrics.update({f"{k}-{n}": v for k, v in m.items()})
        return Message(content=RecordDict({METRICS: MetricRecord(_numeric(metrics))}), reply_to=msg)

    def describe(self, msg: Message, context: Context) -> Message:
        """`query.unlearn_describe`: the site's id, input shape and class count (no data)."""
        site = self.site(context)
        labels = np.concatenate([site.train.y, site.holdout.y])
        out = {"client-id": site.client_id, "n-train": len(site.train), "n-holdout": len(site.holdout),
               "n-classes": int(labels.max()) + 1 if len(labels) else 0}
        from unlearn_fl.data import digest_rows

        shape = ConfigRecord({"input-shape": [int(v) for v in site.train.X.shape[1:]], "data-digest": digest_rows(site.train)})
        return Message(content=RecordDict({METRICS: MetricRecord(out), CONFIG: shape}), reply_to=msg)

    def inputs(self, msg: Message, context: Context) -> Message:
        """`query.unlearn_inputs`: count, Σx and Σx² per input feature over the train rows."""
        train = self.site(context).train
        X = train.X.reshape(len(train), -1).astype(np.float64)
        rec = ConfigRecord({"count": int(len(X)), "sum": X.sum(0).tolist(), "sumsq": (X * X).sum(0).tolist()})
        return Message(content=RecordDict({CONFIG: rec}), reply_to=msg)

    def count(self, msg: Message, context: Context) -> Message:
        """`query.unlearn_count`: how many rows the active request forgets here, and the sha256 of those rows.

        A record-level request whose ids this site cannot resolve (unknown, holdout, already
        erased) fails here, before any unlearning: the reply carries the reason, never the ids.
        """
        from unlearn_fl.data import digest_rows

        cfg = dict(msg.content[CONFIG])
        site = self.site(context)
        withdrawals, active = decode_withdrawals(str(cfg.get("withdrawals", ""))), str(cfg.get("active-request", ""))
        gone, now = self.forget_masks(site, withdrawals, active)
        self._refuse_emptying(site, withdrawals, active, gone)
        forgotten = site.train.subset(np.where(now)[0])  # the rows as the site holds them, before any scaling
        return Message(content=RecordDict({METRICS: MetricRecord({"forget-n": len(forgotten)}),
                                           CONFIG: ConfigRecord({"forget-digest": digest_rows(forgotten)})}), reply_to=msg)

    @staticmethod
    def _refuse_emptying(site: _Site, withdrawals: Withdrawals, active: str, gone: np.ndarray) -> None:
        """SiteError when partial withdrawals (a fraction < 1, or named records) would leave this site no
        training row, once rounded: that is a whole-site withdrawal, and must be asked for as one."""
        from unlearn_fl.sites import SiteError

        mine = withdrawals.get(site.client_id, [])
        whole = any(w.fraction >= 1.0 and not w.records for w in mine)
        n = len(site.train)
        if whole or n == 0 or not gone.all():
            return
        w = next((w for w in mine if w.request_id == active), None)
        earlier = " together with its earlier withdrawals" if len(mine) > 1 else ""
        if w is not None and w.records:
            what = f"the records named by request {active} are all {n} of its training rows{earlier}"
        else:
            frac = f"{w.fraction:g}" if w is not None else "the requested share"
            what = f"forgetting {frac} of its {n} training rows rounds to all {n} rows{earlier}"
        raise SiteError(f"{what}, which would leave it none to train on: withdraw the whole site "
                        "(fraction 1, no record list) or forget fewer rows")

    @staticmethod
    def _require_rows(site: _Site, rows: Split, action: str) -> None:
        from unlearn_fl.sites import SiteError

        if len(rows) == 0:
            raise SiteError(f"site {site.client_id} has no training rows left after its withdrawals, so it cannot {action}: "
                            "withdraw it whole (fraction 1) so the server stops asking it")

    def stats(self, msg: Message, context: Context) -> Message:
        """`query.unlearn_stats`: mean output statistic and count over retained rows."""
        cfg, _, retained, _, _ = self.views(msg, context)
        names = _audited(cfg)
        if not names:
            out = local.local_stats(self.model(msg, cfg, context), retained, str(cfg["statistic"]))
            return Message(content=RecordDict({CONFIG: ConfigRecord(out)}), reply_to=msg)
        out = {"count": len(retained)}
        for n in names:  # every audited model in one message
            one = local.local_stats(self.model(msg, cfg, context, f"{ARRAYS}-{n}"), retained, str(cfg["statistic"]))
            if "mean" in one:
                out[f"mean-{n}"] = one["mean"]
        return Message(content=RecordDict({CONFIG: ConfigRecord(out)}), reply_to=msg)

    def audit(self, msg: Message, context: Context) -> Message:
        """`query.unlearn_audit`: membership audits of the forget set against this site's holdout
        (plus any non-member losses the server sent) for every model in the message: the loss
        threshold, and RMIA against the reference model (`audit-reference`) with the references
        this site trains once for the request (`audit-references`); summaries returned."""
        cfg, _, retained, forgotten, holdout = self.views(msg, context)
        names = _audited(cfg)
        ref_name = str(cfg.get("audit-reference", ""))
        models = {n: self.model(msg, cfg, context, f"{ARRAYS}-{n}") for n in names}
        reference = models.get(ref_name)
        site_refs = None
        k = int(cfg.get("audit-references", 0))
        if reference is not None and k > 0:
            site_refs = local.site_references(
                reference, retained, forgotten, holdout, k, str(cfg.get("audit-reference-mode", "offline")),
                int(cfg.get("audit-reference-epochs", 2)), float(cfg.get("lr", 5e-3)), int(cfg.get("batch-size", 32)),
                int(cfg["seed"]) + 104729 * self.site(context).client_id)
        out = {}
        for n, m in models.items():
            result = local.local_audit(
                m, holdout, forgotten,
                extra_nonmember_losses=np.asarray(cfg.get(f"nonmember-losses-{n}", []), dtype=np.float64),
                extra_nonmember_labels=np.asarray(cfg.get("nonmember-labels", []), dtype=np.int64),
                retain_mean=list(cfg.get(f"retain-mean-{n}", [])) or None, n_retain=int(cfg.get("retain-n", 0)),
                statistic=str(cfg["statistic"]), delta=float(cfg["delta"]), confidence=float(cfg["confidence"]),
                seed=int(cfg["seed"]), reference=reference if n != ref_name else None,
                site_refs=site_refs if n != ref_name else None,
            )
            out[f"audit-{n}"] = result.model_dump_json()
        return Message(content=RecordDict({CONFIG: ConfigRecord(out)}), reply_to=msg)

    def exposure(self, msg: Message, context: Context) -> Message:
        """`query.unlearn_exposure`: this site's retained rows vs its holdout, on the model before
        unlearning and the unlearned one; two AUCs and two counts returned."""
        cfg, _, retained, _, holdout = self.views(msg, context)
        out = local.local_exposure(self.model(msg, cfg, context, protocol.BEFORE_ARRAYS), self.model(msg, cfg, context),
                                   retained, holdout, seed=int(cfg.get("seed", 0)))
        return Message(content=RecordDict({METRICS: MetricRecord(_numeric(out))}), reply_to=msg)

    @staticmethod
    def _reply(msg: Message, model: nn.Module, metrics: dict) -> Message:
        state = {k: v.detach() for k, v in model.state_dict().items()}
        return Message(content=RecordDict({ARRAYS: ArrayRecord(state), METRICS: MetricRecord(_numeric(metrics))}),
                       reply_to=msg)


def _numeric(d: dict) -> dict:
    return {k: float(v) if isinstance(v, float) else int(v) for k, v in d.items()
            if isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v)}


def _audited(cfg: dict) -> list[str]:
    """The models a query names in `audit-models` (each sent as `arrays-<name>`); [] for a one-model query."""
    return [n for n in str(cfg.get("audit-models", "")).split(",") if n]
