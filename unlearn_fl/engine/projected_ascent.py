"""Halimi et al. 2022's server procedure ("Federated Unlearning: How to Efficiently Erase a Client in FL?";
the math and the leaving client's step: methods/projected_ascent.py).

1. The reference model w_ref = Σ_i n_i w_i / Σ_i n_i, the example-weighted mean of the *other* clients'
   models of the last training round (i: sites neither withdrawn whole earlier nor named in this request).
   The server keeps the last round's client updates for it (`UpdateHistory.last`, its storage cost). When
   nothing was stored (another method was configured), the server asks: the other sites train one ordinary
   local round from the current global model and w_ref is the weighted mean of what they return; that round
   is counted as an unlearning round.
2. The radius δ (the config's, or δ² = `radius_fraction` × the mean squared distance from w_ref to
   `random_models` freshly initialised models, as the authors' notebook does) is computed here.
3. Each withdrawing site runs the projected gradient ascent on its forgotten rows (`train.unlearn`, method
   `pga`, step `ascent`), from w_ref (or the global model, `start="global"`, when w_ref travels beside it as
   `reference-arrays`); with several withdrawing sites their results are averaged, weighted by forgotten rows.
4. `post_rounds` ordinary FL rounds of the fresh strategy on the retained rows (the withdrawing sites keep
   training on rows they still hold after a partial withdrawal), counted as unlearning rounds.

No round is rolled back on a test-accuracy drop: the ascent lowers accuracy by design and the rounds after
it restore it.
"""

from __future__ import annotations

import time

import numpy as np
from flwr.app import RecordDict
from torch import nn

from unlearn_fl.engine.federation import Federation, FederationError, WithdrawalAborted, to_arrays
from unlearn_fl.engine.federaser import with_weights
from unlearn_fl.engine.protocol import ARRAYS, CONFIG, METRICS, REFERENCE_ARRAYS, TRAIN, UNLEARN, Withdrawals, fully_withdrawn
from unlearn_fl.engine.strategy import WithdrawalFilter
from unlearn_fl.methods.projected_ascent import ProjectedAscentConfig, random_model_radius
from unlearn_fl.report.schema import RoundLog
from unlearn_fl.requests import WithdrawalRequest


def weighted_mean(models: list[dict[str, np.ndarray]], weights: list[float]) -> dict[str, np.ndarray]:
    """Σ_i weights_i · models_i / Σ_i weights_i, key by key (float32 out). Raises ValueError on no weight."""
    total = float(sum(weights))
    if not models or total <= 0:
        raise ValueError("a weighted mean needs at least one model with positive weight")
    return {k: (sum(np.asarray(m[k], dtype=np.float64) * wt for m, wt in zip(models, weights)) / total).astype(np.float32)
            for k in models[0]}


def reference_model(fed: Federation, model: nn.Module, withdrawals: Withdrawals, request: WithdrawalRequest,
                    notes: list[str]) -> tuple[nn.Module, int]:
    """(w_ref, rounds it cost: 0 from the stored last round, 1 when the other sites were asked to train one round)."""
    gone = fully_withdrawn(withdrawals) | set(request.client_ids)
    others = sorted(fed.node_of[k] for k in fed.node_of if k not in gone)
    if not others:
        raise WithdrawalAborted("pga needs at least one other site for its reference model, and none is left")
    last = fed.history.last if fed.history is not None else None
    stored = [n for n in others if last is not None and n in last.updates]
    if stored:
        w_ref = weighted_mean([last.client_model(n) for n in stored], [last.examples[n] for n in stored])
        notes.append(f"pga: w_ref is the weighted mean of {len(stored)} other site(s)' models of training round "
                     f"{last.index}, stored by the server")
        return with_weights(model, w_ref), 0
    c = fed.cfg
    fed._round += 1
    config = fed._config(withdrawals, request.request_id, phase="train", seed=c.seed * 1000 + fed._round)
    replies = fed.exchange(others, TRAIN, RecordDict({ARRAYS: to_arrays(model), CONFIG: config}),
                           what="pga's reference model (one local round of the other sites)")
    if not replies:
        raise WithdrawalAborted("pga: no other site answered for the reference model")
    fed._note_dp(replies)
    w_ref = weighted_mean([_floats(r.content[ARRAYS]) for r in replies],
                          [int(r.content[METRICS]["num-examples"]) for r in replies])
    notes.append(f"pga: no training round was stored, so {len(replies)} other site(s) trained one local round from the "
                 "current model and w_ref is the weighted mean of their models (one extra round)")
    return with_weights(model, w_ref), 1


