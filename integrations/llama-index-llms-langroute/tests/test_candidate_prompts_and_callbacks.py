"""Regression tests: a candidate's own prompt formatting under ``RoutedLLM.predict`` (and the
query engines built on it) and ``structured_predict``, and callback managers of candidates
shared by two RoutedLLMs."""

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
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import BaseModel, Field
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
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
    reply: str = ""  # the answer; by default "<name> answered"
    received: list[str] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.name, is_chat_model=False)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        sent = prompt if formatted else self.completion_to_prompt(prompt)
        self.received.append(sent)
        return CompletionResponse(text=self.reply or f"{self.name} answered")

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


# -- 2. structured_predict: the chosen candidate's system prompt, as a direct call sends it -------
class Invoice(BaseModel):
    """An invoice."""

    customer: str
    total: int


EXTRACT = PromptTemplate("Extract: {text}")
INVOICE_JSON = '{"customer": "ACME", "total": 42}'
STRUCTURED_FORMS = ["structured_predict", "astructured_predict", "stream_structured_predict",
                    "astream_structured_predict"]


async def _structured(llm: Any, form: str, **args: Any) -> Any:
    """``llm``'s structured answer to ``EXTRACT`` by ``form`` (a stream's last partial)."""
    if form == "structured_predict":
        return llm.structured_predict(Invoice, EXTRACT, **args)
    if form == "astructured_predict":
        return await llm.astructured_predict(Invoice, EXTRACT, **args)
    if form == "stream_structured_predict":
        return list(llm.stream_structured_predict(Invoice, EXTRACT, **args))[-1]
    return [p async for p in await llm.astream_structured_predict(Invoice, EXTRACT, **args)][-1]


def _terse(make_openai: Any, router: Any, **kwargs: Any) -> RoutedLLM:
    """OpenAI candidates with a system prompt of their own."""
    return RoutedLLM({name: make_openai(name, system_prompt="Be terse.")
                      for name in (STRONG_MODEL, WEAK_MODEL)},
                     router=router, threshold=0.7, **kwargs)


@pytest.mark.parametrize("form", STRUCTURED_FORMS)
async def test_structured_predict_sends_the_chosen_candidate_its_own_system_prompt(
    fake, make_openai, router, form
):
    """LlamaIndex's program extends the messages with the system prompt of the LLM it runs on
    (``_extend_messages``): on RoutedLLM that was RoutedLLM's (none here), so the candidate's
    own, which calling it directly sends, was dropped."""
    await _structured(_terse(make_openai, router), form, text=HARD)
    await _structured(make_openai(STRONG_MODEL, system_prompt="Be terse."), form, text=HARD)
    routed_request, direct_request = fake.requests
    assert routed_request.model == STRONG_MODEL
    assert routed_request.messages == direct_request.messages == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": f"Extract: {HARD}"}]


@pytest.mark.parametrize("form", STRUCTURED_FORMS)
async def test_the_routed_llms_system_prompt_goes_inside_the_candidates_in_structured_predict(
    fake, make_openai, router, form
):
    """As in predict: RoutedLLM's system prompt is part of the request, inside the candidate's
    (it was the only one sent, and none at all by astructured_predict)."""
    invoice = await _structured(_terse(make_openai, router, system_prompt="Cite sources."), form,
                                text=HARD)
    assert isinstance(invoice, Invoice)
    (request,) = fake.requests
    assert request.model == STRONG_MODEL and request.tool_names == ["Invoice"]
    assert request.messages == [{"role": "system", "content": "Be terse."},
                                {"role": "system", "content": "Cite sources."},
                                {"role": "user", "content": f"Extract: {HARD}"}]


class LocalChatLLM(LocalCompletionLLM):
    """The local model behind a chat interface (not function-calling, so structured_predict
    parses its text): keeps the messages and keyword arguments of every chat call."""

    chats: list[tuple[list[ChatMessage], dict[str, Any]]] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.name, is_chat_model=True)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        self.chats.append((list(messages), kwargs))
        return ChatResponse(message=ChatMessage(role="assistant", content=self.reply))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        self.chats.append((list(messages), kwargs))
        message = ChatMessage(role="assistant", content=self.reply)
        yield ChatResponse(message=message, delta=self.reply)


def local_chat(name: str) -> LocalChatLLM:
    return LocalChatLLM(name=name, system_prompt="Be terse.", reply=INVOICE_JSON)


@pytest.mark.parametrize("form", STRUCTURED_FORMS)
async def test_a_text_parsing_structured_predict_sends_the_candidates_messages(router, form):
    """Chat candidates that are not function-calling: the program chats and parses the text.
    Each call reaches ``chat`` with exactly the messages and arguments a direct call sends
    (langroute's own keyword does not reach the candidate)."""
    routed = RoutedLLM({name: local_chat(name) for name in (STRONG_MODEL, WEAK_MODEL)},
                       router=router, threshold=0.7)
    twin = local_chat(STRONG_MODEL)
    assert await _structured(routed, form, text=HARD) == await _structured(twin, form, text=HARD)
    strong = routed.llms[STRONG_MODEL]
    assert strong.chats == twin.chats and routed.llms[WEAK_MODEL].chats == []
    ((messages, kwargs),) = strong.chats
    assert kwargs == {}
    assert [(m.role.value, m.content.split("\n")[0]) for m in messages] == [
        ("system", "Be terse."), ("user", f"Extract: {HARD}")]


@pytest.mark.parametrize("form", STRUCTURED_FORMS)
async def test_completion_candidates_get_the_structured_prompt_a_direct_call_sends(router, form):
    """Not a gap: with a completion-only candidate the program completes, unformatted, and the
    candidate applies its own ``completion_to_prompt`` (no system prompt), routed or not."""
    routed, strong, weak = _locals(router, reply=INVOICE_JSON)
    twin = local(STRONG_MODEL, reply=INVOICE_JSON)
    answer = await _structured(routed, form, text=HARD)
    assert answer == await _structured(twin, form, text=HARD) == Invoice(customer="ACME",
                                                                          total=42)
    assert weak.received == [] and strong.received == twin.received
    (sent,) = strong.received
    assert sent.startswith(f"<s>[INST] Extract: {HARD}") and "Be terse." not in sent


@pytest.mark.parametrize("form", ["structured_predict", "astructured_predict"])
async def test_structured_predict_is_one_span_with_one_routing_decision(fake, make_openai, router,
                                                                       events, spans, form):
    """Tracing is as before: the overridden method opens no second span inside its own."""
    await _structured(_terse(make_openai, router), form, text=HARD)
    (decision,) = events.of("RouteDecisionEvent")
    assert decision.model == STRONG_MODEL
    names = [span.id_.split("-")[0] for span in spans.completed_spans]
    assert names.count(f"RoutedLLM.{form}") == 1


def test_the_structured_keyword_is_reserved(fake, make_openai, router):
    routed = _terse(make_openai, router)
    with pytest.raises(TypeError, match="langroute_structured is reserved for langroute"):
        routed.structured_predict(Invoice, EXTRACT, llm_kwargs={"langroute_structured": 1},
                                  text=HARD)
    assert fake.requests == []


# -- 3. candidates shared by two RoutedLLMs ------------------------------------------------------
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
