"""LangChain's standard unit suite (no model is called): RoutedChatModel, and ChatOpenAI."""

from __future__ import annotations

from typing import Any

from langchain_openai import ChatOpenAI
from langchain_tests.unit_tests import ChatModelUnitTests

from langroute.chat_models import RoutedChatModel
from tests.fake_openai import FakeOpenAI, no_socket_probe
from tests.fake_openai._standard_suites import (
    STRONG_MODEL,
    WEAK_MODEL,
    UnservableSkips,
    routed_chat_params,
)


class TestChatOpenAIUnit(UnservableSkips, ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatOpenAI]:
        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": STRONG_MODEL, "api_key": "test", **no_socket_probe()}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"OPENAI_API_KEY": "test-key", "OPENAI_API_BASE": "http://fake-openai.test/v1"},
            {"model": STRONG_MODEL, **no_socket_probe()},
            {"openai_api_key": "test-key", "openai_api_base": "http://fake-openai.test/v1"},
        )

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return WEAK_MODEL


class TestRoutedChatModelUnit(UnservableSkips, ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[RoutedChatModel]:
        return RoutedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return routed_chat_params(FakeOpenAI())

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # timeout and max_retries are honoured by the routed call (retries, then fallback);
        # only credentials stay on the inner clients (RoutedChatModel rejects api_key).
        return {k: v for k, v in super().standard_chat_model_params.items() if k != "api_key"}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "gpt-4.1-mini"
