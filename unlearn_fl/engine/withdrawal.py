"""One withdrawal, end to end, and the training loop that applies them as they fall due.

`run_federation` trains through the wrapped Flower strategy; after each round it takes the
withdrawals due (planned ones, and requests from the request folder). For each: the holding
sites resolve it (a refused request writes nothing), the current model is registered, the
method's unlearning rounds run (or a retrain), a retrain-from-scratch reference runs from the
same initial arrays in the same engine, the withdrawing sites audit their forget sets locally,
and the Recorder writes the report and the new version whose parent is the previous one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from flwr.serverapp import Grid
from torch import nn

from unlearn_fl.config import UnlearningSettings
from unlearn_fl.data import Split
from unlearn_fl.engine.federation import (
    EvaluateFn,
    Federation,
    Progress,
    WithdrawalAborted,
    from_arrays,
    to_arrays,
    with_request,
)
from unlearn_fl.engine.protocol import Withdrawals, fully_withdrawn
from unlearn_fl.engine.strategy import WithdrawalFilter
from unlearn_fl.methods import get_method
from unlearn_fl.audit.results import ModelAudit, RetainedExposure
from unlearn_fl.report.schema import RoundLog
from unlearn_fl.requests import RequestQueue, WithdrawalRequest

log = logging.getLogger("unlearn_fl")

@dataclass
class WithdrawalOutcome:
    """Models and measurements of one withdrawal, handed to the Recorder."""

    request: WithdrawalRequest
    before: nn.Module
    after: nn.Module
    retrain: nn.Module | None
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
    unchanged: str | None = None
    """Why the released weights equal the parent's (no surviving unlearning step), or None."""
    exposure: list[RetainedExposure] = field(default_factory=list)
    """Retained sites' own membership exposure before and after."""
    unlearn_bytes: int = 0
    """Bytes of model arrays exchanged by the unlearning (both ways), per-round forget-set monitoring excluded."""
    retrain_bytes: int | None = None
    verdict: str | None = None
    """Set by the Recorder once the version is registered: its verdict, report digest and `contains_withdrawn`."""
    report_digest: str | None = None
    contains_withdrawn: str | None = None
    version: str | None = None
    parent_version: str | None = None
    release: str | None = None
    """The alias the version is to get (production | candidate), moved once the ledger has recorded it."""


class Recorder(Protocol):
    """Where versions and reports go (MLflow + files in `server_app.py`; anything in tests)."""

    def start(self, fed: "Federation") -> None: ...

    def trained(self, model: nn.Module, clients: list[int], withdrawals: Withdrawals, rounds: list[RoundLog]) -> str | None: ...

    def unlearned(self, outcome: WithdrawalOutcome) -> str | None: ...

    def aborted(self, request: WithdrawalRequest, reason: str) -> None: ...

    def finish(self, fed: "Federation") -> None: ...

    def recover(self) -> list[str]:
        """Remove what an interrupted run left half-written (versions without their report); returns them."""
        ...

    def anchor(self, version: str, seq: int, entry_hash: str, key: str = "ledger_entry") -> None:
        """Witness a ledger entry about `version` in a registry tag `key`, so a removed entry is detected."""
        ...

    def erase_superseded(self, outcome: WithdrawalOutcome, policy: str) -> list[dict]:
        """Apply the erasure policy (quarantine | delete) to earlier versions holding the withdrawn data; what was erased."""
        ...

    def release(self, version: str, only_from_parent: bool = False) -> str | None:
        """Move the alias decided for `version` (after the ledger recorded it); returns it."""
        ...

    def adopt(self, request_id: str) -> dict | None:
        """A complete version of `request_id` that the ledger never recorded (the server stopped just after)."""
        ...


def resolve_request(fed: Federation, withdrawals: Withdrawals, request: WithdrawalRequest) -> tuple[int, str]:
    """(rows the request forgets, their digest), asked of the holding sites before anything is written.

    Raises WithdrawalAborted when a site refuses it (e.g. record ids it does not hold) or it forgets nothing.
    """
    n_forget, forget_digest = fed.count_forgotten(with_request(withdrawals, request), request)
    if n_forget == 0:
        raise WithdrawalAborted("the request forgets no row that is not already forgotten")
    return n_forget, forget_digest


