"""Federated barycenter projection: client summaries reproduce the central maps (docs/method.md §3)."""

import numpy as np
import pytest

from unlearn_fl.feature import BarycenterProjector
from unlearn_fl.feature.federated import (
    GaussianSummary,
    QuantileSketch,
    client_summary,
    gaussian_summary,
    quantile_sketch,
    server_fit,
)
from unlearn_fl.information.probe import probe_auc


def population(seed, n):
    rng = np.random.default_rng(seed)
    s = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    k = np.searchsorted(["a", "b", "c"], s)
    Z = rng.normal(size=(n, 3)) * (1.0 + k[:, None]) + k[:, None] * np.array([1.0, -2.0, 0.5])
    Z[:, 1] += 0.5 * Z[:, 0] * (k == 1)  # a correlation in one group only
    return Z, s


@pytest.fixture(scope="module")
def clients():
    Z, s = population(0, 6000)
    cid = np.random.default_rng(1).integers(0, 4, len(s))
    cid[(s == "c") & (cid == 3)] = 2  # client 3 holds no row of group c: groups spread unevenly
    return Z, s, [(Z[cid == c], s[cid == c]) for c in range(4)]


def test_gaussian_federated_equals_central(clients):
    Z, s, parts = clients
    central = BarycenterProjector(method="gaussian").fit(Z, s)
    summaries = [client_summary(Zc, sc, "gaussian") for Zc, sc in parts]
    assert all(isinstance(x, GaussianSummary) for x in summaries)
    assert summaries[3].labels == ["a", "b"]
    fed = server_fit(summaries)
    assert fed.classes_ == central.classes_
    np.testing.assert_allclose(fed.weights_, central.weights_, rtol=1e-12)
    np.testing.assert_allclose(fed.means_, central.means_, atol=1e-10)
    np.testing.assert_allclose(fed.barycenter_cov_, central.barycenter_cov_, atol=1e-9)
    np.testing.assert_allclose(fed.maps_, central.maps_, atol=1e-9)
    for Zc, sc in parts:  # every client applies the broadcast maps locally
        np.testing.assert_allclose(fed.transform(Zc, sc), central.transform(Zc, sc), atol=1e-9)


def test_quantile_sketches_approximate_central(clients):
    Z, s, parts = clients
    central = BarycenterProjector(method="quantile").fit(Z, s)
    sketches = [client_summary(Zc, sc, "quantile", n_levels=201) for Zc, sc in parts]
    fed = server_fit(sketches)
    Znew, snew = population(5, 3000)
    a, b = central.transform(Znew, snew), fed.transform(Znew, snew)
    scale = a.std(axis=0)
    err = np.abs(a - b) / scale
    assert err.mean() < 0.01
    assert np.quantile(err, 0.99) < 0.06
    # a coarse sketch is worse: the test can fail
    coarse = server_fit([quantile_sketch(Zc, sc, n_levels=5) for Zc, sc in parts]).transform(Znew, snew)
    assert (np.abs(a - coarse) / scale).mean() > 2 * err.mean()
    # and the federated maps do the job: each coordinate's law no longer reveals S
    for j in range(3):
        assert abs(probe_auc(b[:, [j]], snew, probe="quadratic") - 0.5) < 0.05


def test_summaries_hold_no_rows(clients):
    _, _, parts = clients
    Zc, sc = parts[0]
    g = gaussian_summary(Zc, sc)
    q = quantile_sketch(Zc, sc, n_levels=33)
    assert isinstance(q, QuantileSketch)
    assert g.sums.shape == (3, 3) and g.outer.shape == (3, 3, 3) and g.counts.sum() == len(sc)
    assert q.quantiles.shape == (3, 33, 3) and q.levels[0] == 0.0 and q.levels[-1] == 1.0
    # sizes do not grow with the number of local rows
    q2 = quantile_sketch(np.r_[Zc, Zc], np.r_[sc, sc], n_levels=33)
    assert q2.quantiles.shape == q.quantiles.shape


def test_server_rejects_bad_input(clients):
    _, _, parts = clients
    with pytest.raises(ValueError, match="non-empty list"):
        server_fit([])
    with pytest.raises(ValueError, match="not a mix"):
        server_fit([gaussian_summary(*parts[0]), quantile_sketch(*parts[1])])
    Zc, sc = parts[0]
    with pytest.raises(ValueError, match="number of features"):
        server_fit([gaussian_summary(Zc, sc), gaussian_summary(Zc[:, :2], sc)])
