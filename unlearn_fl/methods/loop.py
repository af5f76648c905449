"""The unlearning loop shared by central runs and federated clients.

Each step takes a retain batch (cross-entropy: keep utility) and a forget batch
(the method's forget term), as in the authors' code (docs/method.md §2: B_r = 64,
B_f = 16, Adam). Early stopping on a held-out signal avoids the over-forgetting trap
of docs/method.md §2: stop as soon as the forget set "looks unseen" (its mean loss has risen to the
loss of never-trained holdout data of the same classes), or where that
holdout accuracy starts to fall (the authors' rule: the retrained model lies where
test accuracy starts to fall), and roll back one check if overall holdout accuracy
falls by more than `max_holdout_drop`.

The two accuracy guards compare accuracies on a site's holdout, often a few dozen rows. A drop smaller
than that holdout can resolve (`accuracy_resolution`) is noise, not harm: with 58 rows one row is 1.7
points, so a 3-point guard fired on two flipped rows and ended a site's unlearning at its first steps.
Each guard's threshold is the larger of its setting and that resolution.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from unlearn_fl.data import Split
from unlearn_fl.methods.base import ForgetBatch, Method, MethodConfig, UnlearnResult
from unlearn_fl.models import (Criterion, accuracy_and_loss, as_loss_fn, batches, eval_logits, reinitialized, tensors,
                               train_epochs)


RESOLUTION_Z = 1.645
"""One-sided 95% normal quantile: a drop counts when it exceeds this many binomial standard errors."""


def accuracy_resolution(acc: float, n: float) -> float:
    """Smallest accuracy drop an `n`-row evaluation resolves at accuracy `acc`: z·√(p(1−p)/n), p clipped to
    [1/n, 1−1/n] so a perfect score does not claim infinite precision. n ≤ 0 (no rows) gives inf.

    Units: accuracy (0..1). Source: the binomial standard error of an accuracy, one-sided z = 1.645.
    """
    if n <= 0 or not np.isfinite(acc):
        return float("inf")
    p = min(max(acc, 1.0 / n), 1.0 - 1.0 / n) if n > 1 else 0.5
    return RESOLUTION_Z * float(np.sqrt(p * (1.0 - p) / n))


def matched_effective_rows(holdout_y: np.ndarray, forget_y: np.ndarray) -> float:
    """Kish's effective sample size (Σw)²/Σw² of the matched holdout accuracy (`matched_holdout_metrics`): class c of
    the forget set (k_c rows) is measured on the n_c holdout rows of c (all n rows when c has none), each weighted
    k_c/n_c, so n_eff = (Σ_c k_c)² / Σ_c k_c²/n_c. Equal to n when the holdout has the forget set's class mix."""
    labels, counts = np.unique(forget_y, return_counts=True)
    if len(holdout_y) == 0 or len(labels) == 0:
        return 0.0
    n_c = np.array([int((holdout_y == c).sum()) or len(holdout_y) for c in labels], dtype=np.float64)
    return float(counts.sum()) ** 2 / float((counts.astype(np.float64) ** 2 / n_c).sum())


@dataclass(frozen=True)
class SplitOutputs:
    """One split's results under a model, from one forward pass in eval mode.

    logits: (n, K) the outputs themselves; correct: (n,) bool, the argmax is the label; loss: (n,) float64 per-row cross-entropy (as
    `models.per_example_loss`); acc, mean_loss: the split's accuracy and mean cross-entropy (as `models.evaluate`).
    """

    correct: np.ndarray
    loss: np.ndarray
    acc: float
    mean_loss: float
    logits: torch.Tensor | None = None


@torch.no_grad()
def split_outputs(model: torch.nn.Module, split: Split) -> SplitOutputs:
    """`SplitOutputs` of `split` under `model`; nan accuracy and mean loss on an empty split."""
    if len(split) == 0:
        return SplitOutputs(np.zeros(0, dtype=bool), np.zeros(0), float("nan"), float("nan"))
    model.eval()
    X, y = tensors(split)
    logits = model(X)
    acc, mean_loss = accuracy_and_loss(logits, y)
    return SplitOutputs((logits.argmax(1) == y).numpy(), F.cross_entropy(logits, y, reduction="none").double().numpy(),
                        acc, mean_loss, logits)


def _matched(holdout_y: np.ndarray, forget_y: np.ndarray):
    """(class, forget count, holdout rows standing for it) per class of the forget set; a class absent from the
    holdout is stood for by every holdout row."""
    labels, counts = np.unique(forget_y, return_counts=True)
    for c, k in zip(labels, counts):
        sel = holdout_y == c
        yield c, k, sel if sel.any() else np.ones(len(holdout_y), dtype=bool)


