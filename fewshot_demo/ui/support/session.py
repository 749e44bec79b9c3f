"""A tab's session (the value of its ``gr.State``) and the queries one Classify reads."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from torch import Tensor

from fewshot_demo.core.classifier import FewShotClassifier
from fewshot_demo.data.labelled import LoadedData

if TYPE_CHECKING:  # the modality module imports this one
    from fewshot_demo.ui.support.modality import SupportModality

#: A callback ``(fraction done, message)``, the core's progress convention.
ProgressFn = Callable[[float, str], None]


def no_progress(fraction: float, message: str) -> None:
    """A progress callback that shows nothing."""
    return None


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

    modality: "SupportModality"
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
