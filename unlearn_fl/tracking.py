"""MLflow tracking and Model Registry: runs, versions, lineage tags, aliases, report artifacts.

Conventions (tag keys under `unlearn_fl.`):
  parent_version      version this one was derived from ('' for a trained root)
  clients             clients whose data the version contains, e.g. "1,2,3,4"
  withdrawn_clients   clients withdrawn so far; request_ids the withdrawals applied so far
  method, method_config_digest, data_digest, report_digest, verdict, kind
  contains_withdrawn  "true" on a version that still holds withdrawn data (never serve it);
                      "unverified" on an unlearned version whose forgetting was neither exact
                      (retraining) nor verified (a passed verdict), and on versions trained from it;
                      "false" otherwise. It follows from what was done and verified, not from intent.
  certified_by        what carried a passed verdict: "audit" or "accounting" ("none" otherwise)
  exposure_increased  retained sites whose own membership exposure rose beyond the resolution
  superseded_by       the version that forgot that data
  description         one sentence for the MLflow UI: what the version is, which request, verdict
  ledger_entry        "SEQ:HASH" of the ledger entry that recorded the version's withdrawal
  erased, erasure     when and how (quarantine) a version's model artefacts were erased
Alias `production` marks the model to serve; it moves to an unlearned version only when
that version's verdict passes, or it was retrained from scratch and its audit did not fail
(or when `promote="always"`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TAG = "unlearn_fl."


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message names the URI and the fix."""


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def system_info() -> dict[str, str]:
    """Where a run happened: recorded on every federation run."""
    import platform

    import flwr
    import torch

    import unlearn_fl

    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": str(os.cpu_count()),
            "torch": torch.__version__, "flwr": flwr.__version__, "unlearn_fl": unlearn_fl.__version__}


@contextmanager
def _http_settings(retries: int, timeout: float):
    """MLflow's HTTP retries and timeout (s) for the calls inside only; the process's own settings come back after
    (a fail-fast check must not leave a run, or the ServerApp it starts, without MLflow's retries)."""
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries), "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout))}
    before = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_tracking_uri(uri: str, must_exist: bool = False, model_name: str | None = None) -> None:
    """Fail fast, before any training, when the store cannot be opened.

    must_exist: the command only reads (lineage, report, audit): a missing sqlite file is an error,
    not a new empty store.
    model_name: the command will record runs under this model (simulate): its experiment, when it
    exists, must not be deleted and must keep its artifacts where this process can write them
    (`unlearn_fl.artifact_store`); a new one is created by `Tracker` beside an sqlite store.
    """
    from unlearn_fl.artifact_store import experiment_problem, sqlite_experiment

    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise TrackingError(f"cannot open tracking URI {uri}: folder {parent} does not exist; create it or pass another --tracking-uri")
        if not os.access(parent, os.W_OK):
            raise TrackingError(f"cannot open tracking URI {uri}: folder {parent} is not writable")
        if path.exists() and not os.access(path, os.W_OK):
            raise TrackingError(f"cannot open tracking URI {uri}: {path} is not writable")
        if must_exist and not path.is_file():
            raise TrackingError(f"no tracking store at {path}: pass the --tracking-uri a run wrote to")
        if model_name is not None:
            if (mlruns := path.resolve().parent / "mlruns").exists() and not os.access(mlruns, os.W_OK | os.X_OK):
                raise TrackingError(f"cannot record in {uri}: its artifact folder {mlruns} is not writable; make it writable")
            exp = sqlite_experiment(path, model_name)
            if exp is not None and (problem := experiment_problem(uri, model_name, *exp)) is not None:
                raise TrackingError(problem)
        return
    if uri.startswith(("http://", "https://")):
        from mlflow.tracking import MlflowClient

        exp, last = None, None
        for timeout in (10, 30, 60):  # a busy server gets longer each try; a refused connection fails at once anyway
            try:
                with _http_settings(retries=0, timeout=timeout):
                    client = MlflowClient(uri)
                    client.search_experiments(max_results=1)
                    exp = client.get_experiment_by_name(model_name) if model_name is not None else None
                last = None
                break
            except Exception as e:  # noqa: BLE001 - named in the one-line error below
                last = e
        if last is not None:
            said = (str(last).strip().splitlines() or [""])[0]
            said = said if len(said) <= 160 else "…" + said[-160:]  # the cause (e.g. "Connection refused") ends it
            raise TrackingError(f"cannot reach MLflow server at {uri} ({last.__class__.__name__}: {said}); start it "
                                "(deploy/mlflow-server.sh) or fix --tracking-uri")
        if exp is not None and (problem := experiment_problem(uri, model_name, exp.experiment_id, exp.artifact_location,
                                                              exp.lifecycle_stage)) is not None:
            raise TrackingError(problem)
        return
    raise TrackingError(f"unsupported tracking URI {uri!r}: use sqlite:///PATH.db or http://HOST:PORT")


