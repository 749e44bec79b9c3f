"""The panels' handlers: the self-check and 2-D map, save, load, the ONNX export, the Hub."""

from __future__ import annotations

import html
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import torch

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core.classifier import FewShotClassifier
from fewshot_demo.core.sharing import push_to_hub
from fewshot_demo.ui.cards import confusion_table, self_check_markdown
from fewshot_demo.ui.figures import embedding_map_figure
from fewshot_demo.ui.support.modality import SupportModality, SupportSession
from fewshot_demo.ui.support.rows import fill_rows
from fewshot_demo.ui.temp_files import TEMP_PREFIX
from fewshot_demo.ui.values import file_paths

#: Support items an ONNX export is checked on (with onnxruntime, against the app's probabilities).
ONNX_CHECK_ITEMS = 8


def self_check(session: SupportSession | None, selected_encoder: str | None = None) -> tuple[str, dict, Any]:
    """Leave-one-out on the support set, its confusion table and the 2-D map with the last queries.

    Args:
        session: the tab's session.
        selected_encoder: unused; the text tab's API has always sent the selected encoder.

    Returns:
        (Markdown reading, {"headers", "data"} confusion table, matplotlib figure).
    """
    if session is None:
        raise UserInputError("classify once first (or load an example), then run the self-check")
    classifier = session.classifier
    check = classifier.self_check()
    text = self_check_markdown(check, classifier.class_names)
    if classifier.self_check_method != classifier.method:
        text = (
            f"_Checked with the `{classifier.self_check_method}` head on the frozen "
            f"{session.modality.features_noun}: "
            f"refitting `{classifier.method}` once per example would take minutes._\n\n" + text
        )
    figure = embedding_map_figure(
        classifier.embedding_map(session.query_features), classifier.support_labels.tolist(),
        classifier.class_names, list(session.query_labels),
    )
    headers = ["true \\ predicted", *classifier.class_names]
    return text, {"headers": headers, "data": confusion_table(check, classifier.class_names)}, figure


def save_classifier(session: SupportSession | None) -> str:
    """Write the fitted classifier to a new temporary .safetensors file; return its path."""
    if session is None:
        raise UserInputError("fit a classifier first (press Classify), then save it")
    folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    return str(session.classifier.save(folder / f"fewshot-{session.modality.name}-classifier.safetensors"))


def save_snippet(session: SupportSession | None, saved: Any) -> list[Any]:
    """After a save: [Python that uses the saved file, the fit the panel now shows]."""
    path = next(iter(file_paths(saved)), None)
    if session is None or path is None:
        return [gr.skip(), gr.skip()]
    code = session.modality.saved_snippet(Path(path).name, session.classifier)
    return [gr.Code(value=code, visible=True), session.fitted_at]


def export_onnx(session: SupportSession | None) -> list[Any]:
    """/{modality}_export_onnx: [the export, what was checked, Python that runs it, the fit shown].

    An image classifier is one .onnx file; a text classifier a .zip of its .onnx file and tokenizer.
    The export is checked with onnxruntime on up to ``ONNX_CHECK_ITEMS`` of the support items: its
    probabilities are compared with the app's.

    Raises:
        UserInputError: nothing fitted, or a learner that cannot be exported (transductive; a fine-tuned
            text encoder), saying why.
    """
    if session is None:
        raise UserInputError("fit a classifier first (press Classify), then export it")
    classifier, modality = session.classifier, session.modality
    encoder = modality.load_encoder(classifier.encoder_id)
    folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + "onnx-"))
    items = list(session.data.items[:ONNX_CHECK_ITEMS]) if session.data is not None else []
    exported, shape, items = modality.export_onnx(classifier, encoder, folder, items)
    message = (f"**Exported** {classifier.spec.label} on `{classifier.encoder_id}` ({classifier.n_way} classes) "
               f"to ONNX in {exported.seconds:.1f} s: {shape}.")
    if items:
        try:
            got = modality.onnx_probabilities(exported, encoder, items)
        except ImportError:
            message += " (Install onnxruntime to check it.)"
        else:
            difference = float((got - _app_probabilities(classifier, encoder, items)).abs().max())
            message += (f" Checked with onnxruntime on {len(items)} of your examples: the largest difference from the "
                        f"app's probabilities is {difference:.1e}.")
    return [str(exported.path), message, gr.Code(value=exported.snippet(), visible=True), session.fitted_at]


def _app_probabilities(classifier: FewShotClassifier, encoder: Any, items: list[Any]) -> torch.Tensor:
    """(n_items, n_way) the app's probabilities for ``items``, classes in the classifier's order."""
    features = encoder.embed(items)
    inputs = None if classifier.consumes_features else encoder.prepare(classifier.input_kind, items)
    predictions = classifier.predict(features, query_inputs=inputs)
    return torch.tensor([[p.probabilities[name] for name in classifier.class_names] for p in predictions])


def push_classifier(session: SupportSession | None, repo_id: str, token: str | None) -> str:
    """/{modality}_push: save the classifier and upload it to a Hub model repository; the status line.

    Raises:
        UserInputError: nothing fitted, a malformed repository id, offline (at once), or the Hub refusing.
    """
    if session is None:
        raise UserInputError("fit a classifier first (press Classify), then push it")
    repo_id = (repo_id or "").strip()
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UserInputError(f"name the repository as user/name (got {repo_id!r})")
    url = push_to_hub(save_classifier(session), repo_id, token)
    return f"**Pushed** to [{html.escape(repo_id)}]({url}). Load it with `fsd.load` after downloading it."


def load_classifier(modality: SupportModality, value: Any, encoder_id: str) -> list[Any]:
    """Load a saved classifier: [session, message, *fill_rows] (class names, no items).

    A cleared file input leaves everything as it is.
    """
    path = next(iter(file_paths(value)), None)
    if path is None:
        return [gr.skip()] * (2 + len(fill_rows(modality, [])))
    classifier = FewShotClassifier.load(path, expected_encoder_id=encoder_id)
    captions = tuple(f"{classifier.class_names[int(label)]} (saved example {i + 1})"
                     for i, label in enumerate(classifier.support_labels))
    session = SupportSession(modality, classifier, captions)
    message = (
        f"Loaded a `{classifier.method}` classifier on `{classifier.encoder_id}` with {classifier.n_way} classes: "
        + ", ".join(html.escape(n, quote=False) for n in classifier.class_names)
        + f". Add {modality.query_noun} and press Classify."
    )
    return [session, message, *fill_rows(modality, [(name, modality.empty_item) for name in classifier.class_names])]
