"""Settings: read from the environment once, with documented defaults, and re-read on request."""

from __future__ import annotations

from pathlib import Path

import pytest

from fewshot_demo.bench import builtin_pools
from fewshot_demo.config.settings import Settings, settings
from fewshot_demo.methods import checkpoint_index as checkpoints
from fewshot_demo.runtime import device


def test_defaults_when_the_environment_says_nothing(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    found = Settings.from_environment({"FEWSHOT_DEVICE": "", "FEWSHOT_TORCH_THREADS": " "})
    assert found.device is None and found.torch_threads == 1
    assert found.checkpoints_dir == Path("/home/someone/.cache/fewshot_demo/checkpoints")
    assert found.feature_cache_dir == Path("/home/someone/.cache/fewshot_demo/features")
    assert found.tuxpaint_stamps_dir == Path("/usr/share/tuxpaint/stamps")
    assert found.fashion_mnist_dir == Path("/usr/share/datasets/fashion-mnist")


def test_each_variable_sets_its_field():
    found = Settings.from_environment({
        "FEWSHOT_DEVICE": "cpu", "FEWSHOT_TORCH_THREADS": "3", "FEWSHOT_CHECKPOINTS": "/c",
        "FEWSHOT_FEATURE_CACHE": "/f", "TUXPAINT_STAMPS_DIR": "/t", "FASHION_MNIST_DIR": "/m",
    })
    assert found == Settings("cpu", 3, Path("/c"), Path("/f"), Path("/t"), Path("/m"))
    with pytest.raises(ValueError, match="FEWSHOT_TORCH_THREADS must be a whole number"):
        Settings.from_environment({"FEWSHOT_TORCH_THREADS": "two"})


def test_the_environment_is_read_once_until_the_cache_is_cleared(monkeypatch, tmp_path):
    monkeypatch.setenv("FEWSHOT_FEATURE_CACHE", str(tmp_path / "first"))
    settings.cache_clear()
    assert builtin_pools.feature_cache_dir() == tmp_path / "first"
    monkeypatch.setenv("FEWSHOT_FEATURE_CACHE", str(tmp_path / "second"))
    assert settings() is settings() and builtin_pools.feature_cache_dir() == tmp_path / "first"  # read once
    settings.cache_clear()
    assert builtin_pools.feature_cache_dir() == tmp_path / "second"


def test_readers_take_the_overridden_values(monkeypatch, tmp_path):
    monkeypatch.setenv("FEWSHOT_CHECKPOINTS", str(tmp_path / "mine"))
    monkeypatch.setenv("FEWSHOT_DEVICE", "cpu")
    settings.cache_clear()
    assert checkpoints.user_dir() == tmp_path / "mine"
    assert device.pick_device(None).type == "cpu"
    assert checkpoints.find_checkpoint("maml", "pixels28") == checkpoints.SHIPPED_DIR / "maml-pixels28"
