"""The bundled weights at their best: EfficientNet-Lite0 against the ``lite_ensemble`` backbone (Lite0 +
Lite1 + Lite2, flip-averaged), inductive heads against the transductive peers, on the same episodes.

    python -m fewshot_demo.bench.bundled                       # the accuracy table (600 episodes, 1- and 5-shot)
    python -m fewshot_demo.bench.bundled --latency             # and the cost against Lite0
    python -m fewshot_demo.bench.bundled --episodes 20 --sets tuxpaint   # a quick look

Three data sets: the Tux Paint photos (the bench's built-in pool), Tux Paint's drawn stamps (a domain
shift: line art and clip art, none of them among the photos) and the Fashion-MNIST held-out classes
(grayscale garments through the ImageNet backbones). Features are embedded once per backbone and
cached on disk (``feature_cache_dir``), so a second run only runs episodes. Every row sees the same
episodes; each difference is paired with the first row of its data set (Lite0, cosine prototypes).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from fewshot_demo.bench.builtin_pools import FEATURE_CACHE_VERSION, builtin_pool, cached_features, feature_cache_dir
from fewshot_demo.bench.bundled_cost import print_cost
from fewshot_demo.bench.pools import embed_pool
from fewshot_demo.core.evaluation import mean_and_ci95, paired_difference
from fewshot_demo.core.runner import run_episodes
from fewshot_demo.data.episodes import EpisodeConfig, remap_labels, sample_episodes
from fewshot_demo.data.images import load_image
from fewshot_demo.data.labelled import LoadedData, small
from fewshot_demo.data.splits import tuxpaint_stamps_dir
from fewshot_demo.methods import LearnerContext
from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.features import NormalizationConfig, class_means
from fewshot_demo.methods.protonet import PrototypicalNetwork
from fewshot_demo.runtime.device import pick_device

#: Tux Paint's drawn stamps with at least 8 drawings (none is a photo, none is in the photo pool):
#: 9 classes, 117 drawings; 5-shot episodes keep 3 queries per class.
DRAWING_FOLDERS = (
    "town/houses/cartoon", "food/fruit/cartoon", "animals/insects/cartoon", "town/cartoon", "town/monuments/cartoon",
    "vehicles/locomotive/cartoon", "symbols/chess", "symbols/music", "seasonal/easter",
)
#: Queries per class on each data set: as many as its smallest class allows at 5-shot (at most 15).
N_QUERY = {"tuxpaint": 6, "drawings": 3, "fashion_mnist": 15}
SET_LABELS = {"tuxpaint": "Tux Paint photos (9 classes)", "drawings": "Tux Paint drawings (9 classes, domain shift)",
              "fashion_mnist": "Fashion-MNIST held-out classes (5 classes, domain shift)"}
ENSEMBLE = "lite_ensemble"
LITE0 = "efficientnet_lite0"


def load_drawings(root: Path | None = None) -> LoadedData:
    """The drawn stamps of ``DRAWING_FOLDERS``, one class per folder (only the files directly in it)."""
    root = root or tuxpaint_stamps_dir()
    items, labels = [], []
    for folder in DRAWING_FOLDERS:
        for path in sorted((root / folder).glob("*.png")):
            items.append(small(load_image(path)))
            labels.append(folder)
    return LoadedData("image", items, labels, (f"{len(items)} drawings in {len(DRAWING_FOLDERS)} Tux Paint folders",))


class CosinePrototypes(PrototypicalNetwork):
    """SimpleShot's L2N (Wang et al. 2019): cosine similarity to the mean of the L2-normalised support
    features, no power transform, no centring: the plain baseline of DATA.md's table."""

    def __init__(self) -> None:
        super().__init__(NormalizationConfig(power=None, center=False))


class BDCSPNReference(FewShotLearner):
    """BD-CSPN (Liu et al., ECCV 2020) as easyfsl implements it: the transductive peer of DATA.md.

    The queries are shifted by the support-minus-query mean, then each prototype becomes the average of
    its support features and the queries predicted in its class, weighted by exp(cosine); the queries
    are classified by cosine similarity to those prototypes. Uses the whole query batch.
    """

    def fit(self, support: Tensor, support_labels: Tensor) -> BDCSPNReference:
        self.n_way = check_support(support, support_labels)
        self.support, self.labels = support.float(), support_labels
        return self

    def predict_proba(self, query: Tensor) -> Tensor:
        def cosine(x: Tensor, prototypes: Tensor) -> Tensor:
            return F.normalize(x, dim=1) @ F.normalize(prototypes, dim=1).T  # (n, n_way)

        query = query.float()
        prototypes = class_means(self.support, self.labels, self.n_way)
        shifted = query + (self.support.mean(0, keepdim=True) - query.mean(0, keepdim=True))
        support_weight = F.one_hot(self.labels, self.n_way) * cosine(self.support, prototypes).exp()
        query_weight = cosine(shifted, prototypes).exp()
        query_weight = F.one_hot(query_weight.argmax(1), self.n_way) * query_weight
        total = support_weight.sum(0) + query_weight.sum(0)  # (n_way,)
        prototypes = (support_weight / total).T @ self.support + (query_weight / total).T @ shifted
        return cosine(query, prototypes).softmax(dim=1)


