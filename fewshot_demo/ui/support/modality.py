"""What differs between the image and the text tab (``SupportModality``), and a tab's session, which
holds its modality (``SupportSession``, the value of the tab's ``gr.State``); everything else is shared.

The two implementations live in the tab modules (``ui.image_tab.ImageModality``,
``ui.text_tab.TextModality``); the shared handlers, and the comparison tab for its data, ask the
modality instead of testing its name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import gradio as gr
from torch import Tensor

from fewshot_demo.core.classifier import FewShotClassifier, Prediction
from fewshot_demo.core.export import OnnxExport
from fewshot_demo.data.labelled import LoadedData
from fewshot_demo.ui.cards import known_truths

#: A callback ``(fraction done, message)``, the core's progress convention.
ProgressFn = Callable[[float, str], None]


def no_progress(fraction: float, message: str) -> None:
    """A progress callback that shows nothing."""
    return None


@dataclass(frozen=True)
class Queries:
    """Queries read from the tab, ready to classify.

    Attributes:
        items: PIL images or texts.
        names: one display name per item.
        thumbnails: one data URI per item, or None per item (text).
        notes: what was skipped.
        hints: per item, what may name its true class (an image file's folder), or None.
    """

    items: list[Any]
    names: list[str]
    thumbnails: list[str | None]
    notes: list[str] = dataclasses.field(default_factory=list)
    hints: list[str | None] = dataclasses.field(default_factory=list)


class SupportModality(ABC):
    """What differs between the image and the text tab; the widget and the handlers are shared.

    Attributes:
        name: "image" or "text" (also the prefix of API names).
        empty_item: the value of an empty class row's items box.
        query_noun: "query images" or "query texts", for messages.
        tuned: what a fine-tune adapts ("backbone", "encoder"), for messages.
        features_noun: "features" or "embeddings", for messages.
        add_items_hint: how to fit a new classifier while a loaded one is in use.
        truth_source: where a query's true class comes from, for the reader.
    """

    name: ClassVar[str]
    empty_item: ClassVar[Any]
    query_noun: ClassVar[str]
    tuned: ClassVar[str]
    features_noun: ClassVar[str]
    add_items_hint: ClassVar[str]
    truth_source: ClassVar[str]

    # ---- the class rows ------------------------------------------------------------------------
    @abstractmethod
    def item_box(self) -> gr.Component:
        """A class row's items component, the one handlers read (created inside the caller's Row)."""

    def display_box(self) -> gr.Component | None:
        """A component that shows a row's items (the image tab's thumbnails), or None."""
        return None

    def display_values(self, items: Sequence[Any]) -> list[Any]:
        """What the rows' display components show for these items ([] without display components).

        Handlers that fill the rows return the items only (their API stays the items); the widget
        then shows them with this, in a follow-up event.
        """
        return []

    def wire_row(self, item: gr.Component, display: gr.Component | None) -> list[Any]:
        """Wire a row's own events (its count, display sync); return the triggers of a user's edit."""
        return []

    @abstractmethod
    def has_items(self, item: Any) -> bool:
        """True when a class row's items value holds something."""

    # ---- fit and classify ----------------------------------------------------------------------
    @abstractmethod
    def load_encoder(self, encoder_id: str) -> Any:
        """The backbone or encoder (cached after the first load)."""

    @abstractmethod
    def fit(self, rows: list[tuple[str, Any]], encoder: Any, method: str, options: dict[str, Any], key: str,
            progress: ProgressFn) -> SupportSession:
        """Check the class rows, fit ``method`` on them; return a fresh session (no queries yet).

        Raises:
            UserInputError: with what to fix (too few classes, a class without items, ...).
        """

    @abstractmethod
    def read_queries(self, value: Any) -> Queries:
        """Read the query input.

        Raises:
            UserInputError: when there is no usable query.
        """

    def with_truths(self, queries: Queries, class_names: Sequence[str]) -> tuple[Queries, list[str | None]]:
        """The queries as they are classified, and the true class of each where it is known."""
        return queries, known_truths(queries.hints or [None] * len(queries.items), class_names)

    @abstractmethod
    def predict(self, classifier: FewShotClassifier, encoder: Any, items: list[Any]) -> tuple[list[Prediction], Tensor, list[str]]:
        """Classify the queries; return (predictions, (n_query, d) frozen features, notes)."""

    def support_key(self, rows: list[tuple[str, Any]], encoder_id: str, method: str, options: dict[str, Any]) -> str:
        """A key that changes whenever the fitted classifier would (the rows must be JSON-able)."""
        payload = json.dumps([self.name, encoder_id, method, options, rows], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8", errors="surrogatepass")).hexdigest()

    # ---- taking the classifier elsewhere -------------------------------------------------------
    @abstractmethod
    def saved_snippet(self, file_name: str, classifier: FewShotClassifier) -> str:
        """Python that loads the saved classifier file ``file_name`` and classifies with it."""

    @abstractmethod
    def export_onnx(self, classifier: FewShotClassifier, encoder: Any, folder: Path,
                    items: Sequence[Any]) -> tuple[OnnxExport, str, list[Any]]:
        """Export to ONNX in ``folder``: (the export, what goes in and out, the ``items`` it can be
        checked on).

        Raises:
            UserInputError: for a learner that cannot be exported, saying why.
        """

    @abstractmethod
    def onnx_probabilities(self, exported: OnnxExport, encoder: Any, items: Sequence[Any]) -> Tensor:
        """(n_items, n_way) probabilities of the exported graph, run with onnxruntime.

        Raises:
            ImportError: without onnxruntime.
        """

    # ---- the comparison tab, on data of this modality -------------------------------------------
    def episode_warning(self, methods: Sequence[str]) -> str | None:
        """A warning before comparing ``methods`` on this modality's data (slow episodes), or None."""
        return None

    @abstractmethod
    def mistakes_view(self, mistakes: Sequence[tuple[Any, str, str, int]]) -> list[Any]:
        """The comparison's most often misclassified items, as [gallery, markdown] updates (one of
        them shown).

        Args:
            mistakes: (item, true class, predicted class, times) each, most frequent first.
        """


@dataclass(frozen=True, eq=False)
class SupportSession:
    """One browser session's fitted classifier in the image or text tab (the tab's State value).

    Attributes:
        modality: the tab's modality (``ImageModality`` or ``TextModality``).
        classifier: the fitted, or loaded, classifier.
        captions: one caption per support item ("class: file name or text").
        thumbnails: one small data URI per support image (image tab), or None.
        support_key: what the classifier was fitted on (encoder, method, options and classes): the
            next click reuses the fit while it is unchanged. None for a classifier loaded from a file.
        fit_notes: warnings from reading and fitting the support set, shown again when the fit is reused.
        data: the support set as comparison data, offered by the comparison tab; None when loaded.
        query_names: the last classified queries (file names or the texts).
        query_features: (n_query, d) their frozen features, for the 2-D map.
        query_labels: (n_query,) their predicted labels.
        classified_at: ``time.monotonic()`` of the last classification (the comparison tab takes
            the classes of the tab classified last).
        fitted_at: ``time.monotonic()`` of the fit (or load): panels showing an older one are stale.
    """

    modality: SupportModality
    classifier: FewShotClassifier
    captions: tuple[str, ...]
    thumbnails: tuple[str, ...] | None = None
    support_key: str | None = None
    fit_notes: tuple[str, ...] = ()
    data: LoadedData | None = None
    query_names: tuple[str, ...] = ()
    query_features: Tensor | None = None
    query_labels: tuple[int, ...] = ()
    classified_at: float | None = None
    fitted_at: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def loaded(self) -> bool:
        """True for a classifier loaded from a file (it has no support items to refit on)."""
        return self.support_key is None

    def with_queries(self, names: Sequence[str], features: Tensor, labels: Sequence[int]) -> "SupportSession":
        """This session after classifying queries."""
        return dataclasses.replace(
            self, query_names=tuple(names), query_features=features, query_labels=tuple(labels),
            classified_at=time.monotonic(),
        )


def latest_session(*sessions: SupportSession | None) -> SupportSession | None:
    """The session classified last among those that have comparison data (None: none has)."""
    usable = [s for s in sessions if s is not None and s.data is not None and s.classified_at is not None]
    return max(usable, key=lambda s: s.classified_at, default=None)
