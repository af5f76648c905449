"""Feature-unlearning releases in the MLflow Model Registry (`unlearn-fl feature`): versions, lineage, report, alias.

Each run registers two versions of one registered model, with the lineage conventions of `unlearn_fl.tracking`:

- the model *before* feature unlearning (`kind=feature-base`): the standardised features (t = 0) and, centrally, the
  task head trained on them; the report's "before" column measures it. A later run whose before-model is identical
  (same data, split and scaler: same `release_digest`) reuses that version instead of registering it again;
- the released model (`kind=feature-unlearned`, `parent_version` = that base): the fitted projection at t and its
  head, with the forgetting report attached (`report/forgetting_report.json` and `.html`, digest in `report_digest`).

Both are MLflow pyfunc models (`FeatureReleaseModel` over `unlearn_fl.feature.release.FeatureRelease`): `predict`
takes raw rows (the signature's columns, with the sensitive column S) and returns the task label, the class
probabilities or the projected features (`params={"output": "label" | "proba" | "features"}`).

Tags (under `unlearn_fl.`) besides tracking.py's kind, parent_version, clients, withdrawn_clients, request_ids,
method, method_config_digest, data_digest, run_id, federation_run_id, contains_withdrawn, classes, report_digest:
  sensitive, feature_method (quantile | gaussian | identity), t, s_auc_before, s_auc_after, mi_before, mi_after,
  utility_before, utility_after, s_auc_gbm_after, estimates_agree, outputs, default_output, release_digest, release
  (the alias it got), max_s_auc, smoothing (auto, relative or kernel: how the quantile maps smoothed the group
  laws, when not by histograms of the values), summary (marginals: the sites sent their marginals, the maps are
  exact; absent for sketches), and for a model's release outcome (embedding | scores) and lam (in training)
  (the base version: sensitive, feature_method=identity, t=0, s_auc, utility, outputs, release_digest).
A version is complete once `kind` is set, which is done last (after its report and `report_digest`), and its alias
moves after that. A failure at any step deletes every version the call created (with its model artefacts), so the
registry never shows half a release; a version left incomplete by a killed process is deleted by the next call
(`tracking.Tracker.recover`), which is why one model takes one writer at a time.
The alias `production` moves to the released version under `promote="on-pass"` when `promotion_gate` passes it: its
held-out S-probe AUC after unlearning and the independent gradient-boosting probe's AUC after are both at most
`max_s_auc` (default 0.6, the allowed gap of 0.1 against chance of `config.AuditSettings.max_auc_without_reference`),
and the report's estimates agree (`FeatureBlock.estimates_agree`); always under "always", never under "never";
otherwise it gets `candidate`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.exceptions import MlflowException

from unlearn_fl.feature.release import FeatureRelease, ReleaseInputError
from unlearn_fl.tracking import TAG, Tracker, TrackingError, _client, _digest, check_tracking_uri, name_filter

__all__ = ["KIND_BASE", "KIND_RELEASED", "FeatureReleaseModel", "FeatureRegistration", "check_feature_store",
           "promotion_gate", "register_feature", "save_pyfunc", "pyfunc_requirements", "table_digest"]

KIND_BASE = "feature-base"
KIND_RELEASED = "feature-unlearned"
DEFAULT_MAX_S_AUC = 0.6


class FeatureReleaseModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc over a `FeatureRelease` stored in the model's artifacts (`release/`).

    predict(rows: DataFrame (n, inputs), params={"output": ..., "ties": ...}) -> DataFrame: (n, 1) labels, (n, k)
    probabilities or (n, d) projected features (see `FeatureRelease.predict`). Bad rows (no S column, a value of S
    never seen at fit time, a missing value, ...) raise MlflowException(INVALID_PARAMETER_VALUE) with one line
    naming the column and the fix (HTTP 400 when served).
    """

    # The explicit signature (columns, S, params) is the contract: no validation from predict's type hints, which
    # MLflow otherwise asks for with a warning at class creation.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        self.release = FeatureRelease.load(context.artifacts["release"])

    def predict(self, context, model_input, params: dict[str, Any] | None = None):
        params = params or {}
        try:
            return self.release.predict(model_input, output=params.get("output") or None, ties=params.get("ties") or None)
        except ReleaseInputError as e:
            raise MlflowException.invalid_parameter_value(str(e)) from None


