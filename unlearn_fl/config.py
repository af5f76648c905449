"""Run configuration of a simulated federation with a withdrawal (pydantic, validated up front)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from unlearn_fl.data import DataSpec
from unlearn_fl.methods import METHODS


class AuditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delta: float = Field(1e-5, gt=0, lt=1)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    max_auc_gap_to_retrain: float = Field(0.05, ge=0, le=0.5)
    max_auc_without_reference: float = Field(0.60, ge=0.5, le=1)
    epsilon_target: float | None = Field(None, ge=0)


class RunConfig(BaseModel):
    """Everything `unlearn-fl simulate` (and the ServerApp) needs; identical run -> identical figures."""

    model_config = ConfigDict(extra="forbid")

    data: DataSpec = Field(default_factory=DataSpec)
    rounds: int = Field(5, ge=1, le=1000)
    local_epochs: int = Field(2, ge=1, le=100)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-3, gt=0)
    hidden: tuple[int, ...] = (64,)
    withdraw: tuple[int, ...] = (0,)
    forget_fraction: float = Field(1.0, description="Share of each withdrawing client's rows to forget, in (0, 1].")
    reason: str | None = None
    method: str = "marginal"
    method_config: dict = Field(default_factory=dict)
    unlearn_rounds: int = Field(3, ge=1, le=100)
    max_test_drop: float = Field(0.03, ge=0, le=1, description="An unlearning round that costs more test accuracy is rolled back.")
    reference: bool = Field(True, description="Also retrain from scratch without the withdrawn data, for comparison.")
    model_name: str = Field("unlearn-fl", min_length=1)
    tracking_uri: str = "sqlite:///mlflow.db"
    out: Path = Path("unlearn-report")
    seed: int = 0
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @model_validator(mode="after")
    def _check(self) -> "RunConfig":
        n = self.data.num_clients
        bad = [c for c in self.withdraw if not 0 <= c < n]
        if bad:
            raise ValueError(f"unknown client id {bad[0]} in --withdraw: clients are 0..{n - 1}")
        if len(set(self.withdraw)) != len(self.withdraw):
            raise ValueError(f"--withdraw repeats a client id: {list(self.withdraw)}")
        if not self.withdraw:
            raise ValueError("--withdraw names no client: give at least one client id, e.g. --withdraw 0")
        if not 0.0 < self.forget_fraction <= 1.0:
            raise ValueError(f"--forget-fraction {self.forget_fraction} is outside (0, 1]; use e.g. 0.5")
        if self.forget_fraction == 1.0 and len(self.withdraw) >= n:
            raise ValueError("every client would withdraw all its data: nothing would be left to train on")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}: choose one of {', '.join(METHODS)}")
        METHODS[self.method].make_config(**self.method_config)  # validates the method's settings
        return self
