"""Bad input, generated (hypothesis): the pydantic boundaries and the command line.

(a) Every settings, request, method-config and report model refuses invalid values with a pydantic
    `ValidationError`, never another exception: wrong types, numbers out of range, NaN and infinities,
    unknown keys, values outside a field's choices, empty lists where one item is needed, huge and
    non-UTF-8 text (lone surrogates: what Python makes of undecodable bytes in argv or file names).
    The fields and their bounds are read from the models themselves, so a field added later is covered.
(b) Through `unlearn_fl.cli.main([...])`, in-process: exit code 2, exactly one line on stderr, no
    traceback, and no file created, for every flag checked before training. The federation and the
    feature job are replaced by a sentinel, so a bad value that slips through the checks shows up as
    "reached the run" instead of starting one.

stderr is captured with `contextlib.redirect_stderr(io.StringIO())` rather than capsys: pytest's
capture stream encodes strictly and would fail on a lone surrogate that Python's own stderr
(errors='backslashreplace') prints fine.

Known failures are kept as explicit `@example`s (see the report of the task that added this file).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import signal
import tempfile
import types
import typing
from pathlib import Path

import annotated_types as at
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from unlearn_fl.accounting.results import AccountingBlock
from unlearn_fl.audit.results import AttackResult, AuditPower, EpsilonEstimate, ModelAudit, RetainedExposure, RocCurve, VerdictResult
from unlearn_fl.config import AuditSettings, DPSettings, RecordScope, RunConfig, UnlearningSettings, WithdrawalPlan
from unlearn_fl.data import DataSpec
from unlearn_fl.feature.run import FeatureRunConfig
from unlearn_fl.methods import METHODS
from unlearn_fl.report import schema as report_schema
from unlearn_fl.requests import WithdrawalRequest

FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# ------------------------------------------------------------------ the models and a valid instance of each

SETTINGS_MODELS = [UnlearningSettings, RunConfig, AuditSettings, DPSettings, RecordScope, WithdrawalPlan, DataSpec,
                   WithdrawalRequest, FeatureRunConfig] + sorted({m.config_cls for m in METHODS.values()}, key=lambda c: c.__name__)
REPORT_MODELS = [report_schema.ForgettingReport, report_schema.RequestBlock, report_schema.ModelBlock,
                 report_schema.UtilityBlock, report_schema.AuditBlock, report_schema.CostBlock, report_schema.ParetoPoint,
                 report_schema.FeatureBlock, report_schema.RoundLog, AttackResult, RocCurve, EpsilonEstimate, ModelAudit,
                 AuditPower, RetainedExposure, VerdictResult, AccountingBlock]
BASE_OVERRIDES = {WithdrawalRequest: {"client_ids": (1,)}, WithdrawalPlan: {"client_ids": (0,)},
                  RecordScope: {"count": 3, "digest": "0" * 64}}


def _unwrap(annotation):
    """(the annotation without None, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), type(None) in typing.get_args(annotation)
    return annotation, False


def _bounds(field) -> tuple[float | None, bool, float | None, bool]:
    """(lower, lower is open, upper, upper is open) from a field's annotated-types metadata."""
    lo = hi = None
    lo_open = hi_open = False
    for m in field.metadata:
        if isinstance(m, at.Gt):
            lo, lo_open = m.gt, True
        elif isinstance(m, at.Ge):
            lo, lo_open = m.ge, False
        elif isinstance(m, at.Lt):
            hi, hi_open = m.lt, True
        elif isinstance(m, at.Le):
            hi, hi_open = m.le, False
    return lo, lo_open, hi, hi_open


