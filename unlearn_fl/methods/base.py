"""The interface every data-point unlearning method implements.

A method has a pydantic config and, for the parts the federated engine runs on a
client, a `forget_term`: the loss a client adds for its forget batch (None when
the method ignores the forget set). Central unlearning and a federated client's
local step run the same loop (`methods/loop.py`) over different data; a method whose
local step is not that loop (SCRUB, FedEraser's calibration, Halimi's projected ascent)
overrides `run_local`. Methods the server orchestrates (`server_side`: FedEraser, Halimi)
are run by `engine.federation.Federation.unlearn`; `needs_history` says what the server must
store during training for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from unlearn_fl.types import Seed
from unlearn_fl.data import Split
from unlearn_fl.methods.statistics import Statistic


class MethodConfig(BaseModel):
    """Settings shared by every method; methods add their own."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a run cannot use inf or NaN anywhere

    epochs: int = Field(5, ge=1, le=1000, description="Maximum local epochs over the forget/retain data.")
    retain_epochs: int | None = Field(
        None, ge=1, le=1000, description="Local epochs at a site that holds no forget rows (a retainer: the retain term "
                                         "only) in the shared loop; None: `epochs`. Methods with their own local step "
                                         "refuse it (`Method.make_config`).")
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1, le=1_000_000, description="Retain batch size (the paper's B_r = 64).")
    forget_batch_size: int = Field(16, ge=1, le=1_000_000, description="Forget batch size (the paper's B_f = 16).")
    early_stop: bool = Field(True, description="Stop at the held-out signal (docs/method.md §2 stopping rule).")
    check_every: int = Field(1, ge=1, description="Steps between early-stopping checks.")
    reference_batch: int | None = Field(
        None, ge=1, le=1_000_000, description="Holdout rows per step for a reference statistic: a fresh random batch each "
                                              "step (no gradient; the group keeps the whole holdout's weight); None, or "
                                              "at least the holdout's rows: the whole holdout (methods/loop.py).")
    reference_every: int = Field(
        1, ge=1, le=1_000_000, description="Steps between fresh passes of the holdout for a reference statistic (no "
                                           "gradient; methods/loop.py). A check's own holdout pass always refreshes it.")
    stop_margin: float = Field(0.0, ge=-100, le=100, description="Stop once forget loss ≥ matched holdout loss − margin.")
    stop_rule: Literal["mean-loss", "loss-auc"] = Field(
        "mean-loss", description="'Looks unseen' test: mean-loss: the forget set's mean loss reaches the matched holdout's; "
                                 "loss-auc: a loss-threshold attack can no longer rank forget rows below matched holdout "
                                 "rows (AUC ≤ stop_auc), which a few very high losses cannot fake (docs/method.md §2).")
    stop_auc: float = Field(0.5, ge=0.0, le=1.0, description="loss-auc rule: stop once P(forget loss < holdout loss) ≤ this.")
    # 0.05 -> 0.10 after benchmarks/paper_e2_digits.py: the digits holdout has ~19 examples of the
    # forgotten class, so 0.05 is a single error: over 10 seeds it fired after ~21 steps at forget accuracy
    # .993 (retrain .899); at 0.10 (two errors), γ 4: forget .973 ± .037, test .968 vs .977
    # (benchmarks/results/e2_digits.md).
    max_matched_drop: float = Field(
        0.10, ge=0, description="Stop where the holdout accuracy on the forget set's classes starts to fall by more (authors' rule); "
                                "never below what the holdout can resolve (methods.loop.accuracy_resolution)."
    )
    max_holdout_drop: float = Field(0.03, ge=0, description="Roll back one check if overall holdout accuracy falls by more; never "
                                                            "below what the holdout can resolve (methods.loop.accuracy_resolution).")
    seed: Seed = 0


@dataclass
class ForgetBatch:
    """What the forget term sees: the forget batch, and reference statistics to compare with."""

    x: torch.Tensor
    y: torch.Tensor
    retain_x: torch.Tensor | None = None
    retain_y: torch.Tensor | None = None
    reference_mean: torch.Tensor | None = None
    """Mean statistic of the reference group when it is not in the batch (federated: from the server)."""
    holdout_x: torch.Tensor | None = None
    holdout_y: torch.Tensor | None = None
    holdout_rows: int | None = None
    """Rows of the holdout the reference group stands for when `holdout_x` is a batch of it (None: all of holdout_x)."""
    holdout_logits: Callable[[], torch.Tensor] | None = None
    """Returns the model's outputs on `holdout_x` (N_h, K) in eval mode, without gradient, at most
    `reference_every` steps old: computed when first asked for after they expired, or taken from the last stopping
    check's holdout pass; None: the method computes them itself."""


