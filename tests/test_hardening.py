"""The server keeps serving whatever it is sent: errors become messages, caches heal, files go away."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import time
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from fewshot_demo.bench import builtin_pools
from fewshot_demo.config.errors import UserInputError
from fewshot_demo.core.classifier import FewShotClassifier
from fewshot_demo.core.classifier_file import checksum as _checksum
from fewshot_demo.data import builtin, zips
from fewshot_demo.data.labelled import LoadedData
from fewshot_demo.ui.api import Warmup
from fewshot_demo.ui.events import handled
from fewshot_demo.ui.messages import scrub
from fewshot_demo.ui.temp_files import TempFiles

ROOT = Path(__file__).resolve().parents[1]
ANIMALS = ROOT / "examples" / "images" / "animals"


# ------------------------------------------------------------------------------------------ messages
def test_an_unexpected_error_becomes_a_generic_message_logged_with_an_incident(caplog):
    def broken(x):
        raise KeyError(f"{os.path.realpath('/tmp')}/gradio/abc123/secret.bin")

    with caplog.at_level(logging.ERROR, logger="fewshot_demo.app"), pytest.raises(gr.Error) as raised:
        handled(broken)(1)
    message = raised.value.message
    incident = message.split("incident ")[1].split(")")[0]
    assert "Your inputs are kept" in message and "/tmp" not in message and "secret" not in message
    assert f"incident {incident}" in caplog.text and "KeyError" in caplog.text


def test_a_users_mistake_keeps_its_message_without_server_paths():
    from gradio.utils import get_upload_folder

    upload = f"{get_upload_folder()}/9f2c1e/holiday photo.jpg"

    def refuse():
        raise UserInputError(f"cannot read {upload}: <b>broken</b>")

    with pytest.raises(gr.Error) as raised:
        handled(refuse)()
    assert raised.value.message == "cannot read holiday photo.jpg: &lt;b&gt;broken&lt;/b&gt;"


def test_only_a_users_mistake_is_shown_verbatim_any_other_value_error_is_an_incident():
    def fail():
        raise ValueError("math domain error")  # e.g. from a library: not a message for the user

    with pytest.raises(gr.Error) as raised:
        handled(fail)()
    assert "math domain error" not in raised.value.message
    assert re.search(r"Something went wrong on the server.*incident [0-9a-f]{8}", raised.value.message)
    assert scrub(f"see {Path.home()}/.cache/fewshot_demo/features/x.pt") == "see x.pt"


def test_streaming_handlers_still_stream_and_fail_readably():
    def steps():
        yield 1
        raise UserInputError("choose at least one method")

    wrapped = handled(steps)
    results = wrapped()
    assert next(results) == 1
    with pytest.raises(gr.Error, match="choose at least one method"):
        next(results)


def test_a_handler_that_fails_unexpectedly_leaves_the_app_serving(client, monkeypatch):
    from fewshot_demo.ui import text_tab

    def broken(name):
        raise RuntimeError(f"disk full while writing {os.path.realpath('/tmp')}/fewshot-x/cache")

    monkeypatch.setattr(text_tab, "example_set", broken)
    with pytest.raises(AppError, match=r"Something went wrong on the server.*incident [0-9a-f]{8}") as raised:
        client.predict("intents", api_name="/text_load_example")
    assert "/tmp" not in str(raised.value) and "Traceback" not in str(raised.value)
    monkeypatch.undo()
    assert client.predict("intents", api_name="/text_load_example")[0] == "set_alarm"


# ------------------------------------------------------------------------------------------ warm-up
def test_warmup_loads_once_waits_for_a_load_in_progress_and_retries_after_a_failure(monkeypatch):
    calls, release, fail = [], threading.Event(), [True]

    def slow_backbone(*args):
        calls.append("backbone")
        release.wait(5)
        if fail[0]:
            raise ConnectionError("no network")

    monkeypatch.setattr(logging.getLogger("fewshot_demo.app"), "exception", lambda *args, **kwargs: None)
    warm = Warmup(loaders=(slow_backbone, lambda: calls.append("encoder")))
    start_up = threading.Thread(target=warm.load)
    start_up.start()
    time.sleep(0.05)
    answers = []
    callers = [threading.Thread(target=lambda: answers.append(_try(warm))) for _ in range(3)]
    for caller in callers:
        caller.start()
    time.sleep(0.05)
    assert calls == ["backbone"] and not warm.ready  # the callers wait for the start-up load
    release.set()  # the start-up load fails; each waiting caller then tries once more, one at a time
    start_up.join()
    for caller in callers:
        caller.join()
    assert not warm.ready and calls == ["backbone"] * 4
    assert all("could not be loaded" in answer for answer in answers)
    fail[0] = False
    assert warm() == "ready" and calls[-2:] == ["backbone", "encoder"]
    assert warm() == "ready" and len(calls) == 6  # loaded once; later calls load nothing


def _try(warm: Warmup) -> str:
    try:
        return warm()
    except UserInputError as error:
        return str(error)


# ------------------------------------------------------------------------------------------ hub models
def test_a_hub_backbone_that_fails_names_the_default_which_keeps_working(client):
    paths = sorted(ANIMALS.glob("support/*/*"))
    support, labels = [handle_file(str(p)) for p in paths], [p.parent.name for p in paths]
    with pytest.raises(AppError, match="the bundled default 'efficientnet_lite0' works offline"):
        client.predict(support, labels, "protonet", None, "resnet50", api_name="/fit_images")
    with pytest.raises(AppError, match="bundled default 'minilm' works offline"):
        client.predict(["a", "b"], ["x", "y"], "linear", None, None, "bert-base-uncased", api_name="/fit_texts")
    assert client.predict(support, labels, api_name="/fit_images")["encoder"] == "efficientnet_lite0"


# ------------------------------------------------------------------------------------------ saved files
def _forged(tmp_path: Path, options: dict) -> Path:
    """A classifier file whose header asks for ``options``, with a checksum that matches (anyone can compute it)."""
    features = torch.randn(4, 8)
    classifier = FewShotClassifier("linear", ["a", "b"], features, torch.tensor([0, 0, 1, 1]), "efficientnet_lite0")
    path = classifier.save(tmp_path / "saved.safetensors")
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as handle:
        header = json.loads(handle.metadata()["fewshot_demo"])
    tensors = load_file(str(path))
    header.update(method="maml", learner_options=options)
    header.pop("checksum")
    header["checksum"] = _checksum(tensors, header)
    forged = tmp_path / "forged.safetensors"
    save_file(tensors, str(forged), metadata={"fewshot_demo": json.dumps(header)})
    return forged


@pytest.mark.parametrize("options, message", [
    ({"inner_steps": 10**9}, "inner_steps"),
    ({"inner_lr": 1e9}, "inner_lr"),
    ({"rm -rf": 1}, "rm -rf"),
])
def test_a_saved_classifier_asking_for_enormous_work_is_refused_on_load(tmp_path, options, message):
    forged = _forged(tmp_path, options)
    started = time.perf_counter()
    with pytest.raises(ValueError, match=f"settings this version cannot use.*{message}|{message}"):
        FewShotClassifier.load(forged)
    assert time.perf_counter() - started < 2


# ------------------------------------------------------------------------------------------ zips
def _zip(tmp_path: Path, name: str = "classes.zip", **members: bytes) -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return path


def _png(color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_damaged_encrypted_or_unreadable_zips_get_messages_and_leave_nothing_behind(tmp_path):
    import tempfile

    before = set(Path(tempfile.gettempdir()).glob("fewshot-unzip-*"))
    good = {"a/one.png": _png(), "b/two.png": _png("blue")}
    with zips.unpacked_zip(_zip(tmp_path, **good)) as root:
        assert sorted(p.name for p in root.iterdir()) == ["a", "b"]
    cases = {
        "not a zip": (lambda: _write(tmp_path / "x.zip", b"PK\x03\x04 nope"), "not a valid zip"),
        "bad CRC": (lambda: _corrupt_data(_zip(tmp_path, "crc.zip", **good)), "is damaged"),
        "encrypted": (lambda: _set_flag(_zip(tmp_path, "enc.zip", **good), 0x1), "password-protected"),
        "unknown method": (lambda: _set_method(_zip(tmp_path, "m.zip", **good), 99), "compression method"),
        "traversal": (lambda: _zip(tmp_path, "t.zip", **{"../evil.png": _png()}), "unsafe path"),
        "no folders": (lambda: _zip(tmp_path, "f.zip", **{"flat.png": _png()}), "no images in class folders"),
    }
    for case, (make, message) in cases.items():
        with pytest.raises(UserInputError, match=message) as raised:
            zips.data_from_upload(make())
        assert "/tmp" not in str(raised.value), case
    assert set(Path(tempfile.gettempdir()).glob("fewshot-unzip-*")) == before


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _corrupt_data(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # inside the first member's compressed bytes
    path.write_bytes(bytes(data))
    return path


def _set_flag(path: Path, flag: int) -> Path:
    data = bytearray(path.read_bytes())
    start = 0
    while (found := data.find(b"PK\x01\x02", start)) >= 0:
        data[found + 8] |= flag
        start = found + 4
    path.write_bytes(bytes(data))
    return path


def _set_method(path: Path, method: int) -> Path:
    data = bytearray(path.read_bytes())
    start = 0
    while (found := data.find(b"PK\x01\x02", start)) >= 0:
        data[found + 10 : found + 12] = method.to_bytes(2, "little")
        start = found + 4
    path.write_bytes(bytes(data))
    return path


def test_a_zip_bomb_is_refused_from_its_headers_and_a_lying_header_is_caught(tmp_path):
    archive = _zip(tmp_path, **{"a/big.png": b"\0" * 150_000, "b/big.png": b"\0" * 150_000})
    with pytest.raises(UserInputError, match="unpacks to more than 0.1907 MB"):  # nothing is decompressed
        with zips.unpacked_zip(archive, max_bytes=200_000):
            pass
    data = bytearray(archive.read_bytes())
    start = 0
    while (found := data.find(b"PK\x01\x02", start)) >= 0:  # the central directory says 10 bytes each
        data[found + 24 : found + 28] = (10).to_bytes(4, "little")
        start = found + 4
    (tmp_path / "liar.zip").write_bytes(bytes(data))
    with pytest.raises(UserInputError, match="is damaged"):
        zips.data_from_upload(tmp_path / "liar.zip")


# ------------------------------------------------------------------------------------------ feature cache
TINY = "six_texts_for_the_cache_tests"  # an id no other test uses: pools are cached per id for the process


@pytest.fixture
def tiny_builtin(monkeypatch, tmp_path):
    """A built-in text data set of 6 short texts, its feature cache under tmp_path."""
    data = LoadedData("text", ["cats purr", "dogs bark", "kittens", "rain falls", "sunny sky", "storm"],
                      ["pets", "pets", "pets", "weather", "weather", "weather"])
    spec = builtin.BuiltinDataset(TINY, "six texts", "text", "minilm", None, "none", "six texts",
                                  lambda: True, lambda: data)
    monkeypatch.setitem(builtin.BUILTIN_DATASETS, TINY, spec)
    # Patched here rather than through FEWSHOT_FEATURE_CACHE: the app the other tests launched in
    # this process may read the settings on another thread at any moment.
    monkeypatch.setattr(builtin_pools, "feature_cache_dir", lambda: tmp_path)
    yield data, tmp_path
    builtin._LOADED.pop(TINY, None)
    for key in [k for k in builtin_pools._POOLS if k[0] == TINY]:
        del builtin_pools._POOLS[key]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong shape", "other encoder", "not a tensor", "nan"])
def test_a_damaged_feature_cache_is_detected_and_rebuilt(tiny_builtin, damage):
    data, folder = tiny_builtin
    device = torch.device("cpu")
    good = builtin_pools.builtin_pool(TINY, "minilm", device).prepare("features")
    [cache] = folder.glob(f"builtin-*{TINY}*.pt")
    for key in [k for k in builtin_pools._POOLS if k[0] == TINY]:
        del builtin_pools._POOLS[key]  # as after a restart: only the disk cache is left
    if damage == "garbage":
        cache.write_bytes(b"\x00not a torch file")
    elif damage == "truncated":
        cache.write_bytes(cache.read_bytes()[:100])
    elif damage == "wrong shape":
        torch.save(torch.zeros(3, 7), cache)
    elif damage == "other encoder":
        torch.save(torch.randn(*good.shape), cache)
    elif damage == "not a tensor":
        torch.save({"features": good}, cache)
    else:
        torch.save(torch.full_like(good, float("nan")), cache)
    rebuilt = builtin_pools.builtin_pool(TINY, "minilm", device).prepare("features")
    assert torch.allclose(rebuilt, good, atol=1e-4)
    assert torch.allclose(torch.load(cache, weights_only=True), good, atol=1e-4)  # the file is whole again


# ------------------------------------------------------------------------------------------ temporary files
def test_a_sessions_files_go_when_it_ends_and_leftovers_when_they_are_old(tmp_path):
    now = [1_000_000.0]  # the sweeper's clock, seconds since the epoch
    files = TempFiles(root=str(tmp_path), max_age_s=60, clock=lambda: now[0])
    mine = tmp_path / "fewshot-abc"
    mine.mkdir()
    (mine / "classifier.safetensors").write_bytes(b"x")
    other = tmp_path / "unrelated"
    other.mkdir()
    files.track("session-1", [str(mine / "classifier.safetensors"), "text"])  # what every event does with its outputs
    assert files.end_session("session-2") == 0 and mine.exists()
    assert files.end_session("session-1") == 1 and not mine.exists()
    old, new = tmp_path / "fewshot-old", tmp_path / "fewshot-new"
    for folder, written in ((old, now[0] - 60), (new, now[0] - 30), (other, now[0] - 600)):
        folder.mkdir(exist_ok=True)
        os.utime(folder, (written, written))
    assert files.sweep() == 0 and old.exists()  # exactly max_age_s old: kept
    now[0] += 1
    assert files.sweep() == 1 and not old.exists() and new.exists() and other.exists()  # only fewshot-* folders go
    now[0] += 30
    assert files.sweep() == 1 and not new.exists()


def test_saved_classifiers_are_tracked_under_the_session_that_saved_them(client):
    import app as app_module

    boxes = client.predict("sentiment", api_name="/text_load_example")
    client.predict("minilm", "linear", 5, "contrastive", "so good", *boxes[: 2 * 20], api_name="/text_classify")
    client.predict(api_name="/text_save")
    tracked = app_module.demo.temp_files._by_session.get(client.session_hash, set())
    assert tracked and all(folder.name.startswith("fewshot-") and folder.exists() for folder in tracked)
    assert app_module.demo.temp_files.end_session(client.session_hash) == len(tracked)
    assert not any(folder.exists() for folder in tracked)


# ------------------------------------------------------------------------------------------ plots
def test_plots_drawn_by_concurrent_requests_never_touch_pyplots_shared_state(monkeypatch):
    import matplotlib.pyplot as plt

    from fewshot_demo.ui.figures import adaptation_figure, embedding_map_figure

    monkeypatch.setattr(plt, "figure", lambda *a, **k: pytest.fail("pyplot's figure registry used"))
    errors = []

    def draw(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(5):
            try:
                coordinates = {"support": rng.normal(size=(6, 2)), "prototypes": rng.normal(size=(2, 2)),
                               "query": rng.normal(size=(2, 2))}
                embedding_map_figure(coordinates, [0, 0, 0, 1, 1, 1], ["a", "b"], [0, 1]).savefig(io.BytesIO(), format="png")
                adaptation_figure([{"step": 0, "support_loss": 1.0, "support_accuracy": 0.5}]).savefig(io.BytesIO())
            except BaseException as error:  # noqa: BLE001
                errors.append(error)

    threads = [threading.Thread(target=draw, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and plt.get_fignums() == []


def test_when_a_browser_session_ends_its_files_go_and_its_comparison_stops(tmp_path):
    import types

    import app as app_module
    from fewshot_demo.ui import compare_tab

    folder = Path(app_module.demo.temp_files.root) / "fewshot-session-end-test"
    folder.mkdir(exist_ok=True)
    app_module.demo.temp_files.track("ending-session", [str(folder / "export.csv")])
    stop = threading.Event()
    compare_tab._CANCEL["ending-session"] = stop
    try:
        app_module.end_session(types.SimpleNamespace(session_hash="ending-session"))
    finally:
        compare_tab._CANCEL.pop("ending-session", None)
    assert not folder.exists() and stop.is_set()
