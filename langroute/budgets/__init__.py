"""Per-scope cost budgets that hold under concurrency, across processes and machines.

``Budget`` says how much a scope (an agent, a user, a tenant, ``"*"`` for everyone else) may
spend per window; ``budget_step`` builds the call pipeline's ``BudgetStep`` from budgets, a
spend store URL (``memory://``, ``sqlite:///spend.db``, ``redis://host:port/0``) and the models'
prices (``genai-prices``, overridable). Framework-free: nothing here imports LangChain.
"""

from __future__ import annotations

from ._budget import DEFAULT_SCOPE, WINDOWS, Budget, period_of
from ._pricing import ModelPrices, check_prices
from ._report import spend_report
from ._step import BudgetGuard, Hold, budget_step
from ._store import Account, AccountState, MemoryStore, SpendStore, open_store

__all__ = [
    "DEFAULT_SCOPE",
    "WINDOWS",
    "Account",
    "AccountState",
    "Budget",
    "BudgetGuard",
    "Hold",
    "MemoryStore",
    "ModelPrices",
    "SpendStore",
    "budget_step",
    "check_prices",
    "open_store",
    "period_of",
    "spend_report",
]
