"""A client's side of the protocol, on its own data only (no Flower types here).

`engine/client.py` (the handler any ClientApp registers) decodes Flower messages and
calls these functions on the site's retained rows and forget set; they run the local
step on any `nn.Module` classifier (logits out) and return aggregate metrics only.
"""

from __future__ import annotations

import numpy as np
import torch

from torch import nn

from unlearn_fl.data import Split
from unlearn_fl.methods import get_method
from unlearn_fl.methods.criterion import mean_statistic
from unlearn_fl.models import Criterion, LossFn, as_loss_fn, count_forward_rows, evaluate, per_example_loss, train_epochs

torch.set_num_threads(1)


def local_train(model: nn.Module, retained: Split, epochs: int, lr: float, batch_size: int, seed: int,
                dp_noise: float = 0.0, dp_clip: float = 1.0, proximal_mu: float = 0.0,
                criterion: Criterion | None = None) -> dict:
    """Local epochs on retained rows; with dp_noise > 0, DP-SGD through Opacus (Poisson sampling).

    With DP the reply carries the steps taken and the sample rate, so the server can account
    every client's privacy loss exactly (accounting/accountant.py). `examples-processed` is the rows
    passed forward and backward: epochs × retained rows (under DP-SGD's Poisson sampling, its expectation).
    """
    base: LossFn = as_loss_fn(criterion)
    if dp_noise <= 0:
        loss_fn = base
        if proximal_mu > 0:  # FedProx (Li et al. 2020): + μ/2 ‖w − w_global‖²
            anchor = [p.detach().clone() for p in model.parameters()]

            def loss_fn(m, x, y):
                prox = sum(((p - a) ** 2).sum() for p, a in zip(m.parameters(), anchor))
                return base(m, x, y) + 0.5 * proximal_mu * prox

        loss = train_epochs(model, retained, epochs, lr, batch_size, seed=seed, loss_fn=loss_fn)
        return {"num-examples": len(retained), "train-loss": loss, "examples-processed": epochs * len(retained)}
    from torch.utils.data import DataLoader, TensorDataset

    from unlearn_fl.accounting.dp_sgd import dp_train_epochs, make_dp_sgd
    from unlearn_fl.models import tensors

    X, y = tensors(retained)
    loader = DataLoader(TensorDataset(X, y), batch_size=min(batch_size, len(retained)))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    dp_model, dp_opt, dp_loader, engine = make_dp_sgd(model, opt, loader, dp_noise, dp_clip, seed=seed)
    history = dp_train_epochs(dp_model, dp_opt, dp_loader, epochs, criterion=criterion)
    steps = int(sum(n for _, _, n in engine.accountant.history))
    return {"num-examples": len(retained), "train-loss": float(history[-1]) if history else float("nan"),
            "dp-steps": steps, "dp-sample-rate": 1.0 / len(dp_loader), "examples-processed": epochs * len(retained)}


def local_unlearn(
    model: nn.Module,
    holdout: Split,
    retained: Split,
    forgotten: Split,
    method_name: str,
    method_config: dict,
    reference_mean: list[float] | None,
    seed: int,
    criterion: Criterion | None = None,
    reference_model: nn.Module | None = None,
    step: str = "",
) -> tuple[nn.Module, dict]:
    """The method's local unlearning step (docs/method.md §2), `Method.run_local`.

    A forget-holder runs the forget term on its forgotten rows (plus cross-entropy on any rows
    it keeps); a retainer runs the retain term (cross-entropy) only; methods with their own local
    step (SCRUB, FedEraser's calibration, Halimi's ascent) run it, with the server's `reference_model`
    (teacher, or w_ref) and `step`. The example count sent for weighting is the rows the step used
    (or the method's own weight); `examples-processed` the rows passed forward and backward; `examples-forward` the
    rows passed forward only (`models.count_forward_rows`: reference statistics, stopping checks, a teacher).
    """
    method = get_method(method_name)
    cfg = method.make_config(**{**method_config, "seed": seed})
    ref = None if reference_mean is None else np.asarray(reference_mean, dtype=np.float32)
    with count_forward_rows() as forward:
        result = method.run_local(model, retained, forgotten, holdout, cfg, reference_mean=ref, criterion=criterion,
                                  reference_model=reference_model, step=step)
    weight = result.weight if result.weight is not None else len(retained) + (len(forgotten) if method.uses_forget else 0)
    # Same keys from every client: Flower's aggregation requires it.
    metrics = {
        "num-examples": max(1, weight),
        "examples-processed": result.examples_processed,
        "examples-forward": forward.rows,
        "steps": result.steps,
        "forget-n": len(forgotten),
        # 1 when this client's forget set looks unseen by its held-out test (not when a utility guard
        # ended the local step early: the next round's retained steps may allow more): no further rounds needed.
        "target-reached": int(len(forgotten) > 0 and method.uses_forget and result.target_reached),
    }
    return result.model, metrics


