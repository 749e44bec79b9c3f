"""From uploaded files to a fitted image classifier: the image tab's logic, without any UI.

Everything a user can get wrong is checked here and reported as a ValueError (or collected as a
warning when the rest of the input is still usable), so the UI only has to display messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.limits import Limits
from fewshot_demo.config.settings import limits
from fewshot_demo.core.classifier import (
    FewShotClassifier,
    Prediction,
    check_class_names,
)
from fewshot_demo.data.images import ImageSource, load_image
from fewshot_demo.encoders.image import ImageBackbone
from fewshot_demo.methods import get_method

#: The defaults; the limits in force are ``limits().max_images_per_class`` and ``.max_query_images``.
MAX_IMAGES_PER_CLASS = Limits.max_images_per_class
MAX_QUERY_IMAGES = Limits.max_query_images


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
    backbone: ImageBackbone,
    method: str,
    learner_options: dict | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> FewShotClassifier:
    """Embed the support images (cached by content) and fit the named method on them.

    A method that consumes another input kind than features (``finetune`` reads the activations
    entering the backbone's last stage) gets them from ``backbone.prepare``.
    """
    features = backbone.embed(support.images)  # (n_support, d)
    kind = get_method(method).input_kind("image")
    inputs = None if kind == "features" else backbone.prepare(kind, support.images)
    return FewShotClassifier(
        method, support.class_names, features, support.labels, backbone.id, learner_options=learner_options,
        support_inputs=inputs, progress=progress,
    )


def classify_images(
    classifier: FewShotClassifier, backbone: ImageBackbone, images: Sequence[Image.Image]
) -> list[Prediction]:
    """Embed query images (one forward pass each, batched) and classify them."""
    if classifier.encoder_id != backbone.id:
        raise UserInputError(
            f"this classifier was fitted on {classifier.encoder_id!r} features but {backbone.id!r} is selected; "
            "fit again or select the matching backbone"
        )
    images = list(images)
    inputs = None if classifier.consumes_features else backbone.prepare(classifier.input_kind, images)
    return classifier.predict(backbone.embed(images), query_inputs=inputs)
