"""A small image CNN that Opacus (DP-SGD) can train as is."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """Two 3x3 conv + GroupNorm + ReLU blocks, a 2x2 max-pool and a linear layer; returns logits.

    Input: float32 tensor of shape (N, in_channels, height, width), e.g. the
    scikit-learn 8x8 digits as (N, 1, 8, 8) scaled to [0, 1]. Output: (N,
    n_classes) unnormalised logits. The convolutions keep H x W (padding 1);
    the pool halves them (floor), so the classifier sees channels * (height // 2)
    * (width // 2) features.

    Normalisation is GroupNorm (gcd(4, channels) groups), not BatchNorm:
    DP-SGD clips each example's own gradient, and Opacus computes per-example
    gradients, which BatchNorm makes undefined because it normalises each
    example with statistics of the whole batch (it mixes the examples of a
    batch) and its running statistics are an unnoised function of the data.
    GroupNorm normalises each example on its own, so the model passes
    `opacus.validators.ModuleValidator` unchanged (no parameter renaming).

    Raises ValueError for non-positive sizes or height/width < 2.
    """

    def __init__(
        self, in_channels: int = 1, height: int = 8, width: int = 8, n_classes: int = 10, channels: int = 16
    ) -> None:
        super().__init__()
        if min(in_channels, n_classes, channels) < 1:
            raise ValueError(
                f"in_channels, n_classes and channels must be ≥ 1, got {in_channels}, {n_classes}, {channels}"
            )
        if min(height, width) < 2:
            raise ValueError(f"height and width must be ≥ 2 (2x2 pooling), got {height}x{width}")
        groups = math.gcd(4, channels)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, kernel_size=3, padding=1),
            nn.GroupNorm(groups, channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.GroupNorm(groups, channels),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(channels * (height // 2) * (width // 2), n_classes)
        self.in_channels, self.height, self.width, self.n_classes = in_channels, height, width, n_classes
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, height, width) float32 -> (N, n_classes) logits."""
        return self.classifier(self.features(x))
