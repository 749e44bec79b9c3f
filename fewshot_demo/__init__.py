"""fewshot-demo: few-shot image and text classification, meta-learning next to transfer learning.

The package is importable without loading any model: backbones, encoders and checkpoints load lazily
on first use.
"""

__version__ = "0.1.0"
