"""Erasure policies and crash recovery on a real MLflow store (sqlite): the Tracker and unlearn_fl.erasure."""

from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from unlearn_fl.erasure import logged_model_id, model_artefacts
from unlearn_fl.tracking import TAG, Tracker, VersionSpec


def _spec(kind: str, clients: list[int], withdrawn: list[int] = ()) -> VersionSpec:
    return VersionSpec(model=torch.nn.Linear(3, 2), input_example=np.zeros((1, 3), np.float32), kind=kind,
                       clients=clients, withdrawn_clients=list(withdrawn), request_ids=["wr-1"] if withdrawn else [],
                       method="fedavg" if kind == "trained" else "marginal", method_config={}, data_digest="d" * 64,
                       metrics={"test_acc": 0.9}, round_metrics=[], params={})


def _chain(uri: str, promote: str = "on-pass"):
    """v1 trained on 0,1,2; v2 unlearned without 0 (passed, promoted)."""
    with Tracker(uri, "m", run_name="fed", promote=promote) as t:
        v1 = t.register(_spec("trained", [0, 1, 2]), run_name="train")
        v2 = t.register(_spec("unlearned", [1, 2], [0]), run_name="unlearn",
                        artifacts_fn=lambda v, p, r: {"forgetting_report.json": "{}"})
        alias = t.conclude_withdrawal(v1, v2, "passed", "digest", withdrawn_now=[0], contains_withdrawn="false",
                                      request_id="wr-1", method="marginal", extra_tags={"certified_by": "audit"})
        assert alias == ("production" if promote == "on-pass" else "candidate")
        assert t._alias_version("production") == v1  # the alias moves only in release(), after the ledger recorded v2
        t.release(v2)
    return t, v1, v2


def _readable(client, mv) -> bool:
    """True when the version's weights can be downloaded from the artifact store."""
    import mlflow

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_artefacts(client, mv)[0]))
    except Exception:
        return False
    return any(p.name.startswith("model.") for p in local.rglob("*"))


