"""Is a user model trainable with DP-SGD (Opacus)? Fix what Opacus can fix, refuse the rest up front.

Opacus (1.6) checks a model in two places, neither naming the layer in a
usable way: `opacus.validators.ModuleValidator.validate` runs the validator
registered for the type of each *trainable* submodule (BatchNorm, LSTM, GRU,
MultiheadAttention, InstanceNorm with running stats; its errors carry no
module path: see the "TODO: use module name" in module_validator.py), and
`GradSampleModule.validate`, at wrapping time, refuses any trainable
submodule that has buffers. Every other trainable layer without a
registered grad sampler gets per-example gradients from functorch, so a
custom layer with its own `nn.Parameter` is accepted.

This module runs the same registered validators and the same buffer rule
itself, submodule by submodule, so each problem comes with its module path
(e.g. ``features.1``) without parsing Opacus' messages. It adds three cases
Opacus lets through although they break DP-SGD or fail later: BatchNorm
without trainable parameters (still mixes the examples of a batch),
InstanceNorm tracking running statistics without trainable parameters
(unnoised statistics of the data, shared with the model), and a trainable
`nn.RNN` (no validator, no fixer; it fails at the first backward pass).
"""

from __future__ import annotations

from dataclasses import dataclass

from opacus.utils.module_utils import trainable_modules
from opacus.validators import ModuleValidator
from opacus.validators.errors import ShouldReplaceModuleError
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

__all__ = ["DPModelError", "dp_compatible", "require_dp_compatible"]

_ROOT = "(model)"


class DPModelError(ValueError):
    """A model DP-SGD cannot train; the message is one line: layer path, layer type, reason and fix.

    Attributes: `path` (module path as in `model.named_modules()`, "(model)"
    for the root) and `layer_type` (class name).
    """

    def __init__(self, path: str, layer_type: str, reason: str, fix: str) -> None:
        self.path, self.layer_type = path, layer_type
        message = f"DP-SGD cannot train layer '{path}' ({layer_type}): {reason}; fix: {fix}"
        super().__init__(" ".join(message.split()))


@dataclass(frozen=True)
class _Problem:
    path: str
    layer_type: str
    reason: str
    fix: str
    fixable: bool  # Opacus' ModuleValidator.fix has a fixer for it

    def error(self) -> DPModelError:
        return DPModelError(self.path, self.layer_type, self.reason, self.fix)


def _first_sentence(text: object) -> str:
    return " ".join(str(text).split()).partition(". ")[0].rstrip(".")