def serving_requirements() -> list[str]:
    """What a registered model needs to load and predict: pinned to this process's versions.

    Given explicitly: MLflow's inference of them re-imports the environment (about 5 s a version here).
    """
    import mlflow
    import numpy
    import torch

    return [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}", f"numpy=={numpy.__version__}"]


def name_filter(model_name: str) -> str:
    """MLflow's filter string `name = '<model_name>'`, quoted so that any name MLflow accepts matches itself.

    MLflow's filter grammar has no escape inside a quoted value: a name with a single quote is put
    in double quotes; a name with both kinds of quote cannot be searched and is refused.
    """
    if "'" not in model_name:
        return f"name='{model_name}'"
    if '"' not in model_name:
        return f'name="{model_name}"'
    raise TrackingError(f"model name {model_name!r} holds both kinds of quote, which MLflow cannot search for; "
                        "rename the model (--model-name)")


def is_complete(tags: dict[str, str]) -> bool:
    """A version is complete once its lineage tags are set and, if unlearned, its report is attached and concluded.

    Until then it is being written (or its writer died): readers do not list it, recovery deletes it.
    """
    kind = tags.get(TAG + "kind")
    return kind is not None and (kind != "unlearned" or TAG + "report_digest" in tags)


def _quiet_mlflow() -> None:
    """Keep a Flower app's log readable: MLflow's store set-up configures the root logger (alembic), which
    would print every Flower line twice, and warns about things that are not the user's business."""
    import logging
    import warnings

    logging.getLogger("flwr").propagate = False
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*noload.*")
    warnings.filterwarnings("ignore", message=".*contains a local version label.*")
    warnings.filterwarnings("ignore", message=".*Tip: In future versions of Ray.*")


def _client(uri: str):
    import mlflow
    from mlflow.tracking import MlflowClient

    _quiet_mlflow()
    mlflow.set_tracking_uri(uri)
    return mlflow, MlflowClient(uri)


@dataclass
class VersionSpec:
    """What to record for one model version."""

    model: Any
    input_example: Any
    kind: str  # "trained" | "unlearned"
    clients: list[int]
    withdrawn_clients: list[int]
    request_ids: list[str]
    method: str
    method_config: dict
    data_digest: str
    metrics: dict[str, float]
    round_metrics: list[dict]
    params: dict[str, Any]
    classes: list[str] | None = None


