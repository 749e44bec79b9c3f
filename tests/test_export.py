"""Taking a fitted classifier elsewhere: ONNX files that give the app's probabilities, and clear refusals."""

from __future__ import annotations

import time

import pytest
import torch

from fewshot_demo.core.export import (
    ExportNotSupportedError,
    export_image_onnx,
    normalised_images,
    onnx_probabilities,
    onnx_unsupported_reason,
)
from fewshot_demo.core.image_task import build_support, fit_image_classifier
from fewshot_demo.core.sharing import push_to_hub
from fewshot_demo.data.images import load_image
from fewshot_demo.ui import image_tab


@pytest.fixture(scope="module")
def animals():
    classes, queries = image_tab.example_set("animals")
    return build_support(classes), [load_image(q) for q in queries]


def test_an_exported_maml_classifier_gives_the_apps_probabilities(single_thread, backbone, animals, tmp_path):
    """MAML's adapted weights run through torch.func in the app; the ONNX graph holds them as constants."""
    support, queries = animals
    classifier = fit_image_classifier(support, backbone, "maml", {"inner_steps": 3})
    exported = export_image_onnx(classifier, backbone, tmp_path / "maml.onnx")
    app = torch.tensor([[p.probabilities[c] for c in classifier.class_names]
                        for p in classifier.predict(backbone.embed(queries))])
    onnx = onnx_probabilities(exported.path, normalised_images(backbone, queries))
    assert onnx.shape == (len(queries), 3)
    assert torch.allclose(onnx, app, atol=1e-4)
    assert exported.class_names == ["bird", "bovine", "fish"] and '"images"' in exported.snippet()


def test_transductive_and_text_classifiers_are_refused_with_the_reason(single_thread, backbone, animals, tmp_path):
    support, _ = animals
    classifier = fit_image_classifier(support, backbone, "ptmap")
    assert "transductive" in onnx_unsupported_reason(classifier)
    with pytest.raises(ExportNotSupportedError, match="depend on the other images"):
        export_image_onnx(classifier, backbone, tmp_path / "ptmap.onnx")
    assert not (tmp_path / "ptmap.onnx").exists()


def test_pushing_offline_answers_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "c.safetensors"
    path.write_bytes(b"x")
    began = time.perf_counter()
    with pytest.raises(ValueError, match="Hugging Face Hub cannot be reached \\(HF_HUB_OFFLINE is set\\)"):
        push_to_hub(path, "someone/classifier")
    assert time.perf_counter() - began < 1
    with pytest.raises(ValueError, match="user/name"):
        push_to_hub(path, "no-slash")


def test_an_exported_text_classifier_gives_the_apps_probabilities(tmp_path):
    """The zip holds the graph and its tokenizer; the snippet the app shows runs it without torch."""
    import subprocess
    import sys

    from fewshot_demo.core.export import export_text_onnx, onnx_text_probabilities
    from fewshot_demo.core.text_task import build_text_support, fit_text_classifier
    from fewshot_demo.encoders.text import load_encoder
    from fewshot_demo.ui import text_tab

    encoder = load_encoder(text_tab.DEFAULT_TEXT_ENCODER)
    blocks, queries = text_tab.example_set("intents")
    classifier, _ = fit_text_classifier(build_text_support(blocks), encoder, "linear")
    exported = export_text_onnx(classifier, encoder, tmp_path / "intents.zip")
    texts = [text_tab.split_truth(line)[0] for line in queries.splitlines()]
    app = torch.tensor([[p.probabilities[c] for c in classifier.class_names]
                        for p in classifier.predict(encoder.embed(texts))])
    assert torch.allclose(onnx_text_probabilities(exported.path, texts), app, atol=1e-4)
    script = tmp_path / "use.py"
    script.write_text(exported.snippet().replace('["a text to classify", "another one"]', repr(texts[:2])))
    printed = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    assert f"{texts[0]} -> {classifier.class_names[int(app[0].argmax())]}" in printed.stdout


def test_a_fine_tuned_text_classifier_is_not_exported_and_says_why():
    from types import SimpleNamespace

    fine_tuned = SimpleNamespace(method="finetune", encoder_id="minilm:layers", consumes_features=False)
    assert "save the classifier (.safetensors)" in onnx_unsupported_reason(fine_tuned)