def _valid(annotation, field=None):
    """A valid value of a required field (models are filled recursively)."""
    ann, _ = _unwrap(annotation)
    origin = typing.get_origin(ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return _base(ann)
    if origin is typing.Literal:
        return typing.get_args(ann)[0]
    if ann is bool:
        return True
    if ann in (int, float):
        lo, lo_open, hi, _ = _bounds(field) if field is not None else (None, False, None, False)
        v = (lo + (1 if lo_open else 0)) if lo is not None else (hi - 1 if hi is not None else 1)
        return ann(v if hi is None or v <= hi else (lo + hi) / 2)
    if ann is str:
        return "x" * 16
    if origin is tuple and typing.get_args(ann) and typing.get_args(ann)[-1] is not Ellipsis:
        return tuple(_valid(a) for a in typing.get_args(ann))
    if origin in (list, tuple):
        return origin()
    if origin is dict or ann is dict:
        return {}
    raise NotImplementedError(f"no valid value for {annotation}")


def _base(model) -> dict:
    """Keyword arguments that make a valid instance: every required field, plus BASE_OVERRIDES."""
    kw = {n: _valid(f.annotation, f) for n, f in model.model_fields.items() if f.is_required()}
    return {**kw, **BASE_OVERRIDES.get(model, {})}


@pytest.mark.parametrize("model", SETTINGS_MODELS + REPORT_MODELS, ids=lambda m: m.__name__)
def test_every_model_has_a_valid_base(model):
    model(**_base(model))


# ------------------------------------------------------------------ invalid values, by kind

BOOL_WORDS = {"0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes"}


def _not_a_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return True
    return False


SURROGATES = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=8)
"""Lone surrogates: what Python makes of undecodable bytes (argv, file names, surrogateescape)."""
HUGE = st.builds(lambda c, n: c * n, st.characters(blacklist_categories=("Cs",)), st.integers(10_000, 200_000))
ODD_TEXT = st.one_of(st.text(max_size=40), SURROGATES, HUGE, st.sampled_from(["", " ", "\x00", "\ufffd", "\u202e", "nan"]))
NON_NUMERIC_TEXT = st.one_of(st.text(max_size=30), SURROGATES, HUGE).filter(_not_a_number)
CONTAINERS = st.one_of(st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


def _outside(field, integer: bool) -> st.SearchStrategy:
    """Finite numbers outside a field's bounds (nothing when it has none; the bounds of int fields are integers)."""
    lo, lo_open, hi, hi_open = _bounds(field)
    parts = []
    if integer:
        if lo is not None:
            parts.append(st.integers(max_value=int(lo) if lo_open else int(lo) - 1))
        if hi is not None:
            parts.append(st.integers(min_value=int(hi) if hi_open else int(hi) + 1))
    else:
        finite = dict(allow_nan=False, allow_infinity=False)
        if lo is not None:
            parts.append(st.floats(max_value=lo, exclude_max=not lo_open, **finite).filter(lambda x: x < lo or (lo_open and x == lo)))
        if hi is not None:
            parts.append(st.floats(min_value=hi, exclude_min=not hi_open, **finite).filter(lambda x: x > hi or (hi_open and x == hi)))
    return st.one_of(parts) if parts else st.nothing()


def _invalid(field) -> st.SearchStrategy:
    """Values a field must refuse: wrong types, finite numbers out of range, values outside its choices.

    Non-finite numbers are left to `test_numbers_no_run_can_use_are_refused` (known failures)."""
    ann, optional = _unwrap(field.annotation)
    origin = typing.get_origin(ann)
    none = st.nothing() if optional else st.none()
    if ann is int:
        return st.one_of(none, NON_NUMERIC_TEXT, CONTAINERS, st.floats(allow_nan=False, allow_infinity=False).filter(
            lambda x: x != int(x)), st.sampled_from([math.nan, math.inf]), _outside(field, True))
    if ann is float:
        lo, _, hi, _ = _bounds(field)
        bounded_nan = st.just(math.nan) if (lo is not None or hi is not None) else st.nothing()
        return st.one_of(none, NON_NUMERIC_TEXT, CONTAINERS, _outside(field, False), bounded_nan)
    if ann is bool:
        return st.one_of(none, CONTAINERS, st.floats(0.01, 0.99), st.text(max_size=8).filter(lambda s: s.strip().lower() not in BOOL_WORDS))
    if origin is typing.Literal:
        choices = {str(c) for c in typing.get_args(ann)}
        return st.one_of(none, st.integers(), CONTAINERS, ODD_TEXT.filter(lambda s: s not in choices))
    if ann is str:
        pattern = next((m.pattern for m in field.metadata if getattr(m, "pattern", None)), None)
        min_len = next((m.min_length for m in field.metadata if isinstance(m, at.MinLen)), 0)
        bad_text = st.nothing()
        if pattern is not None:
            bad_text = ODD_TEXT.filter(lambda s: re.search(pattern, s) is None)
        elif min_len:
            bad_text = st.text(max_size=min_len - 1)
        return st.one_of(none, st.integers(), st.floats(), CONTAINERS, bad_text)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return st.one_of(none, st.integers(), NON_NUMERIC_TEXT, st.lists(st.integers(), min_size=1, max_size=3))
    if origin in (list, tuple):
        min_len = next((m.min_length for m in field.metadata if isinstance(m, at.MinLen)), 0)
        empty = st.just(origin()) if min_len else st.nothing()
        item = typing.get_args(ann)[0] if typing.get_args(ann) else None
        bad_items = st.lists(NON_NUMERIC_TEXT, min_size=1, max_size=3) if item in (int, float) else st.nothing()
        return st.one_of(none, st.integers(), st.floats(), st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2),
                         empty, bad_items)
    if origin is dict or ann is dict:
        return st.one_of(none, st.integers(), st.text(max_size=10), st.lists(st.integers(), min_size=1, max_size=3))
    return st.one_of(none, CONTAINERS)  # Path and the like: no containers


