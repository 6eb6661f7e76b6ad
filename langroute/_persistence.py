"""Router files: safetensors arrays plus a JSON header, checksummed, never pickled.

A file holds named float/int arrays and a metadata header with ``format``, ``version``, the router
class, its ``__init__`` parameters and any JSON state, plus one SHA-256 over every array and the
rest of the header. Loading checks all of it, so a truncated, edited or foreign file raises
``RouterFileError``; safetensors holds only raw numbers and JSON, so nothing in a file is ever
executed (unlike pickle, which runs code on load).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ._exceptions import RouterFileError

__all__ = ["FORMAT", "FORMAT_VERSION", "read_router_file", "write_router_file"]

FORMAT = "langroute.router"
FORMAT_VERSION = 1


def _digest(arrays: dict[str, np.ndarray], described: dict[str, Any]) -> str:
    """SHA-256 of the arrays (names, dtypes, shapes, bytes) and the JSON header fields."""
    h = hashlib.sha256()
    h.update(json.dumps(described, sort_keys=True).encode("utf-8"))
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def write_router_file(
    path: str | Path,
    *,
    kind: str,
    params: dict[str, Any],
    state: dict[str, Any],
    arrays: dict[str, np.ndarray],
) -> None:
    """Write ``arrays`` and a JSON header (kind, params, state) to ``path``, atomically."""
    from safetensors.numpy import save_file

    clean = {name: np.ascontiguousarray(arr) for name, arr in arrays.items()}
    described = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": kind,
        "params": params,
        "state": state,
    }
    try:
        header = {**described, "sha256": _digest(clean, described)}
        text = json.dumps(header, sort_keys=True)
    except TypeError as exc:
        raise TypeError(f"router header is not JSON-serialisable: {exc}") from exc
    target = Path(path)
    # Write next to the target and rename, so a crash never leaves a half-written router file.
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        save_file(clean, str(tmp), metadata={"langroute": text})
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def read_router_file(
    path: str | Path,
) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a router file; returns ``(kind, params, state, arrays)``."""
    from safetensors import safe_open

    file = Path(path)
    if not file.is_file():
        raise RouterFileError(f"{file}: no such router file")
    try:
        with safe_open(str(file), framework="numpy") as fh:
            metadata = fh.metadata() or {}
            arrays = {name: fh.get_tensor(name) for name in fh.keys()}
    except Exception as exc:  # safetensors raises SafetensorError, OSError, ValueError...
        raise RouterFileError(
            f"{file}: not a readable router file (expected safetensors; {exc})"
        ) from exc
    raw = metadata.get("langroute")
    if raw is None:
        raise RouterFileError(f"{file}: no langroute header; not a router file")
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RouterFileError(f"{file}: corrupt header ({exc.msg})") from exc
    if not isinstance(header, dict):
        raise RouterFileError(f"{file}: corrupt header (not a JSON object)")
    if header.get("format") != FORMAT:
        raise RouterFileError(f"{file}: format {header.get('format')!r} is not {FORMAT!r}")
    if header.get("version") != FORMAT_VERSION:
        raise RouterFileError(
            f"{file}: format version {header.get('version')!r}, this langroute reads "
            f"version {FORMAT_VERSION}"
        )
    kind, params, state = header.get("kind"), header.get("params"), header.get("state")
    if not isinstance(kind, str) or not isinstance(params, dict) or not isinstance(state, dict):
        raise RouterFileError(f"{file}: header lacks kind (str), params and state (objects)")
    described = {key: header[key] for key in ("format", "version", "kind", "params", "state")}
    if header.get("sha256") != _digest(arrays, described):
        raise RouterFileError(
            f"{file}: checksum mismatch; the arrays or header were changed or damaged"
        )
    return kind, params, state, arrays
