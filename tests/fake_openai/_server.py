"""The in-process OpenAI endpoint: an ``httpx.MockTransport`` handler that records every request.

No socket is opened: ``ChatOpenAI`` talks to it through ``http_client=httpx.Client(transport=...)``
(and the async twin), so tests exercise the real SDK and langchain-openai code paths, request
serialisation and SSE parsing included.

Error modes, chosen by the request itself so any client can trigger them:

* model ``"fail-<status>"`` (``"fail-429"``, ``"fail-500"``...) -> that status, OpenAI error JSON;
* model ``"fail-stream"`` -> a stream that sends two chunks, then an error event (a
  non-streaming call to it succeeds).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

import httpx

from ._completions import answer
from ._errors import FakeAPIError
from ._requests import validate_completion_request

__all__ = ["FAKE_API_KEY", "FAKE_BASE_URL", "FakeOpenAI", "RecordedRequest", "no_socket_probe"]

FAKE_BASE_URL = "http://fake-openai.test/v1"
FAKE_API_KEY = "test"
_FAIL_MODEL = re.compile(r"^fail-(\d{3})$")


def no_socket_probe() -> dict[str, Any]:
    """``http_socket_options=()`` where ``ChatOpenAI`` has that field (langchain-openai >= 1.2):
    it stops ChatOpenAI probing TCP options on a throwaway inet socket (our transport has no
    socket). Older releases have no probe, and would send the unknown field to the API as a
    model kwarg."""
    from langchain_openai import ChatOpenAI

    return {"http_socket_options": ()} if "http_socket_options" in ChatOpenAI.model_fields else {}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it, with the status it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    usage: dict[str, Any] | None = None  # what the fake counted (also for streams without usage)

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and self.body.get("stream") is True

    @property
    def tool_names(self) -> list[str]:
        tools = self.body.get("tools") if isinstance(self.body, dict) else None
        if not isinstance(tools, list):
            return []
        return [
            tool.get("function", {}).get("name", "?") if isinstance(tool, dict) else "?"
            for tool in tools
        ]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", []) if isinstance(self.body, dict) else []


class FakeOpenAI:
    """An OpenAI-compatible Chat Completions endpoint living in the test process.

    Examples
    --------
    >>> fake = FakeOpenAI()
    >>> llm = fake.chat_openai("gpt-4o-mini")
    >>> llm.invoke("Hello").content
    'You said: Hello'
    >>> fake.requests[-1].model
    'gpt-4o-mini'
    """

    def __init__(self, *, api_key: str = FAKE_API_KEY) -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()

    # -- transport -------------------------------------------------------------------------------
    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one HTTP request (the ``MockTransport`` handler)."""
        body: Any = None
        usage = None
        try:
            body = self._parse(request)
            response, usage = self._respond(body)
        except FakeAPIError as error:
            response = httpx.Response(error.status, json=error.body())
        self._record(request, body, response.status_code, usage)
        return response

    def _parse(self, request: httpx.Request) -> Any:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            raise FakeAPIError(401, "Incorrect API key provided.", code="invalid_api_key")
        if request.method != "POST" or request.url.path != "/v1/chat/completions":
            raise FakeAPIError(
                404, f"Invalid URL ({request.method} {request.url.path})", code="unknown_url"
            )
        try:
            return json.loads(request.content)
        except ValueError as error:
            message = f"We could not parse the JSON body of your request: {error}"
            raise FakeAPIError(400, message) from error

    def _respond(self, body: Any) -> tuple[httpx.Response, dict[str, Any]]:
        validate_completion_request(body)
        model = body["model"]
        if failure := _FAIL_MODEL.match(model):
            status = int(failure.group(1))
            raise FakeAPIError(status, f"Simulated failure {status} for model '{model}'.")
        completion = answer(body)
        if not body.get("stream"):
            return httpx.Response(200, json=completion.to_json()), completion.usage
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks: list[dict[str, Any]] = completion.to_chunks(include_usage=include_usage)
        if model == "fail-stream":
            error = FakeAPIError(500, "Simulated failure in the middle of a stream.").body()
            chunks = [*chunks[:2], error]
        events = "".join(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n" for chunk in chunks)
        if model != "fail-stream":
            events += "data: [DONE]\n\n"
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, content=events.encode(), headers=headers), completion.usage

    def _record(
        self, request: httpx.Request, body: Any, status: int, usage: dict[str, Any] | None
    ) -> None:
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers=dict(request.headers),
            body=body,
            status=status,
            usage=usage,
        )
        with self._lock:
            self.requests.append(recorded)

    # -- clients ---------------------------------------------------------------------------------
    def chat_openai_params(self, model: str = "gpt-4o-mini", **kwargs: Any) -> dict[str, Any]:
        """Constructor arguments of a ``ChatOpenAI`` wired to this fake (sync and async clients).

        ``stream_usage`` defaults to True, as ChatOpenAI does against api.openai.com (a custom
        ``http_client`` switches that default off); ``max_retries`` defaults to 0 so error tests
        see the first failure instead of the SDK's back-off; see ``no_socket_probe``.
        """
        return {
            "model": model,
            "api_key": self.api_key,
            "base_url": FAKE_BASE_URL,
            "stream_usage": True,
            "max_retries": 0,
            **no_socket_probe(),
            "http_client": httpx.Client(transport=self.transport),
            "http_async_client": httpx.AsyncClient(transport=self.transport),
            **kwargs,
        }

    def chat_openai(self, model: str = "gpt-4o-mini", **kwargs: Any) -> Any:
        """A real ``langchain_openai.ChatOpenAI`` talking to this fake."""
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(**self.chat_openai_params(model, **kwargs))

    # -- assertions helpers ----------------------------------------------------------------------
    @property
    def models_called(self) -> list[str | None]:
        """Model of every request, in arrival order."""
        with self._lock:
            return [request.model for request in self.requests]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
