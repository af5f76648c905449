"""One withdrawal through a live federation (design.md, "One withdrawal, end to end").

train R rounds -> the "before" model -> withdrawal request -> the method's unlearning
rounds (or a retrain) -> the retrain-from-scratch reference in the same engine ->
local audits on the withdrawing clients -> ForgettingReport -> MLflow versions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from server.strategy import UnlearningStrategy
from unlearn_fl.config import RunConfig
from unlearn_fl.data import dataset_info, server_test
from unlearn_fl.engine.protocol import ARRAYS, CONFIG, METRICS, Withdrawal, encode_spec, encode_withdrawals
from unlearn_fl.methods import get_method
from unlearn_fl.models import MLP, evaluate, make_model, per_example_loss
from unlearn_fl.report.schema import ModelAudit, RoundLog
from unlearn_fl.requests import WithdrawalRequest

log = logging.getLogger("unlearn_fl")

Progress = Callable[[str, int, int], None]


class FederationError(RuntimeError):
    """The federation could not do what was asked (too few clients answered, ...)."""


def _arrays(model: MLP) -> ArrayRecord:
    return ArrayRecord(model.state_dict())


def _load(template: MLP, arrays: ArrayRecord) -> MLP:
    m = MLP(template.n_features, template.n_classes, template.hidden)
    m.load_state_dict(arrays.to_torch_state_dict())
    return m


@dataclass
class Outcome:
    """Models and measurements of one run, handed to the report builder."""

    before: MLP
    after: MLP
    retrain: MLP | None
    request: WithdrawalRequest
    n_forget: int
    rounds: list[RoundLog] = field(default_factory=list)
    train_seconds: float = 0.0
    unlearn_seconds: float = 0.0
    retrain_seconds: float | None = None
    unlearn_rounds: int = 0
    test_acc: dict[str, float] = field(default_factory=dict)
    retain_acc: dict[str, float] = field(default_factory=dict)
    forget_acc: dict[str, float] = field(default_factory=dict)
    audits: dict[str, ModelAudit] = field(default_factory=dict)
    clients_contained: dict[str, list[int]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


class Federation:
    """Drives the Grid: node discovery, rounds, statistics, evaluation and audits."""

    def __init__(self, grid: Grid, cfg: RunConfig, strategy: UnlearningStrategy | None = None, progress: Progress | None = None):
        self.grid, self.cfg = grid, cfg
        self.strategy = strategy or UnlearningStrategy()
        self.progress = progress or (lambda *_: None)
        self.node_of: dict[int, int] = {}
        self.test = server_test(cfg.data)
        self._round = 0

    # ------------------------------------------------------------ messaging
    def _base_config(self) -> dict:
        c = self.cfg
        return {**encode_spec(c.data), "lr": c.lr, "local-epochs": c.local_epochs, "batch-size": c.batch_size,
                "hidden": ",".join(map(str, c.hidden))}

    def _exchange(self, node_ids: Iterable[int], message_type: str, content: RecordDict, timeout: float = 600) -> list[Message]:
        msgs = [Message(content=content, dst_node_id=n, message_type=message_type) for n in node_ids]
        replies = list(self.grid.send_and_receive(msgs, timeout=timeout))
        ok = [r for r in replies if not r.has_error()]
        for r in replies:
            if r.has_error():
                log.warning("client node %s answered with an error: %s", r.metadata.src_node_id, r.error.reason)
        return ok

    def discover(self, timeout: float = 120.0) -> dict[int, int]:
        """Map client ids (partition ids) to node ids, waiting for all clients to connect."""
        want = self.cfg.data.num_clients
        t0 = time.monotonic()
        while len(nodes := list(self.grid.get_node_ids())) < want:
            if time.monotonic() - t0 > timeout:
                raise FederationError(f"only {len(nodes)} of {want} clients connected within {timeout:.0f}s")
            time.sleep(0.5)
        replies = self._exchange(nodes, "query", RecordDict({CONFIG: ConfigRecord({"task": "hello"})}))
        for r in replies:
            self.node_of[int(r.content[METRICS]["client-id"])] = r.metadata.src_node_id
        missing = sorted(set(range(want)) - set(self.node_of))
        if missing:
            raise FederationError(f"clients {missing} did not answer the hello query")
        return self.node_of

    # ------------------------------------------------------------ evaluation
    def server_eval(self, model: MLP) -> tuple[float, float]:
        return evaluate(model, self.test)

    def client_eval(self, model: MLP, withdrawals: dict[int, Withdrawal]) -> tuple[float, float]:
        """(accuracy on all retained rows, accuracy on all forgotten rows), pooled over clients."""
        cfg = ConfigRecord({**self._base_config(), "withdrawals": encode_withdrawals(withdrawals)})
        replies = self._exchange(self.node_of.values(), "evaluate", RecordDict({ARRAYS: _arrays(model), CONFIG: cfg}))
        tot = {"retain-correct": 0.0, "retain-n": 0, "forget-correct": 0.0, "forget-n": 0}
        for r in replies:
            m = r.content[METRICS]
            for k in tot:
                tot[k] += m.get(k, 0)
        ra = tot["retain-correct"] / tot["retain-n"] if tot["retain-n"] else float("nan")
        fa = tot["forget-correct"] / tot["forget-n"] if tot["forget-n"] else float("nan")
        return ra, fa

    # ------------------------------------------------------------ rounds
    def _excluded(self, withdrawals: dict[int, Withdrawal]) -> set[int]:
        return {self.node_of[c] for c, w in withdrawals.items() if w.fraction >= 1.0}

    def train_rounds(self, model: MLP, rounds: int, withdrawals: dict[int, Withdrawal], phase: str, logs: list[RoundLog]) -> MLP:
        """`rounds` rounds of the wrapped strategy on retained data; withdrawn clients excluded."""
        arrays = _arrays(model)
        for r in range(1, rounds + 1):
            self._round += 1
            cfg = ConfigRecord({**self._base_config(), "phase": "train", "seed": self.cfg.seed * 1000 + self._round,
                                "withdrawals": encode_withdrawals(withdrawals)})
            msgs = list(self.strategy.configure_train(self._round, arrays, cfg, self.grid, exclude=self._excluded(withdrawals)))
            replies = list(self.grid.send_and_receive(msgs, timeout=600))
            new, _ = self.strategy.aggregate_train(self._round, replies)
            if new is None:
                raise FederationError(f"{phase} round {r}: no client returned a usable update")
            arrays = new
            model = _load(model, arrays)
            acc, loss = self.server_eval(model)
            logs.append(RoundLog(phase=phase, round=r, test_acc=acc, test_loss=loss, n_clients=len(msgs)))
            self.progress(phase, r, rounds)
        return model

    def retained_stats(self, model: MLP, withdrawals: dict[int, Withdrawal], statistic: str) -> tuple[list[float] | None, int]:
        """Pooled mean output statistic over all retained rows (method-notes §3.4): counts and means only."""
        cfg = ConfigRecord({**self._base_config(), "task": "stats", "statistic": statistic,
                            "withdrawals": encode_withdrawals(withdrawals)})
        nodes = [n for c, n in self.node_of.items() if n not in self._excluded(withdrawals)]
        replies = self._exchange(nodes, "query", RecordDict({ARRAYS: _arrays(model), CONFIG: cfg}))
        total, acc = 0, None
        for r in replies:
            m = r.content[CONFIG]
            k = int(m["count"])
            if k == 0:
                continue
            v = np.asarray(m["mean"], dtype=np.float64) * k
            acc = v if acc is None else acc + v
            total += k
        return (None if acc is None else (acc / total).tolist()), total

    def unlearn_rounds(self, model: MLP, withdrawals: dict[int, Withdrawal], logs: list[RoundLog], dropped: list[str]) -> tuple[MLP, int]:
        """The method's unlearning rounds; a round that costs too much test accuracy is rolled back."""
        c = self.cfg
        method = get_method(c.method)
        mcfg = method.make_config(**{"epochs": c.local_epochs, **c.method_config})
        statistic = method.statistic(mcfg)
        # The retain group's mean statistic must come from the server only when a forget-holder
        # has no retained rows of its own and the method compares with the retain group.
        needs_stats = (statistic is not None and getattr(mcfg, "reference", None) == "retain"
                       and any(w.fraction >= 1.0 for w in withdrawals.values()))
        start_acc, _ = self.server_eval(model)
        done = 0
        for r in range(1, c.unlearn_rounds + 1):
            self._round += 1
            ref_mean, n_ref = (None, 0)
            if needs_stats:
                ref_mean, n_ref = self.retained_stats(model, withdrawals, statistic)
            cfg = ConfigRecord({**self._base_config(), "phase": "unlearn", "seed": c.seed * 1000 + self._round,
                                "withdrawals": encode_withdrawals(withdrawals), "method": c.method,
                                "method-config": mcfg.model_dump_json(exclude={"seed"}),
                                "reference-mean": ref_mean if ref_mean is not None else []})
            # Forget-holders take part with their forgotten rows, so nobody is excluded here.
            msgs = list(self.strategy.configure_train(self._round, _arrays(model), cfg, self.grid, exclude=set()))
            replies = list(self.grid.send_and_receive(msgs, timeout=600))
            answered = {m.metadata.src_node_id for m in replies if not m.has_error()}
            holders = {self.node_of[cid] for cid in withdrawals}
            if not holders & answered:
                dropped.append(f"unlearning round {r}: no withdrawing client answered; round skipped")
                continue
            new, _ = self.strategy.aggregate_train(self._round, replies)
            if new is None:
                dropped.append(f"unlearning round {r}: no usable update")
                continue
            cand = _load(model, new)
            acc, loss = self.server_eval(cand)
            if acc < start_acc - c.max_test_drop:
                logs.append(RoundLog(phase="unlearn", round=r, test_acc=acc, test_loss=loss, n_clients=len(msgs)))
                dropped.append(f"unlearning round {r} rolled back: test accuracy {acc:.3f} < {start_acc:.3f} - {c.max_test_drop}")
                self.progress("unlearn", c.unlearn_rounds, c.unlearn_rounds)
                break
            model, done = cand, r
            logs.append(RoundLog(phase="unlearn", round=r, test_acc=acc, test_loss=loss, n_clients=len(msgs)))
            self.progress("unlearn", r, c.unlearn_rounds)
            holder_replies = [m for m in replies if not m.has_error() and m.metadata.src_node_id in holders]
            if holder_replies and all(int(m.content[METRICS].get("target-reached", 0)) for m in holder_replies):
                self.progress("unlearn", c.unlearn_rounds, c.unlearn_rounds)
                break
        return model, done

    # ------------------------------------------------------------ audit
    def audit(self, model: MLP, withdrawals: dict[int, Withdrawal], statistic: str) -> ModelAudit:
        """Run the membership audit on each withdrawing client; merge the summaries."""
        test_losses = per_example_loss(model, self.test)
        ref_mean, n_ref = self.retained_stats(model, withdrawals, statistic)
        cfg = ConfigRecord({**self._base_config(), "task": "audit", "statistic": statistic,
                            "withdrawals": encode_withdrawals(withdrawals), "seed": self.cfg.seed,
                            "nonmember-losses": test_losses.tolist(),
                            "nonmember-labels": self.test.y.tolist(), "retain-mean": ref_mean or [],
                            "retain-n": n_ref, "delta": self.cfg.audit.delta, "confidence": self.cfg.audit.confidence})
        nodes = [self.node_of[c] for c in sorted(withdrawals)]
        replies = self._exchange(nodes, "query", RecordDict({ARRAYS: _arrays(model), CONFIG: cfg}))
        audits = [ModelAudit.model_validate_json(r.content[CONFIG]["audit"]) for r in replies]
        if not audits:
            raise FederationError("no withdrawing client answered the audit query")
        return merge_audits(audits)


