"""Transfer vs meta-learning vs self-supervised pretraining on identical episodes: what to compare
and on which data (the run is ``fewshot_demo.bench.compare_run``; no UI here).

    data = ComparisonData.from_builtin("tuxpaint")
    config = ComparisonConfig(methods=("linear", "protonet"), n_shots=(1, 5))
    for update in run_comparison(data, config):
        print(update.message)            # partial results stream in as each method finishes
    print(reading(update.summaries(), update.results))

Every item is embedded once per encoder (``ComparisonData.pool``) and reused by all methods and shots.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Callable

import torch
from PIL import Image

from fewshot_demo.bench.builtin_pools import builtin_pool
from fewshot_demo.bench.pools import CachedInputs, EmbeddedPool, embed_pool
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core.class_names import check_distinct
from fewshot_demo.data.builtin import get_dataset, load_dataset
from fewshot_demo.data.labelled import LoadedData
from fewshot_demo.data.packed import PackedImages
from fewshot_demo.encoders.backbones import BUNDLED_BACKBONE
from fewshot_demo.encoders.text import BUNDLED_ENCODER
from fewshot_demo.methods import available_methods, get_method, methods_for
from fewshot_demo.runtime.device import pick_device

DEFAULT_METHODS = ("linear", "baselinepp", "protonet", "maml")
MAX_EPISODES = 2000


#: The families the comparison puts side by side, in the order the report and the tab list them.
COMPARED_FAMILIES = ("transfer", "meta", "self-supervised")
#: The families that run on a data set's ``meta_encoder`` when it has one: the methods trained on
#: the project's base classes (meta-learned, self-supervised) and their no-training controls.
META_ENCODER_FAMILIES = ("meta", "self-supervised", "baseline")


def compared_methods() -> tuple[str, ...]:
    """The methods the comparison puts side by side by default: every inductive transfer, meta and
    self-supervised method of the registry, in that order of families."""
    specs = methods_for(families=COMPARED_FAMILIES, transductive=False)
    return tuple(s.key for s in sorted(specs, key=lambda s: COMPARED_FAMILIES.index(s.family)))


def method_label(method: str) -> str:
    """The display name of a method (its registry label)."""
    return get_method(method).label


def method_family(method: str, encoder_id: str | None = None) -> str:
    """"transfer", "meta", "self-supervised" or "baseline"; on an encoder, ProtoNet without a
    checkpoint is transfer (prototypes on the frozen pretrained features, i.e. SimpleShot)."""
    spec = get_method(method)
    return spec.family_for(encoder_id) if encoder_id is not None else spec.family


@dataclass(frozen=True)
class ComparisonConfig:
    """What to compare.

    Attributes:
        n_way: classes per episode.
        n_shots: support items per class; one set of episodes per value.
        n_query: query items per class, or None to choose: up to 15, as many as keep every class
            in play (at least 5), else as many as keep n_way classes.
        n_episodes: episodes per shot (the same ones for every method).
        methods: registered method names.
        seed: seed of the episode sampler.
        measure_memory: record the peak memory of each method (see ``PeakMemory``).
    """

    n_way: int = 5
    n_shots: tuple[int, ...] = (5,)
    n_query: int | None = None
    n_episodes: int = 100
    methods: tuple[str, ...] = DEFAULT_METHODS
    seed: int = 0
    measure_memory: bool = True

    def __post_init__(self) -> None:
        if self.n_way < 2:
            raise UserInputError(f"n_way must be at least 2, got {self.n_way}")
        if not self.n_shots or min(self.n_shots) < 1:
            raise UserInputError("choose at least one K-shot value, each at least 1")
        if not 1 <= self.n_episodes <= MAX_EPISODES:
            raise UserInputError(f"the number of episodes must be between 1 and {MAX_EPISODES}, got {self.n_episodes}")
        if self.n_query is not None and self.n_query < 1:
            raise UserInputError(f"n_query must be at least 1, got {self.n_query}")
        if not self.methods:
            raise UserInputError("choose at least one method to compare")
        unknown = [m for m in self.methods if m not in available_methods()]
        if unknown:
            raise UserInputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(available_methods())}")


@dataclass
class ComparisonData:
    """One data set, as items and labels, with its pools embedded lazily (once per encoder).

    Attributes:
        name: what the data set is called in results.
        data: the items and labels.
        encoder: encoder id for transfer methods (and the others unless ``meta_encoder`` is set).
        meta_encoder: encoder id for the methods trained on the project's base classes (meta-learned,
            self-supervised, and their no-training controls), or None.
        pool_for: encoder id -> embedded pool (cached by the caller or here).
    """

    name: str
    data: LoadedData
    encoder: str
    meta_encoder: str | None = None
    device: torch.device = field(default_factory=lambda: pick_device(None))
    pool_for: Callable[[str], EmbeddedPool] | None = None
    _pools: dict[str, EmbeddedPool] = field(default_factory=dict, repr=False)

    @classmethod
    def from_builtin(cls, dataset_id: str, device: torch.device | None = None) -> "ComparisonData":
        """A built-in data set; its pools are cached across runs (see ``builtin_pool``)."""
        spec = get_dataset(dataset_id)
        device = device or pick_device(None)
        return cls(spec.id, load_dataset(dataset_id), spec.encoder, spec.meta_encoder, device,
                   lambda encoder: builtin_pool(dataset_id, encoder, device))

    @classmethod
    def from_data(cls, name: str, data: LoadedData, device: torch.device | None = None,
                  image_backbone: str = BUNDLED_BACKBONE, text_encoder: str = BUNDLED_ENCODER,
                  pack_images: bool = False) -> "ComparisonData":
        """User data (an upload, or the image/text tab's classes), on ``image_backbone`` or ``text_encoder``.

        ``pack_images``: keep the images PNG-compressed (``PackedImages``), decoded when read: for data
        this object alone holds (an upload), which a browser session keeps between runs.

        Raises:
            UserInputError: for two class names that look the same (``core.class_names.check_distinct``).
        """
        check_distinct(data.class_names)
        if pack_images and data.items and all(isinstance(item, Image.Image) for item in data.items):
            data = dataclasses.replace(data, items=PackedImages(data.items))
        encoder = {"image": image_backbone, "text": text_encoder}[data.modality]
        return cls(name, data, encoder, None, device or pick_device(None))

    @property
    def class_names(self) -> list[str]:
        return self.data.class_names

    @property
    def labels(self) -> list[int]:
        names = {name: i for i, name in enumerate(self.class_names)}
        return [names[label] for label in self.data.labels]

    def encoder_for(self, method: str) -> str:
        """The meta encoder for meta-learned and self-supervised methods and the controls, when the
        data has one (``pixels28``: their Conv-4 networks read raw pixels)."""
        uses_meta = get_method(method).family in META_ENCODER_FAMILIES
        return self.meta_encoder if self.meta_encoder and uses_meta else self.encoder

    def has_pool(self, encoder_id: str) -> bool:
        """True once the items are embedded with ``encoder_id`` for this data."""
        return encoder_id in self._pools

    def pool(self, encoder_id: str, cancel: threading.Event | None = None) -> EmbeddedPool:
        """The items embedded with ``encoder_id`` (once); raises ``Cancelled`` once ``cancel`` is set
        while user data is being embedded."""
        if encoder_id not in self._pools:
            self._pools[encoder_id] = (
                self.pool_for(encoder_id) if self.pool_for else embed_pool(self.data, encoder_id, self.device,
                                                                           cancel=cancel)
            )
        return self._pools[encoder_id]

    def release_inputs(self) -> None:
        """Keep only the features of this data's own pools, so that what a browser session keeps
        between runs stays small (the built-in data sets' pools are shared, see ``builtin_pool``)."""
        if self.pool_for is None:
            for pool in self._pools.values():
                if isinstance(pool.prepare, CachedInputs):
                    pool.prepare.release()
