"""``BudgetGuard``: the call pipeline's budget step, and ``budget_step``, the adapters' factory.

Per routed call: ``admit`` reads the caller's account (the scope from ``CallContext.scope``,
else ``"*"``) and may deny (hard), shift the threshold (soft) or switch to the cheapest model
(``on_exhausted="cheapest"``); the budget state goes into ``RoutingDecision.budget``. Then
every provider call the pipeline makes (the answer, each retry, fallback, cascade step and
verifier call) is ``reserve``-d at its worst-case cost first and ``commit``-ted at its actual
cost from usage, or ``release``-d on error. A hold carries a lease: if the worker dies, its
hold stops counting once the lease passes.

Worst case of one call: ``input_tokens x input price + max_output_tokens x output price``
(genai-prices' tiers applied), where ``input_tokens`` is the adapter's count of the prompt and
``max_output_tokens`` the call's ``max_tokens``, or ``default_max_output_tokens`` (4096) when
the call sets none. A judge's call is sized for its own prompt (``estimated_tokens``) and the
judge model's ``max_tokens``, not the caller's (``pipeline._sized_for``). A call whose answer
overruns its reservation is still charged in full.
A stream cut short after its first chunk (abandoned or failed) is committed at an estimate
(the prompt's estimated input plus ``estimated_tokens`` of the text it delivered, at most the call's
``max_tokens``), marked ``usage_estimated``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._exceptions import BudgetExceededError, RouterConfigError
from ..pipeline import Answer, CallState, ModelRef, TokenEstimate, Usage
from ._budget import DEFAULT_SCOPE, Budget, Clock, period_of, utc_now
from ._pricing import ModelPrices, PriceOverrides
from ._store import Account, AccountState, SpendStore, from_nano, open_store, to_nano

if TYPE_CHECKING:
    from .._decision import RoutingDecision

__all__ = ["BudgetGuard", "Hold", "budget_step"]

#: Output tokens assumed for a call that sets no ``max_tokens`` (documented cap).
DEFAULT_MAX_OUTPUT_TOKENS = 4096
#: Seconds a hold counts against its budget if its worker never commits or releases.
DEFAULT_LEASE_SECONDS = 600.0


@dataclass(frozen=True)
class Hold:
    """One provider call's reservation: its account, model, worst-case amount and lease."""

    hold_id: str
    account: Account
    budget: Budget
    ref: ModelRef
    amount_nano: int
    expires_at: float
    decision_id: str
    state: AccountState = field(repr=False)

    def to_event(self) -> dict[str, Any]:
        """The ``langroute.budget`` reserve event's fields."""
        return {"decision_id": self.decision_id, "hold_id": self.hold_id,
                **_scope_fields(self.account, self.budget), "model": self.ref.name,
                "reserved_usd": from_nano(self.amount_nano), "lease_expires_at": self.expires_at,
                **_totals(self.state)}


def _scope_fields(account: Account, budget: Budget) -> dict[str, Any]:
    return {"scope": account.scope, "window": account.window, "period": account.period,
            "mode": budget.mode, "limit_usd": budget.limit_usd}


def _totals(state: AccountState) -> dict[str, Any]:
    return {"spent_usd": from_nano(state.spent_nano),
            "reserved_total_usd": from_nano(state.reserved_nano)}


