"""Result type of privacy accounting: the ε a model's training steps spent (reported per release)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["AccountingBlock"]


class AccountingBlock(BaseModel):
    """Opacus privacy accounting of the released model (docs/method.md §4).

    `epsilon` is a finite number or None; None comes with `epsilon_status` "infinite" (the
    accountant bounds nothing: e.g. noise far too small for the steps taken) or "failed" (no
    accountant could compute it), and `epsilon_note` says why. JSON has no infinity, so an
    infinite ε is never written as a number: it is `null` with the status, and reads back as such.
    """

    model_config = ConfigDict(extra="forbid")

    accountant: Literal["rdp", "prv", "gdp"]
    epsilon: float | None = Field(description="The accountant's ε at `delta`; None when it is not finite (see epsilon_status).")
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float | None = None
    per_client: dict[str, float | None] = Field(
        default_factory=dict, description="ε per site (None: not finite at that site).")
    unit: Literal["record", "client"] = Field(
        "record", description="What one unit of privacy is: a row (DP-SGD on the sites) or a whole site (server-side DP).")
    epsilon_status: Literal["finite", "infinite", "failed"] = Field(
        "finite", description="'infinite': the accountant's ε is unbounded; 'failed': it could not be computed. "
                              "Either way `epsilon` is null and the model carries no DP guarantee.")
    requested_accountant: Literal["rdp", "prv", "gdp"] | None = Field(
        None, description="The accountant asked for, when `accountant` is a stated fallback (e.g. prv -> rdp).")
    epsilon_note: str | None = Field(None, description="Why ε is not finite, or why a fallback accountant was used.")

    @model_validator(mode="before")
    @classmethod
    def _earlier_null(cls, data):
        # unlearn-fl before epsilon_status wrote an infinite ε as a bare null: read it as what it was.
        if isinstance(data, dict) and data.get("epsilon", 0) is None and "epsilon_status" not in data:
            data = {**data, "epsilon_status": "infinite",
                    "epsilon_note": "written as null by an earlier unlearn-fl, which recorded an infinite epsilon that way"}
        return data

    @field_validator("per_client")
    @classmethod
    def _finite_per_client(cls, v: dict) -> dict:
        return {k: (float(x) if x is not None and math.isfinite(x) else None) for k, x in v.items()}

    @model_validator(mode="after")
    def _explicit_epsilon(self) -> "AccountingBlock":
        if self.epsilon is not None and not math.isfinite(self.epsilon):
            if math.isnan(self.epsilon):
                self.epsilon_status = "failed"
            else:
                self.epsilon_status = "infinite"
            self.epsilon = None
        if self.epsilon is None and self.epsilon_status == "finite":
            raise ValueError("accounting: epsilon is null but epsilon_status is 'finite'; give 'infinite' or 'failed' and a note")
        if self.epsilon is not None and self.epsilon_status != "finite":
            raise ValueError(f"accounting: epsilon {self.epsilon} is a number but epsilon_status is {self.epsilon_status!r}")
        if self.epsilon is None and not self.epsilon_note:
            self.epsilon_note = (f"the {self.accountant} accountant's epsilon is {self.epsilon_status} for noise multiplier "
                                 f"{self.noise_multiplier:g}, sample rate {self.sample_rate:.3g} and {self.steps} steps: "
                                 "the model carries no differential-privacy guarantee")
        return self

    @property
    def bound(self) -> float:
        """ε as a number for arithmetic: math.inf when not finite (an unbounded privacy loss)."""
        return math.inf if self.epsilon is None else self.epsilon

    def describe(self) -> str:
        """ε as a reader should see it: the number, or 'unbounded (why)'."""
        if self.epsilon is None:
            return f"ε unbounded ({self.epsilon_status}: {self.epsilon_note})"
        s = f"ε = {self.epsilon:.3f}"
        return s + (f" ({self.epsilon_note})" if self.epsilon_note else "")
