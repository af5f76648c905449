"""DP-SGD for the small classifiers of unlearn-fl, through `opacus.PrivacyEngine`.

DP-SGD (Abadi et al. 2016): each step samples a Poisson batch B (every example
independently with probability q = 1/len(loader)), clips each per-example
gradient to norm ≤ C (`max_grad_norm`), sums, adds N(0, σ²C²·I) (σ =
`noise_multiplier`) and divides by the expected batch size qN. Opacus does the
per-example gradients, clipping, noise and Poisson sampling; its accountant
records one (σ, q) step per optimizer step. `spent` turns that history into
the report's `AccountingBlock` with the same code path as `account()`, so the
two agree exactly for the same (σ, q, steps).

Determinism: with `seed`, the noise generator and the Poisson sampler are
seeded (fine for tests and experiments; use `secure_mode=True`, which
forbids seeds, for a released model).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from opacus import PrivacyEngine
from opacus.optimizers import DPOptimizer
from torch import nn
from torch.utils.data import DataLoader

from unlearn_fl.accounting.accountant import AccountantName, _check_accountant, _check_delta, block_from_history
from unlearn_fl.accounting.validation import require_dp_compatible
from unlearn_fl.accounting.results import AccountingBlock

__all__ = ["make_dp_sgd", "dp_train_epochs", "spent"]


def make_dp_sgd(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader,
    noise_multiplier: float,
    max_grad_norm: float,
    accountant: AccountantName = "rdp",
    seed: int | None = None,
    secure_mode: bool = False,
) -> tuple[nn.Module, DPOptimizer, DataLoader, PrivacyEngine]:
    """Wrap (model, optimizer, loader) for DP-SGD with Poisson sampling; returns them and the engine.

    The returned model computes per-example gradients, the optimizer clips
    to `max_grad_norm` and adds noise `noise_multiplier · max_grad_norm`, the
    loader samples each example with probability 1/len(data_loader) per step.
    Train with the returned objects only: anything else voids the guarantee.

    The model must already be Opacus-compatible: raises
    `unlearn_fl.accounting.validation.DPModelError` (one line naming the
    layer, e.g. a BatchNorm) otherwise, before wrapping anything. It does not
    fix the model itself: fixing replaces layers and renames parameters, so
    the caller that owns the model factory must apply
    `unlearn_fl.accounting.validation.dp_compatible` to it, identically on the
    server and on every client.
    """
    _check_accountant(accountant)
    if not noise_multiplier > 0:
        raise ValueError(f"noise_multiplier must be > 0 for DP-SGD, got {noise_multiplier}")
    if not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm (clipping norm) must be > 0, got {max_grad_norm}")
    if secure_mode and seed is not None:
        raise ValueError("secure_mode draws noise from a cryptographic source and forbids a seed; pass seed=None")
    require_dp_compatible(model)
    engine = PrivacyEngine(accountant=accountant, secure_mode=secure_mode)
    noise_generator = torch.Generator().manual_seed(seed) if seed is not None else None
    dp_model, dp_optimizer, dp_loader = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=data_loader,
        noise_multiplier=float(noise_multiplier),
        max_grad_norm=float(max_grad_norm),
        poisson_sampling=True,
        noise_generator=noise_generator,
    )
    if seed is not None:
        # The Poisson sampler draws with the original loader's generator (None = global RNG); seed it.
        dp_loader.batch_sampler.generator = torch.Generator().manual_seed(seed + 1)
    # Remember the clipping norm for `spent` (Opacus' engine does not keep it).
    engine.unlearn_fl_max_grad_norm = float(max_grad_norm)  # type: ignore[attr-defined]
    return dp_model, dp_optimizer, dp_loader, engine


def dp_train_epochs(
    model: nn.Module,
    optimizer: DPOptimizer,
    data_loader: DataLoader,
    epochs: int,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[float]:
    """Train a classifier for `epochs` passes of the (Poisson) loader; mean loss per epoch.

    Every sampled batch takes an optimizer step, including an empty one (then
    the update is pure noise): skipping empty batches would reveal that the
    batch was empty and would not match the accountant's step count.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be ≥ 0, got {epochs}")
    loss_fn = criterion if criterion is not None else nn.CrossEntropyLoss()
    model.train()
    history: list[float] = []
    for _ in range(epochs):
        total, count = 0.0, 0
        for xb, yb in data_loader:
            optimizer.zero_grad()
            out = model(xb)
            if xb.shape[0] == 0:
                loss = out.sum() * 0.0  # keeps the graph; per-example gradients are empty
            else:
                loss = loss_fn(out, yb)
                total += float(loss.detach()) * xb.shape[0]
                count += xb.shape[0]
            loss.backward()
            optimizer.step()
        history.append(total / count if count else float("nan"))
    return history


def spent(engine: PrivacyEngine, delta: float, max_grad_norm: float | None = None) -> AccountingBlock:
    """The privacy spent so far by `engine`, as an `AccountingBlock` (ε from the engine's own accountant).

    `max_grad_norm` defaults to the clipping norm given to `make_dp_sgd`.
    """
    _check_delta(delta)
    history = list(engine.accountant.history)
    if not history:
        raise ValueError("the privacy engine has not taken any DP-SGD step yet; train before reporting epsilon")
    mechanism = engine.accountant.mechanism()
    if max_grad_norm is None:
        max_grad_norm = getattr(engine, "unlearn_fl_max_grad_norm", None)
    return block_from_history(history, float(engine.get_epsilon(delta)), delta, mechanism, max_grad_norm)
