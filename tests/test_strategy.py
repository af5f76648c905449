"""UnlearningStrategy wraps Flower strategies; a withdrawn client never trains again (real simulation)."""

import subprocess
import sys

import numpy as np
import torch
from mlflow.tracking import MlflowClient

from unlearn_fl.data import DataSpec, client_data
from unlearn_fl.engine.client_logic import local_train
from unlearn_fl.models import make_model
from unlearn_fl.tracking import lineage


def test_fedprox_wrapped_withdrawal_mid_run_excludes_the_client_from_later_rounds(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    p = subprocess.run([sys.executable, "-m", "unlearn_fl.cli", "simulate", "--quiet", "--clients", "3", "--rounds", "3",
                        "--strategy", "fedprox", "--proximal-mu", "0.1", "--withdraw", "1@1", "--no-reference",
                        "--tracking-uri", uri, "--out", str(tmp_path / "out"), "--model-name", "prox"],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = lineage(uri, "prox")
    assert [(r["kind"], r["parent_version"]) for r in rows] == [("trained", ""), ("unlearned", "1"), ("trained", "2")]
    final = rows[-1]
    history = MlflowClient(uri).get_metric_history(final["run_id"], "round_n_clients")
    per_round = {m.step: m.value for m in history}
    assert per_round == {1: 3.0, 2: 2.0, 3: 2.0}  # client 1 took part in round 1 only
    assert final["clients"] == "0,2"


def test_fedprox_proximal_term_keeps_local_weights_near_the_global_model():
    data = client_data(DataSpec(num_clients=2), 0).train
    drift = {}
    for mu in (0.0, 10.0):
        torch.manual_seed(0)
        m = make_model(64, 10, (32,), seed=0)
        start = torch.cat([p.detach().flatten().clone() for p in m.parameters()])
        local_train(m, data, epochs=3, lr=1e-2, batch_size=32, seed=0, proximal_mu=mu)
        drift[mu] = float((torch.cat([p.detach().flatten() for p in m.parameters()]) - start).norm())
    assert drift[10.0] < 0.5 * drift[0.0]
