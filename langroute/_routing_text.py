"""Which text of a conversation the router reads, for every adapter.

The last user message's text; when that turn has none (an image-only turn) or there is no user
message (a system-only prompt), the closest earlier message with text: a user message first,
then one of any role (e.g. the system prompt). "" when no message has text at all: the call then
goes to the top rung (``CallPipeline.decide``), since the router has nothing to score. The
adapters turn their own message types into ``(is_user, text)`` turns.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["closest_text"]


def closest_text(turns: Sequence[tuple[bool, str]]) -> str:
    """The text to route on from ``(is_user, text)`` turns in conversation order."""
    users = [i for i, (is_user, _) in enumerate(turns) if is_user]
    for i in reversed(users):
        if turns[i][1].strip():
            return turns[i][1]
    # Any role, nearest first: back from the last user message, then whatever follows it.
    last = users[-1] if users else len(turns) - 1
    for _, text in [*reversed(turns[: last + 1]), *turns[last + 1 :]]:
        if text.strip():
            return text
    return ""
