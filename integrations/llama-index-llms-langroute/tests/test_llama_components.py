"""RoutedLLM where LlamaIndex users put it: ``Settings.llm`` under a vector-index query engine
(plain, streaming, async), ``RouterQueryEngine``s whose selector (Pydantic, or an LLM selector
on completion-only candidates) runs on it, and a
``FunctionAgent`` completing a two-tool task. Embeddings are local (langroute's hashing embedder
as a LlamaIndex embedding model); every LLM request goes to the in-process fake OpenAI server."""

from __future__ import annotations

from typing import Any

import pytest
from langroute.embeddings import HashingEmbedder
from llama_index.core import Document, SummaryIndex, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.query_engine import RouterQueryEngine
from llama_index.core.selectors import LLMSingleSelector, PydanticSingleSelector
from llama_index.core.tools import QueryEngineTool
from tests.fake_openai._standard_suites import STRONG_MODEL, WEAK_MODEL

from llama_index.llms.langroute import LangrouteEmbedding, RoutedLLM

DOCS = [
    "Multiplication facts: 17 times 23 equals 391.",
    "The Eiffel Tower in Paris is 330 metres tall.",
    "Cats sleep for about fifteen hours a day.",
]


@pytest.fixture
def index(settings, routed):
    settings.llm = routed
    settings.embed_model = LangrouteEmbedding(HashingEmbedder(dimension=256))
    return VectorStoreIndex.from_documents([Document(text=t) for t in DOCS])


def test_query_engine_answers_through_the_routed_llm(fake, index, events):
    response = index.as_query_engine(similarity_top_k=1).query("What is 17 * 23?")
    (request,) = fake.requests
    (decision,) = events.of("RouteDecisionEvent")
    assert request.model == decision.model == STRONG_MODEL  # maths goes to the strong model
    assert DOCS[0] in request.messages[-1]["content"]  # the retrieved context reached it
    assert str(response).startswith("You said: ") and DOCS[0] in str(response)


def test_streaming_query_engine_streams_the_chosen_models_tokens(fake, index, events):
    engine = index.as_query_engine(streaming=True, similarity_top_k=1)
    response = engine.query("Hello! How tall is the Eiffel Tower?")
    text = "".join(response.response_gen)
    (request,) = fake.requests
    assert request.stream and request.model == WEAK_MODEL
    assert text.startswith("You said: ") and DOCS[1] in text
    assert [e.model for e in events.of("RouteDecisionEvent")] == [WEAK_MODEL]


async def test_async_query_routes_too(fake, index, events):
    response = await index.as_query_engine(similarity_top_k=1).aquery("What is 17 * 23?")
    assert DOCS[0] in str(response)
    assert fake.models_called == [e.model for e in events.of("RouteDecisionEvent")]


def test_a_query_engines_decisions_are_collected_for_feedback(fake, settings, strong, weak,
                                                              router):
    """A query engine's Response does not carry the decision id; collect_decisions does."""
    from langroute import collect_decisions

    routed = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                       feedback_store="memory://")
    settings.llm = routed
    settings.embed_model = LangrouteEmbedding(HashingEmbedder(dimension=256))
    engine = VectorStoreIndex.from_documents([Document(text=t) for t in DOCS]).as_query_engine(
        similarity_top_k=1)
    with collect_decisions() as made:
        engine.query("What is 17 * 23?")
    (decision,) = made
    assert decision["model"] == STRONG_MODEL == fake.models_called[-1]
    routed.record_feedback(decision["decision_id"], score=1.0)  # the store knows the id
    assert routed.feedback.store().events()[-1].decision_id == decision["decision_id"]


async def test_an_async_query_engines_decisions_are_collected(fake, index, events):
    from langroute import collect_decisions

    with collect_decisions() as made:
        await index.as_query_engine(similarity_top_k=1).aquery("What is 17 * 23?")
    assert [d["decision_id"] for d in made] == [
        e.decision_id for e in events.of("RouteDecisionEvent")]


def test_settings_token_counter_counts_each_provider_call_once(fake, settings, index):
    counter = TokenCountingHandler()
    settings.callback_manager = CallbackManager([counter])
    index.as_query_engine(similarity_top_k=1).query("What is 17 * 23?")
    index.as_query_engine(similarity_top_k=1).query("Hello there")
    assert len(fake.requests) == len(counter.llm_token_counts) == 2
    assert counter.prompt_llm_token_count == sum(r.usage["prompt_tokens"] for r in fake.requests)
    assert counter.completion_llm_token_count == sum(
        r.usage["completion_tokens"] for r in fake.requests)


