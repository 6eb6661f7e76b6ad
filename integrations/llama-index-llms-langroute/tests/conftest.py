"""Fixtures: LlamaIndex ``OpenAI`` clients on langroute's in-process fake OpenAI server, a real
router, and recorders for LlamaIndex instrumentation events and spans.

No test opens a socket: every HTTP request goes through ``httpx.MockTransport`` to the fake (which
lives in the repo's ``tests/fake_openai``; these tests run from a langroute checkout).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from llama_index.core import Settings
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler
from llama_index.llms.openai import OpenAI
from pytest_socket import disable_socket, enable_socket

_REPO = Path(__file__).resolve().parents[3]
if str(_REPO) not in sys.path:  # the fake server and the synthetic router live in the repo
    sys.path.insert(0, str(_REPO))

from tests.fake_openai import FAKE_API_KEY, FAKE_BASE_URL, FakeOpenAI  # noqa: E402
from tests.fake_openai._standard_suites import (  # noqa: E402
    STRONG_MODEL,
    WEAK_MODEL,
    fitted_router,
)

from llama_index.llms.langroute import RoutedLLM  # noqa: E402


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    """Any attempt to open an inet socket fails the test (unix sockets stay: asyncio needs them)."""
    disable_socket(allow_unix_socket=True)
    yield
    enable_socket()


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI()


@pytest.fixture
def make_openai(fake: FakeOpenAI) -> Callable[..., OpenAI]:
    """Builds real LlamaIndex ``OpenAI`` LLMs talking to ``fake`` (streams report usage; no SDK
    retries, so the routed LLM's own retry policy is what is tested). ``handler`` replaces the
    fake's request handler (to inject failures in front of it)."""

    def make(model: str, handler: Callable[[httpx.Request], httpx.Response] | None = None,
             **kwargs: Any) -> OpenAI:
        transport = httpx.MockTransport(handler or fake.handle)
        return OpenAI(
            model=model, api_key=FAKE_API_KEY, api_base=FAKE_BASE_URL, max_retries=0,
            http_client=httpx.Client(transport=transport),
            async_http_client=httpx.AsyncClient(transport=transport),
            additional_kwargs={"stream_options": {"include_usage": True}},
            **kwargs,
        )

    return make


@pytest.fixture
def router() -> Any:
    return fitted_router()


@pytest.fixture
def strong(make_openai: Callable[..., OpenAI]) -> OpenAI:
    return make_openai(STRONG_MODEL)


@pytest.fixture
def weak(make_openai: Callable[..., OpenAI]) -> OpenAI:
    return make_openai(WEAK_MODEL)


@pytest.fixture
def routed(strong: OpenAI, weak: OpenAI, router: Any) -> RoutedLLM:
    return RoutedLLM({STRONG_MODEL: strong, WEAK_MODEL: weak}, router=router, threshold=0.7)


class EventRecorder(BaseEventHandler):
    """Every instrumentation event dispatched while attached."""

    events: list[BaseEvent] = []

    @classmethod
    def class_name(cls) -> str:
        return "EventRecorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)

    def of(self, name: str) -> list[Any]:
        return [e for e in self.events if e.class_name() == name]


@pytest.fixture
def events() -> Iterator[EventRecorder]:
    """Records every event on the root dispatcher during the test."""
    root = get_dispatcher()
    recorder = EventRecorder(events=[])
    root.add_event_handler(recorder)
    yield recorder
    root.event_handlers.remove(recorder)


@pytest.fixture
def spans() -> Iterator[SimpleSpanHandler]:
    """Records every span (id -> parent) on the root dispatcher during the test."""
    root = get_dispatcher()
    handler = SimpleSpanHandler()
    root.add_span_handler(handler)
    yield handler
    root.span_handlers.remove(handler)


@pytest.fixture
def settings() -> Iterator[Any]:
    """LlamaIndex's global ``Settings``, restored after the test."""
    saved = (Settings._llm, Settings._embed_model, Settings._callback_manager)
    yield Settings
    Settings._llm, Settings._embed_model, Settings._callback_manager = saved
