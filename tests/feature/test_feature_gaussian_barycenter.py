"""Multivariate Gaussian barycenter: fixed point, commuting closed form, equalised moments (docs/method.md §3)."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from unlearn_fl.feature import BarycenterProjector
from unlearn_fl.feature.gaussian_ot import barycenter_cov, fixed_point_residual, psd_power


def random_spd(rng, d):
    A = rng.normal(size=(d, d))
    return A @ A.T + 0.3 * np.eye(d)


def test_fixed_point_equation_holds_for_noncommuting_covariances():
    rng = np.random.default_rng(0)
    covs = np.stack([random_spd(rng, 4) for _ in range(3)])
    w = np.array([0.2, 0.5, 0.3])
    bary, n_iter, ok = barycenter_cov(covs, w, tol=1e-12)
    assert ok and n_iter < 1000
    assert fixed_point_residual(bary, covs, w) < 1e-9
    # not a trivial answer: differs from the plain average of covariances
    assert np.linalg.norm(bary - np.einsum("s,sij->ij", w, covs)) > 1e-2


@pytest.mark.parametrize("basis", ["diagonal", "shared_eigenbasis"])
def test_commuting_covariances_match_closed_form(basis):
    rng = np.random.default_rng(1)
    d = 3
    U = np.eye(d) if basis == "diagonal" else ortho_group.rvs(d, random_state=2)
    diags = [np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 2.0]), np.array([0.5, 0.5, 6.0])]
    covs = np.stack([U @ np.diag(D) @ U.T for D in diags])
    w = np.array([0.5, 0.3, 0.2])
    means = rng.normal(size=(3, d))
    proj = BarycenterProjector(method="gaussian", tol=1e-13).fit_from_moments([0, 1, 2], [50, 30, 20], means, covs)
    root_avg = sum(p * psd_power(C, 0.5) for p, C in zip(w, covs))
    expected = root_avg @ root_avg  # (Σ_s p_s Σ_s^{1/2})²
    np.testing.assert_allclose(proj.barycenter_cov_, expected, atol=1e-9)
    np.testing.assert_allclose(proj.barycenter_mean_, w @ means, atol=1e-12)
    for g, C in enumerate(covs):
        closed = psd_power(C, -0.5) @ psd_power(expected, 0.5)  # A_s = Σ_s^{-1/2} Σ̄^{1/2}
        np.testing.assert_allclose(proj.maps_[g], closed, atol=1e-8)


def test_transformed_groups_have_equal_means_and_covariances():
    rng = np.random.default_rng(3)
    d, sizes = 3, [700, 400, 900]
    Z = np.concatenate([rng.multivariate_normal(rng.normal(size=d) * 3, random_spd(rng, d), size=n) for n in sizes])
    s = np.repeat(["x", "y", "z"], sizes)
    proj = BarycenterProjector(method="gaussian").fit(Z, s)
    out = proj.transform(Z, s)
    for g in ("x", "y", "z"):
        part = out[s == g]
        np.testing.assert_allclose(part.mean(axis=0), proj.barycenter_mean_, atol=1e-9)
        np.testing.assert_allclose(np.cov(part, rowvar=False, bias=True), proj.barycenter_cov_, atol=1e-8)
    # the maps are OT maps: symmetric positive definite matrices
    for A in proj.maps_:
        np.testing.assert_allclose(A, A.T, atol=1e-12)
        assert np.linalg.eigvalsh(A).min() > 0
    # and the weights are the empirical shares
    np.testing.assert_allclose(proj.weights_, np.array(sizes) / sum(sizes))


def test_singular_covariance_is_regularised():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 1))
    Z = np.c_[x, 2 * x, np.ones((200, 1))]  # rank 1
    s = np.repeat([0, 1], 100)
    Z[s == 1] += 1.0
    out = BarycenterProjector(method="gaussian").fit_transform(Z, s)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[s == 0].mean(axis=0), out[s == 1].mean(axis=0), atol=1e-6)
