"""Datasets, federated partitions and forget sets.

Every party derives its own view from a `DataSpec` and the seed: a client loads
only its own shard (train + local holdout), the server only the test split.
Nothing here moves data between parties; in a real deployment each node points
`DataSpec.dataset` at its own file.

Feature scaling is fitted on the server's test split, data that no withdrawal
can touch, so a forgotten client never leaves a trace in the preprocessing.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from unlearn_fl.types import Seed

BUILTIN_DATASETS = ("digits", "breast_cancer", "wine", "iris")


class DataError(ValueError):
    """Bad dataset input; the message names the problem and the fix."""


class DataSpec(BaseModel):
    """How the data of a (simulated) federation is made; identical on every node."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dataset: str = Field("digits", description="A bundled dataset name or a path to a CSV file.")
    target: str | None = Field(None, description="Target column of a CSV dataset.")
    num_clients: int = Field(5, ge=1, le=10_000)
    partition: Literal["iid", "dirichlet"] = "iid"
    alpha: float = Field(0.5, gt=0)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    holdout_fraction: float = Field(0.2, ge=0, lt=1)
    canaries: float = Field(0.0, ge=0, le=1, description=(
        "Share of each canary client's train and holdout rows given a wrong label (mislabelled canaries): only "
        "memorisation fits them, so a model trained on them measurably remembers that client (docs/method.md §4)."))
    canary_clients: tuple[int, ...] = Field((0,), description="Clients whose rows carry the canaries.")
    canary_kind: Literal["mislabel", "ood"] = Field("ood", description=(
        "mislabel: a real row with a wrong label; ood: an out-of-distribution row (every feature drawn uniformly "
        "over its range in the table) with a random label. Other clients' data constrain a mislabelled row's "
        "region, so FedAvg averages much of its memorisation away; nothing constrains an OOD row's."))
    seed: Seed = 0

    @field_validator("dataset")
    @classmethod
    def _known(cls, v: str) -> str:
        if v in BUILTIN_DATASETS or v.lower().endswith(".csv"):
            return v
        raise ValueError(f"unknown dataset {v!r}: use one of {', '.join(BUILTIN_DATASETS)} or a path ending in .csv")


@dataclass(frozen=True)
class Table:
    """A whole labelled table: float32 features, int64 labels 0..C-1."""

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Split:
    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: np.ndarray) -> "Split":
        return Split(self.X[idx], self.y[idx])


@dataclass(frozen=True)
class ClientData:
    """One client's local data: what it trains on and a never-trained holdout."""

    client_id: int
    train: Split
    holdout: Split


# ---------------------------------------------------------------- loading


def continuous_example(values: np.ndarray) -> float | None:
    """A value of a numeric target that is not a whole number (so not a class index), else None."""
    v = np.asarray(values)
    if v.dtype.kind != "f":
        return None
    frac = v[np.isfinite(v) & (v != np.round(v))]
    return float(frac[0]) if len(frac) else None


def class_label_problem(counts: np.ndarray) -> str | None:
    """Why labels with these per-class row counts cannot be classes of a classifier, else None.

    A classifier needs several rows of each class. A target with more classes than half its rows, or
    whose classes mostly hold a single row, is a quantity (a price, an age in days, an id), not a label:
    trained as classes it gives accuracy 0 on every unseen row. Two-class targets always pass.
    """
    counts = np.asarray(counts)
    counts = counts[counts > 0]
    k, n, single = len(counts), int(counts.sum()), int((counts == 1).sum())
    if k <= 2 or (2 * k <= n and 2 * single <= k):
        return None
    return (f"has {k} distinct values in {n} rows ({single} of them on a single row), so it looks like a quantity, not "
            "class labels: this is a classifier; bin it into a few classes (e.g. low/high) or pick a label column")


