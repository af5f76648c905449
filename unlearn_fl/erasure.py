"""Erasure that reaches the registry's artefacts (an MLflow adapter; the policy is the operator's).

After a verified unlearning, every earlier version that still holds the withdrawn data is
  keep        left as it is (tagged `contains_withdrawn=true`, never served);
  quarantine  its model artefacts deleted from the artifact store (the version's metadata, tags,
              metrics and report stay, tagged `erased` and `erasure=quarantine`), so it cannot be loaded;
  delete      its model artefacts deleted, its logged model and registered version deleted, and
              (sqlite store) `mlflow gc` run on the logged model; the lineage keeps a tombstone in the ledger.
A version that an alias such as `production` still points at is never erased: it is reported as kept.
Reports hold digests and counts, never data; they stay with the runs.
"""

from __future__ import annotations

import datetime as _dt
import subprocess
import sys

from unlearn_fl.tracking import TAG, name_filter

POLICIES = ("keep", "quarantine", "delete")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def logged_model_id(mv) -> str | None:
    """The id of the logged model behind a version (MLflow 3 stores weights as logged models)."""
    if getattr(mv, "model_id", None):
        return mv.model_id
    src = mv.source or ""
    return src[len("models:/"):] if src.startswith("models:/m-") else None


def model_artefacts(client, mv) -> list[str]:
    """Artifact URIs that hold a version's weights (where the registry downloads it from)."""
    return [client.get_model_version_download_uri(mv.name, str(mv.version))]


def delete_artefacts(uris: list[str]) -> list[str]:
    """Delete every file under each artifact URI (local, mlflow-artifacts over HTTP, S3, ...); the URIs deleted."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    done = []
    for uri in uris:
        get_artifact_repository(uri).delete_artifacts()
        done.append(uri)
    return done


def holders(client, model_name: str, clients: set[int], exclude: set[str]) -> list:
    """Versions tagged `contains_withdrawn=true` that list one of `clients`, not yet erased, oldest first."""
    out = []
    for mv in client.search_model_versions(name_filter(model_name)):
        tags = mv.tags or {}
        listed = {int(c) for c in (tags.get(TAG + "clients") or "").split(",") if c.strip().isdigit()}
        if (str(mv.version) not in exclude and tags.get(TAG + "contains_withdrawn") == "true"
                and not tags.get(TAG + "erased") and listed & clients):
            out.append(mv)
    return sorted(out, key=lambda m: int(m.version))


def erase_version(client, tracking_uri: str, model_name: str, mv, policy: str, request_id: str) -> dict:
    """Apply `policy` (quarantine | delete) to one version; returns what the ledger records of it."""
    if policy not in ("quarantine", "delete"):
        raise ValueError(f"erasure policy {policy!r}: choose quarantine or delete")
    tags = {k[len(TAG):]: v for k, v in (mv.tags or {}).items() if k.startswith(TAG) and k != TAG + "classes"}
    v, when = str(mv.version), _now()
    erased = delete_artefacts(model_artefacts(client, mv))
    record = {"version": v, "policy": policy, "erased_at": when, "artefacts": erased, "run_id": mv.run_id,
              "model_id": logged_model_id(mv),
              "tombstone": {k: tags.get(k, "") for k in ("kind", "parent_version", "clients", "withdrawn_clients",
                                                        "request_ids", "method", "data_digest", "verdict")}}
    reason = f"erased on {when[:10]} ({policy}) after request {request_id}"
    if policy == "quarantine":
        client.set_model_version_tag(model_name, v, TAG + "erased", when)
        client.set_model_version_tag(model_name, v, TAG + "erasure", "quarantine")
        client.update_model_version(model_name, v, description=f"{(mv.description or '').rstrip('.')}; {reason}; "
                                                               "its model artefacts no longer exist".lstrip("; "))
        return record
    client.delete_model_version(model_name, v)
    if record["model_id"]:
        client.delete_logged_model(record["model_id"])
        if tracking_uri.startswith("sqlite:///"):
            # The logged model row is only marked deleted: `mlflow gc` removes it from the store for good.
            subprocess.run([sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", tracking_uri,
                            "--logged-model-ids", record["model_id"]], check=True, capture_output=True, timeout=300)
            record["gc"] = "done"
        else:
            record["gc"] = "needed on the server's backend store: mlflow gc --logged-model-ids " + record["model_id"]
    return record
