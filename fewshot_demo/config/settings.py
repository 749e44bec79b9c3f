"""Settings read from the environment once: the device, torch threads and the folders the core uses.

    from fewshot_demo.config.settings import settings
    settings().feature_cache_dir     # Path: FEWSHOT_FEATURE_CACHE, else ~/.cache/fewshot_demo/features

``settings()`` reads the environment on its first call and returns the same frozen ``Settings``
afterwards; nothing else in the package reads these variables. An unset or empty variable means the
default. Code reads ``settings()`` when it needs a value (never a module global frozen at import),
so a test that changes a variable calls ``settings.cache_clear()`` after ``monkeypatch.setenv`` and
the next call reads the environment again.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.limits import Limits

DEVICE_ENV_VAR = "FEWSHOT_DEVICE"
THREADS_ENV_VAR = "FEWSHOT_TORCH_THREADS"
CHECKPOINTS_ENV_VAR = "FEWSHOT_CHECKPOINTS"
FEATURE_CACHE_ENV_VAR = "FEWSHOT_FEATURE_CACHE"
TUXPAINT_ENV_VAR = "TUXPAINT_STAMPS_DIR"
FASHION_MNIST_ENV_VAR = "FASHION_MNIST_DIR"
TUNE_MALLOC_ENV_VAR = "FEWSHOT_TUNE_MALLOC"
DEFAULT_BACKBONE_ENV_VAR = "FEWSHOT_DEFAULT_BACKBONE"
DEFAULT_TEXT_ENCODER_ENV_VAR = "FEWSHOT_DEFAULT_TEXT_ENCODER"
MCP_ENV_VAR = "FEWSHOT_MCP"
#: glibc's own variables for what ``fewshot_demo.runtime.allocator`` sets: when one is present, it all stays as glibc has it.
GLIBC_MALLOC_ENV_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX")


def _user_cache(name: str) -> Path:
    return Path.home() / ".cache" / "fewshot_demo" / name


@dataclass(frozen=True)
class Settings:
    """What the environment says, with the defaults used when it says nothing.

    Attributes:
        device: ``FEWSHOT_DEVICE``: "cpu", "cuda", "cuda:1" or "auto"; None (the default) is
            "auto": CUDA when present, else the CPU (see ``device.pick_device``).
        torch_threads: ``FEWSHOT_TORCH_THREADS``: torch intra-op threads for the command-line
            tools (default 1: episodes are many small problems, faster on one thread on a small or
            shared CPU; see ``device.one_thread``).
        checkpoints_dir: ``FEWSHOT_CHECKPOINTS``: checkpoints the user trained or pulled; they take
            precedence over the shipped ones (default ``~/.cache/fewshot_demo/checkpoints``).
        feature_cache_dir: ``FEWSHOT_FEATURE_CACHE``: features of built-in data sets and of the
            meta-training photos, cached on disk (default ``~/.cache/fewshot_demo/features``).
        tuxpaint_stamps_dir: ``TUXPAINT_STAMPS_DIR``: the Tux Paint stamp photos (default
            ``/usr/share/tuxpaint/stamps``, where ``apt-get install tuxpaint-stamps-default`` puts them).
        fashion_mnist_dir: ``FASHION_MNIST_DIR``: the Fashion-MNIST idx files (default
            ``/usr/share/datasets/fashion-mnist``, from ``apt-get install dataset-fashion-mnist``).
        tune_malloc: ``FEWSHOT_TUNE_MALLOC``: "0" leaves glibc's allocator as it is (default: tuned
            for forward passes and a flat server, see ``fewshot_demo.runtime.allocator``); also off when
            ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_ARENA_MAX`` is set.
        mcp_server: ``FEWSHOT_MCP``: "0" launches the app without its Model Context Protocol server
            (default: served at ``/gradio_api/mcp/``, see ``fewshot_demo.ui.mcp_server``).
        default_backbone: ``FEWSHOT_DEFAULT_BACKBONE``: the image backbone used when none is named (the
            image tab's first choice, the API, the bench, the warm-up at start); None: the bundled
            EfficientNet-Lite0. Checked against the backbones on offer where it is read
            (``fewshot_demo.encoders.backbones.configured_backbone``).
        default_text_encoder: ``FEWSHOT_DEFAULT_TEXT_ENCODER``: the same for text encoders (an id such as
            ``bert-base-uncased`` or ``minilm:cls``); None: the bundled MiniLM with its last and middle
            layer (``fewshot_demo.encoders.text.configured_encoder`` checks it).
        limits: what one request may ask and the server's fairness settings, each from its own
            ``FEWSHOT_MAX_...`` variable (see ``fewshot_demo.config.limits.Limits``).
    """

    device: str | None = None
    torch_threads: int = 1
    checkpoints_dir: Path = field(default_factory=lambda: _user_cache("checkpoints"))
    feature_cache_dir: Path = field(default_factory=lambda: _user_cache("features"))
    tuxpaint_stamps_dir: Path = Path("/usr/share/tuxpaint/stamps")
    fashion_mnist_dir: Path = Path("/usr/share/datasets/fashion-mnist")
    tune_malloc: bool = True
    default_backbone: str | None = None
    default_text_encoder: str | None = None
    mcp_server: bool = True
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read the variables (from ``os.environ`` unless given); unset or empty ones keep the default.

        Raises:
            UserInputError: when ``FEWSHOT_TORCH_THREADS`` is not a whole number of at least 1, or a
                limit is not a positive number.
        """
        environ = os.environ if environ is None else environ
        found = {name: environ.get(name, "").strip() for name in (
            DEVICE_ENV_VAR, THREADS_ENV_VAR, CHECKPOINTS_ENV_VAR, FEATURE_CACHE_ENV_VAR, TUXPAINT_ENV_VAR,
            FASHION_MNIST_ENV_VAR, TUNE_MALLOC_ENV_VAR, MCP_ENV_VAR, DEFAULT_BACKBONE_ENV_VAR,
            DEFAULT_TEXT_ENCODER_ENV_VAR, *GLIBC_MALLOC_ENV_VARS,
        )}
        values: dict[str, object] = {}
        if found[DEVICE_ENV_VAR]:
            values["device"] = found[DEVICE_ENV_VAR]
        if found[THREADS_ENV_VAR]:
            threads = found[THREADS_ENV_VAR]
            if not threads.isdigit() or int(threads) < 1:
                raise UserInputError(f"{THREADS_ENV_VAR} must be a whole number of threads, at least 1; got {threads!r}")
            values["torch_threads"] = int(threads)
        for name, attribute in ((CHECKPOINTS_ENV_VAR, "checkpoints_dir"), (FEATURE_CACHE_ENV_VAR, "feature_cache_dir"),
                                (TUXPAINT_ENV_VAR, "tuxpaint_stamps_dir"), (FASHION_MNIST_ENV_VAR, "fashion_mnist_dir")):
            if found[name]:
                values[attribute] = Path(found[name]).expanduser()
        for name, attribute in ((DEFAULT_BACKBONE_ENV_VAR, "default_backbone"),
                                (DEFAULT_TEXT_ENCODER_ENV_VAR, "default_text_encoder")):
            if found[name]:
                values[attribute] = found[name]
        if found[TUNE_MALLOC_ENV_VAR] == "0" or any(found[name] for name in GLIBC_MALLOC_ENV_VARS):
            values["tune_malloc"] = False
        if found[MCP_ENV_VAR] == "0":
            values["mcp_server"] = False
        values["limits"] = Limits.from_environment(environ)
        return cls(**values)  # type: ignore[arg-type]


@functools.cache
def settings() -> Settings:
    """The settings, read from the environment on the first call (``settings.cache_clear()`` re-reads)."""
    return Settings.from_environment()


def limits() -> Limits:
    """The limits in force (``settings().limits``)."""
    return settings().limits
