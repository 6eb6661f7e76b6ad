"""The one routing-text rule both adapters follow (``langroute._routing_text``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from langroute import MessageError
from langroute._routing_text import Turn, closest_text, shape_request


@dataclass(frozen=True)
class Loop:
    maker: str | None
    note: str


IMAGE = Turn(True, "", "blocks ['image_url']")


def test_the_last_user_text_then_the_nearest_text_earlier_ones_first():
    assert closest_text([Turn(False, "sys"), Turn(True, "a"), Turn(True, "b")]) == "b"
    assert closest_text([Turn(False, "sys"), Turn(True, "a"), IMAGE]) == "a"
    assert closest_text([Turn(False, "sys"), Turn(False, "assistant"), IMAGE]) == "assistant"
    # as a last resort, a message after the last user message
    assert closest_text([IMAGE, Turn(False, "after")]) == "after"
    assert closest_text([IMAGE]) == ""


def test_no_text_routes_to_the_top_rung_with_a_note_saying_what_the_turn_holds():
    shaped = shape_request([Turn(False, " "), IMAGE])
    assert shaped.text == "" and shaped.sticky_model is None
    assert shaped.note == ("no text to route on (the last user message has blocks "
                           "['image_url']); the top rung answers")
    assert "last message has empty text" in shape_request([Turn(False, "")]).note
    assert shape_request([Turn(True, "hi")]).note == ""


def test_a_loop_sticks_to_its_maker_and_keeps_the_closest_text():
    """The sticky branch reads the same rule: an image-only last user turn gives the earlier
    text (feedback stores it as the call's prompt), not ""."""
    turns = [Turn(True, "add 2 and 3"), IMAGE, Turn(False, "")]
    shaped = shape_request(turns, Loop("weak", "made by weak"))
    assert shaped == ("add 2 and 3", "made by weak", "weak", False)


def test_an_unidentified_loop_without_text_says_both_why():
    shaped = shape_request([IMAGE, Turn(False, "")], Loop(None, "no stamp; routed normally"))
    assert shaped.unidentified_loop and shaped.sticky_model is None
    assert shaped.note.startswith("no stamp; routed normally; no text to route on")


def test_only_an_empty_conversation_is_refused():
    with pytest.raises(MessageError, match="empty message list"):
        shape_request([])