def process_withdrawal(fed: Federation, model: nn.Module, withdrawals: Withdrawals, request: WithdrawalRequest,
                       trained_rounds: int, logs: list[RoundLog], initial: nn.Module,
                       resolved: tuple[int, str] | None = None) -> tuple[WithdrawalOutcome, Withdrawals]:
    """Unlearn one request from `model`; returns the outcome and the withdrawals including it.

    `initial` is the run's starting model: "retrain from scratch" starts from the same weights.
    `resolved`: the request's (row count, digest) when `resolve_request` already asked the sites.
    """
    cfg = fed.cfg
    after_w = with_request(withdrawals, request)
    method = get_method(cfg.method)
    notes: list[str] = []
    n_forget, forget_digest = resolved or resolve_request(fed, withdrawals, request)
    fresh = lambda: from_arrays(initial, to_arrays(initial))

    t1 = time.perf_counter()
    fed.monitor_seconds, fed.monitor_bytes = 0.0, 0
    bytes0 = fed.bytes_sent
    after, n_unlearn = fed.unlearn(model, after_w, request, logs, notes, initial=fresh(), trained_rounds=trained_rounds)
    monitor_s = fed.monitor_seconds
    unlearn_s = time.perf_counter() - t1 - monitor_s
    unlearn_bytes = fed.bytes_sent - bytes0 - fed.monitor_bytes

    retrain, retrain_s, retrain_bytes = None, None, None
    if cfg.reference:
        if method.retrains:
            retrain, retrain_s, retrain_bytes = after, unlearn_s, unlearn_bytes
        else:
            t2 = time.perf_counter()
            bytes1 = fed.bytes_sent
            retrain = fed.train_rounds(fresh(), trained_rounds, after_w, "retrain", logs, strategy=fed.new_strategy())
            retrain_s = time.perf_counter() - t2
            retrain_bytes = fed.bytes_sent - bytes1

    out = WithdrawalOutcome(request=request, before=model, after=after, retrain=retrain,
                            n_forget=n_forget, forget_digest=forget_digest, trained_rounds=trained_rounds, monitor_seconds=monitor_s,
                            rounds=list(logs), unlearn_seconds=unlearn_s, retrain_seconds=retrain_s,
                            unlearn_rounds=n_unlearn, notes=notes, unlearn_bytes=unlearn_bytes, retrain_bytes=retrain_bytes)
    if not method.retrains:
        out.unchanged = unchanged_reason(model, after, n_unlearn, notes)
    statistic = getattr(method.make_config(**cfg.method_config), "statistic", "prediction")
    fed.current = after_w
    audited = {name: m for name, m in (("before", model), ("after", after), ("retrain", retrain))
               if m is not None and not (name == "retrain" and m is after)}
    met = fed.audited_metrics(audited, after_w, request.request_id)  # one evaluation message for all models
    for name, m in audited.items():
        out.retain_acc[name], out.forget_acc[name] = met[name]["retain_acc"], met[name]["forget_acc"]
        # federated (no server-side test split): the sites' pooled holdouts are the test data
        out.test_acc[name] = met[name]["holdout_acc"] if fed.evaluate_fn is None and fed.test is None else fed.server_eval(m)[0]
    # One audit message for all models: the site trains its RMIA references once, for all of them.
    out.audits = fed.audit(audited, after_w, request, statistic, reference="retrain" if "retrain" in audited else None)
    if retrain is after and retrain is not None:  # a retraining method: the released model is the reference
        out.audits["retrain"] = out.audits["after"]
        out.test_acc["retrain"], out.retain_acc["retrain"], out.forget_acc["retrain"] = (
            out.test_acc["after"], out.retain_acc["after"], out.forget_acc["after"])
    out.exposure = fed.exposure(model, after, after_w)
    gone = fully_withdrawn(after_w)
    out.accounting = fed.accounting(c for c in range(cfg.num_clients) if c not in gone)
    out.clients_after = [c for c in range(cfg.num_clients) if c not in gone]
    out.withdrawn_clients = sorted(after_w)
    out.request_ids = sorted({w.request_id for v in after_w.values() for w in v})
    if fed.history is not None:  # a site that left whole: its stored training updates go with it
        left = fully_withdrawn(after_w) & set(request.client_ids)
        freed = fed.history.drop_nodes(fed.node_of[c] for c in left)
        if freed:
            notes.append(f"erased {freed / 1e6:.2f} MB of training updates the server had stored for site(s) {sorted(left)}")
    return out, after_w


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """True when every tensor of the two state dicts is equal, bit for bit."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def unchanged_reason(before: nn.Module, after: nn.Module, surviving_rounds: int, notes: list[str]) -> str | None:
    """Why `after` is not a change of `before`: no unlearning round survived, or equal weights; None if it changed."""
    if surviving_rounds == 0:
        why = next((n for n in reversed(notes) if "rolled back" in n), None)
        return "no unlearning round survived" + (f": {why}" if why else "")
    if same_weights(before, after):
        return f"{surviving_rounds} unlearning round(s) ran, but the weights equal the parent's"
    return None


def _precheck(fed: Federation, withdrawals: Withdrawals, request: WithdrawalRequest) -> str | None:
    """Why `request` cannot be applied at all (unknown sites, nobody left), or None."""
    bad = [c for c in request.client_ids if c not in fed.node_of]
    if bad:
        return f"rejected: unknown client ids {bad}"
    if set(request.client_ids) <= fully_withdrawn(withdrawals):
        return f"rejected: site(s) {list(request.client_ids)} already withdrew all their data; nothing is left to forget"
    if fully_withdrawn(with_request(withdrawals, request)) >= set(fed.node_of):
        return "rejected: it would leave no client with data"
    return None


def run_federation(grid: Grid, cfg: UnlearningSettings, recorder: Recorder, model: nn.Module,
                   strategy: WithdrawalFilter | None = None, progress: Progress | None = None,
                   test: Split | None = None, evaluate_fn: EvaluateFn | None = None,
                   timeout: float = 600) -> tuple[nn.Module, list[WithdrawalOutcome], list[RoundLog]]:
    """Train `model` (its weights are the initial ones) for `cfg.rounds` rounds, applying every
    withdrawal as it falls due; the Recorder writes versions and reports, the ledger every state.

    Requests come from the plan (`cfg.withdrawals`) and from the request folder; each is
    `received` in the ledger once (a repeated id is not applied again) and taken in the order received.
    A request left `received` or `running` by an interrupted server is taken first, and one already
    `done` for this model is not trained into it again (its withdrawal holds from the first round).
    Returns the final model, the outcome of each applied withdrawal, and the training rounds' log.
    """
    import uuid

    from unlearn_fl.ledger import Ledger

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)  # Flower's server-side DP draws its noise from numpy's global generator
    if cfg.ledger is None:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)  # the default ledger may live in `out`
    ledger = Ledger(cfg.ledger_url())
    removed = recorder.recover()
    for request, _ in ledger.requests(cfg.model_name, ("running",)):
        done = recorder.adopt(request.request_id)  # finished just before the server stopped: record it, never redo it
        if done is not None:
            entry = ledger.append(request.request_id, cfg.model_name, "done", done)
            recorder.anchor(done["version"], entry.seq, entry.hash)
    for e in ledger.entries(model_name=cfg.model_name):
        if e.state == "done" and e.body.get("version"):
            recorder.release(e.body["version"], only_from_parent=True)  # stopped between recording and the alias
    fed = Federation(grid, cfg, strategy, progress, model=model, test=test, evaluate_fn=evaluate_fn, timeout=timeout)
    fed.discover()
    if cfg.standardize_inputs:
        fed.fit_scaler()
    recorder.start(fed)
    queue = RequestQueue(cfg.requests_dir) if cfg.requests_dir else None
    plans = cfg.schedule()
    run_token = cfg.plan_salt or uuid.uuid4().hex[:12]  # planned withdrawals: this run's own requests, not an earlier run's
    initial = from_arrays(model, to_arrays(model))
    withdrawals: Withdrawals = {}
    for earlier, _ in ledger.requests(cfg.model_name, ("done", "erased"), origin="submitted"):
        if all(c in fed.node_of for c in earlier.client_ids):  # withdrawn before: never trained into this model again
            withdrawals = with_request(withdrawals, earlier)
    fed.current = withdrawals
    outcomes: list[WithdrawalOutcome] = []
    logs: list[RoundLog] = []
    retained = lambda: [c for c in range(cfg.num_clients) if c not in fully_withdrawn(withdrawals)]
    dirty = True  # the model has changed since it was last recorded

    def settle(request: WithdrawalRequest, state: str, body: dict, version: str | None = None) -> None:
        entry = ledger.append(request.request_id, cfg.model_name, state, body)
        if queue is not None and queue.status(request.request_id) == "pending":  # a planned request has no file
            if state == "done":
                queue.mark_applied(request, version)
            else:
                queue.mark_failed(request, body.get("reason", ""))
        if version is not None:
            recorder.anchor(version, entry.seq, entry.hash)

    for r in range(1, cfg.rounds + 1):
        model = fed.train_rounds(model, 1, withdrawals, "train", logs, first=r)
        dirty = True
        if cfg.checkpoint_every and r % cfg.checkpoint_every == 0 and r < cfg.rounds:
            recorder.trained(model, retained(), withdrawals, [x for x in logs if x.phase == "train"])
            dirty = False
        for i, p in enumerate(plans):
            if (p.at_round or cfg.rounds) == r:
                ledger.receive(WithdrawalRequest(client_ids=p.client_ids, fraction=p.fraction, reason=p.reason,
                                                 records=p.records, salt=f"run={run_token};plan={i}",
                                                 rows_key=f"seed={cfg.seed};plan={i}"),
                               cfg.model_name, origin="planned")
        for request in (queue.poll() if queue is not None else []):  # (a malformed file: received and aborted below)
            _, new = ledger.receive(request, cfg.model_name, origin="submitted")
            state = ledger.state(request.request_id)
            if not new and state in ("done", "erased", "failed", "aborted"):
                log.warning("withdrawal %s was already %s; ignoring the duplicate", request.request_id, state)
                if state in ("done", "erased"):
                    queue.mark_applied(request, None)
                else:
                    queue.mark_failed(request, state)
        for name, why in (queue.rejected if queue is not None else []):
            rid = "invalid-" + hashlib.sha256(name.encode()).hexdigest()[:12]
            if ledger.state(rid) is None:  # the file's name, hashed: it may carry anything
                ledger.append(rid, cfg.model_name, "received", {"invalid": True, "origin": "submitted"})
                ledger.append(rid, cfg.model_name, "aborted", {"reason": why})
                log.warning("withdrawal request %s refused: %s", rid, why)
        for request, state in ledger.requests(cfg.model_name, ("received", "running")):
            attempt = sum(e.state == "running" for e in ledger.entries(request.request_id)) + 1
            reason = _precheck(fed, withdrawals, request)
            if reason is not None:
                recorder.aborted(request, reason)
                settle(request, "aborted", {"reason": reason})
                continue
            try:
                resolved = resolve_request(fed, withdrawals, request)  # a refused request writes no version at all
            except WithdrawalAborted as e:
                fed.current = withdrawals
                recorder.aborted(request, str(e))
                settle(request, "aborted", {"reason": str(e)})
                continue
            ledger.append(request.request_id, cfg.model_name, "running",
                          {"attempt": attempt, "round": r, "n_forget": resolved[0], "forget_digest": resolved[1],
                           **({"retry_after": "the server stopped during the previous attempt",
                               "removed_incomplete_versions": removed} if state == "running" else {})})
            try:
                if dirty:
                    recorder.trained(model, retained(), withdrawals, [x for x in logs if x.phase == "train"])
                    dirty = False
                outcome, new_w = process_withdrawal(fed, model, withdrawals, request, r, logs, initial, resolved)
                version = recorder.unlearned(outcome)
            except WithdrawalAborted as e:
                fed.current = withdrawals
                recorder.aborted(request, str(e))
                settle(request, "aborted", {"reason": str(e)})
                continue
            except Exception as e:
                settle(request, "failed", {"reason": f"{e.__class__.__name__}: {e}"[:500]})
                raise
            settle(request, "done", {"version": version, "parent_version": outcome.parent_version, "verdict": outcome.verdict,
                                     "contains_withdrawn": outcome.contains_withdrawn, "report_digest": outcome.report_digest,
                                     "n_forget": outcome.n_forget, "forget_digest": outcome.forget_digest,
                                     "release": outcome.release}, version)
            if version is not None:
                recorder.release(version)  # only now: a version the ledger has not recorded is never served
            if cfg.erase_superseded != "keep" and outcome.contains_withdrawn == "false":
                erased = recorder.erase_superseded(outcome, cfg.erase_superseded)
                if any("kept" not in e for e in erased):  # the entry records an erasure that happened
                    entry = ledger.append(request.request_id, cfg.model_name, "erased",
                                          {"policy": cfg.erase_superseded, "versions": erased})
                    recorder.anchor(version, entry.seq, entry.hash, key="ledger_erasure_entry")
            elif cfg.erase_superseded != "keep":
                from flwr.common.logger import log as flwr_log  # the line `flwr run --stream` shows

                flwr_log(logging.WARNING, "unlearn-fl: erasure policy %s not applied after %s: v%s's forgetting is not "
                         "established (verdict %s); earlier versions stay, tagged contains_withdrawn=true",
                         cfg.erase_superseded, request.request_id, version, outcome.verdict)
            outcomes.append(outcome)
            model, withdrawals = outcome.after, new_w
            fed.current = withdrawals
            logs = [x for x in logs if x.phase == "train"]  # the next version's history: all training rounds
    if dirty:
        # Training went on after the last withdrawal (or there was none): record the final model too.
        recorder.trained(model, retained(), withdrawals, [x for x in logs if x.phase == "train"])
    recorder.finish(fed)
    return model, outcomes, logs
