"""What the server stores of ordinary training for the unlearning methods that need it.

FedEraser (Liu et al. 2021) replays every client's update of every Δt-th training round; Halimi et al.
(2022) take their reference model from the last round's client models. `UpdateHistory` is fed by
`engine.strategy.WithdrawalFilter` during training rounds only: the global model the round started from,
and per node its update (the model it returned minus that global) and its example count. Updates are
kept as float32 numpy arrays on the server; `nbytes` is their size, the method's storage cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, Message

from unlearn_fl.engine.protocol import ARRAYS, METRICS


@dataclass
class StoredRound:
    """One training round as stored: its 1-based index among training rounds, the global model it started
    from (key -> array), and per node id the client's update (key -> array, same shapes) and example count."""

    index: int
    global_arrays: dict[str, np.ndarray]
    updates: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    examples: dict[int, int] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.global_arrays.values())
                   + sum(a.nbytes for u in self.updates.values() for a in u.values()))

    def client_model(self, node: int) -> dict[str, np.ndarray]:
        """The model node `node` returned in this round: global + its update (key -> array)."""
        return {k: self.global_arrays[k] + self.updates[node][k] for k in self.updates[node]}


def _floating(arrays: ArrayRecord) -> dict[str, np.ndarray]:
    """The floating-point tensors of a model (integer buffers such as counters are not updates)."""
    out = {}
    for k, a in arrays.items():
        v = a.numpy()
        if np.issubdtype(v.dtype, np.floating):
            out[k] = np.array(v, dtype=np.float32, copy=True)
    return out


class UpdateHistory:
    """Client updates of training rounds, recorded by the strategy wrapper.

    every: Δt, store rounds 1, 1 + Δt, 1 + 2Δt, ... (training rounds, counted here); keep_every: False keeps
    only the last round (what Halimi et al.'s reference model needs). The last round is always at hand
    (`last`), stored once when it is also one of every Δt rounds.
    """

    def __init__(self, every: int = 2, keep_every: bool = True) -> None:
        if every < 1:
            raise ValueError(f"the storage interval must be at least 1 round, got {every}")
        self.every, self.keep_every = int(every), bool(keep_every)
        self.rounds: list[StoredRound] = []
        """Every Δt-th training round (empty when keep_every is False)."""
        self.last: StoredRound | None = None
        """The last training round whose replies were recorded."""
        self.count = 0
        """Training rounds seen."""
        self._open: StoredRound | None = None

    def begin_round(self, arrays: ArrayRecord) -> None:
        """A training round starts from the global `arrays`."""
        self.count += 1
        self._open = StoredRound(self.count, _floating(arrays))

    def end_round(self, replies: Iterable[Message]) -> None:
        """The round's replies: per node, its update relative to the round's global and its `num-examples`."""
        rec, self._open = self._open, None
        if rec is None:
            return
        for m in replies:
            if m.has_error() or ARRAYS not in m.content:
                continue
            node = int(m.metadata.src_node_id)
            model = _floating(m.content[ARRAYS])
            rec.updates[node] = {k: model[k] - rec.global_arrays[k] for k in rec.global_arrays if k in model}
            rec.examples[node] = int(m.content[METRICS].get("num-examples", 1)) if METRICS in m.content else 1
        if not rec.updates:
            return
        self.last = rec
        if self.keep_every and (rec.index - 1) % self.every == 0:
            self.rounds.append(rec)

    def drop_nodes(self, nodes: Iterable[int]) -> int:
        """Erase the stored updates of `nodes` (a site that withdrew); returns the bytes freed."""
        nodes = set(nodes)
        before = self.nbytes
        for rec in self._records():
            for n in nodes & set(rec.updates):
                del rec.updates[n]
                rec.examples.pop(n, None)
        return before - self.nbytes

    def _records(self) -> list[StoredRound]:
        recs = list(self.rounds)
        if self.last is not None and all(self.last is not r for r in recs):
            recs.append(self.last)
        return recs

    @property
    def nbytes(self) -> int:
        """Bytes of arrays the server holds: stored globals and updates, each round once."""
        return int(sum(r.nbytes for r in self._records()))

    def bytes_for(self, need: str) -> int:
        """Bytes a method that needs `need` ("every": the Δt rounds, "last": the last round) relies on; 0 for "none"."""
        if need == "every":
            return int(sum(r.nbytes for r in self.rounds))
        if need == "last":
            return self.last.nbytes if self.last is not None else 0
        return 0

    def describe(self, need: str = "every") -> str:
        """What a method that needs `need` relies on, in words, e.g.
        "every client's update every 2 round(s): 3 round(s) stored, with their global models (0.42 MB)"."""
        mb = f"{self.bytes_for(need) / 1e6:.2f} MB"
        if need == "every":
            return f"every client's update every {self.every} round(s): {len(self.rounds)} round(s) stored, with their global models ({mb})"
        if need == "last":
            return f"the last training round's client updates and global model ({mb})"
        return "nothing"
