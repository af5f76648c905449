"""Verdict rules: power before passing, significance before failing, accounting, unchanged weights."""

from __future__ import annotations

import math

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from unlearn_fl.audit.verdict import (
    AccountingEvidence,
    AttackEvidence,
    AuditThresholds,
    auc_null_sd,
    auc_resolution,
    decide_verdict,
)


def loss(after, before=None, retrain=None, n=500, m=None, name="loss-threshold"):
    return AttackEvidence(attack=name, auc_after=after, auc_before=before, auc_retrain=retrain, n_members=n,
                          n_nonmembers=n if m is None else m)


def test_defaults():
    th = AuditThresholds()
    assert th.max_auc_gap_to_retrain == 0.05 and th.max_auc_without_reference == 0.60
    assert th.epsilon_target is None and th.confidence == 0.95
    with pytest.raises(pydantic.ValidationError):
        AuditThresholds(max_auc_without_reference=0.4)
    with pytest.raises(pydantic.ValidationError):
        AuditThresholds(unknown_field=1)


def test_null_sd_and_resolution_closed_forms():
    assert auc_null_sd(100, 100) == pytest.approx((201 / 120000) ** 0.5)
    z = stats.norm.ppf(0.95)
    assert auc_resolution(100, 100, 0.95, with_reference=False) == pytest.approx(z * (201 / 120000) ** 0.5)
    assert auc_resolution(100, 100, 0.95, with_reference=True) == pytest.approx(math.sqrt(2) * z * (201 / 120000) ** 0.5)


def test_passed_needs_power_and_says_what_carried_it():
    v = decide_verdict([loss(0.53, before=0.80, retrain=0.51)])
    assert v.verdict == "passed" and v.decided_by == "audit"
    assert v.power[0].has_power and v.power[0].observed_gap == pytest.approx(0.29)
    assert "had power" in v.reasons[0] and "0.800" in v.reasons[0] and any("0.530" in r for r in v.reasons)


def test_blind_audit_is_inconclusive_with_the_numbers():
    # The default demo's situation: nothing memorised, so "after looks like retrain" shows nothing.
    v = decide_verdict([loss(0.50, before=0.497, retrain=0.474)])
    assert v.verdict == "inconclusive" and v.decided_by == "none" and not v.power[0].has_power
    assert "no membership signal beyond the allowed gap" in v.reasons[0] and "0.497" in v.reasons[0] and "0.474" in v.reasons[0]
    # A resolved gap that is within the allowed one is no power either: the model before would pass.
    assert decide_verdict([loss(0.50, before=0.54, retrain=0.50, n=5000)]).verdict == "inconclusive"
    v = decide_verdict([loss(0.50, retrain=0.50)])
    assert v.verdict == "inconclusive" and "not audited" in v.reasons[0]


def test_failure_must_be_significant():
    v = decide_verdict([loss(0.70, before=0.9, retrain=0.52)])
    assert v.verdict == "failed" and "0.180 above" in v.reasons[0]
    assert decide_verdict([loss(0.40, before=0.9, retrain=0.52)]).verdict == "failed"  # Streisand effect
    # 60 + 60 examples: a gap of 0.12 is outside 0.05 but inside the resolution (±0.122): not a failure.
    h = auc_resolution(60, 60, 0.95, True)
    assert 0.12 - h < 0.05 < 0.12
    v = decide_verdict([loss(0.63, before=0.95, retrain=0.51, n=60)])
    assert v.verdict == "inconclusive" and any("within the resolution" in r for r in v.reasons)
    assert decide_verdict([loss(0.90, before=0.95, retrain=0.51, n=60)]).verdict == "failed"


def test_without_reference_distance_to_chance():
    assert decide_verdict([loss(0.55, before=0.9)]).verdict == "passed"
    v = decide_verdict([loss(0.70, before=0.9)])
    assert v.verdict == "failed" and "chance (0.5)" in v.reasons[0]
    assert decide_verdict([loss(0.30, before=0.9)]).verdict == "failed"


def test_coarse_resolution_blocks_a_pass():
    v = decide_verdict([loss(0.52, before=0.99, retrain=0.51, n=60)])
    assert v.verdict == "inconclusive" and any("±0.1" in r for r in v.reasons)
    # One sentence for the attack, naming the gap and why it cannot pass; no separate "within" line beside it.
    (line,) = [r for r in v.reasons if r.startswith("loss-threshold:")]
    assert "gap 0.010" in line and "cannot show a pass" in line
    th = AuditThresholds(check_auc_resolution=False)
    assert decide_verdict([loss(0.52, before=0.99, retrain=0.51, n=60)], thresholds=th).verdict == "passed"


def test_too_few_samples():
    v = decide_verdict([loss(0.95, before=0.99, retrain=0.5, n=12, m=400)], thresholds=AuditThresholds(min_forget_samples=50))
    assert v.verdict == "inconclusive" and "forget set of 12 rows is too small to audit; need at least 50" in v.reasons[0]


