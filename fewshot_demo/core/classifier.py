"""A fitted few-shot classifier over features, with explanations and a self-check.

    classifier = FewShotClassifier.fit(encoder, class_names, items, labels, "protonet")
    predictions = classifier.classify(encoder, query_items)

Modality-agnostic: images and texts alike are embedded by an ``Encoder`` (a backbone or a text
encoder), and a learner that consumes another input kind gets it from the encoder's ``prepare``;
``fit`` and ``classify`` are the one path from items to predictions for every method. The
classifier keeps the support features, so a new query costs one forward pass plus a few matrix
products. Its file format is in ``classifier_file``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core.class_names import check_class_names
from fewshot_demo.core.classifier_file import (
    LEARNER_PREFIX,
    read_classifier_file,
    unusable,
    write_classifier_file,
)
from fewshot_demo.core.heatmap import SupportHeat, WhereItLooked
from fewshot_demo.core.suggestions import DEFAULT_RULE, SELF_CHECK_ITEMS, Suggestions, prototype_held_out, suggest
from fewshot_demo.encoders.protocol import Encoder
from fewshot_demo.encoders.registry import modality_of
from fewshot_demo.methods import (
    LearnerContext,
    PrototypicalNetwork,
    get_method,
    make_learner,
)
from fewshot_demo.methods.base import FewShotLearner
from fewshot_demo.methods.features import class_means

#: The method the self-check refits when the real one trains the backbone or encoder.
SELF_CHECK_STAND_IN = "linear"


@dataclass
class Prediction:
    """One query's result.

    Attributes:
        label: the predicted class name.
        probabilities: class name -> probability, in class order.
        prototype_distances: class name -> squared Euclidean distance from the query to the class
            prototype, on the normalised features (smaller is closer).
        nearest: (support index, cosine similarity) of the most similar support items, best first.
        looked: where it looked (heat maps of the query and its nearest support pictures), where made
            (``core.image_task.classify_images`` on a backbone with feature maps), else None.
    """

    label: str
    probabilities: dict[str, float]
    prototype_distances: dict[str, float]
    nearest: list[tuple[int, float]]
    looked: WhereItLooked | None = None


@dataclass
class SelfCheck:
    """Leave-one-out result on the support set alone.

    Attributes:
        accuracy: fraction of held-out support items predicted correctly (None if none could be held out).
        per_class: class name -> leave-one-out accuracy (None when the class has a single item).
        confusion: (n_way, n_way) counts, rows = true class, columns = predicted class.
        predictions: predicted label per support item (-1 where it could not be held out).
        confused_pairs: (true, predicted, count) sorted by count, the mistakes worth fixing first.
    """

    accuracy: float | None
    per_class: dict[str, float | None]
    confusion: np.ndarray
    predictions: list[int]
    confused_pairs: list[tuple[str, str, int]] = field(default_factory=list)


class FewShotClassifier:
    """A learner fitted on named classes, plus what is needed to explain and save it.

    Every method fits here, whatever it consumes: a learner on frozen features gets
    ``support_features``; one that consumes another input kind (the image fine-tune's last-block
    activations, the text fine-tune's tokens) gets ``support_inputs`` and, at prediction,
    ``query_inputs``. Explanations (prototype distances, nearest support items, the 2-D map) always
    use the frozen features, where they are comparable across methods.

    Args:
        method: registry key of the learner (see ``fewshot_demo.methods.all_methods``).
        class_names: the n_way class names; label i is ``class_names[i]``.
        support_features: (n_support, d) features of the support items.
        support_labels: (n_support,) labels in 0..n_way-1.
        encoder_id: the backbone or encoder that produced the features.
        learner: an already fitted learner to use instead of fitting a new one (when loading).
        learner_options: the method's options by name (e.g. MAML's ``inner_steps``), checked
            against their bounds.
        support_inputs: (n_support, ...) what the learner consumes when its input kind is not
            "features" (from the backbone's or encoder's ``prepare``).
        progress: ``(fraction, message)`` callback for learners that train for a while.
    """

    def __init__(
        self,
        method: str,
        class_names: Sequence[str],
        support_features: Tensor,
        support_labels: Tensor,
        encoder_id: str,
        learner: FewShotLearner | None = None,
        learner_options: dict | None = None,
        support_inputs: Tensor | None = None,
        progress: Callable[[float, str], None] | None = None,
    ) -> None:
        self.method = method
        self.spec = get_method(method)
        self.learner_options = dict(learner_options or {})
        self.class_names = check_class_names(class_names)
        self.encoder_id = encoder_id
        self.input_kind = self.spec.input_kind(modality_of(encoder_id) or self.spec.modalities[0])
        self.support_features = support_features.float()
        self.support_labels = support_labels.long()
        n_way = len(self.class_names)
        present = torch.bincount(self.support_labels, minlength=n_way)
        for name, count in zip(self.class_names, present.tolist()):
            if count == 0:
                raise UserInputError(f"class {name!r} has no examples; add at least one or remove the class")
        self.context = LearnerContext(
            backbone_id=encoder_id, feature_dim=int(support_features.shape[1]), device=support_features.device
        )
        if learner is None:
            learner = self._new_learner()
            if progress is not None and hasattr(learner, "progress"):
                learner.progress = progress
            learner.fit(self._learner_inputs(self.support_features, support_inputs, "support"), self.support_labels)
        self.learner = learner
        #: The support pictures' heat (``core.heatmap``), set by an image fit that can draw heat maps.
        self.support_heat: SupportHeat | None = None
        # Explanations always use prototypes on the same normalised features, whatever the method.
        self._explainer = PrototypicalNetwork().fit(self.support_features, self.support_labels)

    @classmethod
    def fit(
        cls,
        encoder: Encoder,
        class_names: Sequence[str],
        items: Sequence[Any],
        labels: Tensor,
        method: str,
        options: dict[str, Any] | None = None,
        progress: Callable[[float, str], None] | None = None,
    ) -> "FewShotClassifier":
        """Embed the support items and fit ``method`` on them: the one fit path of every method.

        Args:
            encoder: the backbone or text encoder that reads the items.
            class_names: the n_way class names; label i is ``class_names[i]``.
            items: RGB images or texts, in support order.
            labels: (n_support,) labels in 0..n_way-1.
            method: a method that runs on the encoder (``methods_for(encoder.modality, encoder.id)``).
            options: the method's options by name, checked against their bounds.
            progress: ``(fraction, message)`` callback for learners that train for a while.
        """
        kind = get_method(method).input_kind(encoder.modality)
        features = encoder.embed(items)  # (n_support, feature_dim)
        inputs = None if kind == "features" else encoder.prepare(kind, items)
        return cls(method, class_names, features, labels, encoder.id, learner_options=options,
                   support_inputs=inputs, progress=progress)

    def classify(self, encoder: Encoder, items: Sequence[Any], n_nearest: int = 3) -> list[Prediction]:
        """Embed query items (and prepare the learner's input kind) and classify them.

        Raises:
            UserInputError: when ``encoder`` is not the one the classifier was fitted with.
        """
        return self.classify_with_features(encoder, items, n_nearest)[0]

    def classify_with_features(self, encoder: Encoder, items: Sequence[Any],
                               n_nearest: int = 3) -> tuple[list[Prediction], Tensor, Tensor | None]:
        """As ``classify``, with the (n_query, d) frozen features and the learner's inputs (None: the
        features), for ``suggestions`` without a second forward pass."""
        if encoder.id != self.encoder_id:
            raise UserInputError(
                f"this classifier was fitted on {self.encoder_id!r} features but {encoder.id!r} is selected; "
                f"fit again, or select {self.encoder_id!r}"
            )
        items = list(items)
        inputs = None if self.consumes_features else encoder.prepare(self.input_kind, items)
        features = encoder.embed(items)
        return self.predict(features, n_nearest=n_nearest, query_inputs=inputs), features, inputs

    @property
    def consumes_features(self) -> bool:
        """True when the learner reads the frozen features (then the self-check refits it)."""
        return self.input_kind == "features"

    @property
    def self_check_method(self) -> str:
        """The method the self-check refits: this one, or for a learner that trains the backbone or
        encoder, ``SELF_CHECK_STAND_IN`` on the frozen features (a refit per item would take minutes)."""
        return self.method if self.consumes_features else SELF_CHECK_STAND_IN

    def _learner_inputs(self, features: Tensor, inputs: Tensor | None, what: str) -> Tensor:
        if self.consumes_features:
            return features.float()
        if inputs is None or len(inputs) != len(features):
            raise ValueError(
                f"{self.method} consumes {self.input_kind!r} inputs; pass the {what} {self.input_kind} "
                "(the backbone's or encoder's prepare) as well as the features"
            )
        return inputs

    def _new_learner(self) -> FewShotLearner:
        return make_learner(self.method, self.context, **self.learner_options)

    def _self_check_learner(self) -> FewShotLearner:
        if self.consumes_features:
            return self._new_learner()
        return make_learner(SELF_CHECK_STAND_IN, self.context)

    @property
    def n_way(self) -> int:
        return len(self.class_names)

    @torch.no_grad()
    def predict(self, query_features: Tensor, n_nearest: int = 3, query_inputs: Tensor | None = None) -> list[Prediction]:
        """Classify queries; return one ``Prediction`` per query.

        Args:
            query_features: (n_query, d) frozen features (explanations, and the learner's input).
            n_nearest: how many most similar support items to name per query.
            query_inputs: (n_query, ...) the learner's inputs when it does not consume features.
        """
        if query_features.ndim != 2 or query_features.shape[1] != self.support_features.shape[1]:
            raise UserInputError(
                f"query features have shape {tuple(query_features.shape)}, expected (n, "
                f"{self.support_features.shape[1]}); were they made by {self.encoder_id!r}?"
            )
        inputs = self._learner_inputs(query_features, query_inputs, "query")
        probabilities = self.learner.predict_proba(inputs)  # (n_query, n_way)
        distances = self._explainer.distances(query_features.float())  # (n_query, n_way)
        normalize = self._explainer.normalizer
        similarity = normalize(query_features.float()) @ normalize(self.support_features).T  # (n_query, n_support)
        top = similarity.topk(min(n_nearest, similarity.shape[1]), dim=1)
        results = []
        for row in range(len(query_features)):
            p = probabilities[row]
            results.append(
                Prediction(
                    label=self.class_names[int(p.argmax())],
                    probabilities={n: float(v) for n, v in zip(self.class_names, p.tolist())},
                    prototype_distances={n: float(v) for n, v in zip(self.class_names, distances[row].tolist())},
                    nearest=[(int(i), float(s)) for i, s in zip(top.indices[row], top.values[row])],
                )
            )
        return results

    def self_check(self) -> SelfCheck:
        """Leave-one-out on the support set: hold out each item, refit, predict it.

        Items of a class with a single example cannot be held out (the class would vanish) and are
        skipped; so are all items when only two classes exist and one of them has a single item.
        """
        n_support = len(self.support_labels)
        counts = torch.bincount(self.support_labels, minlength=self.n_way)
        confusion = np.zeros((self.n_way, self.n_way), dtype=np.int64)
        predictions = [-1] * n_support
        for index in range(n_support):
            true = int(self.support_labels[index])
            if counts[true] < 2:
                continue
            keep = torch.arange(n_support) != index
            learner = self._self_check_learner().fit(self.support_features[keep], self.support_labels[keep])
            predicted = int(learner.predict(self.support_features[index : index + 1])[0])
            predictions[index] = predicted
            confusion[true, predicted] += 1
        held_out = confusion.sum()
        per_class = {
            name: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
            for i, name in enumerate(self.class_names)
        }
        pairs = [
            (self.class_names[t], self.class_names[p], int(confusion[t, p]))
            for t in range(self.n_way)
            for p in range(self.n_way)
            if t != p and confusion[t, p] > 0
        ]
        return SelfCheck(
            accuracy=float(np.trace(confusion) / held_out) if held_out else None,
            per_class=per_class,
            confusion=confusion,
            predictions=predictions,
            confused_pairs=sorted(pairs, key=lambda pair: -pair[2]),
        )

    @torch.no_grad()
    def suggestions(self, query_features: Tensor | None = None, query_inputs: Tensor | None = None,
                    self_check: SelfCheck | None = None, n_queries: int = 5, rule: str = DEFAULT_RULE,
                    query_probabilities: Tensor | None = None) -> Suggestions:
        """What to add next (``core.suggestions``) from the self-check (run once, then kept) and the
        (n_query, d) frozen query features; a learner that does not consume features and gets no
        ``query_inputs`` has its queries ranked by the prototypes on the frozen features. The queries'
        (n_query, n_way) probabilities, where ``predict`` just made them, spare a second prediction."""
        normalize = self._explainer.normalizer
        if self_check is None and len(self.support_labels) > SELF_CHECK_ITEMS:  # one refit per item: too slow
            held_out = prototype_held_out(normalize(self.support_features), self.support_labels)
        else:
            self._kept_check = self_check or getattr(self, "_kept_check", None) or self.self_check()
            held_out = self._kept_check.predictions
        probabilities = query_probabilities
        if probabilities is None and query_features is not None and len(query_features):
            query_features = query_features.float()
            use_learner = self.consumes_features or query_inputs is not None
            probabilities = (self.learner.predict_proba(self._learner_inputs(query_features, query_inputs, "query"))
                             if use_learner else self._explainer.predict_proba(query_features))
        return suggest(normalize(self.support_features), self.support_labels, self.class_names, held_out, probabilities,
                       None if probabilities is None else normalize(query_features), n_queries, rule)

    @torch.no_grad()
    def embedding_map(self, query_features: Tensor | None = None) -> dict[str, np.ndarray]:
        """Project support features, prototypes and queries to 2-D with PCA of the support.

        Returns:
            {"support": (n_support, 2), "prototypes": (n_way, 2), "query": (n_query, 2)} arrays.
        """
        normalize = self._explainer.normalizer
        support = normalize(self.support_features)  # (n_support, d)
        prototypes = class_means(support, self.support_labels, self.n_way)  # (n_way, d)
        mean = support.mean(dim=0, keepdim=True)
        # The top two principal directions of the support set; pad when there are fewer than 2.
        _, _, vh = torch.linalg.svd(support - mean, full_matrices=False)
        axes = vh[:2].T  # (d, <=2)
        if axes.shape[1] < 2:
            axes = torch.cat([axes, torch.zeros(axes.shape[0], 2 - axes.shape[1])], dim=1)

        def project(x: Tensor) -> np.ndarray:
            return ((x - mean) @ axes).cpu().numpy()

        query = normalize(query_features.float()) if query_features is not None and len(query_features) else None
        return {
            "support": project(support),
            "prototypes": project(prototypes),
            "query": project(query) if query is not None else np.zeros((0, 2)),
        }

    # ---- saving and loading ------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the classifier as one safetensors file with a JSON header (``classifier_file``)."""
        tensors = {"support_features": self.support_features, "support_labels": self.support_labels}
        if self.spec.savable:
            tensors.update({LEARNER_PREFIX + k: v for k, v in self.learner.state_dict().items()})
        header = {
            "encoder_id": self.encoder_id,
            "feature_dim": int(self.support_features.shape[1]),
            "method": self.method,
            "learner_config": self.learner.config(),
            "learner_options": self.learner_options,
            "class_names": self.class_names,
        }
        return write_classifier_file(path, tensors, header)

    @classmethod
    def load(cls, path: str | Path, expected_encoder_id: str | None = None) -> "FewShotClassifier":
        """Read and check a classifier saved by ``save``.

        Args:
            path: the .safetensors file.
            expected_encoder_id: refuse files made with another backbone or encoder.

        Raises:
            UserInputError: when the file is not ours, was modified, or does not fit; the message says
                what to do.
        """
        saved = read_classifier_file(path, expected_encoder_id)
        method, encoder_id = saved.header["method"], saved.header["encoder_id"]
        options = dict(saved.header.get("learner_options") or {})
        learner = None
        if saved.learner_state:
            context = LearnerContext(backbone_id=encoder_id, feature_dim=int(saved.support_features.shape[1]))
            try:
                learner = make_learner(method, context, **options)
                learner.load_state_dict(saved.learner_state)
            except (KeyError, RuntimeError, NotImplementedError, TypeError, ValueError) as error:
                raise unusable(saved, f"the {method} state does not load ({error})") from None
            if learner.n_way != len(saved.class_names):
                raise unusable(saved, f"the {method} state has {learner.n_way} classes, not {len(saved.class_names)}")
        try:
            return cls(method, saved.class_names, saved.support_features, saved.support_labels, encoder_id,
                       learner=learner, learner_options=options)
        except (TypeError, ValueError) as error:
            raise unusable(saved, f"it has settings this version cannot use ({error})") from None
