"""FedEraser (Liu, Ma, Yang, Wang & Liu, "FedEraser: Enabling Efficient Client-Level Data Removal from
Federated Learning Models", IWQoS 2021): the method's configuration, the clients' calibration step
and the rescaling; the server's procedure is `engine/federaser.py`.

During training the server stores every client's update U_k = w_k − w_t every Δt rounds (and the global
model w_t of those rounds). To unlearn, it rebuilds the model from the initial global model: for each stored
round, every retained client trains briefly (the calibration ratio r of its local epochs) from the current
calibrated global w̃, giving U_cal = w_k − w̃; the server keeps the stored direction and takes the
calibration's length,

    U'_k = ‖U_cal,k‖ · U_k / ‖U_k‖,

and applies the example-weighted mean of the U'_k (the leaving client left out): w̃ ← w̃ + Σ n_k U'_k / Σ n_k.
The paper's defaults: Δt = 2, r = 0.5 (reported ≈4× faster than retraining).

Choices where the paper leaves room (stated in docs/method.md §5 too): norms are taken per parameter
tensor by default (`norm="layer"`, as the authors' released code does; `norm="model"` uses the whole
flattened update); every stored round is calibrated, the first one too (the released code applies the
first stored round's retained updates without calibration, and rescales the averaged update with the
*old* length and the *new* direction, the reverse of the paper's formula; we follow the paper).
FedEraser is defined for whole clients. For a partial withdrawal the withdrawing site calibrates on its
retained rows and its stored updates, which were computed with the withdrawn rows, give the direction:
the rows' influence is only approximately removed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from unlearn_fl.data import Split
from unlearn_fl.methods.base import Method, MethodConfig, UnlearnResult
from unlearn_fl.models import as_loss_fn, batches, tensors


class FedEraserConfig(MethodConfig):
    """FedEraser's settings. The storage interval Δt is the federation's `history_every` (the history is
    recorded during training, before any method runs); `lr`, `batch_size` and `epochs` default to the
    federation's training settings, so calibration is the same local training, shortened."""

    calibration_ratio: float = Field(0.5, gt=0, le=1, description="Calibration local training as a share r of the local epochs (paper: 0.5).")
    norm: Literal["layer", "model"] = Field("layer", description="Rescale each parameter tensor (layer) or the whole update (model).")


def rescale_update(stored: Mapping[str, np.ndarray], calibration: Mapping[str, np.ndarray], norm: str = "layer") -> dict[str, np.ndarray]:
    """FedEraser's calibrated update U' = ‖U_cal‖ · U_old / ‖U_old‖.

    stored, calibration: the same keys, each an array (any shape) of one parameter tensor's update.
    norm: "layer" applies the formula to each tensor separately; "model" to the concatenation of all.
    A zero stored update (or tensor, per layer) gives a zero update: it has no direction.
    Returns float32 arrays shaped as `stored`. Raises KeyError when a key of `stored` is missing from `calibration`.
    """
    out: dict[str, np.ndarray] = {}
    if norm == "model":
        n_old = math.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64))) for v in stored.values()))
        n_cal = math.sqrt(sum(float(np.sum(np.square(calibration[k], dtype=np.float64))) for k in stored))
        scale = n_cal / n_old if n_old > 0 else 0.0
        return {k: (np.asarray(v, dtype=np.float64) * scale).astype(np.float32) for k, v in stored.items()}
    if norm != "layer":
        raise ValueError(f"unknown norm {norm!r}: use layer or model")
    for k, v in stored.items():
        old = np.asarray(v, dtype=np.float64)
        n_old, n_cal = float(np.linalg.norm(old)), float(np.linalg.norm(np.asarray(calibration[k], dtype=np.float64)))
        out[k] = (old * (n_cal / n_old) if n_old > 0 else np.zeros_like(old)).astype(np.float32)
    return out


def calibration_steps(n_rows: int, cfg: FedEraserConfig) -> int:
    """Optimiser steps of one calibration: ⌈r · epochs · ⌈n_rows / batch_size⌉⌉ (0 without rows)."""
    if n_rows == 0:
        return 0
    return max(1, math.ceil(cfg.calibration_ratio * cfg.epochs * math.ceil(n_rows / cfg.batch_size)))


def calibrate(model: torch.nn.Module, retained: Split, cfg: FedEraserConfig, criterion=None) -> UnlearnResult:
    """A retained site's calibration training: Adam at `cfg.lr` on its retained rows for `calibration_steps`
    mini-batches of `cfg.batch_size` (the local training, shortened by r); `model` is copied."""
    model = copy.deepcopy(model)
    n = len(retained)
    steps = calibration_steps(n, cfg)
    if steps == 0:
        return UnlearnResult(model, 0, "nothing to do", weight=0)
    loss_fn = as_loss_fn(criterion)
    X, y = tensors(retained)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    done = processed = 0
    while done < steps:
        for idx in batches(n, cfg.batch_size, gen):
            if done == steps:
                break
            opt.zero_grad()
            loss_fn(model, X[idx], y[idx]).backward()
            opt.step()
            done, processed = done + 1, processed + len(idx)
    return UnlearnResult(model, done, "calibrated", examples_processed=processed, weight=n)


class FedEraser(Method):
    shared_loop = False
    """FedEraser: rebuild from the initial model with the stored updates, rescaled by short calibrations."""

    name = "federaser"
    config_cls: ClassVar[type[MethodConfig]] = FedEraserConfig
    summary = "FedEraser (Liu et al. 2021): replay stored client updates every Δt rounds, rescaled by short calibration"
    server_side = True
    needs_history = "every"

    federated_only = "it replays the server's stored client updates"

    def run_local(self, model, retained, forgotten, holdout, cfg, *, reference_mean=None, criterion=None,  # type: ignore[override]
                  reference_model=None, step=""):
        """A retained site's calibration on its retained rows (a withdrawing site's forgotten rows are not used)."""
        return calibrate(model, retained, cfg, criterion)
