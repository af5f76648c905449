"""The published baselines inside the federated engine: FedEraser, Halimi et al.'s projected ascent (pga), SCRUB.

Closed-form checks of each method's core step, then each method through `Federation.unlearn` on a small
federation whose sites are the project's real ClientApp (`client/client_app.py`), reached by real Flower
messages through an in-process Grid (`test_faults.LocalGrid`; no Ray, so each case takes about a second),
and one `unlearn-fl simulate --method federaser` on Flower's simulation engine.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from unlearn_fl.data import Split
from unlearn_fl.methods.federaser import FedEraserConfig, calibrate, calibration_steps, rescale_update
from unlearn_fl.methods.projected_ascent import (ProjectedAscentConfig, flat_params, project_to_ball, projected_ascent,
                                                 random_model_radius)
from unlearn_fl.methods.scrub import ScrubConfig, distill_kl, scrub_steps
from unlearn_fl.models import reinitialized, train_epochs

# ------------------------------------------------------------------ closed form


def _toy(seed=0, n=64, d=6, c=3):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, c))
    return model, Split(X.numpy(), y.numpy())


def test_federaser_rescaling_has_the_calibration_norm_and_the_stored_direction():
    rng = np.random.default_rng(0)
    stored = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)}
    cal = {"w": 7.0 * rng.normal(size=(4, 3)).astype(np.float32), "b": 0.01 * rng.normal(size=3).astype(np.float32)}
    layer = rescale_update(stored, cal, "layer")
    for k in stored:
        assert np.linalg.norm(layer[k]) == pytest.approx(np.linalg.norm(cal[k]), rel=1e-5)
        cos = np.dot(layer[k].ravel(), stored[k].ravel()) / (np.linalg.norm(layer[k]) * np.linalg.norm(stored[k]))
        assert cos == pytest.approx(1.0, abs=1e-6)
    whole = rescale_update(stored, cal, "model")
    flat = lambda u: np.concatenate([u[k].ravel() for k in sorted(u)])
    assert np.linalg.norm(flat(whole)) == pytest.approx(np.linalg.norm(flat(cal)), rel=1e-5)
    ratio = flat(whole) / flat(stored)  # one common positive factor: the stored direction, the calibration's length
    assert np.allclose(ratio, ratio[0], rtol=1e-5) and ratio[0] > 0
    zero = rescale_update({"w": np.zeros((2, 2), np.float32)}, {"w": np.ones((2, 2), np.float32)})
    assert not zero["w"].any()  # no stored direction: no update


def test_federaser_calibration_is_the_ratio_of_the_local_epochs():
    model, data = _toy()
    cfg = FedEraserConfig(epochs=2, batch_size=10, calibration_ratio=0.75, lr=0.01)
    assert calibration_steps(64, cfg) == math.ceil(0.75 * 2 * math.ceil(64 / 10)) == 11
    res = calibrate(model, data, cfg)
    # 11 steps: a whole epoch (7 batches: 6 of 10 rows, one of 4), then 4 batches of 10 rows.
    assert res.steps == 11 and res.examples_processed == 64 + 40
    assert res.weight == 64 and not torch.equal(flat_params(res.model), flat_params(model))
    assert calibration_steps(64, cfg.model_copy(update={"calibration_ratio": 0.5})) == 7  # the paper's r: half the steps


def test_projection_keeps_the_model_in_the_ball_and_leaves_points_inside_alone():
    model, _ = _toy()
    center = flat_params(model) + 1.0
    far = float((flat_params(model) - center).norm())
    inside = copy.deepcopy(model)
    assert project_to_ball(inside, center, far + 1) == pytest.approx(far, rel=1e-6)
    assert torch.equal(flat_params(inside), flat_params(model))
    out = project_to_ball(model, center, 0.25 * far)
    assert out == pytest.approx(0.25 * far, rel=1e-5)
    moved = flat_params(model) - center  # on the segment towards the centre
    assert torch.allclose(moved / moved.norm(), -torch.ones_like(moved) / moved.numel() ** 0.5, atol=1e-5)


def test_projected_ascent_raises_the_forget_loss_and_stays_within_the_radius():
    model, data = _toy(1)
    train_epochs(model, data, 30, 0.02, 16, seed=1)
    reference = copy.deepcopy(model)
    radius = random_model_radius(reference, 1 / 3, 5, seed=0)
    d2 = [float((flat_params(reinitialized(reference, seed=i)) - flat_params(reference)).pow(2).sum()) for i in range(5)]
    assert radius == pytest.approx(math.sqrt(np.mean(d2) / 3), rel=1e-6)
    cfg = ProjectedAscentConfig(epochs=3, batch_size=16, lr=0.2, radius=0.5, loss_threshold=50.0)
    res = projected_ascent(model, reference, data, cfg)
    ce = lambda m: float(nn.functional.cross_entropy(m(torch.as_tensor(data.X)), torch.as_tensor(data.y)).detach())
    assert ce(res.model) > ce(model) + 0.1
    assert float((flat_params(res.model) - flat_params(reference)).norm()) <= 0.5 + 1e-4
    assert all(h["distance"] <= 0.5 + 1e-4 for h in res.history) and res.examples_processed == 16 * res.steps
    early = projected_ascent(model, reference, data, cfg.model_copy(update={"loss_threshold": ce(model) * 1.05, "radius": 50.0}))
    assert early.stopped_because.startswith("forget loss") and early.steps < res.steps  # τ ends it early
    with pytest.raises(ValueError, match="radius"):
        projected_ascent(model, reference, data, cfg.model_copy(update={"radius": None}))


def test_scrub_max_step_increases_the_forget_kl_and_min_steps_pull_back():
    teacher, data = _toy(2)
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    X = torch.as_tensor(data.X)
    kl = lambda m: float(distill_kl(m(X), teacher(X), 4.0).detach())
    empty = data.subset(np.zeros(0, dtype=np.int64))
    up = scrub_steps(student, teacher, empty, data, ScrubConfig(epochs=1, max_epochs=1, lr=0.05, forget_batch_size=16))
    assert kl(up.model) > kl(student) > 0 and up.steps == 4 and up.examples_processed == 64
    # Min-steps with the KL alone (γ = 0) pull the student back towards the teacher.
    down = scrub_steps(student, teacher, data, empty, ScrubConfig(epochs=3, max_epochs=0, alpha=1.0, gamma=0.0, lr=0.05, batch_size=16))
    assert kl(down.model) < kl(student)
    # The KL's gradient vanishes where the student is the teacher: a max-step from the untouched teacher moves nothing.
    same = scrub_steps(teacher, teacher, empty, data, ScrubConfig(epochs=1, max_epochs=1, weight_decay=0.0))
    assert torch.allclose(flat_params(same.model), flat_params(teacher), atol=1e-7)


# ------------------------------------------------------------------ in the federation (real ClientApp, real messages)


@pytest.fixture(scope="module")
def task_identity_module():
    from flwr.supercore.task_identity import TaskIdentity

    before = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = before


ROUNDS, CLIENTS, HIDDEN = 3, 3, 16


def _trained(tmp, **settings):
    """A 3-site digits federation trained 3 rounds (1 local epoch); returns (fed, model, logs)."""
    from test_faults import LocalGrid

    from unlearn_fl.apps import make_model, to_run_config
    from unlearn_fl.config import RunConfig
    from unlearn_fl.engine.federation import Federation
    from unlearn_fl.models import reinitialized

    cfg = RunConfig(num_clients=CLIENTS, rounds=ROUNDS, local_epochs=1, hidden=(HIDDEN,), tracking_uri=f"sqlite:///{tmp / 'm.db'}",
                    out=tmp / "out", **settings)
    fed = Federation(LocalGrid(to_run_config(cfg), CLIENTS), cfg, timeout=5)
    fed.discover(timeout=5)
    model = reinitialized(make_model("mlp", fed.input_shape, fed.n_classes, (HIDDEN,)), seed=0)
    logs: list = []
    for r in range(1, ROUNDS + 1):
        model = fed.train_rounds(model, 1, {}, "train", logs, first=r)
    return fed, model, logs


@pytest.fixture(scope="module")
def trained(tmp_path_factory, task_identity_module):
    """Trained with the history on (run config store-history), method marginal."""
    return _trained(tmp_path_factory.mktemp("baselines"), store_history=True)


def _model_bytes(model: nn.Module) -> int:
    return sum(v.numel() * v.element_size() for v in model.state_dict().values() if v.is_floating_point())


def _request(fraction=1.0, client=0):
    from unlearn_fl.engine.federation import with_request
    from unlearn_fl.requests import WithdrawalRequest

    req = WithdrawalRequest(client_ids=(client,), fraction=fraction)
    return req, with_request({}, req)


def _unlearn(fed, model, method, fraction=1.0, **kw):
    req, w = _request(fraction)
    logs, notes = [], []
    before = copy.deepcopy(model.state_dict())
    after, n = fed.unlearn(model, w, req, logs, notes, method=method, **kw)
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in before), "the input model was modified"
    return after, n, logs, notes


def _changed(a: nn.Module, b: nn.Module) -> bool:
    return not torch.equal(flat_params(a), flat_params(b))


def test_the_history_is_recorded_through_the_strategy_and_its_bytes_are_the_arrays_stored(trained):
    fed, model, _ = trained
    hist = fed.history
    assert [r.index for r in hist.rounds] == [1, 3]  # Δt = 2: training rounds 1 and 3
    assert all(len(r.updates) == CLIENTS for r in hist.rounds)
    assert fed.history_bytes == len(hist.rounds) * (1 + CLIENTS) * _model_bytes(model)
    # What was stored is what the sites returned: FedAvg of the last stored round's updates gives the trained model.
    last = hist.rounds[-1]
    n = sum(last.examples.values())
    rebuilt = {k: v + sum(last.examples[c] * last.updates[c][k] for c in last.updates) / n for k, v in last.global_arrays.items()}
    for k, v in model.state_dict().items():
        assert np.allclose(rebuilt[k], v.numpy(), atol=1e-5)


def test_no_history_is_stored_unless_asked_and_federaser_then_refuses(tmp_path, task_identity_module):
    from unlearn_fl.engine.federation import WithdrawalAborted

    fed, model, _ = _trained(tmp_path)  # method marginal, store_history off
    assert fed.history is None and fed.history_bytes == 0
    with pytest.raises(WithdrawalAborted, match="store_history"):
        _unlearn(fed, model, "federaser")
    # pga without a stored round asks the other sites for one local round: one extra round, nothing stored.
    after, n, logs, notes = _unlearn(fed, model, "pga")
    assert n == 1 + 1 + 2 and _changed(after, model) and any("trained one local round" in x for x in notes)
    assert fed.last_unlearning.history_bytes == 0 and fed.last_unlearning.stores == "nothing"
    # The method itself asks for the history it needs.
    fed2, model2, _ = _trained(tmp_path / "f", method="federaser")
    assert fed2.history is not None and len(fed2.history.rounds) == 2


@pytest.mark.parametrize("fraction", [1.0, 0.3])
def test_federaser_replays_the_stored_rounds_without_the_leaving_client(trained, fraction):
    fed, model, _ = trained
    after, n, logs, notes = _unlearn(fed, model, "federaser", fraction)
    assert n == 2 and [x.phase for x in logs] == ["unlearn", "unlearn"] and _changed(after, model)
    # Whole client: the two others calibrate; partial: the withdrawing site calibrates on its retained rows too.
    assert [x.n_clients for x in logs] == ([2, 2] if fraction == 1.0 else [3, 3])
    cost = fed.last_unlearning
    assert cost.method == "federaser" and cost.rounds == 2 and cost.examples_processed > 0 and cost.bytes > 0
    assert cost.history_bytes == 2 * (1 + CLIENTS) * _model_bytes(model) and "every 2 round(s)" in cost.stores
    assert any("calibration round(s)" in x for x in notes)


def test_federaser_leaves_out_a_site_withdrawn_earlier(trained):
    from unlearn_fl.engine.federation import with_request
    from unlearn_fl.requests import WithdrawalRequest

    fed, model, _ = trained
    earlier = WithdrawalRequest(client_ids=(2,), fraction=1.0)
    req = WithdrawalRequest(client_ids=(0,), fraction=1.0)
    logs, notes = [], []
    fed.unlearn(model, with_request(with_request({}, earlier), req), req, logs, notes, method="federaser")
    assert [x.n_clients for x in logs] == [1, 1]


def test_pga_ascends_from_the_stored_reference_then_trains_without_the_client(trained):
    fed, model, _ = trained
    ex0 = fed.examples_processed
    after, n, logs, notes = _unlearn(fed, model, "pga")
    assert n == 1 + 2 and [x.phase for x in logs] == ["unlearn"] * 3 and _changed(after, model)
    assert logs[0].forget_acc is not None and logs[1].n_clients == 2  # the post rounds: the two other sites
    assert any("stored by the server" in x for x in notes) and any("projected ascent" in x for x in notes)
    cost = fed.last_unlearning
    assert cost.examples_processed == fed.examples_processed - ex0 > 0 and cost.bytes > 0
    assert cost.history_bytes == (1 + CLIENTS) * _model_bytes(model)  # the last round kept for w_ref


def test_scrub_runs_with_its_teacher_and_a_second_isolated_call_gives_the_same_model(trained):
    fed, model, _ = trained
    a, n, logs, _ = _unlearn(fed, model, "scrub", 0.3, isolated=True)
    assert n >= 1 and _changed(a, model) and fed.last_unlearning.history_bytes == 0
    cost = fed.last_unlearning
    assert cost.examples_processed > 0 and cost.bytes > 0
    # The teacher travels beside the model to each of the 3 sites in every round: compared with finetune
    # (same messages otherwise), one model's bytes more per site and round.
    _, _, ft_logs, _ = _unlearn(fed, model, "finetune", 0.3, isolated=True)
    assert len(logs) == len(ft_logs) == 2  # neither stopped early
    assert cost.bytes - fed.last_unlearning.bytes == len(logs) * CLIENTS * _model_bytes(model)
    _unlearn(fed, model, "federaser", isolated=True)  # another method in between leaves no trace
    b, _, _, _ = _unlearn(fed, model, "scrub", 0.3, isolated=True)
    # Equal up to the order in which FedAvg sums the replies (Flower samples the nodes in random order).
    assert torch.allclose(flat_params(a), flat_params(b), atol=1e-6)
    c, _, _, _ = _unlearn(fed, model, "scrub", 0.3)  # not isolated: the round counter, and the sites' seeds, move on
    d, _, _, _ = _unlearn(fed, model, "scrub", 0.3)
    assert not torch.allclose(flat_params(c), flat_params(d), atol=1e-6)


def test_every_train_and_unlearn_reply_counts_the_rows_it_processed(trained):
    fed, model, _ = trained
    # Training: 3 rounds x 1 local epoch over every site's train rows.
    assert fed.examples_processed >= ROUNDS * sum(s["n_train"] for s in fed.sites.values())


def test_a_whole_client_withdrawal_asks_the_retained_sites_for_their_mean_only_when_it_is_read(trained):
    """The paper's objective compares the forget set with the holder's holdout (reference "auto") or with the retained
    rows' mean statistic (reference "retain", or "auto" at a holder without a holdout). The retained sites' mean is
    an extra round trip with the model to every site each round: asked for only when the holder reads it."""
    from unlearn_fl.engine import protocol

    fed, model, _ = trained
    sent: list[str] = []
    send = fed.grid.send_and_receive

    def counting(messages, **kw):
        sent.extend(m.metadata.message_type for m in messages)
        return send(messages, **kw)

    fed.grid.send_and_receive = counting
    n_holdout = fed.sites[0]["n_holdout"]
    try:
        assert fed.sites[0]["n_holdout"] > 0
        a, n, _, _ = _unlearn(fed, model, "marginal", isolated=True)
        assert n >= 1 and protocol.STATS not in sent and protocol.UNLEARN in sent
        bytes_skipped = fed.last_unlearning.bytes
        sent.clear()
        retain, _, _, _ = _unlearn(fed, model, "marginal", method_config={"reference": "retain"}, isolated=True)
        assert sent.count(protocol.STATS) == (CLIENTS - 1) * sent.count(protocol.UNLEARN) // CLIENTS
        assert _changed(retain, a)  # the retained mean is what "retain" compares with
        # As if the holder had no holdout: the mean is sent, and the holder (which does have one) ignores it.
        sent.clear()
        fed.sites[0]["n_holdout"] = 0
        b, _, _, _ = _unlearn(fed, model, "marginal", isolated=True)
        assert protocol.STATS in sent
        assert torch.allclose(flat_params(a), flat_params(b), atol=1e-6)
        assert fed.last_unlearning.bytes > bytes_skipped
    finally:
        fed.grid.send_and_receive = send
        fed.sites[0]["n_holdout"] = n_holdout


# ------------------------------------------------------------------ the product, end to end


def test_simulate_with_federaser_end_to_end(tmp_path):
    p = subprocess.run([sys.executable, "-m", "unlearn_fl.cli", "simulate", "--clients", "3", "--rounds", "3",
                        "--local-epochs", "1", "--method", "federaser", "--withdraw", "1", "--tracking-uri",
                        f"sqlite:///{tmp_path / 'm.db'}", "--out", str(tmp_path / "rep"), "--model-name", "fe", "--quiet",
                        "--seed", "1", "--no-reference"],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(next((tmp_path / "rep").rglob("forgetting_report.json")).read_text())
    assert report["method"] == "federaser"
    cost = report["cost"]
    assert cost["unlearn_rounds"] == 2 and cost["unlearn_bytes"] > 0 and cost["unlearn_seconds"] > 0
    notes = " ".join(report["audit"]["reasons"])
    assert "calibration round(s)" in notes and "erased" in notes  # site 1's stored updates go with it
