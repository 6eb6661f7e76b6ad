"""Tools and schemas go through the chosen model's own methods; tool loops stay on one model."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableBinding
from langchain_core.tools import tool
from pydantic import BaseModel

from langroute.chat_models import RoutedChatModel

from .fakes import EASY, HARD, STRONG, THRESHOLD, WEAK


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


class Product(BaseModel):
    """The product of two numbers."""

    value: int


def test_bind_tools_reaches_only_the_chosen_models_own_bind_tools(routed, strong, weak):
    bound = routed.bind_tools([multiply], tool_choice="any", parallel_tool_calls=False)
    assert isinstance(bound, RunnableBinding)
    strong.tool_args = {"a": 17, "b": 23}
    answer = bound.invoke(HARD)
    assert strong.bind_tools_calls == [([multiply], "any", {"parallel_tool_calls": False})]
    assert weak.bind_tools_calls == []
    assert answer.tool_calls[0]["name"] == "multiply"
    assert answer.tool_calls[0]["args"] == {"a": 17, "b": 23}
    # the fake's own formatting reached its generation, unknown kwargs passed through
    sent = strong.received_kwargs[-1]
    assert sent["tools"][0]["function"]["name"] == "multiply"
    assert sent["tool_choice"] == "any" and sent["parallel_tool_calls"] is False
    bound.invoke(EASY)
    assert len(weak.bind_tools_calls) == 1 and len(strong.bind_tools_calls) == 1


def test_bind_tools_streams_and_generates(routed, strong):
    strong.tool_args = {"a": 2, "b": 3}
    bound = routed.bind_tools([multiply])
    chunks = list(bound.stream(HARD))
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert full.tool_calls[0]["args"] == {"a": 2, "b": 3}
    # generate() goes through _generate, which applies the chosen model's binding kwargs
    result = routed.generate([[HumanMessage(HARD)]], **bound.kwargs)
    assert result.generations[0][0].message.tool_calls[0]["name"] == "multiply"


def test_with_structured_output_uses_the_chosen_models_method(routed, strong, weak):
    strong.tool_args = {"value": 391}
    structured = routed.with_structured_output(Product, method="function_calling", strict=True)
    assert structured.invoke(HARD) == Product(value=391)
    # include_raw=True: the routed call keeps the raw message to count its usage, and
    # returns the parsed value as asked
    assert strong.structured_calls == [(Product, True, {"method": "function_calling",
                                                         "strict": True})]
    assert weak.structured_calls == []


def test_with_structured_output_include_raw_carries_the_decision(routed, weak):
    weak.tool_args = {"value": 1}
    schema = Product.model_json_schema()
    out = routed.with_structured_output(schema, include_raw=True).invoke(EASY)
    assert out["parsed"] == {"value": 1} and out["parsing_error"] is None
    assert out["raw"].response_metadata["langroute"]["model"] == WEAK


async def test_with_structured_output_async_and_streaming(routed, strong, recorder):
    strong.tool_args = {"value": 391}
    structured = routed.with_structured_output(Product)
    assert await structured.ainvoke(HARD, config={"callbacks": [recorder]}) == Product(value=391)
    assert [e["data"]["model"] for e in recorder.custom] == [STRONG]
    assert list(structured.stream(HARD))[-1] == Product(value=391)


def _tool_loop(maker_metadata):
    call = {"name": "multiply", "args": {"a": 17, "b": 23}, "id": "call-1", "type": "tool_call"}
    return [
        HumanMessage(EASY),  # an easy prompt: normal routing would pick the weak model
        AIMessage(content="", tool_calls=[call], response_metadata=maker_metadata),
        ToolMessage(content="391", tool_call_id="call-1"),
    ]


def test_tool_loop_sticks_to_the_model_named_in_langroute_metadata(routed, strong, weak):
    messages = _tool_loop({"langroute": {"model": STRONG}})
    decision = routed.route(messages)
    assert (decision.model, decision.reason) == (STRONG, "sticky tool loop")
    assert decision.strong_score is None
    answer = routed.invoke(messages)
    assert answer.content == f"answer from {STRONG} using 391"
    assert weak.received == []


def test_a_sticky_tool_loop_keeps_the_closest_text_as_its_prompt(routed):
    """The sticky branch reads the routing-text rule too: an image-only last user turn gives
    the earlier text (what feedback stores as the call's prompt), not ""."""
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    messages = _tool_loop({"langroute": {"model": STRONG}})
    messages.insert(1, HumanMessage(content=[image]))
    decision = routed.route(messages)
    assert decision.reason == "sticky tool loop"
    assert decision.text_chars == len(EASY)


def test_tool_loop_falls_back_to_the_served_model_name(routed):
    dated = _tool_loop({"model_name": f"{STRONG}-2024-08-06"})
    assert routed.route(dated).model == STRONG
    exact = _tool_loop({"model_name": STRONG})
    assert routed.route(exact).reason == "sticky tool loop"


def test_unidentifiable_tool_loop_maker_is_routed_normally_and_says_so(routed):
    for metadata, why in [({}, "names no model"),
                          ({"model_name": "claude-3"}, "none of the candidates")]:
        decision = routed.route(_tool_loop(metadata))
        assert decision.model == WEAK
        assert decision.reason == "routed: tool-call maker unidentified"
        assert why in decision.note and why in str(decision)


def test_finished_tool_loop_is_routed_normally(routed):
    messages = [*_tool_loop({"langroute": {"model": STRONG}}), AIMessage("391"),
                HumanMessage(EASY)]
    assert routed.route(messages).reason == "routed"
    unanswered = _tool_loop({"langroute": {"model": STRONG}})
    unanswered[-1] = ToolMessage(content="391", tool_call_id="some-other-call")
    assert routed.route(unanswered).reason == "routed"


def test_a_full_tool_loop_stays_on_the_model_that_started_it(routed, strong, weak):
    strong.tool_args = {"a": 17, "b": 23}
    bound = routed.bind_tools([multiply])
    messages = [HumanMessage(HARD)]
    first = bound.invoke(messages)
    routed.threshold = 1.0  # from now on normal routing would pick the weak model
    assert routed.route(messages).model == WEAK
    messages += [first, ToolMessage(content="391", tool_call_id=first.tool_calls[0]["id"])]
    second = bound.invoke(messages)
    assert second.response_metadata["langroute"]["reason"] == "sticky tool loop"
    assert second.content == f"answer from {STRONG} using 391"
    assert weak.received == []


def test_tool_loop_without_user_text_still_sticks(routed):
    messages = _tool_loop({"langroute": {"model": STRONG}})[1:]  # no HumanMessage at all
    decision = routed.route(messages)
    assert (decision.model, decision.reason) == (STRONG, "sticky tool loop")
    assert decision.text_chars == len("391")  # the closest text, as routing reads it


def test_tool_calls_made_after_a_fallback_are_answered_by_the_model_that_made_them(
        router, strong, weak):
    """The record's ``model`` is the decision; the fallback that answered made the calls."""
    routed = RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router,
                             threshold=THRESHOLD, max_retries=0)
    weak.errors = [ConnectionError("weak is down")]
    bound = routed.bind_tools([multiply])
    messages = [HumanMessage(EASY)]
    first = bound.invoke(messages)  # decided: weak; answered (tool calls): strong
    record = first.response_metadata["langroute"]
    assert (record["model"], record["answered_by"]) == (WEAK, STRONG)
    messages += [first, ToolMessage(content="391", tool_call_id=first.tool_calls[0]["id"])]
    second = bound.invoke(messages)
    assert second.response_metadata["langroute"]["answered_by"] == STRONG
    assert second.content == f"answer from {STRONG} using 391"
    assert len(weak.received) == 1  # only the failed first call
