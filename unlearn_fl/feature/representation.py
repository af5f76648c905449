"""Post-hoc removal of S from a learned representation (docs/method.md §3; issue #12 item 4a).

The paper's learning outcome Z is usually not an input column but what a trained model computes. A classifier
`MLP` (unlearn_fl.models) is split into

- `encoder`: every layer up to and including the last hidden Linear, so Z = encoder(x) (n, h) is the
  penultimate layer's *pre-activation* (continuous: a linear image of the previous layer);
- `activation`: the ReLU after it; the embedding the head reads is act(Z);
- `head`: the last Linear (h -> C).

Then the W2 barycenter projection of §3 is fitted on Z by the groups of S (`BarycenterProjector`, or from per-group
summaries with `unlearn_fl.feature.federated.client_summary` / `server_fit`, as the raw-feature path does), and
the head is refit on the projected embedding H_t = act(Z_t), Z_t = (1 − t) Z + t T_S(Z). Since act is a fixed
function, Law(H_1 | S = s) is the same for every s whenever Law(Z_1 | S = s) is: the map is fitted before the
activation because the ReLU's atom at 0 (group-specific mass) breaks both the Gaussian maps (atoms sent to
group-specific points) and the per-coordinate quantile maps (their randomised ranks inside the atom change the
coordinates' joint law differently per group; a gradient-boosting probe reads S back at AUC > 0.95).

`kind="scores"` uses the model's output logits (n, C) as Z instead (act = identity) and refits a new
Linear (C -> C) on the projected scores (a multinomial logistic regression on the scores).

Limits (as in §3): the Gaussian maps equalise two moments, the quantile maps each coordinate's marginal. On an
embedding of Gaussian inputs whose groups differ in location (`gaussian_shift_frame`), Z is Gaussian per group with a
common covariance and the Gaussian map removes S exactly; on an embedding of discrete/one-hot inputs
(`synthetic_fairness_frame`) neither family equalises the joint law and a flexible probe still finds S
(benchmarks/results/feature_representation.md).

Nothing here depends on Flower; the federated exchange is unlearn_fl/engine/feature_exchange.py
(`local_representation_*`) and server/feature_workflow.py (`run_representation_federation`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from unlearn_fl.data import Split
from unlearn_fl.feature.barycenter import BarycenterProjector
from unlearn_fl.feature.federated import client_summary, server_fit
from unlearn_fl.models import MLP, train_epochs

Kind = Literal["embedding", "scores"]


def split_model(model: nn.Module) -> tuple[nn.Module, nn.Module, nn.Linear]:
    """(encoder, activation, head) of an `MLP` (or any nn.Sequential `net` ending in Linear, act, Linear).

    encoder: x (n, d) -> Z (n, h), the last hidden Linear's pre-activation; activation: the module after it;
    head: the last Linear (h -> C). ValueError for a model without at least one hidden layer.
    """
    net = getattr(model, "net", model)
    if not isinstance(net, nn.Sequential) or len(net) < 3 or not isinstance(net[-1], nn.Linear) \
            or not isinstance(net[-3], nn.Linear):
        raise ValueError("the model must be an nn.Sequential (or have one as `net`) ending in Linear, activation, Linear "
                         "(an unlearn_fl.models.MLP with at least one hidden layer)")
    return net[:-2], net[-2], net[-1]


@torch.no_grad()
def representation(model: nn.Module, X: np.ndarray, kind: Kind = "embedding") -> np.ndarray:
    """Z (n, h) float64: the penultimate pre-activation (`embedding`) or the output logits (n, C) (`scores`)."""
    model.eval()
    x = torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float32)
    if kind == "embedding":
        return split_model(model)[0](x).double().numpy()
    if kind == "scores":
        return model(x).double().numpy()
    raise ValueError(f"kind must be 'embedding' or 'scores', got {kind!r}")


def activate(model: nn.Module, Z: np.ndarray, kind: Kind = "embedding") -> np.ndarray:
    """The head's input from (projected) Z (n, h): act(Z) for an embedding, Z itself for scores."""
    if kind == "scores":
        return np.asarray(Z, dtype=np.float64)
    with torch.no_grad():
        return split_model(model)[1](torch.as_tensor(np.asarray(Z), dtype=torch.float64)).numpy()


