"""Pieces every tab shares: error handling, method lists and their settings, HTML for predictions, plots."""

from __future__ import annotations

import base64
import dataclasses
import functools
import html
import inspect
import io
import os
from typing import Any, Callable, Sequence

import gradio as gr
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core.classifier import Prediction, SelfCheck  # noqa: E402
from fewshot_demo.methods import get_method, methods_for  # noqa: E402


def user_errors(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a ValueError from the core into a gr.Error, so the user sees the message, not a traceback.

    Handlers raise ValueError (tests call them directly); this wraps them where events are wired.
    Generator handlers stay generators, so their results still stream. Inputs are never cleared by
    an error: Gradio leaves every component as it was.
    """
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def streamed(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from handler(*args, **kwargs)
            except ValueError as error:
                raise gr.Error(str(error), print_exception=False) from None

        return streamed

    @functools.wraps(handler)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except ValueError as error:
            raise gr.Error(str(error), print_exception=False) from None

    return wrapped


def errors_in_status(handler: Callable[..., Any], n_outputs: int, status_index: int,
                     cleared: dict[int, Any] | None = None) -> Callable[..., Any]:
    """Like ``user_errors``, and the error also replaces the status line (outputs ``cleared`` are emptied).

    The wrapped handler streams: on a ValueError it first shows the message in the status (so no
    old status stays next to the error), then raises the ``gr.Error`` that API callers receive.
    """

    def shown(error: ValueError) -> Any:
        outputs: list[Any] = [gr.skip()] * n_outputs
        outputs[status_index] = error_markdown(str(error))
        for index, value in (cleared or {}).items():
            outputs[index] = value
        return outputs if n_outputs > 1 else outputs[0]  # one output is a value, not a list of one

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def generated(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from handler(*args, **kwargs)
            except ValueError as error:
                yield shown(error)
                raise gr.Error(str(error), print_exception=False) from None

        return generated

    @functools.wraps(handler)
    def streamed(*args: Any, **kwargs: Any) -> Any:
        try:
            result = handler(*args, **kwargs)
        except ValueError as error:
            yield shown(error)
            raise gr.Error(str(error), print_exception=False) from None
        yield result

    return streamed


def error_markdown(message: str) -> str:
    """A status line that says what went wrong and what to do (HTML escaped)."""
    return f"**⚠️ {html.escape(message[:1].upper() + message[1:], quote=False)}**"


def subplots(**figure_options: Any) -> tuple[Figure, Any]:
    """A figure and its axes made without pyplot's global figure registry, which concurrent requests
    would share (its figures and their numbers are process-wide state)."""
    figure = Figure(**figure_options)
    return figure, figure.subplots()


def notes_markdown(summary: str, notes: Sequence[str]) -> str:
    """A summary followed by one warning line per note (HTML in the notes is escaped)."""
    return summary + ("\n\n" + "\n".join(f"- ⚠️ {html.escape(n, quote=False)}" for n in notes) if notes else "")


# ---- methods and their settings, from the registry ------------------------------------------------
def method_choice_label(method: str, encoder_id: str | None = None) -> str:
    """What a method list shows: the registry label and the family on this encoder, e.g. "ProtoNet (meta)";
    ProtoNet without a checkpoint for the encoder is "ProtoNet (transfer)"."""
    spec = get_method(method)
    family = spec.family_for(encoder_id) if encoder_id else spec.family
    return f"{spec.label} ({family}{', transductive' if spec.transductive else ''})"


def method_choices(modality: str, encoder_id: str, first: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(label, key) of every method that runs on the backbone or encoder, the ``first`` ones first."""
    specs = sorted(methods_for(modality, encoder_id), key=lambda s: first.index(s.key) if s.key in first else len(first))
    return [(method_choice_label(s.key, encoder_id), s.key) for s in specs]


def offer_methods(choices: Callable[[str], list[tuple[str, str]]], fallback: str, encoder_id: str, current: str) -> Any:
    """The method dropdown for another backbone or encoder: the current method when it still runs there."""
    offered = choices(encoder_id)
    keys = [key for _, key in offered]
    return gr.Dropdown(choices=offered, value=current if current in keys else fallback)


def option_field(method: str, modality: str, name: str) -> dataclasses.Field | None:
    """The method's option field ``name`` on this modality, or None when it has no such option."""
    return next((f for f in get_method(method).option_fields(modality) if f.name == name), None)


def has_adaptation_options(method: str, modality: str) -> bool:
    """True for methods adapted by gradient steps on the support set (their options have ``inner_steps``)."""
    return option_field(method, modality, "inner_steps") is not None


def has_finetune_options(method: str, modality: str) -> bool:
    """True for methods that take the fine-tune options (the options class of ``finetune`` here)."""
    options = get_method(method).options_class(modality)
    return options is not None and options is get_method("finetune").options_class(modality)


def has_domain_options(method: str, modality: str) -> bool:
    """True for methods that adapt the backbone to the episode's inputs (their options have ``target_weight``)."""
    return option_field(method, modality, "target_weight") is not None


def option_slider(method: str, modality: str, name: str, value: float, step: float, label: str = "",
                  **settings: Any) -> gr.Slider:
    """A slider for a method's option, bounded by the option's ``min``/``max`` metadata (``settings``:
    more ``gr.Slider`` arguments)."""
    field = option_field(method, modality, name)
    if field is None:
        raise UserInputError(f"{method} has no option {name!r} on {modality}")
    low, high = field.metadata.get("min"), field.metadata.get("max")
    return gr.Slider(low, high, value=value, step=step, label=label or field.metadata.get("label") or name, **settings)


def settings_visibility(modality: str, method: str) -> tuple[Any, Any]:
    """Show the adaptation settings and the fine-tune settings for the methods they apply to."""
    return gr.Group(visible=has_adaptation_options(method, modality)), gr.Group(visible=has_finetune_options(method, modality))


def file_paths(value: Any) -> list[str]:
    """Normalise a gr.File, gr.Image or gr.Gallery value (None, a path, a FileData, a (path, caption)
    pair, or a list of them) to paths."""
    if value is None:
        return []
    items = value if isinstance(value, list) or (isinstance(value, tuple) and not _captioned(value)) else [value]
    items = [item[0] if _captioned(item) else item for item in items]
    return [str(item if isinstance(item, (str, os.PathLike)) else getattr(item, "path", item)) for item in items]


def _captioned(item: Any) -> bool:
    """True for a gallery's (path, caption) pair."""
    return isinstance(item, tuple) and len(item) == 2 and (item[1] is None or isinstance(item[1], str)) \
        and not isinstance(item[0], (tuple, list))


def thumbnail_data_uri(image: Image.Image, size: int = 96) -> str:
    """A small inline JPEG of an image, for HTML explanations."""
    thumb = image.copy()
    thumb.thumbnail((size, size))
    buffer = io.BytesIO()
    thumb.convert("RGB").save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


#: Page-wide rules the tabs add once (``page_style``): compact thumbnail galleries in the class rows
#: (their own clear-all button hidden: "Remove class" and "Clear all" do that, and every image has
#: its own delete button), no "Error" badge over a status line that already says what went wrong,
#: and nothing wider than a phone's screen.
PAGE_CSS = """
.fs-class-gallery button[aria-label="Clear"], .fs-class-gallery button[aria-label="Download All"] {display:none}
.fs-class-gallery .thumbnail-item {min-width:0}
.fs-style {display:none !important}
.fs-confusion table {font-size:.85em}
.fs-map img, .fs-map canvas {max-width:100%; height:auto}
.fs-examples .grid-wrap {height:auto !important}
.fs-status > [data-testid="status-tracker"]:has(.error) {display:none !important}
@media (max-width: 640px) {
  .fs-class-row {flex-wrap:wrap}
  .fs-examples .grid-container {--grid-cols: 2 !important}
}
"""


def page_style() -> gr.HTML:
    """The page-wide rules of ``PAGE_CSS``, as an invisible block (add it once per tab)."""
    return gr.HTML(f"<style>{PAGE_CSS}</style>", elem_classes=["fs-style"], padding=False, container=False)


STYLE = """
<style>
.fs-cards{display:flex;flex-direction:column;gap:10px;max-width:100%}
.fs-card{border:1px solid #d0d7de;border-radius:8px;padding:10px;display:flex;gap:14px;flex-wrap:wrap;
  box-sizing:border-box;max-width:100%;min-width:0}
.fs-card>div{min-width:0;flex:1 1 200px}
.fs-card>img{flex:0 0 auto}
.fs-card.fs-right{border-color:#1a7f37;border-width:2px}
.fs-card.fs-wrong{border-color:#cf222e;border-width:2px;background:#fff8f8}
.fs-card img{border-radius:4px;object-fit:contain;background:#fff}
.fs-label{font-size:1.2em;font-weight:600;overflow-wrap:anywhere}
.fs-mark{display:inline-block;font-size:.8em;font-weight:600;border-radius:10px;padding:1px 8px;margin-left:6px;vertical-align:middle}
.fs-right .fs-mark{background:#dafbe1;color:#1a7f37}
.fs-wrong .fs-mark{background:#ffebe9;color:#cf222e}
.fs-hint{font-size:.85em;color:#57606a;margin-top:4px}
.fs-row{display:flex;align-items:center;gap:6px;font-size:.9em;min-width:0}
.fs-row span.n{flex:0 1 110px;min-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.fs-track{flex:1 1 60px;max-width:160px;min-width:30px}
.fs-bar{height:10px;background:#2f81f7;border-radius:3px}
.fs-row span.p{flex:0 0 auto}
.fs-nearest{display:flex;gap:6px;flex-wrap:wrap}
.fs-nearest figure{margin:0;text-align:center;font-size:.8em;max-width:90px;overflow-wrap:anywhere}
.fs-small{color:#57606a;font-size:.85em;overflow-wrap:anywhere}
.fs-summary{font-weight:600;margin:4px 0}
</style>
"""


def known_truths(hints: Sequence[str | None], class_names: Sequence[str]) -> list[str | None]:
    """The true class of each query where it is known: a hint (the query file's folder, or the label
    typed after a query text) that names one of the classes, case-insensitively; else None."""
    by_key = {name.casefold(): name for name in class_names}
    return [by_key.get(hint.strip().casefold()) if hint else None for hint in hints]


def truth_summary(predictions: Sequence[Prediction], truths: Sequence[str | None], names: Sequence[str],
                  source: str) -> str:
    """One line on the queries whose class is known: how many are right, and which are wrong.

    Args:
        predictions: one per query.
        truths: the true class per query, or None where unknown.
        names: a display name per query.
        source: where the true classes come from, for the reader ("the folder each file is in").
    """
    known = [(p, t, n) for p, t, n in zip(predictions, truths, names) if t is not None]
    if not known:
        return ""
    right = sum(p.label == t for p, t, _ in known)
    line = (f"**Right on {right} of the {len(known)} quer{'y' if len(known) == 1 else 'ies'} whose class is known: "
            f"{right / len(known):.0%}** (true class from {source}).")
    wrong = [f"{html.escape(_short(n), quote=False)} (true {html.escape(t, quote=False)}, "
             f"predicted {html.escape(p.label, quote=False)})" for p, t, n in known if p.label != t]
    if wrong:
        line += " Wrong: " + "; ".join(wrong[:6]) + ("; ..." if len(wrong) > 6 else "") + "."
    return line


def _short(text: str, limit: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def prediction_cards_html(
    predictions: Sequence[Prediction],
    query_names: Sequence[str],
    query_thumbnails: Sequence[str | None],
    support_captions: Sequence[str],
    support_thumbnails: Sequence[str | None] | None = None,
    top_k: int = 5,
    truths: Sequence[str | None] | None = None,
) -> str:
    """One card per query: label and confidence, probability bars, prototype distances, nearest examples.

    Where a query's true class is known (``truths``), the card is marked right or wrong; a wrong
    card says how likely the true class was and what would help. Every user-provided string is
    HTML-escaped.
    """
    truths = list(truths) if truths is not None else [None] * len(predictions)
    cards = []
    for prediction, name, thumb, truth in zip(predictions, query_names, query_thumbnails, truths):
        ranked = sorted(prediction.probabilities.items(), key=lambda kv: -kv[1])[:top_k]
        bars = "".join(
            f'<div class="fs-row"><span class="n">{html.escape(c)}</span>'
            f'<div class="fs-track"><div class="fs-bar" style="width:{max(p * 100, 1):.0f}%"></div></div>'
            f'<span class="p">{p:.1%}</span></div>'
            for c, p in ranked
        )
        distances = sorted(prediction.prototype_distances.items(), key=lambda kv: kv[1])[:top_k]
        distance_rows = "".join(
            f'<div class="fs-row"><span class="n">{html.escape(c)}</span><span class="p">{d:.3f}</span></div>'
            for c, d in distances
        )
        nearest = []
        for index, similarity in prediction.nearest:
            caption = html.escape(support_captions[index])
            picture = support_thumbnails[index] if support_thumbnails else None
            image = f'<img src="{picture}" width="72" height="72" alt="{caption}">' if picture else ""
            nearest.append(f"<figure>{image}<figcaption>{caption}<br>cos {similarity:.2f}</figcaption></figure>")
        query_image = f'<img src="{thumb}" width="96" height="96" alt="query">' if thumb else ""
        label = html.escape(prediction.label)
        confidence = prediction.probabilities[prediction.label]
        marks, mark, hint = "", "", ""
        if truth is not None:
            correct = prediction.label == truth
            marks = f' data-truth="{html.escape(truth)}" data-correct="{str(correct).lower()}"'
            mark = ('<span class="fs-mark">✓ right</span>' if correct
                    else f'<span class="fs-mark">✗ wrong: it is {html.escape(truth)}</span>')
            if not correct:
                hint = (f'<div class="fs-hint">{html.escape(truth)} got {prediction.probabilities.get(truth, 0.0):.0%}. '
                        f"It looks more like your {label} examples (see the most similar ones): add a few "
                        f"{html.escape(truth)} examples like this one, then classify again.</div>")
        state = "" if truth is None else (" fs-right" if prediction.label == truth else " fs-wrong")
        cards.append(
            f'<div class="fs-card fs-prediction{state}" data-label="{label}"{marks}>{query_image}'
            f'<div><div class="fs-small">{html.escape(name)}</div>'
            f'<div class="fs-label">{label} <span class="fs-small">{confidence:.0%}</span>{mark}</div>{hint}{bars}</div>'
            f'<div><div class="fs-small">Distance to each class prototype</div>{distance_rows}</div>'
            f'<div><div class="fs-small">Most similar examples</div><div class="fs-nearest">{"".join(nearest)}</div></div>'
            "</div>"
        )
    return STYLE + '<div class="fs-cards">' + "".join(cards) + "</div>"


def self_check_markdown(check: SelfCheck, class_names: Sequence[str]) -> str:
    """A short reading of the leave-one-out self-check."""
    if check.accuracy is None:
        return "**Self-check:** every class has a single example, so none can be held out. Add a second example per class."
    lines = [f"**Self-check (leave-one-out on the support set): {check.accuracy:.0%} correct.**"]
    weak = [f"{html.escape(n)} ({a:.0%})" for n, a in check.per_class.items() if a is not None and a < 1.0]
    if weak:
        lines.append("Classes with mistakes: " + ", ".join(weak) + ".")
    for true, predicted, count in check.confused_pairs[:5]:
        lines.append(f"- {count} example(s) of **{html.escape(true)}** look more like **{html.escape(predicted)}**")
    single = [html.escape(n) for n, a in check.per_class.items() if a is None]
    if single:
        lines.append("Not checked (only one example): " + ", ".join(single) + ".")
    if not check.confused_pairs:
        lines.append("No confusions: every held-out example was recognised.")
    return "\n\n".join(lines)


def confusion_table(check: SelfCheck, class_names: Sequence[str]) -> list[list[Any]]:
    """Rows for a gr.Dataframe: true class, then counts per predicted class."""
    return [[name, *map(int, row)] for name, row in zip(class_names, check.confusion)]


def embedding_map_figure(
    coordinates: dict[str, np.ndarray],
    support_labels: Sequence[int],
    class_names: Sequence[str],
    query_predictions: Sequence[int] = (),
):
    """Scatter plot: support items (dots), prototypes (large X), queries (stars, coloured by prediction)."""
    figure, axes = subplots(figsize=(7.5, 4.5), dpi=90)
    # Distinct colours: tab10 for up to 10 classes (tab20's pale halves are hard to see), else tab20.
    palette = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    colors = [palette(c % palette.N) for c in range(max(len(class_names), 2))]
    labels = np.asarray(support_labels)
    for c, name in enumerate(class_names):
        points = coordinates["support"][labels == c]
        axes.scatter(points[:, 0], points[:, 1], color=colors[c], s=30, alpha=0.7, label=name)
        px, py = coordinates["prototypes"][c]
        axes.scatter([px], [py], color=colors[c], s=160, marker="X", edgecolor="black")
    for point, predicted in zip(coordinates["query"], query_predictions):
        axes.scatter([point[0]], [point[1]], color=colors[predicted], s=200, marker="*", edgecolor="black")
    axes.set_title("Support (dots), prototypes (X), queries (stars)", fontsize=10)
    axes.set_xticks([])
    axes.set_yticks([])
    # Outside the axes, so it never hides a point.
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=2 if len(class_names) > 10 else 1,
                frameon=False)
    figure.tight_layout()
    plt.close(figure)
    return figure


def adaptation_figure(history: Sequence[dict]):
    """Support loss and accuracy after each inner adaptation step (MAML and friends)."""
    steps = [h["step"] for h in history]
    figure, loss_axes = subplots(figsize=(6, 3), dpi=90)
    loss_axes.plot(steps, [h["support_loss"] for h in history], "o-", color="#cf222e", label="support loss")
    loss_axes.set_xlabel("inner step")
    loss_axes.set_ylabel("support loss")
    accuracy_axes = loss_axes.twinx()
    accuracy_axes.plot(steps, [h["support_accuracy"] for h in history], "s--", color="#1a7f37", label="support accuracy")
    accuracy_axes.set_ylabel("support accuracy")
    accuracy_axes.set_ylim(0, 1.05)
    loss_axes.set_title("Adaptation on the support set", fontsize=10)
    figure.legend(loc="upper center", bbox_to_anchor=(0.5, 0.85), fontsize=8)
    figure.tight_layout()
    plt.close(figure)
    return figure
