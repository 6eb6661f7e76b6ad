"""Which text of a conversation the router reads, and the note a decision carries, for every
adapter.

The last user message's text; when that turn has none (an image-only turn) or there is no user
message (a system-only prompt), the nearest message with text: a user message first, then one
of any role, earlier ones first (e.g. the system prompt), and as a last resort one after the
last user message. "" when no message has text at all: the call then goes to the top rung
(``CallPipeline.decide``), since the router has nothing to score, and the note says what the
last (user) message held. The same rule gives the text of a tool loop stuck to its maker (the
router is not asked, but feedback stores the text as the call's prompt).

The adapters turn their own message types into ``Turn`` records (a plain prompt is one user
turn) and call ``shape_request``; only an empty conversation is refused (``MessageError``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from ._exceptions import MessageError

__all__ = ["Shaped", "ToolLoopLike", "Turn", "closest_text", "no_text_note", "shape_request"]


class Turn(NamedTuple):
    """One message as routing sees it: a user turn or not, its text, and what it holds (said in
    the no-text note, e.g. ``"blocks ['image_url']"`` or ``"empty text"``)."""

    is_user: bool
    text: str
    description: str = "empty text"


class ToolLoopLike(Protocol):
    """An adapter's tool loop: the candidate that made the calls (None: unidentified), and
    why."""

    @property
    def maker(self) -> str | None: ...

    @property
    def note(self) -> str: ...


class Shaped(NamedTuple):
    """What a conversation tells the pipeline: the text to route on, the decision's note, the
    candidate a tool loop is stuck to, and whether a loop is in flight but its maker unknown."""

    text: str
    note: str = ""
    sticky_model: str | None = None
    unidentified_loop: bool = False


def closest_text(turns: Sequence[tuple[bool, str]] | Sequence[Turn]) -> str:
    """The text to route on from ``(is_user, text)`` turns in conversation order: the last user
    message's text, else the nearest message with text, earlier ones first ("" if none)."""
    users = [i for i, turn in enumerate(turns) if turn[0]]
    for i in reversed(users):
        if turns[i][1].strip():
            return turns[i][1]
    # Any role, nearest first: back from the last user message, then whatever follows it.
    last = users[-1] if users else len(turns) - 1
    for turn in [*reversed(turns[: last + 1]), *turns[last + 1 :]]:
        if turn[1].strip():
            return turn[1]
    return ""


def no_text_note(turns: Sequence[Turn]) -> str:
    """Why a conversation without any text goes to the top rung (the decision's note)."""
    users = [t for t in turns if t.is_user]
    shown = users[-1] if users else turns[-1]
    return (f"no text to route on (the last {'user ' if users else ''}message has "
            f"{shown.description}); the top rung answers")


def shape_request(turns: Sequence[Turn], loop: ToolLoopLike | None = None) -> Shaped:
    """The routing text and note of a conversation, with its tool loop (if it ends in one).

    A loop whose maker is known is stuck to it (the router is not asked, so a loop without any
    text still continues). Otherwise the closest text is routed on; with no text at all the
    note says so, after the loop's note when a loop's maker is unknown. Raises
    ``MessageError`` (a ValueError) for an empty conversation.
    """
    if not turns:
        raise MessageError("cannot route an empty message list")
    text = closest_text(turns)
    if loop is not None and loop.maker is not None:
        return Shaped(text, loop.note, sticky_model=loop.maker)
    note = "" if text.strip() else no_text_note(turns)
    if loop is None:
        return Shaped(text, note)
    return Shaped(text, "; ".join(filter(None, [loop.note, note])), unidentified_loop=True)
