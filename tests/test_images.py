"""Every kind of bad or unusual upload becomes an RGB image or a clear ValueError."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fewshot_demo.core.image_task import build_support
from fewshot_demo.data.images import ImageLimits, load_image

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "images" / "animals" / "support"


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize(
    "make, suffix",
    [
        (lambda: Image.new("L", (40, 30), 128), ".png"),  # grayscale
        (lambda: Image.new("RGBA", (40, 30), (255, 0, 0, 128)), ".png"),  # RGBA
        (lambda: Image.new("CMYK", (40, 30), (0, 255, 0, 0)), ".jpg"),  # CMYK JPEG
        (lambda: Image.new("P", (40, 30), 3), ".gif"),  # palette
        (lambda: Image.fromarray(np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50), ".png"),  # 16-bit
    ],
)
def test_unusual_modes_become_rgb(tmp_path, make, suffix):
    image = load_image(_save(make(), tmp_path / f"x{suffix}"))
    assert image.mode == "RGB" and min(image.size) > 0


def test_sixteen_bit_range_is_stretched_not_clipped(tmp_path):
    array = np.linspace(0, 65535, 1200).astype(np.uint16).reshape(30, 40)
    image = load_image(_save(Image.fromarray(array), tmp_path / "deep.png"))
    values = np.asarray(image)
    assert values.min() == 0 and values.max() == 255


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), color) for color in ["red", "blue", "green"]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    image = load_image(path)
    assert image.getpixel((10, 10))[0] > 200  # red


def test_cutout_is_cropped_to_its_visible_part_on_white(tmp_path):
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    image.paste((10, 200, 10, 255), (40, 40, 60, 70))
    rgb = load_image(_save(image, tmp_path / "cutout.png"))
    assert rgb.size == (20, 30)
    assert rgb.getpixel((5, 5)) == (10, 200, 10)


def test_fully_transparent_image_is_refused(tmp_path):
    path = _save(Image.new("RGBA", (10, 10), (0, 0, 0, 0)), tmp_path / "empty.png")
    with pytest.raises(ValueError, match="empty.png is fully transparent"):
        load_image(path)


def test_non_image_file_is_refused_with_the_formats_to_use(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt is not an image; upload a PNG, JPEG"):
        load_image(path)


def test_truncated_image_is_refused(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ValueError, match="cut.jpg is broken or truncated"):
        load_image(path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = _save(Image.new("1", (12000, 12000)), tmp_path / "bomb.png")  # 144 MP, a few KB on disk
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match="bomb.png is 12000x12000 pixels"):
        load_image(path)


def test_oversized_file_is_refused(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\xff" * 2_000_000)
    with pytest.raises(ValueError, match="big.jpg is 2 MB"):
        load_image(path, ImageLimits(max_file_mb=1))


def _example(name: str) -> list[str]:
    return sorted(str(p) for p in (EXAMPLE / name).iterdir())


def test_support_set_loads_and_labels_classes_in_order():
    support = build_support([("bird", _example("bird")), ("fish", _example("fish"))])
    assert support.class_names == ["bird", "fish"]
    assert support.labels.tolist() == [0] * 5 + [1] * 5
    assert support.warnings == []


@pytest.mark.parametrize(
    "classes, message",
    [
        ([("bird", "B")], "at least 2 classes"),
        ([("bird", "B"), ("Bird ", "F")], "two classes are named 'Bird'"),
        ([("bird", "B"), ("  ", "F")], "class 2 has no name"),
        ([("bird", "B"), ("fish", None)], "class 'fish' has no usable images"),
    ],
)
def test_bad_support_sets_get_clear_messages(classes, message):
    files = {"B": _example("bird"), "F": _example("fish"), None: []}
    with pytest.raises(ValueError, match=message):
        build_support([(name, files[key]) for name, key in classes])


def test_bad_files_are_skipped_with_a_warning_and_unequal_shots_noted(tmp_path):
    bad = tmp_path / "readme.txt"
    bad.write_text("not a picture")
    support = build_support([("bird", _example("bird") + [str(bad)]), ("fish", _example("fish")[:3])])
    assert len(support.images) == 8
    assert any("readme.txt is not an image" in w for w in support.warnings)
    assert any("different numbers of images" in w for w in support.warnings)


def test_a_class_whose_files_are_all_broken_is_refused(tmp_path):
    bad = tmp_path / "a.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match="class 'fish' has no usable images \\(skipped a.png is not an image"):
        build_support([("bird", _example("bird")), ("fish", [str(bad)])])
