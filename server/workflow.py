"""Withdrawals through a live federation (design.md, "One withdrawal, end to end").

Training rounds run through the wrapped Flower strategy. After each round the server
takes the withdrawals due (planned ones, and requests found in the request folder),
and for each: registers the current model, runs the method's unlearning rounds (or a
retrain), retrains a reference from scratch in the same engine, has the withdrawing
clients audit their forget sets locally, and hands everything to the Recorder
(report + MLflow version whose parent is the previous version). Training then goes
on without the withdrawn data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from server.strategy import UnlearningStrategy, base_strategy
from unlearn_fl.config import RunConfig
from unlearn_fl.data import dataset_info, server_test
from unlearn_fl.engine.protocol import ARRAYS, CONFIG, METRICS, Withdrawal, Withdrawals, encode_spec, encode_withdrawals
from unlearn_fl.methods import get_method
from unlearn_fl.models import MLP, evaluate, make_model, per_example_loss
from unlearn_fl.report.schema import ModelAudit, RoundLog
from unlearn_fl.requests import RequestQueue, WithdrawalRequest

log = logging.getLogger("unlearn_fl")

Progress = Callable[[str, int, int], None]


class FederationError(RuntimeError):
    """The federation could not do what was asked (too few clients answered, ...)."""


class WithdrawalAborted(FederationError):
    """Unlearning could not be completed; no version was written, the previous one stands."""


def _arrays(model: MLP) -> ArrayRecord:
    return ArrayRecord(model.state_dict())


def _load(template: MLP, arrays: ArrayRecord) -> MLP:
    m = MLP(template.n_features, template.n_classes, template.hidden)
    m.load_state_dict(arrays.to_torch_state_dict())
    return m


def _with(withdrawals: Withdrawals, request: WithdrawalRequest) -> Withdrawals:
    out = {c: list(v) for c, v in withdrawals.items()}
    for c in request.client_ids:
        out.setdefault(c, []).append(Withdrawal(request.request_id, request.fraction))
    return out


def fully_withdrawn(withdrawals: Withdrawals) -> set[int]:
    return {c for c, v in withdrawals.items() if any(w.fraction >= 1.0 for w in v)}


@dataclass
class WithdrawalOutcome:
    """Models and measurements of one withdrawal, handed to the Recorder."""

    request: WithdrawalRequest
    before: MLP
    after: MLP
    retrain: MLP | None
    n_forget: int
    trained_rounds: int
    forget_digest: str = ""
    monitor_seconds: float = 0.0
    rounds: list[RoundLog] = field(default_factory=list)
    unlearn_seconds: float = 0.0
    retrain_seconds: float | None = None
    unlearn_rounds: int = 0
    test_acc: dict[str, float] = field(default_factory=dict)
    retain_acc: dict[str, float] = field(default_factory=dict)
    forget_acc: dict[str, float] = field(default_factory=dict)
    audits: dict[str, ModelAudit] = field(default_factory=dict)
    clients_after: list[int] = field(default_factory=list)
    withdrawn_clients: list[int] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    accounting: object | None = None


class Recorder(Protocol):
    """Where versions and reports go (MLflow + files in `server_app.py`; anything in tests)."""

    def trained(self, model: MLP, clients: list[int], withdrawals: Withdrawals, rounds: list[RoundLog]) -> str | None: ...

    def unlearned(self, outcome: WithdrawalOutcome) -> str | None: ...

    def aborted(self, request: WithdrawalRequest, reason: str) -> None: ...


class Federation:
    """Drives the Grid: node discovery, rounds, statistics, evaluation and audits."""

    def __init__(self, grid: Grid, cfg: RunConfig, strategy: UnlearningStrategy | None = None, progress: Progress | None = None):
        self.grid, self.cfg = grid, cfg
        self._given = strategy
        self.strategy = strategy or self.new_strategy()
        self.progress = progress or (lambda *_: None)
        self.node_of: dict[int, int] = {}
        self.test = server_test(cfg.data)
        self._round = 0
        self.monitor_seconds = 0.0
        self.dp_phases: dict[int, list[tuple[float, int]]] = {}
        """Per client: (sample rate, steps) of every DP-SGD training it did (for the accountant)."""
        self.central_rounds = 0

    def _note_dp(self, replies: Iterable[Message]) -> None:
        client_of = {n: c for c, n in self.node_of.items()}
        for m in replies:
            if m.has_error():
                continue
            met = m.content[METRICS]
            if "dp-steps" in met and int(met["dp-steps"]) > 0:
                self.dp_phases.setdefault(client_of[m.metadata.src_node_id], []).append(
                    (float(met["dp-sample-rate"]), int(met["dp-steps"])))

    def accounting(self, clients: Iterable[int]):
        """Opacus accounting of a model trained by `clients` so far, or None without DP.

        Local DP-SGD: each client's phases composed by the accountant; clients hold disjoint
        rows, so the release's ε for any one row is the largest client ε. Central DP (Flower's
        server-side fixed clipping): a client-level Gaussian mechanism, every client sampled, one
        step per aggregated round.
        """
        from unlearn_fl.accounting.accountant import Phase, account, account_phases

        dp, delta = self.cfg.dp, self.cfg.audit.delta
        if dp.local:
            per = {}
            for c in clients:
                phases = [Phase(noise_multiplier=dp.noise_multiplier, sample_rate=q, steps=s) for q, s in self.dp_phases.get(c, [])]
                if phases:
                    per[str(c)] = account_phases(phases, delta, dp.accountant, max_grad_norm=dp.max_grad_norm)
            if not per:
                return None
            worst = max(per.values(), key=lambda b: b.epsilon)
            block = worst.model_copy()
            block.per_client = {k: v.epsilon for k, v in per.items()}
            return block
        if dp.central:
            return account(dp.central_noise_multiplier, 1.0, self.central_rounds, delta, dp.accountant,
                           max_grad_norm=dp.central_clipping_norm)
        return None

    def new_strategy(self) -> UnlearningStrategy:
        """A fresh strategy of the configured kind (stateful ones, like FedAdam, must not leak state
        from the released model into the retrain-from-scratch reference)."""
        if self._given is not None:
            return self._given
        if self.cfg.dp.central:
            return central_dp_strategy(self.cfg)
        return UnlearningStrategy(base_strategy(self.cfg.strategy, proximal_mu=self.cfg.proximal_mu))

    # ------------------------------------------------------------ messaging
    def _config(self, withdrawals: Withdrawals, active: str = "", **extra) -> ConfigRecord:
        c = self.cfg
        return ConfigRecord({
            **encode_spec(c.data), "lr": c.lr, "local-epochs": c.local_epochs, "batch-size": c.batch_size,
            "hidden": ",".join(map(str, c.hidden)), "withdrawals": encode_withdrawals(withdrawals), "active-request": active,
            "inject-failure": ",".join(map(str, c.inject_failure)),
            "dp-noise": c.dp.noise_multiplier, "dp-clip": c.dp.max_grad_norm, **extra,
        })

    def exchange(self, node_ids: Iterable[int], message_type: str, content: RecordDict, timeout: float = 600) -> list[Message]:
        """Send one message per node; return the replies without errors (errors are logged)."""
        msgs = [Message(content=content, dst_node_id=n, message_type=message_type) for n in node_ids]
        replies = list(self.grid.send_and_receive(msgs, timeout=timeout))
        for r in replies:
            if r.has_error():
                log.warning("client node %s answered with an error: %s", r.metadata.src_node_id, r.error.reason)
        return [r for r in replies if not r.has_error()]

    def discover(self, timeout: float = 300.0) -> dict[int, int]:
        """Map client ids (partition ids) to node ids, waiting for all clients to connect."""
        want = self.cfg.data.num_clients
        t0 = time.monotonic()
        seen, since = -1, t0
        while len(nodes := list(self.grid.get_node_ids())) < want:
            now = time.monotonic()
            if len(nodes) != seen:
                seen, since = len(nodes), now
            if now - t0 > timeout or (seen > 0 and now - since > 30):
                raise FederationError(
                    f"only {len(nodes)} of the {want} clients (num-clients) connected: start {want} SuperNodes "
                    f"(simulation: flwr run . --federation-config 'num-supernodes={want}') or set num-clients={len(nodes)}"
                )
            time.sleep(0.5)
        replies = self.exchange(nodes, "query", RecordDict({CONFIG: ConfigRecord({"task": "hello"})}))
        for r in replies:
            self.node_of[int(r.content[METRICS]["client-id"])] = r.metadata.src_node_id
        missing = sorted(set(range(want)) - set(self.node_of))
        if missing:
            raise FederationError(f"clients {missing} did not answer the hello query")
        return self.node_of

    def _nodes(self, clients: Iterable[int]) -> list[int]:
        return [self.node_of[c] for c in clients]

    # ------------------------------------------------------------ evaluation
    def server_eval(self, model: MLP) -> tuple[float, float]:
        return evaluate(model, self.test)

    def client_metrics(self, model: MLP, withdrawals: Withdrawals, active: str, clients: Iterable[int] | None = None) -> dict:
        """Pooled accuracy and loss on retained rows and on the active request's rows (counts from clients)."""
        content = RecordDict({ARRAYS: _arrays(model), CONFIG: self._config(withdrawals, active)})
        nodes = self.node_of.values() if clients is None else self._nodes(clients)
        tot = {"retain-correct": 0.0, "retain-loss-sum": 0.0, "retain-n": 0, "forget-correct": 0.0, "forget-loss-sum": 0.0, "forget-n": 0}
        for r in self.exchange(nodes, "evaluate", content):
            for k in tot:
                tot[k] += r.content[METRICS].get(k, 0)
        out = {}
        for g in ("retain", "forget"):
            n = tot[f"{g}-n"]
            out[f"{g}_acc"] = tot[f"{g}-correct"] / n if n else float("nan")
            out[f"{g}_loss"] = tot[f"{g}-loss-sum"] / n if n else float("nan")
        return out

    def client_eval(self, model: MLP, withdrawals: Withdrawals, active: str) -> tuple[float, float]:
        """(accuracy on all retained rows, accuracy on the active request's rows), pooled over clients."""
        m = self.client_metrics(model, withdrawals, active)
        return m["retain_acc"], m["forget_acc"]

    def count_forgotten(self, withdrawals: Withdrawals, request: WithdrawalRequest) -> tuple[int, str]:
        """(rows the request forgets, sha256 over the clients' digests of those rows)."""
        import hashlib

        content = RecordDict({CONFIG: self._config(withdrawals, request.request_id, task="count")})
        client_of = {n: c for c, n in self.node_of.items()}
        replies = sorted(self.exchange(self._nodes(request.client_ids), "query", content),
                         key=lambda r: client_of[r.metadata.src_node_id])
        digest = hashlib.sha256("".join(str(r.content[CONFIG]["forget-digest"]) for r in replies).encode()).hexdigest()
        return int(sum(int(r.content[METRICS]["forget-n"]) for r in replies)), digest

    # ------------------------------------------------------------ rounds
    def train_rounds(self, model: MLP, rounds: int, withdrawals: Withdrawals, phase: str, logs: list[RoundLog], first: int = 1,
                     strategy: UnlearningStrategy | None = None) -> MLP:
        """`rounds` rounds of the wrapped strategy on retained data; fully withdrawn clients excluded."""
        strategy = strategy or self.strategy
        arrays = _arrays(model)
        exclude = set(self._nodes(fully_withdrawn(withdrawals)))
        for r in range(first, first + rounds):
            self._round += 1
            cfg = self._config(withdrawals, phase="train", seed=self.cfg.seed * 1000 + self._round)
            msgs = list(strategy.configure_train(self._round, arrays, cfg, self.grid, exclude=exclude))
            replies = list(self.grid.send_and_receive(msgs, timeout=600))
            new, _ = strategy.aggregate_train(self._round, replies)
            if new is None:
                raise FederationError(f"{phase} round {r}: no client returned a usable update")
            if phase != "retrain":  # the reference is never released
                self._note_dp(replies)
                self.central_rounds += 1
            arrays = new
            model = _load(model, arrays)
            acc, loss = self.server_eval(model)
            logs.append(RoundLog(phase=phase, round=r, test_acc=acc, test_loss=loss, n_clients=len(msgs)))
            self.progress(phase, r, self.cfg.rounds if phase == "train" else first + rounds - 1)
        return model

    def retained_stats(self, model: MLP, withdrawals: Withdrawals, statistic: str) -> tuple[list[float] | None, int]:
        """Pooled mean output statistic over all retained rows (method-notes §3.4): counts and means only."""
        content = RecordDict({ARRAYS: _arrays(model), CONFIG: self._config(withdrawals, task="stats", statistic=statistic)})
        clients = [c for c in self.node_of if c not in fully_withdrawn(withdrawals)]
        total, acc = 0, None
        for r in self.exchange(self._nodes(clients), "query", content):
            m = r.content[CONFIG]
            k = int(m["count"])
            if k:
                v = np.asarray(m["mean"], dtype=np.float64) * k
                acc = v if acc is None else acc + v
                total += k
        return (None if acc is None else (acc / total).tolist()), total

    def unlearn_rounds(self, model: MLP, withdrawals: Withdrawals, request: WithdrawalRequest, logs: list[RoundLog],
                       notes: list[str]) -> tuple[MLP, int]:
        """The method's unlearning rounds.

        Every forget-holder of the request must answer, and at least `min_unlearn_fraction` of the
        retaining clients; a round short of that is retried `max_retries` times, then the
        withdrawal is aborted (WithdrawalAborted) and nothing is recorded. A round that costs
        more than `max_test_drop` test accuracy is rolled back and ends the unlearning.
        """
        c = self.cfg
        method = get_method(c.method)
        mcfg = method.make_config(**{"epochs": c.local_epochs, **c.method_config})
        statistic = method.statistic(mcfg)
        needs_stats = (statistic is not None and getattr(mcfg, "reference", None) == "retain"
                       and request.fraction >= 1.0)
        holders = set(self._nodes(request.client_ids))
        gone = fully_withdrawn(withdrawals) - set(request.client_ids)
        retainers = {self.node_of[k] for k in self.node_of if k not in gone} - holders
        start_acc, _ = self.server_eval(model)
        done, r, attempts = 0, 0, 0
        while r < c.unlearn_rounds:
            r += 1
            self._round += 1
            ref_mean = self.retained_stats(model, withdrawals, statistic)[0] if needs_stats else None
            cfg = self._config(withdrawals, request.request_id, phase="unlearn", seed=c.seed * 1000 + self._round,
                               method=c.method, **{"method-config": mcfg.model_dump_json(exclude={"seed"}),
                                                   "reference-mean": ref_mean or []})
            # Nodes excluded: only clients gone through earlier requests; this request's holders take part.
            msgs = list(self.strategy.configure_train(self._round, _arrays(model), cfg, self.grid, exclude=set(self._nodes(gone))))
            replies = list(self.grid.send_and_receive(msgs, timeout=600))
            ok = [m for m in replies if not m.has_error()]
            answered = {m.metadata.src_node_id for m in ok}
            missing_holders = holders - answered
            short = len(retainers & answered) < c.min_unlearn_fraction * len(retainers)
            failed = sorted(k for k, n in self.node_of.items() if n in (holders | retainers) - answered)
            if failed:
                notes.append(f"unlearning round {r}: clients {failed} did not answer or failed")
            if missing_holders or short:
                attempts += 1
                why = ("a withdrawing client did not answer" if missing_holders
                       else f"only {len(retainers & answered)} of {len(retainers)} retaining clients answered "
                            f"(minimum {c.min_unlearn_fraction:.0%})")
                if attempts > c.max_retries:
                    raise WithdrawalAborted(f"unlearning round {r}: {why}; aborted after {attempts} attempts, previous version kept")
                notes.append(f"unlearning round {r}: {why}; retrying")
                r -= 1
                continue
            new, _ = self.strategy.aggregate_train(self._round, ok)
            if new is None:
                raise WithdrawalAborted(f"unlearning round {r}: no usable update")
            self._note_dp(ok)
            self.central_rounds += 1
            cand = _load(model, new)
            acc, loss = self.server_eval(cand)
            t_mon = time.perf_counter()  # forget-set monitoring, asked of the withdrawing clients only
            fm = self.client_metrics(cand, withdrawals, request.request_id, clients=request.client_ids)
            self.monitor_seconds += time.perf_counter() - t_mon
            logs.append(RoundLog(phase="unlearn", round=r, test_acc=acc, test_loss=loss, n_clients=len(ok),
                                 forget_acc=fm["forget_acc"], forget_loss=fm["forget_loss"]))
            if acc < start_acc - c.max_test_drop:
                notes.append(f"unlearning round {r} rolled back: test accuracy {acc:.3f} < {start_acc:.3f} - {c.max_test_drop}")
                break
            model, done = cand, r
            self.progress("unlearn", r, c.unlearn_rounds)
            holder_replies = [m for m in ok if m.metadata.src_node_id in holders]
            if holder_replies and all(int(m.content[METRICS].get("target-reached", 0)) for m in holder_replies):
                break
        self.progress("unlearn", c.unlearn_rounds, c.unlearn_rounds)
        return model, done

    # ------------------------------------------------------------ audit
    def audit(self, model: MLP, withdrawals: Withdrawals, request: WithdrawalRequest, statistic: str) -> ModelAudit:
        """Run the membership audit on each withdrawing client; merge the summaries."""
        test_losses = per_example_loss(model, self.test)
        ref_mean, n_ref = self.retained_stats(model, withdrawals, statistic)
        cfg = self._config(withdrawals, request.request_id, task="audit", statistic=statistic, seed=self.cfg.seed,
                           **{"nonmember-losses": test_losses.tolist(), "nonmember-labels": self.test.y.tolist(),
                              "retain-mean": ref_mean or [], "retain-n": n_ref, "delta": self.cfg.audit.delta,
                              "confidence": self.cfg.audit.confidence})
        replies = self.exchange(self._nodes(request.client_ids), "query", RecordDict({ARRAYS: _arrays(model), CONFIG: cfg}))
        audits = [ModelAudit.model_validate_json(r.content[CONFIG]["audit"]) for r in replies]
        if not audits:
            raise FederationError("no withdrawing client answered the audit query")
        return merge_audits(audits)


