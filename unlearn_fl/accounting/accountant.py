"""Privacy accounting of DP-SGD phases with the Opacus accountants (not re-implemented here).

One DP-SGD step with Poisson sampling at rate q, per-example clipping to norm
C and Gaussian noise N(0, σ²C²) is the Poisson-subsampled Gaussian mechanism
(Abadi et al. 2016). T such steps compose; the accountant turns the history
[(σ_1, q_1, T_1), (σ_2, q_2, T_2), ...] into an (ε, δ) guarantee:

- "rdp": Rényi DP of the subsampled Gaussian (Mironov 2017; Mironov, Talwar &
  Zhang 2019), composed additively per order α and converted to (ε, δ) with
  Balle et al. 2020, Thm 21 (Opacus `RDPAccountant`). A valid upper bound.
- "prv": numerical composition of privacy-loss random variables by FFT
  (Gopi, Lee & Wutschitz 2021; Opacus `PRVAccountant`, which returns the
  upper end of its error interval). Tighter than RDP, still an upper bound.
- "gdp": the central-limit approximation to μ-Gaussian DP (Bu, Dong, Long &
  Su 2020; Opacus `GaussianAccountant`). An approximation that Opacus itself
  warns can *underestimate* ε; only for one constant phase.

Phases (docs/method.md §4, soundness): a released model that was trained with
DP-SGD and then unlearned with a DP-SGD phase of its own (another σ, q or
number of steps) has spent the composition of both. `account_phases` puts
every phase into the accountant's history, exactly as if the accountant had
been stepped through them one by one.

ε is recomputed from the history each time; nothing here caches or edits the
Opacus result.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from opacus.accountants import IAccountant, create_accountant

from unlearn_fl.accounting.results import AccountingBlock

__all__ = ["AccountantName", "Phase", "make_accountant", "account", "account_phases", "block_from_history"]

AccountantName = Literal["rdp", "prv", "gdp"]


def _check_accountant(name: str) -> None:
    if name not in get_args(AccountantName):
        raise ValueError(f"accountant must be one of {get_args(AccountantName)}, got {name!r}")


def _check_delta(delta: float) -> None:
    if not (isinstance(delta, numbers.Real) and 0.0 < delta < 1.0):
        raise ValueError(
            f"delta must be in (0, 1), got {delta!r}; the usual choice is below 1/n for n training examples, e.g. 1e-5"
        )


def _check_max_grad_norm(max_grad_norm: float | None) -> None:
    if max_grad_norm is not None and not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
        raise ValueError(f"max_grad_norm (the clipping norm C) must be a positive number, got {max_grad_norm!r}")


@dataclass(frozen=True)
class Phase:
    """`steps` DP-SGD steps at noise multiplier σ and Poisson sample rate q (= expected batch / dataset size)."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    name: str = ""

    def __post_init__(self) -> None:
        label = f"phase {self.name!r}: " if self.name else ""
        if not (isinstance(self.noise_multiplier, numbers.Real) and math.isfinite(self.noise_multiplier)):
            raise ValueError(f"{label}noise_multiplier must be a finite number, got {self.noise_multiplier!r}")
        if self.noise_multiplier <= 0:
            raise ValueError(
                f"{label}noise_multiplier must be > 0, got {self.noise_multiplier}; without noise there is no "
                "finite epsilon (train without DP and do not attach an accounting block instead)"
            )
        if not (isinstance(self.sample_rate, numbers.Real) and 0.0 < self.sample_rate <= 1.0):
            raise ValueError(
                f"{label}sample_rate must be in (0, 1] (expected batch size / dataset size), got {self.sample_rate!r}"
            )
        if isinstance(self.steps, bool) or not isinstance(self.steps, numbers.Integral):
            raise ValueError(f"{label}steps must be an integer number of optimizer steps, got {self.steps!r}")
        if self.steps < 0:
            raise ValueError(f"{label}steps must be ≥ 0, got {self.steps}")


def make_accountant(accountant: AccountantName = "rdp") -> IAccountant:
    """A fresh Opacus accountant by name ("rdp", "prv" or "gdp")."""
    _check_accountant(accountant)
    return create_accountant(mechanism=accountant)


