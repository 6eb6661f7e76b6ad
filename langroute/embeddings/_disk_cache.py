"""A persistent, process-safe store of embeddings keyed by the SHA-256 of each text.

Embedding ~20k prompts with MiniLM takes minutes on a laptop CPU; benchmarks, tests and
calibration embed the same prompts again and again, so vectors are kept on disk between runs.

Layout: ``<root>/<kind>-<identity hash>/`` holds ``config.json`` (what produced the vectors:
the embedder's kind, its ``get_config()``, the versions of langroute and of the packages that
shape them, ``Embedder.vector_packages``, and which model weights it read,
``Embedder._weights_identity``) and shard files ``shard-*.npz``, each with ``keys`` (n, 32)
uint8 digests and ``vectors`` (n, d) float32 unit rows. A writer only ever creates a new
shard under a temporary name and renames it into place, so concurrent processes never see
half-written files; no file is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import EmbeddingError

__all__ = ["CACHE_ENV_VAR", "EmbeddingDiskCache"]

#: Environment variable naming the cache root when an embedder is given no ``cache_dir``.
CACHE_ENV_VAR = "LANGROUTE_EMBEDDING_CACHE"

_KEY_BYTES = 32
#: Most a stored row's length may differ from 1: rows are unit vectors saved as float32.
_NORM_TOLERANCE = 1e-3
#: Above this many shards, ``compact`` merges them so loading stays one read per few files.
_MAX_SHARDS = 32
#: Keys of the package versions and of the weights in a cache's identity (beside the
#: embedder's config keys).
_VERSIONS_KEY = "package_versions"
_WEIGHTS_KEY = "weights"


def unit_rows(vectors: np.ndarray) -> bool:
    """Whether every row is a finite vector of length 1 (to float32 precision): what an
    embedder gives, so what a cache shard or a router file's fingerprint must hold."""
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    return bool(np.all(np.abs(norms - 1.0) <= _NORM_TOLERANCE))