def initial_head(model: nn.Module, kind: Kind = "embedding") -> nn.Linear:
    """The head to refit, as a fresh copy: the model's last Linear (embedding) or an identity Linear C -> C (scores,
    which starts as the model's own decision)."""
    head = split_model(model)[2]
    if kind == "embedding":
        return copy.deepcopy(head).float()
    c = head.out_features
    lin = nn.Linear(c, c)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(c))
        lin.bias.zero_()
    return lin


def train_head(head: nn.Linear, H: np.ndarray, y: np.ndarray, epochs: int = 5, lr: float = 0.01,
               batch_size: int = 32, seed: int = 0) -> float:
    """Cross-entropy training of the Linear head (in place) on the projected embedding H (n, h) and labels y (n,)
    (Adam, unlearn_fl.models.train_epochs); the local step of the federated refit too. Returns the last epoch's loss."""
    return train_epochs(head, Split(np.asarray(H, dtype=np.float32), np.asarray(y, dtype=np.int64)), epochs, lr,
                        batch_size=batch_size, seed=seed)


@torch.no_grad()
def head_correct(head: nn.Linear, H: np.ndarray, y: np.ndarray) -> int:
    """Count of rows of H (n, h) the head classifies as y (n,)."""
    if len(y) == 0:
        return 0
    head.eval()
    pred = head(torch.as_tensor(np.asarray(H), dtype=torch.float32)).argmax(1).numpy()
    return int((pred == np.asarray(y)).sum())


def fit_projector(Z: np.ndarray, s: np.ndarray, method: Literal["gaussian", "quantile"] = "gaussian",
                  seed: int = 0) -> BarycenterProjector:
    """The barycenter projector of Z (n, h) by S (n,) — through the same per-group summary and merge the federated
    path uses (`client_summary`, `server_fit`), so a central fit and a federated one on the same rows coincide."""
    return server_fit([client_summary(Z, s, method)], random_state=seed)


@dataclass
class RepresentationUnlearning:
    """A model whose representation was projected: transform rows, then the refit head."""

    model: nn.Module
    projector: BarycenterProjector
    head: nn.Linear
    t: float
    kind: Kind

    def embed(self, X: np.ndarray, s: np.ndarray) -> np.ndarray:
        """The projected embedding H_t (n, h) (or projected scores (n, C)) of input rows X (n, d) with S values s (n,)."""
        return activate(self.model, self.projector.transform(representation(self.model, X, self.kind), s, t=self.t),
                        self.kind)

    @torch.no_grad()
    def predict(self, X: np.ndarray, s: np.ndarray) -> np.ndarray:
        self.head.eval()
        return self.head(torch.as_tensor(self.embed(X, s), dtype=torch.float32)).argmax(1).numpy()


def unlearn_representation(model: nn.Module, X: np.ndarray, s: np.ndarray, y: np.ndarray, t: float = 1.0,
                           method: Literal["gaussian", "quantile"] = "gaussian", kind: Kind = "embedding",
                           epochs: int = 20, lr: float = 0.01, seed: int = 0,
                           projector: BarycenterProjector | None = None) -> RepresentationUnlearning:
    """Central post-hoc unlearning of S from `model`'s representation (docs/method.md §3).

    X (n, d) training inputs, s (n,) S values, y (n,) labels: fit the barycenter maps on Z = representation(model, X)
    by S (or use `projector`), then refit a copy of the head on act(Z_t) for `epochs` epochs from the model's own head.
    The model itself is not changed.
    """
    Z = representation(model, X, kind)
    proj = projector if projector is not None else fit_projector(Z, s, method, seed)
    head = initial_head(model, kind)
    train_head(head, activate(model, proj.transform(Z, s, t=t), kind), y, epochs, lr, seed=seed)
    return RepresentationUnlearning(model, proj, head, float(t), kind)


