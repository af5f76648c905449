"""McCann interpolation Z_t = (1 − t) Z + t T_S(Z): endpoints and the dependence/distortion trade-off (§2.2)."""

import numpy as np
import pytest

from unlearn_fl.feature import BarycenterProjector
from unlearn_fl.information.gaussian import gaussian_mi
from unlearn_fl.information.probe import probe_auc

GRID = [0.0, 0.25, 0.5, 0.75, 1.0]


def sample(seed, n=3000, correlated=False):
    """Two Gaussian groups; with correlated=False the coordinates are independent within each group."""
    rng = np.random.default_rng(seed)
    c0, c1 = (0.3, -0.5) if correlated else (0.0, 0.0)
    z0 = rng.multivariate_normal([0.0, 0.0], [[1.0, c0], [c0, 1.0]], size=n)
    z1 = rng.multivariate_normal([2.0, -1.0], [[3.0, c1], [c1, 0.7]], size=n)
    return np.r_[z0, z1], np.repeat([0, 1], n)


@pytest.mark.parametrize("method", ["quantile", "gaussian"])
def test_endpoints(method):
    Z, s = sample(0, 500)
    proj = BarycenterProjector(method=method).fit(Z, s)
    assert np.array_equal(proj.transform(Z, s, t=0.0), Z)  # exactly the identity
    T = proj.transport(Z, s)
    assert np.array_equal(proj.transform(Z, s, t=1.0), T)
    assert np.array_equal(BarycenterProjector(method=method, t=1.0).fit_transform(Z, s), T)
    np.testing.assert_allclose(proj.transform(Z, s, t=0.3), 0.7 * Z + 0.3 * T, atol=1e-12)
    assert not np.allclose(T, Z)


@pytest.mark.parametrize("method", ["quantile", "gaussian"])
def test_dependence_falls_and_distortion_rises_along_t(method):
    # the quantile method is exact only for within-group independent coordinates; gaussian handles correlation
    corr = method == "gaussian"
    Z, s = sample(1, correlated=corr)
    Znew, snew = sample(2, correlated=corr)  # measure on held-out rows
    proj = BarycenterProjector(method=method).fit(Z, s)
    mi, auc, dist = [], [], []
    for t in GRID:
        out = proj.transform(Znew, snew, t=t)
        mi.append(gaussian_mi(out, snew))
        auc.append(probe_auc(out, snew, probe="quadratic"))
        dist.append(float(np.mean(np.sum((out - Znew) ** 2, axis=1))))
    assert auc[0] > 0.85 and abs(auc[-1] - 0.5) < 0.04
    assert mi[0] > 0.3 and mi[-1] < 0.01
    assert all(b < a for a, b in zip(auc, auc[1:])), auc
    assert all(b < a for a, b in zip(mi[:-1], mi[1:-1])) and mi[-1] <= mi[-2], mi
    assert dist[0] == 0.0 and all(b > a for a, b in zip(dist, dist[1:])), dist
    # distortion of the straight-line interpolation is exactly t² · E‖T(Z) − Z‖²
    np.testing.assert_allclose(dist, [t * t * dist[-1] for t in GRID], rtol=1e-9)


def test_quantile_method_leaves_copula_differences_gaussian_removes_them():
    """Known limit (documented in barycenter.py): per-coordinate maps equalise marginals, not correlations."""
    Z, s = sample(3, correlated=True)
    Znew, snew = sample(4, correlated=True)
    q = BarycenterProjector(method="quantile").fit(Z, s).transform(Znew, snew)
    g = BarycenterProjector(method="gaussian").fit(Z, s).transform(Znew, snew)
    assert probe_auc(q, snew, probe="quadratic") > 0.6
    assert abs(probe_auc(g, snew, probe="quadratic") - 0.5) < 0.04
