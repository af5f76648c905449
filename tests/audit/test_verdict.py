"""Verdict rules: inconclusive on too little data, failed on AUC gap or epsilon, passed otherwise."""

from __future__ import annotations

import pydantic
import pytest

from unlearn_fl.audit.verdict import AuditThresholds, auc_null_sd, decide_verdict


def test_defaults():
    th = AuditThresholds()
    assert th.max_auc_gap_to_retrain == 0.05 and th.max_auc_without_reference == 0.60
    assert th.epsilon_target is None and th.confidence == 0.95
    with pytest.raises(pydantic.ValidationError):
        AuditThresholds(max_auc_without_reference=0.4)
    with pytest.raises(pydantic.ValidationError):
        AuditThresholds(unknown_field=1)


def test_auc_null_sd():
    assert auc_null_sd(100, 100) == pytest.approx((201 / 120000) ** 0.5)


def test_passed_with_reference():
    verdict, reasons = decide_verdict(0.53, 0.51, None, 500, 500, AuditThresholds())
    assert verdict == "passed"
    assert len(reasons) == 1 and "0.530" in reasons[0] and "0.510" in reasons[0] and reasons[0].endswith(".")


def test_failed_auc_gap_either_direction():
    verdict, reasons = decide_verdict(0.70, 0.52, None, 500, 500)
    assert verdict == "failed" and "0.180 above" in reasons[0] and "0.05" in reasons[0]
    verdict, reasons = decide_verdict(0.40, 0.52, None, 500, 500)
    assert verdict == "failed" and "below" in reasons[0]


def test_without_reference_uses_distance_to_chance():
    assert decide_verdict(0.58, None, None, 500, 500)[0] == "passed"
    verdict, reasons = decide_verdict(0.65, None, None, 500, 500)
    assert verdict == "failed" and "0.650" in reasons[0] and "[0.4, 0.6]" in reasons[0]
    assert decide_verdict(0.35, None, None, 500, 500)[0] == "failed"


def test_too_few_samples_is_inconclusive_with_numbers():
    verdict, reasons = decide_verdict(0.95, 0.5, 3.0, 12, 400, AuditThresholds(min_forget_samples=50))
    assert verdict == "inconclusive"
    assert len(reasons) == 1 and "12 forget-set examples" in reasons[0] and "50" in reasons[0]
    verdict, reasons = decide_verdict(0.5, 0.5, 0.0, 10, 10)
    assert verdict == "inconclusive" and len(reasons) == 2


def test_coarse_auc_resolution_blocks_a_pass_but_not_a_failure():
    # 60 + 60 examples: AUC resolved to ≈ ±0.087 at 95 %, coarser than the allowed gap 0.05.
    verdict, reasons = decide_verdict(0.52, 0.51, None, 60, 60)
    assert verdict == "inconclusive"
    assert "±0.0" in reasons[0] and "60 forget-set" in reasons[0]
    assert any("within 0.05" in r for r in reasons)  # the observed pass is still reported
    assert decide_verdict(0.90, 0.51, None, 60, 60)[0] == "failed"
    assert decide_verdict(0.52, 0.51, None, 60, 60, AuditThresholds(check_auc_resolution=False))[0] == "passed"


def test_epsilon_rules():
    th = AuditThresholds(epsilon_target=1.0)
    assert decide_verdict(0.5, None, 0.2, 1000, 1000, th)[0] == "passed"
    verdict, reasons = decide_verdict(0.55, None, 2.5, 1000, 1000, th)
    assert verdict == "failed" and "2.500" in reasons[0] and "target 1" in reasons[0]
    # With a reference: above target but the retrained model leaks as much → not a failure.
    verdict, reasons = decide_verdict(0.52, 0.51, 2.5, 1000, 1000, th, epsilon_lower_retrain=2.3)
    assert verdict == "passed" and any("2.300" in r for r in reasons)
    verdict, reasons = decide_verdict(0.52, 0.51, 2.5, 1000, 1000, th, epsilon_lower_retrain=0.5)
    assert verdict == "failed" and "0.500" in reasons[0]
    # Both the AUC and epsilon rules can fail together; every reason is reported.
    verdict, reasons = decide_verdict(0.8, 0.5, 2.5, 1000, 1000, th)
    assert verdict == "failed" and len(reasons) == 2


def test_epsilon_target_not_certifiable_is_inconclusive():
    th = AuditThresholds(epsilon_target=8.0, check_auc_resolution=False)
    verdict, reasons = decide_verdict(0.5, None, 0.0, 200, 200, th)
    assert verdict == "inconclusive" and "below the target epsilon 8" in reasons[0]


def test_input_errors():
    with pytest.raises(ValueError, match="auc_after"):
        decide_verdict(1.2, None, None, 100, 100)
    with pytest.raises(ValueError, match="auc_retrain"):
        decide_verdict(0.5, -0.1, None, 100, 100)
