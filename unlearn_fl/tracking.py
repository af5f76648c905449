"""MLflow tracking and Model Registry: runs, versions, lineage tags, aliases, report artifacts.

Conventions (tag keys under `unlearn_fl.`):
  parent_version      version this one was derived from ('' for a trained root)
  clients             clients whose data the version contains, e.g. "1,2,3,4"
  withdrawn_clients   clients withdrawn so far; request_ids the withdrawals applied so far
  method, method_config_digest, data_digest, report_digest, verdict, kind
  contains_withdrawn  "true" on a version that still holds withdrawn data (never serve it)
  superseded_by       the version that forgot that data
Alias `production` marks the model to serve; it moves to an unlearned version only when
that version's verdict passes (or when `promote="always"`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TAG = "unlearn_fl."


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message names the URI and the fix."""


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def check_tracking_uri(uri: str) -> None:
    """Fail fast, before any training, when the store cannot be opened."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise TrackingError(f"cannot open tracking URI {uri}: folder {parent} does not exist; create it or pass another --tracking-uri")
        if not os.access(parent, os.W_OK):
            raise TrackingError(f"cannot open tracking URI {uri}: folder {parent} is not writable")
        if path.exists() and not os.access(path, os.W_OK):
            raise TrackingError(f"cannot open tracking URI {uri}: {path} is not writable")
        return
    if uri.startswith(("http://", "https://")):
        from mlflow.tracking import MlflowClient

        try:
            MlflowClient(uri).search_experiments(max_results=1)
        except Exception as e:
            raise TrackingError(f"cannot reach MLflow server at {uri}: {e.__class__.__name__}; start it (deploy/mlflow-server.sh) or fix --tracking-uri") from None
        return
    raise TrackingError(f"unsupported tracking URI {uri!r}: use sqlite:///PATH.db or http://HOST:PORT")


def _client(uri: str):
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    return mlflow, MlflowClient(uri)


@dataclass
class VersionSpec:
    """What to record for one model version."""

    model: Any
    input_example: Any
    kind: str  # "trained" | "unlearned"
    clients: list[int]
    parent_version: str | None
    withdrawn_clients: list[int]
    request_ids: list[str]
    method: str
    method_config: dict
    data_digest: str
    metrics: dict[str, float]
    round_metrics: list[dict]
    params: dict[str, Any]


def _log_version(mlflow, client, model_name: str, run_name: str, spec: VersionSpec, artifacts_fn=None) -> tuple[str, str]:
    """A nested run holding the model, its metrics and artifacts, registered as a new version.

    artifacts_fn(version, run_id) -> {file name: text} is called once the version number is known.
    """
    with mlflow.start_run(run_name=run_name, nested=True) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in spec.params.items()})
        for row in spec.round_metrics:
            step = int(row["step"])
            mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "step" and v is not None}, step=step)
        mlflow.log_metrics({k: float(v) for k, v in spec.metrics.items() if v is not None})
        info = mlflow.pytorch.log_model(spec.model, name="model", registered_model_name=model_name,
                                        input_example=spec.input_example)
        version = str(info.registered_model_version)
        if artifacts_fn is not None:
            with tempfile.TemporaryDirectory() as d:
                for name, text in artifacts_fn(version, run.info.run_id).items():
                    p = Path(d) / name
                    p.write_text(text)
                    mlflow.log_artifact(str(p), artifact_path="report")
    tags = {
        "kind": spec.kind,
        "parent_version": spec.parent_version or "",
        "clients": ",".join(map(str, spec.clients)),
        "withdrawn_clients": ",".join(map(str, spec.withdrawn_clients)),
        "request_ids": ",".join(spec.request_ids),
        "method": spec.method,
        "method_config_digest": _digest(spec.method_config),
        "data_digest": spec.data_digest,
        "run_id": run.info.run_id,
    }
    for k, v in tags.items():
        client.set_model_version_tag(model_name, version, TAG + k, v)
    return version, run.info.run_id


def record_withdrawal(
    uri: str,
    model_name: str,
    trained: VersionSpec,
    unlearned: VersionSpec,
    report,  # ForgettingReport; its model block is filled here
    render_html,
    promote: str = "on-pass",
) -> tuple[str, str]:
    """Register the trained and the unlearned model as parent and child versions; attach the report.

    Everything is validated before this is called; the two versions are written in one go
    at the end of a run, so a failed run leaves the registry as it was.
    """
    mlflow, client = _client(uri)
    mlflow.set_experiment(model_name)
    with mlflow.start_run(run_name=f"federation-{report.request.request_id}") as parent:
        mlflow.set_tags({TAG + "request_id": report.request.request_id, TAG + "kind": "federation"})
        v_before, _ = _log_version(mlflow, client, model_name, "train", trained)
        unlearned.parent_version = v_before
        report.model.parent_version = v_before

        def attach(version: str, run_id: str) -> dict[str, str]:
            report.model.version, report.model.run_id = version, run_id
            return {"forgetting_report.json": report.to_json(), "forgetting_report.html": render_html(report)}

        v_after, _ = _log_version(mlflow, client, model_name, f"unlearn-{report.request.request_id}", unlearned, attach)
        if report.cost and report.cost.speedup is not None:
            mlflow.log_metric("speedup", report.cost.speedup)
    verdict = report.audit.verdict if report.audit else "inconclusive"
    client.set_model_version_tag(model_name, v_after, TAG + "verdict", verdict)
    client.set_model_version_tag(model_name, v_after, TAG + "report_digest", report.digest())
    client.set_model_version_tag(model_name, v_before, TAG + "contains_withdrawn", "true")
    client.set_model_version_tag(model_name, v_before, TAG + "superseded_by", v_after)
    client.set_model_version_tag(model_name, v_after, TAG + "contains_withdrawn", "false")
    if promote == "always" or (promote == "on-pass" and verdict == "passed"):
        client.set_registered_model_alias(model_name, "production", v_after)
    else:
        client.set_registered_model_alias(model_name, "candidate", v_after)
    return v_before, v_after


def lineage(uri: str, model_name: str) -> list[dict]:
    """Every version of `model_name` with its lineage tags and aliases, oldest first."""
    _, client = _client(uri)
    versions = client.search_model_versions(f"name='{model_name}'")
    rm = client.get_registered_model(model_name)
    aliases: dict[str, list[str]] = {}
    for alias, v in (rm.aliases or {}).items():
        aliases.setdefault(str(v), []).append(alias)
    rows = []
    for mv in sorted(versions, key=lambda m: int(m.version)):
        tags = {k[len(TAG):]: v for k, v in (mv.tags or {}).items() if k.startswith(TAG)}
        rows.append({"version": str(mv.version), "run_id": mv.run_id, "aliases": aliases.get(str(mv.version), []), **tags})
    return rows
