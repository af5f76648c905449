"""`unlearn-fl`: simulate | feature | lineage | report.

Bad input exits with code 2 and one line on stderr naming the problem; nothing is
written to the registry before every input has been validated.
"""

from __future__ import annotations

import argparse
import json
import re
import logging
import os
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input: shown as one line, exit code 2."""


def _fail(msg: str) -> int:
    print(f"unlearn-fl: error: {msg}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _bad_model_name(name: str) -> str | None:
    """The one-line error for a --model-name MLflow cannot register, search or load, else None (config.check_model_name)."""
    from unlearn_fl.config import check_model_name

    try:
        check_model_name(name)
    except ValueError as e:
        return f"--model-name: {e}"
    return None


_FLAGS = {"confidence": "--audit-confidence", "references": "--audit-references", "reference_mode": "--audit-reference-mode",
          "epsilon_target": "--epsilon-target", "noise_multiplier": "--dp-noise", "max_grad_norm": "--dp-clip",
          "central_noise_multiplier": "--central-dp-noise", "central_clipping_norm": "--central-dp-clip",
          "fraction": "--forget-fraction", "reason": "--reason", "at_round": "--withdraw ...@ROUND",
          "canaries": "--canaries", "canary_clients": "--canary-clients", "alpha": "--alpha",
          "holdout_fraction": "--holdout-fraction"}


_SIMULATE_FIELDS = {"rounds", "local_epochs", "lr", "hidden", "model", "classes", "unlearn_rounds", "seed", "promote",
                    "strategy", "proximal_mu", "checkpoint_every", "model_name"}


def _pydantic_message(e, flags: bool = False) -> str:
    """One line from a pydantic error; `flags`: name the command-line flag of the field."""
    errs = e.errors()
    first = errs[0]
    parts = [str(x) for x in first.get("loc", ()) if x != "__root__"]
    loc = ".".join(parts)
    if flags and parts and parts[-1] in _FLAGS:
        loc = _FLAGS[parts[-1]]
    elif flags and len(parts) == 1 and parts[0] in _SIMULATE_FIELDS:
        loc = "--" + parts[0].replace("_", "-")
    msg = first.get("msg", str(e)).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


# ------------------------------------------------------------------ simulate


def _add_simulate(sub) -> None:
    p = sub.add_parser("simulate", help="simulated federation: train, withdraw, unlearn, audit, record")
    p.add_argument("--dataset", default="digits", help="digits | breast_cancer | wine | iris | PATH.csv")
    p.add_argument("--target", default=None, help="target column of a CSV dataset")
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--partition", choices=["iid", "dirichlet"], default="iid")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration (dirichlet partition)")
    p.add_argument("--holdout-fraction", type=float, default=0.2, help="share of each client's data kept as never-trained holdout")
    p.add_argument("--canaries", type=float, default=0.0,
                   help="share of the canary clients' rows turned into canaries (see --canary-kind), which only memorisation "
                        "fits: makes forgetting measurable; 0 = none")
    p.add_argument("--canary-kind", choices=["ood", "mislabel"], default="ood",
                   help="ood: random-feature rows with random labels; mislabel: real rows with a wrong label")
    p.add_argument("--canary-clients", default="0", metavar="IDS", help="clients holding the canaries, e.g. 0 or 0,2")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--local-epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--hidden", default="64", help="hidden layer sizes, e.g. 64 or 128,64")
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp", help="mlp, or cnn (images: the digits as 8x8 images)")
    p.add_argument("--site-files", default=None, metavar="A;B;...",
                   help="one data file per simulated site (CSV, .npz or image folder), ';'-separated: the server then holds no client data")
    p.add_argument("--classes", default="", help="label names in order, for site files with text labels, e.g. no,yes")
    p.add_argument("--records", default=None, metavar="IDS.txt",
                   help="record-level withdrawal: the ids (one per line) of the rows the --withdraw site erases")
    p.add_argument("--withdraw", action="append", default=None, metavar="IDS[@ROUND]",
                   help="clients that withdraw, e.g. 0 or 0,3 or 1@3 (after round 3); repeat for successive withdrawals; "
                        "'none' for no planned withdrawal (requests then come from --requests-dir) (default: 0)")
    p.add_argument("--forget-fraction", type=float, default=1.0, help="share of those clients' data to forget, in (0,1]")
    p.add_argument("--requests-dir", default=None, help="folder of withdrawal requests (`unlearn-fl withdraw`) polled after every round")
    p.add_argument("--promote", choices=["on-pass", "always", "never"], default="on-pass",
                   help="when the `production` alias moves to an unlearned version")
    p.add_argument("--erase-superseded", choices=["keep", "quarantine", "delete"], default="keep",
                   help="after a verified unlearning: keep earlier versions that hold the withdrawn data (tagged), quarantine "
                        "them (model artefacts erased, metadata kept) or delete them")
    p.add_argument("--ledger", default=None, metavar="URL",
                   help="SQLAlchemy URL of the withdrawal ledger (default: unlearn-ledger.db beside an sqlite store, else in --out)")
    p.add_argument("--inject-failure", default="", help=argparse.SUPPRESS)
    p.add_argument("--dp-noise", type=float, default=0.0, help="DP-SGD noise multiplier σ on every client (Opacus); 0 = off")
    p.add_argument("--dp-clip", type=float, default=1.0, help="DP-SGD per-example clipping norm C")
    p.add_argument("--central-dp-noise", type=float, default=0.0, help="Flower server-side fixed-clipping DP noise; 0 = off")
    p.add_argument("--central-dp-clip", type=float, default=1.0)
    p.add_argument("--accountant", choices=["rdp", "prv"], default="rdp")
    p.add_argument("--epsilon-target", type=float, default=None,
                   help="largest acceptable ε: the audit's lower bound fails above it; with DP, the accountant may certify within it")
    p.add_argument("--audit-confidence", type=float, default=0.95, help="confidence of the audit's bounds and resolution, in (0.5, 1)")
    p.add_argument("--audit-references", type=int, default=0,
                   help="extra RMIA reference models each withdrawing site trains on its own rows (0: the retrained model only)")
    p.add_argument("--audit-reference-mode", choices=["offline", "online"], default="offline",
                   help="online: each site reference also trains on a random half of the audited rows (RMIA online)")
    p.add_argument("--strategy", choices=["fedavg", "fedprox", "fedavgm", "fedadam"], default="fedavg",
                   help="the Flower strategy UnlearningStrategy wraps")
    p.add_argument("--proximal-mu", type=float, default=0.01, help="FedProx μ")
    p.add_argument("--checkpoint-every", type=int, default=None, help="also register the trained model every K rounds")
    p.add_argument("--reason", default=None)
    p.add_argument("--method", default="marginal", help="unlearning method (see `unlearn-fl methods`)")
    p.add_argument("--method-config", default="{}", help='JSON settings of the method, e.g. \'{"gamma": 4}\'')
    p.add_argument("--unlearn-rounds", type=int, default=2, help="maximum unlearning rounds (early stopping may end sooner)")
    p.add_argument("--no-reference", action="store_true", help="skip the retrain-from-scratch reference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-name", default="unlearn-fl")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--out", default="unlearn-report")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _canary_clients(text: str) -> tuple[int, ...]:
    try:
        ids = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--canary-clients {text!r}: give comma-separated client ids, e.g. 0 or 0,2") from None
    return ids


def _check_canary_flags(a) -> None:
    """Canary flags only act with --canaries > 0: refuse them alone rather than ignore them."""
    if not 0 <= a.canaries <= 1:
        raise UsageError(f"--canaries {a.canaries:g}: give the share of the canary clients' rows to turn into canaries, "
                         "between 0 and 1, e.g. 0.25")
    if a.canaries == 0 and (a.canary_clients != "0" or a.canary_kind != "ood"):
        raise UsageError("--canary-clients / --canary-kind have no effect without --canaries SHARE; add e.g. --canaries 0.25")


def _simulate_config(a):
    from pydantic import ValidationError

    from unlearn_fl.config import AuditSettings, DPSettings, RunConfig
    from unlearn_fl.data import DataError, DataSpec, load_table
    from unlearn_fl.models import parse_hidden

    if a.clients < 1:
        raise UsageError(f"--clients {a.clients}: a federation needs at least one client")
    from unlearn_fl.config import WithdrawalPlan

    try:
        given = a.withdraw or ["0"]
        plans = [] if given == ["none"] else [WithdrawalPlan.parse(t, a.forget_fraction, a.reason) for t in given]
        failing = tuple(int(x) for x in a.inject_failure.split(",") if x.strip())
    except ValidationError as e:
        raise UsageError(_pydantic_message(e, flags=True)) from None
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        method_config = json.loads(a.method_config)
    except json.JSONDecodeError as e:
        raise UsageError(f"--method-config is not valid JSON ({e.msg}); e.g. '{{\"gamma\": 4}}'") from None
    files = tuple(f for f in (a.site_files or "").split(";") if f.strip())
    _check_canary_flags(a)
    try:
        # A CSV path as the ServerApp and the sites will open it: they run in another folder (like --tracking-uri).
        dataset = str(Path(a.dataset).resolve()) if a.dataset.lower().endswith(".csv") else a.dataset
        spec = DataSpec(dataset=dataset, target=a.target, num_clients=len(files) or a.clients, partition=a.partition,
                        alpha=a.alpha, holdout_fraction=a.holdout_fraction, seed=a.seed, canaries=a.canaries, canary_kind=a.canary_kind,
                        canary_clients=_canary_clients(a.canary_clients))
        out = Path(a.out).resolve()
        a._erasure = None
        import secrets

        a._plan_salt = secrets.token_hex(6)  # the site's erasure store and the server must agree on the request id
        records = _record_plan(a, plans, files, out) if a.records else None
        if records is not None:
            plans = [p.model_copy(update={"records": records}) for p in plans]
        cfg = RunConfig(data=spec, rounds=a.rounds, local_epochs=a.local_epochs, lr=a.lr, hidden=parse_hidden(a.hidden),
                        model=a.model, site_files=tuple(str(Path(f).resolve()) for f in files), classes=a.classes,
                        sites_dir=out / "sites", standardize_inputs=bool(files),
                        withdrawals=plans, method=a.method, method_config=method_config, unlearn_rounds=a.unlearn_rounds,
                        reference=not a.no_reference, model_name=a.model_name, tracking_uri=_absolute_uri(a.tracking_uri),
                        out=out, seed=a.seed, promote=a.promote, inject_failure=failing,
                        erase_superseded=a.erase_superseded, plan_salt=a._plan_salt, ledger=_absolute_uri(a.ledger) if a.ledger else None,
                        strategy=a.strategy, proximal_mu=a.proximal_mu, checkpoint_every=a.checkpoint_every,
                        requests_dir=Path(a.requests_dir).resolve() if a.requests_dir else None,
                        dp=DPSettings(noise_multiplier=a.dp_noise, max_grad_norm=a.dp_clip, accountant=a.accountant,
                                      central_noise_multiplier=a.central_dp_noise, central_clipping_norm=a.central_dp_clip),
                        audit=AuditSettings(epsilon_target=a.epsilon_target, confidence=a.audit_confidence,
                                            references=a.audit_references, reference_mode=a.audit_reference_mode))
    except ValidationError as e:
        raise UsageError(_pydantic_message(e, flags=True)) from None
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        if files:
            from unlearn_fl.sites import SiteError, load_site

            n_train = []
            for f in files:
                try:
                    n_train.append(len(load_site(f, target=a.target or "label", classes=a.classes or None,
                                                 holdout_fraction=a.holdout_fraction).train))
                except SiteError as e:
                    raise UsageError(str(e)) from None
        else:
            from unlearn_fl.data import federation

            load_table(spec.dataset, spec.target)
            n_train = [len(ix) for ix in federation(spec).client_train_idx]
        _check_rows_left(cfg.withdrawals, n_train, "site" if files else "client")
        if a.model == "cnn":
            from unlearn_fl.apps import make_model

            shape = (load_table(spec.dataset, spec.target).X.shape[1],) if not files else \
                load_site(files[0], target=a.target or "label", classes=a.classes or None).input_shape
            make_model("cnn", shape, 2)
    except DataError as e:
        raise UsageError(str(e)) from None
    except ValueError as e:
        raise UsageError(str(e)) from None
    return cfg


def _check_rows_left(plans, n_train: list[int], who: str) -> None:
    """UsageError when a partial withdrawal, once rounded as the sites round it (`data.forget_mask`), forgets
    every training row of a client: that is a whole-client withdrawal and must be asked for as one
    (otherwise the client is still asked to train, on nothing)."""
    from unlearn_fl.data import forget_mask

    for plan in plans:
        for c in plan.client_ids:
            n = n_train[c]
            if plan.records is not None:
                if plan.records.count >= n:
                    raise UsageError(f"--records names all {n} training rows of {who} {c}, which would leave it none to "
                                     f"train on: withdraw {who} {c} whole (--withdraw {c} without --records)")
                continue
            if plan.fraction >= 1.0:
                continue
            k = int(forget_mask(n, plan.fraction, "count").sum())
            if k >= n:
                raise UsageError(f"--forget-fraction {plan.fraction:g} of {who} {c}'s {n} training rows rounds to all {n}, "
                                 f"which would leave it none to train on: withdraw {who} {c} whole with --forget-fraction 1, "
                                 "or forget a smaller fraction")


def _absolute_uri(uri: str) -> str:
    """sqlite:///relative.db -> sqlite:////abs/relative.db: the ServerApp runs in another folder."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


