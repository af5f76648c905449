"""RMIA references a withdrawing site trains on its own rows: what they see, what they cost, what they add."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearn_fl.audit.rmia import true_label_probs
from unlearn_fl.data import Split
from unlearn_fl.engine.client_logic import local_audit, site_references
from unlearn_fl.models import make_model, train_epochs


@pytest.fixture(scope="module")
def site():
    rng = np.random.default_rng(0)
    means = rng.normal(0, 1.5, (3, 8))

    def sample(n):
        y = rng.integers(0, 3, n)
        return Split((means[y] + rng.normal(0, 1, (n, 8))).astype(np.float32), y)

    retained, forgotten, holdout = sample(300), sample(80), sample(80)
    reference = make_model(8, 3, (32,), seed=1)
    train_epochs(reference, retained, 5, 5e-3, 32, seed=1)
    return retained, forgotten, holdout, reference


def test_offline_references_never_see_the_audited_rows(site):
    retained, forgotten, holdout, reference = site
    before = [p.detach().clone() for p in reference.parameters()]
    pf, ph, cost = site_references(reference, retained, forgotten, holdout, 3, "offline", 2, 5e-3, 32, seed=0)
    assert pf.shape == (80, 3) and ph.shape == (80, 3) and np.all((pf > 0) & (pf <= 1))
    assert cost["references"] == 3 and cost["examples"] == 3 * 2 * len(retained)  # retained rows only
    assert all(torch.equal(a, b) for a, b in zip(before, reference.parameters()))  # the retrained model is untouched
    assert np.ptp(pf, axis=1).max() > 0  # the references differ from one another (different seeds)


def test_online_references_train_on_half_the_audited_rows(site):
    retained, forgotten, holdout, reference = site
    _, _, cost = site_references(reference, retained, forgotten, holdout, 2, "online", 2, 5e-3, 32, seed=0)
    assert cost["examples"] == 2 * 2 * (len(retained) + (len(forgotten) + len(holdout)) // 2)


def test_a_site_without_retained_rows_trains_no_offline_reference(site):
    _, forgotten, holdout, reference = site
    pf, ph, cost = site_references(reference, Split(forgotten.X[:0], forgotten.y[:0]), forgotten, holdout, 3, "offline", 2,
                                   5e-3, 32, seed=0)
    assert pf.shape == (80, 0) and cost["references"] == 0 and cost["examples"] == 0


def test_the_audit_uses_the_site_references(site):
    retained, forgotten, holdout, reference = site
    target = make_model(8, 3, (32,), seed=2)
    train_epochs(target, Split(np.concatenate([retained.X, forgotten.X]), np.concatenate([retained.y, forgotten.y])), 30, 5e-3, 16)
    kw = dict(extra_nonmember_losses=np.zeros(0), extra_nonmember_labels=np.zeros(0, int), retain_mean=None, n_retain=0,
              statistic="prediction", delta=1e-5, confidence=0.95, seed=0, reference=reference)
    alone = local_audit(target, holdout, forgotten, **kw)
    refs = site_references(reference, retained, forgotten, holdout, 4, "online", 2, 5e-3, 32, seed=0)
    online = local_audit(target, holdout, forgotten, site_refs=refs, **kw)
    assert [a.attack for a in alone.attacks] == ["loss-threshold", "rmia-offline"]
    assert [a.attack for a in online.attacks] == ["loss-threshold", "rmia-online"] and online.reference_cost == refs[2]
    assert online.attacks[1].auc != alone.attacks[1].auc  # more references change the likelihood ratios
    assert true_label_probs(target, forgotten.X, forgotten.y).mean() > true_label_probs(reference, forgotten.X, forgotten.y).mean()
