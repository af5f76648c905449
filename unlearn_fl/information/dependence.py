"""The dependence of features Z on S, measured by independent estimators (docs/method.md §3, "Checking").

One call per (Z, S) sample gives what a feature report shows: a probe's held-out AUC (the report's S-probe, logistic
by default), a gradient-boosting probe's out-of-fold AUC, the k-NN MI estimate built on that probe's score
(`knn_mi`, the headline MI) with its chance level, and the guarded Gaussian MI proxy. `report_fields` turns the
before and after measurements into `FeatureBlock` fields, including the disagreement flag.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from unlearn_fl.information.checks import disagreement
from unlearn_fl.information.gaussian import gaussian_mi_guarded
from unlearn_fl.information.knn import knn_mi
from unlearn_fl.information.probe import ProbeKind, probe_chance, probe_s


class Dependence(BaseModel):
    """Estimates of the dependence of one sample of Z on S: AUCs (0.5: nothing left) and MIs in nats."""

    model_config = ConfigDict(extra="forbid")

    s_auc: float
    s_auc_gbm: float
    mi: float
    mi_null: float
    mi_gaussian: float
    mi_estimator: str
    s_auc_chance: float | None = None


def measure(Z: object, s: object, probe: ProbeKind = "logistic", folds: int = 5, repeats: int = 1, seed: int = 0,
            chance: bool = False) -> Dependence:
    """Every estimate for Z (n, d) and labels s (n,); with `chance`, also the probe's chance level (`probe_chance`,
    19 permutations of S: 19 more probe fits). ValueError for bad shapes or groups smaller than `folds`."""
    p = probe_s(Z, s, probe, folds, repeats, seed)
    k = knn_mi(Z, s, folds=folds, random_state=seed)
    return Dependence(s_auc=p.auc, s_auc_gbm=k.auc, mi=k.nats, mi_null=k.null_nats, mi_gaussian=gaussian_mi_guarded(Z, s),
                      mi_estimator=k.estimator,
                      s_auc_chance=probe_chance(Z, s, probe, folds, repeats, random_state=seed) if chance else None)


def report_fields(before: Dependence, after: Dependence, probe: str = "logistic") -> dict:
    """`FeatureBlock` keyword arguments for the estimates before and after (MI, chance level, Gaussian proxy, AUCs,
    and the disagreement flag: an MI estimate that rose while every probe's AUC fell, or the reverse)."""
    why = disagreement({"k-NN MI": (before.mi, after.mi), "Gaussian MI proxy": (before.mi_gaussian, after.mi_gaussian)},
                       {f"{probe} probe": (before.s_auc, after.s_auc), "gradient-boosting probe": (before.s_auc_gbm, after.s_auc_gbm)})
    return dict(mi_before=before.mi, mi_after=after.mi, s_auc_before=before.s_auc, s_auc_after=after.s_auc,
                mi_estimator=after.mi_estimator, mi_chance=max(before.mi_null, after.mi_null),
                mi_gaussian_before=before.mi_gaussian, mi_gaussian_after=after.mi_gaussian,
                s_auc_gbm_before=before.s_auc_gbm, s_auc_gbm_after=after.s_auc_gbm,
                estimates_agree=why is None, disagreement=why, s_auc_chance=after.s_auc_chance)
