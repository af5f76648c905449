"""What server and clients say to each other: message kinds and config keys.

Everything a client needs arrives in the message's ConfigRecord, so the same
ClientApp runs under the simulation engine and the deployment engine. A client
answers with model arrays and aggregate statistics only, never rows.

Message kinds (Flower message types):
- train  `phase=train`    local training on the client's retained data
- train  `phase=unlearn`  the method's local unlearning step (role: forget-holder or retainer)
- query  `task=hello`     the client's id (its partition id), so the server maps nodes to clients
- query  `task=stats`     mean output statistic + count over retained data (method-notes §3.4)
- query  `task=audit`     membership audit of the forget set, computed locally, summary returned
- query  `task=count`     how many rows the active request forgets on this client

`withdrawals` (every request applied so far) and `active-request` (the request being
unlearned now) travel in the config; a client derives its retained rows and its rows
to forget from them, deterministically.
- evaluate                accuracy/loss counts on retained data and the forget set
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from unlearn_fl.data import DataSpec

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"

DATA_PREFIX = "data."


def encode_spec(spec: DataSpec) -> dict:
    """DataSpec -> flat config entries (None becomes '')."""
    return {DATA_PREFIX + k: ("" if v is None else v) for k, v in spec.model_dump().items()}


def decode_spec(config: dict) -> DataSpec:
    raw = {k[len(DATA_PREFIX):]: v for k, v in config.items() if k.startswith(DATA_PREFIX)}
    if raw.get("target") == "":
        raw["target"] = None
    return DataSpec(**raw)


@dataclass(frozen=True)
class Withdrawal:
    """One client's part of one withdrawal request: which request, how much of its data."""

    request_id: str
    fraction: float


Withdrawals = dict[int, list[Withdrawal]]
"""Every withdrawal applied so far, per client id, oldest first."""


def encode_withdrawals(w: Withdrawals) -> str:
    return json.dumps({str(k): [{"request_id": x.request_id, "fraction": x.fraction} for x in v] for k, v in w.items()})


def decode_withdrawals(text: str) -> Withdrawals:
    if not text:
        return {}
    return {int(k): [Withdrawal(**x) for x in v] for k, v in json.loads(text).items()}
