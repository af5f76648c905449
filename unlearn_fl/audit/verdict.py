"""The audit verdict: passed, failed or inconclusive, with its reasons and what carried it.

Inputs (docs/method.md §4): for each membership attack, the AUC of forget set D_f (members)
against holdout D_h (non-members) on the model before unlearning, after it, and on the
retrain-from-scratch reference (or chance, 0.5, when an attack has no reference AUC); the
empirical ε lower bounds (`unlearn_fl.audit.epsilon`); the sample sizes; the accountant's ε
when the model was trained with DP; and whether the unlearning changed the weights at all.

Resolution. Under "members and non-members share one law" the Mann–Whitney AUC has standard
deviation sd₀ = √((n_m + n_n + 1) / (12 n_m n_n)); near AUC 0.5 this is also close to the
largest standard deviation an AUC has (Hanley & McNeil 1982). A difference of two AUCs has at
most √2·sd₀ when they come from independent samples; the after/retrain AUCs share their
examples, which only lowers it. The resolution of a comparison is h = z_conf · sd₀ · (√2 with
a retrain reference, 1 against chance).

Rules, in order:

1. Failed if the unlearning left the weights as they were (no surviving step, or weights equal
   to the parent's): the released model is its parent, which holds the withdrawn data.
2. Failed if the audited ε lower bound exceeds the accountant's ε for the same model: one of
   the two is broken (TPR ≤ e^ε·FPR + δ must hold for every attack on a DP model).
3. With fewer than `min_forget_samples` members or `min_holdout_samples` non-members no AUC
   rule applies (the normal approximation behind h is poor): inconclusive unless rules 1, 2, the
   ε rule or accounting decide. Otherwise, failed if an attack tells the unlearned model apart
   from its reference significantly:
   |AUC_after − AUC_ref| − h > allowed (allowed = `max_auc_gap_to_retrain`, or
   `max_auc_without_reference` − 0.5 against chance; either direction: a too-low AUC is the
   "Streisand effect" of over-unlearning). With `epsilon_target`: ε_lower_after > target and,
   with a reference, > ε_lower_retrain + `min_epsilon_gap_to_retrain` (ε_lower is a
   (1 − α)-confidence bound, so this failure is significant too).
4. The empirical audit passes only if it had power and resolution:
   - power: for at least one attack the model *before* unlearning fails rule 3
     (|AUC_before − AUC_ref| − h > allowed), or its ε_lower fails the ε rule. Otherwise the
     audit cannot tell the model that holds D_f from one that never saw it, so "after looks
     like retrain" says nothing: nothing was demonstrably forgotten;
   - every attack's |AUC_after − AUC_ref| ≤ allowed, resolved finer than allowed (h ≤ allowed,
     `check_auc_resolution`), and the ε target certifiable at these sample sizes.
5. Otherwise, with DP, "certified by accounting" passes when the accountant's ε for the whole
   withdrawal is within `epsilon_target`: ε itself when its unit (record or client) covers the
   withdrawal in one unit, else the group-privacy bound k·ε for k units (δ grows to
   k·e^{(k−1)ε}·δ, reported).
6. Inconclusive otherwise, with every reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from unlearn_fl.audit.epsilon import inconclusive_reason
from unlearn_fl.audit.results import AuditPower, VerdictResult

__all__ = ["AuditThresholds", "AttackEvidence", "AccountingEvidence", "auc_null_sd", "auc_resolution", "decide_verdict"]


class AuditThresholds(BaseModel):
    """Acceptance thresholds of the forgetting audit (see the module docstring for the rules)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence of the epsilon bound and AUC resolution.")
    delta: float = Field(1e-5, gt=0, lt=1, description="delta of the empirical epsilon.")
    check_auc_resolution: bool = Field(True, description="Pass only if the AUC is resolved finer than the allowed gap.")