def test_a_second_attack_can_carry_the_power():
    # The population attack sees nothing; the per-example one sees the memorised rows before, not after.
    v = decide_verdict([loss(0.50, before=0.51, retrain=0.50), loss(0.53, before=0.85, name="rmia-offline")])
    assert v.verdict == "passed" and [p.has_power for p in v.power] == [False, True]
    # ... and a second attack's significant failure fails the verdict.
    v = decide_verdict([loss(0.50, before=0.51, retrain=0.50), loss(0.80, before=0.85, name="rmia-offline")])
    assert v.verdict == "failed" and v.reasons[0].startswith("rmia-offline")


def test_unchanged_weights_are_never_certified():
    v = decide_verdict([loss(0.53, before=0.80, retrain=0.51)], unchanged="no unlearning round survived")
    assert v.verdict == "failed" and "no unlearning round survived" in v.reasons[0]


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 1), st.one_of(st.none(), st.floats(0, 1)), st.integers(2, 5000), st.integers(2, 5000),
       st.one_of(st.none(), st.floats(0, 5)))
def test_a_model_audited_like_its_parent_never_passes_the_audit(auc, ref, n_m, n_n, eps):
    """Power needs the model before to fail the rule the model after passes: equal evidence cannot do both."""
    v = decide_verdict([loss(auc, before=auc, retrain=ref, n=n_m, m=n_n)], epsilon_lower_after=eps,
                       epsilon_lower_before=eps, thresholds=AuditThresholds(epsilon_target=1.0))
    assert v.verdict != "passed"


def test_epsilon_rules():
    th = AuditThresholds(epsilon_target=1.0)
    assert decide_verdict([loss(0.5, before=0.9)], epsilon_lower_after=0.2, thresholds=th).verdict == "passed"
    v = decide_verdict([loss(0.55, before=0.9)], epsilon_lower_after=2.5, thresholds=th)
    assert v.verdict == "failed" and "2.500" in v.reasons[0] and "target 1" in v.reasons[0]
    # Above target, but the retrained model leaks as much: not a failure.
    v = decide_verdict([loss(0.52, before=0.9, retrain=0.51)], epsilon_lower_after=2.5, epsilon_lower_retrain=2.3, thresholds=th)
    assert v.verdict == "passed" and any("2.300" in r for r in v.reasons)
    v = decide_verdict([loss(0.52, before=0.9, retrain=0.51)], epsilon_lower_after=2.5, epsilon_lower_retrain=0.5, thresholds=th)
    assert v.verdict == "failed" and "0.500" in v.reasons[0]
    # The epsilon of the model before unlearning can carry the power on its own.
    v = decide_verdict([loss(0.5, before=0.52)], epsilon_lower_after=0.1, epsilon_lower_before=2.0, thresholds=th)
    assert v.verdict == "passed" and "2.000" in v.reasons[0]


def test_accounting_bounds_the_audit_and_can_certify():
    th = AuditThresholds(epsilon_target=2.0)
    acc = AccountingEvidence(epsilon=1.5, delta=1e-5, unit="client", group_size=1)
    # An audited lower bound above the accountant's epsilon: one of them is broken.
    v = decide_verdict([loss(0.5, before=0.9)], epsilon_lower_after=1.8, accounting=acc, thresholds=th)
    assert v.verdict == "failed" and "broken" in v.reasons[0] and v.epsilon_interval == (1.8, 1.5)
    # No power, but a one-site withdrawal under client-level DP with epsilon within target: certified.
    v = decide_verdict([loss(0.50, before=0.50, retrain=0.49)], epsilon_lower_after=0.1, accounting=acc, thresholds=th)
    assert v.verdict == "passed" and v.decided_by == "accounting" and "certified by accounting" in v.reasons[0]
    assert any("no membership signal beyond the allowed gap" in r for r in v.reasons)  # the audit's blindness is still said
    # Record-level DP and 40 rows withdrawn: group privacy 40 * 1.5 is far above the target.
    rec = AccountingEvidence(epsilon=1.5, delta=1e-5, unit="record", group_size=40)
    v = decide_verdict([loss(0.50, before=0.50, retrain=0.49)], epsilon_lower_after=0.1, accounting=rec, thresholds=th)
    assert v.verdict == "inconclusive" and any("group privacy" in r and "60.000" in r for r in v.reasons)
    # 230 rows at ε = 6: k·ε is within a huge target, but δ_k = k·e^{(k−1)ε}·δ is far above 1 (and overflows a float).
    many = AccountingEvidence(epsilon=6.0, delta=1e-5, unit="record", group_size=230)
    v = decide_verdict([loss(0.50, before=0.50, retrain=0.49)], epsilon_lower_after=0.0, accounting=many,
                       thresholds=AuditThresholds(epsilon_target=2000.0))
    assert v.verdict == "inconclusive" and any("≥ 1 (no guarantee)" in r for r in v.reasons)


def test_input_errors():
    with pytest.raises(ValueError, match="auc_after"):
        decide_verdict([loss(1.2)])
    with pytest.raises(ValueError, match="auc_retrain"):
        decide_verdict([loss(0.5, retrain=-0.1)])
    with pytest.raises(ValueError, match="at least one attack"):
        decide_verdict([])