def _floats(arrays) -> dict[str, np.ndarray]:
    """The floating-point tensors of a reply's ArrayRecord (key -> array); integer buffers are not averaged."""
    out = {k: a.numpy() for k, a in arrays.items()}
    return {k: v for k, v in out.items() if np.issubdtype(v.dtype, np.floating)}


def projected_ascent_unlearn(fed: Federation, model: nn.Module, withdrawals: Withdrawals, request: WithdrawalRequest,
                             logs: list[RoundLog], notes: list[str], cfg: ProjectedAscentConfig,
                             strategy: WithdrawalFilter) -> tuple[nn.Module, int]:
    """Halimi et al.'s unlearning (module docstring); returns (the unlearned model, its rounds: the ascent, the
    post rounds, and one more when w_ref had to be asked for). Raises WithdrawalAborted when a withdrawing
    site cannot run its ascent after `max_retries` retries, or no round after it produces an update."""
    c = fed.cfg
    ref, rounds = reference_model(fed, model, withdrawals, request, notes)
    radius = cfg.radius if cfg.radius is not None else random_model_radius(ref, cfg.radius_fraction, cfg.random_models, c.seed)
    run_cfg = cfg.model_copy(update={"radius": radius})
    start = ref if cfg.start == "reference" else model
    holders = fed._nodes(request.client_ids)
    attempts = 0
    while True:
        fed._round += 1
        config = fed._config(withdrawals, request.request_id, phase="unlearn", seed=c.seed * 1000 + fed._round,
                             method="pga", step="ascent", **{"method-config": run_cfg.model_dump_json(exclude={"seed"})})
        content = RecordDict({ARRAYS: to_arrays(start), CONFIG: config})
        if cfg.start != "reference":
            content[REFERENCE_ARRAYS] = to_arrays(ref)
        replies = fed.exchange_all(holders, UNLEARN, content)
        problems = fed.problems(holders, replies)
        ok = [m for m in replies if not m.has_error()]
        if not problems:
            break
        attempts += 1
        if attempts > c.max_retries:
            raise WithdrawalAborted(f"pga ascent: a withdrawing site failed ({'; '.join(problems)}); aborted after "
                                    f"{attempts} attempts, previous version kept")
        notes.append(f"pga ascent: {'; '.join(problems)}; retrying")
    rounds += 1
    weights = [int(m.content[METRICS]["forget-n"]) for m in ok]
    if sum(weights) == 0:
        raise WithdrawalAborted("pga: the withdrawing sites hold no forgotten row to ascend on")
    after = with_weights(model, weighted_mean([_floats(m.content[ARRAYS]) for m in ok], weights))
    fed._note_dp(ok)
    fed.central_rounds += 1
    acc, loss = fed.server_eval(after)
    t_mon, b_mon = time.perf_counter(), fed.bytes_sent  # forget-set monitoring, as in `Federation.unlearn_rounds`
    fm = fed.client_metrics(after, withdrawals, request.request_id, clients=request.client_ids)
    fed.monitor_seconds += time.perf_counter() - t_mon
    fed.monitor_bytes += fed.bytes_sent - b_mon
    logs.append(RoundLog(phase="unlearn", round=rounds, test_acc=acc, test_loss=loss, n_clients=len(ok),
                         forget_acc=fm["forget_acc"], forget_loss=fm["forget_loss"]))
    steps = [int(m.content[METRICS]["steps"]) for m in ok]
    stopped = [bool(int(m.content[METRICS]["target-reached"])) for m in ok]
    notes.append(f"pga: projected ascent in the ball of radius {radius:.4g} around w_ref, {steps} step(s) at the withdrawing "
                 f"site(s), {'stopped at the loss threshold' if all(stopped) else 'ran its epochs (loss threshold not reached)'}; "
                 f"then {cfg.post_rounds} FL round(s) on the retained rows")
    if cfg.post_rounds:
        try:
            after = fed.train_rounds(after, cfg.post_rounds, withdrawals, "unlearn", logs, first=rounds + 1, strategy=strategy)
        except FederationError as e:
            raise WithdrawalAborted(f"pga: {e}") from None
    return after, rounds + cfg.post_rounds
