"""run_feature: feature unlearning on a table, measured by independent estimators → ForgettingReport.

Pipeline (docs/method.md §3, §2.3 A, §6): load the table, stratified train/test split, standardise
with train statistics, fit `BarycenterProjector` on the train features by S, then on the held-out
test split measure, for t = 0 (before), the requested t (after) and a t-grid (Pareto curve):

- s_auc: cross-validated probe AUC for S from Z_test (`information.probe`, 0.5 = nothing left);
- mi: k-NN MI estimate of I(Z_test; S) in nats on an out-of-fold gradient-boosting probe's score
  (`information.knn`), with its chance level, beside the guarded Gaussian MI proxy and that probe's AUC;
  the report flags an MI that moved against every probe (`information.dependence`);
- utility: accuracy on Z_test of a logistic regression trained on Z_train;
- distortion: mean over test rows of ‖Z_t − X‖² (standardised units), the cost of forgetting.

Run as `python -m unlearn_fl.feature.run --dataset diabetes` (see `main`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from unlearn_fl.types import Seed
from unlearn_fl.feature.barycenter import BarycenterProjector
from unlearn_fl.feature.parity_ceiling import ceiling_record
from unlearn_fl.feature.tabular import DIABETES_TARGET, FeatureTable, load_feature_table, write_diabetes_csv
from unlearn_fl.information.dependence import Dependence, measure as measure_dependence, report_fields
from unlearn_fl.report.schema import FeatureBlock, ForgettingReport, ModelBlock, ParetoPoint, RequestBlock

__all__ = ["FeatureRunConfig", "FeatureFit", "run_feature", "run_feature_fit", "write_diabetes_csv", "main"]


class FeatureRunConfig(BaseModel):
    """One feature-unlearning run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    dataset: str = Field("diabetes", description="Path to a CSV file, or the built-in name 'diabetes'.")
    sensitive: str = Field("sex", description="Column of the attribute to forget (discrete).")
    target: str = Field(DIABETES_TARGET, description="Column of the task label (discrete), for utility.")
    t: float = Field(1.0, ge=0.0, le=1.0, description="Interpolation weight of the released features.")
    method: Literal["quantile", "gaussian"] = "quantile"
    grid: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    seed: Seed = 0
    test_fraction: float = Field(0.5, gt=0.0, lt=1.0, description="Held-out share; measurements use it, so it is large.")
    probe: Literal["logistic", "quadratic", "gbm"] = "logistic"
    probe_folds: int = Field(5, ge=2)
    probe_repeats: int = Field(5, ge=1)
    min_group_size: int | None = Field(None, ge=1)
    smoothing: Literal["histogram", "kernel", "relative", "auto"] | None = Field(
        None, description="How the quantile maps estimate each group's law (`BarycenterProjector`, docs/method.md §3, "
                          "'Smoothing'): default 'auto' for the quantile method (per column, histogram, relative or kernel, "
                          "chosen on a split of the train rows), 'histogram' for the gaussian method, which has none.")

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: list[float]) -> list[float]:
        if any(not (0.0 <= x <= 1.0) for x in v):
            raise ValueError(f"every grid value must lie in [0, 1], got {v}")
        return sorted(set(float(x) for x in v))

    @model_validator(mode="after")
    def _smoothing_needs_quantile(self) -> FeatureRunConfig:
        if self.smoothing is None:
            self.smoothing = "auto" if self.method == "quantile" else "histogram"
        elif self.smoothing != "histogram" and self.method != "quantile":
            raise ValueError(f"smoothing={self.smoothing!r} smooths the group laws of the quantile maps; use "
                             "method='quantile' or leave smoothing at 'histogram'")
        return self

    def recorded(self) -> dict:
        """The config as the report records it and its request id digests: every field, except `smoothing` at its
        default, so that runs made before the setting existed keep their request ids and method-config digests."""
        return self.model_dump(exclude={"smoothing"} if self.smoothing == "histogram" else None)

    def digest(self) -> str:
        """The 12 hex digits of the run's request id, `feature-<sensitive>-<digest>` (sha256 of `recorded`, as JSON)."""
        body = self.model_dump_json(exclude={"smoothing"} if self.smoothing == "histogram" else None)
        return hashlib.sha256(body.encode()).hexdigest()[:12]


