"""Privacy accounting (Opacus accountants) and DP-SGD training helpers (docs/method.md §4, soundness)."""

from unlearn_fl.accounting.accountant import AccountantName, Phase, account, account_phases, make_accountant
from unlearn_fl.accounting.dp_sgd import dp_train_epochs, make_dp_sgd, spent

__all__ = [
    "AccountantName",
    "Phase",
    "account",
    "account_phases",
    "dp_train_epochs",
    "make_accountant",
    "make_dp_sgd",
    "spent",
]
