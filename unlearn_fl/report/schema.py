"""The forgetting report: one pydantic model, exported as JSON Schema.

Every run (data-point or feature unlearning) produces one `ForgettingReport`.
The keys named in the Foundation issue are a contract: add fields freely,
never rename or drop one without bumping `SCHEMA_VERSION`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from unlearn_fl.accounting.results import AccountingBlock
from unlearn_fl.audit.results import (AttackResult, AuditPower, EpsilonEstimate, ModelAudit, RetainedExposure, RocCurve,
                                      Verdict, json_can_carry)

__all__ = ["AccountingBlock", "AttackResult", "EpsilonEstimate", "ModelAudit", "RocCurve", "Verdict",
           "ForgettingReport", "SCHEMA_VERSION", "json_schema"]

SCHEMA_VERSION = "1.0"


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Every report must read back: JSON has no NaN or infinity (audit.results.json_can_carry).
    _finite = field_validator("*", mode="after")(classmethod(json_can_carry))


class RequestBlock(_Block):
    """What was asked to be forgotten."""

    request_id: str
    kind: Literal["data", "feature"]
    client_ids: list[int] = Field(default_factory=list)
    n_forget: int = Field(ge=0, description="Number of forgotten examples (rows for feature unlearning).")
    forget_fraction: float | None = None
    reason: str | None = None
    scope: Literal["client", "fraction", "records", "feature"] | None = Field(
        None, description="Whole sites, a fraction of their rows, or rows named by record id (at the site).")
    records_digest: str | None = Field(
        None, description="Record-level requests: salted sha256 of the named ids, computed at the site (never the ids).")


class ModelBlock(_Block):
    """Which registered model version this report belongs to, and its parent."""

    name: str
    parent_version: str | None = None
    version: str | None = None
    run_id: str | None = None


class UtilityBlock(_Block):
    """Accuracies of the model before unlearning, after it, and of the retrain reference (null: no rows to measure on)."""

    test_acc_before: float | None
    test_acc_after: float | None
    test_acc_retrain: float | None = None
    retain_acc_before: float | None = None
    retain_acc_after: float | None
    retain_acc_retrain: float | None = None
    forget_acc_before: float | None
    forget_acc_after: float | None
    forget_acc_retrain: float | None = None


class AuditBlock(_Block):
    """Verification of forgetting (Foundation keys first, details after)."""

    mia_auc_before: float | None
    mia_auc_after: float | None
    mia_auc_retrain: float | None = None
    delta: float
    epsilon_lower: float | None = None
    epsilon_lower_before: float | None = None
    epsilon_lower_retrain: float | None = None
    confidence: float | None = None
    tpr_at_fpr: dict[str, float] = Field(default_factory=dict)
    criterion_mi_before: float | None = None
    criterion_mi_after: float | None = None
    criterion_mi_retrain: float | None = None
    forget_loss_distance_to_retrain: float | None = Field(
        None, description="Kolmogorov-Smirnov-style distance between the after and retrain forget-loss laws (from histograms)."
    )
    verdict: Verdict
    reasons: list[str] = Field(default_factory=list)
    decided_by: Literal["audit", "accounting", "none"] = Field(
        "none", description="What carried a passed verdict: the empirical audit (with power) or the accountant's epsilon.")
    power: list[AuditPower] = Field(default_factory=list, description="Per attack: could it tell the model before unlearning from the reference?")
    epsilon_interval: tuple[float, float | None] | None = Field(
        None, description="[audited epsilon lower bound, accountant epsilon] of the released model, when DP-trained "
                          "(the upper end is null when the accountant's epsilon is unbounded).")
    unchanged: str | None = Field(None, description="Why the released weights equal the parent's (no surviving unlearning step), if they do.")
    retained_exposure: list[RetainedExposure] = Field(
        default_factory=list, description="Each retained site's own rows vs its holdout, before and after unlearning.")
    exposure_increased: list[int] = Field(default_factory=list, description="Retained sites whose exposure rose beyond the resolution.")
    before: ModelAudit | None = None
    after: ModelAudit | None = None
    retrain: ModelAudit | None = None


class CostBlock(_Block):
    """Wall-clock cost, unlearning and retraining measured side by side in one engine."""

    unlearn_seconds: float
    retrain_seconds: float | None = None
    speedup: float | None = None
    unlearn_rounds: int | None = None
    retrain_rounds: int | None = None
    train_seconds: float | None = None
    monitor_seconds: float | None = Field(
        None, description="Per-round forget-set evaluation during unlearning; not counted in unlearn_seconds."
    )
    unlearn_bytes: int | None = Field(
        None, description="Bytes of model arrays exchanged by the unlearning, both ways (per-round monitoring excluded).")
    retrain_bytes: int | None = Field(None, description="Bytes of model arrays exchanged by the retrain reference, both ways.")


class ParetoPoint(_Block):
    t: float
    s_auc: float
    utility: float
    mi: float | None = None
    distortion: float | None = None
    s_auc_gbm: float | None = Field(None, description="AUC of the gradient-boosting probe behind `mi` (out-of-fold).")
    mi_gaussian: float | None = Field(None, description="The guarded Gaussian MI proxy, nats.")
    lam: float | None = Field(None, description="Weight λ of Î(Z; S) in training (regularised training; null: a projection at t).")


class FeatureBlock(_Block):
    """Feature unlearning: dependence of Z on S and task utility, before and after (docs/method.md §3).

    `mi_*` is the estimator named in `mi_estimator` (reports before it was added: the Gaussian MI). `disagreement`
    is set whenever an MI estimate moved against every probe's AUC or two probes' AUCs moved apart (docs/method.md
    §3, "Checking").
    """

    sensitive: str
    method: str
    t: float
    mi_before: float
    mi_after: float
    s_auc_before: float
    s_auc_after: float
    utility_before: float
    utility_after: float
    pareto: list[ParetoPoint] = Field(default_factory=list)
    mi_estimator: str | None = Field(None, description="What `mi_before`/`mi_after` are (null: the Gaussian MI of older reports).")
    mi_chance: float | None = Field(None, description="The MI estimator's chance level (S permuted), nats; estimates "
                                                      "near it are indistinguishable from 0.")
    mi_gaussian_before: float | None = Field(None, description="The guarded Gaussian MI proxy before, nats (a second opinion).")
    mi_gaussian_after: float | None = Field(None, description="The guarded Gaussian MI proxy after, nats.")
    s_auc_chance: float | None = Field(None, description="The S-probe's chance level on the same rows: the 95% point of "
                                                         "its AUC with S permuted 19 times; an `s_auc_after` at or below "
                                                         "it is indistinguishable from no dependence.")
    s_auc_gbm_before: float | None = Field(None, description="A gradient-boosting probe's out-of-fold AUC for S before.")
    s_auc_gbm_after: float | None = Field(None, description="The gradient-boosting probe's AUC after.")
    estimates_agree: bool | None = Field(None, description="False when an MI estimate moved against every probe's AUC, "
                                                           "or two probes' AUCs moved apart.")
    disagreement: str | None = Field(None, description="Which estimate moved against the probes, and by how much.")
    outcome: str | None = Field(None, description="What Z is: null or 'features' (input columns), 'embedding' (a "
                                                 "model's last hidden layer) or 'scores' (its outputs).")
    lam: float | None = Field(None, description="Weight λ of Î(Z; S) when S was removed in training (t is then 0).")


class RoundLog(_Block):
    """One federated round, for the curves in the HTML report."""

    phase: Literal["train", "unlearn", "retrain"]
    round: int
    test_acc: float | None = None
    test_loss: float | None = None
    criterion_mi: float | None = None
    forget_acc: float | None = None
    forget_loss: float | None = None
    n_clients: int | None = None


class ForgettingReport(_Block):
    """The forgetting report attached to each unlearned model version."""

    schema_version: str = SCHEMA_VERSION
    created_at: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    request: RequestBlock
    method: str
    method_config: dict = Field(default_factory=dict)
    dataset: dict = Field(default_factory=dict)
    model: ModelBlock
    utility: UtilityBlock | None = None
    audit: AuditBlock | None = None
    accounting: AccountingBlock | None = None
    cost: CostBlock | None = None
    feature: FeatureBlock | None = None
    rounds: list[RoundLog] = Field(default_factory=list)
    seed: int | None = None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def digest(self) -> str:
        """sha256 of the canonical JSON (sorted keys), recorded on the model version's tags."""
        return _canonical_digest(self.model_dump(mode="json"))


def _canonical_digest(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def stored_digest(text: str) -> str:
    """`ForgettingReport.digest()` of a stored report file, from its own content: what it was when registered,
    whatever fields later versions of the schema added (their defaults would change a re-parsed report's digest)."""
    return _canonical_digest(json.loads(text))


def json_schema() -> dict:
    """The JSON Schema of `ForgettingReport` (checked in as report/forgetting_report.schema.json)."""
    return ForgettingReport.model_json_schema()