def pyfunc_requirements() -> list[str]:
    """What a released feature model needs to load and predict, pinned to this process's versions (given explicitly:
    MLflow's inference of them re-imports the environment, seconds per version; tracking.serving_requirements)."""
    import mlflow
    import numpy
    import pandas

    return [f"mlflow=={mlflow.__version__}", f"numpy=={numpy.__version__}", f"pandas=={pandas.__version__}"]


def table_digest(*arrays: Any) -> str:
    """sha256 over arrays' values (numbers as bytes, labels as text): the `data_digest` of a central run's table."""
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        h.update(a.tobytes() if a.dtype.kind in "biuf" else "\x1f".join(map(str, a.tolist())).encode())
    return h.hexdigest()


def _signature(release: FeatureRelease):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from mlflow.types.schema import AnyType

    # Every column is listed, untyped and optional for MLflow's own check: the model checks presence, types and
    # values itself and refuses bad rows in one line naming the column and the fix (MLflow's check prints the
    # whole input, and refuses 0.0 for a whole-number column). The types are the release's `inputs`.
    cols = [ColSpec(AnyType(), name, required=False) for name in release.inputs]
    if release.needs_sensitive and release.sensitive not in release.inputs:
        cols.append(ColSpec(AnyType(), release.sensitive, required=False))
    params = [ParamSpec("output", "string", release.default_output)]
    if release.method == "quantile":
        params.append(ParamSpec("ties", "string", ""))
    return ModelSignature(inputs=Schema(cols), params=ParamSchema(params))


def check_feature_store(uri: str, model_name: str) -> None:
    """Before any fitting: the store opens and can take `model_name`'s runs (tracking.check_tracking_uri), and the
    model, if it exists, holds feature releases only (a data-withdrawal model is a different kind of model).

    Raises TrackingError with one line naming the problem and the fix. Creates nothing: an sqlite store that does
    not exist yet is left to be created by `register_feature`.
    """
    check_tracking_uri(uri, model_name=model_name)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return
    _, client = _client(uri)
    try:
        versions = client.search_model_versions(name_filter(model_name))
    except MlflowException:
        return
    kinds = sorted({(mv.tags or {}).get(TAG + "kind") for mv in versions} - {None, KIND_BASE, KIND_RELEASED})
    if kinds:
        raise TrackingError(f"registered model {model_name!r} in {uri} holds data-withdrawal versions (kind {', '.join(kinds)}); "
                            "a feature release is a different model (a pyfunc that reads the sensitive column): pass another "
                            "--model-name, e.g. feature-<sensitive>")


@dataclass
class FeatureRegistration:
    """What `register_feature` recorded."""

    model_name: str
    version: str
    parent_version: str
    parent_reused: bool
    alias: str
    run_id: str
    report_digest: str
    reason: str = ""
    """`promotion_gate`'s one line: why the release passed, or why it was not promoted."""
    reused: bool = False
    """True when an identical release (same content, parent and request) was registered already: no new version."""


def _experiment(mlflow, client, uri: str, model_name: str) -> None:
    """The model's experiment, created with its artifacts beside an sqlite store (as `tracking.Tracker` does)."""
    from unlearn_fl.artifact_store import experiment_problem

    exp = client.get_experiment_by_name(model_name)
    if uri.startswith("sqlite:///") and exp is None:
        store = Path(uri[len("sqlite:///"):]).resolve()
        client.create_experiment(model_name, artifact_location=(store.parent / "mlruns").as_uri())
    exp = client.get_experiment_by_name(model_name)
    if exp is None:
        client.create_experiment(model_name)
        exp = client.get_experiment_by_name(model_name)
    if (problem := experiment_problem(uri, model_name, exp.experiment_id, exp.artifact_location, exp.lifecycle_stage)) is not None:
        raise TrackingError(problem)
    mlflow.set_experiment(model_name)


def _pyfunc_kwargs(release: FeatureRelease, folder: Path, meta: dict) -> dict:
    return dict(python_model=FeatureReleaseModel(), artifacts={"release": str(release.save(folder))},
                signature=_signature(release), input_example=release.example(), pip_requirements=pyfunc_requirements(),
                metadata={"unlearn_fl": meta})


