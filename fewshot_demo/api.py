"""The package's public API: fit a few-shot classifier on images or texts in one call.

    import fewshot_demo as fsd

    classifier = fsd.fit({"cat": ["cat1.jpg", "cat2.jpg"], "dog": ["dog1.jpg", "dog2.jpg"]})
    classifier = fsd.fit("support/")                     # one sub-folder of images per class
    classifier = fsd.fit("support.csv", method="finetune")  # a text,label table (CSV, TSV or JSONL)
    prediction = classifier.predict(["query.jpg"])[0]
    prediction.label, prediction.probabilities, prediction.nearest
    classifier.self_check().accuracy                     # leave-one-out on the support set
    classifier.save("pets.safetensors")
    classifier = fsd.load("pets.safetensors")

Images are file paths or PIL images, texts are strings; the modality is read from the items. Every
method of the registry (``fsd.methods_for("image")``) works here with its options as keywords.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from fewshot_demo.classifier import FewShotClassifier, Prediction, SelfCheck
from fewshot_demo.errors import UserInputError

TEXT_TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl")
DEFAULT_TEXT_ENCODER = "minilm:layers"
DEFAULT_METHOD = {"image": "protonet", "text": "linear"}


@dataclass
class Classifier:
    """A fitted few-shot classifier together with the backbone or encoder that reads its inputs.

    Attributes:
        fitted: the ``FewShotClassifier`` (class names, learner, support features).
        modality: "image" or "text".
        notes: what the input checks said without stopping the fit (skipped files, long texts).
    """

    fitted: FewShotClassifier
    modality: str
    notes: list[str]

    @property
    def class_names(self) -> list[str]:
        return self.fitted.class_names

    @property
    def method(self) -> str:
        return self.fitted.method

    def predict(self, queries: Sequence[Any]) -> list[Prediction]:
        """Classify image paths / PIL images (image classifier) or strings (text classifier).

        Returns one ``Prediction`` per query: label, probabilities by class, prototype distances
        and the most similar support items (indices into the support set, with similarity).

        Raises:
            UserInputError: no query, or a query that cannot be read.
        """
        queries = list(queries)
        if not queries:
            raise UserInputError("give at least one query")
        if self.modality == "image":
            from fewshot_demo.image_task import classify_images
            from fewshot_demo.images import load_image

            return classify_images(self.fitted, _backbone(self.fitted.encoder_id), [load_image(q) for q in queries])
        from fewshot_demo.text.encoders import load_encoder
        from fewshot_demo.text.task import classify_texts

        predictions, _ = classify_texts(self.fitted, load_encoder(self.fitted.encoder_id), [str(q) for q in queries])
        return predictions

    def self_check(self) -> SelfCheck:
        """Leave-one-out accuracy, per-class accuracy and confusions on the support set alone."""
        return self.fitted.self_check()

    def save(self, path: str | Path) -> Path:
        """Write one .safetensors file (no pickle) that ``load`` reads back."""
        return self.fitted.save(path)


def fit(
    support: str | Path | Mapping[str, Sequence[Any]],
    method: str | None = None,
    encoder: str | None = None,
    **options: Any,
) -> Classifier:
    """Fit a few-shot classifier.

    Args:
        support: {class name: items}, where items are image paths / PIL images or strings; or a
            folder with one sub-folder of images per class; or a CSV/TSV/JSONL file with ``text``
            and ``label`` columns.
        method: a registry key (default: ProtoNet for images, the linear probe for text).
        encoder: image backbone or text encoder id (default: the bundled EfficientNet-Lite0, or
            the bundled MiniLM with its last + middle layer).
        options: the method's options (e.g. ``inner_steps=10`` for MAML), checked against bounds.

    Raises:
        UserInputError: bad input, with what to do; ``MethodNotApplicableError`` when the method
            cannot run on the encoder.
    """
    classes, modality = _read_support(support)
    method = method or DEFAULT_METHOD[modality]
    if modality == "image":
        from fewshot_demo.backbones import DEFAULT_BACKBONE
        from fewshot_demo.image_task import build_support, fit_image_classifier

        image_support = build_support(list(classes.items()))
        fitted = fit_image_classifier(image_support, _backbone(encoder or DEFAULT_BACKBONE), method, options)
        return Classifier(fitted, "image", image_support.warnings)
    from fewshot_demo.text.data import clean_pairs
    from fewshot_demo.text.encoders import load_encoder
    from fewshot_demo.text.task import fit_text_classifier

    table = clean_pairs(((str(text), name) for name, texts in classes.items() for text in texts), where="example")
    fitted, notes = fit_text_classifier(table, load_encoder(encoder or DEFAULT_TEXT_ENCODER), method, options)
    return Classifier(fitted, "text", list(table.notes) + notes)


def load(path: str | Path) -> Classifier:
    """Read a classifier written by ``Classifier.save`` (or saved from the app), validated."""
    from fewshot_demo.methods import modality_of

    fitted = FewShotClassifier.load(path)
    return Classifier(fitted, modality_of(fitted.encoder_id) or "image", [])


def _backbone(backbone_id: str):
    from fewshot_demo.backbones import load_backbone

    return load_backbone(backbone_id)


def _read_support(support: str | Path | Mapping[str, Sequence[Any]]) -> tuple[dict[str, list[Any]], str]:
    """{class name: items} and the modality, from a mapping, an image folder or a text table."""
    if isinstance(support, (str, Path)):
        path = Path(support)
        if path.is_dir():
            from fewshot_demo.data.image_folder import list_image_folder

            listing = list_image_folder(path)
            classes: dict[str, list[Any]] = {}
            for file, label in zip(listing.paths, listing.labels):
                classes.setdefault(label, []).append(file)
            return classes, "image"
        if path.suffix.lower() in TEXT_TABLE_SUFFIXES and path.is_file():
            from fewshot_demo.text.data import read_text_table

            table = read_text_table(path)
            classes = {}
            for text, label in zip(table.texts, table.labels):
                classes.setdefault(label, []).append(text)
            return classes, "text"
        raise UserInputError(
            f"{path} is neither a folder of class sub-folders nor a .csv/.tsv/.jsonl file with text,label columns"
        )
    if not isinstance(support, Mapping) or not support:
        raise UserInputError("give the support set as {class name: [items]}, a folder, or a text,label file")
    classes = {str(name): list(items) for name, items in support.items()}
    items = [item for values in classes.values() for item in values]
    if not items:
        raise UserInputError("every class is empty; give each class at least one example")
    if all(isinstance(item, str) and not _looks_like_image_path(item) for item in items):
        return classes, "text"
    return classes, "image"


def _looks_like_image_path(item: str) -> bool:
    from fewshot_demo.data.image_folder import IMAGE_SUFFIXES

    return Path(item).suffix.lower() in IMAGE_SUFFIXES and Path(item).is_file()
