"""Relative membership inference with reference models and a population (RMIA, Zarifzadeh et al. 2024).

Zarifzadeh, Liu & Shokri, "Low-Cost High-Power Membership Inference Attacks",
ICML 2024. For a model θ and an example x = (features, label y) write

    Pr(x | θ) = softmax(f_θ(features))_y,

the probability θ gives to the true label (`true_label_probs`). RMIA tests
"θ was trained on x" against "θ was trained on a population sample z instead"
for many z at once. The evidence for x is how much more likely x is under θ
than under the prior over models, estimated by K reference models θ_1..θ_K:

    Pr(x) = (1/K) Σ_k Pr(x | θ_k),                      LR_θ(x) = Pr(x | θ) / Pr(x).

- online: the references include models trained WITH x (IN) and WITHOUT x
  (OUT), about half each, and Pr(x) is the plain mean over all of them;
- offline: only OUT references exist. Their mean Pr_OUT(x) misses the IN
  half, Pr(x) = ½ (Pr_OUT(x) + Pr_IN(x)), and the paper approximates the
  unseen IN mean by a linear function of the OUT mean,
  Pr_IN(x) ≈ a · Pr_OUT(x) + (1 − a), which gives

      Pr(x) = ½ · ((1 + a) · Pr_OUT(x) + (1 − a)),       a ∈ [0, 1].

  a = 1 gives Pr(x) = Pr_OUT(x) (training on x changes nothing); a = 0 gives
  ½ (Pr_OUT(x) + 1) (an IN model fits x perfectly). The paper tunes a per
  setting (e.g. the a that maximises the attack's AUC when one reference
  model plays the target); `DEFAULT_OFFLINE_A` = 0.3 is our default, not a
  value tuned for any particular model or data set.

The same formulas give LR_θ(z) for each population sample z (non-members of
θ, e.g. never-trained holdout data). The pairwise likelihood ratio and the
score are

    LR_θ(x, z) = LR_θ(x) / LR_θ(z),
    Score_MIA(x) = (1 / |Z_x|) · #{ z ∈ Z_x : LR_θ(x, z) ≥ γ },      Z_x = Z \\ {x},

the fraction of population samples that x "dominates" by a factor γ > 0
(default `DEFAULT_GAMMA` = 1: x beats z when θ raises x's probability, relative
to the references, at least as much as it raises z's; ties count as ≥).
Higher score = more likely a member, as everywhere in `unlearn_fl.audit`.
Leave-one-out: a candidate that is itself one of the population samples is not
compared with itself (|Z_x| = m − 1).

Computation: in log space, ℓ(x) = log Pr(x | θ) − log Pr(x), so
LR_θ(x, z) ≥ γ ⟺ ℓ(z) ≤ ℓ(x) − log γ. Sorting the m population values once
and a binary search per candidate gives every score in O((n + m) log m)
instead of the n × m pairwise matrix. All probabilities are clipped to
[1e-30, 1] first, so no ratio divides by zero.

Inputs: target probabilities of shape (n,), reference probabilities of shape
(n, K), where NaN marks "reference k does not provide example i" (it is left
out of that example's mean), all in [0, 1]. The report type `AttackResult` is
produced at the boundary (`rmia_attack`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from unlearn_fl.audit.mia import DEFAULT_FPR_TARGETS, _model_logits, attack_result, require_reference_per_example
from unlearn_fl.audit.results import AttackResult

__all__ = [
    "DEFAULT_OFFLINE_A",
    "DEFAULT_GAMMA",
    "true_label_probs",
    "reference_probability",
    "rmia_scores",
    "rmia_attack",
]

DEFAULT_OFFLINE_A = 0.3
"""Offline approximation Pr(x) = ½((1 + a)·Pr_OUT(x) + (1 − a)): our default a (the paper tunes it)."""

DEFAULT_GAMMA = 1.0
"""Pairwise threshold: x dominates z when LR_θ(x) / LR_θ(z) ≥ γ."""

PROB_FLOOR = 1e-30
"""Probabilities are clipped to [PROB_FLOOR, 1] before any ratio or logarithm."""

Mode = Literal["online", "offline"]


def _as_array(values: object) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def _check_probs(arr: np.ndarray, name: str, allow_nan: bool) -> None:
    if arr.size == 0:
        raise ValueError(f"{name} is empty: give at least one example (and one reference model)")
    nan = np.isnan(arr)
    if not allow_nan and nan.any():
        raise ValueError(
            f"{name} has {int(nan.sum())} NaN value(s); "
            "give the model's probability of the true label for every example"
        )
    finite = arr[~nan]
    if np.any((finite < 0.0) | (finite > 1.0)):  # also catches ±inf
        raise ValueError(
            f"{name} has value(s) outside [0, 1] (range {finite.min():g}..{finite.max():g}); "
            "give softmax probabilities of the true label, not logits or losses"
        )


def _target_probs(probs: object, name: str) -> np.ndarray:
    """`probs` as a (n,) float64 array of probabilities, or a ValueError naming `name` and the fix."""
    arr = _as_array(probs)
    if arr.ndim > 1 and arr.squeeze().ndim == 1:  # a column or row vector
        arr = arr.squeeze()
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-example probabilities, got shape {arr.shape}")
    _check_probs(arr, name, allow_nan=False)
    return arr


def _ref_probs(probs: object, n: int | None, name: str) -> np.ndarray:
    """`probs` as a (n, K) float64 matrix (a 1-D array is one reference), NaN = missing, rows non-empty."""
    arr = _as_array(probs)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or (n is not None and arr.shape[0] != n):
        want = "n_examples" if n is None else f"n_examples={n}"
        raise ValueError(f"{name} must have shape ({want}, n_refs), got {arr.shape}")
    _check_probs(arr, name, allow_nan=True)
    require_reference_per_example(arr, name, "probability")
    return arr


def _check_mode_a(mode: str, a: float) -> None:
    if mode not in ("online", "offline"):
        raise ValueError(f"mode must be 'online' (IN and OUT references) or 'offline' (OUT only), got {mode!r}")
    if not (isinstance(a, (int, float, np.floating, np.integer)) and 0.0 <= float(a) <= 1.0):
        raise ValueError(f"a must be a number in [0, 1] (1 = Pr(x) is the OUT mean), got {a!r}")


def _check_gamma(gamma: float) -> None:
    if not (isinstance(gamma, (int, float, np.floating, np.integer)) and math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a finite number > 0 (the pairwise ratio threshold, default 1), got {gamma!r}")


def _reference_probability(refs: np.ndarray, mode: str, a: float) -> np.ndarray:
    """Pr(x) of a validated (n, K) matrix (NaN-masked), after clipping to [PROB_FLOOR, 1]."""
    mean = np.nanmean(np.clip(refs, PROB_FLOOR, 1.0), axis=1)
    if mode == "online":
        return mean
    return 0.5 * ((1.0 + a) * mean + (1.0 - a))


def _log_lr(target: np.ndarray, refs: np.ndarray, mode: str, a: float) -> np.ndarray:
    """ℓ = log Pr(x | θ) − log Pr(x), both clipped to [PROB_FLOOR, 1]."""
    pr = np.clip(_reference_probability(refs, mode, a), PROB_FLOOR, 1.0)
    return np.log(np.clip(target, PROB_FLOOR, 1.0)) - np.log(pr)


def true_label_probs(
    model: Callable[[torch.Tensor], torch.Tensor], X: object, y: object, batch_size: int = 4096
) -> np.ndarray:
    """Pr(x | θ) = softmax(f(x_i))_{y_i} for every example, as a (n,) float64 array in [0, 1].

    `model(X)` must return logits of shape (n, C). Runs in eval mode under
    `torch.no_grad()` in batches of `batch_size` and restores the model's mode
    (`unlearn_fl.audit.mia._model_logits`); the softmax is taken in float64.
    Raises ValueError when the logits do not match the labels or a label is
    outside [0, C − 1]. Zero examples give an empty array.
    """
    target = torch.as_tensor(y).detach().long().cpu().reshape(-1)
    if target.numel() == 0:
        return np.zeros(0, dtype=np.float64)
    logits = _model_logits(model, X, batch_size).detach().double().cpu()
    if logits.ndim != 2 or logits.shape[0] != target.shape[0]:
        raise ValueError(
            f"model returned logits of shape {tuple(logits.shape)} for {target.shape[0]} labels; "
            "it must return (n, C) logits, one row per example"
        )
    if target.min() < 0 or target.max() >= logits.shape[1]:
        raise ValueError(f"labels must lie in [0, {logits.shape[1] - 1}] for a model with {logits.shape[1]} classes")
    log_p = torch.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    return log_p.exp().numpy()


def reference_probability(ref_probs: object, mode: Mode, a: float = DEFAULT_OFFLINE_A) -> np.ndarray:
    """Pr(x), the reference models' average probability of each example: (n,) float64 in [0, 1].

    ref_probs: (n, K) probabilities Pr(x_i | θ_k) of the true label; NaN where
        reference k does not provide example i (skipped in the mean). A 1-D
        array is read as one reference (K = 1).
    mode: "online" → Pr(x) = mean_k Pr(x | θ_k) over IN and OUT references;
        "offline" → Pr(x) = ½((1 + a)·Pr_OUT(x) + (1 − a)) with Pr_OUT(x) the
        mean over the (OUT) references (Zarifzadeh et al. 2024, offline RMIA).
    a: the offline parameter in [0, 1] (a = 1: Pr(x) = Pr_OUT(x)); ignored online.

    Probabilities are clipped to [1e-30, 1] before averaging. Raises ValueError
    on a wrong shape, an empty matrix, values outside [0, 1], an example with
    no reference at all, an unknown mode or a outside [0, 1].
    """
    _check_mode_a(mode, a)
    return _reference_probability(_ref_probs(ref_probs, None, "ref_probs"), mode, float(a))


def rmia_scores(
    target_probs: object,
    ref_probs: object,
    population_target_probs: object,
    population_ref_probs: object,
    *,
    mode: Mode = "offline",
    a: float = DEFAULT_OFFLINE_A,
    gamma: float = DEFAULT_GAMMA,
    population_index: object | None = None,
) -> np.ndarray:
    """RMIA scores of n candidates against m population samples: (n,) float64 in [0, 1], higher = member.

    target_probs: (n,) Pr(x | θ) of the audited model on the candidates.
    ref_probs: (n, K) Pr(x | θ_k) of the reference models (NaN = missing).
    population_target_probs: (m,) Pr(z | θ) on the population samples.
    population_ref_probs: (m, K') Pr(z | θ_k) of the references on them.
    mode, a: how Pr(·) is formed (`reference_probability`); the same for x and z.
    gamma: x dominates z when LR_θ(x) / LR_θ(z) ≥ gamma (> 0, default 1).
    population_index: (n,) integers; entry i = j ≥ 0 says candidate i IS
        population sample j (leave-one-out: it is not counted against itself
        and its denominator is m − 1); −1 = not in the population. None = all −1.
        The caller guarantees that the indexed rows describe the same example.

    Score(x) = #{z ≠ x : LR_θ(x, z) ≥ γ} / #{z ≠ x}, computed by sorting
    the population's log-likelihood ratios and a binary search per candidate,
    O((n + m) log m) time and O(n + m) memory (Zarifzadeh et al. 2024, Score_MIA).
    Raises ValueError on wrong shapes, empty arrays, NaN targets, probabilities
    outside [0, 1], gamma ≤ 0, a outside [0, 1], an index outside [−1, m − 1],
    or a leave-one-out candidate with nothing else to compare to (m = 1).
    """
    _check_mode_a(mode, a)
    _check_gamma(gamma)
    t = _target_probs(target_probs, "target_probs")
    r = _ref_probs(ref_probs, t.size, "ref_probs")
    pt = _target_probs(population_target_probs, "population_target_probs")
    pr = _ref_probs(population_ref_probs, pt.size, "population_ref_probs")
    n, m = t.size, pt.size

    if population_index is None:
        idx = np.full(n, -1, dtype=np.int64)
    else:
        raw = _as_array(population_index)
        if raw.shape != (n,) or not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
            raise ValueError(
                f"population_index must be {n} integers (one per candidate: its population row, or -1), "
                f"got {np.shape(population_index)} {np.asarray(population_index).dtype}"
            )
        idx = raw.astype(np.int64)
        if np.any((idx < -1) | (idx >= m)):
            raise ValueError(f"population_index entries must lie in [-1, {m - 1}] (-1 = not in the population)")
    loo = idx >= 0
    if m == 1 and loo.any():
        raise ValueError("leave-one-out needs a population of at least 2 samples; add population samples")

    a = float(a)
    llr_x = _log_lr(t, r, mode, a)
    llr_z = _log_lr(pt, pr, mode, a)
    threshold = llr_x - math.log(gamma)  # LR(x)/LR(z) ≥ γ  ⟺  ℓ(z) ≤ ℓ(x) − log γ
    counts = np.searchsorted(np.sort(llr_z), threshold, side="right").astype(np.float64)
    counts[loo] -= llr_z[idx[loo]] <= threshold[loo]  # do not count x against itself
    return counts / np.where(loo, m - 1, m)


def rmia_attack(
    member_target_probs: object,
    member_ref_probs: object,
    nonmember_target_probs: object,
    nonmember_ref_probs: object,
    *,
    mode: Mode = "offline",
    a: float = DEFAULT_OFFLINE_A,
    gamma: float = DEFAULT_GAMMA,
    population: Literal["nonmembers"] | tuple[object, object] = "nonmembers",
    max_roc_points: int = 101,
    fpr_targets: Sequence[float] = DEFAULT_FPR_TARGETS,
) -> AttackResult:
    """RMIA on members vs non-members → `AttackResult` ("rmia-offline" or "rmia-online").

    member_target_probs: (n_m,) Pr(x | θ) of the audited model on members;
    member_ref_probs: (n_m, K) the references' probabilities on them (NaN = missing);
    nonmember_*: the same for the n_n non-members.

    population="nonmembers" (the federated audit's setting, where the
    never-trained holdout is the only population at hand): the population
    samples z are the non-members themselves; members are scored against all
    n_n of them, each non-member against the other n_n − 1 (leave-one-out,
    so n_n ≥ 2). population=(target_probs, ref_probs), shapes (m,) and (m, K'),
    uses an external population disjoint from both groups instead.
    Other arguments as in `rmia_scores`. Use `rmia_scores` directly to feed the
    scores to `empirical_epsilon`.

    γ = 1 with population="nonmembers" (the audit's default): the pairwise
    test "LR(x)/LR(z) ≥ 1" orders candidates exactly as their likelihood
    ratios do, so the attack's threshold family is the one on ℓ(x) = log LR(x)
    itself, and that is what the ROC is computed from. Scoring by the pairwise
    counts instead would divide members by n_n and non-members by n_n − 1:
    members above the top non-member would tie with it, and exact LR ties
    (probabilities saturated at 1 in target and references) would favour
    members, moving the AUC of a model that cannot tell the groups apart away
    from 0.5 (0.58 in a constructed example where half the LRs are exactly 1).
    On ℓ(x), ties count one half (Mann–Whitney) and a model whose member and
    non-member LRs are exchangeable has expected AUC exactly 0.5.

    γ ≠ 1 with population="nonmembers": the pairwise counts are used; equal
    counts get different scores through the two denominators (favouring
    non-members for γ > 1, members for γ < 1). Prefer an external population,
    e.g. part of the holdout set aside, which scores both groups by the same
    function and has no such effect.
    """
    mt = _target_probs(member_target_probs, "member_target_probs")
    mr = _ref_probs(member_ref_probs, mt.size, "member_ref_probs")
    nt = _target_probs(nonmember_target_probs, "nonmember_target_probs")
    nr = _ref_probs(nonmember_ref_probs, nt.size, "nonmember_ref_probs")
    common = dict(mode=mode, a=a, gamma=gamma)
    if isinstance(population, str):
        if population != "nonmembers":
            raise ValueError(
                f"population must be 'nonmembers' or a (target_probs, ref_probs) pair, got {population!r}"
            )
        if nt.size < 2:
            raise ValueError("population='nonmembers' needs at least 2 non-members (leave-one-out); add non-members")
        _check_mode_a(mode, a)
        _check_gamma(gamma)
        if gamma == 1.0:  # the same order as the pairwise test, without its finite-population asymmetry
            member_scores, nonmember_scores = _log_lr(mt, mr, mode, float(a)), _log_lr(nt, nr, mode, float(a))
        else:
            member_scores = rmia_scores(mt, mr, nt, nr, **common)
            nonmember_scores = rmia_scores(nt, nr, nt, nr, population_index=np.arange(nt.size), **common)
    else:
        if not (isinstance(population, tuple) and len(population) == 2):
            raise ValueError("population must be 'nonmembers' or a (target_probs, ref_probs) pair of arrays")
        pop_t, pop_r = population
        member_scores = rmia_scores(mt, mr, pop_t, pop_r, **common)
        nonmember_scores = rmia_scores(nt, nr, pop_t, pop_r, **common)
    return attack_result(f"rmia-{mode}", member_scores, nonmember_scores, max_roc_points, fpr_targets)
