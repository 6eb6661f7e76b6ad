"""How a ``predict`` or ``structured_predict`` call's template reaches the candidate answering it.

LlamaIndex's ``LLM.predict`` (and ``stream``, ``apredict``, ``astream``, which query engines'
response synthesizers call) formats the template for the LLM it runs on: a chat model gets
``_get_messages`` (the template's messages, the output parser's format instructions, its
``system_prompt`` first) passed to ``chat``; a completion model gets ``_get_prompt`` (the
template formatted with its ``messages_to_prompt`` / ``completion_to_prompt``, the format
instructions, its ``system_prompt`` and ``query_wrapper_prompt``) passed to
``complete(..., formatted=True)``. Run on ``RoutedLLM`` that would format with the router's
settings, and a local model would get a prompt without its own chat template. So the template
travels with the call and the chosen candidate formats it as its own ``predict`` would. The
RoutedLLM's ``system_prompt``, ``query_wrapper_prompt`` and ``output_parser`` are part of the
request, so they go inside the candidate's (its chat template still wraps all of it).

LlamaIndex's structured-output programs (``structured_predict`` and its stream / async forms)
likewise format the template for the LLM they run on, as messages extended with its
``system_prompt``: when they chat, the chosen candidate gets those messages as the program run
on it would send them, RoutedLLM's system prompt inside its own (the LLMs' output parsers play
no part: the program reads the answer with its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.llms import LLM
from llama_index.core.prompts import BasePromptTemplate

from langroute import RouterConfigError

__all__ = ["TemplateCall", "check_parsers"]


def check_parsers(router: LLM, llms: Mapping[str, LLM]) -> None:
    """Two output parsers cannot both read one answer: refuse one on the router and a candidate."""
    if router.output_parser is None:
        return
    both = [name for name, llm in llms.items() if llm.output_parser is not None]
    if both:
        named = ", ".join(f"llms[{name!r}]" for name in both)
        raise RouterConfigError(
            f"output_parser is set on the RoutedLLM and on {named}; an answer is parsed "
            "once: set it on the RoutedLLM or on the candidates")


@dataclass(frozen=True)
class TemplateCall:
    """A ``predict`` call's template and arguments, formatted for whichever LLM is called.

    ``router`` is the RoutedLLM, whose own prompt settings form the inner layer.
    ``structured`` marks a structured-output program's chat call instead: its messages only.
    """

    template: BasePromptTemplate
    args: dict[str, Any]
    router: LLM
    structured: bool = False

    def _parsers(self, llm: LLM) -> list[Any]:
        if self.structured:  # the program parses the answer with its own parser
            return []
        return [owner.output_parser for owner in (self.router, llm)
                if owner.output_parser is not None]

    def messages_for(self, llm: LLM) -> list[ChatMessage]:
        """What ``llm.predict`` would send a chat model (``LLM._get_messages``), or a
        structured-output program run on ``llm`` (the template's messages, ``_extend_messages``)."""
        messages = self.template.format_messages(llm=llm, **self.args)
        for parser in self._parsers(llm):
            messages = parser.format_messages(messages)
        return llm._extend_messages(self.router._extend_messages(messages))

    def prompt_for(self, llm: LLM) -> str:
        """What ``llm.predict`` would send a completion model (``LLM._get_prompt``), to be
        passed with ``formatted=True``."""
        text = self.template.format(llm=llm, messages_to_prompt=llm.messages_to_prompt,
                                    completion_to_prompt=llm.completion_to_prompt, **self.args)
        for parser in self._parsers(llm):
            text = parser.format(text)
        return llm._extend_prompt(self.router._extend_prompt(text))

    def parse(self, llm: LLM, output: str) -> str:
        """The answer as ``llm.predict`` would return it (read by the output parser, if any)."""
        parsers = self._parsers(llm)  # at most one (check_parsers)
        return str(parsers[0].parse(output)) if parsers else output
