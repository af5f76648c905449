"""The withdrawal ledger: append-only, hash-chained, durable (see store.py and chain.py)."""

from unlearn_fl.ledger.chain import FINAL, STATES, ChainProblem, check_chain
from unlearn_fl.ledger.store import Ledger, LedgerEntry, LedgerError, default_ledger_url

__all__ = ["FINAL", "STATES", "ChainProblem", "Ledger", "LedgerEntry", "LedgerError", "check_chain", "default_ledger_url"]
