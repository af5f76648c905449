"""Federated feature unlearning through the Grid (docs/method.md §3).

Clients send per-group summaries of their own rows; the server merges them into the W2
barycenter maps, measures the dependence on S on its own test split (independent probe AUC,
Gaussian MI), sends the merged summaries back so that every client applies the same maps
locally, and pools the clients' utility counts. No row leaves a client.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from flwr.app import ConfigRecord, RecordDict
from flwr.serverapp import Grid
from threadpoolctl import threadpool_limits

from unlearn_fl.engine.federation import Federation
from unlearn_fl.config import UnlearningSettings
from unlearn_fl.data import DataSpec, federation
from unlearn_fl.engine.feature_exchange import sensitive_index, summary_from_json
from unlearn_fl.engine.protocol import CONFIG, METRICS, encode_spec
from unlearn_fl.feature.federated import server_fit
from unlearn_fl.information.gaussian import gaussian_mi
from unlearn_fl.information.probe import probe_s
from unlearn_fl.report.schema import FeatureBlock, ForgettingReport, ModelBlock, ParetoPoint, RequestBlock


def run_feature_federation(grid: Grid, spec: DataSpec, sensitive: str, method: str = "gaussian", t: float = 1.0,
                           grid_t: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0), seed: int = 0) -> ForgettingReport:
    fed = Federation(grid, UnlearningSettings(num_clients=spec.num_clients, reference=False, seed=seed))
    fed.discover()
    j = sensitive_index(spec, sensitive)
    base = {**encode_spec(spec), "sensitive": sensitive, "method": method, "seed": seed}
    replies = fed.exchange(fed.node_of.values(), "query", RecordDict({CONFIG: ConfigRecord({**base, "task": "feature-summary"})}),
                           strict=True, what="the barycenter needs every site's summary")
    summaries = [str(r.content[CONFIG]["summary"]) for r in replies]
    if len(summaries) < spec.num_clients:
        raise RuntimeError(f"only {len(summaries)} of {spec.num_clients} clients sent their summaries")
    proj = server_fit([summary_from_json(x) for x in summaries], random_state=seed)

    # The server's own evaluation rows.
    f = federation(spec)
    test = f.scaled(f.test_idx)
    Zte = np.delete(test.X, j, axis=1).astype(np.float64)
    s_te = f.table.X[f.test_idx, j].astype(np.float64)
    keep = np.isin(s_te, np.asarray(proj.classes_, dtype=float))
    Zte, s_te = Zte[keep], s_te[keep]

    ts = sorted(set(grid_t) | {0.0, t})
    cfg = ConfigRecord({**base, "task": "feature-apply", "summaries": summaries, "grid": [float(x) for x in ts]})
    apply = fed.exchange(fed.node_of.values(), "query", RecordDict({CONFIG: cfg}), strict=True,
                         what="utility needs every site's counts")
    n = sum(int(r.content[METRICS]["n"]) for r in apply)
    utility = {x: sum(float(r.content[METRICS][f"correct@{x:g}"]) for r in apply) / max(n, 1) for x in ts}

    points = {}
    with threadpool_limits(limits=1):
        for x in ts:
            Z = proj.transform(Zte, s_te, t=x)
            points[x] = ParetoPoint(t=x, s_auc=probe_s(Z, s_te, "logistic", 5, 3, seed).auc, utility=utility[x],
                                    mi=gaussian_mi(Z, s_te), distortion=float(np.mean(np.sum((Z - Zte) ** 2, axis=1))))
    counts = [int(np.sum(summary_from_json(x).counts)) for x in summaries]
    digest = hashlib.sha256(json.dumps([spec.model_dump_json(), sensitive, method, t, seed]).encode()).hexdigest()[:12]
    b, a = points[0.0], points[t]
    return ForgettingReport(
        request=RequestBlock(request_id=f"feature-{sensitive}-{digest}", kind="feature", client_ids=sorted(fed.node_of),
                             n_forget=int(sum(counts)), reason=f"remove the dependence of the features on {sensitive!r}"),
        method=f"barycenter-{method}-federated",
        method_config={"t": t, "method": method, "grid": ts, "seed": seed,
                       "s_auc": "logistic probe, 5-fold x 3 CV on the server's test split",
                       "mi": "Gaussian MI (nats) on the server's test split",
                       "utility": "pooled accuracy of each client's logistic regression on its transformed holdout",
                       "exchanged": "per-group summaries only (gaussian: counts, sums, outer products; quantile: sketches)"},
        dataset={"dataset": spec.dataset, "clients": spec.num_clients, "rows_per_client": counts},
        model=ModelBlock(name=f"feature-{sensitive}"),
        feature=FeatureBlock(sensitive=sensitive, method=method, t=t, mi_before=b.mi, mi_after=a.mi, s_auc_before=b.s_auc,
                             s_auc_after=a.s_auc, utility_before=b.utility, utility_after=a.utility,
                             pareto=[points[x] for x in ts]),
        seed=seed,
    )
