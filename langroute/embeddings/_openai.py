"""OpenAI's embeddings API behind the ``Embedder`` interface.

For deployments that already pay for OpenAI and want stronger prompt embeddings than MiniLM
without running a model locally. Requests are batched, answers are put back in input order by
their ``index``, and rate limits / server errors are retried with tenacity (one retry layer: the
SDK's own retries are switched off so waits are not multiplied).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._exceptions import EmbeddingError
from ._base import Embedder

__all__ = ["OpenAIEmbedder"]

#: Native vector length of OpenAI's embedding models (used when ``dimensions`` is not given).
KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def _is_retryable(exc: BaseException) -> bool:
    """Rate limits, server errors, timeouts and dropped connections are worth another try."""
    import openai

    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return False


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` header), if it said."""
    response = getattr(exc, "response", None)
    value = None if response is None else response.headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


class OpenAIEmbedder(Embedder):
    """Embeddings from the OpenAI API (or any server speaking it), via the official SDK.

    Parameters
    ----------
    model : str, default="text-embedding-3-small"
        Embedding model name.
    client : openai.OpenAI, default=None
        Client to use (e.g. with a custom ``base_url`` or ``http_client``); None builds
        ``openai.OpenAI()`` on first use, which reads ``OPENAI_API_KEY``. Its own retries are
        disabled in favour of ``max_attempts``.
    dimensions : int, default=None
        Ask for shorter vectors (text-embedding-3 models). Required for models not in
        ``KNOWN_DIMENSIONS``.
    max_attempts : int, default=6
        Tries per request before giving up on rate limits, 5xx answers and network errors.
    max_wait : float, default=60.0
        Longest pause between tries, in seconds (exponential backoff with jitter, or the
        server's ``Retry-After``).
    sleep : callable, default=time.sleep
        How to wait between tries; tests pass a recorder.
    batch_size : int, default=256
        Texts per request (the API accepts up to 2048).
    cache_size, cache_dir
        See ``Embedder``.

    Examples
    --------
    >>> embedder = OpenAIEmbedder(dimensions=512, cache_dir="~/.cache/langroute")  # doctest: +SKIP
    >>> embedder.embed(["What is 2 + 2?"]).shape  # doctest: +SKIP
    (1, 512)
    """

    kind = "openai"

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        client: Any = None,
        dimensions: int | None = None,
        max_attempts: int = 6,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        batch_size: int = 256,
        cache_size: int = 100_000,
        cache_dir: str | Path | Literal[False] | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty str, got {model!r}")
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
        ):
            raise ValueError(f"dimensions must be None or an int >= 1, got {dimensions!r}")
        if dimensions is None and model not in KNOWN_DIMENSIONS:
            raise ValueError(
                f"unknown vector length for model {model!r}; pass dimensions= "
                f"(known models: {sorted(KNOWN_DIMENSIONS)})"
            )
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        if (isinstance(max_wait, bool) or not isinstance(max_wait, (int, float))
                or not math.isfinite(max_wait) or max_wait < 0):
            # NaN or -1 made every wait NaN or negative: tenacity then raised mid-retry
            raise ValueError(f"max_wait must be a finite number of seconds >= 0, got {max_wait!r}")
        super().__init__(batch_size=batch_size, cache_size=cache_size, cache_dir=cache_dir)
        self.model = model
        self.client = client
        self.dimensions = dimensions
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.sleep = sleep
        self._client: Any = None
        self._retrying: Any = None

    @property
    def dimension(self) -> int:
        return self.dimensions if self.dimensions is not None else KNOWN_DIMENSIONS[self.model]

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model, "dimensions": self.dimensions}

    def warm_up(self) -> float:
        """Build the API client (nothing to load; no request is sent). Returns seconds."""
        start = time.perf_counter()
        self._get_client()
        return time.perf_counter() - start

    def _get_client(self) -> Any:
        if self._client is None:
            import openai

            if self.client is None:
                try:
                    self._client = openai.OpenAI(max_retries=0)
                except openai.OpenAIError as exc:
                    raise EmbeddingError(
                        f"cannot create an OpenAI client ({exc}); set OPENAI_API_KEY or pass "
                        "client=openai.OpenAI(...)"
                    ) from exc
            else:
                self._client = self.client.with_options(max_retries=0)
        return self._client

    def _get_retrying(self) -> Any:
        if self._retrying is None:
            from tenacity import (
                Retrying,
                retry_if_exception,
                stop_after_attempt,
                wait_exponential_jitter,
            )

            backoff = wait_exponential_jitter(initial=1.0, max=self.max_wait)

            def wait(state: Any) -> float:
                exc = state.outcome.exception() if state.outcome is not None else None
                asked = _retry_after(exc)
                return min(asked, self.max_wait) if asked is not None else backoff(state)

            self._retrying = Retrying(
                sleep=self.sleep,
                stop=stop_after_attempt(self.max_attempts),
                wait=wait,
                retry=retry_if_exception(_is_retryable),
                reraise=True,
            )
        return self._retrying

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        import openai

        for i, text in enumerate(texts):
            if not text:
                raise EmbeddingError(f"the OpenAI embeddings API rejects empty text (text #{i})")
        request: dict[str, Any] = {"input": texts, "model": self.model, "encoding_format": "float"}
        if self.dimensions is not None:
            request["dimensions"] = self.dimensions
        client = self._get_client()
        try:
            response = self._get_retrying()(client.embeddings.create, **request)
        except openai.OpenAIError as exc:
            gave_up = f" after {self.max_attempts} attempts" if _is_retryable(exc) else ""
            raise EmbeddingError(f"OpenAI embeddings request failed{gave_up}: {exc}") from exc
        return self._vectors_from(response, len(texts))

    def _vectors_from(self, response: Any, n_texts: int) -> np.ndarray:
        """The response's vectors in input order; anything malformed raises EmbeddingError."""
        data = getattr(response, "data", None)
        if not isinstance(data, list) or len(data) != n_texts:
            got = len(data) if isinstance(data, list) else type(data).__name__
            raise EmbeddingError(
                f"OpenAI returned {got} embeddings for {n_texts} texts (model {self.model!r})"
            )
        out = np.empty((n_texts, self.dimension), dtype=np.float32)
        seen = np.zeros(n_texts, dtype=bool)
        for item in data:
            index = getattr(item, "index", None)
            vector = getattr(item, "embedding", None)
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_texts:
                raise EmbeddingError(f"OpenAI returned an embedding with bad index {index!r}")
            if seen[index]:
                raise EmbeddingError(f"OpenAI returned index {index} twice")
            if not isinstance(vector, list) or len(vector) != self.dimension:
                size = len(vector) if isinstance(vector, list) else type(vector).__name__
                raise EmbeddingError(
                    f"OpenAI returned a vector of length {size} at index {index}, expected "
                    f"{self.dimension}"
                )
            try:
                out[index] = np.asarray(vector, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise EmbeddingError(
                    f"OpenAI returned non-numeric values at index {index}"
                ) from exc
            seen[index] = True
        return out