class Tracker:
    """One MLflow parent run per federation; a nested run and a registered version per released model.

    Use as a context manager. Versions form a chain: each new version's parent is the
    previous one registered by this tracker (or `parent` given explicitly).
    """

    def __init__(self, uri: str, model_name: str, run_name: str, params: dict | None = None, promote: str = "on-pass") -> None:
        self.uri, self.model_name, self.run_name, self.params, self.promote = uri, model_name, run_name, params or {}, promote
        self.mlflow, self.client = _client(uri)
        self.last_version: str | None = None

    def __enter__(self) -> "Tracker":
        from unlearn_fl.artifact_store import experiment_problem

        exp = self.client.get_experiment_by_name(self.model_name)
        if self.uri.startswith("sqlite:///") and exp is None:
            # Artifacts beside the store, not in whatever folder the ServerApp process runs in.
            store = Path(self.uri[len("sqlite:///"):]).resolve()
            self.client.create_experiment(self.model_name, artifact_location=(store.parent / "mlruns").as_uri())
        elif exp is not None and exp.lifecycle_stage == "deleted":
            raise TrackingError(experiment_problem(self.uri, self.model_name, exp.experiment_id, exp.artifact_location, "deleted"))
        self.mlflow.set_experiment(self.model_name)
        # Before any training: the artifacts (models, reports) must go where this process can write them.
        exp = self.client.get_experiment_by_name(self.model_name)
        if (problem := experiment_problem(self.uri, self.model_name, exp.experiment_id, exp.artifact_location,
                                          exp.lifecycle_stage)) is not None:
            raise TrackingError(problem)
        self._run = self.mlflow.start_run(run_name=self.run_name)
        self.mlflow.set_tag(TAG + "kind", "federation")
        self.mlflow.set_tags({TAG + "system." + k: v for k, v in system_info().items()})
        if self.params:
            self.mlflow.log_params({k: str(v)[:500] for k, v in self.params.items()})
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.mlflow.end_run(status="FAILED" if exc_type else "FINISHED")

    @property
    def run_id(self) -> str:
        return self._run.info.run_id

    def register(self, spec: VersionSpec, run_name: str, artifacts_fn=None, parent: str | None = None,
                 extra_tags: dict[str, str] | None = None) -> str:
        """Log `spec` in a nested run and register it; tags record its lineage."""
        parent = parent if parent is not None else self.last_version
        mlflow, client = self.mlflow, self.client
        with mlflow.start_run(run_name=run_name, nested=True) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in spec.params.items()})
            for row in spec.round_metrics:
                # Per-round series are prefixed, so they never mix with the version's final figures.
                mlflow.log_metrics({f"round_{k}": float(v) for k, v in row.items() if k != "step" and v is not None and v == v},
                                   step=int(row["step"]))
            mlflow.log_metrics({k: float(v) for k, v in spec.metrics.items() if v is not None})
            info = mlflow.pytorch.log_model(spec.model, name="model", registered_model_name=self.model_name,
                                            input_example=spec.input_example, pip_requirements=serving_requirements())
            version = str(info.registered_model_version)
            if artifacts_fn is not None:
                with tempfile.TemporaryDirectory() as d:
                    for name, text in artifacts_fn(version, parent, run.info.run_id).items():
                        p = Path(d) / name
                        p.write_text(text)
                        mlflow.log_artifact(str(p), artifact_path="report")
        tags = {
            "kind": spec.kind,
            "parent_version": parent or "",
            "clients": ",".join(map(str, spec.clients)),
            "withdrawn_clients": ",".join(map(str, spec.withdrawn_clients)),
            "request_ids": ",".join(spec.request_ids),
            "method": spec.method,
            "method_config_digest": _digest(spec.method_config),
            "data_digest": spec.data_digest,
            "run_id": run.info.run_id,
            "federation_run_id": self.run_id,
            "contains_withdrawn": self._inherited_containment(parent) if spec.kind == "trained" else "false",
            "classes": json.dumps(spec.classes) if spec.classes else "",
            **(extra_tags or {}),
        }
        client.update_model_version(self.model_name, version, description=self._describe(spec, parent))
        for k, v in sorted(tags.items(), key=lambda kv: kv[0] == "kind"):  # `kind` last: it completes the version
            client.set_model_version_tag(self.model_name, version, TAG + k, v)
        if spec.kind == "trained" and parent is None:
            client.set_registered_model_alias(self.model_name, "production", version)
        elif spec.kind == "trained" and self._alias_version("production") == parent:
            client.set_registered_model_alias(self.model_name, "production", version)
        self.last_version = version
        return version

    def _describe(self, spec: VersionSpec, parent: str | None) -> str:
        """The one sentence a reviewer reads in the MLflow UI (completed by `conclude_withdrawal` for unlearned ones)."""
        if spec.kind == "unlearned":
            return f"Unlearned from v{parent} with {spec.method}; its forgetting report is being attached."
        gone = (f"; withdrawn earlier: clients {','.join(map(str, spec.withdrawn_clients))} "
                f"(requests {', '.join(spec.request_ids)})" if spec.request_ids else "")
        base = f" from v{parent}" if parent else ""
        return f"Trained{base} by federation run {self.run_id[:8]} on clients {','.join(map(str, spec.clients))}{gone}."

    def recover(self) -> list[str]:
        """Delete versions an interrupted run left half-written; returns them (oldest first).

        A version is complete once its lineage tags are set (`kind`) and, for an unlearned one, once
        its report is attached and concluded (`report_digest`). Anything else was registered by a server
        that stopped in between; it is never served (aliases move only after that point), and is deleted
        with its model artefacts. One federation writes one registered model at a time.
        """
        from unlearn_fl.erasure import delete_artefacts, model_artefacts

        try:
            self.client.get_registered_model(self.model_name)
        except Exception:  # no such model yet: nothing to recover
            return []
        removed = []
        for mv in sorted(self.client.search_model_versions(name_filter(self.model_name)), key=lambda m: int(m.version)):
            if not is_complete(mv.tags or {}):
                delete_artefacts(model_artefacts(self.client, mv))
                self.client.delete_model_version(self.model_name, str(mv.version))
                removed.append(str(mv.version))
        return removed

    def versions_on_other_data(self, data_digest: str) -> list[str]:
        """Versions of this model whose `data_digest` tag is set and differs from `data_digest` (sorted)."""
        try:
            self.client.get_registered_model(self.model_name)
        except Exception:  # no such model yet
            return []
        out = [int(mv.version) for mv in self.client.search_model_versions(name_filter(self.model_name))
               if (mv.tags or {}).get(TAG + "data_digest") not in (None, "", data_digest)]
        return [str(v) for v in sorted(out)]

    def anchor(self, version: str, seq: int, entry_hash: str, key: str = "ledger_entry") -> None:
        """Tag `version` with a ledger entry about it: `ledger_entry` (the one that recorded it) or
        `ledger_erasure_entry` (the erasure that followed it), each "SEQ:HASH"."""
        self.client.set_model_version_tag(self.model_name, version, TAG + key, f"{seq}:{entry_hash}")

    def erase_superseded(self, clients: list[int], keep: set[str], policy: str, request_id: str) -> list[dict]:
        """Apply the erasure policy to every earlier version holding data of `clients` (see `unlearn_fl.erasure`).

        Versions in `keep` and versions an alias points at are left as they are (reported with `kept`).
        """
        from unlearn_fl.erasure import erase_version, holders

        rm = self.client.get_registered_model(self.model_name)
        aliased = {str(v): a for a, v in (rm.aliases or {}).items()}
        out = []
        for mv in holders(self.client, self.model_name, set(clients), keep):
            if str(mv.version) in aliased:
                out.append({"version": str(mv.version), "policy": "keep",
                            "kept": f"alias {aliased[str(mv.version)]!r} points at it; move the alias, then erase"})
                continue
            out.append(erase_version(self.client, self.uri, self.model_name, mv, policy, request_id))
        return out

    def _inherited_containment(self, parent: str | None) -> str:
        """A version trained on from `parent` holds whatever `parent` holds: its "true"/"unverified" carries over."""
        if not parent:
            return "false"
        tags = self.client.get_model_version(self.model_name, parent).tags or {}
        return tags.get(TAG + "contains_withdrawn", "false")

    def serving_withdrawn(self) -> str | None:
        """The `production` version when it is tagged `contains_withdrawn=true`, else None."""
        return _serving_withdrawn(self.client, self.model_name)

    def _alias_version(self, alias: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(self.model_name, alias).version)
        except Exception:
            return None

    def conclude_withdrawal(self, parent: str, version: str, verdict: str, report_digest: str,
                            withdrawn_now: list[int] | None = None, contains_withdrawn: str = "unverified",
                            extra_tags: dict[str, str] | None = None, request_id: str = "", method: str = "",
                            exact: bool = False) -> str:
        """Tags after an unlearned version is registered; returns the alias it is to get (`release` moves it).

        The new version's `contains_withdrawn` is what the caller established (`containment`);
        every earlier version that holds data of a client in this withdrawal (the parent, and any
        ancestor or sibling still listing that client) is marked `contains_withdrawn=true`;
        The version is to become `production` when the verdict passes or it was retrained from scratch
        (`exact`, unless its audit failed) under policy `on-pass`, always, or never; else `candidate`.
        That decision is the `release` tag, set before the version is complete; the alias moves only in
        `release`, after the ledger has recorded the version (engine/withdrawal.py).
        """
        c = self.client
        # A retrain from scratch without the data is exact: it is promoted unless its audit failed outright.
        alias = "production" if (self.promote == "always" or (self.promote == "on-pass" and (
            verdict == "passed" or (exact and verdict != "failed")))) else "candidate"
        c.set_model_version_tag(self.model_name, version, TAG + "release", alias)
        for k, v in {"contains_withdrawn": contains_withdrawn, **(extra_tags or {})}.items():
            c.set_model_version_tag(self.model_name, version, TAG + k, v)
        c.set_model_version_tag(self.model_name, version, TAG + "verdict", verdict)
        c.set_model_version_tag(self.model_name, parent, TAG + "contains_withdrawn", "true")
        c.set_model_version_tag(self.model_name, parent, TAG + "superseded_by", version)
        gone = {str(x) for x in (withdrawn_now or [])}
        by = (extra_tags or {}).get("certified_by", "none")
        sites = ",".join(sorted(gone, key=int))
        c.update_model_version(self.model_name, version, description=(
            f"Unlearned client(s) {sites} (request {request_id}) from v{parent} with {method}; verdict {verdict}"
            + (f"; certified by {by}" if verdict == "passed" else "") + f"; contains withdrawn data: {contains_withdrawn}"
            + "; forgetting report attached."))
        c.set_model_version_tag(self.model_name, version, TAG + "report_digest", report_digest)  # completes it (is_complete)
        for mv in c.search_model_versions(name_filter(self.model_name)):
            v = str(mv.version)
            clients = set(((mv.tags or {}).get(TAG + "clients") or "").split(","))
            if v != version and (v == parent or clients & gone):
                c.set_model_version_tag(self.model_name, v, TAG + "contains_withdrawn", "true")
                note = f"contains data later withdrawn by request {request_id}"
                if note not in (mv.description or ""):
                    c.update_model_version(self.model_name, v, description=f"{(mv.description or '').rstrip('.')}; {note}.")
        return alias

    def release(self, version: str, only_from_parent: bool = False) -> str | None:
        """Move the alias the version's `release` tag names to it; returns that alias.

        only_from_parent: move `production` only if it still points at the version's parent (recovery:
        the server stopped between recording the version and moving the alias; never move it backwards).
        """
        try:
            mv = self.client.get_model_version(self.model_name, str(version))
        except Exception:  # deleted since (erasure policy `delete`)
            return None
        tags = mv.tags or {}
        alias = tags.get(TAG + "release")
        if alias is None:
            return None
        if only_from_parent and (alias != "production" or self._alias_version("production") != tags.get(TAG + "parent_version")):
            return None
        self.client.set_registered_model_alias(self.model_name, alias, str(version))
        return alias

    def unrecorded_version(self, request_id: str) -> dict | None:
        """The complete unlearned version of `request_id` that the ledger never recorded (the server stopped
        after completing it), as the ledger's `done` body; None when there is none."""
        for mv in self.client.search_model_versions(name_filter(self.model_name)):
            t = mv.tags or {}
            if t.get(TAG + "request_id") == request_id and is_complete(t) and TAG + "ledger_entry" not in t:
                return {"version": str(mv.version), "parent_version": t.get(TAG + "parent_version"),
                        "verdict": t.get(TAG + "verdict"), "contains_withdrawn": t.get(TAG + "contains_withdrawn"),
                        "report_digest": t.get(TAG + "report_digest"), "n_forget": int(t.get(TAG + "n_forget", "0") or 0),
                        "forget_digest": t.get(TAG + "forget_digest"),
                        "adopted": "the version was complete when the server stopped; it is recorded, not made again"}
        return None