def local_stats(model: nn.Module, retained: Split, statistic: str) -> dict:
    """Mean output statistic and count over retained rows: an aggregate, not data."""
    if len(retained) == 0:
        return {"count": 0}
    return {"count": len(retained), "mean": mean_statistic(model, retained, statistic).tolist()}


def local_evaluate(model: nn.Module, retained: Split, forgotten: Split, holdout: Split | None = None) -> dict:
    """Correct counts and summed losses, so the server can pool exact accuracies.

    The holdout figures serve as the federation's test figures when the server holds no data.
    """
    out: dict = {"num-examples": len(retained)}
    groups = [("retain", retained), ("forget", forgotten)] + ([("holdout", holdout)] if holdout is not None else [])
    for name, split in groups:
        if len(split):
            acc, loss = evaluate(model, split)
            out[f"{name}-correct"] = acc * len(split)
            out[f"{name}-loss-sum"] = loss * len(split)
        out[f"{name}-n"] = len(split)
    return out


def local_losses(model: nn.Module, holdout: Split, forgotten: Split) -> tuple[np.ndarray, np.ndarray]:
    """Per-example losses of the forgotten rows (members) and the local holdout (non-members).

    They stay on the client: the audit is computed here and only its summary is returned.
    """
    return per_example_loss(model, forgotten), per_example_loss(model, holdout)


HIST_BINS = 40

MIN_EPSILON_ROWS = 2
"""Fewest members (and non-members) an empirical ε needs: one per half of its split."""


def loss_histogram(forget_losses: np.ndarray, holdout_losses: np.ndarray, max_loss: float) -> dict[str, list[float]]:
    """Shares of per-example losses on shared log-spaced edges (an aggregate, not rows).

    The first bin holds every loss below 1e-4 (confidently right), the last everything up to `max_loss`.
    """
    edges = np.concatenate([[0.0], np.geomspace(1e-4, max_loss, HIST_BINS)])
    out = {"edges": edges.tolist()}
    for name, v in (("forget", forget_losses), ("holdout", holdout_losses)):
        h, _ = np.histogram(np.clip(v, 0, max_loss), bins=edges)
        out[name] = (h / max(1, len(v))).tolist()
    return out


def label_matched(losses: np.ndarray, labels: np.ndarray, target_labels: np.ndarray, seed: int) -> np.ndarray:
    """The largest subsample of (losses, labels) whose class mix matches `target_labels`.

    Without it a non-iid forget set would be told apart from test data by its label mix,
    not by membership (seen here: AUC 0.37 for a model that never saw the client).
    """
    if len(losses) == 0 or len(target_labels) == 0:
        return losses[:0]
    classes, counts = np.unique(target_labels, return_counts=True)
    p = counts / counts.sum()
    avail = np.array([(labels == c).sum() for c in classes])
    n_total = int(np.floor(np.min(np.where(p > 0, avail / p, np.inf))))
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.where(labels == c)[0], size=int(np.floor(pc * n_total)), replace=False) for c, pc in zip(classes, p)]
    idx = np.concatenate(picked) if picked else np.zeros(0, dtype=int)
    return losses[idx]


