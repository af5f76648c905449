"""Settings of a federation with withdrawals (pydantic, validated up front).

`UnlearningSettings` is what the server side needs and nothing more: it holds no data and
no model, so it serves any Flower app (`engine.strategy.UnlearningStrategy`).
`RunConfig` adds what the project's own app needs to make the data and the model
(`unlearn-fl simulate`, `flwr run .`): a data spec or per-site files, and the architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from unlearn_fl.types import Seed
from unlearn_fl.data import DataSpec
from unlearn_fl.methods import METHODS

MODEL_NAME_MAX_LENGTH = 256
"""MLflow's registry stores names in VARCHAR(256) columns."""


def check_model_name(name: str) -> str:
    """`name` if MLflow can register, search and load a model under it; else ValueError (one line, with the fix).

    MLflow's own rules (`mlflow.utils.validation._validate_model_name`, and the file store's): not empty,
    no '/' or ':', no '%', not a path that normalises to another name ('.', '..', '..x'). Ours on top,
    each because something breaks later, after training: no '?' or '@' (`models:/NAME/VERSION` and
    `models:/NAME@ALIAS` URIs cannot name it), not both kinds of quote (MLflow's filter strings cannot
    match it), no control characters, at most 256 characters. A single quote is fine.
    """
    fix = "pass another --model-name, e.g. 'unlearn-fl' (letters, digits, spaces, '-', '_', '.', quotes are fine)"
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name {name!r} is empty: {fix}")
    bad = next((c for c in name if c in "/:%?@"), None)
    if bad is not None:
        why = ("MLflow refuses it" if bad in "/:%" else
               "MLflow would register it, but models:/NAME/VERSION and models:/NAME@ALIAS URIs cannot name it")
        raise ValueError(f"model name {name!r} contains {bad!r}, which a registered model name cannot hold ({why}): {fix}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"model name {name!r} contains a control character (line break, tab, ...): {fix}")
    if name in (".", "..") or name.startswith(".."):
        raise ValueError(f"model name {name!r} reads as a relative path, which MLflow refuses: {fix}")
    if "'" in name and '"' in name:
        raise ValueError(f"model name {name!r} contains both kinds of quote, which MLflow's search filters cannot match: {fix}")
    if len(name) > MODEL_NAME_MAX_LENGTH:
        raise ValueError(f"model name is {len(name)} characters long; MLflow's registry holds at most "
                         f"{MODEL_NAME_MAX_LENGTH}: pass a shorter --model-name")
    return name


def check_text(value: str | None, what: str) -> str | None:
    """`value` if it is UTF-8 text of at most 1000 characters (it goes into JSON, MLflow and the ledger); else ValueError."""
    if value is None:
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} holds bytes that are not UTF-8 text: write it in UTF-8") from None
    if len(value) > 1000:
        raise ValueError(f"{what} is {len(value)} characters long: keep it under 1000")
    return value


class AuditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    delta: float = Field(1e-5, gt=0, lt=1)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    max_auc_gap_to_retrain: float = Field(0.05, ge=0, le=0.5)
    max_auc_without_reference: float = Field(0.60, ge=0.5, le=1)
    epsilon_target: float | None = Field(None, ge=0)
    references: int = Field(0, ge=0, le=32, description="Extra RMIA reference models each withdrawing site trains on its own "
                                                        "rows for the audit (0: the retrained model is the only reference).")
    reference_mode: str = Field("offline", pattern="^(offline|online)$", description="offline: the site's references see "
                                "none of the audited rows; online: each sees a random half of them (RMIA online).")
    reference_epochs: int = Field(2, ge=1, le=100, description="Local epochs of each site reference, from the retrained weights.")
    test_nonmembers: bool = Field(True, description=(
        "Add the server's test split to each site's holdout as audit non-members. Only sound when the test split "
        "comes from the forget set's distribution; off for data with canaries (the test split has none)."))


class DPSettings(BaseModel):
    """Differential privacy of the federation (accounted with Opacus, accounting/)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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


class RecordScope(BaseModel):
    """A record-level erasure as the server knows it: how many rows, and a salted digest of their ids.

    The ids themselves stay at the site (`sites.ErasureStore`); they never reach the server.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=1)
    digest: str = Field(min_length=16)