def _load_builtin(name: str) -> Table:
    from sklearn import datasets

    loader = {
        "digits": datasets.load_digits,
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
    }[name]
    b = loader()
    names = tuple(str(n) for n in getattr(b, "feature_names", [f"x{i}" for i in range(b.data.shape[1])]))
    classes = tuple(str(c) for c in getattr(b, "target_names", np.unique(b.target)))
    return Table(b.data.astype(np.float32), b.target.astype(np.int64), names, classes)


def load_csv(path: str | Path, target: str | None, max_categories: int = 50) -> Table:
    """Load a CSV: numeric columns as they are, text columns one-hot, target labels encoded 0..C-1.

    Raises DataError for an unreadable file, a missing target, a column of
    numbers polluted by text, or a text column with too many categories.
    """
    import pandas as pd

    p = Path(path)
    if target is None or target == "":
        raise DataError(f"CSV dataset {p} needs a target column: pass --target COLUMN")
    try:
        df = pd.read_csv(p)
    except FileNotFoundError:
        raise DataError(f"cannot read CSV {p}: no such file; check the --dataset path") from None
    except Exception as e:  # pandas raises many types for malformed files
        raise DataError(f"cannot read CSV {p}: {e.__class__.__name__}: {e}; check that it is a comma-separated file with a header row") from None
    if df.empty:
        raise DataError(f"CSV {p} has no rows")
    if target not in df.columns:
        raise DataError(f"target column {target!r} is not in {p}; columns are: {', '.join(map(str, df.columns))}")
    y_raw = df.pop(target)
    if y_raw.isna().any():
        raise DataError(f"target column {target!r} has {int(y_raw.isna().sum())} empty values; drop or fill those rows")
    numeric = pd.api.types.is_numeric_dtype
    frac = continuous_example(y_raw.to_numpy()) if numeric(y_raw) else None
    if frac is not None:
        raise DataError(f"target column {target!r} of {p} looks continuous (values such as {frac!r}), so it cannot be a "
                        "class label: this is a classifier; bin it into a few classes (e.g. low/high) or pick a label column")
    classes, y = np.unique(y_raw.to_numpy() if numeric(y_raw) else y_raw.astype(str).to_numpy(), return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"target column {target!r} has a single class; classification needs at least two")
    problem = class_label_problem(np.bincount(y))
    if problem is not None:
        raise DataError(f"target column {target!r} of {p} {problem}")
    parts, names = [], []
    for col in df.columns:
        s = df[col]
        if numeric(s) or pd.api.types.is_bool_dtype(s):
            if s.isna().any():
                raise DataError(f"column {col!r} has {int(s.isna().sum())} empty values; fill or drop them before unlearning")
            parts.append(s.to_numpy(dtype=np.float64)[:, None])
            names.append(str(col))
            continue
        as_num = pd.to_numeric(s, errors="coerce")
        bad = s[as_num.isna() & s.notna()]
        if as_num.notna().mean() >= 0.9 and len(bad):
            raise DataError(
                f"column {col!r} is numeric but has non-numeric values such as {bad.iloc[0]!r} "
                f"(row {int(bad.index[0]) + 2} of the file); fix or remove them"
            )
        cats = s.fillna("<missing>").astype(str)
        uniq = np.unique(cats)
        if len(uniq) > max_categories:
            raise DataError(
                f"column {col!r} is text with {len(uniq)} distinct values, too many to one-hot encode "
                f"(limit {max_categories}); drop it or encode it yourself"
            )
        for u in uniq:
            parts.append((cats.to_numpy() == u).astype(np.float64)[:, None])
            names.append(f"{col}={u}")
    if not parts:
        raise DataError(f"CSV {p} has no feature columns besides the target {target!r}")
    X = np.hstack(parts).astype(np.float32)
    if not np.isfinite(X).all():
        raise DataError(f"CSV {p} has infinite values; replace them with finite numbers")
    return Table(X, y.astype(np.int64), tuple(names), tuple(str(c) for c in classes))