@dataclass
class UnlearnResult:
    model: torch.nn.Module
    steps: int
    stopped_because: str
    history: list[dict] = field(default_factory=list)
    examples_processed: int = 0
    """Rows passed forward and backward (the compute cost): Σ over optimiser steps of the batch sizes."""
    weight: int | None = None
    """FedAvg weight of this local result when it is not the rows the step used (None: the default count)."""
    target_reached: bool = False
    """True when the run ended because the forget set looks unseen (its stopping rule), not at a utility guard or the step limit."""


class Method:
    """Base class: subclasses set `name`, `config_cls`, and override what differs."""

    name: ClassVar[str]
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    summary: ClassVar[str] = ""
    retrains: ClassVar[bool] = False
    """True when the method starts from a fresh model (exact unlearning)."""
    uses_forget: ClassVar[bool] = False
    """True when `forget_term` is defined (the forget-holder runs it)."""
    server_side: ClassVar[bool] = False
    """True when the server orchestrates the unlearning (its procedure lives in engine/, e.g. FedEraser)."""
    needs_history: ClassVar[Literal["none", "last", "every"]] = "none"
    """What the server must store during training: nothing, the last round's client updates (Halimi's
    reference model), or every client's update every Δt rounds (FedEraser)."""

    shared_loop: ClassVar[bool] = True
    """True when a site's local step is the shared loop (`methods/loop.py`), the only reader of `retain_epochs`."""

    def make_config(self, **overrides) -> MethodConfig:
        """The method's config from `overrides`; ValueError for a setting the method never reads: `retain_epochs`
        where no shared loop runs, `reference_every` / `reference_batch` where no holdout reference is read."""
        if overrides.get("retain_epochs") is not None and (self.retrains or not self.shared_loop):
            raise ValueError(f"retain_epochs bounds the retaining sites of the shared unlearning loop; {self.name} "
                             "runs its own local step: leave retain_epochs unset")
        cfg = self.config_cls(**overrides)
        unread = [k for k in ("reference_every", "reference_batch")  # set away from the default (a dumped config may repeat it)
                  if getattr(cfg, k) != MethodConfig.model_fields[k].default]
        if unread and not (self.shared_loop and not self.retrains and self.reads_holdout_reference(cfg)):
            what = f"{self.name} with reference {cfg.reference!r}" if hasattr(cfg, "reference") else self.name
            raise ValueError(f"{' and '.join(unread)} {'set' if len(unread) > 1 else 'sets'} how the holdout's reference "
                             f"statistic is passed, and {what} reads no holdout reference (marginal with reference "
                             f"'holdout' or 'auto' does): leave {' and '.join(unread)} unset")
        if len(unread) == 2:
            raise ValueError("reference_every and reference_batch are two ways to pass the holdout's reference (the whole "
                             "holdout renewed every few steps, or a fresh batch every step): set one of them")
        return cfg

    def reads_holdout_reference(self, cfg: MethodConfig) -> bool:
        """True when `forget_term` may read `ForgetBatch.holdout_logits` / `holdout_x` (the holdout reference)."""
        return False

    def forget_term(self, model: torch.nn.Module, batch: ForgetBatch, cfg: MethodConfig) -> torch.Tensor | None:
        """Loss added for a forget batch; None: the forget set is not used."""
        return None

    def statistic(self, cfg: MethodConfig) -> Statistic | None:
        return None

    federated_only: ClassVar[str] = ""
    """Why the method has no central form (empty: it has one)."""

    def unlearn(self, model: torch.nn.Module, retain: Split, forget: Split, holdout: Split, cfg: MethodConfig) -> UnlearnResult:
        """Central unlearning: the model after forgetting `forget` (the input model is not modified).

        Raises ValueError for a method that exists only federated (`federated_only` says why)."""
        from unlearn_fl.methods.loop import run_unlearning

        if self.federated_only:
            raise ValueError(f"{self.name} is a federated procedure ({self.federated_only}): run it through "
                             f"Federation.unlearn or `unlearn-fl simulate --method {self.name}`")
        return run_unlearning(self, model, retain, forget, holdout, cfg)

    def run_local(self, model: torch.nn.Module, retained: Split, forgotten: Split, holdout: Split, cfg: MethodConfig, *,
                  reference_mean=None, criterion=None, reference_model: torch.nn.Module | None = None,
                  step: str = "") -> UnlearnResult:
        """One federated client's local step (the input model is not modified).

        retained / forgotten / holdout: the site's rows (X (N, ...) float32, y (N,) int64).
        reference_mean: the retain group's mean statistic from the server (np.ndarray (K,)), or None.
        criterion: the user's loss(logits, y); None is cross-entropy.
        reference_model: a second model the server sent (SCRUB's teacher, Halimi's reference w_ref), or None.
        step: which of the method's local steps the server asks for ("" when it has one).
        Default: the shared loop (`methods/loop.py`).
        """
        from unlearn_fl.methods.loop import run_unlearning

        return run_unlearning(self, model, retained, forgotten, holdout, cfg, reference_mean=reference_mean, criterion=criterion)
