"""RoutedChatModel where LangChain users put chat models: LCEL pipes, agents, LangGraph."""

from __future__ import annotations

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph

from langroute.chat_models import RoutingTracer

from .fakes import EASY, HARD, STRONG, WEAK


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def test_lcel_pipe(routed):
    chain = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    chain = chain | routed | StrOutputParser()
    assert chain.invoke({"q": HARD}) == f"answer from {STRONG}"
    assert chain.batch([{"q": EASY}]) == [f"answer from {WEAK}"]
    assert "".join(chain.stream({"q": EASY})) == f"answer from {WEAK}"


def test_create_agent_runs_a_tool_loop_on_one_model(routed, strong, weak):
    strong.tool_args = {"a": 17, "b": 23}
    tracer = RoutingTracer()
    agent = create_agent(model=routed, tools=[multiply])
    result = agent.invoke({"messages": [HumanMessage(HARD)]},
                          {"callbacks": [tracer], "metadata": {"lc_agent_name": "researcher"}})
    messages = result["messages"]
    assert [type(m) for m in messages] == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    assert messages[2].content == "391"
    assert messages[-1].content == f"answer from {STRONG} using 391"
    assert [c.decision["reason"] for c in tracer.calls] == ["routed", "sticky tool loop"]
    assert weak.received == []
    # the agent bound its tool through the chosen model's own bind_tools
    assert [tools for tools, _, _ in strong.bind_tools_calls] == [[multiply], [multiply]]


def test_langgraph_node_streams_the_inner_models_tokens(routed):
    def answer(state: MessagesState) -> dict:
        return {"messages": [routed.invoke(state["messages"])]}

    graph = StateGraph(MessagesState).add_node("answer", answer)
    graph = graph.add_edge(START, "answer").compile()
    final = graph.invoke({"messages": [HumanMessage(EASY)]})
    assert final["messages"][-1].response_metadata["langroute"]["model"] == WEAK
    tokens = [chunk for chunk, _ in graph.stream({"messages": [HumanMessage(HARD)]},
                                                 stream_mode="messages")]
    assert len(tokens) >= 3
    assert "".join(t.content for t in tokens if t.content) == f"answer from {STRONG}"
