"""The one contract every backbone and text encoder follows, whatever its modality.

    encoder = get_encoder("efficientnet_lite0")      # or "minilm:layers", "pixels28", ...
    features = encoder.embed(items)                  # (n_items, feature_dim): what learners and explanations read
    inputs = encoder.prepare(kind, items)            # what a learner of another input kind consumes

Items are RGB PIL images for an image backbone and strings for a text encoder. ``prepare("features",
items)`` equals ``embed(items)``; the other kinds (``input_kinds``) are what some learners consume
instead: the activations entering a backbone's last stage, the preprocessed pixels, token ids.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

from torch import Tensor


@runtime_checkable
class Encoder(Protocol):
    """A frozen feature extractor.

    Attributes:
        id: the registry id stored with saved classifiers (a text encoder's carries its pooling).
        modality: "image" or "text".
        feature_dim: size of one feature vector (for ``pixels28``, 28 * 28: its features are pixels).
        input_kinds: the kinds ``prepare`` makes, "features" first.
        role: what results call it, "backbone" (images) or "encoder" (texts): the bench's JSON
            names the id under this key.
    """

    modality: str
    feature_dim: int
    role: str

    @property
    def id(self) -> str: ...

    @property
    def input_kinds(self) -> tuple[str, ...]: ...

    def embed(self, items: Sequence[Any]) -> Tensor:
        """(n_items, feature_dim) float32 features on the CPU, cached by content."""

    def prepare(self, kind: str, items: Sequence[Any]) -> Tensor:
        """What a learner of ``input_kind == kind`` consumes, for these items."""

    def can_split(self, kind: str) -> bool:
        """True when ``prepare(kind, ...)`` over parts of the items, concatenated, equals it over all
        of them: a long embedding or preparation may then run in chunks and hear a Stop between them."""

    def reading_note(self, items: Sequence[Any]) -> str | None:
        """A sentence for the user on how these items are read (long texts in windows), or None."""
