"""Result types of the audit: attacks, empirical ε, one model's audit, the verdict's states.

They belong to the math (`unlearn_fl.audit`); the forgetting report (`unlearn_fl.report.schema`)
composes them. pydantic models, so that they validate at the boundary and export a JSON Schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Verdict", "RocCurve", "AttackResult", "EpsilonEstimate", "ModelAudit"]

Verdict = Literal["passed", "failed", "inconclusive"]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RocCurve(_Block):
    fpr: list[float]
    tpr: list[float]


class AttackResult(_Block):
    """One membership-inference attack of forget-set members against never-seen data."""

    attack: str
    auc: float
    tpr_at_fpr: dict[str, float] = Field(default_factory=dict, description="TPR at FPR targets, keys like '0.01'.")
    roc: RocCurve | None = None
    n_members: int
    n_nonmembers: int


class EpsilonEstimate(_Block):
    """Empirical epsilon lower bound at `delta` (docs/method.md §4), Clopper-Pearson at `confidence`."""

    epsilon_lower: float
    epsilon_point: float | None = None
    delta: float
    confidence: float
    threshold: float | None = None
    tpr: float | None = None
    fpr: float | None = None


class ModelAudit(_Block):
    """Audit of one model (before, after or retrain) on the forget set."""

    attacks: list[AttackResult] = Field(default_factory=list)
    epsilon: EpsilonEstimate | None = None
    criterion_mi: float | None = Field(None, description="Plug-in I(Z;V) of the marginal-unlearning criterion, nats (docs/method.md §2).")
    forget_loss_mean: float | None = None
    holdout_loss_mean: float | None = None
    loss_histogram: dict[str, list[float]] | None = Field(
        None, description="Histogram of per-example losses: keys 'edges', 'forget', 'holdout' (densities)."
    )