def test_router_query_engine_selects_with_a_pydantic_selector_on_the_routed_llm(
    fake, routed, index, events
):
    maths = QueryEngineTool.from_defaults(
        index.as_query_engine(similarity_top_k=1), name="facts",
        description="Useful for arithmetic and facts")
    summary = QueryEngineTool.from_defaults(
        SummaryIndex.from_documents([Document(text=t) for t in DOCS]).as_query_engine(),
        name="summary", description="Useful for summarising all documents")
    engine = RouterQueryEngine(selector=PydanticSingleSelector.from_defaults(llm=routed),
                               query_engine_tools=[maths, summary])
    response = engine.query("What is 17 * 23?")
    select, answer = fake.requests
    assert select.tool_names == ["SingleSelection"]  # the selector's function call
    assert answer.tool_names == [] and "You said: " in str(response)
    assert fake.models_called == [e.model for e in events.of("RouteDecisionEvent")]
    assert response.metadata["selector_result"].selections[0].index in (0, 1)


class JsonChoiceLLM(CustomLLM):
    """A completion-only LLM that always picks choice 2 in the selector's JSON format."""

    prompts: list[str] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="json-choice", is_chat_model=False)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.prompts.append(prompt)
        return CompletionResponse(text='[{"choice": 2, "reason": "it summarises"}]')

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        yield self.complete(prompt, formatted, **kwargs)


def test_router_query_engine_with_an_llm_selector_on_completion_only_candidates(
    fake, router, index, events
):
    strong, weak = JsonChoiceLLM(), JsonChoiceLLM()
    selector_llm = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router,
                             threshold=0.7)
    assert not selector_llm.metadata.is_chat_model  # so LlamaIndex calls complete()
    facts = QueryEngineTool.from_defaults(index.as_query_engine(similarity_top_k=1),
                                          name="facts", description="Useful for single facts")
    summary = QueryEngineTool.from_defaults(
        SummaryIndex.from_documents([Document(text=t) for t in DOCS]).as_query_engine(),
        name="summary", description="Useful for summarising all documents")
    engine = RouterQueryEngine(selector=LLMSingleSelector.from_defaults(llm=selector_llm),
                               query_engine_tools=[facts, summary])
    response = engine.query("Summarise the documents")
    assert response.metadata["selector_result"].selections[0].index == 1
    selector_decision = events.of("RouteDecisionEvent")[0]
    chosen = strong if selector_decision.model == STRONG_MODEL else weak
    other = weak if chosen is strong else strong
    assert len(chosen.prompts) == 1 and other.prompts == []
    assert "Useful for summarising all documents" in chosen.prompts[0]
    assert len(events.of("LLMCompletionStartEvent")) == 1  # the candidate's, once
    assert all(DOC in str(response) for DOC in DOCS)  # the summary engine answered (on the fake)


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.mark.parametrize("streaming", [True, False])
async def test_function_agent_completes_a_two_tool_task_on_one_model(
    fake, routed, events, spans, streaming
):
    agent = FunctionAgent(tools=[multiply, add], llm=routed, streaming=streaming,
                          system_prompt="You are a careful calculator.")
    result = await agent.run("What is 17 * 23, plus 2? Use multiply, then add.")
    calls = [c.tool_name for c in result.tool_calls]
    assert calls == ["multiply", "add"]  # both tools ran, in two steps
    assert str(result).startswith("The add tool returned: ")
    decisions = events.of("RouteDecisionEvent")
    # every step was decided and traced; the loop stayed on the model that started it
    assert [d.reason for d in decisions] == ["routed", "sticky tool loop", "sticky tool loop"]
    assert fake.models_called == [d.model for d in decisions] == [STRONG_MODEL] * 3
    assert [r.tool_names for r in fake.requests] == [["multiply", "add"]] * 3
    # each step is its own routed span, with the candidate's chat call inside it
    parents = {s.id_: s.parent_id for s in spans.completed_spans}
    for decision, start in zip(decisions, events.of("LLMChatStartEvent"), strict=True):
        assert parents[start.span_id] == decision.span_id
    assert len({d.span_id for d in decisions}) == 3