@functools.lru_cache(maxsize=16)
def load_table(dataset: str, target: str | None = None) -> Table:
    """A bundled dataset by name, or a CSV by path (cached per process)."""
    if dataset in BUILTIN_DATASETS:
        return _load_builtin(dataset)
    return load_csv(dataset, target)


# ---------------------------------------------------------------- partitioning


@dataclass(frozen=True)
class Federation:
    """The whole split: scaled test set and each client's train/holdout indices into the table."""

    table: Table
    mean: np.ndarray
    scale: np.ndarray
    test_idx: np.ndarray
    client_train_idx: tuple[np.ndarray, ...]
    client_holdout_idx: tuple[np.ndarray, ...]
    labels: np.ndarray | None = None
    """The labels the clients hold: the table's, with the canaries' labels changed (None: the table's)."""
    features: np.ndarray | None = None
    """The features the clients hold: the table's, with OOD canaries' rows replaced (None: the table's)."""
    canary_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Table rows that are canaries (sorted)."""

    def scaled(self, idx: np.ndarray) -> Split:
        X = ((self.table.X if self.features is None else self.features)[idx] - self.mean) / self.scale
        y = self.table.y if self.labels is None else self.labels
        return Split(X.astype(np.float32), y[idx])


def _iid(idx: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [np.sort(a) for a in np.array_split(rng.permutation(idx), n)]


def _dirichlet(idx: np.ndarray, y: np.ndarray, n: int, alpha: float, rng: np.random.Generator, min_size: int = 2) -> list[np.ndarray]:
    """Label-skewed shards: each class is spread over clients by Dirichlet(alpha) proportions."""
    for _ in range(100):
        shards: list[list[int]] = [[] for _ in range(n)]
        for c in np.unique(y[idx]):
            members = rng.permutation(idx[y[idx] == c])
            props = rng.dirichlet(np.full(n, alpha))
            cuts = (np.cumsum(props) * len(members)).astype(int)[:-1]
            for k, part in enumerate(np.split(members, cuts)):
                shards[k].extend(part.tolist())
        if min(len(s) for s in shards) >= min_size:
            return [np.sort(np.asarray(s, dtype=np.int64)) for s in shards]
    raise DataError(
        f"could not give every one of {n} clients at least {min_size} examples with alpha={alpha}; "
        "raise --alpha or lower --clients"
    )


@functools.lru_cache(maxsize=16)
def _federation(spec_json: str) -> Federation:
    spec = DataSpec.model_validate_json(spec_json)
    table = load_table(spec.dataset, spec.target)
    n = len(table.y)
    min_needed = spec.num_clients * 4 + 2
    if n < min_needed:
        raise DataError(f"dataset has {n} rows, too few for {spec.num_clients} clients (need at least {min_needed}); lower --clients")
    rng = np.random.default_rng(spec.seed)
    perm = rng.permutation(n)
    n_test = max(1, int(round(spec.test_fraction * n)))
    test_idx, pool = np.sort(perm[:n_test]), perm[n_test:]
    shards = _iid(pool, spec.num_clients, rng) if spec.partition == "iid" else _dirichlet(pool, table.y, spec.num_clients, spec.alpha, rng)
    train, hold = [], []
    for shard in shards:
        s = rng.permutation(shard)
        n_h = int(round(spec.holdout_fraction * len(s)))
        hold.append(np.sort(s[:n_h]))
        train.append(np.sort(s[n_h:]))
    Xt = table.X[test_idx].astype(np.float64)
    mean = Xt.mean(axis=0)
    scale = Xt.std(axis=0)
    scale[scale < 1e-8] = 1.0
    labels, features, canary_idx = None, None, np.zeros(0, dtype=np.int64)
    if spec.canaries > 0:
        labels, features, canary_idx = _plant_canaries(table, spec, train, hold)
    return Federation(table, mean.astype(np.float32), scale.astype(np.float32), test_idx, tuple(train), tuple(hold),
                      labels, features, canary_idx)


def _plant_canaries(table: Table, spec: DataSpec, train: list[np.ndarray], hold: list[np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(labels, features or None, canary rows): `spec.canaries` of each canary client's train rows and,
    separately, of its holdout rows become canaries. `mislabel`: the label is drawn uniformly from the C − 1
    wrong classes. `ood`: every feature is drawn uniformly over that feature's range in the table and the label
    uniformly over all classes. Train and holdout carry the same share, so the client's holdout stays a
    like-for-like non-member set for its membership audit. The test split is clean.

    Raises DataError when a canary client id is outside 0..N−1.
    """
    bad = [c for c in spec.canary_clients if not 0 <= c < spec.num_clients]
    if bad:
        raise DataError(f"canary client(s) {bad} out of range: clients are 0..{spec.num_clients - 1}")
    rng = np.random.default_rng([spec.seed, 0xCA7A])
    labels = table.y.copy()
    features = table.X.copy() if spec.canary_kind == "ood" else None
    lo, hi = table.X.min(axis=0), table.X.max(axis=0)
    chosen = []
    for c in sorted(set(spec.canary_clients)):
        for rows in (train[c], hold[c]):
            k = int(round(spec.canaries * len(rows)))
            if k:
                pick = rng.choice(rows, size=k, replace=False)
                if features is None:
                    labels[pick] = (labels[pick] + rng.integers(1, table.n_classes, k)) % table.n_classes
                else:
                    features[pick] = rng.uniform(lo, hi, (k, table.X.shape[1])).astype(np.float32)
                    labels[pick] = rng.integers(0, table.n_classes, k)
                chosen.append(pick)
    idx = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return labels, features, idx


