"""What server and clients say to each other: message types and config keys.

Every message of the protocol uses Flower's own message types, with unlearn-fl's
actions (`<category>.<action>`, routed by `ClientApp` to the handler registered for
that action), so the protocol lives beside a user's own `train`/`evaluate`/`query`:

- `train`                   local training on the site's retained rows (the wrapped strategy's rounds)
- `train.unlearn`           the method's local unlearning step (forget-holder or retainer; config `method`,
                            `method-config`, `step`; optionally a second model, `reference-arrays`)
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
model arrays and aggregate statistics only, never rows, labels or record ids: `REPLIES`
(below) declares, per message type, every key a reply may carry and what it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from unlearn_fl.data import DataSpec

ARRAYS = "arrays"
BEFORE_ARRAYS = "before-arrays"
"""The model before unlearning, beside the unlearned one, in an exposure query."""
REFERENCE_ARRAYS = "reference-arrays"
"""A second model beside `arrays` in a `train.unlearn` message: SCRUB's teacher (the global model at the start
of unlearning), or Halimi et al.'s reference model w_ref when the ascent does not start from it. Server to site only."""
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
    """DataSpec -> flat config entries a Flower ConfigRecord accepts (None becomes '', a tuple a list)."""
    return {DATA_PREFIX + k: ("" if v is None else list(v) if isinstance(v, tuple) else v) for k, v in spec.model_dump().items()}


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
    chosen deterministically from `rows_key` (1.0: the whole site).
    """

    request_id: str
    fraction: float
    records: bool = False
    rows_key: str = ""
    """What draws a fractional withdrawal's rows (`unlearn_fl.data.forget_mask`); empty: the request id."""

    @property
    def sample_key(self) -> str:
        return self.rows_key or self.request_id


Withdrawals = dict[int, list[Withdrawal]]
"""Every withdrawal applied so far, per client id, oldest first."""


def encode_withdrawals(w: Withdrawals) -> str:
    return json.dumps({str(k): [{"request_id": x.request_id, "fraction": x.fraction, "records": x.records,
                                 **({"rows_key": x.rows_key} if x.rows_key else {})} for x in v]
                       for k, v in w.items()})


def decode_withdrawals(text: str) -> Withdrawals:
    if not text:
        return {}
    return {int(k): [Withdrawal(**x) for x in v] for k, v in json.loads(text).items()}


def fully_withdrawn(withdrawals: Withdrawals) -> set[int]:
    """Sites that withdrew all their data."""
    return {c for c, v in withdrawals.items() if any(w.fraction >= 1.0 and not w.records for w in v)}


# ------------------------------------------------------------------ declared aggregates
#
# What a site's reply to each message type may carry, key by key: data, not behaviour, so that
# tests (tests/test_data_minimisation.py) and docs read the same list. Anything a reply holds
# beyond this list is a protocol change and must be declared here first.

MODEL_PARAMETERS = "*"
"""In an `arrays` declaration: every key of the model's state_dict, exactly the names and shapes of
the `arrays` record the server sent (the site's locally updated values); nothing else."""

PER_MODEL = "{model}"
"""In a key: one key per model the query names in its `audit-models` config entry (e.g. `audit-after`); the audit,
and the evaluation and retained statistics of the audited models, each send all of them in one message."""


@dataclass(frozen=True)
class DeclaredReply:
    """The records a site's reply to one message type may carry: key -> what it is (a declared aggregate).

    `arrays` is the reply's ArrayRecord `arrays`, `metrics` its MetricRecord `metrics`, `config` its
    ConfigRecord `config`; an empty mapping means the reply has no such record. Every value is an
    aggregate over the site's rows (counts, sums, means, summaries of a score distribution) or model
    parameters: never a row, a label or a record id.
    """

    summary: str
    arrays: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)

    def records(self) -> dict[str, dict[str, str]]:
        """Record name -> declared keys, for the records this reply may carry."""
        return {name: keys for name, keys in ((ARRAYS, self.arrays), (METRICS, self.metrics), (CONFIG, self.config)) if keys}