def save_pyfunc(release: FeatureRelease, path: str | Path) -> Path:
    """Write `release` as an MLflow pyfunc model folder at `path` (no tracking store; `mlflow.pyfunc.load_model(path)`
    loads it), with the same signature, artefacts and requirements as a registered release. Returns `path`."""
    with tempfile.TemporaryDirectory() as d:
        mlflow.pyfunc.save_model(str(path), **_pyfunc_kwargs(release, Path(d) / "release", {"t": release.t}))
    return Path(path)


def _log(mlflow, release: FeatureRelease, model_name: str, meta: dict) -> str:
    """Log `release` as a pyfunc in the active run and register it; returns the new version."""
    with tempfile.TemporaryDirectory() as d:
        info = mlflow.pyfunc.log_model(name="model", registered_model_name=model_name,
                                       **_pyfunc_kwargs(release, Path(d) / "release", meta))
    return str(info.registered_model_version)


def _set_tags(client, model_name: str, version: str, tags: dict[str, str], description: str) -> None:
    """Description, then every tag, `kind` last: it completes the version (tracking.is_complete)."""
    client.update_model_version(model_name, version, description=description)
    for k, v in sorted(tags.items(), key=lambda kv: kv[0] == "kind"):
        client.set_model_version_tag(model_name, version, TAG + k, str(v))


def _rollback(client, model_name: str, created: list[str], model_existed: bool) -> None:
    """Delete the versions this call created (artefacts first), and the registered model if it made it."""
    from unlearn_fl.erasure import delete_artefacts, model_artefacts

    for v in reversed(created):
        try:
            mv = client.get_model_version(model_name, v)
            delete_artefacts(model_artefacts(client, mv))
        except Exception:
            pass  # the artefacts may never have been written; the version still goes
        try:
            client.delete_model_version(model_name, v)
        except Exception:
            pass
    if not model_existed:
        try:
            if not client.search_model_versions(name_filter(model_name)):
                client.delete_registered_model(model_name)
        except Exception:
            pass


def _f(x: float) -> str:
    return f"{x:.4g}"


def promotion_gate(f, max_s_auc: float = DEFAULT_MAX_S_AUC) -> tuple[bool, str]:
    """(passed, why in one line) for a report's `FeatureBlock` f under promote="on-pass".

    Passes only when the held-out logistic S-probe AUC after and the independent gradient-boosting probe's AUC after
    are both at most max_s_auc and the estimates agree (`estimates_agree` is True): one probe at chance does not show
    that S is gone when another probe still separates it. A report without the gradient-boosting AUC or the
    agreement flag does not pass.
    """
    problems = []
    if f.s_auc_after > max_s_auc:
        problems.append(f"S-probe AUC {f.s_auc_after:.3f} > {max_s_auc:g}")
    if f.s_auc_gbm_after is None:
        problems.append("no gradient-boosting probe AUC in the report")
    elif f.s_auc_gbm_after > max_s_auc:
        problems.append(f"gradient-boosting probe AUC {f.s_auc_gbm_after:.3f} > {max_s_auc:g}")
    if f.estimates_agree is None:
        problems.append("the report does not say whether the estimates agree")
    elif not f.estimates_agree:
        problems.append("the estimates disagree" + (f": {' '.join(str(f.disagreement).split())}" if f.disagreement else ""))
    if problems:
        return False, "not promoted: " + "; ".join(problems)
    return True, (f"S-probe AUC {f.s_auc_after:.3f} <= {max_s_auc:g}, gradient-boosting probe AUC "
                  f"{f.s_auc_gbm_after:.3f} <= {max_s_auc:g}, the estimates agree")


def _reuse(client, uri: str, model_name: str, mv, report, max_s_auc: float, parent: str,
           parent_reused: bool) -> FeatureRegistration:
    """Point at an identical registered release and change nothing: `report` becomes the attached one (the earlier
    run's, which differs from this run's in its creation time only); the registration's alias is the one pointing at
    that version now ("" for none), so a re-run of an older command does not take `production` back."""
    import mlflow.artifacts

    from unlearn_fl.report.schema import ForgettingReport

    tags = mv.tags or {}
    run_id = tags.get(TAG + "run_id", "")
    aliases = list(getattr(mv, "aliases", None) or client.get_model_version(model_name, str(mv.version)).aliases or [])
    with tempfile.TemporaryDirectory() as d:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="report/forgetting_report.json",
                                                   dst_path=d, tracking_uri=uri)
        attached = ForgettingReport.model_validate_json(Path(path).read_text())
    for name in type(report).model_fields:
        setattr(report, name, getattr(attached, name))
    _, why = promotion_gate(report.feature, max_s_auc)
    alias = "production" if "production" in aliases else (aliases[0] if aliases else "")
    return FeatureRegistration(model_name, str(mv.version), parent, parent_reused, alias, run_id,
                               tags.get(TAG + "report_digest", report.digest()), why, reused=True)


