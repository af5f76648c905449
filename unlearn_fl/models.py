"""Small torch models and the train / evaluate helpers every party uses.

Every helper takes any `nn.Module` classifier: input rows of any shape (N, ...), output
logits (N, C). The project's own architectures are `MLP` (tables) and `cnn.SmallCNN`
(images); a user's app brings its own through a model factory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from unlearn_fl.data import Split


class MLP(nn.Module):
    """A plain ReLU multilayer perceptron classifier returning logits."""

    def __init__(self, n_features: int, n_classes: int, hidden: Sequence[int] = (64,)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)
        self.n_features, self.n_classes, self.hidden = n_features, n_classes, tuple(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_model(n_features: int, n_classes: int, hidden: Sequence[int] = (64,), seed: int = 0) -> MLP:
    """A freshly initialised MLP; the same seed gives the same weights."""
    g = torch.random.fork_rng(devices=[])
    with g:
        torch.manual_seed(seed)
        return MLP(n_features, n_classes, hidden)


def parse_hidden(text: str | Sequence[int]) -> tuple[int, ...]:
    """'64,32' -> (64, 32)."""
    if isinstance(text, str):
        parts = [p for p in text.replace(" ", "").split(",") if p]
        try:
            out = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"hidden layer sizes must be comma-separated integers, got {text!r}") from None
    else:
        out = tuple(int(p) for p in text)
    if any(h <= 0 for h in out):
        raise ValueError(f"hidden layer sizes must be positive, got {out}")
    return out


def tensors(split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(split.X)), torch.from_numpy(np.ascontiguousarray(split.y))


def batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch of index batches."""
    perm = torch.randperm(n, generator=gen)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""(model, x, y) -> scalar loss: what the training loops call."""

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(logits (N, C), labels (N,)) -> scalar loss, e.g. `nn.CrossEntropyLoss()`: what a user hands in."""


def ce_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def as_loss_fn(criterion: Criterion | None) -> LossFn:
    """A user's criterion(logits, y) as a LossFn; None is cross-entropy."""
    if criterion is None:
        return ce_loss
    return lambda model, x, y: criterion(model(x), y)


def reinitialized(model: nn.Module, seed: int) -> nn.Module:
    """A copy of `model` with fresh weights: every submodule's `reset_parameters()`, seeded.

    Model-agnostic "from scratch" for any architecture built of standard layers (Linear,
    Conv, norms, ...). Raises ValueError when a module has parameters of its own but no
    `reset_parameters` (then pass a model factory instead).
    """
    import copy

    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, m in fresh.named_modules():
            own = list(m.parameters(recurse=False))
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
            elif own:
                raise ValueError(f"layer {name or type(m).__name__!r} has parameters but no reset_parameters(): "
                                 "give a model factory so a fresh model can be made")
    return fresh


def train_epochs(
    model: nn.Module,
    data: Split,
    epochs: int,
    lr: float,
    batch_size: int = 32,
    seed: int = 0,
    loss_fn: LossFn = ce_loss,
) -> float:
    """Adam on mini-batches for `epochs` epochs; returns the mean loss of the last epoch."""
    if len(data) == 0 or epochs <= 0:
        return float("nan")
    X, y = tensors(data)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    last = 0.0
    for _ in range(epochs):
        total, count = 0.0, 0
        for idx in batches(len(y), batch_size, gen):
            opt.zero_grad()
            loss = loss_fn(model, X[idx], y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        last = total / max(count, 1)
    return last


@torch.no_grad()
def predict_proba(model: nn.Module, X: np.ndarray | torch.Tensor) -> np.ndarray:
    model.eval()
    x = torch.as_tensor(X, dtype=torch.float32)
    return torch.softmax(model(x), dim=1).numpy()


def eval_mode_outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's outputs (N, K) on x (N, ...) in eval mode, with gradient; the model's mode is restored.

    How a membership attack reads the released model: dropout off, BatchNorm on its running statistics, which this
    pass does not move (in train mode they would move towards x).
    """
    was = model.training
    model.eval()
    try:
        return model(x)
    finally:
        model.train(was)


@torch.no_grad()
def eval_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`eval_mode_outputs` without gradient: a reference on rows the model must not learn from (a holdout)."""
    return eval_mode_outputs(model, x)


@torch.no_grad()
def per_example_loss(model: nn.Module, data: Split) -> np.ndarray:
    """Cross-entropy of each example (the membership-inference signal)."""
    if len(data) == 0:
        return np.zeros(0, dtype=np.float64)
    model.eval()
    X, y = tensors(data)
    return F.cross_entropy(model(X), y, reduction="none").double().numpy()


@torch.no_grad()
def evaluate(model: nn.Module, data: Split) -> tuple[float, float]:
    """(accuracy, mean cross-entropy); (nan, nan) on an empty split."""
    if len(data) == 0:
        return float("nan"), float("nan")
    model.eval()
    X, y = tensors(data)
    return accuracy_and_loss(model(X), y)


@dataclass
class ForwardRows:
    """Rows passed forward without gradient inside a `count_forward_rows` block (`rows`)."""

    rows: int = 0


@contextlib.contextmanager
def count_forward_rows() -> Iterator[ForwardRows]:
    """Count the rows of every outermost module call made with gradients off inside the block (any model: the
    one being unlearned, a teacher, a reference). These forward-only passes (reference statistics, stopping
    checks, a teacher's outputs) cost about a third of a forward-and-backward row each (backward ≈ 2 forwards)
    and are not in a step's batch sizes. Calls nested in an outer module's forward are not counted again.
    Uses torch's global module hooks, removed on exit; single-threaded use.
    """
    counted, depth = ForwardRows(), [0]

    def pre(module, args):
        if depth[0] == 0 and not torch.is_grad_enabled() and args and hasattr(args[0], "shape") and len(args[0].shape):
            counted.rows += int(args[0].shape[0])
        depth[0] += 1

    def post(module, args, output):
        depth[0] -= 1

    handles = [torch.nn.modules.module.register_module_forward_pre_hook(pre),
               torch.nn.modules.module.register_module_forward_hook(post)]
    try:
        yield counted
    finally:
        for h in handles:
            h.remove()


def accuracy_and_loss(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of logits (n, C) for labels y (n,), n ≥ 1."""
    return float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y))


class Standardized(nn.Module):
    """A model with its input scaling inside, as it is registered: it takes raw feature rows."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, model: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.scale)
