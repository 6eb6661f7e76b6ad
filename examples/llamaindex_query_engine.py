"""langroute in LlamaIndex: a routed LLM under a query engine, a router query engine and an agent.

Trains the similarity-weighted router (MiniLM embeddings, offline) on RouteLLM's GSM8K outcomes
(GPT-4 vs Mixtral), calibrates it so half of the calls would go to the strong model, and sets a
``RoutedLLM`` as ``Settings.llm``. The same MiniLM embedder indexes a few documents
(``LangrouteEmbedding``). Then it runs, printing each routing decision as LlamaIndex dispatches
it (``RouteDecisionEvent``):

0. ``RoutedLLM.route`` on two bare questions (decides, calls nothing);
1. ``VectorStoreIndex.as_query_engine().query(...)`` for a maths and a chit-chat question;
2. the same engine streaming;
3. a ``RouterQueryEngine`` whose ``PydanticSingleSelector`` runs on the routed LLM;
4. a ``FunctionAgent`` with two tools (multiply, then add): each step decided and traced, the
   tool loop kept on the model that started it.

Offline by default: the two OpenAI clients talk to langroute's in-process fake OpenAI server
(``tests/fake_openai``: real SDK, no socket; it answers by echoing, so read the routing, not the
answers). With ``OPENAI_API_KEY`` set they call gpt-4o (strong) and gpt-4o-mini (weak).

Usage (from the repo root, with ``integrations/llama-index-llms-langroute`` installed):
python examples/llamaindex_query_engine.py [--data ../shared/data/routellm-gsm8k]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from llama_index.core import Document, Settings, SummaryIndex, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.query_engine import RouterQueryEngine
from llama_index.core.selectors import PydanticSingleSelector
from llama_index.core.tools import QueryEngineTool
from llama_index.llms.langroute import LangrouteEmbedding, RoutedLLM
from llama_index.llms.openai import OpenAI

from langroute import SWRouter, load_outcomes
from langroute.embeddings import SentenceTransformerEmbedder

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "routellm-gsm8k"
STRONG, WEAK = "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"  # the router's model names
DOCS = [
    "Multiplication facts: 17 times 23 equals 391, and 12 times 12 equals 144.",
    "The Eiffel Tower in Paris is 330 metres tall and was finished in 1889.",
    "Cats sleep for about fifteen hours a day.",
]


class PrintDecisions(BaseEventHandler):
    """Prints every routing decision LlamaIndex dispatches."""

    @classmethod
    def class_name(cls) -> str:
        return "PrintDecisions"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if event.class_name() == "RouteDecisionEvent":
            score = event.payload.get("strong_score")
            shown = "" if score is None else f", P(strong wins)={score:.3f}"
            print(f"    [route] -> {event.model} ({event.reason}{shown})")


def openai_llms() -> tuple[dict[str, OpenAI], str]:
    """gpt-4o / gpt-4o-mini: real with OPENAI_API_KEY, else on the in-process fake server."""
    if os.environ.get("OPENAI_API_KEY"):
        return {STRONG: OpenAI(model="gpt-4o", max_retries=0),
                WEAK: OpenAI(model="gpt-4o-mini", max_retries=0)}, "OpenAI"
    import httpx

    sys.path.insert(0, str(REPO))
    from tests.fake_openai import FAKE_API_KEY, FAKE_BASE_URL, FakeOpenAI

    fake = FakeOpenAI()

    def client(model: str) -> OpenAI:
        return OpenAI(model=model, api_key=FAKE_API_KEY, api_base=FAKE_BASE_URL, max_retries=0,
                      http_client=httpx.Client(transport=fake.transport),
                      async_http_client=httpx.AsyncClient(transport=fake.transport),
                      additional_kwargs={"stream_options": {"include_usage": True}})

    return {STRONG: client("gpt-4o"), WEAK: client("gpt-4o-mini")}, "the fake OpenAI server"


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--strong-fraction", type=float, default=0.5)
    args = parser.parse_args()

    embedder = SentenceTransformerEmbedder()  # all-MiniLM-L6-v2, packaged, offline
    router = SWRouter(embedder).fit(load_outcomes(args.data))
    llms, where = openai_llms()
    routed = RoutedLLM(llms, router=router, strong_fraction=args.strong_fraction)
    print(f"RoutedLLM over {list(llms)} on {where}; threshold "
          f"{routed.pipeline.policy.threshold:.4f} ({args.strong_fraction:.0%} strong calls)")
    get_dispatcher().add_event_handler(PrintDecisions())
    counter = TokenCountingHandler()
    Settings.callback_manager = CallbackManager([counter])
    Settings.llm = routed
    Settings.embed_model = LangrouteEmbedding(embedder)  # the router's own MiniLM
    index = VectorStoreIndex.from_documents([Document(text=t) for t in DOCS])

    print("\n0. Bare questions (RoutedLLM.route decides without calling a model)")
    for question in ("Natalia sold clips to 48 of her friends in April, and then she sold half "
                     "as many clips in May. How many clips did she sell altogether?",
                     "What is 2 + 2?"):
        decision = routed.route(question)
        print(f"  {question[:60]!r}... -> {decision.model} "
              f"(P(strong wins)={decision.strong_score:.3f})")
    print("  A query engine sends the LLM its templated prompt (context + question), and that "
          "whole prompt is what is routed below.")

    print("\n1. Query engine")
    engine = index.as_query_engine(similarity_top_k=1)
    for question in ("What is 17 times 23? Show the arithmetic.", "Hi! Do cats sleep a lot?"):
        print(f"  Q: {question}")
        print(f"  A: {str(engine.query(question))[:100]!r}...")

    print("\n2. Streaming query engine")
    streaming = index.as_query_engine(streaming=True, similarity_top_k=1)
    tokens = list(streaming.query("How tall is the Eiffel Tower?").response_gen)
    print(f"  {len(tokens)} streamed chunks: {''.join(tokens)[:80]!r}...")

    print("\n3. Router query engine (PydanticSingleSelector on the routed LLM)")
    tools = [
        QueryEngineTool.from_defaults(engine, name="facts",
                                      description="Useful for arithmetic and single facts"),
        QueryEngineTool.from_defaults(
            SummaryIndex.from_documents([Document(text=t) for t in DOCS]).as_query_engine(),
            name="summary", description="Useful for summarising all documents"),
    ]
    selector = RouterQueryEngine(selector=PydanticSingleSelector.from_defaults(llm=routed),
                                 query_engine_tools=tools)
    answer = selector.query("What is 12 times 12?")
    print(f"  selected: {answer.metadata['selector_result'].selections[0]}")

    print("\n4. FunctionAgent, two tools")
    agent = FunctionAgent(tools=[multiply, add], llm=routed,
                          system_prompt="You are a careful calculator.")

    async def run_agent() -> Any:
        return await agent.run("What is 17 * 23, plus 2? Use multiply, then add.")

    result = asyncio.run(run_agent())
    print(f"  tools called: {[(c.tool_name, c.tool_output.content) for c in result.tool_calls]}")
    print(f"  answer: {str(result)[:100]!r}")

    print(f"\nTokens counted by TokenCountingHandler (each provider call once): "
          f"{counter.prompt_llm_token_count} prompt + {counter.completion_llm_token_count} "
          f"completion in {len(counter.llm_token_counts)} calls")


if __name__ == "__main__":
    main()
