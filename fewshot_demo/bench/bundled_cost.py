"""What the ``lite_ensemble`` backbone costs against EfficientNet-Lite0: load time, memory, ms per image,
and a first prediction next to its floor, timed in the same run.

    python -m fewshot_demo.bench.bundled_cost            # or: python -m fewshot_demo.bench.bundled --latency

The floor of a prediction is the backbone's own forward passes for one image, preprocessed
beforehand, through the network the app runs: one pass of Lite0; for the ensemble, each member on the
image and its mirror image (3 x 2 passes). A first prediction is ``FewShotClassifier.classify`` on an image
the classifier has not seen (read, preprocessed, embedded, classified), fitted before on a 5-way
1-shot support set of other images. Each prediction is timed right after its floor; the ratio is the
median of these pairs, which share the machine's load. One thread, as the app runs a request.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fewshot_demo.core.classifier import FewShotClassifier
from fewshot_demo.encoders.image import ImageBackbone, load_backbone
from fewshot_demo.runtime.device import one_thread


def _resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _images(count: int, seed: int) -> list[Image.Image]:
    """``count`` distinct RGB images, each new to every cache (random noise on a white square)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (180, 200, 3), dtype=np.uint8)) for _ in range(count)]


@torch.inference_mode()
def _floor_seconds(backbone: ImageBackbone, image: Image.Image) -> float:
    """Seconds of the network's forward passes for one image preprocessed beforehand, through the network
    the app runs (the traced one on the CPU): Lite0's one pass; the ensemble's six (3 members x the image
    and its mirror) with the resizing between them."""
    batch = (backbone.preprocess(image)[None] - backbone._mean.cpu()) / backbone._std.cpu()
    network = backbone._cpu_network if backbone._cpu_network is not None else backbone.model
    start = time.perf_counter()
    network(batch)
    return time.perf_counter() - start


def measure(backbone_id: str, repeats: int = 7) -> dict:
    """Load time (the first load in this process: build, weights, traced CPU network), the resident
    memory it added, and the first-prediction timings of one backbone."""
    before = _resident_mb()
    start = time.perf_counter()
    backbone = load_backbone(backbone_id)  # the instance the app's classifiers use (built once)
    load_s = time.perf_counter() - start
    resident = _resident_mb() - before
    classifier = FewShotClassifier.fit(backbone, [f"class {i}" for i in range(5)], _images(5, seed=1),
                                       torch.arange(5), "protonet")
    floors, predictions = [], []
    with one_thread(True):
        for image in _images(repeats, seed=2):
            floors.append(_floor_seconds(backbone, image))
            start = time.perf_counter()
            classifier.classify(backbone, [image])
            predictions.append(time.perf_counter() - start)
    ratios = [p / f for p, f in zip(predictions, floors)]
    return {"backbone": backbone_id, "load_s": load_s, "resident_mb": resident,
            "floor_ms": 1000 * statistics.median(floors), "prediction_ms": 1000 * statistics.median(predictions),
            "ratio": statistics.median(ratios)}


def print_cost() -> None:
    """Print the cost table of Lite0 and the ensemble, with the load average before and after."""
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    rows = [measure(backbone_id) for backbone_id in ("efficientnet_lite0", "lite_ensemble")]
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    print("\n| backbone | load s | resident MB | floor ms/image | first prediction ms | prediction / floor |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backbone']} | {r['load_s']:.1f} | {r['resident_mb']:.0f} | {r['floor_ms']:.0f} | "
              f"{r['prediction_ms']:.0f} | {r['ratio']:.2f} |")
    print(f"\nload average before {' '.join(load_before)}, after {' '.join(load_after)} "
          f"({os.cpu_count()} CPUs; medians of 7 images)")


if __name__ == "__main__":
    print_cost()
