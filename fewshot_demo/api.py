"""The package's public API: fit a few-shot classifier on images or texts in one call.

    import fewshot_demo as fsd

    classifier = fsd.fit({"cat": ["cat1.jpg", "cat2.jpg"], "dog": ["dog1.jpg", "dog2.jpg"]})
    classifier = fsd.fit("support/")                     # one sub-folder of images per class
    classifier = fsd.fit("support.csv", method="finetune")  # a text,label table (CSV, TSV or JSONL)
    classifier = fsd.fit("demo-project.zip")           # a project saved in the app: its classes, method, options
    prediction = classifier.predict(["query.jpg"])[0]
    prediction.label, prediction.probabilities, prediction.nearest
    classifier.self_check().accuracy                     # leave-one-out on the support set
    classifier.suggestions(["q1.jpg", "q2.jpg"]).queries[0]  # what to add next: the query worth labelling first
    classifier.save("pets.safetensors")
    classifier = fsd.load("pets.safetensors")
    fsd.evaluate("photos/", methods=["protonet", "linear"], n_shots=(1, 5))  # accuracy ± 95% CI on episodes

Images are file paths or PIL images, texts are strings; the modality is read from the items. Every
method of the registry (``fsd.methods_for("image")``) works here with its options as keywords.
Reading the items is the modality's reader (``core.support``); embedding, fitting and classifying
are one path for both (``FewShotClassifier.fit`` and ``classify``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from fewshot_demo.bench.benchmark import run_benchmark
from fewshot_demo.bench.pools import embed_pool
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core.classifier import FewShotClassifier, Prediction, SelfCheck
from fewshot_demo.core.evaluation import EvaluationSummary
from fewshot_demo.core.project import is_zip, open_upload
from fewshot_demo.core.readers import reader_for
from fewshot_demo.core.suggestions import Suggestions
from fewshot_demo.data.image_folder import IMAGE_SUFFIXES, list_image_folder
from fewshot_demo.data.labelled import LoadedData, read_image_folder, read_text_file
from fewshot_demo.data.texts import TEXT_FILE_EXTENSIONS, read_text_table
from fewshot_demo.encoders.registry import (
    default_encoder,
    default_method,
    get_encoder,
    modality_of,
)
from fewshot_demo.runtime.device import pick_device


@dataclass
class Classifier:
    """A fitted few-shot classifier together with the backbone or encoder that reads its inputs.

    Attributes:
        fitted: the ``FewShotClassifier`` (class names, learner, support features).
        modality: "image" or "text".
        notes: what the input checks said without stopping the fit (skipped files, long texts).
        support_items: one name per support item, in support order ("class/file name" for an
            image, the text itself for a text): ``Prediction.nearest`` indexes into it. Empty for
            a classifier read by ``load`` (the file keeps features, not items).
    """

    fitted: FewShotClassifier
    modality: str
    notes: list[str]
    support_items: list[str] = field(default_factory=list)

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
        return self.predict_with_notes(queries)[0]

    def predict_with_notes(self, queries: Sequence[Any]) -> tuple[list[Prediction], list[str]]:
        """As ``predict``, with the notes on what reading the queries skipped or cut."""
        queries = list(queries)
        if not queries:
            raise UserInputError("give at least one query")
        encoder = get_encoder(self.fitted.encoder_id)
        items, notes = reader_for(self.modality).queries(queries, encoder)
        return self.fitted.classify(encoder, items), notes

    def predict_and_suggest(self, queries: Sequence[Any],
                            n_queries: int = 5) -> tuple[list[Prediction], Suggestions, list[str]]:
        """As ``predict_with_notes``, with ``suggestions`` on these queries from the same forward pass."""
        queries = list(queries)
        if not queries:
            raise UserInputError("give at least one query")
        encoder = get_encoder(self.fitted.encoder_id)
        items, notes = reader_for(self.modality).queries(queries, encoder)
        predictions, features, inputs = self.fitted.classify_with_features(encoder, items)
        return predictions, self.fitted.suggestions(features, inputs, n_queries=n_queries), notes

    def suggestions(self, queries: Sequence[Any] = (), n_queries: int = 5) -> Suggestions:
        """What to add next: the confused pairs with the examples that cause them, the classes with too
        few or too spread-out examples, and (given unlabelled ``queries``) those that would help most
        if labelled, best first (``Suggestions.queries[i].index`` is a position in ``queries``).
        ``to_dict()`` gives it as JSON."""
        if not list(queries):
            return self.fitted.suggestions()
        return self.predict_and_suggest(queries, n_queries)[1]

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
    *,
    modality: str | None = None,
    **options: Any,
) -> Classifier:
    """Fit a few-shot classifier.

    Args:
        support: {class name: items}, where items are image paths / PIL images or strings; or a
            folder with one sub-folder of images per class; or a CSV/TSV/JSONL file with ``text``
            and ``label`` columns; or a project file (.zip, the app's Save project), whose method,
            options and encoder apply unless given here (a zip of class folders works too).
        method: a registry key (default: ``default_method`` of the modality: ProtoNet for images,
            the linear probe for text).
        encoder: image backbone or text encoder id (default: ``default_encoder`` of the modality:
            the bundled EfficientNet-Lite0, or the bundled MiniLM with its last + middle layer).
        modality: "image" or "text": what the items of a {class name: items} mapping are. By
            default it is read from them (strings are texts unless every one names an image file);
            a server that takes texts from strangers says "text", so no text is read as a path.
        options: the method's options (e.g. ``inner_steps=10`` for MAML), checked against bounds.

    Raises:
        UserInputError: bad input, with what to do; ``MethodNotApplicableError`` when the method
            cannot run on the encoder.
    """
    if is_zip(support):
        return _fit_project(Path(support), method, encoder, modality, options)
    reader = reader_for(modality) if modality is not None else None
    classes, found = _read_support(support)
    reader = reader or reader_for(found)
    chosen = get_encoder(encoder or default_encoder(reader.modality))
    if chosen.modality != reader.modality:
        raise UserInputError(f"{chosen.id!r} reads {chosen.modality}s, but the support set holds {reader.modality}s; "
                             f"use a {reader.modality} encoder such as {default_encoder(reader.modality)!r}")
    read = reader.support(classes, chosen)
    fitted = FewShotClassifier.fit(chosen, read.class_names, read.items, read.labels,
                                   method or default_method(reader.modality), options)
    return Classifier(fitted, reader.modality, read.notes, read.captions)


def _fit_project(path: Path, method: str | None, encoder: str | None, modality: str | None,
                 options: dict[str, Any]) -> Classifier:
    """Fit on a project file: its method's options apply unless another method is named; ``options`` win."""
    with open_upload(path) as project:
        if modality is not None and modality != project.modality:
            raise UserInputError(f"{path.name} holds {project.modality}s, not {modality}s")
        kept = project.options if method in (None, project.method) else {}
        classifier = fit(dict(project.classes), method or project.method, encoder or project.encoder_id,
                         modality=project.modality, **(kept | options))
    classifier.notes[:0] = list(project.notes)
    return classifier


def load(path: str | Path) -> Classifier:
    """Read a classifier written by ``Classifier.save`` (or saved from the app), validated."""
    fitted = FewShotClassifier.load(path)
    return Classifier(fitted, modality_of(fitted.encoder_id) or "image", [])


def evaluate(
    data: str | Path,
    methods: Sequence[str] = ("protonet", "linear"),
    n_way: int = 5,
    n_shots: Sequence[int] = (1, 5),
    n_query: int = 15,
    episodes: int = 100,
    seed: int = 0,
    encoder: str | None = None,
) -> list[EvaluationSummary]:
    """Evaluate methods on the same sampled episodes of your data, as ``python -m fewshot_demo.bench``.

    Args:
        data: a folder with one sub-folder of images per class, or a text,label CSV/TSV/JSONL file.
        methods: registry keys; every method sees the same episodes and every item is embedded once.
        n_way, n_shots, n_query, episodes, seed: the episodes (one set per value of ``n_shots``).
        encoder: image backbone or text encoder id (default: the modality's default).

    Returns:
        One ``EvaluationSummary`` per method and shot: accuracy, ci95, ms_per_episode, peak_mb.
    """
    labelled = _read_labelled(Path(data))
    device = pick_device(None)
    pool = embed_pool(labelled, encoder or default_encoder(labelled.modality), device)
    summaries, _ = run_benchmark(pool, list(methods), n_way, list(n_shots), n_query, episodes, seed, device,
                                 progress=False)
    return summaries


def _read_labelled(path: Path) -> LoadedData:
    """Every item of an image folder or a text table, for episodes."""
    if path.is_dir():
        return read_image_folder(path)
    if _is_text_table(path):
        return read_text_file(path)
    raise UserInputError(f"{path} is neither a folder of class sub-folders nor a .csv/.tsv/.jsonl file")


def _is_text_table(path: Path) -> bool:
    return path.suffix.lower() in TEXT_FILE_EXTENSIONS and path.is_file()


def _grouped(items: Sequence[Any], labels: Sequence[str]) -> dict[str, list[Any]]:
    classes: dict[str, list[Any]] = {}
    for item, label in zip(items, labels):
        classes.setdefault(label, []).append(item)
    return classes


def _read_support(support: str | Path | Mapping[str, Sequence[Any]]) -> tuple[dict[str, list[Any]], str]:
    """{class name: items} and the modality, from a mapping, an image folder or a text table."""
    if isinstance(support, (str, Path)):
        path = Path(support)
        if path.is_dir():
            listing = list_image_folder(path)
            return _grouped(listing.paths, listing.labels), "image"
        if _is_text_table(path):
            table = read_text_table(path)
            return _grouped(table.texts, table.labels), "text"
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
    return Path(item).suffix.lower() in IMAGE_SUFFIXES and Path(item).is_file()
