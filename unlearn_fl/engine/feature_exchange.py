"""Federated feature unlearning, client side and wire format (docs/method.md §3; no Flower types here).

A client summarises its own rows per group of S (counts, sums, outer-product sums for the
gaussian maps; quantile sketches, plus each one-hot block's category counts, for the quantile maps)
and sends only that. S may be a numeric column or a text column (e.g. yes/no), which the loader
encodes as indicator columns: all of them are S, and its groups are the category names, as in the
central path. The server merges
the summaries into the barycenter maps and sends the merged summaries back, so every client
rebuilds the same maps and transforms its rows locally.
"""

from __future__ import annotations

import json

import numpy as np

from unlearn_fl.data import DataSpec, client_data, federation
from unlearn_fl.feature.federated import GaussianSummary, QuantileSketch, client_summary, server_fit
from unlearn_fl.feature.marginals import MarginalSummary, merge_marginals


def _raw_columns(names: list[str]) -> list[str]:
    """The table's own column names from its encoded feature names (a text column `c` is encoded as `c=value`)."""
    out: list[str] = []
    for n in names:
        c = n.split("=", 1)[0] if "=" in n else n
        if c not in out:
            out.append(c)
    return out


def sensitive_columns(spec: DataSpec, sensitive: str) -> tuple[list[int], list[str] | None]:
    """The encoded columns of the sensitive attribute and, for a text column, its categories (docs/method.md §3).

    A numeric column is one feature column ([j], None); a text column (e.g. yes/no) is one-hot encoded by the loader
    (unlearn_fl.data.load_csv) as `col=value` columns, all of which are S: (their indices, the values). The central
    path (unlearn_fl.feature.tabular) accepts the same names. ValueError naming the table's columns otherwise.
    """
    names = list(federation(spec).table.feature_names)
    prefix = f"{sensitive}="
    cats = [k for k, n in enumerate(names) if n.startswith(prefix)]
    if sensitive in names and not cats:
        return [names.index(sensitive)], None
    if len(cats) >= 2:
        return cats, [names[k][len(prefix):] for k in cats]
    if len(cats) == 1:
        raise ValueError(f"sensitive column {sensitive!r} has a single value ({names[cats[0]][len(prefix):]!r}); it needs at "
                         "least two groups")
    raise ValueError(f"sensitive column {sensitive!r} is not a column of {spec.dataset}; columns are: "
                     f"{', '.join(_raw_columns(names))}")


def sensitive_index(spec: DataSpec, sensitive: str) -> int:
    """The one feature column of a numeric sensitive attribute; ValueError for a text one (use `sensitive_columns`)."""
    cols, cats = sensitive_columns(spec, sensitive)
    if cats is not None:
        raise ValueError(f"sensitive column {sensitive!r} is a text column encoded as {len(cols)} indicator columns; "
                         "use sensitive_columns")
    return cols[0]


def sensitive_values(spec: DataSpec, sensitive: str, idx: np.ndarray) -> np.ndarray:
    """S of the table rows `idx`: floats for a numeric column, the category strings for a text column."""
    fed = federation(spec)
    cols, cats = sensitive_columns(spec, sensitive)
    raw = fed.table.X[np.asarray(idx)][:, cols]
    if cats is None:
        return raw[:, 0].astype(np.float64)
    return np.asarray(cats, dtype=object)[np.argmax(raw, axis=1)].astype(str)


def feature_blocks(spec: DataSpec, sensitive: str) -> list[list[int]]:
    """One-hot blocks of the features without S (indices into them): each text column's ≥ 2 indicator columns."""
    names = list(federation(spec).table.feature_names)
    cols, _ = sensitive_columns(spec, sensitive)
    kept = [n for k, n in enumerate(names) if k not in set(cols)]
    groups: dict[str, list[int]] = {}
    for k, n in enumerate(kept):
        if "=" in n:
            groups.setdefault(n.split("=", 1)[0], []).append(k)
    return [g for g in groups.values() if len(g) >= 2]


