"""Halimi, Kadhe, Rawat & Baracaldo, "Federated Unlearning: How to Efficiently Erase a Client in FL?"
(2022): the method's configuration and the leaving client's projected gradient ascent; the server's
procedure (reference model, radius, the rounds after) is `engine/projected_ascent.py`.

The leaving client maximises its own loss, constrained to the L2 ball of radius δ around a reference
model w_ref, the average of the other clients' models:

    max_w  L_k(w)   subject to  ‖w − w_ref‖ ≤ δ,

by projected gradient ascent: w ← P(w + η ∇L_k(w)), P(v) = w_ref + (v − w_ref) · min(1, δ / ‖v − w_ref‖),
stopping early once the loss exceeds a threshold τ. A few ordinary FL rounds without the client follow.
As in the authors' notebook: the ascent starts from w_ref (`start="reference"`; `"global"` starts from the
current global model instead), SGD with momentum 0.9 at lr 0.01, gradients clipped to norm 5, and
δ² = one third of the mean squared distance from w_ref to freshly initialised models (10 of them).
Their notebook stops on a distance to the leaving client's model; we stop, as the paper describes, when the
cross-entropy on the forget rows exceeds τ (default ln C, the loss of a uniform guess over C classes).
Norms are over all parameters (buffers are not moved). For a partial withdrawal the ascent runs on the
forgotten rows only; the paper is defined for whole clients.
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar, Literal

import torch
from pydantic import Field

from unlearn_fl.data import Split
from unlearn_fl.methods.base import Method, MethodConfig, UnlearnResult
from unlearn_fl.models import batches, tensors


class ProjectedAscentConfig(MethodConfig):
    """Halimi et al.'s settings (defaults from the authors' notebook where the paper gives none)."""

    lr: float = Field(0.01, gt=0, le=10, description="SGD step size of the ascent.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum of the ascent.")
    clip_grad: float | None = Field(5.0, gt=0, le=1e6, description="Gradient norm clipping of the ascent (None: off).")
    radius: float | None = Field(None, gt=0, le=1e6, description="δ, the L2 radius around w_ref; None: from random models.")
    radius_fraction: float = Field(1 / 3, gt=0, le=1, description="δ² = this share of the mean squared distance of random models to w_ref.")
    random_models: int = Field(10, ge=1, le=100, description="Freshly initialised models averaged for δ.")
    loss_threshold: float | None = Field(None, gt=0, le=100, description="τ: stop once the forget cross-entropy exceeds it (None: ln C).")
    start: Literal["reference", "global"] = Field("reference", description="Start the ascent from w_ref (authors) or the global model.")
    post_rounds: int = Field(2, ge=0, le=100, description="Ordinary FL rounds on the retained rows after the ascent.")


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    """All parameters of `model` as one detached vector (P,)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def project_to_ball(model: torch.nn.Module, center: torch.Tensor, radius: float) -> float:
    """Project `model`'s parameters in place onto {w : ‖w − center‖ ≤ radius}; returns ‖w − center‖ after.

    center: (P,), the flattened parameters of the ball's centre (`flat_params`). A point inside is left
    unchanged; one outside moves along the segment to the centre onto the sphere.
    """
    if radius <= 0:
        raise ValueError(f"the radius must be positive, got {radius}")
    with torch.no_grad():
        w = flat_params(model)
        diff = w - center
        dist = float(diff.norm())
        if dist <= radius:
            return dist
        new = center + diff * (radius / dist)
        torch.nn.utils.vector_to_parameters(new, model.parameters())
        return float((new - center).norm())


def random_model_radius(reference: torch.nn.Module, fraction: float, k: int, seed: int) -> float:
    """δ = √(fraction · mean_i ‖w_i − w_ref‖²) over k freshly initialised copies w_i of `reference`'s architecture."""
    from unlearn_fl.models import reinitialized

    center = flat_params(reference)
    d2 = [float((flat_params(reinitialized(reference, seed=seed + i)) - center).pow(2).sum()) for i in range(k)]
    return math.sqrt(fraction * sum(d2) / len(d2))


def projected_ascent(model: torch.nn.Module, reference: torch.nn.Module, forgotten: Split, cfg: ProjectedAscentConfig,
                     criterion=None) -> UnlearnResult:
    """The leaving client's projected gradient ascent on its forgotten rows (`model` is copied).

    model: the starting point; reference: w_ref, the ball's centre; cfg.radius must be set (the server sets it).
    Each step: stop if the batch's loss already exceeds τ; else ascend (−loss backward, clip, SGD step)
    and project onto the ball. Batches of `cfg.batch_size` forgotten rows, `cfg.epochs` epochs at most.
    Raises ValueError without a radius.
    """
    if cfg.radius is None:
        raise ValueError("the projected ascent needs its radius δ (the server computes it from random models)")
    model = copy.deepcopy(model)
    n = len(forgotten)
    if n == 0:
        return UnlearnResult(model, 0, "nothing to do", weight=0)
    loss_fn = criterion if criterion is not None else torch.nn.functional.cross_entropy
    center = flat_params(reference)
    X, y = tensors(forgotten)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    project_to_ball(model, center, cfg.radius)
    tau = cfg.loss_threshold
    steps = processed = 0
    stopped = "max epochs"
    history: list[dict] = []
    model.train()
    for _ in range(cfg.epochs):
        for idx in batches(n, cfg.batch_size, gen):
            opt.zero_grad()
            logits = model(X[idx])
            threshold = tau if tau is not None else math.log(logits.shape[1])
            loss = loss_fn(logits, y[idx])
            if float(loss.detach()) > threshold:
                stopped = f"forget loss {float(loss.detach()):.3f} exceeded the threshold {threshold:.3f}"
                break
            (-loss).backward()
            if cfg.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            opt.step()
            dist = project_to_ball(model, center, cfg.radius)
            steps, processed = steps + 1, processed + len(idx)
            history.append({"step": steps, "forget_loss": float(loss.detach()), "distance": dist})
        else:
            continue
        break
    return UnlearnResult(model, steps, stopped, history, examples_processed=processed, weight=n,
                         target_reached=stopped != "max epochs")


class ProjectedAscent(Method):
    shared_loop = False
    """Halimi et al. 2022: projected gradient ascent at the leaving client, then FL rounds without it."""

    name = "pga"
    config_cls: ClassVar[type[MethodConfig]] = ProjectedAscentConfig
    summary = "Halimi et al. 2022: leaving client's projected gradient ascent around the others' mean model, then FL rounds"
    uses_forget = True
    server_side = True
    needs_history = "last"

    federated_only = "its reference model is the other clients' mean model"

    def run_local(self, model, retained, forgotten, holdout, cfg, *, reference_mean=None, criterion=None,  # type: ignore[override]
                  reference_model=None, step=""):
        """The leaving site's ascent on its forgotten rows; the ball's centre is `reference_model` (w_ref), or the
        received model itself when the ascent starts from w_ref."""
        return projected_ascent(model, reference_model if reference_model is not None else model, forgotten, cfg, criterion)