def _refused(model, name, value) -> None:
    kw = {**_base(model), name: value}
    with pytest.raises(ValidationError):
        model(**kw)


def _draw_bad(model, data) -> tuple[str, object]:
    name = data.draw(st.sampled_from(sorted(model.model_fields)), label="field")
    return name, data.draw(_invalid(model.model_fields[name]), label="value")


@FAST
@pytest.mark.parametrize("model", SETTINGS_MODELS, ids=lambda m: m.__name__)
@given(data=st.data())
def test_settings_requests_and_method_configs_refuse_invalid_values(model, data):
    """Wrong types, finite numbers out of range, NaN where a bound applies, values outside a field's choices,
    empty lists where an item is needed, huge and non-UTF-8 text where a pattern applies."""
    _refused(model, *_draw_bad(model, data))


@FAST
@pytest.mark.parametrize("model", REPORT_MODELS, ids=lambda m: m.__name__)
@given(data=st.data())
def test_report_blocks_refuse_invalid_values(model, data):
    _refused(model, *_draw_bad(model, data))


KEY = st.one_of(st.text(min_size=1, max_size=30), SURROGATES, HUGE)


@FAST
@given(model=st.sampled_from(SETTINGS_MODELS + REPORT_MODELS), key=KEY, value=st.one_of(st.integers(), st.text(max_size=5), st.none()))
def test_unknown_keys_are_refused(model, key, value):
    if key in model.model_fields:
        return
    with pytest.raises(ValidationError):
        model(**{**_base(model), key: value})


JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10), SURROGATES),
                       lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3), max_leaves=8)


@FAST
@pytest.mark.parametrize("model", SETTINGS_MODELS + REPORT_MODELS, ids=lambda m: m.__name__)
@given(data=st.data())
def test_arbitrary_input_is_valid_or_a_validation_error(model, data):
    """Fuzz: the model's own field names (and others) mapped to arbitrary JSON-like values: nothing but ValidationError."""
    names = st.one_of(st.sampled_from(sorted(model.model_fields)), st.text(max_size=8))
    kw = data.draw(st.dictionaries(names, JSONISH, max_size=6), label="kwargs")
    with contextlib.suppress(ValidationError):
        model(**{**_base(model), **kw})


@FAST
@given(site_files=JSONISH)
@example(site_files=5)     # KNOWN BUG: TypeError "object of type 'int' has no len()" from RunConfig._clients_from_data
@example(site_files=True)  # KNOWN BUG: same
def test_run_config_site_files_of_any_type_is_valid_or_a_validation_error(site_files):
    with contextlib.suppress(ValidationError):
        RunConfig(site_files=site_files)


@FAST
@given(config=st.dictionaries(st.one_of(st.integers(), st.text(max_size=12), st.none(), st.floats()), JSONISH, min_size=1, max_size=3))
@example(config={1: 2})  # KNOWN BUG: TypeError "keywords must be strings", not a ValidationError
def test_method_config_of_any_shape_is_valid_or_a_validation_error(config):
    """`method_config` is handed to the method's config as keywords: a non-string key must be a ValidationError."""
    with contextlib.suppress(ValidationError):
        UnlearningSettings(method_config=config)


