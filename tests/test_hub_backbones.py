"""The hub backbones and text encoder the app lists, end to end, without a network.

A Hugging Face Hub cache is built in a temporary folder (``tests/hub_cache.py``: the real
architectures and configuration files, random weights) and the hub client is pointed at it with
``HF_HUB_OFFLINE=1``. Each model then goes through the app's own loading code: it loads the cache's
weights, embeds with its own preprocessing into its feature size, is offered the methods that apply
to it, and fits, saves, loads and exports to ONNX.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from hub_cache import HUB_REPOS, build_hub_cache
from huggingface_hub import constants as hub_constants
from PIL import Image
from safetensors.torch import load_file

import fewshot_demo
from fewshot_demo.config.errors import CheckpointMissingError, InputKindUnsupportedError, UserInputError
from fewshot_demo.config.settings import settings
from fewshot_demo.core.export import export_image_onnx, export_text_onnx, onnx_probabilities, onnx_text_probabilities
from fewshot_demo.encoders import image as image_encoders
from fewshot_demo.encoders import text as text_encoders
from fewshot_demo.encoders.backbones import BACKBONES
from fewshot_demo.encoders.image import BackboneUnavailableError, load_backbone
from fewshot_demo.encoders.registry import default_encoder, get_encoder
from fewshot_demo.encoders.text import EncoderUnavailableError
from fewshot_demo.methods import get_method, methods_for

ROOT = Path(__file__).resolve().parents[1]
ANIMALS = ROOT / "examples" / "images" / "animals"
#: Each hub image backbone's feature size, and one weight to find unchanged in the loaded network.
IMAGE_MODELS = {"resnet50": (2048, "conv1.weight"), "dinov2_small": (384, "blocks.0.attn.qkv.weight")}
#: Methods that need a checkpoint meta-trained (or pretrained) on the backbone: none ship for a hub one.
TRAINED = [spec.key for spec in methods_for("image", "efficientnet_lite0")
           if spec.checkpoint == "required" or spec.baseline_of is not None]


def _clear_loaded() -> None:
    """Forget every loaded backbone and encoder, so a hub id loads again from whatever cache is in use."""
    for module in (image_encoders, text_encoders):
        for value in list(vars(module).values()):
            if callable(getattr(value, "cache_clear", None)):  # the loaders' lru caches
                value.cache_clear()
    image_encoders._PINNED.clear()  # the default backbone, kept apart from the cache


def _point_hub_at(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """The hub client reads its variables once, at import: set them, and its constants too."""
    for name, value in (("HF_HUB_CACHE", str(cache)), ("HF_HOME", str(cache.parent)), ("HF_HUB_OFFLINE", "1"),
                        ("TRANSFORMERS_OFFLINE", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """The cache (built once for this module) in use, on one torch thread; every hub model loaded from it
    is forgotten afterwards, so no later test meets a random-weight model under a hub id."""
    cache = tmp_path_factory.mktemp("hf") / "hub"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a shared 2-core machine are slower, not faster
    snapshots = build_hub_cache(cache)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _point_hub_at(monkeypatch, cache)
        _clear_loaded()
        yield cache, snapshots
    _clear_loaded()
    torch.set_num_threads(threads)


def _images(split: str, per_class: int, classes: int = 3) -> dict[str, list[Path]]:
    """The first ``per_class`` photos of the first ``classes`` animal classes (few: each costs a forward pass)."""
    folders = sorted((ANIMALS / split).iterdir())[:classes]
    return {folder.name: sorted(folder.glob("*.jpg"))[:per_class] for folder in folders}


def _config(snapshot: Path) -> dict:
    return json.loads((snapshot / "config.json").read_text())


def test_an_offline_hub_default_says_so_and_an_unknown_one_is_refused(monkeypatch, tmp_path):
    _point_hub_at(monkeypatch, tmp_path / "empty")
    _clear_loaded()
    monkeypatch.setenv("FEWSHOT_DEFAULT_BACKBONE", "resnet50")
    monkeypatch.setenv("FEWSHOT_DEFAULT_TEXT_ENCODER", "bert-base-uncased:cls")
    settings.cache_clear()
    assert (default_encoder("image"), default_encoder("text")) == ("resnet50", "bert-base-uncased:cls")
    with pytest.raises(BackboneUnavailableError, match="HF_HUB_OFFLINE is set.*'efficientnet_lite0' works offline"
                       ".*FEWSHOT_DEFAULT_BACKBONE makes it the default: unset it"):
        load_backbone()  # what the warm-up at start loads
    with pytest.raises(EncoderUnavailableError, match="'minilm' works offline.*FEWSHOT_DEFAULT_TEXT_ENCODER"):
        text_encoders.load_encoder()
    monkeypatch.setenv("FEWSHOT_DEFAULT_BACKBONE", "pixels28")  # raw pixels: only the Conv-4 meta-learners read them
    monkeypatch.setenv("FEWSHOT_DEFAULT_TEXT_ENCODER", "minilm:max")
    settings.cache_clear()
    with pytest.raises(UserInputError, match="FEWSHOT_DEFAULT_BACKBONE='pixels28' is not an image backbone on offer; "
                       "set it to one of efficientnet_lite0, .*dinov2_small"):
        default_encoder("image")
    with pytest.raises(UserInputError, match="FEWSHOT_DEFAULT_TEXT_ENCODER='minilm:max': unknown pooling"):
        default_encoder("text")
    monkeypatch.delenv("FEWSHOT_DEFAULT_BACKBONE")
    monkeypatch.delenv("FEWSHOT_DEFAULT_TEXT_ENCODER")
    settings.cache_clear()
    assert (default_encoder("image"), default_encoder("text")) == ("efficientnet_lite0", "minilm:layers")


def test_the_cache_is_laid_out_as_the_hub_client_reads_it(hub_cache):
    cache, snapshots = hub_cache
    scanned = {repo.repo_id: repo for repo in huggingface_hub.scan_cache_dir(cache).repos}
    assert sorted(scanned) == sorted(repo.repo_id for repo in HUB_REPOS.values())
    for name, repo in HUB_REPOS.items():
        (revision,) = scanned[repo.repo_id].revisions
        assert revision.refs == frozenset({"main"}) and revision.snapshot_path == snapshots[name]
        for file in revision.files:
            found = huggingface_hub.try_to_load_from_cache(repo.repo_id, file.file_name)
            assert found == str(snapshots[name] / file.file_name) and Path(found).resolve() == file.blob_path
    # The published sizes of the float32 weights (the random ones have the same tensors).
    sizes = {name: (snapshots[name] / "model.safetensors").stat().st_size // 1_000_000 for name in HUB_REPOS}
    assert sizes == {"resnet50": 102, "dinov2_small": 88, "bert-base-uncased": 440}


@pytest.mark.parametrize("backbone_id", IMAGE_MODELS)
def test_a_hub_backbone_embeds_the_cache_weights_with_its_own_preprocessing(hub_cache, backbone_id):
    _, snapshots = hub_cache
    feature_dim, weight = IMAGE_MODELS[backbone_id]
    backbone = get_encoder(backbone_id, "cpu")
    assert backbone.feature_dim == feature_dim
    assert torch.equal(backbone.model.state_dict()[weight], load_file(snapshots[backbone_id] / "model.safetensors")[weight])
    published = _config(snapshots[backbone_id])["pretrained_cfg"]
    spec = BACKBONES[backbone_id]
    assert (list(spec.mean), list(spec.std), published["interpolation"]) == (published["mean"], published["std"], "bicubic")
    patch_embed = getattr(backbone.model, "patch_embed", None)
    if patch_embed is not None:  # a ViT: whole patches, and the network built for the size it is given
        assert spec.input_size % patch_embed.patch_size[0] == 0 and patch_embed.patch_size == (14, 14)
        assert patch_embed.img_size == (spec.input_size, spec.input_size)
    else:
        assert published["input_size"] == [3, spec.input_size, spec.input_size]
    # The features equal the network's own on the image padded to a white square, resized (bicubic) and
    # normalised with the published mean and std, computed here without the backbone's code.
    photo = Image.open(_images("support", 1)["bird"][0]).convert("RGB")
    side = max(photo.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(photo, ((side - photo.width) // 2, (side - photo.height) // 2))
    pixels = np.asarray(square.resize((spec.input_size, spec.input_size), Image.Resampling.BICUBIC), np.float32) / 255
    normalised = (pixels - np.array(published["mean"], np.float32)) / np.array(published["std"], np.float32)
    with torch.inference_mode():
        expected = backbone.model(torch.from_numpy(normalised).permute(2, 0, 1)[None])
    assert torch.allclose(backbone.embed([photo]), expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("backbone_id", IMAGE_MODELS)
def test_a_hub_backbone_fits_saves_loads_and_exports(hub_cache, backbone_id, tmp_path):
    offered = {spec.key for spec in methods_for("image", backbone_id)}
    assert {"protonet", "linear"} <= offered and not offered & set(TRAINED)
    assert not offered & {"finetune", "adabn"}  # they run EfficientNet-Lite0's stages themselves
    assert get_method("protonet").family_for(backbone_id) == "transfer"  # no meta-trained head for it
    with pytest.raises(CheckpointMissingError, match=f"no meta-trained 'maml' checkpoint for '{backbone_id}'"):
        get_method("maml").check_applicable("image", backbone_id)  # as the bench and the comparison ask
    with pytest.raises(InputKindUnsupportedError):
        get_method("finetune").check_applicable("image", backbone_id)
    queries = [path for paths in _images("query", 1).values() for path in paths]
    fitted = fewshot_demo.fit(_images("support", 2), "protonet", backbone_id)
    predicted = fitted.predict(queries)
    loaded = fewshot_demo.load(fitted.save(tmp_path / "classifier.safetensors"))
    assert loaded.fitted.encoder_id == backbone_id
    assert [p.probabilities for p in loaded.predict(queries)] == [p.probabilities for p in predicted]
    backbone = get_encoder(backbone_id)
    exported = export_image_onnx(loaded.fitted, backbone, tmp_path / "classifier.onnx")
    inputs = torch.stack([backbone.preprocess(Image.open(path).convert("RGB")) for path in queries])
    mean, std = torch.tensor(exported.mean).view(1, 3, 1, 1), torch.tensor(exported.std).view(1, 3, 1, 1)
    from_onnx = onnx_probabilities(exported.path, (inputs - mean) / std)
    from_torch = torch.tensor([[p.probabilities[name] for name in fitted.class_names] for p in predicted])
    assert torch.allclose(from_onnx, from_torch, atol=1e-4)


@pytest.fixture(scope="module")
def bert_classifier(hub_cache):
    """A linear probe on bert-base-uncased, fitted on a few texts, with its predictions for two queries."""
    support = {"weather": ["rain all day", "sunny and warm"], "sport": ["the match ended 2-1", "a new world record"]}
    fitted = fewshot_demo.fit(support, "linear", "bert-base-uncased")
    queries = ["cloudy with showers", "the final whistle"]
    return fitted, queries, fitted.predict(queries)


def test_the_hub_text_encoder_loads_embeds_fits_saves_and_loads(hub_cache, bert_classifier, tmp_path):
    _, snapshots = hub_cache
    encoder = get_encoder("bert-base-uncased", "cpu")
    assert (encoder.feature_dim, encoder.max_length, get_encoder("bert-base-uncased:layers").feature_dim) == (768, 512, 1536)
    weight = "encoder.layer.0.attention.self.query.weight"
    published = load_file(snapshots["bert-base-uncased"] / "model.safetensors")[f"bert.{weight}"]
    assert torch.equal(encoder.model.state_dict()[weight], published)
    assert torch.equal(encoder.embed(["Paris IS Lovely"]), encoder.embed(["paris is lovely"]))  # an uncased vocabulary
    assert {"linear", "protonet", "finetune"} <= {spec.key for spec in methods_for("text", "bert-base-uncased")}
    fitted, queries, predicted = bert_classifier
    loaded = fewshot_demo.load(fitted.save(tmp_path / "classifier.safetensors"))
    assert loaded.fitted.encoder_id == "bert-base-uncased"
    assert [p.probabilities for p in loaded.predict(queries)] == [p.probabilities for p in predicted]


def test_the_hub_text_encoder_exports_to_onnx(bert_classifier, tmp_path):
    fitted, queries, predicted = bert_classifier
    exported = export_text_onnx(fitted.fitted, get_encoder("bert-base-uncased"), tmp_path / "classifier.zip")
    from_torch = torch.tensor([[p.probabilities[name] for name in fitted.class_names] for p in predicted])
    assert torch.allclose(onnx_text_probabilities(exported.path, queries), from_torch, atol=1e-4)


def test_a_fresh_process_starts_on_the_configured_hub_default_from_the_environment(hub_cache):
    cache, _ = hub_cache
    script = (
        "import json, time; began = time.perf_counter()\n"
        "from PIL import Image\n"
        "from fewshot_demo.encoders.image import load_backbone\n"
        "from fewshot_demo.encoders.registry import default_encoder\n"
        "imported = time.perf_counter(); backbone = load_backbone()\n"  # what the app's warm-up loads
        "loaded = time.perf_counter(); features = backbone.embed([Image.new('RGB', (320, 240), (90, 140, 60))])\n"
        "print(json.dumps({'id': backbone.id, 'default': default_encoder('image'), 'shape': list(features.shape),"
        " 'import_s': imported - began, 'load_s': loaded - imported, 'embed_s': time.perf_counter() - loaded}))\n"
    )
    environment = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "FEWSHOT_TORCH_THREADS": "1",
                   "FEWSHOT_DEFAULT_BACKBONE": "dinov2_small", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    started = json.loads(done.stdout.strip().splitlines()[-1])
    assert (started["id"], started["default"], started["shape"]) == ("dinov2_small", "dinov2_small", [1, 384])
    print("cold start (s):", {key: round(value, 2) for key, value in started.items() if key.endswith("_s")})
