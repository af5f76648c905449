"""The released feature-unlearning model: raw rows in, S-free features and task predictions out (docs/method.md §3).

A `FeatureRelease` holds every number a prediction needs and no training row. It applies, in order:

1. the input encoding, as the run read its table: a numeric column as a float, a text column one-hot over the
   categories seen at fit time (`unlearn_fl.feature.tabular` for `unlearn-fl feature`, `unlearn_fl.data.load_csv`
   for `--clients N`);
2. the standardisation x ↦ (x − mean) / scale of the run: the train split's statistics (central, float64), or the
   federation's scaler (`unlearn_fl.data.Federation`, computed in float32 as the sites compute it);
3. the barycenter projection Z_t = (1 − t) X + t T_S(X) of the fitted `BarycenterProjector` (per-group quantile maps or
   Gaussian affine maps), which needs each row's own value of the sensitive attribute S;
4. the task head, when the release has one: the logistic regression that `run_feature` trained on the projected train
   rows to measure utility, applied as z ↦ sigmoid(w·z + b) (two classes) or softmax(W z + b) (more).

With a `network` (unlearn_fl.feature.network; issue #12 item 4), a trained MLP sits between steps 2 and 3: the
projection applies to its embedding or scores Z, and the head reads act(Z_t) (`network_release`).

A release with t = 0 and no projector is the model *before* feature unlearning (the parent version in the registry):
the same encoding, standardisation and a head trained on the unprojected features; it does not read S.

`save(folder)` writes `release.json` (metadata, the encoding, the projector's parameters) and `arrays.npz` (the
scaler, the head, and the maps' statistics: per group and coordinate the quantile knots, or per group the mean and
covariance; read back with allow_pickle=False). `load(folder)` rebuilds the projector through its public
`fit_from_knots` / `fit_from_moments`, so a reloaded release maps rows as the fitted one does.

Input problems raise `ReleaseInputError` (a ValueError) with one line naming the column and the fix.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from unlearn_fl.feature import quantile
from unlearn_fl.feature.barycenter import BarycenterProjector
from unlearn_fl.feature.network import Network

__all__ = ["FORMAT", "Head", "FeatureRelease", "ReleaseInputError", "OUTPUTS", "central_releases", "federated_releases",
           "network_release"]

FORMAT = "unlearn-fl-feature-release/1"
OUTPUTS = ("label", "proba", "features")
"""What `FeatureRelease.predict` returns: the task label, the class probabilities, or the projected features."""

class ReleaseInputError(ValueError):
    """Rows a release cannot map; the message is one line naming the column and the fix."""


def _column_type(series: pd.Series) -> str:
    """The MLflow column type of a raw input column: long, double, boolean or string."""
    kind = series.dtype.kind
    return {"i": "long", "u": "long", "f": "double", "b": "boolean"}.get(kind, "string")


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python scalar JSON carries."""
    return v.item() if isinstance(v, np.generic) else v


def _show(values: Sequence[Any], limit: int = 8) -> str:
    vals = [str(v) for v in values]
    return ", ".join(vals[:limit]) + (f", ... ({len(vals)} in all)" if len(vals) > limit else "")


