"""The audit verdict: passed, failed or inconclusive, with reasons in full sentences.

Inputs (docs/method.md §4): the membership-inference AUC of forget set D_f vs
holdout D_h on the unlearned model ("after") and, when available, on a model
retrained from scratch without D_f ("retrain"); the empirical ε lower bounds
of the same attack (`unlearn_fl.audit.epsilon`); the sample sizes.

Rules, in order:

1. Inconclusive if there are fewer than `min_forget_samples` members or
   `min_holdout_samples` non-members: any number computed from so few
   examples is noise.
2. Failed if
   - with a retrain reference, |AUC_after − AUC_retrain| > `max_auc_gap_to_retrain`
     (the attack tells the unlearned model apart from retraining, in either
     direction: a too-low AUC is the "Streisand effect" of over-unlearning);
   - without a reference, |AUC_after − 0.5| > `max_auc_without_reference` − 0.5;
   - or, when `epsilon_target` is set, ε_lower_after > ε_target, and, with a
     reference, ε_lower_after > ε_lower_retrain + `min_epsilon_gap_to_retrain`
     (a leak the retrained model shows as well is not the forget set's trace).
   ε_lower is a (1 − α)-confidence lower bound, so an ε failure is significant.
3. Inconclusive if nothing failed but the audit could not have seen a failure:
   - the AUC's resolution, z_{conf} · sd₀ with the null standard deviation of
     the Mann–Whitney AUC sd₀ = √((n_m + n_n + 1) / (12 n_m n_n)), exceeds the
     allowed AUC deviation (`check_auc_resolution`);
   - or the largest ε the sample sizes could ever certify is below `epsilon_target`
     (`unlearn_fl.audit.epsilon.max_certifiable_epsilon`).
4. Passed otherwise.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from unlearn_fl.audit.epsilon import inconclusive_reason
from unlearn_fl.audit.results import Verdict

__all__ = ["AuditThresholds", "auc_null_sd", "decide_verdict"]


class AuditThresholds(BaseModel):
    """Acceptance thresholds of the forgetting audit (see the module docstring for the rules)."""

    model_config = ConfigDict(extra="forbid")

    max_auc_gap_to_retrain: float = Field(0.05, gt=0, lt=0.5, description="Allowed |AUC_after − AUC_retrain|.")
    max_auc_without_reference: float = Field(
        0.60, gt=0.5, le=1.0, description="Without a retrain reference, AUC must lie in [1 − this, this]."
    )
    epsilon_target: float | None = Field(None, gt=0, description="Largest acceptable empirical epsilon lower bound.")
    min_epsilon_gap_to_retrain: float = Field(
        0.5, ge=0, description="With a reference, epsilon fails only if it exceeds the retrain's by more than this."
    )
    min_forget_samples: int = Field(50, ge=2, description="Fewest forget-set (member) examples for any verdict.")
    min_holdout_samples: int = Field(50, ge=2, description="Fewest holdout (non-member) examples for any verdict.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence of the epsilon bound and AUC resolution.")
    delta: float = Field(1e-5, gt=0, lt=1, description="delta of the empirical epsilon.")
    check_auc_resolution: bool = Field(True, description="Pass only if the AUC is resolved finer than the allowed gap.")


def auc_null_sd(n_members: int, n_nonmembers: int) -> float:
    """Standard deviation of the Mann–Whitney AUC when members and non-members share one law.

    sd₀ = √((n_m + n_n + 1) / (12 · n_m · n_n))  (the U statistic's null variance / (n_m n_n)²).
    """
    if n_members < 1 or n_nonmembers < 1:
        return math.inf
    return math.sqrt((n_members + n_nonmembers + 1) / (12.0 * n_members * n_nonmembers))


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def decide_verdict(
    auc_after: float,
    auc_retrain: float | None,
    epsilon_lower_after: float | None,
    n_members: int,
    n_nonmembers: int,
    thresholds: AuditThresholds | None = None,
    epsilon_lower_retrain: float | None = None,
) -> tuple[Verdict, list[str]]:
    """Verdict and reasons (full sentences with the numbers) for one unlearned model.

    auc_after / auc_retrain: MIA AUC of D_f (members) vs D_h (non-members) on
    the unlearned and the retrained model (None: no reference).
    epsilon_lower_after / epsilon_lower_retrain: empirical ε lower bounds
    (None: not computed; then no ε rule applies).
    n_members / n_nonmembers: the audit's sample sizes.
    """
    th = thresholds if thresholds is not None else AuditThresholds()
    if not 0.0 <= auc_after <= 1.0:
        raise ValueError(f"auc_after must be in [0, 1], got {auc_after}")
    if auc_retrain is not None and not 0.0 <= auc_retrain <= 1.0:
        raise ValueError(f"auc_retrain must be in [0, 1], got {auc_retrain}")
    if n_members < 0 or n_nonmembers < 0:
        raise ValueError(f"sample sizes must be ≥ 0, got {n_members} members and {n_nonmembers} non-members")

    # 1. Too few samples for any conclusion.
    few: list[str] = []
    if n_members < th.min_forget_samples:
        few.append(
            f"Only {n_members} forget-set examples were audited, fewer than the required {th.min_forget_samples}, "
            f"so the MIA AUC of {_fmt(auc_after)} cannot support a verdict."
        )
    if n_nonmembers < th.min_holdout_samples:
        few.append(
            f"Only {n_nonmembers} holdout examples were audited, fewer than the required {th.min_holdout_samples}, "
            f"so the MIA AUC of {_fmt(auc_after)} cannot support a verdict."
        )
    if few:
        return "inconclusive", few

    # 2. Failures and passes, rule by rule.
    failures: list[str] = []
    passes: list[str] = []
    if auc_retrain is not None:
        allowed = th.max_auc_gap_to_retrain
        gap = auc_after - auc_retrain
        if abs(gap) > allowed:
            direction = "above" if gap > 0 else "below"
            failures.append(
                f"The MIA AUC after unlearning is {_fmt(auc_after)}, {_fmt(abs(gap))} {direction} the retrained "
                f"model's {_fmt(auc_retrain)}, more than the allowed gap of {allowed:g}."
            )
        else:
            passes.append(
                f"The MIA AUC after unlearning is {_fmt(auc_after)}, within {allowed:g} of the retrained model's "
                f"{_fmt(auc_retrain)} (gap {_fmt(abs(gap))})."
            )
    else:
        allowed = th.max_auc_without_reference - 0.5
        dev = auc_after - 0.5
        if abs(dev) > allowed:
            side = "above" if dev > 0 else "below"
            failures.append(
                f"Without a retrained reference, the MIA AUC after unlearning is {_fmt(auc_after)}, "
                f"{_fmt(abs(dev))} {side} chance (0.5), more than the allowed {allowed:g} "
                f"(AUC must lie in [{1 - th.max_auc_without_reference:g}, {th.max_auc_without_reference:g}])."
            )
        else:
            passes.append(
                f"Without a retrained reference, the MIA AUC after unlearning is {_fmt(auc_after)}, within "
                f"{allowed:g} of chance (0.5)."
            )

    target = th.epsilon_target
    if target is not None and epsilon_lower_after is not None:
        over_target = epsilon_lower_after > target
        if over_target and epsilon_lower_retrain is not None:
            margin = epsilon_lower_retrain + th.min_epsilon_gap_to_retrain
            if epsilon_lower_after > margin:
                failures.append(
                    f"The empirical epsilon lower bound after unlearning is {_fmt(epsilon_lower_after)} at "
                    f"delta={th.delta:g} ({th.confidence:g} confidence), above the target {target:g} and more than "
                    f"{th.min_epsilon_gap_to_retrain:g} above the retrained model's {_fmt(epsilon_lower_retrain)}."
                )
            else:
                passes.append(
                    f"The empirical epsilon lower bound after unlearning is {_fmt(epsilon_lower_after)}, above the "
                    f"target {target:g}, but the retrained model's is {_fmt(epsilon_lower_retrain)}, so the excess is "
                    f"not more than {th.min_epsilon_gap_to_retrain:g} beyond what retraining also shows."
                )
        elif over_target:
            failures.append(
                f"The empirical epsilon lower bound after unlearning is {_fmt(epsilon_lower_after)} at "
                f"delta={th.delta:g} ({th.confidence:g} confidence), above the target {target:g}."
            )
        else:
            passes.append(
                f"The empirical epsilon lower bound after unlearning is {_fmt(epsilon_lower_after)} at "
                f"delta={th.delta:g} ({th.confidence:g} confidence), not above the target {target:g}."
            )

    if failures:
        return "failed", failures

    # 3. Nothing failed: could the audit have seen a failure?
    blind: list[str] = []
    if th.check_auc_resolution:
        z = float(stats.norm.ppf(th.confidence))
        resolution = z * auc_null_sd(n_members, n_nonmembers)
        if resolution > allowed:
            blind.append(
                f"With {n_members} forget-set and {n_nonmembers} holdout examples the MIA AUC is only resolved to "
                f"±{_fmt(resolution)} at {th.confidence:g} confidence, coarser than the allowed deviation of "
                f"{allowed:g}, so passing the AUC rule says little; audit more examples."
            )
    if target is not None and epsilon_lower_after is not None:
        reason = inconclusive_reason(n_members, n_nonmembers, th.confidence, th.delta, target)
        if reason is not None:
            blind.append(reason)
    if blind:
        return "inconclusive", blind + passes

    return "passed", passes
