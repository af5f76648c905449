"""Result types of the audit: attacks, empirical ε, one model's audit, the verdict's states.

They belong to the math (`unlearn_fl.audit`); the forgetting report (`unlearn_fl.report.schema`)
composes them. pydantic models, so that they validate at the boundary and export a JSON Schema.
"""

from __future__ import annotations

import math
import typing
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

__all__ = ["Verdict", "RocCurve", "AttackResult", "EpsilonEstimate", "ModelAudit", "json_can_carry"]

Verdict = Literal["passed", "failed", "inconclusive"]


def _non_finite(v) -> bool:
    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, dict):
        return any(_non_finite(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return any(_non_finite(x) for x in v)
    return False


def json_can_carry(cls, v, info: ValidationInfo):
    """A field validator for every block a forgetting report holds: JSON has no NaN or infinity (pydantic
    writes them as null), so a report holding one could not be read back.

    A non-finite number in a field that may be null becomes null (not measured); anywhere else (a
    required number, or inside a list or mapping) it is refused when the block is built, rather than
    written into a report that `unlearn-fl report` cannot load.
    """
    if isinstance(v, float) and not math.isfinite(v) and type(None) in typing.get_args(cls.model_fields[info.field_name].annotation):
        return None
    if _non_finite(v):
        raise ValueError(f"{info.field_name} holds {v!r}, a number a JSON report cannot carry (NaN or infinity)")
    return v


class _Plain(BaseModel):
    """The verdict's working values (an unresolvable comparison has resolution ∞): never written as they are."""

    model_config = ConfigDict(extra="forbid")


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")

    _finite = field_validator("*", mode="after")(classmethod(json_can_carry))


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
    attack: str | None = Field(None, description="The attack whose scores gave this bound (the strongest, when several ran).")
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
    reference_cost: dict | None = Field(
        None, description="RMIA references the site trained for this audit: count, mode, examples processed, seconds.")
    score_histogram: dict[str, list[float]] | None = Field(
        None, description="Histogram of per-example RMIA scores in [0, 1]: keys 'edges', 'forget', 'holdout' (shares).")
    loss_histogram: dict[str, list[float]] | None = Field(
        None, description="Histogram of per-example losses: keys 'edges', 'forget', 'holdout' (densities)."
    )


class AuditPower(_Plain):
    """Could this attack have seen forgetting? The model before unlearning against the reference.

    The attack resolves an AUC difference of `resolution` at the verdict's confidence (half-width
    of the one-sided interval, docs/method.md §4). It has power when the model before unlearning
    is told apart from the reference by more than the allowed gap plus that resolution: only
    then is there something the unlearning demonstrably removed.
    """

    attack: str
    reference: Literal["retrain", "chance"] = Field(description="What the AUCs are compared with.")
    auc_before: float | None = Field(None, description="The attack's AUC on the model before unlearning (None: not audited).")
    auc_reference: float = Field(description="The retrained model's AUC, or 0.5 (chance).")
    observed_gap: float | None = Field(None, description="|AUC_before − AUC_reference|.")
    resolution: float = Field(description="Smallest AUC difference the sample sizes resolve at the verdict's confidence.")
    allowed_gap: float = Field(description="The largest AUC difference the verdict accepts as 'like the reference'.")
    has_power: bool


class RetainedExposure(_Block):
    """A retained site's own rows (members) against its holdout, before and after unlearning.

    Unlearning one site can raise the membership exposure of the others' data; `increased` is
    True when AUC_after − AUC_before exceeds the resolution of that difference.
    """

    client: int
    attack: str = "loss-threshold"
    auc_before: float
    auc_after: float
    n_members: int
    n_nonmembers: int
    resolution: float
    increased: bool


class VerdictResult(_Plain):
    """The verdict, its reasons (full sentences with the numbers), and what carried the decision."""

    verdict: Verdict
    reasons: list[str] = Field(default_factory=list)
    decided_by: Literal["audit", "accounting", "none"] = Field(
        "none", description="'audit': the empirical audit passed with power; 'accounting': the accountant's epsilon "
                            "certified it; 'none': not passed.")
    power: list[AuditPower] = Field(default_factory=list)
    epsilon_interval: tuple[float, float] | None = Field(
        None, description="[audited epsilon lower bound, accountant epsilon] for the released model, when DP-trained.")
