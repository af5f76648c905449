"""A deliberately memorising model: mislabeled canaries in the forget set (issue 4's audit sanity check).

The audit must see the leak before unlearning and see it fall after. Measured (seed 0): canary AUC
1.000 / ε_lower 1.60 before; 0.93 / 0.40 after marginal unlearning with the loss statistic; 0.53 / 0
for the model retrained without them. The fall is real but partial: see README, "Honest numbers".
"""

import numpy as np
import pytest

from unlearn_fl.audit.epsilon import empirical_epsilon
from unlearn_fl.audit.mia import loss_threshold_attack
from unlearn_fl.data import DataSpec, Split, federation
from unlearn_fl.methods import get_method
from unlearn_fl.models import evaluate, make_model, per_example_loss, train_epochs


@pytest.fixture(scope="module")
def setup():
    fed = federation(DataSpec(num_clients=1, holdout_fraction=0.0, test_fraction=0.1, seed=0))
    pool = fed.scaled(fed.client_train_idx[0])
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(pool))

    def noisy(idx, frac=0.25):
        s = pool.subset(idx)
        y = s.y.copy()
        c = rng.choice(len(y), int(frac * len(y)), replace=False)
        y[c] = (y[c] + rng.integers(1, 10, len(c))) % 10  # a wrong label
        m = np.zeros(len(y), bool)
        m[c] = True
        return Split(s.X, y), m

    forget, fm = noisy(perm[:160])        # the withdrawing client's rows, a quarter of them canaries
    holdout, _ = noisy(perm[160:320])     # its never-trained holdout (same noise)
    outside, om = noisy(perm[320:480])    # canaries nobody trained on: the audit's non-members
    retain = pool.subset(perm[480:])
    model = make_model(64, 10, (128,), seed=0)
    train_epochs(model, Split(np.concatenate([retain.X, forget.X]), np.concatenate([retain.y, forget.y])), 60, 3e-3, 32)
    return dict(forget=forget, fm=fm, holdout=holdout, outside=outside, om=om, retain=retain, model=model)


def audit(s, model):
    a = per_example_loss(model, s["forget"])[s["fm"]]
    b = per_example_loss(model, s["outside"])[s["om"]]
    return loss_threshold_attack(a, b).auc, empirical_epsilon(-a, -b, seed=0).epsilon_lower


def test_audit_detects_memorised_canaries_before_unlearning(setup):
    assert evaluate(setup["model"], setup["forget"])[0] == 1.0  # every canary fitted
    auc, eps = audit(setup, setup["model"])
    assert auc > 0.95 and eps > 1.0


def test_leak_falls_after_unlearning_and_vanishes_after_retraining(setup):
    s = setup
    auc0, eps0 = audit(s, s["model"])
    m = get_method("marginal")
    res = m.unlearn(s["model"], s["retain"], s["forget"], s["holdout"],
                    m.make_config(statistic="loss", reference="holdout", early_stop=False, epochs=10))
    auc1, eps1 = audit(s, res.model)
    assert auc1 < auc0 - 0.04 and eps1 < eps0 - 0.5
    r = get_method("retrain")
    ref = r.unlearn(s["model"], s["retain"], s["forget"], s["holdout"], r.make_config(epochs=60, lr=3e-3, batch_size=32)).model
    auc_r, eps_r = audit(s, ref)
    assert abs(auc_r - 0.5) < 0.15 and eps_r < eps1
