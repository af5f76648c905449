"""FedEraser's server procedure (Liu et al., IWQoS 2021; the math and the clients' step: methods/federaser.py).

From the initial global model of the stored history, one calibration round per stored training round
(every Δt-th, `UpdateHistory.rounds`): the retained sites that have an update stored for that round
train briefly from the current calibrated model (`train.unlearn`, method `federaser`); the server
rescales each site's stored update to the length of its calibration update, keeping the stored
direction (`rescale_update`), and applies their example-weighted mean. Sites withdrawn whole (by this
request or an earlier one) take no part and their stored updates are left out; a site with a partial
withdrawal calibrates on its retained rows, with its stored direction (which saw the withdrawn rows).

The rounds are not rolled back on a test-accuracy drop (`max_test_drop` guards the client-side methods);
a round that too few sites answer is retried `max_retries` times, then the withdrawal is aborted.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from flwr.app import RecordDict
from torch import nn

from unlearn_fl.engine.federation import Federation, WithdrawalAborted, to_arrays
from unlearn_fl.engine.protocol import ARRAYS, CONFIG, METRICS, UNLEARN, Withdrawals, fully_withdrawn
from unlearn_fl.methods.federaser import FedEraserConfig, rescale_update
from unlearn_fl.report.schema import RoundLog
from unlearn_fl.requests import WithdrawalRequest


def with_weights(template: nn.Module, arrays: dict[str, np.ndarray]) -> nn.Module:
    """A copy of `template` whose tensors named in `arrays` hold those values (others: the template's)."""
    sd = template.state_dict()
    for k, v in arrays.items():
        sd[k] = torch.from_numpy(np.asarray(v)).to(sd[k].dtype).reshape(sd[k].shape)
    m = copy.deepcopy(template)
    m.load_state_dict(sd)
    return m


def federaser_unlearn(fed: Federation, model: nn.Module, withdrawals: Withdrawals, request: WithdrawalRequest,
                      logs: list[RoundLog], notes: list[str], cfg: FedEraserConfig) -> tuple[nn.Module, int]:
    """FedEraser's calibration rounds over `fed.history`; returns (the unlearned model, calibration rounds run).

    model: the trained model (its architecture; FedEraser rebuilds the weights from the stored initial
    global model). withdrawals: every withdrawal including `request`. Raises WithdrawalAborted when no
    history was stored, when no retained site has a stored update, or when a round fails too often.
    """
    hist = fed.history
    if hist is None or not hist.rounds:
        raise WithdrawalAborted("federaser replays the client updates the server stored during training, and none were "
                                "stored: set store_history (run config store-history=true), or run with method federaser")
    c = fed.cfg
    gone = fully_withdrawn(withdrawals)
    keep = {fed.node_of[k] for k in fed.node_of if k not in gone}
    client_of = {n: k for k, n in fed.node_of.items()}
    w = {k: v.copy() for k, v in hist.rounds[0].global_arrays.items()}
    current = with_weights(model, w)
    total = sum(1 for rec in hist.rounds if keep & set(rec.updates))
    if total == 0:
        raise WithdrawalAborted("federaser: no retained site has a stored update to replay")
    done = 0
    for rec in hist.rounds:
        nodes = sorted(keep & set(rec.updates))
        if not nodes:
            continue
        done += 1
        attempts = 0
        while True:
            fed._round += 1
            config = fed._config(withdrawals, request.request_id, phase="unlearn", seed=c.seed * 1000 + fed._round,
                                 method="federaser", step="calibrate",
                                 **{"method-config": cfg.model_dump_json(exclude={"seed"})})
            replies = fed.exchange_all(nodes, UNLEARN, RecordDict({ARRAYS: to_arrays(current), CONFIG: config}))
            ok = [m for m in replies if not m.has_error() and m.metadata.src_node_id in rec.updates]
            if ok and len(ok) >= c.min_unlearn_fraction * len(nodes):
                break
            attempts += 1
            said = "; ".join(fed.problems(nodes, replies)) or "no usable reply"
            if attempts > c.max_retries:
                raise WithdrawalAborted(f"federaser calibration round {done}: only {len(ok)} of {len(nodes)} sites answered "
                                        f"({said}); aborted after {attempts} attempts, previous version kept")
            notes.append(f"federaser calibration round {done}: {said}; retrying")
        problems = fed.problems(nodes, replies)
        if problems:
            notes.append(f"federaser calibration round {done}: " + "; ".join(problems))
        fed._note_dp(ok)
        fed.central_rounds += 1
        total_n = 0
        step = {k: np.zeros_like(v, dtype=np.float64) for k, v in w.items()}
        for m in ok:
            node = m.metadata.src_node_id
            returned = m.content[ARRAYS]
            u_cal = {k: returned[k].numpy().astype(np.float64) - w[k] for k in w}
            u_new = rescale_update(rec.updates[node], u_cal, cfg.norm)
            n = int(m.content[METRICS]["num-examples"])
            total_n += n
            for k in step:
                step[k] += n * u_new[k]
        w = {k: (w[k] + step[k] / total_n).astype(np.float32) for k in w}
        current = with_weights(model, w)
        acc, loss = fed.server_eval(current)
        logs.append(RoundLog(phase="unlearn", round=done, test_acc=acc, test_loss=loss, n_clients=len(ok)))
        fed.progress("unlearn", done, total)
    left_out = sorted(client_of[n] for n in {n for rec in hist.rounds for n in rec.updates} - keep if n in client_of)
    notes.append(f"federaser: {done} calibration round(s) from the initial model over the stored history "
                 f"({hist.describe('every')})"
                 + (f"; the stored updates of site(s) {left_out} left out" if left_out else "")
                 + ("; a partial withdrawal keeps its site's stored update directions, which saw the withdrawn rows "
                    "(FedEraser removes whole clients)" if any(k not in gone for k in request.client_ids) else ""))
    return current, done