def _record_plan(a, plans, files, out: Path):
    """Record the ids of a record-level withdrawal in the site's own erasure store; the plan keeps count + digest.

    Checked up front against the site's data (exit 2 when an id is unknown, duplicated, a holdout row,
    or the file is empty): this runs where the site's data is, as a site operator would.
    """
    import secrets

    import numpy as np

    from unlearn_fl.config import RecordScope
    from unlearn_fl.requests import WithdrawalRequest
    from unlearn_fl.sites import ErasureStore, SiteData, SiteError, load_site, read_id_file, resolve_records

    if not a.withdraw or len(plans) != 1 or len(plans[0].client_ids) != 1:
        raise UsageError("--records names rows of one site: give exactly one --withdraw with that site's id, e.g. --withdraw 1")
    k = plans[0].client_ids[0]
    try:
        ids = read_id_file(a.records)
        if files:
            if not 0 <= k < len(files):
                raise UsageError(f"--withdraw {k}: there are {len(files)} site files (sites 0..{len(files) - 1})")
            site = load_site(files[k], target=a.target or "label", classes=a.classes or None, holdout_fraction=a.holdout_fraction)
        else:
            from unlearn_fl.apps import local_data

            rc = {"dataset": a.dataset, "target": a.target or "", "num-clients": a.clients, "partition": a.partition,
                  "alpha": a.alpha, "holdout-fraction": a.holdout_fraction, "seed": a.seed}
            d = local_data(rc, {"partition-id": k, "num-partitions": a.clients})
            site = SiteData(d.train, d.holdout, np.asarray(d.record_ids), np.asarray(d.holdout_ids), None)
        resolve_records(site, ids)
    except SiteError as e:
        raise UsageError(f"--records {a.records}: {e}") from None
    salt = secrets.token_hex(16)
    store = ErasureStore(out / "sites" / f"site-{k}" / "erasures")
    from unlearn_fl.sites import records_digest

    scope = RecordScope(count=len(ids), digest=records_digest(ids, salt))
    rid = WithdrawalRequest(client_ids=(k,), fraction=plans[0].fraction, records=scope, salt=f"run={a._plan_salt};plan=0").request_id
    a._erasure = (store, rid, ids, salt)  # written once every input is valid (cmd_simulate)
    return scope


def _quiet_logs() -> None:
    """Keep the terminal for the progress display and the summary: library chatter off, errors on."""
    import warnings

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*noload.*")
    for name in ("flwr", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)


APP_DIR = Path(__file__).resolve().parents[1]
"""The Flower app (pyproject.toml with [tool.flwr.app]) that `simulate` runs: this project's own."""

_PROGRESS = re.compile(r"unlearn-fl progress (\w+) (\d+) (\d+)")


def run_simulation_job(cfg, progress=None, app_dir: Path | None = None) -> dict:
    """Run `cfg` with `flwr run` on Flower's local simulation engine (the supported entry point).

    Returns {"reports": [ForgettingReport, ...], "aborts": [(request id, reason), ...]}; raises
    RuntimeError with the log's tail when the run did not finish.
    """
    from unlearn_fl.apps import to_run_config
    from unlearn_fl.engine.launch import flwr_run
    from unlearn_fl.report.schema import ForgettingReport

    out = Path(cfg.out)
    summary_file = out / "run-summary.json"
    summary_file.unlink(missing_ok=True)

    def on_line(line: str) -> bool:
        m = _PROGRESS.search(line)
        if m and progress is not None:
            progress(m.group(1), int(m.group(2)), int(m.group(3)))
        return bool(m)

    _, tail = flwr_run(app_dir or APP_DIR, to_run_config(cfg), cfg.num_clients, on_line=on_line)
    if not summary_file.exists():
        errors = [x for x in tail if "Error" in x or "error" in x or "Exception" in x] or tail[-10:]
        raise RuntimeError("the federation did not finish: " + " | ".join(x.strip() for x in errors[-5:]))
    summary = json.loads(summary_file.read_text())
    reports = [ForgettingReport.model_validate_json((out / rid / "forgetting_report.json").read_text()) for rid in summary["reports"]]
    return {"reports": reports, "aborts": [(x["request_id"], x["reason"]) for x in summary["aborts"]], "summary": summary}


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f} MB"


