"""USD cost of a call, from the maintained ``genai-prices`` table (offline snapshot).

``ModelPrices`` resolves every model a routed model may call once, at construction, so a model
the table does not know and the user did not price is an error before the first call (never a
silent zero). Users override or add a model's prices with ``prices={name: {...}}`` in USD per
million tokens, using genai-prices' own keys (``input_mtok``, ``output_mtok``,
``cache_read_mtok``, ``cache_write_mtok``), or a ``genai_prices.types.ModelPrice``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from .._exceptions import RouterConfigError
from ..pipeline import ModelRef, Usage

__all__ = ["ModelPrices", "PriceOverrides", "check_prices"]

#: ``{model name or provider model id: {"input_mtok": 0.15, "output_mtok": 0.6, ...}}``.
PriceOverrides = Mapping[str, Any]

_OVERRIDE_KEYS = frozenset({"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"})


def _override(name: str, value: Any) -> Any:
    from genai_prices import types

    if isinstance(value, types.ModelPrice):
        return value
    if not isinstance(value, Mapping):
        raise RouterConfigError(
            f"prices[{name!r}] must be a dict of USD per million tokens (input_mtok, "
            f"output_mtok, cache_read_mtok, cache_write_mtok) or a genai_prices ModelPrice, "
            f"got {type(value).__name__}")
    unknown = sorted(set(value) - _OVERRIDE_KEYS)
    if unknown:
        raise RouterConfigError(
            f"prices[{name!r}] has unknown keys {unknown}; valid: {sorted(_OVERRIDE_KEYS)}")
    missing = [key for key in ("input_mtok", "output_mtok") if key not in value]
    if missing:
        raise RouterConfigError(f"prices[{name!r}] needs {missing} (USD per million tokens)")
    out = {}
    for key, price in value.items():
        if isinstance(price, bool) or not isinstance(price, (int, float, Decimal)) or not (
            math.isfinite(price) and price >= 0
        ):
            raise RouterConfigError(
                f"prices[{name!r}][{key!r}] must be a finite USD-per-million-tokens number "
                f">= 0, got {price!r}")
        out[key] = Decimal(str(price))
    return types.ModelPrice(**out)


@dataclass(frozen=True)
class _Priced:
    """One model's price source: a user override (fixed) or a genai-prices model (which may
    have time-dependent prices, resolved at the call's time)."""

    source: str
    override: Any = None
    info: Any = None
    provider: Any = None

    def model_price(self, when: datetime) -> Any:
        if self.override is not None:
            return self.override
        return self.info.get_prices(when)


class ModelPrices:
    """Prices of the models a routed model may call, resolved once.

    Parameters
    ----------
    refs : iterable of ModelRef
        Every model that may be called (candidates, verifiers).
    prices : dict, default=None
        Overrides by model name or provider model id (see the module docstring).

    Raises
    ------
    RouterConfigError
        Naming every model that has no price (unknown to genai-prices and not overridden).
    """

    def __init__(self, refs: Iterable[ModelRef], prices: PriceOverrides | None = None) -> None:
        if prices is not None and not isinstance(prices, Mapping):
            raise RouterConfigError(f"prices must be a dict, got {type(prices).__name__}")
        self._overrides = {name: _override(name, value) for name, value in (prices or {}).items()}
        self._priced: dict[str, _Priced] = {}
        #: The priced models by name.
        self.refs: dict[str, ModelRef] = {}
        problems = []
        for ref in refs:
            self.refs[ref.name] = ref
            try:
                self._priced[ref.name] = self._resolve(ref)
            except RouterConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise RouterConfigError(
                "cannot price every model a budget must charge: " + "; ".join(problems)
                + ". Pass prices={model: {'input_mtok': ..., 'output_mtok': ...}} "
                "(USD per million tokens)")

    def _resolve(self, ref: ModelRef) -> _Priced:
        for key in (ref.name, ref.provider_model):
            if key is not None and key in self._overrides:
                return _Priced(f"override:{key}", override=self._overrides[key])
        if not ref.provider_model:
            raise RouterConfigError(f"{ref.name!r}: its provider model id is unknown")
        from genai_prices import data_snapshot

        snapshot = data_snapshot.get_snapshot()
        try:
            provider, info = snapshot.find_provider_model(ref.provider_model, None, ref.provider,
                                                          None)
        except LookupError:
            # The framework's provider name may not be genai-prices' id (e.g. "google_genai"):
            # look the model up across providers before giving up.
            try:
                provider, info = snapshot.find_provider_model(ref.provider_model, None, None, None)
            except LookupError:
                raise RouterConfigError(
                    f"{ref.name!r}: genai-prices does not know model {ref.provider_model!r}"
                    + (f" of provider {ref.provider!r}" if ref.provider else "")) from None
        return _Priced(f"genai-prices:{provider.id}/{info.id}", info=info, provider=provider)

    def __contains__(self, name: object) -> bool:
        return name in self._priced

    def add(self, ref: ModelRef) -> None:
        """Price a model first met at call time (a step's own verifier); raises if unknown."""
        if ref.name not in self._priced:
            self._priced[ref.name] = self._resolve(ref)
            self.refs[ref.name] = ref

    def source(self, name: str) -> str:
        """Where ``name``'s prices come from (``override:...`` or ``genai-prices:prov/model``)."""
        return self._priced[name].source

    def cost(self, ref: ModelRef, usage: Usage, when: datetime) -> Decimal:
        """USD of ``usage`` on ``ref`` at time ``when`` (input includes cached tokens, output
        includes reasoning tokens, as providers report them)."""
        import genai_prices

        self.add(ref)
        priced = self._priced[ref.name]
        counts: dict[str, int] = {"input_tokens": int(usage.input_tokens),
                                  "output_tokens": int(usage.output_tokens)}
        if usage.cache_read_tokens:
            counts["cache_read_tokens"] = int(usage.cache_read_tokens)
        if usage.reasoning_tokens:
            counts["output_reasoning_tokens"] = int(usage.reasoning_tokens)
        result = priced.model_price(when).calc_price(genai_prices.Usage(**counts))
        return Decimal(result["total_price"])


def check_prices(refs: Iterable[ModelRef], prices: PriceOverrides | None = None) -> ModelPrices:
    """Resolve the prices of ``refs`` now; raises ``RouterConfigError`` naming every model
    without one. Adapters call this at construction."""
    return ModelPrices(refs, prices)
