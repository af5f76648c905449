"""Baselines behind the same interface, so benchmarks compare like with like."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch.nn import functional as F

from unlearn_fl.methods.base import ForgetBatch, Method, MethodConfig


class Retrain(Method):
    """Exact unlearning: a fresh model trained from scratch on D_r only (the gold standard)."""

    name = "retrain"
    summary = "retrain from scratch on the retained data (exact, slow)"
    retrains = True


class Finetune(Method):
    """Continue training on D_r only; D_f is forgotten only as far as training on D_r overwrites it."""

    name = "finetune"
    summary = "fine-tune on the retained data only"


class GradientAscentConfig(MethodConfig):
    alpha: float = Field(1.0, ge=0, description="Weight of the ascent term on D_f.")
    ceiling: float = Field(5.0, gt=0, description="Forget cross-entropy is clamped here so ascent cannot diverge.")


class GradientAscent(Method):
    """NegGrad+: descend on D_r, ascend on D_f: loss = CE(D_r) − α·min(CE(D_f), ceiling)."""

    name = "gradient-ascent"
    config_cls: ClassVar[type[MethodConfig]] = GradientAscentConfig
    summary = "NegGrad+: gradient ascent on the forget set, descent on the retained set"
    uses_forget = True

    def forget_term(self, model: torch.nn.Module, batch: ForgetBatch, cfg: GradientAscentConfig) -> torch.Tensor:  # type: ignore[override]
        ce = F.cross_entropy(model(batch.x), batch.y)
        return -cfg.alpha * torch.clamp(ce, max=cfg.ceiling)
