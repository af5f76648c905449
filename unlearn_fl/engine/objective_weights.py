"""Aggregating an unlearning round so the federation optimises the central objective (docs/method.md §2.4).

The unlearning objective is  L(θ) = CE(θ; D_r) + γ·Î(Z; V),  a retained-data loss plus ONE information
term on the forget set. In a round, every retaining client k takes local steps on its CE and returns
θ_k = θ₀ + Δ_k; a forget-holder h takes local steps on γ·Î (plus CE on any rows it keeps) and returns
θ_h = θ₀ + Δ_h. FedAvg returns

    θ₀ + Σ_k (n_k / N) Δ_k + Σ_h (n_h / N) Δ_h,        N = Σ_k n_k + Σ_h n_h,

so the information term's step is scaled by the holders' share of the examples, n_h / N: a whole client
that is 1/5 of the federation effectively unlearns with γ/5, and a 10% withdrawal with far less. That is
not the paper's objective, in which γ does not depend on how many clients there are. Counting the
information term once gives instead

    θ₀ + Σ_k (n_k / N_r) Δ_k + Σ_h (f_h / F) Δ_h,       N_r = Σ_k n_k,  F = Σ_h f_h (forget rows),

the FedAvg of the retained-data steps plus the forget-size-weighted mean of the holders' steps (first order
in the step size, the gradient step of L). `reweight` produces exactly this through the configured Flower
strategy, without changing it: it rescales each reply's update before the strategy averages, so that
FedAvg's own weights n/N turn into the weights above. A holder's step also contains the CE on the rows it
keeps (a partial withdrawal); those rows are counted at the holders' weight, a stated approximation.

Not used under central DP: rescaling updates would change what the server's clipping bounds.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, Message

from unlearn_fl.engine.protocol import ARRAYS, METRICS

__all__ = ["objective_scales", "reweight"]


def objective_scales(n: dict, f: dict, holders: set) -> dict:
    """Per participant, the factor c by which its update Δ is multiplied before FedAvg (module docstring).

    n: participant -> FedAvg weight n (examples it reports, > 0); f: holder -> forget rows f_h (≥ 0);
    holders: the participants that hold forget rows. FedAvg of θ₀ + c·Δ with weights n/N then equals
    θ₀ + Σ_k (n_k/N_r) Δ_k + Σ_h (f_h/F) Δ_h. With no holder or no retainer every c is 1 (FedAvg already
    counts each part once). Raises ValueError for a non-positive n.
    """
    if any(v <= 0 for v in n.values()):
        raise ValueError("every participant's FedAvg weight (num-examples) must be positive")
    keep = [p for p in n if p not in holders]
    hold = [p for p in n if p in holders]
    if not hold or not keep:
        return {p: 1.0 for p in n}
    total, n_r = float(sum(n.values())), float(sum(n[p] for p in keep))
    fh = {p: max(float(f.get(p, 0.0)), 0.0) for p in hold}
    f_total = sum(fh.values())
    if f_total <= 0:  # no forget counts reported: the holders share the term equally
        fh, f_total = {p: 1.0 for p in hold}, float(len(hold))
    return {p: (n[p] / n_r if p not in holders else fh[p] / f_total) * total / n[p] for p in n}


def reweight(replies: Iterable[Message], start: ArrayRecord, holders: set[int]) -> list[Message]:
    """Rescale the replies' updates in place so FedAvg over them gives the objective's step (module docstring).

    replies: successful train replies, each with `ARRAYS` and METRICS["num-examples"] (FedAvg's weight n) and,
    for holders, METRICS["forget-n"] (f_h). start: θ₀, the arrays sent in the round. holders: node ids of the
    forget-holders. Returns the replies.
    """
    replies = list(replies)
    n = {i: float(m.content[METRICS]["num-examples"]) for i, m in enumerate(replies)}
    f = {i: float(m.content[METRICS].get("forget-n", 0)) for i, m in enumerate(replies)}
    held = {i for i, m in enumerate(replies) if m.metadata.src_node_id in holders}
    scales = objective_scales(n, f, held)
    if all(c == 1.0 for c in scales.values()):
        return replies
    base = start.to_torch_state_dict()
    for i, m in enumerate(replies):
        c = scales[i]
        theta = m.content[ARRAYS].to_torch_state_dict()
        m.content[ARRAYS] = ArrayRecord({k: (base[k] + c * (theta[k] - base[k])) if theta[k].is_floating_point() else theta[k]
                                         for k in theta})
    return replies
