"""Inductive heads tried on the ``lite_ensemble`` features against the transductive BD-CSPN:
base-data centring, distribution calibration and support-side augmentation, on the bench's episodes.

    python -m fewshot_demo.bench.bundled_tried                      # 600 episodes, seed 0, all three sets (slow: DC)
    python -m fewshot_demo.bench.bundled_tried --episodes 150 --seed 1 --sets tuxpaint   # a screen

Every head is inductive: it is fitted on the support set (and, where said, on base data), and a query
is classified on its own. *Base data*: the Tux Paint stamp folders of the image track's training split
that are neither an evaluation folder, a drawing folder (``bundled.DRAWING_FOLDERS``), a folder below
one, a folder above one (``plants`` holds flowers) nor garments (``clothes``, the Fashion-MNIST
classes' kind of object): 27 folders, mostly symbols, letters, coins and vehicles. Its features are
embedded once and cached on disk like the pools'. *Views*: six extra views of each support image
(a centre crop to 80%, the image shrunk on a 125% canvas, rotations by +-12 degrees, the top-left and
bottom-right 85% crops), embedded by the same backbone; only the support uses them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from fewshot_demo.bench.builtin_pools import FEATURE_CACHE_VERSION, cached_features, feature_cache_dir
from fewshot_demo.bench.bundled import DRAWING_FOLDERS, ENSEMBLE, LITE0, N_QUERY, SET_LABELS, BDCSPNReference, \
    episode_arguments, load_drawings, pool_features
from fewshot_demo.core.evaluation import mean_and_ci95, paired_difference
from fewshot_demo.data.builtin import load_dataset
from fewshot_demo.data.episodes import EpisodeConfig, sample_episodes
from fewshot_demo.data.images import load_image
from fewshot_demo.data.labelled import LoadedData, small
from fewshot_demo.data.splits import STAMP_EXCLUDED_FOLDERS, TUXPAINT_EVAL_FOLDERS, is_under, tuxpaint_folders, \
    tuxpaint_split_folders
from fewshot_demo.encoders.image import load_backbone
from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.features import FeatureNormalizer, NormalizationConfig, class_means
from fewshot_demo.methods.linear import LinearProbe
from fewshot_demo.methods.protonet import PrototypicalNetwork
from fewshot_demo.runtime.device import pick_device

#: The extra views of a support image, as (kind, argument): crop (x fraction, y fraction, side), pad, rotate.
VIEWS = (("crop", (0.5, 0.5, 0.8)), ("pad", 1.25), ("rotate", 12), ("rotate", -12),
         ("crop", (0.0, 0.0, 0.85)), ("crop", (1.0, 1.0, 0.85)))


def base_folders() -> list[str]:
    """The base-data folders (see the module docstring)."""
    held = tuple(TUXPAINT_EVAL_FOLDERS) + tuple(DRAWING_FOLDERS)
    return [f for f in tuxpaint_split_folders("train")
            if not is_under(f, held + STAMP_EXCLUDED_FOLDERS) and not any(h.startswith(f + "/") for h in held)]


def base_features(encoder_id: str, device: torch.device) -> tuple[Tensor, Tensor]:
    """(n_base, d) features and (n_base,) folder labels of the base data, embedded once and cached."""
    folders, files = base_folders(), tuxpaint_folders()
    items, labels = [], []
    for index, folder in enumerate(folders):
        for path in files[folder]:
            items.append(small(load_image(path)))
            labels.append(index)
    data = LoadedData("image", items, [str(label) for label in labels], ())
    cache = feature_cache_dir() / f"bundled-v{FEATURE_CACHE_VERSION}-base-{encoder_id}-{len(items)}.pt"
    features = cached_features(cache, data, encoder_id, device)
    if features is None:
        features = load_backbone(encoder_id, device).embed(items)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(features.cpu(), cache)
    return features.float(), torch.tensor(labels)


def views(image: Image.Image) -> list[Image.Image]:
    """The ``VIEWS`` of one image; new canvas and corners are filled with its top-left pixel's colour."""
    image = image.convert("RGB")
    width, height = image.size
    fill = image.getpixel((0, 0))
    out = []
    for kind, argument in VIEWS:
        if kind == "crop":
            fx, fy, side = argument
            w, h = int(width * side), int(height * side)
            x, y = int((width - w) * fx), int((height - h) * fy)
            out.append(image.crop((x, y, x + w, y + h)))
        elif kind == "pad":
            canvas = Image.new("RGB", (int(width * argument), int(height * argument)), fill)
            canvas.paste(image, ((canvas.width - width) // 2, (canvas.height - height) // 2))
            out.append(canvas)
        else:
            out.append(image.rotate(argument, resample=Image.Resampling.BICUBIC, fillcolor=fill))
    return out


def view_features(set_id: str, encoder_id: str, device: torch.device) -> Tensor:
    """(n_items, 1 + len(VIEWS), d): each pool item's features, then its views', cached on disk."""
    features, _ = pool_features(set_id, encoder_id, device)
    items = load_drawings().items if set_id == "drawings" else load_dataset(set_id).items
    cache = feature_cache_dir() / f"bundled-v{FEATURE_CACHE_VERSION}-views-{set_id}-{encoder_id}-{len(items)}.pt"
    if cache.is_file():
        extra = torch.load(cache, map_location="cpu", weights_only=True)
    else:
        extra = load_backbone(encoder_id, device).embed([v for item in items for v in views(item)])
        extra = extra.view(len(items), len(VIEWS), -1).cpu()
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(extra, cache)
    return torch.cat([features[:, None].float(), extra.float()], dim=1)


class BaseCentredNormalizer(FeatureNormalizer):
    """The power transform and L2 of ``FeatureNormalizer``, centred on ``mix`` x the base-data mean plus
    (1 - mix) x the support mean (both after the power transform and L2)."""

    def __init__(self, base: Tensor, mix: float) -> None:
        super().__init__()
        self.base, self.mix = base, mix

    def fit(self, support: Tensor) -> BaseCentredNormalizer:
        super().fit(support)
        self.center = self.mix * self._pre_center(self.base).mean(0) + (1 - self.mix) * self.center
        return self


def base_centred(head: Callable[[], FewShotLearner], base: Tensor, mix: float) -> Callable[[], FewShotLearner]:
    """``head`` (``protonet``'s or ``linear``'s learner) with its normaliser centred partly on the base data."""
    def build() -> FewShotLearner:
        learner = head()
        learner.normalizer = BaseCentredNormalizer(base, mix)
        return learner
    return build


class DistributionCalibration(FewShotLearner):
    """Distribution calibration (Yang, Liu & Xu, ICLR 2021, "Free Lunch for Few-shot Learning").

    On power-transformed (square root), L2-normalised features: each support feature borrows the
    statistics of its ``k`` nearest base classes (by class mean): a calibrated mean (their means and
    itself, averaged) and covariance (their covariances, averaged, plus ``alpha`` x the mean base
    variance on the diagonal); ``samples`` features per class are drawn from these Gaussians (seeded),
    and a logistic regression (``LinearProbe``, centred on the support mean) is trained on the support
    and the samples. Base covariances are those of a few images each: sampled through their centred
    features, never formed.
    """

    def __init__(self, base: Tensor, base_labels: Tensor, k: int = 2, samples: int = 100, alpha: float = 1.0,
                 seed: int = 0) -> None:
        super().__init__()
        self.k, self.samples, self.alpha, self.seed = k, samples, alpha, seed
        z = self._transform(base)
        n_classes = int(base_labels.max()) + 1
        self.means = class_means(z, base_labels, n_classes)
        self.centred = [z[base_labels == c] - self.means[c] for c in range(n_classes)]
        self.variance = (z - self.means[base_labels]).pow(2).sum(1).mean() / z.shape[1]
        self.head = LinearProbe(NormalizationConfig(power=None, center=False))
        self.center: Tensor | None = None

    @staticmethod
    def _transform(features: Tensor) -> Tensor:
        return F.normalize(features.float().clamp_min(0).sqrt(), dim=1)

    def fit(self, support: Tensor, support_labels: Tensor) -> DistributionCalibration:
        self.n_way = check_support(support, support_labels)
        generator = torch.Generator().manual_seed(self.seed)
        z = self._transform(support)
        per_point = max(1, self.samples // int((support_labels == 0).sum()))
        points, labels = [z], [support_labels]
        for x, label in zip(z, support_labels):
            nearest = torch.cdist(x[None], self.means)[0].topk(self.k, largest=False).indices.tolist()
            drawn = ((self.means[nearest].sum(0) + x) / (self.k + 1)).expand(per_point, -1).clone()
            for c in nearest:
                if self.centred[c].shape[0] > 1:
                    weights = torch.randn(per_point, self.centred[c].shape[0], generator=generator)
                    drawn += weights @ self.centred[c] / ((self.centred[c].shape[0] - 1) * self.k) ** 0.5
            drawn += (self.alpha * self.variance) ** 0.5 * torch.randn(per_point, z.shape[1], generator=generator)
            points.append(drawn)
            labels.append(label.expand(per_point))
        self.center = z.mean(0)  # the support mean, as `protonet` and `linear` centre
        self.head.fit(torch.cat(points) - self.center, torch.cat(labels))
        return self

    def predict_proba(self, query: Tensor) -> Tensor:
        self._require_fitted()
        return self.head.predict_proba(self._transform(query) - self.center)


class AugmentedSupport(FewShotLearner):
    """A head fitted on every support image's features and its views' (``(n, 1 + views, d)`` items):
    each view is one more support point of its image's class. A query is read without its views."""

    def __init__(self, head: Callable[[], FewShotLearner]) -> None:
        super().__init__()
        self.head = head()

    def fit(self, support: Tensor, support_labels: Tensor) -> AugmentedSupport:
        self.n_way = check_support(support[:, 0], support_labels)
        self.head.fit(support.flatten(0, 1), support_labels.repeat_interleave(support.shape[1]))
        return self

    def predict_proba(self, query: Tensor) -> Tensor:
        return self.head.predict_proba(query[:, 0])


def rows(base: Tensor, base_labels: Tensor) -> list[tuple[str, str, Callable[[], FewShotLearner], bool]]:
    """(label, backbone, learner, reads views) per row; the base data is the ensemble's."""
    protonet, linear = PrototypicalNetwork, LinearProbe
    return [
        ("Lite0, `protonet_plain` (PT + C)", LITE0, protonet, False),
        ("Lite0, `linear`", LITE0, linear, False),
        ("Lite0, BD-CSPN (transductive peer)", LITE0, BDCSPNReference, False),
        ("Lite0+1+2, `protonet` (PT + C)", ENSEMBLE, protonet, False),
        ("Lite0+1+2, `linear`", ENSEMBLE, linear, False),
        ("Lite0+1+2, `linear`, C = 100", ENSEMBLE, lambda: LinearProbe(inverse_regularization=100.0), False),
        ("Lite0+1+2, prototypes centred halfway to the base mean", ENSEMBLE, base_centred(protonet, base, 0.5), False),
        ("Lite0+1+2, prototypes centred on the base mean", ENSEMBLE, base_centred(protonet, base, 1.0), False),
        ("Lite0+1+2, `linear` centred on the base mean", ENSEMBLE, base_centred(linear, base, 1.0), False),
        ("Lite0+1+2, distribution calibration (k 2, 100 samples per class)", ENSEMBLE,
         lambda: DistributionCalibration(base, base_labels), False),
        ("Lite0+1+2, `protonet` on the support and its 6 views", ENSEMBLE, lambda: AugmentedSupport(protonet), True),
        ("Lite0+1+2, `linear` on the support and its 6 views", ENSEMBLE, lambda: AugmentedSupport(linear), True),
    ]


def run_set(set_id: str, shots: Sequence[int], n_episodes: int, seed: int, device: torch.device,
            with_views: bool) -> list[dict]:
    """Every row on the same episodes; differences paired with the ensemble's shipped best inductive
    head at that shot (`protonet` at 1 shot, `linear` otherwise) and with Lite0's BD-CSPN."""
    base, base_labels = base_features(ENSEMBLE, device)
    items = {LITE0: pool_features(set_id, LITE0, device)[0], ENSEMBLE: pool_features(set_id, ENSEMBLE, device)[0]}
    labels = pool_features(set_id, ENSEMBLE, device)[1]
    if with_views:
        items["views"] = view_features(set_id, ENSEMBLE, device)
    results = []
    for n_shot in shots:
        episodes = sample_episodes(labels.tolist(), EpisodeConfig(5, n_shot, N_QUERY[set_id]), n_episodes, seed)
        accuracies = {}
        for label, encoder_id, build, reads_views in rows(base, base_labels):
            if reads_views and not with_views:
                continue
            pool = items["views" if reads_views else encoder_id]
            run = []
            for episode in episodes:
                support, query = episode.split(pool)
                with torch.no_grad():
                    predicted = build().fit(support, episode.support_labels).predict(query)
                run.append((predicted == episode.query_labels).float().mean().item())
            accuracies[label] = run
        reference = "Lite0+1+2, `protonet` (PT + C)" if n_shot == 1 else "Lite0+1+2, `linear`"
        for label, run in accuracies.items():
            accuracy, ci95 = mean_and_ci95(run)
            results.append({"set": set_id, "row": label, "n_shot": n_shot, "accuracy": accuracy, "ci95": ci95,
                            "vs_best": paired_difference(run, accuracies[reference]),
                            "vs_bdcspn": paired_difference(run, accuracies["Lite0, BD-CSPN (transductive peer)"])})
    return results


def markdown_table(results: list[dict]) -> str:
    """Per data set and shot: accuracy +- CI, and the two paired differences, in points."""
    lines = []
    for set_id in dict.fromkeys(r["set"] for r in results):
        lines += ["", f"**{SET_LABELS[set_id]}**", "",
                  "| features and head | shots | accuracy | vs the shipped best inductive | vs Lite0 BD-CSPN |",
                  "|---|---:|---:|---:|---:|"]
        for r in (r for r in results if r["set"] == set_id):
            (best, best_ci), (bd, bd_ci) = r["vs_best"], r["vs_bdcspn"]
            lines.append(f"| {r['row']} | {r['n_shot']} | {100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f} | "
                         f"{100 * best:+.1f} ± {100 * best_ci:.1f} | {100 * bd:+.1f} ± {100 * bd_ci:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = episode_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--view-sets", nargs="*", default=["tuxpaint", "drawings"], choices=list(N_QUERY),
                        help="the sets whose support views are embedded (6 forward passes per image, cached)")
    args = parser.parse_args(argv)
    device = pick_device(None)
    torch.set_num_threads(1)
    results = [r for set_id in args.sets
               for r in run_set(set_id, args.shots, args.episodes, args.seed, device, set_id in args.view_sets)]
    print(f"5-way, {args.episodes} episodes per shot, seed {args.seed}; accuracy and paired differences in "
          f"points, 95% CI (1.96 x std / sqrt({args.episodes}))")
    print(markdown_table(results))


if __name__ == "__main__":
    main()
