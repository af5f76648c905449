"""Independent evaluation estimators: Gaussian MI (closed form) and the held-out probe."""

import numpy as np
import pytest

from unlearn_fl.information.gaussian import gaussian_mi
from unlearn_fl.information.probe import probe_s


def test_gaussian_mi_matches_closed_form_for_shifted_gaussians():
    # Z | S ~ N(±Δ/2, Σ_w), p = (0.3, 0.7): Σ_Z = Σ_w + p0 p1 ΔΔᵀ → I_G = ½ log(1 + p0 p1 Δᵀ Σ_w⁻¹ Δ)
    rng = np.random.default_rng(0)
    Sw = np.array([[1.0, 0.4], [0.4, 2.0]])
    delta = np.array([1.5, -1.0])
    n0, n1 = 30000, 70000
    Z = np.r_[rng.multivariate_normal(-0.5 * delta, Sw, n0), rng.multivariate_normal(0.5 * delta, Sw, n1)]
    s = np.repeat([0, 1], [n0, n1])
    expected = 0.5 * np.log(1 + 0.3 * 0.7 * delta @ np.linalg.solve(Sw, delta))
    assert gaussian_mi(Z, s) == pytest.approx(expected, abs=0.01)


def test_gaussian_mi_bias_correction_near_zero_under_independence():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(120, 8))
    s = np.repeat([0, 1], 60)
    raw = gaussian_mi(Z, s, bias_correction=False)
    corrected = gaussian_mi(Z, s)
    assert raw > 0.2  # small groups in 8-D inflate the plain estimate
    assert corrected < 0.1


def test_probe_bits_and_auc():
    rng = np.random.default_rng(2)
    s = np.repeat([0, 1, 2], 400)
    Z_indep = rng.normal(size=(1200, 2))
    r = probe_s(Z_indep, s)
    assert abs(r.auc - 0.5) < 0.05 and r.bits < 0.02
    assert r.entropy_s == pytest.approx(np.log(3))
    Z_sep = np.c_[s * 10.0 + rng.normal(size=1200), rng.normal(size=1200)]
    r = probe_s(Z_sep, s)
    assert r.auc > 0.99 and r.bits == pytest.approx(np.log2(3), abs=0.15)  # nearly all of H(S) = log2 3 bits


def discrete_table(seed, n=4000):
    """S binary; a binary column, a 3-category one-hot block and an integer column that depend on S; a constant column."""
    rng = np.random.default_rng(seed)
    s = (rng.random(n) < 0.3).astype(int)
    binary = (rng.random(n) < np.where(s == 1, 0.7, 0.4)).astype(float)
    cat = np.where(s == 1, rng.choice(3, n, p=[0.2, 0.5, 0.3]), rng.choice(3, n, p=[0.5, 0.3, 0.2]))
    onehot = np.eye(3)[cat]
    integer = np.round(rng.normal(5.0 + 1.5 * s, 2.0))
    Z = np.c_[binary, onehot, integer, np.ones(n)]
    return Z, s, [[1, 2, 3]]


def test_mi_estimators_on_binary_one_hot_and_constant_columns():
    """After a full projection (held-out rows) each estimate is at most its value before and close to 0; the plain
    Gaussian formula, on the same data, is not even finite-safe (a one-hot block and a constant column)."""
    from unlearn_fl.feature import BarycenterProjector
    from unlearn_fl.information.gaussian import gaussian_mi_guarded
    from unlearn_fl.information.knn import knn_mi

    Z, s, blocks = discrete_table(0)
    Znew, snew, _ = discrete_table(1)
    after = BarycenterProjector(blocks=blocks).fit(Z, s).transform(Znew, snew)
    k0, k1 = knn_mi(Znew, snew), knn_mi(after, snew)
    assert k0.nats > 0.05 and k0.auc > 0.7  # the dependence is there to find
    assert k1.nats <= k0.nats and k1.nats < max(0.01, 3 * k1.null_nats)
    assert abs(k1.auc - 0.5) < 0.06  # the summary probe (all columns) finds at most a trace
    g0, g1 = gaussian_mi_guarded(Znew, snew), gaussian_mi_guarded(after, snew)
    assert g0 > 0.05 and g1 <= g0 and g1 < 0.01


def test_guarded_gaussian_mi_is_bounded_by_the_entropy_of_s():
    """A column constant in one group only: S is determined, I(Z; S) = H(S) = ln 2. The plain Gaussian formula
    reports far more (a singular within-group covariance); the guarded one at most H(S); the k-NN estimate is close
    to H(S) from below."""
    from unlearn_fl.information.gaussian import gaussian_mi_guarded
    from unlearn_fl.information.knn import knn_mi

    rng = np.random.default_rng(3)
    s = np.repeat([0, 1], 500)
    Z = np.c_[np.where(s == 0, 0.0, rng.normal(size=1000)), rng.normal(size=1000)]
    assert gaussian_mi(Z, s) > 3.0
    assert gaussian_mi_guarded(Z, s) <= np.log(2) + 1e-12
    k = knn_mi(Z, s)
    assert np.log(2) - 0.15 < k.nats <= np.log(2) + 0.05 and k.auc > 0.99


def test_disagreement_is_flagged():
    from unlearn_fl.information.checks import disagreement

    probes_fell = {"logistic probe": (0.73, 0.54), "gradient-boosting probe": (0.70, 0.52)}
    why = disagreement({"Gaussian MI proxy": (0.161, 3.264)}, probes_fell)
    assert why is not None and "Gaussian MI proxy rose 0.161 -> 3.26" in why
    assert disagreement({"k-NN MI": (0.08, 0.001)}, probes_fell) is None  # MI and probes fell together
    apart = disagreement({"k-NN MI": (0.08, 0.5)}, {"logistic probe": (0.8, 0.51), "gradient-boosting probe": (0.79, 1.0)})
    assert "logistic probe's AUC fell" in apart and "gradient-boosting probe's rose" in apart
    assert disagreement({"k-NN MI": (0.1, 0.2)}, {}) is None