# ------------------------------------------------------------------ known failures: numbers no run can use


def _numeric_fields(models) -> list[tuple[type, str, type]]:
    return [(m, n, _unwrap(f.annotation)[0]) for m in models for n, f in m.model_fields.items()
            if _unwrap(f.annotation)[0] in (int, float)]


TRAVELLING_INTS = {"seed", "batch_size"}
"""Int fields of the settings that reach the sites in a Flower ConfigRecord (sint64) or numpy/torch seeding (uint64)."""


def _unusable(case) -> st.SearchStrategy:
    """For a float field: ±inf and NaN. For a seed: negatives (numpy's and scikit-learn's generators refuse them);
    for a seed or the batch size: integers beyond sint64 (Flower's ConfigRecord, torch.manual_seed)."""
    model, name, kind = case
    if kind is float:
        values = st.sampled_from([math.inf, -math.inf, math.nan])
    else:
        values = st.one_of(st.integers(max_value=-1) if name == "seed" else st.nothing(),
                           st.integers(min_value=2 ** 63) if name in TRAVELLING_INTS else st.nothing())
    return st.tuples(st.just(model), st.just(name), values)


MARGINAL, GRADIENT_ASCENT = METHODS["marginal"].config_cls, METHODS["gradient-ascent"].config_cls


@FAST
@given(case=st.sampled_from([c for c in _numeric_fields(SETTINGS_MODELS) if (c[2] is float or c[1] in TRAVELLING_INTS)
                             and c[:2] != (WithdrawalPlan, "fraction")]).flatmap(_unusable))
@example(case=(UnlearningSettings, "lr", math.inf))           # KNOWN BUG: accepted; `simulate --lr inf` starts a run
@example(case=(UnlearningSettings, "proximal_mu", math.inf))  # KNOWN BUG: accepted
@example(case=(DPSettings, "noise_multiplier", math.inf))     # KNOWN BUG: accepted
@example(case=(DPSettings, "max_grad_norm", math.inf))        # KNOWN BUG: accepted
@example(case=(AuditSettings, "epsilon_target", math.inf))    # KNOWN BUG: accepted
@example(case=(DataSpec, "alpha", math.inf))                  # KNOWN BUG: accepted, then DataSpec's own JSON round trip fails
@example(case=(MARGINAL, "gamma", math.inf))                  # KNOWN BUG: accepted
@example(case=(MARGINAL, "stop_margin", math.nan))            # KNOWN BUG: accepted (the field has no bound at all)
@example(case=(GRADIENT_ASCENT, "ceiling", math.inf))         # KNOWN BUG: accepted
@example(case=(UnlearningSettings, "seed", -1))               # KNOWN BUG: accepted; the sites' numpy generators refuse it mid-run
@example(case=(UnlearningSettings, "batch_size", 2 ** 70))    # KNOWN BUG: accepted; no sint64 for it in Flower's ConfigRecord
def test_numbers_no_run_can_use_are_refused(case):
    """Every float field of the settings, requests and method configs refuses ±inf and NaN; seeds refuse negative
    numbers; seeds and the batch size refuse integers beyond sint64."""
    _refused(*case)


@FAST
@given(fraction=st.one_of(st.sampled_from([math.inf, -math.inf, math.nan, 0.0]), st.floats(max_value=0.0, allow_nan=False),
                          st.floats(min_value=1.0, exclude_min=True)))
def test_a_planned_withdrawal_refuses_fractions_outside_0_1(fraction):
    """A plan's fraction is checked where the plan is used (UnlearningSettings), not in WithdrawalPlan itself."""
    with pytest.raises(ValidationError):
        UnlearningSettings(withdrawals=[WithdrawalPlan(client_ids=(0,), fraction=fraction)])


@FAST
@given(hidden=st.lists(st.integers(max_value=0), min_size=1, max_size=3).map(tuple))
@example(hidden=(0,))   # KNOWN BUG: accepted by RunConfig (only the CLI's parse_hidden refuses it)
@example(hidden=(-3,))  # KNOWN BUG: same
def test_layer_sizes_must_be_positive(hidden):
    _refused(RunConfig, "hidden", hidden)


