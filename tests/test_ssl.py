"""Self-supervised pretraining (SimCLR, masked autoencoder): the pieces, the loop that never reads a
label, the command, the third family in the registry and the comparison, and (test-sized evidence)
the shipped encoders beat the same Conv-4 with random weights on held-out classes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fewshot_demo.data.views import ViewConfig, apply_views, draw_views
from fewshot_demo.methods.mae import draw_patch_masks, normalise_patches, pixel_mask
from fewshot_demo.methods.simclr import nt_xent
from fewshot_demo.runtime.distributed import World
from fewshot_demo.training.config import TrainConfig
from fewshot_demo.training.loop import meta_train
from fewshot_demo.training.task_pools import TaskPool

pytestmark = pytest.mark.usefixtures("single_thread")


def _blobs(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 1, 28, 28) bright squares of random size and place on the -1 background."""
    generator = np.random.default_rng(seed)
    images = torch.full((n, 1, 28, 28), -1.0)
    for image in images:
        side = int(generator.integers(6, 14))
        top, left = generator.integers(2, 26 - side, size=2)
        image[0, top : top + side, left : left + side] = 1.0
    return images


# --------------------------------------------------------------------------------------------- views
def test_views_without_change_are_the_image_and_a_split_batch_gets_the_same_views():
    images = _blobs(6)
    identity = ViewConfig(min_area=1.0, max_aspect=1.0, contrast=0.0, noise=0.0)
    assert torch.allclose(apply_views(images, draw_views(6, identity, np.random.default_rng(0))), images, atol=1e-5)
    params = draw_views(6, ViewConfig(flip=True), np.random.default_rng(1))
    whole = apply_views(images, params)
    part = np.array([4, 1])
    assert torch.allclose(apply_views(images[part], params.take(part)), whole[part], atol=1e-6)
    assert not torch.allclose(whole, images)
    assert whole.min() >= -1 and whole.max() <= 1


