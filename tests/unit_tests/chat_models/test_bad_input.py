"""Bad setups fail at construction and bad calls before any model runs, naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.rate_limiters import InMemoryRateLimiter

from langroute import LangrouteError, NotFittedError, Outcomes, RouterConfigError, SWRouter
from langroute.chat_models import RoutedChatModel
from langroute.embeddings import HashingEmbedder

from .fakes import EASY, STRONG, WEAK, ScriptedChatModel


def _build(strong, weak, router, **overrides):
    params = {"models": {STRONG: strong, WEAK: weak}, "router": router, "threshold": 0.5}
    return RoutedChatModel(**{**params, **overrides})


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan"), "0.5", True])
def test_threshold_must_be_a_number_in_unit_interval(strong, weak, router, threshold):
    with pytest.raises(LangrouteError, match="threshold must"):
        _build(strong, weak, router, threshold=threshold)


def test_model_unknown_to_the_router(strong, weak, router):
    models = {STRONG: strong, "mystery-model": weak}
    with pytest.raises(LangrouteError, match=r"\['mystery-model'\] are unknown to the router"):
        _build(strong, weak, router, models=models)


def test_router_that_knows_none_of_the_models(strong, weak, router):
    with pytest.raises(LangrouteError, match="the router knows none of the models"):
        _build(strong, weak, router, models={"a": strong, "b": weak})


def test_unfitted_router(strong, weak):
    with pytest.raises(LangrouteError, match="not fitted"):
        _build(strong, weak, SWRouter(HashingEmbedder(cache_dir=False)))
    # outside pydantic the same check raises the library's own error
    with pytest.raises(NotFittedError):
        _ = SWRouter(HashingEmbedder(cache_dir=False)).models


def test_router_that_is_not_a_router(strong, weak):
    with pytest.raises(LangrouteError, match="router must be a fitted langroute router"):
        _build(strong, weak, router={"models": [STRONG, WEAK]})


@pytest.mark.parametrize("bad", ["gpt-4o", None, object()])
def test_models_values_must_be_chat_models(strong, weak, router, bad):
    with pytest.raises(LangrouteError, match=rf"models\['{WEAK}'\] is a .*not a LangChain "
                                              "BaseChatModel"):
        _build(strong, weak, router, models={STRONG: strong, WEAK: bad})


def test_models_must_be_a_non_empty_dict(strong, weak, router):
    with pytest.raises(LangrouteError, match="models is empty"):
        _build(strong, weak, router, models={})
    with pytest.raises(LangrouteError, match="models must be a dict"):
        _build(strong, weak, router, models=[strong, weak])


def test_no_costs_anywhere(strong, weak):
    outcomes = Outcomes(ids=["a", "b"], prompts=["hello", "what is 2+2"], models=(STRONG, WEAK),
                        scores=np.array([[1.0, 1.0], [1.0, 0.0]]))
    router = SWRouter(HashingEmbedder(cache_dir=False)).fit(outcomes)
    with pytest.raises(LangrouteError, match="no costs to order the models by"):
        _build(strong, weak, router)
    assert _build(strong, weak, router, costs={STRONG: 1.0, WEAK: 0.1}).route(EASY)


@pytest.mark.parametrize(("costs", "problem"), [
    ({STRONG: 1.0}, "no USD-per-call figure for models"),
    ({STRONG: 1.0, WEAK: -1.0}, "must be a finite USD-per-call number"),
    ({STRONG: 1.0, WEAK: 0.1, "other": 0.5}, "not in models"),
])
def test_bad_costs(strong, weak, router, costs, problem):
    with pytest.raises(LangrouteError, match=problem):
        _build(strong, weak, router, costs=costs)


def test_misspelt_constructor_argument_is_rejected(strong, weak, router):
    with pytest.raises(LangrouteError, match="thresold"):
        _build(strong, weak, router, thresold=0.3)


def test_caching_and_rate_limits_belong_to_the_candidates(strong, weak, router):
    with pytest.raises(LangrouteError, match="rate_limiter belongs on the candidate models"):
        _build(strong, weak, router, rate_limiter=InMemoryRateLimiter())
    with pytest.raises(LangrouteError, match="cache belongs on the candidate models"):
        _build(strong, weak, router, cache=InMemoryCache())


def test_construction_errors_are_the_library_errors(strong, weak, router):
    """Pydantic's ValidationError is unwrapped: ``except LangrouteError`` catches every bad
    setup, and ``except ValueError`` still does too."""
    with pytest.raises(RouterConfigError) as info:
        _build(strong, weak, router, models={"a": strong})
    assert isinstance(info.value, ValueError)
    assert "knows none of the models" in str(info.value)


def test_exactly_one_operating_point(strong, weak, router):
    with pytest.raises(RouterConfigError, match="exactly one of threshold="):
        _build(strong, weak, router, threshold=None)
    with pytest.raises(RouterConfigError, match="exactly one of threshold="):
        _build(strong, weak, router, strong_fraction=0.3)


def test_credentials_are_rejected_with_the_reason(strong, weak, router):
    with pytest.raises(RouterConfigError, match="api_key belongs on each candidate model"):
        _build(strong, weak, router, api_key="sk-test")


def test_an_empty_message_list_is_refused_before_any_call(routed, strong, weak):
    """The one input with nothing to route (or send): a system-only prompt, an image-only
    turn or whitespace still route, as ChatOpenAI accepts them (test_routed_on_fake.py)."""
    for call in (routed.route, routed.invoke, lambda m: list(routed.stream(m))):
        with pytest.raises(ValueError, match="cannot route an empty message list"):
            call([])
    assert strong.received == [] and weak.received == []
    assert routed.route([HumanMessage(EASY), AIMessage("hi")]).text_chars == len(EASY)


async def test_async_calls_reject_an_empty_message_list_too(routed):
    with pytest.raises(ValueError, match="cannot route an empty message list"):
        await routed.ainvoke([])
    with pytest.raises(ValueError, match="cannot route an empty message list"):
        [chunk async for chunk in routed.astream([])]


def test_inner_errors_propagate_unchanged(router):
    boom = ConnectionError("provider down")
    failing = ScriptedChatModel(model_name=STRONG, error=boom)
    routed = RoutedChatModel(models={STRONG: failing, WEAK: ScriptedChatModel(model_name=WEAK)},
                             router=router, threshold=0.0, max_retries=0)
    for call in (routed.invoke, lambda m: list(routed.stream(m)),
                 lambda m: routed.generate([[HumanMessage(m)]])):
        with pytest.raises(ConnectionError) as info:
            call(EASY)
        assert info.value is boom


class _RefusesOneText(HashingEmbedder):
    """An embedding service that refuses one text (content policy, say), and so any batch
    holding it."""

    def _embed_batch(self, texts):
        if any("forbidden" in text for text in texts):
            raise ConnectionError("the embedding service refused a text")
        return super()._embed_batch(texts)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_batch_input_the_router_cannot_take_fails_alone(strong, weak, mode):
    """The inputs are decided in one router call; when it failed, every input of a
    return_exceptions batch failed with it, not just the one it could not take."""
    import asyncio

    from .fakes import THRESHOLD, synthetic_outcomes

    router = SWRouter(_RefusesOneText(dimension=256, cache_dir=False)).fit(synthetic_outcomes())
    routed = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                             threshold=THRESHOLD)
    inputs = [EASY, "a forbidden question", "What is 17 * 23?"]
    if mode == "sync":
        results = routed.batch(inputs, return_exceptions=True)
    else:
        results = asyncio.run(routed.abatch(inputs, return_exceptions=True))
    assert isinstance(results[1], ConnectionError)
    assert [r.content for i, r in enumerate(results) if i != 1] == [
        f"answer from {WEAK}", f"answer from {STRONG}"]
    with pytest.raises(ConnectionError):  # without return_exceptions the batch raises
        routed.batch(inputs)
