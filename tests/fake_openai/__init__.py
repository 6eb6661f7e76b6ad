"""An in-process fake of OpenAI's Chat Completions API, for tests that must not open sockets.

``FakeOpenAI().chat_openai("gpt-4o")`` returns a real ``langchain_openai.ChatOpenAI`` whose HTTP
clients use an ``httpx.MockTransport``; the fake validates every request strictly, answers
deterministically (see ``_completions``) and records what it received.
"""

from __future__ import annotations

from ._completions import count_tokens
from ._errors import FakeAPIError
from ._schema_instances import PromptHints, schema_instance, strict_schema_problem
from ._server import FAKE_API_KEY, FAKE_BASE_URL, FakeOpenAI, RecordedRequest, no_socket_probe

__all__ = [
    "FAKE_API_KEY",
    "FAKE_BASE_URL",
    "FakeAPIError",
    "FakeOpenAI",
    "PromptHints",
    "RecordedRequest",
    "count_tokens",
    "no_socket_probe",
    "schema_instance",
    "strict_schema_problem",
]
