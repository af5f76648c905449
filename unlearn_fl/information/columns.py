"""One-column S-probes and their chance level (docs/method.md §3, "One column at a time").

A per-coordinate projection (quantile maps) makes each column's law the same in every group, so no single column
should predict S. The check probes S from one column at a time with the out-of-fold gradient-boosting probe of
`knn.knn_mi` and keeps the largest AUC over the d columns.

On n held-out rows that largest AUC is above 0.5 even when no column depends on S: it is the maximum of d noisy
AUCs. For two groups of n/2 rows each the Mann–Whitney standard error of one AUC is √((n + 1) / (3n²)), 0.039 at
n = 221, and the maximum of 9 such AUCs has its 95% point near 0.5 + 2.5 · 0.039 ≈ 0.60. A fixed threshold such as
0.55 is then below the noise of the check itself. The chance level here is measured, not assumed: the same statistic
with S permuted (B permutations; a permutation destroys any dependence and keeps every column's values and the
group sizes). The permutation p-value (1 + #{null ≥ observed}) / (1 + B) is exact for the test "no column depends
on S" (Phipson & Smyth 2010, Stat. Appl. Genet. Mol. Biol. 9:39).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from unlearn_fl.feature.validation import check_groups, check_permutation_test
from unlearn_fl.information.knn import gbm_auc


class ColumnProbe(BaseModel):
    """The largest one-column S-probe AUC and its chance level under permuted S.

    aucs: each column's out-of-fold AUC (d,); max_auc, column: the largest and its index; chance: the `level`
    quantile of the largest AUC over `permutations` permutations of S; p_value: the permutation p-value of max_auc.
    """

    model_config = ConfigDict(extra="forbid")

    aucs: list[float]
    max_auc: float
    column: int
    chance: float
    level: float
    p_value: float
    permutations: int
    n: int


def _column_aucs(Z: np.ndarray, y: np.ndarray, folds: int, random_state: int) -> np.ndarray:
    return np.array([gbm_auc(Z[:, [j]], y, folds, random_state) for j in range(Z.shape[1])])


def column_probe(Z: object, s: object, permutations: int = 19, level: float = 0.95, folds: int = 5,
                 random_state: int = 0) -> ColumnProbe:
    """Probe S from each column of Z (n, d) alone and compare the largest AUC with its chance level (module doc).

    Costs (1 + permutations) · d probe fits of `folds` folds each. Raises ValueError for bad shapes, fewer than two
    groups, a group with fewer than `folds` rows, permutations < 1 or level outside (0, 1).
    """
    check_permutation_test(permutations, level, folds)
    Z, y, _, _ = check_groups(Z, s, folds, "the one-column probe", "pass more rows or lower folds")
    aucs = _column_aucs(Z, y, folds, random_state)
    rng = np.random.default_rng(random_state)
    null = np.array([_column_aucs(Z, rng.permutation(y), folds, random_state).max() for _ in range(permutations)])
    observed = float(aucs.max())
    return ColumnProbe(aucs=[float(a) for a in aucs], max_auc=observed, column=int(aucs.argmax()),
                       chance=float(np.quantile(null, level)), level=level,
                       p_value=float((1 + np.sum(null >= observed)) / (1 + permutations)), permutations=permutations,
                       n=int(len(y)))
