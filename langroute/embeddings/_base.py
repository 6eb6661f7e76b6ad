"""The embedder interface: texts in, L2-normalised float32 rows out, cached by text hash."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from .._exceptions import EmbeddingError
from ._artifacts import package_version
from ._disk_cache import CACHE_ENV_VAR, EmbeddingDiskCache

__all__ = ["Embedder"]

#: Computed vectors are written to the disk cache in shards of at most this many rows, so an
#: interrupted long run keeps most of its work.
_FLUSH_ROWS = 2048


def _langroute_version() -> str:
    """``langroute.__version__``, read when asked (imported late: the package imports this)."""
    from .. import __version__

    return __version__


class Embedder(ABC):
    """Turns texts into unit-length float32 vectors.

    Subclasses implement ``_embed_batch`` (raw vectors for up to ``batch_size`` texts),
    ``dimension`` and ``get_config``; this class batches, normalises once, and caches by the
    SHA-256 of each text -- in memory (LRU) and, if asked, on disk -- so a prompt seen before
    (in training, calibration or evaluation) is never embedded twice.

    Parameters
    ----------
    batch_size : int, default=64
        Most texts handed to the backend at once.
    cache_size : int, default=100_000
        Vectors kept in the in-memory LRU cache (0 disables it).
    cache_dir : str, Path, False or None, default=None
        Folder of the persistent cache (see ``EmbeddingDiskCache``). None uses the environment
        variable ``LANGROUTE_EMBEDDING_CACHE`` if set, else no disk cache; False never caches on
        disk. It is a property of this process, not of the embedder, so router files omit it.
    """

    #: Registry name used in saved router files (``{"kind": name, **config}``).
    kind: str = ""
    #: Installed distributions whose versions can change the vectors (weights, tokenizer,
    #: runtime): their versions, langroute's own and ``_weights_identity()`` join
    #: ``get_config()`` in naming the disk-cache folder, so an upgrade starts a new cache
    #: instead of mixing old and new vectors in one.
    vector_packages: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        batch_size: int = 64,
        cache_size: int = 100_000,
        cache_dir: str | Path | Literal[False] | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be an int >= 0, got {cache_size!r}")
        if not (cache_dir is None or cache_dir is False or isinstance(cache_dir, (str, Path))):
            raise TypeError(f"cache_dir must be a path, False or None, got {cache_dir!r}")
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.cache_dir = cache_dir
        if cache_dir is None:
            cache_dir = os.environ.get(CACHE_ENV_VAR) or None
        self._cache_root: Path | None = Path(cache_dir) if cache_dir else None
        self._disk: EmbeddingDiskCache | None = None
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Length of each vector."""

    @abstractmethod
    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        """Raw (not necessarily normalised) vectors, shape (len(texts), dimension)."""
        raise NotImplementedError("Embedder subclasses must implement _embed_batch()")

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable settings that rebuild an equivalent embedder.

        Only settings that change the vectors belong here: they name the disk-cache folder
        (with the versions of ``vector_packages``) and are stored in router files (see
        ``embedder_from_config``).
        """
        raise NotImplementedError("Embedder subclasses must implement get_config()")

    def _weights_identity(self) -> dict[str, str]:
        """Which model files the vectors come from, for settings naming a model whose files can
        change under that name (a Hub id, a folder); empty when ``get_config()`` and
        ``vector_packages`` pin them. Runs once per embedder, before any vector is looked up,
        so it must be cheap."""
        return {}

    @property
    def disk_cache(self) -> EmbeddingDiskCache | None:
        """The persistent cache of this embedder's configuration, or None if disabled."""
        if self._disk is None and self._cache_root is not None:
            # langroute's own code shapes every embedder's vectors too (normalising, long-text
            # cuts), so its version keys every cache.
            versions = {"langroute": _langroute_version()}
            versions.update((name, package_version(name)) for name in self.vector_packages)
            self._disk = EmbeddingDiskCache(self._cache_root, self.kind, self.get_config(),
                                            versions=versions, weights=self._weights_identity())
        return self._disk

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors for ``texts``, shape (len(texts), dimension)."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single str")
        texts = list(texts)
        keys = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text #{i} is a {type(text).__name__}, not a str")
            try:
                encoded = text.encode("utf-8")
            except UnicodeEncodeError as exc:
                # A lone surrogate (e.g. from a bad JSON escape) has no UTF-8 form: no cache
                # key, and no model could read it either.
                raise EmbeddingError(
                    f"text #{i} is not valid Unicode: {text[exc.start]!r} at position "
                    f"{exc.start} is a lone surrogate ({exc.reason}); fix or drop that text"
                ) from None
            keys.append(hashlib.sha256(encoded).digest())
        found: dict[bytes, np.ndarray] = {}
        first_row: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key in first_row:
                continue
            first_row[key] = i
            hit = self._cache.get(key)
            if hit is not None:
                # Threads share an embedder (async calls embed in worker threads): another
                # one may have evicted the key since the get. The vector is in hand anyway.
                with contextlib.suppress(KeyError):
                    self._cache.move_to_end(key)
                found[key] = hit
        missing = [key for key in first_row if key not in found]
        disk = self.disk_cache if missing else None
        if disk is not None:
            for key, vec in disk.lookup(missing).items():
                found[key] = vec
                self._remember(key, vec)
            missing = [key for key in missing if key not in found]
        self._compute(missing, [texts[first_row[key]] for key in missing], found, disk)
        if not keys:
            return np.empty((0, self.dimension), dtype=np.float32)
        return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)

    def _compute(
        self,
        keys: list[bytes],
        texts: list[str],
        found: dict[bytes, np.ndarray],
        disk: EmbeddingDiskCache | None,
    ) -> None:
        """Embed ``texts`` batch by batch into ``found`` (and the caches)."""
        unsaved: list[bytes] = []
        try:
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start : start + self.batch_size]
                vectors = self._normalised(self._embed_batch(batch), len(batch))
                for key, vec in zip(keys[start : start + len(batch)], vectors, strict=True):
                    found[key] = vec
                    self._remember(key, vec)
                    unsaved.append(key)
                if disk is not None and len(unsaved) >= _FLUSH_ROWS:
                    self._save(disk, unsaved, found)
                    unsaved = []
        finally:
            # Keep what was computed even if a later batch failed: it cost real time or money.
            if disk is not None and unsaved:
                self._save(disk, unsaved, found)

    def _save(
        self, disk: EmbeddingDiskCache, keys: list[bytes], found: dict[bytes, np.ndarray]
    ) -> None:
        """Write ``keys``' vectors to the disk cache. A write the file system refuses (full
        disk, read-only folder) is warned about, not raised: the vectors are computed, and a
        cache that cannot grow must not fail the call that embedded them."""
        try:
            disk.store(keys, np.stack([found[k] for k in keys]))
        except OSError as exc:
            warnings.warn(
                f"could not write {len(keys)} embeddings to the cache {disk.directory} ({exc}); "
                "they are used but not kept", RuntimeWarning, stacklevel=4)

    def _normalised(self, raw: Any, n_texts: int) -> np.ndarray:
        """``raw`` checked for shape and finiteness, scaled to unit rows, float32."""
        arr = np.asarray(raw, dtype=np.float32)
        if arr.shape != (n_texts, self.dimension):
            raise EmbeddingError(
                f"{type(self).__name__} returned shape {arr.shape} for {n_texts} texts, "
                f"expected ({n_texts}, {self.dimension})"
            )
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)):
            raise EmbeddingError(f"{type(self).__name__} returned a non-finite vector")
        if np.any(norms == 0):
            raise EmbeddingError(
                f"{type(self).__name__} returned a zero vector; it has no direction to compare"
            )
        return arr / norms

    def warm_up(self) -> float:
        """Load the model and run it once, so the first real call pays no start-up cost.

        Returns the seconds it took (model loading included), for reporting load time apart
        from decision latency. Nothing is cached: the warm-up text does not enter the caches.
        """
        start = time.perf_counter()
        self._normalised(self._embed_batch(["warm up"]), 1)
        return time.perf_counter() - start

    def embed_one(self, text: str) -> np.ndarray:
        """One unit-length float32 vector."""
        if not isinstance(text, str):
            raise TypeError(f"embed_one() takes a str, got {type(text).__name__}")
        return self.embed([text])[0]

    def _remember(self, key: bytes, vec: np.ndarray) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = vec
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
