"""Classify: fit (or reuse) the classifier on the class rows, classify the queries, explain them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from fewshot_demo.core.classifier import FewShotClassifier
from fewshot_demo.ui.cards import prediction_cards_html, truth_summary
from fewshot_demo.ui.messages import notes_markdown
from fewshot_demo.ui.support.modality import ProgressFn, SupportModality, SupportSession, no_progress
from fewshot_demo.ui.support.rows import class_rows


@dataclass(frozen=True)
class Classified:
    """What a click on Classify shows.

    Attributes:
        session: the session after the click (fitted or reused classifier, the new queries).
        status: Markdown summary with warnings.
        probabilities: the first query's class probabilities (for a gr.Label).
        cards: HTML, one card per query.
        history: per-step support loss and accuracy of an adapting learner (MAML and friends), or None.
        truths: per query, its true class where known (an example set's folders, a typed label), else None.
        refit: True when this click fitted a new classifier (False: the previous fit was reused).
    """

    session: SupportSession
    status: str
    probabilities: dict[str, float]
    cards: str
    history: list[dict] | None
    truths: list[str | None] = dataclasses.field(default_factory=list)
    refit: bool = False


def classify(
    modality: SupportModality,
    encoder_id: str,
    method: str,
    options: dict[str, Any],
    query_value: Any,
    session: SupportSession | None,
    class_values: Sequence[Any],
    progress: ProgressFn = no_progress,
) -> Classified:
    """Fit (or reuse) the classifier on the class rows and classify the queries.

    The fit is reused while the encoder, method, options and class rows are unchanged; a classifier
    loaded from a file is used while no class row has items.

    Args:
        modality: the tab's modality.
        encoder_id: the selected backbone or encoder.
        method: a registered method key.
        options: the method's options by name (see the tabs' ``method_options``).
        query_value: what ``modality.read_queries`` reads.
        session: the tab's session, or None.
        class_values: the class rows' names, then their items.
        progress: ``(fraction, message)`` callback.

    Raises:
        UserInputError: with what to fix.
    """
    rows = class_rows(class_values)
    queries = modality.read_queries(query_value)
    progress(0.1, f"loading the {modality.tuned}")
    encoder = modality.load_encoder(encoder_id)
    notes: list[str] = []
    refit = False
    if session is not None and session.loaded and not any(modality.has_items(item) for _, item in rows):
        notes.append(f"Classified with the loaded classifier ({modality.add_items_hint} to fit a new one).")
    else:
        key = modality.support_key(rows, encoder.id, method, options)
        if session is None or session.support_key != key:
            progress(0.2, "embedding the support set and fitting")
            session = modality.fit(rows, encoder, method, options, key,
                                   progress=lambda fraction, message: progress(0.2 + 0.6 * fraction, message))
            refit = True
        notes.extend(session.fit_notes)
    progress(0.85, f"classifying the {modality.query_noun}")
    classifier = session.classifier
    queries, truths = modality.with_truths(queries, classifier.class_names)
    predictions, features, query_notes = modality.predict(classifier, encoder, queries.items)
    notes.extend(queries.notes + query_notes)
    session = session.with_queries(queries.names, features, [classifier.class_names.index(p.label) for p in predictions])
    cards = prediction_cards_html(predictions, queries.names, queries.thumbnails, session.captions, session.thumbnails,
                                  truths=truths)
    history = getattr(classifier.learner, "history", None) or None
    summary = classify_summary(modality, classifier, encoder.id, len(predictions), history)
    checked = truth_summary(predictions, truths, queries.names, modality.truth_source)
    status = notes_markdown(summary + (f"\n\n{checked}" if checked else ""), notes)
    return Classified(session, status, predictions[0].probabilities, cards, history, truths, refit)


def classify_summary(modality: SupportModality, classifier: FewShotClassifier, encoder_id: str, n_query: int,
                     history: list[dict] | None) -> str:
    """The first lines of the status: what classified what, and how the adaptation went."""
    tuned = "" if classifier.consumes_features else (
        f" (probabilities from the fine-tuned {modality.tuned}; nearest examples on the frozen {modality.features_noun})"
    )
    summary = (
        f"**{n_query} quer{'y' if n_query == 1 else 'ies'} classified** with {classifier.spec.label} "
        f"(`{classifier.method}`) on `{encoder_id}` "
        f"({classifier.n_way} classes, {len(classifier.support_labels)} examples){tuned}."
    )
    if history:
        steps = ", ".join(f"{h['step']}: loss {h['support_loss']:.3f} / acc {h['support_accuracy']:.0%}" for h in history)
        summary += f"\n\nAdaptation on the support set, step by step: {steps}."
    losses = getattr(classifier.learner, "losses", None)
    if losses:
        summary += (f"\n\nFine-tuned for {len(losses)} step(s) on the support set: training loss {losses[0]:.3f} "
                    f"at the first step, {losses[-1]:.3f} at the last.")
    return summary