def _summary(report) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    u, a, k = report.utility, report.audit, report.cost
    t = Table(title=f"Withdrawal {report.request.request_id}: clients {report.request.client_ids}, "
                    f"{report.request.n_forget} examples, method {report.method}")
    t.add_column("")
    for col in ("before", "after", "retrain"):
        t.add_column(col, justify="right")
    f = lambda v: "-" if v is None else f"{v:.3f}"
    t.add_row("test accuracy", f(u.test_acc_before), f(u.test_acc_after), f(u.test_acc_retrain))
    t.add_row("retain accuracy", f(u.retain_acc_before), f(u.retain_acc_after), f(u.retain_acc_retrain))
    t.add_row("forget accuracy", f(u.forget_acc_before), f(u.forget_acc_after), f(u.forget_acc_retrain))
    t.add_row("MIA AUC (forget vs unseen)", f(a.mia_auc_before), f(a.mia_auc_after), f(a.mia_auc_retrain))
    t.add_row(f"empirical ε lower (δ={a.delta:g})", f(a.epsilon_lower_before), f(a.epsilon_lower), f(a.epsilon_lower_retrain))
    for name in [x.attack for x in (a.after.attacks[1:] if a.after else [])]:
        pick = lambda m: next((x.auc for x in (m.attacks if m else []) if x.attack == name), None)
        t.add_row(f"{name} AUC", f(pick(a.before)), f(pick(a.after)), f(pick(a.retrain)))
    g = lambda v: "-" if v is None else f"{v:.2e}"
    t.add_row("criterion Î(Z;V) nats", g(a.criterion_mi_before), g(a.criterion_mi_after), g(a.criterion_mi_retrain))
    c.print(t)
    c.print(f"cost: unlearning {k.unlearn_seconds:.1f}s vs retraining {f(k.retrain_seconds)}s  (speed-up {f(k.speedup)}x); "
            f"rounds {k.unlearn_rounds} vs {k.retrain_rounds if k.retrain_rounds is not None else '-'}; "
            f"model bytes sent {_mb(k.unlearn_bytes)} vs {_mb(k.retrain_bytes)}")
    if report.accounting:
        acc = report.accounting
        eps = f"ε = {acc.epsilon:.3f}" if acc.epsilon is not None else f"ε unbounded ({acc.epsilon_status})"
        c.print(f"privacy ({acc.accountant}): {eps} at δ = {acc.delta:g} (σ={acc.noise_multiplier}, q={acc.sample_rate:.3g}, steps={acc.steps})"
                + (f"; {acc.epsilon_note}" if acc.epsilon_note else ""))
    if a.retained_exposure:
        c.print("retained sites' exposure (own rows vs holdout, AUC before→after): " + "; ".join(
            f"site {e.client} {e.auc_before:.3f}→{e.auc_after:.3f}" + (" [yellow]ROSE[/yellow]" if e.increased else "")
            for e in a.retained_exposure))
    if a.epsilon_interval:
        upper = "unbounded" if a.epsilon_interval[1] is None else f"{a.epsilon_interval[1]:.3f}"
        c.print(f"ε of the released model: audited ≥ {a.epsilon_interval[0]:.3f}, accountant ≤ {upper}")
    by = {"audit": " (by the audit, with power)", "accounting": " (certified by accounting)"}.get(a.decided_by, "")
    c.print(f"verdict: [bold]{a.verdict}[/bold]{by}")
    for r in a.reasons:
        c.print(f"  - {r}")
    c.print(f"model {report.model.name} v{report.model.version} (parent v{report.model.parent_version})")


def cmd_simulate(a) -> int:
    import signal

    # A terminated simulate must still stop its SuperLink (engine/launch.py does so in a finally block).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        from unlearn_fl.tracking import TrackingError, check_tracking_uri

        try:
            check_tracking_uri(a.tracking_uri)
        except TrackingError as e:
            raise UsageError(str(e)) from None
        cfg = _simulate_config(a)
        try:
            check_tracking_uri(cfg.tracking_uri, model_name=cfg.model_name)
        except TrackingError as e:
            raise UsageError(str(e)) from None
        from unlearn_fl.ledger import Ledger, LedgerError

        try:
            if cfg.ledger is None:
                Path(cfg.out).mkdir(parents=True, exist_ok=True)  # the default ledger may live in --out
            Ledger(cfg.ledger_url())  # opened (created) before any training: a bad --ledger is exit 2
        except LedgerError as e:
            raise UsageError(str(e)) from None
    except UsageError as e:
        return _fail(str(e))
    if getattr(a, "_erasure", None):
        store, rid, ids, salt = a._erasure
        store.put(rid, ids, salt)
    _quiet_logs()
    progress = None
    prog_ctx = None
    if not a.quiet:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        prog_ctx = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        tasks: dict[str, int] = {}

        def progress(phase: str, r: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = prog_ctx.add_task(f"{phase:>8} rounds", total=total)
            prog_ctx.update(tasks[phase], completed=r)

    try:
        if prog_ctx:
            with prog_ctx:
                result = run_simulation_job(cfg, progress)
        else:
            result = run_simulation_job(cfg)
    except Exception as e:
        print(f"unlearn-fl: error: the run failed: {e.__class__.__name__}: {e}", file=sys.stderr)
        return 1
    for report in result["reports"]:
        _summary(report)
        print(f"report: {Path(cfg.out) / report.request.request_id / 'forgetting_report.json'} (and .html)")
    for rid, reason in result["aborts"]:
        print(f"withdrawal {rid} NOT applied: {reason}", file=sys.stderr)
    for w in result["summary"].get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    if result["summary"].get("serving_withdrawn"):  # read by the server at the end of the run
        print("warning: " + result["summary"]["serving_withdrawn"], file=sys.stderr)
    return 0 if not result["aborts"] else 3


# ------------------------------------------------------------------ feature


def _add_feature(sub) -> None:
    p = sub.add_parser("feature", help="remove a sensitive attribute from a table's features (W2 barycenter)")
    p.add_argument("--dataset", default="diabetes", help="PATH.csv, or 'diabetes' (scikit-learn's, sensitive attribute: sex)")
    p.add_argument("--sensitive", default="sex", help="column of the attribute to forget")
    p.add_argument("--target", default="progression_high", help="column of the task label (for utility)")
    p.add_argument("--t", type=float, default=None, help="0 = keep the features, 1 = full barycenter projection (default 1)")
    p.add_argument("--method", choices=["quantile", "gaussian"], default=None, help="the maps (default quantile)")
    p.add_argument("--smoothing", choices=["auto", "histogram", "relative", "kernel"], default=None,
                   help="how the quantile maps estimate each group's law (docs/method.md §3, 'Values on a grid'): auto (the "
                        "central default: per column, histogram, relative or kernel, whichever a split of the rows "
                        "finds closest; with --clients the default is relative, with --summary marginals auto again), "
                        "equal-mass histograms of the values, histograms on the pooled law's levels (relative: for "
                        "columns of values on a grid), or a Gaussian kernel CDF")
    p.add_argument("--grid", default=None, help="t values of the Pareto curve (default 0,0.25,0.5,0.75,1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the maps' tie draws and the probes (default 0)")
    p.add_argument("--out", default="unlearn-report", help="folder of the forgetting report (JSON and HTML; default unlearn-report)")
    p.add_argument("--clients", type=int, default=None,
                   help="run federated over this many simulated Flower clients (only per-group summaries, with three split "
                        "scores per column for --smoothing auto, head weights and counts leave a client; a quantile "
                        "sketch of a small group holds each of its column values, and --summary marginals sends every "
                        "value of every column)")
    p.add_argument("--summary", choices=["sketch", "marginals"], default=None,
                   help="with --clients and the quantile maps, what a site sends (docs/method.md §3, 'Exact federated "
                        "maps'): sketch (the default: 201 quantiles per group and column; maps close to the central "
                        "ones) or marginals (every value of every column with its count per group, unlinked across "
                        "columns: the maps equal the central fit on the pooled rows, and --smoothing defaults to auto)")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db",
                   help="MLflow store the released model is registered in (sqlite:///PATH.db or http://HOST:PORT)")
    p.add_argument("--model-name", default=None,
                   help="registered model of the release (default: feature-SENSITIVE, feature-SENSITIVE-federated with --clients, "
                        "feature-SENSITIVE-model with --outcome embedding|scores or --lam); its parent version is the model "
                        "before feature unlearning (t = 0), registered once and reused")
    p.add_argument("--promote", choices=["on-pass", "always", "never"], default="on-pass",
                   help="when the `production` alias moves to the release (on-pass: its logistic and gradient-boosting "
                        "S-probe AUCs after are at most --max-s-auc and the estimates agree; otherwise it gets `candidate`)")
    p.add_argument("--max-s-auc", type=float, default=None,
                   help="largest held-out S-probe AUC (logistic and gradient-boosting) after unlearning for `production` "
                        "under --promote on-pass, in [0.5, 1] (default 0.6)")
    m = p.add_argument_group("S out of a federated model (--clients N): its embedding, its scores, or in training")
    m.add_argument("--outcome", choices=["features", "embedding", "scores"], default=None,
                   help="what S is removed from: the input columns (features, the default), or a model the federation "
                        "trains on every column: its last hidden layer (embedding) or its outputs (scores), projected "
                        "after training with a refit head; with --lam: scores, in training")
    m.add_argument("--lam", type=float, default=None,
                   help="remove S in training instead: the sites train on the objective + λ·Î(scores; S) (λ > 0, e.g. 10)")
    m.add_argument("--objective", choices=["entropy", "conditional_entropy", "kl", "energy"], default=None,
                   help="the utility objective of --lam training: conditional_entropy (default) or energy; the paper's other "
                        "two, kl and entropy, cannot train a classifier from scratch and are refused with the reason "
                        "(docs/method.md §3)")
    m.add_argument("--hidden", default=None, help="hidden layer sizes of the model (default 16), e.g. 16 or 32,16")
    m.add_argument("--rounds", type=int, default=None, help="FedAvg training rounds of the model (default 10)")
    m.add_argument("--local-epochs", type=int, default=None, help="(default 2)")
    m.add_argument("--lr", type=float, default=None, help="(default 0.01)")
    m.add_argument("--head-rounds", type=int, default=None,
                   help="FedAvg rounds of the refit head, --outcome embedding|scores without --lam (default 5), or "
                        "of the task heads of a --clients N release of the input columns (default 10)")


