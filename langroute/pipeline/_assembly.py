"""From an adapter's settings to its ``CallPipeline``: one assembly for every framework.

The LangChain chat model and the LlamaIndex LLM take the same settings (candidates, router, one
operating point, retries, fallback, timeout, cascade, budgets). ``PipelineCache`` checks them,
resolves the operating point to a threshold, builds the pipeline, and rebuilds it only when a
setting or the router's fit changes. A model and its ``model_copy``s share one cache, so it
keeps the last few pipelines (a copy with another threshold does not rebuild on every other
call) and opens each spend store URL once (one connection; a ``memory://`` store keeps its
spend across a refit and across copies with other budgets). The budget step prices every
candidate and every
verifier or judge the cascade asks as a model object (described by the adapter's own
``describe``), so an unpriced one is a ``RouterConfigError`` at construction, not after the
cheap answer is paid for. ``check_unit_interval``, ``check_positive``, ``check_budgets``,
``check_prices_arg`` and ``check_cascade`` word the adapters' argument errors alike; call
``check_budgets`` first, so a malformed ``budgets=`` is reported as such.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .._calibration import calibrate_threshold
from .._checks import check_positive, check_unit_interval
from .._decision import RoutingPolicy
from .._exceptions import RouterConfigError
from ._pipeline import CallPipeline
from ._retry import Fallback, RetryPolicy
from ._steps import CascadeStep, Recorder
from ._types import ModelRef

__all__ = [
    "DEFAULT_SPEND_STORE",
    "PipelineCache",
    "check_budgets",
    "check_cascade",
    "check_positive",
    "check_prices_arg",
    "check_unit_interval",
    "verifier_refs",
]

#: Where spend is kept when budgets are given without a ``spend_store``.
DEFAULT_SPEND_STORE = "sqlite:///langroute-spend.db"

_OPERATING_POINTS = ("threshold", "strong_fraction", "target_cost")


def check_budgets(budgets: Any) -> dict[str, Any] | None:
    """``budgets`` as a dict (None passes); anything but a mapping (a list of Budgets, say) is a
    RouterConfigError saying what ``budgets=`` takes. The entries are checked by
    ``langroute.budgets`` when the pipeline is built."""
    if budgets is None:
        return None
    if not isinstance(budgets, Mapping):
        raise RouterConfigError(
            "budgets must be a dict of scope -> langroute Budget, the scope an agent name, "
            '"user:<id>", "tenant:<id>" or "*" for every other caller (e.g. '
            f'{{"*": Budget(limit_usd=10.0)}}), got {type(budgets).__name__}'
        )
    return dict(budgets)


def check_prices_arg(prices: Any) -> dict[str, Any] | None:
    """``prices`` as a dict (None passes); anything but a mapping is a RouterConfigError. The
    entries are checked by ``langroute.budgets`` when the pipeline is built."""
    if prices is None:
        return None
    if not isinstance(prices, Mapping):
        raise RouterConfigError(f"prices must be a dict, got {type(prices).__name__}")
    return dict(prices)


def check_cascade(cascade: Any, known: Iterable[str], is_model: Callable[[Any], bool],
                  kind: str) -> None:
    """The cascade is a CascadeStep (RouterConfigError otherwise), and every model its scorer
    asks is one of ``known`` by name or a ``kind`` object ``is_model`` accepts
    (CascadeConfigError otherwise): found out at call time, the cheap answer would already be
    paid for. Its verifiers' prices are checked when the pipeline is built (with budgets)."""
    if cascade is None:
        return
    if not isinstance(cascade, CascadeStep):
        raise RouterConfigError(
            "cascade must be a langroute.cascade.Cascade (a CascadeStep), got "
            f"{type(cascade).__name__}")
    check = getattr(cascade, "check_models", None)
    if callable(check):
        check(list(known), is_model, kind)


def verifier_refs(cascade: Any, describe: Callable[[str, Any], ModelRef]) -> dict[str, ModelRef]:
    """The models a cascade asks as model objects (not by a candidate's name), described by the
    adapter's ``describe`` (provider and model id, for pricing) under the scorer's name."""
    refs = {}
    for ref in getattr(cascade, "asks", ()):
        if ref.model is not None:
            refs[ref.name] = replace(describe(ref.name, ref.model), name=ref.name,
                                     candidate=False)
    return refs


