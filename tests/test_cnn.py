"""SmallCNN: shapes, it learns the 8x8 digits, and DP-SGD trains it with the accountant's ε equal to `account()`."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearn_fl.accounting.accountant import account
from unlearn_fl.accounting.dp_sgd import dp_train_epochs, make_dp_sgd, spent
from unlearn_fl.accounting.validation import dp_compatible
from unlearn_fl.cnn import SmallCNN


def digits_images():
    """scikit-learn digits as (N, 1, 8, 8) float32 in [0, 1]; a fixed stratified 75/25 split."""
    d = load_digits()
    X = torch.tensor(d.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    return Xtr, Xte, ytr, yte


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(X).argmax(1) == y).float().mean().item()


def test_shapes_and_attributes():
    model = SmallCNN()
    out = model(torch.randn(5, 1, 8, 8))
    assert out.shape == (5, 10) and out.dtype == torch.float32
    assert (model.in_channels, model.height, model.width, model.n_classes) == (1, 8, 8, 10)
    odd = SmallCNN(in_channels=3, height=7, width=9, n_classes=4, channels=6)  # floor pooling, gcd(4, 6) = 2 groups
    assert odd(torch.randn(2, 3, 7, 9)).shape == (2, 4)
    with pytest.raises(ValueError, match="height and width"):
        SmallCNN(height=1)
    with pytest.raises(ValueError, match="channels"):
        SmallCNN(channels=0)


def test_opacus_compatible_as_is():
    model = SmallCNN()
    fixed, changes = dp_compatible(model)
    assert fixed is model and changes == []


def test_learns_digits():
    Xtr, Xte, ytr, yte = digits_images()
    torch.manual_seed(0)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        perm = torch.randperm(len(Xtr), generator=g)
        for i in range(0, len(Xtr), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(Xtr[idx]), ytr[idx]).backward()
            opt.step()
    assert accuracy(model, Xte, yte) > 0.85


@pytest.mark.usefixtures("quiet_opacus")
def test_dp_sgd_trains_and_accounts():
    Xtr, Xte, ytr, yte = digits_images()
    torch.manual_seed(0)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loader = DataLoader(TensorDataset(Xtr, ytr), batch_size=64)
    dp_model, dp_opt, dp_loader, engine = make_dp_sgd(
        model, opt, loader, noise_multiplier=1.0, max_grad_norm=1.0, seed=0
    )
    losses = dp_train_epochs(dp_model, dp_opt, dp_loader, epochs=2)
    assert len(losses) == 2 and all(loss == loss for loss in losses)  # no NaN
    assert accuracy(dp_model, Xte, yte) > 0.5  # 10 classes: chance is 0.1
    q = 1 / len(dp_loader)
    steps = 2 * len(dp_loader)
    block = spent(engine, 1e-5)
    assert block.steps == steps and block.sample_rate == pytest.approx(q) and block.noise_multiplier == 1.0
    assert block.epsilon == pytest.approx(account(1.0, q, steps, 1e-5).epsilon, rel=1e-9)
