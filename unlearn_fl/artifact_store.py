"""Where a run's artifacts (models, reports) will be written, checked before any training.

MLflow writes a run's artifacts under its experiment's `artifact_location`, fixed when the experiment
was created. `Tracker` creates the experiment of an sqlite store with its artifacts beside the store;
an experiment created earlier by anything else (a notebook's `mlflow.set_experiment`, `mlflow ui`, an
older unlearn-fl) keeps MLflow's default, `./mlruns` resolved in the folder that process ran in, or a
relative path that resolves in whatever folder the ServerApp runs in. Either way the registration fails
only after training, or writes into a folder the user never named. These checks find that up front.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = ["sqlite_experiment", "experiment_problem"]


def sqlite_experiment(db: Path, name: str) -> tuple[str, str, str] | None:
    """(experiment id, artifact location, lifecycle stage) of experiment `name` in an MLflow sqlite store,
    read without writing (no MLflow store set-up, no migration); None when the file or the experiment is absent."""
    if not db.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT experiment_id, artifact_location, lifecycle_stage FROM experiments WHERE name = ?",
                              (name,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None  # not an MLflow store yet (or another schema): MLflow itself will say so when it opens it
    return None if row is None else (str(row[0]), str(row[1] or ""), str(row[2] or "active"))


def _local_path(location: str) -> Path | None:
    """The local folder an artifact location names (file:// URI or plain path), or None for a remote store."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # s3:, gs:, mlflow-artifacts:, http: ... (not a Windows drive letter)
        return None
    return Path(location)


def experiment_problem(uri: str, name: str, experiment_id: str, location: str, stage: str) -> str | None:
    """One line naming why the experiment of model `name` cannot take this run's artifacts, with the fix; else None."""
    fix_name = "or pass another --model-name (a new experiment keeps its artifacts beside the store)"
    if stage == "deleted":
        return (f"experiment {name!r} (id {experiment_id}) in {uri} is deleted, so no run can be recorded in it: restore it "
                f"(mlflow experiments restore --experiment-id {experiment_id}) {fix_name}")
    path = _local_path(location)
    if path is None:
        return None  # a remote artifact store (the server's, S3, ...): the server or its credentials decide
    if not path.is_absolute():
        return (f"experiment {name!r} in {uri} keeps its artifacts at the relative path {location!r}, which would land in "
                f"whatever folder the server process runs in: recreate it with an absolute artifact location {fix_name}")
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"experiment {name!r} in {uri} keeps its artifacts in {path}, but {probe} is not a folder: move it away {fix_name}"
    if not os.access(probe, os.W_OK | os.X_OK):
        where = str(path) if probe == path else f"{path} (to be created in {probe})"
        return (f"experiment {name!r} in {uri} keeps its artifacts in {where}, which is not writable: make it writable "
                f"{fix_name}")
    return None
