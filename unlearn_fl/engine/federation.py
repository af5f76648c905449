"""The server's side of the protocol for any model: the Grid, the sites, rounds, evaluation and audits.

`Federation` knows arrays and messages, not data sets: it discovers the sites (their input
shape, class count and row counts), runs rounds through the wrapped Flower strategy, pools
the sites' counts and statistics, and asks the withdrawing sites for their audits. It
evaluates with the user's `evaluate_fn` or its own test split when it has one, and otherwise
pools the sites' holdout counts (federated evaluation). What one withdrawal does with it is
`engine/withdrawal.py`.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

import torch
from torch import nn

from unlearn_fl.config import UnlearningSettings
from unlearn_fl.data import Split
from unlearn_fl.engine.protocol import (
    ARRAYS,
    AUDIT,
    BEFORE_ARRAYS,
    CONFIG,
    COUNT,
    DESCRIBE,
    EVALUATE,
    INPUTS,
    EXPOSURE,
    METRICS,
    REFERENCE_ARRAYS,
    STATS,
    UNLEARN,
    Withdrawal,
    Withdrawals,
    encode_withdrawals,
    fully_withdrawn,
)
from unlearn_fl.engine.history import UpdateHistory
from unlearn_fl.engine.objective_weights import reweight
from unlearn_fl.engine.strategy import WithdrawalFilter, base_strategy
from unlearn_fl.methods import get_method
from unlearn_fl.models import evaluate, per_example_loss
from unlearn_fl.audit.results import ModelAudit, RetainedExposure
from unlearn_fl.audit.verdict import auc_resolution
from unlearn_fl.report.schema import RoundLog
from unlearn_fl.requests import WithdrawalRequest

log = logging.getLogger("unlearn_fl")

Progress = Callable[[str, int, int], None]
EvaluateFn = Callable[[nn.Module], tuple[float, float]]
"""model -> (accuracy, mean loss) on data the server holds."""


class FederationError(RuntimeError):
    """The federation could not do what was asked (too few clients answered, ...)."""


class WithdrawalAborted(FederationError):
    """Unlearning could not be completed; no version was written, the previous one stands."""


def to_arrays(model: nn.Module) -> ArrayRecord:
    """A module's weights as Flower's ArrayRecord (what travels in messages)."""
    return ArrayRecord({k: v.detach() for k, v in model.state_dict().items()})


def state_digest(model: nn.Module) -> str:
    """sha256 over a module's state (names, dtypes, shapes, values): equal digests, equal weights."""
    import hashlib

    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def from_arrays(template: nn.Module, arrays: ArrayRecord) -> nn.Module:
    """A copy of `template` (any architecture) holding `arrays`' weights."""
    import copy

    m = copy.deepcopy(template)
    m.load_state_dict(arrays.to_torch_state_dict())
    return m