def local_rows(spec: DataSpec, client_id: int, sensitive: str, part: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Z: the client's scaled features without S's column(s), s: S values (`sensitive_values`), y) for its train or
    holdout rows."""
    fed = federation(spec)
    cols, _ = sensitive_columns(spec, sensitive)
    idx = (fed.client_train_idx if part == "train" else fed.client_holdout_idx)[client_id]
    cd = client_data(spec, client_id)
    split = cd.train if part == "train" else cd.holdout
    Z = np.delete(split.X, cols, axis=1).astype(np.float64)
    return Z, sensitive_values(spec, sensitive, idx), split.y


def _label(x: object) -> object:
    return x if isinstance(x, str) else float(x)


_KINDS = {"gaussian": GaussianSummary, "quantile": QuantileSketch, "marginals": MarginalSummary}
_LISTS = ("labels", "block_counts", "values", "value_counts")  # lists of arrays (or labels) in the JSON


def summary_to_json(s: GaussianSummary | QuantileSketch | MarginalSummary) -> str:
    kind = next(k for k, cls in _KINDS.items() if isinstance(s, cls))
    body = {k: (v.tolist() if isinstance(v, np.ndarray) else [np.asarray(a).tolist() for a in v] if k in _LISTS[1:] else v)
            for k, v in vars(s).items()}
    body["labels"] = [_label(x) for x in s.labels]
    return json.dumps({"kind": kind, **body})


def summary_from_json(text: str) -> GaussianSummary | QuantileSketch | MarginalSummary:
    d = json.loads(text)
    cls = _KINDS[d.pop("kind")]
    out = {k: (v if v is None or k == "labels" else [np.asarray(a, dtype=np.float64) for a in v] if k in _LISTS else np.asarray(v))
           for k, v in d.items()}
    return cls(**out)


def local_summary(spec: DataSpec, client_id: int, sensitive: str, method: str, summary: str = "sketch",
                  split_scores: bool = False) -> str:
    """The site's summary (JSON) of its train rows: gaussian moments, or a quantile sketch or (summary="marginals")
    its per-group marginals (`unlearn_fl.feature.marginals`), with the one-hot blocks' category counts; a sketch
    carries the split scores of smoothing="auto" when split_scores (the server asks for them with that smoothing)."""
    Z, s, _ = local_rows(spec, client_id, sensitive)
    return summary_to_json(client_summary(Z, s, method, blocks=feature_blocks(spec, sensitive), summary=summary,
                                          split_scores=split_scores))


def merge_for_sites(summaries: list[str]) -> list[str]:
    """What the server sends back to the sites to rebuild the maps: marginals merged into one summary (the pooled
    marginals, not each site's; with two sites, though, the pool less a site's own is the other's), any other kind
    as received."""
    parsed = [summary_from_json(x) for x in summaries]
    if parsed and all(isinstance(x, MarginalSummary) for x in parsed):
        return [summary_to_json(merge_marginals(parsed))]
    return summaries


def merged_maps(spec: DataSpec, sensitive: str, summaries: list[str], seed: int, smoothing: str = "histogram"):
    """The barycenter maps of the sites' summaries (JSON), as the server and every site build them: the same
    seed, one-hot blocks (quantile summaries) and smoothing of the quantile group laws ("histogram", "relative", "kernel" or "auto",
    docs/method.md §3 'Sample size'; gaussian summaries take only the histogram, the default)."""
    parsed = [summary_from_json(x) for x in summaries]
    quantile = bool(parsed) and all(isinstance(x, (QuantileSketch, MarginalSummary)) for x in parsed)
    extra = {"smoothing": smoothing} if smoothing != "histogram" else {}
    return server_fit(parsed, random_state=seed, blocks=(feature_blocks(spec, sensitive) or None) if quantile else None,
                      **extra)


def local_apply(spec: DataSpec, client_id: int, sensitive: str, summaries: list[str], grid: list[float], seed: int,
                smoothing: str = "histogram") -> dict:
    """Rebuild the maps from the merged summaries (`merged_maps`, with the server's smoothing), transform local rows
    for each t, and report the accuracy (correct counts) of a logistic regression trained on the transformed train
    rows, on the transformed holdout."""
    from sklearn.linear_model import LogisticRegression

    proj = merged_maps(spec, sensitive, summaries, seed, smoothing)
    Ztr, s_tr, y_tr = local_rows(spec, client_id, sensitive, "train")
    Zh, s_h, y_h = local_rows(spec, client_id, sensitive, "holdout")
    known = np.array([v in set(proj.classes_) for v in s_h.tolist()], dtype=bool)
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


def local_feature_heads(spec: DataSpec, client_id: int, sensitive: str, summaries: list[str], heads: dict[float, dict],
                        epochs: int, lr: float, seed: int, smoothing: str = "histogram",
                        train: bool = True) -> tuple[dict[float, dict], dict]:
    """One FedAvg round of the release's task heads on the projected features (one Linear (C, d) per t), or
    (train=False) their evaluation on the site's holdout.

    The site rebuilds the maps from the merged summaries (`merged_maps`), projects its own rows at each t and trains
    a copy of that t's head `epochs` epochs (`representation.train_head`: Adam, cross-entropy). heads: {t: state of a
    Linear (weight (C, d), bias (C,))}. Returns ({t: head state}, metrics): num-examples (train rows) for a round; n
    and correct@t (holdout counts) for an evaluation. Only head weights and counts leave the site.
    """
    import torch

    proj = merged_maps(spec, sensitive, summaries, seed, smoothing)
    Z, s, y = local_rows(spec, client_id, sensitive, "train" if train else "holdout")
    known = np.array([v in set(proj.classes_) for v in s.tolist()], dtype=bool)
    Z, s, y = Z[known], s[known], y[known]

    def new_head(state: dict) -> torch.nn.Linear:
        w = np.asarray(state["weight"])
        return torch.nn.Linear(w.shape[1], w.shape[0])

    return _heads_round(heads, new_head, lambda t: proj.transform(Z, s, t=t), y, train, epochs, lr, seed + client_id)


def _heads_round(heads: dict[float, dict], new_head, inputs, y: np.ndarray, train: bool, epochs: int, lr: float,
                 seed: int) -> tuple[dict[float, dict], dict]:
    """A site's round of FedAvg heads {t: Linear state} on its rows: new_head(state) a Linear of the state's shape,
    inputs(t) the rows' head input at t (n, d), y (n,). train: each head loaded, trained `epochs` epochs
    (`representation.train_head`), returned with num-examples; else the holdout counts n and correct@t."""
    import torch

    from unlearn_fl.feature.representation import head_correct, train_head

    out, metrics = {}, ({"num-examples": float(max(len(y), 1))} if train else {"n": float(len(y))})
    for t, st in heads.items():
        head = new_head(st)
        head.load_state_dict({k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in st.items()})
        H = inputs(t) if len(y) else np.zeros((0, head.in_features))
        if train:
            if len(y):
                train_head(head, H, y, epochs, lr, seed=seed)
            out[t] = {k: v.detach().numpy().copy() for k, v in head.state_dict().items()}
        else:
            metrics[f"correct@{t:g}"] = float(head_correct(head, H, y))
    return out, metrics


# ------------------------------------------------------------------ a learned representation (docs/method.md §3)
# Z is the global model's penultimate pre-activation (or its scores) on the client's own rows
# (unlearn_fl.feature.representation); the summaries are the raw-feature path's, of Z instead of the features.


def representation_rows(spec: DataSpec, client_id: int, sensitive: str, part: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X: the client's scaled input rows, every column (what the federated model is trained on), s, y)."""
    fed = federation(spec)
    idx = (fed.client_train_idx if part == "train" else fed.client_holdout_idx)[client_id]
    cd = client_data(spec, client_id)
    split = cd.train if part == "train" else cd.holdout
    return split.X, sensitive_values(spec, sensitive, idx), split.y


def local_representation_summary(spec: DataSpec, client_id: int, sensitive: str, method: str, state: dict,
                                 kind: str = "embedding") -> str:
    """The per-group summary (JSON) of Z = the model's representation of the client's train rows; only it leaves."""
    from unlearn_fl.feature.representation import mlp_from_state, representation

    X, s, _ = representation_rows(spec, client_id, sensitive)
    return summary_to_json(client_summary(representation(mlp_from_state(state), X, kind), s, method))


def local_representation_heads(spec: DataSpec, client_id: int, sensitive: str, state: dict, summaries: list[str],
                               heads: dict[float, dict], kind: str, epochs: int, lr: float, seed: int,
                               train: bool = True) -> tuple[dict[float, dict], dict]:
    """One FedAvg round of the refit heads (one per t), or (train=False) their evaluation on the client's holdout.

    The client rebuilds the maps from the merged summaries (as `local_apply` does), projects its own Z, and trains a
    copy of each head on act(Z_t) locally. Returns ({t: head state}, metrics): num-examples (train rows) for a
    round; n and correct@t (holdout counts) for an evaluation.
    """
    from unlearn_fl.feature.representation import activate, initial_head, mlp_from_state, representation

    model = mlp_from_state(state)
    proj = server_fit([summary_from_json(x) for x in summaries], random_state=seed)
    X, s, y = representation_rows(spec, client_id, sensitive, "train" if train else "holdout")
    known = np.array([v in set(proj.classes_) for v in (s.tolist())], dtype=bool)
    X, s, y = X[known], s[known], y[known]
    Z = representation(model, X, kind)
    return _heads_round(heads, lambda state: initial_head(model, kind), lambda t: activate(model, proj.transform(Z, s, t=t), kind),
                        y, train, epochs, lr, seed + client_id)


def heads_to_flat(heads: dict[float, dict]) -> dict[str, np.ndarray]:
    """{t: head state} -> flat arrays keyed `head@{t:g}.<param>` (the wire form, both ways)."""
    return {f"head@{t:g}.{k}": np.asarray(v) for t, st in heads.items() for k, v in st.items()}


def heads_from_flat(flat: dict[str, np.ndarray]) -> dict[float, dict]:
    out: dict[float, dict] = {}
    for key, v in flat.items():
        t, k = key[len("head@"):].rsplit(".", 1)
        out.setdefault(float(t), {})[k] = np.asarray(v)
    return out


def group_key(v) -> str:
    """A value of S as the exchange names it: integral numbers without a decimal part (1.0, "1", 1 -> "1"), else str."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return str(int(f)) if f.is_integer() else repr(f)


def local_regularized(spec: DataSpec, client_id: int, sensitive: str, groups: list[str], task: str, config_json: str,
                      state: dict, totals: dict | None) -> tuple[dict[str, np.ndarray], dict]:
    """A site's part of regularised federated training (unlearn_fl.feature.federated_regularized). Returns
    (arrays, metrics): regularized-sums: {"sums", "counts"} of its train rows, {}; regularized-train: the trained
    model's state, {num-examples, utility-loss, penalty}; regularized-eval: {}, {n, correct} on its holdout rows.
    ValueError for a value of S outside `groups` (the server's list of the attribute's values)."""
    from unlearn_fl.feature.federated_regularized import FederatedRegularizedConfig, group_sums, local_regularized_steps
    from unlearn_fl.feature.representation import mlp_from_state

    cfg = FederatedRegularizedConfig.model_validate_json(config_json)
    X, s, y = representation_rows(spec, client_id, sensitive, "holdout" if task == "regularized-eval" else "train")
    index = {group_key(g): i for i, g in enumerate(groups)}
    keys = [group_key(v) for v in s]
    unknown = sorted(set(keys) - set(index))
    if unknown:
        raise ValueError(f"site {client_id}: values of {sensitive!r} not in the server's groups {groups}: {unknown[:5]}")
    s_idx = np.array([index[k] for k in keys], dtype=np.int64)
    model = mlp_from_state(state)
    if model.n_features != X.shape[1]:
        raise ValueError(f"site {client_id}: the model takes {model.n_features} inputs but the site's rows have "
                         f"{X.shape[1]} columns; build it with every column, {sensitive!r} included")
    if task == "regularized-sums":
        sums, counts = group_sums(model, X, s_idx, len(groups), cfg.penalty, cfg.n_bins)
        return {"sums": sums, "counts": counts}, {}
    if task == "regularized-train":
        if totals is None:
            raise ValueError("regularized-train needs the federation's totals (arrays 'sums' and 'counts')")
        trained, metrics = local_regularized_steps(model, X, y, s_idx, totals["sums"], totals["counts"],
                                                   cfg.model_copy(update={"seed": cfg.seed + 7919 * client_id}))
        return {k: v.detach().numpy() for k, v in trained.state_dict().items()}, metrics
    if task == "regularized-eval":
        import torch

        with torch.no_grad():
            pred = model(torch.as_tensor(X)).argmax(1).numpy()
        return {}, {"n": len(y), "correct": int((pred == y).sum())}
    raise ValueError(f"unknown task {task!r}")