def test_descriptions_say_what_each_version_is(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    _chain(uri)
    c = MlflowClient(uri)
    d1, d2 = c.get_model_version("m", "1").description, c.get_model_version("m", "2").description
    assert d1.startswith("Trained by federation run") and "contains data later withdrawn by request wr-1" in d1
    assert d2.startswith("Unlearned client(s) 0 (request wr-1) from v1 with marginal; verdict passed; certified by audit")


def test_quarantine_erases_the_weights_and_keeps_the_lineage(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    t, v1, v2 = _chain(uri)
    c = MlflowClient(uri)
    mv1 = c.get_model_version("m", v1)
    assert _readable(c, mv1)
    erased = t.erase_superseded([0], {v2}, "quarantine", "wr-1")
    assert [e["version"] for e in erased] == [v1] and erased[0]["artefacts"]
    mv1 = c.get_model_version("m", v1)  # the version's metadata stays ...
    assert mv1.tags[TAG + "erasure"] == "quarantine" and mv1.tags[TAG + "erased"]
    assert "erased on" in mv1.description and "no longer exist" in mv1.description
    assert not _readable(c, mv1)  # ... its weights do not
    import mlflow

    with pytest.raises(Exception):
        mlflow.pytorch.load_model(f"models:/m/{v1}")
    mlflow.pytorch.load_model(f"models:/m/{v2}")  # the clean version is untouched
    assert t.erase_superseded([0], {v2}, "quarantine", "wr-1") == []  # erased once


def test_delete_removes_the_version_and_its_logged_model(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    t, v1, v2 = _chain(uri)
    c = MlflowClient(uri)
    model_id = logged_model_id(c.get_model_version("m", v1))
    store = c.get_logged_model(model_id).artifact_location
    erased = t.erase_superseded([0], {v2}, "delete", "wr-1")
    assert erased[0]["gc"] == "done" and erased[0]["tombstone"]["clients"] == "0,1,2"
    assert [str(m.version) for m in c.search_model_versions("name='m'")] == [v2]
    with pytest.raises(Exception):
        c.get_logged_model(model_id)  # gone from the store for good (mlflow gc), not only marked deleted
    assert not any(p.is_file() for p in Path(store.removeprefix("file://")).rglob("*"))


def test_a_served_version_is_never_erased(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    t, v1, v2 = _chain(uri, promote="never")  # production stays on v1
    erased = t.erase_superseded([0], {v2}, "delete", "wr-1")
    assert erased == [{"version": v1, "policy": "keep",
                       "kept": "alias 'production' points at it; move the alias, then erase"}]
    assert MlflowClient(uri).get_model_version("m", v1)


def test_recover_removes_a_version_left_without_its_report(tmp_path):
    """What a server killed between registering an unlearned version and attaching its report leaves behind."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with Tracker(uri, "m", run_name="fed") as t:
        v1 = t.register(_spec("trained", [0, 1]), run_name="train")
        t.register(_spec("unlearned", [1], [0]), run_name="unlearn")  # registered, never concluded
    with Tracker(uri, "m", run_name="restart") as t2:
        assert t2.recover() == ["2"]
        assert t2.recover() == []
    c = MlflowClient(uri)
    assert [str(m.version) for m in c.search_model_versions("name='m'")] == [v1]
    assert str(c.get_model_version_by_alias("m", "production").version) == v1


def test_a_version_completed_just_before_a_crash_is_adopted_and_released_once(tmp_path):
    """The server died after v2 was complete but before the ledger recorded it and the alias moved."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with Tracker(uri, "m", run_name="fed") as t:
        v1 = t.register(_spec("trained", [0, 1, 2]), run_name="train")
        v2 = t.register(_spec("unlearned", [1, 2], [0]), run_name="unlearn", extra_tags={"request_id": "wr-1", "n_forget": "9"},
                        artifacts_fn=lambda v, p, r: {"forgetting_report.json": "{}"})
        assert t.conclude_withdrawal(v1, v2, "passed", "digest", withdrawn_now=[0], contains_withdrawn="false",
                                     request_id="wr-1", method="marginal") == "production"
    with Tracker(uri, "m", run_name="restart") as t2:
        assert t2.recover() == []  # v2 is complete: not removed
        body = t2.unrecorded_version("wr-1")
        assert body["version"] == v2 and body["verdict"] == "passed" and body["n_forget"] == 9 and "adopted" in body
        assert t2.unrecorded_version("wr-other") is None
        assert t2.release(v2, only_from_parent=True) == "production"  # production was still on v2's parent
        t2.anchor(v2, 3, "h" * 64)
        assert t2.unrecorded_version("wr-1") is None  # recorded now
        v3 = t2.register(_spec("trained", [1, 2]), run_name="train-on")  # production moves on to v3
        assert t2._alias_version("production") == v3
        assert t2.release(v2, only_from_parent=True) is None  # never moved backwards
        assert t2._alias_version("production") == v3


def test_a_run_on_other_data_under_the_same_model_name_is_warned(tmp_path):
    """A federation's withdrawals mark every version of its model name that lists the withdrawn client id; a run
    on different data under a name that already holds versions is told so before it writes anything."""
    import json
    from types import SimpleNamespace

    from unlearn_fl.config import UnlearningSettings
    from unlearn_fl.engine.recorder import MlflowRecorder

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    _chain(uri)  # v1, v2 on data digest d…d
    sites = {k: {"data_digest": f"site-{k}", "n_train": 5, "n_holdout": 1} for k in (0, 1)}
    fed = SimpleNamespace(sites=sites, input_shape=(3,), n_classes=2, scaler=None, bytes_sent=0)
    for digest, expect in (("d" * 64, []), ("e" * 64, ["1", "2"])):
        cfg = UnlearningSettings(model_name="m", out=str(tmp_path / digest[0]), num_clients=2)
        with Tracker(uri, "m", run_name="other") as t:
            assert t.versions_on_other_data(digest) == expect
            rec = MlflowRecorder(cfg, t, dataset={"dataset": "a table", "digest": digest})
            rec.start(fed)
            rec.finish(fed)
        summary = json.loads((tmp_path / digest[0] / "run-summary.json").read_text())
        assert summary["warnings"] == rec.warnings and len(rec.warnings) == len(expect[:1])
    assert "'m' already holds version(s) v1, v2 trained on different data" in rec.warnings[0]
    assert "give each federation its own --model-name" in rec.warnings[0]
