"""LiRA: score formulas, reference-model orchestration, and detection of memorised canaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.nn import functional as F

from unlearn_fl.audit.lira import (
    ReferenceConfidences,
    lira_attack,
    lira_scores,
    train_reference_confidences,
)
from unlearn_fl.audit.mia import per_example_scaled_logits


def test_online_and_offline_formulas_per_example_variance():
    rng = np.random.default_rng(0)
    n, k = 6, 5
    out = rng.normal(-2.0, 1.0, (n, k))
    inn = rng.normal(3.0, 0.5, (n, k))
    c = rng.normal(0.0, 2.0, n)
    mu_o, sd_o = out.mean(1), out.std(1, ddof=1)
    mu_i, sd_i = inn.mean(1), inn.std(1, ddof=1)
    online = lira_scores(c, out, inn, global_variance=False)
    np.testing.assert_allclose(online, stats.norm.logpdf(c, mu_i, sd_i) - stats.norm.logpdf(c, mu_o, sd_o))
    offline = lira_scores(c, out, global_variance=False)
    np.testing.assert_allclose(offline, (c - mu_o) / sd_o)  # the argument of log Φ: the same order, no saturation


def test_offline_scores_do_not_tie_where_log_phi_saturates():
    # z = 40 and z = 60 both give log Φ(z) == 0.0 in float64; the offline score keeps them apart.
    assert stats.norm.logcdf(40.0) == stats.norm.logcdf(60.0) == 0.0
    s = lira_scores(np.array([40.0, 60.0]), np.array([[-1.0, 1.0], [-1.0, 1.0]]), global_variance=False)
    assert s[1] > s[0]


def test_global_variance_pools_residuals_and_ignores_nan():
    out = np.array([[0.0, 2.0, np.nan], [10.0, 11.0, 12.0]])
    # residuals: (−1, 1) and (−1, 0, 1): Σr² = 4 over (1 + 2) degrees of freedom.
    c = np.array([1.0, 11.0])
    s = lira_scores(c, out, global_variance=True)
    np.testing.assert_allclose(s, np.array([0.0, 0.0]) / np.sqrt(4 / 3))
    # Automatic choice: few references → pooled.
    np.testing.assert_allclose(lira_scores(c, out), s)


def test_lira_scores_errors():
    with pytest.raises(ValueError, match="no reference confidence"):
        lira_scores([0.0, 1.0], np.array([[1.0, 2.0], [np.nan, np.nan]]))
    with pytest.raises(ValueError, match="shape"):
        lira_scores([0.0, 1.0], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="global_variance=True"):
        lira_scores([0.0], np.array([[1.0]]), global_variance=False)
    with pytest.raises(ValueError, match="at least 2"):
        lira_scores([0.0, 1.0], np.array([[1.0], [2.0]]))
    with pytest.raises(ValueError, match="for both"):
        lira_attack([0.0], [1.0], [[0.0, 1.0]], [[0.0, 1.0]], in_confs_members=[[1.0, 2.0]])


class LookupModel:
    """A fake "model" that memorises its training rows: logit +4 on the label if seen, −4 if not."""

    def __init__(self, X: np.ndarray) -> None:
        self.seen = {tuple(np.round(r, 6)) for r in np.asarray(X)}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        hit = torch.tensor([tuple(np.round(r, 6)) in self.seen for r in x.numpy()], dtype=torch.float32)
        return torch.stack([4 * hit - 4 * (1 - hit), torch.zeros_like(hit)], dim=1)


def test_train_reference_confidences_masks_and_determinism():
    rng = np.random.default_rng(0)
    X_pool, y_pool = rng.normal(size=(30, 3)), np.zeros(30, dtype=int)
    X_eval, y_eval = rng.normal(size=(10, 3)), np.zeros(10, dtype=int)
    sizes: list[int] = []

    def train_fn(X, y):
        sizes.append(len(X))
        return LookupModel(X)

    ref = train_reference_confidences(train_fn, X_pool, y_pool, X_eval, y_eval, n_refs=6, rng=3)
    assert isinstance(ref, ReferenceConfidences) and ref.n_refs == 6
    assert ref.conf.shape == (10, 6) and ref.in_mask.shape == (10, 6) and ref.pool_mask.shape == (6, 30)
    assert np.all(ref.in_mask.sum(axis=1) == 3)  # each evaluation example IN for exactly half the models
    assert np.all(ref.pool_mask.sum(axis=1) == 15)
    assert sizes == [15 + int(ref.in_mask[:, k].sum()) for k in range(6)]
    # The lookup model is confident exactly where it trained on the example.
    np.testing.assert_allclose(ref.conf, np.where(ref.in_mask, 4.0, -4.0), atol=1e-5)
    assert np.all(np.isnan(ref.in_confs()) == ~ref.in_mask)
    assert np.all(np.isnan(ref.out_confs()) == ref.in_mask)
    again = train_reference_confidences(train_fn, X_pool, y_pool, X_eval, y_eval, n_refs=6, rng=3)
    assert np.array_equal(again.in_mask, ref.in_mask) and np.array_equal(again.pool_mask, ref.pool_mask)
    offline = train_reference_confidences(train_fn, X_pool, y_pool, X_eval, y_eval, n_refs=3, include_eval=False)
    assert not offline.in_mask.any() and np.allclose(offline.conf, -4.0, atol=1e-5)
    with pytest.raises(ValueError, match="n_refs"):
        train_reference_confidences(train_fn, X_pool, y_pool, X_eval, y_eval, n_refs=1)


# --- memorisation: mislabeled canaries in a small MLP -----------------------------------------------


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread, especially on a shared machine; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


D, C = 10, 3


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.5, (C, D))

    def sample(n):
        y = rng.integers(0, C, n)
        return (means[y] + rng.normal(0.0, 1.0, (n, D))).astype(np.float32), y

    X_pool, y_pool = sample(200)
    X_can, y_true = sample(64)
    y_can = (y_true + rng.integers(1, C, 64)) % C  # a wrong label: only memorisation fits it
    return X_pool, y_pool, X_can, y_can


def make_train_fn():
    counter = [0]

    def train_fn(X, y, steps: int = 300) -> nn.Module:
        counter[0] += 1
        torch.manual_seed(counter[0])
        model = nn.Sequential(nn.Linear(D, 64), nn.ReLU(), nn.Linear(64, C))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        Xt, yt = torch.as_tensor(X), torch.as_tensor(y).long()
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(model(Xt), yt).backward()
            opt.step()
        return model

    return train_fn


def test_lira_detects_memorised_canaries_and_not_unseen_ones(one_thread):
    X_pool, y_pool, X_can, y_can = make_data(0)
    train_fn = make_train_fn()
    rng = np.random.default_rng(1)
    order = rng.permutation(64)
    mem, non = order[:32], order[32:]  # canaries IN the target vs held out

    target = train_fn(np.concatenate([X_pool, X_can[mem]]), np.concatenate([y_pool, y_can[mem]]))
    never = train_fn(X_pool, y_pool)
    ref = train_reference_confidences(train_fn, X_pool, y_pool, X_can, y_can, n_refs=8, rng=rng)

    out_m, out_n = ref.out_confs()[mem], ref.out_confs()[non]
    in_m, in_n = ref.in_confs()[mem], ref.in_confs()[non]
    for model, expect_high in ((target, True), (never, False)):
        c = per_example_scaled_logits(model, X_can, y_can)
        offline = lira_attack(c[mem], c[non], out_m, out_n)
        online = lira_attack(c[mem], c[non], out_m, out_n, in_m, in_n)
        assert offline.attack == "lira-offline" and online.attack == "lira-online"
        assert online.n_members == 32 and online.n_nonmembers == 32
        if expect_high:
            assert offline.auc > 0.8 and online.auc > 0.8, (offline.auc, online.auc)
        else:  # same law for both halves: AUC ≈ 0.5 (null sd ≈ 0.072)
            assert abs(offline.auc - 0.5) < 0.2 and abs(online.auc - 0.5) < 0.2, (offline.auc, online.auc)