def test_views_keep_the_background_and_crop_into_the_image():
    images = _blobs(20)
    views = apply_views(images, draw_views(20, ViewConfig(min_area=0.5, noise=0.0), np.random.default_rng(0)))
    corners = views[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.allclose(corners, torch.full_like(corners, -1.0))  # edges repeat the background
    bright = (views > 0).flatten(1).sum(1).float()
    assert (bright >= (images > 0).flatten(1).sum(1).float() * 0.9).float().mean() > 0.5  # crops zoom in
    with pytest.raises(ValueError, match="fraction"):
        ViewConfig(min_area=0.0)


# ------------------------------------------------------------------------------------------ the losses
def test_nt_xent_is_the_cross_entropy_of_each_view_against_the_other_views():
    first = F.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    second = F.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    loss, _ = nt_xent(first, second, np.arange(4), temperature=0.5)
    views = torch.cat([first, second])
    expected = 0.0
    for anchor in range(8):
        positive = (anchor + 4) % 8
        others = [j for j in range(8) if j != anchor]
        logits = torch.stack([views[anchor] @ views[j] / 0.5 for j in others])
        expected += -(views[anchor] @ views[positive] / 0.5 - torch.logsumexp(logits, 0))
    assert math.isclose(float(loss), float(expected), rel_tol=1e-5)
    # Anchors split over processes add up to the whole batch's loss.
    halves = sum(float(nt_xent(first, second, rows, 0.5)[0]) for rows in (np.arange(2), np.arange(2, 4)))
    assert math.isclose(halves, float(loss), rel_tol=1e-5)
    matched, hits = nt_xent(first, first.clone(), np.arange(4), 0.5)
    assert float(matched) < float(loss) and int(hits) == 8  # identical views: every positive is the nearest


def test_masks_hide_three_quarters_of_the_patches_and_only_hidden_pixels_count():
    masks = draw_patch_masks(10, 7, 0.75, np.random.default_rng(0))
    assert masks.shape == (10, 7, 7) and (masks.reshape(10, -1).sum(1) == 37).all()
    assert len({m.tobytes() for m in masks}) == 10
    pixels = pixel_mask(torch.as_tensor(masks), 4)
    assert pixels.shape == (10, 1, 28, 28) and torch.equal(pixels[:, 0, ::4, ::4].bool(), torch.as_tensor(masks))

    from fewshot_demo.methods.mae import MAE_RECIPE
    from fewshot_demo.methods.networks import Conv4

    torch.manual_seed(0)
    network = Conv4(hidden=16)
    config = TrainConfig(method="mae", backbone="pixels28", hidden=16, batch_size=8)
    seen = []
    encode = network.forward
    network.forward = lambda images: seen.append(images) or encode(images)
    loss, _ = MAE_RECIPE.batch_loss(network, MAE_RECIPE.init_heads(network, config), config, _blobs(8),
                                    np.random.default_rng(3), World())
    assert torch.isfinite(loss) and loss.item() > 0
    hidden_share = (seen[0] == 0).float().mean()  # the encoder sees the hidden patches as mid-grey
    assert 0.70 <= float(hidden_share) <= 0.80


def test_the_normalised_pixel_target_gives_each_patch_mean_zero_and_spread_one():
    images = _blobs(3) * 0.5 + torch.linspace(0, 0.4, 28).view(1, 1, 1, 28)  # brightness varies across the image
    target = normalise_patches(images, 4)
    patches = target.unfold(2, 4, 4).unfold(3, 4, 4).reshape(3, 7, 7, 16)
    varied = images.unfold(2, 4, 4).unfold(3, 4, 4).reshape(3, 7, 7, 16).std(-1) > 1e-3
    assert torch.allclose(patches.mean(-1), torch.zeros(3, 7, 7), atol=1e-5)
    assert torch.allclose(patches[varied].std(-1, unbiased=False), torch.ones(int(varied.sum())), atol=1e-2)
    # Each patch keeps its own pattern: a patch and the same patch brighter give the same target.
    assert torch.allclose(normalise_patches(images + 0.3, 4), target, atol=1e-4)


def test_the_self_supervised_learners_are_a_linear_head_on_the_frozen_encoder():
    from fewshot_demo.methods.encoder_probe import EncoderLinearProbe
    from fewshot_demo.methods.linear import LinearProbe
    from fewshot_demo.methods.networks import Conv4

    torch.manual_seed(0)
    network = Conv4(hidden=16)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    images, labels = _blobs(12), torch.arange(3).repeat(4)
    learner = EncoderLinearProbe(network).fit(images[:9], labels[:9])
    with torch.no_grad():
        expected = LinearProbe().fit(network(images[:9]), labels[:9]).predict_proba(network(images[9:]))
    assert torch.allclose(learner.predict_proba(images[9:]), expected, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())  # frozen
    restored = EncoderLinearProbe(network)
    restored.load_state_dict(learner.state_dict())
    assert torch.equal(restored.predict_proba(images[9:]), learner.predict_proba(images[9:]))


# ------------------------------------------------------------------------------------------- the loop
@pytest.mark.parametrize("method", ["simclr", "mae"])
def test_pretraining_never_reads_a_label_and_improves_its_own_loss(method):
    images = _blobs(64)
    config = TrainConfig(method=method, backbone="pixels28", hidden=16, batch_size=32, iterations=12,
                         val_every=100, val_episodes=4, meta_lr=3e-3, n_shots=(1,))
    val_pool = TaskPool(_blobs(20, seed=1), torch.arange(5).repeat_interleave(4), [f"v{i}" for i in range(5)])
    runs = []
    for labels in (torch.zeros(64, dtype=torch.long), torch.randperm(64, generator=torch.Generator().manual_seed(0)) % 7):
        pool = TaskPool(images, labels, [f"c{i}" for i in range(7)])
        state, _ = meta_train(config, pool, val_pool, torch.device("cpu"), progress=False, log=lambda _: None)
        runs.append(state)
    # Whatever the labels say, the weights are the same: they were never read.
    for (name, first), second in zip(runs[0].network.state_dict().items(), runs[1].network.state_dict().values()):
        assert torch.equal(first, second), name


def test_dry_run_writes_a_checkpoint_of_the_encoder_alone(tmp_path):
    from fewshot_demo.methods.checkpoint_store import load_checkpoint
    from fewshot_demo.train import main

    for method in ("simclr", "mae"):
        try:
            main(["--method", method, "--backbone", "pixels28", "--dry-run", "--no-progress", "--batch-size", "32",
                  "--out", str(tmp_path / method)])
        except SystemExit as stop:
            pytest.skip(f"grayscale data not installed ({stop})")
        checkpoint = load_checkpoint(tmp_path / method, method=method, backbone_id="pixels28")
        assert checkpoint.extras == {}  # the projection head / decoder were dropped
        assert checkpoint.config["ssl"]["labels_read"] is False
        assert checkpoint.config["command"].startswith(f"python -m fewshot_demo.train --method {method}")


def test_pretraining_on_a_folder_of_ones_own_images(tmp_path):
    from PIL import Image

    from fewshot_demo.methods.checkpoint_store import load_checkpoint
    from fewshot_demo.train import main

    folder = tmp_path / "images" / "any" / "depth"
    folder.mkdir(parents=True)
    for index, image in enumerate(_blobs(12)):
        Image.fromarray(((image[0].numpy() + 1) * 127.5).astype(np.uint8)).save(folder / f"{index}.png")
    (folder / "notes.txt").write_text("not an image")
    try:
        main(["--method", "simclr", "--backbone", "pixels28", "--images", str(tmp_path / "images"), "--batch-size", "8",
              "--dry-run", "--no-progress", "--out", str(tmp_path / "ck")])
    except SystemExit as stop:
        pytest.skip(f"grayscale data not installed ({stop})")
    checkpoint = load_checkpoint(tmp_path / "ck", method="simclr", backbone_id="pixels28")
    assert checkpoint.config["training"]["images"] == str(tmp_path / "images")
    assert checkpoint.config["training_classes"] == ["unlabelled"]
    with pytest.raises(ValueError, match="labelled tasks"):
        TrainConfig(method="protonet", backbone="pixels28", images=str(folder))


def test_self_supervised_settings_are_checked():
    with pytest.raises(ValueError, match="pixels28"):
        TrainConfig(method="simclr", backbone="efficientnet_lite0")
    with pytest.raises(ValueError, match="mask-ratio"):
        TrainConfig(method="mae", backbone="pixels28", mask_ratio=1.0)
    with pytest.raises(ValueError, match="patch-size"):
        TrainConfig(method="mae", backbone="pixels28", patch_size=5)
    with pytest.raises(ValueError, match="temperature"):
        TrainConfig(method="simclr", backbone="pixels28", temperature=0.0)


# ------------------------------------------------------------------------------- registry, comparison
def test_a_third_family_in_the_registry_and_the_comparison():
    from fewshot_demo.bench.comparison import ComparisonData, compared_methods
    from fewshot_demo.config.errors import CheckpointMissingError
    from fewshot_demo.data.labelled import LoadedData
    from fewshot_demo.methods import get_method
    from fewshot_demo.methods.registry import FAMILIES

    assert "self-supervised" in FAMILIES
    for key in ("simclr", "mae"):
        spec = get_method(key)
        assert spec.family == "self-supervised" and spec.checkpoint == "required" and spec.recipe is not None
        with pytest.raises(CheckpointMissingError, match="--backbone pixels28"):
            spec.check_applicable("image", "efficientnet_lite0")
        assert key in compared_methods()
    order = [get_method(m).family for m in compared_methods()]
    assert order == sorted(order, key=("transfer", "meta", "self-supervised").index)
    data = ComparisonData("x", LoadedData("image", [0, 1], ["a", "b"]), "efficientnet_lite0", "pixels28")
    assert data.encoder_for("simclr") == "pixels28" and data.encoder_for("linear") == "efficientnet_lite0"


def test_reading_explains_what_pretraining_without_labels_bought():
    from fewshot_demo.bench.reading import reading
    from fewshot_demo.core.evaluation import EvaluationSummary

    summaries = [EvaluationSummary(m, 5, 100, a, 0.01, 1.0) for m, a in
                 (("protonet", 0.80), ("simclr", 0.75), ("protonet_plain", 0.68), ("linear", 0.87))]
    text = reading(summaries)
    assert "What did pretraining without labels buy?" in text
    assert "SimCLR 75.0%, +7.0 points against the random Conv-4" in text
    assert "-5.0 points against the best meta-learned method (ProtoNet, 80.0%)" in text
    assert "self-supervised methods were pretrained on base images without labels" in text
    # With their own control (the same linear head on the random Conv-4), that is the one they face.
    text = reading([*summaries, EvaluationSummary("linear_plain", 5, 100, 0.66, 0.01, 1.0)])
    assert "+9.0 points against the random Conv-4 (Linear head, no pretraining, 66.0%)" in text


# ------------------------------------------------------------------------------ test-sized evidence
@pytest.fixture(scope="module")
def fashion_held_out():
    from fewshot_demo.training.task_pools import grayscale_pool

    try:
        return grayscale_pool("eval", per_class=100, seed=0)
    except ValueError as error:
        pytest.skip(str(error))


@pytest.mark.parametrize("method", ["simclr", "mae"])
def test_shipped_encoders_beat_the_random_conv4_on_held_out_classes(fashion_held_out, method):
    from fewshot_demo.core.evaluation import paired_difference
    from fewshot_demo.core.runner import run_episodes
    from fewshot_demo.data.episodes import EpisodeConfig, sample_episodes
    from fewshot_demo.methods import LearnerContext

    context = LearnerContext(backbone_id="pixels28", feature_dim=784)
    episodes = sample_episodes(fashion_held_out.labels.tolist(), EpisodeConfig(5, 5, 15), 30, seed=0)
    trained = run_episodes(method, fashion_held_out.items, episodes, context=context).accuracies
    random = run_episodes("linear_plain", fashion_held_out.items, episodes, context=context).accuracies  # same head
    difference, ci95 = paired_difference(trained, random)
    # Measured on 600 episodes of the full test classes: see fewshot_demo/checkpoints/README.md.
    assert difference - ci95 > 0, (difference, ci95)