class _Point(BaseModel):
    t: float
    utility: float
    distortion: float
    dep: Dependence

    def pareto(self) -> ParetoPoint:
        d = self.dep
        return ParetoPoint(t=self.t, s_auc=d.s_auc, utility=self.utility, mi=d.mi, distortion=self.distortion,
                           s_auc_gbm=d.s_auc_gbm, mi_gaussian=d.mi_gaussian)


def _split(n: int, s: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified by (S, Y) when every stratum has ≥ 2 rows, else by S."""
    idx = np.arange(n)
    strata = np.array([f"{a}|{b}" for a, b in zip(s, y)])
    _, counts = np.unique(strata, return_counts=True)
    strat = strata if counts.min() >= 2 else s
    try:
        return train_test_split(idx, test_size=test_fraction, stratify=strat, random_state=seed)
    except ValueError as exc:
        raise ValueError(f"cannot split the table with test_fraction={test_fraction}: {exc}; use more rows or a larger test_fraction") from None


@dataclass(frozen=True)
class FeatureFit:
    """What `run_feature_fit` fitted, for releasing the model (unlearn_fl.feature.release.central_releases).

    table: the loaded table (X (n, d) unscaled, s, y); train_idx, test_idx: its split; mean, scale: (d,) the
    standardisation (train statistics, scale 1 for a constant column); projector: fitted on the standardised train
    rows; heads: {t: the logistic regression trained on the train rows projected at t} for t = 0 and the run's t.
    """

    dataset: str
    sensitive: str
    target: str
    t: float
    table: FeatureTable
    train_idx: np.ndarray
    test_idx: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    projector: BarycenterProjector
    heads: dict


def run_feature(config: FeatureRunConfig) -> ForgettingReport:
    """Fit the barycenter projection for `config` and measure forgetting and utility on held-out rows."""
    return run_feature_fit(config)[0]


def run_feature_fit(config: FeatureRunConfig) -> tuple[ForgettingReport, FeatureFit]:
    """`run_feature`, also returning what was fitted (the projector, the scaler, the task heads at t = 0 and t)."""
    cfg = config
    table = load_feature_table(cfg.dataset, cfg.sensitive, cfg.target)
    tr, te = _split(len(table.y), table.s, table.y, cfg.test_fraction, cfg.seed)
    mean = table.X[tr].mean(axis=0)
    scale = table.X[tr].std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    X = (table.X - mean) / scale
    Xtr, Xte, s_tr, s_te, y_tr, y_te = X[tr], X[te], table.s[tr], table.s[te], table.y[tr], table.y[te]
    projector = BarycenterProjector(t=cfg.t, method=cfg.method, min_group_size=cfg.min_group_size, random_state=cfg.seed,
                                    blocks=table.blocks or None, smoothing=cfg.smoothing)
    projector.fit(Xtr, s_tr)

    cache: dict[float, _Point] = {}
    heads: dict[float, LogisticRegression] = {}

    def measure(t: float) -> _Point:
        if t not in cache:
            Ztr = projector.transform(Xtr, s_tr, t=t)
            Zte = projector.transform(Xte, s_te, t=t)
            clf = LogisticRegression(max_iter=5000).fit(Ztr, y_tr)
            heads[t] = clf
            cache[t] = _Point(
                t=t,
                utility=float(clf.score(Zte, y_te)),
                distortion=float(np.mean(np.sum((Zte - Xte) ** 2, axis=1))),
                dep=measure_dependence(Zte, s_te, cfg.probe, cfg.probe_folds, cfg.probe_repeats, cfg.seed,
                                       chance=t == cfg.t),
            )
        return cache[t]

    with threadpool_limits(limits=1):  # many tiny fits: extra BLAS threads only add contention
        before, after = measure(0.0), measure(cfg.t)
        pareto = [measure(t).pareto() for t in cfg.grid]
    labels, counts = np.unique(table.s, return_counts=True)
    digest = cfg.digest()
    report = ForgettingReport(
        request=RequestBlock(
            request_id=f"feature-{cfg.sensitive}-{digest}",
            kind="feature",
            client_ids=[],
            n_forget=int(len(table.y)),
            reason=f"remove the dependence of the features on {cfg.sensitive!r}",
        ),
        method=f"barycenter-{cfg.method}",
        method_config={
            **cfg.recorded(),
            "standardized": True,
            "distortion": "mean squared Euclidean displacement per held-out row, standardised units",
            "mi": "k-NN MI (nats) on an out-of-fold gradient-boosting probe's score, held-out split; "
                  "mi_gaussian: guarded Gaussian MI proxy",
            "one_hot_blocks": [[table.feature_names[c] for c in b] for b in table.blocks] if cfg.method == "quantile" else [],
            "s_auc": f"{cfg.probe} probe, {cfg.probe_folds}-fold x {cfg.probe_repeats} CV on the held-out split",
            "utility": "accuracy of a logistic regression trained on transformed train, tested on transformed test",
            "parity_ceiling": ceiling_record(Xte, s_te, y_te, cfg.seed),
            **({"smoothing_used": dict(zip(table.feature_names, projector.smoothing_))}
               if cfg.smoothing == "auto" and hasattr(projector, "smoothing_") else {}),
        },
        dataset={
            "name": table.source,
            "n_rows": int(len(table.y)),
            "n_train": int(len(tr)),
            "n_test": int(len(te)),
            "n_dropped_missing": table.n_dropped,
            "features": table.feature_names,
            "target": cfg.target,
            "groups": {str(k): int(v) for k, v in zip(labels, counts)},
        },
        model=ModelBlock(name=f"feature-{cfg.sensitive}"),
        feature=FeatureBlock(
            sensitive=cfg.sensitive,
            method=cfg.method,
            t=cfg.t,
            **report_fields(before.dep, after.dep, cfg.probe),
            utility_before=before.utility,
            utility_after=after.utility,
            pareto=pareto,
        ),
        seed=cfg.seed,
    )
    fit = FeatureFit(cfg.dataset, cfg.sensitive, cfg.target, cfg.t, table, np.asarray(tr), np.asarray(te), mean, scale,
                     projector, {0.0: heads[0.0], cfg.t: heads[cfg.t]})
    return report, fit


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: `python -m unlearn_fl.feature.run --dataset PATH.csv --sensitive COL --target COL [--out report.json]`."""
    ap = argparse.ArgumentParser(prog="python -m unlearn_fl.feature.run", description="Feature unlearning by barycenter projection.")
    ap.add_argument("--dataset", default="diabetes", help="CSV path or 'diabetes'")
    ap.add_argument("--sensitive", default="sex")
    ap.add_argument("--target", default=DIABETES_TARGET)
    ap.add_argument("--method", choices=["quantile", "gaussian"], default="quantile")
    ap.add_argument("--smoothing", choices=["histogram", "kernel", "relative", "auto"], default=None,
                    help="group laws of the quantile maps (default auto: per column, histogram, relative or kernel)")
    ap.add_argument("--t", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-fraction", type=float, default=0.5)
    ap.add_argument("--out", type=Path, help="write the report JSON here (default: print it)")
    ap.add_argument("--write-diabetes-csv", type=Path, metavar="PATH", help="only write the diabetes table as CSV and exit")
    args = ap.parse_args(argv)
    if args.write_diabetes_csv:
        print(write_diabetes_csv(args.write_diabetes_csv))
        return 0
    try:
        cfg = FeatureRunConfig(
            dataset=args.dataset, sensitive=args.sensitive, target=args.target, method=args.method,
            t=args.t, seed=args.seed, test_fraction=args.test_fraction, smoothing=args.smoothing,
        )
        report = run_feature(cfg)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(map(str, first["loc"]))
        print(f"error: {where + ': ' if where else ''}{first['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = report.to_json()
    if args.out:
        args.out.write_text(text)
        f = report.feature
        print(json.dumps({"out": str(args.out), "s_auc": [f.s_auc_before, f.s_auc_after], "utility": [f.utility_before, f.utility_after], "mi": [f.mi_before, f.mi_after]}))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
