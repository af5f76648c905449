"""Tables for feature unlearning: a CSV (or the bundled diabetes data) → features X, attribute S, target Y.

Numeric columns are kept as floats, text/categorical columns one-hot encoded (each such column's
indicator columns form one block, `FeatureTable.blocks`, which the quantile projector maps jointly);
the sensitive column is removed from X (it is what must be forgotten), as is the target.
Rows with a missing value are dropped (and counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

DIABETES = "diabetes"
DIABETES_TARGET = "progression_high"
MAX_CLASSES = 20
MAX_CATEGORIES = 50


@dataclass(frozen=True)
class FeatureTable:
    X: np.ndarray
    feature_names: list[str]
    s: np.ndarray
    y: np.ndarray
    n_dropped: int
    source: str
    blocks: list[list[int]] = field(default_factory=list)
    """Column indices of X of each one-hot encoded text column with at least two categories."""


def diabetes_frame() -> pd.DataFrame:
    """scikit-learn's bundled diabetes data, unscaled (442 patients; 'sex' coded 1/2, a real sensitive attribute).

    The target, disease progression after one year, is binarised at its median as 'progression_high'
    (the raw progression is not kept: it would leak the target).
    """
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(scaled=False, as_frame=True).frame
    out = frame.drop(columns=["target"]).copy()
    out["sex"] = out["sex"].astype(int)
    out[DIABETES_TARGET] = (frame["target"] > frame["target"].median()).astype(int)
    return out


def write_diabetes_csv(path: str | Path) -> Path:
    """Write the diabetes table (see `diabetes_frame`) as a CSV; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    diabetes_frame().to_csv(path, index=False)
    return path


def _read(dataset: str) -> pd.DataFrame:
    if dataset == DIABETES:
        return diabetes_frame()
    path = Path(dataset)
    if not path.is_file():
        raise ValueError(f"dataset {dataset!r} is neither the built-in name 'diabetes' nor an existing CSV file; check the path")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"could not read {dataset!r} as CSV ({exc}); pass a comma-separated file with a header row") from None


def _discrete(col: pd.Series, role: str) -> np.ndarray:
    """A column used as a group/class label: at most MAX_CLASSES distinct values; integral floats become ints."""
    n_unique = col.nunique()
    if n_unique > MAX_CLASSES:
        raise ValueError(
            f"{role} column {col.name!r} has {n_unique} distinct values; it must be discrete (≤ {MAX_CLASSES} classes). "
            "Bin it first (e.g. at its median)"
        )
    if n_unique < 2:
        raise ValueError(f"{role} column {col.name!r} has a single value; it needs at least two classes")
    vals = col.to_numpy()
    if col.dtype.kind == "f" and np.all(vals == np.round(vals)):
        return vals.astype(np.int64)
    if col.dtype.kind in "iub":
        return vals.astype(np.int64)
    return col.astype(str).to_numpy()


def load_feature_table(dataset: str, sensitive: str, target: str) -> FeatureTable:
    """Load a table and split it into numeric features X (sensitive and target removed), S and Y."""
    df = _read(dataset)
    for role, name in (("sensitive", sensitive), ("target", target)):
        if name not in df.columns:
            raise ValueError(f"{role} column {name!r} not found in {dataset!r}; available columns: {', '.join(map(str, df.columns))}")
    if sensitive == target:
        raise ValueError("sensitive and target must be different columns")
    n0 = len(df)
    df = df.dropna(axis=0, how="any")
    if len(df) == 0:
        raise ValueError(f"every row of {dataset!r} has a missing value; impute or drop the sparse columns first")
    s = _discrete(df[sensitive], "sensitive")
    y = _discrete(df[target], "target")
    feats = df.drop(columns=[sensitive, target])
    if feats.shape[1] == 0:
        raise ValueError(f"{dataset!r} has no feature columns besides {sensitive!r} and {target!r}")
    categorical = [c for c in feats.columns if feats[c].dtype.kind not in "iufb"]
    for c in categorical:
        if feats[c].nunique() > MAX_CATEGORIES:
            raise ValueError(f"text column {c!r} has {feats[c].nunique()} categories (> {MAX_CATEGORIES}); drop it or encode it numerically")
    blocks: list[list[int]] = []
    if categorical:
        start = feats.shape[1] - len(categorical)  # get_dummies appends each column's indicators, in order
        sizes = [int(feats[c].nunique()) for c in categorical]
        feats = pd.get_dummies(feats, columns=categorical, dtype=float)
        for size in sizes:
            if size >= 2:
                blocks.append(list(range(start, start + size)))
            start += size
    X = feats.to_numpy(dtype=np.float64)
    return FeatureTable(X, [str(c) for c in feats.columns], s, y, n0 - len(df), str(dataset), blocks)


def synthetic_fairness_frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A synthetic fairness-style table (for tests and demos; no real people): n rows, S = 'afam' (yes/no, 25% yes).

    Columns: gender (female/male, independent of S), afam (yes/no), region (north/south/west) and urban (yes/no) and
    union (yes/no), whose shares depend on S; educ (integer years 6..20, lower by one on average for afam=yes),
    exper (integer years 0..50), score (one decimal, lower by 4 for afam=yes); the binary target wage (high/low) from
    a log-wage model of educ, exper, gender, union and score. Given S the columns are independent, so a projection
    that equalises each column's (or one-hot block's) law across S leaves nothing of S in any of them.
    """
    rng = np.random.default_rng(seed)
    afam = rng.random(n) < 0.25
    regions = np.array(["north", "south", "west"])
    region = np.where(afam, regions[rng.choice(3, n, p=[0.3, 0.6, 0.1])], regions[rng.choice(3, n, p=[0.4, 0.3, 0.3])])
    urban = np.where(rng.random(n) < np.where(afam, 0.8, 0.5), "yes", "no")
    gender = np.where(rng.random(n) < 0.5, "male", "female")
    educ = np.clip(np.round(rng.normal(13.0 - 1.0 * afam, 2.5)), 6, 20).astype(int)
    exper = np.clip(np.round(rng.normal(18.0, 10.0, n)), 0, 50).astype(int)
    score = np.round(rng.normal(50.0 - 4.0 * afam, 8.0), 1)
    union = np.where(rng.random(n) < np.where(afam, 0.3, 0.18), "yes", "no")
    logw = (0.08 * educ + 0.02 * exper - 0.0003 * exper**2 + 0.1 * (gender == "male") + 0.15 * (union == "yes")
            + 0.01 * score + rng.normal(0.0, 0.4, n))
    wage = np.where(logw > np.median(logw), "high", "low")
    return pd.DataFrame({"gender": gender, "afam": np.where(afam, "yes", "no"), "region": region, "urban": urban,
                         "union": union, "educ": educ, "exper": exper, "score": score, "wage": wage})