@dataclass(frozen=True)
class AttackEvidence:
    """One attack's AUCs (D_f members vs D_h non-members) on the three models.

    auc_retrain None: the attack has no reference AUC (e.g. RMIA whose reference model *is* the
    retrained one); it is compared with chance, 0.5. auc_before None: the model before
    unlearning was not audited, so this attack cannot show power.
    """

    attack: str
    auc_after: float
    n_members: int
    n_nonmembers: int
    auc_before: float | None = None
    auc_retrain: float | None = None


@dataclass(frozen=True)
class AccountingEvidence:
    """The accountant's (ε, δ) for the released model, in units of `unit`; `group_size` units withdrawn."""

    epsilon: float
    delta: float
    unit: Literal["record", "client"]
    group_size: int


def auc_null_sd(n_members: int, n_nonmembers: int) -> float:
    """Standard deviation of the Mann–Whitney AUC when members and non-members share one law.

    sd₀ = √((n_m + n_n + 1) / (12 · n_m · n_n))  (the U statistic's null variance / (n_m n_n)²).
    """
    if n_members < 1 or n_nonmembers < 1:
        return math.inf
    return math.sqrt((n_members + n_nonmembers + 1) / (12.0 * n_members * n_nonmembers))


def auc_resolution(n_members: int, n_nonmembers: int, confidence: float, with_reference: bool) -> float:
    """h = z_conf · sd₀ · (√2 when two AUCs are compared, 1 against chance): the smallest resolved gap."""
    z = float(stats.norm.ppf(confidence))
    return z * auc_null_sd(n_members, n_nonmembers) * (math.sqrt(2.0) if with_reference else 1.0)


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def _check(a: AttackEvidence) -> None:
    for name, v in (("auc_after", a.auc_after), ("auc_before", a.auc_before), ("auc_retrain", a.auc_retrain)):
        if v is not None and not 0.0 <= v <= 1.0:
            raise ValueError(f"{a.attack}: {name} must be in [0, 1], got {v}")
    if a.n_members < 0 or a.n_nonmembers < 0:
        raise ValueError(f"{a.attack}: sample sizes must be ≥ 0, got {a.n_members} members and {a.n_nonmembers} non-members")


def _power(a: AttackEvidence, th: AuditThresholds) -> AuditPower:
    ref = a.auc_retrain if a.auc_retrain is not None else 0.5
    allowed = th.max_auc_gap_to_retrain if a.auc_retrain is not None else th.max_auc_without_reference - 0.5
    h = auc_resolution(a.n_members, a.n_nonmembers, th.confidence, a.auc_retrain is not None)
    gap = None if a.auc_before is None else abs(a.auc_before - ref)
    return AuditPower(attack=a.attack, reference="retrain" if a.auc_retrain is not None else "chance",
                      auc_before=a.auc_before, auc_reference=ref, observed_gap=gap, resolution=h, allowed_gap=allowed,
                      has_power=gap is not None and gap - h > allowed)


def _ref_words(p: AuditPower) -> str:
    return f"the retrained model's {_fmt(p.auc_reference)}" if p.reference == "retrain" else "chance (0.5)"


