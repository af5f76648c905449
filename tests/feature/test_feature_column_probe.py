"""The one-column S-probe and its permutation chance level (information/columns.py)."""

import numpy as np
import pytest
from scipy.stats import norm

from unlearn_fl.feature.barycenter import BarycenterProjector
from unlearn_fl.information.columns import column_probe

N, D, B = 400, 3, 39


def _table(shift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = np.repeat([0, 1], N // 2)
    X = rng.normal(size=(N, D))
    X[:, 2] += shift * s
    return X, s


def test_the_chance_level_is_the_maximum_of_d_null_aucs_in_closed_form():
    """With S independent of every column, the 95% point of the largest of D one-column AUCs is, in closed form,
    0.5 + z · σ with σ² = (n + 1) / (3n²) (Mann–Whitney, two groups of n/2) and z the normal quantile of 0.95^(1/D);
    the measured chance level lands there (a little above: the probe's five folds add some variance to the
    Mann–Whitney figure), and the observed largest AUC is no outlier against it."""
    X, s = _table(0.0)
    r = column_probe(X, s, permutations=B)
    sigma = np.sqrt((N + 1) / (3 * N**2))
    closed = 0.5 + norm.ppf(0.95 ** (1 / D)) * sigma
    assert closed - 0.01 < r.chance < closed + 0.04, (r.chance, closed)
    assert r.p_value > 0.05 and len(r.aucs) == D and r.n == N


def test_a_column_that_carries_s_is_found_above_chance_and_a_full_projection_leaves_none():
    X, s = _table(1.5)
    r = column_probe(X, s, permutations=19)
    assert r.column == 2 and r.max_auc > 0.8 > r.chance
    assert r.p_value == pytest.approx(1 / 20)  # above every permuted maximum
    Z = BarycenterProjector(random_state=0).fit(X, s).transform(X, s)  # t = 1, the rows the maps were fitted on
    after = column_probe(Z, s, permutations=19)
    assert after.max_auc < after.chance and after.p_value > 0.2


@pytest.mark.parametrize("kw, match", [({"permutations": 0}, "permutations"), ({"permutations": 2.5}, "permutations"),
                                       ({"level": 1.0}, "level"), ({"level": "x"}, "level"), ({"folds": 1}, "folds"),
                                       ({"folds": 300}, "smallest group")])
def test_bad_settings_are_refused_in_one_line(kw, match):
    X, s = _table(0.0)
    with pytest.raises(ValueError, match=match):
        column_probe(X, s, **kw)


def test_the_s_probe_chance_level_is_the_95_percent_point_of_a_null_auc():
    """`probe_chance`: one logistic probe on a column independent of S; its AUC's Mann–Whitney standard error gives
    the 95% point 0.5 + 1.645 σ in closed form (a little above: the folds add variance). A column that carries S
    is far above it."""
    from unlearn_fl.information.probe import probe_auc, probe_chance

    X, s = _table(0.0)
    sigma = np.sqrt((N + 1) / (3 * N**2))
    closed = 0.5 + norm.ppf(0.95) * sigma
    chance = probe_chance(X[:, :1], s, "logistic", 5, 1, permutations=B)
    assert closed - 0.01 < chance < closed + 0.03, (chance, closed)
    Xs, s = _table(1.5)
    assert probe_auc(Xs[:, 2:], s) > 0.8 > probe_chance(Xs[:, 2:], s, permutations=B)
    with pytest.raises(ValueError, match="permutations"):
        probe_chance(X, s, permutations=0)
