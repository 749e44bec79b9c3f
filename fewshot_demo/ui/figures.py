"""The app's plots: the support set's 2-D map and adaptation curve, the comparison's accuracy,
K-shot curve, time and confusion plots.

Every figure is made without pyplot's global figure registry (``subplots``), which concurrent
requests would share.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from fewshot_demo.bench.comparison import method_label  # noqa: E402
from fewshot_demo.bench.results import MethodResult  # noqa: E402
from fewshot_demo.core.heatmap import PictureHeat, heat_levels, picture_box  # noqa: E402

#: A comparison's bars and lines by family.
FAMILY_COLORS = {"transfer": "#2f81f7", "meta": "#d1661a", "self-supervised": "#1a7f37", "baseline": "#6e7781"}


def subplots(**figure_options: Any) -> tuple[Figure, Any]:
    """A figure and its axes made without pyplot's global figure registry, which concurrent requests
    would share (its figures and their numbers are process-wide state)."""
    figure = Figure(**figure_options)
    return figure, figure.subplots()


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


#: How dark the heat veil makes the parts of a picture that do not look like the class (0..1).
HEAT_VEIL_DARKNESS = 0.8


def heat_veil_data_uri(heat: PictureHeat, side: int) -> str:
    """A side x side PNG (inline) to lay over a picture shown ``object-fit: contain`` in a square:
    black, transparent where the picture looks most like the class and darker where it does not, so
    brighter = looks more like the class; clear outside the picture (the padding the backbone read)."""
    levels = heat_levels(heat.shares, side)  # (side, side) in [0, 1]
    alpha = np.zeros((side, side), dtype=np.float32)
    left, top, width, height = picture_box(*heat.size, side)
    inside = (slice(top, top + height), slice(left, left + width))
    alpha[inside] = HEAT_VEIL_DARKNESS * (1.0 - levels[inside])
    veil = np.zeros((side, side, 4), dtype=np.uint8)
    veil[..., 3] = np.round(alpha * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(veil).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


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


# ---- the comparison ------------------------------------------------------------------------------
def _label(result: MethodResult) -> str:
    return method_label(result.method)


def accuracy_figure(results: Sequence[MethodResult]):
    """Grouped bars: accuracy per method, one bar per K-shot, with 95% CI error bars."""
    methods = list(dict.fromkeys(r.method for r in results))
    shots = sorted({r.n_shot for r in results})
    figure, axes = subplots(figsize=(6.5, 3.4), dpi=90)
    width = 0.8 / max(len(shots), 1)
    for j, shot in enumerate(shots):
        for i, method in enumerate(methods):
            found = [r for r in results if r.method == method and r.n_shot == shot]
            if not found:
                continue
            r = found[0]
            axes.bar(i + (j - (len(shots) - 1) / 2) * width, r.summary.accuracy, width * 0.9,
                     yerr=r.summary.ci95, capsize=3, color=FAMILY_COLORS[r.family], alpha=0.45 + 0.55 * (j + 1) / len(shots),
                     edgecolor="black", linewidth=0.4)
            axes.text(i + (j - (len(shots) - 1) / 2) * width, 0.02, f"{shot}", ha="center", fontsize=7, color="white")
    axes.set_xticks(range(len(methods)))
    axes.set_xticklabels([method_label(m) for m in methods], fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("accuracy (95% CI)")
    axes.set_title("Accuracy per method (bars: K-shot; blue transfer, orange meta)", fontsize=9)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    plt.close(figure)
    return figure


def curve_figure(results: Sequence[MethodResult]):
    """Accuracy vs K-shot, one line per method, with 95% CI error bars."""
    figure, axes = subplots(figsize=(6.5, 3.4), dpi=90)
    for method in dict.fromkeys(r.method for r in results):
        points = sorted((r for r in results if r.method == method), key=lambda r: r.n_shot)
        axes.errorbar([r.n_shot for r in points], [r.summary.accuracy for r in points], yerr=[r.summary.ci95 for r in points],
                      marker="o", capsize=3, label=_label(points[0]), linestyle="-" if points[0].family == "transfer" else "--")
    shots = sorted({r.n_shot for r in results})
    axes.set_xticks(shots)
    axes.set_xlabel("K (support examples per class)")
    axes.set_ylabel("accuracy")
    axes.set_title("Accuracy vs K-shot (solid: transfer, dashed: meta)", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    plt.close(figure)
    return figure


def time_figure(results: Sequence[MethodResult]):
    """Adaptation time per episode (log scale), with the peak memory written next to each bar."""
    figure, axes = subplots(figsize=(6.5, 0.8 + 0.32 * max(len(results), 1)), dpi=90)
    labels = [f"{_label(r)}, {r.n_shot}-shot" for r in results]
    values = [max(r.summary.ms_per_episode, 1e-3) for r in results]
    axes.barh(range(len(results)), values, color=[FAMILY_COLORS[r.family] for r in results])
    for i, r in enumerate(results):
        memory = "" if r.summary.peak_mb is None else f", peak +{r.summary.peak_mb:.1f} MB"
        axes.text(values[i], i, f" {r.summary.ms_per_episode:.1f} ms{memory}", va="center", fontsize=7)
    axes.set_yticks(range(len(results)))
    axes.set_yticklabels(labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlim(min(values) / 2, max(values) * 30)
    axes.set_xlabel("fit + predict time per episode (ms, log scale)")
    figure.tight_layout()
    plt.close(figure)
    return figure


def confusion_figure(result: MethodResult, class_names: Sequence[str]):
    """The confusion matrix over the classes in play (rows true, columns predicted), as fractions of rows."""
    used = [c for c in range(len(class_names)) if result.confusion[c].sum() > 0]
    matrix = result.confusion[np.ix_(used, used)].astype(float)
    matrix = matrix / matrix.sum(axis=1, keepdims=True)
    names = [class_names[c].split("/")[-1] for c in used]
    figure, axes = subplots(figsize=(1.6 + 0.45 * len(used), 1.2 + 0.45 * len(used)), dpi=90)
    axes.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(used)):
        for j in range(len(used)):
            if matrix[i, j] >= 0.01:
                axes.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if matrix[i, j] > 0.5 else "black")
    axes.set_xticks(range(len(used)))
    axes.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    axes.set_yticks(range(len(used)))
    axes.set_yticklabels(names, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"{_label(result)}, {result.n_shot}-shot", fontsize=9)
    figure.tight_layout()
    plt.close(figure)
    return figure
