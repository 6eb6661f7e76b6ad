"""Which files a named model is read from, so the disk cache never serves another's vectors.

A Hugging Face Hub id is read from the local snapshot its ``refs/main`` points to, which a new
download replaces; a local folder can be rewritten in place (a fine-tune saved again). Both
are worked out once per embedder, before any model is loaded (a fully cached run loads none),
so nothing here reads a weight file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .._exceptions import EmbeddingError

__all__ = ["folder_identity", "hub_snapshot"]

_COMMIT = re.compile(r"[0-9a-f]{40}")
#: A sentence-transformers repo has ``modules.json``, a plain transformers one ``config.json``.
_PROBES = ("modules.json", "config.json")


def hub_snapshot(name: str, cache_dir: str | None) -> tuple[str, str | None]:
    """The Hub repository ``name`` names and the commit of its local snapshot (None if none is
    downloaded), read from the Hugging Face cache ``cache_dir`` (None: the default one).

    A bare name is looked up as sentence-transformers does: under ``sentence-transformers/``
    first, then as is; the caller loads the repository and commit returned, so the commit it
    keys vectors by is the one it reads.
    """
    from huggingface_hub import try_to_load_from_cache

    repos = [name] if "/" in name else [f"sentence-transformers/{name}", name]
    for repo in repos:
        for probe in _PROBES:
            found = try_to_load_from_cache(repo, probe, cache_dir=cache_dir)
            if isinstance(found, str):
                return repo, Path(found).parent.name
    return name, None


def folder_identity(folder: Path) -> dict[str, str]:
    """What tells apart the files of the local model folder ``folder``, at the cost of a stat.

    A Hub snapshot (``.../snapshots/<commit>/``) is named by its commit: exact and free. Any
    other folder by a SHA-256 of each file's path, size and modification time (ns): rewriting
    any file -- a fine-tune saved again into the same folder, every size unchanged -- changes
    it. So does a copy or a reinstall, which costs one re-embedding, never a wrong vector;
    hashing the contents instead would read all the weights (88 MB for MiniLM, GBs for larger
    models) at every start, even when every vector is cached.
    """
    if folder.parent.name == "snapshots" and _COMMIT.fullmatch(folder.name):
        return {"revision": folder.name}
    if not folder.is_dir():
        raise EmbeddingError(f"model folder {folder} does not exist")
    stats = []
    for parent, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(parent, name)
            try:
                stat = path.stat()
            except FileNotFoundError as exc:
                raise EmbeddingError(
                    f"model folder {folder}: {path} is a broken link or vanished while being "
                    "read; fix the folder"
                ) from exc
            stats.append((path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns))
    text = json.dumps(sorted(stats))
    return {"files": hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]}