class WithdrawalPlan(BaseModel):
    """A withdrawal planned for a run: which clients, how much, after which training round."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    client_ids: tuple[int, ...] = Field(min_length=1)
    fraction: float = 1.0
    at_round: int | None = Field(None, ge=1, description="After this training round; None: after the last one.")
    reason: str | None = None
    records: RecordScope | None = Field(None, description="Record-level erasure (one client): count and digest only.")

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str | None) -> str | None:
        return check_text(v, "the reason")

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

    @model_validator(mode="after")
    def _records_one_client(self) -> "WithdrawalPlan":
        if self.records is not None and len(self.client_ids) != 1:
            raise ValueError(f"a record-level withdrawal names one site, got clients {list(self.client_ids)}")
        return self


class UnlearningSettings(BaseModel):
    """What the server side of a federation with withdrawals needs: no data, no model.

    Training hyper-parameters travel to the clients in every train message; `rounds`,
    `lr`, `local_epochs` and `batch_size` are overridden by `UnlearningStrategy.start`'s
    `num_rounds` and `train_config` when a user app gives them.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    num_clients: int = Field(5, ge=1, le=10_000, description="Sites expected to connect (their partition ids are 0..N-1).")
    rounds: int = Field(5, ge=1, le=1000)
    local_epochs: int = Field(2, ge=1, le=100)
    batch_size: int = Field(32, ge=1, le=1_000_000)
    lr: float = Field(5e-3, gt=0)
    withdrawals: list[WithdrawalPlan] = Field(default_factory=list)
    requests_dir: Path | None = Field(None, description="Folder of withdrawal requests the server polls after every round.")
    method: str = "marginal"
    method_config: dict[str, Any] = Field(default_factory=dict)
    unlearn_rounds: int = Field(2, ge=1, le=100, description="Maximum unlearning rounds; the forget-holders' stopping rule may end them sooner.")
    store_history: bool = Field(
        False, description="Store every client's update every `history_every` training rounds, whatever the method "
                           "(FedEraser needs it; it is stored anyway when the method is federaser).")
    history_every: int = Field(2, ge=1, le=1000, description="FedEraser's Δt: store the updates of training rounds 1, 1 + Δt, ...")
    forget_weight: Literal["objective", "examples"] = Field(
        "objective", description="How an unlearning round weighs the forget-holders' steps: objective = the forget term "
                                 "counted once, as in the central objective (engine/objective_weights.py); examples = "
                                 "plain FedAvg, which scales it by the holders' share of the examples.")
    max_test_drop: float = Field(0.03, ge=0, le=1, description="An unlearning round that costs more test accuracy is rolled back.")
    reference: bool = Field(True, description="Also retrain from scratch without the withdrawn data, for comparison.")
    min_unlearn_fraction: float = Field(
        0.5, ge=0, le=1, description="Share of retaining clients that must answer an unlearning round (forget-holders always must)."
    )
    max_retries: int = Field(1, ge=0, le=10, description="Retries of an unlearning round that too few clients answered.")
    promote: str = Field("on-pass", pattern="^(on-pass|always|never)$", description="When `production` moves to an unlearned version.")
    erase_superseded: str = Field(
        "keep", pattern="^(keep|quarantine|delete)$",
        description="After a verified unlearning, what happens to earlier versions that hold the withdrawn data: keep them "
                    "(tagged), quarantine them (artefacts erased, metadata kept), or delete them with their artefacts.")
    ledger: str | None = Field(
        None, description="SQLAlchemy URL of the withdrawal ledger (None: sqlite beside an sqlite MLflow store, else in `out`).")
    inject_failure: tuple[int, ...] = Field((), description="Testing resilience: these clients fail every unlearning step.")
    model_name: str = Field("unlearn-fl", min_length=1)
    tracking_uri: str = "sqlite:///mlflow.db"
    out: Path = Path("unlearn-report")
    seed: Seed = 0
    plan_salt: str = Field("", max_length=64, description="Salt of this run's planned withdrawals' request ids (empty: a "
                                                          "random one per run, so a rerun's plans are new requests).")
    checkpoint_every: int | None = Field(None, ge=1, description="Also register the trained model every K rounds.")
    strategy: str = Field("fedavg", pattern="^(fedavg|fedprox|fedavgm|fedadam)$", description="The Flower strategy that aggregates.")
    proximal_mu: float = Field(0.01, ge=0, description="FedProx proximal term weight μ.")
    standardize_inputs: bool = Field(
        False, description="Fit a feature scaler from the sites' declared sums (count, Σx, Σx²) and apply it everywhere.")
    audit: AuditSettings = Field(default_factory=AuditSettings)
    dp: DPSettings = Field(default_factory=DPSettings)

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, v: str) -> str:
        return check_model_name(v)

    @model_validator(mode="after")
    def _check(self) -> "UnlearningSettings":
        n = self.num_clients
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
            if plan.fraction == 1.0 and plan.records is None:
                fully_gone |= set(plan.client_ids)
        if len(fully_gone) >= n:
            raise ValueError("every client would withdraw all its data: nothing would be left to train on")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}: choose one of {', '.join(METHODS)}")
        try:
            METHODS[self.method].make_config(**self.method_config)  # validates the method's settings
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(x) for x in err.get("loc", ())) or "?"
            fields = ", ".join(METHODS[self.method].make_config().model_fields)
            raise ValueError(f"--method-config key {key!r}: {err.get('msg', 'invalid')}; "
                             f"the settings of {self.method} are: {fields}") from None
        if self.dp.central and self.method in ("federaser", "pga"):
            raise ValueError(f"{self.method} combines client models itself, outside Flower's server-side DP wrapper, "
                             "so the accountant's ε would not hold: drop --central-dp-noise or choose another --method")
        a = self.audit
        if a.references > 0 and not self.reference:
            raise ValueError("--audit-references needs the retrain-from-scratch reference: drop --no-reference or set it to 0")
        if a.reference_mode == "online" and a.references < 2:
            raise ValueError("--audit-reference-mode online needs --audit-references 2 or more (each audited row is IN for half)")
        return self

    def ledger_url(self) -> str:
        """Where the withdrawal ledger is: `ledger`, or the default of `unlearn_fl.ledger.default_ledger_url`."""
        from unlearn_fl.ledger import default_ledger_url

        return self.ledger or default_ledger_url(self.tracking_uri, self.out)

    def schedule(self) -> list[WithdrawalPlan]:
        """Planned withdrawals in the order they happen (unplanned rounds: after the last round)."""
        return sorted(self.withdrawals, key=lambda p: p.at_round or self.rounds)