# ------------------------------------------------------------------ known failure: a valid report that cannot be read back

FLOATS = st.floats()  # NaN and infinities included


@FAST
@given(acc=FLOATS, auc=FLOATS, attack_auc=FLOATS, epsilon=FLOATS, exposure=FLOATS)
@example(acc=math.nan, auc=0.5, attack_auc=0.5, epsilon=0.0, exposure=0.5)  # regression: was written as null, unreadable
@example(acc=0.9, auc=0.5, attack_auc=math.nan, epsilon=0.0, exposure=0.5)  # KNOWN BUG: nested audit blocks keep NaN -> null
@example(acc=0.9, auc=0.5, attack_auc=0.5, epsilon=math.inf, exposure=0.5)  # KNOWN BUG: same for the empirical epsilon
@example(acc=0.9, auc=0.5, attack_auc=0.5, epsilon=0.0, exposure=math.nan)  # KNOWN BUG: same for a retained site's exposure
def test_a_report_that_validates_survives_its_own_json(acc, auc, attack_auc, epsilon, exposure):
    """A report the schema accepts is one `unlearn-fl report` can load again (JSON has no NaN or infinity),
    nested audit results (audit/results.py) included."""
    S = report_schema
    try:
        after = ModelAudit(attacks=[AttackResult(attack="loss-threshold", auc=attack_auc, n_members=3, n_nonmembers=4)],
                           epsilon=EpsilonEstimate(epsilon_lower=epsilon, delta=1e-5, confidence=0.95))
        exposed = RetainedExposure(client=0, auc_before=exposure, auc_after=0.5, n_members=3, n_nonmembers=4, resolution=0.1,
                                   increased=False)
        r = S.ForgettingReport(request=S.RequestBlock(request_id="wr-1", kind="data", n_forget=3), method="marginal",
                               model=S.ModelBlock(name="m"),
                               utility=S.UtilityBlock(test_acc_before=0.9, test_acc_after=acc, retain_acc_after=0.9,
                                                      forget_acc_before=0.9, forget_acc_after=0.9),
                               audit=S.AuditBlock(mia_auc_before=0.5, mia_auc_after=auc, delta=1e-5, verdict="inconclusive",
                                                  after=after, retained_exposure=[exposed]))
    except ValidationError:
        return
    again = S.ForgettingReport.model_validate_json(r.to_json())
    assert again.digest() == r.digest()


# ------------------------------------------------------------------ the command line


class Reached(RuntimeError):
    """The bad input passed every check: a run would have started."""


@pytest.fixture
def no_runs(monkeypatch):
    """The federation and the feature job replaced by a sentinel.

    `feature` fits through `run_feature_fit` (central) or a Flower simulation (`--clients N`); both are replaced, as
    is the older `run_feature` entry point."""
    import flwr.simulation

    from unlearn_fl import cli
    from unlearn_fl.feature import run as feature_run

    def sentinel(*_, **__):
        raise Reached("reached the run")

    monkeypatch.setattr(cli, "run_simulation_job", sentinel)
    monkeypatch.setattr(feature_run, "run_feature", sentinel)
    monkeypatch.setattr(feature_run, "run_feature_fit", sentinel)
    monkeypatch.setattr(flwr.simulation, "run_simulation", sentinel)  # `feature --clients N` (cli._federated_feature)


def cli_run(argv: list[str]) -> tuple[object, str, list[str]]:
    """main(argv) in a fresh empty working folder: (exit code, stderr, files created there).

    Restores what `simulate` changes in the process (SIGTERM handler, logger levels, environment)."""
    from unlearn_fl import cli

    env, sigterm = dict(os.environ), signal.getsignal(signal.SIGTERM)
    levels = {n: logging.getLogger(n).level for n in ("flwr", "mlflow", "alembic")}
    err = io.StringIO()
    with tempfile.TemporaryDirectory() as d, contextlib.chdir(d):
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = cli.main(argv)
                except SystemExit as e:  # argparse's own usage errors
                    code = e.code
                except Reached:
                    code = "reached the run"
        finally:
            signal.signal(signal.SIGTERM, sigterm)
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)
            os.environ.clear()
            os.environ.update(env)
        created = sorted(str(p.relative_to(d)) for p in Path(d).rglob("*"))
    return code, err.getvalue(), created