def register_feature(uri: str, model_name: str, report, before: FeatureRelease, after: FeatureRelease, *,
                     clients: list[int] | None = None, data_digest: str = "", promote: str = "on-pass",
                     max_s_auc: float = DEFAULT_MAX_S_AUC, fail_after_version: bool = False) -> FeatureRegistration:
    """Register `after` (parent: `before`, registered or reused) with `report` attached; move its alias.

    report: the run's `ForgettingReport` (kind feature); its `model` block is filled in (name, version, parent,
    run id) before it is attached, so the attached file, its `report_digest` tag and the caller's copy agree.
    clients: the federation's site ids (None or []: a central run). promote: on-pass | always | never.
    fail_after_version: raise right after the released version is created (tests of the rollback).
    A release identical to a registered one (same `release_digest`, parent and request id: a re-run of the same
    command) is not registered again and nothing in the registry changes: the registration points at that version
    (`reused`, with the alias it has now), and `report` becomes the attached report.
    Raises whatever MLflow raised after deleting every version it created (nothing half-written stays visible).
    """
    if promote not in ("on-pass", "always", "never"):
        raise ValueError(f"promote must be on-pass, always or never, got {promote!r}")
    mlflow, client = _client(uri)
    _experiment(mlflow, client, uri, model_name)
    Tracker(uri, model_name, "feature").recover()  # versions an interrupted earlier run left half-written
    try:
        client.get_registered_model(model_name)
        model_existed = True
    except MlflowException:
        model_existed = False
    f = report.feature
    sites = ",".join(map(str, sorted(clients or [])))
    common = {"clients": sites, "withdrawn_clients": "", "data_digest": data_digest, "federation_run_id": "",
              "contains_withdrawn": "false", "sensitive": f.sensitive}
    created: list[str] = []
    try:
        # ---- the model before feature unlearning: reused when an identical one is registered
        base_digest = before.digest()
        parent, reused = None, False
        versions = sorted(client.search_model_versions(name_filter(model_name)), key=lambda m: int(m.version))
        for mv in versions:
            t = mv.tags or {}
            if t.get(TAG + "kind") == KIND_BASE and t.get(TAG + "release_digest") == base_digest:
                parent, reused = str(mv.version), True
        if parent is None:
            with mlflow.start_run(run_name=f"feature-base-{f.sensitive}") as run:
                mlflow.log_metrics({"s_auc": f.s_auc_before, "mi": f.mi_before, "utility": f.utility_before,
                                    **({"test_acc": f.utility_before} if before.head is not None else {})})
                parent = _log(mlflow, before, model_name, {"kind": KIND_BASE, "t": 0.0, "outputs": list(before.outputs)})
                created.append(parent)
            _set_tags(client, model_name, parent, {
                **common, "kind": KIND_BASE, "parent_version": "", "request_ids": "", "method": "identity",
                "method_config_digest": _digest({}), "run_id": run.info.run_id, "feature_method": "identity", "t": "0",
                "s_auc": _f(f.s_auc_before), "utility": _f(f.utility_before), "release_digest": base_digest,
                "outputs": ",".join(before.outputs), "default_output": before.default_output,
                "classes": json.dumps([str(c) for c in before.head.classes]) if before.head is not None else ""},
                "Before feature unlearning: the standardised features (t = 0)"
                + (" and the task head trained on them" if before.head is not None else "")
                + f"; they still carry {f.sensitive!r} (held-out S-probe AUC {f.s_auc_before:.3f}). "
                  "The parent of this model's feature-unlearned versions; do not serve it where "
                  f"{f.sensitive!r} must not be used.")

        # ---- the released model: an identical one (same content, parent and request) is reused, not registered twice
        release_digest = after.digest()
        for mv in versions:  # a parent created just now has no children yet
            t = mv.tags or {}
            if (t.get(TAG + "kind") == KIND_RELEASED and t.get(TAG + "release_digest") == release_digest
                    and t.get(TAG + "parent_version") == parent and t.get(TAG + "request_id") == report.request.request_id):
                return _reuse(client, uri, model_name, mv, report, max_s_auc, parent, reused)

        with mlflow.start_run(run_name=report.request.request_id) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in report.method_config.items()})
            mlflow.log_metrics({"t": f.t, "s_auc_before": f.s_auc_before, "s_auc_after": f.s_auc_after,
                                "mi_before": f.mi_before, "mi_after": f.mi_after, "utility_before": f.utility_before,
                                "utility_after": f.utility_after,
                                **({"test_acc": f.utility_after} if after.head is not None else {})})
            version = _log(mlflow, after, model_name, {"kind": KIND_RELEASED, "t": f.t, "sensitive": f.sensitive,
                                                       "outputs": list(after.outputs)})
            created.append(version)
            if fail_after_version:
                raise RuntimeError("injected failure after the version was created")
            report.model.name, report.model.version, report.model.parent_version = model_name, version, parent
            report.model.run_id = run.info.run_id
            digest = report.digest()
            from unlearn_fl.report.html import render_html

            with tempfile.TemporaryDirectory() as d:
                for name, text in (("forgetting_report.json", report.to_json()), ("forgetting_report.html", render_html(report))):
                    (Path(d) / name).write_text(text)
                    mlflow.log_artifact(str(Path(d) / name), artifact_path="report")
        passed, why = promotion_gate(f, max_s_auc)
        alias = "production" if promote == "always" or (promote == "on-pass" and passed) else "candidate"
        outputs = ", ".join(after.outputs)
        _set_tags(client, model_name, version, {
            **common, "kind": KIND_RELEASED, "parent_version": parent, "request_ids": report.request.request_id,
            "request_id": report.request.request_id, "method": report.method,
            "method_config_digest": _digest(report.method_config), "run_id": run.info.run_id,
            "feature_method": after.method, "t": f"{f.t:g}", "s_auc_before": _f(f.s_auc_before),
            "s_auc_after": _f(f.s_auc_after), "mi_before": _f(f.mi_before), "mi_after": _f(f.mi_after),
            "utility_before": _f(f.utility_before), "utility_after": _f(f.utility_after),
            "s_auc_gbm_after": "" if f.s_auc_gbm_after is None else _f(f.s_auc_gbm_after),
            "estimates_agree": "" if f.estimates_agree is None else str(bool(f.estimates_agree)).lower(),
            "release_digest": release_digest, "outputs": ",".join(after.outputs), "default_output": after.default_output,
            "classes": json.dumps([str(c) for c in after.head.classes]) if after.head is not None else "",
            "release": alias, "max_s_auc": f"{max_s_auc:g}", "report_digest": digest,
            **({"outcome": f.outcome} if f.outcome else {}), **({"lam": f"{f.lam:g}"} if f.lam is not None else {}),
            **({"smoothing": str(report.method_config["smoothing"])} if report.method_config.get("smoothing") else {}),
            **({"summary": str(report.method_config["summary"])} if report.method_config.get("summary") else {})},
            f"Feature-unlearned: {f.sensitive!r} removed"
            + (f" from the model's {f.outcome}" if f.outcome not in (None, "features") else "")
            + f" by {report.method} " + (f"at t={f.t:g}" if f.lam is None else f"in training with λ={f.lam:g}")
            + f" from v{parent}; held-out S-probe "
            f"AUC {f.s_auc_before:.3f} -> {f.s_auc_after:.3f} ({'within' if f.s_auc_after <= max_s_auc else 'above'} "
            f"{max_s_auc:g}), task utility {f.utility_before:.3f} -> {f.utility_after:.3f}; @{alias} "
            f"({why if promote == 'on-pass' else f'promote={promote}'}); predict "
            f"reads {f.sensitive!r} with every row and returns {outputs}; forgetting report attached.")
        client.set_registered_model_alias(model_name, alias, version)
    except BaseException:
        _rollback(client, model_name, created, model_existed)
        raise
    return FeatureRegistration(model_name, version, parent, reused, alias, run.info.run_id, digest, why)
