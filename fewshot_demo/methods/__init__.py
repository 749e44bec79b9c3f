"""Every few-shot method behind one contract (``base.FewShotLearner``), listed in one registry.

Importing the package fills the registry (``catalog``); ``registry`` answers what runs where:

    from fewshot_demo.methods import get_method, make_learner, methods_for
    [spec.key for spec in methods_for("image", "efficientnet_lite0")]
"""

from fewshot_demo.methods import catalog  # noqa: F401  (registers every method)
from fewshot_demo.methods.base import FewShotLearner, check_support
from fewshot_demo.methods.linear import LinearProbe
from fewshot_demo.methods.protonet import PrototypicalNetwork
from fewshot_demo.methods.registry import (
    LearnerContext,
    MethodSpec,
    all_methods,
    available_methods,
    cheapest_first,
    get_method,
    make_learner,
    meta_trained_methods,
    methods_for,
    options_dict,
    recipe_of,
    register,
)

__all__ = [
    "FewShotLearner",
    "LearnerContext",
    "LinearProbe",
    "MethodSpec",
    "PrototypicalNetwork",
    "all_methods",
    "available_methods",
    "cheapest_first",
    "check_support",
    "get_method",
    "make_learner",
    "meta_trained_methods",
    "methods_for",
    "options_dict",
    "recipe_of",
    "register",
]
