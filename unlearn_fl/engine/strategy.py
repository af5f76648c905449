"""Any Flower strategy, with withdrawn sites hidden from it (the federation's inner loop).

`WithdrawalFilter(base)` delegates sampling and aggregation to `base` (FedAvg by
default; FedProx, FedAdam, ... work unchanged) but hands it a view of the Grid from
which withdrawn nodes are removed, so a withdrawn site is never sampled again.
With a `history` (`engine/history.py`) it also records each round's global model and the
clients' updates, for the unlearning methods that replay them (FedEraser, Halimi et al.);
the federation gives one only to the strategy of ordinary training rounds.
The public, complete Flower strategy users wrap is `engine.server.UnlearningStrategy`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedProx, Strategy

from unlearn_fl.engine.history import UpdateHistory


class _GridView:
    """A Grid that does not list excluded nodes; everything else is the real Grid."""

    def __init__(self, grid: Grid, exclude: set[int]) -> None:
        self._grid, self._exclude = grid, set(exclude)

    def get_node_ids(self) -> list[int]:
        return [n for n in self._grid.get_node_ids() if n not in self._exclude]

    def __getattr__(self, name: str):
        return getattr(self._grid, name)


# min_* = 1: a federation may shrink to one retained client after withdrawals.
_COMMON = dict(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1, min_evaluate_nodes=1, min_available_nodes=1)

BASE_STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "fedavg": lambda **kw: FedAvg(**_COMMON),
    "fedprox": lambda proximal_mu=0.01, **kw: FedProx(**_COMMON, proximal_mu=proximal_mu),
    "fedavgm": lambda **kw: FedAvgM(**_COMMON),
    "fedadam": lambda **kw: FedAdam(**_COMMON, eta=0.01, eta_l=0.01),
}


def default_base_strategy() -> Strategy:
    return BASE_STRATEGIES["fedavg"]()


def base_strategy(name: str, **kwargs) -> Strategy:
    """A fresh Flower strategy by name (fedavg, fedprox, fedavgm, fedadam)."""
    try:
        return BASE_STRATEGIES[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}: choose one of {', '.join(BASE_STRATEGIES)}") from None


class WithdrawalFilter:
    """Wraps a Flower strategy for rounds in which some nodes must not take part."""

    def __init__(self, base: Strategy | None = None, factory: Callable[[], Strategy] | None = None,
                 history: UpdateHistory | None = None) -> None:
        self.base = base if base is not None else (factory() if factory else default_base_strategy())
        self._factory = factory
        self.history = history
        """Where the rounds run through this filter are recorded (None: nothing is stored)."""

    def fresh(self) -> "WithdrawalFilter":
        """A filter around a fresh base strategy (for the retrain reference): stateful strategies such as
        FedAdam must not carry the released model's optimiser state. Without a factory, a deep copy
        of the base as it was given (before any round) is used; without that either, the same base in a
        new filter. The fresh filter records no history (only ordinary training rounds are recorded)."""
        if self._factory is not None:
            return WithdrawalFilter(self._factory(), self._factory)
        if not hasattr(self, "_pristine"):
            return WithdrawalFilter(self.base)
        import copy

        return WithdrawalFilter(copy.deepcopy(self._pristine))

    def keep_pristine(self) -> "WithdrawalFilter":
        """Remember the base as it is now (before any round), for `fresh()`."""
        import copy

        self._pristine = copy.deepcopy(self.base)
        return self

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid, exclude: set[int] = frozenset()
    ) -> Iterable[Message]:
        if self.history is not None:
            self.history.begin_round(arrays)
        return self.base.configure_train(server_round, arrays, config, _GridView(grid, exclude))  # type: ignore[arg-type]

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        if self.history is not None:
            replies = list(replies)
            self.history.end_round(replies)
        return self.base.aggregate_train(server_round, replies)

    def __repr__(self) -> str:
        return f"WithdrawalFilter(base={self.base.__class__.__name__})"