@dataclass
class Head:
    """A fitted logistic regression on the projected features (docs/method.md §3: the run's utility model).

    classes: (k,) task labels in the fitted order; coef: (1, d) for two classes or (k, d); intercept: (1,) or (k,).
    Probabilities are sigmoid(z·coef[0] + intercept[0]) for the second class (two classes) or softmax(z coefᵀ + b),
    as scikit-learn's `LogisticRegression.predict_proba` computes them.
    """

    classes: list
    coef: np.ndarray
    intercept: np.ndarray

    @classmethod
    def from_sklearn(cls, clf: Any) -> Head:
        """The head of a fitted `sklearn.linear_model.LogisticRegression` (its classes_, coef_, intercept_)."""
        return cls([_plain(c) for c in clf.classes_], np.asarray(clf.coef_, dtype=np.float64),
                   np.asarray(clf.intercept_, dtype=np.float64))

    @classmethod
    def from_linear(cls, classes: Sequence[Any], weight: np.ndarray, bias: np.ndarray) -> Head:
        """The head of a Linear layer with softmax outputs: weight (k, d), bias (k,), `classes` (k,) in output order.

        Two classes become one row, coef = w1 − w0 and intercept = b1 − b0: softmax over two logits is the sigmoid
        of their difference, so the probabilities are the layer's."""
        w, b = np.asarray(weight, dtype=np.float64), np.asarray(bias, dtype=np.float64)
        if w.ndim != 2 or b.shape != (w.shape[0],) or w.shape[0] != len(classes):
            raise ValueError(f"a head of {len(classes)} classes needs weight (k, d) and bias (k,), got {w.shape} and {b.shape}")
        if len(classes) == 2:
            return cls([_plain(c) for c in classes], (w[1] - w[0])[None, :], np.array([b[1] - b[0]]))
        return cls([_plain(c) for c in classes], w, b)

    def decision(self, Z: np.ndarray) -> np.ndarray:
        """(n, 1) or (n, k) decision values W z + b of rows Z (n, d)."""
        return Z @ self.coef.T + self.intercept

    def proba(self, Z: np.ndarray) -> np.ndarray:
        """(n, k) class probabilities of rows Z (n, d), columns in `classes` order."""
        d = self.decision(Z)
        if len(self.classes) == 2:
            p1 = np.exp(-np.logaddexp(0.0, -d[:, 0]))  # sigmoid without overflow
            return np.column_stack([1.0 - p1, p1])
        d = d - d.max(axis=1, keepdims=True)
        e = np.exp(d)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, Z: np.ndarray) -> np.ndarray:
        """(n,) predicted labels of rows Z (n, d): the class of largest decision value."""
        d = self.decision(Z)
        idx = (d[:, 0] > 0).astype(int) if len(self.classes) == 2 else d.argmax(axis=1)
        return np.asarray(self.classes)[idx]


