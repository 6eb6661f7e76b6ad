"""Fixtures: the real router fitted on synthetic outcomes, fake candidates, a routed model."""

from __future__ import annotations

import pytest

from langroute import SWRouter
from langroute.chat_models import RoutedChatModel
from langroute.embeddings import HashingEmbedder

from .fakes import STRONG, THRESHOLD, WEAK, EventRecorder, ScriptedChatModel, synthetic_outcomes


@pytest.fixture(scope="session")
def router() -> SWRouter:
    return SWRouter(HashingEmbedder(dimension=256, cache_dir=False)).fit(synthetic_outcomes())


@pytest.fixture
def strong() -> ScriptedChatModel:
    return ScriptedChatModel(model_name=STRONG)


@pytest.fixture
def weak() -> ScriptedChatModel:
    return ScriptedChatModel(model_name=WEAK)


@pytest.fixture
def routed(strong: ScriptedChatModel, weak: ScriptedChatModel, router: SWRouter) -> RoutedChatModel:
    return RoutedChatModel(models={STRONG: strong, WEAK: weak}, router=router, threshold=THRESHOLD)


@pytest.fixture
def recorder() -> EventRecorder:
    return EventRecorder()
