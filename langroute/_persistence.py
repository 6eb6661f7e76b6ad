"""Router files: safetensors arrays plus a JSON header, checksummed, never pickled.

A file holds named float/int arrays and a metadata header with ``format``, ``version``, the router
class, its ``__init__`` parameters and any JSON state, plus one SHA-256 over every array and the
rest of the header. Loading checks all of it, so a truncated, damaged or foreign file raises
``RouterFileError``; safetensors holds only raw numbers and JSON, so nothing in a file is ever
executed (unlike pickle, which runs code on load).

The SHA-256 detects damage, not tampering: whoever edits a file can recompute it. For
authenticity, save with a ``signing_key``: the header then carries an HMAC-SHA256 of that digest
under the key, and loading with the same key refuses a file that is unsigned or was signed with
another key (or changed since). The key is a secret shared by writer and reader; it is never
stored in the file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ._exceptions import RouterConfigError, RouterFileError

__all__ = ["FORMAT", "FORMAT_VERSION", "READABLE_VERSIONS", "read_router_file",
           "write_router_file"]

FORMAT = "langroute.router"
#: The version ``write_router_file`` writes. 2: files may carry what an older langroute
#: cannot read (five embedder fingerprint probes, ``learned_feedback``), so that langroute
#: says the file is newer rather than corrupt.
FORMAT_VERSION = 2
#: The versions ``read_router_file`` reads (version 1 files load as before).
READABLE_VERSIONS = (1, 2)


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


def _key_bytes(signing_key: str | bytes) -> bytes:
    """The HMAC key as bytes (a str is UTF-8 encoded); an empty key is refused."""
    if isinstance(signing_key, str):
        signing_key = signing_key.encode("utf-8")
    if not isinstance(signing_key, (bytes, bytearray)):
        raise RouterConfigError(
            f"signing_key must be str or bytes, got {type(signing_key).__name__}"
        )
    if not signing_key:
        raise RouterConfigError("signing_key must not be empty")
    return bytes(signing_key)


def _signature(signing_key: str | bytes, digest: str) -> str:
    return hmac.new(_key_bytes(signing_key), digest.encode("ascii"), hashlib.sha256).hexdigest()


def write_router_file(
    path: str | Path,
    *,
    kind: str,
    params: dict[str, Any],
    state: dict[str, Any],
    arrays: dict[str, np.ndarray],
    signing_key: str | bytes | None = None,
) -> None:
    """Write ``arrays`` and a JSON header (kind, params, state) to ``path``, atomically.

    With ``signing_key`` the header also holds ``hmac_sha256``, the HMAC-SHA256 of the
    content digest under that key (see the module docstring).
    """
    if signing_key is not None:
        _key_bytes(signing_key)  # a bad key fails before any work
    from safetensors import SafetensorError
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
        digest = _digest(clean, described)
        header = {**described, "sha256": digest}
        if signing_key is not None:
            header["hmac_sha256"] = _signature(signing_key, digest)
        text = json.dumps(header, sort_keys=True)
    except TypeError as exc:
        raise TypeError(f"router header is not JSON-serialisable: {exc}") from exc
    target = Path(path)
    # Write next to the target and rename, so a crash never leaves a half-written router file.
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        try:
            save_file(clean, str(tmp), metadata={"langroute": text})
        except SafetensorError as exc:
            raise _write_error(exc, target) from exc
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_error(exc: Exception, target: Path) -> OSError:
    """safetensors reports a failed write (no such folder, disk full) as a SafetensorError,
    not an OSError: give callers the OSError (with its errno, so FileNotFoundError where it
    is one) that any other failed file write raises."""
    found = re.search(r"\(os error (\d+)\)", str(exc))
    if found is None:
        return OSError(f"cannot write the router file {target}: {exc}")
    code = int(found.group(1))
    return OSError(code, f"{os.strerror(code)} (writing the router file: {exc})", str(target))


def read_router_file(
    path: str | Path, *, signing_key: str | bytes | None = None
) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a router file; returns ``(kind, params, state, arrays)``.

    With ``signing_key``, the file must also carry a valid HMAC-SHA256 under that key; without
    one, any signature in the file is ignored (the checksum still detects damage).
    """
    from safetensors import safe_open

    if signing_key is not None:
        _key_bytes(signing_key)
    file = Path(path)
    if not file.is_file():
        raise RouterFileError(f"{file}: " + ("a folder, not a router file" if file.is_dir() else
                                             "no such router file"))
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
    except (ValueError, RecursionError) as exc:  # an int of > 4300 digits; nesting too deep
        raise RouterFileError(f"{file}: corrupt header ({exc})") from exc
    if not isinstance(header, dict):
        raise RouterFileError(f"{file}: corrupt header (not a JSON object)")
    if header.get("format") != FORMAT:
        raise RouterFileError(f"{file}: format {header.get('format')!r} is not {FORMAT!r}")
    version = header.get("version")
    # ``True == 1 == 1.0`` in Python: only the int the writer puts there is a version.
    if type(version) is not int or version not in READABLE_VERSIONS:
        newer = (type(version) is int and version > FORMAT_VERSION)
        raise RouterFileError(
            f"{file}: format version {version!r}, this langroute reads versions "
            f"{list(READABLE_VERSIONS)}"
            + ("; the file was written by a newer langroute: upgrade langroute to load it"
               if newer else "")
        )
    kind, params, state = header.get("kind"), header.get("params"), header.get("state")
    if not isinstance(kind, str) or not isinstance(params, dict) or not isinstance(state, dict):
        raise RouterFileError(f"{file}: header lacks kind (str), params and state (objects)")
    described = {key: header[key] for key in ("format", "version", "kind", "params", "state")}
    digest = _digest(arrays, described)
    if header.get("sha256") != digest:
        raise RouterFileError(
            f"{file}: checksum mismatch; the arrays or header were changed or damaged"
        )
    if signing_key is not None:
        signature = header.get("hmac_sha256")
        if not isinstance(signature, str):
            raise RouterFileError(
                f"{file}: unsigned router file, but a signing_key was given: refusing a file "
                "whose author cannot be verified (re-save it with save(path, signing_key=...))"
            )
        # As bytes: compare_digest raises TypeError on a str with non-ASCII characters (and
        # JSON may hold lone surrogates, which only "surrogatepass" encodes).
        if not hmac.compare_digest(signature.encode("utf-8", "surrogatepass"),
                                   _signature(signing_key, digest).encode("ascii")):
            raise RouterFileError(
                f"{file}: signature does not match the signing_key: the file was signed with "
                "another key or changed after signing"
            )
    return kind, params, state, arrays
