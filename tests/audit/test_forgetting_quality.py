"""The NeurIPS 2023 challenge's forgetting quality (audit/forgetting_quality.py), against hand-computed cases."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from unlearn_fl.audit.forgetting_quality import bin_scores, challenge_score, forgetting_quality, per_example_epsilon


def test_identical_runs_are_indistinguishable():
    s = np.array([[0.0, 1.0, 2.0, 3.0]])
    assert per_example_epsilon(s, s)[0] == 0.0
    assert forgetting_quality(s, s).quality == 1.0


def test_separated_runs_give_infinite_epsilon_and_score_zero():
    u, r = np.array([[0.0, 0.1, 0.2, 0.3]]), np.array([[1.0, 1.1, 1.2, 1.3]])
    assert per_example_epsilon(u, r)[0] == math.inf
    q = forgetting_quality(u, r)
    assert q.quality == 0.0 and q.share_infinite == 1.0 and q.median_epsilon is None


def test_one_overlap_in_four_gives_ln3():
    # "s < 3 => unlearned": FPR 1/4 (2.5), FNR 1/4 (3.0), so eps >= ln((1 - 1/4) / (1/4)) = ln 3; no attack does better.
    u, r = np.array([[0.0, 1.0, 2.0, 3.0]]), np.array([[2.5, 3.5, 4.0, 5.0]])
    assert per_example_epsilon(u, r)[0] == pytest.approx(math.log(3))
    assert bin_scores(np.array([math.log(3)]))[0] == pytest.approx(2 / 2 ** 3)  # bin 1 + floor(1.0986 / 0.5) = 3


def test_delta_lowers_the_bound():
    u, r = np.array([[0.0, 1.0, 2.0, 3.0]]), np.array([[2.5, 3.5, 4.0, 5.0]])
    assert per_example_epsilon(u, r, delta=0.1)[0] == pytest.approx(math.log((1 - 0.1 - 0.25) / 0.25))


def test_bins():
    e = np.array([0.0, 0.49, 0.5, 1.0, 6.49, 6.5, np.inf])
    assert bin_scores(e).tolist() == pytest.approx([1.0, 1.0, 0.5, 0.25, 2 / 2 ** 13, 0.0, 0.0])


def test_challenge_score():
    assert challenge_score(0.5, 0.9, 1.0, 0.8, 0.8) == pytest.approx(0.45)
    with pytest.raises(ValueError):
        challenge_score(0.5, 0.9, 0.0, 0.8, 0.8)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6), st.integers(2, 6), st.integers(0, 10_000))
def test_epsilon_is_symmetric_and_shift_invariant(ku, kr, seed):
    rng = np.random.default_rng(seed)
    u, r = rng.normal(size=(3, ku)), rng.normal(0.5, 1, size=(3, kr))
    e = per_example_epsilon(u, r)
    assert np.all(e >= 0)
    assert np.allclose(e, per_example_epsilon(r, u))          # which side is called "unlearned" does not matter
    assert np.allclose(e, per_example_epsilon(u * 3 + 1, r * 3 + 1))  # a monotone transform of the score neither
    finite = e[np.isfinite(e)]
    assert np.all(finite <= math.log(max(ku, kr) - 1) + 1e-9)  # resolution: FPR, FNR are multiples of 1/K


def test_bad_shapes():
    with pytest.raises(ValueError):
        per_example_epsilon(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError):
        per_example_epsilon(np.zeros((3, 0)), np.zeros((3, 2)))
