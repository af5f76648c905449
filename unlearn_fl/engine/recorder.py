"""Records every released model in MLflow and writes each forgetting report (the federation's Recorder).

For any model: the registered artefact is the user's module (wrapped with the federated
input scaler when the run fitted one), with an input example of the sites' input shape.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch import nn

from unlearn_fl.config import UnlearningSettings
from unlearn_fl.engine.federation import Federation
from unlearn_fl.engine.withdrawal import WithdrawalOutcome
from unlearn_fl.engine.protocol import Withdrawals
from unlearn_fl.methods import get_method
from unlearn_fl.models import Standardized
from unlearn_fl.report.build import data_report
from unlearn_fl.report.html import render_html
from unlearn_fl.report.schema import ForgettingReport, RoundLog
from unlearn_fl.requests import WithdrawalRequest
from unlearn_fl.tracking import Tracker, VersionSpec, containment, serving_warning


def _say(line: str) -> None:
    """One line in the Flower log (what `flwr run --stream` shows): the outcome of each withdrawal."""
    from flwr.common.logger import log

    log(logging.WARNING, line)


def _f(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


class MlflowRecorder:
    """Registers versions through a `Tracker` and writes each forgetting report to `cfg.out`.

    dataset: what the report says of the data (None: the sites' own descriptions, counts
    and digests only). servable: model -> the module to register (None: the model, behind
    the federated scaler when there is one). input_example: rows of the registered model's
    input (None: zeros of the sites' input shape; no data). class_names: label names, if known.
    """

    def __init__(self, cfg: UnlearningSettings, tracker: Tracker, strategy_name: str | None = None,
                 dataset: dict | None = None, servable: Callable[[nn.Module], nn.Module] | None = None,
                 input_example: np.ndarray | None = None, class_names: list[str] | None = None,
                 params: dict | None = None) -> None:
        self.cfg, self.tracker = cfg, tracker
        self.strategy_name = strategy_name or cfg.strategy
        self.info, self._servable, self.example, self.class_names = dataset, servable, input_example, class_names
        method = get_method(cfg.method)
        self.method_config = method.make_config(**{"epochs": cfg.local_epochs, **cfg.method_config}).model_dump()
        self.reports: list[ForgettingReport] = []
        self.aborts: list[tuple[str, str]] = []
        self.versions: dict[str, str] = {}
        self.warnings: list[str] = []
        """What the operator should know about this run's registry (`run-summary.json`, printed by the CLI)."""
        self.bytes_sent = 0
        self._params = {"rounds": cfg.rounds, "local_epochs": cfg.local_epochs, "lr": cfg.lr, "clients": cfg.num_clients,
                        "seed": cfg.seed, **(params or {})}

    def start(self, fed: Federation) -> None:
        shape = fed.input_shape
        if self.info is None:
            digests = "".join(fed.sites[c]["data_digest"] for c in sorted(fed.sites))
            self.info = {"dataset": "per-site data (held by the sites)", "sites": len(fed.sites),
                         "n_rows": int(sum(s["n_train"] + s["n_holdout"] for s in fed.sites.values())),
                         "input_shape": list(shape), "n_classes": fed.n_classes,
                         "digest": hashlib.sha256(digests.encode()).hexdigest()}
        other = self.tracker.versions_on_other_data(self.info["digest"])
        if other:
            name = self.cfg.model_name
            self.warnings.append(
                f"model {name!r} already holds version(s) {', '.join('v' + v for v in other)} trained on different data "
                "(another federation or dataset, or rows erased since): a withdrawal here marks every version of "
                f"{name!r} that lists the withdrawn client id as holding withdrawn data, and this run's first trained "
                "version takes `production`; give each federation its own --model-name")
        if self.example is None:
            self.example = np.zeros((2, *shape), dtype=np.float32)
        if self._servable is None and fed.scaler is not None:
            mean = np.asarray(fed.scaler[0], dtype=np.float32).reshape(shape)
            scale = np.asarray(fed.scaler[1], dtype=np.float32).reshape(shape)
            self._servable = lambda m: Standardized(mean, scale, m)
            self.info["preprocessing"] = "standardized with a federated scaler (sites' count, Σx, Σx²)"

    def finish(self, fed: Federation) -> None:
        self.bytes_sent = fed.bytes_sent
        out = Path(self.cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        # Read here, where the registry is open, so that the CLI need not open it again after the run.
        served = self.tracker.serving_withdrawn() if self.reports else None
        serving = None if served is None else serving_warning(self.cfg.model_name, served, self.reports[-1].audit.unchanged)
        summary = {"model_name": self.cfg.model_name, "versions": self.versions,
                   "reports": [r.request.request_id for r in self.reports],
                   "aborts": [{"request_id": rid, "reason": why} for rid, why in self.aborts],
                   "bytes_sent": fed.bytes_sent, "warnings": self.warnings, "serving_withdrawn": serving}
        tmp = out / ".run-summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2))
        tmp.replace(out / "run-summary.json")

    def servable(self, model: nn.Module) -> nn.Module:
        return self._servable(model) if self._servable is not None else model

    @staticmethod
    def _rows(logs: list[RoundLog], phase: str) -> list[dict]:
        return [{"step": x.round, "test_acc": x.test_acc, "test_loss": x.test_loss, "n_clients": x.n_clients,
                 "forget_acc": x.forget_acc, "forget_loss": x.forget_loss} for x in logs if x.phase == phase]

    def trained(self, model: nn.Module, clients: list[int], withdrawals: Withdrawals, rounds: list[RoundLog]) -> str:
        spec = VersionSpec(model=self.servable(model), input_example=self.example, kind="trained", classes=self.class_names,
                           clients=clients, withdrawn_clients=sorted(withdrawals),
                           request_ids=sorted({w.request_id for v in withdrawals.values() for w in v}),
                           method=self.strategy_name, method_config={}, data_digest=self.info["digest"],
                           metrics={"test_acc": rounds[-1].test_acc if rounds else None}, round_metrics=self._rows(rounds, "train"),
                           params=self._params)
        version = self.tracker.register(spec, run_name=f"train-r{rounds[-1].round if rounds else 0}")
        self.versions[version] = "trained"
        return version

    def unlearned(self, o: WithdrawalOutcome) -> str:
        cfg = self.cfg
        report = data_report(
            request_id=o.request.request_id, client_ids=list(o.request.client_ids), n_forget=o.n_forget,
            forget_fraction=None if o.request.records else o.request.fraction, reason=o.request.reason, method=cfg.method,
            method_config=self.method_config, dataset=self.info, model_name=cfg.model_name, test_acc=o.test_acc,
            retain_acc=o.retain_acc, forget_acc=o.forget_acc, audits=o.audits, audit_settings=cfg.audit,
            unlearn_seconds=o.unlearn_seconds, retrain_seconds=o.retrain_seconds, train_seconds=None,
            unlearn_rounds=o.unlearn_rounds, retrain_rounds=o.trained_rounds if cfg.reference else None,
            rounds=o.rounds, seed=cfg.seed, accounting=o.accounting, unchanged=o.unchanged, exposure=o.exposure,
        )
        report.request.scope = o.request.scope
        report.request.records_digest = o.request.records.digest if o.request.records else None
        report.audit.reasons.extend(f"note: {n}" for n in o.notes)
        report.cost.monitor_seconds = o.monitor_seconds
        if o.unchanged:  # nothing was unlearned: there is no speed-up to claim
            report.cost.speedup = None
        report.cost.unlearn_bytes, report.cost.retrain_bytes = o.unlearn_bytes, o.retrain_bytes
        spec = VersionSpec(model=self.servable(o.after), input_example=self.example, kind="unlearned", classes=self.class_names,
                           clients=o.clients_after, withdrawn_clients=o.withdrawn_clients, request_ids=o.request_ids,
                           method=cfg.method, method_config=self.method_config, data_digest=self.info["digest"],
                           metrics={"test_acc": o.test_acc["after"], "forget_acc": o.forget_acc["after"],
                                    "mia_auc": report.audit.mia_auc_after, "unlearn_seconds": o.unlearn_seconds,
                                    "speedup": report.cost.speedup},
                           round_metrics=self._rows(o.rounds, "unlearn"), params=self._params)

        def attach(version: str, parent: str | None, run_id: str) -> dict[str, str]:
            report.model.version, report.model.parent_version, report.model.run_id = version, parent, run_id
            return {"forgetting_report.json": report.to_json(), "forgetting_report.html": render_html(report)}

        parent = self.tracker.last_version
        tags = {"forget_digest": o.forget_digest, "n_forget": str(o.n_forget), "scope": o.request.scope,
                "request_id": o.request.request_id}
        if o.request.records is not None:
            tags["records_digest"] = o.request.records.digest
        version = self.tracker.register(spec, run_name=f"unlearn-{o.request.request_id}", artifacts_fn=attach, extra_tags=tags)
        a = report.audit
        o.version, o.parent_version, o.verdict, o.report_digest = version, parent, a.verdict, report.digest()
        o.contains_withdrawn = containment(get_method(cfg.method).retrains, o.unchanged, a.verdict)
        o.release = self.tracker.conclude_withdrawal(
            parent, version, a.verdict, o.report_digest, withdrawn_now=list(o.request.client_ids),
            contains_withdrawn=o.contains_withdrawn, request_id=o.request.request_id, method=cfg.method,
            exact=get_method(cfg.method).retrains and not o.unchanged,
            extra_tags={"certified_by": a.decided_by, "exposure_increased": ",".join(map(str, a.exposure_increased))})
        self._write(report)
        self.reports.append(report)
        self.versions[version] = "unlearned"
        a, k = report.audit, report.cost
        _say(f"unlearn-fl: withdrawal {o.request.request_id} ({o.request.scope}, sites {list(o.request.client_ids)}, "
             f"{o.n_forget} rows) -> {cfg.model_name} v{version} (parent v{parent}); verdict {a.verdict}; "
             f"MIA AUC before/after/retrained {_f(a.mia_auc_before)}/{_f(a.mia_auc_after)}/{_f(a.mia_auc_retrain)}; "
             f"{k.unlearn_rounds} unlearning rounds in {k.unlearn_seconds:.1f}s vs retraining {_f(k.retrain_seconds, 1)}s; "
             f"report {Path(cfg.out) / o.request.request_id / 'forgetting_report.json'}")
        served = self.tracker.serving_withdrawn() if o.release != "production" else None
        if served is not None:
            _say(f"unlearn-fl: WARNING v{version} was not promoted (verdict {a.verdict}): "
                 + serving_warning(cfg.model_name, served, o.unchanged))
        return version

    def recover(self) -> list[str]:
        removed = self.tracker.recover()
        if removed:
            _say(f"unlearn-fl: removed version(s) {', '.join(removed)} of {self.cfg.model_name} that an interrupted run "
                 "left without their report")
        return removed

    def anchor(self, version: str, seq: int, entry_hash: str, key: str = "ledger_entry") -> None:
        self.tracker.anchor(version, seq, entry_hash, key)

    def release(self, version: str, only_from_parent: bool = False) -> str | None:
        return self.tracker.release(version, only_from_parent)

    def adopt(self, request_id: str) -> dict | None:
        return self.tracker.unrecorded_version(request_id)

    def erase_superseded(self, outcome: WithdrawalOutcome, policy: str) -> list[dict]:
        erased = self.tracker.erase_superseded(list(outcome.request.client_ids), {outcome.version or ""}, policy,
                                               outcome.request.request_id)
        for e in erased:
            _say(f"unlearn-fl: v{e['version']} " + (f"kept: {e['kept']}" if "kept" in e else
                                                    f"{'deleted' if policy == 'delete' else 'quarantined'}: its model artefacts are erased"))
        return erased

    def aborted(self, request: WithdrawalRequest, reason: str) -> None:
        d = Path(self.cfg.out) / request.request_id
        d.mkdir(parents=True, exist_ok=True)
        (d / "aborted.json").write_text(json.dumps({"request_id": request.request_id, "error": reason}, indent=2))
        self.aborts.append((request.request_id, reason))
        _say(f"unlearn-fl: withdrawal {request.request_id} NOT applied: {reason}")

    def _write(self, report: ForgettingReport) -> None:
        out = Path(self.cfg.out)
        for d in (out, out / report.request.request_id):
            d.mkdir(parents=True, exist_ok=True)
            (d / "forgetting_report.json").write_text(report.to_json())
            (d / "forgetting_report.html").write_text(render_html(report))
