"""What server and clients say to each other: message types and config keys.

Every message of the protocol uses Flower's own message types, with unlearn-fl's
actions (`<category>.<action>`, routed by `ClientApp` to the handler registered for
that action), so the protocol lives beside a user's own `train`/`evaluate`/`query`:

- `train`                   local training on the site's retained rows (the wrapped strategy's rounds)
- `train.unlearn`           the method's local unlearning step (forget-holder or retainer)
- `evaluate.unlearn`        counts and summed losses on retained, forgotten and holdout rows
- `query.unlearn_describe`  the site's id, input shape, class count and row counts
- `query.unlearn_inputs`    count, Σx, Σx² per input feature (a declared aggregate, for a federated scaler)
- `query.unlearn_count`     rows the active request forgets here, and a digest of them
- `query.unlearn_stats`     mean output statistic + count over retained rows (docs/method.md §2)
- `query.unlearn_audit`     membership audits of the forget set for several models at once
                            (`arrays-<name>`: before, after, retrain; loss threshold, and RMIA against
                            the retrained model), computed at the site, summaries returned
- `query.unlearn_exposure`  a retained site's own rows vs its holdout on the models before and after
                            unlearning (loss-threshold AUCs and counts only)

Everything a site needs arrives in the message's ConfigRecord: `withdrawals` (every
request applied so far) and `active-request` (the one being unlearned now). A site
derives its retained rows and its rows to forget from them, deterministically; for a
record-level request it reads the ids from its own erasure store. A site answers with
model arrays and aggregate statistics only, never rows, labels or record ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from unlearn_fl.data import DataSpec

ARRAYS = "arrays"
BEFORE_ARRAYS = "before-arrays"
"""The model before unlearning, beside the unlearned one, in an exposure query."""
CONFIG = "config"
METRICS = "metrics"

TRAIN = "train"
UNLEARN = "train.unlearn"
EVALUATE = "evaluate.unlearn"
DESCRIBE = "query.unlearn_describe"
INPUTS = "query.unlearn_inputs"
COUNT = "query.unlearn_count"
STATS = "query.unlearn_stats"
AUDIT = "query.unlearn_audit"
EXPOSURE = "query.unlearn_exposure"

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
    """One site's part of one withdrawal request: which request, and how much of its data.

    `records=True`: the rows are named by record id in the site's own erasure store
    (`fraction` is then unused); otherwise a `fraction` of the site's training rows,
    chosen deterministically from the request id (1.0: the whole site).
    """

    request_id: str
    fraction: float
    records: bool = False


Withdrawals = dict[int, list[Withdrawal]]
"""Every withdrawal applied so far, per client id, oldest first."""


def encode_withdrawals(w: Withdrawals) -> str:
    return json.dumps({str(k): [{"request_id": x.request_id, "fraction": x.fraction, "records": x.records} for x in v]
                       for k, v in w.items()})


def decode_withdrawals(text: str) -> Withdrawals:
    if not text:
        return {}
    return {int(k): [Withdrawal(**x) for x in v] for k, v in json.loads(text).items()}


def fully_withdrawn(withdrawals: Withdrawals) -> set[int]:
    """Sites that withdrew all their data."""
    return {c for c, v in withdrawals.items() if any(w.fraction >= 1.0 and not w.records for w in v)}
