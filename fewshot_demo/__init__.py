"""fewshot-demo: few-shot image and text classification, meta-learning next to transfer learning.

    import fewshot_demo as fsd
    classifier = fsd.fit("support/")              # a folder with one sub-folder of images per class
    print(classifier.predict(["query.jpg"])[0].label)

Importing the package loads no model: backbones, encoders and checkpoints load on first use.
"""

from fewshot_demo.api import Classifier, evaluate, fit, load
from fewshot_demo.config.version import __version__
from fewshot_demo.methods import methods_for

__all__ = ["Classifier", "evaluate", "fit", "load", "methods_for", "__version__"]
