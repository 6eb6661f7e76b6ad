"""The tool and the structured-output schema the routed integration tests share."""

from __future__ import annotations

from langchain_core.tools import tool
from pydantic import BaseModel


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Joke(BaseModel):
    """A joke."""

    setup: str
    punchline: str