def assert_refused(argv: list[str], names: tuple[str, ...] = ()) -> None:
    code, err, created = cli_run(argv)
    shown = ascii(argv)[:300]
    assert code == 2, f"{shown}: exit {code!r}, stderr {ascii(err)[:300]}"
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, f"{shown}: stderr is not one line: {ascii(err)[:500]}"
    assert not created, f"{shown}: wrote {created[:5]}"
    if names:
        assert any(n in lines[0] for n in names), f"{shown}: the message does not name {names}: {ascii(lines[0])[:300]}"


SIMULATE = ["simulate", "--tracking-uri", "sqlite:///m.db", "--out", "out", "--quiet"]
FLOAT_FLAGS = {  # flag: (lower, lower open, upper, upper open)
    "--lr": (0, True, None, False), "--forget-fraction": (0, True, 1, False), "--holdout-fraction": (0, False, 1, True),
    "--alpha": (0, True, None, False), "--dp-noise": (0, False, None, False), "--dp-clip": (0, True, None, False),
    "--central-dp-noise": (0, False, None, False), "--central-dp-clip": (0, True, None, False),
    "--epsilon-target": (0, False, None, False), "--audit-confidence": (0.5, True, 1, True), "--proximal-mu": (0, False, None, False),
}
INT_FLAGS = {"--clients": (1, 10_000), "--rounds": (1, 1000), "--local-epochs": (1, 100), "--unlearn-rounds": (1, 100),
             "--audit-references": (0, 32), "--checkpoint-every": (1, None)}


def _names(flag: str) -> tuple[str, ...]:
    bare = flag.lstrip("-")
    return flag, bare, bare.replace("-", "_")


def _bad_float(flag: str) -> st.SearchStrategy:
    lo, lo_open, hi, hi_open = FLOAT_FLAGS[flag]
    finite = dict(allow_nan=False, allow_infinity=False)
    parts = [st.floats(max_value=lo, exclude_max=not lo_open, **finite).filter(lambda x: x < lo or (lo_open and x == lo))]
    if hi is not None:
        parts.append(st.floats(min_value=hi, exclude_min=not hi_open, **finite).filter(lambda x: x > hi or (hi_open and x == hi)))
    return st.one_of(st.one_of(parts).map(repr), st.sampled_from(["nan", "-inf", "NaN"]), NON_NUMERIC_TEXT.filter(lambda s: "\x00" not in s))


def _bad_int(flag: str) -> st.SearchStrategy:
    lo, hi = INT_FLAGS[flag]
    parts = [st.integers(max_value=lo - 1)] + ([st.integers(min_value=hi + 1)] if hi is not None else [])
    return st.one_of(st.one_of(parts).map(str), st.sampled_from(["1.5", "nan", "inf", ""]),
                     NON_NUMERIC_TEXT.filter(lambda s: "\x00" not in s))


@FAST
@given(data=st.data())
def test_simulate_refuses_out_of_range_flags_before_training(no_runs, data):
    if data.draw(st.booleans(), label="float flag"):
        flag = data.draw(st.sampled_from(sorted(FLOAT_FLAGS)), label="flag")
        value = data.draw(_bad_float(flag), label="value")
    else:
        flag = data.draw(st.sampled_from(sorted(INT_FLAGS)), label="flag")
        value = data.draw(_bad_int(flag), label="value")
    assert_refused(SIMULATE + [f"{flag}={value}"], _names(flag))


