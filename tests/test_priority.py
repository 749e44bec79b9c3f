"""Quick predictions go before long work (fewshot_demo.runtime.priority)."""

from __future__ import annotations

import threading
import time

from fewshot_demo.runtime.priority import Priority


def test_long_work_waits_for_an_urgent_request_and_only_for_it():
    priority = Priority(max_wait_s=5.0)
    assert priority.give_way() == 0.0  # nothing urgent: no wait
    inside, release, waited = threading.Event(), threading.Event(), []

    def prediction():
        with priority.urgent():
            assert priority.give_way() == 0.0  # urgent work never waits, not even for another
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=prediction)
    thread.start()
    inside.wait(5)
    threading.Timer(0.3, release.set).start()
    waited.append(priority.give_way())  # long work, here: waits until the prediction ends
    thread.join()
    assert 0.2 <= waited[0] < 4.0 and priority.urgent_now == 0


def test_long_work_goes_on_after_the_longest_wait():
    priority = Priority(max_wait_s=0.2)
    with priority.urgent():
        results = []
        worker = threading.Thread(target=lambda: results.append(priority.give_way()))
        started = time.monotonic()
        worker.start()
        worker.join()
    assert 0.15 <= results[0] <= 1.0 and time.monotonic() - started < 2.0


def test_a_prediction_with_a_handle_is_urgent_and_a_fit_is_not(monkeypatch, tmp_path):
    from pathlib import Path

    from PIL import Image

    from fewshot_demo.encoders.image import load_backbone
    from fewshot_demo.runtime.priority import PRIORITY
    from fewshot_demo.serving.requests import Upload
    from fewshot_demo.serving.service import Service

    folder = Path(__file__).resolve().parents[1] / "examples" / "images" / "animals"

    def fresh(source: Path, name: str) -> Path:
        """A copy with one pixel changed: new to the shared feature cache, so it is embedded now."""
        image = Image.open(source).convert("RGB")
        image.putpixel((0, 0), (1, 2, 3))
        path = tmp_path / name / source.parent.name / f"{source.stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        return path

    support = [fresh(p, "support") for p in sorted((folder / "support").glob("*/*"))]
    query = fresh(sorted((folder / "query").glob("*/*"))[0], "query")
    backbone = load_backbone("efficientnet_lite0", "cpu")
    forward, urgent_during = backbone._forward, []
    monkeypatch.setattr(backbone, "_forward", lambda batch: urgent_during.append(PRIORITY.urgent_now) or forward(batch))
    service = Service()
    fitted = service.fit_images([Upload(str(p), p.name) for p in support], [p.parent.name for p in support])
    assert urgent_during and not any(urgent_during)  # fitting is long work
    urgent_during.clear()
    answer = service.predict(fitted["handle"], [Upload(str(query), query.name)])
    assert answer["predictions"][0]["label"] == query.parent.name
    assert urgent_during == [1]  # embedded as urgent work
    assert PRIORITY.urgent_now == 0


def test_comparison_episodes_give_way_one_by_one(monkeypatch):
    import torch

    from fewshot_demo.core.runner import run_episodes
    from fewshot_demo.data.episodes import EpisodeConfig, sample_episodes
    from fewshot_demo.runtime.priority import PRIORITY

    calls = []
    monkeypatch.setattr(PRIORITY, "give_way", lambda: calls.append(1) or 0.0)
    labels = torch.arange(3).repeat_interleave(6)
    features = torch.randn(len(labels), 8, generator=torch.Generator().manual_seed(0)) + labels[:, None]
    episodes = sample_episodes(labels.tolist(), EpisodeConfig(3, 2, 2), 4, seed=0)
    run_episodes("protonet", features, episodes)
    assert len(calls) == 4
