"""Regression tests: a candidate's own prompt formatting under ``RoutedLLM.predict`` (and the
query engines built on it), and callback managers of candidates shared by two RoutedLLMs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from langroute import RouterConfigError
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.prompts import ChatPromptTemplate, PromptTemplate
from llama_index.core.types import BaseOutputParser
from tests.fake_openai._standard_suites import STRONG_MODEL, WEAK_MODEL

from llama_index.llms.langroute import RoutedLLM

HARD = "What is 17 * 23?"  # the router sends maths to the strong model
EASY = "Hello"  # and greetings to the weak one


# -- 1. a completion-only candidate formats a predict() template itself ---------------------------
class LocalCompletionLLM(CustomLLM):
    """A local completion model as users wrap one (a HuggingFace pipeline, llama.cpp): it applies
    its ``completion_to_prompt`` to an unformatted prompt, as ``HuggingFaceLLM`` does, and keeps
    every prompt it was sent."""

    name: str
    received: list[str] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.name, is_chat_model=False)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        sent = prompt if formatted else self.completion_to_prompt(prompt)
        self.received.append(sent)
        return CompletionResponse(text=f"{self.name} answered")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        done = self.complete(prompt, formatted, **kwargs).text
        yield CompletionResponse(text=done[:4], delta=done[:4])
        yield CompletionResponse(text=done, delta=done[4:])


def _chat_format(messages: Sequence[ChatMessage]) -> str:
    return "".join(f"<|{m.role.value}|>{m.content}<|end|>" for m in messages) + "<|assistant|>"


def local(name: str, **kwargs: Any) -> LocalCompletionLLM:
    """A local model with its own chat template, system prompt and query wrapper."""
    return LocalCompletionLLM(
        name=name, completion_to_prompt=lambda p: f"<s>[INST] {p} [/INST]",
        messages_to_prompt=_chat_format, system_prompt="Be terse.",
        query_wrapper_prompt=PromptTemplate("### Instruction\n{query_str}\n### Response"),
        **kwargs)


def _locals(router: Any, **kwargs: Any) -> tuple[RoutedLLM, LocalCompletionLLM,
                                                  LocalCompletionLLM]:
    strong, weak = local(STRONG_MODEL, **kwargs), local(WEAK_MODEL, **kwargs)
    routed = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7)
    return routed, strong, weak


TEMPLATES = {
    "text": PromptTemplate("Question: {question}"),
    "chat": ChatPromptTemplate.from_messages([("system", "Answer in one line."),
                                              ("user", "{question}")]),
}


async def _run(llm: Any, form: str, template: Any, **args: Any) -> str:
    if form == "predict":
        return str(llm.predict(template, **args))
    if form == "apredict":
        return str(await llm.apredict(template, **args))
    if form == "stream":
        return "".join(llm.stream(template, **args))
    return "".join([t async for t in await llm.astream(template, **args)])


@pytest.mark.parametrize("form", ["predict", "apredict", "stream", "astream"])
@pytest.mark.parametrize("kind", sorted(TEMPLATES))
async def test_a_completion_candidate_gets_the_prompt_its_own_predict_would_send(
    router, form, kind
):
    """``LLM.predict`` formats the template with the LLM's ``messages_to_prompt`` /
    ``completion_to_prompt`` and adds its ``system_prompt`` and ``query_wrapper_prompt``, then
    calls ``complete(formatted=True)``. RoutedLLM formatted it with its own (empty) settings, so
    the candidate got the bare prompt, without its chat template."""
    routed, strong, weak = _locals(router)
    twin = local(STRONG_MODEL)  # the same model, called directly
    template = TEMPLATES[kind]
    answer = await _run(routed, form, template, question=HARD)
    expected = await _run(twin, form, template, question=HARD)
    assert weak.received == [] and strong.received == twin.received
    assert answer == expected == f"{STRONG_MODEL} answered"
    (sent,) = strong.received
    assert sent.startswith("### Instruction\nBe terse.\n\n") and HARD in sent
    assert ("<s>[INST] " if kind == "text" else "<|system|>Answer in one line.<|end|>") in sent


def test_predict_is_one_routed_span_with_the_candidates_call_inside(router, events, spans):
    routed, _, _ = _locals(router)
    routed.predict(TEMPLATES["text"], question=HARD)
    (decision,) = events.of("RouteDecisionEvent")
    assert decision.span_id.startswith("RoutedLLM.predict-")
    (start,) = events.of("LLMCompletionStartEvent")  # the candidate's own, once
    assert {s.id_: s.parent_id for s in spans.completed_spans}[start.span_id] == decision.span_id
    assert [e.class_name() for e in events.events if "Predict" in e.class_name()] == [
        "LLMPredictStartEvent", "LLMPredictEndEvent"]


def test_a_query_engine_on_completion_candidates_sends_what_the_candidate_alone_would(
    settings, router
):
    """Query engines call ``predict`` (the response synthesizer): the retrieved context and
    question reach the chosen candidate in its own format."""
    from langroute.embeddings import HashingEmbedder

    from llama_index.llms.langroute import LangrouteEmbedding

    settings.embed_model = LangrouteEmbedding(HashingEmbedder(dimension=256))
    index = VectorStoreIndex.from_documents([Document(text="17 times 23 equals 391.")])
    routed, strong, _ = _locals(router)
    twin = local(STRONG_MODEL)
    index.as_query_engine(llm=routed).query(HARD)
    index.as_query_engine(llm=twin).query(HARD)
    assert strong.received == twin.received
    assert "391" in strong.received[0] and strong.received[0].endswith("[/INST]\n### Response")


def test_a_chat_candidate_among_completion_ones_gets_its_predict_messages(fake, make_openai,
                                                                         router):
    """With one completion-only candidate RoutedLLM is not a chat model, so ``predict`` went
    through ``complete``: a chat candidate got one user message, without the system prompt its
    own ``predict`` sends."""
    with pytest.warns(UserWarning, match="sets system_prompt"):  # chat() would not apply it
        routed = RoutedLLM({STRONG_MODEL: make_openai(STRONG_MODEL, system_prompt="Be terse."),
                            WEAK_MODEL: local(WEAK_MODEL)}, router=router, threshold=0.7)
    template = TEMPLATES["chat"]
    assert routed.predict(template, question=HARD) == f"You said: {HARD}"
    make_openai(STRONG_MODEL, system_prompt="Be terse.").predict(template, question=HARD)
    routed_request, direct_request = fake.requests
    assert routed_request.messages == direct_request.messages == [
        {"role": "system", "content": "Be terse."},
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": HARD}]


class Shouting(BaseOutputParser):
    """Asks for capitals and reads the answer back in them."""

    def parse(self, output: str) -> str:
        return output.upper()

    def format(self, query: str) -> str:
        return query + "\nAnswer in capitals."


def test_a_candidates_output_parser_shapes_and_reads_predict_as_its_own_would(router):
    routed, strong, _ = _locals(router, output_parser=Shouting())
    twin = local(STRONG_MODEL, output_parser=Shouting())
    assert routed.predict(TEMPLATES["text"], question=HARD) == twin.predict(
        TEMPLATES["text"], question=HARD) == f"{STRONG_MODEL} answered".upper()
    assert strong.received == twin.received and "Answer in capitals." in strong.received[0]
    with pytest.raises(NotImplementedError, match="output parser"):  # as LLM.stream does
        routed.stream(TEMPLATES["text"], question=HARD)


def test_the_routed_llms_own_prompt_settings_go_inside_the_candidates(router):
    """RoutedLLM's system_prompt is part of the request; the candidate's chat template and
    query wrapper still wrap the whole of it."""
    strong, weak = local(STRONG_MODEL), local(WEAK_MODEL)
    routed = RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                       system_prompt="Cite sources.")
    routed.predict(TEMPLATES["text"], question=HARD)
    assert strong.received == [
        f"### Instruction\nBe terse.\n\nCite sources.\n\n<s>[INST] Question: {HARD} [/INST]"
        "\n### Response"]


@pytest.mark.parametrize("field", ["completion_to_prompt", "messages_to_prompt"])
def test_a_wire_format_given_to_the_routed_llm_is_refused(router, field):
    """It was applied to every candidate's prompt alike; now each candidate formats its own,
    so it belongs on the candidate (refused rather than silently ignored)."""
    strong, weak = local(STRONG_MODEL), local(WEAK_MODEL)
    with pytest.raises(RouterConfigError, match=f"{field} belongs on each candidate"):
        RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7,
                  **{field: lambda value: str(value)})


def test_output_parsers_on_both_the_routed_llm_and_a_candidate_are_refused(router):
    routed, _, _ = _locals(router, output_parser=Shouting())
    routed.output_parser = Shouting()
    with pytest.raises(RouterConfigError, match=r"output_parser.*llms\['gpt-4o"):
        routed.predict(TEMPLATES["text"], question=HARD)


# -- 2. candidates shared by two RoutedLLMs ------------------------------------------------------
def _router_pair(strong: Any, weak: Any, router: Any) -> tuple[RoutedLLM, RoutedLLM,
                                                               TokenCountingHandler,
                                                               TokenCountingHandler]:
    first, second = TokenCountingHandler(), TokenCountingHandler()
    llms = {STRONG_MODEL: strong, WEAK_MODEL: weak}
    one = RoutedLLM(llms, router=router, threshold=0.7,
                    callback_manager=CallbackManager([first]))
    two = RoutedLLM(llms, router=router, threshold=0.7)
    two.callback_manager = CallbackManager([second])  # as Settings / query engines set it
    return one, two, first, second


def _answers(counter: TokenCountingHandler) -> list[str]:
    """The answers a handler counted (a chat answer is counted as ``"assistant: ..."``)."""
    return [event.completion.removeprefix("assistant: ") for event in counter.llm_token_counts]


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def test_each_routed_llm_counts_its_own_calls_on_shared_candidates(fake, strong, weak, router):
    """The candidates held the first RoutedLLM's manager (it has handlers, so the second kept
    it): the second's calls were counted by the first's handlers."""
    one, two, first, second = _router_pair(strong, weak, router)
    one.chat(user(HARD))
    two.chat(user(EASY))
    two.complete(HARD)
    assert _answers(first) == [f"You said: {HARD}"]
    assert _answers(second) == [f"You said: {EASY}", f"You said: {HARD}"]
    strong.chat(user(HARD))  # called directly: none of the routers' calls
    assert len(first.llm_token_counts) == 1 and len(second.llm_token_counts) == 2


async def test_concurrent_calls_of_two_routed_llms_report_to_their_own(fake, make_openai,
                                                                      router):
    """Both calls are in flight on the same candidate at once (the fake answers neither until
    it has both): each is counted by its own RoutedLLM's handler only."""
    arrived: list[str] = []
    both = asyncio.Event()

    async def together(request: httpx.Request) -> httpx.Response:
        arrived.append(request.url.path)
        if len(arrived) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 5)
        return fake.handle(request)

    strong = make_openai(STRONG_MODEL, handler=together)
    one, two, first, second = _router_pair(strong, make_openai(WEAK_MODEL), router)
    await asyncio.gather(one.achat(user(HARD)), two.achat(user("What is 3^3 plus 12 divided "
                                                                "by 4?")))
    assert fake.models_called == [STRONG_MODEL, STRONG_MODEL]
    assert _answers(first) == [f"You said: {HARD}"]
    assert _answers(second) == ["You said: What is 3^3 plus 12 divided by 4?"]


def test_interleaved_streams_of_two_routed_llms_report_to_their_own(fake, strong, weak, router):
    """A stream's end event fires while it is read, outside the routed method: it must still
    reach the manager of the RoutedLLM that made the call."""
    one, two, first, second = _router_pair(strong, weak, router)
    streams = [iter(one.stream_chat(user(HARD))), iter(two.stream_chat(user(HARD)))]
    while streams:
        for stream in list(streams):
            if next(stream, None) is None:
                streams.remove(stream)
    assert _answers(first) == _answers(second) == [f"You said: {HARD}"]


async def test_interleaved_async_streams_report_to_their_own(fake, strong, weak, router):
    one, two, first, second = _router_pair(strong, weak, router)
    streams = [await one.astream_complete(HARD), await two.astream_complete(EASY)]
    while streams:
        for stream in list(streams):
            if await anext(stream, None) is None:
                streams.remove(stream)
    assert _answers(first) == [f"You said: {HARD}"]
    assert _answers(second) == [f"You said: {EASY}"]
