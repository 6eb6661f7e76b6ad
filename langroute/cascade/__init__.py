"""Cascades: answer with the cheaper model, check the answer, escalate when it is doubtful.

``Cascade`` is the policy a routed call runs (``RoutedChatModel(cascade=...)``, or
``CallPipeline(cascade=...)``); the scorers rate an answer. Framework-free: nothing here imports
LangChain or LlamaIndex.
"""

from __future__ import annotations

from ._cascade import Cascade
from ._normalise import normalise_answer, normalise_choice, normalise_number, normalise_text
from ._scorers import (
    DEFAULT_JUDGE_PROMPT,
    AgreementScorer,
    FunctionScorer,
    JudgeScorer,
    LogprobScorer,
    Scorer,
    as_scorer,
)

__all__ = [
    "DEFAULT_JUDGE_PROMPT",
    "AgreementScorer",
    "Cascade",
    "FunctionScorer",
    "JudgeScorer",
    "LogprobScorer",
    "Scorer",
    "as_scorer",
    "normalise_answer",
    "normalise_choice",
    "normalise_number",
    "normalise_text",
]
