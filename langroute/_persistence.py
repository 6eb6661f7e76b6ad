"""Router files: safetensors arrays plus a JSON header, checksummed, never pickled.

A file holds named float/int arrays and a metadata header with ``format``, ``version``, the router
class, its ``__init__`` parameters and any JSON state, plus the SHA-256 of every array. Loading
checks all of it, so a truncated, edited or foreign file raises ``RouterFileError`` and nothing in
it is ever executed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ._exceptions import RouterFileError

__all__ = ["FORMAT", "FORMAT_VERSION", "read_router_file", "write_router_file"]

FORMAT = "langroute.router"
FORMAT_VERSION = 1


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def write_router_file(
    path: str | Path, *, kind: str, params: dict[str, Any], state: dict[str, Any],
    arrays: dict[str, np.ndarray],
) -> None:
    """Write ``arrays`` and a JSON header (kind, params, state) to ``path``."""
    from safetensors.numpy import save_file

    clean = {name: np.ascontiguousarray(arr) for name, arr in arrays.items()}
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": kind,
        "params": params,
        "state": state,
        "sha256": _digest(clean),
    }
    try:
        text = json.dumps(header, sort_keys=True)
    except TypeError as exc:
        raise TypeError(f"router header is not JSON-serialisable: {exc}") from exc
    save_file(clean, str(path), metadata={"langroute": text})


def read_router_file(path: str | Path) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a router file; returns ``(kind, params, state, arrays)``."""
    from safetensors import safe_open

    file = Path(path)
    if not file.is_file():
        raise RouterFileError(f"{file}: no such router file")
    try:
        with safe_open(str(file), framework="numpy") as fh:
            metadata = fh.metadata() or {}
            arrays = {name: fh.get_tensor(name) for name in fh.keys()}
    except RouterFileError:
        raise
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError types
        raise RouterFileError(f"{file}: not a readable router file ({exc})") from exc
    raw = metadata.get("langroute")
    if raw is None:
        raise RouterFileError(f"{file}: no langroute header; not a router file")
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RouterFileError(f"{file}: corrupt header ({exc.msg})") from exc
    if header.get("format") != FORMAT:
        raise RouterFileError(f"{file}: format {header.get('format')!r} is not {FORMAT!r}")
    if header.get("version") != FORMAT_VERSION:
        raise RouterFileError(
            f"{file}: format version {header.get('version')!r}, this langroute reads "
            f"version {FORMAT_VERSION}"
        )
    if header.get("sha256") != _digest(arrays):
        raise RouterFileError(f"{file}: checksum mismatch; the arrays were changed or damaged")
    return str(header.get("kind")), dict(header.get("params", {})), dict(header.get("state", {})), arrays