_MODEL = {MODEL_PARAMETERS: "model parameters after the local step (the state_dict the server sent, same names and shapes)"}
_PROCESSED = {"examples-processed": "count of rows passed forward and backward by the step (a compute cost: "
                                    "Σ of the optimiser steps' batch sizes; epochs × rows for local training)"}
_DP = {
    "dp-steps": "DP-SGD steps taken (only with dp-noise > 0), for the server's accountant",
    "dp-sample-rate": "DP-SGD Poisson sample rate 1/batches (only with dp-noise > 0)",
}

REPLIES: dict[str, DeclaredReply] = {
    TRAIN: DeclaredReply(
        "local epochs on the retained rows",
        arrays=_MODEL,
        metrics={"num-examples": "count of retained rows trained on (FedAvg weight; at least 1)",
                 "train-loss": "mean training loss of the last local epoch (a scalar)", **_PROCESSED, **_DP},
    ),
    UNLEARN: DeclaredReply(
        "the method's local unlearning step",
        arrays=_MODEL,
        metrics={"num-examples": "count of rows the step used (FedAvg weight; at least 1)",
                 "steps": "count of optimiser steps taken",
                 "forget-n": "count of rows the active request forgets here",
                 "target-reached": "0/1: the site's held-out stopping rule fired",
                 "examples-forward": "count of rows passed forward only, without gradient, by the step (reference "
                                     "statistics, stopping checks, a teacher's outputs: a compute cost)", **_PROCESSED, **_DP},
    ),
    EVALUATE: DeclaredReply(
        "pooled accuracy and loss, as counts and sums (of the one model sent, or per audited model)",
        metrics={**{f"num-examples{sfx}": "count of retained rows" for sfx in ("", f"-{PER_MODEL}")},
                 **{f"{g}-{k}{sfx}": v.format(g=g) for g in ("retain", "forget", "holdout")
                    for k, v in (("correct", "count of correctly classified {g} rows"),
                                 ("loss-sum", "sum of per-row losses over the {g} rows (a scalar)"),
                                 ("n", "count of {g} rows")) for sfx in ("", f"-{PER_MODEL}")}},
    ),
    DESCRIBE: DeclaredReply(
        "what the site is, no data",
        metrics={"client-id": "the site's partition id", "n-train": "count of train rows", "n-holdout": "count of holdout rows",
                 "n-classes": "class count (1 + the largest label index)"},
        config={"input-shape": "shape of one input row (without the batch axis)",
                "data-digest": "sha256 of the site's train rows (a digest, for lineage tags)"},
    ),
    INPUTS: DeclaredReply(
        "a federated input scaler",
        config={"count": "count of train rows", "sum": "per-feature sum Σx over the train rows (one value per feature)",
                "sumsq": "per-feature sum of squares Σx² over the train rows (one value per feature)"},
    ),
    COUNT: DeclaredReply(
        "the size of the active request here",
        metrics={"forget-n": "count of rows the active request forgets here"},
        config={"forget-digest": "sha256 of those rows (a digest, never the rows or their ids)"},
    ),
    STATS: DeclaredReply(
        "the retain group of the marginal criterion (docs/method.md §2)",
        config={"count": "count of retained rows",
                "mean": "mean output statistic over the retained rows (one value per statistic bin, e.g. per class)",
                f"mean-{PER_MODEL}": "the same mean, per audited model"},
    ),
    AUDIT: DeclaredReply(
        "membership audits of the forget set, computed at the site",
        config={f"audit-{PER_MODEL}": "a `ModelAudit` JSON (unlearn_fl.audit.results) per audited model: AUCs and TPR at low "
                                      "FPR, ROC points (at most 101), the empirical ε with its threshold and rates, counts, "
                                      "the marginal criterion Î(Z;V), mean losses, histograms of losses (40 bins) and of "
                                      "RMIA scores (20 bins) as shares, the reference cost (count, mode, examples, seconds)"},
    ),
    EXPOSURE: DeclaredReply(
        "a retained site's own membership exposure",
        metrics={"n-members": "count of retained rows audited", "n-nonmembers": "count of holdout rows",
                 "auc-before": "loss-threshold AUC on the model before unlearning",
                 "auc-after": "loss-threshold AUC on the unlearned model"},
    ),
}
"""Message type -> what a site's reply to it may carry (every handler `UnlearningClient.register` adds)."""

