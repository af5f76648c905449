"""Federated feature unlearning, client side and wire format (docs/method.md §3; no Flower types here).

A client summarises its own rows per group of S (counts, sums, outer-product sums for the
gaussian maps; quantile sketches for the quantile maps) and sends only that. The server merges
the summaries into the barycenter maps and sends the merged summaries back, so every client
rebuilds the same maps and transforms its rows locally.
"""

from __future__ import annotations

import json

import numpy as np

from unlearn_fl.data import DataSpec, client_data, federation
from unlearn_fl.feature.federated import GaussianSummary, QuantileSketch, client_summary, server_fit


def sensitive_index(spec: DataSpec, sensitive: str) -> int:
    names = list(federation(spec).table.feature_names)
    if sensitive not in names:
        raise ValueError(f"sensitive column {sensitive!r} is not a feature column; columns are: {', '.join(names)}")
    return names.index(sensitive)


def local_rows(spec: DataSpec, client_id: int, sensitive: str, part: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Z: the client's scaled features without S, s: raw S values, y) for its train or holdout rows."""
    fed = federation(spec)
    j = sensitive_index(spec, sensitive)
    idx = (fed.client_train_idx if part == "train" else fed.client_holdout_idx)[client_id]
    cd = client_data(spec, client_id)
    split = cd.train if part == "train" else cd.holdout
    Z = np.delete(split.X, j, axis=1).astype(np.float64)
    return Z, fed.table.X[idx, j].astype(np.float64), split.y


def summary_to_json(s: GaussianSummary | QuantileSketch) -> str:
    kind = "gaussian" if isinstance(s, GaussianSummary) else "quantile"
    body = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(s).items()}
    body["labels"] = [float(x) for x in s.labels]
    return json.dumps({"kind": kind, **body})


def summary_from_json(text: str) -> GaussianSummary | QuantileSketch:
    d = json.loads(text)
    kind = d.pop("kind")
    cls = GaussianSummary if kind == "gaussian" else QuantileSketch
    return cls(**{k: (np.asarray(v) if k != "labels" else list(v)) for k, v in d.items()})


def local_summary(spec: DataSpec, client_id: int, sensitive: str, method: str) -> str:
    Z, s, _ = local_rows(spec, client_id, sensitive)
    return summary_to_json(client_summary(Z, s, method))


def local_apply(spec: DataSpec, client_id: int, sensitive: str, summaries: list[str], grid: list[float], seed: int) -> dict:
    """Rebuild the maps from the merged summaries, transform local rows for each t, and report the accuracy
    (correct counts) of a logistic regression trained on the transformed train rows, on the transformed holdout."""
    from sklearn.linear_model import LogisticRegression

    proj = server_fit([summary_from_json(x) for x in summaries], random_state=seed)
    Ztr, s_tr, y_tr = local_rows(spec, client_id, sensitive, "train")
    Zh, s_h, y_h = local_rows(spec, client_id, sensitive, "holdout")
    known = np.isin(s_h, np.asarray(proj.classes_, dtype=float))
    Zh, s_h, y_h = Zh[known], s_h[known], y_h[known]
    out = {"n": int(len(y_h))}
    for t in grid:
        a, b = proj.transform(Ztr, s_tr, t=t), proj.transform(Zh, s_h, t=t) if len(y_h) else Zh
        if len(np.unique(y_tr)) < 2 or not len(y_h):
            out[f"correct@{t:g}"] = 0.0
            continue
        clf = LogisticRegression(max_iter=5000).fit(a, y_tr)
        out[f"correct@{t:g}"] = float((clf.predict(b) == y_h).sum())
    return out