def local_audit(
    model: nn.Module,
    holdout: Split,
    forgotten: Split,
    extra_nonmember_losses: np.ndarray,
    extra_nonmember_labels: np.ndarray,
    retain_mean: list[float] | None,
    n_retain: int,
    statistic: str,
    delta: float,
    confidence: float,
    seed: int,
    max_loss: float = 20.0,
    reference: nn.Module | None = None,
    site_refs: tuple[np.ndarray, np.ndarray, dict] | None = None,
):
    """Membership audits of this client's forgotten rows against never-seen data, computed here.

    Loss threshold: members are the forgotten rows; non-members the client's local holdout plus
    the server's test losses (server data, sent in the message) subsampled to the forget set's
    label mix. RMIA (`unlearn_fl.audit.rmia`), when a `reference` model is given (the
    retrain-from-scratch model): members are the forgotten rows, the population and non-members
    the local holdout, each row's likelihood ratio taken against the references' probability:
    the retrained model, plus `site_refs` (`site_references`) when the site trained some; online
    when those saw half the audited rows.
    Returns a `ModelAudit` summary only: AUCs, TPR at FPR, ROC points, ε, histograms.
    """
    from unlearn_fl.audit.epsilon import empirical_epsilon
    from unlearn_fl.audit.mia import loss_threshold_attack
    from unlearn_fl.audit.results import ModelAudit
    from unlearn_fl.audit.rmia import reference_probability, rmia_attack, rmia_scores, true_label_probs
    from unlearn_fl.methods.criterion import marginal_mi_from_means

    members, holdout_losses = local_losses(model, holdout, forgotten)
    extra = label_matched(np.asarray(extra_nonmember_losses, dtype=np.float64),
                          np.asarray(extra_nonmember_labels, dtype=np.int64), forgotten.y, seed)
    nonmembers = np.concatenate([holdout_losses, extra])
    crit = None
    if retain_mean is not None and n_retain > 0 and len(forgotten) > 0:
        qf = mean_statistic(model, forgotten, statistic)
        crit = marginal_mi_from_means(qf, len(forgotten), np.asarray(retain_mean), n_retain)
    if len(members) < 1 or len(nonmembers) < 1:
        # Nothing to compare: the verdict says the forget set (or holdout) is too small to audit.
        return ModelAudit(criterion_mi=crit, forget_loss_mean=float(members.mean()) if len(members) else None,
                          holdout_loss_mean=float(nonmembers.mean()) if len(nonmembers) else None)
    attack = loss_threshold_attack(members, nonmembers)
    run_rmia = reference is not None and len(holdout) >= 2 and len(forgotten) >= 1
    # The empirical ε splits members and non-members in halves (threshold chosen on one, evaluated on the other).
    eps_ok = len(members) >= MIN_EPSILON_ROWS and len(nonmembers) >= MIN_EPSILON_ROWS
    # With RMIA too, each attack's bound is taken at 1 − α/2 (Bonferroni), so their maximum holds at 1 − α.
    each = 1.0 - (1.0 - confidence) / 2.0 if run_rmia else confidence
    eps = empirical_epsilon(-members, -nonmembers, delta=delta, confidence=each, seed=seed).model_copy(
        update={"attack": "loss-threshold"}) if eps_ok else None
    attacks = [attack]
    score_hist = None
    if run_rmia:
        pm, ph = true_label_probs(model, forgotten.X, forgotten.y), true_label_probs(model, holdout.X, holdout.y)
        rm, rh = true_label_probs(reference, forgotten.X, forgotten.y), true_label_probs(reference, holdout.X, holdout.y)
        Rm, Rh, mode = rm[:, None], rh[:, None], "offline"
        if site_refs is not None and site_refs[0].shape[1] > 0:
            Rm, Rh = np.concatenate([Rm, site_refs[0]], axis=1), np.concatenate([Rh, site_refs[1]], axis=1)
            mode = site_refs[2]["mode"]
        attacks.append(rmia_attack(pm, Rm, ph, Rh, mode=mode))
        llr = lambda p, R: np.log(np.maximum(p, 1e-30)) - np.log(reference_probability(R, mode))
        if eps_ok and len(pm) >= MIN_EPSILON_ROWS and len(ph) >= MIN_EPSILON_ROWS:
            rmia_eps = empirical_epsilon(llr(pm, Rm), llr(ph, Rh), delta=delta, confidence=each, seed=seed)
            if rmia_eps.epsilon_lower > eps.epsilon_lower:  # the empirical ε of the strongest attack
                eps = rmia_eps.model_copy(update={"attack": attacks[-1].attack})
        # The per-example scores (share of holdout rows each row dominates) for the report's histogram.
        sm = rmia_scores(pm, Rm, ph, Rh, mode=mode)
        sh = rmia_scores(ph, Rh, ph, Rh, mode=mode, population_index=np.arange(len(ph)))
        edges = np.linspace(0.0, 1.0, 21)
        score_hist = {"edges": edges.tolist(), "forget": (np.histogram(sm, edges)[0] / max(1, len(sm))).tolist(),
                      "holdout": (np.histogram(sh, edges)[0] / max(1, len(sh))).tolist()}
    return ModelAudit(
        attacks=attacks,
        score_histogram=score_hist,
        reference_cost=site_refs[2] if site_refs is not None else None,
        epsilon=eps,
        criterion_mi=crit,
        forget_loss_mean=float(members.mean()),
        holdout_loss_mean=float(nonmembers.mean()),
        loss_histogram=loss_histogram(members, nonmembers, max_loss),
    )


