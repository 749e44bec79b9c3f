"""A fitted few-shot classifier over features, with explanations, a self-check and a file format.

Modality-agnostic: the image tab and the text tab both embed their items with a backbone or
encoder, then hand the features to ``FewShotClassifier``. It keeps the support features, so a new
query costs one forward pass plus a few matrix products.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.config.version import __version__
from fewshot_demo.encoders.registry import modality_of
from fewshot_demo.methods import (
    LearnerContext,
    PrototypicalNetwork,
    available_methods,
    get_method,
    make_learner,
)
from fewshot_demo.methods.base import FewShotLearner
from fewshot_demo.methods.features import class_means

#: The method the self-check refits when the real one trains the backbone or encoder.
SELF_CHECK_STAND_IN = "linear"
FILE_FORMAT = "fewshot-demo-classifier"
FILE_FORMAT_VERSION = 1
MAX_CLASSES = 20


def check_class_names(names: Sequence[str], max_classes: int | None = None) -> list[str]:
    """Strip class names and check that there are 2..max_classes distinct, non-empty ones.

    ``max_classes`` defaults to the limit in force (``limits().max_classes``, at most ``MAX_CLASSES``).

    Raises:
        UserInputError: naming the offending class and what to do.
    """
    from fewshot_demo.data.texts import clean_text

    if max_classes is None:
        from fewshot_demo.config.settings import limits

        max_classes = limits().max_classes
    cleaned = [clean_text(name).strip() for name in names]
    for position, name in enumerate(cleaned, start=1):
        if not name:
            raise UserInputError(f"class {position} has no name; give every class a name")
        if len(name) > 60:
            raise UserInputError(f"class name {name[:20]!r}... is {len(name)} characters; keep names under 60")
    seen: dict[str, str] = {}
    for name in cleaned:
        key = name.casefold()
        if key in seen:
            raise UserInputError(f"two classes are named {name!r}; give each class a different name")
        seen[key] = name
    if len(cleaned) < 2:
        raise UserInputError("few-shot classification needs at least 2 classes; add another class")
    if len(cleaned) > max_classes:
        raise UserInputError(f"{len(cleaned)} classes is more than the {max_classes} allowed; remove some")
    return cleaned


@dataclass
class Prediction:
    """One query's result.

    Attributes:
        label: the predicted class name.
        probabilities: class name -> probability, in class order.
        prototype_distances: class name -> squared Euclidean distance from the query to the class
            prototype, on the normalised features (smaller is closer).
        nearest: (support index, cosine similarity) of the most similar support items, best first.
    """

    label: str
    probabilities: dict[str, float]
    prototype_distances: dict[str, float]
    nearest: list[tuple[int, float]]


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
        # Explanations always use prototypes on the same normalised features, whatever the method.
        self._explainer = PrototypicalNetwork().fit(self.support_features, self.support_labels)

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
        """Write the classifier as one safetensors file with a JSON header (never pickle)."""
        tensors = {
            "support_features": self.support_features.contiguous().cpu(),
            "support_labels": self.support_labels.contiguous().cpu(),
        }
        if self.learner.savable:
            tensors.update({f"learner.{k}": v.contiguous().cpu() for k, v in self.learner.state_dict().items()})
        header = {
            "format": FILE_FORMAT,
            "format_version": FILE_FORMAT_VERSION,
            "package_version": __version__,
            "encoder_id": self.encoder_id,
            "feature_dim": int(self.support_features.shape[1]),
            "method": self.method,
            "learner_config": self.learner.config(),
            "learner_options": self.learner_options,
            "class_names": self.class_names,
        }
        header["checksum"] = _checksum(tensors, header)
        path = Path(path)
        save_file(tensors, str(path), metadata={"fewshot_demo": json.dumps(header)})
        return path

    @classmethod
    def load(cls, path: str | Path, expected_encoder_id: str | None = None) -> "FewShotClassifier":
        """Read and validate a classifier saved by ``save``.

        Args:
            path: the .safetensors file.
            expected_encoder_id: refuse files made with another backbone or encoder.

        Raises:
            UserInputError: when the file is not ours, was modified, or does not fit; the message says
                what to do.
        """
        name = Path(path).name
        hint = "save the classifier again from this app and load that file"
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise UserInputError(f"{name} is not a saved classifier file ({error}); {hint}") from None
        try:
            header = json.loads(metadata["fewshot_demo"])
            fmt = header["format"]
        except (KeyError, TypeError, json.JSONDecodeError):
            raise UserInputError(f"{name} is a safetensors file but not a saved few-shot classifier; {hint}") from None
        if fmt != FILE_FORMAT or header.get("format_version") != FILE_FORMAT_VERSION:
            raise UserInputError(f"{name} has format {fmt!r} v{header.get('format_version')}, not ours; {hint}")
        if header.get("checksum") != _checksum(tensors, {k: v for k, v in header.items() if k != "checksum"}):
            raise UserInputError(f"{name} was modified after it was saved (checksum mismatch); {hint}")
        encoder_id = header.get("encoder_id")
        if expected_encoder_id is not None and encoder_id != expected_encoder_id:
            raise UserInputError(
                f"{name} was made with backbone {encoder_id!r}, but {expected_encoder_id!r} is selected; "
                f"select {encoder_id!r} and load it again, or refit with the current backbone"
            )
        method = header.get("method")
        if method not in available_methods():
            raise UserInputError(f"{name} uses method {method!r}, which this version does not have; {hint}")
        try:
            features, labels = tensors["support_features"], tensors["support_labels"]
            class_names = list(header["class_names"])
        except KeyError as missing:
            raise UserInputError(f"{name} lacks {missing}; {hint}") from None
        if features.ndim != 2 or features.shape[1] != header.get("feature_dim") or labels.shape != (features.shape[0],):
            raise UserInputError(f"{name} has inconsistent tensor shapes; {hint}")
        if not torch.isfinite(features).all():
            raise UserInputError(f"{name} contains non-finite features; {hint}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise UserInputError(f"{name} has labels outside its {len(class_names)} classes; {hint}")
        learner = None
        if any(k.startswith("learner.") for k in tensors):
            context = LearnerContext(backbone_id=encoder_id, feature_dim=int(features.shape[1]))
            try:
                learner = make_learner(method, context, **dict(header.get("learner_options") or {}))
                learner.load_state_dict({k[len("learner.") :]: v for k, v in tensors.items() if k.startswith("learner.")})
            except (KeyError, RuntimeError, NotImplementedError, TypeError, ValueError) as error:
                raise UserInputError(f"{name}: the {method} state does not load ({error}); {hint}") from None
            if learner.n_way != len(class_names):
                raise UserInputError(f"{name}: the {method} state has {learner.n_way} classes, not {len(class_names)}; {hint}")
        try:
            return cls(
                method, class_names, features, labels, encoder_id, learner=learner,
                learner_options=dict(header.get("learner_options") or {}),
            )
        except (TypeError, ValueError) as error:
            raise UserInputError(f"{name} has settings this version cannot use ({error}); {hint}") from None


def _checksum(tensors: dict[str, Tensor], header: dict) -> str:
    """SHA-256 over the header and every tensor: detects edits, not deliberate forgery."""
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for key in sorted(tensors):
        digest.update(key.encode())
        digest.update(tensors[key].contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()
