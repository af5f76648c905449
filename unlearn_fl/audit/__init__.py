"""Verification of forgetting (docs/method.md §4): membership inference (loss threshold, LiRA, RMIA),
empirical ε, the verdict with its power, and their result types.

Convention: every attack score is "higher = more likely a member" (forget-set
example D_f rather than never-seen holdout D_h). Numpy inside, the report's
pydantic types of `unlearn_fl.audit.results` at the boundary.
"""

from unlearn_fl.audit.epsilon import (
    clopper_pearson_lower,
    clopper_pearson_upper,
    empirical_epsilon,
    epsilon_from_rates,
    gaussian_dp_epsilon,
    inconclusive_reason,
    max_certifiable_epsilon,
)
from unlearn_fl.audit.lira import ReferenceConfidences, lira_attack, lira_scores, train_reference_confidences
from unlearn_fl.audit.mia import (
    attack_result,
    auc,
    loss_threshold_attack,
    per_example_losses,
    per_example_scaled_logits,
    roc_curve,
    scaled_logits,
    tpr_at_fpr,
)
from unlearn_fl.audit.results import AttackResult, AuditPower, EpsilonEstimate, ModelAudit, RetainedExposure, VerdictResult
from unlearn_fl.audit.rmia import reference_probability, rmia_attack, rmia_scores, true_label_probs
from unlearn_fl.audit.verdict import AccountingEvidence, AttackEvidence, AuditThresholds, auc_resolution, decide_verdict

__all__ = [
    "AccountingEvidence",
    "AttackEvidence",
    "AttackResult",
    "AuditPower",
    "AuditThresholds",
    "EpsilonEstimate",
    "ModelAudit",
    "RetainedExposure",
    "VerdictResult",
    "auc_resolution",
    "reference_probability",
    "rmia_attack",
    "rmia_scores",
    "true_label_probs",
    "ReferenceConfidences",
    "attack_result",
    "auc",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "decide_verdict",
    "empirical_epsilon",
    "epsilon_from_rates",
    "gaussian_dp_epsilon",
    "inconclusive_reason",
    "lira_attack",
    "lira_scores",
    "loss_threshold_attack",
    "max_certifiable_epsilon",
    "per_example_losses",
    "per_example_scaled_logits",
    "roc_curve",
    "scaled_logits",
    "tpr_at_fpr",
    "train_reference_confidences",
]