def _feature_spec(a):
    """The federation's DataSpec of `feature --clients N`; UsageError before anything starts for a bad one."""
    from unlearn_fl.data import DataSpec

    if a.clients < 2:
        raise UsageError(f"--clients {a.clients}: a federation needs at least two clients (leave --clients out for a "
                         "central run)")
    dataset = a.dataset
    if dataset == "diabetes":
        from unlearn_fl.feature.tabular import write_diabetes_csv

        dataset = str(write_diabetes_csv(Path(a.out) / "diabetes.csv"))
    spec = DataSpec(dataset=dataset, target=a.target, num_clients=a.clients, seed=a.seed)
    from unlearn_fl.engine.feature_exchange import sensitive_columns

    sensitive_columns(spec, a.sensitive)  # a clear error before the engine starts (a numeric or a text column)
    return spec


def _federated_feature(a):
    from client.client_app import app as client_app
    from server.feature_workflow import run_feature_federation
    from unlearn_fl.engine.launch import run_in_simulation

    spec = _feature_spec(a)
    t_grid = _t_grid(a.grid)
    fitted: dict = {}
    _quiet_logs()
    report = run_in_simulation(lambda grid: run_feature_federation(grid, spec, a.sensitive, a.method, a.t, tuple(t_grid),
                                                                   a.seed, fitted=fitted,
                                                                   smoothing=getattr(a, "smoothing", "histogram"),
                                                                   head_rounds=getattr(a, "head_rounds", None) or FEATURE_RELEASE_HEAD_ROUNDS,
                                                                   summary=getattr(a, "summary", None) or "sketch"),
                                client_app, a.clients)
    return report, fitted


FEATURE_RELEASE_HEAD_ROUNDS = 10
"""FedAvg rounds of a federated feature release's task heads unless --head-rounds says otherwise."""
_FEATURE_DEFAULTS = {"t": 1.0, "method": "quantile", "smoothing": "histogram", "grid": "0,0.25,0.5,0.75,1",
                     "objective": "conditional_entropy", "hidden": "16", "rounds": 10, "local_epochs": 2, "lr": 0.01,
                     "head_rounds": 5}
_MODEL_ONLY = ("hidden", "rounds", "local_epochs", "lr")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _resolve_feature_flags(a) -> str:
    """features | embedding | scores from --outcome and --lam; UsageError for a combination that cannot run, or for
    a flag the chosen path would ignore. Fills in the defaults of the flags left out."""
    outcome = a.outcome or ("scores" if a.lam is not None else "features")
    if a.sensitive == a.target:
        raise UsageError(f"--sensitive {a.sensitive!r} is also the --target: pick a sensitive attribute other than the "
                         "task label")
    federated_release = outcome == "features" and a.clients is not None and a.clients >= 2
    unused = {"features": ("objective", *(() if federated_release else ("head_rounds",)), *_MODEL_ONLY),
              "posthoc": ("objective", "smoothing"), "lam": ("t", "grid", "method", "smoothing", "head_rounds")}
    path = "features" if outcome == "features" else ("lam" if a.lam is not None else "posthoc")
    applies = {"objective": "--lam training",
               "head_rounds": "--outcome embedding|scores without --lam, and to the task heads of a --clients N release",
               "smoothing": "the projection of the input columns (--outcome features)",
               **{k: "the model of --outcome embedding|scores or --lam" for k in _MODEL_ONLY},
               **{k: "a projection (not --lam)" for k in ("t", "grid", "method")}}
    given = [k for k in unused[path] if getattr(a, k) is not None]
    if a.max_s_auc is not None and a.promote != "on-pass":
        applies["max_s_auc"] = "--promote on-pass"
        given.append("max_s_auc")
    if given:
        raise UsageError("; ".join(f"{_flag(k)} applies to {applies[k]} only" for k in given)
                         + f": drop {'it' if len(given) == 1 else 'them'}")
    if a.lam is not None and a.lam == 0:
        raise UsageError("--lam 0 trains the base model again: give a weight λ > 0, e.g. 10")
    if a.objective in ("kl", "entropy"):
        raise UsageError(f"--objective {a.objective} cannot train this classifier from scratch ("
                         + ("its teacher would be an untrained model" if a.objective == "kl" else "it does not read the labels")
                         + "): use conditional_entropy or energy")
    if a.max_s_auc is None:
        a.max_s_auc = 0.6
    if a.summary is not None and (a.clients is None or a.clients >= 2):  # --clients 0 or 1: the federation's own error
        why = ("it needs a federation: add --clients N (N >= 2)" if a.clients is None else
               f"--outcome {outcome}{' with --lam' if a.lam is not None else ''} has no quantile maps of the input "
               "columns: use --outcome features" if outcome != "features" else
               "--method gaussian sends moments, whose merged maps are exact already: use --method quantile"
               if (a.method or "quantile") != "quantile" else "")
        if why:
            raise UsageError(f"--summary {a.summary} says what a site sends for the quantile maps of the input columns, and {why}; "
                             "or drop --summary")
    _check_smoothing(a)  # before the defaults: a --smoothing given with the gaussian maps is refused, whichever
    if federated_release and a.head_rounds is None:
        a.head_rounds = FEATURE_RELEASE_HEAD_ROUNDS
    if federated_release and a.head_rounds < 1:
        raise UsageError(f"--head-rounds {a.head_rounds}: give at least 1")
    if a.smoothing is None and path == "features" and (a.method or "quantile") == "quantile":
        # Federated, the sites' split scores come from a few dozen rows per group and choose badly (docs/method.md
        # §3, "Values on a grid"): the sites' maps take relative, the best single choice there.
        # Marginals give the server the pooled rows' marginals, so auto chooses as centrally.
        a.smoothing = "relative" if federated_release and a.summary != "marginals" else "auto"
    for k, v in _FEATURE_DEFAULTS.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.lam is not None:
        import math

        if outcome != "scores":
            raise UsageError("--lam trains with Î on the model's scores: use --outcome scores, or leave --outcome out")
        if not math.isfinite(a.lam) or a.lam < 0:
            raise UsageError(f"--lam {a.lam!r}: give a weight >= 0, e.g. 10")
    if outcome != "features":
        if a.clients is None or a.clients < 2:
            given = " ".join(x for x in (f"--outcome {a.outcome}" if a.outcome else "", "--lam" if a.lam is not None else "") if x)
            raise UsageError(f"{given} needs a federation: add --clients N (N >= 2)")
        for flag, v, lo in (("--rounds", a.rounds, 1), ("--local-epochs", a.local_epochs, 1), ("--head-rounds", a.head_rounds, 1)):
            if v < lo:
                raise UsageError(f"{flag} {v}: give at least {lo}")
        if not a.lr > 0:
            raise UsageError(f"--lr {a.lr!r}: give a learning rate > 0, e.g. 0.01")
        _hidden(a.hidden)
    return outcome


def _check_smoothing(a) -> None:
    """UsageError for a --smoothing the run would not apply: either value smooths the quantile maps' group laws."""
    if a.smoothing is None:
        return
    if (a.method or "quantile") != "quantile":
        raise UsageError(f"--smoothing {a.smoothing} smooths the group laws of the quantile maps, and --method "
                         f"{a.method} has none: use --method quantile (the default), or drop --smoothing")


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(h < 1 for h in sizes):
        raise UsageError(f"--hidden {text!r}: give hidden layer sizes >= 1, comma-separated, e.g. 16 or 32,16")
    return sizes


def _model_feature(a, outcome: str):
    """The federated run of `run_model_feature_federation`; (report, fitted)."""
    from client.client_app import app as client_app
    from server.feature_workflow import run_model_feature_federation
    from unlearn_fl.engine.launch import run_in_simulation

    spec = _feature_spec(a)
    fitted: dict = {}
    _quiet_logs()
    report = run_in_simulation(lambda grid: run_model_feature_federation(
        grid, spec, a.sensitive, outcome, a.method, a.t, tuple(_t_grid(a.grid)), a.lam, a.objective, _hidden(a.hidden),
        a.rounds, a.local_epochs, a.lr, a.head_rounds, a.seed, fitted=fitted), client_app, a.clients)
    return report, fitted


