"""Assemble a data-point ForgettingReport from measured figures (no Flower, no MLflow)."""

from __future__ import annotations

import numpy as np

from unlearn_fl.audit.verdict import AuditThresholds, decide_verdict
from unlearn_fl.report.schema import (
    AuditBlock,
    CostBlock,
    ForgettingReport,
    ModelAudit,
    ModelBlock,
    RequestBlock,
    RoundLog,
    UtilityBlock,
)


def _auc(a: ModelAudit | None) -> float | None:
    return None if a is None or not a.attacks else a.attacks[0].auc


def _eps(a: ModelAudit | None) -> float | None:
    return None if a is None or a.epsilon is None else a.epsilon.epsilon_lower


def histogram_ks(a: ModelAudit | None, b: ModelAudit | None) -> float | None:
    """Kolmogorov–Smirnov distance between two forget-loss laws, from their shared-edge histograms."""
    if a is None or b is None or not a.loss_histogram or not b.loss_histogram:
        return None
    ca = np.cumsum(a.loss_histogram["forget"])
    cb = np.cumsum(b.loss_histogram["forget"])
    return float(np.max(np.abs(ca - cb)))


def audit_block(audits: dict[str, ModelAudit], n_forget: int, settings) -> AuditBlock:
    """The `audit` block: headline figures, the verdict and its reasons, per-model details."""
    before, after, retrain = audits.get("before"), audits.get("after"), audits.get("retrain")
    thresholds = AuditThresholds(
        max_auc_gap_to_retrain=settings.max_auc_gap_to_retrain,
        max_auc_without_reference=settings.max_auc_without_reference,
        epsilon_target=settings.epsilon_target,
        confidence=settings.confidence,
        delta=settings.delta,
    )
    atk = after.attacks[0] if after and after.attacks else None
    verdict, reasons = decide_verdict(
        auc_after=_auc(after),
        auc_retrain=_auc(retrain),
        epsilon_lower_after=_eps(after),
        n_members=atk.n_members if atk else n_forget,
        n_nonmembers=atk.n_nonmembers if atk else 0,
        thresholds=thresholds,
        epsilon_lower_retrain=_eps(retrain),
    )
    return AuditBlock(
        mia_auc_before=_auc(before),
        mia_auc_after=_auc(after),
        mia_auc_retrain=_auc(retrain),
        delta=settings.delta,
        epsilon_lower=_eps(after),
        epsilon_lower_before=_eps(before),
        epsilon_lower_retrain=_eps(retrain),
        confidence=settings.confidence,
        tpr_at_fpr=dict(atk.tpr_at_fpr) if atk else {},
        criterion_mi_before=before.criterion_mi if before else None,
        criterion_mi_after=after.criterion_mi if after else None,
        criterion_mi_retrain=retrain.criterion_mi if retrain else None,
        forget_loss_distance_to_retrain=histogram_ks(after, retrain),
        verdict=verdict,
        reasons=reasons,
        before=before,
        after=after,
        retrain=retrain,
    )


def data_report(
    *,
    request_id: str,
    client_ids: list[int],
    n_forget: int,
    forget_fraction: float,
    reason: str | None,
    method: str,
    method_config: dict,
    dataset: dict,
    model_name: str,
    test_acc: dict[str, float],
    retain_acc: dict[str, float],
    forget_acc: dict[str, float],
    audits: dict[str, ModelAudit],
    audit_settings,
    unlearn_seconds: float,
    retrain_seconds: float | None,
    train_seconds: float | None,
    unlearn_rounds: int | None,
    retrain_rounds: int | None,
    rounds: list[RoundLog],
    seed: int,
) -> ForgettingReport:
    speedup = None
    if retrain_seconds is not None and unlearn_seconds > 0:
        speedup = retrain_seconds / unlearn_seconds
    return ForgettingReport(
        request=RequestBlock(request_id=request_id, kind="data", client_ids=client_ids, n_forget=n_forget,
                             forget_fraction=forget_fraction, reason=reason),
        method=method,
        method_config=method_config,
        dataset=dataset,
        model=ModelBlock(name=model_name),
        utility=UtilityBlock(
            test_acc_before=test_acc["before"], test_acc_after=test_acc["after"], test_acc_retrain=test_acc.get("retrain"),
            retain_acc_before=retain_acc.get("before"), retain_acc_after=retain_acc["after"],
            retain_acc_retrain=retain_acc.get("retrain"),
            forget_acc_before=forget_acc["before"], forget_acc_after=forget_acc["after"],
            forget_acc_retrain=forget_acc.get("retrain"),
        ),
        audit=audit_block(audits, n_forget, audit_settings),
        cost=CostBlock(unlearn_seconds=unlearn_seconds, retrain_seconds=retrain_seconds, speedup=speedup,
                       unlearn_rounds=unlearn_rounds, retrain_rounds=retrain_rounds, train_seconds=train_seconds),
        rounds=rounds,
        seed=seed,
    )
