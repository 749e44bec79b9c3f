"""Properties that a plausible one-line slip would break while every other test still passed.

Small synthetic inputs built so that the wrong code gives a different answer, checked against hand
computations or exact counts; no backbone is loaded.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fewshot_demo.bench.compare_run import run_comparison
from fewshot_demo.bench.comparison import ComparisonConfig, ComparisonData
from fewshot_demo.bench.pools import EmbeddedPool
from fewshot_demo.core.classifier import FewShotClassifier
from fewshot_demo.data import splits
from fewshot_demo.data.images import load_image
from fewshot_demo.data.labelled import LoadedData
from fewshot_demo.methods import LinearProbe
from fewshot_demo.methods.matchingnet import MatchingNetwork, matching_log_probs
from fewshot_demo.methods.networks import FeatureProjection
from fewshot_demo.training import task_pools


# ------------------------------------------------------------------------------- Matching Networks
def test_matching_probabilities_are_the_docstring_formula_by_hand(single_thread):
    # p(y | x) = sum_i a(x, x_i) [y_i = y], a = softmax over the support of temperature * cosine.
    support = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])  # labels 0, 1, 1
    query = torch.tensor([[5.0, 0.0]])
    scale = 2.0
    log_probs = matching_log_probs(support, torch.tensor([0, 1, 1]), query, 2, torch.tensor(math.log(scale)))
    weights = [math.exp(scale * cosine) for cosine in (1.0, 0.0, 1 / math.sqrt(2))]
    expected = [weights[0] / sum(weights), (weights[1] + weights[2]) / sum(weights)]
    assert log_probs.shape == (1, 2)
    assert log_probs.exp()[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_matching_probabilities_of_a_query_do_not_depend_on_the_other_queries(single_thread):
    generator = torch.Generator().manual_seed(0)
    support = torch.randn(6, 8, generator=generator)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    queries = torch.randn(5, 8, generator=generator)
    log_temperature = torch.tensor(1.5)
    batch = matching_log_probs(support, labels, queries, 3, log_temperature).exp()  # (5, 3)
    assert torch.allclose(batch.sum(dim=1), torch.ones(5), atol=1e-6)  # one distribution per query
    for row in range(5):
        alone = matching_log_probs(support, labels, queries[row : row + 1], 3, log_temperature).exp()
        assert torch.allclose(alone[0], batch[row], atol=1e-6)

    # The same through the learner, on a (untrained, identity-initialised) projection network.
    learner = MatchingNetwork(FeatureProjection(feature_dim=8, rank=2), log_temperature).fit(support, labels)
    batch = learner.predict_proba(queries)
    assert torch.allclose(batch.sum(dim=1), torch.ones(5), atol=1e-6)
    for row in range(5):
        assert torch.allclose(learner.predict_proba(queries[row : row + 1])[0], batch[row], atol=1e-6)


# ------------------------------------------------------------------------------------- self-check
def test_self_check_leaves_the_item_out_and_reports_its_mistake(single_thread):
    # Class A: three items along e0 and an odd one close to class B (along e1) with a direction of
    # its own (e3). Held out, the odd item is nearest to B: a mistake. A linear probe fitted with it
    # uses e3 to get it right, so a self-check that forgot to leave it out would report no mistake.
    e = torch.eye(6)
    class_a = [e[0] + 0.1 * e[4], e[0] - 0.1 * e[4], e[0] + 0.1 * e[5]]
    odd = 0.8 * e[1] + 0.6 * e[3]
    class_b = [e[1] + 0.1 * e[2], e[1] - 0.1 * e[2], e[1] - 0.1 * e[5]]
    features = torch.stack(class_a + [odd] + class_b)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    classifier = FewShotClassifier("linear", ["A", "B"], features, labels, "synthetic")
    assert classifier.learner.predict(odd[None]).tolist() == [0]  # fitted with it, the probe gets it right

    check = classifier.self_check()
    assert check.confusion.tolist() == [[3, 1], [0, 3]]
    assert check.predictions == [0, 0, 0, 1, 1, 1, 1]
    assert check.confused_pairs == [("A", "B", 1)]
    assert check.accuracy == pytest.approx(6 / 7)
    assert check.per_class == pytest.approx({"A": 0.75, "B": 1.0})


# ------------------------------------------------------------------------------------- comparison
def test_comparison_confusion_has_true_classes_in_rows(single_thread):
    # Every item of "lonely" is farther from the other "lonely" items (cosine -1/8) than from the
    # identical "crowd" items (cosine 1/2), so in 2-way 1-shot episodes each "lonely" query is
    # predicted "crowd", while a "crowd" query has an identical copy in the support: always right.
    crowd = torch.tensor([-1.0, 0.0, 0.0])
    lonely = [
        0.5 * crowd + math.sin(math.pi / 3) * torch.tensor([0.0, math.cos(angle), math.sin(angle)])
        for angle in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)
    ]
    features = torch.stack(lonely + [crowd] * 3)
    data = LoadedData("text", [f"item {i}" for i in range(6)], ["lonely"] * 3 + ["crowd"] * 3)
    pool = EmbeddedPool("text", "synthetic", data.class_names, torch.tensor([0, 0, 0, 1, 1, 1]),
                        lambda kind: features, 0.0, [])
    comparison_data = ComparisonData("asymmetric", data, "synthetic", None, torch.device("cpu"), lambda encoder: pool)
    config = ComparisonConfig(n_way=2, n_shots=(1,), n_query=2, n_episodes=5, methods=("protonet", "linear"),
                              measure_memory=False)
    last = list(run_comparison(comparison_data, config))[-1]
    assert last.kind == "done" and [r.method for r in last.results] == ["protonet", "linear"]
    for result in last.results:
        # rows: true class (lonely, crowd); columns: predicted class. 5 episodes x 2 queries per class.
        assert result.confusion.tolist() == [[0, 10], [0, 10]], result.method
        assert result.per_class_accuracy() == [0.0, 1.0]


# ----------------------------------------------------------------------- meta-training folders
FAKE_STAMP_FOLDERS = (
    "food/fruit",  # evaluation folder
    "food/fruit/cartoon",  # below an evaluation folder
    "food/fruitcake",  # a name that starts like one, but is not below it
    "animals/mammals",  # evaluation folder
    "animals/mammals/bears/cartoon",  # two levels below one
    "animals/insects",  # validation
    "animals/insects/cartoon",  # below a validation folder: neither a training nor a validation class
    "plants/trees",  # validation
    "clothes/hats",  # validation; garments, never Conv-4 base classes
    "clothes/armor/cartoon",  # garments, below clothes
    "vehicles/cars",
    "hobbies",
)


def _is_eval_or_below(folder: str) -> bool:
    return any(folder == root or folder.startswith(root + "/") for root in splits.TUXPAINT_EVAL_FOLDERS)


@pytest.fixture
def fake_stamps(tmp_path) -> Path:
    """A Tux Paint stamps tree of tiny PNGs: 4 per folder, with sub-folders under evaluation folders."""
    for number, folder in enumerate(FAKE_STAMP_FOLDERS):
        (tmp_path / folder).mkdir(parents=True)
        for index in range(splits.TUXPAINT_MIN_IMAGES):
            Image.new("RGB", (4, 4), (number * 20, index * 40, 0)).save(tmp_path / folder / f"stamp{index}.png")
    return tmp_path


def test_evaluation_folders_and_their_sub_folders_never_reach_meta_training(fake_stamps, monkeypatch):
    assert splits.is_eval_folder("food/fruit/cartoon") and splits.is_eval_folder("animals/mammals/bears/cartoon")
    assert not splits.is_eval_folder("food/fruitcake")
    # tuxpaint_pool reads the stamps folder from the settings; features are made up, not embedded.
    from fewshot_demo.config.settings import settings

    monkeypatch.setenv("TUXPAINT_STAMPS_DIR", str(fake_stamps))
    settings.cache_clear()
    paths = sorted(p.relative_to(fake_stamps).as_posix() for p in fake_stamps.rglob("*.png"))
    features = {path: torch.full((3,), float(i)) for i, path in enumerate(paths)}
    monkeypatch.setattr(task_pools, "tuxpaint_features", lambda backbone_id="efficientnet_lite0", root=None: features)

    train_pool = task_pools.tuxpaint_pool("train")
    val_pool = task_pools.tuxpaint_pool("val")
    assert not [f for f in train_pool.class_names + val_pool.class_names if _is_eval_or_below(f)]
    # Validation folders are held out with everything below them too (animals/insects/cartoon).
    assert sorted(train_pool.class_names) == ["clothes/armor/cartoon", "food/fruitcake", "hobbies", "vehicles/cars"]
    assert sorted(val_pool.class_names) == ["animals/insects", "clothes/hats", "plants/trees"]
    assert len(train_pool.items) == 4 * splits.TUXPAINT_MIN_IMAGES


def test_stamp_base_folders_leave_out_garments_and_everything_below(fake_stamps):
    folders = splits.stamp_base_folders(root=fake_stamps)
    assert sorted(folders) == sorted(
        f"tuxpaint/{f}" for f in FAKE_STAMP_FOLDERS if f != "clothes" and not f.startswith("clothes/")
    )
    assert all(len(files) == splits.TUXPAINT_MIN_IMAGES for files in folders.values())


# ------------------------------------------------------------------------------------------ images
def test_exif_rotated_jpeg_is_loaded_as_displayed(tmp_path):
    # Stored 60 wide x 30 high, red in the top-left corner. EXIF orientation 6 says: turn it 90 degrees
    # clockwise to display, so it shows 30 wide x 60 high with the red corner at the top right.
    stored = Image.new("RGB", (60, 30), (255, 255, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)

    image = load_image(path)
    assert image.size == (30, 60)
    pixels = np.asarray(image).astype(int)  # (height, width, 3)
    red, white = np.array([255, 0, 0]), np.array([255, 255, 255])
    assert np.abs(pixels[2:18, 22:28] - red).max() < 40  # top right: the red corner
    assert np.abs(pixels[2:18, 2:8] - white).max() < 40  # top left: white
    assert np.abs(pixels[42:58, 22:28] - white).max() < 40  # bottom right: white


# --------------------------------------------------------------------------------- linear probe
def test_linear_probe_predicts_with_its_learned_bias(single_thread):
    # 8, 2 and 1 support items: the fitted bias favours the large class, so it must be in the logits.
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(torch.tensor([8, 2, 1]))
    support = 2.0 * torch.eye(5)[labels] + 0.5 * torch.randn(11, 5, generator=generator)  # signed: no power transform
    queries = torch.randn(6, 5, generator=generator)
    probe = LinearProbe().fit(support, labels)
    state = probe.state_dict()
    weight, bias = state["weight"], state["bias"]
    assert not state["normalizer.apply_power"]
    assert bias[0] > bias[2] and float(bias.max() - bias.min()) > 0.5

    # By hand: L2, centre on the normalised support mean, L2 again; then softmax(W x + b).
    centre = F.normalize(support, dim=-1).mean(dim=0)
    normalized = F.normalize(F.normalize(queries, dim=-1) - centre, dim=-1)  # (6, 5)
    expected = torch.softmax(normalized @ weight.T + bias, dim=1)  # (6, 3)
    probabilities = probe.predict_proba(queries)
    assert torch.allclose(probabilities, expected, atol=1e-5)
    assert probe.predict(queries).tolist() == expected.argmax(dim=1).tolist()
    without_bias = torch.softmax(normalized @ weight.T, dim=1)
    assert (expected - without_bias).abs().max() > 0.1  # the check above can tell them apart