def _model_releases(fitted: dict):
    """(before, after) FeatureReleases of a model run: the base network and the released one."""
    from unlearn_fl.feature.network import Network
    from unlearn_fl.feature.release import network_release

    spec, s = fitted["spec"], fitted["sensitive"]
    net, w, b = Network.from_state(fitted["base_state"], "embedding")
    before = network_release(spec, s, net, w, b, meta={"model": "the federation's base model (before feature unlearning)"})
    r = fitted["release"]
    net, w, b = Network.from_state(r["network_state"], r["outcome"])
    if r["projector"] is not None:
        w, b = r["head_weight"], r["head_bias"]
    after = network_release(spec, s, net, w, b, projector=r["projector"], t=r["t"])
    return before, after


def _t_grid(text: str) -> list[float]:
    """--grid "0,0.5,1" -> [0, 0.5, 1]; UsageError naming the flag when it is empty, not numbers, or outside [0, 1]."""
    import math

    try:
        grid = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--grid {text!r}: give comma-separated t values in [0, 1], e.g. 0,0.25,0.5,0.75,1") from None
    if not grid or any(not math.isfinite(t) or not 0 <= t <= 1 for t in grid):
        raise UsageError(f"--grid {text!r}: give at least one t value, each in [0, 1], e.g. 0,0.25,0.5,0.75,1")
    return grid


def cmd_feature(a) -> int:
    """Feature unlearning, central or federated (--clients N), registered in MLflow with its forgetting report.

    Exit 2 with one line for bad input (checked before anything runs or is written: the flags, the model name, the
    tracking store), 1 when the run or the registration failed (the registry then holds nothing of it), else 0.
    """
    import math

    from pydantic import ValidationError

    from unlearn_fl.feature import run as feature_run
    from unlearn_fl.report.html import render_html

    # A federated release outputs projected features (no head), a central one the task label: separate defaults, so
    # one never takes `production` from the other and changes what `predict` returns.
    # A model release (--outcome embedding|scores, --lam) returns the model's labels from rows with S as an input:
    # a third default name, so that no release takes `production` from another kind.
    try:
        outcome = _resolve_feature_flags(a)
    except UsageError as e:
        return _fail(str(e))
    federated = a.clients is not None
    model_name = a.model_name if a.model_name is not None else (
        f"feature-{a.sensitive}-model" if outcome != "features" else
        f"feature-{a.sensitive}-federated" if federated else f"feature-{a.sensitive}")
    try:
        if (bad := _bad_model_name(model_name)) is not None:
            raise UsageError(bad if a.model_name is not None else f"{bad} (the default is feature-<--sensitive>, with "
                             "-federated for --clients and -model for --outcome embedding|scores)")
        if not math.isfinite(a.t) or not 0 <= a.t <= 1:
            raise UsageError(f"--t {a.t!r}: give a value in [0, 1] (0 = keep the features, 1 = full barycenter projection)")
        if not math.isfinite(a.max_s_auc) or not 0.5 <= a.max_s_auc <= 1:
            raise UsageError(f"--max-s-auc {a.max_s_auc!r}: give an AUC in [0.5, 1] (0.5 = nothing left to predict the "
                             "sensitive attribute from), e.g. 0.6")
        grid = _t_grid(a.grid)
        uri = _absolute_uri(a.tracking_uri)
        from unlearn_fl.feature.registry import check_feature_store
        from unlearn_fl.tracking import TrackingError

        try:
            check_feature_store(uri, model_name)
        except TrackingError as e:
            raise UsageError(str(e)) from None
        if outcome != "features":
            report, fitted = _model_feature(a, outcome)
        elif federated:
            report, fitted = _federated_feature(a)
        else:
            cfg = feature_run.FeatureRunConfig(dataset=a.dataset, sensitive=a.sensitive, target=a.target, t=a.t,
                                               method=a.method, grid=grid, seed=a.seed, smoothing=a.smoothing)
            report, fitted = feature_run.run_feature_fit(cfg)
    except UsageError as e:
        return _fail(str(e))
    except ValidationError as e:
        return _fail(_pydantic_message(e))
    except (ValueError, FileNotFoundError) as e:
        return _fail(str(e).splitlines()[0])
    from unlearn_fl.feature.registry import register_feature, table_digest
    from unlearn_fl.feature.release import central_releases, federated_releases

    try:
        if federated:  # every model run is federated
            from unlearn_fl.data import dataset_info

            before, after = (_model_releases(fitted) if outcome != "features" else
                             federated_releases(fitted["spec"], fitted["sensitive"], fitted["projector"], fitted["t"],
                                                  fitted.get("heads")))
            clients, data_digest = fitted["clients"], dataset_info(fitted["spec"])["digest"]
        else:
            before, after = central_releases(fitted)
            clients, data_digest = [], table_digest(fitted.table.X, fitted.table.s, fitted.table.y)
        import contextlib
        import io

        with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints "Created version ..." there
            reg = register_feature(uri, model_name, report, before, after, clients=clients, data_digest=data_digest,
                                   promote=a.promote, max_s_auc=a.max_s_auc)
    except Exception as e:
        print(f"unlearn-fl: error: the release could not be registered in {uri} (any version this run created was "
              f"removed): {e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 1
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "forgetting_report.json").write_text(report.to_json())
    (out / "forgetting_report.html").write_text(render_html(report))
    f = _feature_summary(report)
    why = ("an identical release: nothing changed" if reg.reused else
           reg.reason if a.promote == "on-pass" else f"--promote {a.promote}")
    reads_s = after.needs_sensitive or after.sensitive in after.inputs
    print(f"model {model_name} v{reg.version}{' (an identical release was registered already: reused)' if reg.reused else ''} "
          f"(parent v{reg.parent_version}, the model before feature unlearning"
          f"{', reused' if reg.parent_reused else ''}) {'@' + reg.alias if reg.alias else 'with no alias'} ({why}); "
          f"mlflow.pyfunc.load_model('models:/{model_name}/{reg.version}').predict(rows) returns "
          f"{', '.join(after.outputs)} (params output=...)" + (f", rows need {f.sensitive!r}" if reads_s else ""))
    print(f"report: {out / 'forgetting_report.json'} and forgetting_report.html (attached to v{reg.version})")
    return 0


def _feature_summary(report):
    """Print a feature-unlearning report's summary (dependence on S before -> after, accuracy, Pareto); return its
    feature block."""
    f = report.feature
    knob = f"t={f.t:g}" if f.lam is None else f"λ={f.lam:g}, {report.method_config.get('objective')}"
    if report.method_config.get("smoothing", "histogram") != "histogram":
        knob += f", {report.method_config['smoothing']} smoothing"
    where = "" if f.outcome in (None, "features") else f" from the model's {f.outcome}" + (" in training" if f.lam is not None else "")
    print(f"feature unlearning of {f.sensitive!r}{where} ({f.method}, {knob}) on {report.method_config.get('dataset') or report.dataset.get('name') or report.dataset.get('dataset', '')}")
    chance = "" if f.s_auc_chance is None else f"; chance level on these rows {f.s_auc_chance:.3f}"
    print(f"  S-probe AUC   {f.s_auc_before:.3f} -> {f.s_auc_after:.3f}   (0.5 = nothing left to predict S from{chance})")
    print(f"  MI (k-NN)     {f.mi_before:.3f} -> {f.mi_after:.3f} nats   (chance level {f.mi_chance or 0:.3f}; "
          "on a gradient-boosting probe's score)")
    if f.s_auc_gbm_before is not None:
        print(f"  GBM-probe AUC {f.s_auc_gbm_before:.3f} -> {f.s_auc_gbm_after:.3f}   "
              f"Gaussian MI proxy {f.mi_gaussian_before:.3f} -> {f.mi_gaussian_after:.3f} nats")
    if f.disagreement:
        print(f"  warning: the estimates disagree: {f.disagreement}")
    print(f"  task accuracy {f.utility_before:.3f} -> {f.utility_after:.3f}")
    if f.lam is None:
        print("  Pareto (t: S-AUC / accuracy): " + ", ".join(f"{p.t:g}: {p.s_auc:.3f}/{p.utility:.3f}" for p in f.pareto))
    else:
        print("  Pareto (λ: S-AUC / accuracy): " + ", ".join(f"{p.lam:g}: {p.s_auc:.3f}/{p.utility:.3f}" for p in f.pareto))
    return f


# ------------------------------------------------------------------ report


