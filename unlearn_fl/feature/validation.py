"""Input checks shared by the projector, the federated summaries and the estimators.

Every error names the problem and the fix, so a caller feeding a real table can
act on it without reading the source.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def check_matrix(Z: object, name: str = "Z") -> np.ndarray:
    """Z as a finite float64 (n, d) array; raise ValueError otherwise."""
    try:
        arr = np.asarray(Z, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}; encode categorical columns (e.g. one-hot) first") from None
    if arr.ndim == 1:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features), got a 1-D array of length {arr.shape[0]}; "
            "use Z.reshape(-1, 1) for a single feature"
        )
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one row and one column")
    bad = ~np.isfinite(arr)
    if bad.any():
        rows, cols = np.nonzero(bad)
        kind = "NaN" if np.isnan(arr[rows[0], cols[0]]) else "inf"
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite value(s) ({kind} first at row {rows[0]}, column {cols[0]}); "
            "drop or impute missing values before projecting"
        )
    return arr


def check_groups(Z: object, s: object, min_rows: int, what: str, fix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(Z (n, d) float64, group index per row (n,), group labels (k,), rows per group (k,)) for an estimator of S from Z.

    Raises ValueError for bad shapes, fewer than two groups, or a group with fewer than `min_rows` rows
    (`what` names the estimator, `fix` says what to do).
    """
    Z = check_matrix(Z)
    s = check_labels(s, Z.shape[0])
    classes, y, counts = np.unique(s, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"{what} needs at least two groups in s")
    if counts.min() < min_rows:
        raise ValueError(f"smallest group has {counts.min()} rows; {what} needs at least {min_rows} per group; {fix}")
    return Z, y, classes, counts


def check_labels(s: object, n: int, name: str = "s") -> np.ndarray:
    """Group labels as a 1-D array of length n (ints or strings); raise ValueError otherwise."""
    arr = np.asarray(s)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of group labels, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(
            f"shape mismatch: Z has {n} rows but {name} has {arr.shape[0]} labels; pass one group label per row of Z"
        )
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN/inf group labels; give every row a valid group")
        if np.any(arr != np.round(arr)):
            raise ValueError(
                f"{name} has non-integer float labels; the sensitive attribute must be discrete "
                "(bin a continuous attribute first)"
            )
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "O":
        if any(v is None or (isinstance(v, float) and not np.isfinite(v)) for v in arr):
            raise ValueError(f"{name} contains missing group labels; give every row a valid group")
    return arr


def check_t(t: float) -> float:
    """Interpolation weight t in [0, 1] (docs/method.md §3, McCann interpolation)."""
    try:
        val = float(t)
    except (TypeError, ValueError):
        raise ValueError(f"t must be a number in [0, 1], got {t!r}") from None
    if not (0.0 <= val <= 1.0):
        raise ValueError(f"t must lie in [0, 1] (0 = identity, 1 = full barycenter projection), got {val}")
    return val


def group_index(s: np.ndarray, classes: Sequence[Hashable]) -> np.ndarray:
    """Map labels to positions in `classes`; raise ValueError naming any unseen group."""
    lookup = {c: i for i, c in enumerate(classes)}
    try:
        return np.fromiter((lookup[v] for v in s.tolist()), dtype=np.int64, count=len(s))
    except KeyError:
        unseen = sorted({str(v) for v in s.tolist() if v not in lookup})
        raise ValueError(
            f"group(s) {', '.join(unseen)} were not seen at fit time (known: {', '.join(map(str, classes))}); "
            "refit with data from these groups or drop their rows"
        ) from None


def check_group_sizes(classes: Sequence[Hashable], counts: Sequence[float], min_group_size: int) -> None:
    """Raise ValueError if a group has fewer than `min_group_size` samples, or there is only one group."""
    if len(classes) < 2:
        raise ValueError(
            f"need at least two groups of the sensitive attribute, got {len(classes)} ({', '.join(map(str, classes))}); "
            "there is nothing to make independent"
        )
    small = [(c, int(n)) for c, n in zip(classes, counts) if n < min_group_size]
    if small:
        desc = ", ".join(f"{c!s} ({n})" for c, n in small)
        raise ValueError(
            f"group(s) with too few samples: {desc}; each needs at least min_group_size={min_group_size}. "
            "Merge rare groups, collect more data, or lower min_group_size"
        )


def normalise_labels(classes: Sequence[Hashable]) -> list:
    """Plain Python scalars (not numpy scalars) so labels compare and serialise cleanly."""
    return [c.item() if isinstance(c, np.generic) else c for c in classes]


def check_permutation_test(permutations: object, level: object, folds: object) -> None:
    """A permutation test's settings: ValueError unless permutations ≥ 1 and folds ≥ 2 are integers and 0 < level < 1."""
    for name, v, low in (("permutations", permutations, 1), ("folds", folds, 2)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name} must be an integer of at least {low}, got {v!r}")
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0.0 < level < 1.0:
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