@FAST
@given(flag=st.sampled_from(sorted(FLOAT_FLAGS)), value=st.sampled_from(["inf", "Infinity", "1e400"]))
@example(flag="--lr", value="inf")                # KNOWN BUG: reaches the run
@example(flag="--dp-noise", value="inf")          # KNOWN BUG: reaches the run
@example(flag="--dp-clip", value="inf")           # KNOWN BUG: reaches the run
@example(flag="--central-dp-noise", value="inf")  # KNOWN BUG: reaches the run
@example(flag="--epsilon-target", value="inf")    # KNOWN BUG: reaches the run
@example(flag="--proximal-mu", value="inf")       # KNOWN BUG: reaches the run
@example(flag="--alpha", value="inf")             # KNOWN BUG: exit 2 but a 4-line pydantic dump on stderr
def test_simulate_refuses_infinite_flags_before_training(no_runs, flag, value):
    assert_refused(SIMULATE + [f"{flag}={value}"], _names(flag))


@FAST
@given(config=st.sampled_from(['{"gamma": Infinity}', '{"lr": 1e999}', '{"stop_margin": NaN}', '{"gamma": -Infinity}',
                               '{"epochs": 1e999}', '{"lr": NaN}', "[]", '"gamma"', "{", '{"1": 2}', '{"gamma": "x"}']))
@example(config='{"gamma": Infinity}')    # KNOWN BUG: reaches the run
@example(config='{"lr": 1e999}')          # KNOWN BUG: reaches the run
@example(config='{"stop_margin": NaN}')   # KNOWN BUG: reaches the run
def test_simulate_refuses_bad_method_config(no_runs, config):
    assert_refused(SIMULATE + ["--method-config", config], ("--method-config", "method_config", "method-config"))


@FAST
@given(seed=st.one_of(st.integers(max_value=-1), st.integers(min_value=2 ** 63)), site_data=st.booleans())
@example(seed=-1, site_data=False)  # KNOWN BUG: exit 2, but numpy's "expected non-negative integer" names neither flag nor fix
@example(seed=-1, site_data=True)   # KNOWN BUG: reaches the run (the sites' numpy generators refuse it mid-run)
@example(seed=2 ** 64, site_data=True)  # KNOWN BUG: reaches the run (no sint64 in Flower's ConfigRecord, torch.manual_seed overflows)
def test_simulate_refuses_seeds_no_generator_takes(no_runs, site_files, seed, site_data):
    extra = ["--site-files", ";".join(map(str, site_files)), "--target", "label", "--classes", "benign,malignant",
             "--withdraw", "1"] if site_data else []
    assert_refused(SIMULATE + extra + [f"--seed={seed}"], ("--seed", "seed"))


CLIENTS = st.one_of(st.integers(max_value=-1).map(str), NON_NUMERIC_TEXT.filter(lambda s: "\x00" not in s and s.strip(" ,") != ""),
                    st.integers(0, 9).map(lambda c: f"{c},{c}"), st.sampled_from(["", ",", " , ", "1;2", "1.5", "0x1"]))


@FAST
@given(client=CLIENTS)
def test_withdraw_refuses_bad_client_ids(no_runs, client):
    assert_refused(["withdraw", f"--client={client}", "--requests-dir", "q"], ("--client", "client"))


@FAST
@given(fraction=st.one_of(st.floats(max_value=0.0, allow_nan=False).map(repr), st.floats(min_value=1.0, exclude_min=True).map(repr),
                          st.sampled_from(["nan", "inf", "-inf", "1e400"]), NON_NUMERIC_TEXT.filter(lambda s: "\x00" not in s)))
def test_withdraw_refuses_bad_fractions(no_runs, fraction):
    assert_refused(["withdraw", "--client", "1", f"--fraction={fraction}", "--requests-dir", "q"], ("--fraction", "fraction"))


ANY_ARG_TEXT = st.one_of(st.text(max_size=30), SURROGATES, HUGE).filter(lambda s: "\x00" not in s)


@FAST
@given(field=st.sampled_from(["--reason", "--salt"]), text=ANY_ARG_TEXT)
@example(field="--reason", text="\udcff")  # KNOWN BUG: PydanticSerializationError traceback, queue folders left behind
@example(field="--salt", text="caf\udce9")  # KNOWN BUG: same, for a Latin-1 'café' in a UTF-8 terminal
def test_withdraw_with_any_reason_or_salt_queues_a_readable_request_or_refuses(no_runs, field, text):
    """Free text: either the request is queued and reads back, or exit 2 with one line and nothing written."""
    from unlearn_fl.requests import RequestQueue

    argv = ["withdraw", "--client", "1", field, text, "--requests-dir", "q"]
    with tempfile.TemporaryDirectory() as d, contextlib.chdir(d):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                from unlearn_fl import cli

                code = cli.main(argv)
            except SystemExit as e:
                code = e.code
        if code == 0:
            [req] = RequestQueue(Path(d) / "q").poll()
            assert (req.reason if field == "--reason" else req.salt) == text
            return
        created = list(Path(d).rglob("*"))
    assert code == 2 and len(err.getvalue().splitlines()) == 1 and not created, (code, ascii(err.getvalue())[:300], created[:3])


