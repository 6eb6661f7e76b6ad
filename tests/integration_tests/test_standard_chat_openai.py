"""Baseline: LangChain's standard integration suite on plain ChatOpenAI talking to the fake.

It validates the fake itself (a real client, end to end); a test that passes here and fails in
``test_standard_routed.py`` points at RoutedChatModel, not at the fake.
"""

from __future__ import annotations

from typing import Any

from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests

from tests.fake_openai import FakeOpenAI
from tests.fake_openai._standard_suites import STRONG_MODEL, WEAK_MODEL, UnservableSkips

FAKE = FakeOpenAI()


class TestChatOpenAIOnFake(UnservableSkips, ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatOpenAI]:
        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return FAKE.chat_openai_params(STRONG_MODEL)

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return WEAK_MODEL

    # The multimodal tests are skipped by ``UnservableSkips`` (they download their fixtures), so
    # their capability flags do not matter here. Anthropic-format inputs stay off: ChatOpenAI
    # forwards Anthropic's ``cache_control`` keys, which Chat Completions (and the fake) reject.
    @property
    def supports_anthropic_inputs(self) -> bool:
        return False