class BudgetGuard:
    """Per-scope budgets for a routed model: the ``BudgetStep`` the pipeline calls.

    Parameters
    ----------
    budgets : dict of str to Budget
        By scope: an agent name (LangChain's ``lc_agent_name`` or the ``agent`` metadata key),
        ``"user:<id>"`` / ``"tenant:<id>"`` (the ``user`` / ``tenant`` keys), and ``"*"``, the
        one shared account of every caller without a budget of its own. Without ``"*"``,
        callers whose scope is not listed are not limited.
    store : SpendStore or str
        A store or its URL (``open_store``).
    prices : ModelPrices
        Prices of every model that may be called (``check_prices``).
    lease_seconds : float, default=600
        How long a hold counts if its worker dies; longer than the slowest call.
    default_max_output_tokens : int, default=4096
        Output tokens reserved for a call that sets no ``max_tokens``.
    clock : callable, default=``datetime.now(UTC)``
        Time source for windows and leases (injectable).
    """

    def __init__(self, budgets: Mapping[str, Budget], store: SpendStore | str,
                 prices: ModelPrices, *, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 default_max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
                 clock: Clock = utc_now) -> None:
        if not isinstance(budgets, Mapping) or not budgets:
            raise RouterConfigError("budgets must be a non-empty dict of scope -> Budget")
        for scope, budget in budgets.items():
            if not isinstance(scope, str) or not scope:
                raise RouterConfigError(f"budget scopes must be non-empty strings, got {scope!r}")
            if not isinstance(budget, Budget):
                raise RouterConfigError(
                    f"budgets[{scope!r}] must be a langroute Budget, got {type(budget).__name__}")
        if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, (int, float)) or not (
            math.isfinite(lease_seconds) and lease_seconds > 0
        ):
            raise RouterConfigError(f"lease_seconds must be a number > 0, got {lease_seconds!r}")
        if isinstance(default_max_output_tokens, bool) or not isinstance(
            default_max_output_tokens, int
        ) or default_max_output_tokens < 1:
            raise RouterConfigError("default_max_output_tokens must be an int >= 1, got "
                                    f"{default_max_output_tokens!r}")
        if not callable(clock):
            raise RouterConfigError(f"clock must be a callable returning a datetime, got {clock!r}")
        period_of("day", clock())  # raises unless the clock gives an aware datetime
        self.budgets = dict(budgets)
        self.store = open_store(store)
        self.prices = prices
        self.lease_seconds = float(lease_seconds)
        self.default_max_output_tokens = default_max_output_tokens
        self.clock = clock

    # -- pure logic shared by the sync and async forms --------------------------------------------
    def account_of(self, state: CallState) -> tuple[Account, Budget] | None:
        """The account the call is charged to, or None when no budget applies."""
        scope = state.context.scope
        name = scope if scope is not None and scope in self.budgets else DEFAULT_SCOPE
        budget = self.budgets.get(name)
        if budget is None:
            return None
        return Account(name, budget.window, period_of(budget.window, self.clock())), budget

    def worst_case_nano(self, state: CallState, ref: ModelRef) -> int:
        """The most one call to ``ref`` can cost (see the module docstring), in nano-USD."""
        if state.estimate is None:
            raise RouterConfigError(
                "the budget step needs the adapter's token estimate (CallPipeline.run(..., "
                "estimate=...)) to reserve a call's worst-case cost")
        estimate: TokenEstimate = state.estimate(ref)
        out = estimate.max_output_tokens
        usage = Usage(input_tokens=int(estimate.input_tokens),
                      output_tokens=int(out if out is not None else
                                        self.default_max_output_tokens))
        return to_nano(self.prices.cost(ref, usage, self.clock()), ceil=True)

    def _cheapest(self, state: CallState) -> str:
        ladder = state.policy.ladder
        return str(ladder.models[int(ladder.rungs[0])])

    def _admitted(self, state: CallState, account: Account, budget: Budget,
                  current: AccountState) -> RoutingDecision:
        """Deny, shift or keep the decision, given the account's state (pure)."""
        decision = state.decision
        limit = to_nano(budget.limit_usd)
        used = current.spent_nano + current.reserved_nano
        available = limit - used
        sticky = state.request.sticky_model is not None  # a tool loop stays on its model
        over_allowed = budget.mode == "soft" and budget.on_exhausted == "cheapest"
        if available <= 0 and not over_allowed:
            raise BudgetExceededError(
                account.scope, account.window, account.period, limit_usd=budget.limit_usd,
                spent_usd=from_nano(current.spent_nano),
                reserved_usd=from_nano(current.reserved_nano))
        action = "admit"
        if budget.mode == "soft" and not sticky:
            shifted = budget.soft_threshold(decision.threshold, used / limit if limit else 1.0)
            if shifted > decision.threshold:
                decision = decision.with_threshold(shifted, state.policy.ladder)
                action = "shift"
        if budget.on_exhausted == "cheapest" and not sticky and state.estimate is not None \
                and self.worst_case_nano(state, self._ref_of(decision.model)) > available:
            cheapest = self._cheapest(state)
            if cheapest != decision.model:
                note = "budget: the routed model's worst case does not fit, the cheapest answers"
                decision = replace(decision, model=cheapest,
                                   estimated_cost_usd=state.policy.costs.get(cheapest),
                                   note=f"{decision.note}; {note}" if decision.note else note)
                action = "cheapest"
        info = {**_scope_fields(account, budget), "spent_usd": from_nano(current.spent_nano),
                "reserved_usd": from_nano(current.reserved_nano),
                "remaining_usd": from_nano(available), "action": action,
                "threshold": decision.threshold}
        return replace(decision, budget=info)

    def _ref_of(self, model: str) -> ModelRef:
        return self.prices.refs.get(model) or ModelRef(model)

    def _reservation(self, state: CallState, ref: ModelRef
                     ) -> tuple[Account, Budget, dict[str, Any]] | None:
        found = self.account_of(state)
        if found is None:
            return None
        account, budget = found
        now = self.clock().timestamp()
        enforce = not (budget.mode == "soft" and budget.on_exhausted == "cheapest"
                       and ref.name == self._cheapest(state))
        args = {"limit_nano": to_nano(budget.limit_usd),
                "amount_nano": self.worst_case_nano(state, ref), "hold_id": uuid.uuid4().hex,
                "now": now, "expires_at": now + self.lease_seconds, "enforce": enforce}
        return account, budget, args

    def _hold(self, state: CallState, ref: ModelRef, account: Account, budget: Budget,
              args: dict[str, Any], granted: bool, after: AccountState) -> Hold:
        if not granted:
            raise BudgetExceededError(
                account.scope, account.window, account.period, limit_usd=budget.limit_usd,
                spent_usd=from_nano(after.spent_nano), reserved_usd=from_nano(after.reserved_nano),
                requested_usd=from_nano(args["amount_nano"]), model=ref.name)
        return Hold(args["hold_id"], account, budget, ref, args["amount_nano"],
                    args["expires_at"], state.context.call_id, after)

    def _cost(self, hold: Hold, answer: Answer) -> tuple[int, bool]:
        """Actual cost of the answer; without a usage report, the reserved worst case (never
        a silent zero)."""
        if answer.usage is None:
            return hold.amount_nano, True
        cost = self.prices.cost(hold.ref, answer.usage, self.clock())
        return to_nano(Decimal(cost)), False

    @staticmethod
    def _commit_event(hold: Hold, cost: int, missing: bool, after: AccountState,
                      estimated: bool = False) -> dict[str, Any]:
        event = {"decision_id": hold.decision_id, "hold_id": hold.hold_id,
                 **_scope_fields(hold.account, hold.budget), "model": hold.ref.name,
                 "reserved_usd": from_nano(hold.amount_nano), "cost_usd": from_nano(cost),
                 "released_usd": from_nano(max(hold.amount_nano - cost, 0)), **_totals(after)}
        if missing:
            event["usage_missing"] = True
        if estimated:
            event["usage_estimated"] = True
        return event

    @staticmethod
    def _release_event(hold: Hold, error: BaseException | None, after: AccountState
                       ) -> dict[str, Any]:
        return {"decision_id": hold.decision_id, "hold_id": hold.hold_id,
                **_scope_fields(hold.account, hold.budget), "model": hold.ref.name,
                "released_usd": from_nano(hold.amount_nano),
                "error": None if error is None else type(error).__name__, **_totals(after)}

    # -- BudgetStep, sync -------------------------------------------------------------------------
    def admit(self, state: CallState) -> RoutingDecision:
        found = self.account_of(state)
        if found is None:
            return state.decision
        account, budget = found
        current = self.store.state(account, now=self.clock().timestamp())
        return self._admitted(state, account, budget, current)

    def reserve(self, state: CallState, ref: ModelRef) -> Hold | None:
        planned = self._reservation(state, ref)
        if planned is None:
            return None
        account, budget, args = planned
        granted, after = self.store.reserve(account, **args)
        return self._hold(state, ref, account, budget, args, granted, after)

    def commit(self, hold: Hold, answer: Answer) -> dict[str, Any]:
        cost, missing = self._cost(hold, answer)
        after = self.store.commit(hold.account, hold_id=hold.hold_id, cost_nano=cost,
                                  now=self.clock().timestamp())
        return self._commit_event(hold, cost, missing, after, answer.usage_estimated)

    def release(self, hold: Hold, error: BaseException | None) -> dict[str, Any]:
        after = self.store.release(hold.account, hold_id=hold.hold_id,
                                   now=self.clock().timestamp())
        return self._release_event(hold, error, after)

    # -- BudgetStep, async (same logic, awaiting the store) ---------------------------------------
    async def aadmit(self, state: CallState) -> RoutingDecision:
        found = self.account_of(state)
        if found is None:
            return state.decision
        account, budget = found
        current = await self.store.astate(account, now=self.clock().timestamp())
        return self._admitted(state, account, budget, current)

    async def areserve(self, state: CallState, ref: ModelRef) -> Hold | None:
        planned = self._reservation(state, ref)
        if planned is None:
            return None
        account, budget, args = planned
        granted, after = await self.store.areserve(account, **args)
        return self._hold(state, ref, account, budget, args, granted, after)

    async def acommit(self, hold: Hold, answer: Answer) -> dict[str, Any]:
        cost, missing = self._cost(hold, answer)
        after = await self.store.acommit(hold.account, hold_id=hold.hold_id, cost_nano=cost,
                                         now=self.clock().timestamp())
        return self._commit_event(hold, cost, missing, after, answer.usage_estimated)

    async def arelease(self, hold: Hold, error: BaseException | None) -> dict[str, Any]:
        after = await self.store.arelease(hold.account, hold_id=hold.hold_id,
                                          now=self.clock().timestamp())
        return self._release_event(hold, error, after)


def budget_step(budgets: Mapping[str, Budget], spend_store: SpendStore | str,
                refs: Mapping[str, ModelRef], prices: PriceOverrides | None = None,
                **options: Any) -> BudgetGuard:
    """The budget step for a routed model (what ``RoutedChatModel(budgets=..., spend_store=...)``
    builds): checks every budget, prices every model in ``refs`` now (an unpriced model is a
    ``RouterConfigError``) and opens the store (``BudgetStoreError`` if unusable).

    ``options`` go to ``BudgetGuard`` (``lease_seconds``, ``default_max_output_tokens``,
    ``clock``).
    """
    model_prices = ModelPrices(refs.values(), prices)
    return BudgetGuard(budgets, spend_store, model_prices, **options)
