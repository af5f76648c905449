"""Regularised training, utility + λ · Î(Z; S), graded by an independent held-out probe (docs/method.md §3 B)."""

import numpy as np
import pytest
import torch

from unlearn_fl.feature.objectives import (
    OBJECTIVES,
    RegularizedConfig,
    RegularizedMLP,
    fit_regularized,
    mi_penalty,
    soft_histogram,
    utility_loss,
)
from unlearn_fl.information.plugin import plugin_mi_by_label
from unlearn_fl.information.probe import probe_auc



@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny full-batch fits: one thread avoids contention on the shared 2-core machine; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic(n, seed):
    """S is strongly predictable from X (x1), and Y leans on x1, so an unpenalised Z reveals S."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 2, n)
    x1 = 2.0 * (2 * s - 1) + 0.7 * rng.normal(size=n)
    x2, x3 = rng.normal(size=n), rng.normal(size=n)
    y = (x1 + 1.5 * x2 + 0.5 * rng.normal(size=n) > 0).astype(int)
    return np.c_[x1, x2, x3], y, s


@pytest.fixture(scope="module")
def data():
    return synthetic(800, 0), synthetic(800, 1)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_large_lambda_lowers_held_out_dependence(data, objective):
    (X, y, s), (Xt, yt, st) = data
    aucs, accs = {}, {}
    for lam in (0.0, 5.0):
        model = RegularizedMLP(objective=objective, lam=lam, epochs=200, lr=1e-2, seed=0).fit(X, y, s)
        Z = model.transform(Xt)  # held-out outputs
        aucs[lam] = probe_auc(Z, st, probe="quadratic")
        accs[lam] = float((model.predict(Xt) == yt).mean())
    assert aucs[0.0] > 0.85, aucs
    assert aucs[5.0] < 0.65 and aucs[5.0] < aucs[0.0] - 0.25, aucs
    if objective != "entropy":  # supervised: still better than chance on Y
        assert accs[0.0] > 0.9 and accs[5.0] > 0.55, accs


def test_penalty_is_the_plugin_estimator():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(50, 3, generator=g), dim=1)
    s = torch.arange(50) % 2
    assert torch.allclose(mi_penalty(probs, s, 2, "softmax"), plugin_mi_by_label(probs, s, 2))
    hist = soft_histogram(probs[:, 0], 10)
    assert torch.allclose(hist.sum(dim=1), torch.ones(50))
    expected = torch.stack([plugin_mi_by_label(soft_histogram(probs[:, k], 10), s, 2) for k in range(3)]).mean()
    assert torch.allclose(mi_penalty(probs, s, 2, "histogram", 10), expected)
    # two groups with the same rows → zero penalty
    same = torch.cat([probs[:25], probs[:25]])
    assert mi_penalty(same, (torch.arange(50) >= 25).long(), 2).item() == pytest.approx(0.0, abs=1e-7)


def test_utility_losses_closed_forms():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    p = torch.softmax(logits, dim=1)
    y = torch.tensor([0, 1, 1])
    onehot = torch.nn.functional.one_hot(y, 2).float()
    assert torch.allclose(utility_loss("energy", logits, y, None), ((onehot - p) ** 2).sum(1).mean())
    assert torch.allclose(utility_loss("conditional_entropy", logits, y, None), -(p[range(3), y].log()).mean())
    assert utility_loss("kl", logits, y, p).item() == pytest.approx(0.0, abs=1e-6)
    pbar = p.mean(0)
    mi = -(pbar * pbar.log()).sum() + (p * p.log()).sum(1).mean()
    assert torch.allclose(utility_loss("entropy", logits, None, None), -mi)


def test_kl_with_given_teacher_and_errors(data):
    (X, y, s), _ = data
    teacher = np.tile([0.2, 0.8], (len(y), 1))
    res = fit_regularized(X, y, s, RegularizedConfig(objective="kl", lam=0.0, epochs=150, lr=2e-2), teacher_probs=teacher)
    assert np.abs(res.Z - teacher).max() < 0.05  # it follows the given teacher, not the labels
    with pytest.raises(ValueError, match="needs a target y"):
        fit_regularized(X, None, s, RegularizedConfig(objective="energy"))
    with pytest.raises(ValueError, match="teacher_probs must have shape"):
        fit_regularized(X, y, s, RegularizedConfig(objective="kl"), teacher_probs=teacher[:, :1])
    with pytest.raises(ValueError, match="at least two groups"):
        fit_regularized(X, y, np.zeros(len(y)))


def test_deterministic_given_seed(data):
    (X, y, s), _ = data
    cfg = RegularizedConfig(objective="conditional_entropy", lam=1.0, epochs=20, seed=3)
    assert np.array_equal(fit_regularized(X, y, s, cfg).Z, fit_regularized(X, y, s, cfg).Z)
