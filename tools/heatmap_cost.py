"""What the "where it looked" heat maps cost the first prediction, against its floor, in one run.

    python -m tools.heatmap_cost [--repeats 5]

On the 5-way 5-shot example set (25 support pictures, 10 queries), in this process, every cache
emptied before each try so that every picture goes through the backbone, one try of each in turn
(so they share the machine's load):

- floor: the forward passes alone, one preprocessed picture at a time, through the network the
  backbone used before the heat maps (traced, pooling inside it);
- passes: the same forward passes through the network it uses now (the last feature map, pooled
  after it), which also hand back the maps;
- first prediction without heat maps: fit ProtoNet, classify the queries, the cards;
- first prediction with heat maps: the same through ``core.image_task`` (support maps at the fit,
  query maps at the classification) and the cards with the heat veils drawn.

Medians are printed, wall-clock and CPU time of this process (less moved by other processes on a
busy machine), each with its ratio to the floor, and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from fewshot_demo.core.classifier import FewShotClassifier
from fewshot_demo.core.image_task import build_support, classify_images, fit_image_classifier
from fewshot_demo.data.images import load_image
from fewshot_demo.encoders.image import load_backbone
from fewshot_demo.encoders.traced import cpu_inference_network
from fewshot_demo.runtime.device import one_thread
from fewshot_demo.ui.cards import prediction_cards_html, thumbnail_data_uri

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "images" / "mixed_5way"


def _timed(call: Callable[[], Any]) -> tuple[float, float]:
    """(wall-clock seconds, this process's CPU seconds) that ``call()`` took."""
    began, began_cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - began, time.process_time() - began_cpu


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="tries of each (default 5)")
    args = parser.parse_args(argv)
    before = _load()
    backbone = load_backbone("efficientnet_lite0", "cpu")
    folders = sorted(p for p in (EXAMPLE / "support").iterdir() if p.is_dir())
    support = build_support([(folder.name, sorted(folder.iterdir())) for folder in folders])
    queries = [load_image(path) for path in sorted((EXAMPLE / "query").glob("*/*"))]
    pictures = support.images + queries
    preprocessed = [backbone.preprocess(p)[None] for p in pictures]  # as the floor's: the resizing is not in it
    batches = [(picture - backbone._mean) / backbone._std for picture in preprocessed]
    pooled_network = cpu_inference_network(backbone.model, backbone._input_shape)  # the network before
    captions = [f"{support.class_names[int(label)]}: {source}" for label, source in zip(support.labels, support.sources)]

    def cards(predictions: list) -> str:
        return prediction_cards_html(predictions, ["q"] * len(queries), [thumbnail_data_uri(q) for q in queries],
                                     captions, [thumbnail_data_uri(image, 72) for image in support.images])

    def forget() -> None:
        backbone._cache.clear()
        backbone._map_cache.clear()

    def floor() -> None:
        with torch.inference_mode(), one_thread(True):
            for batch in batches:
                pooled_network(batch)

    def passes() -> None:
        for picture in preprocessed:
            backbone._forward(picture)

    def plain() -> None:
        forget()
        classifier = FewShotClassifier.fit(backbone, support.class_names, support.images, support.labels, "protonet")
        cards(classifier.classify(backbone, queries))

    def with_heat() -> None:
        forget()
        classifier = fit_image_classifier(support, backbone, "protonet")
        predictions = classify_images(classifier, backbone, queries)
        assert all(p.looked is not None for p in predictions)
        cards(predictions)

    tries: dict[str, list[tuple[float, float]]] = {"floor": [], "passes": [], "plain": [], "heat": []}
    with_heat()  # warm: first calls allocate
    for _ in range(args.repeats):
        for name, call in (("floor", floor), ("passes", passes), ("plain", plain), ("heat", with_heat)):
            tries[name].append(_timed(call))
    wall = {name: statistics.median(w for w, _ in values) for name, values in tries.items()}
    cpu = {name: statistics.median(c for _, c in values) for name, values in tries.items()}
    print(f"{len(support.images)} support pictures + {len(queries)} queries, {args.repeats} tries each (medians)")
    print("     wall            CPU")
    for name, what in (("floor", "floor: forward passes, pooled inside the traced network (before)"),
                       ("passes", "forward passes through the feature-map network, pooled after it (now)"),
                       ("plain", "first prediction, no heat maps (fit + classify + cards)"),
                       ("heat", "first prediction with heat maps (fit + classify + cards with veils)")):
        print(f"  {1000 * wall[name]:6.0f} ms {wall[name] / wall['floor']:4.2f}x  {1000 * cpu[name]:6.0f} ms "
              f"{cpu[name] / cpu['floor']:4.2f}x  {what}")
    for clock, median in (("wall", wall), ("CPU", cpu)):
        print(f"  heat maps add {100 * (median['heat'] / median['plain'] - 1):+.1f}% to the first prediction ({clock})")
    print(f"load average before {before}, after {_load()}")


if __name__ == "__main__":
    main()
