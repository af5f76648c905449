"""quickstart-unlearning: the app's own model and data (unlearn-fl knows neither)."""

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(4, channels), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(4, channels))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class Net(nn.Module):
    """A small residual CNN for 1x8x8 images (GroupNorm, so that Opacus can make it private)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU())
        self.res = ResidualBlock(16)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        return self.head(self.res(self.stem(x)))


def load_data(partition_id: int, num_partitions: int):
    """This site's digits as 8x8 images: (train, never-trained holdout, record ids of the train rows)."""
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.long)
    rows = np.array_split(np.random.default_rng(42).permutation(len(y)), num_partitions)[partition_id]
    cut = int(0.8 * len(rows))
    train, holdout = rows[:cut], rows[cut:]
    ids = [f"digit-{i}" for i in train]
    return TensorDataset(x[train], y[train]), TensorDataset(x[holdout], y[holdout]), ids