@dataclass
class FeatureRelease:
    """Everything `predict` needs: encoding, scaler, model network (None: Z is the features), fitted projector
    (None: t = 0) and task head (None: features only).

    inputs: raw input columns {name: MLflow type} in signature order (S excluded); encoded: (column, category) per
    standardised feature, category None for a numeric column; mean, scale: (d,) the standardisation in `arithmetic`
    precision; missing_category: what a missing text value encodes as (None: a missing value is an error).
    sensitive, s_type: the column of S and its MLflow type (its values pick each row's map); target: the task column.
    network: a trained model's layers (unlearn_fl.feature.network): Z is then its embedding or scores, projected by
    S and read by `head` through the network's activation; S may then be one of the inputs (a model input).
    feature_names: the columns of `predict(output="features")`: the standardised features, or the representation's.
    """

    sensitive: str
    s_type: str
    target: str
    t: float
    inputs: dict[str, str]
    encoded: list[tuple[str, str | None]]
    feature_names: list[str]
    mean: np.ndarray
    scale: np.ndarray
    arithmetic: Literal["float64", "float32"] = "float64"
    missing_category: str | None = None
    projector: BarycenterProjector | None = None
    head: Head | None = None
    meta: dict = field(default_factory=dict)
    network: Network | None = None

    # ------------------------------------------------------------ properties
    @property
    def method(self) -> str:
        """'quantile' or 'gaussian' (the projector's maps), or 'identity' for a t = 0 release."""
        return self.projector.method if self.projector is not None and self.t > 0 else "identity"

    @property
    def needs_sensitive(self) -> bool:
        """Whether rows must carry S: a release with a projection maps each row by its own group."""
        return self.projector is not None and self.t > 0

    @property
    def groups(self) -> list:
        """The values of S the maps exist for (empty for a t = 0 release)."""
        return list(self.projector.classes_) if self.needs_sensitive else []

    @property
    def outputs(self) -> tuple[str, ...]:
        """The `output` values `predict` accepts: label and proba need the head."""
        return OUTPUTS if self.head is not None else ("features",)

    @property
    def default_output(self) -> str:
        return "label" if self.head is not None else "features"

    # ------------------------------------------------------------ inference
    def _numeric(self, df: pd.DataFrame, col: str) -> np.ndarray:
        raw = df[col]
        vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isnan(vals)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "missing" if pd.isna(raw.iloc[i]) else f"not a number ({raw.iloc[i]!r})"
            raise ReleaseInputError(f"column {col!r} is {what} in {int(bad.sum())} row(s) (first: row {i}); the model needs a "
                                    "number in every row: impute or drop those rows")
        if not np.isfinite(vals).all():
            raise ReleaseInputError(f"column {col!r} holds an infinite value; pass finite numbers")
        return vals

    def _text(self, df: pd.DataFrame, col: str) -> np.ndarray:
        raw = df[col]
        if raw.isna().any():
            if self.missing_category is None:
                i = int(np.flatnonzero(raw.isna().to_numpy())[0])
                raise ReleaseInputError(f"column {col!r} is missing in {int(raw.isna().sum())} row(s) (first: row {i}); "
                                        "the model needs a value in every row: fill or drop those rows")
            raw = raw.fillna(self.missing_category)
        vals = raw.astype(str).to_numpy()
        known = [c for (name, c) in self.encoded if name == col]
        unseen = sorted(set(vals) - set(known))
        if unseen:
            raise ReleaseInputError(f"column {col!r} has value(s) {_show(unseen)} never seen at fit time (known: {_show(known)}); "
                                    "recode them to a known value or drop those rows")
        return vals

    def encode(self, rows: pd.DataFrame) -> np.ndarray:
        """(n, d) float64 encoded features of raw rows (before standardisation); ReleaseInputError for bad input."""
        df = _frame(rows)
        missing = [c for c in self.inputs if c not in df.columns]
        if self.sensitive in missing:  # a model reading S as an input
            if self.needs_sensitive:
                self.sensitive_values(df)  # raises the projection's one line, which also lists S's known values
            raise ReleaseInputError(f"the input has no column {self.sensitive!r}: the model reads it as an input, so pass "
                                    f"{self.sensitive!r} with every row")
        if missing:
            raise ReleaseInputError(f"the input lacks column(s) {_show(missing)} the model was fitted on; pass every column "
                                    "of its signature (mlflow.models.get_model_info(uri).signature)")
        cache: dict[str, np.ndarray] = {}
        out = np.empty((len(df), len(self.encoded)), dtype=np.float64)
        for k, (col, cat) in enumerate(self.encoded):
            if col not in cache:
                cache[col] = self._numeric(df, col) if cat is None else self._text(df, col)
            out[:, k] = cache[col] if cat is None else (cache[col] == cat)
        return out

    def standardise(self, X: np.ndarray) -> np.ndarray:
        """(n, d) float64: (X − mean) / scale, in the precision the run used (float32 for a federation's scaler)."""
        if self.arithmetic == "float32":
            X32 = X.astype(np.float32)
            return ((X32 - self.mean.astype(np.float32)) / self.scale.astype(np.float32)).astype(np.float64)
        return (X - self.mean) / self.scale

    def sensitive_values(self, rows: pd.DataFrame) -> np.ndarray:
        """(n,) the rows' values of S as the maps know them; ReleaseInputError when S is absent, empty or unseen."""
        df = _frame(rows)
        s, known = self.sensitive, self.groups
        if s not in df.columns:
            raise ReleaseInputError(f"the input has no column {s!r}: the maps project each row by its own value of the sensitive "
                                    f"attribute, so pass {s!r} with every row (known values: {_show(known)})")
        raw = df[s]
        if raw.isna().any() and self.missing_category is not None and self.missing_category in known:
            raw = raw.astype(object).where(raw.notna(), self.missing_category)  # a group of its own, as the loader made it
        if raw.isna().any():
            i = int(np.flatnonzero(raw.isna().to_numpy())[0])
            raise ReleaseInputError(f"column {s!r} is empty in {int(raw.isna().sum())} row(s) (first: row {i}); every row needs "
                                    f"its value of the sensitive attribute (known values: {_show(known)})")
        if all(isinstance(k, str) for k in known):
            vals = [str(v) for v in raw.tolist()]
        else:
            num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            if np.isnan(num).any():
                i = int(np.flatnonzero(np.isnan(num))[0])
                raise ReleaseInputError(f"column {s!r} holds {raw.iloc[i]!r}, not a number (known values: {_show(known)}); "
                                        "pass the values the model was fitted on")
            if any(isinstance(k, float) for k in known):
                if self.arithmetic == "float32":
                    num = num.astype(np.float32).astype(np.float64)  # as the federation's float32 table holds S
                vals = num.tolist()
            else:
                vals = [int(v) if v == round(v) else v for v in num.tolist()]
        lookup = set(known)
        unseen = sorted({str(v) for v in vals if v not in lookup})
        if unseen:
            raise ReleaseInputError(f"column {s!r} has value(s) {_show(unseen)} never seen at fit time (known: {_show(known)}); "
                                    "the model has maps for those groups only: drop those rows or refit with them")
        return np.asarray(vals)

    def transform(self, rows: pd.DataFrame, ties: str | None = None) -> np.ndarray:
        """(n, d) projected features Z_t of raw rows (docs/method.md §3), or with a network the head's input
        act(Z_t) of its projected representation; `ties` overrides the projector's tie rule."""
        Z = self.standardise(self.encode(rows))
        if self.network is not None:
            Z = self.network.represent(Z)
        if self.needs_sensitive:
            s = self.sensitive_values(rows)
            proj = self.projector
            if ties is not None and ties != proj.ties:
                proj = copy.copy(proj)
                proj.ties = ties
            Z = proj.transform(Z, s, t=self.t)
        return Z if self.network is None else self.network.activate(Z)

    def predict(self, rows: pd.DataFrame, output: str | None = None, ties: str | None = None) -> pd.DataFrame:
        """Predictions for raw rows, indexed like them.

        output: 'label' (default with a head): one column named after the target; 'proba': one column per class
        (named by the class), probabilities summing to 1; 'features': the projected features, one column per
        standardised feature. ties: 'random' or 'mid' for quantile maps (default: the fitted rule).
        """
        output = output or self.default_output
        if output not in self.outputs:
            why = ("; this release has no task head (it releases the projected features only)" if output in OUTPUTS
                   else "")
            raise ReleaseInputError(f"output {output!r} is not one of {', '.join(self.outputs)}{why}: pass params={{'output': "
                                    f"'{self.outputs[0]}'}}")
        if ties is not None and ties not in ("random", "mid"):
            raise ReleaseInputError(f"ties {ties!r} is not 'random' or 'mid': pass one of them, or leave it out")
        df = _frame(rows)
        if len(df) == 0:
            raise ReleaseInputError("the input has no rows: pass at least one row with every column of the signature")
        Z = self.transform(df, ties)
        if output == "features":
            return pd.DataFrame(Z, columns=self.feature_names, index=df.index)
        if output == "proba":
            return pd.DataFrame(self.head.proba(Z), columns=[str(c) for c in self.head.classes], index=df.index)
        return pd.DataFrame({self.target: self.head.predict(Z)}, index=df.index)

    def example(self) -> pd.DataFrame:
        """Input rows built from the release's own aggregates (no training row): numeric columns at the scaler's mean,
        text columns at their first category, and one row per group of S (one row when S is not read)."""
        groups = self.groups or [None]
        row: dict[str, Any] = {}
        for k, (col, cat) in enumerate(self.encoded):
            kind = self.inputs[col]
            if cat is not None:
                row.setdefault(col, cat)
            elif kind == "long":
                row[col] = int(round(float(self.mean[k])))
            elif kind == "boolean":
                row[col] = bool(self.mean[k] >= 0.5)
            else:
                row[col] = float(self.mean[k])
        df = pd.DataFrame([row] * len(groups))[list(self.inputs)]
        for col, kind in self.inputs.items():
            if kind == "long":
                df[col] = df[col].astype(np.int64)
            elif kind == "string":
                df[col] = df[col].astype(object)
        if self.needs_sensitive:
            cast = {"long": int, "double": float, "boolean": bool, "string": str}[self.s_type]
            df[self.sensitive] = pd.Series([cast(g) for g in groups], dtype=object if self.s_type == "string" else None)
        return df

    # ------------------------------------------------------------ storage
    def _arrays(self) -> dict[str, np.ndarray]:
        arr: dict[str, np.ndarray] = {"mean": np.asarray(self.mean, np.float64), "scale": np.asarray(self.scale, np.float64)}
        if self.head is not None:
            arr["head_coef"], arr["head_intercept"] = self.head.coef, self.head.intercept
        if self.projector is not None:
            _encode_state(_projector_state(self.projector), arr, "projector")
        if self.network is not None:
            for i, (w, b) in enumerate(zip(self.network.weights, self.network.biases)):
                arr[f"net.w{i}"], arr[f"net.b{i}"] = w, b
        return arr

    def _spec(self) -> dict:
        proj = None if self.projector is None else _encode_state(_projector_state(self.projector), {}, "projector")
        head = None if self.head is None else {"classes": [_plain(c) for c in self.head.classes]}
        spec = {"format": FORMAT, "sensitive": self.sensitive, "s_type": self.s_type, "target": self.target, "t": self.t,
                "method": self.method, "inputs": self.inputs, "encoded": [list(e) for e in self.encoded],
                "feature_names": self.feature_names, "arithmetic": self.arithmetic,
                "missing_category": self.missing_category, "projector": proj, "head": head,
                "outputs": list(self.outputs), "meta": self.meta}
        if self.network is not None:  # absent otherwise, so releases without one keep their digests
            spec["network"] = {"outcome": self.network.outcome, "layers": len(self.network.weights)}
        return spec

    def save(self, folder: str | Path) -> Path:
        """Write release.json and arrays.npz into `folder` (created); returns it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "release.json").write_text(json.dumps(self._spec(), indent=1, sort_keys=True))
        np.savez(folder / "arrays.npz", **self._arrays())
        return folder

    def digest(self) -> str:
        """sha256 of the release's content (metadata and every array): equal digests, equal predictions."""
        h = hashlib.sha256(json.dumps(self._spec(), sort_keys=True).encode())
        for k, v in sorted(self._arrays().items()):
            h.update(k.encode())
            h.update(np.ascontiguousarray(v, dtype=np.float64).tobytes())
        return h.hexdigest()

    @classmethod
    def load(cls, folder: str | Path) -> FeatureRelease:
        """Read a release written by `save`; ValueError when the folder holds something else."""
        folder = Path(folder)
        spec = json.loads((folder / "release.json").read_text())
        if spec.get("format") != FORMAT:
            raise ValueError(f"{folder} holds a release of format {spec.get('format')!r}, not {FORMAT!r}; "
                             "load it with the unlearn-fl version that wrote it")
        with np.load(folder / "arrays.npz", allow_pickle=False) as z:
            arr = {k: z[k] for k in z.files}
        head = None
        if spec["head"] is not None:
            head = Head(spec["head"]["classes"], arr["head_coef"], arr["head_intercept"])
        proj = None
        if spec["projector"] is not None:
            proj = BarycenterProjector.__new__(BarycenterProjector)
            proj.__dict__.update(_decode_state(spec["projector"], arr))
        net = None
        if spec.get("network") is not None:
            k = int(spec["network"]["layers"])
            net = Network([arr[f"net.w{i}"] for i in range(k)], [arr[f"net.b{i}"] for i in range(k)],
                          spec["network"]["outcome"])
        return cls(sensitive=spec["sensitive"], s_type=spec["s_type"], target=spec["target"], t=float(spec["t"]),
                   inputs=dict(spec["inputs"]), encoded=[(c, k) for c, k in spec["encoded"]],
                   feature_names=list(spec["feature_names"]), mean=arr["mean"], scale=arr["scale"],
                   arithmetic=spec["arithmetic"], missing_category=spec["missing_category"], projector=proj, head=head,
                   meta=spec.get("meta", {}), network=net)