def merge_audits(audits: list[ModelAudit]) -> ModelAudit:
    """One client: as is. Several: member-weighted AUC, the worst (largest) epsilon, the largest client's curves."""
    if len(audits) == 1:
        return audits[0]
    sizes = np.array([a.attacks[0].n_members for a in audits], dtype=float)
    big = audits[int(sizes.argmax())]
    merged = big.model_copy(deep=True)
    merged.attacks[0].auc = float(np.average([a.attacks[0].auc for a in audits], weights=sizes))
    eps = [a.epsilon for a in audits if a.epsilon is not None]
    if eps:
        merged.epsilon = max(eps, key=lambda e: e.epsilon_lower)
    crits = [a.criterion_mi for a in audits if a.criterion_mi is not None]
    merged.criterion_mi = float(np.average(crits, weights=sizes[: len(crits)])) if crits else None
    return merged


def run_withdrawal(grid: Grid, cfg: RunConfig, strategy: UnlearningStrategy | None = None, progress: Progress | None = None) -> Outcome:
    """The whole path of one withdrawal in a federation (simulated or deployed)."""
    torch.manual_seed(cfg.seed)
    fed = Federation(grid, cfg, strategy, progress)
    fed.discover()
    info = dataset_info(cfg.data)
    n_features, n_classes = info["n_features"], info["n_classes"]
    logs: list[RoundLog] = []
    dropped: list[str] = []

    t0 = time.perf_counter()
    before = fed.train_rounds(make_model(n_features, n_classes, cfg.hidden, seed=cfg.seed), cfg.rounds, {}, "train", logs)
    train_s = time.perf_counter() - t0

    request = WithdrawalRequest(client_ids=tuple(cfg.withdraw), fraction=cfg.forget_fraction, reason=cfg.reason,
                                salt=f"seed={cfg.seed}")
    withdrawals = {c: Withdrawal(request.request_id, cfg.forget_fraction) for c in cfg.withdraw}
    method = get_method(cfg.method)

    t1 = time.perf_counter()
    if method.retrains:
        after = fed.train_rounds(make_model(n_features, n_classes, cfg.hidden, seed=cfg.seed + 1), cfg.rounds, withdrawals, "unlearn", logs)
        n_unlearn = cfg.rounds
    else:
        after, n_unlearn = fed.unlearn_rounds(before, withdrawals, logs, dropped)
    unlearn_s = time.perf_counter() - t1

    retrain, retrain_s = None, None
    if cfg.reference:
        if method.retrains:
            retrain, retrain_s = after, unlearn_s
        else:
            t2 = time.perf_counter()
            retrain = fed.train_rounds(make_model(n_features, n_classes, cfg.hidden, seed=cfg.seed + 1), cfg.rounds, withdrawals, "retrain", logs)
            retrain_s = time.perf_counter() - t2

    out = Outcome(before=before, after=after, retrain=retrain, request=request, n_forget=0, rounds=logs,
                  train_seconds=train_s, unlearn_seconds=unlearn_s, retrain_seconds=retrain_s, unlearn_rounds=n_unlearn,
                  dropped=dropped)
    statistic = getattr(method.make_config(**cfg.method_config), "statistic", "prediction")
    for name, m in (("before", before), ("after", after), ("retrain", retrain)):
        if m is None:
            continue
        out.test_acc[name] = fed.server_eval(m)[0]
        out.retain_acc[name], out.forget_acc[name] = fed.client_eval(m, withdrawals)
        out.audits[name] = fed.audit(m, withdrawals, statistic)
    out.n_forget = _count_forgotten(fed, withdrawals)
    all_clients = list(range(cfg.data.num_clients))
    out.clients_contained = {
        "before": all_clients,
        "after": [c for c in all_clients if withdrawals.get(c) is None or withdrawals[c].fraction < 1.0],
    }
    return out


def _count_forgotten(fed: Federation, withdrawals: dict[int, Withdrawal]) -> int:
    cfg = ConfigRecord({**fed._base_config(), "withdrawals": encode_withdrawals(withdrawals)})
    nodes = [fed.node_of[c] for c in withdrawals]
    replies = fed._exchange(nodes, "query", RecordDict({CONFIG: ConfigRecord({**cfg, "task": "count"})}))
    return int(sum(int(r.content[METRICS]["forget-n"]) for r in replies))