def cmd_report(a) -> int:
    """Fetch the forgetting report of a registered version; print its summary; --open writes the HTML."""
    if (bad := _bad_model_name(a.model_name)) is not None:
        return _fail(bad)
    if not a.version.isdigit() or int(a.version) < 1:
        return _fail(f"version {a.version!r} is not a model version number: pass one that `unlearn-fl lineage` lists, e.g. 2")
    from unlearn_fl.report.schema import ForgettingReport
    from unlearn_fl.tracking import TrackingError, check_tracking_uri, fetch_report

    try:
        check_tracking_uri(a.tracking_uri, must_exist=True)
        j, h = fetch_report(a.tracking_uri, a.model_name, a.version, a.dest)
    except TrackingError as e:
        return _fail(str(e))
    except Exception as e:
        return _fail(f"cannot fetch version {a.version} of {a.model_name!r} from {a.tracking_uri}: {e.__class__.__name__}: {e}")
    from pydantic import ValidationError

    try:
        report = ForgettingReport.model_validate_json(j.read_text())
    except ValidationError as e:
        return _fail(f"the forgetting report of version {a.version} of {a.model_name!r} does not read back "
                     f"({_pydantic_message(e)}; {e.error_count()} problem(s)): the raw file is {j}; "
                     "re-run the withdrawal with a current unlearn-fl to get a readable report")
    except (OSError, ValueError) as e:
        return _fail(f"the forgetting report of version {a.version} of {a.model_name!r} cannot be read ({e.__class__.__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''}): the raw file is {j}")
    from unlearn_fl.tracking import version_tags

    from unlearn_fl.report.schema import stored_digest

    recorded = version_tags(a.tracking_uri, a.model_name, a.version).get("report_digest")
    stored = stored_digest(j.read_text())  # of the file as written: fields a later schema adds do not count
    if recorded and recorded != stored:
        print(f"unlearn-fl: error: the report of version {a.version} does not match its registered digest "
              f"({stored[:12]}... vs tag report_digest {recorded[:12]}...): it was changed after registration; "
              "do not rely on it", file=sys.stderr)
        return 1
    if report.request.kind == "data" and report.utility and report.audit:
        _summary(report)
    elif report.request.kind == "feature" and report.feature is not None:
        _feature_summary(report)
        m = report.model
        print(f"model {m.name} v{m.version}" + (f" (parent v{m.parent_version})" if m.parent_version else ""))
    else:
        print(report.to_json())
    print(f"report: {j}")
    if a.open and h is not None:
        print(f"html: {h}")
    return 0


# ------------------------------------------------------------------ audit


def cmd_audit(a) -> int:
    """Audit a registered model version on a forget set and a holdout given as CSV files."""
    from pydantic import ValidationError

    from unlearn_fl.audit.epsilon import empirical_epsilon
    from unlearn_fl.audit.mia import loss_threshold_attack
    from unlearn_fl.audit.rmia import rmia_attack, true_label_probs
    from unlearn_fl.audit.verdict import AttackEvidence, AuditThresholds, decide_verdict
    from unlearn_fl.data import DataError, Split
    from unlearn_fl.models import per_example_loss
    from unlearn_fl.tracking import TrackingError, check_tracking_uri, load_registered, parent_uri

    if a.lira_refs < 0 or a.lira_refs == 1:
        return _fail(f"--lira-refs must be 0 (off) or at least 2 (each row IN for half the references), got {a.lira_refs}")
    try:
        thresholds = AuditThresholds(delta=a.delta, confidence=a.confidence, epsilon_target=a.epsilon_target)
    except ValidationError as e:
        err = e.errors()[0]
        return _fail(f"--{str(err['loc'][-1]).replace('_', '-')}: {err['msg']}")
    try:
        check_tracking_uri(a.tracking_uri, must_exist=True)
        model, classes = load_registered(a.tracking_uri, a.model_uri)
        ref = load_registered(a.tracking_uri, a.reference_uri)[0] if a.reference_uri else None
        before_uri = a.before_uri or parent_uri(a.tracking_uri, a.model_uri)
        before = load_registered(a.tracking_uri, before_uri)[0] if before_uri else None
        forget = _labelled_rows(a.forget, a.target, classes)
        holdout = _labelled_rows(a.holdout, a.target, classes)
    except (TrackingError, DataError, UsageError) as e:
        return _fail(str(e))
    except Exception as e:
        return _fail(f"cannot load {a.model_uri} from {a.tracking_uri}: {e.__class__.__name__}: {e}")
    if forget[0].shape[1] != holdout[0].shape[1]:
        return _fail(f"--forget has {forget[0].shape[1]} feature columns but --holdout has {holdout[0].shape[1]}; use the same columns")

    def audit_of(m):
        fl = per_example_loss(m, Split(*forget))
        hl = per_example_loss(m, Split(*holdout))
        attack = loss_threshold_attack(fl, hl)
        eps = empirical_epsilon(-fl, -hl, delta=a.delta, confidence=a.confidence, seed=a.seed)
        return attack, eps

    def rmia_of(m):
        fp, hp = true_label_probs(m, forget[0], forget[1]), true_label_probs(m, holdout[0], holdout[1])
        rf, rh = true_label_probs(ref, forget[0], forget[1]), true_label_probs(ref, holdout[0], holdout[1])
        return rmia_attack(fp, rf[:, None], hp, rh[:, None], mode="offline")

    try:
        attack, eps = audit_of(model)
        ref_attack, ref_eps = audit_of(ref) if ref is not None else (None, None)
        before_attack, before_eps = audit_of(before) if before is not None else (None, None)
        rmia = rmia_of(model) if ref is not None else None
        rmia_before = rmia_of(before) if ref is not None and before is not None else None
    except RuntimeError as e:
        return _fail(f"the model does not accept these rows ({str(e).splitlines()[0]}); give the raw feature columns it was trained on")
    evidence = [AttackEvidence(attack=attack.attack, auc_after=attack.auc, n_members=attack.n_members,
                               n_nonmembers=attack.n_nonmembers, auc_before=before_attack.auc if before_attack else None,
                               auc_retrain=ref_attack.auc if ref_attack else None)]
    if rmia is not None:
        evidence.append(AttackEvidence(attack=rmia.attack, auc_after=rmia.auc, n_members=rmia.n_members,
                                       n_nonmembers=rmia.n_nonmembers, auc_before=rmia_before.auc if rmia_before else None))
    v = decide_verdict(
        evidence, epsilon_lower_after=eps.epsilon_lower, epsilon_lower_before=before_eps.epsilon_lower if before_eps else None,
        epsilon_lower_retrain=ref_eps.epsilon_lower if ref_eps else None,
        thresholds=thresholds,
    )
    verdict, reasons = v.verdict, v.reasons
    lira = None
    if a.lira_refs:
        try:
            population = _labelled_rows(a.population, a.target, classes) if a.population else None
        except DataError as e:
            return _fail(str(e))
        lira = _lira(model, forget, holdout, population, n_classes=len(classes) if classes else int(max(forget[1].max(), holdout[1].max())) + 1,
                     refs=a.lira_refs, epochs=a.lira_epochs, hidden=a.lira_hidden, seed=a.seed)
    out = {"model_uri": a.model_uri, "reference_uri": a.reference_uri, "before_uri": before_uri, "attack": attack.model_dump(),
           "epsilon": eps.model_dump(), "reference_attack": ref_attack.model_dump() if ref_attack else None,
           "before_attack": before_attack.model_dump() if before_attack else None,
           "rmia": rmia.model_dump() if rmia else None, "rmia_before": rmia_before.model_dump() if rmia_before else None,
           "power": [p.model_dump() for p in v.power], "decided_by": v.decided_by,
           "lira": lira.model_dump() if lira else None, "verdict": verdict, "reasons": reasons}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"{a.model_uri}: MIA AUC {attack.auc:.3f} on {attack.n_members} forget rows vs {attack.n_nonmembers} holdout rows; "
          f"empirical ε ≥ {eps.epsilon_lower:.3f} at δ={a.delta:g} ({a.confidence:.0%} confidence)")
    if ref_attack:
        print(f"reference {a.reference_uri}: MIA AUC {ref_attack.auc:.3f}, empirical ε ≥ {ref_eps.epsilon_lower:.3f}")
    if before_attack:
        print(f"before unlearning {before_uri}: MIA AUC {before_attack.auc:.3f}, empirical ε ≥ {before_eps.epsilon_lower:.3f}")
    if rmia:
        print(f"RMIA (offline, reference {a.reference_uri}): AUC {rmia.auc:.3f}"
              + (f" (before unlearning {rmia_before.auc:.3f})" if rmia_before else "") + ", "
              + ", ".join(f"TPR@FPR={k}: {x:.3f}" for k, x in rmia.tpr_at_fpr.items()))
    if lira:
        print(f"LiRA ({a.lira_refs} reference models, online): AUC {lira.auc:.3f}, "
              + ", ".join(f"TPR@FPR={k}: {v:.3f}" for k, v in lira.tpr_at_fpr.items()))
    print(f"verdict: {verdict}")
    for r in reasons:
        print(f"  - {r}")
    print(f"audit: {a.out}")
    return 0