FEATURE_QUERY = "query"
"""Feature unlearning's exchange in this project's own ClientApp (`client/client_app.py`, engine/feature_exchange.py)."""

PER_T = "{t}"
"""In a key: one key per interpolation weight t of the query's `grid` (formatted with `:g`)."""

FEATURE_REPLIES: dict[str, DeclaredReply] = {
    FEATURE_QUERY: DeclaredReply(
        "per-group summaries out (task feature-summary), utility counts back (task feature-apply); for a learned "
        "representation (unlearn_fl.feature.representation): the same summary of Z (representation-summary), the "
        "refit heads' weights (representation-heads), holdout counts (representation-eval); for regularised training "
        "(unlearn_fl.feature.federated_regularized): per-group sums and counts (regularized-sums), the locally trained "
        "model (regularized-train), holdout counts (regularized-eval)",
        arrays={f"head@{PER_T}.weight": "weight of the Linear head refit for this t after the local epochs "
                                        "(representation-heads; the shape the server sent)",
                f"head@{PER_T}.bias": "its bias (representation-heads)",
                "sums": "per value of S, the sum over the site's train rows of the model's soft outcome (soft histograms "
                        "of each output coordinate, or the softmax rows): shape (groups, coordinates, bins) "
                        "(regularized-sums, unlearn_fl.feature.federated_regularized)",
                "counts": "per value of S, the count of the site's train rows (regularized-sums)",
                "<model parameter>": "the site's model after its local steps of regularised training, one array per "
                                     "parameter (regularized-train; FedAvg's input)"},
        metrics={"n": "count of holdout rows the utility was measured on (feature-apply, representation-eval)",
                 f"correct@{PER_T}": "count of holdout rows a probe trained on the transformed train rows classifies "
                                     "correctly, per t (feature-apply), or the refit head for t (representation-eval)",
                 "num-examples": "count of train rows the heads were trained on (FedAvg weight; at least 1; "
                                 "representation-heads), or the model (regularized-train)",
                 "utility-loss": "the utility loss of the site's last local batch (regularized-train)",
                 "penalty": "the federation's Î(Z;S) at the site's last local batch, nats (regularized-train)",
                 "correct": "count of holdout rows the model classifies correctly (regularized-eval)"},
        config={"summary": "JSON of the site's per-group summary of its features without S (feature-summary): group "
                           "labels (the values of S: numbers, or the categories of a text column) and counts, plus Σz "
                           "and Σzzᵀ per group (gaussian) or each coordinate's quantile function at 201 levels per "
                           "group, per one-hot encoded text column, the count of each category per group, and, when the "
                           "server asks with smoothing auto, per coordinate three split scores (log-spacing statistics "
                           "of held-out ranks, BarycenterProjector.smoothing_scores) (quantile); or, when the server asks for "
                           "summary marginals (--summary marginals), each coordinate's distinct values with the count of "
                           "each per group (every value of every column, unlinked across columns; "
                           "unlearn_fl.feature.marginals) and the one-hot category counts; representation-summary: the same summary of Z, the global model's penultimate "
                           "pre-activation (or output scores) on the site's train rows, one coordinate per unit"},
    ),
}
"""Replies of this project's own ClientApp beyond `REPLIES` (not part of `UnlearningClient`'s protocol)."""