def central_dp_strategy(cfg: RunConfig) -> UnlearningStrategy:
    """FedAvg wrapped in Flower's own server-side fixed-clipping DP, wrapped in turn for unlearning."""
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

    dp = DifferentialPrivacyServerSideFixedClipping(base_strategy(cfg.strategy, proximal_mu=cfg.proximal_mu), noise_multiplier=cfg.dp.central_noise_multiplier,
                                                    clipping_norm=cfg.dp.central_clipping_norm,
                                                    num_sampled_clients=cfg.data.num_clients)
    return UnlearningStrategy(dp)


def merge_audits(audits: list[ModelAudit]) -> ModelAudit:
    """One client: as is. Several: member-weighted AUC and criterion, the worst (largest) ε, the largest client's curves."""
    if len(audits) == 1:
        return audits[0]
    sizes = np.array([a.attacks[0].n_members for a in audits], dtype=float)
    merged = audits[int(sizes.argmax())].model_copy(deep=True)
    merged.attacks[0].auc = float(np.average([a.attacks[0].auc for a in audits], weights=sizes))
    merged.attacks[0].n_members = int(sizes.sum())
    merged.attacks[0].n_nonmembers = int(sum(a.attacks[0].n_nonmembers for a in audits))
    eps = [a.epsilon for a in audits if a.epsilon is not None]
    if eps:
        merged.epsilon = max(eps, key=lambda e: e.epsilon_lower)
    crit = [(a.criterion_mi, s) for a, s in zip(audits, sizes) if a.criterion_mi is not None]
    merged.criterion_mi = float(np.average([c for c, _ in crit], weights=[s for _, s in crit])) if crit else None
    return merged


