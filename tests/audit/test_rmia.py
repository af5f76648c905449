"""RMIA: Pr(x) in both modes, scores against a brute-force pairwise count, invariances, errors, detection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from unlearn_fl.audit.mia import auc, loss_threshold_attack, per_example_losses
from unlearn_fl.audit.rmia import (
    DEFAULT_GAMMA,
    DEFAULT_OFFLINE_A,
    reference_probability,
    rmia_attack,
    rmia_scores,
    true_label_probs,
)
from unlearn_fl.data import Split
from unlearn_fl.models import make_model, train_epochs

try:  # hypothesis is optional: the seeded loop below runs the same property either way
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - depends on the environment
    st = None

FLOOR = 1e-30
EPS = 1e-9  # relative slack around γ for pairs whose ratio is within rounding of the threshold


# --- the definitions, written out -------------------------------------------------------------------


def pr_by_definition(R: np.ndarray, mode: str, a: float) -> np.ndarray:
    """Pr(x) per row: mean of the clipped non-NaN entries; offline ½((1 + a)·mean + (1 − a))."""
    out = []
    for row in np.atleast_2d(R):
        vals = [min(max(float(v), FLOOR), 1.0) for v in row if not math.isnan(v)]
        mean = sum(vals) / len(vals)
        out.append(mean if mode == "online" else 0.5 * ((1 + a) * mean + (1 - a)))
    return np.array(out)


def brute_counts(t, R, pt, PR, idx, mode, a, gamma):
    """(lo, hi, den): the n × m pairwise count of LR(x)/LR(z) ≥ γ over z ≠ x, bracketed for rounding.

    lo counts pairs with ratio ≥ γ(1 + EPS), plus exact ties (bitwise-identical inputs, ratio 1)
    when γ ≤ 1; hi counts pairs with ratio ≥ γ(1 − EPS). Pairs excluded by leave-one-out are
    in neither. An exact implementation lies in [lo, hi]; lo == hi unless a ratio is within
    EPS of γ.
    """
    lr_x = np.maximum(t, FLOOR) / pr_by_definition(R, mode, a)
    lr_z = np.maximum(pt, FLOOR) / pr_by_definition(PR, mode, a)
    ratio = lr_x[:, None] / lr_z[None, :]
    same = np.array(
        [[t[i] == pt[j] and R.shape[1] == PR.shape[1] and np.array_equal(R[i], PR[j], equal_nan=True)
          for j in range(pt.size)] for i in range(t.size)],
        dtype=bool,
    ).reshape(t.size, pt.size)
    keep = np.ones_like(ratio, dtype=bool)
    for i, j in enumerate(idx):
        if j >= 0:
            keep[i, j] = False
    lo = (((ratio >= gamma * (1 + EPS)) | (same & (gamma <= 1))) & keep).sum(1)
    hi = ((ratio >= gamma * (1 - EPS)) & keep).sum(1)
    return lo, hi, keep.sum(1)


def check_against_brute_force(t, R, pt, PR, idx, mode, a, gamma) -> bool:
    """Assert rmia_scores = brute-force count / (m or m − 1); return whether lo == hi (an exact check)."""
    s = rmia_scores(t, R, pt, PR, mode=mode, a=a, gamma=gamma, population_index=idx)
    lo, hi, den = brute_counts(t, R, pt, PR, idx, mode, a, gamma)
    assert s.shape == t.shape and np.all((s >= 0) & (s <= 1))
    counts = s * den
    np.testing.assert_allclose(counts, np.rint(counts), atol=1e-9)
    counts = np.rint(counts)
    assert np.all(lo <= counts) and np.all(counts <= hi), (lo, counts, hi)
    return bool(np.array_equal(lo, hi))


SPECIAL = np.array([0.0, 1e-40, 1e-30, 0.1, 0.25, 0.5, 1.0])  # clipping and exact ties


def random_case(rng: np.random.Generator):
    """n candidates, m population samples, K references; NaN gaps, tied values, leave-one-out copies."""
    n, m, k = (int(v) for v in rng.integers(1, 9, 2).tolist() + [rng.integers(1, 4)])

    def probs(shape):
        cont = rng.uniform(0, 1, shape)
        return np.where(rng.random(shape) < 0.4, rng.choice(SPECIAL, shape), cont)

    t, pt = probs(n), probs(m)
    R, PR = probs((n, k)), probs((m, k))
    for M in (R, PR):
        gaps = rng.random(M.shape) < 0.3
        gaps[np.arange(M.shape[0]), rng.integers(0, k, M.shape[0])] = False  # every row keeps one reference
        M[gaps] = np.nan
    idx = np.where(rng.random(n) < 0.5, rng.integers(0, m, n), -1) if m >= 2 else np.full(n, -1)
    for i, j in enumerate(idx):  # usually the candidate IS that population row, as in rmia_attack
        if j >= 0 and rng.random() < 0.8:
            t[i], R[i] = pt[j], PR[j]
    mode = str(rng.choice(["online", "offline"]))
    a = float(rng.choice([0.0, DEFAULT_OFFLINE_A, 1.0, rng.uniform()]))
    gamma = float(rng.choice([1.0, 0.5, 2.0, np.exp(rng.normal(0, 2))]))
    return t, R, pt, PR, idx, mode, a, gamma


# --- closed forms -------------------------------------------------------------------------------------


def test_reference_probability_online_is_the_nan_mean():
    R = np.array([[0.2, 0.4, 0.9], [0.5, np.nan, np.nan], [np.nan, 0.1, 0.3]])
    np.testing.assert_allclose(reference_probability(R, "online"), [0.5, 0.5, 0.2])
    np.testing.assert_allclose(reference_probability(R, "online"), np.nanmean(R, axis=1))
    # A 1-D array is one reference; a probability of 0 is clipped to 1e-30 before averaging.
    np.testing.assert_allclose(reference_probability([0.3, 0.0], "online"), [0.3, 1e-30])


def test_reference_probability_offline_formula_and_a_limits():
    R = np.array([[0.2, 0.4], [0.5, np.nan]])  # OUT means 0.3 and 0.5
    # ½((1 + 0.3)·0.3 + 0.7) = 0.545,  ½((1 + 0.3)·0.5 + 0.7) = 0.675
    np.testing.assert_allclose(reference_probability(R, "offline", a=0.3), [0.545, 0.675])
    np.testing.assert_allclose(reference_probability(R, "offline"), reference_probability(R, "offline", a=0.3))
    assert DEFAULT_OFFLINE_A == 0.3 and DEFAULT_GAMMA == 1.0
    # a = 1: Pr(x) = Pr_OUT(x); a = 0: ½(Pr_OUT(x) + 1), "an IN model fits x perfectly".
    np.testing.assert_allclose(reference_probability(R, "offline", a=1.0), [0.3, 0.5])
    np.testing.assert_allclose(reference_probability(R, "offline", a=0.0), [0.65, 0.75])
    # Online ignores a.
    np.testing.assert_allclose(reference_probability(R, "online", a=0.0), [0.3, 0.5])


def test_scores_hand_computed_with_tie_and_leave_one_out():
    # offline, a = 1 → Pr(x) = the single OUT reference. Population LRs: 0.5/0.5 = 1, 0.2/0.4 = 0.5, 0.9/0.3 = 3.
    pt, PR = np.array([0.5, 0.2, 0.9]), np.array([[0.5], [0.4], [0.3]])
    # Candidates: LR 0.8/0.4 = 2 and 0.1/0.1 = 1 (a tie with the first z, which counts as ≥).
    t, R = np.array([0.8, 0.1]), np.array([[0.4], [0.1]])
    np.testing.assert_allclose(rmia_scores(t, R, pt, PR, a=1.0), [2 / 3, 2 / 3])
    # γ = 1.5: x dominates z iff LR(z) ≤ LR(x)/1.5 → {1, 0.5} for LR 2, {0.5} for LR 1.
    np.testing.assert_allclose(rmia_scores(t, R, pt, PR, a=1.0, gamma=1.5), [2 / 3, 1 / 3])
    # The candidate that IS population sample 0 (LR 1): without leave-one-out it counts itself (2/3),
    # with it only {0.5} of the two others remain (1/2).
    np.testing.assert_allclose(rmia_scores([0.5], [[0.5]], pt, PR, a=1.0), [2 / 3])
    np.testing.assert_allclose(rmia_scores([0.5], [[0.5]], pt, PR, a=1.0, population_index=[0]), [1 / 2])


def test_scores_equal_brute_force_pairwise_count_seeded():
    rng = np.random.default_rng(12345)
    exact = 0
    for _ in range(400):
        exact += check_against_brute_force(*random_case(rng))
    assert exact > 300  # the bracket is exact (lo == hi) for almost every case


if st is not None:
    probability = st.one_of(st.sampled_from(SPECIAL.tolist()), st.floats(0.0, 1.0))

    @st.composite
    def rmia_cases(draw):
        n, m, k = draw(st.integers(1, 8)), draw(st.integers(1, 8)), draw(st.integers(1, 3))

        def arr(shape):
            size = int(np.prod(shape))
            return np.array(draw(st.lists(probability, min_size=size, max_size=size)), dtype=np.float64).reshape(shape)

        t, pt, R, PR = arr((n,)), arr((m,)), arr((n, k)), arr((m, k))
        for M in (R, PR):
            gaps = np.array(draw(st.lists(st.booleans(), min_size=M.size, max_size=M.size))).reshape(M.shape)
            gaps[:, draw(st.integers(0, k - 1))] = False
            M[gaps] = np.nan
        idx = np.array(draw(st.lists(st.integers(-1, m - 1) if m >= 2 else st.just(-1), min_size=n, max_size=n)))
        for i, j in enumerate(idx):
            if j >= 0 and draw(st.booleans()):
                t[i], R[i] = pt[j], PR[j]
        mode = draw(st.sampled_from(["online", "offline"]))
        a = draw(st.one_of(st.sampled_from([0.0, DEFAULT_OFFLINE_A, 1.0]), st.floats(0.0, 1.0)))
        gamma = draw(st.one_of(st.sampled_from([1.0, 0.5, 2.0]), st.floats(1e-3, 1e3)))
        return t, R, pt, PR, idx, mode, a, gamma

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rmia_cases())
    def test_scores_equal_brute_force_pairwise_count_hypothesis(case):
        check_against_brute_force(*case)

else:

    @pytest.mark.skip(reason="hypothesis is not installed; the seeded variant of this test covers the property")
    def test_scores_equal_brute_force_pairwise_count_hypothesis():
        pass


def test_attack_auc_at_gamma_one_is_the_raw_likelihood_ratio_auc():
    # With population = non-members and γ = 1, the pairwise counts order candidates as their LRs do,
    # except two kinds of tie at the extremes: a member above the top non-member ties with it (both
    # score 1), a member below the bottom non-member ties with it (both 0), i.e.
    #   AUC_pairwise = AUC_LR + (#members below all non-members − #members above all) / (2 n_m n_n).
    # The attack therefore ranks by the LR itself, ties counted one half.
    rng = np.random.default_rng(7)
    for _ in range(50):
        nm, nn = (int(v) for v in rng.integers(2, 30, 2))
        t, R = rng.uniform(0.01, 1, nm + nn), rng.uniform(0.01, 1, (nm + nn, 2))
        lr = t / R.mean(1)
        res = rmia_attack(t[:nm], R[:nm], t[nm:], R[nm:], mode="online")
        assert res.auc == pytest.approx(auc(lr[:nm], lr[nm:]), abs=1e-12)
        sm = rmia_scores(t[:nm], R[:nm], t[nm:], R[nm:], mode="online")
        sn = rmia_scores(t[nm:], R[nm:], t[nm:], R[nm:], mode="online", population_index=np.arange(nn))
        below = int(np.sum(lr[:nm] < lr[nm:].min()))
        above = int(np.sum(lr[:nm] > lr[nm:].max()))
        assert auc(sm, sn) == pytest.approx(auc(lr[:nm], lr[nm:]) + (below - above) / (2 * nm * nn), abs=1e-12)
        assert res.attack == "rmia-online" and (res.n_members, res.n_nonmembers) == (nm, nn)


def test_exact_likelihood_ratio_ties_do_not_favour_members():
    # Half the rows saturate (LR exactly 1 in both groups), the rest are exchangeable draws: the
    # pairwise counts would call the tied members more member-like; the attack does not.
    rng = np.random.default_rng(2)
    aucs = []
    for _ in range(200):
        t, r = rng.uniform(0.2, 1, 400), rng.uniform(0.2, 1, 400)
        t[::2] = r[::2] = 1.0
        aucs.append(rmia_attack(t[:200], r[:200, None], t[200:], r[200:, None], a=1.0).auc)
    assert abs(np.mean(aucs) - 0.5) < 0.01


def test_attack_with_external_population_scores_both_groups_against_it():
    rng = np.random.default_rng(3)
    mt, mr, nt, nr = rng.uniform(size=5), rng.uniform(size=(5, 2)), rng.uniform(size=6), rng.uniform(size=(6, 2))
    pt, pr = rng.uniform(size=9), rng.uniform(size=(9, 2))
    res = rmia_attack(mt, mr, nt, nr, population=(pt, pr), a=0.5, gamma=1.3)
    sm = rmia_scores(mt, mr, pt, pr, a=0.5, gamma=1.3)
    sn = rmia_scores(nt, nr, pt, pr, a=0.5, gamma=1.3)
    assert res.attack == "rmia-offline" and res.auc == pytest.approx(auc(sm, sn))
    # The default population is the non-members, each left out of its own comparison (γ ≠ 1).
    res = rmia_attack(mt, mr, nt, nr, gamma=1.3)
    sm = rmia_scores(mt, mr, nt, nr, gamma=1.3)
    sn = rmia_scores(nt, nr, nt, nr, population_index=np.arange(6), gamma=1.3)
    assert res.auc == pytest.approx(auc(sm, sn))


# --- invariances --------------------------------------------------------------------------------------


def test_scaling_every_target_probability_leaves_scores_unchanged():
    rng = np.random.default_rng(11)
    for mode in ("online", "offline"):
        n, m = 40, 60
        t, R = rng.uniform(1e-6, 1, n), rng.uniform(1e-6, 1, (n, 3))
        pt, PR = rng.uniform(1e-6, 1, m), rng.uniform(1e-6, 1, (m, 3))
        t[:10], R[:10] = pt[:10], PR[:10]  # ties: candidates 0..9 are population samples 0..9
        idx = np.where(np.arange(n) < 10, np.arange(n), -1)
        for gamma in (1.0, 0.7, 2.5):
            base = rmia_scores(t, R, pt, PR, mode=mode, gamma=gamma, population_index=idx)
            for c in (0.37, 1e-3):  # LR(x)/LR(z) = (c·Pr(x|θ)/Pr(x)) / (c·Pr(z|θ)/Pr(z)): c cancels
                scaled = rmia_scores(c * t, R, c * pt, PR, mode=mode, gamma=gamma, population_index=idx)
                np.testing.assert_array_equal(scaled, base)


def test_target_equal_to_its_only_reference_gives_ties_everywhere():
    # offline, a = 1, K = 1: Pr(x) = Pr(x|θ_1) = Pr(x|θ) so every LR is 1, every pair is a tie (≥ γ = 1).
    rng = np.random.default_rng(5)
    pm, pn = rng.uniform(size=20), rng.uniform(size=30)
    res = rmia_attack(pm, pm[:, None], pn, pn[:, None], mode="offline", a=1.0, gamma=1.0)
    np.testing.assert_array_equal(rmia_scores(pm, pm, pn, pn, a=1.0), np.ones(20))
    np.testing.assert_array_equal(rmia_scores(pn, pn, pn, pn, a=1.0, population_index=np.arange(30)), np.ones(30))
    assert res.auc == 0.5 and res.tpr_at_fpr["0.01"] == 0.0
    # Any γ > 1 and no pair passes.
    np.testing.assert_array_equal(rmia_scores(pm, pm, pn, pn, a=1.0, gamma=1.01), np.zeros(20))


# --- bad input ------------------------------------------------------------------------------------------


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


GOOD = dict(target_probs=[0.5, 0.6], ref_probs=[[0.4], [0.5]],
            population_target_probs=[0.3, 0.2, 0.9], population_ref_probs=[[0.3], [0.4], [0.5]])


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(ref_probs=[[0.4], [0.5], [0.6]]), "shape"),
        (dict(target_probs=[[0.5, 0.6], [0.1, 0.2]]), "1-D"),
        (dict(population_ref_probs=[[0.3, 0.1]]), "shape"),
        (dict(population_ref_probs=np.zeros((3, 2, 1))), "shape"),
        (dict(target_probs=[0.5, 1.5]), r"outside \[0, 1\]"),
        (dict(population_target_probs=[0.3, -0.1, 0.9]), r"outside \[0, 1\]"),
        (dict(ref_probs=[[0.4], [np.inf]]), r"outside \[0, 1\]"),
        (dict(population_ref_probs=[[0.3], [2.0], [0.5]]), r"outside \[0, 1\]"),
        (dict(target_probs=[0.5, np.nan]), "NaN"),
        (dict(population_target_probs=[np.nan, 0.2, 0.9]), "NaN"),
        (dict(ref_probs=[[0.4], [np.nan]]), "no reference probability"),
        (dict(target_probs=[], ref_probs=np.zeros((0, 1))), "empty"),
        (dict(population_target_probs=[], population_ref_probs=np.zeros((0, 1))), "empty"),
        (dict(ref_probs=np.zeros((2, 0))), "empty"),
        (dict(gamma=0.0), "gamma"),
        (dict(gamma=-1.0), "gamma"),
        (dict(gamma=float("nan")), "gamma"),
        (dict(gamma=float("inf")), "gamma"),
        (dict(a=-0.1), r"a must be a number in \[0, 1\]"),
        (dict(a=1.5), r"a must be a number in \[0, 1\]"),
        (dict(a=float("nan")), r"a must be a number in \[0, 1\]"),
        (dict(mode="both"), "mode"),
        (dict(population_index=[0]), "population_index"),
        (dict(population_index=[0, 3]), r"\[-1, 2\]"),
        (dict(population_index=[0, -2]), r"\[-1, 2\]"),
        (dict(population_index=[0.5, 1]), "population_index"),
        (dict(population_target_probs=[0.3], population_ref_probs=[[0.3]], population_index=[0, -1]),
         "at least 2"),
    ],
)
def test_rmia_scores_rejects_bad_input(change, match):
    kwargs = {**GOOD, **change}
    args = [kwargs.pop(k) for k in ("target_probs", "ref_probs", "population_target_probs", "population_ref_probs")]
    with pytest.raises(ValueError, match=match) as excinfo:
        rmia_scores(*args, **kwargs)
    _one_line(excinfo)


def test_reference_probability_and_attack_reject_bad_input():
    for call, match in [
        (lambda: reference_probability([[0.2], [np.nan]], "online"), "no reference probability"),
        (lambda: reference_probability([[0.2, 1.2]], "online"), r"outside \[0, 1\]"),
        (lambda: reference_probability(np.zeros((0, 2)), "online"), "empty"),
        (lambda: reference_probability(np.zeros((2, 2, 2)), "online"), "shape"),
        (lambda: reference_probability([[0.2]], "offline", a=1.01), r"\[0, 1\]"),
        (lambda: reference_probability([[0.2]], "OUT"), "mode"),
        (lambda: rmia_attack([0.5], [[0.5]], [0.4], [[0.4]]), "at least 2 non-members"),
        (lambda: rmia_attack([0.5], [[0.5]], [0.4, 0.3], [[0.4]]), "shape"),
        (lambda: rmia_attack([0.5], [[0.5]], [0.4, 0.3], [[0.4], [0.3]], population="members"), "population"),
        (lambda: rmia_attack([0.5], [[0.5]], [0.4, 0.3], [[0.4], [0.3]], population=([0.1],)), "population"),
        (lambda: rmia_attack([0.5], [[0.5]], [0.4, 0.3], [[0.4], [0.3]], gamma=0), "gamma"),
        (lambda: rmia_attack([], np.zeros((0, 1)), [0.4, 0.3], [[0.4], [0.3]]), "empty"),
    ]:
        with pytest.raises(ValueError, match=match) as excinfo:
            call()
        _one_line(excinfo)


# --- Pr(x | θ) from a model -------------------------------------------------------------------------


def test_true_label_probs_is_the_softmax_of_the_label_and_restores_the_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    X, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    model.train()
    p = true_label_probs(model, X, y, batch_size=7)
    assert model.training and p.dtype == np.float64 and p.shape == (50,)
    with torch.no_grad():
        model.eval()
        ref = torch.softmax(model(X).double(), dim=1)[torch.arange(50), y].numpy()
    np.testing.assert_allclose(p, ref, rtol=1e-6)
    np.testing.assert_allclose(p, np.exp(-per_example_losses(model, X, y)), rtol=1e-6)
    assert not model.training  # eval stays eval
    true_label_probs(model, X.numpy(), y.numpy())
    assert not model.training
    # Any callable returning logits; far-apart logits give probabilities 0 < p ≤ 1 without NaN.
    p = true_label_probs(lambda x: torch.stack([100 * x[:, 0], -100 * x[:, 0]], 1), X, torch.zeros(50))
    assert np.all((p >= 0) & (p <= 1)) and not np.isnan(p).any()
    assert true_label_probs(model, X[:0], y[:0]).shape == (0,)
    with pytest.raises(ValueError, match="labels must lie in"):
        true_label_probs(model, X, torch.full((50,), 3))
    with pytest.raises(ValueError, match="logits of shape"):
        true_label_probs(model, X, y[:10])


# --- detection: mislabelled canaries in small MLPs ----------------------------------------------------

D, C = 10, 3
N_POOL, N_CANARY = 300, 128
FPR = 0.05


def _train(X: np.ndarray, y: np.ndarray, seed: int) -> nn.Module:
    model = make_model(D, C, (64,), seed)
    train_epochs(model, Split(X, y.astype(np.int64)), epochs=100, lr=1e-2, batch_size=64, seed=seed)
    return model


def run_detection(seed: int) -> dict[str, float]:
    """Train the target, a model without the candidates and 4 + 4 references; return the attacks' figures.

    Candidates: N_CANARY mislabelled canaries (only memorisation fits them) and N_CANARY typical,
    correctly labelled examples, half of each in the target's training set. OUT references
    and the "never" model train on the pool only; online references each include a random
    half of the candidates (every candidate IN for exactly 2 of the 4).
    """
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.5, (C, D))

    def sample(n):
        y = rng.integers(0, C, n)
        return (means[y] + rng.normal(0.0, 1.0, (n, D))).astype(np.float32), y

    X_pool, y_pool = sample(N_POOL)
    X_can, y_true = sample(N_CANARY)
    y_can = (y_true + rng.integers(1, C, N_CANARY)) % C  # a wrong label
    X_typ, y_typ = sample(N_CANARY)
    X, y = np.concatenate([X_can, X_typ]), np.concatenate([y_can, y_typ])
    canary = np.arange(2 * N_CANARY) < N_CANARY
    member = np.zeros(2 * N_CANARY, dtype=bool)
    member[rng.permutation(N_CANARY)[: N_CANARY // 2]] = True
    member[N_CANARY + rng.permutation(N_CANARY)[: N_CANARY // 2]] = True

    def with_pool(mask):
        return np.concatenate([X_pool, X[mask]]), np.concatenate([y_pool, y[mask]])

    target = _train(*with_pool(member), 100 + seed)
    never = _train(X_pool, y_pool, 200 + seed)
    out_refs = np.stack([true_label_probs(_train(X_pool, y_pool, 300 + 10 * seed + k), X, y) for k in range(4)], 1)
    in_mask = np.zeros((2 * N_CANARY, 4), dtype=bool)
    for i in range(2 * N_CANARY):
        in_mask[i, rng.permutation(4)[:2]] = True
    online_refs = np.stack(
        [true_label_probs(_train(*with_pool(in_mask[:, k]), 400 + 10 * seed + k), X, y) for k in range(4)], 1
    )

    out: dict[str, float] = {}
    for name, model in (("target", target), ("never", never)):
        p, loss = true_label_probs(model, X, y), per_example_losses(model, X, y)
        for subset, sel in (("canary", canary), ("mixed", np.ones_like(canary))):
            m, n = sel & member, sel & ~member
            key = f"{name}/{subset}"
            res = loss_threshold_attack(loss[m], loss[n], fpr_targets=(FPR,))
            out[f"{key}/loss/auc"], out[f"{key}/loss/tpr"] = res.auc, res.tpr_at_fpr[f"{FPR:g}"]
            for label, refs, mode in (("offK1", out_refs[:, :1], "offline"), ("offK4", out_refs, "offline"),
                                      ("onK4", online_refs, "online")):
                res = rmia_attack(p[m], refs[m], p[n], refs[n], mode=mode, fpr_targets=(FPR,))
                assert res.attack == f"rmia-{mode}"
                out[f"{key}/{label}/auc"], out[f"{key}/{label}/tpr"] = res.auc, res.tpr_at_fpr[f"{FPR:g}"]
    return out


@pytest.fixture(scope="module")
def detection() -> dict[str, float]:
    return run_detection(0)


RMIA_VARIANTS = ("offK1", "offK4", "onK4")


def test_rmia_detects_memorised_canaries(detection):
    # Mislabelled canaries the target trained on vs ones it never saw (64 vs 64).
    for v in RMIA_VARIANTS:
        assert detection[f"target/canary/{v}/auc"] > 0.8, (v, detection)


def test_rmia_beats_the_loss_attack_at_low_fpr_when_difficulty_varies(detection):
    # Canaries and typical examples together: typical non-members have a lower loss than memorised
    # canaries, so the loss threshold finds few members at 5 % FPR; the references calibrate that away.
    loss_tpr, loss_auc = detection["target/mixed/loss/tpr"], detection["target/mixed/loss/auc"]
    for v in RMIA_VARIANTS:
        assert detection[f"target/mixed/{v}/tpr"] >= loss_tpr + 0.1, (v, detection)
        assert detection[f"target/mixed/{v}/auc"] > loss_auc, (v, detection)


def test_rmia_is_near_chance_for_a_model_trained_without_the_candidates(detection):
    for subset in ("canary", "mixed"):
        for v in RMIA_VARIANTS:
            assert abs(detection[f"never/{subset}/{v}/auc"] - 0.5) < 0.15, (subset, v, detection)
