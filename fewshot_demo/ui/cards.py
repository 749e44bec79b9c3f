"""HTML and Markdown that explain predictions: one card per query, right/wrong marks, the self-check."""

from __future__ import annotations

import base64
import html
import io
from typing import Any, Sequence

from PIL import Image

from fewshot_demo.core.classifier import Prediction, SelfCheck
from fewshot_demo.core.heatmap import PictureHeat
from fewshot_demo.ui.figures import heat_veil_data_uri
from fewshot_demo.ui.style import CARD_CSS, HEAT_CSS


def thumbnail_data_uri(image: Image.Image, size: int = 96) -> str:
    """A small inline JPEG of an image, for HTML explanations."""
    thumb = image.copy()
    thumb.thumbnail((size, size))
    buffer = io.BytesIO()
    thumb.convert("RGB").save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


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


#: Sides, in CSS pixels, of the query's and the nearest support pictures' heat maps on a card.
QUERY_HEAT_SIDE, SUPPORT_HEAT_SIDE = 96, 56


def _heat_picture(picture: str | None, heat: PictureHeat, side: int, alt: str) -> str:
    """A picture with its heat veil on top (both ``object-fit: contain`` in the same square)."""
    if not picture:
        return ""
    return (f'<span class="fs-heat" style="width:{side}px;height:{side}px">'
            f'<img src="{picture}" width="{side}" height="{side}" alt="{alt}">'
            f'<img class="fs-veil" src="{heat_veil_data_uri(heat, side)}" width="{side}" height="{side}" alt="">'
            "</span>")


def looked_html(prediction: Prediction, query_thumbnail: str | None, support_captions: Sequence[str],
                support_thumbnails: Sequence[str | None] | None) -> str:
    """The card's "Where it looked" column: the query's heat map and its nearest support pictures',
    for the predicted class; "" where the prediction has none (a method that does not classify the
    backbone's frozen features, a backbone without feature maps, a text)."""
    looked = prediction.looked
    if looked is None:
        return ""
    label = html.escape(looked.class_name)
    nearest = []
    for index, heat in looked.nearest.items():
        picture = support_thumbnails[index] if support_thumbnails else None
        caption = html.escape(support_captions[index])
        if picture:
            nearest.append(f"<figure>{_heat_picture(picture, heat, SUPPORT_HEAT_SIDE, caption)}</figure>")
    return (f'<div class="fs-looked" data-class="{label}"><div class="fs-small">Where it looked</div>'
            f"{_heat_picture(query_thumbnail, looked.query, QUERY_HEAT_SIDE, 'where the query looks like ' + label)}"
            f'<div class="fs-nearest">{"".join(nearest)}</div>'
            f'<div class="fs-small">brighter = looks more like {label}</div></div>')


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
            f"{looked_html(prediction, thumb, support_captions, support_thumbnails)}</div>"
        )
    return CARD_CSS + HEAT_CSS + '<div class="fs-cards">' + "".join(cards) + "</div>"


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