def _serving_withdrawn(client, model_name: str) -> str | None:
    try:
        mv = client.get_model_version_by_alias(model_name, "production")
    except Exception:
        return None
    return str(mv.version) if (mv.tags or {}).get(TAG + "contains_withdrawn") == "true" else None


def serving_warning(model_name: str, served: str, unchanged: str | None) -> str:
    """The warning when `production` (version `served`) still holds withdrawn data, with advice that
    fits the last unlearned version: never promote one whose weights did not change."""
    advice = ("the unlearning did not change the weights, so do not promote it: withdraw again with --method retrain"
              if unchanged else
              "if its report convinces you, promote it (MLflow alias 'production', or --promote always), "
              "otherwise withdraw with --method retrain")
    return (f"production still serves {model_name} v{served}, which contains withdrawn data: no unlearned version "
            f"passed its audit; {advice}.")


def containment(method_retrains: bool, unchanged: str | None, verdict: str) -> str:
    """`contains_withdrawn` of an unlearned version, from what was done and verified.

    "true": its weights are its parent's (no surviving unlearning step); "false": it was retrained
    from scratch without the data, or its forgetting verdict passed; "unverified": anything else.
    """
    if unchanged is not None:
        return "true"
    if method_retrains or verdict == "passed":
        return "false"
    return "unverified"


