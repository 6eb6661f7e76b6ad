"""A fine-tuned encoder folder from a stranger cannot run code or read files outside itself."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from langroute import EmbeddingError, Outcomes, RouterFileError, SWRouter, load_router
from langroute._persistence import write_router_file
from langroute.embeddings import FineTunedEmbedder, HashingEmbedder, folder_sha256
from langroute.embeddings._sentence_transformers import default_model_path

STANDARD_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
]


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def standard_folder(folder: Path) -> Path:
    """A sentence-transformers folder as ``save`` writes it (the packaged MiniLM's small files)."""
    source = Path(default_model_path())
    folder.mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json", "sentence_bert_config.json"):
        shutil.copy(source / name, folder / name)
    shutil.copytree(source / "1_Pooling", folder / "1_Pooling")
    (folder / "modules.json").write_text(json.dumps(STANDARD_MODULES))
    return folder


def pickled_weights(folder: Path, marker: Path, *, loader_options: bool = True) -> Path:
    """Weights pickled under a harmless-looking name, reached through a weight index, and
    (``loader_options``) a module config asking transformers to unpickle them unrestricted."""
    import torch

    torch.save({"embeddings.word_embeddings.weight": _Exploit(marker)}, folder / "weights.dat")
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"embeddings.word_embeddings.weight": "weights.dat"}}))
    if loader_options:
        config = json.loads((folder / "sentence_bert_config.json").read_text())
        config["model_args"] = {"weights_only": False}
        (folder / "sentence_bert_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("loader_options", [True, False])
def test_weights_pickled_under_another_name_are_refused_and_never_unpickled(
        tmp_path, loader_options):
    marker = tmp_path / "pwned"
    folder = pickled_weights(standard_folder(tmp_path / "enc"), marker,
                             loader_options=loader_options)
    with pytest.raises(EmbeddingError, match="weight index may name only safetensors"):
        FineTunedEmbedder(folder)
    assert not marker.exists()


def test_module_configs_may_not_set_loader_options(tmp_path):
    folder = standard_folder(tmp_path / "enc")
    config = json.loads((folder / "sentence_bert_config.json").read_text())
    config["model_args"] = {"weights_only": False, "use_safetensors": False}
    (folder / "sentence_bert_config.json").write_text(json.dumps(config))
    with pytest.raises(EmbeddingError, match=r"sets loader options \['model_args'\]"):
        FineTunedEmbedder(folder)


def test_module_configs_may_not_name_a_tokenizer_elsewhere(tmp_path):
    """sentence-transformers still honours the deprecated ``tokenizer_name_or_path``: the
    tokenizer would be read from any folder the config names."""
    folder = standard_folder(tmp_path / "enc")
    config = json.loads((folder / "sentence_bert_config.json").read_text())
    config["tokenizer_name_or_path"] = str(tmp_path / "elsewhere")
    (folder / "sentence_bert_config.json").write_text(json.dumps(config))
    with pytest.raises(EmbeddingError, match=r"sets loader options \['tokenizer_name_or_path'\]"):
        FineTunedEmbedder(folder)


@pytest.mark.parametrize("where", ["../outside", "/tmp/outside", "1_Pooling/../../outside",
                                   "C:\\outside", None])
def test_module_paths_may_not_leave_the_folder(tmp_path, where):
    """sentence-transformers joins a module's path to the folder (older releases do not
    refuse an absolute path or "..")."""
    folder = standard_folder(tmp_path / "enc")
    modules = [*STANDARD_MODULES[:1], {**STANDARD_MODULES[1], "path": where}]
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(EmbeddingError, match="is not a folder inside"):
        FineTunedEmbedder(folder)


def test_json_nested_too_deeply_to_read_is_refused_not_a_recursion_error(tmp_path):
    folder = standard_folder(tmp_path / "enc")
    (folder / "modules.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(EmbeddingError, match="modules.json"):
        FineTunedEmbedder(folder)


def test_a_router_file_cannot_run_code_through_its_encoder_folder(tmp_path):
    """The whole attack: a stranger's ContrastiveRouter file whose checksums all match."""
    marker = tmp_path / "pwned"
    path = tmp_path / "router.lr"
    encoder = pickled_weights(standard_folder(Path(f"{path}.encoder")), marker)
    texts = ["add two numbers", "a poem about the sea", "capital of Peru", "sum 3 and 4"]
    outcomes = Outcomes(ids=["a", "b", "c", "d"], prompts=texts, models=("big", "small"),
                        scores=np.array([[1, 0], [1, 1], [0, 1], [1, 0]], float),
                        costs=np.tile([0.01, 0.001], (4, 1)))
    inner = SWRouter(HashingEmbedder(384)).fit(outcomes)
    inner_state, inner_arrays = inner._get_state()
    record = {"spec": {"kind": FineTunedEmbedder.kind, "sha256": folder_sha256(encoder)},
              "fingerprint": {"dimension": 384, "probe": [[1.0] + [0.0] * 383] * 5}}
    state = {"router_kind": "sw", "router_state": inner_state, "n_positive_pairs_": 1,
             "router_params": {k: v for k, v in inner.get_params().items() if k != "embedder"},
             "models_": ["big", "small"], "costs_": [0.01, 0.001], "quality_": [0.75, 0.5],
             "embedder_record": record}
    write_router_file(path, kind="contrastive", params={"router": "sw"}, state=state,
                      arrays={f"router/{k}": v for k, v in inner_arrays.items()})
    with pytest.raises(RouterFileError, match="router.lr.encoder.*refusing to load it"):
        load_router(path)
    assert not marker.exists()


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
@pytest.mark.parametrize("link", ["tokenizer.json", "1_Pooling"])
def test_symbolic_links_out_of_the_folder_are_refused(tmp_path, link):
    """``folder_sha256`` does not follow links, so what a link points to is not pinned."""
    folder = standard_folder(tmp_path / "enc")
    outside = tmp_path / "outside"
    (folder / link).rename(outside)
    (folder / link).symlink_to(outside)
    with pytest.raises(EmbeddingError, match=rf"symbolic links or special files \['{link}'\]"):
        FineTunedEmbedder(folder)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_special_files_are_refused_rather_than_read_forever(tmp_path):
    folder = standard_folder(tmp_path / "enc")
    (folder / "tokenizer.json").unlink()
    os.mkfifo(folder / "tokenizer.json")  # opening it to read would block
    with pytest.raises(EmbeddingError, match="special files"):
        FineTunedEmbedder(folder)


def test_tokenizer_files_named_by_path_are_refused(tmp_path):
    """transformers reads ``tokenizer_file`` from wherever ``tokenizer_config.json`` says."""
    folder = standard_folder(tmp_path / "enc")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["tokenizer_file"] = str(tmp_path / "elsewhere" / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(EmbeddingError,
                       match=r"names tokenizer files by path \(\['tokenizer_file'\]\)"):
        FineTunedEmbedder(folder)


def test_a_standard_folder_is_accepted(tmp_path):
    folder = standard_folder(tmp_path / "enc")
    assert FineTunedEmbedder(folder).sha256 == folder_sha256(folder)
