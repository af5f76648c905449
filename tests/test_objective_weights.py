"""Unlearning-round aggregation counts the information term once (engine/objective_weights.py), in closed form."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from unlearn_fl.engine.objective_weights import objective_scales


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 500), min_size=1, max_size=6), st.lists(st.integers(1, 500), min_size=1, max_size=3),
       st.integers(0, 10_000))
def test_fedavg_of_rescaled_updates_is_the_objective_step(n_ret, n_hold, seed):
    rng = np.random.default_rng(seed)
    n = {("r", i): v for i, v in enumerate(n_ret)} | {("h", i): v for i, v in enumerate(n_hold)}
    f = {("h", i): int(rng.integers(1, v + 1)) for i, v in enumerate(n_hold)}
    holders = {p for p in n if p[0] == "h"}
    delta = {p: rng.normal(size=4) for p in n}
    c = objective_scales(n, f, holders)
    total = sum(n.values())
    fedavg = sum(n[p] / total * c[p] * delta[p] for p in n)
    n_r, f_t = sum(n_ret), sum(f.values())
    wanted = sum(n[p] / n_r * delta[p] for p in n if p not in holders) + sum(f[p] / f_t * delta[p] for p in holders)
    assert np.allclose(fedavg, wanted)


def test_without_retainers_or_holders_nothing_changes():
    assert objective_scales({1: 10, 2: 20}, {}, set()) == {1: 1.0, 2: 1.0}
    assert objective_scales({1: 10, 2: 20}, {1: 3, 2: 4}, {1, 2}) == {1: 1.0, 2: 1.0}


def test_one_holder_among_five_equal_clients_gets_its_step_in_full():
    c = objective_scales({k: 100 for k in range(5)}, {0: 100}, {0})
    assert c[0] == pytest.approx(5.0) and c[1] == pytest.approx(5 / 4)  # FedAvg weight 1/5 each


def test_bad_weights():
    with pytest.raises(ValueError):
        objective_scales({1: 0, 2: 3}, {}, {1})
