"""One entry point for the unlearning benchmark: every method side by side, in memorising settings.

    .venv/bin/python -m benchmarks.run --suite quick     # 8-13 min on 2 cores -> benchmarks/results/quick.{json,md}, quick-pareto.png
    .venv/bin/python -m benchmarks.run --suite full      # hours
    .venv/bin/python -m benchmarks.run --replot benchmarks/results/quick.json   # summary, table and plot again, nothing rerun

For each setting and seed, ONE Flower simulation (the project's `Federation` and `UnlearningClient`, the
same code `unlearn-fl simulate` runs) does, on the same data splits and the same trained model:

1. train the original model for R rounds (FedAvg), storing FedEraser's history through the strategy wrapper;
2. retrain from scratch without the withdrawn rows K times (seeds differ): the reference, and the K
   retrained runs of the forgetting-quality score;
3. run every method K times from the original model (seeds differ), through `Federation.unlearn`.

Metrics of each method (mean over its K runs), each also as its gap to retraining in the same run:
test / retain / forget accuracy; forget-set membership inference (forget rows vs the withdrawing client's
never-trained holdout) with the population loss attack and, per example, RMIA and offline LiRA whose K−1
reference models are the *other* retrained runs (U-LiRA style: the references never saw the forget set);
the NeurIPS 2023 challenge's forgetting quality F over the K unlearned vs the K retrained runs, and its final
score F × retain-accuracy ratio × test-accuracy ratio; cost: wall time, federated rounds, bytes of model
arrays sent, client compute (rows passed forward and backward, plus a third of the rows passed forward only) and
what the server stores.

The attack metrics are computed by the benchmark, which made the data and so knows every site's rows (an
experimenter's oracle); the federation itself never sends rows: its own audits run at the sites.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

RESULTS = Path(__file__).resolve().parent / "results"


@functools.cache
def _pareto():
    """benchmarks/pareto.py, loaded once by path: opacus installs an unrelated top-level package named `benchmarks`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("unlearn_benchmarks_pareto", Path(__file__).resolve().parent / "pareto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

# --------------------------------------------------------------------------- settings and methods

SETTINGS: dict[str, dict] = {
    # A withdrawing client whose rows include out-of-distribution canaries (a quarter of its rows: random
    # pixels, random labels), trained for many local epochs: the original model fits every canary, the
    # retrained one cannot. Whole client withdraws.
    "mlp-ood-client": dict(data=dict(dataset="digits", num_clients=5, canaries=0.25, canary_kind="ood"),
                           model="mlp", hidden=(128,), rounds=20, local_epochs=10, lr=5e-3, fraction=1.0),
    # The same on images with a CNN; 10% of the client's rows withdraw.
    "cnn-ood-10pct": dict(data=dict(dataset="digits", num_clients=5, canaries=0.25, canary_kind="ood"),
                          model="cnn", hidden=(64,), rounds=20, local_epochs=5, lr=5e-3, fraction=0.1),
    # Dirichlet(0.1) label skew: the withdrawing client holds most of some classes (a subpopulation).
    "mlp-dirichlet": dict(data=dict(dataset="digits", num_clients=5, partition="dirichlet", alpha=0.1),
                          model="mlp", hidden=(128,), rounds=20, local_epochs=10, lr=5e-3, fraction=1.0),
    # Mislabelled canaries: other clients' rows constrain the region, FedAvg averages much of the memorisation away.
    "mlp-mislabel-client": dict(data=dict(dataset="digits", num_clients=5, canaries=0.25, canary_kind="mislabel"),
                                model="mlp", hidden=(128,), rounds=20, local_epochs=10, lr=5e-3, fraction=1.0),
    # 20 small clients, many local epochs.
    "mlp-ood-20clients": dict(data=dict(dataset="digits", num_clients=20, canaries=0.25, canary_kind="ood"),
                              model="mlp", hidden=(128,), rounds=20, local_epochs=20, lr=5e-3, fraction=1.0),
    # Tabular data proper (30 features) with OOD canaries; 50 rounds for the cost target at 50.
    "mlp-breast-cancer-50": dict(data=dict(dataset="breast_cancer", num_clients=5, canaries=0.25, canary_kind="ood"),
                                 model="mlp", hidden=(128,), rounds=50, local_epochs=5, lr=5e-3, fraction=1.0),
    # For the test suite only (in no suite): the harness end to end in well under a minute (nothing is memorised here).
    "smoke": dict(data=dict(dataset="iris", num_clients=3, holdout_fraction=0.3), model="mlp", hidden=(16,), rounds=2,
                  local_epochs=1, lr=1e-2, fraction=1.0),
}

METHODS: dict[str, tuple[str, dict]] = {
    # label: (registry name, method config)
    "retrain": ("retrain", {}),
    "finetune": ("finetune", {}),
    "neggrad+": ("gradient-ascent", {}),
    "federaser": ("federaser", {}),
    "halimi-pga": ("pga", {}),
    "scrub": ("scrub", {}),
    # Ours: the paper's objective CE(D_r) + γ·Î(Z;V) (docs/method.md §2) with each statistic it offers.
    "ours: paper (prediction vs D_r)": ("marginal", {"statistic": "prediction", "reference": "retain", "stop_rule": "mean-loss"}),
    "ours: loss vs D_r": ("marginal", {"statistic": "loss", "reference": "retain", "stop_rule": "mean-loss"}),
    "ours: joint vs D_r": ("marginal", {"statistic": "joint", "reference": "retain", "stop_rule": "mean-loss"}),
    "ours: joint vs holdout": ("marginal", {"statistic": "joint", "reference": "holdout"}),
    "ours: default (loss law vs holdout)": ("marginal", {}),
    "ours: default, 3 local epochs": ("marginal", {"epochs": 3}),
    "ours: default, 4 local epochs": ("marginal", {"epochs": 4}),
    # The stopping checks (a forward pass over the forget set and the holdout) were most of its client compute
    # at every step, the default before this variant's comparison (docs/method.md §2, "Cost of a round").
    # The retaining sites' share of an unlearning round (their cross-entropy steps, most of its compute), cut to 2
    # local epochs while the forget-holder keeps the training's.
    "ours: default, retainers 2 epochs": ("marginal", {"retain_epochs": 2}),
    "ours: default, a check at every step": ("marginal", {"check_every": 1}),
    # The holdout's reference statistic passed forward at every step (no gradient) was half the forget-holder's
    # forward-only rows; renewed only by the checks' holdout pass (every 5 steps) it is at most 5 steps old.
    "ours: default, reference every 5 steps": ("marginal", {"reference_every": 5}),
    "ours: default, retainers 2 epochs, reference every 5 steps": ("marginal", {"retain_epochs": 2, "reference_every": 5}),
    # Or a fresh random batch of 16 holdout rows at each step (the forget batch's size), weighed as the whole holdout.
    "ours: default, reference batch 16": ("marginal", {"reference_batch": 16}),
    "ours: default, retainers 2 epochs, reference batch 16": ("marginal", {"retain_epochs": 2, "reference_batch": 16}),
}

OPT_IN = {"ours: default, reference every 5 steps", "ours: default, retainers 2 epochs, reference every 5 steps",
          "ours: default, reference batch 16", "ours: default, retainers 2 epochs, reference batch 16"}
"""Variants run only when --methods names them (benchmarks/results/reference_every.md, reference_batch.md): cheaper
holdout references that cost the Dirichlet setting most of its forgetting quality."""

SUITES = {
    "quick": dict(settings=["mlp-ood-client", "cnn-ood-10pct"], seeds=[0, 1, 2], k=3),
    "full": dict(settings=[name for name in SETTINGS if name != "smoke"], seeds=[0, 1, 2, 3, 4], k=6),
}


# --------------------------------------------------------------------------- one Flower run


def run_setting(name: str, seed: int, k: int, methods: list[str]) -> dict:
    """Everything for one (setting, seed) in one Flower simulation; returns the raw per-run records."""
    from unlearn_fl.data import DataSpec
    from unlearn_fl.engine.launch import run_in_simulation

    s = SETTINGS[name]
    spec = DataSpec(**s["data"], seed=seed)
    client_app = _client_app(spec.model_dump_json(), s["model"], tuple(s["hidden"]))
    return run_in_simulation(lambda grid: _server_main(grid, name, spec, seed, k, methods), client_app, spec.num_clients)


def _client_app(spec_json: str, model_kind: str, hidden: tuple[int, ...]):
    """The project's client library on the benchmark's data (each site loads only its own partition)."""
    from flwr.clientapp import ClientApp

    from unlearn_fl.engine.client import LocalData, UnlearningClient

    def data_fn(context):
        import torch

        from unlearn_fl.data import DataSpec, federation

        torch.set_num_threads(1)
        spec = DataSpec.model_validate_json(spec_json)
        fed = federation(spec)
        part = int(context.node_config["partition-id"])
        tr, ho = fed.client_train_idx[part], fed.client_holdout_idx[part]
        return LocalData(fed.scaled(tr), fed.scaled(ho), [str(i) for i in tr], [str(i) for i in ho])

    def model_fn(context, info):
        from unlearn_fl.apps import make_model

        return make_model(model_kind, tuple(info["input_shape"]), info["n_classes"], hidden)

    app = ClientApp()
    UnlearningClient(model_fn=model_fn, data_fn=data_fn).register(app)
    return app


def _server_main(grid, name: str, spec, seed: int, k: int, methods: list[str]) -> dict:
    import torch

    from unlearn_fl.apps import make_model
    from unlearn_fl.config import UnlearningSettings
    from unlearn_fl.data import federation
    from unlearn_fl.engine.federation import Federation, with_request
    from unlearn_fl.models import reinitialized
    from unlearn_fl.requests import WithdrawalRequest

    torch.set_num_threads(1)
    logging.getLogger("flwr").setLevel(logging.ERROR)  # run_simulation resets it to INFO on start
    s = SETTINGS[name]
    data = federation(spec)
    test = data.scaled(data.test_idx)
    # Stored whenever a listed method reads it (FedEraser: every round; Halimi et al.: the last one), so that a
    # method's result does not depend on which other methods share the run.
    from unlearn_fl.methods import get_method

    needs_history = any(get_method(METHODS[m][0]).needs_history != "none" for m in methods)
    cfg = UnlearningSettings(num_clients=spec.num_clients, rounds=s["rounds"], local_epochs=s["local_epochs"], lr=s["lr"],
                             seed=seed, unlearn_rounds=2, store_history=needs_history)
    template = make_model(s["model"], tuple(data.table.X.shape[1:]), data.table.n_classes, tuple(s["hidden"]))
    fed = Federation(grid, cfg, model=template, test=test)
    fed.discover()
    initial = reinitialized(template, seed=seed)

    def timed(fn):
        t0, b0, e0 = time.perf_counter(), fed.bytes_sent, fed.examples_processed
        out = fn()
        return out, {"seconds": time.perf_counter() - t0, "bytes": fed.bytes_sent - b0, "examples": fed.examples_processed - e0}

    logs: list = []
    original, train_cost = timed(lambda: fed.train_rounds(initial, s["rounds"], {}, "train", logs))
    request = WithdrawalRequest(client_ids=(0,), fraction=s["fraction"], salt=f"bench-{name}-{seed}")
    after_w = with_request({}, request)
    oracle = _Oracle(data, request)
    runs: dict = {"setting": name, "seed": seed, "k": k, "train": train_cost, "n_forget": oracle.n_forget,
                  "original": oracle.measure([original]), "methods": {}}
    for label in methods:
        method, mcfg = METHODS[label]
        models, costs, rounds, notes = [], [], [], []
        for j in range(k):
            fed.cfg = cfg.model_copy(update={"seed": seed * 1000 + 17 * j})
            start = reinitialized(template, seed=seed * 1000 + 17 * j) if method == "retrain" else None
            m, r = fed.unlearn(original, after_w, request, [], notes, method=method, method_config=dict(mcfg),
                               initial=start, trained_rounds=s["rounds"], isolated=True)
            u = fed.last_unlearning  # the forget-set monitoring each round is not counted (the retrain has none)
            c = {"seconds": u.seconds, "bytes": u.bytes, "examples": u.examples_processed, "forward": u.examples_forward,
                 "stores": u.stores,
                 "history_bytes": u.history_bytes}
            models.append(m)
            costs.append(c)
            rounds.append(r)
        fed.cfg = cfg
        runs["methods"][label] = {"models": models, "cost": costs, "rounds": rounds, "notes": sorted(set(notes))[:5]}
    retrained = runs["methods"]["retrain"]["models"]
    for label, rec in runs["methods"].items():
        rec.update(oracle.measure(rec.pop("models"), retrained, is_reference=(label == "retrain")))
    return runs


class _Oracle:
    """The experimenter's view of the simulated data: every site's rows, for the benchmark's metrics."""

    def __init__(self, data, request) -> None:
        from unlearn_fl.data import Split, forget_mask

        self.test = data.scaled(data.test_idx)
        n_clients = len(data.client_train_idx)
        retain_x, retain_y = [], []
        for c in range(n_clients):
            tr = data.scaled(data.client_train_idx[c])
            if c in request.client_ids:
                mask = forget_mask(len(tr), request.fraction, request.rows_key or request.request_id)
                self.forget = tr.subset(np.flatnonzero(mask))
                keep = tr.subset(np.flatnonzero(~mask))
                self.holdout = data.scaled(data.client_holdout_idx[c])
            else:
                keep = tr
            retain_x.append(keep.X)
            retain_y.append(keep.y)
        self.retain = Split(np.concatenate(retain_x), np.concatenate(retain_y))
        self.n_forget = len(self.forget)
        self._cache: dict[int, tuple[object, dict]] = {}

    def _per_model(self, m) -> dict:
        hit = self._cache.get(id(m))
        if hit is not None and hit[0] is m:
            return hit[1]
        out = self._measure_one(m)
        self._cache[id(m)] = (m, out)
        return out

    def _measure_one(self, m) -> dict:
        from unlearn_fl.audit.mia import loss_threshold_attack
        from unlearn_fl.models import evaluate, per_example_loss

        fl, hl = per_example_loss(m, self.forget), per_example_loss(m, self.holdout)
        atk = loss_threshold_attack(fl, hl)
        return {"test_acc": evaluate(m, self.test)[0], "retain_acc": evaluate(m, self.retain)[0],
                "forget_acc": evaluate(m, self.forget)[0], "loss_auc": atk.auc, "loss_tpr_1pct": atk.tpr_at_fpr["0.01"],
                "forget_losses": fl, "holdout_losses": hl}

    def measure(self, models: list, retrained: list | None = None, is_reference: bool = False) -> dict:
        from unlearn_fl.audit.forgetting_quality import forgetting_quality
        from unlearn_fl.audit.lira import lira_attack
        from unlearn_fl.audit.rmia import rmia_attack

        per = [self._per_model(m) for m in models]
        out = {key: float(np.mean([p[key] for p in per])) for key in ("test_acc", "retain_acc", "forget_acc", "loss_auc", "loss_tpr_1pct")}
        if retrained is None or len(retrained) < 2:
            return out
        ref = [self._per_model(m) for m in retrained]
        rmia, lira = [], []
        for i, p in enumerate(per):
            others = [r for j, r in enumerate(ref) if j != i]  # the K−1 other retrained runs: never saw the forget set
            fm, hm = np.exp(-p["forget_losses"]), np.exp(-p["holdout_losses"])
            fr = np.stack([np.exp(-r["forget_losses"]) for r in others], 1)
            hr = np.stack([np.exp(-r["holdout_losses"]) for r in others], 1)
            a = rmia_attack(fm, fr, hm, hr, mode="offline")
            rmia.append((a.auc, a.tpr_at_fpr["0.01"]))
            conf = lambda prob: np.log(np.clip(prob, 1e-12, 1 - 1e-12)) - np.log(np.clip(1 - prob, 1e-12, 1))
            if len(others) >= 2:  # LiRA estimates a variance per example from the references
                la = lira_attack(conf(fm), conf(hm), conf(fr), conf(hr))
                lira.append((la.auc, la.tpr_at_fpr["0.01"]))
        out.update(rmia_auc=float(np.mean([x[0] for x in rmia])), rmia_tpr_1pct=float(np.mean([x[1] for x in rmia])),
                   lira_auc=float(np.mean([x[0] for x in lira])) if lira else None,
                   lira_tpr_1pct=float(np.mean([x[1] for x in lira])) if lira else None)
        u = np.stack([p["forget_losses"] for p in per], 1)
        r = np.stack([x["forget_losses"] for x in ref], 1)
        if is_reference:  # the noise floor: one half of the retrained runs against the other half
            h = u.shape[1] // 2
            out["forgetting_quality"] = forgetting_quality(u[:, :h], u[:, h:]).quality if h >= 1 else None
        else:
            out["forgetting_quality"] = forgetting_quality(u, r).quality
        return out


# --------------------------------------------------------------------------- tables


def summarise(records: list[dict]) -> dict:
    """Per setting and method: medians over seeds of every metric and its gap to retraining in the same run."""
    out: dict = {}
    for setting in sorted({r["setting"] for r in records}):
        recs = [r for r in records if r["setting"] == setting]
        labels = list(recs[0]["methods"])
        rows = {}
        for label in labels:
            per_seed = []
            for r in recs:
                m, ref = r["methods"][label], r["methods"]["retrain"]
                sec = float(np.mean([c["seconds"] for c in m["cost"]]))
                ref_sec = float(np.mean([c["seconds"] for c in ref["cost"]]))
                ex = float(np.mean([c["examples"] for c in m["cost"]]))
                ref_ex = float(np.mean([c["examples"] for c in ref["cost"]]))
                fw = float(np.mean([c.get("forward", 0) for c in m["cost"]]))
                work, ref_work = ex + fw / 3, ref_ex + float(np.mean([c.get("forward", 0) for c in ref["cost"]])) / 3
                row = {key: m[key] for key in ("test_acc", "retain_acc", "forget_acc", "loss_auc", "loss_tpr_1pct",
                                               "rmia_auc", "rmia_tpr_1pct", "lira_auc", "lira_tpr_1pct", "forgetting_quality")
                       if m.get(key) is not None}
                for key in ("test_acc", "retain_acc", "forget_acc", "loss_auc", "rmia_auc", "lira_auc"):
                    if key in row and key in ref:
                        row[f"{key}_gap"] = row[key] - ref[key]
                if "rmia_auc_gap" in row:  # its median over seeds: over- and under-forgetting seeds do not cancel
                    row["rmia_auc_abs_gap"] = abs(row["rmia_auc_gap"])
                if row.get("forgetting_quality") is not None:
                    from unlearn_fl.audit.forgetting_quality import challenge_score

                    row["score"] = challenge_score(row["forgetting_quality"], m["retain_acc"], ref["retain_acc"],
                                                   m["test_acc"], ref["test_acc"])
                row.update(seconds=sec, speedup=ref_sec / sec if sec > 0 else None, rounds=float(np.mean(m["rounds"])),
                           bytes=float(np.mean([c["bytes"] for c in m["cost"]])), examples=ex, forward_examples=fw,
                           rows_ratio=ref_ex / ex if ex > 0 else None,
                           compute_ratio=ref_work / work if work > 0 else None, stores=m["cost"][0]["stores"])
                per_seed.append(row)
            keys = [k for k in per_seed[0] if k != "stores"]
            rows[label] = {k: (float(np.median([p[k] for p in per_seed if p.get(k) is not None]))
                               if any(p.get(k) is not None for p in per_seed) else None) for k in keys}
            rows[label]["stores"] = per_seed[0]["stores"]
            rows[label]["n_seeds"] = len(per_seed)
        out[setting] = {"n_forget": recs[0]["n_forget"], "original": {k: float(np.median([r["original"][k] for r in recs]))
                                                                      for k in recs[0]["original"]}, "methods": rows}
    return out


def markdown(summary: dict, meta: dict) -> str:
    f = lambda v, d=3: "-" if v is None else f"{v:.{d}f}"
    title = f"suite `{meta['suite']}`" if meta.get("whole_suite") else "settings " + ", ".join(f"`{x}`" for x in meta["settings"])
    lines = [f"# Unlearning benchmark: {title}", "",
             f"Seeds {meta['seeds']}, K = {meta['k']} runs per method and seed; medians over seeds. "
             f"{meta['cores']} cores, torch {meta['torch']}, flwr {meta['flwr']}. Regenerate: `{meta['command']}`.", ""]
    for setting, s in summary.items():
        o = s["original"]
        lines += [f"## {setting}", "", f"{s['n_forget']} forget rows. Before unlearning: test {f(o['test_acc'])}, forget accuracy "
                  f"{f(o['forget_acc'])}, loss-attack AUC {f(o['loss_auc'])}.", "",
                  "| method | test (gap) | forget acc (gap) | loss AUC (gap) | RMIA AUC (gap) | RMIA TPR@1% | LiRA AUC | F | score | "
                  "rounds | speed-up | compute ratio | rows ratio | forward-only rows | MB sent | server stores |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for label, r in s["methods"].items():
            g = lambda key: f"{f(r.get(key))} ({'+' if (r.get(key + '_gap') or 0) >= 0 else ''}{f(r.get(key + '_gap'))})" if label != "retrain" else f(r.get(key))
            lines.append(f"| {label} | {g('test_acc')} | {g('forget_acc')} | {g('loss_auc')} | {g('rmia_auc')} | {f(r.get('rmia_tpr_1pct'))} | "
                         f"{f(r.get('lira_auc'))} | {f(r.get('forgetting_quality'), 2)} | {f(r.get('score'), 2)} | {f(r['rounds'], 1)} | "
                         f"{f(r['speedup'], 1)}× | {f(r['compute_ratio'], 1)}× | {f(r.get('rows_ratio'), 1)}× | "
                         f"{f(r.get('forward_examples'), 0)} | {f(r['bytes'] / 1e6, 2)} | {r['stores']} |")
        front = _pareto().fronts(s)
        lines += ["", "Pareto front of forgetting against client compute (the methods no other method matches or beats on both, "
                  f"and beats on one; cheapest first): by the median over seeds of |RMIA AUC gap|, {', '.join(f'`{m}`' for m in front['rmia'])}; by 1 − score, "
                  f"{', '.join(f'`{m}`' for m in front['1 − score'])}.", ""]
    if meta.get("plot"):
        lines += [f"Plots: `{meta['plot']}` (per setting, the median |RMIA AUC gap| and 1 − score against client compute).", ""]
    lines += ["Columns: gaps are method − retrain in the same run. RMIA and LiRA (offline) use the K − 1 other retrained runs "
              "as reference models. F: the NeurIPS 2023 challenge's forgetting quality over the K unlearned vs the K retrained "
              "runs (for retrain: one half of its runs against the other, the noise floor); with K this small F only tells "
              "overlapping runs (≥ 0.5) from separated ones (0). score = F × retain-accuracy ratio × test-accuracy ratio. "
              "speed-up: retraining's wall time over the method's, same run. Compute ratio: retraining's client compute over "
              "the method's, compute = rows passed forward and backward + ⅓ × rows passed forward only (a backward pass "
              "costs about two forwards); rows ratio: the same with the forward-and-backward rows alone; forward-only rows: the method's no-gradient passes at the sites (reference statistics, "
              "stopping checks, a teacher's outputs), mean per unlearning.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", choices=list(SUITES), default=None, help="default: quick")
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=None)
    ap.add_argument("--seeds", nargs="+", type=int, default=None)
    ap.add_argument("--k", type=int, default=None, help="runs per method and seed (forgetting quality, references)")
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=None)
    ap.add_argument("--out", default=None, help="results file stem (default benchmarks/results/<suite>)")
    ap.add_argument("--replot", default=None, metavar="JSON",
                    help="run nothing: recompute the summary of an earlier results JSON from its runs, rewrite it, its Markdown "
                         "table and its Pareto plot")
    a = ap.parse_args(argv)
    if a.replot is not None:
        given = [flag for flag, value in (("--suite", a.suite), ("--settings", a.settings), ("--seeds", a.seeds), ("--k", a.k),
                                          ("--methods", a.methods), ("--out", a.out)) if value is not None]
        if not a.replot.strip() or given:
            problem = "an empty path" if not a.replot.strip() else f"{', '.join(given)} with it (it reruns nothing)"
            print(f"python -m benchmarks.run: error: --replot takes {problem}; give only --replot RESULTS.json", file=sys.stderr)
            return 2
        return _replot(Path(a.replot))
    a.suite = a.suite or "quick"
    suite = SUITES[a.suite]
    settings, seeds = a.settings or suite["settings"], a.seeds or suite["seeds"]
    k = a.k if a.k is not None else suite["k"]
    methods = a.methods or [m for m in METHODS if m not in OPT_IN]
    if "retrain" not in methods:
        methods = ["retrain", *methods]
    if k < 2:
        print("python -m benchmarks.run: error: --k must be at least 2 (the references are the other retrained runs)", file=sys.stderr)
        return 2
    from unlearn_fl.cli import _quiet_logs

    _quiet_logs()
    logging.getLogger("unlearn_fl").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    records = []
    for name in settings:
        for seed in seeds:
            t = time.perf_counter()
            records.append(run_setting(name, seed, k, methods))
            print(f"{name} seed {seed}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    import flwr
    import torch

    meta = {"suite": a.suite, "whole_suite": a.settings is None, "settings": settings, "seeds": seeds, "k": k, "methods": methods, "cores": os.cpu_count(),
            "torch": torch.__version__, "flwr": flwr.__version__, "python": platform.python_version(),
            "seconds": time.perf_counter() - t0,
            "command": "python -m benchmarks.run " + shlex.join(argv if argv is not None else sys.argv[1:])}
    summary = summarise(records)
    stem = Path(a.out) if a.out else RESULTS / a.suite
    stem.parent.mkdir(parents=True, exist_ok=True)
    meta["plot"] = stem.name + "-pareto.png"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summary, "runs": records}, indent=1, default=float))
    _pareto().plot(summary, stem.parent / meta["plot"])
    md = markdown(summary, meta)
    stem.with_suffix(".md").write_text(md)
    print(md)
    print(f"{meta['seconds']:.0f} s; results in {stem.with_suffix('.json')}, .md and {meta['plot']}", file=sys.stderr)
    return 0