def matched_holdout_metrics(holdout: SplitOutputs, holdout_y: np.ndarray, forget_y: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean loss) on the holdout re-weighted to the forget set's label mix (nan without holdout rows).

    This is what 'unseen' looks like for D_f. Classes of D_f absent from the holdout fall
    back to the overall holdout figures.
    """
    if len(holdout_y) == 0:
        return float("nan"), float("nan")
    acc = loss = 0.0
    total = 0
    for _, k, sel in _matched(holdout_y, forget_y):
        acc += k * float(holdout.correct[sel].mean())
        loss += k * float(holdout.loss[sel].mean())
        total += k
    return acc / total, loss / total


def matched_loss_auc(forget: SplitOutputs, forget_y: np.ndarray, holdout: SplitOutputs, holdout_y: np.ndarray) -> float:
    """P(loss of a forget row < loss of a holdout row of the same class), ties ½: the loss-threshold attack's AUC.

    Holdout rows count with weights that give them the forget set's class mix (classes absent from the holdout
    fall back to all holdout rows), as `matched_holdout_metrics`. 0.5: the forget set looks unseen.
    Returns nan without rows on either side. Per class, the Mann-Whitney count Σ_h #{f < h} + ½ #{f = h}.
    """
    if len(forget_y) == 0 or len(holdout_y) == 0:
        return float("nan")
    total = 0.0
    for c, k, sel in _matched(holdout_y, forget_y):
        f, h = np.sort(forget.loss[forget_y == c]), holdout.loss[sel]
        below, upto = np.searchsorted(f, h, side="left"), np.searchsorted(f, h, side="right")
        u = float(below.sum()) + 0.5 * float((upto - below).sum())
        total += k * (u / (len(f) * len(h)))
    return total / len(forget_y)


def _cycle_batches(n: int, size: int, gen: torch.Generator):
    while True:
        yield from batches(n, size, gen)


def _random_batches(n: int, size: int, gen: torch.Generator):
    """Endless batches of `size` distinct indices in 0..n-1, each drawn afresh (size < n)."""
    while True:
        yield torch.randperm(n, generator=gen)[:size]


def run_unlearning(
    method: Method,
    model: torch.nn.Module,
    retain: Split,
    forget: Split,
    holdout: Split,
    cfg: MethodConfig,
    reference_mean: np.ndarray | None = None,
    criterion: Criterion | None = None,
) -> UnlearnResult:
    """Run `method` from `model` (copied) on local data; see the module docstring.

    reference_mean: the retain group's mean statistic when the retain data is elsewhere
    (a federated forget-holder with no retained rows); otherwise the retain batch is used.
    criterion: the retain term's loss(logits, y) (the user's task loss); None is cross-entropy.
    """
    loss_fn = as_loss_fn(criterion)
    if method.retrains:
        fresh = reinitialized(model, seed=cfg.seed)
        train_epochs(fresh, retain, cfg.epochs, cfg.lr, cfg.batch_size, seed=cfg.seed, loss_fn=loss_fn)
        return UnlearnResult(fresh, steps=cfg.epochs * -(-len(retain) // cfg.batch_size), stopped_because="retrained",
                             examples_processed=cfg.epochs * len(retain))

    model = copy.deepcopy(model)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    Xr, yr = tensors(retain)
    Xf, yf = tensors(forget)
    Xh, yh = tensors(holdout)
    uses_forget = len(forget) > 0 and method.uses_forget
    n_r, n_f = len(retain), len(forget)
    steps_per_epoch = max(-(-n_r // cfg.batch_size) if n_r else 0, -(-n_f // cfg.forget_batch_size) if uses_forget else 0)
    if steps_per_epoch == 0:
        return UnlearnResult(model, 0, "nothing to do")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    r_iter = _cycle_batches(n_r, cfg.batch_size, gen) if n_r else itertools.repeat(None)
    f_iter = _cycle_batches(n_f, cfg.forget_batch_size, gen) if uses_forget else itertools.repeat(None)
    holdout_logits = _Outputs(model, Xh)
    # A fresh random batch of exactly `reference_batch` holdout rows per step for the reference (no short remainder
    # batch: its few rows would make a noisy reference), from its own generator (the retain and forget batches stay
    # the same as with the whole holdout).
    h_iter = (_random_batches(len(holdout), cfg.reference_batch, torch.Generator().manual_seed(cfg.seed + 1))
              if cfg.reference_batch is not None and len(holdout) > cfg.reference_batch else None)

    can_stop = cfg.early_stop and uses_forget and len(holdout) > 0
    start = split_outputs(model, holdout) if can_stop else None
    if start is not None:
        holdout_logits.logits = start.logits
    start_hold = start.acc if start is not None else float("nan")
    start_matched = matched_holdout_metrics(start, holdout.y, forget.y)[0] if start is not None else float("nan")
    n_matched = matched_effective_rows(holdout.y, forget.y) if can_stop else 0.0
    hold_guard = max(cfg.max_holdout_drop, accuracy_resolution(start_hold, len(holdout))) if can_stop else 0.0
    matched_guard = max(cfg.max_matched_drop, accuracy_resolution(start_matched, n_matched)) if can_stop else 0.0
    history: list[dict] = []
    best_state = _snapshot(model)
    stopped, reached = "max epochs", False
    step = processed = checked = 0
    epochs = cfg.retain_epochs if (cfg.retain_epochs is not None and n_f == 0) else cfg.epochs  # a site without forget rows
    total = epochs * steps_per_epoch
    for step in range(1, total + 1):
        model.train()
        opt.zero_grad()
        loss = torch.zeros(())
        rb = next(r_iter)
        if rb is not None:
            loss = loss + loss_fn(model, Xr[rb], yr[rb])
            processed += len(rb)
        fb = next(f_iter)
        if fb is not None:
            processed += len(fb)
            hb = next(h_iter) if h_iter is not None else None
            batch = ForgetBatch(
                Xf[fb], yf[fb],
                Xr[rb] if rb is not None else None, yr[rb] if rb is not None else None,
                _ref(reference_mean),
                (Xh if hb is None else Xh[hb]) if len(holdout) else None,
                (yh if hb is None else yh[hb]) if len(holdout) else None,
                len(holdout) if len(holdout) else None,
                holdout_logits if len(holdout) and hb is None else None,
            )
            term = method.forget_term(model, batch, cfg)
            if term is not None:
                loss = loss + term
        loss.backward()
        opt.step()
        if step - holdout_logits.step >= cfg.reference_every:  # the model moved: the holdout outputs expire ...
            holdout_logits.logits, holdout_logits.step = None, step
        if can_stop and (step % cfg.check_every == 0 or step == total):  # the last step is always checked
            fo, ho = split_outputs(model, forget), split_outputs(model, holdout)  # one forward pass each per check
            holdout_logits.logits, holdout_logits.step = ho.logits, step  # ... and a check's holdout pass renews them
            f_acc, f_loss, h_acc = fo.acc, fo.mean_loss, ho.acc
            matched, matched_loss = matched_holdout_metrics(ho, holdout.y, forget.y)
            history.append({"step": step, "forget_acc": f_acc, "forget_loss": f_loss, "holdout_acc": h_acc,
                            "matched_holdout_acc": matched, "matched_holdout_loss": matched_loss})
            if h_acc < start_hold - hold_guard:
                model.load_state_dict(best_state)
                stopped = f"holdout accuracy fell from {start_hold:.3f} to {h_acc:.3f}; rolled back to step {checked}"
                break
            best_state, checked = _snapshot(model), step
            if matched < start_matched - matched_guard:
                stopped = f"holdout accuracy on the forget set's classes started to fall ({start_matched:.3f} -> {matched:.3f})"
                break
            if cfg.stop_rule == "loss-auc":
                auc = matched_loss_auc(fo, forget.y, ho, holdout.y)
                history[-1]["forget_loss_auc"] = auc
                if auc <= cfg.stop_auc:
                    stopped = f"a loss attack ranks forget rows below holdout rows with AUC {auc:.3f} ≤ {cfg.stop_auc} (looks unseen)"
                    reached = True
                    break
            elif f_loss >= matched_loss - cfg.stop_margin:
                stopped = f"forget loss {f_loss:.3f} reached the matched holdout loss {matched_loss:.3f} (looks unseen)"
                reached = True
                break
    return UnlearnResult(model, step, stopped, history, examples_processed=processed, target_reached=reached)


class _Outputs:
    """The model's eval-mode outputs on X, computed when first asked for and kept until `logits` is reset (None).

    step: the optimiser step after which the outputs are (or, once asked for, will be) computed; the loop resets them
    `reference_every` steps after it, so a reference statistic is at most that many steps old.
    """

    def __init__(self, model: torch.nn.Module, X: torch.Tensor) -> None:
        self.model, self.X, self.logits, self.step = model, X, None, 0

    def __call__(self) -> torch.Tensor:
        if self.logits is None:
            self.logits = eval_logits(self.model, self.X)
        return self.logits


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state to roll back to."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _ref(mean: np.ndarray | None) -> torch.Tensor | None:
    return None if mean is None else torch.as_tensor(mean, dtype=torch.float32)
