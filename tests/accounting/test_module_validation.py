"""dp_compatible / require_dp_compatible on real models with real Opacus: fix, determinism, one-line refusals."""

from __future__ import annotations

import pytest
import torch
from opacus import GradSampleModule
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearn_fl.accounting.dp_sgd import dp_train_epochs, make_dp_sgd, spent
from unlearn_fl.accounting.validation import DPModelError, dp_compatible, require_dp_compatible

pytestmark = pytest.mark.usefixtures("quiet_opacus")


# Module-level classes: ModuleValidator.fix clones through torch.save, which cannot pickle local classes.
class BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 12, batch_first=True)
        self.head = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 8, 8): 8 steps of 8 features
        out, _ = self.rnn(x.squeeze(1))
        return self.head(out[:, -1])


class Counter(nn.Module):
    """A custom trainable layer with a buffer: Opacus' GradSampleModule refuses it, no fixer exists."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(d))
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * self.scale


class Scale(nn.Module):
    """A custom trainable layer without buffers: Opacus computes its per-example gradients with functorch."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class _Wrapper(nn.Module):
    """Linear -> `layer` -> Linear(6, 2), with `layer` at module path 'body.block.1'."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.body = nn.Module()
        self.body.block = nn.Sequential(nn.Linear(6, 6), layer)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body.block(x))


def images(n: int = 240, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 1, 8, 8, generator=g)
    y = (X[:, 0, :4].mean((1, 2)) > X[:, 0, 4:].mean((1, 2))).long()
    return X, y


def assert_one_line_naming(err: pytest.ExceptionInfo, path: str, layer_type: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg and f"'{path}'" in msg and layer_type in msg and "fix:" in msg
    assert err.value.path == path and err.value.layer_type == layer_type
    return msg


def test_batchnorm_is_fixed_and_trains_under_dp_sgd():
    torch.manual_seed(0)
    model = BNNet()
    assert ModuleValidator.validate(model)  # Opacus itself objects
    fixed, changes = dp_compatible(model)
    assert changes == ["features.1: BatchNorm2d -> GroupNorm"]
    assert isinstance(model.features[1], nn.BatchNorm2d)  # the input model is left alone
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fixed.modules())
    assert ModuleValidator.validate(fixed) == [] and GradSampleModule.validate(fixed) == []
    require_dp_compatible(fixed)

    X, y = images()
    opt = torch.optim.SGD(fixed.parameters(), lr=0.5)
    dp_model, dp_opt, dp_loader, engine = make_dp_sgd(
        fixed, opt, DataLoader(TensorDataset(X, y), batch_size=40), noise_multiplier=1.0, max_grad_norm=1.0, seed=0
    )
    losses = dp_train_epochs(dp_model, dp_opt, dp_loader, epochs=2)
    assert len(losses) == 2 and all(loss == loss for loss in losses)
    assert spent(engine, 1e-5).steps == 2 * len(dp_loader)


@pytest.mark.parametrize("factory", [BNNet, LSTMNet], ids=["batchnorm", "lstm"])
def test_fix_is_deterministic_per_architecture(factory):
    torch.manual_seed(1)
    a, changes_a = dp_compatible(factory())
    torch.manual_seed(2)  # other weights, same architecture
    b, changes_b = dp_compatible(factory())
    assert changes_a == changes_b and changes_a
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert [v.shape for v in sa.values()] == [v.shape for v in sb.values()]
    assert a(torch.rand(3, 1, 8, 8)).shape == (3, 10)


def test_lstm_fixed_model_trains_under_dp_sgd():
    torch.manual_seed(0)
    fixed, changes = dp_compatible(LSTMNet())
    assert changes == ["rnn: LSTM -> DPLSTM"]
    X, y = images(120)
    opt = torch.optim.SGD(fixed.parameters(), lr=0.5)
    dp_model, dp_opt, dp_loader, _ = make_dp_sgd(
        fixed, opt, DataLoader(TensorDataset(X, y), batch_size=40), noise_multiplier=1.0, max_grad_norm=1.0, seed=0
    )
    assert all(loss == loss for loss in dp_train_epochs(dp_model, dp_opt, dp_loader, epochs=1))


def test_trainable_layer_with_buffer_is_refused():
    model = _Wrapper(Counter(6))
    assert ModuleValidator.validate(model) == []  # the validator lets it through ...
    with pytest.raises(NotImplementedError, match="buffers"):
        GradSampleModule(model)  # ... wrapping fails, with the path buried in a list repr
    with pytest.raises(DPModelError) as err:
        dp_compatible(model)
    msg = assert_one_line_naming(err, "body.block.1", "Counter")
    assert "calls" in msg


def test_instance_norm_with_running_stats_is_not_fixable():
    # Opacus' fixer sets track_running_stats=False but keeps the running_* buffers, which GradSampleModule refuses.
    norm = nn.InstanceNorm1d(2, affine=True, track_running_stats=True)
    model = _Wrapper(nn.Sequential(nn.Unflatten(1, (2, 3)), norm, nn.Flatten()))
    assert ModuleValidator.validate(ModuleValidator.fix(model)) == []
    with pytest.raises(NotImplementedError):
        GradSampleModule(ModuleValidator.fix(model))
    with pytest.raises(DPModelError) as err:
        dp_compatible(model)
    assert_one_line_naming(err, "body.block.1.1", "InstanceNorm1d")


@pytest.mark.parametrize(
    ("layer", "path", "layer_type"),
    [
        (nn.BatchNorm1d(6, affine=False), "body.block.1", "BatchNorm1d"),  # Opacus misses it: no trainable parameters
        (nn.Sequential(nn.Unflatten(1, (2, 3)), nn.InstanceNorm1d(2, track_running_stats=True), nn.Flatten()),
         "body.block.1.1", "InstanceNorm1d"),
    ],
    ids=["batchnorm-no-affine", "instancenorm-running-stats-no-affine"],
)
def test_parameterless_norms_opacus_misses_are_refused(layer, path, layer_type):
    model = _Wrapper(layer)
    assert ModuleValidator.validate(model) == [] and GradSampleModule.validate(model) == []
    with pytest.raises(DPModelError) as err:
        dp_compatible(model)
    assert_one_line_naming(err, path, layer_type)


def test_rnn_and_eval_mode_are_refused():
    class RNNNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.RNN(8, 4, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0][:, -1]

    with pytest.raises(DPModelError) as err:
        dp_compatible(RNNNet())
    assert "DPRNN" in assert_one_line_naming(err, "rnn", "RNN")
    with pytest.raises(DPModelError) as err:
        dp_compatible(_Wrapper(nn.ReLU()).eval())
    assert "model.train()" in assert_one_line_naming(err, "(model)", "_Wrapper")


def test_custom_parameter_layer_is_accepted():
    model = _Wrapper(Scale(6))  # functorch gives its per-example gradients
    assert dp_compatible(model) == (model, [])


def test_make_dp_sgd_refuses_an_unfixed_model():
    model = BNNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    X, y = images(40)
    with pytest.raises(DPModelError) as err:
        make_dp_sgd(model, opt, DataLoader(TensorDataset(X, y), batch_size=10), noise_multiplier=1.0, max_grad_norm=1.0)
    msg = assert_one_line_naming(err, "features.1", "BatchNorm2d")
    assert "dp_compatible" in msg and "GroupNorm" in msg
    assert isinstance(err.value, ValueError)