def parent_uri(uri: str, model_uri: str) -> str | None:
    """`models:/NAME/PARENT` for a `models:/NAME/VERSION` (or `@alias`) URI whose version has a parent tag, else None."""
    if not model_uri.startswith("models:/"):
        return None
    name, _, ref = model_uri[len("models:/"):].partition("/")
    alias = ""
    if not ref:
        name, _, alias = name.partition("@")
        if not alias:
            return None
    _, client = _client(uri)
    try:
        mv = client.get_model_version_by_alias(name, alias) if not ref else client.get_model_version(name, ref)
    except Exception:
        return None
    parent = (mv.tags or {}).get(TAG + "parent_version", "")
    return f"models:/{name}/{parent}" if parent else None


def version_tags(uri: str, model_name: str, version: str) -> dict[str, str]:
    """The `unlearn_fl.` tags of one version, without the prefix."""
    _, client = _client(uri)
    tags = client.get_model_version(model_name, str(version)).tags or {}
    return {k[len(TAG):]: v for k, v in tags.items() if k.startswith(TAG)}


def fetch_report(uri: str, model_name: str, version: str, dest: str | Path) -> tuple[Path, Path | None]:
    """Download the forgetting report attached to a version: (json path, html path or None)."""
    from mlflow.exceptions import MlflowException

    _, client = _client(uri)
    try:
        mv = client.get_model_version(model_name, str(version))
    except MlflowException as e:  # the store's own error code, from a local store and a server alike
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        names = sorted(m.name for m in client.search_registered_models())
        if model_name not in names:
            raise TrackingError(f"no model named {model_name!r} in {uri} (it holds {', '.join(map(repr, names)) or 'none'}): "
                                "pass --model-name") from None
        raise TrackingError(f"{model_name!r} has no version {version} in {uri}: `unlearn-fl lineage --tracking-uri {uri} "
                            f"--model-name {model_name}` lists its versions") from None
    if not is_complete(mv.tags or {}):
        raise TrackingError(f"version {version} of {model_name!r} is still being written (or its writer stopped); "
                            "try again when its federation has recorded it")
    names = [a.path for a in client.list_artifacts(mv.run_id, "report")]
    if "report/forgetting_report.json" not in names:
        kind = (mv.tags or {}).get(TAG + "kind", "?")
        raise TrackingError(f"version {version} of {model_name!r} ({kind}) has no forgetting report; reports are attached to "
                            f"unlearned and feature-unlearned versions: `unlearn-fl lineage --model-name {model_name}` shows which")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    j = Path(client.download_artifacts(mv.run_id, "report/forgetting_report.json", str(dest)))
    h = Path(client.download_artifacts(mv.run_id, "report/forgetting_report.html", str(dest))) if "report/forgetting_report.html" in names else None
    return j, h


