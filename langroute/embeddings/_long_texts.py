"""What an embedder with a length limit reads of a longer text: its head, or its head and tail.

all-MiniLM-L6-v2 reads 256 word pieces and drops the rest. Prompts that put instructions,
few-shot examples or retrieved context first and the question last then look alike to it: on
routerbench-slice 86.6% of the prompts share their embedding with another prompt
(``benchmarks/results/truncation.md``). ``long_texts="head+tail"`` keeps the first quarter of
the budget from the start of such a text and the other three quarters from its end: the split
Sun et al. (2019, "How to Fine-Tune BERT for Text Classification?") found best for long texts
(128 + 382 of 510 pieces). The split was fixed from that paper before any measurement here;
nothing in this package tunes it.

The cut is made on the text, at word boundaries, with the model's own tokenizer (so the
sentence-transformers and ONNX embedders of one model read the same words); the kept head and
tail are joined by a space and embedded as usual. Texts within the limit are not touched.
"""

from __future__ import annotations

from typing import Any

from .._exceptions import EmbeddingError, RouterConfigError

__all__ = ["HEAD", "LONG_TEXTS", "LongTextCutter", "check_long_texts", "head_and_tail",
           "untruncated"]

HEAD = "head"
#: Accepted ``long_texts`` settings: the model's own truncation, or head and tail.
LONG_TEXTS = (HEAD, "head+tail")
#: Share of the budget taken from the start of a long text (Sun et al., 2019).
_HEAD_SHARE = 0.25


def check_long_texts(value: object) -> str:
    """``value`` if it is one of ``LONG_TEXTS``; otherwise a RouterConfigError naming them."""
    if not isinstance(value, str) or value not in LONG_TEXTS:
        raise RouterConfigError(f"long_texts must be one of {list(LONG_TEXTS)}, got {value!r}")
    return value


def untruncated(tokenizer: Any) -> Any:
    """A copy of a ``tokenizers.Tokenizer`` that neither truncates nor pads."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def head_and_tail(text: str, tokenizer: Any, max_pieces: int) -> str:
    """``text`` itself if it has at most ``max_pieces`` pieces, else its head and tail.

    ``tokenizer`` is an untruncated ``tokenizers.Tokenizer`` (see ``untruncated``);
    ``max_pieces`` is the model's limit less its special tokens. The head ends and the tail
    starts at word boundaries, so neither keeps a split word.
    """
    encoding = tokenizer.encode(text, add_special_tokens=False)
    n = len(encoding.ids)
    if n <= max_pieces:
        return text
    words, offsets = encoding.word_ids, encoding.offsets
    head = max(1, int(max_pieces * _HEAD_SHARE))
    tail_start = n - (max_pieces - head)

    def same_word(i: int) -> bool:  # piece i continues the word of piece i - 1
        return words[i] is not None and words[i] == words[i - 1]

    while head > 1 and same_word(head):
        head -= 1
    while tail_start < n - 1 and same_word(tail_start):
        tail_start += 1
    return text[: offsets[head - 1][1]] + " " + text[offsets[tail_start][0] :]


class LongTextCutter:
    """``head_and_tail`` for one model, set up once: its untruncated tokenizer and its limit
    less its special tokens. Raises EmbeddingError naming ``model`` when the model has no fast
    (``tokenizers``) tokenizer or no length limit, since the cut needs both."""

    def __init__(self, tokenizer: Any, max_tokens: Any, model: str) -> None:
        if tokenizer is None or not hasattr(tokenizer, "to_str"):
            raise EmbeddingError(
                f"long_texts='head+tail' needs a fast (tokenizers) tokenizer; {model} has "
                f"{type(tokenizer).__name__}")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 3:
            raise EmbeddingError(
                f"long_texts='head+tail' needs the model's length limit; {model} has "
                f"max_seq_length={max_tokens!r}")
        self.tokenizer = untruncated(tokenizer)
        special = self.tokenizer.post_processor.num_special_tokens_to_add(False) \
            if self.tokenizer.post_processor is not None else 0
        self.max_pieces = max_tokens - special

    def __call__(self, texts: list[str]) -> list[str]:
        return [head_and_tail(text, self.tokenizer, self.max_pieces) for text in texts]