def site_references(reference: nn.Module, retained: Split, forgotten: Split, holdout: Split, k: int, mode: str,
                    epochs: int, lr: float, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """K cheap RMIA reference models trained here, and their probabilities of the audited rows.

    Each starts from the retrained model's weights and trains `epochs` local epochs on this site's
    retained rows; online, also on a random half of the audited rows (forgotten ∪ holdout), so each
    audited row is IN for about half the references (Zarifzadeh et al. 2024; docs/method.md §4).
    The models never leave the site. Returns Pr(x | θ_k) on the forgotten rows (n_f, K) and the
    holdout (n_h, K), and the cost: references, examples processed, seconds. Offline at a site with
    no retained rows (it withdrew all of them) there is nothing to train on: K = 0.
    """
    import copy
    import time

    from unlearn_fl.audit.rmia import true_label_probs

    t0 = time.perf_counter()
    if mode == "offline" and len(retained) == 0:  # a site that withdrew all its rows has nothing to train OUT references on
        k = 0
    audited = Split(np.concatenate([forgotten.X, holdout.X]), np.concatenate([forgotten.y, holdout.y]))
    rng = np.random.default_rng(seed)
    probs, processed = [], 0
    for j in range(k):
        data = retained
        if mode == "online":
            half = np.sort(rng.permutation(len(audited))[: len(audited) // 2])
            data = Split(np.concatenate([retained.X, audited.X[half]]), np.concatenate([retained.y, audited.y[half]]))
        m = copy.deepcopy(reference)
        train_epochs(m, data, epochs, lr, batch_size, seed=seed + 7919 * (j + 1))
        processed += epochs * len(data)
        probs.append(true_label_probs(m, audited.X, audited.y))
    P = np.stack(probs, axis=1) if probs else np.zeros((len(audited), 0))
    cost = {"references": k, "mode": mode, "examples": processed, "seconds": time.perf_counter() - t0}
    return P[: len(forgotten)], P[len(forgotten):], cost


def local_exposure(before: nn.Module, after: nn.Module, retained: Split, holdout: Split, seed: int,
                   max_members: int = 2000) -> dict:
    """A retained site's own membership exposure: its retained rows (members, at most
    `max_members`, drawn with `seed`) against its holdout, loss-threshold AUC on both models.

    Returns counts and the two AUCs only (docs/method.md §4, retained clients' exposure).
    """
    from unlearn_fl.audit.mia import auc

    if len(holdout) == 0 or len(retained) == 0:
        return {"n-members": len(retained), "n-nonmembers": len(holdout)}
    if len(retained) > max_members:
        retained = retained.subset(np.sort(np.random.default_rng(seed).choice(len(retained), max_members, replace=False)))
    out = {"n-members": len(retained), "n-nonmembers": len(holdout)}
    for name, m in (("before", before), ("after", after)):
        out[f"auc-{name}"] = auc(-per_example_loss(m, retained), -per_example_loss(m, holdout))
    return out