def process_withdrawal(fed: Federation, model: MLP, withdrawals: Withdrawals, request: WithdrawalRequest,
                       trained_rounds: int, logs: list[RoundLog]) -> tuple[WithdrawalOutcome, Withdrawals]:
    """Unlearn one request from `model`; returns the outcome and the withdrawals including it."""
    cfg = fed.cfg
    after_w = _with(withdrawals, request)
    method = get_method(cfg.method)
    notes: list[str] = []
    n_features, n_classes = model.n_features, model.n_classes
    fresh = lambda: make_model(n_features, n_classes, cfg.hidden, seed=cfg.seed + 1)

    t1 = time.perf_counter()
    fed.monitor_seconds = 0.0
    if method.retrains:
        after = fed.train_rounds(fresh(), trained_rounds, after_w, "unlearn", logs, strategy=fed.new_strategy())
        n_unlearn = trained_rounds
    else:
        after, n_unlearn = fed.unlearn_rounds(model, after_w, request, logs, notes)
    monitor_s = fed.monitor_seconds
    unlearn_s = time.perf_counter() - t1 - monitor_s

    retrain, retrain_s = None, None
    if cfg.reference:
        if method.retrains:
            retrain, retrain_s = after, unlearn_s
        else:
            t2 = time.perf_counter()
            retrain = fed.train_rounds(fresh(), trained_rounds, after_w, "retrain", logs, strategy=fed.new_strategy())
            retrain_s = time.perf_counter() - t2

    n_forget, forget_digest = fed.count_forgotten(after_w, request)
    out = WithdrawalOutcome(request=request, before=model, after=after, retrain=retrain,
                            n_forget=n_forget, forget_digest=forget_digest, trained_rounds=trained_rounds, monitor_seconds=monitor_s,
                            rounds=list(logs), unlearn_seconds=unlearn_s, retrain_seconds=retrain_s,
                            unlearn_rounds=n_unlearn, notes=notes)
    statistic = getattr(method.make_config(**cfg.method_config), "statistic", "prediction")
    for name, m in (("before", model), ("after", after), ("retrain", retrain)):
        if m is None:
            continue
        out.test_acc[name] = fed.server_eval(m)[0]
        out.retain_acc[name], out.forget_acc[name] = fed.client_eval(m, after_w, request.request_id)
        out.audits[name] = fed.audit(m, after_w, request, statistic)
    gone = fully_withdrawn(after_w)
    out.accounting = fed.accounting(c for c in range(cfg.data.num_clients) if c not in gone)
    out.clients_after = [c for c in range(cfg.data.num_clients) if c not in gone]
    out.withdrawn_clients = sorted(after_w)
    out.request_ids = sorted({w.request_id for v in after_w.values() for w in v})
    return out, after_w


