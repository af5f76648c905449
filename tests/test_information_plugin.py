"""Closed forms for the plug-in MI of docs/method.md §2."""

import math

import pytest
import torch

from unlearn_fl.information import plugin_mi, plugin_mi_by_label, plugin_mi_from_means


def test_identical_groups_have_zero_information():
    p = torch.softmax(torch.randn(50, 4), dim=1)
    assert plugin_mi([p, p.clone()]).item() == pytest.approx(0.0, abs=1e-9)


def test_disjoint_one_hot_groups_carry_the_whole_entropy_of_v():
    a = torch.tensor([[1.0, 0.0]] * 30)
    b = torch.tensor([[0.0, 1.0]] * 10)
    # Z determines V, so I(Z;V) = H(V) with P(V) = (3/4, 1/4).
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert plugin_mi([a, b]).item() == pytest.approx(h, rel=1e-6)


def test_bernoulli_closed_form():
    # V uniform, Z|V=0 ~ Bern(0.2), Z|V=1 ~ Bern(0.6): I = H(Z) - H(Z|V).
    H = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))
    expected = H(0.4) - 0.5 * (H(0.2) + H(0.6))
    means = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    got = plugin_mi_from_means(means, torch.tensor([1.0, 1.0])).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_gradient_flows_and_points_toward_equal_means():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]], requires_grad=True)
    p = torch.softmax(logits, dim=1)
    mi = plugin_mi([p[:1], p[1:]])
    mi.backward()
    assert torch.isfinite(logits.grad).all()
    # Descending the gradient must reduce the information.
    with torch.no_grad():
        p2 = torch.softmax(logits - 0.5 * logits.grad, dim=1)
    assert plugin_mi([p2[:1], p2[1:]]).item() < mi.item()


def test_by_label_matches_explicit_groups():
    p = torch.softmax(torch.randn(20, 3), dim=1)
    s = torch.tensor([0, 1] * 10)
    assert plugin_mi_by_label(p, s).item() == pytest.approx(plugin_mi([p[s == 0], p[s == 1]]).item())


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="at least two groups"):
        plugin_mi([torch.ones(3, 2)])
    with pytest.raises(ValueError, match="same K"):
        plugin_mi([torch.ones(3, 2), torch.ones(3, 3)])