ModelKind = Literal["mlp", "cnn"]


class RunConfig(UnlearningSettings):
    """The project's own app (`unlearn-fl simulate`, `flwr run .`): settings + how data and model are made.

    Data is either a bundled data set / CSV partitioned by `data` (simulation), or one
    file per site (`site_files` in simulation, `data-path` in each SuperNode's node config).
    With per-site files the server holds no client data: evaluation is federated.
    """

    data: DataSpec = Field(default_factory=DataSpec)
    site_files: tuple[str, ...] = Field((), description="One data file per simulated site (CSV, .npz or image folder).")
    site_data: bool = Field(False, description="Each site loads its own file (node config data-path): the server holds no client data.")
    sites_dir: Path | None = Field(None, description="Site-local folders (erasure stores) of simulated sites.")
    classes: str = Field("", description="Label names in order (comma-separated) for site files with text labels.")
    id_column: str = Field("record_id", description="Column of record ids in site CSV files.")
    model: ModelKind = Field("mlp", description="mlp for tables, cnn for images (the digits as 8x8 images with --dataset digits).")
    hidden: tuple[PositiveInt, ...] = (64,)
    withdrawals: list[WithdrawalPlan] = Field(default_factory=lambda: [WithdrawalPlan(client_ids=(0,))])

    @model_validator(mode="before")
    @classmethod
    def _clients_from_data(cls, values):
        if isinstance(values, dict):
            data = values.get("data")
            n = data.num_clients if isinstance(data, DataSpec) else (data or {}).get("num_clients") if isinstance(data, dict) else None
            files = values.get("site_files") or ()
            if isinstance(files, (list, tuple)) and files:  # (anything else: the field's own validation error)
                values = {**values, "num_clients": len(files)}
            elif n is not None and "num_clients" not in values:
                values = {**values, "num_clients": n}
        return values

    @model_validator(mode="after")
    def _data_matches(self) -> "RunConfig":
        if not self.site_files and self.data.num_clients != self.num_clients:
            self.data = self.data.model_copy(update={"num_clients": self.num_clients})
        if self.data.canaries > 0 and self.audit.test_nonmembers:  # clean test rows are not like-for-like non-members
            self.audit = self.audit.model_copy(update={"test_nonmembers": False})
        return self

    @property
    def server_has_data(self) -> bool:
        """True when the server holds a test split of its own (bundled or CSV data it partitions)."""
        return not (self.site_files or self.site_data)