class _Inference:
    """A loaded (exported, pt2) model: callable, and train()/eval() are no-ops it does not support."""

    training = False

    def __init__(self, module) -> None:
        self.module = module

    def __call__(self, x):
        return self.module(x)

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self


def load_registered(uri: str, model_uri: str):
    """(torch model, class names or None) of a registered version given as models:/NAME/VERSION or models:/NAME@ALIAS."""
    mlflow, client = _client(uri)
    if not model_uri.startswith("models:/"):
        raise TrackingError(f"model URI {model_uri!r} must look like models:/NAME/VERSION or models:/NAME@ALIAS")
    ref = model_uri[len("models:/"):]
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, version = ref.rsplit("/", 1)
            mv = client.get_model_version(name, version)
    except Exception as e:
        raise TrackingError(f"no registered version {model_uri} in {uri}: {e.__class__.__name__}") from None
    model = _Inference(mlflow.pytorch.load_model(f"models:/{mv.name}/{mv.version}"))
    classes = (mv.tags or {}).get(TAG + "classes") or ""
    return model, (json.loads(classes) if classes else None)


def lineage(uri: str, model_name: str) -> list[dict]:
    """Every version of `model_name` with its lineage tags and aliases, oldest first."""
    _, client = _client(uri)
    names = sorted(m.name for m in client.search_registered_models())
    if model_name not in names:
        raise TrackingError(f"no registered model {model_name!r} in {uri}; it holds: {', '.join(names) or 'none'} "
                            "(pass --model-name)")
    versions = client.search_model_versions(name_filter(model_name))
    rm = client.get_registered_model(model_name)
    aliases: dict[str, list[str]] = {}
    for alias, v in (rm.aliases or {}).items():
        aliases.setdefault(str(v), []).append(alias)
    rows = []
    for mv in sorted(versions, key=lambda m: int(m.version)):
        if not is_complete(mv.tags or {}):
            continue  # being written: a reader never sees half a version
        tags = {k[len(TAG):]: v for k, v in (mv.tags or {}).items() if k.startswith(TAG) and k != TAG + "classes"}
        metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        figures = {k: round(float(metrics[k]), 4) for k in ("test_acc", "forget_acc", "mia_auc", "speedup") if k in metrics}
        rows.append({"version": str(mv.version), "run_id": mv.run_id, "aliases": aliases.get(str(mv.version), []),
                     "figures": figures, **tags})
    return rows
