"""Tables for feature unlearning: a CSV (or the bundled diabetes data) → features X, attribute S, target Y.

Numeric columns are kept as floats, text/categorical columns one-hot encoded; the
sensitive column is removed from X (it is what must be forgotten), as is the target.
Rows with a missing value are dropped (and counted).
"""

from __future__ import annotations

from dataclasses import dataclass
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
    if categorical:
        feats = pd.get_dummies(feats, columns=categorical, dtype=float)
    X = feats.to_numpy(dtype=np.float64)
    return FeatureTable(X, [str(c) for c in feats.columns], s, y, n0 - len(df), str(dataset))