def gbm_probe_auc(H: np.ndarray, s: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """An independent probe of S in H (n, h): the out-of-fold AUC of scikit-learn's HistGradientBoostingClassifier
    (one-vs-rest macro AUC for more than two groups; 0.5: nothing of S left). Nothing in the projection is trained
    against it."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    labels, yy = np.unique(np.asarray(s).astype(str), return_inverse=True)
    if len(labels) < 2:
        raise ValueError("S has a single group; a probe needs at least two")
    p = cross_val_predict(HistGradientBoostingClassifier(max_iter=100, random_state=seed), np.asarray(H), yy,
                          cv=StratifiedKFold(folds, shuffle=True, random_state=seed), method="predict_proba")
    if len(labels) == 2:
        return float(roc_auc_score(yy, p[:, 1]))
    return float(roc_auc_score(yy, p, multi_class="ovr"))


def mlp_from_state(state: dict[str, torch.Tensor] | dict[str, np.ndarray]) -> MLP:
    """The `MLP` whose state_dict is `state` (layer widths read from the weights' shapes)."""
    ws = sorted((k for k in state if k.startswith("net.") and k.endswith(".weight")), key=lambda k: int(k.split(".")[1]))
    shapes = [tuple(np.asarray(state[k]).shape) for k in ws]
    model = MLP(shapes[0][1], shapes[-1][0], [s[0] for s in shapes[:-1]])
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()})
    return model


def gaussian_shift_frame(n: int = 3000, seed: int = 0, d: int = 6, shift: float = 1.0) -> pd.DataFrame:
    """A synthetic table (tests and demos) whose groups differ only in location: S ~ Bernoulli(0.4) (column `s`, 0/1),
    x ∈ R^d standard normal with the first d/2 coordinates shifted by `shift` when s = 1, and the binary target
    y (high/low) from a noisy linear score of x. Any linear layer's output is Gaussian per group with a common
    covariance, so the Gaussian barycenter map of an MLP's pre-activation is exact there."""
    rng = np.random.default_rng(seed)
    s = (rng.random(n) < 0.4).astype(int)
    X = rng.normal(size=(n, d))
    X[:, : d // 2] += shift * s[:, None]
    beta = np.resize(np.array([1.0, 0.5, 0.0, 1.0, -1.0, 0.5]), d)
    y = X @ beta + 0.5 * rng.normal(size=n) > 0.7
    df = pd.DataFrame(X, columns=[f"x{j}" for j in range(d)])
    df["s"] = s
    df["y"] = np.where(y, "high", "low")
    return df


def pareto(model: nn.Module, projector: BarycenterProjector,
           heads: dict[float, nn.Linear], X: np.ndarray, s: np.ndarray, y: np.ndarray, kind: Kind = "embedding",
           seed: int = 0) -> list[dict]:
    """For each t of `heads`: the GBM probe AUC of the projected embedding of held-out rows X (n, d), s, y, and the
    accuracy of that t's refit head on them (one Pareto point per t)."""
    Z = representation(model, X, kind)
    out = []
    for t in sorted(heads):
        H = activate(model, projector.transform(Z, s, t=t), kind)
        out.append({"t": float(t), "s_auc_gbm": gbm_probe_auc(H, s, seed=seed), "accuracy": head_correct(heads[t], H, y) / max(len(y), 1)})
    return out


__all__: Sequence[str] = ["split_model", "representation", "activate", "initial_head", "train_head", "head_correct",
                          "fit_projector", "RepresentationUnlearning", "unlearn_representation", "gbm_probe_auc",
                          "mlp_from_state", "gaussian_shift_frame", "pareto"]
