"""Opacus accountants behind `account` / `account_phases`: reference numbers, composition, validation."""

from __future__ import annotations

import pytest
from opacus.accountants import PRVAccountant, RDPAccountant

from unlearn_fl.accounting.accountant import Phase, account, account_phases, make_accountant
from unlearn_fl.report.schema import AccountingBlock

Q = 256 / 60000


def test_reference_numbers_rdp_and_prv():
    rdp = account(1.1, Q, 10_000, 1e-5, accountant="rdp", max_grad_norm=1.0)
    assert isinstance(rdp, AccountingBlock)
    assert rdp.epsilon == pytest.approx(2.16, abs=0.05)
    assert (rdp.accountant, rdp.noise_multiplier, rdp.sample_rate, rdp.steps, rdp.delta, rdp.max_grad_norm) == (
        "rdp", 1.1, Q, 10_000, 1e-5, 1.0
    )
    prv = account(1.1, Q, 10_000, 1e-5, accountant="prv")
    assert prv.epsilon == pytest.approx(1.99, abs=0.05)
    assert prv.epsilon < rdp.epsilon  # PRV is the tighter accountant


def test_gdp_runs_and_warns():
    with pytest.warns(UserWarning, match="underestimate"):
        gdp = account(1.1, Q, 10_000, 1e-5, accountant="gdp")
    assert gdp.accountant == "gdp" and 1.0 < gdp.epsilon < 3.0


def test_same_as_stepping_the_opacus_accountant():
    acc = RDPAccountant()
    for _ in range(500):
        acc.step(noise_multiplier=0.9, sample_rate=0.01)
    assert account(0.9, 0.01, 500, 1e-5).epsilon == acc.get_epsilon(1e-5)


def test_two_phases_equal_stepping_through_both():
    train = Phase(1.1, Q, 3000, name="train")
    unlearn = Phase(0.8, 0.02, 200, name="unlearn")
    for name, cls in (("rdp", RDPAccountant), ("prv", PRVAccountant)):
        acc = cls()
        for phase in (train, unlearn):
            for _ in range(phase.steps):
                acc.step(noise_multiplier=phase.noise_multiplier, sample_rate=phase.sample_rate)
        block = account_phases([train, unlearn], 1e-5, accountant=name)
        assert block.epsilon == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)
        assert block.steps == 3200 and block.noise_multiplier == 0.8 and block.sample_rate == 0.02
        # Composition costs more than either phase alone.
        assert block.epsilon > account(1.1, Q, 3000, 1e-5, accountant=name).epsilon
        assert block.epsilon > account(0.8, 0.02, 200, 1e-5, accountant=name).epsilon
    # Tuples are accepted as phases.
    assert account_phases([(1.1, Q, 3000), (0.8, 0.02, 200)], 1e-5).epsilon == pytest.approx(
        account_phases([train, unlearn], 1e-5).epsilon
    )


def test_zero_steps_and_monotonicity():
    assert account(1.0, 0.1, 0, 1e-5).epsilon == 0.0
    assert account_phases([Phase(1.0, 0.1, 0), Phase(1.0, 0.1, 0)], 1e-5, "prv").epsilon == 0.0
    eps = [account(1.0, 0.01, t, 1e-5).epsilon for t in (10, 100, 1000)]
    assert eps[0] < eps[1] < eps[2]
    assert account(2.0, 0.01, 1000, 1e-5).epsilon < eps[2]  # more noise, less epsilon


def test_gdp_refuses_heterogeneous_phases():
    with pytest.warns(UserWarning):
        same = account_phases([Phase(1.0, 0.01, 100), Phase(1.0, 0.01, 50)], 1e-5, "gdp")
    with pytest.warns(UserWarning):
        assert same.epsilon == pytest.approx(account(1.0, 0.01, 150, 1e-5, "gdp").epsilon)
    with pytest.raises(ValueError, match="use accountant='rdp' or 'prv'"):
        account_phases([Phase(1.0, 0.01, 100), Phase(2.0, 0.01, 50)], 1e-5, "gdp")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(noise_multiplier=0.0), "noise_multiplier must be > 0"),
        (dict(noise_multiplier=-1.0), "noise_multiplier must be > 0"),
        (dict(sample_rate=0.0), r"sample_rate must be in \(0, 1\]"),
        (dict(sample_rate=1.5), r"sample_rate must be in \(0, 1\]"),
        (dict(steps=-1), "steps must be ≥ 0"),
        (dict(steps=2.5), "steps must be an integer"),
        (dict(delta=0.0), r"delta must be in \(0, 1\)"),
        (dict(delta=1.0), r"delta must be in \(0, 1\)"),
        (dict(accountant="moments"), "accountant must be one of"),
        (dict(max_grad_norm=0.0), "max_grad_norm"),
    ],
)
def test_validation_errors(kwargs, match):
    args = dict(noise_multiplier=1.0, sample_rate=0.01, steps=10, delta=1e-5, accountant="rdp")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        account(**args)


def test_phase_errors_name_the_phase_and_empty_list():
    with pytest.raises(ValueError, match="phase 'unlearn': sample_rate"):
        Phase(1.0, 2.0, 10, name="unlearn")
    with pytest.raises(ValueError, match="phases is empty"):
        account_phases([], 1e-5)
    assert make_accountant("prv").mechanism() == "prv"
