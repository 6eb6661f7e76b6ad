"""Shared pieces for running LangChain's standard suites against the fake.

``UnservableSkips`` is a mixin whose autouse fixture skips, with a reason, the few standard tests
the fake cannot serve: speed benchmarks (pytest-benchmark timing, VCR cassettes of a real
provider) and the multimodal tests, which download their image/PDF/audio from the internet;
everything else in the suites runs. ``fitted_router`` builds the real router the
RoutedChatModel suites wrap: an ``SWRouter`` on ``HashingEmbedder`` fitted on a small synthetic
``Outcomes`` where the strong model wins maths prompts and the models tie on chit-chat.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    from ._server import FakeOpenAI

__all__ = [
    "STRONG_MODEL",
    "WEAK_MODEL",
    "UnservableSkips",
    "fitted_router",
    "routed_chat_params",
    "synthetic_outcomes",
]

STRONG_MODEL = "gpt-4o"
WEAK_MODEL = "gpt-4o-mini"

_DOWNLOADS = "downloads its {what} from the internet at test time; these tests run with no network"
UNSERVABLE = {
    "test_init_time": "benchmark of constructor speed (pytest-benchmark timing), not behaviour; "
    "speed figures belong in benchmarks/",
    "test_stream_time": "benchmark replayed from a VCR cassette of a real provider; the fake "
    "serves no cassettes and timing it measures nothing real",
    "test_image_inputs": _DOWNLOADS.format(what="PNG (github.com)"),
    "test_image_tool_message": _DOWNLOADS.format(what="PNG (github.com)"),
    "test_pdf_inputs": _DOWNLOADS.format(what="PDF (w3.org)"),
    "test_pdf_tool_message": _DOWNLOADS.format(what="PDF (w3.org)"),
    "test_audio_inputs": _DOWNLOADS.format(what="WAV (wikimedia.org)"),
}


class UnservableSkips:
    """Mixin: skip, with the reasons above, the standard tests the fake cannot serve."""

    @pytest.fixture(autouse=True)
    def _skip_unservable(self, request: pytest.FixtureRequest) -> None:
        name = getattr(request.node, "originalname", request.node.name)
        if name in UNSERVABLE:
            pytest.skip(UNSERVABLE[name])


_MATHS = [
    "What is 17 * 23?",
    "Solve for x: 3x + 5 = 20.",
    "Compute the integral of x^2 from 0 to 3.",
    "What is 3^3 plus 12 divided by 4?",
    "A train travels 120 km in 1.5 hours; what is its average speed?",
    "Prove that the sum of two even numbers is even.",
]
_CHAT = [
    "Hello",
    "Hey",
    "hi there, how are you",
    "Tell me a joke about cats.",
    "Write me 2 haikus. Only include the haikus.",
    "What is the weather in San Francisco, CA?",
]


def synthetic_outcomes() -> Any:
    """Outcomes over (STRONG_MODEL, WEAK_MODEL): strong wins maths, both score 1 on chit-chat."""
    from langroute import Outcomes

    prompts = _MATHS + _CHAT
    scores = np.array([[1.0, 0.0]] * len(_MATHS) + [[1.0, 1.0]] * len(_CHAT))
    costs = np.array([[5e-3, 2e-4]] * len(prompts))
    return Outcomes(
        ids=[f"p{i}" for i in range(len(prompts))],
        prompts=prompts,
        models=(STRONG_MODEL, WEAK_MODEL),
        scores=scores,
        costs=costs,
    )


@cache
def fitted_router() -> Any:
    """One fitted ``SWRouter(HashingEmbedder())`` per session (fitting takes milliseconds)."""
    from langroute import SWRouter
    from langroute.embeddings import HashingEmbedder

    return SWRouter(HashingEmbedder()).fit(synthetic_outcomes())


def routed_chat_params(fake: FakeOpenAI, *, threshold: float = 0.7) -> dict[str, Any]:
    """RoutedChatModel arguments: STRONG_MODEL and WEAK_MODEL ChatOpenAI clients on ``fake``.

    At the default threshold the standard suites' maths and tool prompts ("What is 1 + 2",
    "magic_function(3)", P(strong wins) ~0.73-0.83) escalate to the strong model while the
    greetings and jokes (~0.63) stay on the weak one, so the suites exercise both candidates.
    """
    return {
        "models": {name: fake.chat_openai(name) for name in (STRONG_MODEL, WEAK_MODEL)},
        "router": fitted_router(),
        "threshold": threshold,
    }