class PipelineCache:
    """An adapter's pipeline, built from its settings and rebuilt when they change.

    Call ``get`` on every routed call: it looks the settings (by identity for objects, by
    value for numbers) and the router's ``fit_version_`` up among the ``KEPT`` newest builds,
    which is cheap.
    """

    #: Pipelines (and budget steps) kept: the settings of a model and a few copies.
    KEPT = 8

    def __init__(self) -> None:
        # key -> (the objects whose ids the key holds, kept alive so no id is reused; value)
        self._pipelines: OrderedDict[tuple[Any, ...], tuple[Any, CallPipeline]] = OrderedDict()
        self._budgets: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
        self._stores: dict[str, Any] = {}
        self._lock = threading.Lock()  # copies in other threads share this cache

    def get(
        self,
        *,
        router: Any,
        models: Mapping[str, Any],
        describe: Callable[[str, Any], ModelRef],
        threshold: float | None,
        strong_fraction: float | None,
        target_cost: float | None,
        costs: Mapping[str, float] | None,
        max_retries: int,
        fallback: Any,
        timeout: float | None,
        cascade: Any,
        budgets: Mapping[str, Any] | None,
        spend_store: Any,
        prices: Mapping[str, Any] | None = None,
        keep_text: bool = False,
        recorders: Callable[[], Sequence[Recorder]] = tuple,
        depends_on: tuple[Any, ...] = (),
    ) -> CallPipeline:
        """The pipeline for these settings (``describe(name, model)`` makes a candidate's
        ``ModelRef``; ``recorders()`` is called only when the pipeline is (re)built, and
        ``depends_on`` names other objects it was built from, compared by identity)."""
        key = (id(router), getattr(router, "fit_version_", None), threshold, strong_fraction,
               target_cost, tuple(models), tuple(map(id, models.values())),
               None if costs is None else tuple(sorted(costs.items())), max_retries, fallback,
               timeout, id(cascade), id(budgets), spend_store, id(prices), keep_text,
               tuple(map(id, depends_on)))
        with self._lock:
            kept = self._pipelines.get(key)
            if kept is not None:
                self._pipelines.move_to_end(key)
                return kept[1]
            # Set after construction (an attribute assignment no validator saw), a value is
            # checked here, when the pipeline for it is built.
            check_unit_interval("threshold", threshold)
            check_unit_interval("strong_fraction", strong_fraction)
            check_positive("target_cost", target_cost)
            check_positive("timeout", timeout)
            policy = self._policy(router, list(models), costs, threshold=threshold,
                                  strong_fraction=strong_fraction, target_cost=target_cost)
            refs = {name: describe(name, model) for name, model in models.items()}
            pipeline = CallPipeline(
                policy, refs, retry=RetryPolicy(max_retries), fallback=Fallback(fallback),
                timeout=timeout,
                budget=self._budget_step(budgets, spend_store, prices,
                                         {**verifier_refs(cascade, describe), **refs}),
                cascade=cascade, keep_text=keep_text, recorders=tuple(recorders()),
            )
            # the key holds ids: the objects are kept with the pipeline, so no id is reused
            pins = (router, cascade, budgets, prices, *models.values(), *depends_on)
            _keep(self._pipelines, key, (pins, pipeline), self.KEPT)
            return pipeline

    @staticmethod
    def _policy(router: Any, names: list[str], costs: Mapping[str, float] | None, *,
                threshold: float | None, strong_fraction: float | None,
                target_cost: float | None) -> RoutingPolicy:
        """The routing policy at the one operating point given (resolved from the router's
        out-of-fold calibration scores when it is a share or a cost)."""
        given = {name: value for name, value in zip(
            _OPERATING_POINTS, (threshold, strong_fraction, target_cost), strict=True)
            if value is not None}
        if len(given) != 1:
            raise RouterConfigError(
                "give exactly one of threshold=, strong_fraction= or target_cost= "
                f"(got {list(given) or 'none'})"
            )
        if threshold is not None:
            return RoutingPolicy.build(router, names, threshold, costs)
        # a fitted router that knows the names is checked before anything is calibrated on it
        RoutingPolicy.build(router, names, 0.5, costs)
        resolved = calibrate_threshold(router, None, models=names, costs=costs, **given)
        return RoutingPolicy.build(router, names, resolved, costs, requested=given)

    def _budget_step(self, budgets: Mapping[str, Any] | None, spend_store: Any,
                     prices: Mapping[str, Any] | None, refs: Mapping[str, ModelRef]) -> Any:
        """The budget step pricing ``refs``: the candidates and the cascade's verifier objects
        (a candidate's name wins over a verifier's of the same name)."""
        if budgets is None:
            if spend_store is not None:
                raise RouterConfigError("spend_store is set but budgets is not; give budgets=")
            if prices is not None:
                raise RouterConfigError("prices is set but budgets is not; give budgets=")
            return None
        from ..budgets import budget_step, open_store

        store = spend_store if spend_store is not None else DEFAULT_SPEND_STORE
        key = (id(budgets), store, id(prices),
               tuple((r.name, r.provider_model, r.provider) for r in refs.values()))
        kept = self._budgets.get(key)
        if kept is not None:
            self._budgets.move_to_end(key)
            return kept[1]
        if isinstance(store, str):  # one connection (one memory:// store) per URL
            opened = self._stores.get(store)
            if opened is None:
                opened = self._stores[store] = open_store(store)
            store = opened
        step = budget_step(budgets, store, refs, prices)
        _keep(self._budgets, key, ((budgets, prices), step), self.KEPT)
        return step


def _keep(kept: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any,
          most: int) -> None:
    """Remember ``value`` as the newest entry, forgetting the oldest beyond ``most``."""
    kept[key] = value
    while len(kept) > most:
        kept.popitem(last=False)
