"""Measure the app's speed targets: start-up, the first prediction, and a new query.

    python -m fewshot_demo.latency [--repeats 20]

1. App start to ready: launches ``python app.py`` in a subprocess and times until the page answers
   and the backbone is warm (the app warms it up in the background at start).
2. Click to first prediction: a 5-way 5-shot example set classified through the app's API, as the
   browser's "Classify" does (support images not embedded before).
3. A new query once the support set is embedded: the core path (one forward pass + the learner),
   and the whole API round trip of a second click with one new query image.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "images" / "mixed_5way"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def _classes() -> tuple[list[str], list[list[str]], list[str]]:
    support = sorted(p for p in (EXAMPLE / "support").iterdir() if p.is_dir())
    names = [d.name for d in support]
    files = [sorted(str(f) for f in d.iterdir()) for d in support]
    queries = sorted(str(q) for q in (EXAMPLE / "query").glob("*/*"))
    return names, files, queries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fewshot_demo.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    from gradio_client import Client, handle_file

    from fewshot_demo.classifier import MAX_CLASSES

    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1", GRADIO_ANALYTICS_ENABLED="False")
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for(url, timeout=180)
        page_ready = time.perf_counter() - start
        client = Client(url, verbose=False)
        warm = client.predict(api_name="/warmup")  # returns once the backbone is loaded
        warm_ready = time.perf_counter() - start
        names, files, queries = _classes()
        padded_names = names + [""] * (MAX_CLASSES - len(names))
        padded_files = [[handle_file(f) for f in fs] for fs in files] + [None] * (MAX_CLASSES - len(names))

        def click(query_paths: list[str]) -> float:
            began = time.perf_counter()
            client.predict("efficientnet_lite0", "protonet", 5, True, 0.5, [handle_file(q) for q in query_paths], None,
                           *padded_names, *padded_files, 5, api_name="/image_classify")
            return time.perf_counter() - began

        first_click = click(queries[:1])
        second_clicks = [click([queries[(i + 1) % len(queries)]]) for i in range(min(args.repeats, 10))]
    finally:
        process.terminate()
        process.wait(timeout=30)

    # The core path for a new query, in this process, with the app's thread setting.
    import torch

    from fewshot_demo.settings import settings

    torch.set_num_threads(settings().torch_threads)
    from fewshot_demo.backbones import load_backbone
    from fewshot_demo.image_task import build_support, classify_images, fit_image_classifier
    from fewshot_demo.images import load_image

    backbone = load_backbone()
    support = build_support(list(zip(names, files)))
    classifier = fit_image_classifier(support, backbone, "protonet")
    query_images = [load_image(q) for q in queries]
    core = []
    for i in range(args.repeats):
        backbone._cache.clear()  # a new query is never in the cache
        began = time.perf_counter()
        classify_images(classifier, backbone, [query_images[i % len(query_images)]])
        core.append(time.perf_counter() - began)
    support_images = support.images

    def median_ms(values: list[float]) -> float:
        return 1000 * statistics.median(values)

    print(f"app start to page served:             {page_ready:6.1f} s   (target <= 20 s)")
    print(f"app start to models warm:             {warm_ready:6.1f} s   (image backbone and text encoder)")
    print(f"5-way 5-shot click to first prediction: {1000 * first_click:6.0f} ms  (target <= 2000 ms; "
          f"{len(support_images)} support images embedded in that click)")
    print(f"second click, one new query (API):    {median_ms(second_clicks):6.0f} ms median of {len(second_clicks)} "
          "(the client re-uploads all 25 support files each call; a browser sends them once)")
    print(f"new query, core (embed + predict):    {median_ms(core):6.1f} ms median of {len(core)} (target <= 60 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
