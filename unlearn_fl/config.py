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


class DPSettings(BaseModel):
    """Differential privacy of the federation (accounted with Opacus, accounting/)."""

    model_config = ConfigDict(extra="forbid")

    noise_multiplier: float = Field(0.0, ge=0, description="DP-SGD noise σ on every client (0: off).")
    max_grad_norm: float = Field(1.0, gt=0, description="DP-SGD per-example clipping norm C.")
    central_noise_multiplier: float = Field(0.0, ge=0, description="Flower server-side fixed-clipping DP noise (0: off).")
    central_clipping_norm: float = Field(1.0, gt=0)
    accountant: str = Field("rdp", pattern="^(rdp|prv)$")

    @property
    def local(self) -> bool:
        return self.noise_multiplier > 0

    @property
    def central(self) -> bool:
        return self.central_noise_multiplier > 0


class WithdrawalPlan(BaseModel):
    """A withdrawal planned for a simulated run: which clients, how much, after which training round."""

    model_config = ConfigDict(extra="forbid")

    client_ids: tuple[int, ...] = Field(min_length=1)
    fraction: float = 1.0
    at_round: int | None = Field(None, ge=1, description="After this training round; None: after the last one.")
    reason: str | None = None

    @classmethod
    def parse(cls, text: str, fraction: float = 1.0, reason: str | None = None) -> "WithdrawalPlan":
        """'0,3' or '0,3@2' (clients 0 and 3 withdraw after round 2)."""
        ids, _, at = text.partition("@")
        try:
            clients = tuple(int(x) for x in ids.split(",") if x.strip())
            at_round = int(at) if at.strip() else None
        except ValueError:
            raise ValueError(f"--withdraw {text!r}: give comma-separated client ids with an optional @ROUND, e.g. 0,3@2") from None
        if not clients:
            raise ValueError(f"--withdraw {text!r} names no client: give at least one client id, e.g. --withdraw 0")
        return cls(client_ids=clients, fraction=fraction, at_round=at_round, reason=reason)


class RunConfig(BaseModel):
    """Everything `unlearn-fl simulate` (and the ServerApp) needs; identical run -> identical figures."""

    model_config = ConfigDict(extra="forbid")

    data: DataSpec = Field(default_factory=DataSpec)
    rounds: int = Field(5, ge=1, le=1000)
    local_epochs: int = Field(2, ge=1, le=100)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-3, gt=0)
    hidden: tuple[int, ...] = (64,)
    withdrawals: list[WithdrawalPlan] = Field(default_factory=lambda: [WithdrawalPlan(client_ids=(0,))])
    requests_dir: Path | None = Field(None, description="Folder of withdrawal requests the server polls after every round.")
    method: str = "marginal"
    method_config: dict = Field(default_factory=dict)
    unlearn_rounds: int = Field(2, ge=1, le=100, description="Maximum unlearning rounds; the forget-holders' stopping rule may end them sooner.")
    max_test_drop: float = Field(0.03, ge=0, le=1, description="An unlearning round that costs more test accuracy is rolled back.")
    reference: bool = Field(True, description="Also retrain from scratch without the withdrawn data, for comparison.")
    min_unlearn_fraction: float = Field(
        0.5, ge=0, le=1, description="Share of retaining clients that must answer an unlearning round (forget-holders always must)."
    )
    max_retries: int = Field(1, ge=0, le=10, description="Retries of an unlearning round that too few clients answered.")
    promote: str = Field("on-pass", pattern="^(on-pass|always|never)$", description="When `production` moves to an unlearned version.")
    inject_failure: tuple[int, ...] = Field((), description="Testing resilience: these clients fail every unlearning step.")
    model_name: str = Field("unlearn-fl", min_length=1)
    tracking_uri: str = "sqlite:///mlflow.db"
    out: Path = Path("unlearn-report")
    seed: int = 0
    checkpoint_every: int | None = Field(None, ge=1, description="Also register the trained model every K rounds.")
    strategy: str = Field("fedavg", pattern="^(fedavg|fedprox|fedavgm|fedadam)$", description="The Flower strategy that aggregates.")
    proximal_mu: float = Field(0.01, ge=0, description="FedProx proximal term weight μ.")
    audit: AuditSettings = Field(default_factory=AuditSettings)
    dp: DPSettings = Field(default_factory=DPSettings)

    @model_validator(mode="after")
    def _check(self) -> "RunConfig":
        n = self.data.num_clients
        fully_gone: set[int] = set()
        for plan in self.withdrawals:
            bad = [c for c in plan.client_ids if not 0 <= c < n]
            if bad:
                raise ValueError(f"unknown client id {bad[0]} in --withdraw: clients are 0..{n - 1}")
            if len(set(plan.client_ids)) != len(plan.client_ids):
                raise ValueError(f"--withdraw repeats a client id: {list(plan.client_ids)}")
            if not 0.0 < plan.fraction <= 1.0:
                raise ValueError(f"--forget-fraction {plan.fraction} is outside (0, 1]; use e.g. 0.5")
            if plan.at_round is not None and plan.at_round > self.rounds:
                raise ValueError(f"--withdraw ...@{plan.at_round}: the run has only {self.rounds} rounds")
            if plan.fraction == 1.0:
                fully_gone |= set(plan.client_ids)
        if len(fully_gone) >= n:
            raise ValueError("every client would withdraw all its data: nothing would be left to train on")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}: choose one of {', '.join(METHODS)}")
        METHODS[self.method].make_config(**self.method_config)  # validates the method's settings
        return self

    def schedule(self) -> list[WithdrawalPlan]:
        """Planned withdrawals in the order they happen (unplanned rounds: after the last round)."""
        return sorted(self.withdrawals, key=lambda p: p.at_round or self.rounds)
