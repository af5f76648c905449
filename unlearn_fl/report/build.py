"""Assemble a data-point ForgettingReport from measured figures (no Flower, no MLflow)."""

from __future__ import annotations

import math

import numpy as np

from unlearn_fl.accounting.results import AccountingBlock
from unlearn_fl.audit.results import RetainedExposure
from unlearn_fl.audit.verdict import AccountingEvidence, AttackEvidence, AuditThresholds, decide_verdict
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


def attack_evidence(audits: dict[str, ModelAudit]) -> list[AttackEvidence]:
    """Per attack run on the unlearned model: its AUC there, before unlearning, and on the retrain reference.

    An attack the retrained model was not audited with (RMIA, whose reference *is* that model)
    is compared with chance.
    """
    before, after, retrain = audits.get("before"), audits.get("after"), audits.get("retrain")
    if after is None or not after.attacks:
        return []
    by = lambda a: {x.attack: x for x in a.attacks} if a is not None else {}
    b, r = by(before), by(retrain)
    return [AttackEvidence(attack=x.attack, auc_after=x.auc, n_members=x.n_members, n_nonmembers=x.n_nonmembers,
                           auc_before=b[x.attack].auc if x.attack in b else None,
                           auc_retrain=r[x.attack].auc if x.attack in r else None) for x in after.attacks]


def thresholds_of(settings) -> AuditThresholds:
    return AuditThresholds(
        max_auc_gap_to_retrain=settings.max_auc_gap_to_retrain,
        max_auc_without_reference=settings.max_auc_without_reference,
        epsilon_target=settings.epsilon_target,
        confidence=settings.confidence,
        delta=settings.delta,
    )


def audit_block(audits: dict[str, ModelAudit], n_forget: int, settings, *, accounting: AccountingBlock | None = None,
                n_clients: int = 1, unchanged: str | None = None,
                exposure: list[RetainedExposure] | None = None) -> AuditBlock:
    """The `audit` block: headline figures, the verdict, its power and reasons, per-model details.

    accounting: the released model's Opacus block (its ε bounds the attacks and may certify);
    n_clients: sites in the withdrawal (the group size for site-level accounting);
    unchanged: why the released weights equal the parent's, if they do;
    exposure: the retained sites' own membership exposure before/after (docs/method.md §4).
    """
    before, after, retrain = audits.get("before"), audits.get("after"), audits.get("retrain")
    evidence = attack_evidence(audits) or [AttackEvidence(attack="none", auc_after=0.5, n_members=n_forget, n_nonmembers=0)]
    acc = None
    if accounting is not None:
        acc = AccountingEvidence(epsilon=accounting.bound, delta=accounting.delta, unit=accounting.unit,
                                 group_size=n_clients if accounting.unit == "client" else n_forget)
    v = decide_verdict(evidence, epsilon_lower_after=_eps(after), epsilon_lower_before=_eps(before),
                       epsilon_lower_retrain=_eps(retrain), accounting=acc, unchanged=unchanged,
                       thresholds=thresholds_of(settings))
    exposure = list(exposure or [])
    increased = [e.client for e in exposure if e.increased]
    reasons = list(v.reasons)
    if accounting is not None and accounting.epsilon is None:
        reasons.append(f"The accountant's epsilon is unbounded ({accounting.epsilon_note}), so accounting bounds no attack "
                       "and certifies nothing.")
    elif accounting is not None and accounting.requested_accountant:
        reasons.append(f"note: {accounting.epsilon_note}.")
    interval = v.epsilon_interval
    if interval is not None and not math.isfinite(interval[1]):
        interval = (interval[0], None)  # JSON has no infinity: an unbounded accountant ε is null (accounting.epsilon_status)
    if increased:
        reasons.append("warning: the membership exposure of retained sites " + ", ".join(
            f"{e.client} (AUC {e.auc_before:.3f} -> {e.auc_after:.3f}, resolution ±{e.resolution:.3f})" for e in exposure if e.increased)
            + " rose beyond the resolution after unlearning.")
    atk = after.attacks[0] if after and after.attacks else None
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
        verdict=v.verdict,
        reasons=reasons,
        decided_by=v.decided_by,
        power=[p for p in v.power if math.isfinite(p.resolution)],  # no rows on one side: nothing resolved, no power row
        epsilon_interval=interval,
        unchanged=unchanged,
        retained_exposure=exposure,
        exposure_increased=increased,
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
    accounting: AccountingBlock | None = None,
    unchanged: str | None = None,
    exposure: list[RetainedExposure] | None = None,
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
        audit=audit_block(audits, n_forget, audit_settings, accounting=accounting, n_clients=len(client_ids),
                          unchanged=unchanged, exposure=exposure),
        accounting=accounting,
        cost=CostBlock(unlearn_seconds=unlearn_seconds, retrain_seconds=retrain_seconds, speedup=speedup,
                       unlearn_rounds=unlearn_rounds, retrain_rounds=retrain_rounds, train_seconds=train_seconds),
        rounds=rounds,
        seed=seed,
    )
