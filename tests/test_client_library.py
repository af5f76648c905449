"""The client library called directly with real Flower messages, as a user's ClientApp would call it."""

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearn_fl.accounting.validation import DPModelError
from unlearn_fl.config import DPSettings, UnlearningSettings
from unlearn_fl.engine.client import LocalData, UnlearningClient, as_split
from unlearn_fl.engine.protocol import ARRAYS, CONFIG, METRICS, Withdrawal, encode_withdrawals
from unlearn_fl.engine.server import UnlearningStrategy


class BNNet(nn.Module):
    """A user's CNN with BatchNorm: Opacus cannot compute per-example gradients through it."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.head(self.features(x))


class Counter(nn.Module):
    """A trainable layer holding a buffer: no Opacus fixer exists for it."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(64))
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        return x.flatten(1) * self.scale


@pytest.fixture(autouse=True)
def task_identity():
    """What Flower sets in a ServerApp/ClientApp process before messages are made (run 1, node 100)."""
    from flwr.supercore.task_identity import TaskIdentity

    before = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = before


def digits(n=120, seed=0):
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = np.random.default_rng(seed).permutation(len(d.target))[:n]
    return TensorDataset(torch.tensor(d.images[idx] / 16.0, dtype=torch.float32).unsqueeze(1), torch.tensor(d.target[idx]))


def context(k=0):
    return Context(run_id=1, node_id=100 + k, node_config={"partition-id": k, "num-partitions": 2}, state=RecordDict(),
                   run_config={})


def message(model, message_type="train", **config):
    base = {"lr": 0.01, "local-epochs": 1, "batch-size": 16, "seed": 0, "withdrawals": "", "active-request": ""}
    content = RecordDict({ARRAYS: ArrayRecord({k: v.detach() for k, v in model.state_dict().items()}),
                          CONFIG: ConfigRecord({**base, **config})})
    return Message(content=content, dst_node_id=100, message_type=message_type)


def test_batchnorm_model_is_fixed_alike_on_server_and_site_and_trains_under_dp_sgd(quiet_opacus):
    server = UnlearningStrategy(model_fn=BNNet, settings=UnlearningSettings(dp=DPSettings(noise_multiplier=1.0)))
    model = server.make_model()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    client = UnlearningClient(model_fn=BNNet, data_fn=lambda ctx: LocalData(train=digits(), holdout=digits(40, 1)))
    reply = client.train(message(model, **{"dp-noise": 1.0, "dp-clip": 1.0}), context())
    assert set(reply.content[ARRAYS].keys()) == set(model.state_dict().keys())
    assert reply.content[METRICS]["dp-steps"] > 0 and reply.content[METRICS]["num-examples"] == 120


def test_a_module_opacus_cannot_fix_is_refused_with_one_line_naming_the_layer():
    net = lambda: nn.Sequential(Counter(), nn.Linear(64, 10))  # noqa: E731
    server = UnlearningStrategy(model_fn=net, settings=UnlearningSettings(dp=DPSettings(noise_multiplier=1.0)))
    with pytest.raises(DPModelError) as e:
        server.make_model()
    assert "\n" not in str(e.value) and "layer '0' (Counter)" in str(e.value)


def test_withdrawn_rows_are_never_trained_on_and_the_forget_set_is_the_requests_rows():
    client = UnlearningClient(model_fn=lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),
                              data_fn=lambda ctx: LocalData(train=DataLoader(digits(), batch_size=7), holdout=digits(40, 1)))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    w = encode_withdrawals({0: [Withdrawal("wr-a", 0.25)]})
    reply = client.train(message(model, withdrawals=w), context())
    assert reply.content[METRICS]["num-examples"] == 90  # 120 rows, 30 withdrawn
    counted = client.count(message(model, "query.unlearn_count", withdrawals=w, **{"active-request": "wr-a"}), context())
    assert counted.content[METRICS]["forget-n"] == 30
    evaluated = client.evaluate(message(model, "evaluate.unlearn", withdrawals=w, **{"active-request": "wr-a"}), context())
    m = evaluated.content[METRICS]
    assert (m["retain-n"], m["forget-n"], m["holdout-n"]) == (90, 30, 40)


def test_datasets_loaders_and_splits_materialise_alike():
    ds = digits(50)
    a, b = as_split(ds), as_split(DataLoader(ds, batch_size=8, shuffle=False))
    assert a.X.shape == (50, 1, 8, 8) and a.y.dtype == np.int64
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, as_split(a).y)


def test_record_ids_must_be_one_per_row():
    client = UnlearningClient(model_fn=lambda: nn.Linear(64, 10),
                              data_fn=lambda ctx: LocalData(train=digits(10), record_ids=["a"] * 10))
    with pytest.raises(ValueError, match="record_ids repeat"):
        client.site(context())


def test_a_record_request_naming_rows_an_earlier_request_erased_is_refused_without_ids(tmp_path):
    from unlearn_fl.sites import ErasureStore

    ds = digits(30)
    ids = [f"rec-{i}" for i in range(30)]
    store = ErasureStore(tmp_path / "erasures")
    store.put("wr-first", ids[:3], "s1")
    store.put("wr-second", ids[2:5], "s2")  # rec-2 was erased by wr-first already
    client = UnlearningClient(model_fn=lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),
                              data_fn=lambda ctx: LocalData(train=ds, record_ids=ids, erasure_dir=tmp_path / "erasures"))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    first = encode_withdrawals({0: [Withdrawal("wr-first", 1.0, records=True)]})
    ok = client.count(message(model, "query.unlearn_count", withdrawals=first, **{"active-request": "wr-first"}), context())
    assert ok.content[METRICS]["forget-n"] == 3
    both = encode_withdrawals({0: [Withdrawal("wr-first", 1.0, records=True), Withdrawal("wr-second", 1.0, records=True)]})
    with pytest.raises(ValueError) as e:
        client.count(message(model, "query.unlearn_count", withdrawals=both, **{"active-request": "wr-second"}), context())
    assert "1 record ids were already erased" in str(e.value) and "rec-" not in str(e.value)
