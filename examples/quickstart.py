"""langroute quickstart: train the default router on real outcomes and watch it route.

Trains the similarity-weighted router (all-MiniLM-L6-v2 embeddings, loaded offline) on half of
RouteLLM's GSM8K outcomes (GPT-4 vs Mixtral), calibrates the threshold so that half of the calls
would go to the strong model -- on the out-of-fold scores ``fit`` keeps (each training prompt
scored by a refit that never saw it, so nothing is embedded twice and no prompt is scored by a
router trained on it) -- checks that share on the held-out half, then shows for a handful of
held-out prompts which model each goes to and why -- through ``RoutedChatModel.route``, which
decides without calling any model.
With ``OPENAI_API_KEY`` set it also calls real models (gpt-4o as the strong, gpt-4o-mini as the
weak stand-in) and prints the answers with their routing metadata.

Usage: python examples/quickstart.py [--data ../shared/data/routellm-gsm8k] [--strong-fraction 0.5]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from langchain_core.messages import HumanMessage

from langroute import RoutedChatModel, SWRouter, calibrate_threshold, load_outcomes

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "routellm-gsm8k"
STRONG, WEAK = "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"


def build_models() -> tuple[dict, bool]:
    """Real OpenAI clients; without a key they are built but never called (route() only)."""
    from langchain_openai import ChatOpenAI

    live = bool(os.environ.get("OPENAI_API_KEY"))
    key = None if live else "unused-route-only"
    return {
        STRONG: ChatOpenAI(model="gpt-4o", api_key=key),
        WEAK: ChatOpenAI(model="gpt-4o-mini", api_key=key),
    }, live


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--strong-fraction", type=float, default=0.5)
    parser.add_argument("--show", type=int, default=6, help="how many held-out prompts to route")
    args = parser.parse_args()

    outcomes = load_outcomes(args.data)
    order = np.random.default_rng(0).permutation(len(outcomes))
    half = len(order) // 2
    train, held_out = outcomes.subset(order[:half]), outcomes.subset(order[half:])
    print(f"Outcomes: {args.data.name}, {len(outcomes)} prompts x {len(outcomes.models)} models")

    started = time.perf_counter()
    router = SWRouter().fit(train)
    print(f"Trained {router!r} on {len(train)} prompts in {time.perf_counter() - started:.1f} s")

    share = args.strong_fraction
    started = time.perf_counter()
    threshold = calibrate_threshold(router, strong_fraction=share)  # out-of-fold scores
    seconds = time.perf_counter() - started
    strong = router.models.index(STRONG)
    on_held_out = np.mean(router.win_matrices(held_out.prompts)[:, strong, 1 - strong] >= threshold)
    print(f"Threshold {threshold:.4f} (calibrated in {seconds * 1000:.0f} ms for {share:.0%} "
          f"strong calls): {on_held_out:.0%} of the {len(held_out)} held-out prompts go to "
          f"{STRONG}\n")

    models, live = build_models()
    routed = RoutedChatModel(models=models, router=router, threshold=threshold)
    column = {name: i for i, name in enumerate(held_out.models)}
    for i in range(min(args.show, len(held_out))):
        prompt = held_out.prompts[i]
        decision = routed.route([HumanMessage(prompt)])
        outcome = {name: held_out.scores[i, column[name]] for name in (STRONG, WEAK)}
        print(f"- {prompt[:90]!r}{'...' if len(prompt) > 90 else ''}")
        print(f"  {decision}")
        print(f"  recorded: {STRONG} scored {outcome[STRONG]:g}, {WEAK} scored {outcome[WEAK]:g}")

    if not live:
        print("\nOPENAI_API_KEY is not set: decided only, no model was called.")
        return
    question = held_out.prompts[0]
    answer = routed.invoke(question)
    chosen = answer.response_metadata["langroute"]["model"]
    print(f"\nLive call -> {chosen}: {answer.content[:200]}")
    print(f"usage: {answer.usage_metadata}")


if __name__ == "__main__":
    main()
