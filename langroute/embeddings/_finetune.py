"""Contrastive fine-tuning of a sentence-transformers encoder, and the folder it is saved to.

``fine_tune_contrastive`` trains a copy of a local sentence-transformers model (by default the
packaged all-MiniLM-L6-v2) on labelled text pairs with one of sentence-transformers' own pair
losses (``OnlineContrastiveLoss`` or ``ContrastiveLoss``), on the CPU, and saves it as a
sentence-transformers folder. ``FineTunedEmbedder`` embeds with such a folder, identified by
the SHA-256 of its files (its ``get_config()``), so a router file can record exactly which
encoder it was trained with and ``load`` can refuse a folder that changed.

Training runs sentence-transformers' own ``SentenceTransformerTrainer`` (AdamW at a constant
learning rate, no checkpoints, no logging integrations, CPU), which needs the ``datasets`` and
``accelerate`` packages: ``pip install 'langroute[finetune]'``. Without them
``fine_tune_contrastive`` raises ``MissingDependencyError`` naming the extra.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path, PureWindowsPath
from typing import Any, Literal

import numpy as np

from .._exceptions import EmbeddingError, MissingDependencyError
from ._sentence_transformers import (
    DEFAULT_MODEL,
    SentenceTransformerEmbedder,
    default_model_path,
    known_load_report_silenced,
)

__all__ = ["FINE_TUNE_LOSSES", "FineTunedEmbedder", "fine_tune_contrastive", "folder_sha256"]

#: Pair losses of sentence-transformers that ``fine_tune_contrastive`` can use.
FINE_TUNE_LOSSES = ("online_contrastive", "contrastive")
#: Module classes a fine-tuned folder may name in ``modules.json`` (what sentence-transformers
#: writes for MiniLM: transformer, mean pooling, normalisation). Anything else would make
#: sentence-transformers import code the folder chooses, so it is refused.
_ALLOWED_MODULES = frozenset({"Transformer", "Pooling", "Normalize"})


def folder_sha256(folder: str | Path) -> str:
    """SHA-256 over every file of ``folder`` (relative paths and contents, in sorted order)."""
    root = Path(folder)
    if not root.is_dir():
        raise EmbeddingError(f"encoder folder {root} does not exist or is not a folder")
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


#: Weight formats that unpickle (and so can run code) when loaded; only safetensors may load.
_PICKLED_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"})
#: Keys of a module config (``sentence_bert_config.json``) that sentence-transformers passes
#: to transformers' loaders: with them a folder chooses how its own files are read (e.g.
#: ``weights_only: false`` unpickles weights) or where from (``tokenizer_name_or_path`` loads
#: the tokenizer from any folder). Folders sentence-transformers saves have none.
_LOADER_SECTIONS = ("model_args", "model_kwargs", "tokenizer_args", "processor_kwargs",
                    "config_args", "config_kwargs", "tokenizer_name_or_path")
#: Loader options that override anything a folder says: weights are read only from
#: safetensors, and a pickle (should one slip through) only by torch's restricted unpickler.
_SAFE_MODEL_KWARGS = {"use_safetensors": True, "weights_only": True}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise EmbeddingError(f"{path}: unreadable JSON ({exc}); refusing to load it") from exc


def _check_modules(folder: Path) -> None:
    """Refuse a folder that could make loading it run code or read files outside it.

    Its ``modules.json`` may name only the standard modules, at paths inside it; weights only
    safetensors (no pickle-based files, weight indexes name only safetensors shards beside
    them); no symbolic links or special files (their targets are not covered by
    ``folder_sha256``); no loader options in module configs, and no tokenizer files named by
    path.
    """
    entries = sorted(folder.rglob("*"))
    odd = [p.relative_to(folder).as_posix() for p in entries
           if p.is_symlink() or not (p.is_file() or p.is_dir())]
    if odd:
        raise EmbeddingError(
            f"{folder} holds symbolic links or special files {odd}; an encoder folder may hold "
            "only regular files (a link would load what its SHA-256 does not cover); refusing "
            "to load it"
        )
    files = [p for p in entries if p.is_file()]
    pickled = sorted(p.relative_to(folder).as_posix() for p in files
                     if p.suffix.lower() in _PICKLED_SUFFIXES)
    if pickled:
        raise EmbeddingError(
            f"{folder} holds pickle-based files {pickled}; an encoder folder may hold weights "
            "only as safetensors (loading a pickle can run code); refusing to load it"
        )
    for path in files:
        name = path.name
        if name.endswith(".index.json"):
            weight_map = _read_json(path)
            shards = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
            if not isinstance(shards, dict) or not all(
                    isinstance(s, str) and s.endswith(".safetensors") and "/" not in s
                    and "\\" not in s and (path.parent / s).is_file() for s in shards.values()):
                raise EmbeddingError(
                    f"{path}: a weight index may name only safetensors files beside it; "
                    "refusing to load it"
                )
        elif name.startswith("sentence_") and name.endswith("_config.json"):
            config = _read_json(path)
            named = [key for key in _LOADER_SECTIONS
                     if isinstance(config, dict) and config.get(key)]
            if named:
                raise EmbeddingError(
                    f"{path}: sets loader options {named}, which decide how the folder's files "
                    "are read (e.g. unpickled); an encoder folder may not; refusing to load it"
                )
        elif name == "tokenizer_config.json":
            config = _read_json(path)
            named = [key for key, value in (config.items() if isinstance(config, dict) else ())
                     if key.endswith(("_file", "_files")) and value is not None]
            if named:
                raise EmbeddingError(
                    f"{path}: names tokenizer files by path ({named}), which may lie outside the "
                    "folder; an encoder folder may not; refusing to load it"
                )
    spec = folder / "modules.json"
    try:
        modules = json.loads(spec.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise EmbeddingError(
            f"{folder} is not a sentence-transformers folder (modules.json: {exc})"
        ) from exc
    if not isinstance(modules, list):
        raise EmbeddingError(f"{spec}: expected a list of modules")
    for entry in modules:
        kind = entry.get("type") if isinstance(entry, dict) else None
        if (not isinstance(kind, str) or not kind.startswith("sentence_transformers.")
                or kind.rsplit(".", 1)[-1] not in _ALLOWED_MODULES):
            raise EmbeddingError(
                f"{spec}: module {kind!r} is not one of the standard sentence-transformers "
                f"modules {sorted(_ALLOWED_MODULES)}; refusing to load it"
            )
        # sentence-transformers joins it to the folder: an absolute path or ".." loads a
        # module from elsewhere (only recent releases refuse that themselves).
        where = entry.get("path", "")
        if not isinstance(where, str) or "\0" in where or PureWindowsPath(where).anchor \
                or ".." in PureWindowsPath(where).parts:
            raise EmbeddingError(
                f"{spec}: module path {where!r} is not a folder inside {folder}; refusing to "
                "load it"
            )


class FineTunedEmbedder(SentenceTransformerEmbedder):
    """A sentence-transformers model in a local folder, pinned by the SHA-256 of its files.

    Parameters
    ----------
    folder : str or Path
        A folder written by ``SentenceTransformer.save`` (e.g. by ``fine_tune_contrastive``);
        its ``modules.json`` may name only the standard Transformer, Pooling and Normalize
        modules, its weights must be safetensors, and it may hold no links or loader options
        (``_check_modules``). It is loaded offline (local files only) on the CPU.
    sha256 : str, default=None
        Expected ``folder_sha256(folder)``; if given and the folder differs, EmbeddingError.
    batch_size, cache_size, cache_dir
        See ``Embedder``. The disk cache is keyed by the digest, so vectors of one fine-tuned
        encoder are never served for another.
    """

    kind = "sentence-transformers-folder"

    def __init__(
        self,
        folder: str | Path,
        *,
        sha256: str | None = None,
        batch_size: int = 64,
        cache_size: int = 100_000,
        cache_dir: str | Path | Literal[False] | None = None,
    ) -> None:
        path = Path(folder)
        _check_modules(path)
        actual = folder_sha256(path)
        if sha256 is not None and actual != sha256:
            raise EmbeddingError(
                f"encoder folder {path} has changed since it was recorded (SHA-256 of its files "
                f"{actual[:12]}..., expected {sha256[:12]}...)"
            )
        super().__init__(str(path), device="cpu", batch_size=batch_size,
                         cache_size=cache_size, cache_dir=cache_dir)
        self.folder = path
        self.sha256 = actual

    def _load(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            with known_load_report_silenced():
                self._model = SentenceTransformer(
                    str(self.folder), device="cpu", local_files_only=True,
                    trust_remote_code=False, model_kwargs=dict(_SAFE_MODEL_KWARGS),
                )
        return self._model

    def get_config(self) -> dict[str, Any]:
        return {"sha256": self.sha256}

    def _weights_identity(self) -> dict[str, str]:
        return {}  # ``sha256`` pins every file already, wherever the folder is copied

    def copy_to(self, destination: str | Path) -> None:
        """Copy the encoder folder to ``destination`` (replaced if it is an encoder folder).

        The copy is checked against ``sha256``, so a folder changed since it was loaded is not
        silently saved under the recorded digest.
        """
        dest = Path(destination)
        if dest.exists() and not (dest / "modules.json").is_file():
            raise EmbeddingError(
                f"will not replace {dest}: it exists and is not a sentence-transformers folder"
            )
        staging = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp-", dir=dest.parent))
        try:
            shutil.copytree(self.folder, staging, dirs_exist_ok=True)
            copied = folder_sha256(staging)
            if copied != self.sha256:
                raise EmbeddingError(
                    f"encoder folder {self.folder} has changed since it was loaded or trained "
                    f"(SHA-256 {copied[:12]}..., expected {self.sha256[:12]}...)"
                )
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
        finally:
            if staging.exists():
                shutil.rmtree(staging)


def _loss(model: Any, name: str) -> Any:
    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import losses  # type: ignore[no-redef]

    if name == "online_contrastive":
        return losses.OnlineContrastiveLoss(model)
    if name == "contrastive":
        return losses.ContrastiveLoss(model)
    raise EmbeddingError(f"unknown loss {name!r}; choose one of {FINE_TUNE_LOSSES}")


def fine_tune_contrastive(
    texts_a: Sequence[str],
    texts_b: Sequence[str],
    labels: np.ndarray,
    *,
    base: str = DEFAULT_MODEL,
    loss: str = "online_contrastive",
    epochs: int = 1,
    batch_size: int = 16,
    max_seq_length: int = 128,
    learning_rate: float = 5e-5,
    seed: int = 0,
) -> FineTunedEmbedder:
    """Fine-tune ``base`` on pairs (1 = similar, 0 = dissimilar); returns its embedder.

    Parameters
    ----------
    texts_a, texts_b : sequence of str
        The pairs, element-wise.
    labels : ndarray of shape (n_pairs,)
        1.0 for pairs to pull together, 0.0 for pairs to push apart.
    base : str, default="all-MiniLM-L6-v2"
        The packaged MiniLM, or a local sentence-transformers folder.
    loss : {"online_contrastive", "contrastive"}, default="online_contrastive"
        sentence-transformers' ``OnlineContrastiveLoss`` (hard positives and negatives of each
        batch) or ``ContrastiveLoss`` (every pair), with their default margins.
    epochs, batch_size, max_seq_length, learning_rate
        Training budget for ``SentenceTransformerTrainer``: AdamW (weight decay 0.01) at a
        constant ``learning_rate``. ``max_seq_length`` (tokens)
        is also kept by the saved model, so embedding truncates the same way.
    seed : int, default=0
        The trainer's seed and data seed (pair order, dropout); torch's global RNG is restored
        afterwards.

    Returns
    -------
    FineTunedEmbedder
        On a temporary folder that is deleted when the embedder is garbage-collected (copy it
        with ``copy_to`` to keep it).
    """
    import torch
    from sentence_transformers import SentenceTransformer

    labels = np.asarray(labels, dtype=np.float32)
    if not (len(texts_a) == len(texts_b) == len(labels)) or len(labels) == 0:
        raise EmbeddingError(
            f"need equally many texts_a, texts_b and labels (> 0), got {len(texts_a)}, "
            f"{len(texts_b)}, {len(labels)}"
        )
    if base == DEFAULT_MODEL:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        location = default_model_path()
    elif Path(base).is_dir():
        _check_modules(Path(base))
        location = base
    else:
        raise EmbeddingError(
            f"base must be {DEFAULT_MODEL!r} (the packaged model) or a local "
            f"sentence-transformers folder, got {base!r}"
        )
    try:
        from datasets import Dataset
        from sentence_transformers import (
            SentenceTransformerTrainer,
            SentenceTransformerTrainingArguments,
        )
        from transformers.trainer_callback import PrinterCallback
    except ImportError as exc:
        raise MissingDependencyError(
            "contrastive fine-tuning runs sentence-transformers' trainer, which needs the "
            "datasets and accelerate packages: pip install 'langroute[finetune]'"
        ) from exc
    pairs = Dataset.from_dict({"sentence1": list(texts_a), "sentence2": list(texts_b),
                               "label": labels.tolist()})
    with tempfile.TemporaryDirectory(prefix="langroute-finetune-") as scratch, \
            torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with known_load_report_silenced():
            model = SentenceTransformer(location, device="cpu", local_files_only=True,
                                        trust_remote_code=False,
                                        model_kwargs=dict(_SAFE_MODEL_KWARGS))
        model.max_seq_length = max_seq_length
        arguments = SentenceTransformerTrainingArguments(
            output_dir=scratch, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
            learning_rate=learning_rate, lr_scheduler_type="constant", warmup_steps=0,
            weight_decay=0.01, optim="adamw_torch", seed=seed, data_seed=seed, use_cpu=True,
            save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = SentenceTransformerTrainer(model=model, args=arguments, train_dataset=pairs,
                                             loss=_loss(model, loss))
        trainer.remove_callback(PrinterCallback)  # a library does not print to its users
        trainer.train()
        model.eval()
        folder = Path(tempfile.mkdtemp(prefix="langroute-encoder-"))
        try:
            model.save(str(folder), create_model_card=False)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    del trainer
    del model
    # No disk cache: a temporary encoder's vectors are never asked for again.
    embedder = FineTunedEmbedder(folder, cache_dir=False)
    # The temporary folder lives as long as the embedder that reads it.
    weakref.finalize(embedder, shutil.rmtree, str(folder), True)
    return embedder
