"""Soundness of the audit (docs/method.md §4): under DP-SGD the audited ε never exceeds the accountant's;
without DP, memorised canaries are detected.

Canaries are points with a deliberately wrong label, so only memorisation
fits them. 200 canaries are split at random: 100 go into the training set
(members), 100 are held out (non-members). The audit is the loss-threshold
attack plus `empirical_epsilon` on canaries-in vs canaries-out.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from unlearn_fl.accounting.dp_sgd import dp_train_epochs, make_dp_sgd, spent
from unlearn_fl.audit.epsilon import empirical_epsilon, max_certifiable_epsilon
from unlearn_fl.audit.mia import loss_threshold_attack, per_example_losses
from unlearn_fl.audit.rmia import reference_probability, rmia_attack, true_label_probs

D, C, DELTA = 10, 3, 1e-5
N_POOL, N_CANARIES = 1000, 200


pytestmark = pytest.mark.usefixtures("quiet_opacus")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    means = rng.normal(0.0, 1.5, (C, D))

    def sample(n):
        y = rng.integers(0, C, n)
        return (means[y] + rng.normal(0.0, 1.0, (n, D))).astype(np.float32), y

    X_pool, y_pool = sample(N_POOL)
    X_can, y_true = sample(N_CANARIES)
    y_can = (y_true + rng.integers(1, C, N_CANARIES)) % C
    X_test, y_test = sample(500)
    order = rng.permutation(N_CANARIES)
    mem, non = order[: N_CANARIES // 2], order[N_CANARIES // 2 :]
    X_train = torch.as_tensor(np.concatenate([X_pool, X_can[mem]]))
    y_train = torch.as_tensor(np.concatenate([y_pool, y_can[mem]])).long()
    return dict(X_train=X_train, y_train=y_train, X_can=X_can, y_can=y_can, mem=mem, non=non,
                X_test=torch.as_tensor(X_test), y_test=torch.as_tensor(y_test),
                X_pool=torch.as_tensor(X_pool), y_pool=torch.as_tensor(y_pool).long())


@pytest.fixture(scope="module")
def reference(data):
    """RMIA's OUT reference: trained on the pool only, so it is independent of which canaries are members."""
    torch.manual_seed(1)
    ref = nn.Sequential(nn.Linear(D, 64), nn.ReLU(), nn.Linear(64, C))
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(ref(data["X_pool"]), data["y_pool"]).backward()
        opt.step()
    return ref


def rmia_audit(model: nn.Module, reference: nn.Module, d: dict):
    """Offline RMIA on canaries-in vs canaries-out, and the empirical ε of its log-likelihood-ratio scores."""
    p = true_label_probs(model, d["X_can"], d["y_can"])
    r = true_label_probs(reference, d["X_can"], d["y_can"])
    attack = rmia_attack(p[d["mem"]], r[d["mem"], None], p[d["non"]], r[d["non"], None])
    llr = np.log(np.maximum(p, 1e-30)) - np.log(reference_probability(r[:, None], "offline"))
    eps = empirical_epsilon(llr[d["mem"]], llr[d["non"]], delta=DELTA, confidence=0.95, seed=0)
    return attack, eps


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, 64), nn.ReLU(), nn.Linear(64, C))


def audit(model: nn.Module, d: dict):
    losses = per_example_losses(model, d["X_can"], d["y_can"])
    attack = loss_threshold_attack(losses[d["mem"]], losses[d["non"]])
    eps = empirical_epsilon(-losses[d["mem"]], -losses[d["non"]], delta=DELTA, confidence=0.95, seed=0)
    with torch.no_grad():
        acc = (model(d["X_test"]).argmax(1) == d["y_test"]).float().mean().item()
    return attack, eps, acc


def test_without_dp_memorised_canaries_are_detected(data, reference):
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        opt.zero_grad()
        F.cross_entropy(model(data["X_train"]), data["y_train"]).backward()
        opt.step()
    attack, eps, acc = audit(model, data)
    print(f"\nno DP: loss-attack AUC {attack.auc:.3f}, TPR@1%FPR {attack.tpr_at_fpr['0.01']:.2f}, "
          f"epsilon_lower {eps.epsilon_lower:.3f} (max certifiable {max_certifiable_epsilon(100, 100):.3f}), "
          f"test acc {acc:.3f}")
    assert attack.auc > 0.9
    assert eps.epsilon_lower > 1.0
    rmia, rmia_eps = rmia_audit(model, reference, data)
    print(f"no DP: RMIA AUC {rmia.auc:.3f}, TPR@1%FPR {rmia.tpr_at_fpr['0.01']:.2f}, epsilon_lower {rmia_eps.epsilon_lower:.3f}")
    assert rmia.auc > 0.9 and rmia_eps.epsilon_lower > 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dp_sgd_audit_never_exceeds_accountant(data, reference, seed: int):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = DataLoader(TensorDataset(data["X_train"], data["y_train"]), batch_size=64)
    dp_model, dp_opt, dp_loader, engine = make_dp_sgd(model, opt, loader, noise_multiplier=1.5, max_grad_norm=1.0,
                                                      accountant="rdp", seed=seed)
    dp_train_epochs(dp_model, dp_opt, dp_loader, epochs=10)
    block = spent(engine, DELTA)
    attack, eps, acc = audit(dp_model, data)
    print(f"\nDP-SGD seed={seed} sigma=1.5 q={block.sample_rate:.4f} steps={block.steps}: accountant epsilon "
          f"{block.epsilon:.3f}; loss-attack AUC {attack.auc:.3f}, epsilon_lower {eps.epsilon_lower:.3f} "
          f"(point {eps.epsilon_point}), test acc {acc:.3f}")
    assert acc > 0.8  # the private model is useful, so the comparison is not against a dead model
    assert 1.0 < block.epsilon < 4.0
    assert eps.epsilon_lower <= block.epsilon
    assert attack.auc < 0.75
    rmia, rmia_eps = rmia_audit(dp_model, reference, data)
    print(f"  RMIA AUC {rmia.auc:.3f}, epsilon_lower {rmia_eps.epsilon_lower:.3f} <= accountant {block.epsilon:.3f}")
    assert rmia_eps.epsilon_lower <= block.epsilon