def _problems(model: nn.Module) -> list[_Problem]:
    """Every DP-SGD problem of `model`, at most one per module path, in `named_modules()` order."""
    found: dict[str, _Problem] = {}

    def add(path: str, module: nn.Module, reason: str, fix: str, fixable: bool = False) -> None:
        found.setdefault(path, _Problem(path or _ROOT, type(module).__name__, reason, fix, fixable))

    if not model.training:
        add("", model, "the model is in eval mode and Opacus trains in training mode only", "call model.train()")
    trainable = {path for path, _ in trainable_modules(model)}
    for path, module in model.named_modules():
        is_trainable = path in trainable
        validator = ModuleValidator.VALIDATORS.get(type(module)) if is_trainable else None
        for err in validator(module) if validator is not None else []:
            fixable = isinstance(err, ShouldReplaceModuleError) and type(module) in ModuleValidator.FIXERS
            if isinstance(module, _BatchNorm):
                reason = (
                    "BatchNorm normalises each example with statistics of the whole batch, so per-example "
                    "gradients (and their clipping) are undefined"
                )
            else:
                reason = _first_sentence(err)
            if fixable:
                fix = (
                    "build the model through unlearn_fl.accounting.validation.dp_compatible, which replaces the layer"
                    f"{' by GroupNorm' if isinstance(module, _BatchNorm) else ''} (parameter names change, so the"
                    " server and every client must use the same fixed model factory)"
                )
            elif isinstance(module, _InstanceNorm):
                fix = "construct it with track_running_stats=False"
            else:
                fix = "replace the layer with one Opacus supports (see opacus.validators)"
            add(path, module, reason, fix, fixable)
        if is_trainable and any(True for _ in module.buffers()):
            # Opacus' GradSampleModule.validate rule (a trainable module with buffers, recursively).
            buffers = ", ".join(name for name, _ in module.named_buffers())
            add(
                path,
                module,
                f"it has trainable parameters and buffers ({buffers}); Opacus refuses buffers, which are updated "
                "from the private batch without noise",
                "construct it with track_running_stats=False"
                if isinstance(module, (_BatchNorm, _InstanceNorm))
                else "remove its buffers, or freeze its parameters (requires_grad=False)",
            )
        if isinstance(module, _BatchNorm):
            add(
                path,
                module,
                "BatchNorm normalises each example with statistics of the whole batch (Opacus misses it when it has "
                "no trainable parameters)",
                "replace it by nn.GroupNorm(num_groups, num_features, affine=False)",
            )
        elif isinstance(module, _InstanceNorm) and module.track_running_stats:
            add(
                path,
                module,
                "its running statistics are computed from the private batch and kept without noise (Opacus misses "
                "it when it has no trainable parameters)",
                "construct it with track_running_stats=False",
            )
        elif type(module) is nn.RNN and is_trainable:
            add(
                path,
                module,
                "Opacus computes no per-example gradients for nn.RNN and has no automatic fix for it",
                "use opacus.layers.DPRNN, a drop-in replacement",
            )
    return list(found.values())


def _changes(before: nn.Module, after: nn.Module) -> list[str]:
    """One line per module of `before` replaced (other type) or reconfigured (other extra_repr) in `after`."""
    after_modules = dict(after.named_modules())
    replaced: list[str] = []
    lines: list[str] = []
    for path, old in before.named_modules():
        if any(path.startswith(prefix + ".") or prefix == "" for prefix in replaced):
            continue  # inside a replaced module
        new = after_modules.get(path)
        if new is None:
            continue
        label = path or _ROOT
        if type(new) is not type(old):
            lines.append(f"{label}: {type(old).__name__} -> {type(new).__name__}")
            replaced.append(path)
        elif new.extra_repr() != old.extra_repr():
            was, now = f"{type(old).__name__}({old.extra_repr()})", f"{type(new).__name__}({new.extra_repr()})"
            lines.append(f"{label}: {was} -> {now}")
    return lines


def require_dp_compatible(model: nn.Module) -> None:
    """Raise `DPModelError` (one line, naming the first offending layer) unless DP-SGD can train `model` as is."""
    problems = _problems(model)
    if problems:
        raise problems[0].error()


def dp_compatible(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """`model` made trainable by DP-SGD: (model, []) if it already is, else (fixed copy, changes).

    The copy comes from `opacus.validators.ModuleValidator.fix` (BatchNorm ->
    GroupNorm with gcd(32, C) groups, LSTM/GRU/MultiheadAttention -> Opacus'
    DP versions, InstanceNorm running stats off); `changes` has one line per
    replaced layer, e.g. "features.1: BatchNorm2d -> GroupNorm". `model`
    itself is left unchanged. The fix depends only on the architecture, so
    two fresh instances of one factory give the same state_dict keys and
    shapes; but they are not those of the unfixed model, so apply this to the
    model factory, on the server and on every client alike.

    Raises `DPModelError` (one line: layer path, type, reason, fix) for the
    first layer still unsupported after fixing, e.g. a trainable layer with
    buffers, an nn.RNN, a BatchNorm without affine parameters, or a model in
    eval mode.
    """
    problems = _problems(model)
    if not problems:
        return model, []
    if not any(p.fixable for p in problems):
        raise problems[0].error()
    fixed = ModuleValidator.fix(model)
    remaining = _problems(fixed)
    if remaining:
        raise remaining[0].error()
    return fixed, _changes(model, fixed)