def run_federation(grid: Grid, cfg: RunConfig, recorder: Recorder, strategy: UnlearningStrategy | None = None,
                   progress: Progress | None = None) -> list[WithdrawalOutcome]:
    """Train, and apply every withdrawal as it falls due; the Recorder writes versions and reports."""
    torch.manual_seed(cfg.seed)
    fed = Federation(grid, cfg, strategy, progress)
    fed.discover()
    info = dataset_info(cfg.data)
    queue = RequestQueue(cfg.requests_dir) if cfg.requests_dir else None
    plans = cfg.schedule()
    model = make_model(info["n_features"], info["n_classes"], cfg.hidden, seed=cfg.seed)
    withdrawals: Withdrawals = {}
    applied: set[str] = set()
    outcomes: list[WithdrawalOutcome] = []
    logs: list[RoundLog] = []
    dirty = True  # the model has changed since it was last recorded
    for r in range(1, cfg.rounds + 1):
        model = fed.train_rounds(model, 1, withdrawals, "train", logs, first=r)
        dirty = True
        if cfg.checkpoint_every and r % cfg.checkpoint_every == 0 and r < cfg.rounds:
            recorder.trained(model, [c for c in range(cfg.data.num_clients) if c not in fully_withdrawn(withdrawals)],
                             withdrawals, [x for x in logs if x.phase == "train"])
            dirty = False
        due = [WithdrawalRequest(client_ids=p.client_ids, fraction=p.fraction, reason=p.reason, salt=f"seed={cfg.seed};plan={i}")
               for i, p in enumerate(plans) if (p.at_round or cfg.rounds) == r]
        if queue is not None:
            due += queue.poll()
        for request in due:
            if request.request_id in applied:
                log.warning("withdrawal %s was already applied; ignoring the duplicate", request.request_id)
                if queue is not None:
                    queue.mark_applied(request, None)
                continue
            bad = [c for c in request.client_ids if c not in fed.node_of]
            if bad or fully_withdrawn(_with(withdrawals, request)) >= set(fed.node_of):
                reason = f"unknown client ids {bad}" if bad else "it would leave no client with data"
                recorder.aborted(request, f"rejected: {reason}")
                if queue is not None:
                    queue.mark_failed(request, reason)
                continue
            if dirty:
                recorder.trained(model, [c for c in range(cfg.data.num_clients) if c not in fully_withdrawn(withdrawals)],
                                 withdrawals, [x for x in logs if x.phase == "train"])
                dirty = False
            try:
                outcome, new_w = process_withdrawal(fed, model, withdrawals, request, r, logs)
            except WithdrawalAborted as e:
                recorder.aborted(request, str(e))
                if queue is not None:
                    queue.mark_failed(request, str(e))
                continue
            version = recorder.unlearned(outcome)
            if queue is not None:
                queue.mark_applied(request, version)
            applied.add(request.request_id)
            outcomes.append(outcome)
            model, withdrawals = outcome.after, new_w
            logs = [x for x in logs if x.phase == "train"]  # the next version's history: all training rounds
    if dirty and outcomes:
        # Training went on after the last withdrawal: record the final model too.
        recorder.trained(model, [c for c in range(cfg.data.num_clients) if c not in fully_withdrawn(withdrawals)],
                         withdrawals, [x for x in logs if x.phase == "train"])
    elif dirty and not outcomes:
        recorder.trained(model, list(range(cfg.data.num_clients)), withdrawals, logs)
    return outcomes