def federation(spec: DataSpec) -> Federation:
    return _federation(spec.model_dump_json())


def client_data(spec: DataSpec, client_id: int) -> ClientData:
    """The local data of one client (what that client, and only it, loads)."""
    if not 0 <= client_id < spec.num_clients:
        raise DataError(f"client id {client_id} is out of range: clients are 0..{spec.num_clients - 1}")
    fed = federation(spec)
    return ClientData(client_id, fed.scaled(fed.client_train_idx[client_id]), fed.scaled(fed.client_holdout_idx[client_id]))


def server_test(spec: DataSpec) -> Split:
    """The server's own evaluation data."""
    fed = federation(spec)
    return fed.scaled(fed.test_idx)


def dataset_info(spec: DataSpec) -> dict:
    """Shape facts and a content digest for reports and lineage (no data)."""
    t = load_table(spec.dataset, spec.target)
    h = hashlib.sha256(t.X.tobytes() + t.y.tobytes()).hexdigest()
    return {
        "dataset": spec.dataset,
        "n_rows": int(len(t.y)),
        "n_features": int(t.X.shape[1]),
        "n_classes": t.n_classes,
        "digest": h,
        **spec.model_dump(exclude={"dataset"}),
    }


# ---------------------------------------------------------------- forget sets


def forget_mask(n_train: int, fraction: float, request_id: str) -> np.ndarray:
    """Boolean mask over a client's training rows: which rows a withdrawal removes.

    Deterministic in (request id, fraction) so every retry of a request forgets the same rows.
    """
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"forget fraction {fraction} is outside (0, 1]; use e.g. 0.5 for half of the client's data")
    mask = np.zeros(n_train, dtype=bool)
    if fraction >= 1.0:
        mask[:] = True
        return mask
    k = max(1, int(round(fraction * n_train)))
    seed = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "little")
    mask[np.random.default_rng(seed).choice(n_train, size=k, replace=False)] = True
    return mask


def digest_rows(split: Split) -> str:
    """sha256 of a split's rows, for lineage tags (a hash, never the data)."""
    return hashlib.sha256(np.ascontiguousarray(split.X).tobytes() + np.ascontiguousarray(split.y).tobytes()).hexdigest()
