"""DP-SGD through Opacus: a short run trains, and its epsilon equals `account()` for the same steps."""

from __future__ import annotations


import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearn_fl.accounting.accountant import account
from unlearn_fl.accounting.dp_sgd import dp_train_epochs, make_dp_sgd, spent


pytestmark = pytest.mark.usefixtures("quiet_opacus")


def tiny_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(240, 6, generator=g)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    return X, y, model


def run(seed: int, accountant: str = "rdp", epochs: int = 3):
    X, y, model = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(TensorDataset(X, y), batch_size=40)
    dp_model, dp_opt, dp_loader, engine = make_dp_sgd(
        model, opt, loader, noise_multiplier=1.0, max_grad_norm=1.0, accountant=accountant, seed=seed
    )
    losses = dp_train_epochs(dp_model, dp_opt, dp_loader, epochs=epochs)
    return X, y, dp_model, dp_loader, engine, losses


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_short_dp_training_and_accounting(accountant: str):
    X, y, model, loader, engine, losses = run(seed=0, accountant=accountant, epochs=3)
    assert len(losses) == 3 and all(loss == loss for loss in losses)  # no NaN
    with torch.no_grad():
        acc = (model(X).argmax(1) == y).float().mean().item()
    assert acc > 0.7  # learns the linear rule despite the noise
    q = 1 / len(loader)
    assert q == pytest.approx(40 / 240)
    block = spent(engine, 1e-5)
    assert block.accountant == accountant and block.steps == 3 * len(loader) == 18
    assert block.sample_rate == pytest.approx(q) and block.noise_multiplier == 1.0 and block.max_grad_norm == 1.0
    assert block.epsilon == pytest.approx(account(1.0, q, 18, 1e-5, accountant=accountant).epsilon, rel=1e-9)
    assert block.epsilon == pytest.approx(engine.get_epsilon(1e-5), rel=1e-12)


def test_seeded_runs_are_reproducible():
    a = run(seed=3, epochs=1)[2]
    b = run(seed=3, epochs=1)[2]
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_errors():
    X, y, model = tiny_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(X, y), batch_size=40)
    with pytest.raises(ValueError, match="noise_multiplier"):
        make_dp_sgd(model, opt, loader, noise_multiplier=0.0, max_grad_norm=1.0)
    with pytest.raises(ValueError, match="max_grad_norm"):
        make_dp_sgd(model, opt, loader, noise_multiplier=1.0, max_grad_norm=0.0)
    with pytest.raises(ValueError, match="forbids a seed"):
        make_dp_sgd(model, opt, loader, noise_multiplier=1.0, max_grad_norm=1.0, seed=1, secure_mode=True)
    _, _, _, engine = make_dp_sgd(model, opt, loader, noise_multiplier=1.0, max_grad_norm=1.0)
    with pytest.raises(ValueError, match="not taken any DP-SGD step"):
        spent(engine, 1e-5)
