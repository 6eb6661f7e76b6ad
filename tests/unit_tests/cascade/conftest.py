"""The chat-model tests' fixtures (real router on synthetic outcomes, scripted fakes)."""

from __future__ import annotations

from ..chat_models.conftest import router, strong, weak

__all__ = ["router", "strong", "weak"]
