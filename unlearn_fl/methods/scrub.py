"""SCRUB (Kurmanji, Triantafillou, Hayes & Triantafillou, "Towards Unbounded Machine Unlearning", NeurIPS 2023).

A student starts from the trained model; the teacher is that same model, frozen. With the
distillation distance d(x) = T² · KL(softmax(f_teacher(x)/T) ‖ softmax(f_student(x)/T)):

- a **max-step** pass over the forget rows maximises d (the student moves away from the teacher
  where it must forget): loss = −mean d(x_f);
- a **min-step** pass over the retained rows minimises α · d + γ · CE (the student stays close to the
  teacher, and right, where it must remember): loss = α · mean d(x_r) + γ · CE(f_student(x_r), y_r).

Each local epoch runs a max-step pass (only in the first `max_epochs` epochs) and then a min-step
pass, as the paper alternates them. Federated (`Federation.unlearn`): the teacher is the global model
at the start of unlearning and travels beside the student in every round; forget-holders run both
passes, retaining sites min-steps only (they hold no forget rows); the wrapped strategy (FedAvg)
aggregates each round. SCRUB+R (rewinding to a checkpoint chosen on a validation forget set) is not
implemented.

Defaults follow the authors' released configuration where it transfers: α = 0.001, γ = 0.99, T = 4, SGD
with momentum 0.9 and weight decay 5e-4; the step size (they sweep 1e-4 to 0.05 per data set) is 0.01 here,
for this project's small models, and the local epochs are the federation's (`epochs`), the first
`max_epochs` of them with a max-step pass.

Note the KL's gradient vanishes where student = teacher: the first max-step pass from the untouched
teacher moves nothing (with SGD; an adaptive optimiser such as Adam would rescale the rounding noise of
that zero gradient into full steps, which is one reason SGD is used), and the max-steps act once min-steps
(or earlier rounds) have moved the student. A forget-holder with no retained rows therefore contributes
from the second federated round on.
"""

from __future__ import annotations

import copy
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch.nn import functional as F

from unlearn_fl.data import Split
from unlearn_fl.methods.base import Method, MethodConfig, UnlearnResult
from unlearn_fl.models import as_loss_fn, batches, tensors


class ScrubConfig(MethodConfig):
    """SCRUB's settings (the paper's α, γ, T and max-steps; the authors' released values as defaults)."""

    lr: float = Field(0.01, gt=0, le=10, description="Step size of the student's optimiser.")
    alpha: float = Field(0.001, ge=0, le=1000, description="Weight α of the KL to the teacher in the min-steps (retained rows).")
    gamma: float = Field(0.99, ge=0, le=1000, description="Weight γ of the cross-entropy in the min-steps (retained rows).")
    max_epochs: int = Field(1, ge=0, le=1000, description="Local epochs (of `epochs`) that begin with a max-step pass over the forget rows.")
    temperature: float = Field(4.0, gt=0, le=100, description="Distillation temperature T of the KL (scaled by T²).")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="The student's optimiser (authors: SGD).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    weight_decay: float = Field(5e-4, ge=0, le=1, description="SGD weight decay.")


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over the batch of T² · KL(softmax(teacher/T) ‖ softmax(student/T)), in nats.

    student_logits, teacher_logits: (B, C). Returns a scalar; zero iff the two softmaxes agree row by row.
    """
    t = float(temperature)
    log_q = F.log_softmax(student_logits / t, dim=1)
    log_p = F.log_softmax(teacher_logits / t, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1).mean() * t * t


def scrub_steps(student: torch.nn.Module, teacher: torch.nn.Module, retained: Split, forgotten: Split, cfg: ScrubConfig,
                criterion=None) -> UnlearnResult:
    """SCRUB's alternating passes on local rows; `student` is copied, `teacher` left unchanged.

    retained, forgotten: X (N, ...) float32, y (N,) int64. criterion: the user's loss(logits, y) for the
    min-steps' task term (None: cross-entropy). `cfg.optimizer` at `cfg.lr`; retain batches of `cfg.batch_size`,
    forget batches of `cfg.forget_batch_size`. Returns the student, the optimiser steps taken and the rows
    passed forward and backward through the student (the teacher's forward passes are not counted).
    """
    model = copy.deepcopy(student)
    teacher = copy.deepcopy(teacher).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    task = as_loss_fn(criterion)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    Xr, yr = tensors(retained)
    Xf, _ = tensors(forgotten)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps = processed = 0
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        if epoch < cfg.max_epochs and len(forgotten):
            total = 0.0
            for idx in batches(len(Xf), cfg.forget_batch_size, gen):
                model.train()
                opt.zero_grad()
                with torch.no_grad():
                    t_logits = teacher(Xf[idx])
                d = distill_kl(model(Xf[idx]), t_logits, cfg.temperature)
                (-d).backward()
                opt.step()
                steps, processed, total = steps + 1, processed + len(idx), total + float(d.detach()) * len(idx)
            history.append({"epoch": epoch + 1, "pass": "max", "forget_kl": total / len(Xf)})
        if len(retained):
            total = 0.0
            for idx in batches(len(Xr), cfg.batch_size, gen):
                model.train()
                opt.zero_grad()
                with torch.no_grad():
                    t_logits = teacher(Xr[idx])
                d = distill_kl(model(Xr[idx]), t_logits, cfg.temperature)
                loss = cfg.alpha * d + cfg.gamma * task(model, Xr[idx], yr[idx])
                loss.backward()
                opt.step()
                steps, processed, total = steps + 1, processed + len(idx), total + float(loss.detach()) * len(idx)
            history.append({"epoch": epoch + 1, "pass": "min", "retain_loss": total / len(Xr)})
    return UnlearnResult(model, steps, "max epochs" if steps else "nothing to do", history, examples_processed=processed)


class Scrub(Method):
    shared_loop = False
    """SCRUB: max-steps away from the teacher on D_f, min-steps towards it (α·KL + γ·CE) on D_r."""

    name = "scrub"
    config_cls: ClassVar[type[MethodConfig]] = ScrubConfig
    summary = "SCRUB (Kurmanji et al. 2023): teacher-student max-steps on D_f, min-steps (α·KL + γ·CE) on D_r"
    uses_forget = True

    def unlearn(self, model: torch.nn.Module, retain: Split, forget: Split, holdout: Split, cfg: MethodConfig) -> UnlearnResult:  # type: ignore[override]
        """Central SCRUB: the teacher is `model` itself (not modified)."""
        return scrub_steps(model, model, retain, forget, cfg)  # type: ignore[arg-type]

    def run_local(self, model, retained, forgotten, holdout, cfg, *, reference_mean=None, criterion=None,  # type: ignore[override]
                  reference_model=None, step=""):
        """A site's SCRUB step: the teacher is the server's `reference_model` (the global model at the start of
        unlearning); without one, the received model (the same thing in the first round)."""
        return scrub_steps(model, reference_model if reference_model is not None else model, retained, forgotten, cfg, criterion)