_RAISED = re.compile(r"^<class '(?:[\w.]*\.)?([\w()]+)'>:<'(.*)'>$", re.S)
_LAST_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception|Warning|Exit|Interrupt)): ?(.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_OWN_ERRORS = {"SiteError", "DataError", "UsageError"}
"""Errors whose message is written for the operator: shown without their type."""


def _client_error(reply: Message) -> str:
    """The one-line reason a site's handler gave.

    Flower wraps a raised exception as "<class 'T'>:<'message'>"; its simulation engine wraps it once
    more in a Ray task error whose message is a traceback, the site's own exception on the line before
    "The above exception was the direct cause". Returns "message" for the project's own errors (written
    for the operator), "Type: message" for any other.
    """
    reason = _ANSI.sub("", str(reply.error.reason)).strip()
    kind, text = None, reason
    cause = "The above exception was the direct cause"
    if cause in reason:
        lines = [x.strip() for x in reason.split(cause, 1)[0].strip().splitlines() if x.strip()]
        m = _LAST_LINE.match(lines[-1]) if lines else None
        if m:
            kind, text = m.group(1), m.group(2)
    elif (m := _RAISED.match(reason)) is not None:
        kind, text = m.group(1), m.group(2)
        if "occurred. Message:" in text:  # Flower's ClientAppException around the site's message
            kind, text = None, text.split("occurred. Message:", 1)[1]
    text = text.strip().strip("'").strip()
    line = text.splitlines()[0].strip() if text else ""
    if kind and kind not in _OWN_ERRORS:
        line = f"{kind}: {line}" if line else kind
    return line[:300] if line else f"error code {reply.error.code} without a reason"


@dataclass
class UnlearningCost:
    """What one `Federation.unlearn` call cost (monitoring of the forget set per round excluded).

    rounds: the unlearning rounds it returned; examples_processed: rows the clients passed forward and
    backward; examples_forward: rows they passed forward only (no gradient: a third of a forward-and-backward
    row's compute each); bytes: model arrays exchanged, both ways; history_bytes: bytes of training history the method
    relied on at the server (0 when it stores nothing); stores: that storage in words; seconds: wall clock.
    """

    method: str
    rounds: int
    examples_processed: int
    examples_forward: int
    bytes: int
    history_bytes: int
    stores: str
    seconds: float


def with_request(withdrawals: Withdrawals, request: WithdrawalRequest) -> Withdrawals:
    """The withdrawals so far plus `request`, per site, oldest first."""
    out = {c: list(v) for c, v in withdrawals.items()}
    for c in request.client_ids:
        out.setdefault(c, []).append(Withdrawal(request.request_id, request.fraction, request.records is not None,
                                                  request.rows_key or ""))
    return out


class Federation:
    """Drives the Grid for any model: discovery, rounds, statistics, evaluation and audits.

    model: a template module (its architecture; weights are replaced by arrays).
    test: the server's own labelled test split, if it has one; evaluate_fn: the user's
    server-side evaluation, model -> (accuracy, loss). Without either, evaluation is
    federated: the sites' holdout counts are pooled.
    """

    def __init__(self, grid: Grid, cfg: UnlearningSettings, strategy: WithdrawalFilter | None = None,
                 progress: Progress | None = None, model: nn.Module | None = None, test: Split | None = None,
                 evaluate_fn: EvaluateFn | None = None, timeout: float = 600):
        self.grid, self.cfg = grid, cfg
        self._given = strategy
        self.strategy = strategy or self.new_strategy()
        self.progress = progress or (lambda *_: None)
        self.node_of: dict[int, int] = {}
        self.model, self.test, self.evaluate_fn, self.timeout = model, test, evaluate_fn, timeout
        self.current: Withdrawals = {}
        """Withdrawals applied so far (withdrawn sites take no part in federated evaluation)."""
        self.sites: dict[int, dict] = {}
        """Per site: what it described of itself (row counts, input shape, class count, data digest)."""
        self.scaler: tuple[list[float], list[float]] | None = None
        self._holdout_eval: tuple[tuple, tuple[float, float]] | None = None
        self._round = 0
        self.monitor_seconds = 0.0
        self.monitor_bytes = 0
        self.dp_phases: dict[int, list[tuple[float, int]]] = {}
        """Per client: (sample rate, steps) of every DP-SGD training it did (for the accountant)."""
        self.central_rounds = 0
        self.bytes_sent = 0
        """Bytes of model arrays sent to and received from sites (a cost measure)."""
        self.examples_processed = 0
        """Rows the sites passed forward and backward, summed over every train and unlearn reply (a compute cost)."""
        self.examples_forward = 0
        """Rows the sites passed forward only, without gradient, summed the same way (`examples-forward`)."""
        self.initial: nn.Module | None = None
        """The model the first training round started from (what a retrain from scratch starts from)."""
        self.trained_rounds = 0
        """Ordinary training rounds run so far."""
        self.last_unlearning: UnlearningCost | None = None
        """The cost of the last `unlearn` call."""
        need = get_method(cfg.method).needs_history if cfg.method else "none"
        if cfg.store_history:
            need = "every"
        if need != "none" and getattr(self.strategy, "history", None) is None:
            # Recorded by the strategy of ordinary training rounds only; unlearning and retraining use fresh ones.
            self.strategy.history = UpdateHistory(every=cfg.history_every, keep_every=need == "every")

    @property
    def history(self) -> UpdateHistory | None:
        """The training history the server keeps for FedEraser / Halimi et al. (None: nothing is stored)."""
        return getattr(self.strategy, "history", None)

    @property
    def history_bytes(self) -> int:
        """Bytes of training history the server holds now (0 when nothing is stored)."""
        return self.history.nbytes if self.history is not None else 0

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
            worst = max(per.values(), key=lambda b: b.bound)  # an unbounded ε (None) is the worst
            block = worst.model_copy()
            block.per_client = {k: v.epsilon for k, v in per.items()}
            return block
        if dp.central:
            return account(dp.central_noise_multiplier, 1.0, self.central_rounds, delta, dp.accountant,
                           max_grad_norm=dp.central_clipping_norm).model_copy(update={"unit": "client"})
        return None

    def new_strategy(self) -> WithdrawalFilter:
        """A fresh strategy of the configured kind (stateful ones, like FedAdam, must not leak state
        from the released model into the retrain-from-scratch reference)."""
        if self._given is not None:
            return self._given.fresh()
        if self.cfg.dp.central:
            return central_dp_strategy(self.cfg)
        return WithdrawalFilter(base_strategy(self.cfg.strategy, proximal_mu=self.cfg.proximal_mu))

    # ------------------------------------------------------------ messaging
    def _config(self, withdrawals: Withdrawals, active: str = "", **extra) -> ConfigRecord:
        c = self.cfg
        scaler = {"input-mean": self.scaler[0], "input-scale": self.scaler[1]} if self.scaler else {}
        return ConfigRecord({
            "lr": c.lr, "local-epochs": c.local_epochs, "batch-size": c.batch_size,
            "withdrawals": encode_withdrawals(withdrawals), "active-request": active,
            "inject-failure": ",".join(map(str, c.inject_failure)),
            "dp-noise": c.dp.noise_multiplier, "dp-clip": c.dp.max_grad_norm,
            "n-classes": self.n_classes if self.sites else 0, **scaler, **extra,
        })

    def _count_bytes(self, msgs: Iterable[Message]) -> None:
        for m in msgs:
            if not m.has_error():
                self.bytes_sent += int(sum(a.numpy().nbytes for rec in m.content.array_records.values() for a in rec.values()))

    def send(self, msgs: list[Message]) -> list[Message]:
        """send_and_receive, counting the bytes of model arrays both ways (every ArrayRecord of a message)
        and the rows the sites processed (`examples-processed` and `examples-forward` of train and unlearn replies).

        Replies come back in site order (partition id, then node id for sites not yet known), not in
        arrival order: every sum over replies (FedAvg, statistics, digests) then adds the same floats in
        the same order, so a seeded run repeats bit for bit whichever site answers first.
        """
        self._count_bytes(msgs)
        client_of = {n: c for c, n in self.node_of.items()}
        replies = sorted(self.grid.send_and_receive(msgs, timeout=self.timeout),
                         key=lambda r: (client_of.get(r.metadata.src_node_id, float("inf")), r.metadata.src_node_id))
        self._count_bytes(replies)
        for r in replies:
            if not r.has_error() and METRICS in r.content:
                self.examples_processed += int(r.content[METRICS].get("examples-processed", 0))
                self.examples_forward += int(r.content[METRICS].get("examples-forward", 0))
        return replies

    def exchange_all(self, node_ids: Iterable[int], message_type: str, content: RecordDict) -> list[Message]:
        """One message per node; every reply, errors included."""
        return self.send([Message(content=content, dst_node_id=n, message_type=message_type) for n in node_ids])

    def site_name(self, node_id: int) -> str:
        """'site K' for a node whose partition id is known, else 'node N'."""
        for c, n in self.node_of.items():
            if n == node_id:
                return f"site {c}"
        return f"node {node_id}"

    def problems(self, node_ids: Iterable[int], replies: Iterable[Message]) -> list[str]:
        """One phrase per site that answered with an error (naming its error) or sent no reply in time."""
        replies = list(replies)
        out = [f"{self.site_name(r.metadata.src_node_id)} answered with an error: {_client_error(r)}"
               for r in replies if r.has_error()]
        answered = {r.metadata.src_node_id for r in replies}
        out += [f"{self.site_name(n)} did not answer within {self.timeout:g} s" for n in node_ids if n not in answered]
        return out

    def exchange(self, node_ids: Iterable[int], message_type: str, content: RecordDict, strict: bool = False,
                 what: str = "") -> list[Message]:
        """One message per node; the replies without errors.

        A site that answers with an error, or not at all, is logged by name with its error; with `strict`
        it raises FederationError naming every such site (`what`: the query, for the message).
        """
        node_ids = list(node_ids)
        replies = self.exchange_all(node_ids, message_type, content)
        problems = self.problems(node_ids, replies)
        if problems and strict:
            raise FederationError(f"{what or message_type}: " + "; ".join(problems))
        for p in problems:
            log.warning("%s (%s)", p, what or message_type)
        return [r for r in replies if not r.has_error()]

    def discover(self, timeout: float = 300.0) -> dict[int, int]:
        """Map site ids (partition ids) to node ids, waiting for every site; record what each describes."""
        want = self.cfg.num_clients
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
        handed = _described_by_grid(self.grid, nodes)
        if handed is not None:  # `describe_sites` asked these very nodes a moment ago in this ServerApp
            self.node_of, self.sites = handed
            return self.node_of
        replies = self.exchange_all(nodes, DESCRIBE, RecordDict({CONFIG: ConfigRecord({})}))
        # Partition ids are not known yet: each site names itself in its own error (`UnlearningClient.site`).
        errors = [f"{_client_error(r)} (node {r.metadata.src_node_id})" for r in replies if r.has_error()]
        if errors:
            raise FederationError(f"{len(errors)} site(s) could not load their data: " + "; ".join(errors))
        answered = {r.metadata.src_node_id for r in replies}
        if len(answered) < len(nodes):
            silent = [n for n in nodes if n not in answered]
            raise FederationError(f"nodes {silent} did not describe their data within {self.timeout:g} s")
        for r in replies:
            m = r.content[METRICS]
            cid = int(m["client-id"])
            if cid in self.node_of:
                raise FederationError(f"two SuperNodes claim partition-id {cid}: give each SuperNode its own partition-id")
            self.node_of[cid] = r.metadata.src_node_id
            self.sites[cid] = {"n_train": int(m["n-train"]), "n_holdout": int(m["n-holdout"]), "n_classes": int(m["n-classes"]),
                               "input_shape": [int(v) for v in r.content[CONFIG]["input-shape"]],
                               "data_digest": str(r.content[CONFIG]["data-digest"])}
        missing = sorted(set(range(want)) - set(self.node_of))
        if missing:
            raise FederationError(f"clients {missing} did not answer: partition ids must be 0..{want - 1}")
        shapes = {tuple(s["input_shape"]) for s in self.sites.values()}
        if len(shapes) > 1:
            raise FederationError(f"sites disagree on the input shape {sorted(shapes)}: every site must load the same columns")
        return self.node_of

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(next(iter(self.sites.values()))["input_shape"])

    @property
    def n_classes(self) -> int:
        return max(s["n_classes"] for s in self.sites.values())

    def fit_scaler(self) -> tuple[list[float], list[float]]:
        """Feature mean and scale from the sites' count, Σx, Σx² (declared aggregates; no rows)."""
        replies = self.exchange(self.node_of.values(), INPUTS, RecordDict({CONFIG: ConfigRecord({})}), strict=True,
                                what="the feature scaler needs every site's sums")
        n = sum(int(r.content[CONFIG]["count"]) for r in replies)
        s1 = sum(np.asarray(r.content[CONFIG]["sum"], dtype=np.float64) for r in replies)
        s2 = sum(np.asarray(r.content[CONFIG]["sumsq"], dtype=np.float64) for r in replies)
        mean = s1 / max(n, 1)
        scale = np.sqrt(np.maximum(s2 / max(n, 1) - mean ** 2, 0.0))
        scale[scale < 1e-8] = 1.0
        self.scaler = (mean.tolist(), scale.tolist())
        return self.scaler

    def _nodes(self, clients: Iterable[int]) -> list[int]:
        return [self.node_of[c] for c in clients]

    # ------------------------------------------------------------ evaluation
    def server_eval(self, model: nn.Module) -> tuple[float, float]:
        """(accuracy, loss): the user's evaluate_fn, the server's own test split, or pooled site holdouts."""
        if self.evaluate_fn is not None:
            return self.evaluate_fn(model)
        if self.test is not None:
            return evaluate(model, self.test)
        key = (state_digest(model), tuple(sorted(fully_withdrawn(self.current))))
        if self._holdout_eval is not None and self._holdout_eval[0] == key:  # e.g. the last round's model, again
            return self._holdout_eval[1]
        m = self.client_metrics(model, self.current, "", holdout=True)
        self._holdout_eval = (key, (m["holdout_acc"], m["holdout_loss"]))
        return self._holdout_eval[1]

    def client_metrics(self, model: nn.Module, withdrawals: Withdrawals, active: str, clients: Iterable[int] | None = None,
                       holdout: bool = False) -> dict:
        """Pooled accuracy and loss on retained rows, the active request's rows and holdouts (counts from sites)."""
        if clients is None:
            clients = [c for c in self.node_of if c not in fully_withdrawn(withdrawals)] if holdout else list(self.node_of)
        clients = list(clients)
        test_sites = set(clients) - fully_withdrawn(withdrawals)  # a site that left: its holdout is not test data any more
        return self._pooled_metrics(model, withdrawals, active, clients,
                                    {"retain": set(clients), "forget": set(clients), "holdout": test_sites})

    def _pooled_metrics(self, model: nn.Module | dict[str, nn.Module], withdrawals: Withdrawals, active: str,
                        clients: list[int], sources: dict[str, set[int]]) -> dict:
        """One EVALUATE message to `clients`; group g ∈ {retain, forget, holdout} pooled over the sites in sources[g].

        `model` a module: {"<g>_acc", "<g>_loss"}; a dict of named modules (all in the one message, the
        sites' keys suffixed by the name): {name: {"<g>_acc", "<g>_loss"}}.
        """
        named = model if isinstance(model, dict) else {"": model}
        if isinstance(model, dict):
            content = RecordDict({f"{ARRAYS}-{n}": to_arrays(m) for n, m in named.items()})
            content[CONFIG] = self._config(withdrawals, active, **{"audit-models": ",".join(named)})
        else:
            content = RecordDict({ARRAYS: to_arrays(model), CONFIG: self._config(withdrawals, active)})
        groups = ("retain", "forget", "holdout")
        sfx = {n: f"-{n}" if n else "" for n in named}
        tot = {n: {f"{g}-{k}": 0.0 for g in groups for k in ("correct", "loss-sum", "n")} for n in named}
        client_of = {n: c for c, n in self.node_of.items()}
        for r in self.exchange(self._nodes(clients), EVALUATE, content):
            site = client_of[r.metadata.src_node_id]
            for n in named:
                for k in tot[n]:
                    if site in sources[k.split("-", 1)[0]]:
                        tot[n][k] += r.content[METRICS].get(k + sfx[n], 0)
        out = {}
        for n in named:
            out[n] = {}
            for g in groups:
                k = tot[n][f"{g}-n"]
                out[n][f"{g}_acc"] = tot[n][f"{g}-correct"] / k if k else float("nan")
                out[n][f"{g}_loss"] = tot[n][f"{g}-loss-sum"] / k if k else float("nan")
        return out if isinstance(model, dict) else out[""]

    def audited_metrics(self, models: dict[str, nn.Module], withdrawals: Withdrawals, active: str) -> dict[str, dict]:
        """`client_metrics` of several models (e.g. before, after, retrain) in one message: {name: metrics}."""
        clients = list(self.node_of)
        test_sites = set(clients) - fully_withdrawn(withdrawals)
        return self._pooled_metrics(models, withdrawals, active, clients,
                                    {"retain": set(clients), "forget": set(clients), "holdout": test_sites})

    def round_metrics(self, model: nn.Module, withdrawals: Withdrawals, request: WithdrawalRequest) -> tuple[float, float, dict]:
        """(test accuracy, test loss, the request's forget metrics) of an unlearning round's model.

        Test figures are `server_eval`'s; forget figures pool the request's holders (`client_metrics`). Without
        a server-side test split both come from one EVALUATE message (holdouts of the sites still in, forget rows of
        the holders), so watching the forget set costs nothing extra; otherwise the holders' separate message is
        counted as monitoring (`monitor_seconds`, `monitor_bytes`), not as unlearning cost.
        """
        if self.evaluate_fn is None and self.test is None:
            test_sites = set(self.node_of) - fully_withdrawn(self.current)
            m = self._pooled_metrics(model, withdrawals, request.request_id, sorted(test_sites | set(request.client_ids)),
                                     {"retain": set(), "forget": set(request.client_ids), "holdout": test_sites})
            return m["holdout_acc"], m["holdout_loss"], m
        acc, loss = self.server_eval(model)
        t_mon, b_mon = time.perf_counter(), self.bytes_sent
        fm = self.client_metrics(model, withdrawals, request.request_id, clients=request.client_ids)
        self.monitor_seconds += time.perf_counter() - t_mon
        self.monitor_bytes += self.bytes_sent - b_mon
        return acc, loss, fm

    def count_forgotten(self, withdrawals: Withdrawals, request: WithdrawalRequest) -> tuple[int, str]:
        """(rows the request forgets, sha256 over the sites' digests of those rows).

        Raises WithdrawalAborted with the site's reason when a holder cannot resolve the request
        (e.g. a record id it does not hold), before anything is unlearned or written.
        """
        import hashlib

        content = RecordDict({CONFIG: self._config(withdrawals, request.request_id)})
        client_of = {n: c for c, n in self.node_of.items()}
        nodes = self._nodes(request.client_ids)
        replies = self.exchange_all(nodes, COUNT, content)
        refused = [f"site {client_of[r.metadata.src_node_id]} refused the request: {_client_error(r)}" for r in replies if r.has_error()]
        if refused:
            raise WithdrawalAborted("; ".join(refused))
        if len(replies) < len(request.client_ids):
            raise WithdrawalAborted("the count query got no answer: " + "; ".join(self.problems(nodes, replies)))
        digest = hashlib.sha256("".join(str(r.content[CONFIG]["forget-digest"]) for r in replies).encode()).hexdigest()
        n = int(sum(int(r.content[METRICS]["forget-n"]) for r in replies))
        if request.records is not None and n != request.records.count:
            raise WithdrawalAborted(f"the site resolved {n} rows but the request names {request.records.count} records")
        return n, digest

    # ------------------------------------------------------------ rounds
    def train_rounds(self, model: nn.Module, rounds: int, withdrawals: Withdrawals, phase: str, logs: list[RoundLog], first: int = 1,
                     strategy: WithdrawalFilter | None = None) -> nn.Module:
        """`rounds` rounds of the wrapped strategy on retained data; fully withdrawn clients excluded."""
        strategy = strategy or self.strategy
        arrays = to_arrays(model)
        exclude = set(self._nodes(fully_withdrawn(withdrawals)))
        if phase == "train" and self.initial is None:
            self.initial = from_arrays(model, arrays)
        for r in range(first, first + rounds):
            self._round += 1
            cfg = self._config(withdrawals, phase="train", seed=self.cfg.seed * 1000 + self._round)
            msgs = list(strategy.configure_train(self._round, arrays, cfg, self.grid, exclude=exclude))
            replies = self.send(msgs)
            problems = self.problems([m.metadata.dst_node_id for m in msgs], replies)
            for p in problems:
                log.warning("%s round %d: %s", phase, r, p)
            new, _ = strategy.aggregate_train(self._round, replies)
            if new is None:
                raise FederationError(f"{phase} round {r}: no client returned a usable update"
                                      + (": " + "; ".join(problems) if problems else ""))
            if phase != "retrain":  # the reference is never released
                self._note_dp(replies)
                self.central_rounds += 1
            if phase == "train":
                self.trained_rounds += 1
            arrays = new
            model = from_arrays(model, arrays)
            acc, loss = self.server_eval(model)
            logs.append(RoundLog(phase=phase, round=r, test_acc=acc, test_loss=loss, n_clients=len(msgs)))
            self.progress(phase, r, self.cfg.rounds if phase == "train" else first + rounds - 1)
        return model

    def retained_stats(self, model: nn.Module, withdrawals: Withdrawals, statistic: str) -> tuple[list[float] | None, int]:
        """Pooled mean output statistic over all retained rows (docs/method.md §2): counts and means only."""
        return self.audited_stats({"": model}, withdrawals, statistic)[""]

    def audited_stats(self, models: dict[str, nn.Module], withdrawals: Withdrawals,
                      statistic: str) -> dict[str, tuple[list[float] | None, int]]:
        """`retained_stats` of several named models in one message (a single unnamed model, "", as one)."""
        if list(models) == [""]:
            content = RecordDict({ARRAYS: to_arrays(models[""]), CONFIG: self._config(withdrawals, statistic=statistic)})
            key = {"": "mean"}
        else:
            content = RecordDict({f"{ARRAYS}-{n}": to_arrays(m) for n, m in models.items()})
            content[CONFIG] = self._config(withdrawals, statistic=statistic, **{"audit-models": ",".join(models)})
            key = {n: f"mean-{n}" for n in models}
        clients = [c for c in self.node_of if c not in fully_withdrawn(withdrawals)]
        total, acc = 0, {n: None for n in models}
        for r in self.exchange(self._nodes(clients), STATS, content):
            m = r.content[CONFIG]
            k = int(m["count"])
            if k:
                for n in models:
                    v = np.asarray(m[key[n]], dtype=np.float64) * k
                    acc[n] = v if acc[n] is None else acc[n] + v
                total += k
        return {n: ((None if acc[n] is None else (acc[n] / total).tolist()), total) for n in models}

    def method_config(self, method: str, method_config: dict | None = None):
        """The validated config of `method`: `method_config` (default: the run's own when `method` is the configured
        one, else {}) over the federation's defaults: `epochs` = local epochs; for server-orchestrated methods also
        the training `lr` and `batch_size` (their client steps are the local training, shortened or reversed)."""
        c = self.cfg
        m = get_method(method)
        given = method_config if method_config is not None else (c.method_config if method == c.method else {})
        defaults: dict = {"epochs": c.local_epochs}
        if m.server_side:
            defaults.update(lr=c.lr, batch_size=c.batch_size)
        return m.make_config(**{**defaults, **given})

    def unlearn(self, model: nn.Module, withdrawals: Withdrawals, request: WithdrawalRequest, logs: list[RoundLog],
                notes: list[str], method: str | None = None, method_config: dict | None = None, *,
                initial: nn.Module | None = None, trained_rounds: int | None = None,
                isolated: bool = False) -> tuple[nn.Module, int]:
        """Unlearn `request` from `model` with `method`; returns (the unlearned model, its unlearning rounds).

        The one entry point for every method (`unlearn_fl.methods.METHODS`): `retrain` trains `trained_rounds`
        rounds from `initial` (defaults: the first training round's start, the training rounds so far); the
        client-side methods (finetune, gradient-ascent, marginal, scrub) run `unlearn_rounds`; `federaser`
        (engine/federaser.py) and `pga` (engine/projected_ascent.py) are orchestrated here.
        withdrawals: every withdrawal including `request`. method / method_config: default the run's
        (`cfg.method`, `cfg.method_config`). `model` is not modified and neither is `current`; each call
        uses a fresh strategy (`new_strategy`), so several methods can unlearn the same model in one run.
        isolated: afterwards, restore the round counter (which seeds the sites' steps) and the DP accounting
        inputs, so the call leaves no trace a later call could see: the same method on the same model gives
        the same result whatever ran before (for benchmarks; a released unlearning keeps them).
        Rounds are appended to `logs` (phase "unlearn"), problems and storage to `notes`; the cost goes to
        `last_unlearning`. Raises WithdrawalAborted when it cannot complete (nothing is recorded then).
        """
        name = method or self.cfg.method
        m = get_method(name)
        mcfg = self.method_config(name, method_config)
        if m.server_side and self.cfg.dp.central:
            raise WithdrawalAborted(f"{name} combines client models itself, outside the server-side DP wrapper: "
                                    "the accountant's ε would not hold for its release")
        t0, ex0, fw0, b0 = time.perf_counter(), self.examples_processed, self.examples_forward, self.bytes_sent
        mon_s0, mon_b0 = self.monitor_seconds, self.monitor_bytes
        saved = (self._round, self.central_rounds, {k: list(v) for k, v in self.dp_phases.items()})
        try:
            after, n = self._unlearn(m, name, mcfg, model, withdrawals, request, logs, notes, initial, trained_rounds)
        finally:
            if isolated:
                self._round, self.central_rounds, self.dp_phases = saved
        hist = self.history
        history_bytes = hist.bytes_for(m.needs_history) if hist is not None else 0
        stores = hist.describe(m.needs_history) if hist is not None and m.needs_history != "none" else "nothing"
        self.last_unlearning = UnlearningCost(
            method=name, rounds=n, examples_processed=self.examples_processed - ex0, examples_forward=self.examples_forward - fw0,
            bytes=self.bytes_sent - b0 - (self.monitor_bytes - mon_b0), history_bytes=history_bytes, stores=stores,
            seconds=time.perf_counter() - t0 - (self.monitor_seconds - mon_s0))
        return after, n

    def _unlearn(self, m, name: str, mcfg, model: nn.Module, withdrawals: Withdrawals, request: WithdrawalRequest,
                 logs: list[RoundLog], notes: list[str], initial: nn.Module | None,
                 trained_rounds: int | None) -> tuple[nn.Module, int]:
        """`unlearn`'s dispatch by method, with a fresh strategy."""
        strategy = self.new_strategy()
        if m.retrains:
            start = initial if initial is not None else self.initial
            if start is None:
                raise WithdrawalAborted("retrain needs the initial weights: no training round has run in this federation")
            n = trained_rounds if trained_rounds is not None else self.trained_rounds
            after = self.train_rounds(from_arrays(start, to_arrays(start)), n, withdrawals, "unlearn", logs, strategy=strategy)
        elif name == "federaser":
            from unlearn_fl.engine.federaser import federaser_unlearn

            after, n = federaser_unlearn(self, model, withdrawals, request, logs, notes, mcfg)
        elif name == "pga":
            from unlearn_fl.engine.projected_ascent import projected_ascent_unlearn

            after, n = projected_ascent_unlearn(self, model, withdrawals, request, logs, notes, mcfg, strategy)
        elif m.server_side:
            raise ValueError(f"method {name!r} is server-side but the federation has no procedure for it")
        else:
            after, n = self.unlearn_rounds(model, withdrawals, request, logs, notes, method=name, method_config=mcfg,
                                           strategy=strategy)
        return after, n

    def unlearn_rounds(self, model: nn.Module, withdrawals: Withdrawals, request: WithdrawalRequest, logs: list[RoundLog],
                       notes: list[str], method: str | None = None, method_config=None,
                       strategy: WithdrawalFilter | None = None) -> tuple[nn.Module, int]:
        """A client-side method's unlearning rounds (`method`, default the run's; `method_config` a dict or the
        method's config; `strategy` default the federation's).

        Every forget-holder of the request must answer, and at least `min_unlearn_fraction` of the
        retaining clients; a round short of that is retried `max_retries` times, then the
        withdrawal is aborted (WithdrawalAborted) and nothing is recorded. A round that costs
        more than `max_test_drop` test accuracy is rolled back and ends the unlearning. SCRUB's
        teacher (the model at the start) travels beside the model in every round (`reference-arrays`).
        """
        c = self.cfg
        name = method or c.method
        method = get_method(name)
        strategy = strategy or self.strategy
        mcfg = method_config if isinstance(method_config, method.config_cls) else self.method_config(name, method_config)
        teacher = to_arrays(model) if name == "scrub" else None
        statistic = method.statistic(mcfg)
        # A holder that keeps none of its rows needs the retained sites' mean statistic from the server; so does
        # one under DP-SGD, whose own retained rows sit the unlearning step out (`UnlearningClient.unlearn`).
        # With reference "auto" a holder that has holdout rows compares with them and never reads the mean, so the
        # exchange (a round trip to every retaining site, with the model) is skipped when every holder has some.
        reference = getattr(mcfg, "reference", None)
        holders_have_holdout = all(self.sites.get(k, {}).get("n_holdout", 0) > 0 for k in request.client_ids)
        needs_stats = (statistic is not None and (reference == "retain" or (reference == "auto" and not holders_have_holdout))
                       and (request.scope == "client" or c.dp.local))
        holders = set(self._nodes(request.client_ids))
        client_of = {n: k for k, n in self.node_of.items()}
        gone = fully_withdrawn(withdrawals) - set(request.client_ids)
        retainers = {self.node_of[k] for k in self.node_of if k not in gone} - holders
        # The model's own test accuracy, the guard's baseline: a measurement of the model before unlearning, counted
        # as monitoring, not as unlearning cost (mostly known from the last training round: then no message at all).
        t_mon, b_mon = time.perf_counter(), self.bytes_sent
        start_acc, _ = self.server_eval(model)
        self.monitor_seconds += time.perf_counter() - t_mon
        self.monitor_bytes += self.bytes_sent - b_mon
        done, r, attempts = 0, 0, 0
        while r < c.unlearn_rounds:
            r += 1
            self._round += 1
            ref_mean = self.retained_stats(model, withdrawals, statistic)[0] if needs_stats else None
            cfg = self._config(withdrawals, request.request_id, phase="unlearn", seed=c.seed * 1000 + self._round,
                               method=name, **{"method-config": mcfg.model_dump_json(exclude={"seed"}),
                                               "reference-mean": ref_mean or []})
            # Nodes excluded: only clients gone through earlier requests; this request's holders take part.
            sent = to_arrays(model)
            msgs = [Message(content=m.content, dst_node_id=m.metadata.dst_node_id, message_type=UNLEARN)
                    for m in strategy.configure_train(self._round, sent, cfg, self.grid, exclude=set(self._nodes(gone)))]
            if teacher is not None:
                for m in msgs:
                    m.content[REFERENCE_ARRAYS] = teacher
            replies = self.send(msgs)
            ok = [m for m in replies if not m.has_error()]
            answered = {m.metadata.src_node_id for m in ok}
            missing_holders = holders - answered
            short = len(retainers & answered) < c.min_unlearn_fraction * len(retainers)
            why_failed = {client_of[m.metadata.src_node_id]: _client_error(m) for m in replies if m.has_error()}
            replied = {m.metadata.src_node_id for m in replies}
            silent = sorted(k for k, n in self.node_of.items() if n in (holders | retainers) - replied)
            said = [f"client {k} answered with an error: {v}" for k, v in sorted(why_failed.items())]
            said += [f"client {k} did not answer within {self.timeout:g} s" for k in silent]
            if said:
                notes.append(f"unlearning round {r}: " + "; ".join(said))
            if missing_holders or short:
                attempts += 1
                holder_said = [x for k, x in zip([*sorted(why_failed), *silent], said) if self.node_of[k] in missing_holders]
                why = (f"a withdrawing client failed ({'; '.join(holder_said)})"
                       if missing_holders else f"only {len(retainers & answered)} of {len(retainers)} retaining clients answered "
                            f"(minimum {c.min_unlearn_fraction:.0%}): " + "; ".join(said))
                if attempts > c.max_retries:
                    raise WithdrawalAborted(f"unlearning round {r}: {why}; aborted after {attempts} attempts, previous version kept")
                notes.append(f"unlearning round {r}: {why}; retrying")
                r -= 1
                continue
            if method.uses_forget and c.forget_weight == "objective" and not c.dp.central:
                reweight(ok, sent, holders)  # the forget term counted once, not by example share
            new, _ = strategy.aggregate_train(self._round, ok)
            if new is None:
                raise WithdrawalAborted(f"unlearning round {r}: no usable update")
            self._note_dp(ok)
            self.central_rounds += 1
            cand = from_arrays(model, new)
            acc, loss, fm = self.round_metrics(cand, withdrawals, request)
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
    def audit(self, models: dict[str, nn.Module], withdrawals: Withdrawals, request: WithdrawalRequest, statistic: str,
              reference: str | None = None) -> dict[str, ModelAudit]:
        """Run the membership audits of several models on each withdrawing site, in one message; merge per model.

        models: e.g. {"before": ..., "after": ..., "retrain": ...}, each under `arrays-<name>`.
        reference: the name of the model RMIA uses as its reference (the retrain from scratch); every
        other model is audited against it, and the site trains its own extra references once for all.
        Non-members: each site's own holdout, plus the server's test losses when it holds a test split and
        `audit.test_nonmembers` is on.
        """
        extra: dict = {}
        content = RecordDict()
        use_test = self.test is not None and self.cfg.audit.test_nonmembers
        stats = self.audited_stats(models, withdrawals, statistic)  # one message for all models
        for name, m in models.items():
            content[f"{ARRAYS}-{name}"] = to_arrays(m)
            if use_test:
                extra[f"nonmember-losses-{name}"] = per_example_loss(m, self.test).tolist()
            mean, n_ref = stats[name]
            extra[f"retain-mean-{name}"], extra["retain-n"] = mean or [], n_ref
        if use_test:
            extra["nonmember-labels"] = self.test.y.tolist()
        a = self.cfg.audit
        content[CONFIG] = self._config(withdrawals, request.request_id, statistic=statistic, seed=self.cfg.seed,
                                       **{**extra, "audit-models": ",".join(models), "audit-reference": reference or "",
                                          "delta": a.delta, "confidence": a.confidence, "audit-references": a.references,
                                          "audit-reference-mode": a.reference_mode, "audit-reference-epochs": a.reference_epochs})
        nodes = self._nodes(request.client_ids)
        replies = self.exchange_all(nodes, AUDIT, content)
        problems = self.problems(nodes, replies)
        if problems:  # the verdict must rest on every withdrawing site's audit: without one, nothing is recorded
            raise WithdrawalAborted("the audit could not run at every withdrawing site: " + "; ".join(problems))
        return {name: merge_audits([ModelAudit.model_validate_json(r.content[CONFIG][f"audit-{name}"]) for r in replies])
                for name in models}

    def exposure(self, before: nn.Module, after: nn.Module, withdrawals: Withdrawals) -> list[RetainedExposure]:
        """Each retained site's own rows vs its holdout, before and after unlearning (counts and AUCs only).

        `increased` when AUC_after − AUC_before exceeds the resolution of a difference of two AUCs at
        the site's sample sizes (`unlearn_fl.audit.verdict.auc_resolution`). Sites without a holdout
        cannot measure and are left out.
        """
        clients = [c for c in self.node_of if c not in fully_withdrawn(withdrawals)]
        content = RecordDict({ARRAYS: to_arrays(after), BEFORE_ARRAYS: to_arrays(before),
                              CONFIG: self._config(withdrawals, seed=self.cfg.seed)})
        client_of = {n: c for c, n in self.node_of.items()}
        out = []
        for r in self.exchange(self._nodes(clients), EXPOSURE, content):
            m = r.content[METRICS]
            n_m, n_n = int(m["n-members"]), int(m["n-nonmembers"])
            if "auc-before" not in m or n_m < 1 or n_n < 1:
                continue
            h = auc_resolution(n_m, n_n, self.cfg.audit.confidence, with_reference=True)
            b, a = float(m["auc-before"]), float(m["auc-after"])
            out.append(RetainedExposure(client=client_of[r.metadata.src_node_id], auc_before=b, auc_after=a,
                                        n_members=n_m, n_nonmembers=n_n, resolution=h, increased=a - b > h))
        return sorted(out, key=lambda e: e.client)


def central_dp_strategy(cfg: UnlearningSettings) -> WithdrawalFilter:
    """FedAvg wrapped in Flower's own server-side fixed-clipping DP, wrapped in turn for unlearning."""
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

    dp = DifferentialPrivacyServerSideFixedClipping(base_strategy(cfg.strategy, proximal_mu=cfg.proximal_mu), noise_multiplier=cfg.dp.central_noise_multiplier,
                                                    clipping_norm=cfg.dp.central_clipping_norm,
                                                    num_sampled_clients=cfg.num_clients)
    return WithdrawalFilter(dp)


def merge_audits(audits: list[ModelAudit]) -> ModelAudit:
    """One client: as is. Several: per attack every site ran, the member-weighted AUC; the
    member-weighted criterion, the worst (largest) ε, and the largest client's curves."""
    audited = [a for a in audits if a.attacks]  # a site with too few rows to compare ran no attack
    if len(audited) <= 1:
        return audited[0] if audited else audits[0]
    audits = audited
    sizes = np.array([a.attacks[0].n_members for a in audits], dtype=float)
    merged = audits[int(sizes.argmax())].model_copy(deep=True)
    names = [x.attack for x in merged.attacks if all(x.attack in {y.attack for y in a.attacks} for a in audits)]
    merged.attacks = [x for x in merged.attacks if x.attack in names]
    for x in merged.attacks:
        per = [next(y for y in a.attacks if y.attack == x.attack) for a in audits]
        x.auc = float(np.average([y.auc for y in per], weights=[y.n_members for y in per]))
        x.n_members = int(sum(y.n_members for y in per))
        x.n_nonmembers = int(sum(y.n_nonmembers for y in per))
    eps = [a.epsilon for a in audits if a.epsilon is not None]
    if eps:
        merged.epsilon = max(eps, key=lambda e: e.epsilon_lower)
    crit = [(a.criterion_mi, s) for a, s in zip(audits, sizes) if a.criterion_mi is not None]
    merged.criterion_mi = float(np.average([c for c, _ in crit], weights=[s for _, s in crit])) if crit else None
    return merged


def describe_sites(grid: Grid, num_clients: int, timeout: float = 300.0) -> tuple[tuple[int, ...], int]:
    """(input shape, class count) the sites describe, before any model exists (no data moves)."""
    fed = Federation(grid, UnlearningSettings(num_clients=num_clients))
    fed.discover(timeout)
    try:  # the next `discover` on this grid takes these descriptions instead of a second round trip
        _DESCRIBED[grid] = (frozenset(fed.node_of.values()), dict(fed.node_of), {k: dict(v) for k, v in fed.sites.items()})
    except TypeError:  # a grid that cannot be weakly referenced: it is simply asked again
        pass
    return fed.input_shape, fed.n_classes


_DESCRIBED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Grid -> (its node ids, site -> node, site descriptions) that `describe_sites` left for the next `discover`."""


def _described_by_grid(grid: Grid, nodes: Iterable[int]) -> tuple[dict[int, int], dict[int, dict]] | None:
    """Take (once) what `describe_sites` found on `grid`, if it asked exactly `nodes`."""
    try:
        handed = _DESCRIBED.pop(grid, None)
    except TypeError:
        return None
    if handed is None or handed[0] != frozenset(nodes):
        return None
    return handed[1], handed[2]