class ResultsMeta(BaseModel):
    """What a results file's `meta` must hold for its table to be written again (more keys are kept as they are)."""

    model_config = ConfigDict(extra="allow")
    suite: str
    settings: list[str]
    seeds: list[int]
    k: int
    cores: int | None
    torch: str
    flwr: str
    command: str


class ResultsFile(BaseModel):
    """A results JSON of this benchmark, as `--replot` reads it: its meta and the per-setting, per-seed run records."""

    model_config = ConfigDict(extra="allow")
    meta: ResultsMeta
    runs: list[dict]


ResultsFile.model_rebuild(_types_namespace={"ResultsMeta": ResultsMeta})  # resolvable however this file is loaded (by path)


def _replot(path: Path) -> int:
    """Rewrite a results file's summary (from the runs it holds), its .md and its `-pareto.png`; nothing is rerun.

    Every output is prepared before any is written, then each replaces its file in one rename. Returns 2 with one
    line on stderr when `path` is not a results JSON this benchmark wrote.
    """
    import tempfile

    def fail(problem: str) -> int:
        print(f"python -m benchmarks.run: error: --replot {path}: {problem}", file=sys.stderr)
        return 2

    if path.suffix != ".json":
        return fail("give the .json file a run wrote (its .md and plot are written beside it)")
    if not path.is_file():
        return fail("no such file" + (" (a folder)" if path.is_dir() else "") + "; give the .json file a run wrote")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return fail(f"not readable as JSON ({e.__class__.__name__}); give the .json file a run wrote")
    from pydantic import ValidationError

    try:
        results = ResultsFile.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "the top level"
        return fail(f"not a results file of this benchmark ({where}: {err['msg']}); give the .json file a run wrote")
    if not results.runs:
        return fail("its runs list is empty: nothing to summarise; give the .json file a run wrote")
    try:
        summary = summarise(results.runs)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        return fail(f"its runs are not this benchmark's records ({e.__class__.__name__}: {e}); give the .json file a run wrote")
    meta = {**data["meta"], "plot": path.with_suffix("").name + "-pareto.png"}
    stem = path.with_suffix("")
    targets = {stem.with_suffix(".json"): json.dumps({**data, "meta": meta, "summary": summary}, indent=1, default=float),
               stem.with_suffix(".md"): markdown(summary, meta)}
    png = stem.parent / meta["plot"]
    for target in (*targets, png):
        if target.exists() and not target.is_file():
            return fail(f"{target} is not a file; move it away")
    staged = []
    try:
        with tempfile.NamedTemporaryFile(dir=stem.parent, suffix=".png", delete=False) as tmp:
            staged.append((Path(tmp.name), png))
        _pareto().plot(summary, staged[-1][0])
        for target, text in targets.items():
            with tempfile.NamedTemporaryFile("w", dir=stem.parent, suffix=target.suffix, delete=False) as tmp:
                tmp.write(text)
            staged.append((Path(tmp.name), target))
    except OSError as e:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        return fail(f"cannot write beside it ({e.strerror or e}); make its folder writable")
    for tmp, target in staged:
        os.replace(tmp, target)
    print(f"rewrote {stem.with_suffix('.json')} (summary), {stem.with_suffix('.md')} and {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
