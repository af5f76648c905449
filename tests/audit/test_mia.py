"""Membership-inference primitives: exact ROC, AUC = Mann–Whitney, TPR at low FPR, loss attack, scaled logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from unlearn_fl.audit.mia import (
    auc,
    downsample_roc,
    loss_threshold_attack,
    per_example_losses,
    per_example_scaled_logits,
    roc_curve,
    scaled_logits,
    tpr_at_fpr,
)
from unlearn_fl.report.schema import AttackResult


def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def mann_whitney(m: np.ndarray, n: np.ndarray) -> float:
    """Brute-force AUC: pairs won, ties half."""
    diff = np.asarray(m)[:, None] - np.asarray(n)[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_perfect_separation_auc_one_and_reversed_zero():
    m = np.array([5.0, 6.0, 7.0])
    n = np.array([1.0, 2.0])
    assert auc(m, n) == 1.0
    assert auc(n, m) == 0.0
    fpr, tpr, _ = roc_curve(m, n)
    assert tpr_at_fpr(fpr, tpr, (0.0, 0.01, 0.001)) == {"0": 1.0, "0.01": 1.0, "0.001": 1.0}


def test_hand_computed_small_example_with_ties():
    # members {3, 2, 2}, non-members {2, 1}: pairs won 1+1+.5+1+.5+1 = 5 of 6.
    m = np.array([3.0, 2.0, 2.0])
    n = np.array([2.0, 1.0])
    assert auc(m, n) == pytest.approx(5 / 6, abs=1e-12)
    fpr, tpr, thr = roc_curve(m, n)
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 1 / 3, 1.0, 1.0])
    assert math.isinf(thr[0]) and list(thr[1:]) == [3.0, 2.0, 1.0]
    assert trapezoid(tpr, fpr) == pytest.approx(5 / 6)
    assert tpr_at_fpr(fpr, tpr, (0.01, 0.5, 1.0)) == {"0.01": pytest.approx(1 / 3), "0.5": 1.0, "1": 1.0}


def test_auc_equals_mann_whitney_with_many_ties():
    rng = np.random.default_rng(3)
    m = rng.integers(0, 5, 200).astype(float)
    n = rng.integers(0, 4, 150).astype(float)
    assert auc(m, n) == pytest.approx(mann_whitney(m, n), abs=1e-12)
    fpr, tpr, _ = roc_curve(m, n)
    assert trapezoid(tpr, fpr) == pytest.approx(mann_whitney(m, n), abs=1e-12)
    assert len(fpr) == len(np.unique(np.concatenate([m, n]))) + 1  # one point per distinct score, plus (0, 0)


def test_identical_distributions_auc_half():
    rng = np.random.default_rng(0)
    a = auc(rng.normal(size=5000), rng.normal(size=5000))
    assert abs(a - 0.5) < 0.02  # null sd ≈ 0.0058
    assert auc(np.ones(10), np.ones(7)) == 0.5  # all tied


def test_loss_threshold_attack_result():
    rng = np.random.default_rng(1)
    member_losses = rng.exponential(0.2, 3000)
    nonmember_losses = rng.exponential(1.0, 4000)
    res = loss_threshold_attack(member_losses, nonmember_losses, max_roc_points=101)
    assert isinstance(res, AttackResult)
    assert res.attack == "loss-threshold"
    assert (res.n_members, res.n_nonmembers) == (3000, 4000)
    assert res.auc == pytest.approx(mann_whitney(-member_losses, -nonmember_losses), abs=1e-9)
    # Exponential scales: P(member loss < non-member loss) = 1/0.2 / (1/0.2 + 1) = 5/6.
    assert res.auc == pytest.approx(5 / 6, abs=0.02)
    assert set(res.tpr_at_fpr) == {"0.01", "0.001"}
    roc = res.roc
    assert roc is not None and 2 <= len(roc.fpr) <= 101
    assert (roc.fpr[0], roc.tpr[0]) == (0.0, 0.0) and (roc.fpr[-1], roc.tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(roc.fpr) >= 0) and np.all(np.diff(roc.tpr) >= 0)
    # The downsampled curve keeps low-FPR detail and never claims more than the exact curve.
    fpr, tpr, _ = roc_curve(-member_losses, -nonmember_losses)
    exact = tpr_at_fpr(fpr, tpr, (0.01,))["0.01"]
    assert tpr_at_fpr(np.array(roc.fpr), np.array(roc.tpr), (0.01,))["0.01"] <= exact
    assert any(0 < f <= 0.01 for f in roc.fpr)
    assert res.tpr_at_fpr["0.01"] == exact


def test_downsample_roc_small_curve_unchanged_and_errors():
    curve = downsample_roc(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.7, 1.0]), max_points=101)
    assert curve.fpr == [0.0, 0.5, 1.0] and curve.tpr == [0.0, 0.7, 1.0]
    with pytest.raises(ValueError, match="max_points"):
        downsample_roc(np.array([0.0, 1.0]), np.array([0.0, 1.0]), max_points=1)


def test_score_validation_errors():
    with pytest.raises(ValueError, match="member_scores is empty"):
        auc([], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        auc([1.0, float("nan")], [0.0])
    with pytest.raises(ValueError, match="1-D"):
        auc(np.zeros((3, 2)), [0.0])
    with pytest.raises(ValueError, match="FPR target"):
        tpr_at_fpr(np.array([0.0, 1.0]), np.array([0.0, 1.0]), (1.5,))


def test_scaled_logits_matches_naive_and_is_stable():
    torch.manual_seed(0)
    z = torch.randn(50, 4, dtype=torch.float64) * 3
    y = torch.randint(0, 4, (50,))
    p = torch.softmax(z, dim=1).gather(1, y[:, None]).squeeze(1)
    naive = torch.log(p / (1 - p)).numpy()
    np.testing.assert_allclose(scaled_logits(z, y), naive, rtol=1e-9, atol=1e-9)
    # Extreme logits: p_y rounds to 1 in float64, the naive formula overflows; ours stays exact.
    extreme = torch.tensor([[800.0, 0.0, 0.0], [0.0, 900.0, 0.0]])
    out = scaled_logits(extreme, torch.tensor([0, 0]))
    np.testing.assert_allclose(out, [800.0 - math.log(2.0), -900.0], rtol=1e-12)
    # Binary: φ = z_y − z_other.
    np.testing.assert_allclose(scaled_logits(np.array([[2.0, -1.0]]), np.array([1])), [-3.0])
    with pytest.raises(ValueError, match="C ≥ 2"):
        scaled_logits(np.zeros((3, 1)), np.zeros(3))
    with pytest.raises(ValueError, match="labels"):
        scaled_logits(np.zeros((2, 3)), np.array([0, 3]))


def test_per_example_losses_and_scaled_logits_from_model():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    model.train()
    X = torch.randn(20, 5)
    y = torch.randint(0, 3, (20,))
    losses = per_example_losses(model, X, y, batch_size=7)
    with torch.no_grad():
        logits = model(X)
        expected = F.cross_entropy(logits, y, reduction="none").numpy()
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    assert losses.dtype == np.float64 and model.training  # mode restored
    conf = per_example_scaled_logits(model, X.numpy(), y.numpy())
    np.testing.assert_allclose(conf, scaled_logits(logits, y), rtol=1e-5)
    # φ = log(p / (1 − p)) with p = e^{−ℓ}: the confidence is a decreasing function of the loss.
    np.testing.assert_allclose(conf, -losses - np.log1p(-np.exp(-losses)), rtol=1e-4, atol=1e-4)
