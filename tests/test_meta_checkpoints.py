"""Checkpoints: round trip, and every kind of wrong or tampered file is refused with what to do."""

from __future__ import annotations

import json
import time

import pytest
import torch

from fewshot_demo.methods.checkpoint_index import CONFIG_FILE, MODEL_FILE
from fewshot_demo.methods.checkpoint_store import (
    HubUnavailableError,
    _sha256,
    load_checkpoint,
    pull_from_hub,
    save_checkpoint,
)
from fewshot_demo.methods.maml import MAML, MAMLConfig, initial_inner_lrs
from fewshot_demo.methods.networks import Conv4, FeatureProjection


def saved_maml(tmp_path, feature_dim: int = 16):
    torch.manual_seed(0)
    network = FeatureProjection(feature_dim, rank=4)
    with torch.no_grad():
        network.up.normal_(0, 0.1)
    lrs = {f"inner_lr.{name}": lr + 0.1 for name, lr in initial_inner_lrs(network, 0.3).items()}
    config = {"maml": MAMLConfig(inner_steps=3, inner_lr=0.3).to_dict(), "n_way": 5, "validation_accuracy": 0.5}
    folder = save_checkpoint(tmp_path / "maml-test", "maml", network, "efficientnet_lite0", lrs, config)
    return folder, network, lrs


def rewrite_config(folder, **changes):
    config = json.loads((folder / CONFIG_FILE).read_text())
    config.update(changes)
    (folder / CONFIG_FILE).write_text(json.dumps(config))


def test_round_trip_gives_the_same_network_and_predictions(tmp_path):
    folder, network, lrs = saved_maml(tmp_path)
    checkpoint = load_checkpoint(folder, method="maml", backbone_id="efficientnet_lite0", feature_dim=16)
    for name, value in network.state_dict().items():
        assert torch.equal(checkpoint.network.state_dict()[name], value)
    assert set(checkpoint.extras) == set(lrs)
    config = checkpoint.config
    assert config["architecture"] == network.architecture()
    assert config["feature_dim"] == 16 and config["method"] == "maml" and config["package_version"]
    support = torch.randn(6, 16)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    strip = {name[len("inner_lr.") :]: value for name, value in lrs.items()}
    restored = {name[len("inner_lr.") :]: value for name, value in checkpoint.extras.items()}
    before = MAML(network, MAMLConfig(inner_steps=3), strip).fit(support, labels).predict_proba(support)
    after = MAML(checkpoint.network, MAMLConfig(**config["maml"]), restored).fit(support, labels).predict_proba(support)
    assert torch.allclose(before, after, atol=1e-6)


def test_checkpoint_holds_no_pickle(tmp_path):
    folder, _, _ = saved_maml(tmp_path)
    header_size = int.from_bytes((folder / MODEL_FILE).read_bytes()[:8], "little")
    header = json.loads((folder / MODEL_FILE).read_bytes()[8 : 8 + header_size])  # safetensors layout
    assert "network.up" in header


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "protonet"}, "is a 'maml' checkpoint"),
        ({"backbone_id": "pixels28"}, "use --backbone efficientnet_lite0"),
        ({"feature_dim": 2048}, "use the backbone it was trained on"),
    ],
)
def test_checkpoint_for_something_else_is_refused(tmp_path, kwargs, message):
    folder, _, _ = saved_maml(tmp_path)
    with pytest.raises(ValueError, match=message):
        load_checkpoint(folder, **kwargs)


def test_other_architecture_is_refused(tmp_path):
    folder, _, _ = saved_maml(tmp_path)
    rewrite_config(folder, architecture={"kind": "projection", "feature_dim": 16, "rank": 8, "init_scale": 10.0})
    with pytest.raises(ValueError, match="wrong shape"):
        load_checkpoint(folder)
    rewrite_config(folder, architecture={"kind": "conv4", "in_channels": 1, "hidden": 8, "image_size": 28})
    with pytest.raises(ValueError, match="does not fit the conv4 architecture"):
        load_checkpoint(folder)
    rewrite_config(folder, architecture={"kind": "transformer"})
    with pytest.raises(ValueError, match="unknown network kind"):
        load_checkpoint(folder)


def test_tampered_model_file_is_refused(tmp_path):
    folder, _, _ = saved_maml(tmp_path)
    data = bytearray((folder / MODEL_FILE).read_bytes())
    data[-3] ^= 0xFF
    time.sleep(0.01)
    (folder / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="modified or corrupted"):
        load_checkpoint(folder)


def test_pickle_in_place_of_safetensors_is_refused(tmp_path):
    folder, network, _ = saved_maml(tmp_path)
    torch.save(network.state_dict(), folder / MODEL_FILE)  # a pickle, even with a matching hash
    rewrite_config(folder, model_sha256=_sha256(folder / MODEL_FILE))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_checkpoint(folder)


def test_missing_tensors_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    folder, _, _ = saved_maml(tmp_path)
    tensors = load_file(str(folder / MODEL_FILE))
    del tensors["inner_lr.head.weight"]
    save_file(tensors, str(folder / MODEL_FILE))
    rewrite_config(folder, model_sha256=_sha256(folder / MODEL_FILE))
    with pytest.raises(ValueError, match="missing: \\['inner_lr.head.weight'\\]"):
        load_checkpoint(folder)


def test_missing_or_broken_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="is not a checkpoint"):
        load_checkpoint(tmp_path)
    folder, _, _ = saved_maml(tmp_path)
    (folder / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_checkpoint(folder)


def test_conv4_round_trip(tmp_path):
    torch.manual_seed(1)
    network = Conv4(hidden=8)
    folder = save_checkpoint(tmp_path / "p", "protonet", network, "pixels28")
    checkpoint = load_checkpoint(folder, method="protonet", backbone_id="pixels28", feature_dim=784)
    images = torch.randn(3, 1, 28, 28)
    assert torch.allclose(checkpoint.network(images), network.eval()(images), atol=1e-6)


def test_hub_pull_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE is set.*shipped checkpoints work offline"):
        pull_from_hub("someone/maml-pixels28")
    assert time.perf_counter() - start < 1.0
