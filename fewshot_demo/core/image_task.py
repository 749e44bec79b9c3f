"""Reading image support sets and queries: the image side of the path to a classifier, without any UI.

Everything a user can get wrong is checked here and reported as a UserInputError (or collected as a
warning when the rest of the input is still usable), so the UI only has to display messages.
``ImageReader`` is the image modality's ``core.support.SupportReader``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from PIL import Image

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import limits
from fewshot_demo.core.class_names import check_class_names
from fewshot_demo.core.classifier import FewShotClassifier, Prediction
from fewshot_demo.core.heatmap import reads_feature_maps, support_heat, unit_prototypes, where_it_looked
from fewshot_demo.core.support import Support
from fewshot_demo.data.images import ImageSource, load_image
from fewshot_demo.encoders.protocol import Encoder
from fewshot_demo.methods import get_method


@dataclass
class ImageSupport:
    """A checked support set.

    Attributes:
        class_names: n_way class names.
        images: RGB images, in support order.
        labels: (n_support,) labels in 0..n_way-1.
        sources: a display name per image (its file name).
        warnings: problems that did not stop the fit (skipped files, unequal shots).
    """

    class_names: list[str]
    images: list[Image.Image]
    labels: torch.Tensor
    sources: list[str]
    warnings: list[str] = field(default_factory=list)


def _name_of(source: ImageSource) -> str:
    return Path(source).name if isinstance(source, (str, Path)) else "pasted image"


def load_images(sources: Sequence[ImageSource], limit: int | None, what: str) -> tuple[list[Image.Image], list[str], list[str]]:
    """Load images, skipping the ones that fail; return (images, names, warnings).

    More than ``limit`` sources (None: ``limits().max_query_images``) are refused before any is read.
    """
    limit = limits().max_query_images if limit is None else limit
    if len(sources) > limit:
        raise UserInputError(f"{what} has {len(sources)} images; at most {limit} are accepted, remove some")
    images, names, warnings = [], [], []
    for source in sources:
        try:
            images.append(load_image(source))
            names.append(_name_of(source))
        except ValueError as error:
            warnings.append(f"{what}: skipped {error}")
    return images, names, warnings


def build_support(classes: Sequence[tuple[str, Sequence[ImageSource]]]) -> ImageSupport:
    """Check and load a support set given as (class name, image files) pairs.

    Raises:
        UserInputError: fewer than 2 classes, more than the limit, empty or duplicate names, or a class
            with no usable image.
    """
    current = limits()
    class_names = check_class_names([name for name, _ in classes], current.max_classes)
    for name, (_, files) in zip(class_names, classes):  # every count before any image is read
        if len(files or []) > current.max_images_per_class:
            raise UserInputError(f"class {name!r} has {len(files)} images; at most "
                             f"{current.max_images_per_class} are accepted, remove some")
    images: list[Image.Image] = []
    labels: list[int] = []
    sources: list[str] = []
    warnings: list[str] = []
    counts = []
    for label, (name, files) in enumerate(zip(class_names, (files for _, files in classes))):
        loaded, names, skipped = load_images(list(files or []), current.max_images_per_class, f"class {name!r}")
        warnings.extend(skipped)
        if not loaded:
            # The reasons go in the error itself: it replaces whatever was shown before.
            reasons = "; ".join(warning.removeprefix(f"class {name!r}: skipped ") for warning in skipped)
            reason = f" (skipped {reasons})" if skipped else ""
            raise UserInputError(f"class {name!r} has no usable images{reason}; add at least one image to it")
        images.extend(loaded)
        labels.extend([label] * len(loaded))
        sources.extend(names)
        counts.append(len(loaded))
    if len(set(counts)) > 1:
        shots = ", ".join(f"{n}: {c}" for n, c in zip(class_names, counts))
        warnings.append(f"classes have different numbers of images ({shots}); that works, but balanced classes are fairer")
    return ImageSupport(class_names, images, torch.tensor(labels, dtype=torch.long), sources, warnings)


def fit_image_classifier(
    support: ImageSupport,
    backbone: Encoder,
    method: str,
    learner_options: dict | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> FewShotClassifier:
    """Embed the support images (cached by content) and fit the named method on them.

    Where heat maps can be drawn (``draws_heat_maps``), the support's come from the same forward passes.
    """
    if not draws_heat_maps(backbone, method):
        return FewShotClassifier.fit(backbone, support.class_names, support.images, support.labels, method,
                                     learner_options, progress)
    features, heat = support_heat(backbone, support.images, support.labels, len(support.class_names))
    # FewShotClassifier.fit for a method on the frozen features, with the features just computed
    classifier = FewShotClassifier(method, support.class_names, features, support.labels, backbone.id,
                                   learner_options=learner_options, progress=progress)
    classifier.support_heat = heat
    return classifier


def draws_heat_maps(backbone: Encoder, method: str) -> bool:
    """True when ``method`` classifies ``backbone``'s frozen features and the backbone gives feature maps:
    the heat maps then show what the decision was made on (not so for a method that fine-tunes or
    re-normalises the backbone)."""
    return reads_feature_maps(backbone) and get_method(method).input_kind(backbone.modality) == "features"


def classify_images(classifier: FewShotClassifier, backbone: Encoder, images: Sequence[Image.Image]) -> list[Prediction]:
    """Embed query images (one forward pass each, batched) and classify them.

    Where heat maps can be drawn (``draws_heat_maps``), each prediction's ``looked`` holds them, from the
    same forward passes: the query's and its nearest support pictures' for the predicted class.
    """
    if not draws_heat_maps(backbone, classifier.method) or backbone.id != classifier.encoder_id:
        return classifier.classify(backbone, images)
    features, maps = backbone.embed_with_maps(images)  # (n_query, d), (n_query, d, h, w)
    predictions = classifier.predict(features)  # what classify does for a method on the frozen features
    heat = classifier.support_heat
    prototypes = heat.prototypes if heat is not None else unit_prototypes(  # a loaded classifier: no pictures
        classifier.support_features, classifier.support_labels, classifier.n_way)
    looked = where_it_looked(maps, [image.size for image in images],
                             [classifier.class_names.index(p.label) for p in predictions], classifier.class_names,
                             prototypes, heat, [[i for i, _ in p.nearest] for p in predictions])
    for prediction, heat in zip(predictions, looked):
        prediction.looked = heat
    return predictions


class ImageReader:
    """The image modality's support reader: items are image files, PIL images or image bytes."""

    modality = "image"

    def support(self, classes: Mapping[str, Sequence[ImageSource]], encoder: Encoder) -> Support:
        loaded = build_support(list(classes.items()))
        captions = [f"{loaded.class_names[int(label)]}/{source}" for label, source in zip(loaded.labels, loaded.sources)]
        return Support(loaded.class_names, loaded.images, loaded.labels, captions, loaded.warnings)

    def queries(self, queries: Sequence[ImageSource], encoder: Encoder) -> tuple[list[Image.Image], list[str]]:
        return [load_image(query) for query in queries], []
