"""1-D Gaussians: Z|S=0 ~ N(0, 1), Z|S=1 ~ N(3, 2²), equal weights → barycenter N(1.5, 1.5²) (docs/method.md §3)."""

import numpy as np
import pytest
from scipy import stats

from unlearn_fl.feature import BarycenterProjector
from unlearn_fl.information.probe import probe_auc

N = 4000
BARY = stats.norm(loc=1.5, scale=1.5)  # σ̄ = Σ p_s σ_s = (1 + 2)/2, m̄ = (0 + 3)/2


def sample(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = np.concatenate([rng.normal(0.0, 1.0, N), rng.normal(3.0, 2.0, N)])
    return z[:, None], np.repeat([0, 1], N)


@pytest.fixture(scope="module")
def data():
    return sample(0), sample(1)


@pytest.mark.parametrize("method", ["quantile", "gaussian"])
def test_projected_sample_has_barycenter_law(data, method):
    (Z, s), (Znew, snew) = data
    proj = BarycenterProjector(method=method).fit(Z, s)
    for ZZ, ss in ((Z, s), (Znew, snew)):  # the fitted rows and fresh rows from the same laws
        out = proj.transform(ZZ, ss)[:, 0]
        assert out.mean() == pytest.approx(1.5, abs=0.08)
        assert out.std() == pytest.approx(1.5, abs=0.08)
        for g in (0, 1):
            part = out[ss == g]
            assert part.mean() == pytest.approx(1.5, abs=0.1)
            assert part.std() == pytest.approx(1.5, abs=0.1)
            assert stats.kstest(part, BARY.cdf).statistic < 0.04  # the whole law, not only two moments


@pytest.mark.parametrize("method", ["quantile", "gaussian"])
def test_s_unpredictable_after_projection(data, method):
    (Z, s), (Znew, snew) = data
    assert probe_auc(Znew, snew, probe="quadratic") > 0.8
    proj = BarycenterProjector(method=method).fit(Z, s)
    # held-out rows, mapped by maps fitted on other rows; a quadratic probe also sees variance differences
    assert abs(probe_auc(proj.transform(Znew, snew), snew, probe="quadratic") - 0.5) < 0.05


def test_gaussian_barycenter_in_1d_is_weighted_mean_of_stds(data):
    (Z, s), _ = data
    proj = BarycenterProjector(method="gaussian").fit(Z, s)
    sd = [Z[s == g, 0].std() for g in (0, 1)]
    assert np.sqrt(proj.barycenter_cov_[0, 0]) == pytest.approx(0.5 * sd[0] + 0.5 * sd[1], rel=1e-9)
    assert proj.maps_[0][0, 0] == pytest.approx((0.5 * sd[0] + 0.5 * sd[1]) / sd[0], rel=1e-9)


def test_unequal_weights_move_the_barycenter(data):
    (Z, s), _ = data
    proj = BarycenterProjector(method="quantile", weights={0: 0.75, 1: 0.25}).fit(Z, s)
    out = proj.transform(Z, s)[:, 0]
    assert out.mean() == pytest.approx(0.75, abs=0.08)  # 0.75·0 + 0.25·3
    assert out.std() == pytest.approx(1.25, abs=0.08)  # 0.75·1 + 0.25·2


def test_quantile_ties_random_ranks_are_deterministic_and_equalise_laws():
    rng = np.random.default_rng(3)
    s = np.repeat(["a", "b"], 1000)
    # group a: an integer coordinate (three atoms); group b: continuous
    Z = np.r_[rng.integers(0, 3, 1000).astype(float), rng.normal(2.0, 1.0, 1000)][:, None]
    # bins=None: the exact empirical laws, so the fitted rows' projected laws agree exactly (the smoothed default
    # trades that in-sample exactness for held-out rows: test_smoothed_maps_equalise_held_out_laws)
    proj = BarycenterProjector(method="quantile", random_state=7, bins=None).fit(Z, s)
    out = proj.transform(Z, s)
    assert np.array_equal(out, proj.transform(Z, s))  # same random_state → same tie-breaking
    assert not np.array_equal(out, BarycenterProjector(method="quantile", random_state=8, bins=None).fit(Z, s).transform(Z, s))
    # random ranks inside the atoms spread group a over the (continuous) barycenter: same law as group b
    assert np.unique(out[s == "a"]).size > 900
    assert stats.ks_2samp(out[s == "a", 0], out[s == "b", 0]).statistic < 0.05
    # mid ranks keep the atoms: three values only, and the laws stay apart
    mid = BarycenterProjector(method="quantile", ties="mid", bins=None).fit(Z, s).transform(Z, s)
    assert np.unique(mid[s == "a"]).size == 3
    assert stats.ks_2samp(mid[s == "a", 0], mid[s == "b", 0]).statistic > 0.12


def test_quantile_unseen_points_get_continuous_ranks():
    rng = np.random.default_rng(4)
    Z = np.r_[rng.normal(0, 1, 300), rng.normal(3, 2, 300)][:, None]
    s = np.repeat([0, 1], 300)
    proj = BarycenterProjector(method="quantile").fit(Z, s)
    grid = np.linspace(-1.5, 1.5, 401)[:, None]
    out = proj.transform(grid, np.zeros(401, dtype=int))[:, 0]
    steps = np.diff(out)
    assert np.all(steps > 0)  # strictly increasing between training points: a continuous rank, no plateaus
    assert steps.max() < 0.1
