"""Withdrawal requests: validated, identified, recognisable when repeated."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from unlearn_fl.config import RecordScope, check_text


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
    records: RecordScope | None = Field(
        None, description="Record-level erasure at one site: the count and salted digest of the named ids (the ids stay at the site).")
    rows_key: str | None = Field(
        None, max_length=128,
        description="What draws the rows a fractional withdrawal forgets (None: the request id). A simulation's planned "
                    "withdrawals derive it from the run's seed, so a seeded run forgets the same rows every time while "
                    "its request ids stay unique.")
    submitted_at: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    @model_validator(mode="after")
    def _records_one_site(self) -> "WithdrawalRequest":
        if self.records is not None and len(self.client_ids) != 1:
            raise ValueError(f"a record-level request names exactly one site, got {list(self.client_ids)}")
        return self

    @property
    def scope(self) -> str:
        """client (whole sites), fraction (a share of their rows) or records (rows named at the site)."""
        return "records" if self.records is not None else ("client" if self.fraction >= 1.0 else "fraction")

    @field_validator("client_ids")
    @classmethod
    def _ids(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(c < 0 for c in v):
            raise ValueError(f"client ids must be non-negative, got {list(v)}")
        if len(set(v)) != len(v):
            raise ValueError(f"client ids repeat: {list(v)}")
        return tuple(sorted(v))

    @field_validator("reason", "salt")
    @classmethod
    def _text(cls, v: str | None, info) -> str | None:
        return check_text(v, f"the request's {info.field_name}")

    @field_validator("fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0.0 < v <= 1.0:
            raise ValueError(f"forget fraction {v} is outside (0, 1]; use e.g. 0.5 for half of a client's data")
        return v

    @property
    def request_id(self) -> str:
        content = {"clients": list(self.client_ids), "fraction": self.fraction, "salt": self.salt}
        if self.records is not None:
            content["records"] = self.records.digest
        body = json.dumps(content, sort_keys=True)
        return "wr-" + hashlib.sha256(body.encode()).hexdigest()[:12]


def _problems(e: Exception) -> str:
    """Which fields of a request file are wrong, and why, without echoing its content (it goes into the ledger)."""
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        errs = e.errors(include_input=False, include_url=False)
        if errs and errs[0].get("type") == "json_invalid":
            return "not valid JSON; write it with `unlearn-fl withdraw`"
        parts = [f"{'.'.join(str(x) for x in err.get('loc', ())) or 'request'}: {err.get('msg', 'invalid')}" for err in errs[:3]]
        return "; ".join(parts) + ("; ..." if len(errs) > 3 else "") + "; write it with `unlearn-fl withdraw`"
    return f"{type(e).__name__}; write it with `unlearn-fl withdraw`"


class RequestQueue:
    """A folder of withdrawal requests that a running server polls between rounds.

    pending/<id>.json   submitted, not yet applied
    applied/<id>.json   applied; holds the resulting model version
    failed/<id>.json    aborted (e.g. too few clients answered); the previous version is untouched

    Writes are atomic (temp file + rename), so a server never reads half a request, and a
    request whose id is already pending or applied is recognised as a duplicate.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        for sub in ("pending", "applied", "failed"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def _write(self, path: Path, text: str) -> None:
        # A temp file of this writer's own (two processes may write the same request at once), then an atomic rename.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def status(self, request_id: str) -> str | None:
        for sub in ("applied", "pending", "failed"):
            if (self.root / sub / f"{request_id}.json").exists():
                return sub
        return None

    def submit(self, request: WithdrawalRequest) -> tuple[str, bool]:
        """(request id, True if new; False if the same request is already pending or applied)."""
        rid = request.request_id
        if self.status(rid) in ("pending", "applied"):
            return rid, False
        self._write(self.root / "pending" / f"{rid}.json", request.model_dump_json(indent=2))
        return rid, True

    def poll(self) -> list[WithdrawalRequest]:
        """Pending requests, oldest first. A malformed file is moved to failed/ with the reason, and
        `rejected` lists (file name, one-line reason) of those found by this poll."""
        out, self.rejected = [], []
        for p in sorted((self.root / "pending").glob("*.json"), key=lambda q: q.stat().st_mtime):
            try:
                out.append(WithdrawalRequest.model_validate_json(p.read_text()))
            except Exception as e:  # a bad file must not stop the federation
                why = f"invalid request file {p.name}: {_problems(e)}"
                # The file is kept as it was (failed/NAME), with the reason beside it (failed/NAME.error.json).
                self._write(self.root / "failed" / f"{p.name}.error.json", json.dumps({"error": why}))
                os.replace(p, self.root / "failed" / p.name)
                self.rejected.append((p.name, why))
        return out

    def mark_applied(self, request: WithdrawalRequest, version: str | None) -> None:
        rid = request.request_id
        body = {"request": json.loads(request.model_dump_json()), "version": version}
        self._write(self.root / "applied" / f"{rid}.json", json.dumps(body, indent=2))
        (self.root / "pending" / f"{rid}.json").unlink(missing_ok=True)

    def mark_failed(self, request: WithdrawalRequest, reason: str) -> None:
        rid = request.request_id
        body = {"request": json.loads(request.model_dump_json()), "error": reason}
        self._write(self.root / "failed" / f"{rid}.json", json.dumps(body, indent=2))
        (self.root / "pending" / f"{rid}.json").unlink(missing_ok=True)
