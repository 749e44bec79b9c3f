"""What a comparison session keeps between runs: its images PNG-packed, pixel for pixel the originals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fewshot_demo.bench.comparison import ComparisonData
from fewshot_demo.data.labelled import data_from_items
from fewshot_demo.data.packed import PackedImages

ANIMALS = Path(__file__).resolve().parents[1] / "examples" / "images" / "animals" / "support"


def _photos() -> tuple[list, list[str]]:
    paths = sorted(p for p in ANIMALS.glob("*/*.jpg"))
    data = data_from_items("image", paths, [p.parent.name for p in paths])
    return data.items, data.labels


def test_packed_images_read_back_pixel_for_pixel_in_less_memory():
    images, _ = _photos()
    packed = PackedImages(images)
    assert len(packed) == len(images)
    for original, again in zip(images, [packed[i] for i in range(len(packed))]):
        assert again.mode == original.mode and np.array_equal(np.asarray(again), np.asarray(original))
    assert [np.asarray(image).sum() for image in packed[1:3]] == [np.asarray(image).sum() for image in images[1:3]]
    assert packed.nbytes < sum(len(image.tobytes()) for image in images) / 2


def test_an_uploaded_comparison_data_set_is_kept_packed_and_embeds_the_same():
    images, labels = _photos()
    plain = ComparisonData.from_data("animals", data_from_items("image", images, labels))
    packed = ComparisonData.from_data("animals", data_from_items("image", images, labels), pack_images=True)
    assert isinstance(packed.data.items, PackedImages) and not isinstance(plain.data.items, PackedImages)
    assert np.array_equal(np.asarray(packed.data.items[4]), np.asarray(images[4]))
    assert packed.data.labels == labels and packed.class_names == plain.class_names
    assert torch.equal(packed.pool(packed.encoder).prepare("features"), plain.pool(plain.encoder).prepare("features"))
