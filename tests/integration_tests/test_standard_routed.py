"""LangChain's standard integration suite on RoutedChatModel over two ChatOpenAI on the fake.

Same suite as ``test_standard_chat_openai.py`` (plain ChatOpenAI): a test that passes there and
fails here points at RoutedChatModel (findings go to ``.notes/peer-suite.md``).
"""

from __future__ import annotations

from typing import Any

from langchain_tests.integration_tests import ChatModelIntegrationTests

from langroute.chat_models import RoutedChatModel
from tests.fake_openai import FakeOpenAI
from tests.fake_openai._standard_suites import UnservableSkips, routed_chat_params

FAKE = FakeOpenAI()


class TestRoutedChatModelOnFake(UnservableSkips, ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[RoutedChatModel]:
        return RoutedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return routed_chat_params(FAKE)

    @property
    def supports_json_mode(self) -> bool:
        return True  # with_structured_output(method="json_mode") reaches ChatOpenAI unchanged

    @property
    def supports_anthropic_inputs(self) -> bool:
        return False  # the candidates are ChatOpenAI, which does not take Anthropic content

    @property
    def model_override_value(self) -> str:
        # Unknown call keywords pass through to the chosen ChatOpenAI, so ``model=`` overrides
        # the model name of whichever client was chosen (it does not pick a candidate).
        return "gpt-4.1-mini"