_DATACLASSES = {"Knots": quantile.Knots}
"""The only classes a stored projector state may hold (quantile knots); anything else is refused on load."""


def _projector_state(projector: BarycenterProjector) -> dict:
    """The projector's attributes to store; the histogram smoothing (the class default, a fit-time setting) is left
    out, so releases stored before the setting existed keep their digests."""
    state = dict(vars(projector))
    if state.get("smoothing") == "histogram":
        del state["smoothing"]
    return state


def _encode_state(value: Any, arrays: dict[str, np.ndarray], key: str) -> Any:
    """JSON for a fitted projector's state (its attributes), arrays moved into `arrays` under keys derived from `key`.

    Exact: floats stay float64 arrays, labels keep their Python types. Handles None, bool, int, float, str, numpy
    scalars and arrays, lists, tuples, dicts and the quantile `Knots` dataclass (whatever fields it has).
    """
    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {"array": key}
    if isinstance(value, np.generic):
        return _plain(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return {"list": [_encode_state(v, arrays, f"{key}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, dict):
        return {"dict": [[_encode_state(k, arrays, f"{key}.k{i}"), _encode_state(v, arrays, f"{key}.{i}")]
                         for i, (k, v) in enumerate(value.items())]}
    name = type(value).__name__
    if dataclasses.is_dataclass(value) and _DATACLASSES.get(name) is type(value):
        return {"dataclass": name, "fields": {f.name: _encode_state(getattr(value, f.name), arrays, f"{key}.{f.name}")
                                              for f in dataclasses.fields(value)}}
    raise TypeError(f"cannot store a projector attribute of type {name}; extend release._encode_state")


def _decode_state(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of `_encode_state`."""
    if not isinstance(value, dict):
        return value
    if "array" in value:
        return arrays[value["array"]]
    if "list" in value:
        return [_decode_state(v, arrays) for v in value["list"]]
    if "dict" in value:
        return {_decode_state(k, arrays): _decode_state(v, arrays) for k, v in value["dict"]}
    if value.get("dataclass") in _DATACLASSES:
        return _DATACLASSES[value["dataclass"]](**{k: _decode_state(v, arrays) for k, v in value["fields"].items()})
    raise ValueError(f"a stored projector holds {sorted(value)!r}, which this unlearn-fl cannot read; load it with the "
                     "version that wrote it")


def _frame(rows: Any) -> pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        return rows
    try:
        return pd.DataFrame(rows)
    except (TypeError, ValueError) as e:
        raise ReleaseInputError(f"cannot read the input as a table ({e}); pass a pandas DataFrame with one column per "
                                "input of the model's signature") from None


# ------------------------------------------------------------ building releases from a run


def _encoded_columns(raw: pd.DataFrame, names: Sequence[str], sep: str) -> list[tuple[str, str | None]]:
    """(raw column, category) for each encoded feature name: a raw column itself, or `column{sep}category`."""
    cols = [str(c) for c in raw.columns]
    out: list[tuple[str, str | None]] = []
    for name in names:
        if name in cols and raw[name].dtype.kind in "iufb":
            out.append((name, None))
            continue
        owners = sorted((c for c in cols if name.startswith(f"{c}{sep}") and raw[c].dtype.kind not in "iufb"), key=len)
        if not owners:
            raise RuntimeError(f"cannot tell which input column the feature {name!r} comes from; the release cannot encode "
                               "raw rows (rename the column so that it is not a prefix of another)")
        out.append((owners[-1], name[len(owners[-1]) + len(sep):]))
    return out


def _inputs(raw: pd.DataFrame, encoded: list[tuple[str, str | None]]) -> dict[str, str]:
    inputs: dict[str, str] = {}
    for col, cat in encoded:
        inputs.setdefault(col, "string" if cat is not None else _column_type(raw[col]))
    return inputs


def central_releases(fit: Any) -> tuple[FeatureRelease, FeatureRelease]:
    """(before, after) releases of a central run (`unlearn_fl.feature.run.run_feature_fit`'s `FeatureFit`).

    before: t = 0, the head trained on the standardised features; after: the fitted projector at the run's t and
    the head trained on the projected train rows. Both are checked to reproduce the run's standardised features from
    the raw table rows; RuntimeError if they do not.
    """
    from unlearn_fl.feature.tabular import DIABETES, diabetes_frame

    raw = diabetes_frame() if fit.dataset == DIABETES else pd.read_csv(fit.dataset)
    raw = raw.dropna(axis=0, how="any").reset_index(drop=True)
    s_type = _column_type(raw[fit.sensitive])
    raw = raw.drop(columns=[fit.sensitive, fit.target])
    encoded = _encoded_columns(raw, fit.table.feature_names, "_")
    common = dict(sensitive=fit.sensitive, s_type=s_type, target=fit.target, inputs=_inputs(raw, encoded),
                  encoded=encoded, feature_names=list(fit.table.feature_names), mean=np.asarray(fit.mean, np.float64),
                  scale=np.asarray(fit.scale, np.float64),
                  meta={"scaler": "the train split's mean and standard deviation (unlearn_fl.feature.run)",
                        "head": "logistic regression on the projected train rows (unlearn_fl.feature.run)"})
    before = FeatureRelease(t=0.0, head=Head.from_sklearn(fit.heads[0.0]), **common)
    after = FeatureRelease(t=float(fit.t), projector=fit.projector, head=Head.from_sklearn(fit.heads[fit.t]), **common)
    expect = (fit.table.X - fit.mean) / fit.scale
    got = before.standardise(before.encode(raw))
    if got.shape != expect.shape or not np.allclose(got, expect, rtol=0, atol=1e-12):
        raise RuntimeError("the release's input encoding does not reproduce the run's features from the raw table; "
                           "nothing is registered (report this as a bug)")
    return before, after


def _reads_s_as_sites(release: FeatureRelease, rows: pd.DataFrame, s0: np.ndarray, s_cats: list[str] | None) -> bool:
    """Whether the release reads from raw `rows` the values of S site 0 holds (`s0`): numbers, or text categories."""
    try:
        s_rel = release.sensitive_values(rows)
    except ReleaseInputError:
        return False
    if s_cats is None:
        return np.array_equal(np.asarray(s_rel, dtype=np.float64), s0)
    return np.array_equal(np.asarray(s_rel, dtype=str), np.asarray(s0, dtype=str))


def _raw_inputs(spec: Any, table: Any) -> pd.DataFrame:
    """The federation's table as raw input rows (the target dropped), in the loader's row order: a bundled
    dataset's numeric columns, or the CSV file itself."""
    from unlearn_fl.data import BUILTIN_DATASETS

    if spec.dataset in BUILTIN_DATASETS:
        return pd.DataFrame(table.X.astype(np.float64), columns=list(table.feature_names))
    return pd.read_csv(spec.dataset).drop(columns=[spec.target])


def federated_releases(spec: Any, sensitive: str, projector: BarycenterProjector, t: float,
                       heads: dict[float, dict[str, np.ndarray]] | None = None) -> tuple[FeatureRelease, FeatureRelease]:
    """(before, after) releases of a federated run: the federation's scaler (float32) and the server's merged maps.

    spec: the run's `unlearn_fl.data.DataSpec`. S may be a numeric column or a text one (e.g. yes/no), which the loader
    one-hot encodes: then none of its indicator columns is a feature and its groups are the category names, as in the
    central path (`engine.feature_exchange.sensitive_columns`); rows carry S as text. heads: {0: ..., t: ...} the
    task heads the federation trained by FedAvg on the features and on the projected features (Linear states,
    "weight" (C, d) and "bias" (C,); server/feature_workflow.py); None: releases of the features only. Both are checked to reproduce site 0's features and S
    (`engine.feature_exchange.local_rows`) from its raw rows; RuntimeError if they do not.
    """
    from unlearn_fl.data import federation
    from unlearn_fl.engine.feature_exchange import local_rows, sensitive_columns

    fed = federation(spec)
    table = fed.table
    s_cols, s_cats = sensitive_columns(spec, sensitive)
    raw = _raw_inputs(spec, table)
    names = [n for k, n in enumerate(table.feature_names) if k not in set(s_cols)]
    encoded = _encoded_columns(raw.drop(columns=[sensitive]), names, "=")
    keep = np.array([k for k in range(len(table.feature_names)) if k not in set(s_cols)])
    common = dict(sensitive=sensitive, s_type="string" if s_cats is not None else _column_type(raw[sensitive]),
                  target=str(spec.target),
                  inputs=_inputs(raw, encoded), encoded=encoded, feature_names=names,
                  mean=np.asarray(fed.mean, np.float64)[keep], scale=np.asarray(fed.scale, np.float64)[keep],
                  arithmetic="float32", missing_category="<missing>",
                  meta={"clients": spec.num_clients, "scaler": "the federation's (unlearn_fl.data.Federation)"})
    def head(x: float) -> Head | None:
        return None if heads is None else Head.from_linear(list(table.class_names), heads[x]["weight"], heads[x]["bias"])

    before = FeatureRelease(t=0.0, head=head(0.0), **common)
    after = FeatureRelease(t=float(t), projector=projector, head=head(float(t)), **common)
    Z0, s0, _ = local_rows(spec, 0, sensitive, "train")
    rows = raw.iloc[fed.client_train_idx[0]]
    ok = np.allclose(before.transform(rows), Z0, rtol=0, atol=1e-6) and _reads_s_as_sites(after, rows, s0, s_cats)
    if not ok:
        raise RuntimeError("the release's input pipeline does not reproduce the sites' features from the raw rows; "
                           "nothing is registered (report this as a bug)")
    return before, after


def network_release(spec: Any, sensitive: str, network: Network, head_weight: np.ndarray, head_bias: np.ndarray,
                    projector: BarycenterProjector | None = None, t: float = 0.0, meta: dict | None = None) -> FeatureRelease:
    """A federated model's release: the federation's input pipeline (every column, S included: the model reads
    what the sites trained it on, `engine.feature_exchange.representation_rows`), its network, the projection of
    its representation at t (None, t = 0: none) and the task head (a Linear (C, h), `Head.from_linear`).

    Checked to reproduce site 0's representation and S from its raw rows (to 1e-5, the float32 of the sites'
    torch forward); RuntimeError if it does not. ValueError when the network's input width is not the table's.
    """
    from unlearn_fl.data import federation
    from unlearn_fl.engine.feature_exchange import representation_rows, sensitive_columns

    fed = federation(spec)
    table = fed.table
    if network.n_inputs != len(table.feature_names):
        raise ValueError(f"the model reads {network.n_inputs} inputs, the table has {len(table.feature_names)} columns")
    _, s_cats = sensitive_columns(spec, sensitive)
    raw = _raw_inputs(spec, table)
    encoded = _encoded_columns(raw, list(table.feature_names), "=")
    release = FeatureRelease(
        sensitive=sensitive, s_type="string" if s_cats is not None else _column_type(raw[sensitive]),
        target=str(spec.target), t=float(t), inputs=_inputs(raw, encoded), encoded=encoded,
        feature_names=network.names(), mean=np.asarray(fed.mean, np.float64), scale=np.asarray(fed.scale, np.float64),
        arithmetic="float32", missing_category="<missing>", projector=projector if t > 0 else None,
        head=Head.from_linear(list(table.class_names), head_weight, head_bias),
        meta={"clients": spec.num_clients, "scaler": "the federation's (unlearn_fl.data.Federation)",
              "outcome": network.outcome, **(meta or {})},
        network=network)
    X0, s0, _ = representation_rows(spec, 0, sensitive)
    rows = raw.iloc[fed.client_train_idx[0]]
    ok = np.allclose(network.represent(release.standardise(release.encode(rows))), network.represent(X0), rtol=0, atol=1e-5)
    if ok and release.needs_sensitive:
        ok = _reads_s_as_sites(release, rows, s0, s_cats)
    if not ok:
        raise RuntimeError("the release's input pipeline does not reproduce the sites' representation from the raw rows; "
                           "nothing is registered (report this as a bug)")
    return release
