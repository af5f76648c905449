"""Feature unlearning: make learned features independent of a sensitive attribute S (docs/method.md §3).

- `BarycenterProjector`: closed-form W2 barycenter projection (quantile or Gaussian maps), with t-interpolation;
- `objectives`: regularised deep training, utility objective + λ · Î(Z; S) (torch, imported lazily);
- `federated`: per-group client summaries merged into the same maps on a server;
- `run`: `run_feature(FeatureRunConfig) -> ForgettingReport`.
"""

from __future__ import annotations

from typing import Any

from unlearn_fl.feature.barycenter import BarycenterProjector

__all__ = ["BarycenterProjector", "RegularizedConfig", "RegularizedMLP", "fit_regularized", "FeatureRunConfig", "run_feature"]


def __getattr__(name: str) -> Any:  # lazy: torch and pandas only when asked for
    if name in ("RegularizedConfig", "RegularizedMLP", "fit_regularized"):
        from unlearn_fl.feature import objectives

        return getattr(objectives, name)
    if name in ("FeatureRunConfig", "run_feature"):
        from unlearn_fl.feature import run

        return getattr(run, name)
    raise AttributeError(name)