def decide_verdict(
    attacks: Sequence[AttackEvidence],
    *,
    epsilon_lower_after: float | None = None,
    epsilon_lower_before: float | None = None,
    epsilon_lower_retrain: float | None = None,
    accounting: AccountingEvidence | None = None,
    unchanged: str | None = None,
    thresholds: AuditThresholds | None = None,
) -> VerdictResult:
    """Verdict, reasons (full sentences with the numbers), power per attack and what decided it.

    attacks: at least one; the first is the headline attack. ε lower bounds: from the headline
    attack's scores (None: not computed, no ε rule). unchanged: why the weights equal the
    parent's (None: they changed). Raises ValueError on AUCs outside [0, 1] or negative sizes.
    """
    th = thresholds if thresholds is not None else AuditThresholds()
    if not attacks:
        raise ValueError("decide_verdict needs at least one attack")
    for a in attacks:
        _check(a)
    power = [_power(a, th) for a in attacks]
    interval = None
    if accounting is not None and epsilon_lower_after is not None:
        interval = (float(epsilon_lower_after), float(accounting.epsilon))

    def result(verdict, reasons, by="none"):
        return VerdictResult(verdict=verdict, reasons=reasons, decided_by=by, power=power, epsilon_interval=interval)

    # 1. Nothing changed: the released model is its parent.
    if unchanged is not None:
        return result("failed", [f"The unlearning left the weights exactly as they were ({unchanged}), so the released "
                                 "model is its parent, which holds the withdrawn data; it is not certified."])

    # 2. Soundness of audit against accounting.
    failures: list[str] = []
    if accounting is not None and epsilon_lower_after is not None and epsilon_lower_after > accounting.epsilon + 1e-9:
        failures.append(f"The audited epsilon lower bound {_fmt(epsilon_lower_after)} exceeds the accountant's epsilon "
                        f"{_fmt(accounting.epsilon)} for this model, which no DP model allows: the audit or the accounting is broken.")

    # 3. Too few samples for the AUC rules; otherwise significant failures.
    blind: list[str] = []
    n_m, n_n = attacks[0].n_members, attacks[0].n_nonmembers
    measured = attacks[0].attack != "none"  # "none": no attack could run at all
    auc_words = f"the MIA AUC of {_fmt(attacks[0].auc_after)} cannot support a verdict" if measured else "no attack could run"
    if n_m < th.min_forget_samples:
        blind.append(f"The forget set of {n_m} rows is too small to audit; need at least {th.min_forget_samples} "
                     f"({auc_words}).")
    if n_n < th.min_holdout_samples:
        blind.append(f"The holdout of {n_n} rows is too small to audit; need at least {th.min_holdout_samples} "
                     f"({auc_words}).")
    few = bool(blind)
    passes: list[str] = []
    for a, p in zip(attacks, [] if few else power):
        d = a.auc_after - p.auc_reference
        if abs(d) - p.resolution > p.allowed_gap:
            direction = "above" if d > 0 else "below"
            failures.append(f"{a.attack}: the MIA AUC after unlearning is {_fmt(a.auc_after)}, {_fmt(abs(d))} {direction} "
                            f"{_ref_words(p)}, more than the allowed {p.allowed_gap:g} beyond the resolution ±{_fmt(p.resolution)}.")
        elif abs(d) <= p.allowed_gap:
            passes.append(f"{a.attack}: the MIA AUC after unlearning is {_fmt(a.auc_after)}, within {p.allowed_gap:g} of "
                          f"{_ref_words(p)} (gap {_fmt(abs(d))}, resolution ±{_fmt(p.resolution)}).")
    target = th.epsilon_target
    has_ref = attacks[0].auc_retrain is not None and epsilon_lower_retrain is not None

    def eps_fails(e: float | None) -> bool:
        if target is None or e is None or e <= target:
            return False
        return not has_ref or e > epsilon_lower_retrain + th.min_epsilon_gap_to_retrain

    if eps_fails(epsilon_lower_after):
        more = (f" and more than {th.min_epsilon_gap_to_retrain:g} above the retrained model's {_fmt(epsilon_lower_retrain)}"
                if has_ref else "")
        failures.append(f"The empirical epsilon lower bound after unlearning is {_fmt(epsilon_lower_after)} at "
                        f"delta={th.delta:g} ({th.confidence:g} confidence), above the target {target:g}{more}.")
    elif target is not None and epsilon_lower_after is not None:
        passes.append(f"The empirical epsilon lower bound after unlearning is {_fmt(epsilon_lower_after)} at delta={th.delta:g} "
                      f"({th.confidence:g} confidence), within the target {target:g}"
                      + (f" or the retrained model's {_fmt(epsilon_lower_retrain)} + {th.min_epsilon_gap_to_retrain:g}." if has_ref else "."))
    if failures:
        return result("failed", failures)

    # 4. Could the audit have seen a failure, and did it see forgetting?
    if not few:
        eps_power = eps_fails(epsilon_lower_before)
        if not any(p.has_power for p in power) and not eps_power:
            for p in power:
                if p.auc_before is None:
                    blind.append(f"{p.attack}: the model before unlearning was not audited, so the audit's power is unknown; "
                                 "nothing was demonstrably forgotten.")
                else:
                    blind.append(f"{p.attack}: the model before unlearning shows no membership signal beyond the allowed gap "
                                 f"(AUC {_fmt(p.auc_before)} vs {_ref_words(p)}; the gap {_fmt(p.observed_gap)} does not exceed "
                                 f"the allowed {p.allowed_gap:g} plus the resolution ±{_fmt(p.resolution)}), so the audit cannot "
                                 "tell it from the reference; nothing was demonstrably forgotten.")
        for a, p in zip(attacks, power):
            if abs(a.auc_after - p.auc_reference) > p.allowed_gap:
                blind.append(f"{a.attack}: the MIA AUC after unlearning is {_fmt(a.auc_after)}, {_fmt(abs(a.auc_after - p.auc_reference))} "
                             f"from {_ref_words(p)}, outside the allowed {p.allowed_gap:g} but within the resolution "
                             f"±{_fmt(p.resolution)}; audit more examples.")
            elif th.check_auc_resolution and p.resolution > p.allowed_gap and (p.has_power or p is power[0]):
                # One sentence per attack: its "within" line would read as a pass beside this one.
                passes = [x for x in passes if not x.startswith(f"{a.attack}: ")]
                blind.append(f"{a.attack}: the MIA AUC after unlearning is {_fmt(a.auc_after)}, within {p.allowed_gap:g} of "
                             f"{_ref_words(p)} (gap {_fmt(abs(a.auc_after - p.auc_reference))}), but with {a.n_members} "
                             f"forget-set and {a.n_nonmembers} holdout examples the comparison is only resolved to "
                             f"±{_fmt(p.resolution)} at {th.confidence:g} confidence, coarser than the allowed gap, so it "
                             "cannot show a pass; audit more examples.")
        if target is not None and epsilon_lower_after is not None:
            reason = inconclusive_reason(n_m, n_n, th.confidence, th.delta, target)
            if reason is not None:
                blind.append(reason)
    if not blind:
        shown = [p for p in power if p.has_power]
        lead = (f"The audit had power: before unlearning, {shown[0].attack} told the model apart from {_ref_words(shown[0])} "
                f"(AUC {_fmt(shown[0].auc_before)}, gap {_fmt(shown[0].observed_gap)} > {shown[0].allowed_gap:g} + "
                f"±{_fmt(shown[0].resolution)})." if shown else
                f"The audit had power: before unlearning the empirical epsilon lower bound was {_fmt(epsilon_lower_before)}, "
                f"above the target {target:g}.")
        return result("passed", [lead] + passes, "audit")

    # 5. Certified by accounting.
    if accounting is not None and target is not None:
        k = max(1, accounting.group_size)
        eps_k = k * accounting.epsilon
        # δ_k = k·e^{(k−1)ε}·δ, in log space: for a few hundred rows e^{(k−1)ε} overflows a float.
        log_delta_k = math.log(k) + (k - 1) * accounting.epsilon + math.log(accounting.delta)
        delta_k = math.exp(log_delta_k) if log_delta_k < 0 else math.inf
        unit = f"{k} {accounting.unit}s, group privacy" if k > 1 else f"one {accounting.unit}"
        line = (f"The accountant's epsilon {_fmt(accounting.epsilon)} per {accounting.unit} at delta={accounting.delta:g} bounds "
                f"the withdrawal ({unit}) at epsilon {_fmt(eps_k)}, delta " + (f"{delta_k:.3g}" if delta_k < 1 else "≥ 1 (no guarantee)"))
        if eps_k <= target and delta_k < 1:
            return result("passed", [line + f", within the target {target:g}: certified by accounting, not by the empirical audit."]
                          + blind + passes, "accounting")
        blind.append(line + f", above the target {target:g}, so accounting cannot certify it either.")
    return result("inconclusive", blind + passes)
