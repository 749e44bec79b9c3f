"""Take a fitted classifier elsewhere as one ONNX file, with the few lines of code that run it.

    from fewshot_demo.core.export import export_image_onnx
    exported = export_image_onnx(classifier, load_backbone(), "animals.onnx")   # backbone + head, one file
    print(exported.snippet())                                                  # how to run it with onnxruntime

An image classifier exports as one ONNX graph: a (n, 3, size, size) image tensor, preprocessed as
``ImageBackbone.preprocess`` does and normalised with the backbone's mean and std, in; (n, n_way)
class probabilities out. The graph is the backbone followed by the learner's own ``predict_proba``
(prototypes, a linear head, MAML's adapted weights, a fine-tuned last block), traced with
``torch.onnx.export``, so it computes what the app computes. Transductive learners are not exported:
their probabilities for one image depend on the other images of the batch.

A text classifier on frozen embeddings exports the same way (``export_text_onnx``): token ids and
attention mask in, probabilities out, next to the tokenizer, in one zip. The graph reads one window
of the encoder's length (256 tokens for MiniLM): the same as the app for shorter texts; the app reads
a longer text in several windows, the graph its first window only. A fine-tuned text classifier
(its learner reads each text's token windows) is saved as its ``.safetensors`` file with the Python
that loads it (``sharing.text_snippet``); ``sharing.push_to_hub`` uploads either file.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import Tensor, nn

from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core.classifier import FewShotClassifier
from fewshot_demo.encoders.image import BACKBONES
from fewshot_demo.methods import get_method

#: ONNX opset of the exported graphs (onnxruntime 1.16 and later run it).
OPSET = 18
#: Largest batch the exported graph accepts (its first axis is dynamic up to this).
MAX_BATCH = 256


class ExportNotSupportedError(UserInputError):
    """A classifier that cannot be exported the way asked; the message says why and what works."""


def _check_exportable(classifier: FewShotClassifier, encoder_id: str) -> None:
    """Refuse a learner ONNX cannot express, or a classifier fitted on another backbone or encoder."""
    reason = onnx_unsupported_reason(classifier)
    if reason is not None:
        raise ExportNotSupportedError(reason)
    if classifier.encoder_id != encoder_id:
        raise ExportNotSupportedError(
            f"this classifier was fitted on {classifier.encoder_id!r} but {encoder_id!r} is selected; select "
            f"{classifier.encoder_id!r} and export again"
        )


def onnx_unsupported_reason(classifier: FewShotClassifier) -> str | None:
    """Why this classifier cannot be exported as one ONNX graph, or None when it can."""
    spec = get_method(classifier.method)
    if spec.transductive:
        return (f"{spec.label} is transductive: the probabilities it gives one image depend on the other images "
                "classified with it (it refines the prototypes on the whole batch of queries), so there is no "
                "fixed function from one image to its probabilities to export. Export ProtoNet or the linear probe "
                "instead, or save the classifier (.safetensors) and use it from Python")

    if classifier.encoder_id not in BACKBONES:
        if not classifier.consumes_features:
            return (f"{spec.label} reads the token windows of each text with its own fine-tuned encoder layers; "
                    "save the classifier (.safetensors) and use it from Python, or export a classifier on "
                    "frozen embeddings (linear probe, ProtoNet)")
        return None
    if not BACKBONES[classifier.encoder_id].feature_vectors:
        return f"{classifier.encoder_id!r} has no network to export; use a pretrained backbone such as efficientnet_lite0"
    return None


class ImageClassifierModule(nn.Module):
    """Backbone + fitted learner as one module: normalised images in, probabilities out.

    Args:
        classifier: the fitted classifier (its learner's ``predict_proba`` is traced as it is).
        network: the backbone's network with its classifier removed (a private copy).
    """

    def __init__(self, classifier: FewShotClassifier, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.learner = classifier.learner
        self.input_kind = classifier.input_kind

    def forward(self, images: Tensor) -> Tensor:
        """(n, 3, size, size) normalised images -> (n, n_way) probabilities."""
        if self.input_kind == "features":
            inputs = self.network(images)  # (n, feature_dim)
        else:  # the activations entering the last stage, for a learner that fine-tuned it
            network = self.network
            inputs = network.blocks[:-1](network.bn1(network.conv_stem(images)))  # (n, c, h, w)
        return self.learner.predict_proba(inputs)  # (n, n_way)


def _onnx_cdist(x1: Any, x2: Any, p: float = 2.0, compute_mode: Any = None) -> Any:
    """``torch.cdist`` (Euclidean) in ONNX ops: the exporter has no translation of its own.

    sqrt(max(|a|^2 - 2 a.b + |b|^2, 0)) for every pair of rows.
    """
    from onnxscript import (
        opset18 as op,  # deferred: onnxscript loads only when a graph is exported
    )

    axes = op.Constant(value_ints=[-1])
    squares_1 = op.ReduceSum(op.Mul(x1, x1), axes, keepdims=1)  # (n, 1)
    squares_2 = op.ReduceSum(op.Mul(x2, x2), axes, keepdims=1)  # (m, 1)
    products = op.MatMul(x1, op.Transpose(x2, perm=[1, 0]))  # (n, m)
    squared = op.Add(op.Sub(squares_1, op.Add(products, products)), op.Transpose(squares_2, perm=[1, 0]))
    return op.Sqrt(op.Max(squared, op.CastLike(op.Constant(value_float=0.0), squared)))


@dataclass(frozen=True)
class OnnxExport:
    """An exported classifier.

    Attributes:
        path: the .onnx file (image), or a .zip of the .onnx file and ``tokenizer.json`` (text).
        class_names: the order of the probabilities.
        method: the learner's registry key.
        encoder_id: the backbone or text encoder.
        seconds: how long the export took.
    """

    path: Path
    class_names: list[str]
    method: str
    encoder_id: str
    seconds: float

    def snippet(self) -> str:
        """Python that classifies with this file and onnxruntime alone (no torch, no app)."""
        raise NotImplementedError


@dataclass(frozen=True)
class ImageOnnxExport(OnnxExport):
    """An exported image classifier.

    Attributes:
        input_size: the square input side in pixels.
        mean, std: the per-channel normalisation after scaling pixels to [0, 1].
    """

    input_size: int = 0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def snippet(self) -> str:
        return f'''import numpy as np, onnxruntime as ort
from PIL import Image

CLASSES = {self.class_names!r}
session = ort.InferenceSession("{self.path.name}", providers=["CPUExecutionProvider"])

def preprocess(path):
    """Pad to a white square, resize to {self.input_size}x{self.input_size}, scale to [0, 1], normalise."""
    image = Image.open(path).convert("RGB")
    side = max(image.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    square = square.resize(({self.input_size}, {self.input_size}), Image.Resampling.BICUBIC)
    x = np.asarray(square, dtype=np.float32).transpose(2, 0, 1) / 255
    mean, std = np.array({list(self.mean)!r}, np.float32), np.array({list(self.std)!r}, np.float32)
    return (x - mean[:, None, None]) / std[:, None, None]

probabilities = session.run(None, {{"images": preprocess("photo.jpg")[None]}})[0][0]
print(CLASSES[int(probabilities.argmax())], dict(zip(CLASSES, probabilities.round(3).tolist())))
'''


@dataclass(frozen=True)
class TextOnnxExport(OnnxExport):
    """An exported text classifier.

    Attributes:
        max_length: the most tokens the graph reads (one window of the encoder).
    """

    max_length: int = 0

    def snippet(self) -> str:
        return f'''import numpy as np, onnxruntime as ort, zipfile
from tokenizers import Tokenizer

zipfile.ZipFile("{self.path.name}").extractall("classifier")
CLASSES = {self.class_names!r}
session = ort.InferenceSession("classifier/classifier.onnx", providers=["CPUExecutionProvider"])
tokenizer = Tokenizer.from_file("classifier/tokenizer.json")
tokenizer.enable_truncation({self.max_length})   # the graph reads one window: a longer text, its start
tokenizer.enable_padding()

texts = ["a text to classify", "another one"]
encoded = tokenizer.encode_batch(texts)
ids = np.array([e.ids for e in encoded], dtype=np.int64)
mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
for text, p in zip(texts, session.run(None, {{"input_ids": ids, "attention_mask": mask}})[0]):
    print(text, "->", CLASSES[int(p.argmax())], dict(zip(CLASSES, p.round(3).tolist())))
'''


def export_image_onnx(classifier: FewShotClassifier, backbone: Any, path: str | Path) -> ImageOnnxExport:
    """Write the fitted image classifier (backbone + learner) to one ONNX file.

    The class names, input size and normalisation are stored in the file's metadata too
    (``fewshot_demo`` key, JSON).

    Args:
        classifier: a fitted or loaded image classifier.
        backbone: the ``ImageBackbone`` it was fitted on.
        path: where to write the .onnx file.

    Raises:
        ExportNotSupportedError: for a transductive learner, a text classifier, or another backbone.
    """
    _check_exportable(classifier, backbone.id)
    began = time.perf_counter()
    path = Path(path)
    spec = backbone.spec
    # A private copy of the network: the export traces it, and other requests keep using the original.
    module = ImageClassifierModule(classifier, copy.deepcopy(backbone.model)).eval()
    example = torch.zeros(2, 3, spec.input_size, spec.input_size, device=backbone.device)
    with torch.no_grad():
        torch.onnx.export(
            module, (example,), str(path), input_names=["images"], output_names=["probabilities"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},), opset_version=OPSET,
            dynamo=True, external_data=False, verbose=False,
            custom_translation_table={torch.ops.aten._cdist_forward.default: _onnx_cdist},
        )
    _write_metadata(path, {
        "class_names": list(classifier.class_names), "input_size": spec.input_size, "mean": list(spec.mean),
        "std": list(spec.std), "method": classifier.method, "encoder_id": classifier.encoder_id,
        "input": "images: (n, 3, size, size) float32, padded to a white square, resized (bicubic), "
                 "scaled to [0, 1], then (x - mean) / std per channel",
        "output": "probabilities: (n, n_way), in class_names order",
    })
    return ImageOnnxExport(path, list(classifier.class_names), classifier.method, classifier.encoder_id,
                           time.perf_counter() - began, input_size=spec.input_size, mean=tuple(spec.mean),
                           std=tuple(spec.std))


class TextClassifierModule(nn.Module):
    """Text encoder (one window) + fitted learner as one module: token ids and mask in, probabilities out.

    Args:
        classifier: the fitted classifier, on the encoder's frozen embeddings.
        encoder: the ``TextEncoder`` (its pooling is traced as it is).
    """

    def __init__(self, classifier: FewShotClassifier, encoder: Any) -> None:
        super().__init__()
        self.encoder = encoder
        self.network = copy.deepcopy(encoder.model)  # a private copy: other requests keep the original
        self.learner = classifier.learner

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(n, seq_len) int64 ids and mask -> (n, n_way) probabilities."""
        features = self.encoder.encode_tokens(input_ids, attention_mask, model=self.network)  # (n, d)
        return self.learner.predict_proba(features)  # (n, n_way)


def export_text_onnx(classifier: FewShotClassifier, encoder: Any, path: str | Path) -> TextOnnxExport:
    """Write a text classifier on frozen embeddings as a zip of ``classifier.onnx`` and ``tokenizer.json``.

    The graph reads one window of ``encoder.max_length`` tokens per text (see the module docstring).

    Raises:
        ExportNotSupportedError: for a transductive or fine-tuned learner, or another encoder.
    """
    _check_exportable(classifier, encoder.id)
    began = time.perf_counter()
    path = Path(path)
    folder = Path(tempfile.mkdtemp(prefix="fewshot-text-onnx-"))
    example = encoder.tokenizer(["an example", "another, longer example text"], padding=True, truncation=True,
                                max_length=encoder.max_length, return_tensors="pt")
    batch, length = torch.export.Dim("batch", min=1, max=MAX_BATCH), torch.export.Dim("seq", max=encoder.max_length)
    module = TextClassifierModule(classifier, encoder).eval()
    with torch.no_grad():
        torch.onnx.export(
            module, (example["input_ids"], example["attention_mask"]), str(folder / "classifier.onnx"),
            input_names=["input_ids", "attention_mask"], output_names=["probabilities"],
            dynamic_shapes=({0: batch, 1: length}, {0: batch, 1: length}), opset_version=OPSET, dynamo=True,
            external_data=False, verbose=False,
            custom_translation_table={torch.ops.aten._cdist_forward.default: _onnx_cdist},
        )
    _write_metadata(folder / "classifier.onnx", {
        "class_names": list(classifier.class_names), "method": classifier.method, "encoder_id": classifier.encoder_id,
        "max_length": encoder.max_length,
        "input": f"input_ids, attention_mask: (n, seq_len <= {encoder.max_length}) int64 from tokenizer.json "
                 "(truncated to one window)",
        "output": "probabilities: (n, n_way), in class_names order",
    })
    encoder.tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in ("classifier.onnx", "tokenizer.json"):
            archive.write(folder / name, name)
    return TextOnnxExport(path, list(classifier.class_names), classifier.method, classifier.encoder_id,
                          time.perf_counter() - began, max_length=encoder.max_length)


def _write_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` (JSON) in the ONNX file under the key ``fewshot_demo``."""
    import onnx  # deferred: onnx (and protobuf) load only when a graph is exported

    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key = "fewshot_demo"
    entry.value = json.dumps(metadata)
    onnx.save(model, str(path))


def normalised_images(backbone: Any, images: list[Any]) -> Tensor:
    """(n, 3, size, size) inputs of an exported graph, made exactly as the backbone makes its own."""
    batch = torch.stack([backbone.preprocess(image) for image in images])
    return (batch - backbone._mean.cpu()) / backbone._std.cpu()


def onnx_probabilities(path: str | Path, images: Tensor) -> Tensor:
    """Run an exported image graph with onnxruntime on (n, 3, size, size) normalised images."""
    import onnxruntime  # deferred: onnxruntime loads only to check an export

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])


def onnx_text_probabilities(path: str | Path, texts: list[str]) -> Tensor:
    """Run an exported text classifier (the zip) with onnxruntime and its own tokenizer, as the snippet does."""
    import onnxruntime  # deferred: onnxruntime loads only to check an export

    with zipfile.ZipFile(path) as archive:
        graph = archive.read("classifier.onnx")
        tokenizer = Tokenizer.from_str(archive.read("tokenizer.json").decode("utf-8"))
        metadata = json.loads(_metadata(graph)["fewshot_demo"])
    tokenizer.enable_truncation(metadata["max_length"])
    tokenizer.enable_padding()
    encoded = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input_ids": ids, "attention_mask": mask})[0])


def _metadata(graph: bytes) -> dict[str, str]:
    import onnx  # deferred: as above

    return {entry.key: entry.value for entry in onnx.load_from_string(graph).metadata_props}


