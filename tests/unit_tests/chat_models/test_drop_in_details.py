"""Drop-in details a ChatOpenAI user relies on (issue: what a new user hits today)."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import ConfigurableField

from langroute import Budget
from langroute.chat_models import RoutedChatModel

from .fakes import EASY, HARD, STRONG, THRESHOLD, WEAK, ScriptedChatModel


def test_model_override_is_recorded_as_what_was_called(routed, strong):
    answer = routed.invoke(HARD, model="gpt-4.1-mini")
    record = answer.response_metadata["langroute"]
    assert record["model"] == STRONG and record["provider_model"] == "gpt-4.1-mini"
    assert strong.received_kwargs[-1]["model"] == "gpt-4.1-mini"
    plain = routed.invoke(HARD).response_metadata["langroute"]
    assert plain["provider_model"] == STRONG  # the client's own model_name


def test_model_name_names_the_candidates(routed):
    assert routed.model_name == f"{STRONG}|{WEAK}"


class CountingModel(ScriptedChatModel):
    def get_num_tokens_from_messages(self, messages: Any, tools: Any = None) -> int:
        return 1000 + len(messages)

    def get_num_tokens(self, text: str) -> int:
        return 2000


def test_token_counts_come_from_the_candidate_that_would_answer(router):
    routed = RoutedChatModel(models={STRONG: CountingModel(model_name=STRONG),
                                     WEAK: ScriptedChatModel(model_name=WEAK)},
                             router=router, threshold=THRESHOLD)
    assert routed.get_num_tokens_from_messages([("user", HARD)]) == 1001
    assert routed.get_num_tokens(HARD) == 2000


def test_streaming_stream_true_is_passed_to_the_chosen_model(router, strong, weak):
    routed = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                             threshold=THRESHOLD, streaming=True)
    routed.invoke(EASY)
    assert weak.received_kwargs[-1].get("stream") is True


class CountingLimiter:
    """A rate limiter that counts acquisitions (BaseRateLimiter's interface)."""

    def __init__(self) -> None:
        self.acquired = 0

    def acquire(self, *, blocking: bool = True) -> bool:
        self.acquired += 1
        return True

    async def aacquire(self, *, blocking: bool = True) -> bool:
        self.acquired += 1
        return True


async def test_event_streams_respect_the_candidates_rate_limiter(router):
    from langchain_core.rate_limiters import BaseRateLimiter

    class Limiter(CountingLimiter, BaseRateLimiter):
        pass

    limiter = Limiter()
    weak = ScriptedChatModel(model_name=WEAK, rate_limiter=limiter)
    routed = RoutedChatModel(models={STRONG: ScriptedChatModel(model_name=STRONG), WEAK: weak},
                             router=router, threshold=THRESHOLD)
    list(routed.stream_events(EASY, version="v3"))
    assert limiter.acquired == 1
    [e async for e in await routed.astream_events(EASY, version="v3")]
    assert limiter.acquired == 2


def test_a_refit_router_is_picked_up_by_its_fit_version(strong, weak):
    """The policy cache is keyed on the router's fit_version_, not on id() of its arrays
    (a freed address can be reused after a refit)."""
    from langroute import SWRouter
    from langroute.embeddings import HashingEmbedder

    from .fakes import synthetic_outcomes

    router = SWRouter(HashingEmbedder(dimension=256, cache_dir=False)).fit(synthetic_outcomes())
    routed = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                             threshold=THRESHOLD)
    before, version = routed.pipeline, router.fit_version_
    assert routed.pipeline is before  # cached while nothing changed
    router.fit(synthetic_outcomes())
    assert router.fit_version_ != version
    assert routed.pipeline is not before


def test_an_operating_point_instead_of_a_threshold(router, strong, weak):
    """strong_fraction / target_cost resolve to a threshold from the out-of-fold calibration
    scores the router kept at fit time (nothing is embedded again); the decision shows both."""
    import numpy as np

    from langroute import calibrate_threshold

    routed = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                             strong_fraction=0.5)
    expected = calibrate_threshold(router, strong_fraction=0.5)
    decision = routed.route(HARD)
    assert decision.requested == {"strong_fraction": 0.5}
    assert decision.threshold == expected
    assert routed.invoke(HARD).response_metadata["langroute"]["requested"] == {
        "strong_fraction": 0.5}
    # the resolved threshold really sends about half the calibration prompts to the strong model
    levels = routed.pipeline.policy.ladder.levels(router.calibration_win_matrices_)
    share = float(np.mean(levels[:, 0] >= expected))
    assert 0.3 <= share <= 0.7
    cheap = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                            target_cost=3e-4)
    assert cheap.route(HARD).requested == {"target_cost": 3e-4}
    assert cheap.route(HARD).threshold > decision.threshold


def test_configurable_fields_keep_the_models_budget_and_feedback_stores(router, strong, weak):
    # LangChain builds a new model for every configured call: it must not get memory://
    # stores of its own (an account starting at $0 each call, decisions nobody can rate)
    prices = {name: {"input_mtok": 1.0, "output_mtok": 1.0} for name in (STRONG, WEAK)}
    routed = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                             threshold=THRESHOLD, budgets={"*": Budget(limit_usd=1.0)},
                             spend_store="memory://", prices=prices, feedback_store="memory://")
    configurable = routed.configurable_fields(temperature=ConfigurableField(id="temperature"))
    config = {"configurable": {"temperature": 0.2}}
    first = configurable.invoke(EASY, config)
    second = configurable.invoke(EASY, config)
    assert weak.received_kwargs[-1]["temperature"] == 0.2
    assert first.response_metadata["langroute"]["budget"]["spent_usd"] == 0.0
    spent = second.response_metadata["langroute"]["budget"]["spent_usd"]
    assert spent > 0.0  # the first call's spend, on the one account
    assert routed.invoke(EASY).response_metadata["langroute"]["budget"]["spent_usd"] > spent
    event = routed.record_feedback(first.response_metadata["langroute"]["decision_id"],
                                   score=1.0)
    assert event.score == 1.0


def test_a_store_urls_password_never_reaches_repr_or_langsmiths_serialisation(routed):
    """LangChain serialises a model it cannot dump by its repr (``dumpd``), which tracers
    send to LangSmith: a Redis password in ``spend_store`` / ``feedback_store`` went with it."""
    from langchain_core.load import dumpd

    copy = routed.model_copy(update={"spend_store": "redis://app:s3cret@cache:6379/0",
                                     "feedback_store": "redis://:fb-s3cret@cache/1"})
    for shown in (repr(copy), str(dumpd(copy))):
        assert "s3cret" not in shown and "redis://app:***@cache:6379/0" in shown
