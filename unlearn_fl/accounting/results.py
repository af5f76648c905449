"""Result type of privacy accounting: the ε a model's training steps spent (reported per release)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AccountingBlock"]


class AccountingBlock(BaseModel):
    """Opacus privacy accounting of the released model (docs/method.md §4)."""

    model_config = ConfigDict(extra="forbid")

    accountant: Literal["rdp", "prv", "gdp"]
    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float | None = None
    per_client: dict[str, float] = Field(default_factory=dict)
    unit: Literal["record", "client"] = Field(
        "record", description="What one unit of privacy is: a row (DP-SGD on the sites) or a whole site (server-side DP).")
