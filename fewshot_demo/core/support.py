"""What differs between images and texts on the way to a classifier: reading the support set and the queries.

    reader = reader_for(modality)                  # ImageReader or TextReader
    support = reader.support(classes, encoder)     # checked, loaded, with notes
    classifier = FewShotClassifier.fit(encoder, support.class_names, support.items, support.labels, method)
    items, notes = reader.queries(queries, encoder)
    classifier.classify(encoder, items)

The readers live beside their modality (``image_task.ImageReader``, ``text_task.TextReader``);
everything after reading, fitting and classifying alike, is one path (``FewShotClassifier``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from torch import Tensor

from fewshot_demo.encoders.protocol import Encoder


@dataclass(frozen=True)
class Support:
    """A checked support set, ready to embed.

    Attributes:
        class_names: n_way class names; label i is ``class_names[i]``.
        items: RGB images or texts, in support order.
        labels: (n_support,) labels in 0..n_way-1.
        captions: one name per item ("class/file name" for an image, the text itself for a text).
        notes: what the checks said without stopping the fit (skipped files, long texts, unequal shots).
    """

    class_names: list[str]
    items: list[Any]
    labels: Tensor
    captions: list[str]
    notes: list[str] = field(default_factory=list)


class SupportReader(Protocol):
    """Reads one modality's support sets and queries (see the module docstring)."""

    modality: str

    def support(self, classes: Mapping[str, Sequence[Any]], encoder: Encoder) -> Support:
        """Check and load {class name: items}.

        Raises:
            UserInputError: fewer than 2 classes, more than the limits, empty or duplicate names,
                or a class with no usable item.
        """

    def queries(self, queries: Sequence[Any], encoder: Encoder) -> tuple[list[Any], list[str]]:
        """The query items ready to classify, and notes on what was skipped or cut.

        Raises:
            UserInputError: when no query can be used.
        """