def _epsilon(history: list[tuple[float, float, int]], delta: float, accountant: AccountantName) -> float:
    history = [h for h in history if h[2] > 0]
    if not history:
        return 0.0
    if accountant == "gdp":
        merged = {(h[0], h[1]) for h in history}
        if len(merged) > 1:
            raise ValueError(
                "the 'gdp' accountant only handles one constant (noise_multiplier, sample_rate) phase; "
                "use accountant='rdp' or 'prv' to compose phases with different parameters"
            )
        history = [(history[0][0], history[0][1], sum(h[2] for h in history))]
    acc = make_accountant(accountant)
    acc.history = [(float(s), float(q), int(t)) for s, q, t in history]
    return float(acc.get_epsilon(delta=delta))


def block_from_history(
    history: Sequence[tuple[float, float, int]],
    epsilon: float,
    delta: float,
    accountant: AccountantName,
    max_grad_norm: float | None = None,
) -> AccountingBlock:
    """`AccountingBlock` for an accountant history [(σ, q, steps), ...] and its ε.

    The block has one σ, q and step count; for several phases it records the
    total number of steps, the smallest σ and the largest q (the most
    privacy-costly per-step parameters), so a reader never overestimates the noise.
    """
    if not history:
        raise ValueError("the accountant history is empty: no DP-SGD step has been taken, nothing to report")
    return AccountingBlock(
        accountant=accountant,
        epsilon=epsilon,
        delta=delta,
        noise_multiplier=float(min(h[0] for h in history)),
        sample_rate=float(max(h[1] for h in history)),
        steps=int(sum(h[2] for h in history)),
        max_grad_norm=max_grad_norm,
    )


def account_phases(
    phases: Sequence[Phase],
    delta: float,
    accountant: AccountantName = "rdp",
    max_grad_norm: float | None = None,
) -> AccountingBlock:
    """(ε, δ) of the composition of DP-SGD phases, e.g. training then unlearning.

    Equivalent to stepping one Opacus accountant through every step of every
    phase in order. See `block_from_history` for how several phases are
    summarised in the single-valued block fields.
    """
    _check_accountant(accountant)
    _check_delta(delta)
    _check_max_grad_norm(max_grad_norm)
    if not phases:
        raise ValueError("phases is empty: give at least one Phase(noise_multiplier, sample_rate, steps)")
    phases = [p if isinstance(p, Phase) else Phase(*p) for p in phases]
    history = [(p.noise_multiplier, p.sample_rate, p.steps) for p in phases]
    try:
        eps, why = _epsilon(history, delta, accountant), None
    except Exception as e:  # PRV's grid can fail outright (e.g. a MemoryError for an enormous domain)
        if accountant != "prv":
            raise
        eps, why = math.nan, f"failed with {type(e).__name__}"
    if accountant == "prv" and not math.isfinite(eps):
        # PRV composes numerically on a grid; at very low noise its privacy-loss distribution does not fit
        # the grid and it returns ∞ (or fails). RDP is a valid upper bound there: report it, and say so.
        why = why or "returned an infinite epsilon"
        rdp = _epsilon(history, delta, "rdp")
        block = block_from_history(history, rdp, delta, "rdp", max_grad_norm)
        note = (f"the prv accountant {why} (noise multiplier {block.noise_multiplier:g} is too small for its numerical "
                f"composition); reported instead: the rdp accountant's upper bound")
        return block.model_copy(update={"requested_accountant": "prv", "epsilon_note": note + (
            "" if block.epsilon is not None else ", which is infinite too: the model carries no differential-privacy guarantee")})
    return block_from_history(history, eps, delta, accountant, max_grad_norm)


def account(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: AccountantName = "rdp",
    max_grad_norm: float | None = None,
) -> AccountingBlock:
    """(ε, δ) spent by `steps` DP-SGD steps at noise σ and sample rate q (one phase).

    Check (stack-notes, Opacus 1.6): σ=1.1, q=256/60000, 10,000 steps, δ=1e-5
    gives ε ≈ 2.16 with "rdp" and ≈ 1.99 with "prv". 0 steps gives ε = 0.
    """
    return account_phases([Phase(noise_multiplier, sample_rate, steps)], delta, accountant, max_grad_norm)
