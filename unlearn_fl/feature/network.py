"""A trained MLP inside a feature release: where its learning outcome Z is taken (docs/method.md §3, "Learned
representations"; issue #12 item 4).

The paper's outcome Z is usually what a model computes, not an input column. A release of a model whose outcome was
projected needs the model itself at inference: raw rows -> standardised inputs x -> Z = network(x) -> Z_t (the
barycenter map by S) -> H = act(Z_t) -> the task head. `Network` holds the Linear layers of an
`unlearn_fl.models.MLP` (ReLU between them) as float64 arrays, with no torch at inference:

- outcome "embedding": Z (n, h) is the last hidden layer's pre-activation, act is the ReLU, and the head is a Linear
  h -> C (the model's own last layer, or one refit on the projected embedding);
- outcome "scores": Z (n, C) is the output logits, act is the identity, and the head is a Linear C -> C.

A model without projection (t = 0, or trained with the penalty of `federated_regularized`) is the "embedding" form
with its own last layer as the head: its predictions are the MLP's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["Network", "Outcome"]

Outcome = Literal["embedding", "scores"]


@dataclass
class Network:
    """The Linear layers of an MLP, ReLU between them; `represent` gives the outcome Z, `activate` the head's input.

    weights[i]: (out_i, in_i); biases[i]: (out_i,), as torch's nn.Linear stores them. For outcome "embedding" the
    layers end at the last hidden Linear (the head is separate); for "scores" they include the output Linear.
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    outcome: Outcome

    def __post_init__(self) -> None:
        if self.outcome not in ("embedding", "scores"):
            raise ValueError(f"outcome must be 'embedding' or 'scores', got {self.outcome!r}")
        if not self.weights or len(self.weights) != len(self.biases):
            raise ValueError("a network needs at least one Linear layer, with one bias per weight matrix")
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if w.ndim != 2 or b.shape != (w.shape[0],) or (i and w.shape[1] != self.weights[i - 1].shape[0]):
                raise ValueError(f"layer {i}: weight {w.shape} and bias {b.shape} do not chain")

    @property
    def n_inputs(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def width(self) -> int:
        """Columns of Z."""
        return int(self.weights[-1].shape[0])

    def represent(self, X: np.ndarray) -> np.ndarray:
        """Z (n, width) float64 of standardised inputs X (n, n_inputs): the last layer's pre-activation."""
        h = np.asarray(X, dtype=np.float64)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w.T + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h

    def activate(self, Z: np.ndarray) -> np.ndarray:
        """The head's input from (projected) Z: ReLU(Z) for an embedding, Z itself for scores."""
        Z = np.asarray(Z, dtype=np.float64)
        return np.maximum(Z, 0.0) if self.outcome == "embedding" else Z

    def names(self) -> list[str]:
        """Column names of the representation `predict(output="features")` returns."""
        return [f"{'h' if self.outcome == 'embedding' else 'score'}{k}" for k in range(self.width)]

    @classmethod
    def from_state(cls, state: dict, outcome: Outcome) -> tuple[Network, np.ndarray, np.ndarray]:
        """(network, head weight (C, h), head bias (C,)) of an MLP's state_dict (tensors or arrays, keys net.{i}.weight).

        embedding: the network stops before the last Linear, which is returned as the head; scores: the network is
        the whole MLP and the head returned is the identity C -> C (the model's own decision).
        """
        keys = sorted({int(k.split(".")[1]) for k in state if k.startswith("net.") and k.endswith(".weight")})
        if len(keys) < 2:
            raise ValueError("the model must be an unlearn_fl.models.MLP with at least one hidden layer")
        arr = {k: np.asarray(v.detach().numpy() if hasattr(v, "detach") else v, dtype=np.float64) for k, v in state.items()}
        ws = [arr[f"net.{i}.weight"] for i in keys]
        bs = [arr[f"net.{i}.bias"] for i in keys]
        if outcome == "embedding":
            return cls(ws[:-1], bs[:-1], outcome), ws[-1], bs[-1]
        c = ws[-1].shape[0]
        return cls(ws, bs, outcome), np.eye(c), np.zeros(c)
