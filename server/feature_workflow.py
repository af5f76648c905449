"""Federated feature unlearning through the Grid (docs/method.md §3).

Clients send per-group summaries of their own rows; the server merges them into the W2
barycenter maps, measures the dependence on S on its own test split (a logistic and a
gradient-boosting probe's AUC, the k-NN MI, the guarded Gaussian MI proxy; unlearn_fl.information.dependence), sends the merged summaries back so that every client applies the same maps
locally, and pools the clients' utility counts. No row leaves a client.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from flwr.app import ConfigRecord, RecordDict
from flwr.serverapp import Grid
from scipy.special import softmax
from threadpoolctl import threadpool_limits

from unlearn_fl.engine.federation import Federation
from unlearn_fl.config import UnlearningSettings
from unlearn_fl.data import DataSpec, federation
from unlearn_fl.engine.feature_exchange import (feature_blocks, merge_for_sites, merged_maps, sensitive_columns,
                                                  sensitive_values, summary_from_json)
from unlearn_fl.engine.protocol import ARRAYS, CONFIG, METRICS, encode_spec
from unlearn_fl.feature.federated import server_fit
from unlearn_fl.feature.parity_ceiling import ceiling_record
from unlearn_fl.information.dependence import measure as measure_dependence, report_fields
from unlearn_fl.report.schema import FeatureBlock, ForgettingReport, ModelBlock, ParetoPoint, RequestBlock


def run_feature_federation(grid: Grid, spec: DataSpec, sensitive: str, method: str = "gaussian", t: float = 1.0,
                           grid_t: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0), seed: int = 0,
                           fitted: dict | None = None, smoothing: str = "histogram", head_rounds: int = 10,
                           head_epochs: int = 2, head_lr: float = 0.01, summary: str = "sketch") -> ForgettingReport:
    """The federated run's forgetting report; `fitted`, when given, receives what the server fitted (for the release,
    unlearn_fl.feature.release.federated_releases): projector (the merged maps), spec, sensitive, t, clients.
    smoothing: of the quantile maps' group laws, "histogram", "relative", "kernel" or "auto" (docs/method.md §3); the sites rebuild the
    maps with the same setting. Left out of the request id and the recorded config at its default, so default runs
    keep their ids. summary: what a site sends for the quantile maps, "sketch" (the default) or "marginals" (its
    per-group marginals, `unlearn_fl.feature.marginals`: the maps then equal the central fit on the pooled rows; the
    server sends the merged marginals back, not the sites'); recorded, and in the request id, when "marginals".
    The release's task heads (a Linear layer on the features at t = 0 and on the projected features
    at t) are trained by `head_rounds` FedAvg rounds of `head_epochs` local epochs (Adam, `head_lr`) on the sites'
    rows (task feature-heads, `engine.feature_exchange.local_feature_heads`); `fitted` also receives them ("heads"
    {0, t}: Linear states) and the report their pooled holdout accuracy and an S-probe on their scores."""
    fed = Federation(grid, UnlearningSettings(num_clients=spec.num_clients, reference=False, seed=seed))
    fed.discover()
    cols, _ = sensitive_columns(spec, sensitive)
    blocks = feature_blocks(spec, sensitive) if method == "quantile" else []
    base = {**encode_spec(spec), "sensitive": sensitive, "method": method, "seed": seed}
    extra = {"smoothing": smoothing} if smoothing != "histogram" else {}
    if summary != "sketch":
        if method != "quantile":
            raise ValueError(f"summary={summary!r} is a summary of the quantile maps; the gaussian maps' moments are exact already")
        extra["summary"] = summary
    base.update(extra)
    replies = fed.exchange(fed.node_of.values(), "query", RecordDict({CONFIG: ConfigRecord({**base, "task": "feature-summary"})}),
                           strict=True, what="the barycenter needs every site's summary")
    summaries = [str(r.content[CONFIG]["summary"]) for r in replies]
    if len(summaries) < spec.num_clients:
        raise RuntimeError(f"only {len(summaries)} of {spec.num_clients} clients sent their summaries")
    counts = [int(np.sum(summary_from_json(x).counts)) for x in summaries]
    summaries = merge_for_sites(summaries)  # marginals: merged into one before they go back to the sites
    proj = merged_maps(spec, sensitive, summaries, seed, smoothing)
    if fitted is not None:
        fitted.update(projector=proj, spec=spec, sensitive=sensitive, t=t, clients=sorted(fed.node_of))

    # The server's own evaluation rows.
    f = federation(spec)
    test = f.scaled(f.test_idx)
    Zte = np.delete(test.X, cols, axis=1).astype(np.float64)
    s_te = sensitive_values(spec, sensitive, f.test_idx)
    keep = np.array([v in set(proj.classes_) for v in s_te.tolist()], dtype=bool)
    Zte, s_te, y_te = Zte[keep], s_te[keep], test.y[keep]

    ts = sorted(set(grid_t) | {0.0, t})
    cfg = ConfigRecord({**base, "task": "feature-apply", "summaries": summaries, "grid": [float(x) for x in ts]})
    apply = fed.exchange(fed.node_of.values(), "query", RecordDict({CONFIG: cfg}), strict=True,
                         what="utility needs every site's counts")
    n = sum(int(r.content[METRICS]["n"]) for r in apply)
    utility = {x: sum(float(r.content[METRICS][f"correct@{x:g}"]) for r in apply) / max(n, 1) for x in ts}

    heads, head_acc = _feature_heads(fed, base, summaries, sorted({0.0, t}), Zte.shape[1], len(f.table.class_names),
                                     head_rounds, head_epochs, head_lr)
    if fitted is not None:
        fitted.update(heads=heads)

    points, deps = {}, {}
    with threadpool_limits(limits=1):
        scores = {x: softmax(proj.transform(Zte, s_te, t=x) @ heads[x]["weight"].T + heads[x]["bias"], axis=1) for x in (0.0, t)}
        score_deps = {x: measure_dependence(scores[x][:, 1:], s_te, "logistic", 5, 3, seed) for x in (0.0, t)}
        for x in ts:
            Z = proj.transform(Zte, s_te, t=x)
            d = deps[x] = measure_dependence(Z, s_te, "logistic", 5, 3, seed, chance=x == t)
            points[x] = ParetoPoint(t=x, s_auc=d.s_auc, utility=utility[x], mi=d.mi,
                                    distortion=float(np.mean(np.sum((Z - Zte) ** 2, axis=1))), s_auc_gbm=d.s_auc_gbm,
                                    mi_gaussian=d.mi_gaussian)
    key = [spec.model_dump_json(), sensitive, method, t, seed] + list(extra.values())
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]
    b, a = points[0.0], points[t]
    labels, group_n = np.unique(s_te, return_counts=True)
    return ForgettingReport(
        request=RequestBlock(request_id=f"feature-{sensitive}-{digest}", kind="feature", client_ids=sorted(fed.node_of),
                             n_forget=int(sum(counts)), reason=f"remove the dependence of the features on {sensitive!r}"),
        method=f"barycenter-{method}-federated",
        method_config={"t": t, "method": method, **extra, "grid": ts, "seed": seed,
                       "s_auc": "logistic probe, 5-fold x 3 CV on the server's test split",
                       "mi": "k-NN MI (nats) on an out-of-fold gradient-boosting probe's score, server's test split; "
                             "mi_gaussian: guarded Gaussian MI proxy",
                       "one_hot_blocks": len(blocks),
                       "utility": "pooled accuracy of each client's logistic regression on its transformed holdout",
                       "head": f"the release's task head: a Linear layer on the (projected) features, {head_rounds} FedAvg "
                               f"rounds x {head_epochs} local epochs (Adam, lr {head_lr:g})",
                       "head_accuracy": {"before": head_acc[0.0], "after": head_acc[t]},
                       "scores_s_auc": {"before": score_deps[0.0].s_auc, "after": score_deps[t].s_auc,
                                        "note": "logistic probe of S on the release's class probabilities, server's test split"},
                       "scores_s_auc_gbm": {"before": score_deps[0.0].s_auc_gbm, "after": score_deps[t].s_auc_gbm},
                       "parity_ceiling": ceiling_record(Zte, s_te, y_te, seed),
                       **({"smoothing_used": dict(zip([n for k, n in enumerate(f.table.feature_names) if k not in set(cols)],
                                                      proj.smoothing_))}
                          if smoothing == "auto" and hasattr(proj, "smoothing_") else {}),
                       "exchanged": "per-group summaries (gaussian: counts, sums, outer products; quantile: "
                                    + ("every column's values with their counts per group (marginals, unlinked across "
                                       "columns; the sites got the merged marginals back)" if summary == "marginals" else "sketches")
                                    + " and one-hot category counts), the task heads' weights and holdout counts"},
        dataset={"dataset": spec.dataset, "clients": spec.num_clients, "rows_per_client": counts,
                 "test_groups": {str(k): int(v) for k, v in zip(labels, group_n)}},
        model=ModelBlock(name=f"feature-{sensitive}"),
        feature=FeatureBlock(sensitive=sensitive, method=method, t=t, **report_fields(deps[0.0], deps[t]),
                             utility_before=b.utility, utility_after=a.utility, pareto=[points[x] for x in ts]),
        seed=seed,
    )


def _feature_heads(fed: Federation, base: dict, summaries: list[str], ts: list[float], d: int, n_classes: int,
                   rounds: int, epochs: int, lr: float) -> tuple[dict[float, dict[str, np.ndarray]], dict[float, float]]:
    """FedAvg of the release's task heads, one Linear (n_classes, d) per t, from zeros: `rounds` rounds of `epochs`
    local epochs, averaged by the sites' train rows; then their pooled holdout accuracy. Returns ({t: {"weight",
    "bias"}}, {t: accuracy}). Only head weights and counts leave a site."""
    from unlearn_fl.engine.feature_exchange import heads_from_flat, heads_to_flat

    nodes = list(fed.node_of.values())
    cfg = {**base, "summaries": summaries, "head-epochs": epochs, "head-lr": lr}

    def ask(task: str, heads: dict, what: str):
        content = {CONFIG: ConfigRecord({**cfg, "task": task}), "heads": _arrays(heads_to_flat(heads))}
        return fed.exchange(nodes, "query", RecordDict(content), strict=True, what=what)

    heads = {t: {"weight": np.zeros((n_classes, d), np.float32), "bias": np.zeros(n_classes, np.float32)} for t in ts}
    for _ in range(rounds):
        replies = ask("feature-heads", heads, "a FedAvg round of the release's task heads")
        w = np.array([float(r.content[METRICS]["num-examples"]) for r in replies])
        local = [heads_from_flat({k: a.numpy() for k, a in r.content[ARRAYS].items()}) for r in replies]
        heads = {t: {k: (sum(wi * h[t][k] for wi, h in zip(w, local)) / w.sum()).astype(np.float32) for k in heads[t]}
                 for t in ts}
    ev = ask("feature-heads-eval", heads, "the task heads' holdout counts")
    n = sum(float(r.content[METRICS]["n"]) for r in ev)
    return heads, {t: sum(float(r.content[METRICS][f"correct@{t:g}"]) for r in ev) / max(n, 1.0) for t in ts}


def _arrays(flat: dict[str, np.ndarray]):
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in flat.items()})


def run_representation_federation(grid: Grid, spec: DataSpec, sensitive: str, model, method: str = "gaussian",
                                  grid_t: tuple[float, ...] = (0.0, 0.5, 1.0), kind: str = "embedding", rounds: int = 5,
                                  epochs: int = 2, lr: float = 0.01, seed: int = 0) -> dict:
    """S out of a trained global `model`'s representation, federated (docs/method.md §3; unlearn_fl.feature.representation).

    1. every client sends the per-group summary of Z = model's representation of its train rows (task
       representation-summary); the server merges them into the barycenter maps (`server_fit`);
    2. `rounds` FedAvg rounds of the refit heads, one per t of the grid, all in one message per round: each client
       rebuilds the maps from the merged summaries, trains each head `epochs` epochs on its own act(Z_t), and sends
       the head weights back (task representation-heads); the server averages them weighted by row counts;
    3. every client counts its holdout rows the final heads classify correctly (task representation-eval).
    Returns {"projector", "heads" {t: state}, "summaries", "accuracy" {t: pooled holdout accuracy}, "clients"}.
    Only summaries, head weights and counts leave a client.
    """
    import torch

    from unlearn_fl.engine.feature_exchange import heads_from_flat, heads_to_flat
    from unlearn_fl.feature.representation import initial_head

    fed = Federation(grid, UnlearningSettings(num_clients=spec.num_clients, reference=False, seed=seed))
    fed.discover()
    nodes = list(fed.node_of.values())
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    base = {**encode_spec(spec), "sensitive": sensitive, "method": method, "seed": seed, "kind": kind,
            "epochs": epochs, "lr": lr}

    def ask(task: str, extra: dict, heads: dict | None = None, what: str = ""):
        content = {CONFIG: ConfigRecord({**base, **extra, "task": task}), "model": _arrays(state)}
        if heads is not None:
            content["heads"] = _arrays(heads_to_flat(heads))
        return fed.exchange(nodes, "query", RecordDict(content), strict=True, what=what)

    replies = ask("representation-summary", {}, what="the barycenter of Z needs every site's summary")
    summaries = [str(r.content[CONFIG]["summary"]) for r in replies]
    if len(summaries) < spec.num_clients:
        raise RuntimeError(f"only {len(summaries)} of {spec.num_clients} clients sent their summaries")
    proj = server_fit([summary_from_json(x) for x in summaries], random_state=seed)
    ts = sorted(set(float(x) for x in grid_t))
    start = {k: v.detach().numpy().copy() for k, v in initial_head(model, kind).state_dict().items()}
    heads = {t: dict(start) for t in ts}
    extra = {"summaries": summaries}
    for _ in range(rounds):
        replies = ask("representation-heads", extra, heads, what="a FedAvg round of the refit heads")
        w = np.array([float(r.content[METRICS]["num-examples"]) for r in replies])
        local = [heads_from_flat({k: a.numpy() for k, a in r.content[ARRAYS].items()}) for r in replies]
        heads = {t: {k: sum(wi * h[t][k] for wi, h in zip(w, local)) / w.sum() for k in start} for t in ts}
    ev = ask("representation-eval", extra, heads, what="the refit heads' holdout counts")
    n = sum(float(r.content[METRICS]["n"]) for r in ev)
    acc = {t: sum(float(r.content[METRICS][f"correct@{t:g}"]) for r in ev) / max(n, 1.0) for t in ts}
    torch_heads = {t: {k: torch.as_tensor(v) for k, v in st.items()} for t, st in heads.items()}
    return {"projector": proj, "heads": torch_heads, "summaries": summaries, "accuracy": acc, "holdout_n": int(n),
            "clients": sorted(fed.node_of)}


def run_regularized_federation(grid: Grid, spec: DataSpec, sensitive: str, groups: list[str], model, config,
                               rounds: int = 10) -> dict:
    """Federated training of `model` on utility + λ·Î(Z; S) (unlearn_fl.feature.federated_regularized; issue #12 4b).

    Each round: every site sends its per-group sums of the model's soft outcome and its counts (task
    regularized-sums); the server adds them up and sends the totals with the model (regularized-train); each site
    takes its local steps with the federation's Î and sends its model back; the server averages them weighted by
    rows (FedAvg). Then every site counts its holdout rows the model classifies correctly (regularized-eval).
    model: an `unlearn_fl.models.MLP` whose input width is every column of the sites' rows, S included (the sites
    rebuild it from its weights; `engine.feature_exchange.representation_rows` gives a site's rows). groups: the
    attribute's values, the same list at every site, compared as `feature_exchange.group_key` names them (1, 1.0
    and "1" are one group). config: a FederatedRegularizedConfig or its dict; round r uses seed + r for the local
    batches. Returns {"model", "history" [{round, penalty (Î_fed of the round's start, nats), utility-loss}],
    "accuracy" (pooled holdout), "holdout_n", "clients"}. Only sums, counts, models and holdout counts leave a site.
    ValueError before anything is sent for an invalid config, a model that is not an MLP or fewer than two
    groups; a site's own problem (its rows' width, a value of S outside `groups`) fails the round with that
    site's one-line reason (FederationError).
    """
    import copy

    import torch

    from unlearn_fl.feature.federated_regularized import FederatedRegularizedConfig
    from unlearn_fl.information.plugin import plugin_mi_from_means

    from pydantic import ValidationError

    from unlearn_fl.models import MLP

    try:
        cfg = FederatedRegularizedConfig.model_validate(config)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        raise ValueError(f"regularised training config: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if not isinstance(model, MLP):
        raise ValueError(f"the model must be an unlearn_fl.models.MLP (the sites rebuild it from its weights), got "
                         f"{type(model).__name__}")
    from unlearn_fl.engine.feature_exchange import group_key

    if len({group_key(g) for g in groups}) < 2:
        raise ValueError(f"groups {list(groups)}: give at least two distinct values of {sensitive!r}")
    fed = Federation(grid, UnlearningSettings(num_clients=spec.num_clients, reference=False, seed=cfg.seed))
    fed.discover()
    nodes = list(fed.node_of.values())
    model = copy.deepcopy(model)
    base = {**encode_spec(spec), "sensitive": sensitive, "groups": [str(g) for g in groups],
            "regularized-config": cfg.model_dump_json()}

    def ask(task: str, extra: dict | None = None, what: str = ""):
        content = {CONFIG: ConfigRecord({**base, "task": task}),
                   "model": _arrays({k: v.detach().numpy() for k, v in model.state_dict().items()}), **(extra or {})}
        return fed.exchange(nodes, "query", RecordDict(content), strict=True, what=what)

    history = []
    for r in range(1, rounds + 1):
        sums = ask("regularized-sums", what="the federation's Î(Z;S) needs every site's group sums")
        T = sum(np.asarray(x.content[ARRAYS]["sums"].numpy(), dtype=np.float64) for x in sums)
        Tn = sum(np.asarray(x.content[ARRAYS]["counts"].numpy(), dtype=np.int64) for x in sums)
        present = Tn > 0
        means = torch.as_tensor(T[present] / Tn[present][:, None, None])
        mi = float(torch.stack([plugin_mi_from_means(means[:, k, :], torch.as_tensor(Tn[present], dtype=torch.float64))
                                for k in range(means.shape[1])]).mean()) if present.sum() >= 2 else float("nan")
        base["regularized-config"] = cfg.model_copy(update={"seed": cfg.seed + r}).model_dump_json()  # fresh batches each round
        replies = ask("regularized-train", {"totals": _arrays({"sums": T, "counts": Tn})}, what="a round of regularised training")
        w = np.array([float(x.content[METRICS]["num-examples"]) for x in replies])
        states = [{k: a.numpy() for k, a in x.content[ARRAYS].items()} for x in replies]
        model.load_state_dict({k: torch.as_tensor(sum(wi * st[k] for wi, st in zip(w, states)) / w.sum())
                               for k in states[0]})
        history.append({"round": r, "penalty": mi,
                        "utility-loss": float(np.average([float(x.content[METRICS]["utility-loss"]) for x in replies], weights=w))})
    ev = ask("regularized-eval", what="the holdout counts")
    n = sum(int(x.content[METRICS]["n"]) for x in ev)
    return {"model": model, "history": history, "accuracy": sum(int(x.content[METRICS]["correct"]) for x in ev) / max(n, 1),
            "holdout_n": n, "clients": sorted(fed.node_of)}


def run_model_feature_federation(grid: Grid, spec: DataSpec, sensitive: str, outcome: str = "embedding",
                                 method: str = "gaussian", t: float = 1.0,
                                 grid_t: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0), lam: float | None = None,
                                 objective: str = "conditional_entropy", hidden: tuple[int, ...] = (16,), rounds: int = 10,
                                 epochs: int = 2, lr: float = 0.01, head_rounds: int = 5, seed: int = 0,
                                 fitted: dict | None = None) -> ForgettingReport:
    """S out of what the federation's model computes, as a release (docs/method.md §3; issue #12 item 4).

    1. The base: an `MLP(hidden)` trained from seed by `rounds` FedAvg rounds of `epochs` local epochs on every
       column of the sites' rows (`run_regularized_federation` with λ = 0, cross-entropy). It is the model before
       feature unlearning.
    2. lam None, post hoc (4a): the barycenter maps of the base's `outcome` ("embedding" or "scores") by S, merged
       from the sites' summaries, and `head_rounds` FedAvg rounds of a refit head for each t of the grid
       (`run_representation_federation`). lam given, in training (4b): the same MLP from the same initial weights,
       trained with `objective` + λ·Î(scores; S) (`run_regularized_federation`); t is then 0.
    3. Measured on the server's own test rows: every dependence estimate (unlearn_fl.information.dependence) of the
       S-probe on the model's class probabilities (its scores), before and after, and per t of the grid; utility is
       the sites' pooled holdout accuracy.
    The groups of S are the values the server's table holds. `fitted`, when given, receives the base's and the
    release's parts (network_state, head weights, projector, t, clients) for `release.network_release`.
    Only summaries, group sums and counts, model weights and holdout counts leave a site.
    """
    import torch

    from unlearn_fl.engine.feature_exchange import group_key
    from unlearn_fl.feature.representation import activate, initial_head, representation
    from unlearn_fl.models import make_model

    if outcome not in ("embedding", "scores"):
        raise ValueError(f"outcome {outcome!r}: give 'embedding' or 'scores'")
    f = federation(spec)
    n_all = len(f.table.y)
    groups = sorted({group_key(v) for v in sensitive_values(spec, sensitive, np.arange(n_all)).tolist()})
    init = make_model(len(f.table.feature_names), f.table.n_classes, tuple(hidden), seed=seed)
    train = {"lam": 0.0, "epochs": epochs, "lr": lr, "seed": seed, "objective": "conditional_entropy"}
    base = run_regularized_federation(grid, spec, sensitive, groups, init, train, rounds=rounds)

    test = f.scaled(f.test_idx)
    s_te = sensitive_values(spec, sensitive, f.test_idx)

    def scores_of(model) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(model(torch.as_tensor(test.X)), dim=1).double().numpy()

    def dependence(P: np.ndarray, chance: bool = False):
        with threadpool_limits(limits=1):
            return measure_dependence(P, s_te, "logistic", 5, 3, seed, chance=chance)

    dep_before = dependence(scores_of(base["model"]))
    base_state = {k: v.detach().numpy() for k, v in base["model"].state_dict().items()}
    points: list[ParetoPoint] = []
    if lam is None:
        rep = run_representation_federation(grid, spec, sensitive, base["model"], method, tuple(sorted(set(grid_t) | {0.0, t})),
                                            kind=outcome, rounds=head_rounds, epochs=epochs, lr=lr, seed=seed)
        Zte = representation(base["model"], test.X, outcome)
        deps = {}
        for x in sorted(rep["heads"]):
            head = initial_head(base["model"], outcome)
            head.load_state_dict(rep["heads"][x])
            with torch.no_grad():
                H = activate(base["model"], rep["projector"].transform(Zte, s_te, t=x), outcome)
                P = torch.softmax(head(torch.as_tensor(H, dtype=torch.float32)), dim=1).double().numpy()
            d = deps[x] = dependence(P, chance=x == t)
            points.append(ParetoPoint(t=x, s_auc=d.s_auc, utility=rep["accuracy"][x], mi=d.mi, s_auc_gbm=d.s_auc_gbm,
                                      mi_gaussian=d.mi_gaussian))
        dep_after, utility_after = deps[t], rep["accuracy"][t]
        head_t = {k: v.numpy() for k, v in rep["heads"][t].items()}
        release = dict(network_state=base_state, outcome=outcome, head_weight=head_t["weight"], head_bias=head_t["bias"],
                       projector=rep["projector"], t=t)
        name = f"representation-{outcome}-barycenter-{method}-federated"
        config = {"outcome": outcome, "t": t, "method": method, "grid": sorted(rep["heads"]), "head_rounds": head_rounds,
                  "head": "the base's last Linear (embedding) or an identity Linear C -> C (scores), refit by FedAvg "
                          "on each site's projected representation"}
    else:
        reg = run_regularized_federation(grid, spec, sensitive, groups, init, {**train, "lam": lam, "objective": objective},
                                         rounds=rounds)
        dep_after, utility_after, t = dependence(scores_of(reg["model"]), chance=True), reg["accuracy"], 0.0
        points = [ParetoPoint(t=0.0, lam=x, s_auc=d.s_auc, utility=u, mi=d.mi, s_auc_gbm=d.s_auc_gbm, mi_gaussian=d.mi_gaussian)
                  for x, d, u in ((0.0, dep_before, base["accuracy"]), (float(lam), dep_after, reg["accuracy"]))]
        release = dict(network_state={k: v.detach().numpy() for k, v in reg["model"].state_dict().items()},
                       outcome="embedding", projector=None, t=0.0)
        name = f"regularized-{objective}-federated"
        config = {"lam": lam, "objective": objective, "penalty": "plug-in Î of soft histograms of the scores (10 bins)",
                  "history": reg["history"]}
    if fitted is not None:
        fitted.update(base_state=base_state, release=release, spec=spec, sensitive=sensitive, clients=base["clients"])
    key = json.dumps([spec.model_dump_json(), sensitive, outcome, method, t, lam, objective, list(hidden), rounds, epochs,
                      lr, head_rounds, seed])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    labels, group_n = np.unique(s_te, return_counts=True)
    return ForgettingReport(
        request=RequestBlock(request_id=f"feature-{sensitive}-{digest}", kind="feature", client_ids=base["clients"],
                             n_forget=int(sum(len(x) for x in f.client_train_idx)),
                             reason=f"remove the dependence of the model's {'scores' if lam is not None else outcome} on {sensitive!r}"),
        method=name,
        method_config={**config, "seed": seed, "model": f"MLP{tuple(hidden)} on every column (S included)",
                       "training": f"{rounds} FedAvg rounds x {epochs} local epochs, lr {lr}",
                       "s_auc": "logistic probe, 5-fold x 3 CV, on the model's class probabilities for the server's test split",
                       "mi": "k-NN MI (nats) on an out-of-fold gradient-boosting probe's score, same rows",
                       "utility": "pooled accuracy on the sites' holdout rows",
                       "parity_ceiling": ceiling_record(np.delete(test.X, sensitive_columns(spec, sensitive)[0], axis=1),
                                                        s_te, test.y, seed),
                       "exchanged": "per-group summaries of Z, per-group sums of soft outcomes with counts, model and head "
                                    "weights, holdout counts"},
        dataset={"dataset": spec.dataset, "clients": spec.num_clients,
                 "rows_per_client": [int(len(x)) for x in f.client_train_idx],
                 "test_groups": {str(k): int(v) for k, v in zip(labels, group_n)}},
        model=ModelBlock(name=f"feature-{sensitive}"),
        feature=FeatureBlock(sensitive=sensitive, method=method if lam is None else "regularized", t=t,
                             outcome=outcome if lam is None else "scores", lam=lam,
                             **report_fields(dep_before, dep_after), utility_before=base["accuracy"],
                             utility_after=utility_after, pareto=points),
        seed=seed,
    )
