"""Withdrawal requests: validated, identified, recognisable when repeated."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field, field_validator


class WithdrawalRequest(BaseModel):
    """A client asks for (part of) its data to be forgotten.

    The id is a digest of what is asked (clients, fraction, salt), so submitting the same
    request twice yields the same id and is not applied twice.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_ids: tuple[int, ...] = Field(min_length=1)
    fraction: float = Field(1.0, description="Share of each client's training rows to forget, in (0, 1].")
    reason: str | None = None
    salt: str = Field("", description="Distinguishes two genuinely different requests with the same content.")
    submitted_at: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    @field_validator("client_ids")
    @classmethod
    def _ids(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(c < 0 for c in v):
            raise ValueError(f"client ids must be non-negative, got {list(v)}")
        if len(set(v)) != len(v):
            raise ValueError(f"client ids repeat: {list(v)}")
        return tuple(sorted(v))

    @field_validator("fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0.0 < v <= 1.0:
            raise ValueError(f"forget fraction {v} is outside (0, 1]; use e.g. 0.5 for half of a client's data")
        return v

    @property
    def request_id(self) -> str:
        body = json.dumps({"clients": list(self.client_ids), "fraction": self.fraction, "salt": self.salt}, sort_keys=True)
        return "wr-" + hashlib.sha256(body.encode()).hexdigest()[:12]
