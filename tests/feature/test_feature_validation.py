"""Input validation: clear ValueErrors that name the problem and the fix."""

import numpy as np
import pytest

from unlearn_fl.feature import BarycenterProjector


@pytest.fixture
def fitted():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(60, 2))
    s = np.repeat(["f", "m"], 30)
    return BarycenterProjector(method="quantile").fit(Z, s), Z, s


def test_unseen_group_at_transform(fitted):
    proj, Z, s = fitted
    s2 = s.copy().astype(object)
    s2[3] = "x"
    with pytest.raises(ValueError, match=r"group\(s\) x were not seen at fit time \(known: f, m\)"):
        proj.transform(Z, s2)


@pytest.mark.parametrize("method", ["quantile", "gaussian"])
def test_too_small_group(method):
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(23, 3))
    s = np.r_[np.zeros(20, int), np.ones(3, int)]
    with pytest.raises(ValueError, match=r"too few samples: 1 \(3\).*min_group_size=\d+.*Merge rare groups"):
        BarycenterProjector(method=method).fit(Z, s)
    # the threshold is adjustable
    BarycenterProjector(method="quantile", min_group_size=3).fit(Z, s)


def test_single_group_rejected():
    with pytest.raises(ValueError, match="at least two groups"):
        BarycenterProjector().fit(np.ones((10, 1)), np.zeros(10))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(fitted, bad):
    proj, Z, s = fitted
    Zb = Z.copy()
    Zb[5, 1] = bad
    with pytest.raises(ValueError, match=r"non-finite value\(s\).*row 5, column 1.*impute"):
        BarycenterProjector().fit(Zb, s)
    with pytest.raises(ValueError, match="non-finite"):
        proj.transform(Zb, s)


def test_shape_mismatches(fitted):
    proj, Z, s = fitted
    with pytest.raises(ValueError, match="Z has 60 rows but s has 59 labels"):
        BarycenterProjector().fit(Z, s[:-1])
    with pytest.raises(ValueError, match="Z has 3 features but the projector was fitted on 2"):
        proj.transform(np.c_[Z, Z[:, :1]], s)
    with pytest.raises(ValueError, match=r"1-D array.*reshape\(-1, 1\)"):
        BarycenterProjector().fit(Z[:, 0], s)
    with pytest.raises(ValueError, match="1-D array of group labels"):
        BarycenterProjector().fit(Z, np.c_[s, s])


@pytest.mark.parametrize("t", [-0.1, 1.5, float("nan")])
def test_t_outside_unit_interval(fitted, t):
    proj, Z, s = fitted
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        BarycenterProjector(t=t).fit(Z, s)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        proj.transform(Z, s, t=t)


def test_other_parameter_errors(fitted):
    _, Z, s = fitted
    with pytest.raises(ValueError, match="method must be 'quantile' or 'gaussian'"):
        BarycenterProjector(method="sinkhorn").fit(Z, s)
    with pytest.raises(ValueError, match="not fitted yet"):
        BarycenterProjector().transform(Z, s)
    with pytest.raises(ValueError, match="no entry for group"):
        BarycenterProjector(weights={"f": 1.0}).fit(Z, s)
    with pytest.raises(ValueError, match="must be discrete"):
        BarycenterProjector().fit(Z, np.linspace(0, 1, 60))
