"""The built-in data sets' embedded pools, cached in memory per process and their features on disk.

    pool = builtin_pool("tuxpaint", "efficientnet_lite0", device)   # embedded once, then shared

A second run in the comparison tab starts at once, and a restarted app reads the features from
``feature_cache_dir()`` instead of embedding the items again; a damaged or stale cache file is
detected and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import torch

from fewshot_demo.bench.pools import EmbeddedPool, embed_pool
from fewshot_demo.config.settings import settings
from fewshot_demo.data.builtin import load_dataset
from fewshot_demo.data.labelled import LoadedData
from fewshot_demo.encoders.registry import get_encoder

logger = logging.getLogger(__name__)

#: Part of every cached feature file's name; bump it when an encoder id starts to make different
#: features, so stale files are not read (2: long texts are read in windows, not cut at 256 tokens).
FEATURE_CACHE_VERSION = 2

_POOLS: dict[tuple[str, str, str], EmbeddedPool] = {}
_LOCK = threading.Lock()


def feature_cache_dir() -> Path:
    """Where built-in features are cached on disk (``settings().feature_cache_dir``: ``FEWSHOT_FEATURE_CACHE``)."""
    return settings().feature_cache_dir


def _fingerprint(data: LoadedData) -> str:
    """A short hash of the items and labels: the cache file of other items has another name."""
    digest = hashlib.sha1()
    for item, label in zip(data.items, data.labels):
        digest.update(label.encode())
        digest.update(item.encode() if isinstance(item, str) else item.tobytes())
    return digest.hexdigest()[:16]


def builtin_pool(dataset_id: str, encoder_id: str, device: torch.device) -> EmbeddedPool:
    """The embedded pool of a built-in data set for one encoder, embedded once and cached.

    Cached in memory for the process, and its features on disk (``feature_cache_dir``), keyed by a
    hash of the items, so a restarted app does not embed them again. Other input kinds (e.g. the
    fine-tuning learner's) are computed on first use and kept in memory only.
    """
    key = (dataset_id, encoder_id, str(device))
    if key in _POOLS:
        return _POOLS[key]
    data = load_dataset(dataset_id)
    name = f"builtin-v{FEATURE_CACHE_VERSION}-{dataset_id}-{encoder_id.replace(':', '_')}-{_fingerprint(data)}.pt"
    cache = feature_cache_dir() / name
    features = cached_features(cache, data, encoder_id, device)
    if features is not None:
        pool = embed_pool(data, encoder_id, device, features=features)
    else:
        pool = embed_pool(data, encoder_id, device)
        _write_features(cache, pool.prepare("features").cpu())
    with _LOCK:
        _POOLS.setdefault(key, pool)
    return _POOLS[key]


def cached_features(cache: Path, data: LoadedData, encoder_id: str, device: torch.device) -> torch.Tensor | None:
    """The features cached in ``cache`` when they can be trusted, else None (and the file is rebuilt).

    A file that does not load (truncated, corrupted, not a tensor), has the wrong shape or
    non-finite values, or whose first item does not match a fresh embedding of that item (another
    encoder's features under the same name), is logged and ignored.
    """
    if not cache.is_file():
        return None
    try:
        features = torch.load(cache, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a damaged file fails in many ways; it is rebuilt
        logger.warning("feature cache %s does not load (%s); embedding again", cache.name, type(error).__name__)
        return None
    probe = get_encoder(encoder_id, device).embed(data.items[:1])
    if (not isinstance(features, torch.Tensor) or not features.is_floating_point()
            or tuple(features.shape) != (len(data.items), *probe.shape[1:]) or not torch.isfinite(features).all()
            or not torch.allclose(features[:1].float(), probe.float().cpu(), rtol=1e-3, atol=1e-3)):
        logger.warning("feature cache %s does not match %s on %s; embedding again", cache.name, encoder_id, data.modality)
        return None
    return features


def _write_features(cache: Path, features: torch.Tensor) -> None:
    """Write the features next to the cache file, then move them in place (a reader never sees half a file)."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.name}.{threading.get_ident()}.partial")
        torch.save(features, partial)
        partial.replace(cache)
    except OSError:
        pass  # a read-only home: the in-memory cache still works
