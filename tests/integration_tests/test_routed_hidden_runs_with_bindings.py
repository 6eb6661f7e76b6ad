"""A cascade's hidden attempt stays out of token streams when tools are bound, too."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from langroute.cascade import Cascade, FunctionScorer
from langroute.chat_models import RoutedChatModel
from tests.fake_openai import FakeOpenAI
from tests.fake_openai._standard_suites import STRONG_MODEL, WEAK_MODEL, fitted_router
from tests.integration_tests._tools import add


class Sum(BaseModel):
    """A sum."""

    value: int


def _rejecting(fake: FakeOpenAI) -> RoutedChatModel:
    """Every call goes to the weak model first, whose answer is always rejected."""
    models = {name: fake.chat_openai(name) for name in (STRONG_MODEL, WEAK_MODEL)}
    scorer = FunctionScorer(lambda messages, answer: 0.0, bounds=(0, 1),
                            supports_tool_calls=True)
    return RoutedChatModel(models=models, router=fitted_router(), threshold=1.0,
                           cascade=Cascade(scorer, accept=0.5))


@pytest.mark.parametrize("bound", ["tools", "structured", "plain"])
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic, on ChatOpenAI's parsed chunks
async def test_astream_events_show_only_the_accepted_answers_tokens(
        fake: FakeOpenAI, bound: str) -> None:
    routed = _rejecting(fake)
    runnable: Any = {"tools": routed.bind_tools([add]),
                     "structured": routed.with_structured_output(Sum, method="function_calling"),
                     "plain": routed}[bound]
    streamed: dict[str, int] = {}
    starts: list[str] = []
    async for event in runnable.astream_events("add 2 and 3", version="v2"):
        model = event["metadata"].get("ls_model_name")
        if event["event"] == "on_chat_model_stream":
            streamed[model] = streamed.get(model, 0) + 1
        elif event["event"] == "on_chat_model_start":
            starts.append(model)
    assert fake.models_called == [WEAK_MODEL, STRONG_MODEL]
    assert set(streamed) == {STRONG_MODEL}  # the rejected weak attempt streamed nothing
    assert sorted(starts) == sorted(fake.models_called)  # each run seen once, hidden or not