@dataclass(frozen=True)
class Row:
    """One line of the table: a learner on one backbone's features."""

    label: str
    encoder_id: str
    method: str | Callable[[], FewShotLearner]
    transductive: bool = False


ROWS = (
    Row("Lite0, cosine prototypes (SimpleShot L2N)", LITE0, CosinePrototypes),
    # Lite0's head without its meta-trained map: the ensemble's `protonet` row is this same head (no
    # checkpoint exists for the ensemble), and the drawings share classes with the map's training folders.
    Row("Lite0, `protonet_plain` (power transform, centred on the support mean)", LITE0, "protonet_plain"),
    Row("Lite0, `linear`", LITE0, "linear"),
    Row("Lite0+1+2, cosine prototypes", ENSEMBLE, CosinePrototypes),
    Row("Lite0+1+2, `protonet` (power transform, centred on the support mean)", ENSEMBLE, "protonet"),
    Row("Lite0+1+2, `linear`", ENSEMBLE, "linear"),
    Row("Lite0, BD-CSPN (transductive peer)", LITE0, BDCSPNReference, transductive=True),
    Row("Lite0+1+2, BD-CSPN (transductive)", ENSEMBLE, BDCSPNReference, transductive=True),
)


def pool_features(set_id: str, encoder_id: str, device: torch.device) -> tuple[Tensor, Tensor]:
    """(n_items, d) features and (n_items,) labels of a data set, embedded once and cached on disk."""
    if set_id != "drawings":
        pool = builtin_pool(set_id, encoder_id, device)
        return pool.prepare("features"), pool.labels
    data = load_drawings()
    cache = feature_cache_dir() / f"bundled-v{FEATURE_CACHE_VERSION}-drawings-{encoder_id}-{len(data.items)}.pt"
    features = cached_features(cache, data, encoder_id, device)
    pool = embed_pool(data, encoder_id, device, features=features, progress=True)
    if features is None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(pool.prepare("features").cpu(), cache)
    return pool.prepare("features"), remap_labels(data.labels)[1]


def run_set(set_id: str, shots: Sequence[int], n_episodes: int, seed: int, device: torch.device,
            rows: Sequence[Row] = ROWS) -> list[dict]:
    """Every row on the same episodes of one data set; differences paired with the first row."""
    pools = {encoder_id: pool_features(set_id, encoder_id, device) for encoder_id in dict.fromkeys(r.encoder_id for r in rows)}
    labels = next(iter(pools.values()))[1]
    results = []
    for n_shot in shots:
        episodes = sample_episodes(labels.tolist(), EpisodeConfig(5, n_shot, N_QUERY[set_id]), n_episodes, seed)
        baseline = None
        for row in rows:
            features = pools[row.encoder_id][0]
            run = run_episodes(row.method, features, episodes, context=LearnerContext(row.encoder_id, features.shape[1], device))
            accuracy, ci95 = mean_and_ci95(run.accuracies)
            baseline = baseline or run.accuracies
            difference, difference_ci = paired_difference(run.accuracies, baseline)
            results.append({"set": set_id, "row": row.label, "encoder": row.encoder_id, "transductive": row.transductive,
                            "n_shot": n_shot, "accuracy": accuracy, "ci95": ci95, "difference": difference,
                            "difference_ci95": difference_ci, "ms_per_episode": run.summary().ms_per_episode})
    return results


def markdown_table(results: list[dict]) -> str:
    """One table per data set: accuracy +- CI per shot, and the paired difference to its first row, in points."""
    lines = []
    for set_id in dict.fromkeys(r["set"] for r in results):
        chosen = [r for r in results if r["set"] == set_id]
        shots = list(dict.fromkeys(r["n_shot"] for r in chosen))
        lines += ["", f"**{SET_LABELS[set_id]}**", "",
                  "| features and head | " + " | ".join(f"{k}-shot | vs first row" for k in shots) + " |",
                  "|---|" + "---:|---:|" * len(shots)]
        for label in dict.fromkeys(r["row"] for r in chosen):
            cells = []
            for k in shots:
                r = next(r for r in chosen if r["row"] == label and r["n_shot"] == k)
                cells += [f"{100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f}",
                          f"{100 * r['difference']:+.1f} ± {100 * r['difference_ci95']:.1f}"]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def episode_arguments(description: str) -> argparse.ArgumentParser:
    """The command line these benches share: which data sets and shots, how many episodes, which seed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sets", nargs="+", default=list(N_QUERY), choices=list(N_QUERY))
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = episode_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--latency", action="store_true", help="also time the ensemble against Lite0 (bench.bundled_cost)")
    args = parser.parse_args(argv)
    device = pick_device(None)
    results = [r for set_id in args.sets for r in run_set(set_id, args.shots, args.episodes, args.seed, device)]
    print(f"5-way, {args.episodes} episodes per shot, seed {args.seed}; accuracy and paired difference in points, "
          f"95% CI (1.96 x std / sqrt({args.episodes}))")
    print(markdown_table(results))
    if args.latency:
        print_cost()


if __name__ == "__main__":
    main()
