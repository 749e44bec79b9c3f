"""fewshot-demo: few-shot image and text classification, meta-learning next to transfer learning.

    import fewshot_demo as fsd
    classifier = fsd.fit("support/")              # a folder with one sub-folder of images per class
    print(classifier.predict(["query.jpg"])[0].label)

The package is importable without loading any model: backbones, encoders and checkpoints load lazily
on first use, and the names below import their modules on first access.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Classifier", "fit", "load", "methods_for", "__version__"]

_LAZY = {"Classifier": "fewshot_demo.api", "fit": "fewshot_demo.api", "load": "fewshot_demo.api",
         "methods_for": "fewshot_demo.methods"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fewshot_demo' has no attribute {name!r}")