class EmbeddingDiskCache:
    """Unit float32 vectors of one embedder configuration, persisted under ``root``.

    Parameters
    ----------
    root : str or Path
        Cache root shared by all embedders; each configuration gets its own sub-folder.
    kind : str
        The embedder's registry name.
    config : dict
        The embedder's ``get_config()``; vectors from other settings are never mixed in.
    versions : dict, default=None
        Versions of the installed packages that shape the vectors (``{"langroute": "0.1.0",
        "model2vec": "0.10.0"}``); vectors from other versions are never mixed in either.
    weights : dict, default=None
        Which model files the embedder reads (``{"revision": <hub commit>}``), for settings
        that name a model whose files can change under the same name. An empty or None
        ``versions`` or ``weights`` is left out of the identity.
    """

    def __init__(self, root: str | Path, kind: str, config: dict[str, Any],
                 versions: dict[str, str] | None = None,
                 weights: dict[str, str] | None = None) -> None:
        described: dict[str, Any] = {"kind": kind, **config}
        for key, value in ((_VERSIONS_KEY, versions), (_WEIGHTS_KEY, weights)):
            if value:
                if key in described:
                    raise ValueError(f"an embedder config may not use the key {key!r}")
                described[key] = dict(value)
        identity = json.dumps(described, sort_keys=True)
        digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
        self.directory = Path(root) / f"{kind}-{digest}"
        self._identity = identity
        self._index: dict[bytes, int] = {}
        self._blocks: list[np.ndarray] = []
        self._loaded: set[str] = set()
        self._dimension: int | None = None
        # One embedder is shared by threads (async calls decide in worker threads, routers share
        # an embedder): the index and its blocks change together, so every access holds this.
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:  # copies (copy.deepcopy) get a lock of their own
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # -- reading --------------------------------------------------------------------------------
    def lookup(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        """Vectors for the ``keys`` found on disk (re-scanning for new shards on a miss)."""
        with self._lock:
            if any(k not in self._index for k in keys):
                self.refresh()
            vectors = self._all_vectors()
            return {k: vectors[self._index[k]] for k in keys if k in self._index}

    def refresh(self) -> None:
        """Load shards written (by this or another process) since the last look."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        if not self.directory.is_dir():
            return
        for attempt in range(3):
            try:
                names = sorted(p.name for p in self.directory.glob("shard-*.npz"))
                for name in names:
                    if name not in self._loaded:
                        self._load_shard(self.directory / name)
                return
            except FileNotFoundError:
                # Another process compacted the shards between listing and reading; the merged
                # shard is already in place (it is renamed in before the old ones are removed).
                if attempt == 2:
                    raise

    def _load_shard(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as npz:
                keys = npz["keys"]
                vectors = npz["vectors"]
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise EmbeddingError(
                f"embedding cache file {path} is corrupt ({exc}); delete it to rebuild"
            ) from exc
        n = keys.shape[0] if keys.ndim == 2 else -1
        if (
            keys.dtype != np.uint8
            or keys.shape != (n, _KEY_BYTES)
            or vectors.dtype != np.float32
            or vectors.ndim != 2
            or vectors.shape[0] != n
            or (self._dimension is not None and vectors.shape[1] != self._dimension)
            or not np.all(np.isfinite(vectors))
        ):
            raise EmbeddingError(
                f"embedding cache file {path} is corrupt (keys {keys.dtype}{keys.shape}, "
                f"vectors {vectors.dtype}{vectors.shape}); delete it to rebuild"
            )
        if not unit_rows(vectors):  # served as they are: must be what ``embed`` promises
            raise EmbeddingError(
                f"embedding cache file {path} is corrupt (holds vectors that are not of unit "
                "length); delete it to rebuild"
            )
        self._dimension = int(vectors.shape[1])
        offset = sum(int(block.shape[0]) for block in self._blocks)
        self._blocks.append(vectors)
        for i, key in enumerate(keys):
            self._index.setdefault(key.tobytes(), offset + i)
        self._loaded.add(path.name)

    def _all_vectors(self) -> np.ndarray:
        if len(self._blocks) > 1:
            self._blocks = [np.concatenate(self._blocks)]
        if not self._blocks:
            return np.empty((0, self._dimension or 0), dtype=np.float32)
        return self._blocks[0]

    @property
    def dimension(self) -> int | None:
        """Length of the stored vectors, once any shard was read or written."""
        return self._dimension

    def __len__(self) -> int:
        return len(self._index)

    # -- writing --------------------------------------------------------------------------------
    def store(self, keys: list[bytes], vectors: np.ndarray) -> None:
        """Persist new ``vectors`` (unit float32 rows) for ``keys`` as one new shard."""
        if not keys:
            return
        with self._lock:
            self._store(keys, vectors)

    def _store(self, keys: list[bytes], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape[0] != len(keys) or any(len(k) != _KEY_BYTES for k in keys):
            raise ValueError("one 32-byte SHA-256 key per vector row is required")
        if vectors.ndim != 2 or not unit_rows(vectors):
            raise ValueError("the cache stores finite unit vectors (rows of a 2-d array) only")
        self.refresh()
        if self._dimension is not None and vectors.shape[1] != self._dimension:
            # Refused before writing: the new shard is right, the stored ones are not.
            raise EmbeddingError(
                f"embedding cache {self.directory} holds {self._dimension}-d vectors, but "
                f"the embedder {self._identity} gives {vectors.shape[1]}-d ones: the cache "
                "was written by another model; delete it to rebuild"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_identity()
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), _KEY_BYTES)
        name = f"shard-{uuid.uuid4().hex}.npz"
        self._write_atomic(name, key_array, vectors)
        self._load_shard(self.directory / name)
        if len(self._loaded) > _MAX_SHARDS:
            self.compact()

    def compact(self) -> None:
        """Merge every loaded shard into one (new shards of other writers are left alone)."""
        with self._lock:
            self._compact()

    def _compact(self) -> None:
        self.refresh()
        old = sorted(self._loaded)
        if len(old) < 2:
            return
        vectors = self._all_vectors()
        keys = sorted(self._index, key=self._index.__getitem__)
        rows = np.fromiter((self._index[k] for k in keys), dtype=np.int64, count=len(keys))
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), _KEY_BYTES)
        name = f"shard-{uuid.uuid4().hex}.npz"
        self._write_atomic(name, key_array, vectors[rows])
        for stale in old:
            try:
                (self.directory / stale).unlink()
            except FileNotFoundError:  # another process compacted them already
                pass
        self._loaded = {name}
        self._blocks = [np.ascontiguousarray(vectors[rows])]
        self._index = {k: i for i, k in enumerate(keys)}

    def _write_atomic(self, name: str, keys: np.ndarray, vectors: np.ndarray) -> None:
        tmp = self.directory / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, keys=keys, vectors=vectors)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.directory / name)
        finally:
            tmp.unlink(missing_ok=True)

    def _write_identity(self) -> None:
        path = self.directory / "config.json"
        if path.exists():
            return
        tmp = self.directory / f".tmp-{uuid.uuid4().hex}"
        tmp.write_text(self._identity + "\n", encoding="utf-8")
        os.replace(tmp, path)
