"""Two agents, one routed model, a budget each -- offline (fake chat models, real prices).

A "researcher" and a "coder" are built with ``langchain.agents.create_agent`` on ONE
``RoutedChatModel``; ``create_agent(name=...)`` puts the agent's name in each call's
``lc_agent_name`` metadata, which is the budget scope. The candidates are fake chat models that
answer offline but report the usage of real models (gpt-4o and gpt-4o-mini), so the budget
prices them from genai-prices' table.

- The researcher has a HARD budget: once its next call's worst case no longer fits, the call
  is denied with ``BudgetExceededError`` before any provider call.
- The coder has a SOFT budget that falls back to the cheapest model: as its spend grows the
  routing threshold rises, so hard questions move from gpt-4o to gpt-4o-mini, and it keeps
  answering.

Spend is kept in a SQLite file; the script ends by printing ``langroute spend`` for it.

Usage: python examples/agent_budgets.py [--store sqlite:///path/spend.db]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from langroute import (
    Budget,
    BudgetExceededError,
    HashingEmbedder,
    Outcomes,
    RoutedChatModel,
    SWRouter,
)
from langroute.cli import main as langroute_cli

STRONG, WEAK = "strong", "weak"
MATHS = ["What is 17 * 23?", "Solve for x: 3x + 5 = 20.",
         "Compute the integral of x^2 from 0 to 3.", "What is 3^3 plus 12 divided by 4?",
         "A train travels 120 km in 1.5 hours; what is its average speed?",
         "What is 48 divided by 6 times 7?"]
CHAT = ["Hello", "Hey", "hi there, how are you", "Tell me a joke about cats.",
        "Write me 2 haikus. Only include the haikus.", "Good morning!"]


class OfflineChatModel(BaseChatModel):
    """Answers at once, offline, reporting the usage a real answer of 400 tokens would have."""

    model_name: str

    @property
    def _llm_type(self) -> str:
        return "offline-example"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        prompt_tokens = sum(len(m.text) for m in messages) // 4 + 4 * len(messages)
        message = AIMessage(
            content=f"[{self.model_name}] an answer",
            usage_metadata={"input_tokens": prompt_tokens, "output_tokens": 400,
                            "total_tokens": prompt_tokens + 400},
            response_metadata={"model_name": self.model_name})
        return ChatResult(generations=[ChatGeneration(message=message)])


def fitted_router() -> SWRouter:
    """Maths: the strong model wins; chit-chat: both do (synthetic outcomes, offline)."""
    prompts = MATHS + CHAT
    outcomes = Outcomes(
        ids=[f"p{i}" for i in range(len(prompts))], prompts=prompts, models=(STRONG, WEAK),
        scores=np.array([[1.0, 0.0]] * len(MATHS) + [[1.0, 1.0]] * len(CHAT)),
        costs=np.array([[5e-3, 3e-4]] * len(prompts)))
    return SWRouter(HashingEmbedder(dimension=128)).fit(outcomes)


def questions() -> Iterator[str]:
    while True:
        yield from MATHS


def run(store: str) -> None:
    routed = RoutedChatModel(
        models={STRONG: OfflineChatModel(model_name="gpt-4o"),
                WEAK: OfflineChatModel(model_name="gpt-4o-mini")},
        router=fitted_router(), threshold=0.7, max_tokens=500,
        budgets={"researcher": Budget(limit_usd=0.03, window="day"),
                 "coder": Budget(limit_usd=0.03, window="day", mode="soft",
                                 on_exhausted="cheapest")},
        spend_store=store)
    agents = {name: create_agent(routed, tools=[], name=name) for name in ("researcher", "coder")}
    denied = {name: False for name in agents}
    asked = questions()
    for turn in range(1, 11):
        question = next(asked)
        for name, agent in agents.items():
            if denied[name]:
                continue
            try:
                state = agent.invoke({"messages": [{"role": "user", "content": question}]})
            except BudgetExceededError as error:
                denied[name] = True
                print(f"turn {turn:2d} {name:10s} DENIED: {error}")
                continue
            answer = state["messages"][-1]
            meta = answer.response_metadata["langroute"]
            budget = meta["budget"]
            print(f"turn {turn:2d} {name:10s} -> {meta['model']:6s} (threshold "
                  f"{budget['threshold']:.3f}, spent ${budget['spent_usd']:.4f} of "
                  f"${budget['limit_usd']:.2f} before this call, {budget['action']})")
    print(f"\n$ langroute spend --store {store}")
    langroute_cli(["spend", "--store", store])


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", help="spend store URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    if args.store:
        run(args.store)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{Path(tmp) / 'spend.db'}")


if __name__ == "__main__":
    cli()