def _lira(model, forget, holdout, population, n_classes: int, refs: int, epochs: int, hidden: str, seed: int):
    """Online LiRA (audit/lira.py): reference MLPs on random halves of the audited rows (+ a population file)."""
    import numpy as np
    import torch

    from unlearn_fl.audit.lira import lira_attack, train_reference_confidences
    from unlearn_fl.audit.mia import per_example_scaled_logits
    from unlearn_fl.data import Split
    from unlearn_fl.models import make_model, parse_hidden, train_epochs

    X_eval = np.concatenate([forget[0], holdout[0]])
    y_eval = np.concatenate([forget[1], holdout[1]])
    X_pool = population[0] if population else X_eval[:0]
    y_pool = population[1] if population else y_eval[:0]
    allx = np.concatenate([X_eval, X_pool])
    mean, scale = allx.mean(0), allx.std(0)
    scale[scale < 1e-8] = 1.0

    class Scaled(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m((x - torch.as_tensor(mean)) / torch.as_tensor(scale))

    def train_fn(X, y):
        m = make_model(X.shape[1], n_classes, parse_hidden(hidden), seed=seed + len(y))
        train_epochs(m, Split(((np.asarray(X) - mean) / scale).astype(np.float32), np.asarray(y)), epochs, 3e-3, 32, seed=seed)
        return Scaled(m)

    refc = train_reference_confidences(train_fn, X_pool, y_pool, X_eval, y_eval, refs, rng=seed)
    target = per_example_scaled_logits(model, torch.as_tensor(X_eval), torch.as_tensor(y_eval))
    nf = len(forget[1])
    return lira_attack(target[:nf], target[nf:], refc.out_confs(slice(0, nf)), refc.out_confs(slice(nf, None)),
                       refc.in_confs(slice(0, nf)), refc.in_confs(slice(nf, None)))


def _labelled_rows(path: str, target: str, classes: list[str] | None):
    """(X float32, y class indices) from a CSV of raw feature columns and a target column."""
    import numpy as np
    import pandas as pd

    from unlearn_fl.data import DataError

    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"cannot read CSV {path}: no such file") from None
    if target not in df.columns:
        raise DataError(f"target column {target!r} is not in {path}; columns are: {', '.join(map(str, df.columns))}")
    y_raw = df.pop(target)
    if not all(pd.api.types.is_numeric_dtype(df[c]) for c in df.columns):
        bad = next(c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c]))
        raise DataError(f"column {bad!r} of {path} is not numeric; give the model's numeric input columns")
    names = [str(c) for c in (classes or [])]
    if names and all(str(v) in names for v in y_raw.astype(str)):
        y = np.array([names.index(str(v)) for v in y_raw.astype(str)])
    elif pd.api.types.is_integer_dtype(y_raw):
        y = y_raw.to_numpy()
    else:
        raise DataError(f"target column {target!r} of {path} holds labels the model does not know; use its class names {names} or indices")
    return df.to_numpy(dtype=np.float32), y.astype(np.int64)


# ------------------------------------------------------------------ withdraw


def cmd_withdraw(a) -> int:
    """Validate a withdrawal request and put it in the folder a running server polls.

    With --records (run at the site): the ids are checked against the site's data when
    --data-path is given, written to the site's own erasure store (--erasure-dir), and only
    their count and a salted digest go into the request the server reads.
    """
    import secrets

    from pydantic import ValidationError

    from unlearn_fl.config import RecordScope
    from unlearn_fl.requests import RequestQueue, WithdrawalRequest

    try:
        ids = tuple(int(x) for x in a.client.split(",") if x.strip())
        if any(c < 0 for c in ids):
            raise ValueError
    except ValueError:
        return _fail(f"--client {a.client!r}: give integer client ids, e.g. 1 or 1,4")
    erasure = None
    try:
        if a.records:
            from unlearn_fl.sites import ErasureStore, SiteError, load_site, read_id_file, records_digest, resolve_records

            if len(ids) != 1:
                raise UsageError("--records names rows of one site: give one --client")
            if not a.erasure_dir:
                raise UsageError("--records needs --erasure-dir: the site's own folder where the ids stay")
            try:
                names = read_id_file(a.records)
                if a.data_path:
                    site = load_site(a.data_path, target=a.target, classes=a.classes or None,
                                     holdout_fraction=a.holdout_fraction)
                    resolve_records(site, names)
            except SiteError as e:
                raise UsageError(f"--records {a.records}: {e}") from None
            store = ErasureStore(a.erasure_dir)
            earlier = store.find(names)  # the same records again: the same salt, digest and request id (a duplicate)
            salt = earlier[1] if earlier else secrets.token_hex(16)
            scope = RecordScope(count=len(names), digest=records_digest(names, salt))
            req = WithdrawalRequest(client_ids=ids, fraction=1.0, records=scope, reason=a.reason, salt=a.salt)
            erasure = (store, names, salt)
        else:
            req = WithdrawalRequest(client_ids=ids, fraction=a.fraction, reason=a.reason, salt=a.salt)
    except UsageError as e:
        return _fail(str(e))
    except ValidationError as e:
        return _fail(_pydantic_message(e))
    if erasure is not None:
        store, names, salt = erasure
        store.put(req.request_id, names, salt)
    rid, new = RequestQueue(a.requests_dir).submit(req)
    scope = f" ({req.records.count} records at site {ids[0]}; the ids stay in {a.erasure_dir})" if req.records else ""
    print(f"{rid} {'queued' if new else 'already submitted (duplicate, not queued again)'} in {a.requests_dir}{scope}")
    return 0


# ------------------------------------------------------------------ lineage


def cmd_lineage(a) -> int:
    if (bad := _bad_model_name(a.model_name)) is not None:
        return _fail(bad)
    from unlearn_fl.tracking import TrackingError, check_tracking_uri, lineage

    from unlearn_fl.ledger import Ledger, LedgerError, default_ledger_url

    try:
        check_tracking_uri(a.tracking_uri, must_exist=True)
        rows = lineage(a.tracking_uri, a.model_name)
    except TrackingError as e:
        return _fail(str(e))
    except Exception as e:
        return _fail(f"cannot read model {a.model_name!r} from {a.tracking_uri}: {e.__class__.__name__}: {e}")
    url = a.ledger or default_ledger_url(a.tracking_uri, "unlearn-report")
    try:
        ledger = Ledger(url, must_exist=True) if (a.ledger or url.startswith("sqlite:///")) else None
    except LedgerError as e:
        if a.ledger:
            return _fail(str(e))
        ledger = None  # no ledger beside the store: nothing was erased through one
    present = {r["version"] for r in rows}
    for e in (ledger.entries(model_name=a.model_name) if ledger else []):
        for v in e.body.get("versions", []) if e.state == "erased" else []:
            if v.get("policy") == "delete" and v["version"] not in present:  # a tombstone: lineage without the data
                rows.append({"version": v["version"], "run_id": v.get("run_id"), "aliases": [], "figures": {},
                             **v.get("tombstone", {}), "erased": v["erased_at"], "erasure": "delete",
                             "erased_by": e.request_id})
                present.add(v["version"])
    rows.sort(key=lambda r: int(r["version"]))
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.tree import Tree

    children: dict[str, list[dict]] = {}
    listed = {r["version"] for r in rows}
    for r in rows:
        parent = r.get("parent_version", "")
        if parent and parent not in listed:  # its parent was deleted and no ledger tombstone names it
            r = {**r, "kind": f"{r.get('kind', '?')} (parent v{parent} deleted)"}
            parent = ""
        children.setdefault(parent, []).append(r)
    tree = Tree(f"[bold]{a.model_name}[/bold]")

    def label(r: dict) -> str:
        al = f" [cyan]@{','.join(r['aliases'])}[/cyan]" if r["aliases"] else ""
        wd = f" withdrawn={r.get('withdrawn_clients') or '-'} requests={r.get('request_ids') or '-'}" if r.get("kind") == "unlearned" else ""
        verdict = f" verdict={r['verdict']}" if r.get("verdict") else ""
        warn = {"true": " [red]contains withdrawn data[/red]",
                "unverified": " [yellow]forgetting unverified[/yellow]"}.get(r.get("contains_withdrawn", ""), "")
        if r.get("certified_by") == "accounting":
            verdict += " (certified by accounting)"
        if r.get("exposure_increased"):
            warn += f" [yellow]exposure rose at sites {r['exposure_increased']}[/yellow]"
        if r.get("erased"):
            what = "deleted" if r.get("erasure") == "delete" else "quarantined"
            warn = f" [magenta]{what} {r['erased'][:10]}[/magenta]" + (" (tombstone)" if what == "deleted" else "")
        figs = " ".join(f"{k}={v:g}" for k, v in r.get("figures", {}).items())
        if str(r.get("kind", "")).startswith("feature-"):  # a feature release: what it removed and how far (#12)
            s_auc = (f" S-AUC {r['s_auc_before']}→{r['s_auc_after']}" if r.get("s_auc_after") else
                     f" S-AUC {r['s_auc']}" if r.get("s_auc") else "")
            gbm = f" (gradient-boosting probe {r['s_auc_gbm_after']})" if r.get("s_auc_gbm_after") not in (None, "", "None") else ""
            agree = " [yellow]estimates disagree[/yellow]" if r.get("estimates_agree") == "False" else ""
            knob = f"λ={r['lam']}" if r.get("lam") else f"t={r.get('t', '?')}"
            knob += f" smoothing={r['smoothing']}" if r.get("smoothing") else ""
            knob += f" summary={r['summary']}" if r.get("summary") else ""
            z = f" Z={r['outcome']}" if r.get("outcome") not in (None, "", "features") else ""
            return (f"v{r['version']}{al} {r['kind']} method={r.get('method', '?')} S={r.get('sensitive', '?')}{z} "
                    f"{knob}{s_auc}{gbm}{agree}{warn}")
        return (f"v{r['version']}{al} {r.get('kind', '?')} method={r.get('method', '?')} clients={r.get('clients', '?')}"
                f"{wd}{verdict}{warn}" + (f" [dim]{figs}[/dim]" if figs else ""))

    def add(node, parent: str) -> None:
        for r in children.get(parent, []):
            add(node.add(label(r)), r["version"])

    add(tree, "")
    Console().print(tree)
    return 0


