"""Settings for auditing the audit: Gaussian blobs, mislabelled canaries, a small full-batch MLP.

A canary carries a wrong label, so only memorisation fits it: training on it plants a membership
signal of known origin. The tests and `benchmarks/audit_strength.py` use these to check that an
attack sees planted canaries, that a model retrained without them does not, and how often the
verdict fails a model that did nothing wrong (docs/method.md §4).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["blobs", "mislabel", "fit_mlp"]


def blobs(seed: int, n_features: int = 10, n_classes: int = 3
          ) -> tuple[np.random.Generator, Callable[[int], tuple[np.ndarray, np.ndarray]]]:
    """(rng, sample): class means ~ N(0, 1.5²) per feature, and sample(n) -> (X (n, d) float32, y (n,) int)
    with y uniform over the classes and X = mean_y + N(0, I). Every draw comes from `rng`."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.5, (n_classes, n_features))

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, n_classes, n)
        return (means[y] + rng.normal(0.0, 1.0, (n, n_features))).astype(np.float32), y

    return rng, sample


def mislabel(y: np.ndarray, rng: np.random.Generator, n_classes: int = 3) -> np.ndarray:
    """Each label moved to another class, uniformly among the C − 1 wrong ones: canaries."""
    return (np.asarray(y) + rng.integers(1, n_classes, len(y))) % n_classes


def fit_mlp(X: np.ndarray, y: np.ndarray, seed: int, steps: int = 300, n_classes: int = 3, hidden: int = 64,
            lr: float = 1e-2) -> nn.Module:
    """A d-hidden-C ReLU MLP trained full batch with Adam for `steps` steps (deterministic for a seed)."""
    X_t, y_t = torch.as_tensor(np.asarray(X)), torch.as_tensor(np.asarray(y)).long()
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(X_t.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(m(X_t), y_t).backward()
        opt.step()
    return m
