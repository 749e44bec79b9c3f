"""Which classes each meta-training track trains, validates and evaluates on: defined here once.

The guard against split leakage: the meta-learned checkpoints never saw the evaluation classes
(nor their sub-folders), and the comparison tab's built-in data sets are exactly those classes.

- ``efficientnet_lite0`` track: Tux Paint stamp folders. Evaluation: ``TUXPAINT_EVAL_FOLDERS`` (the
  9 natural-photo folders); validation: ``TUXPAINT_VAL_FOLDERS``; training: every other folder with
  at least ``TUXPAINT_MIN_IMAGES`` photos, minus everything below a validation folder.
- ``pixels28`` track: Fashion-MNIST classes 0-4 and the ten MNIST digits train; Fashion-MNIST
  classes 5-9 (``FASHION_HELD_OUT_CLASSES``) validate (training images) and evaluate (test images).
"""

from __future__ import annotations

from pathlib import Path

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.settings import settings

#: The backbones with meta-training data, and so with trained checkpoints.
TRACKS = ("efficientnet_lite0", "pixels28")
#: The image track's evaluation classes; never used in meta-training (nor their sub-folders).
TUXPAINT_EVAL_FOLDERS = (
    "animals/birds",
    "food/fruit",
    "plants/flowers",
    "town/roadsigns",
    "food/vegetables",
    "animals/mammals/bovines",
    "household/tools",
    "animals/mammals",
    "animals/fish",
)
#: Base folders held out from meta-training for validation (disjoint from training and evaluation).
TUXPAINT_VAL_FOLDERS = (
    "animals/insects",
    "plants/trees",
    "seasonal/halloween",
    "space/planets",
    "symbols/chess",
    "clothes/hats",
    "town/flags",
    "sports",
)
TUXPAINT_MIN_IMAGES = 4
#: Conv-4 track: base classes (Fashion-MNIST t-shirt, trouser, pullover, dress, coat, and all MNIST
#: digits) and held-out classes (sandal, shirt, sneaker, bag, ankle boot) for validation and evaluation.
FASHION_TRAIN_CLASSES = (0, 1, 2, 3, 4)
MNIST_TRAIN_CLASSES = tuple(range(10))
FASHION_HELD_OUT_CLASSES = (5, 6, 7, 8, 9)
FASHION_SOURCE = "fashion-mnist"  # prefix of the Fashion-MNIST class names in the pools
#: Stamp folders never used as Conv-4 base classes: garments, which would show the held-out classes'
#: kind of object (the stamps have shirts and socks) to the network before evaluation.
STAMP_EXCLUDED_FOLDERS = ("clothes",)


def tuxpaint_stamps_dir() -> Path:
    """Where the Debian package ``tuxpaint-stamps-default`` installs its photos (``TUXPAINT_STAMPS_DIR`` overrides it)."""
    return settings().tuxpaint_stamps_dir


def tuxpaint_folders(root: Path | None = None) -> dict[str, list[Path]]:
    """Return {folder relative to root: its PNG files (not those of sub-folders)}, sorted.

    ``root``: the stamp folder (default ``tuxpaint_stamps_dir()``).

    Raises:
        UserInputError: when the folder is missing, with the command that installs it.
    """
    root = root or tuxpaint_stamps_dir()
    if not root.is_dir():
        raise UserInputError(
            f"Tux Paint stamps not found in {root}; install them with `apt-get install tuxpaint-stamps-default` "
            "or set TUXPAINT_STAMPS_DIR"
        )
    folders: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*.png")):
        folders.setdefault(path.parent.relative_to(root).as_posix(), []).append(path)
    return folders


def is_under(folder: str, roots: tuple[str, ...]) -> bool:
    """True when ``folder`` is one of ``roots`` or below one of them (food/fruit/cartoon is under food/fruit)."""
    return any(folder == root or folder.startswith(root + "/") for root in roots)


def is_eval_folder(folder: str) -> bool:
    """True for the evaluation folders and everything below them (e.g. food/fruit/cartoon)."""
    return is_under(folder, TUXPAINT_EVAL_FOLDERS)


def tuxpaint_split_folders(split: str, root: Path | None = None) -> list[str]:
    """The class folders of the image track's ``train``, ``val`` or ``eval`` split.

    Raises:
        UserInputError: for another split name, or when the stamps are not installed.
    """
    if split == "eval":
        return list(TUXPAINT_EVAL_FOLDERS)
    if split not in ("train", "val"):
        raise UserInputError(f"split must be train, val or eval, got {split!r}")
    folders = tuxpaint_folders(root)
    base = [f for f, files in folders.items() if not is_eval_folder(f) and len(files) >= TUXPAINT_MIN_IMAGES]
    # Validation classes are the validation folders; training leaves out everything below them
    # too (animals/insects/cartoon would otherwise teach the validation class before validating it).
    if split == "val":
        return [f for f in base if f in TUXPAINT_VAL_FOLDERS]
    return [f for f in base if not is_under(f, TUXPAINT_VAL_FOLDERS)]


def stamp_base_folders(root: Path | None = None) -> dict[str, list[Path]]:
    """Tux Paint stamp folders usable as Conv-4 base classes: at least 4 photos, no garments."""
    return {
        f"tuxpaint/{folder}": files
        for folder, files in tuxpaint_folders(root).items()
        if len(files) >= TUXPAINT_MIN_IMAGES and not is_under(folder, STAMP_EXCLUDED_FOLDERS)
    }