# ------------------------------------------------------------------ ledger


def _anchors(tracking_uri: str) -> dict[int, str]:
    """{seq: hash} of the ledger entries the registry's versions recorded (`ledger_entry` tags)."""
    from unlearn_fl.tracking import TAG, _client

    out = {}
    for mv in _client(tracking_uri)[1].search_model_versions(max_results=100000):
        for key in ("ledger_entry", "ledger_erasure_entry"):
            seq, _, h = ((mv.tags or {}).get(TAG + key) or "").partition(":")
            if seq.isdigit() and h:
                out[int(seq)] = h
    return out


def cmd_ledger(a) -> int:
    """List the withdrawal ledger; --verify checks its hash chain (and the registry's anchors)."""
    from unlearn_fl.ledger import Ledger, LedgerError, default_ledger_url
    from unlearn_fl.tracking import TrackingError, check_tracking_uri

    url = a.ledger or default_ledger_url(_absolute_uri(a.tracking_uri), "unlearn-report")
    try:
        ledger = Ledger(url, must_exist=True)
        entries = ledger.entries(model_name=a.model_name)
    except LedgerError as e:
        return _fail(str(e))
    if a.verify:
        anchors = {}
        try:
            check_tracking_uri(a.tracking_uri, must_exist=True)
            anchors = _anchors(a.tracking_uri)
        except TrackingError:
            pass  # no registry to compare with: the chain alone is checked
        problem = ledger.verify(anchors)
        if problem is not None:
            print(f"unlearn-fl: ledger {url} is broken at {problem}", file=sys.stderr)
            return 1
        n = len(ledger.entries())
        print(f"ledger {url}: {n} entries, hash chain intact"
              + (f", {len(anchors)} of them witnessed by the registry" if anchors else ""))
        return 0
    if a.json:
        print(json.dumps([e.model_dump() for e in entries], indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"withdrawal ledger {url}")
    for col in ("#", "time (UTC)", "request", "model", "state", "what"):
        t.add_column(col, no_wrap=col != "what", overflow="fold")
    for e in entries:
        b = e.body
        if e.state == "received" and "request" not in b:
            what = "an invalid request file (see the aborted entry)"
        elif e.state == "received":
            r = b["request"]
            what = (f"{b.get('origin')}: sites {r['client_ids']}, " + (f"{r['records']['count']} records" if r.get("records")
                    else f"fraction {r['fraction']}") + (f", reason {r['reason']!r}" if r.get("reason") else ""))
        elif e.state == "running":
            what = f"attempt {b.get('attempt')}, {b.get('n_forget')} rows" + (" (retry)" if b.get("retry_after") else "")
        elif e.state == "done":
            what = f"v{b.get('version')} from v{b.get('parent_version')}, verdict {b.get('verdict')}"
        elif e.state == "erased":
            what = "; ".join(f"v{v['version']} " + (f"kept: {v['kept']}" if v.get("kept") else f"{v.get('policy', '?')}d")
                             for v in b.get("versions", []))
        else:
            what = b.get("reason", "")
        t.add_row(str(e.seq), e.at[:19], e.request_id, e.model_name, e.state, what)
    Console(width=None if sys.stdout.isatty() else 200).print(t)  # ids and times stay whole in a pipe or a file
    return 0


# ------------------------------------------------------------------ main


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the problem and `--help`), exit code 2."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="unlearn-fl", description="Verified machine unlearning for Flower federations.")
    sub = p.add_subparsers(dest="command", required=True)
    _add_simulate(sub)
    _add_feature(sub)
    lp = sub.add_parser("lineage", help="the version tree of a registered model")
    lp.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    lp.add_argument("--model-name", default="unlearn-fl")
    lp.add_argument("--json", action="store_true")
    lp.add_argument("--ledger", default=None, metavar="URL", help="the withdrawal ledger, for erased versions' tombstones "
                                                                  "(default: unlearn-ledger.db beside an sqlite store)")
    gp = sub.add_parser("ledger", help="the withdrawal ledger: every request's states; --verify checks its hash chain")
    gp.add_argument("--ledger", default=None, metavar="URL", help="SQLAlchemy URL (default: unlearn-ledger.db beside the sqlite store)")
    gp.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="the MLflow store (its versions witness ledger entries)")
    gp.add_argument("--model-name", default=None, help="only this model's requests")
    gp.add_argument("--verify", action="store_true", help="check the hash chain; exit 1 naming the first bad entry")
    gp.add_argument("--json", action="store_true")
    sub.add_parser("methods", help="list the unlearning methods")
    rp = sub.add_parser("report", help="fetch and show the forgetting report of a registered version")
    rp.add_argument("version", help="the model version (a number, as `unlearn-fl lineage` lists them)")
    rp.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="the MLflow store the version is in")
    rp.add_argument("--model-name", default="unlearn-fl", help="the registered model (default unlearn-fl)")
    rp.add_argument("--dest", default="unlearn-report/fetched", help="where the report files (JSON and HTML) are written")
    rp.add_argument("--open", action="store_true", help="also print the HTML page's path")
    ap = sub.add_parser("audit", help="membership audit of a registered model version on a forget set and a holdout (CSV files)")
    ap.add_argument("--model-uri", required=True, help="e.g. models:/unlearn-fl/2 or models:/unlearn-fl@production")
    ap.add_argument("--forget", required=True, help="CSV of the forgotten rows (raw features + target column)")
    ap.add_argument("--holdout", required=True, help="CSV of rows the model never saw, same columns")
    ap.add_argument("--target", required=True)
    ap.add_argument("--reference-uri", default=None, help="a model retrained without the forget set, for comparison (and RMIA's reference)")
    ap.add_argument("--before-uri", default=None,
                    help="the model before unlearning, to measure the audit's power (default: the version's parent_version tag)")
    ap.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--epsilon-target", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="unlearn-report/audit.json")
    ap.add_argument("--lira-refs", type=int, default=0, help="also run online LiRA with this many reference models (0: off)")
    ap.add_argument("--lira-epochs", type=int, default=30)
    ap.add_argument("--lira-hidden", default="64", help="hidden layers of the reference models")
    ap.add_argument("--population", default=None, help="CSV of further rows from the same population for the references")
    wp = sub.add_parser("withdraw", help="submit a withdrawal request to a running federation's request folder")
    wp.add_argument("--client", required=True, help="client id(s), e.g. 1 or 1,4")
    wp.add_argument("--fraction", type=float, default=1.0, help="share of the client's data to forget, in (0,1]")
    wp.add_argument("--reason", default=None)
    wp.add_argument("--salt", default="", help="makes a new request with the same content distinct from an earlier one")
    wp.add_argument("--requests-dir", default="unlearn-requests", help="the folder the server polls (simulate --requests-dir)")
    wp.add_argument("--records", default=None, metavar="IDS.txt", help="erase these record ids (one per line) of the --client site")
    wp.add_argument("--erasure-dir", default=None,
                    help="with --records: the site's own erasure store (its node config erasure-dir; "
                         "for a running `simulate`, OUT/sites/site-K/erasures)")
    wp.add_argument("--data-path", default=None, help="with --records: the site's data file, to check the ids before queueing")
    wp.add_argument("--target", default="label", help="with --data-path: the label column")
    wp.add_argument("--classes", default="", help="with --data-path: label names in order, for text labels")
    wp.add_argument("--holdout-fraction", type=float, default=0.2, help="with --data-path: the site's holdout share")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "simulate":
        return cmd_simulate(args)
    if args.command == "lineage":
        return cmd_lineage(args)
    if args.command == "ledger":
        return cmd_ledger(args)
    if args.command == "withdraw":
        return cmd_withdraw(args)
    if args.command == "feature":
        return cmd_feature(args)
    if args.command == "report":
        return cmd_report(args)
    if args.command == "audit":
        return cmd_audit(args)
    if args.command == "methods":
        from unlearn_fl.methods import METHODS

        for name, m in METHODS.items():
            print(f"{name:16s} {m.summary}")
        return 0
    return _fail(f"unknown command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