@FAST
@given(t=st.one_of(st.floats(max_value=0.0, exclude_max=True, allow_nan=False).map(repr),
                   st.floats(min_value=1.0, exclude_min=True).map(repr), st.sampled_from(["nan", "inf"]),
                   NON_NUMERIC_TEXT.filter(lambda s: "\x00" not in s)),
       grid=st.one_of(st.none(), st.lists(st.floats(), min_size=1, max_size=4).filter(lambda g: any(not 0 <= x <= 1 for x in g))
                      .map(lambda g: ",".join(map(repr, g)))))
def test_feature_refuses_bad_t_and_grid_values(no_runs, t, grid):
    argv = ["feature", f"--t={t}", "--out", "out"] if grid is None else ["feature", f"--grid={grid}", "--out", "out"]
    assert_refused(argv, ("--t", "t:", "grid", "--grid") if grid is None else ("grid", "--grid"))


@pytest.mark.parametrize("extra", [[], ["--clients", "2"]], ids=["central", "federated"])
def test_no_runs_stops_a_valid_feature_job_at_the_sentinel(no_runs, extra):
    """The fixture itself: valid `feature` flags (central, and federated over a Flower simulation) reach the
    sentinel instead of running, so a bad value that slipped through the checks would show as 'reached the run'."""
    code, err, _ = cli_run(["feature", "--out", "out", "--tracking-uri", "sqlite:///m.db", *extra])
    assert code == "reached the run", (code, ascii(err)[-300:])


@FAST
@given(grid=st.one_of(st.sampled_from(["", ",", " , ", ",,,"]), NON_NUMERIC_TEXT.filter(lambda s: "\x00" not in s and s.strip(", "))))
@example(grid="")   # KNOWN BUG: an empty grid is accepted and the feature job runs
@example(grid="x")  # KNOWN BUG: exit 2, but "could not convert string to float: 'x'" names neither --grid nor the fix
def test_feature_refuses_empty_or_unreadable_grids(no_runs, grid):
    assert_refused(["feature", f"--grid={grid}", "--out", "out"], ("grid", "--grid"))


AUDIT = ["audit", "--model-uri", "models:/m/1", "--forget", "f.csv", "--holdout", "h.csv", "--target", "y", "--out", "a.json"]


AUDIT_BAD = {
    "--delta": st.one_of(st.floats(max_value=0.0, allow_nan=False).map(repr), st.floats(min_value=1.0).map(repr), st.just("nan")),
    "--confidence": st.one_of(st.floats(max_value=0.5, allow_nan=False).map(repr), st.floats(min_value=1.0).map(repr), st.just("nan")),
    "--lira-refs": st.one_of(st.integers(max_value=-1), st.just(1)).map(str),
    "--epsilon-target": st.one_of(st.floats(max_value=0.0, exclude_max=True, allow_nan=False).map(repr), st.just("nan")),
}


@FAST
@given(case=st.sampled_from(sorted(AUDIT_BAD)).flatmap(lambda f: st.tuples(st.just(f), AUDIT_BAD[f])))
@example(case=("--confidence", "0.5"))  # KNOWN BUG: accepted by `audit` (AuditThresholds: gt=0), refused by `simulate` (gt=0.5)
@example(case=("--confidence", "0.1"))  # KNOWN BUG: same; a one-sided bound below 50% confidence has a negative z
def test_audit_refuses_bad_thresholds_before_loading_anything(no_runs, case):
    """Checked before the store is opened: the one line names the flag, not the missing store."""
    flag, value = case
    assert_refused(AUDIT + [f"{flag}={value}"], _names(flag))
