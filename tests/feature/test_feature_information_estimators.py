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
